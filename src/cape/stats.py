"""Statistics core: correlations, permutation tests, bootstrap intervals, partial r, FDR.

Everything here is vectorised. Resampling is expressed as *weights*: a bootstrap resample
of ``n`` observations is a row of multinomial counts, and a resampled statistic is a
weighted statistic. A matrix of weights ``W`` (resamples x observations) therefore turns
every resampling loop into a few matrix products. Cluster (family) resampling draws counts
per cluster and spreads them onto the cluster's rows, so the same statistics serve both.

>>> import numpy as np
>>> from cape import stats
>>> x = np.array([1., 2, 3, 4, 5]); y = np.array([2., 1, 4, 3, 5])
>>> res = stats.permutation_test_r(x, y)
>>> round(res.statistic, 3), res.exact, res.n_resamples
(0.8, True, 120)

Conventions follow scipy.stats: the two-sided permutation p-value is twice the smaller
one-sided p (clipped to 1), counts include the observed ordering in an exact test, and a
Monte Carlo test adds one to numerator and denominator. Null values within 100 machine
epsilons of the observed r count as ties (an absolute tolerance, since r is bounded by 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .defaults import DEFAULT_BOOTSTRAP, DEFAULT_PERMUTATIONS

# SciPy (scipy.special, scipy.stats) is imported in the functions that use it, so that
# importing this module (the CLI's option defaults) stays quick.

__all__ = [
    "DEFAULT_PERMUTATIONS", "DEFAULT_BOOTSTRAP", "EXACT_MAX_N",
    "pearson_r", "spearman_r", "parametric_p", "partial_r", "weighted_pearson",
    "exact_permutations", "permutation_test_r", "permutation_null", "PermutationResult",
    "resample_counts", "bootstrap_weights", "jackknife_weights", "bootstrap", "bootstrap_moments", "Bootstrap",
    "interval", "pearson_moments", "pearson_finish", "bh_fdr",
    "rank", "Progress", "t_interval", "wilson_interval", "Z95",
]

# DEFAULT_PERMUTATIONS (Monte Carlo permutations when n > EXACT_MAX_N, p resolution 1e-4) and
# DEFAULT_BOOTSTRAP (bootstrap resamples; the preprint's N_c protocol uses 10,000) are set in
# cape.defaults, which ``cape --help`` reads without numpy.
#: Enumerate every ordering up to this n (9! = 362,880 orderings).
EXACT_MAX_N = 9
#: Resamples handled per vectorised block: bounds memory, and paces a progress bar.
CHUNK = 2_000
#: Relative tolerance for ties between a null statistic and the observed one (as scipy).
_TIE_EPS = np.finfo(float).eps * 100

Progress = Callable[[int, int], None]
"""A progress callback: ``progress(done, total)``."""


def _as_float(a) -> np.ndarray:
    return np.asarray(a, dtype=float)


# ------------------------------------------------------------------------ correlations
def _standardise(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Centre and scale to unit Euclidean norm along ``axis`` (NaN when constant)."""
    c = a - a.mean(axis=axis, keepdims=True)
    # scale by the largest deviation first, so squaring neither overflows nor underflows
    big = np.abs(c).max(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(big > 0, c / np.where(big > 0, big, 1.0), 0.0)
        norm = np.sqrt((c * c).sum(axis=axis, keepdims=True))
        return np.where(norm > 0, c / np.where(norm > 0, norm, 1.0), np.nan)


def pearson_r(x, y, axis: int = -1) -> np.ndarray | float:
    """Pearson r along ``axis`` (NaN for a constant input). Broadcasts over other axes."""
    zx, zy = _standardise(_as_float(x), axis), _standardise(_as_float(y), axis)
    r = np.clip((zx * zy).sum(axis=axis), -1.0, 1.0)
    return float(r) if np.ndim(r) == 0 else r


def rank(a, axis: int = -1) -> np.ndarray:
    """Average ranks (ties share the mean rank), as Spearman's r needs: the values of
    ``scipy.stats.rankdata`` (a slice holding a NaN ranks as all NaN), in numpy alone, so that
    Spearman's r does not import scipy.stats (about a second of start-up)."""
    x = np.moveaxis(_as_float(a), axis, -1)
    n = x.shape[-1]
    if x.size == 0:
        return np.moveaxis(np.empty(x.shape, dtype=float), -1, axis)
    order = np.argsort(x, axis=-1, kind="mergesort")
    s = np.take_along_axis(x, order, axis=-1)
    pos = np.broadcast_to(np.arange(n), s.shape)
    first = np.ones(s.shape, dtype=bool)   # the first sorted position of each tie group
    first[..., 1:] = s[..., 1:] != s[..., :-1]
    last = np.ones(s.shape, dtype=bool)    # ... and its last
    last[..., :-1] = first[..., 1:]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=-1)
    end = np.flip(np.minimum.accumulate(np.flip(np.where(last, pos, n), axis=-1), axis=-1), axis=-1)
    avg = 0.5 * (start + end + 2)          # scipy: 0.5 * (count[dense] + count[dense - 1] + 1)
    out = np.empty(s.shape, dtype=float)
    np.put_along_axis(out, order, avg, axis=-1)
    out[np.isnan(x).any(axis=-1)] = np.nan
    return np.moveaxis(out, -1, axis)


def spearman_r(x, y, axis: int = -1) -> np.ndarray | float:
    """Spearman's rho: Pearson r of average ranks."""
    return pearson_r(rank(x, axis), rank(y, axis), axis)


def parametric_p(r, n, n_controls: int = 0) -> np.ndarray | float:
    """Two-sided p of a correlation from Student's t with n - 2 - n_controls degrees of
    freedom (identical to scipy.stats.pearsonr's exact beta form for Pearson r)."""
    from scipy import special

    r = np.asarray(r, dtype=float)
    df = np.asarray(n, dtype=float) - 2 - n_controls
    with np.errstate(divide="ignore", invalid="ignore"):
        t = r * np.sqrt(df / np.maximum(1.0 - r * r, 0.0))
        p = 2 * special.stdtr(df, -np.abs(t))
    p = np.where(df > 0, p, np.nan)
    return float(p) if p.ndim == 0 else p


def _residualise(v: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Residuals of v (..., n) after OLS on [1, z] along the last axis."""
    zc = z - z.mean(axis=-1, keepdims=True)
    vc = v - v.mean(axis=-1, keepdims=True)
    denom = (zc * zc).sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.where(denom > 0, (zc * vc).sum(axis=-1, keepdims=True) / np.where(denom > 0, denom, 1), np.nan)
    return vc - beta * zc


def partial_r(x, y, z, axis: int = -1) -> np.ndarray | float:
    """Partial correlation of x and y controlling for z (e.g. log10 N): Pearson r of the
    residuals of x and y after a linear fit on z."""
    x, y, z = (np.moveaxis(_as_float(a), axis, -1) for a in (x, y, z))
    return pearson_r(_residualise(x, z), _residualise(y, z))


def weighted_pearson(W: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r under observation weights.

    ``W`` is (B, n) (bootstrap counts), ``x``/``y`` are (n,) or (n, F) for F independent
    columns (e.g. families of equal size laid side by side). Returns (B,) or (B, F); NaN
    where a resample has no spread. Same formula as :func:`pearson_finish`.
    """
    terms = pearson_moments(x, y)                                # (n, 6) or (n, 6, F)
    sums = W @ terms.reshape(terms.shape[0], -1)
    return pearson_finish(sums.reshape((W.shape[0],) + terms.shape[1:]))


# ------------------------------------------------------------------- permutation test
@lru_cache(maxsize=4)
def exact_permutations(n: int) -> np.ndarray:
    """Every ordering of range(n) as an (n!, n) int8 array, built by inserting one element
    at a time into all positions (a loop over n, not over orderings)."""
    if n < 1 or n > 10:
        raise ValueError(f"exact enumeration is for 1 <= n <= 10, not {n}")
    perms = np.zeros((1, 0), dtype=np.int8)
    for k in range(n):
        m = perms.shape[0]
        new = np.empty((m * (k + 1), k + 1), dtype=np.int8)
        for pos in range(k + 1):
            block = new[pos * m:(pos + 1) * m]
            block[:, :pos] = perms[:, :pos]
            block[:, pos] = k
            block[:, pos + 1:] = perms[:, pos:]
        perms = new
    perms.setflags(write=False)
    return perms


def _random_permutations(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    return np.argsort(rng.random((n_resamples, n)), axis=1).astype(np.int16 if n < 32_000 else np.int64)


def permutation_null(zx: np.ndarray, zy: np.ndarray, perms: np.ndarray,
                     progress: Progress | None = None) -> np.ndarray:
    """Null distribution of r for standardised columns.

    ``zx``, ``zy``: (F, n) rows of unit-norm centred scores (F families of equal size n);
    ``perms``: (B, n) orderings applied to ``zx``. Returns (F, B).

    With r_b = sum_i zy[i] * zx[perm_b[i]], the null for all F families at once is a matrix
    product of the one-hot orderings (B, n*n) with the outer products zy zx^T (n*n, F); for
    large n a gather over positions is used instead. Either way the loop runs over blocks of
    orderings, never over single orderings.
    """
    zx, zy = np.atleast_2d(zx), np.atleast_2d(zy)
    F, n = zx.shape
    B = perms.shape[0]
    out = np.empty((F, B))
    if n <= 32:
        outer = (zy[:, :, None] * zx[:, None, :]).reshape(F, n * n).T  # (n*n, F)
        offsets = (np.arange(n) * n)[None, :]
        step = max(256, min(B, 2_000_000 // (n * n)))
        for start in range(0, B, step):
            flat = perms[start:start + step].astype(np.int64) + offsets
            onehot = np.zeros((flat.shape[0], n * n))
            np.put_along_axis(onehot, flat, 1.0, axis=1)
            out[:, start:start + step] = (onehot @ outer).T
            if progress is not None:
                progress(min(start + step, B), B)
        return out
    step = max(1, min(B, 4_000_000 // max(F, 1)))
    for start in range(0, B, step):
        p = perms[start:start + step]
        acc = np.zeros((F, p.shape[0]))
        for i in range(n):
            acc += zx[:, p[:, i]] * zy[:, i:i + 1]
        out[:, start:start + step] = acc
        if progress is not None:
            progress(min(start + step, B), B)
    return out


@dataclass(frozen=True)
class PermutationResult:
    """Two-sided permutation test of Pearson r."""

    statistic: float
    pvalue: float
    n: int
    exact: bool
    n_resamples: int
    #: The smallest p this test can return for these data: 2/n! for an exact test without
    #: ties (more with ties), 2/(B + 1) for Monte Carlo.
    p_floor: float
    method: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _p_two_sided(null: np.ndarray, observed: np.ndarray, exact: bool) -> np.ndarray:
    """scipy.stats.permutation_test's two-sided p from a null (F, B) and observed (F,)."""
    observed = observed[:, None]
    # r is a sum of n terms of size <= 1, so its rounding error is absolute: an absolute
    # tolerance catches orderings that tie exactly even when r is near 0 (scipy's relative
    # tolerance misses those; for |r| near 1 the two agree).
    gamma = _TIE_EPS
    adj = 0 if exact else 1
    B = null.shape[1]
    less = ((null <= observed + gamma).sum(axis=1) + adj) / (B + adj)
    greater = ((null >= observed - gamma).sum(axis=1) + adj) / (B + adj)
    return np.clip(2 * np.minimum(less, greater), 0.0, 1.0)


def permutation_pvalues(zx: np.ndarray, zy: np.ndarray, *, n_resamples: int = DEFAULT_PERMUTATIONS,
                        rng: np.random.Generator | int | None = None,
                        progress: Progress | None = None) -> tuple[np.ndarray, bool, int, np.ndarray]:
    """Permutation p-values for F families of equal size laid out as (F, n) standardised rows.

    Exact (all n! orderings) when n <= EXACT_MAX_N, else ``n_resamples`` Monte Carlo
    orderings shared by the F families. Returns (p (F,), exact, orderings used, floor (F,)).

    The floor is the smallest p the test can return for that data. Exact: 2 x (orderings
    that reach the most extreme r) / n!, which is 2/n! without ties and larger with them
    (a tie makes two orderings give the same r). Monte Carlo: 2/(B + 1).
    """
    F, n = zx.shape
    observed = np.clip((zx * zy).sum(axis=1), -1, 1)
    exact = n <= EXACT_MAX_N
    if exact:
        perms = exact_permutations(n)
    else:
        perms = _random_permutations(n, n_resamples, np.random.default_rng(rng))
    null = permutation_null(zx, zy, perms, progress)
    p = _p_two_sided(null, observed, exact)
    B = perms.shape[0]
    if exact:
        top, bottom = null.max(axis=1, keepdims=True), null.min(axis=1, keepdims=True)
        reach = np.minimum((null >= top - _TIE_EPS).sum(axis=1), (null <= bottom + _TIE_EPS).sum(axis=1))
        floor = np.minimum(1.0, 2.0 * reach / B)
    else:
        floor = np.full(F, min(1.0, 2.0 / (B + 1)))
    return p, exact, B, floor


def permutation_test_r(x, y, *, n_resamples: int = DEFAULT_PERMUTATIONS,
                       rng: np.random.Generator | int | None = None,
                       progress: Progress | None = None) -> PermutationResult:
    """Two-sided permutation test of Pearson r: exact for n <= 9, Monte Carlo otherwise.

    Matches ``scipy.stats.permutation_test(..., permutation_type='pairings')`` with the
    Pearson statistic: exactly for n <= 9, in distribution otherwise.
    """
    x, y = _as_float(x), _as_float(y)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("x and y must be 1-D and of equal length")
    n = x.size
    if n < 3:
        raise ValueError(f"a permutation test needs at least 3 observations, got {n}")
    zx, zy = _standardise(x)[None], _standardise(y)[None]
    if not (np.isfinite(zx).all() and np.isfinite(zy).all()):
        raise ValueError("r is undefined: one of the two inputs is constant")
    p, exact, B, floor = permutation_pvalues(zx, zy, n_resamples=n_resamples, rng=rng, progress=progress)
    floor = float(floor[0])
    r = float(np.clip((zx * zy).sum(), -1, 1))
    method = (f"exact permutation test (all {B:,} orderings)" if exact
              else f"Monte Carlo permutation test ({B:,} random orderings)")
    return PermutationResult(r, float(p[0]), n, exact, B, floor, method)


# -------------------------------------------------------------------------- bootstrap
def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def resample_counts(k: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of k units is drawn in each of ``n_resamples`` draws of k units with
    replacement: (n_resamples, k) counts (multinomial), via one bincount."""
    idx = rng.integers(0, k, size=(n_resamples, k))
    idx += (np.arange(n_resamples) * k)[:, None]
    return np.bincount(idx.ravel(), minlength=n_resamples * k).reshape(n_resamples, k).astype(float)


def bootstrap_weights(n: int, n_resamples: int, rng: np.random.Generator | int | None = None,
                      clusters: np.ndarray | None = None) -> np.ndarray:
    """Resampling weights (n_resamples, n).

    Without ``clusters``: multinomial counts, i.e. n draws of single observations with
    replacement. With ``clusters`` (an integer code per observation): whole clusters are
    drawn with replacement (as many draws as there are clusters) and every observation
    of a cluster gets its cluster's count.
    """
    g = _rng(rng)
    if clusters is None:
        return resample_counts(n, n_resamples, g)
    codes = np.asarray(clusters)
    k = int(codes.max()) + 1
    return resample_counts(k, n_resamples, g)[:, codes]


def jackknife_weights(n: int, clusters: np.ndarray | None = None) -> np.ndarray:
    """Leave-one-out weights: one row per observation (or per cluster) left out."""
    if clusters is None:
        return 1.0 - np.eye(n)
    codes = np.asarray(clusters)
    k = int(codes.max()) + 1
    return (codes[None, :] != np.arange(k)[:, None]).astype(float)


@dataclass
class Bootstrap:
    """A bootstrap distribution of one or more statistics.

    ``estimate`` is the statistic on the full data (m,); ``distribution`` holds the valid
    resamples (B_valid, m); ``discarded`` counts resamples whose statistic was undefined
    or failed the caller's acceptance rule.
    """

    estimate: np.ndarray
    distribution: np.ndarray
    n: int
    n_resamples: int
    discarded: int
    unit: str
    n_units: int
    jackknife: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_valid(self) -> int:
        return int(self.distribution.shape[0])

    def ci(self, level: float = 0.95, method: str = "percentile") -> tuple[np.ndarray, np.ndarray, str]:
        """Confidence interval (low, high) per statistic and the method actually used.

        ``method`` is ``percentile`` or ``bca`` (see :func:`interval`).
        """
        if self.n_valid == 0:
            m = self.estimate.size
            return np.full(m, np.nan), np.full(m, np.nan), "undefined: every resample was discarded"
        return interval(self.distribution, self.estimate, self.jackknife, level=level, method=method)


def _column_quantiles(sorted_dist: np.ndarray, valid: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Linear-interpolated quantile q[j] of column j, using its first valid[j] sorted rows."""
    pos = q * np.maximum(valid - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(valid - 1, 0))
    frac = pos - lo
    a = np.take_along_axis(sorted_dist, lo[None, :], axis=0)[0]
    b = np.take_along_axis(sorted_dist, hi[None, :], axis=0)[0]
    return np.where(valid > 0, a + frac * (b - a), np.nan)


def interval(distribution: np.ndarray, estimate: np.ndarray, jackknife: np.ndarray | None = None,
             *, level: float = 0.95, method: str = "percentile") -> tuple[np.ndarray, np.ndarray, str]:
    """Bootstrap interval per column of ``distribution`` (B, m); NaN entries are discarded
    resamples of that column only.

    ``percentile``: the (1-level)/2 and (1+level)/2 quantiles (linear interpolation, as
    numpy and scipy). ``bca``: bias-corrected and accelerated (Efron & Tibshirani 14.3), with
    the acceleration from the jackknife values ``jackknife`` (units, m); a column whose BCa
    is undefined falls back to the percentile interval and the returned method says so.
    """
    dist = np.asarray(distribution, dtype=float)
    if dist.ndim == 1:
        dist = dist[:, None]
    est = np.atleast_1d(np.asarray(estimate, dtype=float))
    m = dist.shape[1]
    if dist.shape[0] == 0:
        return np.full(m, np.nan), np.full(m, np.nan), "undefined: no valid resamples"
    valid = np.isfinite(dist).sum(axis=0)
    srt = np.sort(np.where(np.isfinite(dist), dist, np.inf), axis=0)
    alpha = (1 - level) / 2
    q_lo, q_hi = np.full(m, alpha), np.full(m, 1 - alpha)
    used = "percentile"
    if method == "bca":
        if jackknife is None:
            raise ValueError("BCa needs jackknife values")
        jk = np.asarray(jackknife, dtype=float)
        jk = jk[:, None] if jk.ndim == 1 else jk
        from scipy import special

        with np.errstate(invalid="ignore", divide="ignore"):
            share = ((dist < est).sum(axis=0) + (dist <= est).sum(axis=0)) / (2.0 * valid)
            z0 = special.ndtri(share)
            u = np.nanmean(jk, axis=0, keepdims=True) - jk
            a = np.nansum(u ** 3, axis=0) / (6.0 * np.nansum(u ** 2, axis=0) ** 1.5)
            za, z1a = special.ndtri(alpha), special.ndtri(1 - alpha)
            b_lo = special.ndtr(z0 + (z0 + za) / (1 - a * (z0 + za)))
            b_hi = special.ndtr(z0 + (z0 + z1a) / (1 - a * (z0 + z1a)))
        ok = np.isfinite(b_lo) & np.isfinite(b_hi)
        q_lo, q_hi = np.where(ok, b_lo, q_lo), np.where(ok, b_hi, q_hi)
        used = "BCa" if ok.all() else "BCa (percentile where BCa was undefined)"
    elif method != "percentile":
        raise ValueError(f"unknown interval method '{method}' (percentile or bca)")
    return _column_quantiles(srt, valid, q_lo), _column_quantiles(srt, valid, q_hi), used


def _resample_blocks(draw: Callable[[int], np.ndarray], block: int, n_resamples: int, m: int,
                     accept: Callable[[np.ndarray], np.ndarray] | None,
                     progress: Progress | None) -> tuple[np.ndarray, int]:
    """Run ``draw(b)`` -> (b, m) statistics in blocks until ``n_resamples``; keep the rows
    that are finite and accepted. Returns (kept rows, number discarded)."""
    kept, discarded, done = [], 0, 0
    while done < n_resamples:
        b = min(block, n_resamples - done)
        vals = draw(b)
        ok = np.isfinite(vals).all(axis=1)
        if accept is not None:
            with np.errstate(invalid="ignore"):
                ok &= np.asarray(accept(vals), dtype=bool)
        kept.append(vals[ok])
        discarded += int((~ok).sum())
        done += b
        if progress is not None:
            progress(done, n_resamples)
    return (np.concatenate(kept) if kept else np.empty((0, m))), discarded


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray], n: int, *,
              n_resamples: int = DEFAULT_BOOTSTRAP, rng: np.random.Generator | int | None = None,
              clusters: np.ndarray | None = None, accept: Callable[[np.ndarray], np.ndarray] | None = None,
              jackknife: bool = True, progress: Progress | None = None) -> Bootstrap:
    """Bootstrap a weighted statistic.

    ``statistic(W)`` takes weights (B, n) and returns (B,) or (B, m). The full-data value is
    ``statistic(ones)``. Resamples come in blocks of :data:`CHUNK`. A resample is discarded
    when any statistic is not finite or ``accept(values)`` is False for it. ``clusters``
    switches to cluster resampling (see :func:`bootstrap_weights`).
    """
    g = _rng(rng)

    def stat(W):
        v = np.asarray(statistic(W), dtype=float)
        return v[:, None] if v.ndim == 1 else v

    estimate = stat(np.ones((1, n)))[0]
    dist, discarded = _resample_blocks(lambda b: stat(bootstrap_weights(n, b, g, clusters)), CHUNK,
                                       n_resamples, estimate.size, accept, progress)
    jk = stat(jackknife_weights(n, clusters)) if jackknife else None
    n_units = n if clusters is None else int(np.asarray(clusters).max()) + 1
    return Bootstrap(estimate, dist, n, n_resamples, discarded,
                     "model" if clusters is None else "family", n_units, jk)


def _cluster_sums(V: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Sum the rows of V per cluster code -> (k, p)."""
    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    starts = np.r_[0, np.nonzero(np.diff(sc))[0] + 1]
    out = np.zeros((k, V.shape[1]))
    out[sc[starts]] = np.add.reduceat(V[order], starts, axis=0)
    return out


def bootstrap_moments(moments: np.ndarray, finish: Callable[[np.ndarray], np.ndarray], *,
                      n_resamples: int = DEFAULT_BOOTSTRAP, rng: np.random.Generator | int | None = None,
                      clusters: np.ndarray | None = None,
                      accept: Callable[[np.ndarray], np.ndarray] | None = None,
                      jackknife: bool = True, progress: Progress | None = None) -> Bootstrap:
    """Bootstrap a statistic that depends on the data only through weighted sums.

    ``moments`` is V (n, p): one row of per-observation terms (1, x, y, x*y, ...).
    A resample's sums are ``counts @ V``; ``finish(M)`` turns sums (B, p) into the
    statistic (B,) or (B, m). With ``clusters``, V is first summed per cluster, so the cost
    is (resamples x clusters x p) however many observations there are; the jackknife is
    the total minus one observation's (or one cluster's) row. Same discard rules as
    :func:`bootstrap`.
    """
    g = _rng(rng)
    V = np.asarray(moments, dtype=float)
    n = V.shape[0]

    def stat(M):
        v = np.asarray(finish(M), dtype=float)
        return v[:, None] if v.ndim == 1 else v

    total = V.sum(axis=0, keepdims=True)
    estimate = stat(total)[0]
    if clusters is not None:
        codes = np.asarray(clusters)
        k = int(codes.max()) + 1
        units = _cluster_sums(V, codes, k)
    else:
        k, units = n, V
    block = max(1, min(CHUNK, 20_000_000 // max(k, 1)))
    dist, discarded = _resample_blocks(lambda b: stat(resample_counts(k, b, g) @ units), block,
                                       n_resamples, estimate.size, accept, progress)
    jk = stat(total - units) if jackknife else None
    return Bootstrap(estimate, dist, n, n_resamples, discarded,
                     "model" if clusters is None else "family", k, jk)


def pearson_moments(x, y) -> np.ndarray:
    """Per-observation terms for a weighted Pearson r: [1, x, y, x^2, y^2, xy] along axis 1,
    (n, 6) for 1-D inputs or (n, 6, F) for F columns; x and y are centred first (numerical
    stability)."""
    x, y = _as_float(x), _as_float(y)
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    return np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=1)


def pearson_finish(M: np.ndarray) -> np.ndarray:
    """Pearson r from summed :func:`pearson_moments`, (B, 6) or (B, 6, F); NaN without spread.
    Large inputs are finished a block of rows at a time (the same arithmetic per element,
    with temporaries that stay in cache)."""
    M = np.asarray(M, dtype=float)
    step = max(1, _FINISH_CELLS // max(M[0].size, 1)) if M.ndim and len(M) else 1
    if M.ndim < 2 or len(M) <= step:
        return _pearson_finish(M)
    out = np.empty((M.shape[0],) + M.shape[2:])
    for start in range(0, len(M), step):
        out[start:start + step] = _pearson_finish(M[start:start + step])
    return out


#: Elements of moment sums per block in :func:`pearson_finish`.
_FINISH_CELLS = 300_000


def _pearson_finish(M: np.ndarray) -> np.ndarray:
    s0, sx, sy, sxx, syy, sxy = np.moveaxis(np.asarray(M, dtype=float), 1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        vx = sxx - sx * sx / s0
        vy = syy - sy * sy / s0
        ok = (vx > 1e-12 * sxx) & (vy > 1e-12 * syy) & (vx > 0) & (vy > 0)
        r = np.where(ok, (sxy - sx * sy / s0) / np.sqrt(np.where(ok, vx * vy, 1.0)), np.nan)
    return np.clip(r, -1.0, 1.0)


# ------------------------------------------------------------------------------ FDR
def bh_fdr(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (as scipy.stats.false_discovery_control).
    NaN entries stay NaN and do not count towards the number of tests."""
    p = _as_float(pvalues).copy()
    ok = np.isfinite(p)
    q = np.full_like(p, np.nan)
    m = int(ok.sum())
    if m == 0:
        return q
    pv = p[ok]
    order = np.argsort(pv)
    ranked = pv[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.clip(adj, 0, 1)
    q[ok] = out
    return q


#: z for a two-sided 95% interval (a definition, not a result): scipy.stats.norm.ppf(0.975),
#: written out so that importing this module needs no SciPy (tests/test_startup.py checks it).
Z95 = 1.959963984540054


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Student t interval for the mean of ``values``; ``(nan, nan)`` for fewer than 2."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size < 2:
        return math.nan, math.nan
    from scipy import stats as sps

    half = float(sps.t.ppf(0.5 + level / 2, v.size - 1)) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return float(v.mean() - half), float(v.mean() + half)


def wilson_interval(k, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for k successes out of n (vectorised; default 95%)."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)
