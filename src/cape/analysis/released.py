"""What the preprint's released internal-coupling files can and cannot show.

The release behind claims A7 (Qwen generations), A8 (Gemma-4) and A16 (competing heads)
gives final numbers, not activations (``cape/audit/data/released_internals.json``, extracted
from ``../shared/data/cape-paper`` by ``tools/build_released_internals.py``). Two checks
need no activations:

* **degenerate per-layer values**: a file whose per-layer couplings (or early / mid / late
  summaries) spread by less than :data:`DEGENERATE_SPREAD` across layers. A cosine that does
  not move by 1e-6 between the first and the last layer of a transformer is not measuring
  anything layer-specific; it is what an uncentred cosine dominated by the residual stream's
  shared mean direction gives (``cape steer internals`` shows raw against centred);
* **values shared across models**: different models (other sizes, other families) whose net
  coupling agrees to within :data:`SAME_VALUE`: the number then depends on something the
  models share (tokenizer, prompts), not on the model.

A "competing" head needs a per-pair cosine below -0.5 (METHODS section 10); in a file whose
couplings all sit near +0.97, no head can be competing, so a count of zero there is what the
measure gives by construction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd

__all__ = ["DEGENERATE_SPREAD", "SAME_VALUE", "released_internals", "ReleasedInternals", "check_records"]

#: spread (max - min) of per-layer values below which a file is degenerate
DEGENERATE_SPREAD = 1e-6
#: net couplings of two models closer than this are "the same value"
SAME_VALUE = 1e-6


def _spread(rec: dict) -> tuple[float, str]:
    values = rec.get("per_layer")
    if values:
        v = np.asarray(values, dtype=float)
        return float(v.max() - v.min()), f"{len(v)} per-layer values"
    parts = [rec.get(k) for k in ("early", "mid", "late")]
    if all(isinstance(p, (int, float)) for p in parts):
        v = np.asarray(parts, dtype=float)
        return float(v.max() - v.min()), "early/mid/late values"
    return float("nan"), "no per-layer values"


def check_records(models: list[dict]) -> pd.DataFrame:
    """One row per released model file: file, model, n_layers, units, net, competing,
    spread (max - min across layers), what the spread is over, degenerate, same_net_as (the
    other files whose net coupling is within :data:`SAME_VALUE`)."""
    rows = []
    for rec in models:
        spread, over = _spread(rec)
        rows.append({"file": rec["file"], "model": rec.get("model"), "n_layers": rec.get("n_layers"),
                     "units": rec.get("units"), "net": rec.get("net"), "competing": rec.get("competing"),
                     "spread": spread, "spread_over": over,
                     "degenerate": bool(np.isfinite(spread) and spread < DEGENERATE_SPREAD)})
    frame = pd.DataFrame(rows)
    net = frame["net"].to_numpy(dtype=float)
    close = np.abs(net[:, None] - net[None, :]) < SAME_VALUE
    np.fill_diagonal(close, False)
    frame["same_net_as"] = [list(frame["file"][close[i]]) for i in range(len(frame))]
    return frame


@dataclass
class ReleasedInternals:
    """The checked model files (``table``), the Qwen generations and the Gemma-4 file as
    released (``qwen``, ``gemma4``)."""

    table: pd.DataFrame
    qwen: pd.DataFrame
    gemma4: dict
    source: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        t = self.table
        lines = [f"released internal-coupling files ({self.source})",
                 f"  {int(t['degenerate'].sum())} of {len(t)} files have per-layer values spread below "
                 f"{DEGENERATE_SPREAD:g} across layers"]
        for r in t.to_dict("records"):
            same = f"; same net as {', '.join(r['same_net_as'])}" if r["same_net_as"] else ""
            lines.append(f"  {r['file']}: {r['model']}, net {r['net']}, competing {r['competing']}, spread "
                         f"{r['spread']:.2g} over {r['spread_over']}{' (degenerate)' if r['degenerate'] else ''}"
                         f"{same}")
        return "\n".join(lines)


def released_internals() -> ReleasedInternals:
    """Load the bundled release extract and run :func:`check_records`."""
    text = resources.files("cape.audit").joinpath("data", "released_internals.json").read_text(encoding="utf-8")
    doc = json.loads(text)
    return ReleasedInternals(check_records(doc["models"]), pd.DataFrame(doc["qwen_generation"]["models"]),
                             doc["gemma4"], doc["source"])
