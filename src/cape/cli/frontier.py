"""``cape frontier fit|hfield|labs|dynamics|saturation|compare``, ``cape hfield`` and
``cape predictions``: the paper-B diagnostics on any panel.

These commands only present: every number comes from :mod:`cape.analysis.frontier`,
:mod:`cape.analysis.saturation` and :mod:`cape.predictions`.
"""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..defaults import DEFAULT_BOOTSTRAP, DEFAULT_PERMUTATIONS, ROTATE_BELOW
from ..errors import CapeError
from ._app import (CiOpt, CleanOpt, CorrOpt, JsonOpt, LevelOpt, ResOpt, RunOpt, SeedOpt, ShotsOpt,
                   command_set, lazy, out, _emit, _emit_json, _f, _frame, _progress)

# Imported when a command runs; the option defaults (fr.BAND ...) come from cape.defaults, so
# `cape --help` does not import the analysis.
fr = lazy("cape.analysis.frontier", defaults="cape.defaults")
_saturation = lazy("cape.analysis.saturation", "saturation")

commands = command_set()

from ._app import AllOpt, CsvOpt, _emit_csv, _esc, _formats, _print_table, _shown  # noqa: E402  (long tables)

frontier_app = typer.Typer(
    help="Frontier diagnostics (paper B): population fit, h-field, labs, dynamics, saturation, "
         "published vs corrected data. Default pair: SWE-bench Verified (x) : GPQA Diamond (y).",
    no_args_is_help=True)
commands.add_typer(frontier_app, name="frontier")

PanelOpt = Annotated[str, typer.Option("--panel", "-p", help="Panel name (see `cape panels`).")]
PairOpt = Annotated[Optional[str], typer.Option(
    "--pair", help="Two benchmarks as X:Y, X on the x-axis (default swe_bench_verified:gpqa_diamond).")]
SubsetOpt = Annotated[str, typer.Option(
    "--subset", help="Models the line is fitted on: published (all but post-cutoff, the default), "
                     "core, or all (post-cutoff included).")]
BandOpt = Annotated[float, typer.Option("--band", help="Band edge in points: |h| <= band is cooperative.")]


def _ci(lo, hi) -> str:
    return "" if lo is None or not math.isfinite(lo) else f"[{_f(lo)}, {_f(hi)}]"


def _pm(v, d: int = 1) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:+.{d}f}"


@frontier_app.command("fit")
def fit_cmd(
    panel: PanelOpt = "paper-frontier",
    pair: PairOpt = None,
    subset: SubsetOpt = "published",
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    corrected: CorrOpt = False,
    permutations: Annotated[int, typer.Option("--permutations", help="Monte Carlo orderings for the "
                                              "permutation p of r.")] = DEFAULT_PERMUTATIONS,
    resamples: ResOpt = DEFAULT_BOOTSTRAP,
    ci: CiOpt = "bca",
    level: LevelOpt = 0.95,
    seed: SeedOpt = None,
    show_all: AllOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Population line: r with permutation p; slope and intercept with classical, HC3 and
    lab-clustered SEs (statsmodels) and bootstrap CIs over models and labs; subset fits; and
    post-cutoff releases checked against the prediction interval."""
    frame = _frame(panel, clean, corrected)
    with _progress("bootstrap", as_json) as tick:
        res = fr.population_fit(frame, pair, subset=subset, n_permutations=permutations, n_bootstrap=resamples,
                                ci_method=ci, level=level, seed=seed, progress=tick)
    if _emit(res, as_json, command="frontier fit", corrected=corrected):
        return
    out.print(res.summary(), highlight=False)
    t = Table(title="coefficients: standard errors and bootstrap intervals")
    for c in ("term", "estimate", "SE classical", "SE HC3", "SE lab-clustered", "boot CI (models)", "boot CI (labs)"):
        t.add_column(c, justify="left" if c == "term" else "right")
    for r in res.coefficients.to_dict("records"):
        t.add_row(r["term"], _f(r["estimate"], 5), _f(r["se_classical"]), _f(r["se_hc3"]), _f(r["se_cluster"]),
                  _ci(r["boot_model_low"], r["boot_model_high"]), _ci(r["boot_lab_low"], r["boot_lab_high"]))
    out.print(t)
    t = Table(title="subset fits")
    for c in ("subset", "n", "labs", "r", "p (t)", "slope", "intercept"):
        t.add_column(c, justify="left" if c == "subset" else "right")
    for r in res.subsets.to_dict("records"):
        t.add_row(r["subset"], str(r["n"]), str(r["n_labs"]), _f(r["r"], 4), _f(r["p_parametric"]),
                  _f(r["slope"], 4), _f(r["intercept"], 4))
    out.print(t)
    if len(res.new_releases):
        lv = int(round(100 * level))
        t = Table(title=f"releases outside the fit against the {lv}% prediction interval")
        for c in ("model", "lab", "date", res.bx, res.by, "predicted", "h", f"{lv}% PI (t, leverage)",
                  "inside", "paper PI", "inside"):
            t.add_column(c, justify="left" if c in ("model", "lab", "date") else "right")
        rows, note = _shown(res.new_releases, show_all, "releases", csv=False)
        for r in rows.to_dict("records"):
            t.add_row(_esc(r["model"]), _esc(r["lab"]), str(r["release_date"] or ""), f"{r['x']:g}", f"{r['y']:g}",
                      f"{r['predicted']:.1f}", _pm(r["h"]), f"[{r['pi_low']:.1f}, {r['pi_high']:.1f}]",
                      "yes" if r["inside"] else "NO", f"[{r['paper_low']:.1f}, {r['paper_high']:.1f}]",
                      "yes" if r["inside_paper"] else "NO")
        _print_table(t, note)
    for e in res.excluded:
        out.print(f"  left out {e['model']}: {e['reason']}", highlight=False)


@frontier_app.command("hfield")
def hfield_cmd(
    panel: PanelOpt = "paper-frontier",
    pair: PairOpt = None,
    subset: SubsetOpt = "published",
    band: BandOpt = fr.BAND,
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    corrected: CorrOpt = False,
    show_all: AllOpt = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Every model's h = y - line(x), in-sample and leave-one-out, its band, and compute-tier
    duplicates (the same weights at two effort settings). --csv: the per-model table (the rows
    of --json's "table")."""
    _formats(as_json, as_csv)
    res = fr.hfield(_frame(panel, clean, corrected), pair, subset=subset, band=band)
    if _emit(res, as_json, command="frontier hfield", corrected=corrected):
        return
    if as_csv:
        _emit_csv(res.table)
        return
    t = Table(title=f"h-field in {res.panel}: h = {res.by} - ({res.line.slope:.4f} x {res.bx} "
                    f"{res.line.intercept:+.2f})")
    for c in ("model", "lab", "date", res.bx, res.by, "h", "h (LOO)", "band", "flags"):
        t.add_column(c, justify="left" if c in ("model", "lab", "date", "band", "flags") else "right")
    rows, note = _shown(res.table, show_all, "models")
    for r in rows.to_dict("records"):
        t.add_row(_esc(r["model"]) + ("" if r["in_fit"] else " *"), _esc(r["lab"]), str(r["release_date"] or ""),
                  f"{r['x']:g}", f"{r['y']:g}", _pm(r["h"]), _pm(r["h_loo"]), r["band"], _esc(r["flags"]))
    _print_table(t, note)
    out.print("  * outside the fit (h is out of sample)", highlight=False)
    out.print(res.summary(), highlight=False)


@frontier_app.command("labs")
def labs_cmd(
    panel: PanelOpt = "paper-frontier",
    pair: PairOpt = None,
    subset: SubsetOpt = "published",
    min_models: Annotated[int, typer.Option("--min-models", help="Labs with at least this many models enter "
                                            "the slope ratio and leave-one-lab-out.")] = 3,
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    corrected: CorrOpt = False,
    resamples: ResOpt = DEFAULT_BOOTSTRAP,
    level: LevelOpt = 0.95,
    seed: SeedOpt = None,
    show_all: AllOpt = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Per lab: mean h (all and core), within-lab slope and r with CIs and n; the largest /
    smallest slope ratio with a bootstrap CI; leave-one-lab-out error. --csv: the per-lab
    table (the rows of --json's "table")."""
    _formats(as_json, as_csv)
    res = fr.labs(_frame(panel, clean, corrected), pair, subset=subset, min_models=min_models,
                  n_resamples=resamples, level=level, seed=seed)
    if _emit(res, as_json, command="frontier labs", corrected=corrected):
        return
    if as_csv:
        _emit_csv(res.table)
        return
    lv = int(round(100 * level))
    t = Table(title=f"Labs in {res.panel} (h from {res.line.describe(res.bx, res.by)})")
    for c in ("lab", "n", "mean h", f"{lv}% CI", "core n", "core mean h", "slope", f"{lv}% CI", "r",
              f"{lv}% CI", "p_perm", "note"):
        t.add_column(c, justify="left" if c in ("lab", "note") else "right", overflow="fold")
    rows, note = _shown(res.table, show_all, "labs")
    for r in rows.to_dict("records"):
        ci = lambda a, b, d=2: "" if not math.isfinite(a) else f"[{a:+.{d}f}, {b:+.{d}f}]"  # noqa: E731
        t.add_row(_esc(r["lab"]), str(r["n"]), _pm(r["mean_h"]), ci(r["mean_h_low"], r["mean_h_high"], 1), str(r["n_core"]),
                  _pm(r["mean_h_core"]), _f(r["slope"]), ci(r["slope_low"], r["slope_high"]), _f(r["r"]),
                  ci(r["r_low"], r["r_high"]), _f(r["p_perm"]), _esc(r["note"]))
    _print_table(t, note)
    out.print("  " + res.slope_ratio.describe(), highlight=False)
    t = Table(title=f"leave one lab out (labs with {min_models}+ models)")
    for c in ("lab", "n", "MAE", "bias", "slope without", "intercept without"):
        t.add_column(c, justify="left" if c == "lab" else "right")
    rows, note = _shown(res.lolo, show_all, "labs", csv=False)
    for r in rows.to_dict("records"):
        t.add_row(_esc(r["lab"]), str(r["n"]), f"{r['mae']:.2f}", _pm(r["bias"], 2), f"{r['slope_without']:.3f}",
                  f"{r['intercept_without']:.2f}")
    _print_table(t, note)
    out.print("  " + res.lolo_mae.describe(), highlight=False)
    out.print("  " + res.lolo_mae_pooled.describe(), highlight=False)
    for n in res.notes:
        out.print(f"  note: {n}", highlight=False)


@frontier_app.command("dynamics")
def dynamics_cmd(
    panel: PanelOpt = "paper-frontier",
    pair: PairOpt = None,
    lab: Annotated[Optional[str], typer.Option("--lab", help="Comma-separated labs (default: all).")] = None,
    subset: SubsetOpt = "published",
    guard: Annotated[float, typer.Option("--guard", help="gamma is undefined when |dx| is below this "
                                         "many points.")] = fr.DEFAULT_DYNAMICS_GUARD,
    jump: Annotated[float, typer.Option("--jump", help="Flag |dh| above this many points.")] = fr.JUMP,
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    corrected: CorrOpt = False,
    show_all: AllOpt = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Each lab's releases in date order with h, dh and release-to-release gamma = dy/dx;
    jumps |dh| > 10 flagged; overlapping dates of mixed precision flagged as uncertain order.
    --csv: the per-release table (the rows of --json's "table")."""
    _formats(as_json, as_csv)
    res = fr.lab_dynamics(_frame(panel, clean, corrected), pair, subset=subset,
                          lab=lab.split(",") if lab else None, guard=guard, jump=jump)
    if _emit(res, as_json, command="frontier dynamics", corrected=corrected):
        return
    if as_csv:
        _emit_csv(res.table)
        return
    t = Table(title=f"Lab dynamics in {res.panel}")
    for c in ("lab", "model", "date", res.bx, res.by, "h", "dh", "gamma", "note"):
        t.add_column(c, justify="left" if c in ("lab", "model", "date", "note") else "right", overflow="fold")
    rows, more = _shown(res.table, show_all, "releases")
    for r in rows.to_dict("records"):
        note = "; ".join(x for x in ("JUMP" if r["jump"] else "", r["order_note"], r["gamma_note"]) if x)
        t.add_row(_esc(r["lab"]), _esc(r["model"]) + ("" if r["in_fit"] else " *"), str(r["release_date"]),
                  f"{r['x']:g}", f"{r['y']:g}", _pm(r["h"]), _pm(r["dh"]), _f(r["gamma"]), _esc(note))
    _print_table(t, more)
    out.print("  * outside the fit", highlight=False)
    out.print(res.summary(), highlight=False)
    for e in res.excluded:
        out.print(f"  left out {e['model']}: {e['reason']}", highlight=False)


@frontier_app.command("saturation")
def saturation_cmd(
    panel: PanelOpt = "paper-frontier",
    benchmarks: Annotated[Optional[str], typer.Option("--benchmarks", "-b", help="Comma-separated "
                                                      "benchmarks (default: all in the panel).")] = None,
    top: Annotated[int, typer.Option("--top", help="Top-k models per benchmark.")] = 5,
    old: Annotated[str, typer.Option("--old", help="The benchmark that may be saturating.")] = "swe_bench_verified",
    new: Annotated[str, typer.Option("--new", help="The benchmark it is compared with.")] = "gpqa_diamond",
    threshold: Annotated[float, typer.Option("--threshold", help="Paper rule: rotate when sigma is "
                                             "below this.")] = ROTATE_BELOW,
    subset: Annotated[str, typer.Option("--subset", help="published, core or all (default: all, the "
                                        "current frontier).")] = "all",
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    corrected: CorrOpt = False,
    resamples: ResOpt = DEFAULT_BOOTSTRAP,
    level: LevelOpt = 0.95,
    seed: SeedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Top-k spread per benchmark with its binomial noise floor (from the item count) and a
    parametric-bootstrap CI; sigma = spread(old)/spread(new) and the rotation verdicts of the
    paper rule and of the noise floor."""
    res = _saturation(_frame(panel, clean, corrected), benchmarks, top_k=top, subset=subset, old=old, new=new,
                      threshold=threshold, n_resamples=resamples, level=level, seed=seed)
    if _emit(res, as_json, command="frontier saturation", corrected=corrected):
        return
    lv = int(round(100 * level))
    t = Table(title=f"Top-{top} spread in {res.panel} ({subset})")
    for c in ("benchmark", "n", "items", "spread", f"{lv}% CI", "SE", "noise floor", "within noise", "top models"):
        t.add_column(c, justify="left" if c in ("benchmark", "top models") else "right", overflow="fold")
    for r in res.table.to_dict("records"):
        t.add_row(r["benchmark"], str(r["n"]), str(r["items"] or "?"), _f(r["spread"]),
                  "" if not math.isfinite(r["spread_low"]) else f"[{r['spread_low']:.1f}, {r['spread_high']:.1f}]",
                  _f(r["se"]), _f(r["noise_spread"]), "yes" if r["within_noise"] else "no",
                  r["top_models"] or r["note"])
    out.print(t)
    out.print("  " + res.sigma.describe(), highlight=False)
    out.print("  " + res.recommendation, highlight=False)
    for n in res.notes:
        out.print(f"  note: {n}", highlight=False)


@frontier_app.command("compare")
def compare_cmd(
    panel: PanelOpt = "paper-frontier",
    pair: PairOpt = None,
    subset: SubsetOpt = "published",
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    resamples: ResOpt = DEFAULT_BOOTSTRAP,
    level: LevelOpt = 0.95,
    seed: SeedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Published data and corrected data (the panel's errata layer) side by side: population
    fit, bands, lab slopes and mean h, slope ratio, leave-one-lab-out error, h swings."""
    pub = _frame(panel, clean, False)
    cor = _frame(panel, clean, True)
    res = fr.compare_corrections(pub, cor, pair, subset=subset, n_bootstrap=resamples, level=level, seed=seed)
    if _emit(res, as_json, command="frontier compare"):
        return
    for c in res.corrections or ["the errata layer changed nothing"]:
        out.print(f"  {c}", highlight=False)
    t = Table(title=f"Published vs corrected data: {res.panel} ({subset} fit)")
    for c in ("quantity", "published", "corrected", "change", "n"):
        t.add_column(c, justify="left" if c == "quantity" else "right")
    for r in res.table.to_dict("records"):
        t.add_row(r["quantity"], _f(r["published"], 4), _f(r["corrected"], 4), _pm(r["change"], 3),
                  "" if r["n"] is None or r["n"] != r["n"] else str(int(r["n"])))
    out.print(t)


@commands.command()
def hfield(
    swe: Annotated[Optional[float], typer.Option("--swe", help="The release's SWE-bench Verified score "
                                                 "(percent).")] = None,
    gpqa: Annotated[Optional[float], typer.Option("--gpqa", help="Its GPQA Diamond score (percent).")] = None,
    score: Annotated[Optional[list[str]], typer.Option("--score", help="Scores for another --pair as "
                                                       "BENCH=VALUE (repeat for both).")] = None,
    lab: Annotated[Optional[str], typer.Option("--lab", help="The release's lab.")] = None,
    date: Annotated[Optional[str], typer.Option("--date", help="Release date YYYY[-MM[-DD]].")] = None,
    panel: PanelOpt = "paper-frontier",
    pair: PairOpt = None,
    subset: SubsetOpt = "published",
    band: BandOpt = fr.BAND,
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    corrected: CorrOpt = False,
    level: LevelOpt = 0.95,
    as_json: JsonOpt = False,
) -> None:
    """Place a new release: predicted y, h, band, the 95% prediction interval (t quantile with
    leverage) and the paper's, whether it falls inside, and the labs nearest in mean h."""
    from ..analysis.data import parse_pair, resolve_benchmark

    frame = _frame(panel, clean, corrected)
    bx, by = (resolve_benchmark(frame, b) for b in parse_pair(pair or fr.FRONTIER_PAIR))
    given: dict[str, float] = {}
    for item in score or []:
        if "=" not in item:
            raise CapeError(f"--score takes BENCH=VALUE, not '{item}'")
        k, v = item.split("=", 1)
        try:
            given[resolve_benchmark(frame, k.strip())] = float(v)
        except ValueError:
            raise CapeError(f"--score {k.strip()}: '{v}' is not a number") from None
    if swe is not None:
        given["swe_bench_verified"] = swe
    if gpqa is not None:
        given["gpqa_diamond"] = gpqa
    missing = [b for b in (bx, by) if b not in given]
    if missing:
        raise CapeError(f"give the release's {' and '.join(missing)} score "
                        + ("(--swe and --gpqa)" if (bx, by) == fr.FRONTIER_PAIR else "(--score BENCH=VALUE)"))
    res = fr.new_release(frame, given[bx], given[by], lab=lab, date=date, pair=(bx, by), subset=subset,
                         level=level, band=band)
    if _emit(res, as_json, command="hfield", corrected=corrected):
        return
    out.print(res.explanation, highlight=False)


@commands.command()
def predictions(
    panel: Annotated[Optional[list[str]], typer.Option("--panel", "-p", help="Panel(s) to evaluate "
                                                       "against; repeat to combine (a later panel's "
                                                       "scores win). Default: paper-frontier.")] = None,
    file: Annotated[Optional[list[str]], typer.Option("--file", help="Your own prediction file (YAML or "
                                                      "JSON, same format); repeatable.")] = None,
    no_builtin: Annotated[bool, typer.Option("--no-builtin", help="Leave out paper B's seven "
                                             "predictions.")] = False,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Evaluate as of this date "
                                                 "(YYYY-MM-DD; default today).")] = None,
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    corrected: CorrOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate falsifiable predictions (paper B's seven, shipped as data, and your own) against
    the panels: PASS, FAIL, UNDECIDED (between the bands) or PENDING (deadline not reached or
    too few qualifying models), with the evidence (models, statistic, n).

    Add releases with `cape ingest FILE --panel NAME` and pass `--panel paper-frontier --panel
    NAME`. A prediction file lists predictions with id, title, scope {released_after, lab},
    deadline (YYYY-MM or {releases: N}), statistics (spread, pearson, h, count) and pass/fail
    rules such as {all: ["r > 0.6", "r.n >= 8"]}; see the built-in paper-b.yaml."""
    from ..predictions import builtin_predictions, combine_frames, evaluate_predictions, load_predictions

    preds = [] if no_builtin else builtin_predictions()
    for f in file or []:
        preds += load_predictions(f)
    if not preds:
        raise CapeError("no predictions to evaluate (--no-builtin without --file)")
    ids = [p.id for p in preds]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise CapeError(f"prediction id(s) {', '.join(dup)} appear more than once across the files")
    frame = combine_frames([_frame(p, clean, corrected) for p in (panel or ["paper-frontier"])])
    res = evaluate_predictions(frame, preds, as_of=as_of)
    if as_json:
        _emit_json({"command": "predictions", "corrected": corrected} | res.to_dict())
        return
    t = Table(title=f"Predictions against {res.panel}, as of {res.as_of}")
    for c in ("id", "prediction", "status", "now", "deadline", "evidence"):
        t.add_column(c, overflow="fold")
    colour = {"PASS": "green", "FAIL": "red", "UNDECIDED": "yellow", "PENDING": "cyan"}
    for p in res.predictions:
        t.add_row(p.id, p.title, f"[{colour[p.status]}]{p.status}[/]", p.provisional, p.deadline, p.reason)
    out.print(t)
