#!/usr/bin/env python3
"""Speed of the steering engine (cape.steer) on SmolLM2-135M.

    python benchmarks/steer_speed.py                  # full run (a few minutes on 1 thread)
    python benchmarks/steer_speed.py --threads 2      # torch CPU threads (default 1)
    python benchmarks/steer_speed.py --quick          # small sizes: a smoke run

Targets:

1. greedy generation, tokens per second: a steering hook on one layer (positions "all")
   against no steering, ratio hook / plain >= 0.98; folded mode (a bias on the block's
   down projection) against no steering: within the run-to-run noise of plain itself
   (folded / plain >= 1 - spread of plain), at a batch of 1 and a batch of 4
2. batched extraction (``cape.steer.extraction.activations``, all layers) of 256 statements
   against the same statements one at a time (batch_size=1): speed-up >= 5x

Every run generates exactly ``--tokens`` new tokens (min_new_tokens = max_new_tokens);
tokens per second = batch x new tokens / wall time of ``model.generate`` (prefill
included; tokenising is not timed). The three modes are interleaved within each of
``--reps`` repetitions, in a rotated order, after one untimed warm-up run of each, so that
machine noise falls on all three alike; the ratios are the median over repetitions of the
ratio within a repetition, with their range. The steering vector is extracted from
``cape.steer.data.default_set()`` (diffmean, layer n_layers // 4, the preprint's) and scaled
to ``--alpha`` projection standard deviations; the output checks that it changed the text.

The statements of target 2 are TruthfulQA question + answer statements
(``from_truthfulqa``) when ../shared/data/truthfulqa/TruthfulQA.csv exists, otherwise the
default set's statements repeated with varied prefixes; the output says which. With
``--single-subset K`` (or ``--quick``) one-at-a-time extraction is timed on a random subset
and scaled to the full set by its share of tokens (the output says so). An "arithmetic"
line converts both timings to GFLOP/s (2 x block parameters per token, attention left out):
when one statement at a time already runs near the hardware's arithmetic rate, as on one
CPU thread, batching cannot gain much.

This is not a test: it measures and prints, and always exits 0 unless something raises.
Timings depend on the machine being otherwise idle: the output says how much of the CPU
other processes used during the run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_coupling import _cpu_snapshot, _loadavg, _others_share, machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRUTHFULQA = ROOT.parent / "shared" / "data" / "truthfulqa" / "TruthfulQA.csv"
MODES = ("plain", "hook", "folded")
HOOK_TARGET = 0.98
EXTRACT_TARGET = 5.0
PROMPTS = [
    "The capital of France is",
    "Here is a short story about a lighthouse keeper who",
    "Q: What happens if you swallow gum?\nA:",
    "The three most important facts about the Moon are",
]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def _spread(values: list[float]) -> float:
    """(max - min) / median: the relative run-to-run spread."""
    med = statistics.median(values)
    return (max(values) - min(values)) / med if med > 0 else float("nan")


# ------------------------------------------------------------------------- steering vector

def steering_vector(lm, alpha: float, batch_size: int) -> tuple[dict, str]:
    """{layer: scaled vector} from the default contrast set, and a sentence saying what it is."""
    from cape.steer.data import default_set
    from cape.steer.extraction import extract

    t = time.perf_counter()
    ex = extract(lm, default_set(), method="diffmean", layer="quarter", batch_size=batch_size)
    row = ex.chosen
    vecs = ex.chosen_vector.scaled(alpha, "sd")
    norm = float(next(iter(vecs.values())).norm())
    what = (f"diffmean on default_set() ({ex.n_extract} + {ex.n_eval} statements), layer {ex.layer} "
            f"(n_layers // 4), held-out probe accuracy {row.probe_acc:.2f} (n = {int(row.n_eval)}); "
            f"{alpha:g} x proj-sd = norm {norm:.3g} (residual norm {row.resid_norm:.3g}); "
            f"extracted in {time.perf_counter() - t:.1f} s (not timed)")
    return vecs, what


# ------------------------------------------------------------------------- target 1: generation

def bench_generation(lm, vecs: dict, batch: int, tokens: int, reps: int, device: str) -> dict:
    import torch

    from cape.steer.apply import steer

    tok = lm.tokenizer
    tok.padding_side = "left"
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    enc = tok(prompts, return_tensors="pt", padding=True)
    enc = {k: v.to(lm.device) for k, v in enc.items()}
    width = enc["input_ids"].shape[1]
    kw = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
              pad_token_id=tok.pad_token_id)

    def run(mode: str) -> tuple[float, torch.Tensor]:
        def go():
            _sync(device)
            t = time.perf_counter()
            with torch.inference_mode():
                out = lm.model.generate(**enc, **kw)
            _sync(device)
            return time.perf_counter() - t, out[:, width:].cpu()
        if mode == "plain":
            return go()
        with steer(lm, vecs, positions="all", mode=mode):
            return go()

    for mode in MODES:  # warm-up, untimed
        run(mode)
    tps: dict[str, list[float]] = {m: [] for m in MODES}
    outs: dict[str, torch.Tensor] = {}
    for r in range(reps):
        for mode in MODES[r % 3:] + MODES[:r % 3]:
            secs, new = run(mode)
            if new.shape[1] != tokens:
                raise RuntimeError(f"{mode}: generated {new.shape[1]} tokens, not {tokens}")
            tps[mode].append(batch * tokens / secs)
            outs[mode] = new
    ratios = {m: [tps[m][i] / tps["plain"][i] for i in range(reps)] for m in ("hook", "folded")}
    return {"batch": batch, "tokens": tokens, "reps": reps, "tps": tps, "ratios": ratios,
            "changed": int(sum(not torch.equal(outs["plain"][i], outs["hook"][i]) for i in range(batch))),
            "hook_eq_folded": int(sum(torch.equal(outs["hook"][i], outs["folded"][i]) for i in range(batch)))}


# ------------------------------------------------------------------------- target 2: extraction

def statements(n: int) -> tuple[list[str], str]:
    if TRUTHFULQA.is_file():
        from cape.steer.data import from_truthfulqa
        cs = from_truthfulqa(TRUTHFULQA)
        pick = np.random.default_rng(0).choice(len(cs.statements), size=min(n, len(cs.statements)),
                                               replace=False)
        return ([cs.statements[i] for i in pick],
                f"{len(pick)} TruthfulQA question + answer statements drawn with seed 0 from "
                f"{len(cs.statements)} ({TRUTHFULQA})")
    from cape.steer.data import default_set
    base = default_set().statements
    prefixes = ["", "Fact: ", "Claim: ", "It is said that ", "Note: ", "Everyone knows: ", "Statement: "]
    out = [prefixes[(i // len(base)) % len(prefixes)] + base[i % len(base)] for i in range(n)]
    return out, (f"{n} statements: default_set()'s {len(base)} repeated with varied prefixes "
                 f"({TRUTHFULQA} is absent)")


def bench_extraction(lm, n: int, batch_size: int, subset: int, reps: int, device: str) -> dict:
    from cape.steer.extraction import activations

    stmts, source = statements(n)
    n = len(stmts)
    lengths = np.array([len(ids) for ids in lm.tokenizer(stmts)["input_ids"]])
    k = n if subset <= 0 or subset >= n else subset
    pick = np.sort(np.random.default_rng(1).choice(n, size=k, replace=False)) if k < n else np.arange(n)
    single_stmts = [stmts[i] for i in pick]
    scale = float(lengths.sum() / lengths[pick].sum())

    activations(lm, stmts[:4], batch_size=4)  # warm-up, untimed
    activations(lm, stmts[:2], batch_size=1)

    def timed(items, bs):
        _sync(device)
        t = time.perf_counter()
        acts = activations(lm, items, batch_size=bs)
        _sync(device)
        return time.perf_counter() - t, acts

    batched_s, single_s = [], []
    for r in range(reps):
        for which in (("batched", "single") if r % 2 == 0 else ("single", "batched")):
            if which == "batched":
                secs, acts_b = timed(stmts, batch_size)
                batched_s.append(secs)
            else:
                secs, acts_1 = timed(single_stmts, 1)
                single_s.append(secs * scale)
    from cape.steer.layers import find_layers

    _, blocks = find_layers(lm.model, lm.layers_path)
    block_params = int(sum(p.numel() for p in blocks.parameters()))
    diff = float(np.abs(acts_b[pick] - acts_1).max())
    size = float(np.abs(acts_b[pick]).max())
    return {"n": n, "source": source, "batch_size": batch_size, "k": k, "scale": scale,
            "per_statement_scale": n / k, "mean_len": float(lengths.mean()),
            "subset_mean_len": float(lengths[pick].mean()), "batched_s": batched_s, "single_s": single_s,
            "speedup": statistics.median(single_s) / statistics.median(batched_s),
            "max_diff": diff, "max_abs": size, "tokens": int(lengths.sum()), "block_params": block_params}


# ------------------------------------------------------------------------- report

def _met(ok: bool) -> str:
    return "target met" if ok else "target NOT met"


def report_generation(results: list[dict]) -> None:
    print(f"{'batch':>5} {'mode':<7} {'tokens/s median':>16} {'min':>8} {'max':>8} {'spread':>7}")
    for g in results:
        for mode in MODES:
            v = g["tps"][mode]
            print(f"{g['batch']:>5} {mode:<7} {statistics.median(v):>16.1f} {min(v):>8.1f} {max(v):>8.1f} "
                  f"{_spread(v):>6.1%}")
    print()
    for g in results:
        b, plain = g["batch"], g["tps"]["plain"]
        noise = _spread(plain)
        hook, folded = g["ratios"]["hook"], g["ratios"]["folded"]
        h, f = statistics.median(hook), statistics.median(folded)
        print(f"batch {b}: hook / plain = {h:.3f} (median of {len(hook)} paired ratios, range "
              f"{min(hook):.3f}-{max(hook):.3f}); target >= {HOOK_TARGET}: {_met(h >= HOOK_TARGET)}")
        print(f"batch {b}: folded / plain = {f:.3f} (range {min(folded):.3f}-{max(folded):.3f}); "
              f"run-to-run spread of plain itself {noise:.1%}; target folded / plain >= "
              f"{1 - noise:.3f} (1 - spread, within noise): {_met(f >= 1 - noise)}")
        print(f"batch {b}: check: steered (hook) text differs from plain in {g['changed']} of {b} rows; "
              f"hook and folded give the same tokens in {g['hook_eq_folded']} of {b} rows")


def report_extraction(e: dict) -> None:
    b, s = statistics.median(e["batched_s"]), statistics.median(e["single_s"])
    n = e["n"]
    print(f"statements: {e['source']}; mean length {e['mean_len']:.1f} tokens")
    print(f"{'how':<28} {'seconds (median)':>17} {'statements/s':>13} {'runs':>5}")
    print(f"{'batched, batch_size ' + str(e['batch_size']):<28} {b:>17.2f} {n / b:>13.1f} "
          f"{len(e['batched_s']):>5}")
    print(f"{'one at a time, batch_size 1':<28} {s:>17.2f} {n / s:>13.1f} {len(e['single_s']):>5}")
    if e["k"] < n:
        print(f"one at a time was timed on a random subset of {e['k']} of the {n} statements (seed 1; mean "
              f"length {e['subset_mean_len']:.1f} tokens) and scaled to all {n} by their share of tokens "
              f"(x{e['scale']:.2f}; per statement it would be x{e['per_statement_scale']:.2f})")
    flop = 2.0 * e["block_params"] * e["tokens"]  # multiply-adds of the blocks' weights, attention left out
    print(f"arithmetic: {e['tokens']} tokens x 2 x {e['block_params'] / 1e6:.1f}M block parameters = "
          f"{flop / 1e9:.0f} GFLOP; batched {flop / b / 1e9:.1f} GFLOP/s, one at a time {flop / s / 1e9:.1f} GFLOP/s "
          "(batching gains only what a single statement's forward leaves unused of the hardware)")
    print(f"check: batched and one-at-a-time activations differ by at most {e['max_diff']:.2g} "
          f"(largest |activation| {e['max_abs']:.3g})")
    print(f"speed-up batched / one at a time = {e['speedup']:.2f}x; target >= {EXTRACT_TARGET:g}x: "
          f"{_met(e['speedup'] >= EXTRACT_TARGET)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[2:4]))
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--tokens", type=int, default=None, help="new tokens per generation (default 64; quick 8)")
    ap.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 5; quick 2)")
    ap.add_argument("--statements", type=int, default=None,
                    help="statements for extraction (default 256; quick 32)")
    ap.add_argument("--batch-size", type=int, default=32, help="extraction batch size (default 32)")
    ap.add_argument("--single-subset", type=int, default=None,
                    help="time one-at-a-time extraction on this many statements and scale (default: all; "
                         "quick 8)")
    ap.add_argument("--extract-reps", type=int, default=1, help="repetitions of target 2 (default 1)")
    ap.add_argument("--alpha", type=float, default=4.0, help="steering strength in projection sds (default 4)")
    ap.add_argument("--model", default="smollm2-135m", help="model to load (default smollm2-135m)")
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run (timings not meaningful)")
    a = ap.parse_args(argv)
    tokens = a.tokens or (8 if a.quick else 64)
    reps = a.reps or (2 if a.quick else 5)
    n_statements = a.statements or (32 if a.quick else 256)
    subset = a.single_subset if a.single_subset is not None else (8 if a.quick else 0)
    if min(tokens, reps, n_statements, a.batch_size, a.extract_reps, a.threads) < 1:
        ap.error("--threads, --tokens, --reps, --statements, --batch-size and --extract-reps must be >= 1")

    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(a.threads)

    from cape.steer.models import load_model

    t0 = time.perf_counter()
    machine = machine_info()
    snap = _cpu_snapshot()
    lm = load_model(a.model, device=a.device, threads=a.threads)
    load_s = time.perf_counter() - t0
    print("CAPE steering-engine speed" + ("  (--quick: small sizes, timings not meaningful)" if a.quick else ""))
    print(f"machine: nproc {machine['nproc']} ({machine['cpu']}), Python {machine['python']}, torch "
          f"{torch.__version__}, transformers {transformers.__version__}; load average at start "
          f"{machine['loadavg_start']}")
    print(f"torch threads: {torch.get_num_threads()} (set by --threads {a.threads}); device {a.device}"
          + (f"; {machine['thread_env']}" if machine["thread_env"] else ""))
    print(f"model: {lm.model_id} ({lm.n_layers} layers, width {lm.hidden_size}, float32), "
          f"loaded in {load_s:.1f} s (not timed)")
    vecs, what = steering_vector(lm, a.alpha, a.batch_size)
    print(f"steering vector: {what}")
    print()

    print(f"[1] greedy generation, {tokens} new tokens per row (min_new_tokens = max_new_tokens), "
          f"{reps} interleaved repetitions after a warm-up; hook: positions 'all', one layer")
    gens = [bench_generation(lm, vecs, batch, tokens, reps, a.device) for batch in (1, 4)]
    report_generation(gens)
    print()

    print("[2] extraction: cape.steer.extraction.activations, every layer, pooling 'last'")
    ext = bench_extraction(lm, n_statements, a.batch_size, subset, a.extract_reps, a.device)
    report_extraction(ext)
    print()

    share = _others_share(snap, _cpu_snapshot(), machine["nproc"])
    print(f"load average at end {_loadavg()}"
          + (f"; other processes used {share:.0%} of the machine's CPU during the run" if share is not None
             else "")
          + ("  <- timings are inflated and noisy: run again on a quiet machine"
             if share is not None and share > 0.1 else ""))
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
