"""The JSON API: every analysis at ``GET /api/<name>``, long ones also as jobs with progress
and cancellation (``/api/jobs``), and the panels. Its schema is at ``/openapi.json``.
Results are cached by analysis and validated inputs (seed included): a repeated GET says
``cached: true``, and a job for inputs already computed is answered at once (200, done,
``cached: true``).

Statuses: 200 with the result; 422 when an input is invalid (pydantic's body names the
field); 404 for an unknown panel, family, job or saved result; 400 when the engine refuses
the inputs (the message says why).
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from .. import __version__
from ..analysis.results import jsonable
from ..errors import CapeError
from .analyses import ANALYSES, Analysis, load_frame
from .state import WebState, http_status

__all__ = ["router", "json_response"]

router = APIRouter(prefix="/api")


def json_response(payload: Any, status_code: int = 200) -> JSONResponse:
    """JSON with NaN and infinities as null (results keep undefined values as NaN)."""
    return JSONResponse(jsonable(payload), status_code=status_code)


def _state(request: Request) -> WebState:
    return request.app.state.cape


def _raise(exc: BaseException) -> None:
    status = http_status(exc)
    if status == 500:
        raise exc
    raise HTTPException(status_code=status, detail=str(exc)) from None


async def _run(state: WebState, name: str, q: BaseModel) -> JSONResponse:
    try:
        result, cached = await run_in_threadpool(state.compute, name, q)
    except CapeError as exc:
        _raise(exc)
    return json_response({"analysis": name, "params": q.model_dump(mode="json"), "cached": cached,
                          "result": result.to_dict()})


def _endpoint(a: Analysis):
    async def endpoint(request: Request, q: Annotated[a.query, Query()]) -> JSONResponse:
        return await _run(_state(request), a.name, q)

    endpoint.__name__ = "get_" + a.name.replace("-", "_")
    endpoint.__doc__ = a.title + "."
    return endpoint


for _a in ANALYSES.values():
    router.add_api_route(f"/{_a.name}", _endpoint(_a), methods=["GET"], summary=_a.title,
                         tags=["analyses"], response_class=JSONResponse)


@router.get("/health", tags=["server"], summary="The server is up; CAPE's version")
async def health() -> dict:
    return {"status": "ok", "version": __version__}


@router.get("/analyses", tags=["server"], summary="Every analysis the API offers, with its inputs")
async def analyses() -> list[dict]:
    return [{"name": a.name, "title": a.title, "long": a.long, "url": f"/api/{a.name}",
             "inputs": a.query.model_json_schema()["properties"]} for a in ANALYSES.values()]


# ------------------------------------------------------------------------------ panels
@router.get("/panels", tags=["panels"], summary="Every panel: built-in and stored, with model counts")
async def panels() -> JSONResponse:
    from .. import api

    frame = await run_in_threadpool(api.list_panels)
    return json_response({"panels": frame})


@router.get("/panels/{name}", tags=["panels"], summary="One panel: a row per model, a column per benchmark")
async def panel(name: Annotated[str, Path(max_length=200)],
                family: Annotated[str | None, Query(max_length=500, description="Comma-separated families.")] = None,
                clean: Annotated[bool, Query(description="Resolve flagged data problems.")] = False,
                corrected: Annotated[bool, Query(description="Apply the errata layer.")] = False) -> JSONResponse:
    try:
        frame = await run_in_threadpool(load_frame, name, clean=clean, corrected=corrected, family=family)
    except CapeError as exc:
        _raise(exc)
    meta = frame.attrs.get("cape", {})
    rows = frame.reset_index()
    return json_response({"panel": name, "n_models": int(len(rows)),
                          "families": sorted(set(rows["family"].dropna().astype(str))) if "family" in rows else [],
                          "benchmarks": [c for c in meta.get("variants", {})],
                          "variants": meta.get("variants", {}), "models": rows})


# ------------------------------------------------------------------------------ jobs
class JobRequest(BaseModel):
    analysis: Literal[tuple(ANALYSES)] = Field(..., description="Which analysis (see /api/analyses).")  # type: ignore[valid-type]
    params: dict[str, Any] = Field(default_factory=dict, description="Its inputs, as for GET /api/<analysis>.")


def _job_payload(state: WebState, job) -> dict:
    out = job.to_dict()
    out["url"] = f"/api/jobs/{job.id}"
    if job.status == "done":
        result = state.cache.get(job.key)
        out["result"] = result.to_dict() if result is not None else None
    if job.status == "failed":
        out["error_status"] = job.error_status or 500
    return out


@router.post("/jobs", tags=["jobs"], status_code=202,
             summary="Start an analysis in the background; poll its progress, cancel it with DELETE")
async def start_job(request: Request, body: Annotated[JobRequest, Body()]) -> JSONResponse:
    state = _state(request)
    try:
        q = state.inputs(body.analysis, body.params)
    except ValidationError as exc:
        detail = [{**{k: v for k, v in e.items() if k in ("type", "msg")},
                   "loc": ["body", "params", *e.get("loc", ())]} for e in exc.errors()]
        return json_response({"detail": detail}, 422)
    job = state.start(body.analysis, q)
    return json_response(_job_payload(state, job), 200 if job.status == "done" else 202)


@router.get("/jobs/{job_id}", tags=["jobs"], summary="A job's status and progress (and its result when done)")
async def get_job(request: Request, job_id: Annotated[str, Path(max_length=64)]) -> JSONResponse:
    state = _state(request)
    job = state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job '{job_id}'")
    return json_response(_job_payload(state, job))


@router.delete("/jobs/{job_id}", tags=["jobs"], summary="Cancel a job (it stops at its next step)")
async def cancel_job(request: Request, job_id: Annotated[str, Path(max_length=64)]) -> JSONResponse:
    state = _state(request)
    job = state.jobs.cancel(job_id)
    if job is None:
        raise HTTPException(404, f"no job '{job_id}'")
    return json_response(_job_payload(state, job))
