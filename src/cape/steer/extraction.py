"""Extraction: contrast statements -> per-layer truth directions with held-out probe statistics.

Two steps, both usable on their own:

- :func:`activations` runs the model once per batch and records the OUTPUT of every decoder
  block (the blocks :func:`cape.steer.layers.find_layers` finds, so that index N here is the
  block ``cape.steer.apply.steer`` adds to), pooled per statement at the last real token or
  as the mean over the statement's real tokens. Batches are padding-aware whichever side the
  tokenizer pads on (attention mask, and position ids from the mask where the model takes
  them), so a statement gets the same activations alone or in a padded batch.
- :func:`probe_layers` turns activations of an extraction split and an evaluation split into
  one direction per layer (a *method*: a small function ``(pos, neg) -> direction``) and the
  statistics of each layer, all layers at once (no loop over statements or layers).

:func:`extract` glues them: split the :class:`~cape.steer.data.ContrastSet` by group (question),
one forward pass over all statements, directions and statistics per layer, a layer choice,
and an :class:`Extraction` holding the :class:`~cape.steer.vector.SteeringVector`.

Probe accuracy (the number that picks the layer) is measured on the held-out evaluation split
only. The probe is the direction itself: a statement is called true when its projection on
the unit direction exceeds the threshold, the midpoint of the class means of the projection
on the extraction split; the direction's sign is set on the extraction split so that true
statements project higher. The same probe is used for every method (for ``logistic`` its
fitted intercept is not used), so accuracies of methods are comparable. The 95% interval is
Wilson's score interval on the ``n_eval`` statements; statements of one question are not
independent, so it is somewhat narrower than an interval over questions would be.

Example::

    from cape.steer.models import load_model
    from cape.steer.data import default_set
    from cape.steer.extraction import extract

    lm = load_model("smollm2-135m")
    ex = extract(lm, default_set(), method="diffmean", layer="best")
    print(ex.summary())
    with ex.chosen_vector.apply(lm, alpha=4.0):  # 4 sd of the projection, chosen layer only
        ...
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import pandas as pd

from cape.errors import CapeError
from cape.stats import wilson_interval  # one place for the formula; re-exported here

if TYPE_CHECKING:  # pragma: no cover
    from cape.steer.data import ContrastSet
    from cape.steer.models import LoadedModel
    from cape.steer.vector import SteeringVector

__all__ = [
    "POOLINGS", "METHODS", "PROBE", "Method", "Extraction", "activations", "extract",
    "probe_layers", "choose_layer", "pair_within_groups", "wilson_interval",
    "diffmean", "pca", "logistic",
]

POOLINGS = ("last", "mean")
#: How probe accuracy is measured (stored with the vector and printed by ``summary()``).
PROBE = ("held-out accuracy of the unit direction with threshold at the midpoint of the "
         "extraction split's class means of the projection; Wilson 95% CI on n_eval statements")

#: A method: activations of true statements ``pos`` [n_pos, ..., hidden] and false statements
#: ``neg`` [n_neg, ..., hidden] -> a direction [..., hidden] (any norm; sign: true higher).
Method = Callable[[np.ndarray, np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- activations

class _StopForward(Exception):
    """Raised by the hook on the last block: the final norm and the LM head are not needed."""


def _accepts(forward: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False


def _tokenize(tokenizer, statements: Sequence[str]) -> list[list[int]]:
    encoded = tokenizer(list(statements), add_special_tokens=True, padding=False, truncation=False)
    ids = encoded["input_ids"]
    empty = [i for i, row in enumerate(ids) if len(row) == 0]
    if empty:
        raise CapeError(f"statement {empty[0]} ({statements[empty[0]]!r}) has no tokens: "
                        "remove empty statements from the contrast set")
    return ids


def _pad_id(tokenizer) -> int:
    for name in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    return 0  # masked out in any case


def activations(lm: "LoadedModel", statements: Sequence[str], *, batch_size: int = 16,
                pooling: str = "last", progress: Callable[[int, int], Any] | None = None,
                ) -> np.ndarray:
    """Pooled block outputs of every layer: float32 array ``[n_statements, n_layers, hidden]``.

    One forward pass per batch of ``batch_size`` statements (statements are sorted by length
    into batches to waste little on padding, and returned in the input order). Forward hooks on
    the blocks that :func:`cape.steer.layers.find_layers` finds record each block's output,
    so ``[:, N]`` is the output of block N (0-based), the point that steering at layer N adds
    to; the last block's output is taken before the model's final norm. ``pooling="last"``:
    the last real (non-pad) token of each statement, whichever side the tokenizer pads on;
    ``"mean"``: the mean over the statement's real tokens (special tokens the tokenizer adds,
    such as BOS, included). Runs under ``torch.inference_mode`` with the model in eval mode.
    ``progress(done, total)`` is called after each batch with the statement counts.

    Raises CapeError when an activation is NaN or infinite (typically float16 overflow: load
    the model with ``dtype="float32"``), for an unknown pooling, or an empty statement.
    """
    from cape.steer._deps import require
    require("torch")
    import torch

    from cape.steer.layers import find_layers, hidden_of

    if pooling not in POOLINGS:
        raise CapeError(f"unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
    if int(batch_size) < 1:
        raise CapeError(f"batch_size must be at least 1, not {batch_size}")
    statements = list(statements)
    n = len(statements)
    model, tokenizer = lm.model, lm.tokenizer
    _, blocks = find_layers(model, getattr(lm, "layers_path", None))
    n_layers = len(blocks)
    if n == 0:
        return np.zeros((0, n_layers, int(lm.hidden_size)), np.float32)

    ids = _tokenize(tokenizer, statements)
    lengths = np.fromiter((len(r) for r in ids), dtype=np.int64, count=n)
    order = np.argsort(-lengths, kind="stable")  # longest first: an early out-of-memory
    flat = np.fromiter((t for row in ids for t in row), dtype=np.int64, count=int(lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pad_id, left = _pad_id(tokenizer), getattr(tokenizer, "padding_side", "right") == "left"
    try:
        device = next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        device = torch.device("cpu")
    forward_kwargs = {}
    if _accepts(model.forward, "use_cache"):
        forward_kwargs["use_cache"] = False
    give_positions = _accepts(model.forward, "position_ids")

    out: np.ndarray | None = None
    state: dict[str, Any] = {}

    def make_hook(index: int):
        def hook(module, args, output):
            h = hidden_of(output).float()  # [B, T, H]
            mask = state["mask"]
            if pooling == "last":
                pooled = h[torch.arange(h.shape[0], device=h.device), state["last"]]
            else:
                pooled = torch.where(mask[..., None], h, 0.0).sum(1) / state["count"]
            if state["pooled"] is None:
                state["pooled"] = torch.full((h.shape[0], n_layers, h.shape[-1]), float("nan"),
                                             dtype=torch.float32, device=h.device)
            state["pooled"][:, index] = pooled
            state["seen"] += 1
            if index == n_layers - 1:
                raise _StopForward
        return hook

    was_training = model.training
    model.eval()
    handles = [block.register_forward_hook(make_hook(i)) for i, block in enumerate(blocks)]
    try:
        with torch.inference_mode():
            for start in range(0, n, int(batch_size)):
                rows = order[start:start + int(batch_size)]
                k = lengths[rows][:, None]
                width = int(k.max())
                j = np.arange(width)[None, :]
                token = j - (width - k) if left else j  # index into the statement's tokens
                valid = (token >= 0) & (token < k)
                grid = np.where(valid, flat[offsets[rows][:, None] + np.clip(token, 0, k - 1)], pad_id)
                input_ids = torch.from_numpy(grid).to(device)
                mask = torch.from_numpy(valid).to(device)
                positions = torch.arange(width, device=device)
                state["mask"] = mask
                state["last"] = torch.where(mask, positions, -1).argmax(1)
                state["count"] = mask.sum(1, keepdim=True).float()
                state["pooled"], state["seen"] = None, 0
                kwargs = dict(forward_kwargs)
                if give_positions:
                    kwargs["position_ids"] = (mask.long().cumsum(1) - 1).clamp(min=0)
                try:
                    model(input_ids=input_ids, attention_mask=mask.long(), **kwargs)
                except _StopForward:
                    pass
                pooled = state["pooled"]
                if out is None:
                    out = np.empty((n, n_layers, pooled.shape[-1]), np.float32)
                if state["seen"] != n_layers:
                    raise CapeError(f"only {state['seen']} of the {n_layers} blocks at "
                                    f"{getattr(lm, 'layers_path', '?')} ran: check the layers path")
                bad = ~torch.isfinite(pooled).all(-1)  # [B, n_layers]
                if bool(bad.any()):
                    layer = int(bad.any(0).nonzero()[0])
                    i = int(rows[int(bad[:, layer].nonzero()[0])])
                    raise CapeError(
                        f"activations are not finite (NaN or inf) at layer {layer} for statement "
                        f"{i} ({statements[i][:60]!r}): the model probably overflowed in float16; "
                        "load it with dtype='float32' (--dtype float32)")
                out[rows] = pooled.cpu().numpy()
                if progress is not None:
                    progress(min(start + int(batch_size), n), n)
    finally:
        for handle in handles:
            handle.remove()
        state.clear()
        if was_training:
            model.train()
    assert out is not None
    return out


# --------------------------------------------------------------------------- methods

def diffmean(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Difference of class means (mass-mean direction): mean(true) - mean(false)."""
    return pos.mean(0, dtype=np.float64) - neg.mean(0, dtype=np.float64)


def pca(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """First principal component of PAIRED differences ``pos[i] - neg[i]``.

    Uncentred (the differences and their negatives, as RepE and steering-vectors do), so the
    component is the axis along which the pairs differ most; the sign is set so that the mean
    difference projects positively. :func:`extract` pairs the statements within each question
    (see :func:`pair_within_groups`); called directly, ``pos`` and ``neg`` must have equal length.
    """
    if len(pos) != len(neg):
        raise CapeError(f"pca needs paired statements: {len(pos)} true vs {len(neg)} false")
    diffs = (pos.astype(np.float64) - neg).reshape(len(pos), -1, pos.shape[-1])  # [m, L, H]
    m, hidden = diffs.shape[0], diffs.shape[-1]
    if m <= hidden:  # top eigenvector of the pairs' Gram matrix, mapped back to activation space
        _, vecs = np.linalg.eigh(np.einsum("mlh,klh->lmk", diffs, diffs))
        top = np.einsum("mlh,lm->lh", diffs, vecs[..., -1])
    else:  # top eigenvector of the (uncentred) second-moment matrix
        _, vecs = np.linalg.eigh(np.einsum("mlh,mlk->lhk", diffs, diffs))
        top = vecs[..., -1]
    top /= np.maximum(np.linalg.norm(top, axis=-1, keepdims=True), 1e-300)
    sign = np.sign(np.einsum("mlh,lh->l", diffs, top))
    sign[sign == 0] = 1.0
    return (top * sign[:, None]).reshape(pos.shape[1:])
pca.paired = True  # type: ignore[attr-defined]


def logistic(pos: np.ndarray, neg: np.ndarray, *, C: float = 1.0, max_iter: int = 500) -> np.ndarray:
    """Weights of an L2-regularised logistic regression (true = 1), one per layer, in raw units.

    Features are standardised per layer on the given statements; the objective per layer is
    the mean log-loss + ||w||^2 / (2 C n) (scikit-learn's convention, C = 1 by default) with an
    unpenalised intercept; all layers are fitted at once by L-BFGS in torch (float64). The
    returned direction is the standardised weight divided by the feature sd (the probe's
    normal in activation space).
    """
    import torch

    x = np.concatenate([pos, neg]).astype(np.float64)
    shape = x.shape[1:]
    x = x.reshape(len(x), -1, shape[-1])  # [n, L, H]
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 1e-12 * max(float(sd.max()), 1e-300), sd, 1.0)
    z = torch.from_numpy((x - mu) / sd)
    target = torch.from_numpy(y)[:, None].expand(-1, z.shape[1])
    n = len(x)
    w = torch.zeros(z.shape[1:], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = torch.einsum("nlh,lh->nl", z, w) + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum") / n
        loss = loss + (w * w).sum() / (2.0 * C * n)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return (w.detach().numpy() / sd).reshape(shape)


METHODS: dict[str, Method] = {"diffmean": diffmean, "pca": pca, "logistic": logistic}


def _method(method: str | Method) -> tuple[str, Method]:
    if callable(method):
        return getattr(method, "__name__", "custom"), method
    if method not in METHODS:
        raise CapeError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    return method, METHODS[method]


# --------------------------------------------------------------------------- statistics

def pair_within_groups(labels, groups, seed: int = 0) -> np.ndarray:
    """Pairs ``[m, 2]`` of row indices (true, false) for paired methods such as :func:`pca`.

    Within each group (question) holding both classes, every statement of the larger class is
    paired with one of the smaller class (cycling through it), so every statement is used.
    Statements of one-sided groups (e.g. one statement per group) are pooled and paired across
    groups in a seeded random order the same way.
    """
    labels = np.asarray(labels, dtype=bool)
    codes = pd.factorize(pd.Series(list(groups), dtype=object))[0]
    df = pd.DataFrame({"g": codes, "y": labels, "i": np.arange(len(labels))})
    counts = df.groupby(["g", "y"]).size().unstack(fill_value=0).reindex(columns=[False, True],
                                                                          fill_value=0)
    both = counts.index[(counts[True] > 0) & (counts[False] > 0)]
    inside = df[df["g"].isin(both)]
    rest = df[~df["g"].isin(both)].sample(frac=1.0, random_state=seed).assign(g=-1)
    parts = [_cycle_pairs(inside)]
    if rest["y"].any() and (~rest["y"]).any():
        parts.append(_cycle_pairs(rest))
    pairs = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
    return pairs.astype(np.int64)


def _cycle_pairs(df: pd.DataFrame) -> np.ndarray:
    if df.empty:
        return np.zeros((0, 2), np.int64)
    df = df.assign(r=df.groupby(["g", "y"]).cumcount())
    size = df.groupby(["g", "y"]).size()
    n_true = size.xs(True, level="y").reindex(df["g"].unique(), fill_value=0)
    n_false = size.xs(False, level="y").reindex(df["g"].unique(), fill_value=0)
    true_is_big = (n_true >= n_false)
    big = df[df["y"].to_numpy() == true_is_big.loc[df["g"]].to_numpy()]
    other_n = np.where(big["y"], n_false.loc[big["g"]].to_numpy(), n_true.loc[big["g"]].to_numpy())
    key = pd.MultiIndex.from_arrays([big["g"].to_numpy(), ~big["y"].to_numpy(),
                                     big["r"].to_numpy() % other_n])
    lookup = pd.MultiIndex.from_frame(df[["g", "y", "r"]])
    partner = df["i"].to_numpy()[lookup.get_indexer(key)]
    own = big["i"].to_numpy()
    is_true = big["y"].to_numpy()
    return np.stack([np.where(is_true, own, partner), np.where(is_true, partner, own)], axis=1)


def probe_layers(x_extract: np.ndarray, y_extract, x_eval: np.ndarray, y_eval,
                 method: str | Method = "diffmean", *, pairs: np.ndarray | None = None,
                 ) -> tuple[np.ndarray, pd.DataFrame]:
    """Unit directions ``[n_layers, hidden]`` and per-layer statistics, all layers at once.

    ``x_*`` are activations ``[n, n_layers, hidden]``, ``y_*`` booleans (True = true
    statement). The method sees the extraction split only (``pairs``: ``[m, 2]`` row indices
    (true, false) for a paired method such as :func:`pca`, see :func:`pair_within_groups`;
    other methods get all true vs all false statements). Each direction is unit-normalised and its sign set so
    that true extraction statements project higher. Columns: layer, probe_acc, ci_low,
    ci_high, n_eval (held-out, see :data:`PROBE`), proj_mean, proj_sd (mean and sd of the
    projection over all extraction statements: the unit of ``alpha``), resid_norm (mean L2
    norm of the pooled activations on the extraction split), threshold, n_extract.
    """
    _, fn = _method(method)
    y_extract = np.asarray(y_extract, dtype=bool)
    y_eval = np.asarray(y_eval, dtype=bool)
    if x_extract.ndim != 3 or x_eval.ndim != 3 or x_extract.shape[1:] != x_eval.shape[1:]:
        raise CapeError(f"activations must be [n, n_layers, hidden] with matching layers: "
                        f"{x_extract.shape} vs {x_eval.shape}")
    if y_extract.all() or not y_extract.any():
        raise CapeError("the extraction split holds only one class (all true or all false): "
                        "use more statements or another split seed")
    if len(y_eval) == 0:
        raise CapeError("the evaluation split is empty: use more groups or a larger eval_fraction")
    if getattr(fn, "paired", False) and pairs is not None:
        pos, neg = x_extract[pairs[:, 0]], x_extract[pairs[:, 1]]
    else:
        pos, neg = x_extract[y_extract], x_extract[~y_extract]
    direction = np.asarray(fn(pos, neg), dtype=np.float64)
    if direction.shape != x_extract.shape[1:]:
        raise CapeError(f"method returned shape {direction.shape}, expected {x_extract.shape[1:]}")
    norm = np.linalg.norm(direction, axis=-1, keepdims=True)
    unit = np.divide(direction, norm, out=np.zeros_like(direction), where=norm > 0)

    p_ext = np.einsum("nlh,lh->nl", x_extract, unit.astype(np.float32), dtype=np.float64)
    m_true, m_false = p_ext[y_extract].mean(0), p_ext[~y_extract].mean(0)
    flip = np.where(m_true < m_false, -1.0, 1.0)
    unit, p_ext = unit * flip[:, None], p_ext * flip
    m_true, m_false = m_true * flip, m_false * flip
    threshold = (m_true + m_false) / 2.0

    p_eval = np.einsum("nlh,lh->nl", x_eval, unit.astype(np.float32), dtype=np.float64)
    correct = ((p_eval > threshold) == y_eval[:, None]).sum(0)
    n_eval = len(y_eval)
    low, high = wilson_interval(correct, n_eval)
    layers = np.arange(unit.shape[0])
    frame = pd.DataFrame({
        "layer": layers,
        "probe_acc": correct / n_eval,
        "ci_low": low,
        "ci_high": high,
        "n_eval": n_eval,
        "proj_mean": p_ext.mean(0),
        "proj_sd": p_ext.std(0, ddof=1) if len(p_ext) > 1 else np.zeros(len(layers)),
        "resid_norm": np.linalg.norm(x_extract.astype(np.float64), axis=-1).mean(0),
        "threshold": threshold,
        "n_extract": len(y_extract),
    })
    return unit.astype(np.float32), frame


def choose_layer(frame: pd.DataFrame, layer: str | int, n_layers: int) -> int:
    """``"best"``: highest held-out accuracy (ties: the lowest layer); ``"quarter"``:
    ``n_layers // 4`` (the preprint's choice); an int in ``0 .. n_layers - 1``."""
    if isinstance(layer, str) and layer.strip().lstrip("-").isdigit():
        layer = int(layer)
    if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, (str, int, np.integer)):
        raise CapeError(f"layer must be 'best', 'quarter' or an integer, not {layer!r}")
    if isinstance(layer, str):
        if layer == "best":
            return int(frame["layer"].to_numpy()[int(np.argmax(frame["probe_acc"].to_numpy()))])
        if layer == "quarter":
            return n_layers // 4
        raise CapeError(f"layer must be 'best', 'quarter' or an integer, not {layer!r}")
    if not 0 <= int(layer) < n_layers:
        raise CapeError(f"layer {int(layer)} is out of range: this model has {n_layers} layers "
                        f"(0 .. {n_layers - 1})")
    return int(layer)


# --------------------------------------------------------------------------- extract

@dataclass
class Extraction:
    """The result of :func:`extract`.

    ``vector`` holds the unit direction of EVERY layer (pick others later:
    ``vector.apply(..., layers=[n])``); ``layer`` is the chosen one (also in
    ``vector.meta["layer"]``); ``layers`` the per-layer statistics (see :func:`probe_layers`).
    """

    vector: "SteeringVector"
    layers: pd.DataFrame
    layer: int
    layer_rule: str
    method: str
    pooling: str
    model_id: str
    source: str
    dataset_hash: str
    split_seed: int
    eval_fraction: float
    n_extract: int
    n_eval: int
    n_groups_extract: int
    n_groups_eval: int
    seconds: float = 0.0
    probe: str = PROBE
    meta: dict = field(default_factory=dict)

    @property
    def chosen_vector(self) -> "SteeringVector":
        """The vector restricted to the chosen layer (``vector.apply`` steers every layer the
        vector holds when ``layers`` is not given)."""
        return self.vector.select(self.layer)

    @property
    def chosen(self) -> pd.Series:
        """The statistics row of the chosen layer."""
        return self.layers.loc[self.layers["layer"] == self.layer].iloc[0]

    def to_frame(self) -> pd.DataFrame:
        """Per-layer statistics with a ``chosen`` column (a copy)."""
        frame = self.layers.copy()
        frame["chosen"] = frame["layer"] == self.layer
        return frame

    def summary(self) -> str:
        """A readable report: data, split, method, chosen layer and the per-layer table."""
        row = self.chosen
        lines = [
            f"model {self.model_id}: {len(self.layers)} layers; method {self.method}, "
            f"pooling {self.pooling}",
            f"data {self.source} (sha256 {self.dataset_hash[:12]}): {self.n_extract} statements "
            f"({self.n_groups_extract} groups) to extract, {self.n_eval} ({self.n_groups_eval} "
            f"groups) held out; split seed {self.split_seed}, eval fraction {self.eval_fraction:g}",
            f"probe: {self.probe}",
            f"chosen layer {self.layer} ({self.layer_rule}): held-out accuracy "
            f"{row.probe_acc:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}], n = {int(row.n_eval)}; "
            f"projection sd {row.proj_sd:.4g}, residual norm {row.resid_norm:.4g}",
        ]
        table = self.to_frame()[["layer", "probe_acc", "ci_low", "ci_high", "proj_mean",
                                 "proj_sd", "resid_norm", "chosen"]]
        table["chosen"] = np.where(table["chosen"], "*", "")
        lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        return "\n".join(lines)


def extract(lm: "LoadedModel", contrast: "ContrastSet", *, method: str | Method = "diffmean",
            pooling: str = "last", layer: str | int = "best", seed: int = 0,
            eval_fraction: float = 0.3, batch_size: int = 16,
            progress: Callable[[int, int], Any] | None = None) -> Extraction:
    """Truth directions of every layer from a contrast set, with held-out probe statistics.

    Splits ``contrast`` by group with ``contrast.split(seed, eval_fraction)`` (no question in
    both halves), computes :func:`activations` of all statements in one batched pass, fits
    ``method`` (``"diffmean"`` default, ``"pca"`` of within-question paired differences,
    ``"logistic"``, or a function ``(pos, neg) -> direction``) on the extraction half, and
    measures each layer's probe on the evaluation half only (:data:`PROBE`). ``layer``:
    ``"best"`` (highest held-out accuracy, ties to the lowest layer), ``"quarter"``
    (``n_layers // 4``, the preprint) or an index. Returns an :class:`Extraction`.
    """
    import time

    from cape.steer.vector import SteeringVector

    started = time.perf_counter()
    name, fn = _method(method)
    if pooling not in POOLINGS:
        raise CapeError(f"unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
    n_layers = int(lm.n_layers)
    if not (isinstance(layer, str) and layer in ("best", "quarter")):
        choose_layer(pd.DataFrame({"layer": [], "probe_acc": []}), layer, n_layers)  # early check
    contrast.require_two_sided()  # empty or one-sided: a CapeError naming the set
    ext, ev = contrast.split(seed, eval_fraction)
    if len(ev.statements) == 0 or len(ext.statements) == 0:
        raise CapeError(f"{contrast.source}: the split (seed {seed}, eval fraction {eval_fraction:g}) "
                        "left one side empty: use more groups or another eval_fraction")
    acts = activations(lm, list(ext.statements) + list(ev.statements), batch_size=batch_size,
                       pooling=pooling, progress=progress)
    n_ext = len(ext.statements)
    y_ext = np.asarray(ext.labels, dtype=bool)
    pairs = pair_within_groups(y_ext, ext.groups, seed) if getattr(fn, "paired", False) else None
    if pairs is not None and len(pairs) == 0:
        raise CapeError(f"{contrast.source}: no true/false pairs in the extraction split for {name}")
    unit, frame = probe_layers(acts[:n_ext], y_ext, acts[n_ext:], np.asarray(ev.labels, dtype=bool),
                               fn, pairs=pairs)
    chosen = choose_layer(frame, layer, n_layers)
    rule = layer if isinstance(layer, str) and layer in ("best", "quarter") else "given"
    dataset_hash = contrast.hash()
    n_groups_ext, n_groups_ev = len(set(ext.groups)), len(set(ev.groups))
    stat_cols = [c for c in frame.columns if c != "layer"]
    stats = {int(r["layer"]): {c: (int(r[c]) if c in ("n_eval", "n_extract") else float(r[c]))
                               for c in stat_cols} for r in frame.to_dict("records")}
    meta = {"layer": chosen, "layer_rule": rule, "probe": PROBE, "eval_fraction": float(eval_fraction),
            "source": contrast.source, "n_extract": n_ext, "n_eval": len(ev.statements),
            "n_groups_extract": n_groups_ext, "n_groups_eval": n_groups_ev,
            # which questions (groups) were used to extract and which were held out, so that an
            # evaluation can score held-out questions only (TruthfulQA: truthfulqa:ROW)
            "extract_groups": sorted(set(ext.groups)), "eval_groups": sorted(set(ev.groups))}
    model_type = getattr(lm, "model_type", None) or getattr(getattr(lm, "model", None), "config", None)
    if model_type is not None and not isinstance(model_type, str):
        model_type = getattr(model_type, "model_type", None)
    if model_type:
        meta["model_type"] = str(model_type)  # the GGUF export's model hint (llama, qwen2...)
    vector = SteeringVector(
        directions={i: unit[i] for i in range(unit.shape[0])},
        model_id=str(lm.model_id), hidden_size=int(unit.shape[1]), n_layers=n_layers,
        method=name, pooling=pooling, dataset_hash=dataset_hash, split_seed=int(seed),
        layers_path=str(getattr(lm, "layers_path", "") or ""), stats=stats, meta=meta)
    return Extraction(
        vector=vector, layers=frame, layer=chosen, layer_rule=rule, method=name, pooling=pooling,
        model_id=str(lm.model_id), source=str(contrast.source), dataset_hash=dataset_hash,
        split_seed=int(seed), eval_fraction=float(eval_fraction), n_extract=n_ext,
        n_eval=len(ev.statements), n_groups_extract=n_groups_ext, n_groups_eval=n_groups_ev,
        seconds=time.perf_counter() - started, meta=meta)
