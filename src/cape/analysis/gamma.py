"""Local coupling gamma_12 between consecutive sizes of one family, and the running coupling
gamma(N) = A log10 N + B fitted to those local values (METHODS.md sections 3 and 4).

gamma_12 = dB2 / dB1 over an interval i -> i+1 of the same family, placed at the geometric
mean size. Intervals are never formed across families. An interval whose |dB1| is below
the guard is dropped (a tiny denominator makes gamma meaningless) and listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import stats
from ..defaults import DEFAULT_GUARD
from .data import family_codes, pair_data
from .results import Estimate, Result, fmt_num, internal

__all__ = ["TAX_BELOW", "BONUS_ABOVE", "DEFAULT_GUARD", "phase_label", "LocalCoupling",
           "local_coupling", "RunningCoupling", "running_coupling"]

#: Phase bands of a coupling value (METHODS.md section 3): tax < -0.1 <= transition <= 0.1 < bonus.
TAX_BELOW = -0.1
BONUS_ABOVE = 0.1
# DEFAULT_GUARD, the default guard on |dB1| in percentage points (the preprint's figures use
# 0.5 pp), is set in cape.defaults: `cape --help` shows it without importing this module.


def phase_label(gamma) -> np.ndarray:
    """'tax', 'transition' or 'bonus' for each coupling value ('' where undefined)."""
    g = np.asarray(gamma, dtype=float)
    return np.select([g < TAX_BELOW, g > BONUS_ABOVE, np.isfinite(g)], ["tax", "bonus", "transition"], "")


@dataclass
class LocalCoupling(Result):
    """Interval couplings of a panel. ``intervals`` holds the kept ones, ``dropped`` those
    below the guard; both have family, model_lo, model_hi, params_lo, params_hi,
    params_mid (geometric mean), x_mid, d_b1, d_b2, gamma, phase."""

    panel: str
    b1: str
    b2: str
    guard: float
    intervals: pd.DataFrame
    dropped: pd.DataFrame
    excluded: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"Local coupling d{self.b2}/d{self.b1} in {self.panel}: {len(self.intervals)} intervals "
                 f"kept, {len(self.dropped)} dropped by the |d{self.b1}| < {self.guard} pp guard"]
        for r in self.intervals.to_dict("records"):
            lines.append(f"  {r['family']}: {r['model_lo']} -> {r['model_hi']} at "
                         f"{fmt_num(r['params_mid'])}: gamma = {r['gamma']:+.3f} ({r['phase']})")
        for r in self.dropped.to_dict("records"):
            lines.append(f"  dropped {r['family']}: {r['model_lo']} -> {r['model_hi']} "
                         f"(d{self.b1} = {r['d_b1']:+.2f} pp)")
        return "\n".join(lines)


def local_coupling(frame: pd.DataFrame, pair=None, *, guard: float = DEFAULT_GUARD) -> LocalCoupling:
    """Every consecutive-size interval within each family (sizes ascending)."""
    if not guard >= 0:
        from ..errors import CapeError
        raise CapeError(f"the guard must be a non-negative number of points, not {guard}")
    pd_ = pair_data(frame, pair, need_size=True)
    f = pd_.frame
    same = f["family"].to_numpy()[1:] == f["family"].to_numpy()[:-1]
    lo, hi = f.iloc[:-1][same], f.iloc[1:][same]
    iv = pd.DataFrame({
        "family": lo["family"].to_numpy(), "model_lo": lo["model"].to_numpy(),
        "model_hi": hi["model"].to_numpy(), "params_lo": lo["params"].to_numpy(),
        "params_hi": hi["params"].to_numpy(),
        "params_mid": np.sqrt(lo["params"].to_numpy() * hi["params"].to_numpy()),
        "x_mid": (lo["x"].to_numpy() + hi["x"].to_numpy()) / 2,
        "d_b1": hi["b1"].to_numpy() - lo["b1"].to_numpy(),
        "d_b2": hi["b2"].to_numpy() - lo["b2"].to_numpy(),
    })
    same_size = iv["params_lo"].to_numpy() == iv["params_hi"].to_numpy()
    keep = np.abs(iv["d_b1"].to_numpy()) >= guard
    keep &= (np.abs(iv["d_b1"].to_numpy()) > 0) & ~same_size
    with np.errstate(divide="ignore", invalid="ignore"):
        iv["gamma"] = np.where(keep, iv["d_b2"] / iv["d_b1"].where(iv["d_b1"] != 0), np.nan)
    iv["phase"] = phase_label(iv["gamma"])
    kept = iv[keep].reset_index(drop=True)
    dropped = iv[~keep].reset_index(drop=True)
    dropped["reason"] = np.where(same_size[~keep], "both models have the same size: not a scaling step",
                                 f"|d{pd_.b1}| below the {guard} pp guard")
    return LocalCoupling(pd_.panel, pd_.b1, pd_.b2, guard, kept, dropped, pd_.excluded)


def _ols_terms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-observation terms of a weighted OLS y = A x + B: [1, x, y, x^2, xy] (x centred)."""
    xc = x - x.mean()
    return np.column_stack([np.ones_like(xc), xc, y, xc * xc, xc * y])


def _ols_finish(M: np.ndarray, xmean: float) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) from summed :func:`_ols_terms`; NaN where x has no spread."""
    s0, sx, sy, sxx, sxy = M.T
    with np.errstate(invalid="ignore", divide="ignore"):
        den = s0 * sxx - sx * sx
        ok = den > 1e-12 * np.maximum(s0 * sxx, 1e-300)
        a = np.where(ok, (s0 * sxy - sx * sy) / np.where(ok, den, 1), np.nan)
        b = (sy - a * sx) / s0 - a * xmean
    return a, b


@dataclass
class RunningCoupling(Result):
    """gamma(N) = A log10 N + B fitted by OLS to interval couplings, with bootstrap CIs.

    ``crossing`` is N_c = 10^(-B/A), the size where the fitted coupling changes sign;
    resamples with A = 0 (no crossing) are discarded and counted. ``draws`` holds the
    bootstrap (A, B) pairs for :meth:`gamma_at`.
    """

    panel: str
    b1: str
    b2: str
    n_intervals: int
    n_families: int
    A: Estimate
    B: Estimate
    crossing: Estimate
    r_squared: float
    x_range: tuple[float, float]
    resampling: str
    intervals: pd.DataFrame
    draws: np.ndarray = internal(repr=False)

    def gamma_at(self, params: float) -> tuple[float, np.ndarray]:
        """Fitted gamma at a size, and its bootstrap distribution."""
        x = float(np.log10(params))
        return self.A.value * x + self.B.value, self.draws[:, 0] * x + self.draws[:, 1]

    def summary(self) -> str:
        return "\n".join([
            f"Running coupling gamma(N) = A log10 N + B of {self.b2} on {self.b1} in {self.panel} "
            f"({self.n_intervals} intervals, {self.n_families} families, R^2 = {self.r_squared:.3f})",
            "  " + self.A.describe(), "  " + self.B.describe(), "  " + self.crossing.describe()])


def running_coupling(data, pair=None, *, guard: float = DEFAULT_GUARD, unit: str = "family",
                     n_resamples: int = stats.DEFAULT_BOOTSTRAP, level: float = 0.95,
                     ci_method: str = "percentile", seed: int | None = None,
                     progress: stats.Progress | None = None) -> RunningCoupling:
    """Fit gamma = A log10 N + B to a panel's interval couplings (or a :class:`LocalCoupling`).

    ``unit`` is the bootstrap's resampling unit: ``family`` (whole families' intervals, the
    sound choice: intervals of one family share models) or ``interval``.
    """
    from ..errors import CapeError

    lc = data if isinstance(data, LocalCoupling) else local_coupling(data, pair, guard=guard)
    iv = lc.intervals
    if unit not in ("family", "interval"):
        raise CapeError(f"the resampling unit is 'family' or 'interval', not '{unit}'")
    m = len(iv)
    if m < 3 or iv["x_mid"].nunique() < 2:
        raise CapeError(f"the running coupling needs at least 3 intervals at 2 or more sizes; "
                        f"{lc.panel} gives {m} for {lc.b1} -> {lc.b2} (families need 2+ models each)")
    x, y = iv["x_mid"].to_numpy(), iv["gamma"].to_numpy()
    codes, names = family_codes(iv["family"])
    unit_note = None
    if unit == "family" and len(names) < 2:
        unit, unit_note = "interval", "one family: its intervals are resampled instead of families"
    clusters = codes if unit == "family" else None

    xmean = float(x.mean())

    def finish(M):
        return np.stack(_ols_finish(M, xmean), axis=1)

    bs = stats.bootstrap_moments(_ols_terms(x, y), finish, n_resamples=n_resamples,
                                 rng=np.random.default_rng(seed), clusters=clusters, progress=progress)
    # A and B are defined on every resample with spread in x; the crossing also needs A != 0,
    # so its own discards are counted separately.
    a_hat, b_hat = bs.estimate
    x0_hat = -b_hat / a_hat if a_hat != 0 else float("nan")
    ab = bs.distribution
    has_x0 = ab[:, 0] != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        x0_dist = -ab[has_x0, 1] / ab[has_x0, 0]
    lo_ab, hi_ab, used = bs.ci(level, ci_method)
    if x0_dist.size:
        lo_x, hi_x, _ = stats.interval(x0_dist[:, None], np.array([x0_hat]), level=level, method="percentile")
    else:
        lo_x = hi_x = np.array([np.nan])
    lo, hi = np.r_[lo_ab, lo_x], np.r_[hi_ab, hi_x]
    fit = a_hat * x + b_hat
    ss_res, ss_tot = ((y - fit) ** 2).sum(), ((y - y.mean()) ** 2).sum()
    r2 = float(1 - ss_res / ss_tot) if ss_tot > 0 else float("nan")
    # OLS standard errors, for reference beside the bootstrap
    dof = m - 2
    sxx = ((x - x.mean()) ** 2).sum()
    s2 = ss_res / dof if dof > 0 else float("nan")
    se_a = float(np.sqrt(s2 / sxx)) if sxx > 0 else float("nan")
    se_b = float(np.sqrt(s2 * (1 / m + x.mean() ** 2 / sxx))) if sxx > 0 else float("nan")
    unit_name = "families" if unit == "family" else "intervals"
    common = dict(n=m, ci=None, level=level, interval=f"{used}, resampling {unit_name}",
                  unit="interval", n_resamples=n_resamples, discarded=bs.discarded)
    med = np.r_[np.median(ab, axis=0) if bs.n_valid else np.full(2, np.nan),
                np.median(x0_dist) if x0_dist.size else np.nan]
    A = Estimate("A (slope per decade)", float(a_hat), method=f"OLS; SE {se_a:.3g}",
                 **common | {"ci": (float(lo[0]), float(hi[0]))}, median=float(med[0]), note=unit_note)
    B = Estimate("B (intercept)", float(b_hat), method=f"OLS; SE {se_b:.3g}",
                 **common | {"ci": (float(lo[1]), float(hi[1]))}, median=float(med[1]), note=unit_note)
    xr = (float(x.min()), float(x.max()))
    note = None
    if np.isfinite(x0_hat) and not (xr[0] <= x0_hat <= xr[1]):
        note = (f"outside the intervals' range {fmt_num(10 ** xr[0])}-{fmt_num(10 ** xr[1])}: "
                "an extrapolation")
    if a_hat <= 0 and np.isfinite(a_hat):
        note = (note + "; " if note else "") + "A <= 0: the fitted coupling does not rise with size"
    with np.errstate(over="ignore"):   # a crossing beyond 1e308 parameters is inf, silently
        ci_x0 = (float(10 ** lo[2]), float(10 ** hi[2])) if x0_dist.size else None
        med_x0 = float(10 ** med[2])
    crossing = Estimate("N_c (zero crossing of the running coupling)",
                        float(10 ** x0_hat) if np.isfinite(x0_hat) else float("nan"),
                        method="10^(-B/A) of the OLS fit", **common | {
                            "ci": ci_x0,
                            "unit": "interval", "discarded": bs.discarded + int((~has_x0).sum()),
                            "interval": "percentile, resampling " + unit_name},
                        median=med_x0,
                        note=note)
    return RunningCoupling(lc.panel, lc.b1, lc.b2, m, len(names), A, B, crossing, r2, xr,
                           unit, iv, ab)
