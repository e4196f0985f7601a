"""``cape dynamics fit|predict|crossval``: the sparse-regression ODE of scaling dynamics.

These commands only present: every number comes from :mod:`cape.analysis.dynamics`.
"""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer
from rich.table import Table

from ._app import (BenchOpt, CleanOpt, JsonOpt, LevelOpt, RunOpt, SeedOpt, ShotsOpt, command_set, lazy, out,
                   _emit, _f, _frame, _progress)

# Imported when a command runs; the option defaults (dy.DEFAULT_DEGREE ...) come from
# cape.defaults, so `cape --help` does not import the analysis.
dy = lazy("cape.analysis.dynamics", defaults="cape.defaults")

commands = command_set()

dynamics_app = typer.Typer(
    help="Scaling dynamics: a sparse-regression ODE dB/dlog10N = Theta(B) xi (pysindy STLSQ) of the "
         "benchmark vector within families, with bagging intervals, a threshold sweep, held-out "
         "prediction and cross-validation against simple baselines.",
    no_args_is_help=True)
commands.add_typer(dynamics_app, name="dynamics")

PanelOpt = Annotated[str, typer.Option("--panel", "-p", help="Panel name (see `cape panels`).")]
FamiliesOpt = Annotated[Optional[str], typer.Option(
    "--family", "-f", help="Comma-separated families (default: every family with enough sizes).")]
DegreeOpt = Annotated[int, typer.Option("--degree", help="Degree of the polynomial library.")]
ThresholdOpt = Annotated[float, typer.Option(
    "--threshold", help="STLSQ threshold: each thresholding step drops terms whose coefficient (in fitted "
                        "units) is below it; the kept terms are then refitted by least squares.")]
ScaleOpt = Annotated[str, typer.Option(
    "--scale", help="standard (z-scores of the training data, the default) or points (raw scores).")]
DupOpt = Annotated[str, typer.Option(
    "--duplicates", help="Models of equal size within a family: error (refuse) or mean (average them).")]
AlphaOpt = Annotated[float, typer.Option("--alpha", help="Ridge penalty of the thresholding steps.")]


def _ci(lo, hi) -> str:
    return "" if lo is None or not math.isfinite(lo) else f"[{_f(lo)}, {_f(hi)}]"


@dynamics_app.command("fit")
def fit_cmd(
    panel: PanelOpt = "paper-nc",
    family: FamiliesOpt = None,
    benchmarks: BenchOpt = None,
    pool: Annotated[bool, typer.Option("--pool/--per-family", help="One fit on the families pooled, or one "
                                       "fit per family (the default).")] = False,
    degree: DegreeOpt = dy.DEFAULT_DEGREE,
    threshold: ThresholdOpt = dy.DEFAULT_THRESHOLD,
    alpha: AlphaOpt = dy.DEFAULT_ALPHA,
    scale: ScaleOpt = "standard",
    duplicates: DupOpt = "error",
    ensemble: Annotated[int, typer.Option("--ensemble", help="Bagging resamples for coefficient intervals "
                                          "and inclusion probabilities (0 = none).")] = dy.DEFAULT_ENSEMBLE,
    resample: Annotated[str, typer.Option("--resample", help="Bagging unit: rows (derivative samples) or "
                                          "families.")] = "rows",
    sweep: Annotated[bool, typer.Option("--sweep/--no-sweep", help="Threshold sweep: terms against "
                                        "error.")] = True,
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    level: LevelOpt = 0.95,
    seed: SeedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit the sparse ODE of the benchmark vector (default hellaswag,truthfulqa) over log10 N:
    equations, active terms against data points, bagging intervals and inclusion
    probabilities, in-sample trajectories and a threshold sweep. Exactly or under-determined
    fits are refused."""
    frame = _frame(panel, clean, False)
    with _progress("fits", as_json) as tick:
        res = dy.fit_dynamics(frame, benchmarks, families=family, pool=pool, degree=degree, threshold=threshold,
                              alpha=alpha, scale=scale, duplicates=duplicates, n_ensemble=ensemble,
                              resample=resample, level=level, sweep=sweep, seed=seed, progress=tick)
    if _emit(res, as_json, command="dynamics fit"):
        return
    out.print(res.summary(), highlight=False)
    for f in res.fits:
        t = Table(title=f"{f.label}: coefficients ({'z-scores' if res.scale == 'standard' else 'points'}; "
                        f"bagging {f.ensemble.get('n_models', 0)} resamples of {f.ensemble.get('resample', '-')})")
        for c in ("equation", "term", "coef", "in points", "inclusion", f"{int(level * 100)}% interval"):
            t.add_column(c, justify="left" if c in ("equation", "term") else "right")
        for r in f.coefficients.to_dict("records"):
            t.add_row(r["equation"], r["term"], _f(r["coef"]) if r["active"] else "0", _f(r["coef_points"]),
                      f"{r['inclusion']:.2f}" if "inclusion" in r else "",
                      _ci(r.get("low"), r.get("high")))
        out.print(t)
        if f.sweep is not None:
            t = Table(title=f"{f.label}: threshold sweep ({f.n_points} data points per equation)")
            for c in ("threshold", "active terms", "derivative RMSE (pts/decade)", "trajectory MAE (pts)", "status"):
                t.add_column(c, justify="left" if c == "status" else "right")
            for r in f.sweep.to_dict("records"):
                mark = " <" if r["threshold"] == res.threshold else ""
                t.add_row(f"{r['threshold']:.3g}{mark}", str(r["n_active"]), _f(r["derivative_rmse"]),
                          _f(r["trajectory_mae"]), r["status"])
            out.print(t)


@dynamics_app.command("predict")
def predict_cmd(
    family: Annotated[str, typer.Option("--family", "-f", help="The family to predict (held out of the fit).")],
    panel: PanelOpt = "paper-nc",
    train: Annotated[Optional[str], typer.Option(
        "--train", help="Comma-separated training families (default: every other family).")] = None,
    to: Annotated[Optional[str], typer.Option(
        "--to", help="Extra sizes to predict, comma-separated parameter counts (70e9, 70B).")] = None,
    benchmarks: BenchOpt = None,
    degree: DegreeOpt = dy.DEFAULT_DEGREE,
    threshold: ThresholdOpt = dy.DEFAULT_THRESHOLD,
    alpha: AlphaOpt = dy.DEFAULT_ALPHA,
    scale: ScaleOpt = "standard",
    duplicates: DupOpt = "error",
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Predict a family's larger sizes: fit the ODE on other families, start at the family's
    smallest model and integrate; observed, predicted and error per size and benchmark."""
    from ..units import parse_param_count

    sizes = [parse_param_count(s.strip(), field="--to").total for s in (to or "").split(",") if s.strip()]
    res = dy.predict_family(_frame(panel, clean, False), family, benchmarks, train=train, sizes=sizes,
                            degree=degree, threshold=threshold, alpha=alpha, scale=scale, duplicates=duplicates)
    if _emit(res, as_json, command="dynamics predict"):
        return
    out.print(res.summary(), highlight=False)
    t = Table(title=f"{res.family}: observed and predicted")
    for c in ("model", "size", "benchmark", "observed", "predicted", "error"):
        t.add_column(c, justify="left" if c in ("model", "benchmark") else "right")
    for r in res.table.to_dict("records"):
        t.add_row(r["model"] or "(extra size)", _f(r["params"]), r["benchmark"], _f(r["observed"]),
                  _f(r["predicted"]), "start" if r["start"] else _f(r["error"]))
    out.print(t)


@dynamics_app.command("crossval")
def crossval_cmd(
    panel: PanelOpt = "paper-nc",
    family: FamiliesOpt = None,
    benchmarks: BenchOpt = None,
    scheme: Annotated[str, typer.Option(
        "--scheme", help="family (leave one family out), largest (leave each family's largest size out) "
                         "or both.")] = "both",
    min_models: Annotated[int, typer.Option("--min-models", help="Families with fewer sizes are left "
                                            "out.")] = 3,
    degree: DegreeOpt = dy.DEFAULT_DEGREE,
    threshold: ThresholdOpt = dy.DEFAULT_THRESHOLD,
    alpha: AlphaOpt = dy.DEFAULT_ALPHA,
    scale: ScaleOpt = "standard",
    duplicates: DupOpt = "error",
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    level: LevelOpt = 0.95,
    seed: SeedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cross-validated prediction: the sparse ODE against a linear ODE, polynomials of degree
    1-3 in log10 N (pooled, anchored, per family) and the last observed value, all scored on
    the same held-out scores (MAE in points with a family-bootstrap interval, MAPE). On a panel
    with Pythia, Llama-1 and Llama-2 the preprint's held-out protocol is shown beside it."""
    schemes = list(dy.SCHEMES) if scheme == "both" else [scheme]
    with _progress("folds", as_json) as tick:
        res = dy.crossval(_frame(panel, clean, False), benchmarks, families=family, schemes=schemes,
                          min_models=min_models, degree=degree, threshold=threshold, alpha=alpha, scale=scale,
                          duplicates=duplicates, level=level, seed=seed, progress=tick)
    if _emit(res, as_json, command="dynamics crossval"):
        return
    out.print(res.summary(), highlight=False)
    names = {"family": "leave one family out", "largest": "leave the largest size out"}
    for sch, tab in res.table.groupby("scheme", sort=False):
        t = Table(title=f"{names[sch]} ({res.panel}): held-out error")
        for c in ("method", "n", "folds", "refused", "diverged", "MAE (pts)", f"{int(level * 100)}% CI",
                  "MAPE %", "n shared", "MAE shared", "MAPE shared"):
            t.add_column(c, justify="left" if c == "method" else "right")
        for r in tab.to_dict("records"):
            t.add_row(r["method"], str(r["n"]), str(r["n_folds"]), str(r["refused"]), str(r["diverged"]),
                      _f(r["mae"]), _ci(r["mae_low"], r["mae_high"]), _f(r["mape"]), str(r["n_shared"]),
                      _f(r["mae_shared"]), _f(r["mape_shared"]))
        out.print(t)
    out.print("'shared': on the held-out scores the sparse ODE predicted, so every row is scored on the same "
              "points.", highlight=False)
    bad = res.folds[res.folds["status"] != "ok"]
    for r in bad.to_dict("records"):
        out.print(f"  {names[r['scheme']]}, fold {r['fold']}: {r['method']}: {r['status']}", highlight=False)
    pp = res.paper_protocol
    if pp is not None:
        out.print()
        out.print(pp.summary(), highlight=False)
        t = Table(title=f"paper protocol: {pp.test} held out ({pp.benchmark}; signed % error)")
        cols = [c for c in pp.table.columns if c.startswith("error_%_")]
        t.add_column("method")
        for c in cols:
            t.add_column(c.removeprefix("error_%_"), justify="right")
        for c in ("MAPE %", "n", "MAPE common", "MAE common"):
            t.add_column(c, justify="right")
        for r in pp.table.to_dict("records"):
            t.add_row(r["method"], *[(f"{r[c]:+.2f}" if math.isfinite(r[c]) else "start") for c in cols],
                      _f(r["mape"]), str(r["n"]), _f(r["mape_common"]), _f(r["mae_common"]))
        out.print(t)
        for n in pp.notes:
            out.print("  " + n, highlight=False)
