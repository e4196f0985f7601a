"""Frontier diagnostics (paper B, METHODS.md section 9): the population line of one
benchmark on another across frontier models, each model's residual (the "h-field"), labs,
release-to-release dynamics, and where a new release falls.

Default pair: SWE-bench Verified on the x-axis, GPQA Diamond on the y-axis. Any pair works
(``pair="A:B"``, A on the x-axis). The lab of a model is its panel ``family``.

Which models the line is fitted on is the ``subset``:

``published``  every model not marked post-cutoff (the preprint's 34). Post-cutoff models
               are new releases, checked against the prediction interval.
``core``       the models whose panel ``subset`` is ``core``.
``all``        every model, post-cutoff releases included.

One formula per quantity: a straight line comes from :class:`Line` (built from sums, so
leave-one-lab-out refits and bootstrap resamples reuse it); residuals, leave-one-out
residuals, bands and prediction intervals are methods of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import stats
from ..defaults import BAND, DEFAULT_DYNAMICS_GUARD, FRONTIER_PAIR, JUMP
from ..errors import CapeError
from ..flags import flag_arg, flag_name
from ..schema import split_flags
from ..units import date_range
from .data import family_codes, pair_data
from .results import Estimate, Result, fmt_num

__all__ = ["FRONTIER_PAIR", "BAND", "SUBSETS", "Line", "FrontierData", "frontier_data",
           "band_label", "subset_mask", "PopulationFit", "population_fit", "HField", "hfield", "Labs", "labs",
           "Dynamics", "lab_dynamics", "NewRelease", "new_release", "Comparison",
           "compare_corrections"]

# FRONTIER_PAIR (paper B's pair), BAND (the band edge in points), DEFAULT_DYNAMICS_GUARD and
# JUMP are set in cape.defaults (`cape --help` shows them).
SUBSETS = ("published", "core", "all")


# ------------------------------------------------------------------------------ the line
@dataclass
class Line:
    """OLS line y = slope * x + intercept with what intervals and leverage need."""

    n: int
    slope: float
    intercept: float
    r: float
    x_mean: float
    sxx: float
    #: residual standard error, n - 2 denominator (NaN for n <= 2)
    s: float
    #: residual standard deviation, n denominator (the preprint's)
    sd_n: float

    @classmethod
    def from_sums(cls, s0, sx, sy, sxx, syy, sxy) -> "Line":
        """The line from raw sums (n, sum x, sum y, sum x^2, sum y^2, sum xy); r, slope and
        intercept come from :func:`_line_finish`, the formula the bootstraps use."""
        n = int(round(s0))
        r, slope, intercept = (float(v) for v in _line_finish(0.0, 0.0)(np.array([[s0, sx, sy, sxx, syy, sxy]]))[0])
        vx = sxx - sx * sx / s0
        cxy = sxy - sx * sy / s0
        sse = max(syy - sy * sy / s0 - slope * cxy, 0.0) if math.isfinite(slope) else math.nan
        return cls(n, slope, intercept, r, float(sx / s0), float(vx),
                   math.sqrt(sse / (n - 2)) if n > 2 else math.nan, math.sqrt(sse / n) if n > 0 else math.nan)

    @classmethod
    def fit(cls, x, y) -> "Line":
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        return cls.from_sums(*_sums(x, y))

    def predict(self, x) -> np.ndarray:
        return self.slope * np.asarray(x, dtype=float) + self.intercept

    def residual(self, x, y) -> np.ndarray:
        """h = y - (slope x + intercept)."""
        return np.asarray(y, dtype=float) - self.predict(x)

    def leverage(self, x) -> np.ndarray:
        """h_ii = 1/n + (x - mean)^2 / Sxx for points of the fit (or new points)."""
        return 1.0 / self.n + (np.asarray(x, dtype=float) - self.x_mean) ** 2 / self.sxx

    def prediction_interval(self, x, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Proper interval for a new observation: t(n-2) x s x sqrt(1 + leverage)."""
        from scipy import stats as sps

        t = sps.t.ppf(0.5 + level / 2, self.n - 2) if self.n > 2 else math.nan
        half = t * self.s * np.sqrt(1.0 + self.leverage(x))
        pred = self.predict(x)
        return pred - half, pred + half

    def paper_interval(self, x, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """The preprint's interval: z x residual SD with an n denominator, no leverage."""
        from scipy import stats as sps

        half = sps.norm.ppf(0.5 + level / 2) * self.sd_n
        pred = self.predict(x)
        return pred - half, pred + half

    def describe(self, bx: str, by: str) -> str:
        return f"{by} = {self.slope:.4f} x {bx} {self.intercept:+.2f} (r = {self.r:+.4f}, n = {self.n})"


def _sums(x: np.ndarray, y: np.ndarray) -> tuple[float, ...]:
    return (float(x.size), float(x.sum()), float(y.sum()), float((x * x).sum()), float((y * y).sum()),
            float((x * y).sum()))


def _line_moments(x, y) -> tuple[np.ndarray, float, float]:
    """Centred per-model terms [1, x, y, x^2, y^2, xy] and the centres (stable sums)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    mx, my = float(x.mean()), float(y.mean())
    return stats.pearson_moments(x, y), mx, my


def _line_finish(mx: float, my: float) -> Callable[[np.ndarray], np.ndarray]:
    """(B, 6) centred sums -> (B, 3): r, slope, intercept (NaN where x has no spread)."""

    def finish(M: np.ndarray) -> np.ndarray:
        s0, sx, sy, sxx, syy, sxy = np.moveaxis(np.asarray(M, dtype=float), 1, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            vx = sxx - sx * sx / s0
            ok = vx > 1e-12 * np.maximum(sxx, 1e-300)
            slope = np.where(ok, (sxy - sx * sy / s0) / np.where(ok, vx, 1.0), np.nan)
            intercept = (my + sy / s0) - slope * (mx + sx / s0)
        return np.stack([stats.pearson_finish(M), slope, intercept], axis=1)

    return finish


def band_label(h, band: float = BAND) -> np.ndarray:
    """cooperative (|h| <= band), reasoning-specialist (h > band), coding excursion (h < -band)."""
    h = np.asarray(h, dtype=float)
    out = np.where(h > band, "reasoning-specialist", np.where(h < -band, "coding excursion", "cooperative"))
    return np.where(np.isfinite(h), out, "n/a")


# ------------------------------------------------------------------------------ data
@dataclass
class FrontierData:
    """Models with both scores: model, lab, subset, release_date, precision, date_lo,
    date_hi, flags, x, y, post_cutoff, in_fit (chosen by ``subset``)."""

    panel: str
    bx: str
    by: str
    subset: str
    frame: pd.DataFrame
    excluded: list[dict] = field(default_factory=list)

    @property
    def fit(self) -> pd.DataFrame:
        return self.frame[self.frame["in_fit"]]

    def line(self) -> Line:
        f = self.fit
        return Line.fit(f["x"], f["y"])


def _meta(frame: pd.DataFrame) -> pd.DataFrame:
    df = frame if "model" in frame.columns else frame.rename_axis("model").reset_index()
    cols = {"subset": "", "flags": "", "release_date": None, "release_date_precision": None}
    out = pd.DataFrame({"model": df["model"].astype(str)})
    for c, fill in cols.items():
        out[c] = df[c].astype("object").where(df[c].notna(), fill) if c in df.columns else fill
    return out.drop_duplicates("model")


def _is_post_cutoff(meta: pd.DataFrame) -> pd.Series:
    flagged = np.array([any(flag_name(x) == "post_cutoff" for x in split_flags(str(s)))
                        for s in meta["flags"].fillna("")], dtype=bool)
    return pd.Series(flagged, index=meta.index) | (meta["subset"].fillna("").astype(str) == "post-cutoff")


def subset_mask(meta: pd.DataFrame, subset: str) -> pd.Series:
    """Which rows of ``meta`` (columns subset, flags) belong to ``subset`` (see the module)."""
    if subset not in SUBSETS:
        raise CapeError(f"unknown subset '{subset}' (one of: {', '.join(SUBSETS)})")
    post = _is_post_cutoff(meta)
    if subset == "published":
        return ~post
    if subset == "core":
        return (meta["subset"].fillna("").astype(str) == "core") & ~post
    return pd.Series(True, index=meta.index)


def _date_text(d) -> str:
    """A release date as text: a date or timestamp becomes its day, text stays as given."""
    if hasattr(d, "date") and callable(d.date):
        d = d.date()
    return d.isoformat() if hasattr(d, "isoformat") else str(d).strip()


def frontier_data(frame: pd.DataFrame, pair=None, *, subset: str = "published") -> FrontierData:
    """Resolve the pair (default SWE-bench Verified : GPQA Diamond), keep models with both
    scores, attach lab, subset, release date and flags, and mark the fit set."""
    pd_ = pair_data(frame, pair or FRONTIER_PAIR, need_size=False)
    f = pd_.frame[["model", "family", "b1", "b2"]].rename(columns={"family": "lab", "b1": "x", "b2": "y"})
    f = f.merge(_meta(frame), on="model", how="left")
    f["subset"] = f["subset"].fillna("").astype(str)
    f["flags"] = f["flags"].fillna("").astype(str)
    f["post_cutoff"] = _is_post_cutoff(f)
    f["release_date"] = [None if d is None or pd.isna(d) or not str(d).strip() else _date_text(d)
                         for d in f["release_date"]]
    ranges = [date_range(d) if d else None for d in f["release_date"]]
    f["date_lo"] = [r[0] if r else None for r in ranges]
    f["date_hi"] = [r[1] if r else None for r in ranges]
    f["in_fit"] = subset_mask(f, subset)
    n_fit = int(f["in_fit"].sum())
    if n_fit < 3:
        raise CapeError(f"the {subset} subset of {pd_.panel} has {n_fit} model(s) with both "
                        f"{pd_.b1} and {pd_.b2}: a line needs at least 3")
    if np.ptp(f.loc[f["in_fit"], "x"]) == 0:
        raise CapeError(f"every fitted model has the same {pd_.b1} score: the slope is undefined")
    return FrontierData(pd_.panel, pd_.b1, pd_.b2, subset, f.reset_index(drop=True), list(pd_.excluded))


# ------------------------------------------------------------------------------ population fit
@dataclass
class PopulationFit(Result):
    """Population line of ``by`` on ``bx``: r with permutation p, OLS coefficients with
    classical, HC3 and lab-clustered SEs, bootstrap CIs over models and over labs, subset
    fits, and post-cutoff releases checked against the prediction interval."""

    panel: str
    bx: str
    by: str
    subset: str
    n: int
    n_labs: int
    r: Estimate
    r_by_lab: Estimate
    slope: Estimate
    intercept: Estimate
    p_parametric: float
    permutation: dict
    coefficients: pd.DataFrame
    residual_se: float
    residual_sd_n: float
    paper_halfwidth: float
    level: float
    subsets: pd.DataFrame
    new_releases: pd.DataFrame
    line: Line
    notes: list[str] = field(default_factory=list)
    excluded: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        lv = int(round(100 * self.level))
        lines = [f"Population fit in {self.panel} ({self.subset}: {self.n} models, {self.n_labs} labs): "
                 + self.line.describe(self.bx, self.by),
                 "  " + self.r.describe(4), "  " + self.r_by_lab.describe(4),
                 f"  permutation p = {self.permutation['pvalue']:.3g} ({self.permutation['method']}), "
                 f"parametric p = {self.p_parametric:.3g}",
                 "  " + self.slope.describe(4), "  " + self.intercept.describe(4),
                 f"  residual SE {self.residual_se:.2f} (n-2); paper protocol prediction half-width "
                 f"+-{self.paper_halfwidth:.1f} (z x n-denominator SD, no leverage)"]
        if len(self.new_releases):
            inside = int(self.new_releases["inside"].sum())
            lines.append(f"  new releases inside the {lv}% prediction interval: {inside} of "
                         f"{len(self.new_releases)} (paper protocol: "
                         f"{int(self.new_releases['inside_paper'].sum())})")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def _statsmodels_fits(x: np.ndarray, y: np.ndarray, groups: np.ndarray):
    import statsmodels.api as sm

    X = sm.add_constant(x, has_constant="add")
    model = sm.OLS(y, X)
    clustered = None if groups is None else model.fit(cov_type="cluster", cov_kwds={"groups": groups})
    return model.fit(), model.fit(cov_type="HC3"), clustered


def population_fit(frame: pd.DataFrame, pair=None, *, subset: str = "published",
                   n_permutations: int = stats.DEFAULT_PERMUTATIONS,
                   n_bootstrap: int = stats.DEFAULT_BOOTSTRAP, ci_method: str = "bca",
                   level: float = 0.95, seed: int | None = None, progress=None) -> PopulationFit:
    """Fit the population line and give every uncertainty the issue asks for (see class)."""
    fd = frontier_data(frame, pair, subset=subset)
    fit = fd.fit
    x, y = fit["x"].to_numpy(), fit["y"].to_numpy()
    n = x.size
    codes, labs_ = family_codes(fit["lab"])
    line = Line.fit(x, y)
    rng = np.random.default_rng(seed)
    perm = stats.permutation_test_r(x, y, n_resamples=n_permutations, rng=rng)
    V, mx, my = _line_moments(x, y)
    finish = _line_finish(mx, my)
    boots = {}
    steps = [("model", None), ("lab", codes)] if len(labs_) >= 2 else [("model", None)]
    for i, (unit, cl) in enumerate(steps):
        tick = None if progress is None else (lambda d, t, i=i: progress(i * t + d, len(steps) * t))
        boots[unit] = stats.bootstrap_moments(V, finish, n_resamples=n_bootstrap, rng=rng, clusters=cl,
                                              progress=tick)
    cis = {u: b.ci(level, ci_method) for u, b in boots.items()}
    if "lab" not in boots:  # one lab: nothing to resample or cluster at that level
        cis["lab"] = (np.full(3, np.nan), np.full(3, np.nan), "undefined: one lab")
    classical, hc3, clus = _statsmodels_fits(x, y, codes if len(labs_) >= 2 else None)

    def est(name, j, unit, value):
        lo, hi, used = cis[unit]
        if unit not in boots:
            return Estimate(name, float(value), len(labs_), "Pearson" if j == 0 else "OLS", unit=unit,
                            note="one lab: no lab-level interval")
        return Estimate(name, float(value), n if unit == "model" else len(labs_),
                        "Pearson" if j == 0 else "OLS", (float(lo[j]), float(hi[j])), level,
                        f"{used} bootstrap over {unit}s", unit, n_bootstrap, boots[unit].discarded)

    coef = pd.DataFrame({
        "term": ["intercept", "slope"],
        "estimate": classical.params,
        "se_classical": classical.bse, "p_classical": classical.pvalues,
        "se_hc3": hc3.bse, "p_hc3": hc3.pvalues,
        "se_cluster": clus.bse if clus is not None else np.full(2, np.nan),
        "p_cluster": clus.pvalues if clus is not None else np.full(2, np.nan),
        "boot_model_low": [cis["model"][0][2], cis["model"][0][1]],
        "boot_model_high": [cis["model"][1][2], cis["model"][1][1]],
        "boot_lab_low": [cis["lab"][0][2], cis["lab"][0][1]],
        "boot_lab_high": [cis["lab"][1][2], cis["lab"][1][1]],
    })
    notes = []
    singletons = int((pd.Series(codes).value_counts() == 1).sum())
    if len(labs_) == 1:
        notes.append("one lab: lab-clustered SEs and the lab bootstrap are undefined")
    elif len(labs_) < 20:
        notes.append(f"lab-clustered SEs and the lab bootstrap rest on {len(labs_)} labs "
                     f"({singletons} with one model): few clusters, treat them as rough")
    # subset fits, each from the same Line
    rows = []
    f_all = fd.frame
    for name, mask in (("published (not post-cutoff)", ~f_all["post_cutoff"]),
                       ("core", (f_all["subset"] == "core") & ~f_all["post_cutoff"]),
                       ("all, post-cutoff included", pd.Series(True, index=f_all.index))):
        g = f_all[mask]
        if len(g) >= 3 and np.ptp(g["x"]) > 0:
            ln = Line.fit(g["x"], g["y"])
            rows.append({"subset": name, "n": ln.n, "n_labs": g["lab"].nunique(), "r": ln.r,
                         "p_parametric": float(stats.parametric_p(ln.r, ln.n)), "slope": ln.slope,
                         "intercept": ln.intercept, "residual_se": ln.s})
        else:
            rows.append({"subset": name, "n": len(g), "n_labs": g["lab"].nunique(), "r": math.nan,
                         "p_parametric": math.nan, "slope": math.nan, "intercept": math.nan,
                         "residual_se": math.nan})
    new = f_all[~f_all["in_fit"]].copy()
    lo, hi = line.prediction_interval(new["x"], level)
    plo, phi = line.paper_interval(new["x"], level)
    new_rel = pd.DataFrame({
        "model": new["model"], "lab": new["lab"], "release_date": new["release_date"],
        "x": new["x"], "y": new["y"], "predicted": line.predict(new["x"]),
        "h": line.residual(new["x"], new["y"]), "pi_low": lo, "pi_high": hi,
        "inside": (new["y"] >= lo) & (new["y"] <= hi), "paper_low": plo, "paper_high": phi,
        "inside_paper": (new["y"] >= plo) & (new["y"] <= phi)}).reset_index(drop=True)
    from scipy import stats as sps

    return PopulationFit(
        fd.panel, fd.bx, fd.by, subset, n, len(labs_),
        est("r", 0, "model", line.r), est("r (labs resampled)", 0, "lab", line.r),
        est("slope", 1, "model", line.slope), est("intercept", 2, "model", line.intercept),
        float(stats.parametric_p(line.r, n)), perm.to_dict(), coef, line.s, line.sd_n,
        float(sps.norm.ppf(0.5 + level / 2) * line.sd_n), level, pd.DataFrame(rows), new_rel, line,
        notes, fd.excluded)


# ------------------------------------------------------------------------------ h-field
@dataclass
class HField(Result):
    """Each model's residual from the population line, in-sample and leave-one-out."""

    panel: str
    bx: str
    by: str
    subset: str
    band: float
    line: Line
    table: pd.DataFrame
    band_counts: dict
    tiers: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    excluded: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"h-field in {self.panel}: h = {self.by} - line ({self.line.describe(self.bx, self.by)}); "
                 f"bands at +-{fmt_num(self.band)}: " + ", ".join(f"{k} {v}" for k, v in self.band_counts.items())]
        for r in self.tiers.to_dict("records"):
            lines.append(f"  compute tiers of the same weights ({r['lab']}): {r['models']}; h spread "
                         f"{r['h_spread']:.1f} points")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def _tier_groups(f: pd.DataFrame) -> pd.Series:
    """A group key for rows flagged compute_tier: same lab and release date = same weights."""
    tier = f["flags"].map(lambda s: "compute_tier" in {flag_name(x) for x in split_flags(s)})
    key = f["lab"].astype(str) + " " + f["release_date"].fillna("?").astype(str)
    return key.where(tier, "")


def hfield(frame: pd.DataFrame, pair=None, *, subset: str = "published", band: float = BAND) -> HField:
    """h = y - line(x) for every model with both scores (fit on ``subset``). ``h_loo`` is the
    residual from the line refitted without the model (e / (1 - leverage)); models outside
    the fit are already out of sample, so their ``h_loo`` equals ``h``."""
    fd = frontier_data(frame, pair, subset=subset)
    f = fd.frame
    line = fd.line()
    h = line.residual(f["x"], f["y"])
    lev = np.where(f["in_fit"], line.leverage(f["x"]), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        h_loo = np.where(f["in_fit"], h / (1.0 - lev), h)
    t = pd.DataFrame({
        "model": f["model"], "lab": f["lab"], "subset": f["subset"], "release_date": f["release_date"],
        "x": f["x"], "y": f["y"], "predicted": line.predict(f["x"]), "h": h, "h_loo": h_loo,
        "leverage": lev, "band": band_label(h, band), "band_loo": band_label(h_loo, band),
        "in_fit": f["in_fit"], "flags": f["flags"], "tier_group": _tier_groups(f)})
    t = t.sort_values(["h"], ascending=False, kind="stable").reset_index(drop=True)
    tiers = []
    for key, g in t[t["tier_group"] != ""].groupby("tier_group", sort=True):
        if len(g) >= 2:
            tiers.append({"group": key, "lab": g["lab"].iloc[0], "models": ", ".join(g["model"]),
                          "h": [float(v) for v in g["h"]], "h_spread": float(np.ptp(g["h"]))})
    notes = []
    same = t[t.duplicated(["x", "y"], keep=False)]
    for _, g in same.groupby(["x", "y"]):
        notes.append(f"{' and '.join(g['model'])} have identical scores ({fd.bx} {g['x'].iloc[0]:g}, "
                     f"{fd.by} {g['y'].iloc[0]:g}): check they are distinct models")
    for r in t.to_dict("records"):
        for fl in split_flags(r["flags"]):
            if flag_name(fl) in ("swe_equals_other_model", "repeats_scores_of"):
                notes.append(f"{r['model']}: flagged {flag_name(fl)} ({flag_arg(fl)})")
    counts = {k: int((t["band"] == k).sum()) for k in ("reasoning-specialist", "cooperative", "coding excursion")}
    return HField(fd.panel, fd.bx, fd.by, subset, band, line, t, counts, pd.DataFrame(tiers), notes,
                  fd.excluded)


# ------------------------------------------------------------------------------ labs
@dataclass
class Labs(Result):
    """Per lab: mean h, within-lab line and r; the spread of lab slopes; leave-one-lab-out."""

    panel: str
    bx: str
    by: str
    subset: str
    level: float
    table: pd.DataFrame
    slope_ratio: Estimate
    lolo: pd.DataFrame
    lolo_mae: Estimate
    lolo_mae_pooled: Estimate
    line: Line
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"Labs in {self.panel} ({self.subset} fit: {self.line.describe(self.bx, self.by)})"]
        for r in self.table.to_dict("records"):
            if math.isfinite(r["slope"]):
                lines.append(f"  {r['lab']}: n={r['n']}, mean h {r['mean_h']:+.1f}, slope {r['slope']:.3f}, "
                             f"r {fmt_num(r['r'])}")
            else:
                lines.append(f"  {r['lab']}: n={r['n']}, mean h {r['mean_h']:+.1f}; {r['note']}")
        lines += ["  " + self.slope_ratio.describe(), "  " + self.lolo_mae.describe(),
                  "  " + self.lolo_mae_pooled.describe()]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def _lab_row(lab: str, g: pd.DataFrame, level: float) -> dict:
    from scipy import stats as sps

    x, y, h = g["x"].to_numpy(), g["y"].to_numpy(), g["h"].to_numpy()
    core = g.loc[g["subset"] == "core", "h"].to_numpy()
    lo, hi = stats.t_interval(h, level)
    row = {"lab": lab, "n": len(g), "n_core": int(core.size), "mean_h": float(h.mean()),
           "mean_h_low": lo, "mean_h_high": hi,
           "mean_h_core": float(core.mean()) if core.size else math.nan,
           "slope": math.nan, "slope_low": math.nan, "slope_high": math.nan, "intercept": math.nan,
           "r": math.nan, "r_low": math.nan, "r_high": math.nan, "p_perm": math.nan, "p_method": "",
           "note": ""}
    if len(g) == 1:
        row["note"] = "one model: slope and r undefined"
        return row
    if np.ptp(x) == 0:
        row["note"] = "every model of the lab has the same x score: slope undefined"
        return row
    ln = Line.fit(x, y)
    row.update(slope=ln.slope, intercept=ln.intercept)
    if len(g) == 2:
        row["note"] = "two models: the slope is the line through them (no CI, r is +-1 by construction)"
        return row
    half = sps.t.ppf(0.5 + level / 2, ln.n - 2) * ln.s / math.sqrt(ln.sxx)
    row.update(slope_low=ln.slope - half, slope_high=ln.slope + half, r=ln.r)
    if np.ptp(y) > 0:
        perm = stats.permutation_test_r(x, y, n_resamples=stats.DEFAULT_PERMUTATIONS, rng=0)
        row.update(p_perm=perm.pvalue, p_method="exact" if perm.exact else "monte carlo")
    if len(g) >= 4 and abs(ln.r) < 1:
        z, se = math.atanh(ln.r), 1 / math.sqrt(len(g) - 3)
        q = sps.norm.ppf(0.5 + level / 2)
        row.update(r_low=math.tanh(z - q * se), r_high=math.tanh(z + q * se))
    else:
        row["note"] = "three models: no CI for r (Fisher z needs 4+)"
    return row


def labs(frame: pd.DataFrame, pair=None, *, subset: str = "published", min_models: int = 3,
         n_resamples: int = stats.DEFAULT_BOOTSTRAP, level: float = 0.95,
         seed: int | None = None) -> Labs:
    """Per-lab diagnostics on the fitted models.

    - mean h per lab over all its fitted models and over its core ones (t interval);
    - within-lab OLS slope (t interval, n >= 3) and r (Fisher-z interval, n >= 4; exact
      permutation p for n <= 9);
    - largest / smallest within-lab slope over labs with ``min_models`` or more, with a
      bootstrap interval that resamples models within each lab (a resample whose smallest
      slope is undefined or <= 0 is discarded: the ratio means nothing there);
    - leave-one-lab-out for labs with ``min_models`` or more: refit without the lab,
      predict its models; MAE per lab, the mean of those (the preprint's figure) and the
      MAE pooled over models.
    """
    fd = frontier_data(frame, pair, subset=subset)
    f = fd.fit.copy()
    line = fd.line()
    f["h"] = line.residual(f["x"], f["y"])
    rows = [_lab_row(lab, g, level) for lab, g in f.groupby("lab", sort=True)]
    table = pd.DataFrame(rows).sort_values(["n", "lab"], ascending=[False, True], kind="stable")
    table = table.reset_index(drop=True)
    big = table[(table["n"] >= min_models) & table["slope"].notna()]
    notes = []
    # ratio of slopes, stratified bootstrap (one resample = a resample within every lab)
    if len(big) >= 2:
        rng = np.random.default_rng(seed)
        slopes = []
        for lab in big["lab"]:
            g = f[f["lab"] == lab]
            V, mx, my = _line_moments(g["x"], g["y"])
            counts = stats.resample_counts(len(g), n_resamples, rng)
            slopes.append(_line_finish(mx, my)(counts @ V)[:, 1])
        S = np.stack(slopes, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = S.max(axis=1) / S.min(axis=1)
        ok = np.isfinite(S).all(axis=1) & (S.min(axis=1) > 0)
        est_slopes = big["slope"].to_numpy()
        est = est_slopes.max() / est_slopes.min() if est_slopes.min() > 0 else math.nan
        lo, hi, used = stats.interval(ratio[ok] if math.isfinite(est) else ratio[:0], np.array([est]),
                                      level=level, method="percentile")
        hi_lab, lo_lab = big["lab"].iloc[int(est_slopes.argmax())], big["lab"].iloc[int(est_slopes.argmin())]
        ratio_est = Estimate("largest / smallest lab slope", float(est), len(big), "ratio of within-lab "
                             f"OLS slopes ({hi_lab} / {lo_lab})", (float(lo[0]), float(hi[0])), level,
                             f"{used} bootstrap, models resampled within each lab", "lab", n_resamples,
                             int((~ok).sum()),
                             note=None if math.isfinite(est) else "the smallest slope is <= 0")
    else:
        ratio_est = Estimate("largest / smallest lab slope", math.nan, len(big), "ratio of within-lab "
                             "OLS slopes", unit="lab",
                             note=f"needs two labs with {min_models}+ models; {len(big)} qualify")
    # leave-one-lab-out from sums: the line without a lab is the total minus the lab's sums
    lo_rows, held_out = [], []
    total = np.array(_sums(f["x"].to_numpy(), f["y"].to_numpy()))
    for lab, g in f.groupby("lab", sort=True):
        if len(g) < min_models:
            continue
        rest = Line.from_sums(*(total - np.array(_sums(g["x"].to_numpy(), g["y"].to_numpy()))))
        err = rest.residual(g["x"], g["y"])
        held_out.append(np.abs(err))
        lo_rows.append({"lab": lab, "n": len(g), "mae": float(np.abs(err).mean()), "bias": float(err.mean()),
                        "slope_without": rest.slope, "intercept_without": rest.intercept,
                        "n_fit": rest.n})
    lolo = pd.DataFrame(lo_rows, columns=["lab", "n", "mae", "bias", "slope_without", "intercept_without",
                                          "n_fit"])
    if len(lolo):
        per = lolo["mae"].to_numpy()
        lo_, hi_ = stats.t_interval(per, level)
        mae = Estimate("leave-one-lab-out MAE", float(per.mean()), len(lolo), "mean over labs of each lab's "
                       "MAE (paper protocol)", (lo_, hi_), level, "t interval over labs", "lab")
        errs = np.concatenate(held_out)
        plo, phi = stats.t_interval(errs, level)
        pooled = Estimate("leave-one-lab-out MAE, pooled", float(errs.mean()), errs.size,
                          "mean absolute error over the held-out models", (plo, phi), level,
                          "t interval over models (models of a lab are not independent)")
    else:
        note = f"no lab has {min_models}+ models"
        mae = Estimate("leave-one-lab-out MAE", math.nan, 0, "mean over labs", unit="lab", note=note)
        pooled = Estimate("leave-one-lab-out MAE, pooled", math.nan, 0, "over models", note=note)
    one = table.loc[table["n"] == 1, "lab"].tolist()
    if one:
        notes.append(f"{len(one)} lab(s) with one model ({', '.join(one)}): slope and r undefined")
    return Labs(fd.panel, fd.bx, fd.by, subset, level, table, ratio_est, lolo, mae, pooled, line, notes)


# ------------------------------------------------------------------------------ dynamics
@dataclass
class Dynamics(Result):
    """Each lab's releases in date order with h, dh and release-to-release gamma."""

    panel: str
    bx: str
    by: str
    subset: str
    guard: float
    jump: float
    line: Line
    table: pd.DataFrame
    labs: pd.DataFrame
    excluded: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"Lab dynamics in {self.panel} (h from {self.line.describe(self.bx, self.by)})"]
        for r in self.labs.to_dict("records"):
            lines.append(f"  {r['lab']}: {r['n']} fitted releases, h {r['h_first']:+.1f} ({r['first']}) -> "
                         f"{r['h_last']:+.1f} ({r['last']}), {r['jumps']} jump(s) |dh| > {fmt_num(self.jump)}"
                         + (f"; {r['n_new']} later release(s) out of the fit" if r["n_new"] else ""))
        return "\n".join(lines)


def _order_key(f: pd.DataFrame) -> pd.DataFrame:
    """Sort keys for release dates of mixed precision: the middle of the period a date can
    mean ("2025" -> early July 2025), then its first day."""
    lo, hi = pd.to_datetime(f["date_lo"]), pd.to_datetime(f["date_hi"])
    return f.assign(_lo=lo, _hi=hi, _mid=lo + (hi - lo) / 2)


def lab_dynamics(frame: pd.DataFrame, pair=None, *, subset: str = "published", lab=None,
                 guard: float = DEFAULT_DYNAMICS_GUARD, jump: float = JUMP) -> Dynamics:
    """Order each lab's releases by date (the middle of the period a date can mean, then its
    first day: "2025" sorts after "2025-03" and before "2025-08") and give h,
    dh = h - previous h, dx, dy and gamma = dy/dx (undefined when |dx| < ``guard``).
    Every dated model is shown, post-cutoff ones too (h from the ``subset`` fit); a model
    without a date is listed in ``excluded``. When two dates overlap (``2025`` and
    ``2025-08``) the order between them is uncertain and ``order_note`` says so."""
    fd = frontier_data(frame, pair, subset=subset)
    line = fd.line()
    f = fd.frame.copy()
    if lab is not None:
        want = [lab] if isinstance(lab, str) else list(lab)
        unknown = [x for x in want if x not in set(f["lab"])]
        if unknown:
            raise CapeError(f"no lab named {', '.join(unknown)} in {fd.panel} "
                            f"(labs: {', '.join(sorted(set(f['lab'])))})")
        f = f[f["lab"].isin(want)]
    undated = f["date_lo"].isna()
    excluded = list(fd.excluded) + [{"model": m, "reason": "no release date"} for m in f.loc[undated, "model"]]
    f = _order_key(f[~undated].copy())
    f["h"] = line.residual(f["x"], f["y"])
    f = f.sort_values(["lab", "_mid", "_lo"], kind="stable")
    rows, summ = [], []
    for lab_, g in f.groupby("lab", sort=True):
        prev = None
        for step, r in enumerate(g.to_dict("records")):
            row = {"lab": lab_, "step": step, "model": r["model"], "release_date": r["release_date"],
                   "x": r["x"], "y": r["y"], "h": r["h"], "in_fit": bool(r["in_fit"]), "dx": math.nan,
                   "dy": math.nan, "dh": math.nan, "gamma": math.nan, "jump": False, "order_note": "",
                   "gamma_note": ""}
            if prev is not None:
                dx, dy = r["x"] - prev["x"], r["y"] - prev["y"]
                row.update(dx=dx, dy=dy, dh=r["h"] - prev["h"], jump=bool(abs(r["h"] - prev["h"]) > jump))
                if abs(dx) >= guard:
                    row["gamma"] = dy / dx
                else:
                    row["gamma_note"] = f"|d{fd.bx}| = {abs(dx):.2f} < {fmt_num(guard)}: gamma undefined"
                if r["_lo"] <= prev["_hi"] and prev["_lo"] <= r["_hi"]:
                    row["order_note"] = (f"dates overlap with {prev['model']} ({prev['release_date']} vs "
                                         f"{r['release_date']}): order uncertain")
            rows.append(row)
            prev = r
        fit_g = g[g["in_fit"]]
        if fit_g.empty:
            continue
        summ.append({"lab": lab_, "n": len(fit_g), "n_new": int((~g["in_fit"]).sum()),
                     "first": fit_g["model"].iloc[0], "h_first": float(fit_g["h"].iloc[0]),
                     "last": fit_g["model"].iloc[-1], "h_last": float(fit_g["h"].iloc[-1]),
                     "swing": float(fit_g["h"].iloc[-1] - fit_g["h"].iloc[0]),
                     "jumps": int(sum(r["jump"] for r in rows if r["lab"] == lab_)),
                     "uncertain_order": int(sum(bool(r["order_note"]) for r in rows if r["lab"] == lab_))})
    cols = ["lab", "step", "model", "release_date", "x", "y", "h", "dh", "dx", "dy", "gamma", "jump",
            "in_fit", "order_note", "gamma_note"]
    return Dynamics(fd.panel, fd.bx, fd.by, subset, guard, jump, line, pd.DataFrame(rows, columns=cols),
                    pd.DataFrame(summ, columns=["lab", "n", "n_new", "first", "h_first", "last", "h_last", "swing",
                                                "jumps", "uncertain_order"]), excluded)


# ------------------------------------------------------------------------------ a new release
@dataclass
class NewRelease(Result):
    """Where a new (x, y) pair falls against the population line."""

    panel: str
    bx: str
    by: str
    subset: str
    x: float
    y: float
    lab: str | None
    release_date: str | None
    predicted: float
    h: float
    band: str
    level: float
    pi: tuple[float, float]
    inside: bool
    paper_pi: tuple[float, float]
    inside_paper: bool
    leverage: float
    extrapolation: bool
    nearest_labs: pd.DataFrame
    lab_context: dict | None
    line: Line
    explanation: str = ""

    def summary(self) -> str:
        return self.explanation


def new_release(frame: pd.DataFrame, x: float, y: float, *, lab: str | None = None,
                date: str | None = None, pair=None, subset: str = "published", level: float = 0.95,
                band: float = BAND, nearest: int = 3) -> NewRelease:
    """Predicted y, h, band, the proper prediction interval (t quantile with leverage) and
    the preprint's (z x n-denominator SD), the labs whose mean h is nearest, and, with
    ``lab`` (and ``date``), how the release sits among that lab's."""
    for name, v in (("x", x), ("y", y)):
        try:
            ok = math.isfinite(float(v)) and 0 <= float(v) <= 100
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise CapeError(f"the new release's {name} score must be a percentage in [0, 100], got {v!r}")
    x, y = float(x), float(y)
    when = None
    if date is not None:
        when = date_range(date)
    fd = frontier_data(frame, pair, subset=subset)
    line = fd.line()
    fit = fd.fit.assign(h=lambda d: line.residual(d["x"], d["y"]))
    pred = float(line.predict(x))
    h = float(y - pred)
    lo, hi = (float(v) for v in line.prediction_interval(x, level))
    plo, phi = (float(v) for v in line.paper_interval(x, level))
    lev = float(line.leverage(x))
    extrap = not (fit["x"].min() <= x <= fit["x"].max())
    by_lab = fit.groupby("lab")["h"].agg(["size", "mean"]).rename(columns={"size": "n", "mean": "mean_h"})
    by_lab["distance"] = (by_lab["mean_h"] - h).abs()
    near = by_lab.sort_values(["distance", "n"], ascending=[True, False]).head(nearest).reset_index()
    ctx = None
    if lab is not None:
        own = fd.frame[fd.frame["lab"] == lab].assign(h=lambda d: line.residual(d["x"], d["y"]))
        fitted = own[own["in_fit"]]
        labs_known = sorted(set(fd.frame["lab"]))
        if fitted.empty:
            ctx = {"lab": lab, "n": 0, "n_outside_fit": len(own),
                   "note": f"no fitted models of {lab} in {fd.panel} (labs: {', '.join(labs_known)})"}
        else:
            # mean h and rank over fitted models, as in labs(); later releases only for "previous"
            ctx = {"lab": lab, "n": len(fitted), "n_outside_fit": len(own) - len(fitted),
                   "mean_h": float(fitted["h"].mean()), "h_min": float(fitted["h"].min()),
                   "h_max": float(fitted["h"].max()),
                   "rank_of_mean": int((by_lab["mean_h"] > fitted["h"].mean()).sum()) + 1, "labs": len(by_lab)}
            if when is not None:
                dated = _order_key(own[own["date_lo"].notna()])
                before = dated[dated["_hi"] < pd.Timestamp(when[0])].sort_values(["_mid", "_lo"])
                if len(before):
                    p = before.iloc[-1]
                    dx = x - p["x"]
                    ctx["previous"] = {"model": p["model"], "release_date": p["release_date"], "h": float(p["h"]),
                                       "dh": h - float(p["h"]),
                                       "gamma": (y - p["y"]) / dx if abs(dx) >= DEFAULT_DYNAMICS_GUARD else None,
                                       "jump": abs(h - float(p["h"])) > JUMP}
                else:
                    ctx["previous"] = None
    lv = int(round(100 * level))
    inside = lo <= y <= hi
    inside_p = plo <= y <= phi
    text = [f"A release at {fd.bx} {x:g}, {fd.by} {y:g}"
            + (f" ({lab}{', ' + date if date else ''})" if lab else ""),
            f"  line ({fd.subset}, {line.n} models): {line.describe(fd.bx, fd.by)}",
            f"  predicted {fd.by} {pred:.1f}; h = {h:+.1f} points -> {band_label(h, band).item()}",
            f"  {lv}% prediction interval [{lo:.1f}, {hi:.1f}] (t with {line.n - 2} df, leverage {lev:.3f}): "
            f"{'inside' if inside else 'OUTSIDE'}",
            f"  paper protocol [{plo:.1f}, {phi:.1f}] (z x n-denominator SD, no leverage): "
            f"{'inside' if inside_p else 'OUTSIDE'}"]
    if extrap:
        text.append(f"  note: {fd.bx} {x:g} is outside the fitted range "
                    f"[{fit['x'].min():g}, {fit['x'].max():g}]: the prediction extrapolates")
    text.append("  labs nearest in mean h: " + ", ".join(
        f"{r['lab']} ({r['mean_h']:+.1f}, n={r['n']})" for r in near.to_dict("records")))
    if ctx is not None:
        if ctx["n"] == 0:
            text.append(f"  {ctx['note']}")
        else:
            text.append(f"  {lab}: {ctx['n']} fitted model(s), mean h {ctx['mean_h']:+.1f} (range "
                        f"{ctx['h_min']:+.1f} to {ctx['h_max']:+.1f}), rank {ctx['rank_of_mean']} of {ctx['labs']} labs")
            prev = ctx.get("previous")
            if prev:
                g = "undefined" if prev["gamma"] is None else f"{prev['gamma']:+.2f}"
                text.append(f"  after {prev['model']} ({prev['release_date']}, h {prev['h']:+.1f}): dh = "
                            f"{prev['dh']:+.1f}{' (jump)' if prev['jump'] else ''}, gamma = {g}")
            elif when is not None:
                text.append(f"  no earlier {lab} release before {date} in the panel")
    return NewRelease(fd.panel, fd.bx, fd.by, subset, float(x), float(y), lab, date, pred, h,
                      band_label(h, band).item(), level, (lo, hi), inside, (plo, phi), inside_p, lev, extrap,
                      near, ctx, line, "\n".join(text))


# ------------------------------------------------------------------------------ corrections
@dataclass
class Comparison(Result):
    """The same diagnostics on the published data and with the errata layer applied."""

    panel: str
    bx: str
    by: str
    subset: str
    table: pd.DataFrame
    corrections: list[str]
    published: PopulationFit
    corrected: PopulationFit

    def summary(self) -> str:
        lines = [f"Published vs corrected data in {self.panel} ({self.subset} fit)"]
        lines += [f"  applied: {c}" for c in self.corrections] or ["  no corrections in the errata layer"]
        for r in self.table.to_dict("records"):
            lines.append(f"  {r['quantity']}: {fmt_num(r['published'])} -> {fmt_num(r['corrected'])}")
        return "\n".join(lines)


def compare_corrections(published: pd.DataFrame, corrected: pd.DataFrame, pair=None, *,
                        subset: str = "published", n_bootstrap: int = stats.DEFAULT_BOOTSTRAP,
                        level: float = 0.95, seed: int | None = None) -> Comparison:
    """Run the population fit, the labs and the dynamics on both frames and line the
    numbers up: quantity, published, corrected, change."""
    fits = [population_fit(fr, pair, subset=subset, n_bootstrap=n_bootstrap, level=level, seed=seed,
                           n_permutations=stats.DEFAULT_PERMUTATIONS) for fr in (published, corrected)]
    lab_res = [labs(fr, pair, subset=subset, n_resamples=n_bootstrap, level=level, seed=seed)
               for fr in (published, corrected)]
    dyn = [lab_dynamics(fr, pair, subset=subset) for fr in (published, corrected)]
    hf = [hfield(fr, pair, subset=subset) for fr in (published, corrected)]
    rows: list[dict] = []

    def add(q, a, b, kind="", n=None):
        rows.append({"quantity": q, "published": a, "corrected": b, "change": b - a if
                     all(isinstance(v, (int, float)) and math.isfinite(v) for v in (a, b)) else math.nan,
                     "kind": kind, "n": n})

    for name in ("r", "slope", "intercept"):
        ea, eb = getattr(fits[0], name), getattr(fits[1], name)
        add(name, ea.value, eb.value, "population", ea.n)
        add(f"{name} CI low", ea.ci[0], eb.ci[0], "population", ea.n)
        add(f"{name} CI high", ea.ci[1], eb.ci[1], "population", ea.n)
    add("residual SE", fits[0].residual_se, fits[1].residual_se, "population", fits[0].n)
    add("paper prediction half-width", fits[0].paper_halfwidth, fits[1].paper_halfwidth, "population", fits[0].n)
    for band in ("reasoning-specialist", "cooperative", "coding excursion"):
        add(f"models {band}", hf[0].band_counts[band], hf[1].band_counts[band], "h-field")
    ta, tb = (lr.table.set_index("lab") for lr in lab_res)
    for lab in ta.index:
        if ta.at[lab, "n"] >= 3:
            add(f"{lab} slope", ta.at[lab, "slope"], tb.at[lab, "slope"], "labs", int(ta.at[lab, "n"]))
    for lab in ta.index:
        add(f"{lab} mean h", ta.at[lab, "mean_h"], tb.at[lab, "mean_h"], "labs", int(ta.at[lab, "n"]))
    add("largest / smallest lab slope", lab_res[0].slope_ratio.value, lab_res[1].slope_ratio.value, "labs")
    add("leave-one-lab-out MAE", lab_res[0].lolo_mae.value, lab_res[1].lolo_mae.value, "labs",
        lab_res[0].lolo_mae.n)
    da, db = (d.labs.set_index("lab") for d in dyn)
    for lab in da.index:
        if da.at[lab, "n"] >= 3:
            add(f"{lab} h first -> last release", da.at[lab, "swing"], db.at[lab, "swing"], "dynamics",
                int(da.at[lab, "n"]))
    log = corrected.attrs.get("cape", {}).get("log", [])
    return Comparison(fits[0].panel, fits[0].bx, fits[0].by, subset, pd.DataFrame(rows), list(log), fits[0],
                      fits[1])
