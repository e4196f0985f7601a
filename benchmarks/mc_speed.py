#!/usr/bin/env python3
"""Speed of the TruthfulQA MC1/MC2 scorer (cape.steer.truthfulqa_mc) on SmolLM2-135M.

    python benchmarks/mc_speed.py                 # 40 questions, 1 torch thread
    python benchmarks/mc_speed.py --questions 817 # every question (the issue's ~3 minutes)
    python benchmarks/mc_speed.py --quick         # a smoke run

Prints, from one run:

1. the scorer's tokens per second against a plain batched forward pass over the same number
   of tokens (fresh 256-token rows, no cache: the limit of this machine); aim >= 80%. The
   token count is the task's: the primer once, each question once, each choice's tokens
   (what a scorer that reuses the KV cache but shares nothing else must feed). The packed
   scorer feeds fewer (choices that start alike share their first tokens, a trie) plus the
   padding of its batches; both counts are printed;
2. its speed-up over scoring each primer + question + answer sequence separately
   (``score_mc_naive``, on a subset, scaled per question): aim >= 10x;
3. MC1 and MC2 of both scorers on the subset, which must agree.

Each figure is given twice: from wall-clock time, and from the process's CPU time. With one
torch thread the CPU time is what the run would take on an idle machine; the wall-clock
time grows with what other processes take (the output says how much of the CPU they used).
Threads are set explicitly (``--threads``, default 1: one thread was measured faster than
two on this busy 2-core machine; with more threads the CPU time adds up all of them).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_coupling import _cpu_snapshot, _loadavg, _others_share, machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MC = ROOT.parent / "shared" / "data" / "truthfulqa" / "mc_task.json"
SCORER_TARGET, SPEEDUP_TARGET = 0.80, 10.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--naive", type=int, default=5, help="questions scored separately (the slow reference)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.questions, args.naive = 6, 2
    import numpy as np
    import torch

    from cape.steer.models import load_model
    from cape.steer.truthfulqa_mc import (QA_PRIMER, _encode_items, _max_length, _shared_prefix, _tree,
                                          load_mc_targets, score_mc, score_mc_naive)

    if not MC.is_file():
        print(f"needs {MC} (../shared/data); not found")
        return 0
    torch.set_num_threads(args.threads)
    print("CAPE TruthfulQA MC scorer speed")
    info = machine_info()
    print(f"machine: {', '.join(f'{k} {v}' for k, v in info.items())}; load average at start {_loadavg()}")
    print(f"torch threads: {torch.get_num_threads()} (set by --threads {args.threads})")
    cpu0, t_all = _cpu_snapshot(), time.perf_counter()
    lm = load_model("smollm2-135m", threads=args.threads)
    items = list(load_mc_targets(MC))[: args.questions]
    encoded, skipped = _encode_items(lm, items, QA_PRIMER, _max_length(lm))
    shared = min(len(e.context) for e in encoded) - 1
    first = encoded[0].context
    for e in encoded:
        diff = np.flatnonzero(np.asarray(first[:shared]) != np.asarray(e.context[:shared]))
        if diff.size:
            shared = int(diff[0])
    tokens = shared + sum(len(e.context) - shared for e in encoded) + sum(
        max(len(c) - 1, 0) for e in encoded for c in e.conts)
    packed = shared + sum(len(_tree(e, shared).tokens) for e in encoded)
    assert shared == _shared_prefix(encoded)
    print(f"model smollm2-135m; {len(encoded)} questions of mc_task.json ({len(skipped)} skipped); "
          f"primer {shared} tokens; the task has {tokens} tokens in all (primer once, questions, choices); "
          f"the packed scorer feeds {packed} of them (choices as tries) plus padding")

    score_mc(lm, items[:2])  # warm-up
    t, c = time.perf_counter(), time.process_time()
    res = score_mc(lm, items)
    cached_s, cached_cpu = time.perf_counter() - t, time.process_time() - c
    # the limit: a plain batched forward over the same number of tokens (rows of 256, no cache)
    vocab = lm.model.config.vocab_size
    rows = max(1, tokens // 256)
    ids = torch.randint(0, vocab, (rows, 256), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        lm.model(input_ids=ids[:1])
        t, c = time.perf_counter(), time.process_time()
        for i in range(0, rows, 4):
            lm.model(input_ids=ids[i:i + 4])
        scale = tokens / (rows * 256)
        plain_s, plain_cpu = (time.perf_counter() - t) * scale, (time.process_time() - c) * scale

    def verdict(value: float, target: float) -> str:
        return "target met" if value >= target else "target NOT met"

    ratio, ratio_cpu = plain_s / cached_s, plain_cpu / cached_cpu
    print(f"\n[1] scorer {tokens / cached_s:,.0f} tokens/s ({cached_s:.1f} s, {cached_s / len(encoded):.3f} s per "
          f"question) vs plain batched forward {tokens / plain_s:,.0f} tokens/s (same token count), wall clock")
    print(f"    scorer {tokens / cached_cpu:,.0f} tokens/s ({cached_cpu:.1f} s) vs plain {tokens / plain_cpu:,.0f} "
          f"tokens/s, CPU time")
    print(f"scorer / plain = {ratio:.2f} (wall), {ratio_cpu:.2f} (CPU); target >= {SCORER_TARGET:.2f}: "
          f"{verdict(ratio, SCORER_TARGET)} (wall), {verdict(ratio_cpu, SCORER_TARGET)} (CPU)")

    sub = items[: args.naive]
    t, c = time.perf_counter(), time.process_time()
    naive = score_mc_naive(lm, sub)
    naive_per_q, naive_cpu_q = (time.perf_counter() - t) / len(sub), (time.process_time() - c) / len(sub)
    speedup, speedup_cpu = naive_per_q / (cached_s / len(encoded)), naive_cpu_q / (cached_cpu / len(encoded))
    print(f"\n[2] separate scoring of each sequence: {naive_per_q:.2f} s per question (CPU {naive_cpu_q:.2f} s; on "
          f"{len(sub)} questions, scaled per question) vs cached {cached_s / len(encoded):.3f} s "
          f"(CPU {cached_cpu / len(encoded):.3f} s)")
    print(f"speed-up cached / separate = {speedup:.1f}x (wall), {speedup_cpu:.1f}x (CPU); target >= "
          f"{SPEEDUP_TARGET:g}x: {verdict(speedup, SPEEDUP_TARGET)} (wall), "
          f"{verdict(speedup_cpu, SPEEDUP_TARGET)} (CPU)")
    same = res.per_question.iloc[: len(sub)]
    d2 = float(np.max(np.abs(same["mc2"].to_numpy() - naive.per_question["mc2"].to_numpy())))
    print(f"check: MC1 identical on {int((same['mc1'].to_numpy() == naive.per_question['mc1'].to_numpy()).sum())}"
          f" of {len(sub)} questions; largest MC2 difference {d2:.2g}")
    print(f"\n[3] MC1 {res.mc1.value:.3f} {tuple(round(c, 3) for c in res.mc1.ci)}, MC2 {res.mc2.value:.3f} "
          f"{tuple(round(c, 3) for c in res.mc2.ci) if res.mc2.ci else ''} on {res.n} questions (unsteered)")
    full, full_cpu = cached_s / len(encoded) * 817, cached_cpu / len(encoded) * 817
    print(f"all 817 questions at this rate: about {full / 60:.1f} minutes (wall), {full_cpu / 60:.1f} minutes "
          f"(CPU){'' if len(encoded) >= 817 else '; fewer questions pack less tightly (more padding)'}")
    share = _others_share(cpu0, _cpu_snapshot(), os.cpu_count() or 1)
    print(f"\nload average at end {_loadavg()}; other processes used "
          f"{'?' if share is None else f'{share:.0%}'} of the machine's CPU during the run; "
          f"total {time.perf_counter() - t_all:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
