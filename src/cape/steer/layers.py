"""Layer discovery: where the decoder blocks of a causal LM live, and what a block returns.

:func:`find_layers` returns the dotted path and the ``ModuleList`` of decoder blocks, in this
order of preference:

1. an explicit override (``layers="model.layers"``; the CLI's ``--layers``), checked;
2. the known paths of the supported families: ``model.layers`` (Llama, Mistral, Qwen2/3,
   Gemma 1-3, Phi, OLMo, SmolLM), ``gpt_neox.layers`` (GPT-NeoX, Pythia), ``transformer.h``
   (GPT-2, BLOOM, Falcon, GPT-J), ``model.decoder.layers`` (OPT), and the same paths nested
   in a multimodal model's text model (``model.language_model.layers``,
   ``language_model.model.layers``, ...): a path that ends in a known one and lies outside a
   vision/audio tower, preferring the list whose length is the text config's layer count;
3. a generic fallback as in steering-vectors: the ``name.N`` module list with most entries
   (ties: the shorter path), not nested inside another list.

Nothing found is a :class:`~cape.errors.CapeError` that says how to override.

:func:`hidden_of` and :func:`with_hidden` read and replace the hidden states in a block's
output, which is a plain tensor in transformers 5 (Llama, GPT-2, OPT, ...) and a tuple
``(hidden, ...)`` in older versions and some families (BLOOM, Falcon).

>>> path, blocks = find_layers(model)          # doctest: +SKIP
>>> path, len(blocks)                          # doctest: +SKIP
('model.layers', 30)
"""

from __future__ import annotations

from typing import Any

from ._deps import require

require("torch")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from ..errors import CapeError  # noqa: E402

__all__ = ["KNOWN_LAYER_PATHS", "find_layers", "hidden_of", "with_hidden", "hidden_size_of",
           "text_config", "OVERRIDE_HINT"]

#: Decoder-block paths of the supported families, most common first.
KNOWN_LAYER_PATHS: tuple[str, ...] = (
    "model.layers",            # Llama, Mistral, Qwen2/3, Gemma 1-3, Phi, Phi-3, OLMo 1/2, SmolLM
    "model.language_model.layers",   # transformers 5 multimodal (Gemma 3, LLaVA, Qwen2-VL, ...)
    "gpt_neox.layers",         # GPT-NeoX, Pythia
    "transformer.h",           # GPT-2, BLOOM, Falcon, GPT-J, StarCoder
    "model.decoder.layers",    # OPT
    "transformer.blocks",      # MPT, old OLMo
    "model.transformer.blocks",
    "transformer.layers",      # ChatGLM-style
    "layers",                  # a bare base model (LlamaModel, ...)
    "h",                       # a bare GPT-2 / BLOOM base model
    "decoder.layers",          # a bare OPT base model
)

# path components that mark a non-text tower in a multimodal model
_NON_TEXT = ("vision", "visual", "image", "audio", "speech", "vit", "encoder", "projector")

OVERRIDE_HINT = ("pass the dotted path of the decoder-block list: load_model(..., layers='model.layers') "
                 "or --layers model.layers")


def text_config(model: nn.Module) -> Any:
    """The text (decoder) part of a model's config, or ``None`` when it has no config."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    getter = getattr(config, "get_text_config", None)
    if callable(getter):
        try:
            return getter(decoder=True)
        except TypeError:  # transformers without the keyword
            return getter()
    return config


def _config_layer_count(model: nn.Module) -> int | None:
    cfg = text_config(model)
    for key in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def hidden_size_of(model: nn.Module) -> int | None:
    """The residual-stream width from the (text) config: ``hidden_size``, ``n_embd`` or ``d_model``."""
    cfg = text_config(model)
    for key in ("hidden_size", "n_embd", "d_model"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _is_block_list(module: Any) -> bool:
    return isinstance(module, (nn.ModuleList, nn.Sequential)) and len(module) > 0


def _get(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path) if path else model
    except AttributeError:
        return None


def _generic_guess(model: nn.Module) -> str | None:
    """steering-vectors' rule: the ``name.N`` list with most entries, then the shorter path."""
    best: tuple[float, str] | None = None
    for name, module in model.named_modules():
        if not name or not _is_block_list(module):
            continue
        if any(part.isdigit() for part in name.split(".")):
            continue  # a list inside another list's entry (e.g. per-block experts)
        if next(module.parameters(), None) is None:
            continue  # a list without weights is not a stack of blocks
        score = len(module) + 1.0 / (1 + len(name))
        if best is None or score > best[0]:
            best = (score, name)
    return None if best is None else best[1]


def find_layers(model: nn.Module, override: str | None = None) -> tuple[str, nn.ModuleList]:
    """``(path, blocks)``: the dotted path and the list of decoder blocks of ``model``.

    ``override`` is a dotted path (``"model.layers"``) that is used as given (checked to be a
    non-empty module list). Without it, known paths are tried, then paths that end in a known
    one (a multimodal model's text decoder), then the generic fallback (the most frequent
    ``name.N`` list). Raises :class:`CapeError` when nothing is found, saying how to override.
    """
    if not isinstance(model, nn.Module):
        raise CapeError(f"find_layers needs a torch model (nn.Module), not {type(model).__name__}")
    kind = type(model).__name__
    if override is not None and str(override).strip():
        path = str(override).strip()
        module = _get(model, path)
        if module is None:
            raise CapeError(f"layers path '{path}' does not exist in {kind}", hint=OVERRIDE_HINT)
        if not _is_block_list(module):
            raise CapeError(f"layers path '{path}' in {kind} is a {type(module).__name__}, not a non-empty "
                            "list of decoder blocks", hint=OVERRIDE_HINT)
        return path, module

    expected = _config_layer_count(model)
    # candidates: the known paths, and known paths nested in a wrapper (multimodal models, PEFT
    # wrappers) outside vision/audio towers; best: the layer count of the text config, then an
    # exact known path (in the order of KNOWN_LAYER_PATHS), then the shallower nested path
    candidates = []
    for rank, path in enumerate(KNOWN_LAYER_PATHS):
        module = _get(model, path)
        if module is not None and _is_block_list(module):
            candidates.append((expected is None or len(module) == expected, 1, -rank, path, module))
    for name, module in model.named_modules():
        if not name or not _is_block_list(module) or name in KNOWN_LAYER_PATHS:
            continue
        parts = name.split(".")
        if any(part.isdigit() or any(tag in part.lower() for tag in _NON_TEXT) for part in parts):
            continue
        if any(name.endswith("." + known) for known in KNOWN_LAYER_PATHS):
            candidates.append((expected is None or len(module) == expected, 0, -len(parts), name, module))
    if candidates:
        best = max(candidates, key=lambda item: item[:3])
        return best[3], best[4]

    guess = _generic_guess(model)
    if guess is not None:
        return guess, model.get_submodule(guess)
    raise CapeError(f"cannot find the decoder layers of {kind} (no known path and no 'name.N' module list)",
                    hint=OVERRIDE_HINT)


def hidden_of(output: Any) -> torch.Tensor:
    """The hidden states ``[batch, seq, hidden]`` in a block's output (a tensor or a tuple)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise CapeError(f"a decoder block returned {type(output).__name__}, not a tensor or a tuple starting "
                    "with the hidden states; is the layers path right?", hint=OVERRIDE_HINT)


def with_hidden(output: Any, new: torch.Tensor) -> Any:
    """``output`` with its hidden states replaced by ``new`` (same container type)."""
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, tuple):
        return (new, *output[1:])
    if isinstance(output, list):
        return [new, *output[1:]]
    raise CapeError(f"a decoder block returned {type(output).__name__}, not a tensor or a tuple",
                    hint=OVERRIDE_HINT)
