"""Greedy open-ended answers to TruthfulQA questions, for the judge (:mod:`cape.steer.judge`).

Prompt: the TruthfulQA paper's 6-shot QA primer (:data:`cape.steer.truthfulqa_mc.QA_PRIMER`)
followed by ``"\\n\\nQ: " + question + "\\nA:"``, the context lm-eval's truthfulqa_mc tasks
and the TruthfulQA paper's own generation code use. (lm-eval's ``truthfulqa_gen`` ends its
context after the question, without ``"\\nA:"``, so its completions begin with ``"A:"``;
here the model answers directly.) Decoding is greedy, up to ``max_new_tokens`` new tokens,
stopping at the first blank line (``"\\n\\n"``, lm-eval's ``until`` for this task, checked on
the decoded text of each row); the
answer is the text before it, stripped (lm-eval's ``process_results_gen`` strips too).

Answers are generated in left-padded batches with ``model.generate`` (KV cache). Call
:func:`answer_questions` inside a steering context (``with vector.apply(lm, alpha): ...``)
for steered answers; with ``positions="all"`` every token, the prompt's included, is
steered, as in the multiple-choice scoring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import CapeError

if TYPE_CHECKING:  # pragma: no cover
    from .models import LoadedModel

__all__ = ["answer_questions", "answer_prompt", "STOP"]

#: where an answer ends (lm-eval truthfulqa_gen's ``until``: the few-shot delimiter)
STOP = "\n\n"


def _StopAtText(tokenizer: Any, start: int):
    """A stopping criterion: row i is done once its new text (tokens from ``start`` on,
    decoded) contains :data:`STOP`. Decoding works for any tokenizer (transformers' own
    ``stop_strings`` needs a vocabulary it can map back to strings, which not all have)."""
    import torch
    from transformers import StoppingCriteria

    class StopAtText(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
            return torch.tensor([STOP in t for t in texts], dtype=torch.bool, device=input_ids.device)

    return StopAtText()


def answer_prompt(question: str, primer: str | None = None) -> str:
    """The context an answer is generated from: primer + ``"\\n\\nQ: " + question + "\\nA:"``."""
    from .truthfulqa_mc import QA_PRIMER, doc_to_text

    return doc_to_text(question, QA_PRIMER if primer is None else primer)


def answer_questions(lm: "LoadedModel", questions: Sequence[str], *, primer: str | None = None,
                     max_new_tokens: int = 50, batch_size: int = 8,
                     progress: Callable[[int, int], Any] | None = None) -> list[str]:
    """Greedy answers to ``questions`` (see the module doc), one string per question.

    ``progress(done, total)`` after each batch. An empty question is an error; an answer the
    model ends at once is the empty string (the judge counts it as false).
    """
    import torch
    from transformers import StoppingCriteriaList

    questions = [str(q) for q in questions]
    if any(not q.strip() for q in questions):
        raise CapeError("an open-ended question is empty")
    if int(max_new_tokens) < 1:
        raise CapeError(f"max_new_tokens must be >= 1, not {max_new_tokens}")
    if int(batch_size) < 1:
        raise CapeError(f"batch_size must be >= 1, not {batch_size}")
    tok, model = lm.tokenizer, lm.model
    if tok is None:
        raise CapeError(f"model '{lm.model_id}' has no tokenizer")
    texts = [answer_prompt(q, primer) for q in questions]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    old_side = getattr(tok, "padding_side", "right")
    tok.padding_side = "left"
    device = next(model.parameters()).device
    answers: list[str] = []
    # longest first, so that a batch pads little; answers are returned in the input order
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    by_index: dict[int, str] = {}
    try:
        for start in range(0, len(order), int(batch_size)):
            idx = order[start:start + int(batch_size)]
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True)
            enc = {k: v.to(device) for k, v in enc.items()}
            width = enc["input_ids"].shape[1]
            kw: dict[str, Any] = dict(max_new_tokens=int(max_new_tokens), do_sample=False, pad_token_id=pad,
                                      stopping_criteria=StoppingCriteriaList([_StopAtText(tok, width)]))
            with torch.inference_mode():
                ids = model.generate(**enc, **kw)
            new = tok.batch_decode(ids[:, width:], skip_special_tokens=True)
            for i, text in zip(idx, new):
                by_index[i] = text.split(STOP, 1)[0].strip()
            if progress is not None:
                progress(min(start + int(batch_size), len(order)), len(order))
    finally:
        tok.padding_side = old_side
    answers = [by_index[i] for i in range(len(texts))]
    return answers
