"""Reading a user's own results into CAPE's schema, and writing panels back out.

:func:`read_results` takes files and folders in any supported format and returns one
validated :class:`~cape.schema.Dataset`; nothing is stored. Supported:

* tables: ``.csv``, ``.tsv``, ``.parquet``, ``.json`` (records), ``.jsonl``, wide or long
  (:mod:`cape.io.tables`);
* lm-evaluation-harness results JSON (0.4.x and 0.3), a file or a folder of them
  (:mod:`cape.io.harness`); partial runs (``--limit``) are flagged ``limited``;
* Open LLM Leaderboard per-model results JSON;
* lighteval results JSON (``suite|task|shots`` or ``task|shots`` keys,
  ``config_general.model_name``) (:mod:`cape.io.lighteval`);
* Epoch AI Benchmarking Hub CSVs, one per benchmark named by the file
  (``gpqa_diamond.csv``; ``Model version``, ``mean_score``, ``Organization``...)
  (:mod:`cape.io.epoch`);
* Stanford CRFM HELM run folders (``run_spec.json`` + ``stats.json``), one run or a suite
  of them: a folder holding ``run_spec.json`` files is read as HELM runs (:mod:`cape.io.helm`);
* the Open LLM Leaderboard v2 table (``open-llm-leaderboard/contents``) as Parquet, CSV or
  JSON: id from ``fullname``, raw scores kept, normalised ones only as variant
  ``normalised`` (:mod:`cape.io.leaderboard`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..benchmarks import UNREGISTERED
from ..flags import FLAGS, flag_name
from ..schema import Dataset, split_flags
from ..units import UNITS
from .common import Rows, file_run_date, read_json, read_text
from .epoch import is_epoch_csv, read_epoch
from .harness import is_lmeval, is_openllm, looks_like_lmeval_without_results, read_lmeval, read_openllm
from .helm import is_helm_run, read_helm
from .lighteval import is_lighteval, read_lighteval
from .tables import TABLE_SUFFIXES, read_table, records_from_json

__all__ = ["read_results", "ReadResult", "find_result_files", "export_frame", "write_export"]


@dataclass
class ReadResult:
    """What :func:`read_results` found: the validated data and what it left out."""

    dataset: Dataset
    files: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    #: tasks CAPE does not know, kept under their own names (flag ``unregistered``): name -> where
    unregistered: dict[str, str] = field(default_factory=dict)


def find_result_files(folder: Path) -> list[Path]:
    """Every JSON and CSV file below ``folder`` (sorted), the candidates for result files
    (lm-eval, lighteval and leaderboard JSON; Epoch AI CSVs). Other tables in a folder are
    not read: name them as files."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".json", ".csv"))


def _read_one(path: Path, label: str, *, units, source, skip_unknown, from_folder: bool,
              name: str | None = None, model: str | None = None) -> tuple[Rows | None, str]:
    """Read one file. ``label`` names it in errors; ``name`` (independent of the working
    folder) names it in the default source, so re-ingesting from elsewhere changes nothing."""
    name = name or path.name
    suffix = path.suffix.lower()
    doc: list = []  # the parsed JSON, for the run date
    rows, fmt = _read_format(path, label, units=units, source=source, skip_unknown=skip_unknown,
                             from_folder=from_folder, name=name, model=model, doc_out=doc)
    if rows is not None and fmt in ("lm-eval", "openllm", "lighteval"):
        when = file_run_date(doc[0] if doc else None, name, label=label)
        if when is not None:
            for rec in rows.scores:
                rec.setdefault("run_date", when)
    return rows, fmt


def _read_format(path: Path, label: str, *, units, source, skip_unknown, from_folder: bool,
                 name: str, model: str | None, doc_out: list) -> tuple[Rows | None, str]:
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = read_text(path)
        doc = read_json(path, text)
        doc_out.append(doc)
        if is_lighteval(doc):  # before is_openllm: "task|shots" keys are not v1 keys
            return read_lighteval(doc, label=label, name=name, source=source,
                                  skip_unknown=skip_unknown), "lighteval"
        if is_openllm(doc):
            return read_openllm(doc, label=label, name=name, source=source,
                                skip_unknown=skip_unknown), "openllm"
        if is_lmeval(doc):
            return read_lmeval(doc, label=label, name=name, source=source,
                               skip_unknown=skip_unknown, model=model), "lm-eval"
        if looks_like_lmeval_without_results(doc):
            raise InputError("lm-eval JSON without a 'results' section", file=label, field="results",
                             hint="pass the results_*.json file the harness wrote")
        if from_folder:
            return None, "other"
        if records_from_json(doc, path) is not None:
            return read_table(path, units=units, source=source, skip_unknown=skip_unknown,
                              text=text, label=label), "table"
        raise InputError("JSON layout not recognised: expected a list of records, lm-eval "
                         "results or Open LLM Leaderboard results", file=label)
    if suffix == ".csv":
        text = read_text(path)
        if is_epoch_csv(path, text):
            return read_epoch(path, label=label, source=source, skip_unknown=skip_unknown,
                              text=text), "epoch"
        if from_folder:  # a folder is read for result files; a table is named as a file
            return None, "other"
        return read_table(path, units=units, source=source, skip_unknown=skip_unknown,
                          text=text, label=label), "table"
    if suffix in TABLE_SUFFIXES:
        return read_table(path, units=units, source=source, skip_unknown=skip_unknown,
                          label=label), "table"
    raise InputError(f"unsupported file type '{suffix or path.name}' (use .csv, .tsv, .parquet, "
                     ".json or .jsonl, or a folder of lm-eval results)", file=label)


def read_results(
    paths: Sequence[str | Path] | str | Path,
    *,
    units: str | None = None,
    source: str | None = None,
    family: str | None = None,
    kind: str | None = None,
    skip_unknown: bool = False,
    strict: bool = False,
    progress: Callable[[str], None] | None = None,
    model: str | None = None,
) -> ReadResult:
    """Read result files and folders into one validated dataset (nothing is stored).

    ``units`` ("percent" or "fraction") overrides detection for tables; ``source`` is the
    citation recorded on every score (default: the file name); ``family`` and ``kind`` fill
    in models that do not say. ``skip_unknown`` skips benchmarks CAPE does not know instead
    of refusing the file. ``strict`` refuses any score that carries a flag whose rule
    (:mod:`cape.flags`) is ``drop``, such as ``limited`` (an lm-eval run with ``--limit``)
    or ``mixed_shots``; without it such scores are read and flagged. ``progress`` is called
    with each file's name as it is read. ``model`` names the model of lm-eval results files
    (needed where the file's id is a local path such as ``pretrained=/data/ckpt/7B``, which
    is refused without it).

    >>> res = read_results("results/")                      # doctest: +SKIP
    >>> res.dataset.scores.head()                            # doctest: +SKIP
    """
    if units is not None and units not in UNITS:
        raise InputError(f"units must be one of {', '.join(UNITS)}, got '{units}'", field="--units")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise InputError("no input files given")
    rows = Rows()
    result = ReadResult(Dataset())
    for raw in paths:
        path = Path(raw)
        # --- HELM (cape.io.helm): a run_spec.json, or a folder holding run_spec.json files ---
        if is_helm_run(path):
            if progress:
                progress(str(path))
            rows.extend(read_helm(path, source=source, skip_unknown=skip_unknown))
            result.files.append(str(path))
            result.formats[str(path)] = "helm"
            continue
        # --- end HELM ---
        if path.is_dir():
            files = find_result_files(path)
            found = 0
            for f in files:
                label = str(f)
                if progress:
                    progress(label)
                part, fmt = _read_one(f, label, units=units, source=source,
                                      skip_unknown=skip_unknown, from_folder=True,
                                      name=f.relative_to(path).as_posix(), model=model)
                if part is None:
                    result.skipped.append(f"{label}: not a results file")
                    continue
                found += 1
                rows.extend(part)
                result.files.append(label)
                result.formats[label] = fmt
            if not found:
                raise InputError("the folder holds no result files (looked below it for lm-eval, "
                                 "lighteval or Open LLM Leaderboard results JSON, Epoch AI CSVs "
                                 "and HELM runs)", file=path,
                                 hint="name a table (CSV, Parquet, JSON records) as a file, not a folder")
        elif path.exists():
            if progress:
                progress(str(path))
            part, fmt = _read_one(path, str(path), units=units, source=source,
                                  skip_unknown=skip_unknown, from_folder=False, model=model)
            rows.extend(part)
            result.files.append(str(path))
            result.formats[str(path)] = fmt
        else:
            raise InputError("no such file or folder", file=path)
    result.skipped.extend(rows.skipped)
    for rec in rows.scores:               # a task CAPE does not know: kept under its own name, flagged
        if rec["benchmark"] in rows.unregistered:
            rec["flags"] = ";".join(filter(None, [rec.get("flags") or "", UNREGISTERED]))
    stored = {rec["benchmark"] for rec in rows.scores}
    for frame in rows.score_frames():     # the same for tables read in bulk
        _flag_unregistered(frame, rows.unregistered)
        stored.update(frame["benchmark"].dropna().unique().tolist())
    result.unregistered = {k: v for k, v in rows.unregistered.items() if k in stored}
    if strict:
        _refuse_dropped(rows.scores if not rows.frames else rows.score_table())
    if not rows.n_scores:
        raise InputError("no scores found in " + ", ".join(result.files or map(str, paths)))
    models = rows.model_table()
    if family is not None:
        models["family"] = models["family"].where(models["family"].notna(), family) if "family" in models else family
    if kind is not None:
        models["kind"] = models["kind"].where(models["kind"].notna(), kind) if "kind" in models else kind
    scores = rows.score_table()
    del rows
    data = Dataset.from_frames(models, scores)
    del models, scores  # the typed copies are all that is needed from here
    result.dataset = data.validate()
    return result


def _flag_unregistered(frame: pd.DataFrame, unregistered: dict[str, str]) -> None:
    """Add the flag ``unregistered`` to a bulk-read score table's tasks CAPE does not know."""
    hit = frame["benchmark"].isin(list(unregistered)).to_numpy(dtype=bool)
    if not hit.any():
        return
    old = frame["flags"] if "flags" in frame.columns else pd.Series(None, index=frame.index, dtype=object)
    old = old.astype(object)
    keep = old.notna().to_numpy(dtype=bool) & (old != "").to_numpy(dtype=bool)
    new = old.where(~hit, None)
    new[hit & keep] = old[hit & keep] + ";" + UNREGISTERED
    new[hit & ~keep] = UNREGISTERED
    frame["flags"] = new


def _dropping(flags: str) -> list[str]:
    return [f for f in split_flags(flags) if f == UNREGISTERED
            or (FLAGS.get(flag_name(f)) is not None and FLAGS[flag_name(f)].rule == "drop")]


def _refuse_dropped(scores: list[dict] | pd.DataFrame) -> None:
    """``strict``: the first score whose flags --clean would drop is an error naming it."""
    if isinstance(scores, pd.DataFrame):  # the same, over a table: each distinct flags text once
        if "flags" not in scores.columns or not len(scores):
            return
        flags = scores["flags"].astype(object)
        flags = flags.where(flags.notna(), None)
        codes, uniques = pd.factorize(flags)
        per = [_dropping(u) for u in uniques]
        count = np.array([len(x) for x in per] + [0])[codes]  # code -1 (no flags): none
        if not count.any():
            return
        i = int(np.argmax(count > 0))
        rec = {c: scores[c].iat[i] for c in ("_file", "_row", "_field") if c in scores.columns}
        rec = {c: (None if v is None or (isinstance(v, float) and v != v) else v) for c, v in rec.items()}
        if isinstance(rec.get("_row"), float):  # a column of line numbers with gaps became floats
            rec["_row"] = int(rec["_row"])
        first, total = (rec, per[codes[i]][0]), int(count.sum())
    else:
        bad = [(rec, f) for rec in scores for f in _dropping(rec.get("flags"))]
        first, total = (bad[0] if bad else None), len(bad)
    if total:
        rec, flag = first
        more = f"; {total - 1} more flagged score(s)" if total > 1 else ""
        meaning = FLAGS[flag_name(flag)].meaning.split(";")[0]
        raise InputError(f"{flag}: {meaning}{more}",
                         file=rec.get("_file"), row=rec.get("_row"), field=rec.get("_field"),
                         hint="--strict refuses scores that --clean would drop and tasks CAPE does "
                              "not know; leave out --strict to store them flagged")


# ------------------------------------------------------------------------------ export
EXPORT_FORMATS = ("csv", "parquet", "json")


def export_frame(models: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The long export layout: one row per score with its model's metadata.

    Model ``flags`` and ``source`` become ``model_flags`` and ``model_source`` so that the
    file can be ingested again unchanged.
    """
    meta = models.rename(columns={"flags": "model_flags", "source": "model_source"})
    out = scores.merge(meta, on="model", how="left")
    first = ["model", "display_name", "family", "organisation", "kind", "params", "active_params",
             "d_model", "n_layers", "n_heads", "tokens", "flops", "release_date",
             "release_date_precision", "model_flags", "model_source"]
    if "subset" in out.columns:
        first.append("subset")
    rest = ["benchmark", "variant", "value", "units", "stderr", "n_shot", "harness", "source", "run_date",
            "flags"]
    out = out.assign(units="percent")
    return out[[c for c in first + rest if c in out.columns]]


def write_export(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """Write ``frame`` to ``path`` atomically: a partial file never replaces a good one."""
    import os
    import tempfile

    if fmt not in EXPORT_FORMATS:
        raise InputError(f"format must be one of {', '.join(EXPORT_FORMATS)}", field="--format")
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError("the folder does not exist", file=folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if fmt == "csv":
            frame.to_csv(tmp, index=False, lineterminator="\n")
        elif fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", indent=2, force_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

