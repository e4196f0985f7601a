"""Side effects of steering on ordinary text: cross-entropy and KL divergence, unsteered vs steered.

Inference-time intervention (Li et al. 2023, "Inference-Time Intervention: Eliciting Truthful
Answers from a Language Model", section 4) reports what a truth direction costs the model on
text that has nothing to do with truth: the cross-entropy of next-token prediction on held-out
text, with and without the intervention, and the KL divergence of the next-token distributions.
:func:`side_effects` measures both for a :class:`~cape.steer.vector.SteeringVector` at a given
strength:

- ``ce_plain`` / ``ce_steered``: mean negative log-likelihood of the actual next token (nats per
  token), unsteered and steered; ``ce_increase = ce_steered - ce_plain``;
- ``kl_mean``: the mean over the same positions of ``KL(P_unsteered || P_steered) =
  sum_v p(v) (log p(v) - log q(v))`` (nats per token), the next-token distributions over the whole
  vocabulary.

How: the text (by default ``cape/steer/data/neutral.txt``, ~3,700 words of original neutral
prose shipped with CAPE; or a UTF-8 file of yours) is tokenised once without special tokens,
its first ``max_tokens`` tokens are cut into non-overlapping windows of ``window`` tokens (the
remainder after the last full window is dropped, so every window weighs the same; a text shorter
than one window is one window), and the windows are run in batches of ``batch_size``: one
unsteered and one steered forward pass per batch (steering by :meth:`SteeringVector.apply`, so
the model is restored on exit). Each window of T tokens gives T-1 predictions (positions
0..T-2 predict tokens 1..T-1; the first token of a window has no context and is not scored).
Log-softmax, NLL and KL are computed in float64 and vectorised over positions and vocabulary.

Uncertainty: tokens within a window are not independent, windows (disjoint stretches of text)
nearly are, so the intervals are Student t-intervals across windows of the per-window means
(``mean +- t_{n-1} * sd / sqrt(n)``; ``ce_increase`` is paired: the per-window differences).
With one window there is no interval (NaN, with a note). It describes the spread over stretches
of this text, not over other texts.

>>> res = side_effects(lm, vector, alpha=4.0)          # doctest: +SKIP
>>> print(res.summary())                                # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import inspect
import math
import numbers
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from ..analysis.results import Estimate, Result, fmt_num, jsonable
from ..errors import CapeError
from ..stats import t_interval

if TYPE_CHECKING:  # pragma: no cover
    from .models import LoadedModel
    from .vector import SteeringVector

__all__ = ["SideEffects", "side_effects", "neutral_text", "NEUTRAL_TEXT", "CI_METHOD"]

NEUTRAL_TEXT = "data/neutral.txt"
"""The shipped neutral text, relative to the ``cape.steer`` package."""
NEUTRAL_SOURCE = "cape:steer/data/neutral.txt"
"""How :attr:`SideEffects.text_source` names the shipped text."""
CI_METHOD = "Student t-interval across windows (per-window means; ce_increase paired)"
STEER_MODES = ("hook", "folded")


@dataclass
class SideEffects(Result):
    """Cross-entropy and KL divergence of next-token predictions, unsteered vs steered.

    Scalars are nats per token, token-weighted means over ``n_tokens`` scored positions (every
    window has the same length, so they are also the means of the per-window arrays).
    ``ce_increase_ci`` / ``kl_ci``: ``level`` intervals by ``ci_method`` across the
    ``n_windows`` windows ((nan, nan) with one window). Per-window arrays: ``ce_plain_windows``,
    ``ce_steered_windows``, ``kl_windows`` (``ce_increase_windows`` is their difference).
    """

    model_id: str
    alpha: float
    unit: str
    mode: str
    layers: list[int]
    ce_plain: float
    ce_steered: float
    ce_increase: float
    kl_mean: float
    ce_increase_ci: tuple[float, float]
    kl_ci: tuple[float, float]
    level: float
    ci_method: str
    n_tokens: int
    n_windows: int
    window: int
    n_text_tokens: int
    n_dropped: int
    text_source: str
    text_sha256: str
    ce_plain_windows: np.ndarray = field(repr=False)
    ce_steered_windows: np.ndarray = field(repr=False)
    kl_windows: np.ndarray = field(repr=False)
    kl_max: float = math.nan
    seconds: float = math.nan

    @property
    def ce_increase_windows(self) -> np.ndarray:
        """Per-window steered minus unsteered cross-entropy (nats/token)."""
        return self.ce_steered_windows - self.ce_plain_windows

    @property
    def perplexity_plain(self) -> float:
        """``exp(ce_plain)``."""
        return math.exp(self.ce_plain)

    @property
    def perplexity_steered(self) -> float:
        """``exp(ce_steered)``."""
        return math.exp(self.ce_steered)

    def estimates(self) -> dict[str, Estimate]:
        """The four quantities as :class:`~cape.analysis.results.Estimate` objects (n in windows
        for the ones with an interval; tokens for the two cross-entropies)."""
        note = None if self.n_windows > 1 else "one window: no interval across windows"
        per_token = f"mean over {self.n_tokens} next-token predictions in {self.n_windows} windows"

        def est(name: str, value: float, ci: tuple[float, float] | None, what: str) -> Estimate:
            return Estimate(name=name, value=float(value), n=self.n_windows if ci else self.n_tokens,
                            method=f"{what}, {per_token} of {self.window} tokens ({self.text_source})",
                            ci=ci, level=self.level if ci else None,
                            interval=self.ci_method if ci else None,
                            unit="window" if ci else "token", note=note if ci else None)

        return {
            "ce_plain": est("cross-entropy, unsteered (nats/token)", self.ce_plain, None, "mean NLL"),
            "ce_steered": est("cross-entropy, steered (nats/token)", self.ce_steered, None, "mean NLL"),
            "ce_increase": est("cross-entropy increase (nats/token)", self.ce_increase,
                               self.ce_increase_ci, "steered minus unsteered mean NLL"),
            "kl_mean": est("KL(unsteered || steered) (nats/token)", self.kl_mean, self.kl_ci,
                           "mean KL of next-token distributions"),
        }

    def summary(self) -> str:
        """A few readable lines: the setting, the cross-entropies, the KL and how they were measured."""
        pct = int(round(100 * self.level))

        def ci(pair: tuple[float, float]) -> str:
            if not all(math.isfinite(v) for v in pair):
                return "no CI (one window)"
            return f"{pct}% CI [{fmt_num(pair[0], 3)}, {fmt_num(pair[1], 3)}]"

        layers = ", ".join(str(n) for n in self.layers)
        return "\n".join([
            f"side effects of steering {self.model_id} at layer(s) {layers}: alpha {fmt_num(self.alpha)} "
            f"(unit {self.unit}, mode {self.mode})",
            f"  cross-entropy: {self.ce_plain:.4f} -> {self.ce_steered:.4f} nats/token "
            f"(perplexity {self.perplexity_plain:.2f} -> {self.perplexity_steered:.2f}); "
            f"increase {self.ce_increase:+.4f}, {ci(self.ce_increase_ci)}",
            f"  KL(unsteered || steered): {self.kl_mean:.4f} nats/token, {ci(self.kl_ci)}; "
            f"largest at one position {self.kl_max:.3g}",
            f"  {self.n_tokens} predictions in {self.n_windows} windows of {self.window} tokens from "
            f"{self.text_source} ({self.n_dropped} trailing tokens dropped); {self.ci_method}",
        ])

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["ce_increase_windows"] = jsonable(self.ce_increase_windows)
        out["estimates"] = {k: jsonable(v) for k, v in self.estimates().items()}
        return out


# --------------------------------------------------------------------------------- the text

def neutral_text() -> str:
    """The shipped neutral text (``cape/steer/data/neutral.txt``), as a string."""
    from importlib import resources

    try:
        return resources.files("cape.steer").joinpath(NEUTRAL_TEXT).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as err:  # a broken install
        raise CapeError(f"the neutral text {NEUTRAL_SOURCE} is missing from this installation ({err})",
                        hint="reinstall cape, or pass text=PATH") from None


def _read_text(text: str | os.PathLike | None) -> tuple[str, str]:
    """(content, source name) of the shipped text or of a user's UTF-8 file."""
    if text is None:
        content, source = neutral_text(), NEUTRAL_SOURCE
    else:
        path = Path(text)
        if not path.is_file():
            raise CapeError(f"{path}: no such text file")
        try:
            content = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise CapeError(f"{path}: not UTF-8 text (invalid byte at offset {err.start})") from None
        except OSError as err:
            raise CapeError(f"{path}: cannot read the text ({err.strerror or err})") from None
        source = str(path)
    if not content.strip():
        raise CapeError(f"{source}: the text is empty")
    return content, source


def _positive_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise CapeError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return int(value)


def _max_positions(model: Any) -> int | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(text, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


# ------------------------------------------------------------------------------ measurement

def _window_scores(plain: Any, steered: Any, targets: Any) -> tuple[Any, Any, Any]:
    """Per-position NLL (unsteered, steered) and KL(plain || steered), float64, for one window.

    ``plain``/``steered``: logits ``[T-1, V]`` at the predicting positions; ``targets``:
    the next tokens ``[T-1]``.
    """
    logp = plain.double().log_softmax(-1)
    logq = steered.double().log_softmax(-1)
    index = targets[:, None]
    nll_p = -logp.gather(-1, index)[:, 0]
    nll_q = -logq.gather(-1, index)[:, 0]
    kl = (logp.exp() * (logp - logq)).sum(-1)
    return nll_p, nll_q, kl


def side_effects(lm: "LoadedModel", vector: "SteeringVector", *, alpha: float,
                 layers: int | Iterable[int] | None = None, unit: str = "sd", mode: str = "hook",
                 text: str | os.PathLike | None = None, max_tokens: int = 2048, window: int = 256,
                 batch_size: int = 4, level: float = 0.95,
                 progress: Callable[[int, int], Any] | None = None) -> SideEffects:
    """Cross-entropy and KL divergence of next-token predictions, unsteered vs steered.

    ``lm``: a :class:`~cape.steer.models.LoadedModel` (model and tokenizer). ``vector``,
    ``alpha``, ``layers``, ``unit``, ``mode``: as :meth:`SteeringVector.apply` (``layers``
    defaults to the layer the vector was extracted for, ``meta["layer"]``, else all its layers;
    ``mode`` "hook" or "folded", steering every position). ``text``: a UTF-8 file (default: the
    shipped neutral text). ``max_tokens``: tokens of text used; ``window``: tokens per window;
    ``batch_size``: windows per forward pass; ``level``: of the intervals. ``progress(done,
    total)`` is called after each batch with window counts. See the module doc for the method.

    Raises CapeError for a missing, non-UTF-8 or empty file, a text of fewer than 2 tokens, a
    window longer than the model's context, non-finite logits, or a vector that does not fit.
    """
    import torch

    start_time = time.perf_counter()
    if mode not in STEER_MODES:
        hint = ("the preprint's rule steers only the last position of a prompt, which no "
                "next-token prediction here reads") if mode == "paper" else None
        raise CapeError(f"side effects are measured with mode 'hook' or 'folded', not {mode!r}", hint=hint)
    max_tokens = _positive_int(max_tokens, "max_tokens", 2)
    window = _positive_int(window, "window", 2)
    batch_size = _positive_int(batch_size, "batch_size", 1)
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < float(level) < 1:
        raise CapeError(f"level must be a number between 0 and 1, not {level!r}")
    tokenizer = getattr(lm, "tokenizer", None)
    model = getattr(lm, "model", None)
    if tokenizer is None or model is None:
        raise CapeError("side effects need a LoadedModel (a model and its tokenizer)",
                        hint="load one with cape.steer.load_model")
    if layers is None and "layer" in vector.meta and vector.meta["layer"] in vector.directions:
        layers = [int(vector.meta["layer"])]
    vector.check_model(lm)                        # fails (or warns) once, before any forward
    chosen = sorted(vector.scaled_arrays(alpha, unit, layers=layers))  # checks alpha, unit, stats
    alpha = float(alpha)

    content, source = _read_text(text)
    encoded = tokenizer(content, add_special_tokens=False, truncation=False, verbose=False)
    ids = np.asarray(encoded["input_ids"][:max_tokens], dtype=np.int64)
    if ids.size < 2:
        raise CapeError(f"{source}: the text has {ids.size} token(s); side effects need at least 2 "
                        "(one next-token prediction)")
    width = min(window, int(ids.size))
    limit = _max_positions(model)
    if limit is not None and width > limit:
        raise CapeError(f"window of {width} tokens is longer than {getattr(lm, 'model_id', 'the model')}'s "
                        f"context ({limit} positions)", hint=f"pass window <= {limit}")
    n_windows = int(ids.size) // width
    used = n_windows * width
    grid = ids[:used].reshape(n_windows, width)

    try:
        device = next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        device = torch.device("cpu")
    kwargs: dict[str, Any] = {}
    try:
        if "use_cache" in inspect.signature(model.forward).parameters:
            kwargs["use_cache"] = False
    except (TypeError, ValueError):  # pragma: no cover
        pass

    ce_p = np.empty(n_windows)
    ce_q = np.empty(n_windows)
    kl_w = np.empty(n_windows)
    kl_max = 0.0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for lo in range(0, n_windows, batch_size):
                batch = torch.from_numpy(grid[lo:lo + batch_size]).to(device)
                mask = torch.ones_like(batch)
                plain = model(input_ids=batch, attention_mask=mask, **kwargs).logits
                with warnings.catch_warnings():  # check_model above already warned once
                    warnings.filterwarnings("ignore", message="steering vector was extracted from")
                    with vector.apply(lm, alpha, layers=chosen, unit=unit, mode=mode):
                        steered = model(input_ids=batch, attention_mask=mask, **kwargs).logits
                if not (torch.isfinite(plain).all() and torch.isfinite(steered).all()):
                    raise CapeError(f"the logits are not finite (NaN or inf) in windows {lo}.."
                                    f"{lo + len(batch) - 1}: the model probably overflowed in float16, "
                                    "or the steering is too strong",
                                    hint="load the model with dtype='float32', or lower alpha")
                targets = batch[:, 1:]
                for i in range(batch.shape[0]):  # one window at a time: [T-1, V] in float64
                    nll_p, nll_q, kl = _window_scores(plain[i, :-1], steered[i, :-1], targets[i])
                    ce_p[lo + i] = float(nll_p.mean())
                    ce_q[lo + i] = float(nll_q.mean())
                    kl_w[lo + i] = float(kl.mean())
                    kl_max = max(kl_max, float(kl.max()))
                if progress is not None:
                    progress(min(lo + batch_size, n_windows), n_windows)
    finally:
        if was_training:
            model.train()

    level = float(level)
    return SideEffects(
        model_id=str(getattr(lm, "model_id", "") or vector.model_id), alpha=alpha, unit=unit, mode=mode,
        layers=[int(n) for n in chosen],
        ce_plain=float(ce_p.mean()), ce_steered=float(ce_q.mean()), ce_increase=float((ce_q - ce_p).mean()),
        kl_mean=float(kl_w.mean()), ce_increase_ci=t_interval(ce_q - ce_p, level),
        kl_ci=t_interval(kl_w, level), level=level, ci_method=CI_METHOD,
        n_tokens=n_windows * (width - 1), n_windows=n_windows, window=width, n_text_tokens=used,
        n_dropped=int(ids.size) - used, text_source=source,
        text_sha256=hashlib.sha256(content.encode("utf-8")).hexdigest(),
        ce_plain_windows=ce_p, ce_steered_windows=ce_q, kl_windows=kl_w, kl_max=kl_max,
        seconds=time.perf_counter() - start_time,
    )
