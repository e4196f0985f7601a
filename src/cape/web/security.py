"""Safe by default, as Jupyter's server is.

- The server binds to 127.0.0.1 unless told otherwise.
- Every request's Host header must name an allowed host (DNS-rebinding protection): the
  loopback names, plus the address the server was bound to and any ``--allow-host``. With a
  token (bound off loopback) any Host is accepted, as in Jupyter with remote access: the
  token is the protection, and a rebinding page cannot present it.
- A state-changing request (anything but GET, HEAD and OPTIONS) whose Origin is not the
  server's own, or that a browser marks as cross-site, is refused.
- Bound to any other address, every request needs the token printed at start: as
  ``?token=`` (which also sets a cookie, so links work), an ``Authorization: token ...``
  header, or the cookie.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

__all__ = ["LOOPBACK_HOSTS", "SecurityMiddleware", "is_loopback", "new_token"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
COOKIE = "cape_token"


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _hostname(value: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1'; '[::1]:8000' -> '::1'; lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class SecurityMiddleware:
    """ASGI middleware enforcing the rules above (403 with a one-line JSON reason)."""

    def __init__(self, app, *, allowed_hosts: set[str], token: str | None) -> None:
        self.app = app
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = _hostname(headers.get("host", ""))
        # With a token (bound off loopback) the token is the protection, as in Jupyter with
        # remote access: a rebinding page cannot present it, so any Host may be used.
        if self.token is None and host not in self.allowed_hosts:
            return await _refuse(send, 403, f"Host '{headers.get('host', '')}' is not allowed (DNS-rebinding "
                                            "protection); use the address `cape serve` printed")
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and (origin == "null"
                                       or urlsplit(origin).netloc.lower() != headers.get("host", "").lower()):
                return await _refuse(send, 403, f"requests from origin '{origin}' may not change anything here")
            if headers.get("sec-fetch-site") == "cross-site":
                return await _refuse(send, 403, "cross-site requests may not change anything here")
        set_cookie = False
        if self.token is not None:
            given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
            if given is not None:
                set_cookie = hmac.compare_digest(given, self.token)
            auth = headers.get("authorization", "")
            cookie = SimpleCookie(headers.get("cookie", ""))
            candidates = [given, auth[6:].strip() if auth.lower().startswith("token ") else None,
                          cookie[COOKIE].value if COOKIE in cookie else None]
            if not any(c is not None and hmac.compare_digest(c, self.token) for c in candidates):
                return await _refuse(send, 403, "this server needs its token: open the URL `cape serve` printed "
                                                "(with ?token=...)")
        if not set_cookie:
            return await self.app(scope, receive, send)

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + [
                    (b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode())]
            await send(message)

        return await self.app(scope, receive, send_with_cookie)


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
