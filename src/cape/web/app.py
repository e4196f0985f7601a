"""The FastAPI application behind ``cape serve``: the JSON API, the pages, the static files
(CAPE's script and style, and the Plotly bundled with the installed plotly package: nothing
is fetched from the network), security middleware and error handling.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .security import LOOPBACK_HOSTS, SecurityMiddleware, is_loopback
from .state import WebState

__all__ = ["create_app", "STATIC"]

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("cape.web")

#: Content-Security-Policy of every response: scripts and data only from this server.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api") and request.url.path != "/openapi.json"


def create_app(*, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
               allowed_hosts: set[str] | None = None) -> FastAPI:
    """The application. ``host``/``port`` are where it is served (the Host allowlist and
    the same-origin check use them); ``token``, when set, is required of every request."""
    from . import api, data, pages, steering

    state = WebState(host=host, port=port, token=token)
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        state.jobs.shutdown()

    app = FastAPI(title="CAPE", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Capability-coupling analysis of language models: every number the dashboard "
                              "shows, as JSON. Analyses at /api/<name>; long ones as jobs at /api/jobs.")
    app.state.cape = state
    app.include_router(api.router)
    app.include_router(steering.router)
    app.include_router(data.router)
    app.include_router(pages.router)

    @app.get("/static/plotly.min.js", include_in_schema=False)
    async def plotly_js() -> FileResponse:
        from ..report.export import plotly_js_path

        return FileResponse(plotly_js_path(), media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        path = STATIC / name
        if name not in {p.name for p in STATIC.iterdir()}:
            return JSONResponse({"detail": f"no static file '{name}'"}, status_code=404)
        kind = {".js": "text/javascript", ".css": "text/css"}.get(path.suffix, "application/octet-stream")
        return FileResponse(path, media_type=kind, headers={"Cache-Control": "no-cache"})

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on a form
        # POST, which the same-origin rule must refuse
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if _wants_html(request) and "text/html" in request.headers.get("accept", ""):
            from .layout import notice, page

            return HTMLResponse(page(f"Error {exc.status_code}", notice(str(exc.detail)), needs_plotly=False),
                                status_code=exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        from fastapi.encoders import jsonable_encoder

        return JSONResponse({"detail": jsonable_encoder(exc.errors(), custom_encoder={Exception: str})},
                            status_code=422)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        log.exception("error serving %s", request.url.path)
        message = f"internal error: {type(exc).__name__}: {exc}"
        if _wants_html(request) and "text/html" in request.headers.get("accept", ""):
            from .layout import notice, page

            return HTMLResponse(page("Error 500", notice([message, "This is a bug in CAPE: please report it with "
                                                          "the address of this page."]), needs_plotly=False),
                                status_code=500)
        return JSONResponse({"detail": message}, status_code=500)

    hosts = set(LOOPBACK_HOSTS) | set(allowed_hosts or ())
    if not is_loopback(host) and host not in ("0.0.0.0", "::"):
        hosts.add(host.lower())
    app.add_middleware(SecurityMiddleware, allowed_hosts=hosts, token=token)   # outermost: runs first
    return app
