"""The inference server: a Triton-layout model repository served over KServe v2 HTTP and gRPC.

``start_server(repo)`` runs it in a background thread; ``add_to_repository(repo, artifact)`` writes a
model into a repository. Imports are lazy so that ``import bushu.serve`` stays light (and never
imports torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Server, ServerHandle, ServerOptions, start_server
    from .repository import add_to_repository

__all__ = ["Server", "ServerHandle", "ServerOptions", "add_to_repository", "start_server"]

_WHERE = {
    "Server": "app",
    "ServerHandle": "app",
    "ServerOptions": "app",
    "start_server": "app",
    "add_to_repository": "repository",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'bushu.serve' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
