"""Estimators of the critical scale N_c (METHODS.md section 4), each with its bootstrap
distribution, interval, n and count of discarded resamples.

(a) paper protocol: vertex of the quadratic B2 = a x^2 + b x + c (x = log10 N) over the
    pooled points, 10,000 resamples of single models, a resample kept only when a > 0 and
    the vertex lies in (10^7, 10^12); (b) the same, resampling whole families;
(c) the zero crossing of the running coupling; (d) per-family sign changes of the interval
coupling inside each family's own size range; (e) (a) with each family left out, each
estimate flagged when it lies outside its own interval, outside the full-data interval, or
outside the sizes it was fitted on. A vertex outside the panel's sizes is an extrapolation,
and its Estimate's note says so.

:func:`sign_change_test` tests the claim that the coupling changes sign from tax to bonus at
N_c against a claimed interval (direction, place, contradicting families).
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import stats
from ..errors import CapeError
from .data import family_codes, pair_data
from .gamma import DEFAULT_GUARD, LocalCoupling, RunningCoupling, local_coupling, running_coupling
from .results import Estimate, Result, fmt_num, internal

__all__ = ["PAPER_VERTEX_WINDOW", "QuadraticVertex", "quadratic_vertex", "quadratic_coefficients",
           "paper_vertex", "extrapolation", "family_crossings", "SignChangeTest", "sign_change_test",
           "CriticalScale", "critical_scale"]

#: The preprint's acceptance window for a resampled vertex, in log10 N: (10^7, 10^12).
PAPER_VERTEX_WINDOW = (7.0, 12.0)


def _quad_terms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-observation terms of a weighted quadratic fit, plus one indicator column per
    distinct size (to count the distinct sizes a resample drew)."""
    xc = x - x.mean()
    _, inv = np.unique(x, return_inverse=True)
    distinct = np.eye(inv.max() + 1)[inv]
    return np.column_stack([np.ones_like(xc), xc, xc ** 2, xc ** 3, xc ** 4, y, xc * y, xc * xc * y, distinct])


def _quad_finish(M: np.ndarray, xm: float) -> np.ndarray:
    """(a, b, c) of y = a x^2 + b x + c in the original x, from summed :func:`_quad_terms`;
    NaN rows where fewer than 3 distinct sizes were drawn."""
    s = M[:, :5]
    A = np.stack([np.stack([s[:, 4], s[:, 3], s[:, 2]], 1),
                  np.stack([s[:, 3], s[:, 2], s[:, 1]], 1),
                  np.stack([s[:, 2], s[:, 1], s[:, 0]], 1)], 1)  # (B, 3, 3) normal equations
    rhs = M[:, [7, 6, 5]]
    ok = (M[:, 8:] > 0).sum(axis=1) >= 3
    sol = np.linalg.solve(np.where(ok[:, None, None], A, np.eye(3)), rhs[:, :, None])[:, :, 0]
    a, bc, cc = sol[:, 0], sol[:, 1], sol[:, 2]
    out = np.stack([a, bc - 2 * a * xm, cc - bc * xm + a * xm * xm], axis=1)
    out[~ok] = np.nan
    return out


def quadratic_coefficients(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(a, b, c) of the full-data least-squares fit y = a x^2 + b x + c."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return _quad_finish(_quad_terms(x, y).sum(axis=0, keepdims=True), float(x.mean()))[0]


def paper_vertex(frame: pd.DataFrame, pair=None) -> float:
    """N_c of the paper protocol's full-data fit (no bootstrap): 10^(-b/2a) of the quadratic
    of the pair's second benchmark on log10 N over the panel's models."""
    f = pair_data(frame, pair, need_size=True).frame
    if f["x"].nunique() < 3:
        raise CapeError(f"a quadratic needs at least 3 distinct sizes; got {f['x'].nunique()}")
    a, b, _ = quadratic_coefficients(f["x"].to_numpy(), f["b2"].to_numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(10 ** (-b / (2 * a)))


@dataclass
class QuadraticVertex(Result):
    """N_c as the vertex of a quadratic fit of one benchmark on log10 N, bootstrapped."""

    estimate: Estimate
    coefficients: dict
    benchmark: str
    models: list[str]
    window: tuple[float, float]
    distribution: np.ndarray = internal(repr=False)

    def summary(self) -> str:
        return self.estimate.describe()


def quadratic_vertex(x: np.ndarray, y: np.ndarray, *, families: np.ndarray | None = None,
                     unit: str = "model", n_resamples: int = stats.DEFAULT_BOOTSTRAP,
                     level: float = 0.95, window: tuple[float, float] = PAPER_VERTEX_WINDOW,
                     seed: int | None = None, name: str = "N_c (quadratic vertex)",
                     benchmark: str = "", models: list[str] | None = None,
                     progress: stats.Progress | None = None) -> QuadraticVertex:
    """Vertex 10^(-b/2a) of y = a x^2 + b x + c, with a bootstrap that keeps a resample
    only when a > 0 (a U, so the vertex is a minimum) and the vertex is inside ``window``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = x.size
    clusters = None
    if unit == "family":
        if families is None:
            raise CapeError("family resampling needs a family per model")
        clusters = family_codes(pd.Series(families))[0]
    elif unit != "model":
        raise CapeError(f"the resampling unit is 'model' or 'family', not '{unit}'")
    if n < 3 or np.unique(x).size < 3:
        raise CapeError(f"a quadratic needs at least 3 distinct sizes; got {np.unique(x).size}")

    xm = float(x.mean())

    def finish(M):
        coef = _quad_finish(M, xm)
        with np.errstate(invalid="ignore", divide="ignore"):
            xv = -coef[:, 1] / (2 * coef[:, 0])
        return np.column_stack([xv, coef[:, 0]])

    def accept(v):
        return (v[:, 1] > 0) & (v[:, 0] > window[0]) & (v[:, 0] < window[1])

    terms = _quad_terms(x, y)
    bs = stats.bootstrap_moments(terms, finish, n_resamples=n_resamples, rng=np.random.default_rng(seed),
                                 clusters=clusters, accept=accept, jackknife=False, progress=progress)
    coef = quadratic_coefficients(x, y)
    with np.errstate(invalid="ignore", divide="ignore"):
        xv = float(-coef[1] / (2 * coef[0]))
    notes = []
    if not coef[0] > 0:
        notes.append("the full-data fit opens downward (a <= 0): its vertex is a maximum, not a U")
    extra = extrapolation(xv, x)
    if extra:
        notes.append(extra)
    if bs.n_valid == 0:
        notes.append(f"every one of the {n_resamples:,} resamples was discarded (a <= 0 or vertex "
                     f"outside 10^{window[0]:g}-10^{window[1]:g}): no interval")
        ci, med = None, None
    else:
        lo, hi, _ = bs.ci(level, "percentile")
        ci = (float(10 ** lo[0]), float(10 ** hi[0]))
        med = float(10 ** np.median(bs.distribution[:, 0]))
    n_units = n if clusters is None else int(clusters.max()) + 1
    est = Estimate(name, float(10 ** xv) if np.isfinite(xv) else float("nan"), n=n,
                   method=f"vertex of the quadratic of {benchmark or 'y'} on log10 N (full-data fit)",
                   ci=ci, level=level,
                   interval=(f"percentile bootstrap, resampling {'models' if clusters is None else f'{n_units} families'}; "
                             f"kept when a > 0 and 10^{window[0]:g} < vertex < 10^{window[1]:g}"),
                   unit="model", n_resamples=n_resamples, discarded=bs.discarded, median=med,
                   note="; ".join(notes) or None)
    return QuadraticVertex(est, {"a": float(coef[0]), "b": float(coef[1]), "c": float(coef[2])},
                           benchmark, list(models or []), window, bs.distribution[:, 0])


def extrapolation(x_value: float, x: np.ndarray) -> str | None:
    """'extrapolated: below/above the smallest/largest size in the panel (...)' when a
    log10 size lies outside the sizes ``x`` (log10) behind it; None inside or undefined."""
    x = np.asarray(x, dtype=float)
    if not np.isfinite(x_value) or x.size == 0:
        return None
    if x_value < x.min():
        return f"extrapolated: below the smallest size in the panel ({fmt_num(10 ** x.min())})"
    if x_value > x.max():
        return f"extrapolated: above the largest size in the panel ({fmt_num(10 ** x.max())})"
    return None


def _note_extrapolation(e: Estimate, x: np.ndarray) -> None:
    """Add to an N_c estimate's note where it, or its interval, lies beyond the panel's
    sizes ``x`` (log10): such a value is an extrapolation of the fit, not a size seen."""
    notes = [e.note] if e.note else []
    if e.defined and e.value > 0 and not any("extrapolat" in n for n in notes):
        extra = extrapolation(np.log10(e.value), x)
        if extra:
            notes.append(extra)
    if e.ci is not None and all(c is not None and np.isfinite(c) and c > 0 for c in e.ci):
        lo, hi = np.log10(e.ci[0]), np.log10(e.ci[1])
        beyond = [w for w, on in (("below", lo < x.min()), ("above", hi > x.max())) if on]
        if beyond:
            notes.append(f"the interval reaches {' and '.join(beyond)} the panel's sizes "
                         f"({fmt_num(10 ** x.min())}-{fmt_num(10 ** x.max())})")
    e.note = "; ".join(notes) or None


def family_crossings(lc: LocalCoupling) -> pd.DataFrame:
    """Per family: does the interval coupling change sign inside the family's own range?

    Columns: family, n_intervals, params_min, params_max (interval midpoints), gamma_min,
    gamma_max, sign_changes, crossings (sizes, by linear interpolation in log10 N between the
    two intervals around each change), fit_crossing (zero of the family's own OLS line, with
    3+ intervals), fit_in_range, verdict.
    """
    rows = []
    for fam, sub in lc.intervals.groupby("family", sort=False):
        g, xm = sub["gamma"].to_numpy(), sub["x_mid"].to_numpy()
        s = np.sign(g)
        nz = s != 0
        gs, xs = g[nz], xm[nz]
        change = np.nonzero(np.sign(gs[1:]) != np.sign(gs[:-1]))[0]
        cross = [float(10 ** (xs[i] + (xs[i + 1] - xs[i]) * (-gs[i]) / (gs[i + 1] - gs[i]))) for i in change]
        fit_x, in_range = float("nan"), False
        if len(sub) >= 3 and np.ptp(xm) > 0:
            a, b = np.polyfit(xm, g, 1)
            # a flat line (equal gammas give a slope of rounding size) has no zero crossing
            if abs(a) * np.ptp(xm) > 1e-9 * max(1.0, float(np.abs(g).max())):
                fit_x = float(-b / a)
                in_range = bool(xm.min() <= fit_x <= xm.max())
        if len(sub) < 2:
            verdict = "one interval: a sign change cannot be seen"
        elif cross:
            verdict = "changes sign in range at " + ", ".join(fmt_num(c) for c in cross)
        else:
            verdict = "none in range (" + ("no sign: every coupling is 0" if gs.size == 0 else
                                           "always tax-signed" if (gs < 0).all() else
                                           "always bonus-signed" if (gs > 0).all() else "no sign") + ")"
        rows.append({"family": fam, "n_intervals": len(sub),
                     "params_min": float(sub["params_mid"].min()), "params_max": float(sub["params_mid"].max()),
                     "gamma_min": float(g.min()), "gamma_max": float(g.max()),
                     "sign_changes": len(cross), "crossings": cross,
                     "fit_crossing": float(10 ** fit_x) if np.isfinite(fit_x) and abs(fit_x) < 300 else float("nan"),
                     "fit_in_range": in_range, "verdict": verdict})
    return pd.DataFrame(rows, columns=["family", "n_intervals", "params_min", "params_max", "gamma_min",
                                       "gamma_max", "sign_changes", "crossings", "fit_crossing",
                                       "fit_in_range", "verdict"])


@dataclass
class SignChangeTest(Result):
    """Does the interval coupling change sign from tax to bonus, as size grows, inside a
    claimed interval of sizes (the preprint's N_c and its CI)? See :func:`sign_change_test`.

    ``table``: one row per family with family, n_intervals, params_min, params_max
    (interval midpoints), changes (crossing sizes), directions ('up' tax -> bonus, 'down'
    bonus -> tax), can_show (its intervals reach both sides of some size in the interval),
    status ('supports', 'contradicts', 'no change in the interval', 'cannot show it') and
    detail (the numbers behind the status). ``dropped``: the intervals the |dA| guard left
    out. ``holds``: see :func:`sign_change_test`."""

    panel: str
    b1: str
    b2: str
    interval: tuple[float, float]
    guard: float
    table: pd.DataFrame
    dropped: pd.DataFrame
    supporting: list[str]
    contradicting: list[str]
    able: list[str]
    holds: bool

    def summary(self) -> str:
        lo, hi = self.interval
        lines = [f"Sign changes of d{self.b2}/d{self.b1} in {self.panel} against [{fmt_num(lo)}, {fmt_num(hi)}] "
                 f"(guard |d{self.b1}| >= {fmt_num(self.guard)} pp): {len(self.supporting)} of {len(self.able)} "
                 f"families that can show it change tax -> bonus inside; {len(self.contradicting)} contradict; "
                 + ("holds" if self.holds else "does not hold")]
        for r in self.table.to_dict("records"):
            lines.append(f"  {r['family']}: {r['status']} ({r['detail']})")
        for r in self.dropped.to_dict("records"):
            lines.append(f"  dropped {r['family']} {r['model_lo']} -> {r['model_hi']} (d{self.b1} {r['d_b1']:+.2f} pp)")
        return "\n".join(lines)


def sign_change_test(lc: LocalCoupling, interval: tuple[float, float]) -> SignChangeTest:
    """Test "the coupling changes sign within families at N_c (tax below, bonus above)"
    against ``interval`` = (low, high) in parameters, on the kept intervals of ``lc`` (so
    its |dA| guard applies; the intervals it dropped are listed).

    Per family, with zero couplings skipped (no sign) and each change placed by linear
    interpolation in log10 N between the two interval midpoints around it (as
    :func:`family_crossings`):

    - contradicts: a bonus -> tax change, a bonus-signed interval below ``low`` or a
      tax-signed interval above ``high``;
    - supports (when it does not contradict): a tax -> bonus change inside the interval;
    - no change in the interval: it can show one (2+ signed intervals whose midpoints
      reach the interval from both sides: smallest <= high and largest >= low) but does
      not (always one sign, or its change lies outside the interval);
    - cannot show it: otherwise (one interval, or every midpoint on one side).

    The claim holds when more than half of the families that can show it support it and
    the contradicting families are fewer than half of the families that can show it or
    contradict it.
    """
    lo, hi = float(interval[0]), float(interval[1])
    if not (0 < lo <= hi and np.isfinite(hi)):
        raise CapeError(f"the claimed interval must be two sizes 0 < low <= high, not {interval}")
    xlo, xhi = np.log10(lo), np.log10(hi)
    iv = lc.intervals
    fam_all = iv["family"].to_numpy()
    g_all = iv["gamma"].to_numpy(dtype=float)
    nz = g_all != 0
    f, g = fam_all[nz], g_all[nz]
    x, mid = iv["x_mid"].to_numpy(dtype=float)[nz], iv["params_mid"].to_numpy(dtype=float)[nz]
    same = np.r_[False, f[1:] == f[:-1]]                          # previous signed interval, same family
    gp, xp = np.r_[np.nan, g[:-1]], np.r_[np.nan, x[:-1]]
    up = same & (gp < 0) & (g > 0)
    down = same & (gp > 0) & (g < 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        xc = xp + (x - xp) * (-gp) / (g - gp)
    inside = (xc >= xlo) & (xc <= xhi)
    bonus_below = (g > 0) & (mid < lo)
    tax_above = (g < 0) & (mid > hi)
    rows = []
    order = list(dict.fromkeys(fam_all))
    ev = pd.DataFrame({"family": f, "up": up, "down": down, "in": up & inside, "xc": xc, "mid": mid, "g": g,
                       "bb": bonus_below, "ta": tax_above})
    span = iv.groupby("family", sort=False)["params_mid"].agg(["size", "min", "max"])
    signed = ev.groupby("family", sort=False)["g"].size()
    groups = dict(tuple(ev.groupby("family", sort=False)))
    for fam in order:                                             # one pass per family, for the text
        e = groups.get(fam, ev.iloc[0:0])
        n_iv, pmin, pmax = int(span.at[fam, "size"]), float(span.at[fam, "min"]), float(span.at[fam, "max"])
        ch = e[e["up"] | e["down"]]
        sizes = [float(10 ** v) for v in ch["xc"]]
        dirs = ["up" if u else "down" for u in ch["up"]]
        able = bool(signed.get(fam, 0) >= 2 and pmin <= hi and pmax >= lo)
        against = []
        if e["down"].any():
            against.append("bonus -> tax at " + ", ".join(fmt_num(10 ** v) for v in e.loc[e["down"], "xc"]))
        if e["bb"].any():
            against.append(f"bonus-signed below {fmt_num(lo)} (" + ", ".join(
                f"{v:+.3g} at {fmt_num(m)}" for v, m in zip(e.loc[e["bb"], "g"], e.loc[e["bb"], "mid"])) + ")")
        if e["ta"].any():
            against.append(f"tax-signed above {fmt_num(hi)} (" + ", ".join(
                f"{v:+.3g} at {fmt_num(m)}" for v, m in zip(e.loc[e["ta"], "g"], e.loc[e["ta"], "mid"])) + ")")
        ups = e[e["up"]]
        where = ["tax -> bonus at " + fmt_num(10 ** v) + ("" if xlo <= v <= xhi else
                                                          ", below the interval" if v < xlo else ", above the interval")
                 for v in ups["xc"]]
        if against:
            status, detail = "contradicts", "; ".join(against + where)
        elif e["in"].any():
            status, detail = "supports", "; ".join(where)
        else:
            sign = ("no signed coupling" if e.empty else "always tax-signed" if (e["g"] < 0).all() else
                    "always bonus-signed" if (e["g"] > 0).all() else "")
            detail = "; ".join([s_ for s_ in [sign] + where if s_]) or "no sign change"
            if able:
                status = "no change in the interval"
            else:
                status = "cannot show it"
                detail += ("; one signed interval" if signed.get(fam, 0) < 2 else
                           f"; its intervals ({fmt_num(pmin)}-{fmt_num(pmax)}) lie on one side of the interval")
        rows.append({"family": fam, "n_intervals": n_iv, "params_min": pmin, "params_max": pmax,
                     "changes": sizes, "directions": dirs, "can_show": able, "status": status, "detail": detail})
    table = pd.DataFrame(rows, columns=["family", "n_intervals", "params_min", "params_max", "changes",
                                        "directions", "can_show", "status", "detail"])
    supporting = table.loc[table["status"] == "supports", "family"].tolist()
    contradicting = table.loc[table["status"] == "contradicts", "family"].tolist()
    able = table.loc[table["can_show"], "family"].tolist()
    informative = set(able) | set(contradicting)
    holds = bool(able) and 2 * len(supporting) > len(able) and 2 * len(contradicting) < len(informative)
    dropped = lc.dropped
    if "reason" in dropped.columns:
        dropped = dropped[~dropped["reason"].astype(str).str.startswith("both models")]
    return SignChangeTest(lc.panel, lc.b1, lc.b2, (lo, hi), lc.guard, table, dropped.reset_index(drop=True),
                          supporting, contradicting, able, holds)


@dataclass
class CriticalScale(Result):
    """All N_c estimators for one panel and pair, side by side. ``leave_one_family_out``:
    left_out, n, nc, median, ci_low, ci_high, discarded, outside_own_ci, outside_full_ci
    (outside the paper-protocol interval of all the data), extrapolated (outside the sizes
    left after dropping the family), flags (those three in words) and note."""

    panel: str
    b1: str
    b2: str
    paper: Estimate
    family_bootstrap: Estimate
    running: Estimate | None
    per_family: pd.DataFrame
    leave_one_family_out: pd.DataFrame
    coefficients: dict
    models: list[str]
    notes: list[str] = field(default_factory=list)
    running_fit: RunningCoupling | None = internal(default=None, repr=False)
    paper_distribution: np.ndarray | None = internal(default=None, repr=False)
    family_distribution: np.ndarray | None = internal(default=None, repr=False)

    @property
    def estimates(self) -> list[Estimate]:
        return [e for e in (self.paper, self.family_bootstrap, self.running) if e is not None]

    def summary(self) -> str:
        lines = [f"Critical scale N_c in {self.panel} ({self.b2} on log10 N; coupling {self.b1} -> {self.b2})"]
        lines += ["  " + e.describe() for e in self.estimates]
        lines.append("  per-family sign changes of the interval coupling:")
        for r in self.per_family.to_dict("records"):
            lines.append(f"    {r['family']}: {r['verdict']}")
        lines.append("  leave one family out (paper protocol):")
        for r in self.leave_one_family_out.to_dict("records"):
            lines.append(f"    without {r['left_out']}: N_c = {fmt_num(r['nc'])}, median {fmt_num(r['median'])}, "
                         f"CI [{fmt_num(r['ci_low'])}, {fmt_num(r['ci_high'])}], n = {r['n']}, "
                         f"{r['discarded']:,} discarded" + (f"; {r['flags']}" if r["flags"] else ""))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def critical_scale(frame: pd.DataFrame, pair=None, *, n_resamples: int = stats.DEFAULT_BOOTSTRAP,
                   level: float = 0.95, guard: float = DEFAULT_GUARD,
                   window: tuple[float, float] = PAPER_VERTEX_WINDOW, seed: int | None = None,
                   progress: stats.Progress | None = None) -> CriticalScale:
    """Every N_c estimator of METHODS.md section 4 on one panel (default pair HellaSwag ->
    TruthfulQA; the quadratic uses the second benchmark, the couplings use both)."""
    pd_ = pair_data(frame, pair, need_size=True)
    f = pd_.frame
    if len(f) < 3:
        raise CapeError(f"{pd_.panel} has {len(f)} models with {pd_.b1}, {pd_.b2} and a size; "
                        "N_c needs at least 3")
    x, y, fam = f["x"].to_numpy(), f["b2"].to_numpy(), f["family"].to_numpy()
    steps = 2 + f["family"].nunique() + 1
    done = [0]

    def tick():
        done[0] += 1
        if progress is not None:
            progress(done[0], steps)

    kw = dict(n_resamples=n_resamples, level=level, window=window, benchmark=pd_.b2)
    paper = quadratic_vertex(x, y, seed=seed, name="N_c (a) paper protocol: quadratic vertex, model resampling",
                             models=list(f["model"]), **kw)
    tick()
    notes = []
    if f["family"].nunique() >= 2:
        fbv = quadratic_vertex(x, y, families=fam, unit="family", seed=seed,
                               name="N_c (b) quadratic vertex, family resampling", **kw)
        fb, fb_dist = fbv.estimate, fbv.distribution
    else:
        fb_dist = None
        fb = Estimate("N_c (b) quadratic vertex, family resampling", float("nan"), n=len(f),
                      method="vertex of the quadratic", note="one family: nothing to resample")
    tick()
    lc = local_coupling(frame, pair, guard=guard)
    rc = None
    try:
        rc = running_coupling(lc, n_resamples=n_resamples, level=level, seed=seed)
        running = rc.crossing
        running.name = "N_c (c) zero crossing of the running coupling"
    except CapeError as exc:
        running = Estimate("N_c (c) zero crossing of the running coupling", float("nan"), n=len(lc.intervals),
                           method="10^(-B/A)", unit="interval", note=str(exc))
    tick()
    for e in (paper.estimate, fb, running):
        _note_extrapolation(e, x)
    per_family = family_crossings(lc)
    lofo = []
    full_lo, full_hi = paper.estimate.ci or (np.nan, np.nan)
    for left in dict.fromkeys(fam):
        keep = fam != left
        row = {"left_out": left, "n": int(keep.sum())}
        try:
            q = quadratic_vertex(x[keep], y[keep], seed=seed, **kw).estimate
            row |= {"nc": q.value, "median": q.median, "ci_low": q.ci[0] if q.ci else np.nan,
                    "ci_high": q.ci[1] if q.ci else np.nan, "discarded": q.discarded, "note": q.note}
        except CapeError as exc:
            row |= {"nc": np.nan, "median": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                    "discarded": 0, "note": str(exc)}
        v = row["nc"]
        known = bool(np.isfinite(v))
        # where the estimate lies: outside its own interval, outside the full data's, or
        # outside the sizes left after dropping the family (an extrapolation)
        row["outside_own_ci"] = known and bool(np.isfinite(row["ci_low"])) and not (row["ci_low"] <= v <= row["ci_high"])
        row["outside_full_ci"] = known and bool(np.isfinite(full_lo)) and not (full_lo <= v <= full_hi)
        where = extrapolation(math.log10(v), x[keep]) if known and v > 0 else None
        row["extrapolated"] = where is not None
        flags = [t_ for t_, on in (("outside its own interval", row["outside_own_ci"]),
                                   ("outside the full-data interval", row["outside_full_ci"]),
                                   (where, row["extrapolated"])) if on]
        row["flags"] = "; ".join(flags)
        lofo.append(row)
        tick()
    if pd_.excluded:
        notes.append(f"{len(pd_.excluded)} model(s) left out: " +
                     ", ".join(f"{e['model']} ({e['reason']})" for e in pd_.excluded))
    return CriticalScale(pd_.panel, pd_.b1, pd_.b2, paper.estimate, fb, running, per_family,
                         pd.DataFrame(lofo, columns=["left_out", "n", "nc", "median", "ci_low", "ci_high",
                                                     "discarded", "outside_own_ci", "outside_full_ci",
                                                     "extrapolated", "flags", "note"]),
                         paper.coefficients, paper.models, notes, rc, paper.distribution, fb_dist)
