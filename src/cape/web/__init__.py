"""The dashboard: ``cape serve``, a local web app and JSON API over the same engine.

Every number a page shows comes from CAPE's analyses through :mod:`cape.web.analyses`
(the same functions the CLI and the report call), and anything a page shows can be had
from the API (``/api/<analysis>``, schema at ``/openapi.json``).

- :mod:`.app`: :func:`create_app`, static files, error handling.
- :mod:`.security`: Host allowlist, same-origin rule for state-changing requests, token.
- :mod:`.analyses`: each analysis's validated inputs and the call into the engine.
- :mod:`.state`, :mod:`.jobs`: the result cache and background jobs (progress, cancel).
- :mod:`.api`: the JSON API. :mod:`.layout`, :mod:`.pages`: server-rendered pages.
- :mod:`.steering`: the steering page and API. :mod:`.data`: panels and uploads.

>>> from cape.web import create_app
>>> app = create_app()           # serve with uvicorn, or run `cape serve`
"""

from .app import create_app

__all__ = ["create_app"]
