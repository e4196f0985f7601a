"""A real ``cape serve`` for tests: uvicorn serving :func:`cape.web.create_app` on a free
port of 127.0.0.1, in a background thread of the test process.

    with serve() as url:                      # url == "http://127.0.0.1:<port>"
        httpx.get(url + "/api/health")
    with serve(host="0.0.0.0", token="s3cret-token") as url:
        ...                                    # the app thinks it is bound off loopback
    url.app, url.port                          # the FastAPI app (app.state.cape) and the port

The socket is always bound to ``bind`` (127.0.0.1 by default), whatever ``host`` the app is
told: a test never listens on a public interface. Every other keyword goes to ``create_app``.
The server runs in this process, so ``CAPE_HOME`` set by the test (conftest does) applies.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

__all__ = ["Served", "serve"]


class Served(str):
    """The base URL (a str), with the app, the port and the uvicorn server attached."""

    app: object
    port: int
    server: object


@contextlib.contextmanager
def serve(*, bind: str = "127.0.0.1", timeout: float = 30.0, **create_app_kwargs) -> Iterator[Served]:
    """Start uvicorn on ``bind`` at a free port, yield the base URL once it accepts
    connections, stop it (and wait for its thread) on exit."""
    import uvicorn

    from cape.web import create_app

    sock = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bind, 0))
    port = sock.getsockname()[1]
    create_app_kwargs.setdefault("host", bind)
    create_app_kwargs.setdefault("port", port)
    app = create_app(**create_app_kwargs)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"cape-test-server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if errors or not thread.is_alive():
            sock.close()
            raise RuntimeError(f"the test server did not start: {errors[0] if errors else 'thread ended'}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the test server did not start within {timeout:.0f} s")
        time.sleep(0.02)
    shown = f"[{bind}]" if ":" in bind else bind
    url = Served(f"http://{shown}:{port}")
    url.app, url.port, url.server = app, port, server
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("the test server did not stop")
