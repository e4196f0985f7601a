"""Does the coupling flip *within* families at a critical size? (paper A's claim, tested)

Paper A claims that within a model family the interval coupling gamma = dB2/dB1 is
negative ("tax") below a critical size N_c and positive ("bonus") above it. A pooled
comparison of couplings below and above a split cannot test that: old, small,
web-trained families against new, large ones make it "hold" at any split. This module
tests the claim at the level where it is made, the family, in four pre-specified parts:

1. **Within-family effect.** A conditional (family fixed-effects) logistic model of
   P(gamma < 0) on an above-N_c indicator, fitted to the families that have intervals on
   both sides of N_c (the others carry no information in a conditional model). Each
   family's conditional log-likelihood is weighted by mean(n) / n_f (n_f its intervals),
   so families count equally; a N(0, sd^2) penalty (:data:`PENALTY_SD`) keeps the
   estimate finite when the data separate perfectly. beta < 0 means fewer tax-signed
   couplings above N_c. Interval: percentile bootstrap over whole families; when draws of
   N_c are given (its own bootstrap), each resample also splits at its own draw, so N_c's
   uncertainty is propagated. p: the exact conditional (within-family permutation) null of
   the weighted count of tax-signed intervals above N_c, by Monte Carlo.
   Passes when the interval of beta lies below 0; fails when beta >= 0.
2. **Majority flip within families.** Over the same families, each weighted equally: the
   mean share of tax-signed intervals below N_c is above one half and above N_c below one
   half (and how many families flip on their own).
3. **A step, and where.** The step at N_c against a smooth trend in log10 N (the same
   conditional model with x = log10 of the interval's geometric-mean size), by AIC and by
   the likelihood ratio of the step added to the trend; then the breakpoint profile: the
   step model at every split that separates the intervals differently, its penalised
   log-likelihood and beta; the breakpoint is the best split, with a family-bootstrap
   interval, compared with the claimed interval. Reported, not required.
4. **Vintage.** Families are placed by vintage (release date where known, else imputed
   from pretraining tokens by a line fitted on the models with both). The model of part 1
   with vintage (years, centred) and an above x vintage interaction: the interaction must
   be near 0 (its interval holds 0), and beta must be negative in the older and the newer
   half of the families alike.

The verdict is "holds" when parts 1, 2 and 4 pass, "does not hold" when any of them
fails, and "undetermined" otherwise, with the reason.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import stats
from ..errors import CapeError
from .data import family_codes
from .results import Estimate, Result, fmt_num, internal

__all__ = ["FlipTest", "flip_test", "conditional_logit", "model_vintage", "PART_STATUSES", "PENALTY_SD"]

#: sd of the N(0, sd^2) penalty on each log-odds coefficient: weak (an odds ratio of e^4 = 55
#: is one sd), there only to keep perfectly separated families finite.
PENALTY_SD = 4.0
#: The statuses of each part of the test.
PART_STATUSES = ("pass", "fail", "undetermined")
#: Most intervals one family may have (its conditional likelihood enumerates subsets).
MAX_INTERVALS = 20
#: A step beats the trend when its AIC is lower by at least this much (the usual rule of thumb).
AIC_MARGIN = 2.0

_FAMILY_COLUMNS = ["family", "n_intervals", "n_below", "n_above", "negative_below", "negative_above",
                   "share_below", "share_above", "spans", "majority_flips", "weight", "vintage",
                   "vintage_source", "stratum"]
_PROFILE_COLUMNS = ["split", "log10_split", "n_families_spanning", "beta", "loglik", "deviance",
                    "delta_loglik", "pooled_difference", "in_claimed_interval"]


# --------------------------------------------------------------------- conditional logit
@dataclass
class _Strata:
    """Each family's conditional likelihood: the sufficient statistic of every distinct
    subset of its intervals with its observed number of tax-signed ones (rows of ``T``,
    ``logmult`` the log of how many subsets share it), grouped by family."""

    T: np.ndarray          # (M, p)
    logmult: np.ndarray    # (M,)
    starts: np.ndarray     # (F,) first row of each family in T
    owner: np.ndarray      # (M,) family of each row
    t_obs: np.ndarray      # (F, p) observed statistic
    informative: np.ndarray  # (F,) the family's likelihood depends on the coefficients


def _strata(y: np.ndarray, Z: np.ndarray, codes: np.ndarray, n_families: int) -> _Strata:
    p = Z.shape[1]
    Ts, mults, owners, t_obs, info = [], [], [], np.zeros((n_families, p)), np.zeros(n_families, bool)
    for f in range(n_families):                      # one stratum per family (not per row or resample)
        idx = np.flatnonzero(codes == f)
        yf, Zf = y[idx], Z[idx]
        n, m = len(idx), int(yf.sum())
        if n > MAX_INTERVALS:
            raise CapeError(f"a family has {n} intervals; the conditional likelihood takes at most {MAX_INTERVALS}")
        t_obs[f] = Zf[yf.astype(bool)].sum(axis=0)
        if n == 0:
            T = np.zeros((1, p))
        elif m in (0, n):
            T = t_obs[f][None, :]
        else:
            combos = np.array(list(itertools.combinations(range(n), m)), dtype=np.int64)
            T = Zf[combos].sum(axis=1)
        T = np.round(T, 10)
        U, counts = np.unique(T, axis=0, return_counts=True)
        Ts.append(U)
        mults.append(np.log(counts))
        owners.append(np.full(len(U), f))
        info[f] = len(U) > 1
    T = np.concatenate(Ts)
    owner = np.concatenate(owners)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    return _Strata(T, np.concatenate(mults), starts, owner, t_obs, info)


#: Families with at most this many distinct subset statistics share one padded block (numpy
#: sums the 7 or fewer terms after a family's first in sequence, so pads of 0 change nothing).
_SEQUENTIAL_ROWS = 8


def _blocks(S: _Strata) -> list[tuple]:
    """The informative families of ``S`` laid out densely for :func:`_moments`: statistics
    on the first axis, resamples on the last (contiguous, so every operation runs over all
    resamples at once). One block holds the families with at most :data:`_SEQUENTIAL_ROWS`
    distinct statistics (padded with statistic 0 and log-multiplicity -inf, which add exactly
    0 to every sum), one block each larger row count. A block is (families (Fb,),
    T (K, Fb, p), T (K, p, Fb, 1), log-multiplicity (K, Fb, 1), T_p T_q (K, p, p, Fb, 1))."""
    counts = np.diff(np.r_[S.starts, len(S.owner)])
    info = np.flatnonzero(S.informative)
    small = info[counts[info] <= _SEQUENTIAL_ROWS]
    groups = [small] if small.size else []
    groups += [info[counts[info] == k] for k in np.unique(counts[info]) if k > _SEQUENTIAL_ROWS]
    out = []
    for fams in groups:
        K = int(counts[fams].max())
        pos = np.arange(K)[:, None]
        valid = pos < counts[fams][None, :]                                # (K, Fb)
        rows = np.where(valid, S.starts[fams][None, :] + pos, 0)
        T = np.where(valid[:, :, None], S.T[rows], 0.0)                      # (K, Fb, p)
        L = np.where(valid, S.logmult[rows], -np.inf)[:, :, None]
        Tq = T.transpose(0, 2, 1)                                            # (K, p, Fb)
        outer = Tq[:, :, None] * Tq[:, None, :]
        out.append((fams, T, np.ascontiguousarray(Tq)[..., None], L, np.ascontiguousarray(outer)[..., None]))
    return out


def _pairwise(x: np.ndarray, lo: int, n: int) -> np.ndarray:
    """numpy's pairwise sum of ``x[lo:lo+n]`` over the first axis, term for term (so that a
    family's sums do not depend on the layout: the same rounding as ``np.add.reduceat``)."""
    if n < 8:
        res = x[lo].copy()
        for i in range(lo + 1, lo + n):
            res += x[i]
        return res
    if n <= 128:
        r = x[lo:lo + 8].copy()
        end = lo + n - n % 8
        for i in range(lo + 8, end, 8):
            r += x[i:i + 8]
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for i in range(end, lo + n):
            res += x[i]
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise(x, lo, n2) + _pairwise(x, lo + n2, n - n2)


def _segment_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the first axis (a family's statistics) as ``np.add.reduceat`` sums one
    family: its first term plus the pairwise sum of the rest. Loops over statistics, never
    over resamples."""
    return x[0] + _pairwise(x, 1, x.shape[0] - 1)


def _linear(T: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Statistics T (..., p) times coefficients theta (R, p): (..., R); with one
    coefficient a plain product."""
    if theta.shape[1] == 1:
        return T[..., 0, None] * theta[:, 0]
    return T @ theta.T


def _moments(S: _Strata, theta: np.ndarray, blocks: list, ET: np.ndarray, cov: np.ndarray) -> None:
    """E[T] and Cov[T] under ``theta`` (R, p) of every informative family, written into
    ``ET`` (R, F, p) and ``cov`` (R, F, p, p), whose other families hold their one
    statistic and 0 (see :func:`_loglik_parts`)."""
    for fams, T, Tq, L, outer in blocks:
        eta = _linear(T, theta) + L                                          # (K, Fb, R)
        e = np.exp(eta - eta.max(axis=0))
        prob = e / _segment_sum(e)
        et = _segment_sum(prob[:, None] * Tq)                                # (p, Fb, R)
        ett = _segment_sum(prob[:, None, None] * outer)                      # (p, p, Fb, R)
        ET[:, fams] = et.transpose(2, 1, 0)
        cov[:, fams] = (ett - et[:, None] * et[None, :]).transpose(3, 2, 0, 1)


def _loglik(S: _Strata, theta: np.ndarray, blocks: list) -> np.ndarray:
    """Per-family conditional log-likelihood (R, F) at ``theta`` (R, p)."""
    lse = _linear(S.T[S.starts], theta) + S.logmult[S.starts][:, None]     # (F, R): one statistic
    for fams, T, _, L, _ in blocks:
        eta = _linear(T, theta) + L
        mx = eta.max(axis=0)
        lse[fams] = mx + np.log(_segment_sum(np.exp(eta - mx)))
    return np.ascontiguousarray((_linear(S.t_obs, theta) - lse).T)


def _template(S: _Strata, R: int) -> tuple[np.ndarray, np.ndarray]:
    """E[T] (R, F, p) and Cov[T] (R, F, p, p) of the families with one statistic (that
    statistic, 0): :func:`_moments` fills in the others."""
    first = S.T[S.starts]
    F, p = first.shape
    return np.broadcast_to(first, (R, F, p)).copy(), np.zeros((R, F, p, p))


def _loglik_parts(S: _Strata, theta: np.ndarray, blocks: list | None = None):
    """Per-family conditional log-likelihood, its gradient and Hessian pieces at ``theta``
    (R, p): returns ll (R, F), E[T] (R, F, p), Cov[T] (R, F, p, p). A family with one
    distinct statistic (no information) has E[T] = its statistic and Cov[T] = 0; the
    others are computed in the dense ``blocks`` of :func:`_blocks`, all resamples at once."""
    blocks = _blocks(S) if blocks is None else blocks
    ET, cov = _template(S, theta.shape[0])
    _moments(S, theta, blocks, ET, cov)
    return _loglik(S, theta, blocks), ET, cov


def conditional_logit(S: _Strata, W: np.ndarray, *, penalty_sd: float = PENALTY_SD,
                      iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Penalised, weighted conditional-logit fits, one per row of ``W`` (R, F: each family's
    weight in that fit, e.g. bootstrap counts times the equal-family weights), all at once
    by Newton's method (every array is (R, ...): no loop over fits). Returns (coefficients
    (R, p), penalised log-likelihood (R,))."""
    R, p = W.shape[0], S.T.shape[1]
    theta = np.zeros((R, p))
    ridge = np.eye(p) / penalty_sd ** 2
    blocks = _blocks(S)
    ET, cov = _template(S, R)
    for _ in range(iterations):
        _moments(S, theta, blocks, ET, cov)
        grad = np.einsum("rf,rfp->rp", W, S.t_obs[None] - ET) - theta / penalty_sd ** 2
        H = -np.einsum("rf,rfpq->rpq", W, cov) - ridge
        if p == 1:                                          # the number solve() gives
            step = grad / H[:, :, 0]
        else:
            step = np.linalg.solve(H, grad[..., None])[..., 0]
        step = np.clip(step, -5.0, 5.0)                     # damped: the objective is concave
        theta = theta - step
        if np.abs(step).max() < 1e-9:
            break
    ll = _loglik(S, theta, blocks)
    pen = (W * ll).sum(axis=1) - 0.5 * (theta ** 2).sum(axis=1) / penalty_sd ** 2
    return theta, pen


# --------------------------------------------------------------------------- vintage
def _decimal_year(text) -> float:
    if text is None or text is pd.NA or (isinstance(text, float) and math.isnan(text)):
        return math.nan
    parts = str(text).strip().split("-")
    try:
        y = int(parts[0])
        mo = int(parts[1]) if len(parts) > 1 else 7      # a year alone: its middle
        d = int(parts[2]) if len(parts) > 2 else 15
    except ValueError:
        return math.nan
    return y + (mo - 1) / 12 + (d - 1) / 365.25


def model_vintage(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series, str | None]:
    """Each model's vintage in decimal years: its release date where the panel has one,
    else imputed from its pretraining tokens by a least-squares line of date on log10
    tokens over the models that have both (needs 3 such models with 2 distinct token
    counts). Returns (vintage by model, source by model, a note or None)."""
    ids = frame["model"] if "model" in frame.columns else pd.Series(frame.index, index=frame.index)
    ids = ids.astype(str).to_numpy()
    dates = (frame["release_date"] if "release_date" in frame.columns else pd.Series(pd.NA, index=frame.index))
    v = np.array([_decimal_year(d) for d in dates], dtype=float)
    src = np.where(np.isfinite(v), "release date", "")
    tok = (pd.to_numeric(frame["tokens"], errors="coerce").to_numpy(dtype=float)
           if "tokens" in frame.columns else np.full(len(v), np.nan))
    note = None
    need = ~np.isfinite(v) & np.isfinite(tok) & (tok > 0)
    both = np.isfinite(v) & np.isfinite(tok) & (tok > 0)
    if need.any():
        lt = np.log10(np.where(tok > 0, tok, np.nan))
        if both.sum() >= 3 and np.unique(lt[both]).size >= 2:
            slope, intercept = np.polyfit(lt[both], v[both], 1)
            v = np.where(need, intercept + slope * lt, v)
            src = np.where(need, "imputed from tokens", src)
            note = (f"{int(need.sum())} model(s) without a release date placed by pretraining tokens: date = "
                    f"{intercept:.1f} {slope:+.2f} log10 tokens, fitted on {int(both.sum())} models with both")
        else:
            note = (f"{int(need.sum())} model(s) have tokens but no release date, and too few models have both "
                    "to relate them: they have no vintage")
    return pd.Series(v, index=ids), pd.Series(src, index=ids), note


# ------------------------------------------------------------------------------ result
@dataclass
class FlipTest(Result):
    """The four-part family-level test of a within-family flip at ``n_c`` (see the module
    docstring). ``parts`` has one row per part (status, figures, reason); ``families`` one
    row per family; ``profile`` the breakpoint profile; ``estimates`` every coefficient with
    its interval."""

    n_c: float
    claimed: tuple[float, float] | None
    level: float
    n_resamples: int
    seed: int | None
    penalty_sd: float
    n_families: int
    n_spanning: int
    n_intervals: int
    beta: Estimate
    p_value: float
    majority: dict
    step_vs_trend: dict
    breakpoint: Estimate
    vintage: dict
    parts: pd.DataFrame
    families: pd.DataFrame
    profile: pd.DataFrame
    verdict: str
    reason: str
    propagated: bool = False
    notes: list[str] = field(default_factory=list)
    beta_distribution: np.ndarray = internal(default=None, repr=False)
    breakpoint_distribution: np.ndarray = internal(default=None, repr=False)

    def summary(self) -> str:
        lines = [f"Within-family flip at N_c = {fmt_num(self.n_c)} ({self.n_spanning} of {self.n_families} families "
                 f"have intervals on both sides; {self.n_intervals} interval couplings)"]
        for r in self.parts.to_dict("records"):
            lines.append(f"  {r['part']}. {r['name']}: {r['status'].upper()}: {r['reason']}")
        lines.append(f"  Verdict: {self.verdict}: {self.reason}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _status_table(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["part", "name", "status", "required", "reason"])


#: What each part tests, for short texts.
PART_NAMES = {1: "within-family effect", 2: "majority flip within families", 3: "step vs trend, breakpoint (reported)",
              4: "vintage strata"}


def _percentile(dist: np.ndarray, level: float) -> tuple[float, float]:
    d = dist[np.isfinite(dist)]
    if d.size == 0:
        return math.nan, math.nan
    a = (1 - level) / 2
    lo, hi = np.quantile(d, [a, 1 - a])
    return float(lo), float(hi)


def flip_test(intervals: pd.DataFrame, n_c: float, *, claimed: tuple[float, float] | None = None,
              n_c_draws: Sequence[float] | np.ndarray | None = None, vintage: pd.Series | None = None,
              vintage_source: pd.Series | None = None, n_resamples: int = 2000, level: float = 0.95,
              seed: int | None = None, penalty_sd: float = PENALTY_SD) -> FlipTest:
    """Test a within-family flip of the coupling sign at ``n_c`` (module docstring).

    ``intervals``: a :class:`~cape.analysis.gamma.LocalCoupling` ``intervals`` table
    (family, model_lo, model_hi, params_lo, params_hi, params_mid, gamma). ``claimed``:
    the published interval of N_c, for part 3. ``n_c_draws``: draws of N_c (e.g. its
    bootstrap distribution), one used per resample so that its uncertainty propagates.
    ``vintage``/``vintage_source``: decimal years and their source by model (see
    :func:`model_vintage`); an interval's vintage is the mean of its two models'.
    """
    if not (isinstance(n_c, (int, float, np.integer, np.floating)) and math.isfinite(n_c) and n_c > 0):
        raise CapeError(f"n_c must be a positive parameter count, not {n_c!r}")
    if claimed is not None:
        claimed = (float(claimed[0]), float(claimed[1]))
        if not (0 < claimed[0] <= claimed[1]):
            raise CapeError(f"the claimed interval must be two sizes low <= high, not {claimed}")
    rng = np.random.default_rng(seed)
    iv = intervals[np.isfinite(intervals["gamma"].to_numpy(dtype=float))
                   & (intervals["gamma"].to_numpy(dtype=float) != 0)].reset_index(drop=True)
    notes: list[str] = []
    n_zero = len(intervals) - len(iv)
    if n_zero:
        notes.append(f"{n_zero} interval(s) with a zero or undefined coupling have no sign and are left out")
    codes, names = family_codes(iv["family"])
    F = len(names)
    y = (iv["gamma"].to_numpy(dtype=float) < 0).astype(float)
    mid = iv["params_mid"].to_numpy(dtype=float)
    xm = np.log10(mid)
    n_f = np.bincount(codes, minlength=F).astype(float)
    w = np.where(n_f > 0, n_f.mean() / np.maximum(n_f, 1), 0.0)       # families weigh the same
    # vintage of each interval: the mean of its two models'
    if vintage is not None:
        vl = vintage.reindex(iv["model_lo"].astype(str)).to_numpy(dtype=float)
        vh = vintage.reindex(iv["model_hi"].astype(str)).to_numpy(dtype=float)
        v_int = (vl + vh) / 2
        used_models = pd.unique(pd.concat([iv["model_lo"], iv["model_hi"]]).astype(str))
        srcs = vintage_source.reindex(used_models) if vintage_source is not None else None
    else:
        v_int = np.full(len(iv), np.nan)
        srcs = None
    fam_v = pd.Series(v_int).groupby(codes).median().reindex(range(F)).to_numpy(dtype=float)

    # ---------------------------------------------------------------- splits and profile
    ux = np.unique(xm)
    cand = (ux[1:] + ux[:-1]) / 2 if ux.size > 1 else np.empty(0)
    logc = math.log10(n_c)
    W_boot = stats.bootstrap_weights(F, n_resamples, rng) if F else np.zeros((n_resamples, 0))
    Wb = W_boot * w
    W0 = w[None, :]

    def step_fit(split_log10: float, Wmat: np.ndarray):
        above = (xm > split_log10).astype(float)[:, None]
        S = _strata(y, above, codes, F)
        beta, pen = conditional_logit(S, Wmat, penalty_sd=penalty_sd)
        return S, beta[:, 0], pen

    prof_rows = []
    prof_boot = np.empty((n_resamples, cand.size))
    prof_beta_boot = np.empty((n_resamples, cand.size))
    for j, c in enumerate(cand):                        # one fit per distinct split, resamples vectorised
        S, b, pen = step_fit(c, np.vstack([W0, Wb]))
        below = xm < c
        spans = np.bincount(codes, weights=below, minlength=F)
        n_span = int(((spans > 0) & (spans < n_f)).sum())
        nb, na = below.sum(), (~below).sum()
        pooled = (y[below].mean() - y[~below].mean()) if nb and na else math.nan
        prof_rows.append({"split": 10 ** c, "log10_split": c, "n_families_spanning": n_span,
                          "beta": b[0], "loglik": pen[0], "pooled_difference": pooled,
                          "in_claimed_interval": bool(claimed is not None and
                                                      claimed[0] <= 10 ** c <= claimed[1])})
        prof_boot[:, j] = pen[1:]
        prof_beta_boot[:, j] = b[1:]
    profile = pd.DataFrame(prof_rows, columns=[c for c in _PROFILE_COLUMNS if c not in
                                               ("deviance", "delta_loglik")])
    # at beta = 0 the conditional likelihood does not depend on the split: one null for all
    null_ll = float(-(w * np.array([_log_n_subsets(y[codes == f]) for f in range(F)])).sum()) if F else 0.0
    profile["deviance"] = 2 * (profile["loglik"] - null_ll)
    profile["delta_loglik"] = profile["loglik"] - (profile["loglik"].max() if len(profile) else 0.0)
    profile = profile[_PROFILE_COLUMNS]

    # ------------------------------------------------------------------ part 1 at n_c
    S_nc, b_nc, pen_nc = step_fit(logc, np.vstack([W0, Wb]))
    beta_hat, beta_boot = float(b_nc[0]), b_nc[1:]
    propagated = False
    if n_c_draws is not None and cand.size:
        draws = np.asarray(n_c_draws, dtype=float)
        draws = draws[np.isfinite(draws) & (draws > 0)]
        if draws.size and draws.max() < 1e3:
            raise CapeError("n_c_draws are parameter counts such as 3.5e9, not log10 values "
                            f"(the largest draw is {draws.max():.3g})")
        if draws.size:
            pick = rng.choice(np.log10(draws), size=n_resamples, replace=True)
            # the profile split that separates the intervals as the drawn N_c does
            j = np.searchsorted(cand, pick).clip(0, cand.size - 1)
            same = np.abs(cand[j] - pick) > np.abs(cand[np.maximum(j - 1, 0)] - pick)
            j = np.where(same, np.maximum(j - 1, 0), j)
            # a draw beyond every interval separates nothing: no within-family information
            beyond = (pick < xm.min()) | (pick > xm.max())
            beta_boot = np.where(beyond, 0.0, prof_beta_boot[np.arange(n_resamples), j])
            propagated = True
            notes.append(f"N_c's uncertainty propagated: each of the {n_resamples:,} resamples splits at its own "
                         f"draw of N_c ({draws.size:,} draws, median {fmt_num(float(np.median(draws)))})")
    lo, hi = _percentile(beta_boot, level)
    # the exact conditional null: tax-signed intervals placed at random within each family
    above_nc = xm > logc
    spans_nc = np.zeros(F, bool)
    if F:
        nab = np.bincount(codes, weights=above_nc, minlength=F)
        spans_nc = (nab > 0) & (nab < n_f)
    n_span = int(spans_nc.sum())
    m_f = np.bincount(codes, weights=y, minlength=F).astype(int)
    a_obs = np.bincount(codes, weights=y * above_nc, minlength=F) if F else np.zeros(0)
    if F:
        nab_i = nab.astype(int)
        draws_a = rng.hypergeometric(np.broadcast_to(nab_i, (n_resamples, F)),
                                     np.broadcast_to((n_f - nab).astype(int), (n_resamples, F)),
                                     np.broadcast_to(m_f, (n_resamples, F)))
        stat_obs = float((w * a_obs).sum())
        null = (draws_a * w).sum(axis=1)
        p_value = float((1 + (null <= stat_obs + 1e-12).sum()) / (n_resamples + 1))
    else:
        p_value = math.nan
    beta_est = Estimate(
        f"beta: log-odds of a tax-signed coupling above vs below N_c = {fmt_num(n_c)}, within families",
        beta_hat, n_span, "penalised conditional (family fixed-effects) logistic regression, families weighted "
        f"equally, N(0, {penalty_sd:g}^2) penalty", ci=(lo, hi), level=level,
        interval=f"percentile bootstrap over {F} families" + (", N_c drawn per resample" if propagated else ""),
        unit="family", n_resamples=n_resamples, median=float(np.median(beta_boot)) if beta_boot.size else None,
        note=f"one-sided p = {p_value:.3g} (within-family permutation null, Monte Carlo)" if F else "no intervals")
    lvl = f"{int(round(100 * level))}%"
    info_nc = S_nc.informative
    short = {1: f"beta {beta_hat:+.2f} [{lo:+.2f}, {hi:+.2f}] over {n_span} families"}
    if n_span == 0:
        s1, r1 = "undetermined", f"no family has intervals on both sides of {fmt_num(n_c)}"
        short[1] = "no family spans N_c"
    elif beta_hat >= 0:
        s1, r1 = "fail", (f"beta = {beta_hat:+.2f} {lvl} CI [{lo:+.2f}, {hi:+.2f}] over {n_span} families "
                          f"spanning N_c ({int(info_nc.sum())} with both signs): tax-signed couplings are not "
                          "rarer above N_c within families")
    elif hi < 0:
        s1, r1 = "pass", (f"beta = {beta_hat:+.2f} {lvl} CI [{lo:+.2f}, {hi:+.2f}] over {n_span} families, "
                          f"p = {p_value:.3g}: tax-signed couplings are rarer above N_c within families")
    else:
        s1, r1 = "undetermined", (f"beta = {beta_hat:+.2f} but its {lvl} CI [{lo:+.2f}, {hi:+.2f}] holds 0 "
                                  f"({n_span} families, p = {p_value:.3g})")

    # ------------------------------------------------------------------- part 2 majority
    below_nc = ~above_nc
    nb_f = np.bincount(codes, weights=below_nc, minlength=F)
    na_f = n_f - nb_f
    kb_f = np.bincount(codes, weights=y * below_nc, minlength=F)
    ka_f = np.bincount(codes, weights=y * above_nc, minlength=F)
    with np.errstate(invalid="ignore", divide="ignore"):
        sb, sa = kb_f / nb_f, ka_f / na_f
    flips_f = spans_nc & (sb > 0.5) & (sa < 0.5)
    if n_span:
        mb, ma = float(sb[spans_nc].mean()), float(sa[spans_nc].mean())
        Wsp = W_boot[:, spans_nc]
        with np.errstate(invalid="ignore", divide="ignore"):
            mb_boot = (Wsp @ sb[spans_nc]) / Wsp.sum(axis=1)
            ma_boot = (Wsp @ sa[spans_nc]) / Wsp.sum(axis=1)
        mb_ci, ma_ci = _percentile(mb_boot, level), _percentile(ma_boot, level)
    else:
        mb = ma = math.nan
        mb_ci = ma_ci = (math.nan, math.nan)
    majority = {"n_families": n_span, "share_below": mb, "share_below_ci": mb_ci, "share_above": ma,
                "share_above_ci": ma_ci, "n_families_flipping": int(flips_f.sum()),
                "families_flipping": [names[i] for i in np.flatnonzero(flips_f)],
                "method": "mean over the families spanning N_c (each weighted equally) of the share of tax-signed "
                          "intervals below and above; percentile bootstrap over those families"}
    if n_span == 0:
        s2, r2 = "undetermined", "no family spans N_c"
        short[2] = r2
    else:
        txt = (f"families spanning N_c: on average {100 * mb:.0f}% tax-signed below "
               f"[{100 * mb_ci[0]:.0f}, {100 * mb_ci[1]:.0f}], {100 * ma:.0f}% above [{100 * ma_ci[0]:.0f}, "
               f"{100 * ma_ci[1]:.0f}]; {int(flips_f.sum())} of {n_span} flip on their own")
        s2 = "pass" if (mb > 0.5 and ma < 0.5) else "fail"
        short[2] = f"{100 * mb:.0f}% tax-signed below N_c, {100 * ma:.0f}% above, {int(flips_f.sum())} of {n_span} flip"
        r2 = txt + ("" if s2 == "pass" else ": the majority sign does not flip")

    # ------------------------------------------------------- part 3: step vs trend, breakpoint
    step_vs_trend: dict = {}
    if n_span:
        from scipy import stats as sps

        keep = spans_nc[codes]
        sub_codes, uniq = pd.factorize(codes[keep])
        Fs = len(uniq)
        ws = w[np.asarray(uniq)]
        y_s, x_s, a_s = y[keep], xm[keep], above_nc[keep].astype(float)
        fits = {}
        for name, Z in (("step", a_s[:, None]), ("trend", (x_s - x_s.mean())[:, None]),
                        ("both", np.column_stack([a_s, x_s - x_s.mean()]))):
            S = _strata(y_s, Z, sub_codes, Fs)
            th, pen = conditional_logit(S, ws[None, :], penalty_sd=penalty_sd)
            fits[name] = (th[0], float(pen[0]))
        d_aic = 2 * (fits["trend"][1] - fits["step"][1])      # AIC(step) - AIC(trend), one coefficient each
        lr = 2 * (fits["both"][1] - fits["trend"][1])
        step_vs_trend = {"loglik_step": fits["step"][1], "loglik_trend": fits["trend"][1],
                         "loglik_both": fits["both"][1], "beta_trend_per_decade": float(fits["trend"][0][0]),
                         "aic_step_minus_trend": float(d_aic), "lr_step_given_trend": float(lr),
                         "p_step_given_trend": float(sps.chi2.sf(max(lr, 0.0), 1)),
                         "n_families": Fs, "method": "penalised weighted conditional logit; the LR p is the "
                                                     "chi2(1) approximation (weighted, penalised: indicative)"}
    ok_prof = profile["n_families_spanning"].to_numpy() >= 2 if len(profile) else np.zeros(0, bool)
    if ok_prof.any():
        ll_masked = np.where(ok_prof, profile["loglik"].to_numpy(), -np.inf)
        best = int(np.argmax(ll_masked))
        boot_ll = np.where(ok_prof[None, :], prof_boot, -np.inf)
        bp_boot = cand[np.argmax(boot_ll, axis=1)]
        blo, bhi = _percentile(bp_boot, level)
        bp_val = float(10 ** cand[best])
        bp = Estimate("breakpoint: the split with the highest within-family step likelihood", bp_val,
                      F, "argmax of the breakpoint profile (splits with 2+ families spanning them)",
                      ci=(10 ** blo, 10 ** bhi), level=level, interval=f"percentile bootstrap over {F} families",
                      unit="family", n_resamples=n_resamples, median=float(10 ** np.median(bp_boot)))
        overlaps = claimed is not None and 10 ** blo <= claimed[1] and 10 ** bhi >= claimed[0]
        flat = float(profile.loc[ok_prof, "delta_loglik"].sort_values().iloc[-2]) if ok_prof.sum() >= 2 else math.nan
    else:
        bp_boot = np.empty(0)
        bp = Estimate("breakpoint: the split with the highest within-family step likelihood", math.nan, F,
                      "argmax of the breakpoint profile", unit="family",
                      note="no split has 2 or more families with intervals on both sides")
        overlaps, flat = False, math.nan
    if not step_vs_trend or not bp.defined:
        s3, r3 = "undetermined", "too few families span N_c or any split to compare a step with a trend"
        short[3] = r3
    else:
        d = step_vs_trend["aic_step_minus_trend"]
        beats = d <= -AIC_MARGIN
        where = (f"breakpoint {fmt_num(bp.value)} {lvl} CI [{fmt_num(bp.ci[0])}, {fmt_num(bp.ci[1])}]"
                 + (f" {'overlaps' if overlaps else 'misses'} the claimed [{fmt_num(claimed[0])}, "
                    f"{fmt_num(claimed[1])}]" if claimed else ""))
        s3 = "pass" if beats and (overlaps or claimed is None) else "fail"
        short[3] = (f"AIC(step) - AIC(trend) {d:+.2f}, breakpoint {fmt_num(bp.value)} "
                    f"[{fmt_num(bp.ci[0])}, {fmt_num(bp.ci[1])}]")
        r3 = (f"AIC(step) - AIC(trend) = {d:+.2f} ({'the step is better' if beats else 'no better than a smooth trend'}"
              f"; LR of the step added to the trend {step_vs_trend['lr_step_given_trend']:.2f}, "
              f"p ~ {step_vs_trend['p_step_given_trend']:.2g}); {where}")

    # ------------------------------------------------------------------- part 4: vintage
    vint: dict = {"available": False}
    if vintage_source is not None and srcs is not None:
        used = srcs.dropna()
        used = used[used != ""]
        vint["source"] = ", ".join(f"{k} ({v})" for k, v in used.value_counts().items()) or "none"
    have_v = spans_nc & np.isfinite(fam_v)
    if int(have_v.sum()) >= 2 and np.unique(fam_v[have_v]).size >= 2:
        keep = have_v[codes] & np.isfinite(v_int)
        sub_codes, uniq = pd.factorize(codes[keep])
        uniq = np.asarray(uniq)
        Fs = len(uniq)
        centre = float(np.median(fam_v[have_v]))
        vv = v_int[keep] - centre
        a_s = above_nc[keep].astype(float)
        S = _strata(y[keep], np.column_stack([a_s, vv, a_s * vv]), sub_codes, Fs)
        ws = w[uniq]
        Wv = W_boot[:, uniq] * ws
        th, _ = conditional_logit(S, np.vstack([ws[None, :], Wv]), penalty_sd=penalty_sd)
        inter, inter_boot = float(th[0, 2]), th[1:, 2]
        ilo, ihi = _percentile(inter_boot, level)
        old = fam_v[uniq] <= centre
        # beta within each vintage half (families at the median count as older)
        Sstep = _strata(y[keep], a_s[:, None], sub_codes, Fs)
        half = {}
        for label, mask in (("older", old), ("newer", ~old)):
            Wm = np.vstack([ws[None, :], Wv]) * mask[None, :]
            bh, _ = conditional_logit(Sstep, Wm, penalty_sd=penalty_sd)
            hlo, hhi = _percentile(bh[1:, 0], level)
            n_inf = int((Sstep.informative & mask).sum())
            half[label] = {"beta": float(bh[0, 0]), "ci": (hlo, hhi), "n_families": int(mask.sum()),
                           "n_informative": n_inf,
                           "families": [names[i] for i in uniq[mask]]}
        vint.update({"available": True, "centre_year": centre, "interaction": inter, "interaction_ci": (ilo, ihi),
                     "strata": half, "n_families": Fs,
                     "method": "conditional logit of P(tax) on above, vintage (years, centred) and above x vintage; "
                               "beta per vintage half (split at the median family vintage)"})
        no_info = [k for k, h in half.items() if h["n_informative"] == 0]
        bad = [k for k, h in half.items() if h["n_informative"] and h["beta"] >= 0]
        txt = (f"above x vintage interaction {inter:+.2f} per year {lvl} CI [{ilo:+.2f}, {ihi:+.2f}]; beta in older "
               f"families {half['older']['beta']:+.2f} (n = {half['older']['n_families']}), newer "
               f"{half['newer']['beta']:+.2f} (n = {half['newer']['n_families']}); median family vintage "
               f"{centre:.1f}")
        short[4] = (f"interaction {inter:+.2f}/year [{ilo:+.2f}, {ihi:+.2f}], beta older "
                    f"{half['older']['beta']:+.2f}, newer {half['newer']['beta']:+.2f}")
        if bad:
            s4, r4 = "fail", txt + f": no within-family effect among the {' and '.join(bad)} families"
        elif not (ilo <= 0 <= ihi):
            s4, r4 = "fail", txt + ": the size effect depends on vintage"
        elif no_info:
            s4, r4 = "undetermined", txt + f": no {' or '.join(no_info)} family has both signs"
        else:
            s4, r4 = "pass", txt + ": the effect holds in both vintage halves"
    else:
        s4, r4 = "undetermined", (f"{int(have_v.sum())} of the {n_span} families spanning N_c have a vintage "
                                  "(release date or pretraining tokens); 2 with different vintages are needed")
        vint["n_families"] = int(have_v.sum())
        short[4] = f"{int(have_v.sum())} of {n_span} families with a vintage"

    parts = _status_table([
        (1, "within-family effect (conditional logit, families weighted equally)", s1, True, r1),
        (2, "the majority sign flips within families", s2, True, r2),
        (3, "a step beats a smooth trend; breakpoint profile", s3, False, r3),
        (4, "the effect holds within vintage strata", s4, True, r4)])
    required = parts[parts["required"]]
    failed = required[required["status"] == "fail"]
    open_ = required[required["status"] == "undetermined"]
    verdict = "does not hold" if len(failed) else "undetermined" if len(open_) else "holds"
    reason = "; ".join(f"part {p} ({PART_NAMES[p]}) {st}: {short[p]}" for p, st in zip(parts["part"], parts["status"]))

    fam_rows = pd.DataFrame({
        "family": names, "n_intervals": n_f.astype(int), "n_below": nb_f.astype(int), "n_above": na_f.astype(int),
        "negative_below": kb_f.astype(int), "negative_above": ka_f.astype(int), "share_below": sb,
        "share_above": sa, "spans": spans_nc, "majority_flips": flips_f, "weight": w, "vintage": fam_v,
        "vintage_source": [_family_source(srcs, iv, codes, f) for f in range(F)],
        "stratum": [("older" if fam_v[f] <= vint.get("centre_year", math.inf) else "newer")
                    if vint.get("available") and spans_nc[f] and np.isfinite(fam_v[f]) else "" for f in range(F)]},
        columns=_FAMILY_COLUMNS)
    if np.isfinite(flat) and flat > -1:
        notes.append(f"the breakpoint profile is flat: the second-best split is within {abs(flat):.2g} log-likelihood "
                     "units of the best")
    return FlipTest(float(n_c), claimed, float(level), int(n_resamples), seed, float(penalty_sd), F, n_span,
                    int(len(iv)), beta_est, p_value, majority, step_vs_trend, bp, vint, parts, fam_rows, profile,
                    verdict, reason, propagated, notes, beta_boot, bp_boot)


def _log_n_subsets(yf: np.ndarray) -> float:
    n, m = len(yf), int(yf.sum())
    return math.lgamma(n + 1) - math.lgamma(m + 1) - math.lgamma(n - m + 1)


def _family_source(srcs, iv, codes, f) -> str:
    if srcs is None:
        return ""
    models = set(iv.loc[codes == f, "model_lo"].astype(str)) | set(iv.loc[codes == f, "model_hi"].astype(str))
    s = srcs[srcs.index.isin(models)]
    s = s[s != ""]
    return ", ".join(sorted(set(s))) if len(s) else ""
