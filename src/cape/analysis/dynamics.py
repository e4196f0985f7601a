"""Scaling dynamics (METHODS.md section 8): a sparse-regression ODE of the benchmark vector
over model size, its uncertainty, and honest held-out prediction.

Within a family, x = log10 N plays the role of time and the benchmark scores B(x) are the
state. The model is

    dB/dx = Theta(B) xi

with Theta a polynomial library of the state up to ``degree`` and xi found by sequentially
thresholded least squares (pysindy's STLSQ). Derivatives come from finite differences on
each family's own irregular size grid (second order inside, first order at the ends), so a
family contributes as many derivative samples as it has sizes. Fitting pools the samples of
the families it is given.

Units. With ``scale="standard"`` (the default) each benchmark is centred and divided by its
standard deviation in the training data before fitting, so every library term is of order
one and the threshold means "a term whose effect is below ``threshold`` standard deviations
per decade of size is dropped". ``scale="points"`` fits the scores in points, as the
preprint describes; there the threshold is compared with raw coefficients whose size
depends on the term's degree. Equations are shown in the fitted units and, expanded, in
points.

A fit is refused when a benchmark's equation has no more derivative samples than candidate
terms (exactly or under-determined). Prediction integrates the ODE from a family's smallest
model. :func:`crossval` scores it by leave-one-family-out and leave-largest-size-out
prediction against polynomial, linear-ODE and last-value baselines on the same held-out
points; :func:`paper_protocol` reproduces the preprint's held-out Llama-2 figure and puts
the sparse regression beside it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import stats
from ..defaults import DEFAULT_ALPHA, DEFAULT_DEGREE, DEFAULT_ENSEMBLE, DEFAULT_THRESHOLD, SCHEMES
from ..errors import CapeError
from .data import DEFAULT_PAIR, panel_name, resolve_benchmark
from .results import Result, fmt_num, internal

__all__ = ["DEFAULT_DEGREE", "DEFAULT_THRESHOLD", "DEFAULT_ALPHA", "DEFAULT_ENSEMBLE", "SCALES",
           "DUPLICATES", "SCHEMES", "RESAMPLE", "DynamicsError", "Trajectories", "dynamics_data",
           "finite_differences", "Scale", "library_powers", "library_terms", "theta", "stlsq",
           "SparseODE", "check_settings", "fit_ode", "FitReport", "DynamicsFit", "fit_dynamics", "FamilyPrediction",
           "predict_family", "CrossValidation", "crossval", "PaperProtocol", "paper_protocol",
           "polynomial_prediction"]

# DEFAULT_DEGREE, DEFAULT_THRESHOLD, DEFAULT_ALPHA (the ridge penalty of STLSQ's thresholding
# steps), DEFAULT_ENSEMBLE and SCHEMES are set in cape.defaults (`cape --help` shows them).
DEFAULT_MAX_ITER = 20
SCALES = ("standard", "points")
DUPLICATES = ("error", "mean")
RESAMPLE = ("rows", "families")
#: A trajectory whose scores leave (-LIMIT, LIMIT) points has diverged.
DIVERGENCE_LIMIT = 1000.0

#: The preprint's hold-out protocol (METHODS.md section 8): which families train, which is
#: held out, which benchmark is scored and the polynomial degree. Protocol settings, not results.
PAPER_TRAIN = ("Pythia", "Llama-1")
PAPER_TEST = "Llama-2"
PAPER_BENCHMARK = "truthfulqa"
PAPER_DEGREE = 2


class DynamicsError(CapeError):
    """A dynamics fit or prediction that cannot be made as asked (too few points, missing
    scores, duplicate sizes, a threshold that removes every term)."""


# ----------------------------------------------------------------------------- data

@dataclass
class Trajectories:
    """Analysis-ready trajectories: one row per model, sorted by family then size.

    ``frame`` columns: model, family, params, x (= log10 params) and one column per
    benchmark of the state, in ``benchmarks`` order. ``excluded`` lists the models and
    families left out and why; ``notes`` records anything changed (averaged duplicates).
    """

    panel: str
    benchmarks: tuple[str, ...]
    frame: pd.DataFrame
    excluded: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.frame)

    @property
    def k(self) -> int:
        return len(self.benchmarks)

    def families(self) -> list[str]:
        return list(dict.fromkeys(self.frame["family"]))

    def values(self) -> np.ndarray:
        return self.frame[list(self.benchmarks)].to_numpy(float)

    def select(self, mask) -> "Trajectories":
        """The rows where ``mask`` holds (a boolean array over ``frame``)."""
        keep = self.frame[np.asarray(mask, bool)].reset_index(drop=True)
        return Trajectories(self.panel, self.benchmarks, keep, list(self.excluded), list(self.notes))

    def only(self, families: Sequence[str]) -> "Trajectories":
        return self.select(self.frame["family"].isin(list(families)).to_numpy())


def _parse_benchmarks(benchmarks) -> list[str]:
    if benchmarks is None:
        return list(DEFAULT_PAIR)
    if isinstance(benchmarks, str):
        names = [b.strip() for b in benchmarks.split(",")]
    else:
        names = [str(b).strip() for b in benchmarks]
    if not names or not all(names):
        raise DynamicsError(f"benchmarks are a comma-separated list such as hellaswag,truthfulqa, "
                            f"not '{benchmarks}'")
    return names


def _parse_families(families) -> list[str] | None:
    if families is None:
        return None
    names = [f.strip() for f in families.split(",")] if isinstance(families, str) else [str(f) for f in families]
    names = [f for f in names if f]
    return names or None


def dynamics_data(frame: pd.DataFrame, benchmarks=None, families=None, *, duplicates: str = "error",
                  min_models: int = 2) -> Trajectories:
    """Resolve the state's benchmarks and keep the families to model.

    Models without a parameter count are left out (and listed). Families with fewer than
    ``min_models`` distinct sizes are set aside first (an error for a family named in
    ``families``; any other is listed under ``excluded``). Each family kept must have every
    benchmark of the state at every size and distinct sizes (``duplicates="mean"`` averages
    the scores of models of equal size instead of refusing).
    """
    if not isinstance(frame, pd.DataFrame):
        raise DynamicsError("the dynamics take a panel DataFrame (see cape.load_panel)")
    if duplicates not in DUPLICATES:
        raise DynamicsError(f"duplicates must be one of {', '.join(DUPLICATES)}, not '{duplicates}'")
    if min_models < 2:
        raise DynamicsError(f"min_models must be at least 2 (a derivative needs two sizes), not {min_models}")
    panel = panel_name(frame)
    cols = []
    for name in _parse_benchmarks(benchmarks):
        col = resolve_benchmark(frame, name)
        if col in cols:
            raise DynamicsError(f"benchmark '{name}' is named twice in the state ({col})")
        cols.append(col)
    df = frame.copy()
    if "model" not in df.columns:
        df = df.rename_axis("model").reset_index()
    df["model"] = df["model"].astype(str)
    if "family" not in df.columns:
        df["family"] = None
    df["family"] = df["family"].astype("string").fillna(df["model"].astype("string")).astype(str)
    params = pd.to_numeric(df["params"], errors="coerce").astype(float) if "params" in df.columns \
        else pd.Series(np.nan, index=df.index)
    excluded = [{"model": m, "reason": "no parameter count"}
                for m in df.loc[params.isna() | (params <= 0), "model"]]
    df = df.assign(params=params)[(params > 0).to_numpy()]
    wanted = _parse_families(families)
    present = list(dict.fromkeys(df["family"]))
    if wanted is not None:
        unknown = [f for f in wanted if f not in present]
        if unknown:
            raise DynamicsError(f"{panel} has no family {', '.join(repr(u) for u in unknown)} with sizes "
                                f"(it has: {', '.join(present)})")
        df = df[df["family"].isin(wanted)]
    out = pd.DataFrame({"model": df["model"], "family": df["family"], "params": df["params"]})
    for c in cols:
        out[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    # Families too short to model are set aside first, so that their data problems block nothing.
    counts = out.groupby("family", sort=False)["params"].nunique()
    short = [f for f in counts.index if counts[f] < min_models]
    if short and wanted is not None:
        f = short[0]
        raise DynamicsError(f"{panel}: family {f} has {counts[f]} distinct size(s); a trajectory needs at "
                            f"least {min_models}")
    excluded += [{"family": f, "reason": f"{counts[f]} distinct size(s), fewer than {min_models}"} for f in short]
    out = out[~out["family"].isin(short)]
    if out.empty:
        raise DynamicsError(f"{panel}: no family has {min_models} or more sizes with "
                            f"{', '.join(cols)}")
    notes: list[str] = []
    for c in cols:
        miss = out[out[c].isna()]
        if len(miss):
            fam = miss["family"].iloc[0]
            models = ", ".join(miss.loc[miss["family"] == fam, "model"])
            raise DynamicsError(
                f"{panel}: family {fam} has no {c} score for {models}; the state needs every benchmark "
                f"at every size", hint="choose benchmarks that every model has, or leave that family out")
    dup = out.duplicated(["family", "params"], keep=False)
    if dup.any():
        if duplicates == "error":
            first = out[dup].iloc[0]
            same = out[dup & (out["family"] == first["family"]) & (out["params"] == first["params"])]
            raise DynamicsError(
                f"{panel}: family {first['family']} has {len(same)} models of the same size "
                f"{fmt_num(first['params'])} ({', '.join(same['model'])}); a trajectory needs distinct sizes",
                hint="pass duplicates='mean' (CLI: --duplicates mean) to average them, or leave the family out")
        for (fam, p), grp in out[dup].groupby(["family", "params"], sort=False):
            notes.append(f"{fam}: averaged {len(grp)} models of size {fmt_num(p)} ({', '.join(grp['model'])})")
        agg = {c: "mean" for c in cols}
        agg["model"] = lambda s: "+".join(s)
        out = out.groupby(["family", "params"], as_index=False, sort=False).agg(agg)
    out["x"] = np.log10(out["params"])
    out = out.sort_values(["family", "params"], kind="stable").reset_index(drop=True)
    out = out[["model", "family", "params", "x", *cols]]
    return Trajectories(panel, tuple(cols), out, excluded, notes)


def finite_differences(data: Trajectories) -> np.ndarray:
    """dB/dx per model (m, k), within each family on its own size grid: second-order
    central differences inside, first-order one-sided differences at the two ends."""
    vals = data.values()
    x = data.frame["x"].to_numpy(float)
    out = np.empty_like(vals)
    for idx in data.frame.groupby("family", sort=False).indices.values():
        if len(idx) < 2:
            raise DynamicsError(f"family {data.frame['family'].iloc[idx[0]]} has one size; "
                                "a derivative needs two")
        out[idx] = np.gradient(vals[idx], x[idx], axis=0, edge_order=1)
    return out


# ----------------------------------------------------------------------------- units and library

@dataclass(frozen=True)
class Scale:
    """z = (B - center) / sd per benchmark; ``kind`` 'standard' or 'points' (center 0, sd 1)."""

    kind: str
    center: np.ndarray
    sd: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray, kind: str, benchmarks: Sequence[str]) -> "Scale":
        if kind not in SCALES:
            raise DynamicsError(f"scale must be one of {', '.join(SCALES)}, not '{kind}'")
        k = values.shape[1]
        if kind == "points":
            return cls(kind, np.zeros(k), np.ones(k))
        sd = values.std(axis=0, ddof=1)
        flat = [b for b, s in zip(benchmarks, sd) if not s > 0]
        if flat:
            raise DynamicsError(f"benchmark {flat[0]} has the same score at every training size; "
                                "it cannot be standardised (use scale='points' or drop it)")
        return cls(kind, values.mean(axis=0), sd)

    def to_z(self, b: np.ndarray) -> np.ndarray:
        return (b - self.center) / self.sd

    def to_points(self, z: np.ndarray) -> np.ndarray:
        return z * self.sd + self.center


def library_powers(k: int, degree: int) -> np.ndarray:
    """Exponents (p, k) of pysindy's PolynomialLibrary terms, in its order (bias first)."""
    import pysindy as ps

    if degree < 1:
        raise DynamicsError(f"degree must be at least 1, not {degree}")
    lib = ps.PolynomialLibrary(degree=degree, include_bias=True)
    lib.fit(np.zeros((1, k)))
    return np.asarray(lib.powers_, dtype=np.int64)


def library_terms(powers: np.ndarray, names: Sequence[str]) -> list[str]:
    """Readable term names: '1', 'hellaswag', 'hellaswag^2', 'hellaswag*truthfulqa'."""
    terms = []
    for row in powers:
        parts = [n if e == 1 else f"{n}^{e}" for n, e in zip(names, row) if e]
        terms.append("*".join(parts) if parts else "1")
    return terms


def theta(z: np.ndarray, powers: np.ndarray) -> np.ndarray:
    """Library matrix: each row of ``z`` (..., k) raised to each term's powers -> (..., p)."""
    return np.prod(z[..., None, :] ** powers, axis=-1)


# ----------------------------------------------------------------------------- STLSQ, batched

def stlsq(theta_m: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, thresholds=DEFAULT_THRESHOLD,
          *, alpha: float = DEFAULT_ALPHA, max_iter: int = DEFAULT_MAX_ITER) -> tuple[np.ndarray, np.ndarray]:
    """Sequentially thresholded least squares for many problems at once.

    ``theta_m`` (m, p) and ``y`` (m, k) are shared; ``weights`` (B, m) are row weights (a
    bootstrap resample is a row of counts; None = one unweighted problem); ``thresholds`` is
    a scalar or (B,). Each step solves the ridge problem on the active terms, keeps the
    coefficients with |c| >= threshold, and stops when no active set changes; the result is
    an unpenalised least-squares refit (minimum-norm) on the final terms. This is the
    algorithm of pysindy's STLSQ (``normalize_columns=False``, ``unbias=True``); the tests
    check that both give the same coefficients. Returns (coef (B, k, p), converged (B,)).
    """
    theta_m = np.asarray(theta_m, float)
    y = np.asarray(y, float)
    W = np.ones((1, theta_m.shape[0])) if weights is None else np.atleast_2d(np.asarray(weights, float))
    n_b, p, k = W.shape[0], theta_m.shape[1], y.shape[1]
    thr = np.broadcast_to(np.asarray(thresholds, float), (n_b,))
    G = np.einsum("bm,mp,mq->bpq", W, theta_m, theta_m)          # (B, p, p)
    h = np.einsum("bm,mp,mk->bkp", W, theta_m, y)                # (B, k, p)
    eye = np.eye(p)
    active = np.ones((n_b, k, p), bool)
    converged = np.zeros(n_b, bool)
    for _ in range(max_iter):
        pair = active[..., :, None] & active[..., None, :]
        M = np.where(pair, G[:, None], 0.0) + eye * np.where(active, alpha, 1.0)[..., None]
        coef = np.linalg.solve(M, (h * active)[..., None])[..., 0]
        new = active & (np.abs(coef) >= thr[:, None, None])
        same = (new == active).all(axis=(1, 2))
        converged |= same
        active = new
        if converged.all():
            break
    pair = active[..., :, None] & active[..., None, :]
    coef = (np.linalg.pinv(np.where(pair, G[:, None], 0.0), hermitian=True) @ (h * active)[..., None])[..., 0]
    coef = np.where(active, coef, 0.0)
    return coef, converged


# ----------------------------------------------------------------------------- the fitted ODE

@dataclass
class SparseODE:
    """A fitted sparse ODE dz/dx = Theta(z) coef, z the scaled state (see :class:`Scale`).

    ``coef`` (k, p) holds the coefficients in fitted units (one row per benchmark's
    equation); ``n_points`` is the number of derivative samples per equation and
    ``n_terms`` the size of the candidate library. ``rmse`` is the root-mean-square
    derivative residual of each equation, in points per decade. ``sindy`` is the fitted
    ``pysindy.SINDy`` model (None for a baseline fitted without it).
    """

    benchmarks: tuple[str, ...]
    degree: int
    threshold: float
    alpha: float
    scale: Scale
    powers: np.ndarray
    terms: list[str]
    coef: np.ndarray
    families: list[str]
    n_points: int
    rmse: np.ndarray
    sindy: object = None

    @property
    def n_terms(self) -> int:
        return int(self.powers.shape[0])

    @property
    def n_active(self) -> np.ndarray:
        return (self.coef != 0).sum(axis=1)

    def rate(self, b: np.ndarray) -> np.ndarray:
        """dB/dx in points per decade at states ``b`` (..., k) in points."""
        return theta(self.scale.to_z(np.asarray(b, float)), self.powers) @ self.coef.T * self.scale.sd

    def simulate(self, x0: float, b0: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, str | None]:
        """Integrate from (x0, b0) to the sizes ``xs`` (log10 N, each >= x0).

        Returns the states in points (len(xs), k) and None, or NaN rows from where the
        trajectory left (-1000, 1000) points or the integrator failed, with the reason.
        """
        from scipy.integrate import solve_ivp

        xs = np.asarray(xs, float)
        out = np.full((len(xs), len(self.benchmarks)), np.nan)
        if np.any(xs < x0 - 1e-12):
            raise DynamicsError("a prediction runs from the smallest model upward; a size below the "
                                "starting size was asked for")
        z0 = self.scale.to_z(np.asarray(b0, float))
        at_start = np.abs(xs - x0) <= 1e-12
        out[at_start] = b0
        later = ~at_start
        if not later.any():
            return out, None
        coef, powers, sd, center = self.coef, self.powers, self.scale.sd, self.scale.center

        def rhs(_t, z):
            return coef @ theta(z, powers)

        def escape(_t, z):
            return DIVERGENCE_LIMIT - np.max(np.abs(z * sd + center))

        escape.terminal = True
        order = np.argsort(xs[later])
        targets = xs[later][order]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sol = solve_ivp(rhs, (x0, float(targets[-1])), z0, t_eval=targets, method="LSODA",
                            rtol=1e-8, atol=1e-10, events=escape)
        got = np.full((len(targets), len(self.benchmarks)), np.nan)
        # a failure before the first requested size leaves sol.y an empty list, not an array
        Y = np.asarray(sol.y, dtype=float).reshape(len(z0), -1)
        n_ok = Y.shape[1]
        got[:n_ok] = self.scale.to_points(Y.T)
        idx = np.flatnonzero(later)[order]
        out[idx] = got
        reason = None
        if n_ok < len(targets):
            t = np.asarray(sol.t, dtype=float)
            where = t[-1] if t.size else x0
            reason = (f"diverged (scores left +/-{DIVERGENCE_LIMIT:g} points) near N = {fmt_num(10 ** where)}"
                      if sol.status == 1 else f"integration failed near N = {fmt_num(10 ** where)}: {sol.message}")
        return out, reason

    def coefficients(self) -> pd.DataFrame:
        """One row per (equation, term): coefficient in fitted units, whether it is active,
        and the same equation expanded in points (``coef_points``; points per decade)."""
        pts = self._points_coef()
        rows = []
        for i, b in enumerate(self.benchmarks):
            for j, t in enumerate(self.terms):
                rows.append({"equation": b, "term": t, "coef": float(self.coef[i, j]),
                             "active": bool(self.coef[i, j] != 0), "coef_points": float(pts[i, j])})
        return pd.DataFrame(rows)

    def _points_coef(self) -> np.ndarray:
        """Coefficients of the same right-hand side written as a polynomial of the scores in
        points: an exact change of basis, found from the libraries on a grid of states."""
        if self.scale.kind == "points":
            return self.coef.copy()
        k, p = len(self.benchmarks), self.n_terms
        g = np.random.default_rng(0).uniform(0, 100, size=(max(4 * p, 50), k))
        T, *_ = np.linalg.lstsq(theta(g, self.powers), theta(self.scale.to_z(g), self.powers), rcond=None)
        pts = (T @ self.coef.T).T * self.scale.sd[:, None]
        pts[np.abs(pts) < 1e-9 * max(1.0, np.abs(pts).max())] = 0.0
        return pts

    def equations(self, units: str = "fitted", digits: int = 3) -> list[str]:
        """One line per benchmark: 'd truthfulqa/dlog10N = 0.41 - 1.2 hellaswag + ...'.

        ``units='fitted'`` shows the coefficients as fitted (z-scores under standard
        scaling); ``'points'`` the same right-hand side in points per decade."""
        coef = self.coef if units == "fitted" else self._points_coef()
        lines = []
        for i, b in enumerate(self.benchmarks):
            parts = []
            for c, t in zip(coef[i], self.terms):
                if c == 0:
                    continue
                num = f"{abs(c):.{digits}g}"
                body = num if t == "1" else f"{num} {t}"
                parts.append(("- " if c < 0 else "+ ") + body)
            rhs = " ".join(parts).lstrip("+ ") if parts else "0"
            if rhs.startswith("- "):
                rhs = "-" + rhs[2:]
            lines.append(f"d {b}/dlog10N = {rhs}")
        return lines

    def units_note(self) -> str:
        if self.scale.kind == "points":
            return "scores in points"
        return "z-scores of the training data: " + "; ".join(
            f"{b} = ({b} - {self.scale.center[i]:.4g}) / {self.scale.sd[i]:.4g}"
            for i, b in enumerate(self.benchmarks))


def check_settings(*, degree: int = DEFAULT_DEGREE, threshold: float = DEFAULT_THRESHOLD,
                   alpha: float = DEFAULT_ALPHA, scale: str = "standard") -> None:
    """Refuse settings no fit can use, before any data is touched."""
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 1:
        raise DynamicsError(f"degree must be a whole number >= 1, not {degree!r}")
    if not (isinstance(threshold, (int, float, np.number)) and math.isfinite(threshold) and threshold >= 0):
        raise DynamicsError(f"threshold must be a number >= 0, not {threshold!r}")
    if not (isinstance(alpha, (int, float, np.number)) and math.isfinite(alpha) and alpha >= 0):
        raise DynamicsError(f"alpha must be a number >= 0, not {alpha!r}")
    if scale not in SCALES:
        raise DynamicsError(f"scale must be one of {', '.join(SCALES)}, not '{scale}'")


def _check_determined(m: int, p: int, k: int, degree: int, what: str) -> None:
    if m <= p:
        kind = "exactly determined" if m == p else "under-determined"
        raise DynamicsError(
            f"{what}: {m} data point(s) per equation for {p} candidate terms (degree {degree}, "
            f"{k} benchmark(s)); the fit is {kind}",
            hint="lower --degree, use fewer --benchmarks, or pool more families")


def fit_ode(data: Trajectories, *, degree: int = DEFAULT_DEGREE, threshold: float = DEFAULT_THRESHOLD,
            alpha: float = DEFAULT_ALPHA, scale: str = "standard", what: str | None = None,
            use_pysindy: bool = True) -> SparseODE:
    """Fit dB/dx = Theta(B) xi to the pooled derivative samples of the families in ``data``.

    The fit runs through ``pysindy.SINDy`` (STLSQ, PolynomialLibrary, each family one
    trajectory with its own irregular x grid and finite-difference derivatives).
    ``use_pysindy=False`` runs the same algorithm through :func:`stlsq` (used for
    resampling). Refuses exactly or under-determined fits and a threshold that removes
    every term.
    """
    check_settings(degree=degree, threshold=threshold, alpha=alpha, scale=scale)
    what = what or f"fit on {', '.join(data.families())}"
    powers = library_powers(data.k, degree)
    m, p = data.n, powers.shape[0]
    _check_determined(m, p, data.k, degree, what)
    vals = data.values()
    dv = finite_differences(data)
    sc = Scale.of(vals, scale, data.benchmarks)
    z, zdot = sc.to_z(vals), dv / sc.sd
    th = theta(z, powers)
    terms = library_terms(powers, data.benchmarks)
    model = None
    if use_pysindy:
        import pysindy as ps

        model = ps.SINDy(optimizer=ps.STLSQ(threshold=threshold, alpha=alpha, max_iter=DEFAULT_MAX_ITER),
                         feature_library=ps.PolynomialLibrary(degree=degree, include_bias=True))
        idx = list(data.frame.groupby("family", sort=False).indices.values())
        x = data.frame["x"].to_numpy(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit([z[i] for i in idx], t=[x[i] for i in idx], x_dot=[zdot[i] for i in idx],
                      feature_names=list(data.benchmarks))
        coef = np.asarray(model.coefficients(), float)
    else:
        coef = stlsq(th, zdot, thresholds=threshold, alpha=alpha)[0][0]
    if not np.any(coef):
        full = stlsq(th, zdot, thresholds=0.0, alpha=alpha)[0][0]
        raise DynamicsError(
            f"{what}: threshold {threshold:g} removes every term of every equation (the largest "
            f"coefficient of the unthresholded fit is {np.abs(full).max():.3g} in fitted units)",
            hint="use a smaller --threshold")
    rmse = np.sqrt(np.mean((th @ coef.T - zdot) ** 2, axis=0)) * sc.sd
    return SparseODE(tuple(data.benchmarks), degree, float(threshold), float(alpha), sc, powers, terms, coef,
                     data.families(), m, rmse, model)


def _trajectory_table(ode: SparseODE, data: Trajectories) -> tuple[pd.DataFrame, list[str]]:
    """Integrate every family of ``data`` from its smallest model; long table of observed,
    predicted and error per (model, benchmark); the smallest model is the starting point."""
    rows, problems = [], []
    vals = data.values()
    x = data.frame["x"].to_numpy(float)
    for fam, idx in data.frame.groupby("family", sort=False).indices.items():
        pred, reason = ode.simulate(x[idx[0]], vals[idx[0]], x[idx])
        if reason:
            problems.append(f"{fam}: {reason}")
        for r, i in enumerate(idx):
            for j, b in enumerate(data.benchmarks):
                rows.append({"model": data.frame["model"].iloc[i], "family": fam,
                             "params": float(data.frame["params"].iloc[i]), "benchmark": b,
                             "observed": vals[i, j], "predicted": pred[r, j], "start": r == 0})
    t = pd.DataFrame(rows)
    t["error"] = t["predicted"] - t["observed"]
    t.loc[t["start"], "error"] = np.nan
    return t, problems


def _mae(table: pd.DataFrame) -> float:
    e = table.loc[~table["start"], "error"].abs()
    return float(e.mean()) if e.notna().any() else float("nan")


# ----------------------------------------------------------------------------- fit with uncertainty

@dataclass
class FitReport:
    """One fitted ODE (a family, or several pooled) with its uncertainty.

    ``coefficients``: per (equation, term) the fitted coefficient, its value in points,
    the bagging inclusion probability, median and percentile interval. ``sweep``: the
    threshold sweep (terms against derivative and trajectory error). ``trajectories``:
    in-sample integration of each family from its smallest model.
    """

    label: str
    families: list[str]
    n_models: int
    n_points: int
    n_terms: int
    n_active: dict
    equations: list[str]
    equations_points: list[str]
    units: str
    rmse: dict
    coefficients: pd.DataFrame
    trajectories: pd.DataFrame
    trajectory_mae: float
    sweep: pd.DataFrame | None
    ensemble: dict
    notes: list[str]
    ode: SparseODE = internal(default=None)


@dataclass
class DynamicsFit(Result):
    panel: str
    benchmarks: list[str]
    degree: int
    threshold: float
    alpha: float
    scale: str
    pooled: bool
    fits: list[FitReport]
    refused: list[dict]
    excluded: list[dict]
    notes: list[str]

    def summary(self) -> str:
        lines = [f"Sparse-regression ODE on {self.panel}: d(state)/dlog10N = Theta(state) xi, state = "
                 f"{', '.join(self.benchmarks)}; polynomial library degree {self.degree}, STLSQ threshold "
                 f"{self.threshold:g} ({self.scale} units), {'families pooled' if self.pooled else 'one fit per family'}."]
        for f in self.fits:
            act = ", ".join(f"{b} {n}" for b, n in f.n_active.items())
            lines.append(f"{f.label}: {f.n_points} data points per equation, {f.n_terms} candidate terms, "
                         f"active terms {act}; in-sample trajectory MAE {fmt_num(f.trajectory_mae)} points "
                         f"(integrated from each family's smallest model).")
            lines += ["  " + e for e in f.equations]
            lines.append("  in points: " + " | ".join(f.equations_points))
            lines += ["  note: " + n for n in f.notes]
        for r in self.refused:
            lines.append(f"refused: {r['reason']}")
        lines += ["note: " + n for n in self.notes]
        return "\n".join(lines)


def _ensemble(ode: SparseODE, data: Trajectories, n_models: int, resample: str, level: float,
              seed) -> tuple[pd.DataFrame, dict]:
    """Bagging: refit STLSQ on ``n_models`` resamples of the derivative samples (rows, or
    whole families) with the fit's own scale and threshold; inclusion probability and a
    percentile interval per coefficient (zeros included: a dropped term counts as 0)."""
    vals = data.values()
    z, zdot = ode.scale.to_z(vals), finite_differences(data) / ode.scale.sd
    th = theta(z, ode.powers)
    clusters = None
    if resample == "families":
        clusters = pd.factorize(data.frame["family"])[0]
    W = stats.bootstrap_weights(data.n, n_models, seed, clusters=clusters)
    coefs = np.concatenate([stlsq(th, zdot, W[s:s + stats.CHUNK], ode.threshold, alpha=ode.alpha)[0]
                            for s in range(0, n_models, stats.CHUNK)])      # (B, k, p)
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    flat = coefs.reshape(n_models, -1)
    q = np.quantile(flat, [lo, 0.5, hi], axis=0)
    frame = pd.DataFrame({"inclusion": (flat != 0).mean(axis=0), "median": q[1], "low": q[0], "high": q[2]})
    info = {"n_models": n_models, "resample": resample, "level": level,
            "method": f"bagging: STLSQ refitted on {n_models} resamples of "
                      f"{'whole families' if resample == 'families' else 'derivative samples'}; "
                      "percentile intervals in fitted units"}
    return frame, info


def default_thresholds(ode: SparseODE, data: Trajectories, n: int = 15) -> np.ndarray:
    """0, the fit's own threshold, and a geometric grid from half the smallest to just above
    the largest coefficient magnitude of the unthresholded fit."""
    z = ode.scale.to_z(data.values())
    full = stlsq(theta(z, ode.powers), finite_differences(data) / ode.scale.sd, thresholds=0.0,
                 alpha=ode.alpha)[0][0]
    mags = np.abs(full[full != 0])
    grid = np.geomspace(mags.min() / 2, mags.max() * 1.01, n) if mags.size else np.array([])
    return np.unique(np.concatenate([[0.0, ode.threshold], grid]))


def threshold_sweep(ode: SparseODE, data: Trajectories, thresholds=None) -> pd.DataFrame:
    """Active terms against error for a range of thresholds (all fitted at once by
    :func:`stlsq`): derivative RMSE (points per decade, all equations) and the in-sample
    trajectory MAE (points) of each family integrated from its smallest model. The default
    grid (:func:`default_thresholds`) ends at the first threshold that removes every term."""
    ths = default_thresholds(ode, data) if thresholds is None else np.asarray(thresholds, float)
    z = ode.scale.to_z(data.values())
    zdot = finite_differences(data) / ode.scale.sd
    th = theta(z, ode.powers)
    coefs, conv = stlsq(th, zdot, np.ones((len(ths), data.n)), ths, alpha=ode.alpha)
    rows = []
    for t, c, ok in zip(ths, coefs, conv):
        rmse = float(np.sqrt(np.mean(((th @ c.T - zdot) * ode.scale.sd) ** 2)))
        row = {"threshold": float(t), "n_active": int((c != 0).sum()), "derivative_rmse": rmse,
               "trajectory_mae": float("nan"), "status": "ok" if ok else "not converged"}
        for b, n in zip(ode.benchmarks, (c != 0).sum(axis=1)):
            row[f"active_{b}"] = int(n)
        if not np.any(c):
            row["status"] = "every term removed"
        else:
            trial = dataclasses.replace(ode, threshold=float(t), coef=c, sindy=None)
            table, problems = _trajectory_table(trial, data)
            row["trajectory_mae"] = _mae(table)
            if problems:
                row["status"] = "; ".join(problems)
        rows.append(row)
        if thresholds is None and not np.any(c):
            break                      # the default grid stops at the first empty model
    return pd.DataFrame(rows)


def _report(ode: SparseODE, data: Trajectories, label: str, *, n_ensemble: int, resample: str, level: float,
            seed, sweep: bool) -> FitReport:
    coefs = ode.coefficients()
    ens_info: dict = {"n_models": 0}
    if n_ensemble > 0:
        ens, ens_info = _ensemble(ode, data, n_ensemble, resample, level, seed)
        coefs = pd.concat([coefs, ens], axis=1)
    table, problems = _trajectory_table(ode, data)
    notes = list(problems)
    if ode.scale.kind == "standard":
        notes.append("coefficients in z-scores (" + ode.units_note() + ")")
    if resample == "families" and n_ensemble and len(data.families()) < 5:
        notes.append(f"bagging over {len(data.families())} families: intervals are rough")
    return FitReport(
        label=label, families=data.families(), n_models=data.n, n_points=ode.n_points, n_terms=ode.n_terms,
        n_active={b: int(n) for b, n in zip(ode.benchmarks, ode.n_active)}, equations=ode.equations(),
        equations_points=ode.equations("points"), units=ode.units_note(),
        rmse={b: float(r) for b, r in zip(ode.benchmarks, ode.rmse)}, coefficients=coefs,
        trajectories=table, trajectory_mae=_mae(table),
        sweep=threshold_sweep(ode, data) if sweep else None, ensemble=ens_info, notes=notes, ode=ode)


def fit_dynamics(frame: pd.DataFrame, benchmarks=None, *, families=None, pool: bool = False,
                 degree: int = DEFAULT_DEGREE, threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA,
                 scale: str = "standard", duplicates: str = "error", n_ensemble: int = DEFAULT_ENSEMBLE,
                 resample: str = "rows", level: float = 0.95, sweep: bool = True, seed: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> DynamicsFit:
    """Fit the sparse ODE per family (or pooled over ``families`` with ``pool=True``), with
    bagging intervals and inclusion probabilities (``n_ensemble`` resamples) and a threshold
    sweep. A per-family fit that is exactly or under-determined is listed under ``refused``;
    if every fit is refused, that is an error."""
    check_settings(degree=degree, threshold=threshold, alpha=alpha, scale=scale)
    if resample not in RESAMPLE:
        raise DynamicsError(f"resample must be one of {', '.join(RESAMPLE)}, not '{resample}'")
    data = dynamics_data(frame, benchmarks, families, duplicates=duplicates)
    groups = [("pooled: " + ", ".join(data.families()), data)] if pool else \
        [(f, data.only([f])) for f in data.families()]
    fits, refused = [], []
    for i, (label, sub) in enumerate(groups):
        try:
            ode = fit_ode(sub, degree=degree, threshold=threshold, alpha=alpha, scale=scale, what=label)
        except DynamicsError as exc:
            if len(groups) == 1:
                raise
            refused.append({"label": label, "reason": str(exc)})
        else:
            fits.append(_report(ode, sub, label, n_ensemble=n_ensemble, resample=resample, level=level,
                                seed=None if seed is None else seed + i, sweep=sweep))
        if progress:
            progress(i + 1, len(groups))
    if not fits:
        raise DynamicsError("every family's fit was refused: " + "; ".join(r["reason"] for r in refused))
    return DynamicsFit(data.panel, list(data.benchmarks), degree, float(threshold), float(alpha), scale, pool,
                       fits, refused, data.excluded, data.notes)


# ----------------------------------------------------------------------------- predicting a family

def polynomial_prediction(x_train: np.ndarray, y_train: np.ndarray, x_new: np.ndarray, degree: int,
                          what: str = "polynomial") -> np.ndarray:
    """Least-squares polynomial of each column of ``y_train`` (m, k) on x, evaluated at
    ``x_new``; refused when it would be exactly or under-determined (m <= degree + 1)."""
    x_train = np.asarray(x_train, float)
    sizes = len(np.unique(x_train))
    if sizes <= degree + 1:
        kind = "exactly determined" if sizes == degree + 1 else "under-determined"
        raise DynamicsError(f"{what}: {sizes} distinct size(s) for {degree + 1} coefficients "
                            f"(degree {degree}); the fit is {kind}")
    c = np.polynomial.polynomial.polyfit(x_train, np.asarray(y_train, float), degree)   # (deg+1, k)
    return np.polynomial.polynomial.polyval(np.asarray(x_new, float), c).T.reshape(len(x_new), -1)


@dataclass
class FamilyPrediction(Result):
    """A family's scores predicted by integrating an ODE fitted on other families from the
    family's smallest model. ``table``: one row per (size, benchmark) with observed,
    predicted and error (predicted - observed); the first size is the starting point."""

    panel: str
    family: str
    benchmarks: list[str]
    trained_on: list[str]
    n_points: int
    n_terms: int
    equations: list[str]
    units: str
    table: pd.DataFrame
    mae: float
    mape: float
    n_scored: int
    notes: list[str]
    ode: SparseODE = internal(default=None)

    def summary(self) -> str:
        lines = [f"{self.family} predicted from its smallest model by the sparse ODE fitted on "
                 f"{', '.join(self.trained_on)} ({self.n_points} data points per equation, {self.n_terms} "
                 f"candidate terms):"]
        lines += ["  " + e for e in self.equations]
        lines.append(f"MAE {fmt_num(self.mae)} points, MAPE {fmt_num(self.mape)}% over {self.n_scored} held-out "
                     "scores.")
        lines += ["note: " + n for n in self.notes]
        return "\n".join(lines)


def _ape(pred, obs):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(obs) != 0, np.abs(np.asarray(pred) - obs) / np.abs(obs) * 100, np.nan)


def predict_family(frame: pd.DataFrame, family: str, benchmarks=None, *, train=None, sizes=(),
                   degree: int = DEFAULT_DEGREE, threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA,
                   scale: str = "standard", duplicates: str = "error") -> FamilyPrediction:
    """Fit on ``train`` (default: every other family with two or more sizes), start at
    ``family``'s smallest model and integrate to its other sizes and to any extra
    ``sizes`` (parameter counts). The target family never enters the fit."""
    check_settings(degree=degree, threshold=threshold, alpha=alpha, scale=scale)
    chosen = _parse_families(train)
    data = dynamics_data(frame, benchmarks, None if chosen is None else [family, *chosen], duplicates=duplicates)
    if family not in data.families():
        raise DynamicsError(f"{data.panel} has no family '{family}' with two or more sizes "
                            f"(it has: {', '.join(data.families())})")
    train_f = chosen or [f for f in data.families() if f != family]
    if family in train_f:
        raise DynamicsError(f"the target family {family} cannot be in the training families")
    missing = [f for f in train_f if f not in data.families()]
    if missing:
        raise DynamicsError(f"{data.panel} has no family {', '.join(missing)} with two or more sizes")
    tr = data.only(train_f)
    ode = fit_ode(tr, degree=degree, threshold=threshold, alpha=alpha, scale=scale,
                  what=f"fit on {', '.join(train_f)}")
    target = data.only([family])
    tf = target.frame
    extra = np.asarray([float(s) for s in sizes], float)
    if np.any(~(extra > 0)):
        raise DynamicsError("extra sizes must be positive parameter counts")
    xs = np.concatenate([tf["x"].to_numpy(float), np.log10(extra)]) if extra.size else tf["x"].to_numpy(float)
    if np.any(xs < tf["x"].iloc[0]):
        raise DynamicsError(f"an extra size is below {family}'s smallest model "
                            f"({fmt_num(tf['params'].iloc[0])}); the prediction starts there")
    vals = target.values()
    pred, reason = ode.simulate(float(tf["x"].iloc[0]), vals[0], xs)
    rows = []
    for i, x in enumerate(xs):
        observed = i < len(tf)
        for j, b in enumerate(ode.benchmarks):
            obs = vals[i, j] if observed else np.nan
            rows.append({"model": tf["model"].iloc[i] if observed else "", "params": float(10 ** x),
                         "benchmark": b, "observed": obs, "predicted": pred[i, j],
                         "error": (pred[i, j] - obs) if observed and i > 0 else np.nan, "start": i == 0})
    table = pd.DataFrame(rows)
    scored = table[table["error"].notna()]
    notes = [reason] if reason else []
    notes.append(ode.units_note())
    return FamilyPrediction(data.panel, family, list(ode.benchmarks), train_f, ode.n_points, ode.n_terms,
                            ode.equations(), ode.units_note(), table,
                            float(scored["error"].abs().mean()) if len(scored) else float("nan"),
                            float(np.nanmean(_ape(scored["predicted"], scored["observed"]))) if len(scored)
                            else float("nan"), int(len(scored)), notes, ode)


# ----------------------------------------------------------------------------- cross-validation

def _methods(degree: int, threshold: float, scheme: str) -> list[tuple[str, str, int]]:
    """(name, kind, degree) of every method scored: the sparse ODE, a linear ODE, polynomials
    in log10 N (pooled; anchored at the starting model; per family when the held-out family
    has its own training points) and the last observed value."""
    ms = [(f"sparse ODE (degree {degree}, threshold {threshold:g})", "sindy", degree),
          ("linear ODE (least squares)", "linear", 1)]
    for d in (1, 2, 3):
        ms.append((f"polynomial {d}, pooled", "poly", d))
        ms.append((f"polynomial {d}, pooled, anchored", "anchored", d))
        if scheme == "largest":
            ms.append((f"polynomial {d}, per family", "poly-family", d))
    ms.append(("last observed value", "last", 0))
    return ms


def _fold(train: Trajectories, family_train: Trajectories, start: tuple[float, np.ndarray], xs: np.ndarray,
          methods, *, threshold: float, alpha: float, scale: str) -> list[tuple[str, np.ndarray, str]]:
    """Predictions of every method for the target sizes ``xs`` (n, k); each method sees only
    ``train`` (and ``family_train``, the held-out family's own training rows, which always
    include the starting model). Returns (method, predictions, status)."""
    out = []
    x0, b0 = start
    tx, tv = train.frame["x"].to_numpy(float), train.values()
    for name, kind, d in methods:
        try:
            if kind in ("sindy", "linear"):
                sizes = train.frame.groupby("family", sort=False)["x"].size()
                ode_train = train.only([f for f in sizes.index if sizes[f] >= 2])
                ode = fit_ode(ode_train, degree=d, threshold=threshold if kind == "sindy" else 0.0, alpha=alpha,
                              scale=scale, what=f"fit on {len(ode_train.families())} training families",
                              use_pysindy=kind == "sindy")
                pred, reason = ode.simulate(x0, b0, xs)
                status = reason or "ok"
            elif kind == "poly":
                pred, status = polynomial_prediction(tx, tv, xs, d, "training sizes"), "ok"
            elif kind == "anchored":
                shift = b0 - polynomial_prediction(tx, tv, np.array([x0]), d, "training sizes")[0]
                pred, status = polynomial_prediction(tx, tv, xs, d, "training sizes") + shift, "ok"
            elif kind == "poly-family":
                pred = polynomial_prediction(family_train.frame["x"].to_numpy(float), family_train.values(), xs, d,
                                             f"{family_train.families()[0]}'s own sizes")
                status = "ok"
            else:
                last = family_train.values()[-1]
                pred, status = np.tile(last, (len(xs), 1)), "ok"
        except DynamicsError as exc:
            pred, status = np.full((len(xs), train.k), np.nan), f"refused: {exc}"
        out.append((name, pred, status))
    return out


@dataclass
class CrossValidation(Result):
    """Held-out prediction scores.

    ``table``: per (scheme, method) the points scored, folds refused or diverged, mean
    absolute error in points (with a bootstrap interval over held-out families) and mean
    absolute percentage error, on the method's own predictions and on the points the sparse
    ODE predicted (``*_shared``: every method scored on the same held-out scores). ``by_benchmark`` splits MAE and MAPE per benchmark.
    ``predictions`` holds every held-out prediction; ``folds`` each fold's training
    families, training points and status per method. Schemes: ``family`` (leave one family
    out; the held-out family's smallest model is the starting point and is not scored) and
    ``largest`` (leave each family's largest size out).
    """

    panel: str
    benchmarks: list[str]
    degree: int
    threshold: float
    scale: str
    schemes: list[str]
    families: list[str]
    table: pd.DataFrame
    by_benchmark: pd.DataFrame
    predictions: pd.DataFrame
    folds: pd.DataFrame
    paper_protocol: "PaperProtocol | None"
    excluded: list[dict]
    notes: list[str]

    def summary(self) -> str:
        lines = [f"Cross-validated prediction on {self.panel}: state {', '.join(self.benchmarks)}, "
                 f"{len(self.families)} families ({', '.join(self.families)}); sparse ODE degree {self.degree}, "
                 f"threshold {self.threshold:g} ({self.scale} units)."]
        lines += ["note: " + n for n in self.notes]
        return "\n".join(lines)


def crossval(frame: pd.DataFrame, benchmarks=None, *, families=None, schemes: Sequence[str] = SCHEMES,
             min_models: int = 3, degree: int = DEFAULT_DEGREE, threshold: float = DEFAULT_THRESHOLD,
             alpha: float = DEFAULT_ALPHA, scale: str = "standard", duplicates: str = "error",
             n_bootstrap: int = 2000, level: float = 0.95, seed: int | None = None, paper: bool | None = None,
             progress: Callable[[int, int], None] | None = None) -> CrossValidation:
    """Leave-one-family-out and leave-largest-size-out prediction of the sparse ODE and the
    baselines, all scored on the same held-out points.

    Every fold refits everything (including the standardisation and the finite
    differences) on its training rows only, so no held-out score reaches a fit. Families
    with fewer than ``min_models`` sizes are left out. ``paper`` adds the preprint's
    protocol (:func:`paper_protocol`); None adds it when the panel has its families. The
    protocol keeps its own families and state (Pythia + Llama-1 -> Llama-2, HellaSwag and
    TruthfulQA) whatever ``families`` and ``benchmarks`` say; it shares the ODE settings.
    """
    schemes = [schemes] if isinstance(schemes, str) else list(schemes)
    bad = [s for s in schemes if s not in SCHEMES]
    if bad or not schemes:
        raise DynamicsError(f"schemes are {', '.join(SCHEMES)}, not '{', '.join(bad) or '(none)'}'")
    check_settings(degree=degree, threshold=threshold, alpha=alpha, scale=scale)
    data = dynamics_data(frame, benchmarks, families, duplicates=duplicates, min_models=min_models)
    fams = data.families()
    if "family" in schemes and len(fams) < 2:
        raise DynamicsError(f"{data.panel}: leave-one-family-out needs two or more families with "
                            f"{min_models}+ sizes (found {len(fams)})")
    x_all = data.frame["x"].to_numpy(float)
    fam_col = data.frame["family"].to_numpy()
    folds = [(s, f) for s in schemes for f in fams]
    pred_rows, fold_rows = [], []
    for n_done, (scheme, fam) in enumerate(folds):
        in_fam = fam_col == fam
        idx = np.flatnonzero(in_fam)
        if scheme == "family":
            train = data.select(~in_fam)
            family_train = data.select(np.isin(np.arange(data.n), idx[:1]))
            targets = idx[1:]
        else:
            held = np.zeros(data.n, bool)
            held[idx[-1]] = True
            train = data.select(~held)
            family_train = data.select(in_fam & ~held)
            targets = idx[-1:]
        start = (float(x_all[idx[0]]), data.values()[idx[0]])
        methods = _methods(degree, threshold, scheme)
        results = _fold(train, family_train, start, x_all[targets], methods,
                        threshold=threshold, alpha=alpha, scale=scale)
        obs = data.values()[targets]
        for name, pred, status in results:
            fold_rows.append({"scheme": scheme, "fold": fam, "method": name, "status": status,
                              "train_families": len(train.families()), "train_points": train.n})
            for r, i in enumerate(targets):
                for j, b in enumerate(data.benchmarks):
                    pred_rows.append({"scheme": scheme, "fold": fam, "method": name,
                                      "model": data.frame["model"].iloc[i], "family": fam,
                                      "params": float(data.frame["params"].iloc[i]), "benchmark": b,
                                      "observed": obs[r, j], "predicted": pred[r, j]})
        if progress:
            progress(n_done + 1, len(folds))
    preds = pd.DataFrame(pred_rows)
    preds["error"] = preds["predicted"] - preds["observed"]
    preds["ape"] = _ape(preds["predicted"], preds["observed"])
    order = [m for m, _, _ in _methods(degree, threshold, "largest")]
    table, by_b = _score(preds, pd.DataFrame(fold_rows), order, n_bootstrap, level, seed)
    notes = list(data.notes)
    if (preds["observed"] == 0).any():
        notes.append("percentage errors skip observed scores of 0")
    notes.append("'anchored' polynomials are shifted to pass through the starting model, the same "
                 "information the ODEs start from; per-family polynomials use only the family's own "
                 "remaining sizes")
    want_paper = paper if paper is not None else all(
        f in set(frame.get("family", pd.Series(dtype=str)).astype(str)) for f in (*PAPER_TRAIN, PAPER_TEST))
    pp = None
    if want_paper:
        pp = paper_protocol(frame, degree=degree, threshold=threshold, alpha=alpha, scale=scale)
    return CrossValidation(data.panel, list(data.benchmarks), degree, float(threshold), scale, schemes, fams,
                           table, by_b, preds, pd.DataFrame(fold_rows), pp, data.excluded, notes)


def _score(preds: pd.DataFrame, folds: pd.DataFrame, order: list[str], n_bootstrap: int, level: float,
           seed) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MAE/MAPE per (scheme, method), with a bootstrap over held-out families for the MAE,
    on each method's own predictions and on the points the sparse ODE (the first method)
    predicted."""
    rows, brows = [], []
    rng = np.random.default_rng(seed)
    for scheme, sp in preds.groupby("scheme", sort=False):
        key = ["fold", "model", "benchmark"]
        ode = sp[(sp["method"] == order[0]) & np.isfinite(sp["predicted"])]
        shared_keys = ode.set_index(key).index
        fam_codes, fam_names = pd.factorize(sp["fold"])
        W = stats.bootstrap_weights(len(fam_names), n_bootstrap, rng)           # (B, families)
        fs = folds[folds["scheme"] == scheme]
        for method in [m for m in order if m in set(sp["method"])]:
            mp = sp[sp["method"] == method]
            good = mp[np.isfinite(mp["predicted"])]
            st = fs[fs["method"] == method]["status"]
            shared = good.set_index(key).index.isin(shared_keys)
            ae = good["error"].abs().to_numpy()
            codes = pd.Categorical(good["fold"], categories=fam_names).codes
            sums = np.bincount(codes, ae, minlength=len(fam_names))
            cnts = np.bincount(codes, minlength=len(fam_names)).astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                boot = (W @ sums) / (W @ cnts)
            boot = boot[np.isfinite(boot)]
            lo, hi = (np.quantile(boot, [(1 - level) / 2, 1 - (1 - level) / 2]) if boot.size
                      else (np.nan, np.nan))
            rows.append({
                "scheme": scheme, "method": method, "n": int(len(good)), "n_folds": int(good["fold"].nunique()),
                "refused": int(st.str.startswith("refused").sum()),
                "diverged": int((st.str.startswith("diverged") | st.str.startswith("integration")).sum()),
                "mae": float(ae.mean()) if len(ae) else np.nan, "mae_low": float(lo), "mae_high": float(hi),
                "mape": float(np.nanmean(good["ape"])) if good["ape"].notna().any() else np.nan,
                "n_shared": int(shared.sum()),
                "mae_shared": float(ae[shared].mean()) if shared.any() else np.nan,
                "mape_shared": float(np.nanmean(good["ape"].to_numpy()[shared])) if shared.any() else np.nan})
            for b, gb in good.groupby("benchmark", sort=False):
                brows.append({"scheme": scheme, "method": method, "benchmark": b, "n": int(len(gb)),
                              "mae": float(gb["error"].abs().mean()), "mape": float(np.nanmean(gb["ape"]))
                              if gb["ape"].notna().any() else np.nan})
    return pd.DataFrame(rows), pd.DataFrame(brows)


# ----------------------------------------------------------------------------- the preprint's protocol

@dataclass
class PaperProtocol(Result):
    """The preprint's held-out figure and the sparse regression on the same held-out models.

    ``table``: one row per method with the signed percentage error (predicted - observed,
    over observed) for each held-out model, MAPE over the models the method predicted and
    over the models every method predicted, and MAE in points. The paper's polynomial
    predicts every held-out model; the ODEs and anchored baselines start at the smallest
    held-out model, which they therefore do not score.
    """

    panel: str
    train: list[str]
    test: str
    benchmark: str
    degree: int
    n_train: int
    models: list[str]
    table: pd.DataFrame
    paper_mape: float
    polynomial: list[float]
    notes: list[str]

    def summary(self) -> str:
        return (f"Paper protocol: degree-{self.degree} polynomial of {self.benchmark} on log10 N fitted to "
                f"{' + '.join(self.train)} ({self.n_train} models), predicting {self.test} "
                f"({', '.join(self.models)}): mean absolute percentage error {self.paper_mape:.2f}% "
                f"(n = {len(self.models)} models; no interval from {len(self.models)} points).")


def paper_protocol(frame: pd.DataFrame, *, train: Sequence[str] = PAPER_TRAIN, test: str = PAPER_TEST,
                   benchmark: str = PAPER_BENCHMARK, state=DEFAULT_PAIR, poly_degree: int = PAPER_DEGREE,
                   degree: int = DEFAULT_DEGREE, threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA,
                   scale: str = "standard") -> PaperProtocol:
    """Degree-2 polynomial of TruthfulQA on log10 N fitted to Pythia + Llama-1, predicting
    Llama-2 (METHODS.md section 8), in one table with the sparse ODE (state = ``state``)
    fitted on the same families and integrated from the held-out family's smallest model,
    a linear ODE, the polynomial anchored at that model, and the last observed value."""
    check_settings(degree=degree, threshold=threshold, alpha=alpha, scale=scale)
    train = list(train)
    data = dynamics_data(frame, state, [*train, test])
    col = resolve_benchmark(frame, benchmark)
    if col not in data.benchmarks:
        raise DynamicsError(f"the scored benchmark {col} must be part of the state ({', '.join(data.benchmarks)})")
    j = data.benchmarks.index(col)
    tr, te = data.only(train), data.only([test])
    tf = te.frame
    xs, obs = tf["x"].to_numpy(float), te.values()[:, j]
    models = list(tf["model"])
    poly = np.polynomial.polynomial.polyfit(tr.frame["x"].to_numpy(float), tr.values()[:, j], poly_degree)
    rows = [(f"paper: polynomial {poly_degree} of {col} on log10 N", np.polynomial.polynomial.polyval(xs, poly))]
    for name, pred, status in _fold(tr, te.select(np.arange(te.n) == 0), (xs[0], te.values()[0]), xs[1:],
                                    [m for m in _methods(degree, threshold, "family")
                                     if m[1] in ("sindy", "linear", "last") or (m[1] == "anchored" and m[2] == poly_degree)],
                                    threshold=threshold, alpha=alpha, scale=scale):
        rows.append((name if status == "ok" else f"{name} [{status}]", np.concatenate([[np.nan], pred[:, j]])))
    preds = np.array([r[1] for r in rows])                                 # (methods, models)
    signed = (preds - obs) / obs * 100
    common = np.isfinite(preds).all(axis=0)
    table = pd.DataFrame({"method": [r[0] for r in rows]})
    for i, m in enumerate(models):
        table[f"error_%_{m}"] = signed[:, i]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        table["mape"] = np.nanmean(np.abs(signed), axis=1)
        table["n"] = np.isfinite(signed).sum(axis=1)
        table["mape_common"] = np.nanmean(np.abs(signed[:, common]), axis=1) if common.any() else np.nan
        table["mae_common"] = np.nanmean(np.abs(preds - obs)[:, common], axis=1) if common.any() else np.nan
    notes = [f"common points: {', '.join(np.array(models)[common]) or 'none'} (the ODE rows start at "
             f"{models[0]})"]
    return PaperProtocol(data.panel, train, test, col, poly_degree, tr.n, models, table,
                         float(np.mean(np.abs(signed[0]))), [float(c) for c in poly[::-1]], notes)
