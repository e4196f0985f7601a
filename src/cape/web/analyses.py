"""What the dashboard can compute: each analysis once, with its validated inputs.

Every entry of :data:`ANALYSES` pairs a pydantic model of the inputs (bounds and patterns,
so a bad value is a 422 naming the field) with a function that calls CAPE's engine. The
API serves them at ``/api/<name>``, the jobs API runs them with progress, and the pages
draw them: one place per computation, no numbers made here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..analysis.results import Result
from ..errors import CapeError
from ..stats import DEFAULT_BOOTSTRAP

__all__ = ["ANALYSES", "Analysis", "Bundle", "NotFound", "load_frame", "panel_names"]

#: Most resamples a request may ask for: enough for any interval, and a bound on what one
#: request can cost the server.
MAX_RESAMPLES = 20_000
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:+\-]*$"
_PAIR = r"^[A-Za-z0-9_.\-]+:[A-Za-z0-9_.\-]+$"


class NotFound(CapeError):
    """An unknown panel, family or saved result (HTTP 404)."""


@dataclass
class Bundle(Result):
    """Several results shown together (e.g. local and running coupling); a part that could
    not be computed is None with its reason in ``errors``."""

    parts: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in self.parts.items()} | {
            "errors": dict(self.errors)}

    def summary(self) -> str:
        return "\n\n".join([v.summary() for v in self.parts.values() if hasattr(v, "summary")]
                           + [f"{k}: {e}" for k, e in self.errors.items()])


# ------------------------------------------------------------------------------ inputs
class _Q(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class PanelQ(_Q):
    panel: str = Field("paper-base", max_length=200, pattern=_NAME, description="Panel name (see /api/panels).")
    clean: bool = Field(False, description="Resolve flagged data problems (see `cape flags`).")
    corrected: bool = Field(False, description="Apply the panel's errata layer.")


class PairQ(PanelQ):
    pair: Optional[str] = Field(None, max_length=200, pattern=_PAIR,
                                description="Two benchmarks as A:B (default hellaswag:truthfulqa).")


class ResampleQ(_Q):
    resamples: int = Field(DEFAULT_BOOTSTRAP, ge=100, le=MAX_RESAMPLES, description="Bootstrap resamples.")
    level: float = Field(0.95, gt=0.5, lt=1.0, description="Confidence level of intervals.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed for resampling.")


class CouplingQ(PairQ, ResampleQ):
    family: Optional[str] = Field(None, max_length=500, description="Comma-separated families (default: all).")


class GammaQ(CouplingQ):
    guard: float = Field(0.5, ge=0, le=50, description="Drop intervals with |dA| below this many points.")


class NcQ(PairQ, ResampleQ):
    panel: str = Field("paper-nc", max_length=200, pattern=_NAME, description="Panel name.")
    guard: float = Field(0.5, ge=0, le=50, description="Guard of the interval couplings.")


class OverviewQ(PairQ, ResampleQ):
    pass


def _finite(v: float | None, name: str) -> float | None:
    if v is not None and not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number")
    return v


def _calendar_date(v: str | None, *, release: bool) -> str | None:
    """A date that exists (the pattern lets '0000' and '2024-02-30' through): a 422 naming
    the field rather than the engine's error on year 0."""
    if v is None:
        return v
    import datetime as _dt

    from ..units import date_range

    try:
        if release:
            date_range(v)
        else:
            _dt.date.fromisoformat(v)
    except (CapeError, ValueError):
        raise ValueError(f"'{v}' is not a calendar date") from None
    return v


class PhaseQ(PairQ, ResampleQ):
    params: float = Field(..., gt=1e6, lt=1e13, description="Parameter count, e.g. 7e9.")
    hellaswag: float = Field(..., ge=0, le=100, description="HellaSwag score (percent).")
    truthfulqa: float = Field(..., ge=0, le=100, description="TruthfulQA score (percent).")
    family: Optional[str] = Field(None, max_length=200, description="The model's family, if in the panel.")


class AdviseQ(PanelQ):
    panel: str = Field("openllm-v1-base", max_length=200, pattern=_NAME, description="Panel to compare against.")
    family: Optional[str] = Field(None, max_length=200, description="Advise a family of the panel.")
    params: Optional[float] = Field(None, gt=1e6, lt=1e13, description="The model's parameter count.")
    hellaswag: Optional[float] = Field(None, ge=0, le=100, description="Its HellaSwag score (percent).")
    truthfulqa: Optional[float] = Field(None, ge=0, le=100, description="Its TruthfulQA score (percent).")
    d_model: Optional[float] = Field(None, ge=1, le=1e6, description="Its hidden width.")
    resamples: int = Field(2000, ge=100, le=MAX_RESAMPLES, description="Bootstrap resamples and null draws.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed.")


class WidthQ(PairQ):
    panel: str = Field("paper-pythia", max_length=200, pattern=_NAME, description="Panel name.")
    draws: int = Field(DEFAULT_BOOTSTRAP, ge=100, le=MAX_RESAMPLES, description="Null draws.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed.")


class EigenQ(PanelQ, ResampleQ):
    benchmarks: Optional[str] = Field(None, max_length=1000, description="Comma-separated benchmarks (default all).")
    matrix: Literal["correlation", "covariance"] = Field("correlation", description="Matrix to decompose.")
    phase: Optional[Literal["tax", "bonus"]] = Field(None, description="Models below (tax) or above (bonus) N_c.")


class CrossvalQ(PanelQ):
    panel: str = Field("paper-nc", max_length=200, pattern=_NAME, description="Panel name.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed.")


class PredictQ(PanelQ):
    panel: str = Field("paper-nc", max_length=200, pattern=_NAME, description="Panel name.")
    family: str = Field(..., min_length=1, max_length=200, description="The family to predict from its smallest model.")
    degree: int = Field(1, ge=1, le=3, description="Polynomial degree of the ODE's candidate terms (1: linear; "
                                                   "2 needs more points per equation than small panels have).")


class FrontierQ(PairQ):
    panel: str = Field("paper-frontier", max_length=200, pattern=_NAME, description="Panel name.")
    subset: Literal["published", "core", "all"] = Field("published", description="Models the line is fitted on.")


class FrontierResampleQ(FrontierQ, ResampleQ):
    pass


class ReleaseQ(FrontierQ):
    swe: float = Field(..., ge=0, le=100, description="The release's SWE-bench Verified score (percent).")
    gpqa: float = Field(..., ge=0, le=100, description="Its GPQA Diamond score (percent).")
    lab: Optional[str] = Field(None, max_length=100, description="Its lab.")
    date: Optional[str] = Field(None, pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$", description="Release date YYYY[-MM[-DD]].")
    level: float = Field(0.95, gt=0.5, lt=1.0, description="Level of the prediction interval.")

    @field_validator("date")
    @classmethod
    def _real_date(cls, v: str | None) -> str | None:
        return _calendar_date(v, release=True)


class SaturationQ(FrontierResampleQ):
    subset: Literal["published", "core", "all"] = Field("all", description="Models considered.")
    top: int = Field(5, ge=2, le=50, description="Top-k models per benchmark.")


class PredictionsQ(_Q):
    panel: str = Field("paper-frontier", max_length=200, pattern=_NAME, description="Panel name.")
    corrected: bool = Field(False, description="Apply the panel's errata layer.")
    as_of: Optional[str] = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="Evaluate as of this date.")

    @field_validator("as_of")
    @classmethod
    def _real_date(cls, v: str | None) -> str | None:
        return _calendar_date(v, release=False)


class AuditQ(_Q):
    resamples: int = Field(DEFAULT_BOOTSTRAP, ge=100, le=MAX_RESAMPLES, description="Bootstrap resamples.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed.")
    replication: bool = Field(True, description="Add the independent replication on openllm-v1-base.")


class ReplicationQ(PairQ, ResampleQ):
    panel: str = Field("openllm-v1-base", max_length=200, pattern=_NAME, description="Panel name.")


# ------------------------------------------------------------------------------ frames
def panel_names() -> list[str]:
    from ..panels import BUILTIN_PANELS
    from ..store import Store

    try:
        store = Store.existing(None)
    except CapeError:
        store = None
    return list(BUILTIN_PANELS) + (store.panel_names() if store is not None else [])


def load_frame(panel: str, *, clean: bool = False, corrected: bool = False, family: str | None = None):
    """The wide panel frame, with a 404 for an unknown panel or family."""
    from .. import api

    names = panel_names()
    if panel not in names:
        raise NotFound(f"no panel named '{panel}' (panels: {', '.join(names)})")
    frame = api.load_panel(panel, clean=clean, corrected=corrected)
    if family:
        wanted = [f.strip() for f in family.split(",") if f.strip()]
        require_families(frame, panel, wanted)
        frame = api.load_panel(panel, clean=clean, corrected=corrected, family=wanted)
    return frame


def require_families(frame, panel: str, wanted: list[str]) -> None:
    """A 404 (NotFound) naming the families of ``wanted`` that ``frame`` lacks."""
    known = set(frame["family"].dropna().astype(str)) if "family" in frame else set()
    missing = [f for f in wanted if f not in known]
    if missing:
        raise NotFound(f"panel '{panel}' has no family {', '.join(repr(m) for m in missing)} "
                       f"(families: {', '.join(sorted(known))})")


# ------------------------------------------------------------------------------ computations
def _coupling(q: CouplingQ, progress):
    from ..analysis import family_coupling

    return family_coupling(load_frame(q.panel, clean=q.clean, corrected=q.corrected, family=q.family), q.pair,
                           n_bootstrap=q.resamples, level=q.level, seed=q.seed, progress=progress)


def _gamma(q: GammaQ, progress):
    from ..analysis import local_coupling, running_coupling

    lc = local_coupling(load_frame(q.panel, clean=q.clean, corrected=q.corrected, family=q.family), q.pair,
                        guard=q.guard)
    out = Bundle(parts={"local": lc})
    try:
        out.parts["running"] = running_coupling(lc, n_resamples=q.resamples, level=q.level, seed=q.seed,
                                                progress=progress)
    except CapeError as exc:
        out.errors["running"] = str(exc)
    return out


def _nc(q: NcQ, progress):
    from ..analysis import critical_scale

    return critical_scale(load_frame(q.panel, clean=q.clean, corrected=q.corrected), q.pair,
                          n_resamples=q.resamples, level=q.level, guard=q.guard, seed=q.seed, progress=progress)


def _overview(q: OverviewQ, progress):
    """The phase map's inputs: pair data, running coupling and N_c on one panel."""
    from ..analysis import critical_scale, pair_data, running_coupling

    frame = load_frame(q.panel, clean=q.clean, corrected=q.corrected)
    out = Bundle(parts={"data": pair_data(frame, q.pair)})
    for name, fn in (("running", lambda: running_coupling(frame, q.pair, n_resamples=q.resamples, level=q.level,
                                                          seed=q.seed)),
                     ("nc", lambda: critical_scale(frame, q.pair, n_resamples=q.resamples, level=q.level,
                                                   seed=q.seed, progress=progress))):
        try:
            out.parts[name] = fn()
        except CapeError as exc:
            out.errors[name] = str(exc)
    return out


def _phase(q: PhaseQ, progress):
    from ..analysis import phase_of_model
    from ..analysis.data import parse_pair

    pair = parse_pair(q.pair)
    scores = {"hellaswag": q.hellaswag, "truthfulqa": q.truthfulqa}
    if set(pair) != set(scores):
        raise CapeError(f"the analyze form takes HellaSwag and TruthfulQA; pair {q.pair} is not that pair")
    return phase_of_model(load_frame(q.panel, clean=q.clean, corrected=q.corrected), q.params,
                          scores[pair[0]], scores[pair[1]], pair=pair, family=q.family or None,
                          n_resamples=q.resamples, level=q.level, seed=q.seed)


def _advise(q: AdviseQ, progress):
    from ..analysis.advise import advise

    if q.family is None and q.params is None:
        raise CapeError("give a family of the panel, or the model's params with its HellaSwag and TruthfulQA")
    scores = {k: v for k, v in (("hellaswag", q.hellaswag), ("truthfulqa", q.truthfulqa)) if v is not None}
    frame = load_frame(q.panel, clean=q.clean, corrected=q.corrected)
    if q.family:
        require_families(frame, q.panel, [q.family])   # a 404 for an unknown family, as elsewhere
    return advise(frame, family=q.family or None,
                  params=q.params if q.family is None else None, scores=scores or None, d_model=q.d_model,
                  n_resamples=q.resamples, seed=q.seed)


def _width(q: WidthQ, progress):
    from ..analysis import width_normalization

    return width_normalization(load_frame(q.panel, clean=q.clean, corrected=q.corrected), q.pair,
                               n_null=q.draws, seed=q.seed)


def _eigen(q: EigenQ, progress):
    from ..analysis import eigenstructure

    return eigenstructure(load_frame(q.panel, clean=q.clean, corrected=q.corrected), q.benchmarks,
                          matrix=q.matrix, phase=q.phase, n_resamples=q.resamples, level=q.level, seed=q.seed,
                          progress=progress)


def _crossval(q: CrossvalQ, progress):
    from ..analysis import dynamics as dy

    return dy.crossval(load_frame(q.panel, clean=q.clean, corrected=False), seed=q.seed, progress=progress)


def _predict(q: PredictQ, progress):
    from ..analysis import dynamics as dy

    load_frame(q.panel, family=q.family)   # a 404 for an unknown family
    return dy.predict_family(load_frame(q.panel, clean=q.clean), q.family, degree=q.degree)


def _frame_f(q):
    return load_frame(q.panel, clean=q.clean, corrected=q.corrected)


def _fit(q: FrontierResampleQ, progress):
    from ..analysis import frontier as fr

    return fr.population_fit(_frame_f(q), q.pair, subset=q.subset, n_bootstrap=q.resamples, level=q.level,
                             seed=q.seed, progress=progress)


def _hfield(q: FrontierQ, progress):
    from ..analysis import frontier as fr

    return fr.hfield(_frame_f(q), q.pair, subset=q.subset)


def _labs(q: FrontierResampleQ, progress):
    from ..analysis import frontier as fr

    return fr.labs(_frame_f(q), q.pair, subset=q.subset, n_resamples=q.resamples, level=q.level, seed=q.seed)


def _fdynamics(q: FrontierQ, progress):
    from ..analysis import frontier as fr

    return fr.lab_dynamics(_frame_f(q), q.pair, subset=q.subset)


def _release(q: ReleaseQ, progress):
    from ..analysis import frontier as fr

    return fr.new_release(_frame_f(q), q.swe, q.gpqa, lab=q.lab or None, date=q.date or None, pair=q.pair,
                          subset=q.subset, level=q.level)


def _saturation(q: SaturationQ, progress):
    from ..analysis.saturation import saturation

    return saturation(_frame_f(q), top_k=q.top, subset=q.subset, n_resamples=q.resamples, level=q.level,
                      seed=q.seed)


def _predictions(q: PredictionsQ, progress):
    from ..predictions import evaluate_predictions

    return evaluate_predictions(load_frame(q.panel, corrected=q.corrected), as_of=q.as_of)


def _audit(q: AuditQ, progress):
    from ..audit import REPLICATION_PANEL, run_audit

    return run_audit(seed=q.seed, n_resamples=q.resamples, replication=REPLICATION_PANEL if q.replication else None,
                     progress=progress)


def _replication(q: ReplicationQ, progress):
    from ..analysis import replication

    return replication(load_frame(q.panel, clean=q.clean, corrected=q.corrected), q.pair, n_resamples=q.resamples,
                       level=q.level, seed=q.seed, progress=progress)


@dataclass(frozen=True)
class Analysis:
    """One computation the dashboard offers: ``compute(inputs, progress)`` -> a result."""

    name: str
    query: type[BaseModel]
    compute: Callable[[Any, Callable[[int, int], None]], Any]
    title: str
    long: bool = False       # pages run it as a job with a progress bar when it is not cached


ANALYSES: dict[str, Analysis] = {a.name: a for a in [
    Analysis("coupling", CouplingQ, _coupling, "Within-family coupling: r, permutation p, bootstrap CI, per family"),
    Analysis("gamma", GammaQ, _gamma, "Local coupling gamma per interval and the running coupling gamma(N)"),
    Analysis("nc", NcQ, _nc, "The critical scale N_c by five estimators, with intervals"),
    Analysis("overview", OverviewQ, _overview, "Phase map inputs: the panel's pairs, running coupling and N_c"),
    Analysis("phase", PhaseQ, _phase, "Phase of one model: predictive probabilities, gamma, h(D), nearest models"),
    Analysis("advise", AdviseQ, _advise, "Which levers the data support for one model or family (cape advise)",
             long=True),
    Analysis("width", WidthQ, _width, "Width normalization against its null"),
    Analysis("eigen", EigenQ, _eigen, "Eigen spectrum, loadings and d_eff of the benchmark matrix"),
    Analysis("crossval", CrossvalQ, _crossval, "Scaling dynamics: held-out cross-validation against baselines",
             long=True),
    Analysis("predict", PredictQ, _predict, "Scaling dynamics: a family predicted from its smallest model"),
    Analysis("frontier-fit", FrontierResampleQ, _fit, "Frontier population line with intervals"),
    Analysis("hfield", FrontierQ, _hfield, "h-field: each release's residual from the line"),
    Analysis("labs", FrontierResampleQ, _labs, "Labs: mean h, within-lab slopes, leave-one-lab-out"),
    Analysis("frontier-dynamics", FrontierQ, _fdynamics, "Lab trajectories release by release"),
    Analysis("release", ReleaseQ, _release, "A hypothetical release: predicted score, h and its interval"),
    Analysis("saturation", SaturationQ, _saturation, "Top-k spreads against binomial noise floors"),
    Analysis("predictions", PredictionsQ, _predictions, "Paper B's falsifiable predictions, evaluated"),
    Analysis("audit", AuditQ, _audit, "The claims audit with the independent replication", long=True),
    Analysis("replication", ReplicationQ, _replication, "Independent replication of the phase picture", long=True),
]}
