"""Result files written by evaluation harnesses.

lm-evaluation-harness 0.4.x
    ``results``: task -> {``"metric,filter"``: value, ``"metric_stderr,filter"``: se, ...};
    ``n-shot`` (or ``configs[task].num_fewshot``); ``config.model_args`` (``pretrained=...``)
    and ``model_name``; ``config.model_num_parameters``; ``group_subtasks`` (the subtasks of
    a group, at any depth, are not imported when the group itself is). Values are fractions
    and become percentages.
lm-evaluation-harness 0.3
    ``results``: task -> {``acc``: value, ``acc_stderr``: se, ...}; ``versions``; one shot
    count for every task in ``config.num_fewshot``.

Shots
    A task's own record (``n-shot``, then ``configs[task].num_fewshot``), else the run's
    ``config.num_fewshot``, else what the task's name says. A group takes its subtasks'
    shots: lm-eval 0.4.3 writes ``n-shot`` 0 for an MMLU group whose 57 subjects all ran
    5-shot. Subtasks that disagree leave ``n_shot`` empty and flag ``mixed_shots:0,5``.
Partial runs
    A run made with ``--limit`` scores only part of each task. ``n-samples``
    (``effective`` of ``original``, summed over a group's subtasks) gives the counts: the
    score is flagged ``limited:8/2376`` when fewer items were scored than the task has.
    Without ``n-samples`` (lm-eval 0.3) a set ``config.limit`` gives ``limited:limit=100``.
    Both flags are dropped by ``--clean`` and refused by ``--strict``.
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


def _count(value) -> int | None:
    """A non-negative integer from the file, else ``None`` (shot counts, item counts)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


def _limit(config: dict) -> float | None:
    """``config.limit`` when the run was limited (a count, or a fraction below 1)."""
    value = config.get("limit")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return None
    return float(value)


def _n_samples(doc: dict) -> dict[str, tuple[int, int]]:
    """``n-samples``: task -> (items scored, items in the task)."""
    raw = doc.get("n-samples")
    out: dict[str, tuple[int, int]] = {}
    if isinstance(raw, dict):
        for task, counts in raw.items():
            if isinstance(counts, dict):
                eff, orig = _count(counts.get("effective")), _count(counts.get("original"))
                if eff is not None and orig is not None:
                    out[task] = (eff, orig)
    return out


def _descendants(task: str, groups: dict) -> tuple[list[str], list[str]]:
    """A group's subtasks at every depth, and its leaves (subtasks that are not groups)."""
    below: list[str] = []
    leaves: list[str] = []
    stack = list(reversed(groups.get(task) or []))
    seen = {task}
    while stack:
        sub = stack.pop()
        if not isinstance(sub, str) or sub in seen:
            continue
        seen.add(sub)
        below.append(sub)
        subs = groups.get(sub)
        if isinstance(subs, list) and subs:
            stack.extend(reversed(subs))
        else:
            leaves.append(sub)
    return below, leaves


def _has_percent(metrics) -> bool:
    return isinstance(metrics, dict) and any(
        key.partition(",")[0] in PERCENT_METRICS for key in metrics)


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
    """Rows from one lm-evaluation-harness results JSON, 0.3 or 0.4 (already parsed).

    Shots and the ``limited``/``mixed_shots`` flags follow the rules in the module's
    docstring; ``read_results(strict=True)`` refuses the flagged scores.
    """
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
    run_shots = _count(config.get("num_fewshot"))  # lm-eval 0.3: one count for every task
    limit = _limit(config)
    counts = _n_samples(doc)
    covered = {sub for grp in groups if grp in results and try_resolve(grp)
               and _has_percent(results[grp]) for sub in _descendants(grp, groups)[0]}

    def own_shots(task: str) -> int | None:
        n = _count(shots.get(task))
        if n is None and isinstance(configs.get(task), dict):
            n = _count(configs[task].get("num_fewshot"))
        return run_shots if n is None else n

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
        flags: list[str] = []
        leaves = _descendants(task, groups)[1]
        n_shot = own_shots(task)
        if leaves:  # a group: its subtasks ran the shots (a group's own n-shot may be 0)
            found_shots = sorted({n for n in map(own_shots, leaves) if n is not None})
            if len(found_shots) == 1:
                n_shot = found_shots[0]
            elif found_shots:
                n_shot = None
                flags.append("mixed_shots:" + ",".join(map(str, found_shots)))
        if n_shot is None and not flags:
            n_shot = found.n_shot  # what the task's name says (hellaswag_10shot), if anything
        parts = [task] if task in counts or not leaves else leaves
        if all(p in counts for p in parts):
            scored, total = (sum(counts[p][i] for p in parts) for i in (0, 1))
            if scored < total:
                flags.append(f"limited:{scored}/{total}")
        elif limit is not None:
            flags.append(f"limited:limit={limit:g}")
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
                "n_shot": n_shot, "harness": harness, "source": src, "flags": ";".join(flags),
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

