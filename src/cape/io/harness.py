"""Result files written by evaluation harnesses.

lm-evaluation-harness 0.4.x
    ``results``: task -> {``"metric,filter"``: value, ``"metric_stderr,filter"``: se, ...};
    ``n-shot`` (or ``configs[task].num_fewshot``); ``config.model_args`` (``pretrained=...``)
    and ``model_name``; ``config.model_num_parameters``; ``group_subtasks`` (the subtasks of
    a group, at any depth, are not imported when the group itself is). Values are fractions
    and become percentages.
lm-evaluation-harness 0.3
    ``results``: task -> {``acc``: value, ``acc_stderr``: se, ...}; ``versions``; one shot
    count for every task in ``config.num_fewshot``. MMLU as ``hendrycksTest-*`` subjects
    (no aggregate in the file) becomes ``mmlu``/``acc``: the mean over subjects, the same
    formula as the v1 Open LLM Leaderboard (:func:`mmlu_subject_mean`).
Model id
    ``model=`` (CLI ``--model``) sets it; otherwise ``pretrained=`` in ``config.model_args``,
    then ``model_name``. An id that is a local path (``/data/ckpt/7B``, ``./out``, ``~/m``,
    ``a/b/c``) names no model and is refused: pass ``model=``.
Open LLM Leaderboard v2 suites (lm-eval 0.4 ``leaderboard_*``)
    ``leaderboard_ifeval`` -> ``ifeval`` (the harness's four metrics, plus ``strict_acc_mean``,
    the mean of prompt- and instruction-level strict accuracy, as the leaderboard scores it);
    ``leaderboard_bbh`` -> ``bbh``; ``leaderboard_math_hard`` -> ``math_lvl5``;
    ``leaderboard_gpqa`` -> ``gpqa_all``; ``leaderboard_musr`` -> ``musr``;
    ``leaderboard_mmlu_pro`` -> ``mmlu_pro``. The group's own row is read; its shots come
    from its subtasks, else the leaderboard's setting (:data:`cape.io.leaderboard.V2_TASKS`).
    Where the file has subtasks but no group row, or a group row without a score (lm-eval
    versions whose leaderboard groups had no ``aggregate_metric_list`` write only
    ``{" ": " ", "alias": ...}`` there, lm-eval issue/PR #2340), the group is lm-eval's
    documented aggregate: the subtasks' mean weighted by their ``n-samples`` counts
    (``partial_aggregate:n/N`` when subtasks are missing; not stored without counts).
    A suite whose ``n-samples`` count of items (``original``, summed over its subtasks) is
    not the suite's (:data:`_SUITE_ITEMS`) scored another item set and is flagged
    ``items_mismatch:5000/1324``: lm-eval's ``leaderboard_math_*_hard`` task version 2.0
    read all 5000 MATH test problems of ``DigitalLearningGmbH/MATH-lighteval``, not the
    1324 level-5 ones (fixed in lm-eval PR #2773, version 3.0).
    A subtask (``leaderboard_bbh_navigate``, ``leaderboard_gpqa_diamond``) and the umbrella
    group ``leaderboard`` are not benchmarks CAPE registers: skipped with a note, never
    refused.

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
from .leaderboard import V2_TASKS

__all__ = ["is_lmeval", "is_openllm", "read_lmeval", "read_openllm", "mmlu_subject_mean",
           "is_path_like"]

_SKIP_KEYS = {"alias", "name", "sample_len", "samples", "sample_count"}
#: MMLU subjects in the leaderboard's hendrycksTest suite (a definition of the benchmark).
MMLU_SUBJECTS = 57
#: lm-eval 0.4 suites whose subtasks are parts of one registered benchmark, and the
#: umbrella groups that are no benchmark: a task below these that CAPE does not register is
#: skipped with a note instead of refused (``leaderboard_bbh_navigate``, ``mmlu_anatomy``).
_SUITE_PREFIXES = ("leaderboard_", "mmlu_")
_UMBRELLA_GROUPS = {"leaderboard"}
#: shots of the leaderboard's own lm-eval tasks (leaderboard_bbh: 3), when the file gives none
_V2_SHOTS = {t.task: t.n_shot for t in V2_TASKS}
#: The leaderboard groups lm-eval averages from subtasks (``aggregate_metric_list``: mean,
#: ``weight_by_size: true`` in lm_eval/tasks/leaderboard): how their subtasks are named
#: (prefix, suffix) and how many there are (a definition of the suite).
_SUITE_GROUPS = {
    "leaderboard_bbh": ("leaderboard_bbh_", "", 24),
    "leaderboard_gpqa": ("leaderboard_gpqa_", "", 3),
    "leaderboard_math_hard": ("leaderboard_math_", "_hard", 7),
    "leaderboard_musr": ("leaderboard_musr_", "", 3),
}
#: Items of each leaderboard suite, summed over its subtasks as ``n-samples`` counts them
#: (``original``): a definition of the suite, as the subtask counts above (BBH 24 tasks,
#: GPQA main 448 + extended 546 + diamond 198, MATH level 5, MuSR 250 + 256 + 250).
_SUITE_ITEMS = {
    "leaderboard_bbh": 5761,
    "leaderboard_gpqa": 1192,
    "leaderboard_math_hard": 1324,
    "leaderboard_musr": 756,
    "leaderboard_ifeval": 541,
    "leaderboard_mmlu_pro": 12032,
}


def mmlu_subject_mean(values: list[float]) -> tuple[float, str]:
    """MMLU from per-subject accuracies (percent): the unweighted mean over subjects, as the
    v1 Open LLM Leaderboard computed it, and the flag ``partial_aggregate:n/57`` when
    subjects are missing ("" when all 57 are there)."""
    flag = "" if len(values) == MMLU_SUBJECTS else f"partial_aggregate:{len(values)}/{MMLU_SUBJECTS}"
    return sum(values) / len(values), flag


def is_path_like(model: str) -> bool:
    """Whether a model id is a local path rather than a name (``/data/7B``, ``./out``,
    ``~/m``, ``C:\\m``, ``a/b/c``); a Hub id has at most one ``/``."""
    text = model.strip()
    return (text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1
            or (len(text) > 1 and text[1] == ":"))


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
                name: str | None = None, model: str | None = None) -> Rows:
    """Rows from one lm-evaluation-harness results JSON, 0.3 or 0.4 (already parsed).

    ``model`` sets the model id (the file's own id is then not read); a file whose id is a
    local path is refused without it.

    Shots and the ``limited``/``mixed_shots`` flags follow the rules in the module's
    docstring; ``read_results(strict=True)`` refuses the flagged scores.
    """
    model_given = model
    results = doc.get("results")
    if not isinstance(results, dict) or not results:
        raise InputError("lm-eval results JSON has an empty or malformed 'results' section",
                         file=label, field="results")
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    model = model or _model_from_args(config.get("model_args")) or doc.get("model_name")
    if not model:
        raise InputError("cannot tell which model was evaluated: no model_name and no "
                         "pretrained= in config.model_args", file=label, field="config.model_args",
                         hint="name it with --model NAME; model= in read_results")
    model = str(model)
    if model_given is None and is_path_like(model):
        raise InputError(f"the model id '{model}' is a local path, not a model name",
                         file=label, field="config.model_args",
                         hint="name the model with --model NAME; model= in read_results")
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
    def limited_flag(parts: list[str]) -> str | None:
        if all(p in counts for p in parts):
            scored, total = (sum(counts[p][i] for p in parts) for i in (0, 1))
            return f"limited:{scored}/{total}" if scored < total else None
        return f"limited:limit={limit:g}" if limit is not None else None

    def items_flag(task: str, parts: list[str]) -> str | None:
        """``items_mismatch:found/expected`` when a leaderboard suite's item count (from
        ``n-samples``) is not the suite's."""
        want = _SUITE_ITEMS.get(task)
        if want is None or not parts or not all(p in counts for p in parts):
            return None
        found_items = sum(counts[p][1] for p in parts)
        return f"items_mismatch:{found_items}/{want}" if found_items != want else None

    mmlu_subjects: list[str] = []
    for task, metrics in results.items():
        if task in covered:
            continue
        if task.startswith("hendrycksTest-"):  # lm-eval 0.3 MMLU: averaged below
            mmlu_subjects.append(task)
            continue
        if task in _SUITE_GROUPS and not _has_percent(metrics):
            continue  # a group row without a score: computed from its subtasks below
        if try_resolve(task) is None and (task in _UMBRELLA_GROUPS or task.startswith(_SUITE_PREFIXES)):
            rows.skipped.append(f"{label}: task '{task}' (a part or umbrella of a suite; not a "
                                "registered benchmark, not stored)")
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
        if n_shot is None and not flags and task in _V2_SHOTS:
            n_shot = _V2_SHOTS[task]  # the leaderboard's setting for its own suite
        parts = [task] if task in counts or not leaves else leaves
        lim = limited_flag(parts)
        if lim:
            flags.append(lim)
        mismatch = items_flag(task, parts)
        if mismatch:
            flags.append(mismatch)
        if found.benchmark == "ifeval" and found.variant is None:
            mean = _strict_acc_mean(metrics, file=label, row=f"results.{task}")
            if mean is not None:
                rows.scores.append({
                    "model": model, "benchmark": "ifeval", "variant": "strict_acc_mean",
                    "value": mean, "stderr": None, "n_shot": n_shot, "harness": harness,
                    "source": src, "flags": ";".join(flags), "_file": label,
                    "_row": f"results.{task}", "_field": "prompt_level_strict_acc,inst_level_strict_acc",
                })
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
    for group, (prefix, suffix, expected) in _SUITE_GROUPS.items():
        if group not in results or not _has_percent(results[group]):
            members = [t for t in results if t.startswith(prefix) and t.endswith(suffix)
                       and t != group and try_resolve(t) is None]
            if members:
                _suite_aggregate(rows, group, members, expected, results=results, counts=counts,
                                 own_shots=own_shots, limited_flag=limited_flag,
                                 items_flag=items_flag, model=model,
                                 harness=harness, src=src, label=label, where=f"results.{prefix}*")
    if mmlu_subjects:
        values = []
        for task in mmlu_subjects:
            metrics = results[task]
            where = {"file": label, "row": f"results.{task}"}
            if not isinstance(metrics, dict) or "acc" not in metrics:
                raise InputError("MMLU subject has no acc", field="acc", **where)
            values.append(_fraction(metrics["acc"], field="acc", **where))
        value, partial = mmlu_subject_mean(values)
        n_shot, more = _members_shots_and_flags(mmlu_subjects, own_shots, limited_flag)
        flags = ([partial] if partial else []) + more
        rows.scores.append({
            "model": model, "benchmark": "mmlu", "variant": "acc", "value": value,
            "stderr": None, "n_shot": n_shot, "harness": harness, "source": src,
            "flags": ";".join(flags), "_file": label, "_row": "results.hendrycksTest-*",
            "_field": "acc",
        })
    return rows


def _members_shots_and_flags(members, own_shots, limited_flag, default=None) -> tuple[int | None, list[str]]:
    """Shots of an aggregate from its members' own (``default`` when none says; none when
    they disagree, flagged ``mixed_shots``) and the members' ``limited`` flag."""
    found = sorted({n for n in map(own_shots, members) if n is not None})
    n_shot = found[0] if len(found) == 1 else (default if not found else None)
    flags = ["mixed_shots:" + ",".join(map(str, found))] if len(found) > 1 else []
    lim = limited_flag(members)
    return n_shot, flags + ([lim] if lim else [])


def _suite_aggregate(rows: Rows, group: str, members: list[str], expected: int, *, results,
                     counts, own_shots, limited_flag, items_flag, model, harness, src, label,
                     where) -> None:
    """A leaderboard group whose own row the file lacks or holds no score: lm-eval's
    documented aggregate, the mean over its subtasks weighted by their item counts
    (``n-samples``, items scored), flagged ``partial_aggregate:n/N`` when subtasks are
    missing (else ``items_mismatch`` when their items are not the suite's). Without item
    counts it cannot be computed and is noted as skipped."""
    v2 = next(t for t in V2_TASKS if t.task == group)
    key = f"{v2.variant},none"
    if not all(t in counts for t in members):
        rows.skipped.append(f"{label}: {group} (no row for the group and no n-samples to "
                            "weight its subtasks; not stored)")
        return
    values, weights = [], []
    for t in members:
        metrics = results[t]
        if not isinstance(metrics, dict) or key not in metrics:
            rows.skipped.append(f"{label}: {group} (subtask '{t}' has no {key}; not stored)")
            return
        values.append(_fraction(metrics[key], file=label, row=f"results.{t}", field=key))
        weights.append(counts[t][0])
    if not sum(weights):
        return
    flags = [] if len(members) >= expected else [f"partial_aggregate:{len(members)}/{expected}"]
    n_shot, more = _members_shots_and_flags(members, own_shots, limited_flag, default=v2.n_shot)
    flags += more
    mismatch = None if flags and flags[0].startswith("partial_aggregate") else items_flag(group, members)
    if mismatch:
        flags.append(mismatch)
    rows.scores.append({
        "model": model, "benchmark": v2.benchmark, "variant": v2.variant,
        "value": sum(v * w for v, w in zip(values, weights)) / sum(weights), "stderr": None,
        "n_shot": n_shot, "harness": harness, "source": src, "flags": ";".join(flags),
        "_file": label, "_row": where, "_field": key,
    })


def _strict_acc_mean(metrics, *, file, row) -> float | None:
    """IFEval as the Open LLM Leaderboard v2 scores it: the mean of prompt-level and
    instruction-level strict accuracy (percent); ``None`` when either is missing."""
    if not isinstance(metrics, dict):
        return None
    keys = ("prompt_level_strict_acc,none", "inst_level_strict_acc,none")
    if not all(k in metrics for k in keys):
        keys = ("prompt_level_strict_acc", "inst_level_strict_acc")
        if not all(k in metrics for k in keys):
            return None
    return sum(_fraction(metrics[k], file=file, row=row, field=k) for k in keys) / 2


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
        value, partial = mmlu_subject_mean([v for v, _ in mmlu])
        rows.scores.append({
            "model": str(model), "benchmark": "mmlu", "variant": "acc",
            "value": value, "stderr": None, "n_shot": mmlu[0][1],
            "harness": harness, "source": src, "flags": partial,
            "_file": label, "_row": "results.hendrycksTest-*", "_field": "acc",
        })
    return rows

