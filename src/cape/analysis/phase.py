"""Phase of one model (METHODS.md section 5): where a model of a given size and scores sits.

- gamma_hat(N) from the running coupling, with its bootstrap distribution (line only, the
  paper protocol: the uncertainty of the fitted *average* line);
- the predictive distribution of the coupling of one new interval at this size (the sound
  variant): a family-cluster bootstrap draw of the line plus a residual of the panel's
  interval couplings about the line, drawn family first, then one of that family's
  intervals; P(tax / transition / bonus) come from it, and its leave-one-family-out
  coverage (:func:`phase_calibration`) says whether it is calibrated. The size-based phase
  depends on the size N only, never on the scores;
- the isocline rule "bonus if B2 > sqrt(k * B1)" (scores as fractions) with k *fitted* to
  the panel's interval phases, and its leave-one-family-out accuracy;
- the curation field h(D) = B2 - (quadratic in log10 N fitted to reference families);
- the nearest models of the panel; and a plain-language explanation with every number used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import stats
from ..errors import CapeError
from .data import family_codes, pair_data
from .gamma import (BONUS_ABOVE, DEFAULT_GUARD, TAX_BELOW, LocalCoupling, _ols_finish, _ols_terms, local_coupling,
                    phase_label, running_coupling)
from .nc import _quad_finish, _quad_terms, quadratic_coefficients
from .results import Estimate, Result, fmt_num

__all__ = ["Isocline", "fit_isocline", "ModelPhase", "phase_of_model", "curation_field", "N_NEAREST",
           "PhaseCalibration", "phase_calibration", "predictive_draws", "CALIBRATION_LEVEL", "PREDICTIVE_METHOD"]

#: Models listed as the nearest neighbours of the one being placed.
N_NEAREST = 5

#: Nominal level of the narrower predictive interval (the wider one is the run's ``level``).
CALIBRATION_LEVEL = 0.80

#: How the predictive distribution is made (printed with every predictive number).
PREDICTIVE_METHOD = (
    "predictive: each family-cluster bootstrap fit of the line A log10 N + B plus one residual of the "
    "interval couplings about the fitted line, drawn family first (families equally likely), then one "
    "interval of that family; residuals are leverage-adjusted (e / sqrt(1 - h)) and centred "
    "(Davison & Hinkley 1997, alg. 6.4, with a two-stage family resample)")

PHASES = ("tax", "transition", "bonus")

#: Half-width (decades of N) of the window in which the calibration near a model's size is read.
NEAR_DECADES = 0.5


def _plural(unit: str) -> str:
    return {"family": "families", "interval": "intervals", "model": "models"}.get(unit, unit)


@dataclass
class Isocline(Result):
    """The rule bonus <=> (B2/100)^2 / (B1/100) > k, with k fitted to labelled models.

    A model is labelled by the interval that ends at it within its family: bonus when that
    interval's gamma > 0, tax otherwise. ``accuracy`` is in-sample; ``accuracy_lofo`` fits k
    without each family and scores that family's models (out of sample).
    """

    k: float
    n: int
    accuracy: float
    accuracy_lofo: float
    n_families: int
    labels: pd.DataFrame

    def summary(self) -> str:
        return (f"isocline k = {self.k:.4g} fitted on {self.n} labelled models: in-sample accuracy "
                f"{100 * self.accuracy:.1f}%, leave-one-family-out {100 * self.accuracy_lofo:.1f}% "
                f"({self.n_families} families)")


def _best_k(score: np.ndarray, bonus: np.ndarray) -> tuple[float, float]:
    """Threshold on ``score`` maximising accuracy of 'bonus iff score > k' (vectorised over
    candidate thresholds: midpoints between sorted scores, plus both ends)."""
    s = np.sort(np.unique(score))
    cand = np.r_[s[0] - 1e-9, (s[1:] + s[:-1]) / 2, s[-1] + 1e-9]
    pred = score[None, :] > cand[:, None]
    acc = (pred == bonus[None, :]).mean(axis=1)
    best = np.flatnonzero(acc == acc.max())
    return float(cand[best[len(best) // 2]]), float(acc.max())


def fit_isocline(frame: pd.DataFrame, pair=None, *, guard: float = DEFAULT_GUARD,
                 local: LocalCoupling | None = None) -> Isocline:
    """Fit k of the isocline rule to the panel's interval phases (see :class:`Isocline`);
    ``local`` reuses intervals already computed for the same frame, pair and guard."""
    lc = local if local is not None else local_coupling(frame, pair, guard=guard)
    pdat = pair_data(frame, pair).frame.set_index("model")
    iv = lc.intervals
    if len(iv) < 2:
        raise CapeError(f"fitting k needs labelled models: {lc.panel} has {len(iv)} intervals")
    m = pdat.loc[iv["model_hi"]]
    score = (m["b2"].to_numpy() / 100) ** 2 / (m["b1"].to_numpy() / 100)
    bonus = iv["gamma"].to_numpy() > 0
    k, acc = _best_k(score, bonus)
    fams = iv["family"].to_numpy()
    correct = 0
    for fam in dict.fromkeys(fams):                   # one fit per family, not per resample
        test = fams == fam
        if (~test).sum() == 0:
            continue
        k_out, _ = _best_k(score[~test], bonus[~test])
        correct += int(((score[test] > k_out) == bonus[test]).sum())
    labels = pd.DataFrame({"model": iv["model_hi"].to_numpy(), "family": fams, "score": score,
                           "label": np.where(bonus, "bonus", "tax"),
                           "predicted": np.where(score > k, "bonus", "tax")})
    n_fam = len(set(fams))
    return Isocline(k, len(iv), acc, correct / len(iv) if n_fam > 1 else float("nan"), n_fam, labels)


def _phase_probabilities(draws: np.ndarray) -> np.ndarray:
    """P(tax), P(transition), P(bonus) of each column of ``draws`` (B, m) -> (3, m)."""
    p_tax, p_bonus = (draws < TAX_BELOW).mean(axis=0), (draws > BONUS_ABOVE).mean(axis=0)
    return np.stack([p_tax, 1 - p_tax - p_bonus, p_bonus])


def _modified_residuals(x: np.ndarray, y: np.ndarray, codes: np.ndarray, a: float, b: float) -> np.ndarray:
    """Residuals of y about a x + b, leverage-adjusted (e / sqrt(1 - h)) and centred so that
    their mean under the two-stage draw of :func:`_draw_residuals` is zero."""
    e = y - (a * x + b)
    xc = x - x.mean()
    sxx = (xc * xc).sum()
    h = 1 / len(x) + xc * xc / sxx if sxx > 0 else np.full(len(x), 1 / len(x))
    room = 1 - h
    r = np.where(room > 1e-9, e / np.sqrt(np.where(room > 1e-9, room, 1)), 0.0)
    cnt = np.bincount(codes)
    weight = 1 / (len(cnt) * cnt[codes])                     # P(interval) under the two-stage draw
    return r - (weight * r).sum()


def _draw_residuals(r: np.ndarray, codes: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Residuals drawn family first (each family equally likely), then one of its intervals;
    ``codes`` are 0..F-1, every family present. Vectorised over the whole ``shape``."""
    cnt = np.bincount(codes)
    order = np.argsort(codes, kind="stable")
    start = np.r_[0, np.cumsum(cnt)[:-1]]
    fam = rng.integers(0, len(cnt), size=shape)
    pick = start[fam] + np.minimum(np.floor(rng.random(shape) * cnt[fam]).astype(np.int64), cnt[fam] - 1)
    return r[order[pick]]


def predictive_draws(line_draws: np.ndarray, x_at: np.ndarray, x: np.ndarray, y: np.ndarray, codes: np.ndarray,
                     a: float, b: float, rng: np.random.Generator) -> np.ndarray:
    """Predictive couplings (B, m) of one new interval at each log10 size of ``x_at`` (m,):
    bootstrap line (A_b, B_b) from ``line_draws`` (B, 2) plus an independent residual of the
    intervals (x, y, family ``codes``) about the fitted line a x + b (see PREDICTIVE_METHOD)."""
    x_at = np.atleast_1d(np.asarray(x_at, dtype=float))
    r = _modified_residuals(x, y, codes, a, b)
    eps = _draw_residuals(r, codes, (line_draws.shape[0], x_at.size), rng)
    return line_draws[:, :1] * x_at[None, :] + line_draws[:, 1:2] + eps


@dataclass
class PhaseCalibration(Result):
    """Leave-one-family-out calibration of the predictive distribution.

    For each family the line is refitted (and bootstrapped, resampling families) without it,
    residuals come from the other families only, and each of the family's interval couplings
    is checked against the predictive interval at its size (``coverage``, one Estimate per
    nominal level) and against the most probable predicted phase (``phase_match``). CIs
    resample families (the held-out unit). ``table`` has one row per family and
    ``intervals`` one per held-out interval; pooled coverage can hide families (or sizes)
    where the interval is too narrow, so read the table too.
    """

    panel: str
    levels: list[float]
    coverage: dict
    phase_match: Estimate
    n_intervals: int
    n_families: int
    table: pd.DataFrame
    intervals: pd.DataFrame
    method: str
    notes: list[str] = field(default_factory=list)

    def near(self, x: float, half_width: float = 0.5) -> dict:
        """Coverage and phase match of the held-out intervals within ``half_width`` decades of
        log10 N = ``x``: {"n", "n_families", "covered_80", ..., "phase_match"}."""
        t = self.intervals[((self.intervals["x_mid"] - x).abs() <= half_width) & self.intervals["matched"].notna()]
        out = {"half_width_decades": half_width, "n": len(t), "n_families": int(t["family"].nunique())}
        for c in [c for c in t.columns if c.startswith("covered_")] + ["matched"]:
            out["phase_match" if c == "matched" else c] = float(t[c].mean()) if len(t) else float("nan")
        return out

    def summary(self) -> str:
        def pct(e: Estimate) -> str:
            if not e.defined:
                return f"undefined ({e.note or 'too few held-out intervals'})"
            ci = (f" [{100 * e.ci[0]:.0f}, {100 * e.ci[1]:.0f}]" if e.ci is not None and all(
                c is not None and math.isfinite(c) for c in e.ci) else " (no interval: too few families)")
            return f"{100 * e.value:.0f}%{ci}"

        cov = "; ".join(f"{k} interval covers {pct(e)}" for k, e in self.coverage.items())
        return (f"Calibration of the predictive interval (leave one family out, {self.n_intervals} intervals "
                f"of {self.n_families} families): {cov}; the most probable predicted phase matches the "
                f"observed one for {pct(self.phase_match)} (CIs resample families).")


def phase_calibration(data, pair=None, *, guard: float = DEFAULT_GUARD, levels: Sequence[float] = (0.8, 0.95),
                      n_resamples: int = stats.DEFAULT_BOOTSTRAP, ci_level: float = 0.95,
                      seed: int | np.random.SeedSequence | None = None) -> PhaseCalibration:
    """Leave-one-family-out coverage of the predictive interval on a panel frame or a
    :class:`LocalCoupling` (see :class:`PhaseCalibration`). One loop over families; the
    resamples and the held-out intervals are vectorised."""
    lc = data if isinstance(data, LocalCoupling) else local_coupling(data, pair, guard=guard)
    iv = lc.intervals
    x, y = iv["x_mid"].to_numpy(float), iv["gamma"].to_numpy(float)
    codes, names = family_codes(iv["family"])
    levels = sorted({float(v) for v in levels})
    if not all(0 < v < 1 for v in levels):
        raise CapeError(f"calibration levels must lie in (0, 1), not {levels}")
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    g = np.random.default_rng(seq)
    observed = phase_label(y)
    covered = {v: np.full(len(y), np.nan) for v in levels}
    match = np.full(len(y), np.nan)
    predicted = np.full(len(y), "", dtype=object)
    notes = []
    for k, fam in enumerate(names):                       # one refit per family, resamples vectorised
        test = codes == k
        rx, ry = x[~test], y[~test]
        rcodes = np.unique(codes[~test], return_inverse=True)[1]
        if len(names) < 3 or (~test).sum() < 3 or np.unique(rx).size < 2:
            notes.append(f"{fam} not scored: without it fewer than 2 families or 3 intervals at 2 sizes remain")
            continue
        xm = float(rx.mean())
        bs = stats.bootstrap_moments(_ols_terms(rx, ry), lambda M: np.stack(_ols_finish(M, xm), axis=1),
                                     n_resamples=n_resamples, rng=g, clusters=rcodes, jackknife=False)
        if bs.n_valid == 0:
            notes.append(f"{fam} not scored: every bootstrap fit without it was undefined")
            continue
        a, b = bs.estimate
        pred = predictive_draws(bs.distribution, x[test], rx, ry, rcodes, a, b, g)
        for v in levels:
            lo, hi = np.quantile(pred, [(1 - v) / 2, (1 + v) / 2], axis=0)
            covered[v][test] = (y[test] >= lo) & (y[test] <= hi)
        best = np.asarray(PHASES)[_phase_probabilities(pred).argmax(axis=0)]
        match[test] = best == observed[test]
        predicted[test] = best
    scored = np.isfinite(match)
    sc = np.unique(codes[scored], return_inverse=True)[1]
    n_fam = int(np.unique(codes[scored]).size)

    def share(hit: np.ndarray, name: str) -> Estimate:
        h = hit[scored]
        if h.size == 0:
            return Estimate(name, float("nan"), n=0, method="share of held-out intervals", unit="interval",
                            note="no family could be held out")
        bs = stats.bootstrap_moments(np.column_stack([np.ones_like(h), h]), lambda M: M[:, 1] / M[:, 0],
                                     n_resamples=n_resamples, rng=g, clusters=sc, jackknife=False)
        lo, hi, used = bs.ci(ci_level, "percentile")
        return Estimate(name, float(h.mean()), n=int(h.size),
                        method=f"share of {h.size} held-out intervals of {n_fam} families",
                        ci=(float(lo[0]), float(hi[0])), level=ci_level, interval=f"{used}, resampling families", unit="interval",
                        n_resamples=n_resamples, discarded=bs.discarded)

    coverage = {f"{round(100 * v):g}%": share(covered[v], f"coverage of the {round(100 * v):g}% predictive interval")
                for v in levels}
    pm = share(match, "most probable predicted phase = observed phase")
    rows = pd.DataFrame({"family": iv["family"].to_numpy(), "model_lo": iv["model_lo"].to_numpy(),
                         "model_hi": iv["model_hi"].to_numpy(), "x_mid": x, "gamma": y, "observed": observed,
                         "predicted": predicted, "matched": match,
                         **{f"covered_{round(100 * v):g}": covered[v] for v in levels}})
    table = rows.groupby("family", sort=False).agg(
        n=("matched", "size"), **{c: (c, "mean") for c in rows.columns if c.startswith("covered_")},
        phase_match=("matched", "mean")).reset_index()
    method = ("leave one family out: refit and family-bootstrap the line without the family, residuals from "
              "the other families only; " + PREDICTIVE_METHOD)
    return PhaseCalibration(lc.panel, levels, coverage, pm, int(scored.sum()), n_fam, table, rows, method, notes)


@dataclass
class ModelPhase(Result):
    """Everything :func:`phase_of_model` found, with the numbers it used.

    ``p_tax``/``p_transition``/``p_bonus`` come from the predictive distribution of one new
    interval's coupling at this size (``gamma_predictive``, ``predictive_method``) and
    ``phase_predictive`` is the most probable of them; ``line_only`` holds the paper
    protocol's probabilities from the bootstrap of the fitted line alone, whose point
    estimate labels ``phase``. ``calibration`` is the predictive interval's leave-one-family-
    out coverage (``calibration_near``: the same, for the held-out intervals within half a
    decade of this size, where the pooled figure may hide under-coverage). ``depends_on``
    says which inputs each part uses: the size-based phase uses the size only, the scores
    enter only the isocline and h(D).
    """

    panel: str
    b1: str
    b2: str
    params: float
    score_b1: float
    score_b2: float
    family: str | None
    gamma: Estimate
    p_tax: float
    p_transition: float
    p_bonus: float
    phase: str
    phase_predictive: str
    gamma_predictive: Estimate
    predictive_intervals: dict
    predictive_method: str
    line_only: dict
    calibration: PhaseCalibration
    calibration_near: dict
    depends_on: dict
    running: dict
    isocline: Isocline
    isocline_phase: str
    isocline_k_used: float
    h: Estimate
    reference_families: list[str]
    reference_curve: dict
    family_interval: dict | None
    nearest: pd.DataFrame
    explanation: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return self.explanation


def _reference(pdat, reference_families) -> tuple[list[str], pd.DataFrame]:
    """The reference families of h(D) (default: all) and their models."""
    f = pdat.frame
    ref = list(dict.fromkeys(f["family"])) if not reference_families else [r.strip() for r in reference_families]
    unknown = sorted(set(ref) - set(f["family"]))
    if unknown:
        raise CapeError(f"reference families not in {pdat.panel}: {', '.join(unknown)}")
    rf = f[f["family"].isin(ref)]
    if rf["x"].nunique() < 3:
        raise CapeError("the reference curve needs 3+ distinct sizes among the reference families")
    return ref, rf


def curation_field(frame: pd.DataFrame, reference_families: Sequence[str] | None = None,
                   family: str | None = None, pair=None) -> pd.DataFrame:
    """h(D) of every model of the panel (or of one family): its B2 score minus the quadratic
    in log10 N fitted to the reference families (default: every family). Columns model,
    family, params, b2, curve, h."""
    pdat = pair_data(frame, pair)
    _, rf = _reference(pdat, reference_families)
    coef = quadratic_coefficients(rf["x"].to_numpy(), rf["b2"].to_numpy())
    f = pdat.frame if family is None else pdat.frame[pdat.frame["family"] == family]
    curve = coef[0] * f["x"] ** 2 + coef[1] * f["x"] + coef[2]
    return pd.DataFrame({"model": f["model"], "family": f["family"], "params": f["params"], "b2": f["b2"],
                         "curve": curve, "h": f["b2"] - curve}).reset_index(drop=True)


def phase_of_model(frame: pd.DataFrame, params: float, score_b1: float, score_b2: float, *,
                   pair=None, family: str | None = None,
                   reference_families: Sequence[str] | None = None, isocline_k: float | None = None,
                   guard: float = DEFAULT_GUARD, n_resamples: int = stats.DEFAULT_BOOTSTRAP,
                   level: float = 0.95, seed: int | None = None) -> ModelPhase:
    """Place one model (size in parameters, both scores in percent) against a panel.

    The size-based phase (line-only and predictive probabilities, their calibration) uses
    ``params`` only; the scores enter only the isocline, h(D) and the nearest models.
    ``reference_families`` are the families whose B2-on-log10 N quadratic defines h(D) = 0
    (default: every family of the panel); ``isocline_k`` evaluates a given k beside the
    fitted one (the fitted k is used when it is None)."""
    if not (params and params > 0):
        raise CapeError(f"--params must be a positive parameter count, not {params}")
    for name, v in (("first", score_b1), ("second", score_b2)):
        if not (0 <= v <= 100):
            raise CapeError(f"the {name} score must be a percentage in [0, 100], not {v}")
    pdat = pair_data(frame, pair)
    f = pdat.frame
    x = float(np.log10(params))
    notes = []
    # 1. running coupling
    lc = local_coupling(frame, pair, guard=guard)
    rc = running_coupling(lc, n_resamples=n_resamples, level=level, seed=seed)
    g_hat, draws = rc.gamma_at(params)
    alpha = (1 - level) / 2
    g_lo, g_hi = np.percentile(draws, [100 * alpha, 100 * (1 - alpha)])
    line_p = _phase_probabilities(draws[:, None])[:, 0]
    phase = str(phase_label(g_hat))
    # 1b. predictive: the line's bootstrap plus the scatter of intervals about it (by family)
    seq_pred, seq_cal = np.random.SeedSequence(seed).spawn(2)
    ivx, ivy = rc.intervals["x_mid"].to_numpy(float), rc.intervals["gamma"].to_numpy(float)
    ivc, _ = family_codes(rc.intervals["family"])
    pred = predictive_draws(rc.draws, np.array([x]), ivx, ivy, ivc, rc.A.value, rc.B.value,
                            np.random.default_rng(seq_pred))[:, 0]
    p_tax, p_tr, p_bonus = (float(v) for v in _phase_probabilities(pred[:, None])[:, 0])
    phase_pred = PHASES[int(np.argmax([p_tax, p_tr, p_bonus]))]
    levels = sorted({CALIBRATION_LEVEL, float(level)})
    pis = {f"{round(100 * v):g}%": [float(q) for q in np.quantile(pred, [(1 - v) / 2, (1 + v) / 2])]
           for v in levels}
    lvl_key = f"{round(100 * level):g}%"
    gamma_pred = Estimate("gamma of one new interval at this size (predictive)", float(g_hat), n=rc.n_intervals,
                          method=PREDICTIVE_METHOD, ci=tuple(pis[lvl_key]), level=level,
                          interval=f"percentile of {len(pred):,} predictive draws", unit="interval",
                          n_resamples=n_resamples, discarded=rc.A.discarded, median=float(np.median(pred)))
    cal = phase_calibration(lc, levels=levels, n_resamples=n_resamples, ci_level=level, seed=seq_cal)
    cal_near = cal.near(x, NEAR_DECADES)
    line_only = {"p_tax": float(line_p[0]), "p_transition": float(line_p[1]), "p_bonus": float(line_p[2]),
                 "method": f"line only (paper protocol): share of {len(draws):,} family-cluster bootstrap fits "
                           f"of A log10 N + B in each phase band; the uncertainty of the average line, "
                           f"not the spread of intervals about it"}
    if not (rc.x_range[0] <= x <= rc.x_range[1]):
        notes.append(f"{fmt_num(params)} is outside the sizes the running coupling was fitted on "
                     f"({fmt_num(10 ** rc.x_range[0])}-{fmt_num(10 ** rc.x_range[1])}): an extrapolation")
    gamma = Estimate("gamma_hat at this size", float(g_hat), n=rc.n_intervals,
                     method=f"running coupling A log10 N + B (A = {rc.A.value:.3g}, B = {rc.B.value:.3g})",
                     ci=(float(g_lo), float(g_hi)), level=level,
                     interval=f"percentile of {len(draws):,} bootstrap fits, resampling {_plural(rc.resampling)}",
                     unit="interval", n_resamples=n_resamples, discarded=rc.A.discarded)
    # 2. isocline
    iso = fit_isocline(frame, pair, guard=guard, local=lc)
    k_used = iso.k if isocline_k is None else float(isocline_k)
    s = (score_b2 / 100) ** 2 / (score_b1 / 100) if score_b1 > 0 else float("inf")
    iso_phase = "bonus" if s > k_used else "tax"
    if not (iso.labels["score"].min() < iso.k < iso.labels["score"].max()):
        notes.append("the best isocline puts every labelled model in one class: the rule has no "
                     "predictive value on this panel")
    # 3. curation field
    ref, rf = _reference(pdat, reference_families)
    terms = _quad_terms(rf["x"].to_numpy(), rf["b2"].to_numpy())
    xm = float(rf["x"].mean())
    coef = quadratic_coefficients(rf["x"].to_numpy(), rf["b2"].to_numpy())
    curve = float(coef[0] * x * x + coef[1] * x + coef[2])

    def finish(M):
        c = _quad_finish(M, xm)
        return score_b2 - (c[:, 0] * x * x + c[:, 1] * x + c[:, 2])

    bs = stats.bootstrap_moments(terms, finish, n_resamples=n_resamples, rng=np.random.default_rng(seed),
                                 jackknife=False)
    lo, hi, _ = bs.ci(level, "percentile")
    h = Estimate("h(D) curation field", score_b2 - curve, n=len(rf),
                 method=f"{pdat.b2} minus the quadratic in log10 N of {len(ref)} reference families "
                        f"(curve = {curve:.2f} at this size)",
                 ci=(float(lo[0]), float(hi[0])), level=level, interval="percentile bootstrap over models",
                 n_resamples=n_resamples, discarded=bs.discarded)
    # 4. the family's own interval at this size
    fam_iv = None
    if family:
        sub = lc.intervals[(lc.intervals["family"] == family) & (lc.intervals["params_lo"] <= params)
                           & (lc.intervals["params_hi"] >= params)]
        if family not in set(f["family"]):
            notes.append(f"family '{family}' is not in {pdat.panel}")
        elif sub.empty:
            notes.append(f"no interval of {family} in the panel spans {fmt_num(params)}")
        else:
            fam_iv = {k: (v.item() if hasattr(v, "item") else v) for k, v in sub.iloc[0].items()}
    # 5. nearest models (standardised log10 N and both scores)
    feats = f[["x", "b1", "b2"]].to_numpy()
    sd = feats.std(axis=0)
    sd[sd == 0] = 1
    d = np.sqrt((((feats - np.array([x, score_b1, score_b2])) / sd) ** 2).sum(axis=1))
    near = f.assign(distance=d).nsmallest(N_NEAREST, "distance")[["model", "family", "params", "b1", "b2", "distance"]]
    near = near.rename(columns={"b1": pdat.b1, "b2": pdat.b2}).reset_index(drop=True)
    # 6. explanation
    B1, B2 = pdat.b1, pdat.b2
    inputs = (f"the size-based phase uses only N ({fmt_num(params)}); your scores ({B1} {score_b1:g}, "
              f"{B2} {score_b2:g}) enter only the isocline and h(D) lines (and the nearest models)")
    depends_on = {"size_phase": ["params"], "isocline": [B1, B2], "h": [B2], "nearest": ["params", B1, B2],
                  "text": inputs}
    pi_text = ", ".join(f"{k} PI [{lo:+.2f}, {hi:+.2f}]" for k, (lo, hi) in pis.items())
    lines = [
        f"A model of {fmt_num(params)} parameters with {B1} {score_b1:g} and {B2} {score_b2:g}, "
        f"placed against {pdat.panel}.",
        f"Inputs: {inputs}.",
        f"- Running coupling, line only (paper protocol): gamma(N) = {rc.A.value:.3g} log10 N {rc.B.value:+.3g}, "
        f"fitted to {rc.n_intervals} within-family intervals of {rc.n_families} families. At log10 N = {x:.3f} "
        f"gamma_hat = {g_hat:+.3f} ({int(100 * level)}% CI [{g_lo:+.3f}, {g_hi:+.3f}], "
        f"{len(draws):,} bootstrap fits resampling {_plural(rc.resampling)}): phase '{phase}'. "
        f"Line-only P(tax) = {line_p[0]:.2f}, P(transition) = {line_p[1]:.2f}, P(bonus) = {line_p[2]:.2f}: "
        f"the uncertainty of the average line, not where one model's coupling falls.",
        f"- Predictive phase (line bootstrap + scatter of the {rc.n_intervals} interval couplings about the "
        f"line, drawn family first, then interval): {pi_text}; P(tax, gamma < {TAX_BELOW}) = {p_tax:.2f}, "
        f"P(transition) = {p_tr:.2f}, P(bonus, gamma > {BONUS_ABOVE}) = {p_bonus:.2f}; "
        f"most probable '{phase_pred}'.",
        "- " + cal.summary(),
        f"  Near this size (held-out intervals within {cal_near['half_width_decades']:g} decade of it: "
        f"{cal_near['n']} intervals of {cal_near['n_families']} families): " + (", ".join(
            f"{k[len('covered_'):]}% interval covers {100 * v:.0f}%" for k, v in cal_near.items()
            if k.startswith("covered_")) + f"; phase match {100 * cal_near['phase_match']:.0f}%."
            if cal_near["n"] else "none."),
        f"- Isocline: ({B2}/100)^2 / ({B1}/100) = {s:.4f} against k = {k_used:.4f}"
        f"{' (fitted)' if isocline_k is None else ' (given; fitted k = ' + format(iso.k, '.4f') + ')'}: "
        f"'{iso_phase}'. The fitted k classifies {100 * iso.accuracy:.1f}% of {iso.n} labelled models "
        f"in sample and {100 * iso.accuracy_lofo:.1f}% leaving each family out.",
        f"- Curation field: the reference curve ({len(ref)} families, {len(rf)} models) gives "
        f"{curve:.2f} at this size, so h(D) = {score_b2 - curve:+.2f} points "
        f"(CI [{lo[0]:+.2f}, {hi[0]:+.2f}]).",
    ]
    if fam_iv:
        lines.append(f"- Its family {family}: the interval {fam_iv['model_lo']} -> {fam_iv['model_hi']} "
                     f"spanning this size has gamma = {fam_iv['gamma']:+.3f} ({fam_iv['phase']}).")
    lines.append("- Nearest models: " + ", ".join(
        f"{r['model']} ({fmt_num(r['params'])}, {r[B1]:g}/{r[B2]:g}, d = {r['distance']:.2f})"
        for r in near.to_dict("records")) + ".")
    notes += [f"calibration: {n}" for n in cal.notes]
    lines += [f"- Note: {n}" for n in notes]
    return ModelPhase(pdat.panel, B1, B2, float(params), float(score_b1), float(score_b2), family,
                      gamma, p_tax, p_tr, p_bonus, phase, phase_pred, gamma_pred, pis, PREDICTIVE_METHOD,
                      line_only, cal, cal_near, depends_on,
                      {"A": rc.A, "B": rc.B, "crossing": rc.crossing, "n_intervals": rc.n_intervals},
                      iso, iso_phase, k_used, h, ref,
                      {"a": float(coef[0]), "b": float(coef[1]), "c": float(coef[2])}, fam_iv, near,
                      "\n".join(lines), notes)
