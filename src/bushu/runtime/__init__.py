"""Runtimes behind one small Backend interface; see backend.py and registry.py."""

from .backend import Backend, load_backend
from .registry import available_backends, get_backend, installed_backends, list_backends

__all__ = ["Backend", "available_backends", "get_backend", "installed_backends", "list_backends", "load_backend"]
