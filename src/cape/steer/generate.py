"""Text from a model, unsteered and steered, decoded the same way so that a difference is the
steering's and not the sampler's.

Greedy decoding by default. Sampling (``temperature``) needs a ``seed``, and the same seed is
used for the unsteered and the steered run: the preprint compared two unseeded samples at
temperature 0.7, so its "changed" texts changed by chance too (METHODS section 10).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import CapeError

if TYPE_CHECKING:  # pragma: no cover
    from .models import LoadedModel
    from .vector import SteeringVector

__all__ = ["generate", "compare", "prompt_texts"]


def prompt_texts(lm: "LoadedModel", prompts: Sequence[str], *, chat: bool = False) -> list[str]:
    """The prompts as the model reads them: with ``chat``, wrapped in the tokenizer's chat
    template as one user turn with the generation prompt (an error if it has none)."""
    prompts = [str(p) for p in prompts]
    if not prompts or any(not p.strip() for p in prompts):
        raise CapeError("a prompt is empty")
    if not chat:
        return prompts
    tok = lm.tokenizer
    if not getattr(tok, "chat_template", None):
        raise CapeError(f"model '{lm.model_id}' has no chat template", hint="leave out --chat")
    return [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                    tokenize=False) for p in prompts]


def generate(lm: "LoadedModel", prompts: Sequence[str], *, max_new_tokens: int = 40,
             seed: int | None = None, temperature: float | None = None, chat: bool = False,
             batch_size: int = 8) -> list[str]:
    """Continuations of ``prompts`` (new text only), in left-padded batches with a KV cache.

    Greedy unless ``temperature`` is given; sampling requires ``seed`` (``torch.manual_seed``
    before each batch), so that a run can be repeated exactly.
    """
    import torch

    if max_new_tokens < 1:
        raise CapeError(f"max_new_tokens must be >= 1, not {max_new_tokens}")
    if temperature is not None and seed is None:
        raise CapeError("sampling (a temperature) needs a seed, so that steered and unsteered "
                        "runs draw the same random numbers", hint="pass --seed N, or leave out "
                        "--temperature for greedy decoding")
    if temperature is not None and not temperature > 0:
        raise CapeError(f"temperature must be > 0, not {temperature}")
    texts = prompt_texts(lm, prompts, chat=chat)
    tok, model = lm.tokenizer, lm.model
    if tok is None:
        raise CapeError(f"model '{lm.model_id}' has no tokenizer")
    old_side = getattr(tok, "padding_side", "left")
    tok.padding_side = "left"
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out: list[str] = []
    try:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=not chat)
            enc = {k: v.to(lm.device) for k, v in enc.items()}
            kw: dict[str, Any] = {"max_new_tokens": int(max_new_tokens), "pad_token_id": pad}
            if temperature is None:
                kw["do_sample"] = False
            else:
                kw.update(do_sample=True, temperature=float(temperature), top_k=0)
                torch.manual_seed(int(seed) + start)
            with torch.inference_mode():
                ids = model.generate(**enc, **kw)
            new = ids[:, enc["input_ids"].shape[1]:]
            out.extend(tok.batch_decode(new, skip_special_tokens=True))
    finally:
        tok.padding_side = old_side
    return out


def compare(lm: "LoadedModel", vector: "SteeringVector", prompts: Sequence[str], *, alpha: float,
            unit: str = "sd", layers: int | Sequence[int] | None = None, mode: str = "hook",
            positions: str = "all", max_new_tokens: int = 40, seed: int | None = None,
            temperature: float | None = None, chat: bool = False) -> pd.DataFrame:
    """Unsteered and steered continuations of each prompt, decoded identically.

    Returns one row per prompt: ``prompt``, ``unsteered``, ``steered``, ``changed`` (the texts
    differ), and ``attrs["cape"]`` with the settings (alpha, unit, layers, mode, decoding).
    ``layers`` defaults to the layer the vector was extracted for (``meta["layer"]``), else
    every layer it holds.
    """
    if layers is None and "layer" in vector.meta and vector.meta["layer"] in vector.directions:
        layers = [int(vector.meta["layer"])]
    kw = dict(max_new_tokens=max_new_tokens, seed=seed, temperature=temperature, chat=chat)
    plain = generate(lm, prompts, **kw)
    with vector.apply(lm, alpha, layers=layers, unit=unit, positions=positions, mode=mode) as handle:
        steered = generate(lm, prompts, **kw)
    frame = pd.DataFrame({"prompt": [str(p) for p in prompts], "unsteered": plain, "steered": steered})
    frame["changed"] = frame["unsteered"] != frame["steered"]
    frame.attrs["cape"] = {
        "model": lm.model_id, "alpha": float(alpha), "unit": unit, "mode": mode, "positions": positions,
        "layers": sorted(int(x) for x in getattr(handle, "layers", None) or (layers or vector.layers)),
        "decoding": "greedy" if temperature is None else f"sampled (temperature {temperature}, seed {seed})",
        "max_new_tokens": int(max_new_tokens), "chat": bool(chat),
        "paper_strength": getattr(handle, "strength", None) if mode == "paper" else None,
    }
    return frame
