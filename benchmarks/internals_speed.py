#!/usr/bin/env python3
"""Speed of the internal-coupling capture (cape.steer.internals) on SmolLM2-135M.

    python benchmarks/internals_speed.py                 # 256 statements, 1 torch thread
    python benchmarks/internals_speed.py --quick         # 32 statements: a smoke run

Prints, from one run: statements per second of the capture (every block's pooled output and
every attention head's pooled input to the output projection, in one batched pass per batch:
``head_inputs(..., blocks=True)``) against a plain forward pass over the same statements in the
same batches without hooks (the limit), and their ratio. Threads are set explicitly
(``--threads``, default 1: one thread was measured faster than two on this busy 2-core
machine). It measures; it is not a test.
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
from bench_coupling import _cpu_snapshot, _loadavg, _others_share  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--statements", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.statements = 32
    import torch

    from cape.steer.data import default_set
    from cape.steer.internals import head_inputs, head_projections, reasoning_set
    from cape.steer.models import load_model

    torch.set_num_threads(args.threads)
    print(f"CAPE internal-coupling capture speed; torch threads {torch.get_num_threads()} (--threads {args.threads}); "
          f"load average at start {_loadavg()}")
    cpu0 = _cpu_snapshot()
    lm = load_model("smollm2-135m", threads=args.threads)
    pool = default_set().statements + reasoning_set(200, seed=0).statements
    statements = [pool[i % len(pool)] for i in range(args.statements)]
    modules, _, n_heads = head_projections(lm)
    tok = lm.tokenizer
    tok.padding_side = "left"
    batches = [tok(statements[i:i + args.batch_size], return_tensors="pt", padding=True)
               for i in range(0, len(statements), args.batch_size)]
    n_tokens = int(sum(int(b["attention_mask"].sum()) for b in batches))
    head_inputs(lm, statements[:args.batch_size], modules, blocks=True)  # warm-up
    t = time.perf_counter()
    head_inputs(lm, statements, modules, batch_size=args.batch_size, blocks=True)
    capture = time.perf_counter() - t
    with torch.inference_mode():
        lm.model(**batches[0], use_cache=False)
        t = time.perf_counter()
        for b in batches:
            b = dict(b)
            b["position_ids"] = (b["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            lm.model(**b, use_cache=False)
        plain = time.perf_counter() - t
    print(f"{len(statements)} statements ({n_tokens} tokens), batches of {args.batch_size}; {lm.n_layers} layers x "
          f"{n_heads} heads captured")
    print(f"capture {len(statements) / capture:,.1f} statements/s ({capture:.2f} s) vs plain forward "
          f"{len(statements) / plain:,.1f} statements/s ({plain:.2f} s): capture / plain = {plain / capture:.2f}")
    share = _others_share(cpu0, _cpu_snapshot(), os.cpu_count() or 1)
    print(f"other processes used {'?' if share is None else f'{share:.0%}'} of the CPU during the run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
