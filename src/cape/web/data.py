"""The Data page and the upload API: the panels, a panel's rows, and storing a results file.

An upload goes through exactly what ``cape ingest`` does: the file is written to a fresh
temporary folder under its own (sanitised) name, read and checked completely by
:func:`cape.api.read_results`, and only then stored with :meth:`cape.store.Store.ingest`
in one transaction (all or nothing). The temporary folder is always removed. A file the
importer refuses is a 400 whose message names the file, row and field; an oversized one a
413 (the limit, :data:`MAX_UPLOAD_BYTES`, is enforced while the request body streams in);
a missing or invalid field a 422 naming it. Nothing is stored from a rejected upload.

- ``POST /api/upload`` (multipart/form-data: ``file``, ``panel`` and the options of
  ``cape ingest``): the ingest report as JSON.
- ``GET /api/data/formats``: the formats an upload may be in (from the importers).
- ``GET /data``: every panel; ``?panel=NAME`` that panel's rows; the upload form.
- ``POST /data/upload``: the same upload from the page's form, answered with a page.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.datastructures import UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

from .. import api
from ..errors import CapeError
from ..panels import is_builtin
from ..schema import KINDS
from ..store import PANEL_NAME
from ..units import UNITS
from .layout import checkbox, esc, field as input_field, form, notice, page, select, table, url

__all__ = ["router", "MAX_UPLOAD_BYTES", "UploadOptions", "safe_filename", "upload_formats"]

log = logging.getLogger("cape.web")

#: Largest file an upload may carry (bytes). Larger files: ``cape ingest FILE --panel NAME``.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Room for the form's other fields and the multipart framing on top of the file.
FORM_OVERHEAD_BYTES = 64 * 1024
_CHUNK = 64 * 1024
#: Uploads are stored one at a time (SQLite has one writer; a second waits for the first).
_INGEST_LOCK = threading.Lock()

router = APIRouter()


# ----------------------------------------------------------------------------- inputs
class UploadOptions(BaseModel):
    """The fields of an upload besides the file: the options of ``cape ingest``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    panel: str = Field(..., min_length=1, max_length=200, pattern=PANEL_NAME.pattern,
                       description="Panel to store the results in (created if new; a built-in panel is "
                                   "read-only). Letters, digits, '.', '_' and '-', starting with a letter or digit.")
    family: Optional[str] = Field(None, max_length=200, description="Family for models that do not say.")
    units: Optional[Literal[UNITS]] = Field(  # type: ignore[valid-type]
        None, description="Score units when a table's cannot be told.")
    kind: Optional[Literal[KINDS]] = Field(  # type: ignore[valid-type]
        None, description="Kind for models that do not say.")
    source: Optional[str] = Field(None, max_length=500,
                                  description="Citation recorded on every score (default: the file name).")
    model: Optional[str] = Field(None, max_length=300,
                                 description="Model id for lm-eval results files that name a local path or no model.")
    replace: bool = Field(False, description="Overwrite values of this panel that differ.")
    skip_unknown: bool = Field(False, description="Skip benchmarks CAPE does not know instead of refusing the file.")
    strict: bool = Field(False, description="Refuse scores that --clean would drop (e.g. lm-eval --limit runs).")
    dry_run: bool = Field(False, description="Check everything and report, store nothing.")

    @field_validator("family", "units", "kind", "source", "model", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("panel")
    @classmethod
    def _own_panel(cls, v: str) -> str:
        if is_builtin(v):
            raise ValueError(f"'{v}' is a built-in panel and read-only; upload into a panel of your own")
        return v


@dataclass(eq=False)
class UploadError(Exception):
    """A refused upload: its HTTP status, a one-line message (or, for a 422, pydantic-style
    entries naming the fields) and the importer's errors with file, row and field. ``values``
    are the fields as sent, to fill the form again."""

    status: int
    detail: Any
    errors: list[dict] = field(default_factory=list)
    values: dict = field(default_factory=dict)

    def messages(self) -> list[str]:
        if isinstance(self.detail, list):  # a 422: pydantic-style entries
            return [_field_message(e) for e in self.detail]
        return [e["message"] for e in self.errors] or [str(self.detail)]

    def body(self) -> dict:
        out: dict[str, Any] = {"detail": self.detail}
        if self.errors:
            out["errors"] = self.errors
        return out


def _field_message(e: dict) -> str:
    loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
    msg = re.sub(r"^Value error, ", "", str(e.get("msg", "invalid")))
    return f"{loc}: {msg}" if loc else msg


def _invalid(name: str, msg: str, value: Any = None, type_: str = "value_error") -> UploadError:
    return UploadError(422, [{"type": type_, "loc": ["body", name], "msg": msg, "input": value}])


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB" if n >= 1024 * 1024 else f"{n / 1024:g} KiB" if n >= 1024 else f"{n} bytes"


def _too_large() -> UploadError:
    return UploadError(413, f"the file is larger than the upload limit of {_size(MAX_UPLOAD_BYTES)}; "
                            "store a larger file with `cape ingest FILE --panel NAME`")


def safe_filename(name: str | None) -> str:
    """The upload's file name reduced to a plain name that stays inside a folder: the last
    path component (either slash), no leading dots or spaces, no control or unusual
    characters, at most 200 characters (keeping the suffix, which tells the format)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^A-Za-z0-9._+()\- ]", "_", base).strip().lstrip(". ")
    if len(base) > 200:
        stem, dot, suffix = base.rpartition(".")
        base = (stem[: 199 - len(suffix)] + dot + suffix) if dot and len(suffix) <= 16 else base[:200]
    return base or "upload"


# ----------------------------------------------------------------------------- receiving
async def _limited(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The request body, stopped with a 413 as soon as it exceeds ``limit`` bytes."""
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise _too_large()
        yield chunk


@dataclass
class _Upload:
    options: UploadOptions
    folder: Path
    path: Path
    name: str


async def _receive(request: Request) -> _Upload:
    """Parse the multipart body (bounded), validate the fields and write the file into a new
    temporary folder. The caller removes ``folder``."""
    ctype = request.headers.get("content-type", "").lower()
    multipart = ctype.startswith("multipart/form-data")
    if not multipart and not ctype.startswith("application/x-www-form-urlencoded"):
        raise _invalid("file", "send the file and the fields as multipart/form-data", ctype or None, "missing")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise UploadError(400, f"Content-Length '{length}' is not a number")
        if int(length) > MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES:
            raise _too_large()
    try:
        if multipart:
            body = _limited(request, MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES)
            formdata = await MultiPartParser(request.headers, body, max_files=1, max_fields=32,
                                             max_part_size=8 * 1024).parse()
        else:  # fields without a file: checked, so that every problem is named at once
            formdata = await FormParser(request.headers, _limited(request, FORM_OVERHEAD_BYTES),
                                        max_fields=32).parse()
    except MultiPartException as exc:
        raise UploadError(400, f"the upload is not a valid multipart form: {exc.message}") from None
    try:
        fields = {k: v for k, v in formdata.multi_items() if k != "file"}
        if any(isinstance(v, UploadFile) for v in fields.values()):
            bad = next(k for k, v in fields.items() if isinstance(v, UploadFile))
            raise _invalid(bad, "unexpected file; send the results file as the field 'file'", None, "extra_forbidden")
        values = {k: v for k, v in fields.items() if isinstance(v, str)}
        upload = formdata.get("file")
        detail = [] if isinstance(upload, UploadFile) else _invalid(
            "file", "Field required: send the results file as a file part named 'file'", None, "missing").detail
        try:
            options = UploadOptions.model_validate(fields)
        except ValidationError as exc:
            detail = [{"type": e["type"], "loc": ["body", *e.get("loc", ())], "msg": e["msg"],
                       "input": e.get("input")} for e in exc.errors(include_url=False)] + detail
        if detail:
            raise UploadError(422, detail, values=values)
        name = safe_filename(upload.filename)
        folder = Path(tempfile.mkdtemp(prefix="cape-upload-"))
        try:
            path = folder / name
            if path.resolve().parent != folder.resolve():  # cannot happen after safe_filename
                raise _invalid("file", "the file name is not allowed", upload.filename)
            written = 0
            with open(path, "xb") as out:
                while chunk := await upload.read(_CHUNK):
                    written += len(chunk)
                    if written > MAX_UPLOAD_BYTES:
                        raise _too_large()
                    out.write(chunk)
            if written == 0:
                raise _invalid("file", f"the file '{name}' is empty", name)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return _Upload(options, folder, path, name)
    finally:
        await formdata.close()


# ----------------------------------------------------------------------------- storing
def _scrub(text: str, folder: Path) -> str:
    """A message without the temporary folder: the file is named as it was uploaded."""
    return text.replace(str(folder) + os.sep, "").replace(str(folder), "")


def _error_entry(exc: CapeError, folder: Path) -> dict:
    loc = getattr(exc, "location", None)
    return {"message": _scrub(str(exc), folder),
            "file": _scrub(loc.file, folder) if loc is not None and loc.file is not None else None,
            "row": loc.row if loc is not None else None,
            "field": loc.field if loc is not None else None}


def _ingest(up: _Upload) -> dict:
    """Read and check the whole file, then store it in one transaction (as ``cape ingest``)."""
    from ..store import Store

    o, folder = up.options, up.folder
    try:
        result = api.read_results([up.path], units=o.units, source=o.source, family=o.family, kind=o.kind,
                                  skip_unknown=o.skip_unknown, strict=o.strict, model=o.model)
    except CapeError as exc:
        raise UploadError(400, _scrub(str(exc), folder), [_error_entry(exc, folder)]) from None
    except Exception as exc:  # an importer tripping over odd bytes: say so, never a 500
        log.exception("importer failed on an uploaded file %s", up.name)
        message = (f"{up.name}: CAPE could not read this file ({type(exc).__name__}: "
                   f"{_scrub(str(exc), folder)})")
        raise UploadError(400, message, [{"message": message, "file": up.name, "row": None, "field": None}]) from None
    try:
        with _INGEST_LOCK:
            store = Store()
            try:
                report = store.ingest(result.dataset, o.panel, replace=o.replace, dry_run=o.dry_run)
            finally:
                store.close()
    except CapeError as exc:
        raise UploadError(400, _scrub(str(exc), folder), [_error_entry(exc, folder)]) from None
    ds = result.dataset
    return report.to_dict() | {
        "file": up.name, "files": [_scrub(f, folder) for f in result.files],
        "formats": {_scrub(k, folder): v for k, v in result.formats.items()},
        "models": len(ds.models), "scores": len(ds.scores),
        "skipped": [_scrub(s, folder) for s in result.skipped],
        "unregistered": {k: _scrub(v, folder) for k, v in result.unregistered.items()},
        "database": store.location, "url": url("/data", {"panel": o.panel})}


async def _upload(request: Request) -> tuple[dict | None, UploadError | None, dict]:
    """The whole upload: (result, None, fields) or (None, error, fields); never raises a
    CapeError. ``fields`` are the options as sent, to fill the form again."""
    try:
        up = await _receive(request)
    except UploadError as exc:
        return None, exc, exc.values
    try:
        result = await run_in_threadpool(_ingest, up)
    except UploadError as exc:
        return None, exc, up.options.model_dump()
    finally:
        shutil.rmtree(up.folder, ignore_errors=True)
    if not up.options.dry_run:
        request.app.state.cape.invalidate()  # cached results may rest on stored panels
    return result, None, up.options.model_dump()


def _upload_openapi() -> dict:
    props = {"file": {"type": "string", "format": "binary",
                      "description": f"The results file (at most {_size(MAX_UPLOAD_BYTES)})."}}
    schema = UploadOptions.model_json_schema()
    props.update(schema["properties"])
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", *schema.get("required", [])], "properties": props}}}},
        "responses": {"400": {"description": "The importer refused the file (detail and errors name file, "
                                             "row and field); nothing was stored."},
                      "413": {"description": "The file is larger than the upload limit."},
                      "422": {"description": "A field is missing or invalid."}}}


@router.post("/api/upload", tags=["data"], openapi_extra=_upload_openapi(),
             summary="Store a results file in a panel, checked completely first (as `cape ingest`)")
async def upload_api(request: Request) -> JSONResponse:
    """Read a CSV/TSV/Parquet/JSON table, lm-eval, lighteval, Open LLM Leaderboard or Epoch
    AI results file with CAPE's importers and store it in ``panel`` in one transaction.

    200: the ingest report (``panel``, ``panel_created``, ``models_added``, ``scores_added``...),
    with ``models`` and ``scores`` read from the file. 400: the file was refused
    (``detail``, and ``errors`` with ``file``, ``row``, ``field``); 413: too large;
    422: a missing or invalid field. Nothing is stored from a refused file.
    """
    result, error, _ = await _upload(request)
    if error is not None:
        return JSONResponse(error.body(), status_code=error.status)
    return JSONResponse(result)


# ----------------------------------------------------------------------------- formats
def upload_formats() -> dict:
    """The formats an upload may be in: the file suffixes the importers take and their own
    list of formats (the bullets of :mod:`cape.io`'s documentation)."""
    from .. import io as cape_io
    from ..io.tables import TABLE_SUFFIXES

    doc = cape_io.__doc__ or ""
    bullets = re.findall(r"^\* (.+?)(?=^\* |^\S|\Z)", doc, flags=re.M | re.S)
    clean = [" ".join(re.sub(r"\s*\(:mod:`[^`]+`\)", "", b.replace("``", "")).split()).rstrip(";.")
             for b in bullets]
    return {"suffixes": sorted(TABLE_SUFFIXES), "formats": clean, "units": list(UNITS), "kinds": list(KINDS),
            "max_upload_bytes": MAX_UPLOAD_BYTES,
            "note": "one file per upload; folders (HELM runs, a folder of lm-eval results) are read by "
                    "`cape ingest` only"}


@router.get("/api/data/formats", tags=["data"], summary="The file formats an upload may be in, and the size limit")
async def formats_api() -> JSONResponse:
    return JSONResponse(upload_formats())


# ----------------------------------------------------------------------------- the page
_INTRO = ("Every panel CAPE knows: the built-in reference panels and those stored from your files. "
          "Upload a results file to store it in a panel of your own; it is read and checked completely "
          "first, as <code>cape ingest</code> does, and stored all or nothing.")


def _panels_block(panels) -> str:
    """The panels as a table whose names link to their rows and their families."""
    rows = []
    for r in panels.to_dict("records"):
        name = str(r["name"])
        rows.append(
            "<tr>"
            f"<td><a href='{esc(url('/data', {'panel': name}))}'>{esc(name)}</a></td>"
            f"<td>{esc(str(r.get('title') or ''))}</td>"
            f"<td>{'built-in' if r.get('builtin') else 'stored'}</td>"
            f"<td>{int(r['models']):,}</td><td>{int(r['families']):,}</td><td>{int(r['scores']):,}</td>"
            f"<td>{esc(', '.join(map(str, r.get('benchmarks') or [])))}</td>"
            f"<td><a href='{esc(url('/families', {'panel': name}))}'>families</a> · "
            f"<a href='{esc(url('/data', {'panel': name}))}'>rows</a> · "
            f"<a href='{esc('/api/panels/' + name)}'>JSON</a></td></tr>")
    head = "".join(f"<th scope='col'>{h}</th>" for h in
                   ("Panel", "Title", "Kind", "Models", "Families", "Scores", "Benchmarks", "Open"))
    return ("<section aria-labelledby='h-panels'><h2 id='h-panels'>Panels</h2>"
            + _filter("panels", "Filter panels") +
            f"<div class='table-wrap'><table id='panels'><caption>{len(rows)} panels (also at "
            f"<a href='/api/panels'>/api/panels</a>)</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div></section>")


def _filter(table_id: str, label: str) -> str:
    return (f"<div class='field'><label for='filter-{table_id}'>{esc(label)}</label>"
            f"<input id='filter-{table_id}' class='filter' type='search' data-table='{table_id}' "
            f"autocomplete='off'></div>")


def _panel_rows(name: str) -> str:
    wide = api.load_panel(name)
    info = wide.attrs.get("cape", {})
    frame = wide.reset_index()
    frame = frame.loc[:, [c for c in frame.columns if c == "model" or frame[c].notna().any()]]
    body = table(frame, caption=f"{name}: {len(frame)} models, one column per benchmark (percent)")
    body = body.replace("<table>", "<table id='panel-rows'>", 1)
    log_lines = info.get("log") or []
    notes = notice([str(x) for x in log_lines], kind="info", title="Notes") if log_lines else ""
    return (f"<section aria-labelledby='h-rows'><h2 id='h-rows'>Panel {esc(name)}</h2>"
            f"<p><a href='{esc(url('/families', {'panel': name}))}'>Families of this panel</a> · "
            f"<a href='{esc('/api/panels/' + name)}'>as JSON</a> · <a href='/data'>all panels</a></p>"
            + _filter("panel-rows", "Filter rows") + body + notes + "</section>")


def _upload_form(values: dict | None = None) -> str:
    from ..io.tables import TABLE_SUFFIXES

    v = values or {}
    formats = upload_formats()["formats"]
    fields = (
        input_field("file", "Results file", type_="file", required=True,
                    help_=f"CSV, TSV, Parquet or JSON table, lm-eval, lighteval, Open LLM Leaderboard or "
                          f"Epoch AI results; at most {_size(MAX_UPLOAD_BYTES)}.",
                    attrs=f"accept='{esc(','.join(sorted(TABLE_SUFFIXES)))}'")
        + input_field("panel", "Panel", v.get("panel"), required=True,
                      help_="Your panel (created if new): letters, digits, '.', '_', '-'.",
                      attrs="maxlength='200' pattern='[A-Za-z0-9][A-Za-z0-9._\\-]*' autocomplete='off'")
        + input_field("family", "Family", v.get("family"), help_="For models that do not say.",
                      attrs="maxlength='200'")
        + select("units", "Units", [("", "detect"), *((u, u) for u in UNITS)], v.get("units") or "",
                 help_="Score units when a table's cannot be told.")
        + select("kind", "Kind", [("", "as the file says"), *((k, k) for k in KINDS)], v.get("kind") or "",
                 help_="For models that do not say.")
        + input_field("source", "Source", v.get("source"), help_="Citation on every score (default: the file name).",
                      attrs="maxlength='500'")
        + input_field("model", "Model id", v.get("model"),
                      help_="For lm-eval files that name a local path or no model.", attrs="maxlength='300'")
        + checkbox("skip_unknown", "Skip unknown benchmarks", bool(v.get("skip_unknown")))
        + checkbox("replace", "Replace differing values", bool(v.get("replace")))
        + checkbox("strict", "Strict (refuse flagged scores)", bool(v.get("strict")))
        + checkbox("dry_run", "Check only (store nothing)", bool(v.get("dry_run"))))
    listed = "".join(f"<li>{esc(f)}</li>" for f in formats)
    return ("<section aria-labelledby='h-upload'><h2 id='h-upload'>Upload results</h2>"
            + form(fields, action="/data/upload", method="post", submit="Upload and store",
                   label="Upload a results file")
            + f"<details class='numbers'><summary>Formats read</summary><ul>{listed}</ul>"
              "<p class='note'>One file per upload; folders (HELM runs, a folder of lm-eval results) and larger "
              "files: <code>cape ingest PATH --panel NAME</code>. Also at "
              "<a href='/api/data/formats'>/api/data/formats</a>.</p></details></section>")


def _data_page(*, panel: str | None = None, top: str = "", values: dict | None = None) -> tuple[str, int]:
    """The Data page: an optional result block, the selected panel's rows, the panels and
    the upload form; with the HTTP status to send."""
    status = 200
    parts = [top]
    try:
        panels = api.list_panels()
    except CapeError as exc:
        return page("Data", notice(str(exc)), active="/data", intro=_INTRO, needs_plotly=False), 400
    if panel is not None:
        names = [str(n) for n in panels["name"]]
        if panel not in names:
            parts.append(notice(f"no panel named '{panel}' (panels: {', '.join(names)})", title="Unknown panel"))
            status = 404
        else:
            try:
                parts.append(_panel_rows(panel))
            except CapeError as exc:
                parts.append(notice(str(exc), title=f"Could not read panel {panel}"))
                status = 400
    parts.append(_panels_block(panels))
    parts.append(_upload_form(values))
    return page("Data", "".join(parts), active="/data", intro=_INTRO, needs_plotly=False), status


@router.get("/data", response_class=HTMLResponse, include_in_schema=False)
def data_page(panel: Optional[str] = None) -> HTMLResponse:
    body, status = _data_page(panel=panel if panel else None)
    return HTMLResponse(body, status_code=status)


def _result_block(result: dict) -> str:
    verb = "would add" if result["dry_run"] else "added"
    lines = [f"panel {result['panel']}{' (new)' if result['panel_created'] else ''}: read {result['scores']} "
             f"scores of {result['models']} models from {result['file']}; {verb} {result['scores_added']} scores, "
             f"{result['models_added']} models; {result['scores_replaced']} replaced, "
             f"{result['scores_unchanged']} unchanged."]
    if not result["changed"] and not result["dry_run"]:
        lines.append("Nothing changed: the store already holds these values.")
    lines += [f"replaced {r}" for r in result["replaced"][:20]]
    if result["unregistered"]:
        lines.append(f"Kept {len(result['unregistered'])} task(s) CAPE does not know under their own names "
                     f"(flag unregistered): {', '.join(list(result['unregistered'])[:10])}")
    lines += [f"skipped: {s}" for s in result["skipped"][:10]]
    if len(result["skipped"]) > 10:
        lines.append(f"... and {len(result['skipped']) - 10} more skipped")
    title = "Checked, nothing stored (dry run)" if result["dry_run"] else "Stored"
    link = (f"<p><a href='{esc(result['url'])}'>See panel {esc(result['panel'])}</a>"
            f" · <a href='{esc(url('/families', {'panel': result['panel']}))}'>its families</a></p>"
            if not result["dry_run"] or not result["panel_created"] else "")
    return notice(lines, kind="info", title=title) + link


@router.post("/data/upload", response_class=HTMLResponse, include_in_schema=False)
async def upload_page(request: Request) -> HTMLResponse:
    result, error, values = await _upload(request)
    if error is not None:
        title = {413: "The file is too large; nothing was stored",
                 422: "Check the form; nothing was stored"}.get(error.status, "The file was not stored")
        top = notice(error.messages(), title=title)
        body, _ = await run_in_threadpool(_data_page, top=top, values=values)
        return HTMLResponse(body, status_code=error.status)
    body, _ = await run_in_threadpool(_data_page, panel=None if result["dry_run"] and result["panel_created"]
                                      else result["panel"], top=_result_block(result), values=values)
    return HTMLResponse(body, status_code=200)
