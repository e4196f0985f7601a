"""Result files written by Hugging Face lighteval (``results_<timestamp>.json``).

``config_general.model_name`` names the model; ``results`` maps a task key to
{metric: value, ``metric_stderr``: se}. Keys are ``suite|task|shots`` (lighteval before 0.10:
``leaderboard|arc:challenge|25``, ``lighteval|truthfulqa:mc|0``; the Open LLM Leaderboard v1
files use suite ``harness``) or ``task|shots`` (lighteval 0.10 and later: ``gsm8k|5``).
``all`` (the mean of every metric over every task) and ``<task>:_average|shots`` (lighteval's
own sub-task means) are not scores of one benchmark and are not read.

Tasks -> CAPE benchmarks: ``arc:challenge`` -> arc_challenge, ``arc:easy`` -> arc_easy,
``hellaswag``, ``winogrande``, ``gsm8k``, ``gpqa:diamond`` -> gpqa_diamond, ``ifeval``,
``truthfulqa:mc`` -> truthfulqa (metrics
``truthfulqa_mc1``/``truthfulqa_mc2`` become variants ``mc1``/``mc2``); ``mmlu:<subject>`` and
``hendrycksTest-<subject>`` -> mmlu, one score per metric: the mean over subjects by
:func:`cape.io.harness.mmlu_subject_mean`, the v1 leaderboard's formula (flagged
``partial_aggregate:n/57`` when subjects are missing; subjects run with different shots leave
``n_shot`` empty and flag ``mixed_shots``). Other tasks are not benchmarks CAPE registers:
kept under their own names, flagged ``unregistered``. Metrics that are proportions become
percentages (variant = metric name), sampling metrics included (``maj@8``,
``math_pass@1:1_samples``, ``pass@k:k=1&n=1``);
others (perplexity, BLEU, judge scores) are skipped with a note. A run with
``config_general.max_samples`` set scored part of each task: flagged ``limited:max_samples=N``.
"""

from __future__ import annotations

import re

from ..errors import InputError
from .common import PERCENT_METRICS, Rows
from .harness import _fraction, _stderr, _strict_acc_mean, mmlu_subject_mean

__all__ = ["is_lighteval", "read_lighteval", "LIGHTEVAL_TASKS"]

#: lighteval task name -> CAPE benchmark (only where the match is unambiguous).
LIGHTEVAL_TASKS = {
    "arc:challenge": "arc_challenge", "arc:easy": "arc_easy", "hellaswag": "hellaswag",
    "winogrande": "winogrande", "gsm8k": "gsm8k", "truthfulqa:mc": "truthfulqa",
    "gpqa:diamond": "gpqa_diamond", "ifeval": "ifeval",
}
#: lighteval metric -> CAPE variant, where the names differ.
_METRIC_VARIANT = {"truthfulqa_mc1": "mc1", "truthfulqa_mc2": "mc2"}
#: lighteval's proportion metrics beyond lm-eval's (all fractions in the file).
_PERCENT = PERCENT_METRICS | set(_METRIC_VARIANT) | {
    "extractive_match", "quasi_exact_match", "prefix_exact_match", "prefix_quasi_exact_match",
    "qem", "pem", "pqem", "maj@4", "pass@1:1_samples",
}
#: Sampling metrics, all proportions: ``maj@8``, ``pass@1:32_samples``, ``G-Pass@16:48_samples``,
#: with a scorer prefix (``math_pass@1:1_samples``, ``gpqa_pass@1:1_samples``, lighteval 0.8-0.10)
#: or the parameters after a colon (``pass@k:k=1&n=1``, ``avg@n:n=1``, ``maj@n:n=4``, 0.11+).
_SAMPLING = re.compile(r"^(?:[a-z0-9]+[_-])?(?:g-)?(?:pass|maj|avg)@", re.IGNORECASE)


def _is_percent(metric: str) -> bool:
    """Whether a lighteval metric is a proportion (a fraction in the file)."""
    return metric in _PERCENT or bool(_SAMPLING.match(metric))


def _split_key(key: str) -> tuple[str | None, str, int | None] | None:
    """``suite|task|shots`` or ``task|shots`` -> (suite, task, shots); ``None`` otherwise."""
    parts = key.split("|")
    if len(parts) == 3:
        suite, task, shots = parts
    elif len(parts) == 2:
        suite, (task, shots) = None, parts
    else:
        return None
    return suite, task, int(shots) if shots.strip().isdigit() else None


def is_lighteval(doc) -> bool:
    """A lighteval results file that is not an Open LLM Leaderboard v1 one (whose task keys
    are all in suite ``harness``, read by :func:`cape.io.harness.read_openllm`)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict):
        return False
    if not isinstance(doc.get("config_general"), dict):
        return False
    keys = [_split_key(k) for k in doc["results"] if k != "all"]
    keys = [k for k in keys if k is not None]
    return bool(keys) and any(suite != "harness" for suite, _, _ in keys)


def read_lighteval(doc: dict, *, label: str, source: str | None, skip_unknown: bool = False,
                   name: str | None = None) -> Rows:
    """Rows from one lighteval results JSON (already parsed); see the module docstring.

    A task CAPE does not register is kept under its own name (``suite|bigbench:causal_judgment``
    -> ``bigbench_causal_judgment``, flagged ``unregistered``), or skipped with a note under
    ``skip_unknown``, like every importer's unknown tasks (:meth:`cape.io.common.Rows.benchmark`).
    """
    cfg = doc.get("config_general")
    model = cfg.get("model_name") if isinstance(cfg, dict) else None
    if not model or not str(model).strip():
        raise InputError("no model name (config_general.model_name)", file=label,
                         field="config_general.model_name")
    model = str(model).strip()
    sha = cfg.get("lighteval_sha")
    harness = "lighteval" + (f" {str(sha)[:7]}" if sha and sha != "?" else "")
    src = source or f"lighteval:{name or label}"
    flags: list[str] = []
    max_samples = cfg.get("max_samples")
    if isinstance(max_samples, (int, float)) and not isinstance(max_samples, bool) and max_samples > 0:
        flags.append(f"limited:max_samples={max_samples:g}")
    rows = Rows()
    rows.models.append({"model": model, "_file": label, "_row": "config_general"})
    mmlu: dict[str, list[tuple[float, int | None]]] = {}
    for key, metrics in doc["results"].items():
        parsed = _split_key(key)
        if key == "all" or parsed is None:
            continue
        suite, task, shots = parsed
        if task.endswith(":_average"):
            continue
        where = {"file": label, "row": f"results.{key}"}
        if not isinstance(metrics, dict):
            raise InputError("task entry is not an object", **where)
        if task.startswith(("mmlu:", "hendrycksTest-")):
            for metric, value in metrics.items():
                if not metric.endswith("_stderr") and _is_percent(metric):
                    mmlu.setdefault(metric, []).append((_fraction(value, field=metric, **where), shots))
            continue
        bench = LIGHTEVAL_TASKS.get(task)
        if bench is None:
            found = rows.benchmark(task, skip_unknown=skip_unknown, label=label, what=f"task '{key}'",
                                   row=f"results.{key}", field=key)
            if found is None:
                continue
            bench = found.benchmark
        if bench == "ifeval":  # the Open LLM Leaderboard v2 score, as the lm-eval reader adds it
            mean = _strict_acc_mean(metrics, file=label, row=f"results.{key}")
            if mean is not None:
                rows.scores.append({
                    "model": model, "benchmark": "ifeval", "variant": "strict_acc_mean", "value": mean,
                    "stderr": None, "n_shot": shots, "harness": harness, "source": src,
                    "flags": ";".join(flags), "_file": label, "_row": f"results.{key}",
                    "_field": "prompt_level_strict_acc,inst_level_strict_acc",
                })
        for metric, value in metrics.items():
            if metric.endswith("_stderr"):
                continue
            if not _is_percent(metric):
                rows.skipped.append(f"{label}: {key} metric '{metric}' (not a percentage)")
                continue
            rows.scores.append({
                "model": model, "benchmark": bench, "variant": _METRIC_VARIANT.get(metric, metric),
                "value": _fraction(value, field=metric, **where),
                "stderr": _stderr(metrics.get(f"{metric}_stderr")), "n_shot": shots,
                "harness": harness, "source": src, "flags": ";".join(flags),
                "_file": label, "_row": f"results.{key}", "_field": metric,
            })
    for metric, found in mmlu.items():
        value, partial = mmlu_subject_mean([v for v, _ in found])
        shot_set = sorted({s for _, s in found if s is not None})
        extra = [partial] if partial else []
        if len(shot_set) > 1:
            extra.append("mixed_shots:" + ",".join(map(str, shot_set)))
        rows.scores.append({
            "model": model, "benchmark": "mmlu", "variant": metric, "value": value,
            "stderr": None, "n_shot": shot_set[0] if len(shot_set) == 1 else None,
            "harness": harness, "source": src, "flags": ";".join(flags + extra),
            "_file": label, "_row": "results.mmlu:*", "_field": metric,
        })
    return rows
