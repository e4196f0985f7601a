"""Applying directions: add a vector to the OUTPUT of decoder blocks, reversibly.

:func:`steer` is a context manager. ``directions[N]`` (already scaled, shape ``[hidden]``) is
added to the output of block ``N`` (0-based, the blocks :func:`~cape.steer.layers.find_layers`
finds: the index llama.cpp's ``direction.N`` and :mod:`cape.steer.extraction` use). On exit,
normal or by an exception, every hook is removed and every weight restored, so the model
computes exactly what it computed before.

Modes:

- ``mode="hook"`` (default): a forward hook on each block adds the vector. ``positions``:
  ``"all"`` every position of every forward; ``"prompt"`` the positions of the prompt pass (a
  forward that starts with an empty KV cache: all its positions, padding included, which the
  attention mask hides anyway); ``"generated"`` the positions after the prompt (decode steps
  of ``generate`` with its KV cache). Position = index in the (left-padded) batch: past
  length + offset. The past length is read when the base model (the module holding the
  block list) is called: its KV cache's ``get_seq_length()``, else ``cache_position``, else
  the 2-D attention mask's length minus the new tokens. Generation with ``use_cache=False``
  re-runs the whole sequence, and every such forward counts as a prompt pass.
- ``mode="folded"``: the vector becomes the bias of the block's last linear layer (the MLP's
  down projection, whose output is added straight into the residual stream), created where
  the layer has none: no per-token Python at all. Only ``positions="all"``. Refused for blocks
  that normalise the MLP output before the residual addition (Gemma 2/3 and OLMo 2's
  ``post_feedforward_layernorm``, post-norm OPT) or route through experts (MoE), where a
  bias is not the same as adding to the block output. Weights are restored bit for bit.

:func:`paper_steer` is the preprint's rule, kept for comparison (METHODS section 10): a UNIT
vector added at the LAST position only, with a strength chosen from the cosine between the
prompt's last-position output of that block and the direction (:func:`paper_strength`).

>>> import torch                                                       # doctest: +SKIP
>>> with steer(model, {5: 4.0 * unit}, positions="generated"):         # doctest: +SKIP
...     out = model.generate(**batch, max_new_tokens=20, do_sample=False)
"""

from __future__ import annotations

import operator
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from ._deps import require

require("torch")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from ..errors import CapeError  # noqa: E402
from .layers import find_layers, hidden_of, hidden_size_of, with_hidden  # noqa: E402

__all__ = ["POSITIONS", "MODES", "PAPER_THRESHOLDS", "PAPER_STRENGTHS", "Steering", "steer", "paper_steer",
           "paper_strength", "output_linear"]

POSITIONS = ("all", "prompt", "generated")
MODES = ("hook", "folded")
#: the preprint's cosine thresholds and the unit-vector strengths of the bands they bound
PAPER_THRESHOLDS = (-0.1, 0.1, 0.3)
PAPER_STRENGTHS = (3.0, 1.5, 0.5, 0.0)

# names of sub-modules after which a bias on the last linear layer is not an addition to the
# block output: a norm of the MLP output (Gemma 2/3, OLMo 2) or mixture-of-experts routing
_NOT_FOLDABLE = re.compile(r"post_(feedforward|ff|ffn|mlp)(_layer)?_?norm|expert|router|moe", re.IGNORECASE)


@dataclass
class Steering:
    """What a :func:`steer` / :func:`paper_steer` context applies (yielded by the context).

    ``cosine`` and ``strength`` (paper mode only): per batch row, the cosine of the prompt's
    last-position block output with the direction and the strength it gave, from the latest
    prompt pass."""

    layers_path: str
    layers: tuple[int, ...]
    mode: str
    positions: str
    cosine: torch.Tensor | None = None
    strength: torch.Tensor | None = None
    _removers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def remove(self) -> None:
        """Remove every hook and restore every weight (idempotent; the context calls it)."""
        errors = []
        while self._removers:
            undo = self._removers.pop()
            try:
                undo()
            except Exception as err:  # noqa: BLE001 - undo the rest, then report
                errors.append(err)
        if errors:
            raise errors[0]


@dataclass
class _PassState:
    """Where the current forward pass starts (past length) and where the prompt ended."""

    past: int = 0
    prompt_end: int | None = None


def _unwrap(model: Any, layers_path: str | None) -> tuple[nn.Module, str | None]:
    """A LoadedModel gives its model and layers path; a torch module is used as is."""
    if not isinstance(model, nn.Module) and isinstance(getattr(model, "model", None), nn.Module):
        return model.model, layers_path if layers_path is not None else getattr(model, "layers_path", None)
    if not isinstance(model, nn.Module):
        raise CapeError(f"steering needs a torch model or a LoadedModel, not {type(model).__name__}")
    return model, layers_path


def _layer_index(key: Any, n_blocks: int, path: str) -> int:
    if isinstance(key, bool):
        raise CapeError(f"layer {key!r} is not a block index (an int 0 .. {n_blocks - 1})")
    try:
        n = operator.index(key)
    except TypeError:
        raise CapeError(f"layer {key!r} is not a block index (an int 0 .. {n_blocks - 1})") from None
    if not 0 <= n < n_blocks:
        raise CapeError(f"layer {n} is out of range: the model has {n_blocks} blocks at {path} "
                        f"(0 .. {n_blocks - 1})")
    return n


def _vector(value: Any, layer: int, hidden: int | None) -> torch.Tensor:
    try:
        vec = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError) as err:
        raise CapeError(f"direction for layer {layer} is not numeric: {err}") from None
    vec = vec.detach().to("cpu", torch.float32)
    if vec.ndim == 2 and vec.shape[0] == 1:  # lm-eval's [1, hidden]
        vec = vec[0]
    if vec.ndim != 1:
        raise CapeError(f"direction for layer {layer} has shape {tuple(vec.shape)}; expected [hidden]")
    if hidden is not None and vec.shape[0] != hidden:
        raise CapeError(f"direction for layer {layer} has {vec.shape[0]} values but the model's hidden size is "
                        f"{hidden}: a vector from another model?")
    if not torch.isfinite(vec).all():
        raise CapeError(f"direction for layer {layer} has NaN or infinite values")
    return vec


def _prepare(model: Any, directions: Mapping[Any, Any], layers_path: str | None):
    model, layers_path = _unwrap(model, layers_path)
    path, blocks = find_layers(model, layers_path)
    if not isinstance(directions, Mapping) or not directions:
        raise CapeError("no directions to apply: give {layer index: vector}")
    hidden = hidden_size_of(model)
    vecs: dict[int, torch.Tensor] = {}
    for key, value in directions.items():
        n = _layer_index(key, len(blocks), path)
        vecs[n] = _vector(value, n, hidden)
    return model, path, blocks, dict(sorted(vecs.items()))


def _past_length(args: tuple, kwargs: dict) -> int:
    """Tokens already in the KV cache when a base model is called (0 for a prompt pass)."""
    for key in ("cache", "past_key_values", "past_key_value", "layer_past"):
        value = kwargs.get(key)
        if value is None:
            continue
        get = getattr(value, "get_seq_length", None)
        if callable(get):
            return int(get())
        if isinstance(value, (tuple, list)) and value and isinstance(value[0], (tuple, list)) and value[0] \
                and isinstance(value[0][0], torch.Tensor):
            return int(value[0][0].shape[-2])  # legacy tuple cache [batch, heads, seq, head_dim]
    position = kwargs.get("cache_position")
    if isinstance(position, torch.Tensor) and position.numel():
        return int(position.reshape(-1)[0])
    mask = kwargs.get("attention_mask")
    new = kwargs.get("input_ids")
    if new is None:
        new = kwargs.get("inputs_embeds")
    if new is None and args and isinstance(args[0], torch.Tensor):
        new = args[0]
    if isinstance(mask, torch.Tensor) and mask.ndim == 2 and isinstance(new, torch.Tensor) and new.ndim >= 2:
        return max(0, int(mask.shape[-1]) - int(new.shape[1]))
    return 0


def _owner(model: nn.Module, path: str) -> nn.Module:
    """The module holding the block list (called once per forward, before any block)."""
    parent = path.rsplit(".", 1)[0] if "." in path else ""
    return model.get_submodule(parent) if parent else model


def _track_passes(model: nn.Module, path: str, state: _PassState) -> Callable[[], None]:
    def pre_hook(module, args, kwargs):
        state.past = _past_length(args, kwargs)
        if state.past == 0:
            state.prompt_end = None  # set by the first steered block of this pass
        return None

    handle = _owner(model, path).register_forward_pre_hook(pre_hook, with_kwargs=True)
    return handle.remove


class _OnDevice:
    """A CPU float32 vector, cached on the device and in the dtype of the hidden states."""

    def __init__(self, vec: torch.Tensor, layer: int):
        self.vec, self.layer, self.cache = vec, layer, {}

    def like(self, h: torch.Tensor) -> torch.Tensor:
        key = (h.device, h.dtype)
        out = self.cache.get(key)
        if out is None:
            if h.shape[-1] != self.vec.shape[0]:
                raise CapeError(f"direction for layer {self.layer} has {self.vec.shape[0]} values but block "
                                f"{self.layer} outputs width {h.shape[-1]}: a vector from another model?")
            out = self.cache[key] = self.vec.to(device=h.device, dtype=h.dtype)
        return out


def _hook(vec: _OnDevice, positions: str, state: _PassState):
    if positions == "all":
        def add_all(module, args, output):
            h = hidden_of(output)
            return with_hidden(output, h + vec.like(h))
        return add_all

    want_prompt = positions == "prompt"

    def add_some(module, args, output):
        h = hidden_of(output)
        start, length = state.past, h.shape[1]
        if state.prompt_end is None:
            state.prompt_end = start + length
        end = state.prompt_end
        if start + length <= end:       # the whole chunk is prompt
            chosen = want_prompt
        elif start >= end:              # the whole chunk is generated
            chosen = not want_prompt
        else:                           # a chunk across the boundary
            index = torch.arange(start, start + length, device=h.device)
            mask = (index < end) if want_prompt else (index >= end)
            return with_hidden(output, h + mask[None, :, None].to(h.dtype) * vec.like(h))
        return with_hidden(output, h + vec.like(h)) if chosen else None
    return add_some


def output_linear(block: nn.Module, hidden: int | None = None) -> tuple[str, nn.Module]:
    """``(name, module)``: the linear layer whose output a block adds straight to its residual
    stream (the last ``nn.Linear`` / GPT-2 ``Conv1D`` registered in the block), for folding.
    Raises CapeError when a bias there would not be an addition to the block output."""
    names = [name for name, _ in block.named_modules()]
    bad = [name for name in names if _NOT_FOLDABLE.search(name)]
    if bad:
        raise CapeError(f"folded mode cannot steer a {type(block).__name__}: its '{bad[0]}' comes between the "
                        "last linear layer and the residual stream", hint="use mode='hook'")
    if getattr(block, "do_layer_norm_before", True) is False:
        raise CapeError(f"folded mode cannot steer a post-norm {type(block).__name__} (a layer norm follows "
                        "the residual addition)", hint="use mode='hook'")
    linears = [(name, m) for name, m in block.named_modules()
               if isinstance(m, nn.Linear) or (type(m).__name__ == "Conv1D" and hasattr(m, "nf"))]
    if not linears:
        raise CapeError(f"folded mode found no linear layer in {type(block).__name__}", hint="use mode='hook'")
    name, linear = linears[-1]
    width = linear.out_features if isinstance(linear, nn.Linear) else int(linear.nf)
    if hidden is not None and width != hidden:
        raise CapeError(f"folded mode: the last linear layer of {type(block).__name__} ('{name}') has {width} "
                        f"outputs, not the hidden size {hidden}", hint="use mode='hook'")
    return name, linear


def _fold(linear: nn.Module, vec: torch.Tensor) -> Callable[[], None]:
    weight = linear.weight
    with torch.no_grad():
        if getattr(linear, "bias", None) is None:
            linear.bias = nn.Parameter(vec.to(device=weight.device, dtype=weight.dtype).clone(),
                                       requires_grad=False)

            def undo() -> None:
                linear.bias = None
            return undo
        bias = linear.bias
        saved = bias.detach().clone()
        bias.add_(vec.to(device=bias.device, dtype=bias.dtype))

    def restore() -> None:
        with torch.no_grad():
            bias.copy_(saved)
    return restore


@contextmanager
def steer(model: Any, directions: Mapping[int, Any], *, positions: str = "all", mode: str = "hook",
          layers_path: str | None = None) -> Iterator[Steering]:
    """Add ``directions[N]`` to the output of block ``N`` inside the ``with`` block.

    ``model``: a transformers model (or any torch model, with ``layers_path`` when discovery
    fails) or a :class:`~cape.steer.models.LoadedModel`. ``directions``: ``{block index:
    vector [hidden]}``, already scaled (torch or numpy). ``positions``: ``"all"``, ``"prompt"``,
    ``"generated"`` (see the module doc). ``mode``: ``"hook"`` or ``"folded"`` (positions
    ``"all"`` only). Yields a :class:`Steering`. Raises CapeError for an index out of range, a
    vector whose length is not the model's hidden size, or an unknown mode/positions.
    """
    if positions not in POSITIONS:
        raise CapeError(f"positions '{positions}' is not one of {', '.join(POSITIONS)}")
    if mode not in MODES:
        hint = "mode='paper' is cape.steer.apply.paper_steer" if mode == "paper" else None
        raise CapeError(f"mode '{mode}' is not one of {', '.join(MODES)}", hint=hint)
    if mode == "folded" and positions != "all":
        raise CapeError(f"folded mode adds to every position; positions='{positions}' needs mode='hook'")
    model, path, blocks, vecs = _prepare(model, directions, layers_path)
    handle = Steering(layers_path=path, layers=tuple(vecs), mode=mode, positions=positions)
    try:
        if mode == "folded":
            hidden = hidden_size_of(model)
            targets = [(output_linear(blocks[n], hidden)[1], vec) for n, vec in vecs.items()]  # check all first
            for linear, vec in targets:
                handle._removers.append(_fold(linear, vec))
        else:
            state = _PassState()
            if positions != "all":
                handle._removers.append(_track_passes(model, path, state))
            for n, vec in vecs.items():
                hook = blocks[n].register_forward_hook(_hook(_OnDevice(vec, n), positions, state))
                handle._removers.append(hook.remove)
        yield handle
    finally:
        handle.remove()


def paper_strength(cosine: Any, thresholds: Sequence[float] = PAPER_THRESHOLDS,
                   strengths: Sequence[float] = PAPER_STRENGTHS) -> Any:
    """The preprint's strength for a cosine: band ``i`` of the sorted thresholds gives
    ``strengths[i]``. With the defaults: cos < -0.1 -> 3.0; -0.1 <= cos < 0.1 -> 1.5;
    0.1 <= cos < 0.3 -> 0.5; cos >= 0.3 -> 0 (a prompt already along the direction is left
    alone; the further against it, the stronger the push). A band's lower bound belongs to it.
    Takes and returns a float, or a tensor of any shape."""
    bounds = torch.as_tensor([float(t) for t in thresholds], dtype=torch.float64)
    values = torch.as_tensor([float(s) for s in strengths], dtype=torch.float64)
    if len(values) != len(bounds) + 1:
        raise CapeError(f"paper mode needs one strength more than thresholds ({len(bounds)} thresholds, "
                        f"{len(values)} strengths)")
    if len(bounds) > 1 and not bool((bounds[1:] > bounds[:-1]).all()):
        raise CapeError(f"paper-mode thresholds must increase: {list(thresholds)}")
    scalar = not isinstance(cosine, torch.Tensor)
    cos = torch.as_tensor(cosine, dtype=torch.float64)
    band = torch.bucketize(cos, bounds, right=True)
    out = values[band]
    return float(out) if scalar and out.ndim == 0 else out


@contextmanager
def paper_steer(model: Any, unit_direction: Any, layer: int, thresholds: Sequence[float] = PAPER_THRESHOLDS,
                strengths: Sequence[float] = PAPER_STRENGTHS, *,
                layers_path: str | None = None) -> Iterator[Steering]:
    """The preprint's steering rule, for comparison with :func:`steer` (METHODS section 10).

    In each prompt pass (a forward with an empty KV cache), the cosine between block
    ``layer``'s output at the last position (the last real token of a left-padded batch) and
    the direction picks a strength per row (:func:`paper_strength`: cos < -0.1 -> 3.0, up to
    0.1 -> 1.5, up to 0.3 -> 0.5, from 0.3 on -> 0); then ``strength * unit`` is added at the
    last position of that pass and of every later decode step, nowhere else. The direction is
    normalised to unit length (the preprint adds a unit vector, tiny next to the residual
    norm). Yields a :class:`Steering` whose ``cosine`` and ``strength`` hold the latest
    prompt pass's values.
    """
    paper_strength(0.0, thresholds, strengths)  # checks the bands
    model, path, blocks, vecs = _prepare(model, {layer: unit_direction}, layers_path)
    n, vec = next(iter(vecs.items()))
    norm = float(vec.norm())
    if not norm > 0:
        raise CapeError("paper mode needs a non-zero direction")
    unit = _OnDevice(vec / norm, n)
    unit32 = vec / norm
    handle = Steering(layers_path=path, layers=(n,), mode="paper", positions="last")
    state = _PassState()

    def add_last(module, args, output):
        h = hidden_of(output)
        u = unit.like(h)
        if state.past == 0 or handle.strength is None or handle.strength.shape[0] != h.shape[0]:
            last = h[:, -1, :].float()
            cos = torch.nn.functional.cosine_similarity(last, unit32.to(last.device)[None, :], dim=-1)
            handle.cosine = cos.detach().cpu()
            handle.strength = paper_strength(handle.cosine, thresholds, strengths).to(torch.float32)
        new = h.clone()
        new[:, -1, :] += handle.strength.to(device=h.device, dtype=h.dtype)[:, None] * u
        return with_hidden(output, new)

    try:
        handle._removers.append(_track_passes(model, path, state))
        hook = blocks[n].register_forward_hook(add_last)
        handle._removers.append(hook.remove)
        yield handle
    finally:
        handle.remove()
