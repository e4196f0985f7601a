"""``cape advise``: which levers (curation, width, benchmark rotation, size) the data support
for one model or one family, each with its evidence and a strength label.

This command only presents: every number comes from :mod:`cape.analysis.advise`.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from ..defaults import DEFAULT_CURATED, DEFAULT_RESAMPLES, SIZE_WINDOW
from ..errors import CapeError
from ._app import (CleanOpt, CorrOpt, JsonOpt, LevelOpt, RunOpt, SeedOpt, ShotsOpt, command_set, out, _emit,
                   _f, _frame, lazy)

advise = lazy("cape.analysis.advise", "advise")

commands = command_set()

_STYLE = {"strong": "green", "moderate": "green", "weak": "yellow", "none": "dim"}


def _parse_scores(items: list[str] | None) -> dict[str, float]:
    """``--benchmarks-scores gpqa_diamond=40,mmlu=61`` (repeatable) -> {name: value}."""
    scores: dict[str, float] = {}
    for item in items or []:
        for part in (p.strip() for p in item.split(",")):
            if not part:
                continue
            if "=" not in part:
                raise CapeError(f"--benchmarks-scores takes BENCH=VALUE pairs, not '{part}'")
            k, v = (s.strip() for s in part.split("=", 1))
            try:
                scores[k] = float(v)
            except ValueError:
                raise CapeError(f"--benchmarks-scores {k}: '{v}' is not a number") from None
    return scores


@commands.command("advise")
def advise_cmd(
    panel: Annotated[str, typer.Option("--panel", "-p", help="Panel to compare against (see `cape panels`).")] = "openllm-v1-base",
    family: Annotated[Optional[str], typer.Option(
        "--family", "-f", help="Advise one family of the panel (instead of --params and scores).")] = None,
    params: Annotated[Optional[str], typer.Option(
        "--params", help="Advise one model: its parameter count (7e9, 7B).")] = None,
    hellaswag: Annotated[Optional[float], typer.Option("--hellaswag", help="The model's HellaSwag score (%).")] = None,
    truthfulqa: Annotated[Optional[float], typer.Option("--truthfulqa", help="The model's TruthfulQA score (%).")] = None,
    d_model: Annotated[Optional[float], typer.Option("--d-model", help="The model's hidden width.")] = None,
    bench_scores: Annotated[Optional[list[str]], typer.Option(
        "--benchmarks-scores", help="More of the model's scores as BENCH=VALUE, comma-separated or repeated "
                                    "(e.g. gpqa_diamond=40,mmlu=61); judged for rotation.")] = None,
    pair: Annotated[Optional[str], typer.Option(
        "--pair", help="Two benchmarks as A:B (default hellaswag:truthfulqa); B defines h(D).")] = None,
    curated: Annotated[str, typer.Option(
        "--curated", help="Comma-separated names of curated families (a name also covers its versions: Qwen "
                          "covers Qwen1.5, Qwen2...).")] = ",".join(DEFAULT_CURATED),
    reference: Annotated[Optional[str], typer.Option(
        "--reference", help="Comma-separated families whose curve defines h(D) = 0 (default: the panel's "
                            "non-curated families).")] = None,
    window: Annotated[float, typer.Option("--window", help="'Similar size' means within this factor.")] = SIZE_WINDOW,
    top: Annotated[int, typer.Option("--top", help="Top-k models for benchmark saturation.")] = 5,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples and null draws.")] = DEFAULT_RESAMPLES,
    clean: CleanOpt = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    corrected: CorrOpt = False,
    level: LevelOpt = 0.95,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Intervention suggestions: for one model (--params with --hellaswag and --truthfulqa) or
    one family (--family), which levers the data support: curation (h(D) against the
    reference curve and against curated families of similar size), width (width
    normalization against its null, and the widths of families that turn tax -> bonus at
    this size), benchmark rotation (saturation and binomial noise floors) and size (only when
    the replication of the phase picture holds). Each lever comes with its numbers and a
    strength label: strong, moderate (both: supported), weak (suggestive only) or none."""
    scores = _parse_scores(bench_scores)
    if hellaswag is not None:
        scores["hellaswag"] = hellaswag
    if truthfulqa is not None:
        scores["truthfulqa"] = truthfulqa
    if family is None and params is None:
        raise CapeError("give --family NAME (a family of the panel) or --params N with the model's scores "
                        "(--hellaswag, --truthfulqa)")
    frame = _frame(panel, clean, corrected)
    res = advise(frame, family=family, params=params, scores=scores or None, d_model=d_model, pair=pair,
                     curated=[c.strip() for c in curated.split(",") if c.strip()],
                     reference_families=[r.strip() for r in reference.split(",") if r.strip()] if reference else None,
                     size_window=window, top_k=top, n_resamples=resamples, level=level, seed=seed)
    if _emit(res, as_json, command="advise"):
        return
    t = Table(title=f"Levers for {res.target} ({res.panel})",
              caption="supported = moderate or strong evidence; the rule is in `cape.analysis.advise`")
    for c in ("lever", "strength", "supported", "key estimate", "value", f"{int(round(level * 100))}% interval", "n"):
        t.add_column(c, justify="right" if c in ("value", "n") else "left")
    for r in res.table.to_dict("records"):
        st = _STYLE.get(r["strength"], "")
        ci = f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]" if r["ci_low"] == r["ci_low"] else ""
        t.add_row(r["lever"], f"[{st}]{r['strength']}[/{st}]", "yes" if r["supported"] else "no",
                  r["estimate"] or "", _f(r["value"]), ci, str(r["n"]))
    out.print(t)
    out.print(res.summary(), highlight=False, markup=False)
