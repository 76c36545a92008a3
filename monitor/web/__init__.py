"""The dashboard and JSON API (FastAPI, server-rendered Jinja2 pages).

- :mod:`monitor.web.app`: :func:`create_app` (the ASGI app) and :func:`serve` (uvicorn on a loop).
- :mod:`monitor.web.security`: identity (session cookie, trusted proxy header), CSRF, headers.
- :mod:`monitor.store.accounts`: accounts, sessions and audit rows in the store.
- :mod:`monitor.store.dashboard`: scoped reads (feed health reads :mod:`monitor.store.messages`).
- :mod:`monitor.web.pages`, :mod:`monitor.web.review`, :mod:`monitor.web.api`,
  :mod:`monitor.web.health`: the routes.
"""

from monitor.web.app import create_app, serve

__all__ = ["create_app", "serve"]
