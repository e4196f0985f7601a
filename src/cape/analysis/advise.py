"""Intervention suggestions: which levers the data support for one model or one family.

Four levers are weighed, each with the numbers behind it and a strength label:

1. **curation** (data quality): h(D) of the target, the second benchmark (TruthfulQA)
   minus the quadratic in log10 N fitted to the *reference* families (default: every
   family of the panel that is not curated; see :data:`DEFAULT_CURATED`), with a
   bootstrap interval, and the gap to the curated families of similar size (models within
   a factor ``size_window`` of the target's sizes, the target's own family excluded).
   The interval of h comes from one joint bootstrap: the reference curve is refitted on
   resampled reference *families*; a family target's mean h resamples its models; a
   single model's score gets its binomial noise (sd = sqrt(p(1-p)/items)); the curated
   mean resamples curated families (models when there is only one such family).
2. **width** (d_model): :func:`cape.analysis.width.width_normalization` on the target
   family (or on the panel's models with a d_model, for a single model). Dividing two
   series by the same increasing width makes them correlate positively whatever they
   are, so a width effect counts only when r after normalization lies *above* its null
   interval. Beside it: the families whose interval coupling changes sign tax -> bonus
   (within-family, :func:`cape.analysis.nc.family_crossings`) at a size within
   ``size_window`` of the target, and their d_model just above the change.
3. **benchmark rotation**: per benchmark given, the top-``top_k`` spread of the panel
   against its binomial noise floor (:func:`cape.analysis.saturation.saturation`, item
   counts from :mod:`cape.benchmarks`) and whether the target's own score is within noise
   of the panel's top (difference < z x sqrt(SE_model^2 + SE_top^2 / k)).
4. **size**: the verdict of :func:`cape.analysis.replication.replication` on the panel
   (computed here, or passed in). Unless it is "holds", the size lever is refused: the
   data do not support "scale past N_c". When it holds, the target must sit below N_c.

Strength rule (one label per lever, from its evidence; ``supported`` means moderate or
strong; "weak" is stated as suggestive only, "none" as not supported):

- curation: *none* when h is undefined or h >= 0 (the target is not below the curve);
  *weak* when h < 0 but its interval reaches 0, or when the interval is below 0 but the
  curated families of similar size do not sit above the target (gap <= 0);
  *strong* when the interval of h is below 0, the interval of the gap is above 0, and the
  curated comparison rests on at least :data:`STRONG_MIN_MODELS` models of
  :data:`STRONG_MIN_FAMILIES` families; *moderate* otherwise (h's interval below 0 with a
  positive but uncertain, thin or missing curated comparison).
- width: *none* when there is no d_model to work with, fewer than 3 models, or r after
  normalization is not above its null interval (the width "effect" is the division);
  above the null: *strong* with at least 3 crossing families of similar size all wider
  than the target, *moderate* with 1-2 such families, their median width above the
  target's, *weak* otherwise (no crossing family with a known width, or no target width).
- rotation, per benchmark: two conditions, (i) the panel's top-k spread is within its
  binomial noise floor, (ii) the target's score is within noise of the panel's top. Both:
  *strong* with at least :data:`ROTATION_MIN_MODELS` scored models in the panel, else
  *moderate*; one: *weak*; none, or no item count / not in the panel: *none*. The lever
  takes its best benchmark's label.
- size: *none* unless the replication verdict is "holds" and the target (a family: its
  largest model) is below N_c (the N_c the verdict was split at); *strong* when the
  target is below the lower end of N_c's family-bootstrap interval; *weak* when it is
  below N_c but inside that interval (it may already be past N_c) or N_c has no
  interval. (There is no "moderate" for size: N_c's interval decides.)

>>> import cape
>>> from cape.analysis.advise import advise
>>> res = advise(cape.load_panel("paper-base"), family="Phi", n_resamples=200, seed=0)
>>> list(res.table["lever"])
['curation', 'width', 'rotation', 'size']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import stats
from ..benchmarks import BENCHMARKS, suggest, try_resolve
from ..defaults import DEFAULT_CURATED, DEFAULT_RESAMPLES, SIZE_WINDOW
from ..errors import CapeError
from .data import pair_data, resolve_benchmark
from .gamma import DEFAULT_GUARD, local_coupling
from .nc import _quad_finish, _quad_terms, family_crossings, quadratic_coefficients
from .results import Estimate, Result, fmt_num, internal
from .saturation import binomial_se, saturation
from .width import WIDTH_UNIT, width_normalization

__all__ = ["DEFAULT_CURATED", "STRENGTHS", "SIZE_WINDOW", "Lever", "Advice", "advise", "is_curated"]

# DEFAULT_CURATED (the families counted as trained on curated data), SIZE_WINDOW and
# DEFAULT_RESAMPLES are set in cape.defaults (`cape --help` shows them).
#: Strength labels, weakest first. A lever is supported at "moderate" or above.
STRENGTHS = ("none", "weak", "moderate", "strong")
#: The curated comparison counts as strong evidence from this many models ...
STRONG_MIN_MODELS = 5
#: ... of at least this many families.
STRONG_MIN_FAMILIES = 2
#: Rotation is strong evidence when the panel has at least this many scores of the benchmark.
ROTATION_MIN_MODELS = 20

_TABLE_COLUMNS = ["lever", "supported", "strength", "estimate", "value", "ci_low", "ci_high", "level", "n",
                  "unit", "method", "rule", "suggestion"]


@dataclass
class Lever:
    """One lever: whether the data support it, how strongly, the sentence to show, and the
    evidence (estimates with n, method and interval) and rule that gave the label."""

    lever: str
    strength: str
    suggestion: str
    rule: str
    evidence: list[Estimate] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    supported: bool = field(init=False)

    def __post_init__(self) -> None:
        if self.strength not in STRENGTHS:
            raise ValueError(f"unknown strength '{self.strength}'")
        self.supported = STRENGTHS.index(self.strength) >= STRENGTHS.index("moderate")


@dataclass
class Advice(Result):
    """The levers for one target (a model or a family), one row each in ``table``.

    ``levers`` holds each lever's evidence; ``benchmarks`` the rotation numbers per
    benchmark; ``comparators`` the curated models of similar size; ``crossings`` the
    families whose interval coupling changes sign tax -> bonus near the target's size.
    """

    panel: str
    kind: str
    target: str
    family: str | None
    params: float
    params_range: tuple[float, float]
    n_target_models: int
    b1: str
    b2: str
    scores: dict
    d_model: float | None
    curated: list[str]
    reference: dict
    size_window: float
    level: float
    n_resamples: int
    seed: int | None
    levers: list[Lever]
    table: pd.DataFrame
    benchmarks: pd.DataFrame
    comparators: pd.DataFrame
    crossings: pd.DataFrame
    replication_verdict: str | None
    replication_reason: str | None
    notes: list[str] = field(default_factory=list)
    h_distribution: np.ndarray | None = internal(default=None, repr=False)

    def lever(self, name: str) -> Lever:
        for lv in self.levers:
            if lv.lever == name:
                return lv
        raise KeyError(name)

    @property
    def supported(self) -> list[str]:
        return [lv.lever for lv in self.levers if lv.supported]

    def summary(self) -> str:
        lines = [f"Intervention suggestions for {self.target} against {self.panel} ({self.b1} -> {self.b2}; "
                 f"{self.level:.0%} intervals, {self.n_resamples:,} resamples, seed {self.seed})"]
        sup = [f"{lv.lever} ({lv.strength})" for lv in self.levers if lv.supported]
        rest = [f"{lv.lever} ({lv.strength})" for lv in self.levers if not lv.supported]
        lines.append("Supported by the data: " + (", ".join(sup) or "no lever") +
                     ("; not supported: " + ", ".join(rest) if rest else ""))
        for lv in self.levers:
            lines.append(f"- {lv.lever} [{lv.strength}]: {lv.suggestion}")
            lines += [f"    evidence: {e.describe()}" for e in lv.evidence]
            lines.append(f"    rule: {lv.rule}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# ------------------------------------------------------------------------- helpers
def is_curated(family: str, curated: Sequence[str]) -> bool:
    """True when ``family`` equals a curated name or starts with one followed by a non-letter."""
    f = str(family).lower()
    for c in curated:
        c = str(c).strip().lower()
        if c and (f == c or (f.startswith(c) and not f[len(c)].isalpha())):
            return True
    return False


def _check_number(value, name: str, *, positive: bool = False, percent: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise CapeError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(v):
        raise CapeError(f"{name} must be a finite number, not {value!r}")
    if positive and v <= 0:
        raise CapeError(f"{name} must be positive, not {value!r}")
    if percent and not 0 <= v <= 100:
        raise CapeError(f"{name} must be a percentage in [0, 100], not {value!r}")
    return v


def _canonical_scores(scores: Mapping | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in (scores or {}).items():
        hit = try_resolve(str(k))
        if hit is None:
            close = suggest(str(k))
            raise CapeError(f"scores: unknown benchmark '{k}'",
                            hint=f"did you mean '{close}'?" if close else "see `cape benchmarks`")
        out[hit.benchmark] = _check_number(v, f"the {hit.benchmark} score (scores['{k}'])", percent=True)
    return out


def _find_family(families: Sequence[str], name: str, panel: str) -> str:
    fams = list(dict.fromkeys(families))
    if name in fams:
        return name
    low = {f.lower(): f for f in fams}
    if str(name).lower() in low:
        return low[str(name).lower()]
    import difflib

    close = difflib.get_close_matches(str(name), fams, n=3, cutoff=0.5)
    raise CapeError(f"family '{name}' is not in {panel} (field 'family')",
                    hint=f"did you mean {', '.join(close)}?" if close else f"it has: {', '.join(fams)}")


def _ci_text(lo: float, hi: float, signed: bool = True) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "no interval"
    return f"[{lo:+.1f}, {hi:+.1f}]" if signed else f"[{fmt_num(lo)}, {fmt_num(hi)}]"


def _percentile(dist: np.ndarray, value: float, level: float) -> tuple[float, float]:
    d = dist[np.isfinite(dist)]
    if d.size < 2:
        return math.nan, math.nan
    lo, hi, _ = stats.interval(d[:, None], np.array([value]), level=level, method="percentile")
    return float(lo[0]), float(hi[0])


def _weighted_mean(W: np.ndarray, H: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (W * H).sum(axis=1) / W.sum(axis=1)


# ------------------------------------------------------------------------- 1. curation
def _curation(pdat, target: pd.DataFrame, single_score: float | None, family: str | None, curated: list[str],
              curated_names: Sequence[str], reference_families, window: float, n_resamples: int, level: float, rng) -> tuple[Lever, pd.DataFrame, dict, np.ndarray]:
    f = pdat.frame
    fams = pdat.families()
    if reference_families is None:
        ref = [x for x in fams if x not in curated]
        which = "every non-curated family of the panel"
    else:
        ref = [_find_family(fams, r, pdat.panel) for r in reference_families]
        which = "the families given"
    rf = f[f["family"].isin(ref)]
    method = f"{pdat.b2} minus the quadratic in log10 N of {len(ref)} reference families ({which})"
    reference = {"families": ref, "which": which, "n_models": int(len(rf)), "a": math.nan, "b": math.nan,
                 "c": math.nan}
    empty_cmp = pd.DataFrame(columns=["model", "family", "params", pdat.b2, "h"])
    if rf["x"].nunique() < 3:
        note = (f"the reference curve needs 3+ distinct sizes; the reference families have {rf['x'].nunique()}: "
                "h(D) is undefined")
        h = Estimate("h(D) of the target", math.nan, len(target), method, note=note)
        return (Lever("curation", "none", f"no curation evidence: {note}.", "none: h undefined", [h],
                      {"reference": reference}), empty_cmp, reference, np.empty(0))
    coef = quadratic_coefficients(rf["x"].to_numpy(), rf["b2"].to_numpy())
    reference.update(a=float(coef[0]), b=float(coef[1]), c=float(coef[2]))
    # the reference curve, refitted on resampled reference families
    codes, _ = pd.factorize(rf["family"])
    xm = float(rf["x"].mean())
    bs = stats.bootstrap_moments(_quad_terms(rf["x"].to_numpy(), rf["b2"].to_numpy()),
                                 lambda M: _quad_finish(M, xm), n_resamples=n_resamples, rng=rng,
                                 clusters=codes, jackknife=False)
    C = bs.distribution                                            # (B, 3)
    B = C.shape[0]

    def curve(x, c):
        return c[..., 0:1] * x ** 2 + c[..., 1:2] * x + c[..., 2:3]

    # the target: its models (family) or one model with its binomial noise
    xt, st = target["x"].to_numpy(), target["b2"].to_numpy()
    h_models = st - np.polyval(coef, xt)
    h_point = float(h_models.mean())
    Ht = st[None, :] - curve(xt[None, :], C)                       # (B, m)
    if len(target) >= 2:
        ht = _weighted_mean(stats.bootstrap_weights(len(target), B, rng), Ht)
        t_how = f"the target's {len(target)} models resampled"
    else:
        items = BENCHMARKS[pdat.b2].items if pdat.b2 in BENCHMARKS else None
        se = float(binomial_se(st[0], items)) if items else 0.0
        ht = Ht[:, 0] + (rng.normal(0.0, se, B) if se > 0 else 0.0)
        t_how = (f"the score's binomial noise (SE {se:.2f} on {items} items)" if se > 0 else
                 "no score noise (item count unknown)")
    lo, hi = _percentile(ht, h_point, level)
    h_est = Estimate("h(D) of the target", h_point, len(target), method, (lo, hi), level,
                     f"percentile bootstrap: reference families resampled, {t_how}", unit="model",
                     n_resamples=n_resamples, discarded=bs.discarded)
    # curated families of similar size (the target's own family excluded)
    pmin, pmax = float(target["params"].min()), float(target["params"].max())
    cm = f[f["family"].map(lambda x: x in curated) & (f["family"] != (family or ""))
           & (f["params"] >= pmin / window) & (f["params"] <= pmax * window)]
    comparators = pd.DataFrame({"model": cm["model"].to_numpy(), "family": cm["family"].to_numpy(),
                                "params": cm["params"].to_numpy(), pdat.b2: cm["b2"].to_numpy(),
                                "h": cm["b2"].to_numpy() - np.polyval(coef, cm["x"].to_numpy())})
    n_c, c_fams = len(cm), list(dict.fromkeys(cm["family"]))
    window_text = f"{fmt_num(pmin / window)}-{fmt_num(pmax * window)}"
    evidence = [h_est]
    gap_est = None
    if n_c:
        Hc = cm["b2"].to_numpy()[None, :] - curve(cm["x"].to_numpy()[None, :], C)
        if len(c_fams) >= 2:
            Wc = stats.bootstrap_weights(n_c, B, rng, clusters=pd.factorize(cm["family"])[0])
            c_how = f"{len(c_fams)} curated families resampled"
        elif n_c >= 2:
            Wc = stats.bootstrap_weights(n_c, B, rng)
            c_how = f"one curated family: its {n_c} models resampled"
        else:
            Wc = np.ones((B, 1))
            c_how = "one curated model: no resampling of it"
        hc = _weighted_mean(Wc, Hc)
        hc_point = float(comparators["h"].mean())
        clo, chi = _percentile(hc, hc_point, level)
        gap = hc_point - h_point
        glo, ghi = _percentile(hc - ht, gap, level)
        evidence.append(Estimate("h(D) of curated families of similar size", hc_point, n_c,
                                 f"mean h of curated models within x{window:g} of the target's size ({window_text}): "
                                 + ", ".join(c_fams), (clo, chi), level, f"percentile bootstrap: {c_how}",
                                 n_resamples=n_resamples))
        gap_est = Estimate("curated minus target h(D)", gap, n_c + len(target),
                           "difference of the two mean h(D) under one reference curve", (glo, ghi), level,
                           "percentile bootstrap (joint draws)", n_resamples=n_resamples)
        evidence.append(gap_est)
    # the rule
    below_sure = math.isfinite(hi) and hi < 0
    fam_txt = f"{n_c} models of {len(c_fams)} curated famil{'y' if len(c_fams) == 1 else 'ies'}"
    if not math.isfinite(h_point) or h_point >= 0:
        strength, rule = "none", "none: h >= 0 (the target is not below the reference curve)"
    elif not below_sure:
        strength, rule = "weak", "weak: h < 0 but its interval reaches 0"
    elif gap_est is not None and gap_est.value <= 0:
        strength, rule = "weak", "weak: h's interval is below 0, but curated families of similar size do not sit above it"
    elif (gap_est is not None and gap_est.ci[0] > 0 and n_c >= STRONG_MIN_MODELS
          and len(c_fams) >= STRONG_MIN_FAMILIES):
        strength, rule = "strong", (f"strong: h's interval is below 0 and the curated gap's above 0, from {fam_txt} "
                                    f"(>= {STRONG_MIN_MODELS} models of >= {STRONG_MIN_FAMILIES} families)")
    elif gap_est is None:
        strength, rule = "moderate", "moderate: h's interval is below 0; no curated family of similar size to compare"
    elif gap_est.ci[0] > 0:
        strength, rule = "moderate", (f"moderate: h's interval is below 0 and the curated gap's above 0, but from "
                                      f"only {fam_txt}")
    else:
        strength, rule = "moderate", "moderate: h's interval is below 0; the curated gap is positive but its interval reaches 0"
    where = ("below" if h_point < 0 else "at or above") + f" the curve of {len(ref)} reference (web-trained) " \
        f"famil{'y' if len(ref) == 1 else 'ies'}"
    text = f"h = {h_point:+.1f} {_ci_text(lo, hi)} points: {where} at this size"
    if gap_est is not None:
        text += (f"; curated families of similar size ({', '.join(c_fams)}; {n_c} models in {window_text}) sit "
                 f"{gap_est.value:+.1f} {_ci_text(*gap_est.ci)} from the target")
    else:
        text += (f"; no curated family ({', '.join(curated_names) or 'none named'}) has a model in {window_text}, "
                 f"other than the target's own")
    if family and family in curated:
        text += f"; {family} is itself curated"
    verdict = {"strong": "the curation lever is supported (strong evidence)",
               "moderate": "the curation lever is supported (moderate evidence)",
               "weak": "curation is at most suggested (weak evidence)",
               "none": "the data do not support a curation lever"}[strength]
    details = {"reference": reference, "curve_at_target": float(np.polyval(coef, np.log10(pmax))),
               "h_models": dict(zip(target["model"], h_models.tolist())) if single_score is None else None,
               "curated_families": c_fams, "window": [pmin / window, pmax * window]}
    return (Lever("curation", strength, f"{text}: {verdict}.", rule, evidence, details), comparators, reference,
            ht)


# ------------------------------------------------------------------------- 2. width
def _crossings_up(frame: pd.DataFrame, pair, guard: float, pdat) -> pd.DataFrame:
    """Sign changes tax -> bonus of each family's interval coupling (position by
    :func:`family_crossings`; direction from the interval just below the change), with the
    d_model of the family's first model above the change where the panel has widths."""
    cols = ["family", "crossing", "d_model_above", "model_above"]
    try:
        lc = local_coupling(frame, pair, guard=guard)
    except CapeError:
        return pd.DataFrame(columns=cols)
    cr = family_crossings(lc)
    iv = lc.intervals[np.sign(lc.intervals["gamma"].to_numpy()) != 0]
    f = pdat.frame
    rows = []
    for fam, cl in zip(cr["family"], cr["crossings"]):
        if not cl:
            continue
        sub = iv[iv["family"] == fam]
        xs, gs = sub["x_mid"].to_numpy(), sub["gamma"].to_numpy()
        fm = f[f["family"] == fam]
        for c in cl:
            below = xs < math.log10(c)
            if not below.any() or gs[below][-1] >= 0:
                continue                                          # a bonus -> tax change
            above = fm[fm["params"] >= c]
            dm = float(above["d_model"].iloc[0]) if "d_model" in fm and len(above) else math.nan
            rows.append({"family": fam, "crossing": float(c), "d_model_above": dm,
                         "model_above": str(above["model"].iloc[0]) if len(above) else None})
    return pd.DataFrame(rows, columns=cols)


def _width(frame, pdat, target: pd.DataFrame, family: str | None, d_model: float | None, crossings: pd.DataFrame,
           pair, window: float, n_resamples: int, level: float, seed) -> Lever:
    f = pdat.frame
    pmin, pmax = float(target["params"].min()), float(target["params"].max())
    near = crossings[(crossings["family"] != (family or "")) & (crossings["crossing"] >= pmin / window)
                     & (crossings["crossing"] <= pmax * window)]
    near_w = near[np.isfinite(near["d_model_above"].to_numpy(dtype=float))]
    details = {"d_model": d_model, "crossing_families": near.to_dict("records"), "width_unit": WIDTH_UNIT}
    has_w = "d_model" in f.columns and f["d_model"].notna().any()
    if family is not None:
        pool = target[target["d_model"].notna()] if "d_model" in target else target.iloc[:0]
        who = f"the {len(pool)} models of {family} with a d_model"
    else:
        pool = f[f["d_model"].notna()] if has_w else f.iloc[:0]
        who = f"the {len(pool)} models of {pdat.panel} with a d_model"
    cross_txt = (f"{len(near)} famil{'y changes' if len(near) == 1 else 'ies change'} sign tax -> bonus within "
                 f"x{window:g} of this size" + (f" ({', '.join(dict.fromkeys(near['family']))})" if len(near) else ""))
    if len(pool) < 3:
        why = (f"{pdat.panel} has no d_model" if not has_w else f"{who}: fewer than 3")
        return Lever("width", "none", f"the width lever cannot be judged: {why}, so width normalization and its "
                     f"null cannot be computed; {cross_txt}.", "none: no width data (3+ models with a d_model needed)",
                     [Estimate("r after width normalization", math.nan, len(pool), "width_normalization",
                               note=why)], details)
    ids = frame["model"] if "model" in frame.columns else pd.Series(frame.index, index=frame.index)
    sub = frame.loc[ids.astype(str).isin(set(pool["model"])).to_numpy()]
    wn = width_normalization(sub, pair, n_null=n_resamples, level=level, seed=seed)
    nlo, nhi = wn.null_interval
    details |= {"r_raw": wn.r_raw, "r_normalised": wn.r_normalised, "null_interval": [nlo, nhi],
                "null_mean": wn.null_mean, "percentile": wn.percentile, "p_at_least": wn.p_at_least}
    ev = [Estimate("r after width normalization", wn.r_normalised, wn.n,
                   f"Pearson r of both scores divided by d_model/{WIDTH_UNIT} over {who} (raw r = {wn.r_raw:+.3f})",
                   (nlo, nhi), level, f"null interval: scores shuffled independently, divided by the same widths "
                   f"({wn.n_null:,} draws); observed at percentile {wn.percentile:.1f}", n_resamples=wn.n_null,
                   note=f"{100 * wn.p_at_least:.1f}% of unrelated score pairs reach it")]
    head = (f"dividing by width moves r from {wn.r_raw:+.3f} to {wn.r_normalised:+.3f}, and unrelated scores divided "
            f"by the same widths give r in [{nlo:+.3f}, {nhi:+.3f}] (observed at percentile {wn.percentile:.0f})")
    if wn.r_normalised <= nhi:
        return Lever("width", "none", f"{head}: the effect is inside the null, an artefact of the division, so the "
                     f"width lever is NOT supported; {cross_txt}.",
                     "none: r after normalization is inside (or below) its null interval", ev, details)
    widths = near_w["d_model_above"].to_numpy(dtype=float)
    if d_model is None or not widths.size:
        miss = "no d_model for the target" if d_model is None else "no crossing family of similar size with a known d_model"
        return Lever("width", "weak", f"{head}: above the null, but {miss}; {cross_txt}: width is at most suggested.",
                     "weak: above the null, nothing to compare the target's width with", ev, details)
    wider = widths > d_model
    ev.append(Estimate("median d_model of crossing families above the change", float(np.median(widths)),
                       int(widths.size), "d_model of each family's first model above its tax -> bonus change",
                       unit="family"))
    if wider.all() and widths.size >= 3:
        strength, rule = "strong", "strong: above the null; 3+ crossing families of similar size, all wider"
    elif np.median(widths) > d_model:
        strength, rule = "moderate", "moderate: above the null; crossing families of similar size are wider (median)"
    else:
        strength, rule = "weak", "weak: above the null, but crossing families of similar size are not wider"
    return Lever("width", strength, f"{head}: above the null; crossing families of similar size have d_model "
                 f"{', '.join(fmt_num(w) for w in widths)} against the target's {fmt_num(d_model)}.", rule, ev, details)


# ------------------------------------------------------------------------- 3. rotation
def _rotation(frame, pdat, target_scores: dict[str, float], exclude: set[str], top_k: int, n_resamples: int,
              level: float, seed) -> tuple[Lever, pd.DataFrame]:
    """Per benchmark: the panel's top-k spread against its binomial floor
    (:func:`saturation`, on the panel without the target's own models) and the target's
    distance to the top mean against the noise of both."""
    from scipy import stats as sps

    z = float(sps.norm.ppf(0.5 + level / 2))
    ids = frame["model"] if "model" in frame.columns else pd.Series(frame.index, index=frame.index)
    others = frame.loc[~ids.astype(str).isin(exclude).to_numpy()]
    others.attrs = frame.attrs
    in_panel = []
    for b in target_scores:
        try:
            in_panel.append(resolve_benchmark(frame, b))
        except CapeError:
            pass
    sat = None
    if in_panel and len(others):
        sat = saturation(others, in_panel, top_k=top_k, old=in_panel[0], new=in_panel[-1], n_resamples=n_resamples,
                         level=level, seed=seed).table.set_index("benchmark")
    rows = []
    for b, score in target_scores.items():
        items = BENCHMARKS[b].items if b in BENCHMARKS else None
        se = float(binomial_se(score, items)) if items else math.nan
        row = {"benchmark": b, "score": score, "items": items, "se": se, "n_panel": 0, "top_mean": math.nan,
               "spread": math.nan, "noise_spread": math.nan, "top_within_noise": None, "gap_to_top": math.nan,
               "gap_noise": math.nan, "at_ceiling": None, "strength": "none", "note": ""}
        if not len(others):
            row["note"] = f"{pdat.panel} has no model besides the target's"
        elif sat is None or b not in sat.index:
            row["note"] = f"not in {pdat.panel}"
        else:
            s = sat.loc[b]
            row.update(n_panel=int(s["n"]), top_mean=float(s["top_mean"]), spread=float(s["spread"]),
                       noise_spread=float(s["noise_spread"]))
            if not items:
                row["note"] = "item count unknown: no noise floor"
            elif not math.isfinite(row["top_mean"]):
                row["note"] = s["note"] or f"fewer than {top_k} other models with a score"
            else:
                gap_noise = z * math.sqrt(se ** 2 + float(s["se"]) ** 2 / top_k)
                gap = row["top_mean"] - score
                sat_top, ceil = bool(s["within_noise"]), bool(gap <= gap_noise)
                k = sat_top + ceil
                strength = ("strong" if row["n_panel"] >= ROTATION_MIN_MODELS else "moderate") if k == 2 else \
                    "weak" if k == 1 else "none"
                row.update(top_within_noise=sat_top, gap_to_top=gap, gap_noise=gap_noise, at_ceiling=ceil,
                           strength=strength)
        rows.append(row)
    table = pd.DataFrame(rows)
    best = max(table["strength"], key=STRENGTHS.index) if len(table) else "none"
    parts, ev, separating, unjudged = [], [], [], {}
    for r in rows:
        if r["note"]:
            unjudged.setdefault(r["note"], []).append(r["benchmark"])
            continue
        if r["strength"] == "none":
            separating.append(r["benchmark"])
        else:
            parts.append(f"{r['benchmark']} {r['score']:.1f}: {abs(r['gap_to_top']):.1f} "
                         f"{'below' if r['gap_to_top'] >= 0 else 'above'} the panel's top-{top_k} mean "
                         f"{r['top_mean']:.1f} ({'within' if r['at_ceiling'] else 'beyond'} the noise "
                         f"{r['gap_noise']:.1f}), top-{top_k} spread {r['spread']:.1f} "
                         f"{'within' if r['top_within_noise'] else 'above'} its noise floor "
                         f"{r['noise_spread']:.1f} [{r['strength']}]")
        ev.append((-STRENGTHS.index(r["strength"]), len(ev), Estimate(
                  f"{r['benchmark']}: panel top-{top_k} mean minus the target's score", r["gap_to_top"],
                           r["n_panel"], f"top-{top_k} mean of {r['n_panel']} other scored models minus the score "
                           f"(spread {r['spread']:.2f}, binomial floor {r['noise_spread']:.2f})",
                           (r["gap_to_top"] - r["gap_noise"], r["gap_to_top"] + r["gap_noise"]), level,
                           "binomial noise of the score and of the top mean (normal approximation)")))
    ev = [e for _, _, e in sorted(ev, key=lambda t: t[:2])]          # the best-supported benchmark first
    if separating:
        parts.append(f"still separating models at this level (target beyond noise of the top, top spread above "
                     f"its floor): {', '.join(separating)}")
    unjudged_txt = "; ".join(f"{', '.join(bs)} not judged ({why})" for why, bs in unjudged.items())
    if unjudged:
        parts.append(unjudged_txt)
    rot = [r["benchmark"] for r in rows if r["strength"] in ("strong", "moderate")]
    if rot:
        verdict = f"rotating {', '.join(rot)} away is supported: it no longer separates models at this level"
    elif best == "weak":
        verdict = "rotation is at most suggested (weak evidence: one of the two conditions)"
    else:
        verdict = "the data do not support rotating these benchmarks"
    rule = ("per benchmark: (i) the panel's top-k spread within its binomial floor, (ii) the target within noise of "
            f"the top; both: strong with >= {ROTATION_MIN_MODELS} scored models, else moderate; one: weak; "
            f"neither: none. Best here: {best}")
    if not ev:
        ev.append(Estimate("benchmark saturation", math.nan, 0, "saturation",
                           note=unjudged_txt or "no scores"))
    return Lever("rotation", best, "; ".join(parts) + f": {verdict}.", rule, ev,
                 {"benchmarks": rot, "top_k": top_k}), table


# ------------------------------------------------------------------------- 4. size
def _nc_of(rep) -> Estimate | None:
    """The N_c the replication verdict refers to, with the family-bootstrap interval when
    the replication has one (read defensively: the result's layout may grow)."""
    value = math.nan
    phase, split = getattr(rep, "phase", None), getattr(rep, "verdict_split", None)
    if isinstance(phase, pd.DataFrame) and {"split", "n_c"} <= set(phase.columns) and split is not None:
        hit = phase.loc[phase["split"] == split, "n_c"]
        if len(hit):
            value = float(hit.iloc[0])
    ests = [e for e in getattr(rep, "nc_estimates", None) or [] if isinstance(e, Estimate)]
    fam = next((e for e in ests if "family resampling" in e.name), None)
    first = next((e for e in ests if e.defined), None)
    if not math.isfinite(value):
        src = fam if fam is not None and fam.defined else first
        if src is None:
            return None
        value = src.value
    ci = fam.ci if fam is not None and fam.ci is not None and abs(fam.value - value) <= 1e-6 * value else None
    return Estimate("N_c of the replication verdict", value, fam.n if fam is not None else 0,
                    f"the split of the verdict ({split})" if split else "the replication's N_c",
                    ci, fam.level if ci else None, fam.interval if ci else None,
                    unit=fam.unit if fam is not None else "model", n_resamples=fam.n_resamples if ci else None,
                    discarded=fam.discarded if ci else None)


def _size(rep, params: float, sizes: tuple[float, float]) -> Lever:
    verdict = getattr(rep, "verdict", None)
    reason = getattr(rep, "verdict_reason", None)
    details = {"verdict": verdict, "verdict_reason": reason, "verdict_split": getattr(rep, "verdict_split", None)}
    nc = _nc_of(rep)
    if nc is not None and nc.defined and not sizes[0] <= nc.value <= sizes[1]:
        nc.note = f"outside the panel's sizes ({fmt_num(sizes[0])}-{fmt_num(sizes[1])}): not a scale the data show"
    ev = [nc] if nc is not None else []
    why = f"replication verdict '{verdict}'" + (f": {reason}" if reason else "")
    if verdict != "holds":
        return Lever("size", "none", f"the data do not support a size lever ({why}); scaling past N_c is not "
                     "a supported intervention here.", "none: the replication verdict is not 'holds'", ev, details)
    if nc is None or not nc.defined:
        return Lever("size", "weak", f"the phase picture holds ({why}) but N_c is undefined: size is at most "
                     "suggested.", "weak: holds, but no N_c", ev, details)
    details["n_c"] = nc.value
    if params >= nc.value:
        return Lever("size", "none", f"the phase picture holds ({why}), but the target ({fmt_num(params)}) is "
                     f"already above N_c = {fmt_num(nc.value)}: scaling past N_c is not a lever for it.",
                     "none: holds, target already above N_c", ev, details)
    ci = nc.ci if nc.ci is not None and all(math.isfinite(c) for c in nc.ci) else None
    ci_txt = f" {_ci_text(*ci, signed=False)}" if ci else ""
    head = f"the phase picture holds ({why}); the target ({fmt_num(params)}) is below N_c = {fmt_num(nc.value)}{ci_txt}"
    if ci is not None and params < ci[0]:
        return Lever("size", "strong", f"{head}, below its whole interval: scaling past N_c is supported (strong "
                     "evidence).", "strong: holds and the target is below N_c's whole interval", ev, details)
    if ci is None:
        return Lever("size", "weak", f"{head}, but N_c has no interval: size is at most suggested (weak evidence).",
                     "weak: holds and the target is below N_c, which has no interval", ev, details)
    return Lever("size", "weak", f"{head}, but inside its interval, so it may already be past N_c: size is at most "
                 "suggested (weak evidence).", "weak: holds; the target is below N_c but inside its interval",
                 ev, details)


# ------------------------------------------------------------------------- analysis
def advise(frame: pd.DataFrame, *, family: str | None = None, params=None, scores: Mapping | None = None,
           d_model: float | None = None, pair=None, curated: Sequence[str] | None = DEFAULT_CURATED,
           reference_families: Sequence[str] | None = None, size_window: float = SIZE_WINDOW,
           top_k: int = 5, guard: float = DEFAULT_GUARD, replication_result=None,
           n_resamples: int = DEFAULT_RESAMPLES, level: float = 0.95, seed: int | None = None) -> Advice:
    """Which levers (curation, width, benchmark rotation, size) the panel's data support for
    one target, each with its evidence and a strength label (rule: module docstring).

    The target is either ``family`` (a family of ``frame``) or one model: ``params`` (a
    count such as 7e9 or '7B') and ``scores`` (benchmark -> percent; must include the
    pair, default hellaswag and truthfulqa), optionally ``d_model``. ``curated``: names of
    curated families (prefix rule of :func:`is_curated`); ``reference_families``: the
    families whose curve defines h(D) = 0 (default: the panel's non-curated families);
    ``replication_result``: a :class:`cape.analysis.replication.Replication` of this panel
    to reuse (otherwise one is computed with ``n_resamples``). Same ``seed``, same result."""
    from ..units import parse_param_count
    from .replication import replication

    if not isinstance(frame, pd.DataFrame) or frame.empty:
        raise CapeError("advise takes a non-empty panel DataFrame (see cape.load_panel)")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 10:
        raise CapeError(f"n_resamples must be a whole number of at least 10, not {n_resamples!r}")
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise CapeError(f"level must be between 0 and 1 (e.g. 0.95), not {level!r}")
    window = _check_number(size_window, "size_window (--window)", positive=True)
    if window < 1:
        raise CapeError(f"size_window (--window) is a factor >= 1, not {size_window!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 2:
        raise CapeError(f"top_k must be a whole number >= 2, not {top_k!r}")
    pdat = pair_data(frame, pair, need_size=True)
    if pdat.n == 0:
        raise CapeError(f"no model of {pdat.panel} has {pdat.b1}, {pdat.b2} and a parameter count")
    fams = pdat.families()
    cur = [x for x in fams if is_curated(x, curated or ())]
    notes: list[str] = []
    given = _canonical_scores(scores)
    if family is not None and params is not None:
        raise CapeError("give either a family (field 'family') or one model (field 'params'), not both")
    if family is None and params is None:
        raise CapeError("give a family of the panel (field 'family', --family) or one model "
                        "(field 'params', --params, with its scores)")
    if family is not None:
        if given or d_model is not None:
            raise CapeError("scores and d_model describe one model: do not give them with a family (field 'family')")
        fam = _find_family(fams, family, pdat.panel)
        target = pdat.frame[pdat.frame["family"] == fam].reset_index(drop=True)
        kind, single = "family", None
        params_v = float(target["params"].max())
        dm_t = target["d_model"].dropna() if "d_model" in target else pd.Series(dtype=float)
        d_model_v = float(dm_t.iloc[-1]) if len(dm_t) else None
        # the family's largest model with each benchmark of the panel
        df = frame if "model" in frame.columns else frame.rename_axis("model").reset_index()
        rows = df[df["model"].astype(str).isin(set(target["model"]))].copy()
        rows["_p"] = pd.to_numeric(rows["params"], errors="coerce")
        rows = rows.sort_values("_p")
        bench_cols = [c for c in (frame.attrs.get("cape", {}).get("benchmarks") or [c for c in df.columns
                                                                                  if c in BENCHMARKS])
                      if c in rows.columns]
        target_scores = {}
        for b in bench_cols:
            v = pd.to_numeric(rows[b], errors="coerce").dropna()
            if len(v):
                target_scores[b] = float(v.iloc[-1])
        label = (f"{fam} (family: {len(target)} models, {fmt_num(float(target['params'].min()))}-"
                 f"{fmt_num(params_v)})")
        if fam in cur:
            notes.append(f"{fam} is itself a curated family: it is left out of the reference curve")
    else:
        fam = None
        try:
            pc = parse_param_count(params)
        except CapeError as exc:
            raise CapeError(f"params (--params): {exc.message}") from None
        if pc is None:
            raise CapeError("params (--params) must be a parameter count such as 7e9 or '7B'")
        params_v = float(pc.total)
        for b in (pdat.b1, pdat.b2):
            if b not in given:
                raise CapeError(f"the model's {b} score is missing (field 'scores', --{b} VALUE)")
        d_model_v = None if d_model is None else _check_number(d_model, "d_model (--d-model)", positive=True)
        x = math.log10(params_v)
        target = pd.DataFrame({"model": ["(your model)"], "family": ["(your model)"], "params": [params_v],
                               "x": [x], "b1": [given[pdat.b1]], "b2": [given[pdat.b2]]})
        kind, single = "model", given[pdat.b2]
        target_scores = dict(given)
        label = f"a model of {fmt_num(params_v)} parameters ({pdat.b1} {given[pdat.b1]:g}, {pdat.b2} {given[pdat.b2]:g})"
        lo_p, hi_p = pdat.frame["params"].min(), pdat.frame["params"].max()
        if not lo_p <= params_v <= hi_p:
            notes.append(f"{fmt_num(params_v)} is outside the panel's sizes ({fmt_num(lo_p)}-{fmt_num(hi_p)}): "
                         "the reference curve is extrapolated")
    rng = np.random.default_rng(seed)
    # 1. curation
    lv_cur, comparators, reference, h_dist = _curation(pdat, target, single, fam, cur, list(curated or ()),
                                                       reference_families, window, n_resamples, level, rng)
    # 2. width
    crossings = _crossings_up(frame, pair, guard, pdat)
    lv_width = _width(frame, pdat, target, fam, d_model_v, crossings, pair, window, n_resamples, level, seed)
    # 3. rotation
    lv_rot, bench = _rotation(frame, pdat, target_scores, set(target["model"]) if fam else set(), top_k,
                              n_resamples, level, seed)
    # 4. size
    rep = replication_result
    if rep is None:
        try:
            rep = replication(frame, pair, n_resamples=n_resamples, level=level, seed=seed, guard=guard)
        except CapeError as exc:
            notes.append(f"the replication could not run on {pdat.panel}: {exc}")
            rep = None
    if rep is None:
        lv_size = Lever("size", "none", "the data do not support a size lever: the replication could not run on "
                        "this panel.", "none: no replication verdict", [], {"verdict": None})
    else:
        lv_size = _size(rep, params_v, (float(pdat.frame["params"].min()), float(pdat.frame["params"].max())))
    levers = [lv_cur, lv_width, lv_rot, lv_size]
    rows = []
    for lv in levers:
        e = lv.evidence[0] if lv.evidence else None
        ci = e.ci if e is not None and e.ci is not None else (math.nan, math.nan)
        rows.append({"lever": lv.lever, "supported": lv.supported, "strength": lv.strength,
                     "estimate": e.name if e else None, "value": e.value if e else math.nan,
                     "ci_low": ci[0], "ci_high": ci[1], "level": e.level if e else None, "n": e.n if e else 0,
                     "unit": e.unit if e else None, "method": e.method if e else None, "rule": lv.rule,
                     "suggestion": lv.suggestion})
    table = pd.DataFrame(rows, columns=_TABLE_COLUMNS)
    return Advice(pdat.panel, kind, label, fam, params_v,
                  (float(target["params"].min()), float(target["params"].max())), int(len(target)), pdat.b1,
                  pdat.b2, target_scores, d_model_v, cur, reference, window, float(level), int(n_resamples), seed,
                  levers, table, bench, comparators, crossings,
                  None if rep is None else getattr(rep, "verdict", None),
                  None if rep is None else getattr(rep, "verdict_reason", None), notes, h_dist)
