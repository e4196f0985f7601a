"""The preprint's steering protocol, reproduced, beside the two runs that show what it counts.

The preprint's tool (cape-scaling ``cli/cape_steer.py``) builds its truth direction from 8
true and 8 false statements (the mean last-token output of block ``n_layers // 4``, true
minus false, unit length), picks a strength from the prompt's cosine with it (3.0 / 1.5 /
0.5 / 0 at thresholds -0.1 / 0.1 / 0.3: :func:`cape.steer.apply.paper_strength`), adds
``strength * unit`` at the last position of every forward pass, and generates twice, once
without and once with the hook, each SAMPLED at temperature 0.7, top_p 0.9, 50 new tokens,
with no seed. A prompt counts as "corrected" when the two texts differ.

Two unsteered samples differ too. :func:`paper_protocol` therefore runs three conditions on
the same prompts and reports each "changed" share with its Wilson interval:

* ``paper``: the protocol as published (two independent samples, the second steered);
* ``alpha = 0``: the same two samples with no steering at all: what sampling alone changes;
* ``greedy``: steered vs unsteered with greedy decoding: what the steering alone changes.

The 16 statements are data from the preprint's MIT-licensed release
(``steer/data/preprint_calibration.json``, with its source); the 14 prompts are in
``../shared/data/cape-paper/self_aligning_demo_410m.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import CapeError

if TYPE_CHECKING:  # pragma: no cover
    from .models import LoadedModel
    from .vector import SteeringVector

__all__ = ["calibration", "paper_direction", "paper_prompts", "paper_protocol", "PaperProtocolResult",
           "PHASES"]

#: the preprint's names of the cosine bands (lowest first), as its tool prints them
PHASES = ("SEVERE_TAX", "MILD_TAX", "BALANCED", "BONUS")


def calibration() -> dict:
    """The preprint's calibration statements and decoding settings, with their source."""
    text = resources.files("cape.steer").joinpath("data/preprint_calibration.json").read_text(encoding="utf-8")
    return json.loads(text)


def paper_prompts(path: str | Path) -> list[dict]:
    """The preprint's demo prompts (``self_aligning_demo_410m.json``: ``results[*].name/prompt``),
    with what the preprint recorded for them (its model, cosine, strength, changed)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CapeError(f"{path}: no such file") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise CapeError(f"{path}: not a JSON file ({err})") from None
    rows = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(rows, list) or not rows:
        raise CapeError(f"{path}, field 'results': expected a list of prompts")
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not str(r.get("prompt") or "").strip():
            raise CapeError(f"{path}, results[{i}], field 'prompt': empty or missing")
        out.append({"name": str(r.get("name") or f"prompt_{i}"), "prompt": str(r["prompt"]),
                    "published_model": doc.get("model"), "published_cos": r.get("cos_truth"),
                    "published_strength": r.get("correction_strength"),
                    "published_changed": r.get("changed")})
    return out


def paper_direction(lm: "LoadedModel", *, layer: int | None = None) -> "SteeringVector":
    """The preprint's truth direction for ``lm``: mean block-``layer`` output (last token) of
    its 8 true statements minus that of its 8 false ones, unit length; ``layer`` defaults to
    ``n_layers // 4`` as in the preprint. Each statement is encoded on its own, as there."""
    from .extraction import activations
    from .vector import SteeringVector

    cal = calibration()
    layer = lm.n_layers // 4 if layer is None else int(layer)
    if not 0 <= layer < lm.n_layers:
        raise CapeError(f"layer {layer} is out of range (0-{lm.n_layers - 1})")
    acts = activations(lm, cal["true"] + cal["false"], batch_size=1, pooling="last")[:, layer, :]
    n_true = len(cal["true"])
    diff = acts[:n_true].astype(np.float64).mean(0) - acts[n_true:].astype(np.float64).mean(0)
    norm = float(np.linalg.norm(diff))
    if not norm > 0:
        raise CapeError("the preprint's calibration statements give a zero direction on this model")
    return SteeringVector({layer: (diff / norm).astype(np.float32)}, model_id=lm.model_id,
                          hidden_size=lm.hidden_size, n_layers=lm.n_layers, method="diffmean (preprint)",
                          pooling="last", layers_path=lm.layers_path,
                          stats={layer: {"raw_norm": norm}},
                          meta={"layer": layer, "source": cal["source"], "layer_rule": "quarter"})


@dataclass
class PaperProtocolResult:
    """Per prompt and condition: cosine, strength, phase, both texts, changed; and per
    condition the changed share with its Wilson interval."""

    rows: pd.DataFrame
    conditions: pd.DataFrame
    model_id: str
    layer: int
    settings: dict = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"preprint protocol on {self.model_id}, direction at block {self.layer} "
                 f"({self.settings.get('direction')})"]
        for r in self.conditions.to_dict("records"):
            lines.append(f"  {r['condition']:<9} {r['changed']:>2}/{r['n']} changed = {r['share']:.0%} "
                         f"[{r['ci_low']:.0%}, {r['ci_high']:.0%}]  ({r['what']})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        from ..schema import to_python

        return {"model": self.model_id, "layer": self.layer, "settings": self.settings,
                "conditions": [{k: to_python(v) for k, v in r.items()} for r in self.conditions.to_dict("records")],
                "rows": [{k: to_python(v) for k, v in r.items()} for r in self.rows.to_dict("records")]}


_WHAT = {
    "paper": "two independent samples (T 0.7, top_p 0.9), the second steered: the published count",
    "alpha=0": "the same two samples, neither steered: what sampling alone changes",
    "greedy": "greedy decoding, unsteered vs steered: what the steering alone changes",
}


def _generate_one(lm: "LoadedModel", prompt: str, *, sample: bool, settings: dict) -> str:
    import torch

    enc = lm.tokenizer(prompt, return_tensors="pt").to(lm.device)
    kw: dict[str, Any] = {"max_new_tokens": int(settings["max_new_tokens"]),
                          "pad_token_id": lm.tokenizer.pad_token_id or lm.tokenizer.eos_token_id}
    if sample:
        kw.update(do_sample=True, temperature=float(settings["temperature"]), top_p=float(settings["top_p"]),
                  top_k=0)
    else:
        kw.update(do_sample=False)
    with torch.inference_mode():
        ids = lm.model.generate(**enc, **kw)
    return lm.tokenizer.decode(ids[0], skip_special_tokens=True)  # prompt included, as the preprint compares


def paper_protocol(lm: "LoadedModel", prompts: Sequence[str] | Sequence[dict], *,
                   vector: "SteeringVector | None" = None, conditions: Sequence[str] = ("paper", "alpha=0", "greedy"),
                   seed: int | None = 0, max_new_tokens: int | None = None,
                   progress=None) -> PaperProtocolResult:
    """Run the preprint's protocol and its two controls on ``prompts`` (strings, or the dicts
    of :func:`paper_prompts`).

    ``vector``: a one-layer direction (default: :func:`paper_direction`, the preprint's).
    ``seed`` seeds torch's generator ONCE at the start, so a run can be repeated; the two
    samples of a prompt still draw different numbers, as the preprint's unseeded calls do
    (``seed=None`` leaves the generator alone, exactly as the preprint).
    """
    import torch

    from .apply import PAPER_THRESHOLDS, paper_steer

    cal = calibration()
    settings = dict(cal["decoding"])
    if max_new_tokens is not None:
        settings["max_new_tokens"] = int(max_new_tokens)
    unknown = [c for c in conditions if c not in _WHAT]
    if unknown or not conditions:
        raise CapeError(f"unknown condition(s) {unknown}; use {', '.join(_WHAT)}")
    items = [p if isinstance(p, dict) else {"name": f"prompt_{i}", "prompt": str(p)} for i, p in enumerate(prompts)]
    if not items:
        raise CapeError("no prompts")
    vector = vector if vector is not None else paper_direction(lm)
    if len(vector.layers) != 1:
        raise CapeError(f"the preprint's rule steers one layer; this vector has {vector.layers}")
    layer = vector.layers[0]
    unit = torch.from_numpy(vector.directions[layer] / np.float32(np.linalg.norm(vector.directions[layer])))
    if seed is not None:
        torch.manual_seed(int(seed))
    rows = []
    total, done = len(items) * len(conditions), 0
    for cond in conditions:
        for item in items:
            prompt = item["prompt"]
            sample = cond != "greedy"
            normal = _generate_one(lm, prompt, sample=sample, settings=settings)
            if cond == "alpha=0":
                with paper_steer(lm.model, unit, layer, strengths=(0.0, 0.0, 0.0, 0.0),
                                 layers_path=lm.layers_path) as handle:
                    steered = _generate_one(lm, prompt, sample=sample, settings=settings)
            else:
                with paper_steer(lm.model, unit, layer, layers_path=lm.layers_path) as handle:
                    steered = _generate_one(lm, prompt, sample=sample, settings=settings)
            cos = float(handle.cosine[0])
            strength = float(handle.strength[0])
            phase = PHASES[int(np.searchsorted(PAPER_THRESHOLDS, cos, side="right"))]
            rows.append({"condition": cond, "name": item["name"], "prompt": prompt, "cos": cos,
                         "strength": strength, "phase": phase, "normal": normal, "steered": steered,
                         "changed": normal != steered,
                         "published_changed": item.get("published_changed")})
            done += 1
            if progress:
                progress(done, total)
    frame = pd.DataFrame(rows)
    from ..stats import wilson_interval

    summary = []
    for cond in conditions:
        sub = frame[frame["condition"] == cond]
        k, n = int(sub["changed"].sum()), len(sub)
        lo, hi = wilson_interval(k, n)
        summary.append({"condition": cond, "changed": k, "n": n, "share": k / n, "ci_low": float(lo),
                        "ci_high": float(hi), "what": _WHAT[cond]})
    settings.update(seed=seed, direction=vector.method, conditions=list(conditions))
    return PaperProtocolResult(frame, pd.DataFrame(summary), lm.model_id, layer, settings)
