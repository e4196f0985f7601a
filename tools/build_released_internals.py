#!/usr/bin/env python3
"""Extract the preprint's released internal-coupling numbers into CAPE's audit data.

    python tools/build_released_internals.py [--shared ../shared] [--out src/cape/audit/data/released_internals.json]

Reads ../shared/data/cape-paper (the preprint's release, MIT licence): the per-model layer
files ``layer_*_tl.json``, ``*_internal*.json``, ``qwen_generation.json`` and
``gemma4_results.json``, and writes the numbers the audit checks (per file: model, layers,
units, net coupling, competing count, per-layer couplings or early/mid/late) as one JSON
file, values exactly as released. ``--check`` compares with the shipped file instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "cape" / "audit" / "data" / "released_internals.json"


def _first(d: dict, *keys):
    for k in keys:
        if k in d:
            return d[k]
    return None


def build(shared: Path) -> dict:
    folder = shared / "data" / "cape-paper"
    files = sorted(folder.glob("layer_*_tl.json")) + sorted(folder.glob("*internal*.json"))
    if not files:
        raise SystemExit(f"{folder}: no layer_*_tl.json or *internal*.json files")
    models = []
    for f in files:
        d = json.loads(f.read_text(encoding="utf-8"))
        models.append({
            "file": f.name,
            "model": _first(d, "model", "model_name"),
            "n_layers": _first(d, "n_layers", "layers"),
            "units": _first(d, "total_heads", "total_units", "heads"),
            "net": _first(d, "net_coupling", "net"),
            "competing": _first(d, "competing_count", "competing"),
            "cooperative_pct": _first(d, "cooperative_pct", "coop_pct"),
            "per_layer": d.get("per_layer_coupling"),
            "early": _first(d, "early_coupling", "early"),
            "mid": _first(d, "mid_coupling", "mid"),
            "late": _first(d, "late_coupling", "late"),
        })
    qwen = json.loads((folder / "qwen_generation.json").read_text(encoding="utf-8"))
    generations = [{"generation": gen, "model": name, "params_B": v.get("params_B"), "net": v.get("net"),
                    "cooperative": v.get("coop"), "competing": v.get("comp")}
                   for gen in ("qwen2.5", "qwen3") for name, v in qwen[gen].items()]
    gemma = json.loads((folder / "gemma4_results.json").read_text(encoding="utf-8"))
    return {
        "source": "../shared/data/cape-paper: the preprint's release (MIT licence, (c) 2026 Adil Amin); values as "
                  "released, extracted by tools/build_released_internals.py",
        "models": models,
        "qwen_generation": {"file": "qwen_generation.json", "models": generations},
        "gemma4": {"file": "gemma4_results.json", "model": gemma.get("model"), "params_B": gemma.get("N_B"),
                   "pairs": {k: v.get("net") for k, v in gemma.get("coupling", {}).items()},
                   "comparison_to_base": gemma.get("comparison_to_base")},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = json.dumps(build(args.shared), indent=1, sort_keys=True) + "\n"
    if args.check:
        same = args.out.read_text(encoding="utf-8") == text
        print("released_internals.json matches ../shared" if same else "released_internals.json DIFFERS")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
