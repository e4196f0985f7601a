"""SteeringVector: per-layer directions of one model, their arithmetic, storage and exports.

A :class:`SteeringVector` holds one direction per steered block (``directions[N]``, N the
0-based index of the decoder block whose OUTPUT is steered) and the facts needed to use it
soundly: the model it belongs to (id, hidden size, block count, where its blocks live), how it
was made (method, pooling, contrast-set hash, split seed) and per-layer statistics measured at
extraction (``stats[N]``: ``proj_mean``, ``proj_sd``, ``resid_norm``, ``probe_acc``, ...).

Conventions
-----------
- Extraction (``cape.steer.extraction``) stores UNIT-norm directions. ``proj_mean``/``proj_sd``
  are the mean and standard deviation of the hidden states' projection on that unit axis;
  ``resid_norm`` is the mean norm of the block's output (a property of the model's residual
  stream at that layer, not of the direction).
- :meth:`SteeringVector.scaled` turns a strength into the vectors that are added:
  ``unit="sd"``: ``alpha * stats[N]["proj_sd"] * directions[N]`` (inference-time
  intervention's alpha x sigma); ``unit="norm"``: ``alpha * stats[N]["resid_norm"] *
  directions[N]``; ``unit="raw"``: ``alpha * directions[N]``. Directions are NOT re-normalised
  there, so arithmetic carries through: ``(2 * v).scaled(a, u) == 2 * v.scaled(a, u)``.
- Arithmetic (as in repeng): ``k * v``, ``v * k``, ``v / k`` and ``-v`` scale every direction
  and keep the statistics (``proj_mean`` changes sign with k, the others describe the axis and
  do not). ``a + b`` and ``a - b`` need the same model (id, hidden size, block count); the
  result has the union of the layers (a layer in one operand only keeps that operand's
  direction, negated for ``- b``, and its statistics). On a layer in both, the directions are
  added and the direction-specific statistics are dropped (a sum has no measured ``proj_sd``;
  ``scaled(unit="sd")`` then says so); ``resid_norm`` is kept as the mean of both operands'
  values. Statistics of layers that carry no direction are dropped by arithmetic.

Storage and exports
-------------------
- :meth:`save` / :meth:`load`: safetensors, one float32 tensor ``direction.N`` per layer, and
  the rest as JSON in the safetensors header (``__metadata__``: ``format`` =
  ``cape-steering-vector``, ``format_version``, ``cape`` = the JSON). Non-finite statistics are
  stored (and held in memory) as ``None``.
- :meth:`to_gguf`: a llama.cpp control vector (``llama-cli --control-vector-scaled FILE S``).
  Checked against llama.cpp (ggml-org/llama.cpp): ``common/common.cpp``
  ``common_control_vector_load_one`` (commit 00758e06) reads every tensor, requires the name
  ``direction.<int>``, F32, 1-D, one length, rejects index 0 ("invalid (zero) direction tensor
  layer index") and adds ``strength * tensor`` to slot ``index - 1``; ``src/llama-adapter.cpp``
  (``llama_adapter_cvec``, commit 0650ea8c) never creates a tensor for layer 0 and maps slot
  ``il - 1`` back to layer ``il``; every model graph adds it with ``build_cvec(cur, il)`` right
  after the block's last residual add (the ``l_out`` tensor), i.e. to the OUTPUT of 0-based
  block ``il`` -- the same convention as ``directions[N]``. The loader reads no metadata; the
  writer follows llama.cpp's ``cvector-generator`` (``general.architecture = controlvector``,
  ``controlvector.model_hint`` = the model's architecture name, ``controlvector.layer_count`` =
  the number of direction tensors, int32) and repeng's ``export_gguf``.
- :meth:`to_lmeval`: a torch file for lm-evaluation-harness's ``steered`` model
  (``lm_eval --model steered --model_args pretrained=...,steer_path=FILE.pt``), checked against
  ``lm_eval/models/hf_steered.py`` at v0.4.8 (6d2abda) and main (4e7e0d4): a dict
  ``{hookpoint: {"steering_vector": Tensor[hidden], "steering_coefficient": float, "action":
  "add", "bias": None, "head_index": None}}``; hookpoints are names in
  ``model.base_model.named_modules()`` (for Llama ``layers.N``); the hook adds
  ``coefficient * vector`` to the module's output (first element of a tuple) at every position.

Example
-------
>>> import numpy as np
>>> v = SteeringVector({1: np.eye(4, dtype="float32")[0]}, model_id="toy", hidden_size=4,
...                    n_layers=2, stats={1: {"proj_sd": 2.0}})
>>> [float(x) for x in v.scaled(1.5, "sd")[1]]
[3.0, 0.0, 0.0, 0.0]
>>> [float(x) for x in (v - 3 * v).directions[1]]
[-2.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import numbers
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import CapeError

__all__ = ["SteeringVector", "FORMAT", "FORMAT_VERSION", "UNITS", "MODES"]

FORMAT = "cape-steering-vector"
"""The ``format`` value in a saved vector's safetensors metadata (what :meth:`load` checks)."""
FORMAT_VERSION = 1
UNITS = ("sd", "norm", "raw")
MODES = ("hook", "folded", "paper")
UNIT_STAT = {"sd": "proj_sd", "norm": "resid_norm"}
"""The statistic that carries each unit of alpha ("raw" has none)."""
SIGNED_STATS = frozenset({"proj_mean"})
"""Statistics that change sign with the direction (k * v, k < 0)."""
MODEL_STATS = frozenset({"resid_norm"})
"""Statistics of the model's residual stream, not of the direction: kept by a + b (mean)."""
GGUF_ARCH = "controlvector"
LMEVAL_SUFFIXES = (".pt", ".pth")
"""lm-eval's SteeredModel loads a torch file only when steer_path ends with one of these."""
LMEVAL_MULTI_FIX = "0.4.9.2"
"""First lm-eval release whose loader binds each hookpoint's vector (before it: the last one)."""

_DIRECTION_NAME = re.compile(r"^direction\.(\d+)$")


def _need(module: str):
    """Import an optional dependency, or raise ``_deps.require``'s one-line install hint."""
    from ._deps import require

    require(module.split(".")[0])
    return importlib.import_module(module)


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain JSON-able Python (numpy scalars unwrapped, non-finite floats -> None)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(list(value))]
    raise CapeError(f"steering vector field '{where}' holds a {type(value).__name__}, which "
                    "cannot be stored (use numbers, strings, lists or dicts)")


def _as_array(value: Any, layer: int, hidden_size: int) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().to("cpu").float().numpy()
    try:
        arr = np.array(value, dtype=np.float32)  # a copy: the vector owns its data
    except (TypeError, ValueError):
        raise CapeError(f"direction of layer {layer} is not an array of numbers") from None
    if arr.shape != (hidden_size,):
        raise CapeError(f"direction of layer {layer} has shape {tuple(arr.shape)}, expected "
                        f"({hidden_size},) (the model's hidden size)")
    if not np.all(np.isfinite(arr)):
        raise CapeError(f"direction of layer {layer} holds NaN or inf values")
    return arr


def _layer_index(key: Any, n_layers: int, what: str) -> int:
    if isinstance(key, bool) or not isinstance(key, (numbers.Integral, np.integer)):
        raise CapeError(f"{what} key {key!r} is not a layer index (an int)")
    n = int(key)
    if not 0 <= n < n_layers:
        raise CapeError(f"{what}: layer {n} is out of range for a model with {n_layers} blocks "
                        f"(0..{n_layers - 1})")
    return n


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise CapeError(f"{name} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise CapeError(f"{name} must be finite, got {value!r}")
    return out


@dataclass(eq=False)
class SteeringVector:
    """Per-layer steering directions of one model, with provenance and per-layer statistics.

    ``directions[N]``: float32 array ``[hidden_size]`` added to the OUTPUT of 0-based block N
    (unit-norm when it comes from extraction). ``stats[N]``: numbers measured at extraction
    (``proj_mean``, ``proj_sd``, ``resid_norm``, ``probe_acc``, ...). ``meta``: anything
    JSON-able (e.g. ``model_type``, used as the GGUF model hint). See the module docstring for
    arithmetic, units and file formats.
    """

    directions: dict[int, np.ndarray]
    model_id: str
    hidden_size: int
    n_layers: int
    method: str = "custom"
    pooling: str | None = None
    dataset_hash: str | None = None
    split_seed: int | None = None
    layers_path: str | None = None
    stats: dict[int, dict] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    __array_ufunc__ = None  # numpy scalars defer to __rmul__ (np.float64(2) * v is a vector)

    def __post_init__(self) -> None:
        for name in ("hidden_size", "n_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise CapeError(f"steering vector field '{name}' must be a positive integer, "
                                f"got {value!r}")
            setattr(self, name, int(value))
        self.layers_path = self.layers_path or None  # "" (not recorded) -> None
        if not isinstance(self.model_id, str) or not self.model_id:
            raise CapeError("steering vector field 'model_id' must be a non-empty string")
        if not isinstance(self.directions, dict) or not self.directions:
            raise CapeError("a steering vector needs at least one layer's direction")
        directions = {}
        for key, value in self.directions.items():
            n = _layer_index(key, self.n_layers, "directions")
            directions[n] = _as_array(value, n, self.hidden_size)
        self.directions = dict(sorted(directions.items()))
        if not isinstance(self.stats, dict):
            raise CapeError("steering vector field 'stats' must be a dict {layer: {name: value}}")
        stats = {}
        for key, value in self.stats.items():
            n = _layer_index(key, self.n_layers, "stats")
            if not isinstance(value, dict):
                raise CapeError(f"stats of layer {n} must be a dict of named numbers")
            stats[n] = _plain(value, f"stats.{n}")
        self.stats = dict(sorted(stats.items()))
        if not isinstance(self.meta, dict):
            raise CapeError("steering vector field 'meta' must be a dict")
        self.meta = _plain(self.meta, "meta")
        if self.split_seed is not None:
            if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, numbers.Integral):
                raise CapeError(f"steering vector field 'split_seed' must be an int, got "
                                f"{self.split_seed!r}")
            self.split_seed = int(self.split_seed)

    # ------------------------------------------------------------------ views
    @property
    def layers(self) -> list[int]:
        """The steered blocks (0-based), ascending."""
        return list(self.directions)

    def chosen_layers(self, layer: int | None = None) -> list[int]:
        """The layer(s) to steer: ``layer`` when given (it must be in the vector), else the
        layer recorded as chosen at extraction (``meta['layer']``), else every layer. The rule
        `cape steer generate`, `eval` and the dashboard share."""
        from ..errors import CapeError

        if layer is not None:
            if layer not in self.directions:
                raise CapeError(f"layer {layer} is not in this vector (layers {self.layers[0]}-{self.layers[-1]})"
                                if self.layers else "the vector holds no layer")
            return [layer]
        chosen = self.meta.get("layer")
        if chosen is not None and int(chosen) in self.directions:
            return [int(chosen)]
        return list(self.layers)

    def norms(self) -> dict[int, float]:
        """The Euclidean norm of each layer's direction (1.0 after extraction)."""
        return {n: float(np.linalg.norm(d)) for n, d in self.directions.items()}

    def describe(self) -> dict:
        """The provenance fields as a small dict (no arrays)."""
        return {"model_id": self.model_id, "hidden_size": self.hidden_size,
                "n_layers": self.n_layers, "layers": self.layers, "method": self.method,
                "pooling": self.pooling, "dataset_hash": self.dataset_hash,
                "split_seed": self.split_seed, "layers_path": self.layers_path}

    def summary(self) -> str:
        """A few readable lines: the model, the provenance and one line per layer."""
        lines = [f"steering vector for {self.model_id} (hidden size {self.hidden_size}, "
                 f"{self.n_layers} blocks, layers at {self.layers_path or 'auto'})",
                 f"method {self.method}, pooling {self.pooling}, contrast set "
                 f"{self.dataset_hash or 'unknown'}, split seed {self.split_seed}"]
        norms = self.norms()
        for n in self.layers:
            st = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in self.stats.get(n, {}).items())
            lines.append(f"  layer {n}: norm {norms[n]:.4g}" + (f"; {st}" if st else ""))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"SteeringVector(model_id={self.model_id!r}, layers={self.layers}, "
                f"hidden_size={self.hidden_size}, n_layers={self.n_layers}, "
                f"method={self.method!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SteeringVector):
            return NotImplemented
        return (self.describe() == other.describe() and self.stats == other.stats
                and self.meta == other.meta
                and all(np.array_equal(self.directions[n], other.directions[n])
                        for n in self.layers))

    def select(self, layers: int | Iterable[int]) -> "SteeringVector":
        """A vector with only the given layers (their stats kept)."""
        keep = self._check_layers(layers)
        return self._replace({n: self.directions[n] for n in keep},
                             {n: self.stats[n] for n in keep if n in self.stats})

    def unit(self) -> "SteeringVector":
        """The same vector with every direction scaled to norm 1 (stats kept)."""
        norms = self.norms()
        if any(v == 0.0 for v in norms.values()):
            zero = [n for n, v in norms.items() if v == 0.0]
            raise CapeError(f"cannot normalise: the direction of layer(s) {zero} is zero")
        return self._replace({n: d / norms[n] for n, d in self.directions.items()}, self.stats)

    def _replace(self, directions: dict, stats: dict) -> "SteeringVector":
        """This vector's provenance and meta with other directions and stats."""
        fields = self.describe()
        fields.pop("layers")
        return SteeringVector(directions=directions, stats=stats, meta=dict(self.meta), **fields)

    # ------------------------------------------------------------- arithmetic
    def _check_same_model(self, other: "SteeringVector", op: str) -> None:
        mine = (self.model_id, self.hidden_size, self.n_layers)
        theirs = (other.model_id, other.hidden_size, other.n_layers)
        if mine != theirs:
            raise CapeError(f"cannot compute a {op} b: the vectors come from different models: "
                            f"'{self.model_id}' (hidden size {self.hidden_size}, "
                            f"{self.n_layers} blocks) and '{other.model_id}' (hidden size "
                            f"{other.hidden_size}, {other.n_layers} blocks)")
        if self.layers_path and other.layers_path and self.layers_path != other.layers_path:
            raise CapeError(f"cannot compute a {op} b: the vectors steer different module lists "
                            f"('{self.layers_path}' and '{other.layers_path}')")

    def _combine(self, other: Any, sign: float, op: str) -> "SteeringVector":
        if not isinstance(other, SteeringVector):
            return NotImplemented
        self._check_same_model(other, op)
        negated = other if sign > 0 else other * -1.0
        directions: dict[int, np.ndarray] = {}
        stats: dict[int, dict] = {}
        for n in sorted(set(self.directions) | set(other.directions)):
            if n in self.directions and n in other.directions:
                directions[n] = self.directions[n] + negated.directions[n]
                mine, theirs = self.stats.get(n, {}), other.stats.get(n, {})
                kept = {k: (mine[k] + theirs[k]) / 2.0 for k in sorted(MODEL_STATS)
                        if isinstance(mine.get(k), (int, float))
                        and isinstance(theirs.get(k), (int, float))}
                if kept:
                    stats[n] = kept
            elif n in self.directions:
                directions[n] = self.directions[n]
                if n in self.stats:
                    stats[n] = self.stats[n]
            else:
                directions[n] = negated.directions[n]
                if n in negated.stats:
                    stats[n] = negated.stats[n]

        def same(name: str) -> Any:
            a, b = getattr(self, name), getattr(other, name)
            return a if a == b else None

        meta = {k: v for k, v in self.meta.items() if k != "combined" and other.meta.get(k) == v}
        meta["combined"] = {"op": op, "a": self.describe(), "b": other.describe()}
        method = self.method if self.method == other.method else f"{self.method} {op} {other.method}"
        return SteeringVector(directions=directions, model_id=self.model_id,
                              hidden_size=self.hidden_size, n_layers=self.n_layers,
                              method=method, pooling=same("pooling"),
                              dataset_hash=same("dataset_hash"), split_seed=same("split_seed"),
                              layers_path=self.layers_path or other.layers_path,
                              stats=stats, meta=meta)

    def __add__(self, other: Any) -> "SteeringVector":
        return self._combine(other, 1.0, "+")

    def __radd__(self, other: Any) -> "SteeringVector":
        if isinstance(other, numbers.Number) and other == 0:  # sum([a, b, c]) starts from 0
            return self
        return NotImplemented

    def __sub__(self, other: Any) -> "SteeringVector":
        return self._combine(other, -1.0, "-")

    def __mul__(self, k: Any) -> "SteeringVector":
        if isinstance(k, bool) or not isinstance(k, (numbers.Real, np.number)):
            return NotImplemented
        k = _real(k, "the factor")
        stats = {n: {name: (-v if name in SIGNED_STATS and k < 0 and isinstance(v, (int, float))
                            else v) for name, v in st.items()}
                 for n, st in self.stats.items()}
        return self._replace({n: d * np.float32(k) for n, d in self.directions.items()}, stats)

    __rmul__ = __mul__

    def __truediv__(self, k: Any) -> "SteeringVector":
        if isinstance(k, bool) or not isinstance(k, (numbers.Real, np.number)):
            return NotImplemented
        k = _real(k, "the divisor")
        if k == 0.0:
            raise CapeError("cannot divide a steering vector by 0")
        return self * (1.0 / k)

    def __neg__(self) -> "SteeringVector":
        return self * -1.0

    def __pos__(self) -> "SteeringVector":
        return self

    # ---------------------------------------------------------------- scaling
    def _check_layers(self, layers: int | Iterable[int] | None) -> list[int]:
        if layers is None:
            return self.layers
        wanted = [layers] if isinstance(layers, (numbers.Integral, np.integer)) else list(layers)
        if not wanted:
            raise CapeError("no layers given (pass None for all of the vector's layers)")
        out = []
        for key in wanted:
            n = _layer_index(key, self.n_layers, "layers")
            if n not in self.directions:
                raise CapeError(f"layer {n} has no direction in this steering vector "
                                f"(it has layers {self.layers})")
            if n not in out:
                out.append(n)
        return sorted(out)

    def scaled_arrays(self, alpha: float, unit: str = "sd", *,
                      layers: int | Iterable[int] | None = None) -> dict[int, np.ndarray]:
        """:meth:`scaled` as float32 numpy arrays (no torch needed)."""
        alpha = _real(alpha, "alpha")
        if unit not in UNITS:
            raise CapeError(f"unknown unit {unit!r} for alpha; use one of {', '.join(UNITS)}")
        out = {}
        for n in self._check_layers(layers):
            factor = alpha
            if unit != "raw":
                name = UNIT_STAT[unit]
                value = self.stats.get(n, {}).get(name)
                if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                    raise CapeError(f"alpha in unit '{unit}' needs stats[{n}]['{name}'] > 0, and "
                                    f"this vector has {value!r} there (a sum of vectors has "
                                    "none); use unit='raw' or another unit")
                factor = alpha * float(value)
            out[n] = (self.directions[n].astype(np.float64) * factor).astype(np.float32)
        return out

    def scaled(self, alpha: float, unit: str = "sd", *,
               layers: int | Iterable[int] | None = None) -> dict:
        """The vectors to add, ``{layer: torch.Tensor[hidden_size]}`` (float32).

        ``unit="sd"``: ``alpha * stats[N]["proj_sd"] * directions[N]`` (alpha in standard
        deviations of the projection, as inference-time intervention); ``"norm"``: ``alpha *
        stats[N]["resid_norm"] * directions[N]`` (alpha as a fraction of the mean residual
        norm); ``"raw"``: ``alpha * directions[N]``. ``layers``: a subset (default: all).
        """
        torch = _need("torch")
        return {n: torch.from_numpy(a) for n, a in
                self.scaled_arrays(alpha, unit, layers=layers).items()}

    # ------------------------------------------------------------ save / load
    def _header(self) -> dict:
        head = self.describe()
        head.pop("layers")
        head["stats"] = {str(n): st for n, st in self.stats.items()}
        head["meta"] = self.meta
        return head

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vector as safetensors (``direction.N`` tensors, JSON header metadata)."""
        st_numpy = _need("safetensors.numpy")
        path = Path(path)
        tensors = {f"direction.{n}": np.ascontiguousarray(d) for n, d in self.directions.items()}
        metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                    "cape": json.dumps(self._header(), sort_keys=True, allow_nan=False)}
        tmp = path.with_name(path.name + ".tmp")
        try:
            st_numpy.save_file(tensors, str(tmp), metadata=metadata)
            os.replace(tmp, path)
        except OSError as exc:
            raise CapeError(f"{path}: cannot write the steering vector ({exc.strerror or exc})") from None
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SteeringVector":
        """Read a vector written by :meth:`save`; anything else is a CapeError naming the file."""
        safetensors = _need("safetensors")
        path = Path(path)
        if not path.is_file():
            raise CapeError(f"{path}: no such steering vector file")
        try:
            with safetensors.safe_open(str(path), framework="numpy") as handle:
                metadata = handle.metadata() or {}
                if metadata.get("format") != FORMAT:
                    raise CapeError(f"{path}: not a CAPE steering vector (its safetensors "
                                    f"metadata has no 'format: {FORMAT}')",
                                    hint="write one with `cape steer extract --out FILE`")
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        except CapeError:
            raise
        except Exception as exc:  # safetensors raises its own error types (and OSError)
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CapeError(f"{path}: not a safetensors file ({first})",
                            hint="a CAPE steering vector is written by `cape steer extract`") from None
        try:
            version = int(metadata.get("format_version", ""))
        except ValueError:
            raise CapeError(f"{path}: metadata field 'format_version' is "
                            f"{metadata.get('format_version')!r}, not an integer") from None
        if version > FORMAT_VERSION:
            raise CapeError(f"{path}: steering vector format {version} is newer than this CAPE "
                            f"reads ({FORMAT_VERSION})", hint="upgrade cape")
        try:
            head = json.loads(metadata.get("cape", ""))
        except json.JSONDecodeError as exc:
            raise CapeError(f"{path}: metadata field 'cape' is not valid JSON ({exc.msg})") from None
        if not isinstance(head, dict):
            raise CapeError(f"{path}: metadata field 'cape' is not a JSON object")
        for name in ("model_id", "hidden_size", "n_layers"):
            if name not in head:
                raise CapeError(f"{path}: metadata field 'cape' lacks '{name}'")
        directions = {}
        for name, arr in tensors.items():
            match = _DIRECTION_NAME.match(name)
            if not match:
                raise CapeError(f"{path}: tensor '{name}' is not named direction.N")
            directions[int(match.group(1))] = arr
        try:
            stats = {int(k): v for k, v in (head.get("stats") or {}).items()}
        except (ValueError, AttributeError):
            raise CapeError(f"{path}: metadata 'stats' must map layer numbers to dicts") from None
        try:
            return cls(directions=directions, model_id=head["model_id"],
                       hidden_size=head["hidden_size"], n_layers=head["n_layers"],
                       method=head.get("method", "custom"), pooling=head.get("pooling"),
                       dataset_hash=head.get("dataset_hash"), split_seed=head.get("split_seed"),
                       layers_path=head.get("layers_path"), stats=stats,
                       meta=head.get("meta") or {})
        except CapeError as exc:
            raise CapeError(f"{path}: {exc.message}", hint=exc.hint) from None

    # ---------------------------------------------------------------- exports
    def to_gguf(self, path: str | os.PathLike, *, model_hint: str | None = None,
                scale: float = 1.0, unit: str = "sd",
                layers: int | Iterable[int] | None = None) -> Path:
        """Write a llama.cpp control vector: ``direction.N`` = ``scaled(scale, unit)[N]``.

        Use it as ``llama-cli -m MODEL.gguf --control-vector-scaled FILE S``: llama.cpp adds
        ``S * direction.N`` to the output of block N, so with the default ``unit="sd"`` and
        ``scale=1``, S is alpha in standard deviations of the projection, as in :meth:`apply`.
        ``model_hint`` defaults to ``meta["model_type"]`` (the architecture name, as llama.cpp's
        cvector-generator and repeng write; llama.cpp does not check it), else the model id.
        Block 0 cannot be exported: llama.cpp has no control-vector slot for it (its loader
        rejects ``direction.0``); pass ``layers=`` without 0.
        """
        gguf = _need("gguf")
        vectors = self.scaled_arrays(scale, unit, layers=layers)
        if 0 in vectors:
            raise CapeError("llama.cpp control vectors cannot steer block 0: llama.cpp's loader "
                            "rejects a 'direction.0' tensor (invalid zero layer index) and "
                            "keeps no slot for layer 0",
                            hint=f"export other layers with layers=...; this vector has {self.layers}")
        hint = model_hint if model_hint is not None else (self.meta.get("model_type") or self.model_id)
        path = Path(path)
        try:
            writer = gguf.GGUFWriter(str(path), GGUF_ARCH)  # writes general.architecture
            writer.add_string(f"{GGUF_ARCH}.model_hint", str(hint))
            writer.add_int32(f"{GGUF_ARCH}.layer_count", len(vectors))
            writer.add_string("cape.model_id", self.model_id)
            writer.add_string("cape.unit", unit)
            writer.add_float32("cape.scale", float(scale))
            for n, arr in vectors.items():
                writer.add_tensor(f"direction.{n}", np.ascontiguousarray(arr, dtype=np.float32))
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
            writer.close()
        except OSError as exc:
            raise CapeError(f"{path}: cannot write the GGUF file ({exc.strerror or exc})") from None
        return path

    def lmeval_prefix(self) -> str:
        """The hookpoint prefix lm-eval resolves: ``layers_path`` without the base-model name.

        lm-eval looks hookpoints up in ``model.base_model.named_modules()``; for a
        ``*ForCausalLM`` model the base model is its first attribute (``model``,
        ``transformer``, ``gpt_neox``), so ``model.layers`` -> ``layers`` (Llama),
        ``transformer.h`` -> ``h`` (GPT-2), ``model.decoder.layers`` -> ``decoder.layers``
        (OPT). A one-part path (the model is itself the base model) is kept.
        """
        if not self.layers_path:
            raise CapeError("this steering vector does not record where its model's blocks are "
                            "(layers_path)", hint="pass hookpoint_prefix=, e.g. 'layers' for Llama")
        parts = self.layers_path.split(".")
        return ".".join(parts[1:]) if len(parts) > 1 else parts[0]

    def to_lmeval(self, path: str | os.PathLike, *, coefficient: float = 1.0,
                  hookpoint_prefix: str | None = None, unit: str = "sd",
                  layers: int | Iterable[int] | None = None) -> Path:
        """Write a steering file for lm-evaluation-harness's ``steered`` model (>= 0.4.8).

        ``{f"{prefix}.{N}": {"steering_vector": scaled(1, unit)[N], "steering_coefficient":
        coefficient, "action": "add", "bias": None, "head_index": None}}``, saved with
        ``torch.save`` (lm-eval loads it with ``weights_only=True`` up to 0.4.11). Run
        ``lm_eval --model steered --model_args pretrained=MODEL,steer_path=FILE``. The file
        name must end in .pt or .pth (lm-eval picks the loader by suffix). lm-eval before
        0.4.9.2 applies the LAST hookpoint's vector at every hookpoint of a multi-layer file (a
        late-binding lambda in ``SteeredModel.__init__``); a warning says so.
        """
        torch = _need("torch")
        path = Path(path)
        if path.suffix not in LMEVAL_SUFFIXES:
            raise CapeError(f"{path}: lm-eval reads steering files ending in .pt or .pth only")
        coefficient = _real(coefficient, "coefficient")
        prefix = hookpoint_prefix if hookpoint_prefix is not None else self.lmeval_prefix()
        vectors = self.scaled_arrays(1.0, unit, layers=layers)
        if len(vectors) > 1:
            warnings.warn(f"lm-eval older than {LMEVAL_MULTI_FIX} adds the last hookpoint's "
                          f"vector at all {len(vectors)} hookpoints of this file; use lm-eval >= "
                          f"{LMEVAL_MULTI_FIX} or export one layer (layers=N)", stacklevel=2)
        config = {f"{prefix}.{n}" if prefix else str(n): {
            "steering_vector": torch.from_numpy(arr.copy()),
            "steering_coefficient": coefficient,
            "action": "add",
            "bias": None,
            "head_index": None,
        } for n, arr in vectors.items()}
        try:
            torch.save(config, str(path))
        except OSError as exc:
            raise CapeError(f"{path}: cannot write the lm-eval file ({exc.strerror or exc})") from None
        return path

    # -------------------------------------------------------------- applying
    def check_model(self, model_or_lm: Any) -> None:
        """Raise a CapeError unless the model has this vector's hidden size and block count.

        A different model id with the same shapes only warns (aliases and paths of one model
        differ in name).
        """
        hidden, n_layers, model_id = _model_shape(model_or_lm, self.layers_path)
        if (hidden, n_layers) != (self.hidden_size, self.n_layers):
            raise CapeError(f"steering vector is for '{self.model_id}' (hidden size "
                            f"{self.hidden_size}, {self.n_layers} blocks), but the model "
                            f"'{model_id}' has hidden size {hidden} and {n_layers} blocks",
                            hint="extract a vector for this model with `cape steer extract`")
        if model_id and model_id != self.model_id:
            warnings.warn(f"steering vector was extracted from '{self.model_id}' and is applied "
                          f"to '{model_id}' (same hidden size and block count)", stacklevel=3)

    @contextmanager
    def apply(self, model_or_lm: Any, alpha: float, *,
              layers: int | Iterable[int] | None = None, unit: str = "sd",
              positions: str = "all", mode: str = "hook") -> Iterator[Any]:
        """Steer a model inside a ``with`` block; hooks/weights are restored on exit. Yields
        the :class:`cape.steer.apply.Steering` handle (layers, mode; in paper mode the
        cosine and strength the rule chose).

        ``model_or_lm``: a ``cape.steer.models.LoadedModel`` or a transformers model.
        ``mode="hook"`` (forward hooks) or ``"folded"`` (the vector as a bias of the block's
        last linear layer; positions must be "all"): ``cape.steer.apply.steer`` adds
        ``scaled(alpha, unit, layers=layers)[N]`` to the output of block N at ``positions``
        ("all", "prompt", "generated"). ``mode="paper"``: the preprint's rule
        (``cape.steer.apply.paper_steer``) on one layer with the unit direction, its strengths
        multiplied by ``alpha`` (alpha=1 is the preprint's rule); ``unit`` is not used and
        ``positions`` must stay "all" (the rule steers the last position itself).

        >>> with vector.apply(lm, alpha=4.0, unit="sd"):  # doctest: +SKIP
        ...     out = lm.model.generate(**batch, do_sample=False)
        """
        if mode not in MODES:
            raise CapeError(f"unknown steering mode {mode!r}; use one of {', '.join(MODES)}")
        alpha = _real(alpha, "alpha")
        self.check_model(model_or_lm)
        model = model_or_lm.model if _is_loaded(model_or_lm) else model_or_lm
        layers_path = self.layers_path or getattr(model_or_lm, "layers_path", None)
        if mode == "paper":
            if positions != "all":
                raise CapeError("mode='paper' steers the last position by the preprint's rule; "
                                "positions does not apply (leave it 'all')")
            from .apply import paper_steer

            chosen = self._check_layers(layers)
            if len(chosen) != 1:
                raise CapeError(f"mode='paper' steers one layer; this vector has {chosen}",
                                hint="pass layers=N")
            layer = chosen[0]
            norm = float(np.linalg.norm(self.directions[layer]))
            if norm == 0.0:
                raise CapeError(f"the direction of layer {layer} is zero")
            torch = _need("torch")
            unit_direction = torch.from_numpy(self.directions[layer] / np.float32(norm))
            # the preprint's strengths live in paper_steer's signature (one place)
            default = inspect.signature(paper_steer).parameters["strengths"].default
            with paper_steer(model, unit_direction, layer, layers_path=layers_path,
                             strengths=tuple(alpha * s for s in default)) as handle:
                yield handle
            return
        from .apply import steer

        with steer(model, self.scaled(alpha, unit, layers=layers), positions=positions,
                   mode=mode, layers_path=layers_path) as handle:
            yield handle


def _is_loaded(obj: Any) -> bool:
    """A LoadedModel (duck-typed: the torch model plus its shape)."""
    return all(hasattr(obj, a) for a in ("model", "hidden_size", "n_layers", "layers_path"))


def _model_shape(model_or_lm: Any, layers_path: str | None) -> tuple[int | None, int | None, str]:
    """(hidden size, block count, model id) of a LoadedModel or a transformers model."""
    if _is_loaded(model_or_lm):
        return (int(model_or_lm.hidden_size), int(model_or_lm.n_layers),
                str(getattr(model_or_lm, "model_id", "") or ""))
    config = getattr(model_or_lm, "config", None)
    if config is None:
        raise CapeError(f"cannot steer a {type(model_or_lm).__name__}: pass a LoadedModel "
                        "(cape.steer.load_model) or a transformers model")
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = next((getattr(text, a) for a in ("hidden_size", "n_embd", "d_model")
                   if isinstance(getattr(text, a, None), int)), None)
    try:
        from .layers import find_layers

        n_layers = len(find_layers(model_or_lm, layers_path)[1])
    except ImportError:
        n_layers = next((getattr(text, a) for a in ("num_hidden_layers", "n_layer", "num_layers")
                         if isinstance(getattr(text, a, None), int)), None)
    return hidden, n_layers, str(getattr(config, "_name_or_path", "") or "")
