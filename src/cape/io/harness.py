"""Result files written by evaluation harnesses.

lm-evaluation-harness 0.4.x
    ``results``: task -> {``"metric,filter"``: value, ``"metric_stderr,filter"``: se, ...};
    ``n-shot`` (or ``configs[task].num_fewshot``); ``config.model_args`` (``pretrained=...``)
    and ``model_name``; ``group_subtasks`` (subtasks of a group are not imported when the
    group itself is). Values are fractions and become percentages.
Open LLM Leaderboard (v1 per-model results)
    ``results``: ``"harness|task|shots"`` -> {metric: value, ``metric_stderr``: se};
    ``config_general.model_name``. MMLU is the mean accuracy over the ``hendrycksTest-*``
    subjects, as the leaderboard computed it.
"""

from __future__ import annotations

from ..benchmarks import try_resolve
from ..errors import InputError
from .common import PERCENT_METRICS, Rows

__all__ = ["is_lmeval", "is_openllm", "read_lmeval", "read_openllm"]

_SKIP_KEYS = {"alias", "name", "sample_len", "samples", "sample_count"}
#: MMLU subjects in the leaderboard's hendrycksTest suite (a definition of the benchmark).
MMLU_SUBJECTS = 57


def is_openllm(doc) -> bool:
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict):
        return False
    return "config_general" in doc or any("|" in k for k in doc["results"])


def is_lmeval(doc) -> bool:
    return isinstance(doc, dict) and "results" in doc and not is_openllm(doc)


def looks_like_lmeval_without_results(doc) -> bool:
    return isinstance(doc, dict) and "results" not in doc and any(
        k in doc for k in ("config", "configs", "versions", "n-shot", "model_name", "lm_eval_version"))


def _fraction(value, *, file, row, field) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"'{value}' is not a number", file=file, row=row, field=field)
    if value != value:  # NaN
        raise InputError("NaN is not a score", file=file, row=row, field=field)
    if not 0 <= value <= 1:
        raise InputError(f"{value} is outside 0-1 (harness results are fractions)",
                         file=file, row=row, field=field)
    return float(value) * 100.0


def _stderr(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and value >= 0:
        return float(value) * 100.0
    return None  # "N/A" and friends


def _model_from_args(args) -> str | None:
    if isinstance(args, dict):
        for key in ("pretrained", "model", "path", "model_name"):
            if args.get(key):
                return str(args[key])
        return None
    if isinstance(args, str):
        for part in args.split(","):
            key, _, value = part.partition("=")
            if key.strip() in ("pretrained", "model", "path") and value.strip():
                return value.strip()
    return None


def read_lmeval(doc: dict, *, label: str, source: str | None, skip_unknown: bool,
                name: str | None = None) -> Rows:
    """Rows from one lm-evaluation-harness results JSON (already parsed)."""
    results = doc.get("results")
    if not isinstance(results, dict) or not results:
        raise InputError("lm-eval results JSON has an empty or malformed 'results' section",
                         file=label, field="results")
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    model = _model_from_args(config.get("model_args")) or doc.get("model_name")
    if not model:
        raise InputError("cannot tell which model was evaluated: no model_name and no "
                         "pretrained= in config.model_args", file=label, field="config.model_args")
    model = str(model)
    shots = doc.get("n-shot") if isinstance(doc.get("n-shot"), dict) else {}
    configs = doc.get("configs") if isinstance(doc.get("configs"), dict) else {}
    groups = doc.get("group_subtasks") if isinstance(doc.get("group_subtasks"), dict) else {}
    covered = {sub for grp, subs in groups.items() if grp in results and try_resolve(grp)
               for sub in (subs or [])}
    version = doc.get("lm_eval_version")
    harness = f"lm-evaluation-harness {version}" if version else "lm-evaluation-harness"
    src = source or f"lm-eval:{name or label}"
    rows = Rows()
    rec = {"model": model, "_file": label, "_row": "results"}
    nparams = config.get("model_num_parameters")
    if isinstance(nparams, int) and nparams > 0:
        rec["params"] = nparams
    rows.models.append(rec)
    for task, metrics in results.items():
        if task in covered:
            continue
        found = rows.benchmark(task, skip_unknown=skip_unknown, label=label, what=f"task '{task}'",
                               row=f"results.{task}", field=task)
        if found is None:
            continue
        if not isinstance(metrics, dict):
            raise InputError("task entry is not an object", file=label, row=f"results.{task}")
        n_shot = shots.get(task)
        if n_shot is None and isinstance(configs.get(task), dict):
            n_shot = configs[task].get("num_fewshot")
        n_shot = n_shot if isinstance(n_shot, int) and n_shot >= 0 else found.n_shot
        for key, value in metrics.items():
            metric, _, filt = key.partition(",")
            if metric in _SKIP_KEYS or metric.endswith("_stderr"):
                continue
            if metric not in PERCENT_METRICS:
                rows.skipped.append(f"{label}: {task} metric '{metric}' (not a percentage)")
                continue
            filt = filt or "none"
            variant = found.variant or (metric if filt == "none" else f"{metric}:{filt}")
            where = {"file": label, "row": f"results.{task}", "field": key}
            se_key = f"{metric}_stderr,{filt}" if "," in key else f"{metric}_stderr"
            rows.scores.append({
                "model": model, "benchmark": found.benchmark, "variant": variant,
                "value": _fraction(value, **where), "stderr": _stderr(metrics.get(se_key)),
                "n_shot": n_shot, "harness": harness, "source": src,
                "_file": label, "_row": f"results.{task}", "_field": key,
            })
    return rows


_OLL_TASKS = {"arc:challenge": "arc_challenge", "truthfulqa:mc": "truthfulqa"}


def read_openllm(doc: dict, *, label: str, source: str | None, skip_unknown: bool,
                 name: str | None = None) -> Rows:
    """Rows from one Open LLM Leaderboard per-model results JSON (already parsed)."""
    cfg = doc.get("config_general") or doc.get("config") or {}
    model = cfg.get("model_name") if isinstance(cfg, dict) else None
    if not model:
        raise InputError("no model name (config_general.model_name)", file=label,
                         field="config_general.model_name")
    src = source or f"Open LLM Leaderboard results: {name or label}"
    harness = "lm-evaluation-harness (Open LLM Leaderboard v1)"
    rows = Rows()
    rows.models.append({"model": str(model), "_file": label, "_row": "config_general"})
    mmlu: list[tuple[float, int]] = []
    for key, metrics in doc["results"].items():
        if key == "all":
            continue
        parts = key.split("|")
        task = parts[1] if len(parts) >= 2 else key
        shots = int(parts[2]) if len(parts) >= 3 and parts[2].isdigit() else None
        where = {"file": label, "row": f"results.{key}"}
        if not isinstance(metrics, dict):
            raise InputError("task entry is not an object", **where)
        if task.startswith("hendrycksTest-"):
            if "acc" not in metrics:
                raise InputError("MMLU subject has no acc", field="acc", **where)
            mmlu.append((_fraction(metrics["acc"], field="acc", **where), shots))
            continue
        found = rows.benchmark(_OLL_TASKS.get(task, task), skip_unknown=skip_unknown, label=label,
                               what=f"task '{key}'", row=f"results.{key}", field=key)
        if found is None:
            continue
        for metric, value in metrics.items():
            if metric.endswith("_stderr"):
                continue
            if metric not in PERCENT_METRICS:
                rows.skipped.append(f"{label}: {key} metric '{metric}' (not a percentage)")
                continue
            rows.scores.append({
                "model": str(model), "benchmark": found.benchmark, "variant": metric,
                "value": _fraction(value, field=metric, **where),
                "stderr": _stderr(metrics.get(f"{metric}_stderr")), "n_shot": shots,
                "harness": harness, "source": src, "_file": label, "_row": f"results.{key}",
                "_field": metric,
            })
    if mmlu:
        values = [v for v, _ in mmlu]
        rows.scores.append({
            "model": str(model), "benchmark": "mmlu", "variant": "acc",
            "value": sum(values) / len(values), "stderr": None, "n_shot": mmlu[0][1],
            "harness": harness, "source": src,
            "flags": "" if len(values) == MMLU_SUBJECTS else f"partial_aggregate:{len(values)}/{MMLU_SUBJECTS}",
            "_file": label, "_row": "results.hendrycksTest-*", "_field": "acc",
        })
    return rows

