"""Internal coupling: how a model's truth direction and its reasoning direction relate, per
layer, measured against a null.

The preprints report an "internal coupling" per layer: the cosine between the mean hidden
vector of "reasoning" statements and the mean hidden vector of "truthfulness" statements
(METHODS section 10). The residual stream of a transformer has a large mean shared by every
input, so that raw cosine is close to 1 for any two sets of statements; the released files
show it (pythia-1b: all 16 layers 0.97862646). Here both are computed side by side:

* ``raw_cos`` (the preprint's way, uncentred): cosine between the mean pooled state of the
  true statements of the truth set and that of the correct statements of the reasoning set;
* ``centred_cos``: cosine between the two DIRECTIONS, each from mean-subtracted states,
  i.e. the difference of class means (true minus false; correct minus incorrect), which
  the shared mean cannot enter;
* the null of ``centred_cos``: the same cosine between directions of random label splits
  of the same statements (labels permuted over each set, class sizes kept; ``n_null``
  draws), with its 2.5 and 97.5 percentiles: what arbitrary splits of these statements
  give, shared structure of the two sets (length, format) included. (Shuffling only within
  each true/false pair would keep the direction up to its sign, so it is not used.)
* each direction's held-out probe accuracy per layer (Wilson interval), from a seeded split
  by group (:func:`cape.steer.extraction.probe_layers`).

The reasoning set (:func:`reasoning_set`) is generated with a seed: arithmetic with its
result right or off by a small amount, and syllogisms with the right or the negated
conclusion, one group per problem.

Per attention head (``heads=True``): each head's contribution to the residual stream is its
slice of the block's attention output projection applied to the head's output
(:func:`head_projections`, :func:`head_inputs`); for each head, the cosine between its
contribution to the truth contrast and to the reasoning contrast. A head is "competing" by
the preprint's definition when the per-pair cosine is below -0.5 on more than half the
pairs (METHODS section 10), and by the sound one when its cosine lies below the 2.5% tail of
the same null of random label splits (:func:`heads_from_inputs`, :func:`head_counts`).

>>> from cape.steer import load_model, default_set                 # doctest: +SKIP
>>> from cape.steer.internals import internal_coupling, reasoning_set
>>> res = internal_coupling(lm, default_set(), reasoning_set(120))  # doctest: +SKIP
>>> res.table[["layer", "raw_cos", "centred_cos", "null_low", "null_high"]]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import CapeError
from .data import ContrastSet

if TYPE_CHECKING:  # pragma: no cover
    from .models import LoadedModel

__all__ = ["reasoning_set", "coupling_from_activations", "internal_coupling", "InternalCoupling", "KIND",
           "saved_internals", "head_projections", "head_inputs", "heads_from_inputs", "head_counts", "OUT_PROJ"]

KIND = "cape-internal-coupling"

_KINDS = (("dogs", "dog", "animals", "animal"), ("roses", "rose", "flowers", "flower"),
          ("oaks", "oak", "trees", "tree"), ("trout", "trout", "fish", "fish"),
          ("hammers", "hammer", "tools", "tool"), ("violins", "violin", "instruments", "instrument"),
          ("sparrows", "sparrow", "birds", "bird"), ("apples", "apple", "fruits", "fruit"),
          ("cars", "car", "vehicles", "vehicle"), ("squares", "square", "shapes", "shape"))
_NAMES = ("Ada", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea")


def reasoning_set(n_problems: int = 120, seed: int = 0) -> ContrastSet:
    """Correct and incorrect worked statements, generated with ``seed``: one group per
    problem, each with one correct and one incorrect statement. Even problems are arithmetic
    (``"A + B = C."``, ``-`` or ``*``; the incorrect result is off by 1 to 9), odd ones
    syllogisms (``"All dogs are animals. Ada is a dog. So Ada is an animal."`` against the
    negated conclusion)."""
    if int(n_problems) < 4:
        raise CapeError(f"a reasoning set needs at least 4 problems, not {n_problems}")
    rng = np.random.default_rng(seed)
    statements, labels, groups = [], [], []
    for k in range(int(n_problems)):
        if k % 2 == 0:
            a, b = (int(x) for x in rng.integers(2, 60, size=2))
            op = "+-*"[int(rng.integers(0, 3))]
            if op == "-" and b > a:
                a, b = b, a
            value = a + b if op == "+" else a - b if op == "-" else a * b
            wrong = value + int(rng.choice([-1, 1])) * int(rng.integers(1, 10))
            pair = (f"{a} {op} {b} = {value}.", f"{a} {op} {b} = {wrong}.")
        else:
            plural, single, sup_plural, sup = _KINDS[int(rng.integers(0, len(_KINDS)))]
            name = _NAMES[int(rng.integers(0, len(_NAMES)))]
            art = "an" if sup[0] in "aeiou" else "a"
            art1 = "an" if single[0] in "aeiou" else "a"
            head = f"All {plural} are {sup_plural}. {name} is {art1} {single}. So {name} is"
            pair = (f"{head} {art} {sup}.", f"{head} not {art} {sup}.")
        order = [0, 1] if rng.random() < 0.5 else [1, 0]  # the correct one is not always first
        for i in order:
            statements.append(pair[i])
            labels.append(i == 0)
            groups.append(f"reason:{k}")
    return ContrastSet(statements, np.array(labels), groups, source=f"reasoning_set(n_problems={n_problems}, "
                                                                    f"seed={seed})")


def _label_splits(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random label splits of the statements: the labels permuted over ALL statements
    (the class sizes kept), as a boolean ``[n, len(labels)]``."""
    return rng.permuted(np.broadcast_to(np.asarray(labels, bool), (n, len(labels))), axis=1)


def _class_means(x: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mean of ``x`` [n, L, H] over the rows of each mask [k, n] -> [k, L, H] (float64)."""
    w = masks.astype(np.float64)
    w /= np.maximum(w.sum(1, keepdims=True), 1.0)
    return np.einsum("kn,nlh->klh", w, x, dtype=np.float64, optimize=True)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def coupling_from_activations(x_truth: np.ndarray, truth: ContrastSet, x_reason: np.ndarray, reason: ContrastSet,
                              *, n_null: int = 50, seed: int = 0, eval_fraction: float = 0.3) -> pd.DataFrame:
    """The per-layer table of :func:`internal_coupling` from pooled activations
    (``[n, n_layers, hidden]`` of each set, in the sets' order). Columns: layer, raw_cos,
    centred_cos, null_mean, null_low, null_high (2.5 / 97.5 percentiles over ``n_null``
    random label splits of both sets), outside_null, truth_acc (+ ci_low/ci_high),
    reason_acc (+ ci_low/ci_high), n_null."""
    from .extraction import probe_layers

    if x_truth.ndim != 3 or x_reason.ndim != 3 or x_truth.shape[1:] != x_reason.shape[1:]:
        raise CapeError(f"activations must be [n, n_layers, hidden] with the same layers and width: "
                        f"{x_truth.shape} vs {x_reason.shape}")
    if len(x_truth) != len(truth) or len(x_reason) != len(reason):
        raise CapeError("activations and statements differ in number")
    truth.require_two_sided()
    reason.require_two_sided()
    if int(n_null) < 10:
        raise CapeError(f"n_null must be at least 10 (an interval from fewer shuffles means little), not {n_null}")
    yt, yr = np.asarray(truth.labels, bool), np.asarray(reason.labels, bool)
    mt = _class_means(x_truth, np.stack([yt, ~yt]))
    mr = _class_means(x_reason, np.stack([yr, ~yr]))
    raw = _cos(mt[0], mr[0])
    centred = _cos(mt[0] - mt[1], mr[0] - mr[1])
    rng = np.random.default_rng(seed)
    st = _label_splits(yt, int(n_null), rng)
    sr = _label_splits(yr, int(n_null), rng)
    dt = _class_means(x_truth, st) - _class_means(x_truth, ~st)
    dr = _class_means(x_reason, sr) - _class_means(x_reason, ~sr)
    null = _cos(dt, dr)  # [n_null, L]
    low, high = np.nanpercentile(null, [2.5, 97.5], axis=0)
    frame = pd.DataFrame({"layer": np.arange(x_truth.shape[1]), "raw_cos": raw, "centred_cos": centred,
                          "null_mean": np.nanmean(null, axis=0), "null_low": low, "null_high": high})
    frame["outside_null"] = (frame["centred_cos"] < low) | (frame["centred_cos"] > high)
    for name, x, cs in (("truth", x_truth, truth), ("reason", x_reason, reason)):
        ext, ev = cs.split(seed=seed, eval_fraction=eval_fraction)
        index = {s: i for i, s in enumerate(cs.statements)}
        ie = np.array([index[s] for s in ext.statements])
        iv = np.array([index[s] for s in ev.statements])
        _, probe = probe_layers(x[ie], cs.labels[ie], x[iv], cs.labels[iv])
        frame[f"{name}_acc"] = probe["probe_acc"].to_numpy()
        frame[f"{name}_ci_low"] = probe["ci_low"].to_numpy()
        frame[f"{name}_ci_high"] = probe["ci_high"].to_numpy()
    frame["n_null"] = int(n_null)
    return frame


@dataclass
class InternalCoupling:
    """Per layer: raw and centred cosines of the truth and reasoning directions, the centred
    cosine's null band, and each direction's held-out probe accuracy (``table``)."""

    model_id: str
    table: pd.DataFrame
    meta: dict = field(default_factory=dict)
    #: per (layer, head), when measured (:func:`heads_from_inputs`); counts in ``meta["heads"]``
    heads: pd.DataFrame | None = None

    def findings(self) -> list[str]:
        """The result in a few lines: the raw and the centred cosines over layers, and, when
        heads were measured, the competing-head counts."""
        t, m = self.table, self.meta
        lines = [f"raw cosine (uncentred, the preprint's way): {t['raw_cos'].min():.4f} to {t['raw_cos'].max():.4f} "
                 f"over {len(t)} layers",
                 f"centred cosine (difference of class means): {t['centred_cos'].min():+.3f} to "
                 f"{t['centred_cos'].max():+.3f}; outside the null band (random label splits, "
                 f"{int(t['n_null'].iloc[0])} draws, 2.5-97.5%) at {int(t['outside_null'].sum())} of {len(t)} layers"]
        hc = m.get("heads")
        if hc:
            lines.append(f"competing heads of {hc['n_heads']}: preprint's definition (per-pair cosine below "
                         f"{PAPER_COSINE:g} on more than half of {m.get('n_pairs')} pairs) {hc['paper']['k']} "
                         f"[{hc['paper']['ci'][0]:.3f}, {hc['paper']['ci'][1]:.3f} as a share]; against the null "
                         f"(cosine below the 2.5% tail of random label splits) {hc['sound']['k']} "
                         f"[{hc['sound']['ci'][0]:.3f}, {hc['sound']['ci'][1]:.3f}], "
                         f"{hc['sound']['expected_by_chance']:.1f} expected by chance")
        return lines

    def summary(self) -> str:
        t, m = self.table, self.meta
        found = self.findings()
        lines = [f"internal coupling of {self.model_id}: {m.get('n_truth')} truth statements ({m.get('truth_source')}), "
                 f"{m.get('n_reason')} reasoning statements ({m.get('reason_source')}), pooling {m.get('pooling')}"]
        lines += [f"  {x}" for x in found[:2]]
        cols = ["layer", "raw_cos", "centred_cos", "null_low", "null_high", "truth_acc", "reason_acc"]
        lines.append(t[cols].to_string(index=False, float_format=lambda v: f"{v:+.4f}"))
        lines += [f"  {x}" for x in found[2:]]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        from ..schema import to_python

        doc = {"kind": KIND, "model": self.model_id, "meta": self.meta,
               "layers": [{k: to_python(v) for k, v in r.items()} for r in self.table.to_dict("records")]}
        if self.heads is not None:
            doc["heads"] = [{k: to_python(v) for k, v in r.items()} for r in self.heads.to_dict("records")]
        return doc

    def save(self, path: str | Path) -> Path:
        """Write the results as JSON, atomically."""
        from ._saved import write_atomic

        return write_atomic(path, self.to_dict())

    def record(self) -> Path:
        """Save into ``$CAPE_HOME/internals`` (where ``cape audit`` and ``cape report`` look) as
        ``<model>-<time>.json``."""
        from ._saved import record_path

        return self.save(record_path("internals", self.model_id))

    @classmethod
    def load(cls, path: str | Path) -> "InternalCoupling":
        from ._saved import read_kind

        path = Path(path)
        doc = read_kind(path, KIND, "an internal-coupling result saved by `cape steer internals --out`")
        if not isinstance(doc.get("layers"), list):
            raise CapeError(f"{path}: field 'layers' is not a list")
        table = pd.DataFrame(doc["layers"])
        for col in ("layer", "raw_cos", "centred_cos", "null_low", "null_high", "outside_null"):
            if col not in table:
                raise CapeError(f"{path}: the layers lack field '{col}'")
        heads = pd.DataFrame(doc["heads"]) if isinstance(doc.get("heads"), list) else None
        return cls(str(doc.get("model")), table, dict(doc.get("meta") or {}), heads)


def saved_internals() -> list["InternalCoupling"]:
    """Results recorded in ``$CAPE_HOME/internals``: the newest per model, sorted by model."""
    from ._saved import home_folder

    newest: dict[str, tuple[str, InternalCoupling]] = {}
    for f in sorted(home_folder("internals").glob("*.json")):
        try:
            res = InternalCoupling.load(f)
        except CapeError:
            continue
        if res.model_id not in newest or f.name >= newest[res.model_id][0]:
            newest[res.model_id] = (f.name, res)
    return [newest[k][1] for k in sorted(newest)]


def internal_coupling(lm: "LoadedModel", truth: ContrastSet, reasoning: ContrastSet, *, n_null: int = 50,
                      seed: int = 0, eval_fraction: float = 0.3, pooling: str = "last", batch_size: int = 16,
                      heads: bool = False, progress: Callable[[int, int], Any] | None = None) -> InternalCoupling:
    """Capture every layer's pooled output for both statement sets (one batched pass each,
    :func:`cape.steer.extraction.activations`) and compute :func:`coupling_from_activations`;
    with ``heads``, also every attention head's contribution (:func:`head_inputs`,
    :func:`heads_from_inputs`, :func:`head_counts`)."""
    from .extraction import activations

    t0 = time.perf_counter()
    total = len(truth) + len(reasoning)

    def part(offset: int):
        return None if progress is None else (lambda done, _n: progress(offset + done, total))

    if heads:  # one pass per set captures every block's output and every head's at once
        modules, w, n_heads = head_projections(lm)
        xt, zt = head_inputs(lm, truth.statements, modules, pooling=pooling, batch_size=batch_size, blocks=True)
        if progress is not None:
            progress(len(truth), total)
        xr, zr = head_inputs(lm, reasoning.statements, modules, pooling=pooling, batch_size=batch_size, blocks=True)
        if progress is not None:
            progress(total, total)
    else:
        xt = activations(lm, truth.statements, batch_size=batch_size, pooling=pooling, progress=part(0))
        xr = activations(lm, reasoning.statements, batch_size=batch_size, pooling=pooling, progress=part(len(truth)))
    table = coupling_from_activations(xt, truth, xr, reasoning, n_null=n_null, seed=seed, eval_fraction=eval_fraction)
    head_frame, counts, n_pairs = None, None, None
    if heads:
        yt, yr = np.asarray(truth.labels, bool), np.asarray(reasoning.labels, bool)

        def unit(x, y):
            d = (_class_means(x, y[None]) - _class_means(x, ~y[None]))[0]
            return d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-12)

        head_frame = heads_from_inputs(zt, truth, zr, reasoning, w, n_heads, unit_truth=unit(xt, yt),
                                       unit_reason=unit(xr, yr), n_null=n_null, seed=seed)
        counts = head_counts(head_frame)
        n_pairs = int(head_frame["n_pairs"].iloc[0])
    meta = {"n_truth": len(truth), "n_reason": len(reasoning), "truth_source": truth.source,
            "reason_source": reasoning.source, "truth_hash": truth.hash(), "reason_hash": reasoning.hash(),
            "pooling": pooling, "n_null": int(n_null), "seed": int(seed), "eval_fraction": float(eval_fraction),
            "n_layers": int(xt.shape[1]), "hidden_size": int(xt.shape[2]),
            "seconds": time.perf_counter() - t0, "heads": counts, "n_pairs": n_pairs,
            "definition": "raw: cosine of the mean pooled state of true (truth set) and correct (reasoning set) "
                          "statements, uncentred; centred: cosine of the differences of class means; null: "
                          "centred cosine between directions of random label splits of both sets"}
    return InternalCoupling(str(lm.model_id), table, meta, head_frame)


# ---------------------------------------------------------------------------------------------
# Attention heads
# ---------------------------------------------------------------------------------------------
#: the attention output projection inside a decoder block, by architecture (Llama-style,
#: GPT-NeoX, OPT, Falcon/BLOOM, Phi, GPT-2): its input is the heads' outputs side by side
OUT_PROJ = ("self_attn.o_proj", "attention.dense", "self_attn.out_proj", "self_attention.dense", "self_attn.dense",
            "attn.c_proj")
#: the paper protocol's threshold: a pair "competes" when its cosine is below this
PAPER_COSINE = -0.5


def head_projections(lm: "LoadedModel") -> tuple[list[Any], np.ndarray, int]:
    """``(modules, W, n_heads)``: each block's attention output projection, its weights as
    ``[n_layers, hidden, n_heads * head_dim]`` (float32), and the number of heads. A clear
    error for an architecture without a known output projection."""
    from .layers import find_layers

    _, blocks = find_layers(lm.model, getattr(lm, "layers_path", None))
    cfg = lm.model.config
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    n_heads = next((int(getattr(cfg, k)) for k in ("num_attention_heads", "n_head", "num_heads")
                    if isinstance(getattr(cfg, k, None), int)), None)
    modules, weights = [], []
    for i, block in enumerate(blocks):
        found = None
        for path in OUT_PROJ:
            try:
                found = block.get_submodule(path)
                break
            except AttributeError:
                continue
        if found is None or not hasattr(found, "weight") or n_heads is None:
            raise CapeError(f"per-head analysis is not supported for {type(lm.model).__name__} yet: block {i} has "
                            f"none of the attention output projections {', '.join(OUT_PROJ)}",
                            hint="the per-layer coupling works for every architecture (leave out --heads)")
        w = found.weight.detach().float().cpu().numpy()
        if type(found).__name__ == "Conv1D":  # GPT-2 stores (in, out)
            w = w.T
        if w.shape[1] % n_heads:
            raise CapeError(f"block {i}: the output projection's {w.shape[1]} inputs do not split into "
                            f"{n_heads} heads")
        modules.append(found)
        weights.append(w)
    return modules, np.stack(weights), n_heads


def head_inputs(lm: "LoadedModel", statements: list[str], modules: list[Any], *, pooling: str = "last",
                batch_size: int = 16, blocks: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The input of each block's attention output projection (the heads' outputs side by side),
    pooled per statement as :func:`cape.steer.extraction.activations` pools block outputs:
    float32 ``[n, n_layers, n_heads * head_dim]``, one batched pass per batch of statements.
    With ``blocks``, the same pass also captures every block's pooled output and returns
    ``(block_outputs [n, n_layers, hidden], head_inputs)``."""
    import torch

    from .layers import find_layers, hidden_of

    tok, model = lm.tokenizer, lm.model
    n, n_layers = len(statements), len(modules)
    width = modules[0].weight.shape[0 if type(modules[0]).__name__ == "Conv1D" else 1]
    z_out = np.zeros((n, n_layers, width), np.float32)
    x_out = np.zeros((n, n_layers, int(lm.hidden_size)), np.float32) if blocks else None
    state: dict[str, Any] = {}

    def pool(t):
        t = t.float()
        if pooling == "last":
            return t[:, -1]  # left padding: the last position is each row's last token
        m = state["mask"][..., None]
        return (t * m).sum(1) / m.sum(1)

    def pre_hook(index: int):
        def hook(module, args):
            z_out[state["rows"], index] = pool(args[0]).cpu().numpy()
        return hook

    def block_hook(index: int):
        def hook(module, args, output):
            x_out[state["rows"], index] = pool(hidden_of(output)).cpu().numpy()
        return hook

    old_side = getattr(tok, "padding_side", "right")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    handles = [m.register_forward_pre_hook(pre_hook(i)) for i, m in enumerate(modules)]
    if blocks:
        _, block_list = find_layers(model, getattr(lm, "layers_path", None))
        handles += [b.register_forward_hook(block_hook(i)) for i, b in enumerate(block_list)]
    device = next(model.parameters()).device
    from .extraction import _accepts

    give_positions = _accepts(model.forward, "position_ids")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, n, int(batch_size)):
                chunk = statements[start:start + int(batch_size)]
                enc = tok(chunk, return_tensors="pt", padding=True)
                enc = {k: v.to(device) for k, v in enc.items()}
                state["mask"] = enc["attention_mask"].float()
                state["rows"] = slice(start, start + len(chunk))
                if give_positions:  # left padding: positions count real tokens only (GPT-2, OPT, ...)
                    enc["position_ids"] = (enc["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
                model(**enc, use_cache=False)
    finally:
        for h in handles:
            h.remove()
        tok.padding_side = old_side
        model.train(was_training)
    if not np.isfinite(z_out).all() or (x_out is not None and not np.isfinite(x_out).all()):
        raise CapeError("activations are NaN or infinite (float16 overflow?): load the model in float32")
    return (x_out, z_out) if blocks else z_out


def _per_head(w: np.ndarray, dz: np.ndarray, n_heads: int) -> np.ndarray:
    """Each head's contribution to the residual stream: ``w`` [L, hidden, heads*hd] applied to
    head slices of ``dz`` [..., L, heads*hd] -> [..., L, heads, hidden]."""
    L, hidden, width = w.shape
    hd = width // n_heads
    wh = w.reshape(L, hidden, n_heads, hd)
    zh = dz.reshape(*dz.shape[:-1], n_heads, hd)
    return np.einsum("lxhd,...lhd->...lhx", wh, zh, optimize=True)


def heads_from_inputs(z_truth: np.ndarray, truth: ContrastSet, z_reason: np.ndarray, reason: ContrastSet,
                      w: np.ndarray, n_heads: int, *, unit_truth: np.ndarray | None = None,
                      unit_reason: np.ndarray | None = None, n_null: int = 50, seed: int = 0) -> pd.DataFrame:
    """One row per (layer, head): ``cos`` between the head's contribution to the truth contrast
    (true minus false, class means) and to the reasoning contrast (correct minus incorrect);
    its null band over ``n_null`` random label splits (``null_low``, ``null_high``);
    ``competing_sound`` = ``cos`` below the null's 2.5th percentile; ``paper_share`` = the
    share of statement pairs (a true/false pair with a correct/incorrect pair, in order) whose
    per-pair cosine is below -0.5, and ``competing_paper`` = that share above one half (the
    preprint's definition, METHODS section 10); ``proj_truth`` / ``proj_reason``: the
    contribution projected on the layer's unit truth / reasoning direction (when given)."""
    from .extraction import pair_within_groups

    yt, yr = np.asarray(truth.labels, bool), np.asarray(reason.labels, bool)
    L = w.shape[0]
    ct = _per_head(w, (_class_means(z_truth, yt[None]) - _class_means(z_truth, ~yt[None]))[0], n_heads)
    cr = _per_head(w, (_class_means(z_reason, yr[None]) - _class_means(z_reason, ~yr[None]))[0], n_heads)
    cos = _cos(ct, cr)  # [L, heads]
    rng = np.random.default_rng(seed)
    st, sr = _label_splits(yt, int(n_null), rng), _label_splits(yr, int(n_null), rng)
    nt = _per_head(w, _class_means(z_truth, st) - _class_means(z_truth, ~st), n_heads)
    nr = _per_head(w, _class_means(z_reason, sr) - _class_means(z_reason, ~sr), n_heads)
    null = _cos(nt, nr)  # [K, L, heads]
    low, high = np.nanpercentile(null, [2.5, 97.5], axis=0)
    pt = pair_within_groups(yt, truth.groups, seed=seed)
    pr = pair_within_groups(yr, reason.groups, seed=seed)
    m = min(len(pt), len(pr))
    if m == 0:
        raise CapeError("no true/false and correct/incorrect statement pairs to compare per pair")
    share = np.zeros((L, n_heads))
    for layer in range(L):  # one layer at a time keeps [pairs, heads, hidden] small
        dt = _per_head(w[layer:layer + 1], (z_truth[pt[:m, 0], layer] - z_truth[pt[:m, 1], layer])[:, None], n_heads)
        dr = _per_head(w[layer:layer + 1], (z_reason[pr[:m, 0], layer] - z_reason[pr[:m, 1], layer])[:, None],
                       n_heads)
        share[layer] = (_cos(dt, dr)[:, 0] < PAPER_COSINE).mean(0)
    layer_idx, head_idx = np.meshgrid(np.arange(L), np.arange(n_heads), indexing="ij")
    frame = pd.DataFrame({"layer": layer_idx.ravel(), "head": head_idx.ravel(), "cos": cos.ravel(),
                          "null_low": low.ravel(), "null_high": high.ravel(),
                          "paper_share": share.ravel(), "n_pairs": m})
    frame["competing_sound"] = frame["cos"] < frame["null_low"]
    frame["competing_paper"] = frame["paper_share"] > 0.5
    if unit_truth is not None:
        frame["proj_truth"] = np.einsum("lhx,lx->lh", ct, unit_truth).ravel()
    if unit_reason is not None:
        frame["proj_reason"] = np.einsum("lhx,lx->lh", cr, unit_reason).ravel()
    return frame


def head_counts(heads: pd.DataFrame) -> dict[str, Any]:
    """Competing heads under both definitions: count, share of all heads with a Wilson 95%
    interval, and for the sound one the count expected by chance (2.5% of heads: the null's
    lower tail)."""
    from ..stats import wilson_interval

    n = len(heads)
    out = {"n_heads": n}
    for name in ("paper", "sound"):
        k = int(heads[f"competing_{name}"].sum())
        lo, hi = wilson_interval(k, n)
        out[name] = {"k": k, "share": k / n if n else float("nan"), "ci": [float(lo), float(hi)]}
    out["sound"]["expected_by_chance"] = 0.025 * n
    return out
