"""Steering: truth directions for any open-weight causal LM, extracted, applied and exported.

An optional extra (``pip install 'cape[steer]'`` after ``pip install torch==2.13.0``): torch,
transformers, gguf, safetensors and accelerate are imported only when a function needs them,
and a missing one is one clear error (:func:`cape.steer._deps.require`).

One concept per module, following the data:

* :mod:`cape.steer.models` -- load a model (local folder, GGUF file, ``smollm2-135m``);
* :mod:`cape.steer.layers` -- find its decoder blocks (known architectures, a generic
  fallback, an explicit override);
* :mod:`cape.steer.data` -- contrast sets of true/false statements (TruthfulQA, labelled
  facts, your CSV/JSONL, a default set), split by question;
* :mod:`cape.steer.extraction` -- batched activations of every block, directions (difference of
  means, PCA, logistic), held-out probe accuracy per layer;
* :mod:`cape.steer.vector` -- :class:`SteeringVector`: arithmetic, save/load, exports to
  llama.cpp control vectors and lm-evaluation-harness ``steered`` files;
* :mod:`cape.steer.apply` -- adding a direction to block outputs (hooks, folded biases, the
  preprint's rule), always undone on exit;
* :mod:`cape.steer.generate` -- unsteered and steered text decoded identically;
* evaluation: :mod:`cape.steer.side_effects` (cross-entropy and KL on neutral text),
  :mod:`cape.steer.judge` (TruthfulQA's automatic judge of open-ended answers),
  :mod:`cape.steer.paper_protocol` (the preprint's protocol beside its controls).

>>> from cape import steer                                      # doctest: +SKIP
>>> lm = steer.load_model("smollm2-135m")                        # doctest: +SKIP
>>> ex = steer.extract(lm, steer.load_contrast("default"))       # doctest: +SKIP
>>> with ex.vector.select(ex.layer).apply(lm, alpha=4.0):        # doctest: +SKIP
...     ...
"""

from __future__ import annotations

import importlib

__all__ = [
    "LoadedModel", "load_model", "find_layers",
    "ContrastSet", "load_contrast", "default_set", "from_truthfulqa", "from_repe_facts", "from_file",
    "Extraction", "activations", "extract",
    "SteeringVector",
    "steer", "paper_steer",
    "compare", "SideEffects", "evaluate_open_ended", "OpenEndedResult", "paper_direction", "paper_prompts",
]
# A function named like its module (generate, judge, side_effects, paper_protocol) is not
# listed here: the import system sets ``cape.steer.<module>`` to the module, so a lazy
# function of the same name would flip between the two. Call them from their modules
# (``from cape.steer.side_effects import side_effects``).

_WHERE = {
    "LoadedModel": "models", "load_model": "models", "find_layers": "layers",
    "ContrastSet": "data", "load_contrast": "data", "default_set": "data",
    "from_truthfulqa": "data", "from_repe_facts": "data", "from_file": "data",
    "Extraction": "extraction", "activations": "extraction", "extract": "extraction",
    "SteeringVector": "vector",
    "steer": "apply", "paper_steer": "apply",
    "compare": "generate", "SideEffects": "side_effects", "evaluate_open_ended": "judge",
    "OpenEndedResult": "judge", "paper_direction": "paper_protocol", "paper_prompts": "paper_protocol",
}


def __getattr__(name: str):
    """Import a submodule only when one of its names is used (keeps ``import cape`` light)."""
    if name not in _WHERE:
        raise AttributeError(f"module 'cape.steer' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
