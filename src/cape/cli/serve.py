"""``cape serve``: the local dashboard and JSON API over the same engine.

This command only starts the server: every number comes from :mod:`cape.web`, which calls
the analyses the other commands call.
"""

from __future__ import annotations

import socket
from typing import Annotated, Optional

import typer

from ..errors import CapeError
from ._app import command_set, err, out

commands = command_set()


@commands.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="Address to bind. Anything but a loopback address "
                                      "(127.0.0.1, localhost, ::1) requires a token, printed at start.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")] = 8000,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the dashboard in a web browser.")] = False,
    token: Annotated[Optional[str], typer.Option("--token", envvar="CAPE_TOKEN", help="Require this token on "
                                                 "every request (default: none on loopback, a random one "
                                                 "otherwise).")] = None,
    allow_host: Annotated[Optional[list[str]], typer.Option("--allow-host", help="Another Host header to accept "
                                                           "(a name this machine is reached by); repeatable.")] = None,
) -> None:
    """The dashboard: a local web app and JSON API (schema at /openapi.json) over the same
    analyses as the CLI. Bound to 127.0.0.1 by default; foreign Host headers and, for
    uploads and steering, foreign Origins are refused."""
    try:
        import uvicorn

        from ..web import create_app
        from ..web.security import is_loopback, new_token
    except ImportError as exc:
        raise CapeError(f"the dashboard needs {exc.name}: pip install cape (fastapi, uvicorn and python-multipart are its dependencies)") from None
    if not is_loopback(host) and token is None:
        token = new_token()
    if token is not None and len(token) < 8:
        raise CapeError("--token must be at least 8 characters")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise CapeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)                  # connections queue from now on: the printed link works at once
    port = sock.getsockname()[1]
    app = create_app(host=host, port=port, token=token, allowed_hosts=set(allow_host or ()))
    shown = f"[{host}]" if ":" in host else host
    link = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{port}/" + (f"?token={token}" if token else "")
    out.print(f"CAPE dashboard at {link}", highlight=False, markup=False)
    if token:
        out.print(f"token: {token} (every request needs it; the link above carries it)", highlight=False, markup=False)
    out.print("API: /api/analyses; schema: /openapi.json. Ctrl-C stops.", highlight=False, markup=False)
    if open_browser:
        import webbrowser

        webbrowser.open(link)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # pragma: no cover - interactive
        err.print("stopped")
