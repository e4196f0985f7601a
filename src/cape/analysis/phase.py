"""Phase of one model (METHODS.md section 5): where a model of a given size and scores sits.

- gamma_hat(N) from the running coupling, with its bootstrap distribution and the
  probability of each phase (tax / transition / bonus);
- the isocline rule "bonus if B2 > sqrt(k * B1)" (scores as fractions) with k *fitted* to
  the panel's interval phases, and its leave-one-family-out accuracy;
- the curation field h(D) = B2 - (quadratic in log10 N fitted to reference families);
- the nearest models of the panel; and a plain-language explanation with every number used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import stats
from ..errors import CapeError
from .data import pair_data
from .gamma import BONUS_ABOVE, DEFAULT_GUARD, TAX_BELOW, LocalCoupling, local_coupling, phase_label, running_coupling
from .nc import _quad_finish, _quad_terms, quadratic_coefficients
from .results import Estimate, Result, fmt_num

__all__ = ["Isocline", "fit_isocline", "ModelPhase", "phase_of_model", "curation_field", "N_NEAREST"]

#: Models listed as the nearest neighbours of the one being placed.
N_NEAREST = 5


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


@dataclass
class ModelPhase(Result):
    """Everything :func:`phase_of_model` found, with the numbers it used."""

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
    p_tax, p_bonus = float((draws < TAX_BELOW).mean()), float((draws > BONUS_ABOVE).mean())
    p_tr = 1 - p_tax - p_bonus
    phase = str(phase_label(g_hat))
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
    lines = [
        f"A model of {fmt_num(params)} parameters with {B1} {score_b1:g} and {B2} {score_b2:g}, "
        f"placed against {pdat.panel}:",
        f"- Running coupling: gamma(N) = {rc.A.value:.3g} log10 N {rc.B.value:+.3g}, fitted to "
        f"{rc.n_intervals} within-family intervals of {rc.n_families} families. At log10 N = {x:.3f} "
        f"gamma_hat = {g_hat:+.3f} ({int(100 * level)}% CI [{g_lo:+.3f}, {g_hi:+.3f}], "
        f"{len(draws):,} bootstrap fits resampling {_plural(rc.resampling)}): phase '{phase}'. "
        f"P(tax, gamma < {TAX_BELOW}) = {p_tax:.2f}, P(transition) = {p_tr:.2f}, "
        f"P(bonus, gamma > {BONUS_ABOVE}) = {p_bonus:.2f}.",
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
    lines += [f"- Note: {n}" for n in notes]
    return ModelPhase(pdat.panel, B1, B2, float(params), float(score_b1), float(score_b2), family,
                      gamma, p_tax, p_tr, p_bonus, phase,
                      {"A": rc.A, "B": rc.B, "crossing": rc.crossing, "n_intervals": rc.n_intervals},
                      iso, iso_phase, k_used, h, ref,
                      {"a": float(coef[0]), "b": float(coef[1]), "c": float(coef[2])}, fam_iv, near,
                      "\n".join(lines), notes)
