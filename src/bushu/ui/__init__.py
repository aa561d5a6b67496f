"""`bushu ui`: a local web app over a workspace (models, datasets, training / evaluation / optimize /
export jobs, try-it, deployments, offline SDKs).

``create_app(UIConfig(workspace))`` returns the ASGI app; ``bushu ui`` serves it with uvicorn. Pages
are static HTML + JavaScript in ``static/`` (no front-end build step). See app.py for the workspace
layout and the security rules, jobs.py for background jobs, deploy.py for served models, safety.py
for upload handling.
"""

from __future__ import annotations

from .app import UIConfig, create_app

__all__ = ["UIConfig", "create_app"]
