"""Stanford CRFM HELM run folders (``helm-run`` output, ``benchmark_output/runs/<suite>/<run>/``).

A run folder holds ``run_spec.json`` and ``stats.json`` (plus files CAPE does not read:
``per_instance_stats.json``, ``scenario_state.json``, ``instances.json``...). Input: one run
folder, its ``run_spec.json``, or any folder above run folders (a suite,
``benchmark_output/runs``); every folder below that holds a ``run_spec.json`` is one run.

``run_spec.json``
    ``name`` (``mmlu:subject=anatomy,method=multiple_choice_joint,model=openai_gpt2``; the part
    before ``:`` is the scenario), ``scenario_spec.args`` (``{"subject": "anatomy"}``) and
    ``adapter_spec``: ``model`` (the model id, ``meta/llama-3-8b``), ``max_train_instances``
    (the shots), ``max_eval_instances`` and ``method``.
``stats.json``
    a list of ``{"name": {"name", "split", "sub_split"?, "perturbation"?}, "count", "mean", ...}``.
    Only stats without ``perturbation`` and ``sub_split`` are read: HELM also writes
    robustness/fairness "worst case" copies (``perturbation.computed_on: worst``), even for
    unperturbed runs.

Score: the scenario's main metric (:data:`MAIN_METRICS`, from ``environment.main_name`` in
HELM's ``schema_*.yaml``; ``exact_match`` for other scenarios), its ``mean`` on split ``test``,
else ``valid`` (where HELM's schema reports TruthfulQA, HellaSwag, BoolQ), as a percentage
(the stats are fractions). Variant: the metric name (prefixed by ``adapter_spec.method``
when that is not ``multiple_choice_joint`` or ``generation``, and by TruthfulQA's ``task``
when not ``mc_single``). A run without the metric is skipped with a note (HarmBench's judge
scores are not accuracies). ``stderr`` is left empty (``stats.json`` has one value per run).

Shots: ``adapter_spec.max_train_instances``, unless the ``num_train_instances`` stat shows a
different whole number was given (a scenario with fewer training examples).
Partial runs: HELM samples at most ``max_eval_instances`` evaluation items; when the run
scored that many (``num_instances`` over splits ``valid`` and ``test``) the score is flagged
``limited:max_eval_instances=N`` (dropped by ``--clean``, refused by ``--strict``).

Scenarios -> CAPE benchmarks (:data:`HELM_SCENARIOS`): ``mmlu`` -> mmlu, one score per model
and variant, the unweighted mean over subjects (:func:`cape.io.harness.mmlu_subject_mean`)
when a model has all 57 subjects; with fewer, each subject is kept as
``mmlu_<subject>`` (flagged ``unregistered``); ``truthful_qa`` -> truthfulqa,
``commonsense:dataset=hellaswag`` -> hellaswag, ``dataset=openbookqa`` -> openbookqa,
``boolq``, ``gsm`` -> gsm8k, ``ifeval``, ``mmlu_pro``, ``gpqa`` with subset ``diamond``
(``gpqa_diamond``) -> gpqa_diamond. Any other scenario is kept under its own name, the
scenario and its ``scenario_spec.args`` values (``bbq:subject=all`` -> ``bbq_all``; ``helm_``
in front where that name is, or resembles, a registered benchmark), flagged
``unregistered``; or skipped under ``skip_unknown``. These mappings are checked on HELM's
run names only: no real HELM output of these scenarios was at hand (tests/fixtures/helm).
"""

from __future__ import annotations

from pathlib import Path

from ..benchmarks import normalise_key, suggest, try_resolve, unregistered_name
from ..errors import InputError
from .common import Rows, read_json
from .harness import MMLU_SUBJECTS, _fraction, mmlu_subject_mean

__all__ = ["is_helm_run", "read_helm", "find_helm_runs", "scenario_benchmark", "HELM_SCENARIOS",
           "MAIN_METRICS"]

RUN_SPEC = "run_spec.json"
STATS = "stats.json"
HARNESS = "HELM"

#: HELM scenario (the run name's prefix; ``commonsense`` runs: their ``dataset``) -> CAPE
#: benchmark, only where HELM's scenario is that benchmark's item set.
HELM_SCENARIOS = {
    "mmlu": "mmlu", "truthful_qa": "truthfulqa", "hellaswag": "hellaswag",
    "openbookqa": "openbookqa", "boolq": "boolq", "gsm": "gsm8k", "ifeval": "ifeval",
    "mmlu_pro": "mmlu_pro",
}
#: Main metrics of HELM run groups that are proportions: ``environment.main_name`` in
#: stanford-crfm/helm ``src/helm/benchmark/static/schema_*.yaml`` (all of them where the
#: leaderboards differ: BBQ is ``bbq_accuracy`` in the safety schema, ``quasi_exact_match``
#: in the classic one).
MAIN_METRICS = {
    "mmlu": ("exact_match",), "truthful_qa": ("exact_match",), "hellaswag": ("exact_match",),
    "openbookqa": ("exact_match",), "boolq": ("quasi_exact_match",),
    "gsm": ("final_number_exact_match", "exact_match_indicator"),
    "ifeval": ("ifeval_strict_accuracy",), "gpqa": ("chain_of_thought_correctness",),
    "mmlu_pro": ("chain_of_thought_correctness",), "bbq": ("bbq_accuracy", "quasi_exact_match"),
}
#: HELM's basic accuracy metric, read for scenarios :data:`MAIN_METRICS` does not list.
DEFAULT_METRICS = ("exact_match",)
_PLAIN_METHODS = {"multiple_choice_joint", "generation"}
_EVAL_SPLITS = ("test", "valid")


def is_helm_run(path_or_doc) -> bool:
    """A HELM ``run_spec.json`` (parsed: a dict with ``name``, ``scenario_spec`` and an
    ``adapter_spec``), a file named ``run_spec.json``, or a folder that holds one at any depth."""
    if isinstance(path_or_doc, dict):
        return ("name" in path_or_doc and "scenario_spec" in path_or_doc
                and isinstance(path_or_doc.get("adapter_spec"), dict))
    if not isinstance(path_or_doc, (str, Path)):
        return False  # a parsed document of another kind (a stats list, a number...)
    path = Path(path_or_doc)
    if path.is_file():
        return path.name == RUN_SPEC
    if path.is_dir():
        return (path / RUN_SPEC).is_file() or next(path.rglob(RUN_SPEC), None) is not None
    return False


def find_helm_runs(path: Path) -> list[Path]:
    """The run folders at or below ``path`` (a ``run_spec.json`` names its own folder)."""
    path = Path(path)
    if path.is_file():
        return [path.parent]
    if (path / RUN_SPEC).is_file():
        return [path]
    return sorted({p.parent for p in path.rglob(RUN_SPEC) if p.is_file()})


def _run_args(name: str) -> tuple[str, dict[str, str]]:
    """``mmlu:subject=anatomy,model=x`` -> (``mmlu``, {subject: anatomy, model: x})."""
    scenario, _, rest = str(name).partition(":")
    args = dict(part.split("=", 1) for part in rest.split(",") if "=" in part)
    return scenario.strip(), args


def scenario_benchmark(run_name: str, scenario_args: dict | None = None) -> tuple[str, str | None]:
    """The HELM scenario of a run (its name's prefix; a ``commonsense`` run's ``dataset``) and
    the CAPE benchmark it is, or ``None`` for a scenario CAPE does not register.

    >>> scenario_benchmark("commonsense:dataset=hellaswag,method=multiple_choice_joint,model=x")
    ('hellaswag', 'hellaswag')
    """
    scenario, args = _run_args(run_name)
    if scenario == "commonsense" and args.get("dataset"):
        scenario = args["dataset"]
    subset = str((scenario_args or {}).get("subset") or args.get("subset") or "")
    if scenario == "gpqa":  # run entries say subset=diamond, the scenario gpqa_diamond
        return scenario, "gpqa_diamond" if subset.removeprefix("gpqa_") == "diamond" else None
    return scenario, HELM_SCENARIOS.get(scenario)


def _stat_index(stats: list, file: Path) -> dict[tuple[str, str], dict]:
    """(metric, split) -> stat, for stats without a perturbation or sub-split."""
    if not isinstance(stats, list):
        raise InputError("not a HELM stats list (expected a JSON list of stats)", file=file)
    out: dict[tuple[str, str], dict] = {}
    for i, stat in enumerate(stats):
        name = stat.get("name") if isinstance(stat, dict) else None
        if not isinstance(name, dict) or not isinstance(name.get("name"), str):
            raise InputError("stat without a name (expected {\"name\": {\"name\": ..., \"split\": ...}})",
                             file=file, row=i, field="name")
        if name.get("perturbation") is not None or name.get("sub_split") is not None:
            continue
        out.setdefault((name["name"], str(name.get("split"))), stat)
    return out


def _whole(value) -> int | None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and float(value).is_integer() and value >= 0:
        return int(value)
    return None


def read_helm(path: str | Path, *, source: str | None = None, skip_unknown: bool = False) -> Rows:
    """Rows from HELM run folders at or below ``path`` (see the module docstring).

    A run folder with ``run_spec.json`` but no ``stats.json`` (an unfinished or failed run)
    is an error naming the missing file.
    """
    path = Path(path)
    runs = find_helm_runs(path)
    if not runs:
        raise InputError("no HELM run folders below (looked for run_spec.json)", file=path)
    rows = Rows()
    models: set[str] = set()
    mmlu: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        rec = _read_run(run, rows, source=source, skip_unknown=skip_unknown)
        if rec is None:
            continue
        if rec["scores"] and rec["model"] not in models:
            models.add(rec["model"])
            rows.models.append({"model": rec["model"], "_file": str(run / RUN_SPEC),
                                "_row": "adapter_spec", "_field": "model"})
        for score in rec["scores"]:
            if "_subject" in score:
                mmlu.setdefault((score["model"], score["variant"]), []).append(score)
            else:
                rows.scores.append(score)
    for (model, variant), parts in mmlu.items():
        _mmlu(rows, model, variant, parts, skip_unknown=skip_unknown)
    return rows


def _read_run(run: Path, rows: Rows, *, source, skip_unknown) -> dict | None:
    spec_file, stats_file = run / RUN_SPEC, run / STATS
    spec = read_json(spec_file)
    if not is_helm_run(spec):
        raise InputError("not a HELM run spec (expected name, scenario_spec and adapter_spec)",
                         file=spec_file)
    if not stats_file.is_file():
        raise InputError("missing: the HELM run has run_spec.json but no stats.json (an "
                         "unfinished or failed run?)", file=stats_file)
    adapter = spec["adapter_spec"]
    model = adapter.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InputError("no model id", file=spec_file, field="adapter_spec.model")
    model = model.strip()
    scen_args = spec.get("scenario_spec", {}).get("args") or {}
    if not isinstance(scen_args, dict):
        scen_args = {}
    scenario, bench = scenario_benchmark(spec["name"], scen_args)
    args = _run_args(spec["name"])[1]
    stats = _stat_index(read_json(stats_file), stats_file)
    label = str(run)
    where = f"{run.parent.name}/{run.name}"
    src = source or f"helm:{where}"

    # benchmark
    subject = None
    if bench == "mmlu":
        subject = str(scen_args.get("subject") or args.get("subject") or "")
        if not subject:
            raise InputError("MMLU run without a subject", file=spec_file,
                             field="scenario_spec.args.subject")
    elif bench is None:
        values = [str(v).removeprefix(f"{scenario}_") for v in scen_args.values()]  # gpqa_main -> main
        own = normalise_key("_".join([scenario, *values]))
        if try_resolve(own) is not None or suggest(own):
            own = "helm_" + own  # not the registered benchmark of that name
        if unregistered_name(own) is None:
            rows.skipped.append(f"{label}: scenario '{spec['name']}' (no storable name)")
            return None
        found = rows.benchmark(own, skip_unknown=skip_unknown, label=label,
                               what=f"scenario '{spec['name']}'", row="name", field="name")
        if found is None:
            return None
        bench = found.benchmark

    # variant prefix: the method, and TruthfulQA's task, where not the plain setting
    method = adapter.get("method")
    prefix = [] if method in _PLAIN_METHODS or not method else [str(method)]
    task = scen_args.get("task")
    if scenario == "truthful_qa" and task and task != "mc_single":
        prefix.append(str(task))

    # shots and partial runs
    n_shot = _whole(adapter.get("max_train_instances"))
    flags = []
    max_eval = _whole(adapter.get("max_eval_instances"))
    scored = [stats[("num_instances", s)].get("mean") for s in _EVAL_SPLITS if ("num_instances", s) in stats]
    scored = [v for v in scored if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if max_eval is not None and scored and sum(scored) >= max_eval:  # HELM sampled max_eval items
        flags.append(f"limited:max_eval_instances={max_eval}")

    scores = []
    metrics = MAIN_METRICS.get(scenario, DEFAULT_METRICS)
    for metric in metrics:
        split = next((s for s in _EVAL_SPLITS if (metric, s) in stats), None)
        if split is None:
            continue
        stat = stats[(metric, split)]
        if stat.get("mean") is None:
            rows.skipped.append(f"{label}: {metric} on {split} has no value (count 0)")
            continue
        given = stats.get(("num_train_instances", split), {}).get("mean")
        shots = _whole(given) if _whole(given) is not None else n_shot
        row = f"stats.json[{metric}, split={split}]"
        score = {
            "model": model, "benchmark": bench, "variant": ":".join(prefix + [metric]),
            "value": _fraction(stat["mean"], file=str(stats_file), row=row, field="mean"),
            "stderr": None, "n_shot": shots, "harness": HARNESS, "source": src,
            "flags": ";".join(flags), "_file": str(stats_file), "_row": row, "_field": "mean",
        }
        if subject is not None:  # averaged (or kept per subject) in _mmlu
            score.update(_subject=subject, _run=label,
                         _mmlu_source=source or f"helm:{run.parent.name}/mmlu")
        scores.append(score)
    if not scores:
        rows.skipped.append(f"{label}: no {' or '.join(metrics)} stat on split test or valid "
                            "(not an accuracy CAPE reads)")
    return {"model": model, "scores": scores}


def _mmlu(rows: Rows, model: str, variant: str, parts: list[dict], *, skip_unknown: bool) -> None:
    """MMLU subjects of one model and variant: the mean when all 57 are there, else each
    subject under its own name (``mmlu_<subject>``, flagged ``unregistered``)."""
    seen: dict[str, dict] = {}
    for part in parts:
        first = seen.setdefault(part["_subject"], part)
        if first is not part:
            raise InputError(f"MMLU subject '{part['_subject']}' of model '{model}' ({variant}) is also "
                             f"in {first['_run']}", file=part["_run"])
    extras = [{k: part.pop(k) for k in ("_subject", "_run", "_mmlu_source")} for part in parts]
    if len(seen) == MMLU_SUBJECTS:
        value, _ = mmlu_subject_mean([p["value"] for p in parts])
        shots = sorted({p["n_shot"] for p in parts if p["n_shot"] is not None})
        flags = sorted({f for p in parts for f in p["flags"].split(";") if f})
        if len(shots) > 1:
            flags.append("mixed_shots:" + ",".join(map(str, shots)))
        rows.scores.append({
            "model": model, "benchmark": "mmlu", "variant": variant, "value": value, "stderr": None,
            "n_shot": shots[0] if len(shots) == 1 else None, "harness": HARNESS,
            "source": extras[0]["_mmlu_source"], "flags": ";".join(flags),
            "_file": parts[0]["_file"], "_row": "mmlu:* (57 subjects)", "_field": "mean",
        })
        return
    for part, extra in zip(parts, extras):
        subject = extra["_subject"]
        found = rows.benchmark(f"mmlu_{subject}", skip_unknown=skip_unknown, label=part["_file"],
                               what=f"MMLU subject '{subject}' ({len(seen)} of {MMLU_SUBJECTS} subjects)")
        if found is not None:
            rows.scores.append({**part, "benchmark": found.benchmark})
