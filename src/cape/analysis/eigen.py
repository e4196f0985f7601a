"""Eigenstructure of several benchmarks over a set of models (METHODS.md section 7):
eigenvalues and loadings of the correlation or covariance matrix, and the participation
ratio d_eff = (sum lambda)^2 / sum lambda^2 with a bootstrap CI over models.

d_eff runs from 1 (one capability axis explains everything) to k (k independent axes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import stats
from ..errors import CapeError
from .data import _benchmark_columns, panel_name, resolve_benchmark
from .results import Estimate, Result, fmt_num, internal

__all__ = ["Eigenstructure", "eigenstructure", "participation_ratio"]

#: Default bootstrap budget (resamples x models): 10,000 resamples up to 2,000 models,
#: fewer above, never fewer than MIN_RESAMPLES. The result states the count used.
_BUDGET = 20_000_000
MIN_RESAMPLES = 1_000


def participation_ratio(eigenvalues: np.ndarray) -> np.ndarray:
    """(sum lambda)^2 / sum lambda^2 along the last axis."""
    lam = np.clip(np.asarray(eigenvalues, dtype=float), 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        return lam.sum(-1) ** 2 / (lam ** 2).sum(-1)


def _matrix_terms(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-model terms [1, X, X_i X_j (i <= j)] of a weighted covariance, X centred."""
    Xc = X - X.mean(axis=0)
    iu, ju = np.triu_indices(X.shape[1])
    return np.column_stack([np.ones(len(Xc)), Xc, Xc[:, iu] * Xc[:, ju]]), iu, ju


def _matrix_finish(M: np.ndarray, k: int, iu: np.ndarray, ju: np.ndarray, matrix: str) -> np.ndarray:
    """Covariance or correlation matrices (B, k, k) from summed :func:`_matrix_terms`."""
    s0 = M[:, :1]
    mean = M[:, 1:1 + k] / s0
    second = M[:, 1 + k:] / s0
    cov = np.empty((M.shape[0], k, k))
    cov[:, iu, ju] = second - mean[:, iu] * mean[:, ju]
    cov[:, ju, iu] = cov[:, iu, ju]
    if matrix == "covariance":
        return cov
    d = np.sqrt(np.clip(np.einsum("bii->bi", cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = cov / (d[:, :, None] * d[:, None, :])
    bad = (d <= 1e-12 * np.maximum(d.max(axis=1, keepdims=True), 1e-300)).any(axis=1)
    out[bad] = np.nan
    return out


@dataclass
class Eigenstructure(Result):
    """Eigenvalues (descending), explained shares, loadings (benchmark x component) and d_eff."""

    panel: str
    scope: str
    matrix: str
    benchmarks: list[str]
    n_models: int
    models: list[str]
    eigenvalues: list[float]
    explained: list[float]
    loadings: pd.DataFrame
    d_eff: Estimate
    warnings: list[str] = field(default_factory=list)
    excluded: list[dict] = field(default_factory=list)
    distribution: np.ndarray | None = internal(default=None, repr=False)

    def summary(self) -> str:
        lines = [f"Eigenstructure of the {self.matrix} matrix of {len(self.benchmarks)} benchmarks "
                 f"over {self.n_models} models ({self.panel}, {self.scope})",
                 "  eigenvalues: " + ", ".join(f"{v:.3g}" for v in self.eigenvalues),
                 "  explained:   " + ", ".join(f"{100 * v:.1f}%" for v in self.explained),
                 "  " + self.d_eff.describe()]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def eigenstructure(frame: pd.DataFrame, benchmarks: Sequence[str] | str | None = None, *,
                   matrix: str = "correlation", family: Sequence[str] | str | None = None,
                   params_range: tuple[float | None, float | None] | None = None,
                   phase: str | None = None, nc: float | None = None, pair=None,
                   n_resamples: int | None = None,
                   level: float = 0.95, seed: int | None = None,
                   progress: stats.Progress | None = None) -> Eigenstructure:
    """Eigen-decomposition over the models of a panel, of some families (``family``) or of
    a size band (``params_range``), or a phase: ``phase='tax'`` keeps models below N_c,
    ``'bonus'`` those at or above it, with N_c = ``nc`` or, by default, the paper protocol's
    full-data vertex on this panel (:func:`cape.analysis.nc.paper_vertex`, using ``pair``).
    Models missing any of the benchmarks are left out and listed. ``n_resamples`` defaults
    to 10,000, reduced for very large panels (at least 1,000; see the result)."""
    if matrix not in ("correlation", "covariance"):
        raise CapeError(f"--matrix is 'correlation' or 'covariance', not '{matrix}'")
    name = panel_name(frame)
    if isinstance(benchmarks, str):
        benchmarks = [b for b in benchmarks.split(",") if b.strip()]
    cols = [resolve_benchmark(frame, b.strip()) for b in benchmarks] if benchmarks else _benchmark_columns(frame)
    cols = list(dict.fromkeys(cols))
    if len(cols) < 2:
        raise CapeError(f"the eigenstructure needs 2 or more benchmarks; {name} offers {', '.join(cols) or 'none'}")
    df = frame if "model" in frame.columns else frame.rename_axis("model").reset_index()
    keep = pd.Series(True, index=df.index)
    what = []
    if family:
        fams = [family] if isinstance(family, str) else list(family)
        fams = [f.strip() for part in fams for f in part.split(",")]
        unknown = sorted(set(fams) - set(df["family"].astype(str)))
        if unknown:
            raise CapeError(f"no family {', '.join(map(repr, unknown))} in {name}")
        keep &= df["family"].astype(str).isin(fams)
        what.append("families " + ", ".join(fams))
    if phase is not None:
        if phase not in ("tax", "bonus"):
            raise CapeError(f"the phase is 'tax' or 'bonus', not '{phase}'")
        from .nc import paper_vertex

        how = "given" if nc is not None else "paper-protocol full-data fit"
        nc = paper_vertex(frame, pair) if nc is None else float(nc)
        keep &= (pd.to_numeric(df["params"], errors="coerce") < nc) == (phase == "tax")
        keep &= pd.to_numeric(df["params"], errors="coerce").notna()
        what.append(f"{phase} phase (N_c = {fmt_num(nc)}, {how})")
    if params_range is not None:
        lo, hi = params_range
        p = pd.to_numeric(df["params"], errors="coerce")
        if lo is not None:
            keep &= p >= lo
        if hi is not None:
            keep &= p < hi
        what.append(f"params in [{fmt_num(lo) if lo else '0'}, {fmt_num(hi) if hi else 'inf'})")
    sub = df[keep]
    X = sub[cols].apply(pd.to_numeric, errors="coerce").astype(float)
    miss = X.isna().any(axis=1)
    # one reason per pattern of missing benchmarks, then one entry per left-out model
    gaps = X[miss].isna().to_numpy()
    patterns, which = (np.unique(gaps, axis=0, return_inverse=True) if len(gaps)
                       else (np.empty((0, len(cols)), dtype=bool), np.empty(0, dtype=np.int64)))
    reasons = ["missing " + ", ".join(c for c, gap in zip(cols, row) if gap) for row in patterns]
    excluded = [{"model": str(m), "reason": reasons[j]} for m, j in zip(sub["model"][miss], which.reshape(-1))]
    X = X[~miss]
    models = list(sub.loc[~miss, "model"].astype(str))
    n, k = X.shape
    if n < 3:
        raise CapeError(f"the eigenstructure needs 3+ models with all of {', '.join(cols)}; "
                        f"{name} ({'; '.join(what) or 'whole panel'}) has {n}")
    const = [c for c in cols if X[c].nunique() < 2]
    if const and matrix == "correlation":
        raise CapeError(f"{', '.join(const)} is constant over these models: its correlations are undefined "
                        "(drop it or use --matrix covariance)")
    A = X.to_numpy()
    warnings = []
    if n <= k:
        warnings.append(f"{n} models for {k} benchmarks: the matrix has rank at most {n - 1}, so at least "
                        f"{k - n + 1} eigenvalue(s) are zero by construction; d_eff is bounded by the sample, "
                        "not by the benchmarks")
    terms, iu, ju = _matrix_terms(A)
    full = _matrix_finish(terms.sum(axis=0, keepdims=True), k, iu, ju, matrix)[0]
    lam, vec = np.linalg.eigh(full)
    order = np.argsort(lam)[::-1]
    lam, vec = np.clip(lam[order], 0, None), vec[:, order]
    vec = vec * np.where(vec.sum(axis=0) < 0, -1, 1)               # sign: positive sum of loadings
    loadings = pd.DataFrame(vec, index=cols, columns=[f"PC{i + 1}" for i in range(k)])
    loadings.index.name = "benchmark"
    if n_resamples is None:
        # a budget of resamples x models, so a 100,000-model panel stays within seconds
        n_resamples = int(min(stats.DEFAULT_BOOTSTRAP, max(MIN_RESAMPLES, _BUDGET // n)))

    def finish(M):
        mats = _matrix_finish(M, k, iu, ju, matrix)
        ok = np.isfinite(mats).all(axis=(1, 2))
        vals = np.full(mats.shape[0], np.nan)
        if ok.any():
            vals[ok] = participation_ratio(np.linalg.eigvalsh(mats[ok]))
        return vals

    bs = stats.bootstrap_moments(terms, finish, n_resamples=n_resamples, rng=np.random.default_rng(seed),
                                 jackknife=n <= 2000, progress=progress)
    lo_, hi_, used = bs.ci(level, "bca" if bs.jackknife is not None else "percentile")
    d_eff = Estimate("d_eff (participation ratio)", float(participation_ratio(lam)), n=n,
                     method=f"(sum lambda)^2 / sum lambda^2 of the {matrix} matrix",
                     ci=(float(lo_[0]), float(hi_[0])) if bs.n_valid else None, level=level,
                     interval=f"{used} bootstrap over models", n_resamples=n_resamples,
                     discarded=bs.discarded, median=float(np.median(bs.distribution[:, 0])) if bs.n_valid else None,
                     note=("a resample is discarded when a benchmark has no spread in it" if bs.discarded else None))
    total = lam.sum()
    return Eigenstructure(name, "; ".join(what) or "whole panel", matrix, cols, n, models,
                          [float(v) for v in lam], [float(v / total) if total > 0 else float("nan") for v in lam],
                          loadings, d_eff, warnings, excluded, bs.distribution[:, 0])
