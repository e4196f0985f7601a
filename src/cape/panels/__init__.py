"""Panels: named sets of models with their scores.

Built-in reference panels ship with the package (``data/<name>/``) and are read-only;
panels a user ingests live in the store (:mod:`cape.store`). Both come back as a
:class:`Panel`. :func:`clean` and :func:`correct` return new panels and say what they did;
:func:`wide` pivots a panel into one row per model and one column per benchmark.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

from ..benchmarks import BENCHMARKS, OTHER_SCALE_VARIANTS, UNSPECIFIED, resolve, variant_rank
from ..catalog import BUILTIN_PANELS as _BUILTIN_PANELS
from ..errors import CapeError
from ..flags import FLAGS, flag_arg, flag_name
from ..schema import Dataset, join_flags, split_flags

__all__ = ["Panel", "BUILTIN_PANELS", "is_builtin", "load_builtin", "clean", "correct",
           "select", "wide", "runs", "run_dates", "RUN_STATUSES"]

#: The reference panels, in the order `cape panels` lists them (defined in cape.catalog).
BUILTIN_PANELS = _BUILTIN_PANELS

ERRATA_COLUMNS = ("model", "benchmark", "variant", "published", "value", "layer", "source", "note")


@dataclass
class Panel:
    """A panel's models (one row each, with a ``subset`` column) and its scores (long form).

    ``log`` lists what :func:`clean`, :func:`correct` or :func:`select` changed.
    """

    name: str
    models: pd.DataFrame
    scores: pd.DataFrame
    title: str = ""
    description: str = ""
    builtin: bool = False
    meta: dict = field(default_factory=dict)
    errata: pd.DataFrame | None = None
    cleaned: bool = False
    corrected: bool = False
    log: list[str] = field(default_factory=list)

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def benchmarks(self) -> list[str]:
        present = set(self.scores["benchmark"].dropna().unique())
        return [b for b in BENCHMARKS if b in present]

    @property
    def families(self) -> list[str]:
        return sorted(set(self.models["family"].dropna()))

    def summary(self) -> dict:
        """Plain facts about the panel, for listings and ``--json``."""
        return {
            "name": self.name,
            "title": self.title,
            "builtin": self.builtin,
            "models": self.n_models,
            "families": len(self.families),
            "scores": len(self.scores),
            "benchmarks": self.benchmarks,
            "has_errata": self.errata is not None and bool((self.errata["layer"] == "errata").any()),
        }


def is_builtin(name: str) -> bool:
    return name in BUILTIN_PANELS


def _read_csv(text: str) -> pd.DataFrame:
    from io import StringIO

    return pd.read_csv(StringIO(text), keep_default_na=False, na_values=[""], dtype=str)


@lru_cache(maxsize=None)
def _builtin_files(name: str) -> tuple[dict, str, str, str | None]:
    folder = resources.files("cape.panels").joinpath("data", name)
    meta = json.loads(folder.joinpath("panel.json").read_text(encoding="utf-8"))
    models = folder.joinpath("models.csv").read_text(encoding="utf-8")
    scores = folder.joinpath("scores.csv").read_text(encoding="utf-8")
    errata_file = folder.joinpath("errata.csv")
    errata = errata_file.read_text(encoding="utf-8") if errata_file.is_file() else None
    return meta, models, scores, errata


def load_builtin(name: str) -> Panel:
    """Read a reference panel shipped with the package (no database involved)."""
    if name not in BUILTIN_PANELS:
        raise CapeError(f"'{name}' is not a built-in panel (built-in: {', '.join(BUILTIN_PANELS)})")
    meta, models_csv, scores_csv, errata_csv = _builtin_files(name)
    ds = Dataset.from_frames(_read_csv(models_csv), _read_csv(scores_csv))
    models = ds.models
    models["flags"] = models["flags"].fillna("")
    scores = ds.scores
    scores["flags"] = scores["flags"].fillna("")
    errata = None
    if errata_csv is not None:
        errata = _read_csv(errata_csv)
        for col in ("published", "value"):
            errata[col] = errata[col].astype(float)
    return Panel(name=name, models=models, scores=scores, title=meta.get("title", ""),
                 description=meta.get("description", ""), builtin=True, meta=meta, errata=errata)


def _model_rules(text) -> tuple[str, list[tuple[str, str, str | None]]]:
    """For a model's flags text: the flags kept, and the actions in order: ``("drop", flag,
    None)`` or ``("move", flag, family)`` (the rules of :func:`clean`)."""
    kept, actions = [], []
    for f in split_flags(text):
        spec = FLAGS.get(flag_name(f))
        rule = spec.rule if spec else "keep"
        if rule == "drop":
            actions.append(("drop", f, None))
        elif rule == "set_family":
            actions.append(("move", f, flag_arg(f)))
        elif rule != "clear":
            kept.append(f)
    return join_flags(kept), actions


def _score_rules(text) -> tuple[str, str | None, str | None, int]:
    """For a score's flags text: the flags kept, the flag that drops the score (the first),
    the variant it is relabelled to (the last such flag's) and how many flags relabel it."""
    kept, drop, target, n = [], None, None, 0
    for f in split_flags(text):
        spec = FLAGS.get(flag_name(f))
        if spec is not None and spec.rule == "drop":
            drop = f if drop is None else drop
        elif spec is not None and spec.rule == "relabel_variant":
            target, n = spec.target, n + 1
        else:
            kept.append(f)
    return join_flags(kept), drop, target, n


def _replaced(column: pd.Series, values: list, codes: np.ndarray) -> pd.Series:
    """``column`` with row i set to ``values[codes[i]]``, in the column's own dtype."""
    out = column.copy()
    if len(out):
        out[:] = np.asarray(values, dtype=object)[codes]
    return out


# ------------------------------------------------------------------------------ cleaning
def clean(panel: Panel) -> Panel:
    """Resolve every flagged problem by the rule :mod:`cape.flags` states for it.

    Drops models whose flags say ``drop`` and scores whose own flags say ``drop`` (a partial
    lm-eval run: ``limited``), moves mislabelled models to their family, relabels variants,
    clears flags whose problem is gone, and keeps the rest as warnings. The returned
    panel's ``log`` has one line per change.
    """
    models = panel.models.copy()
    scores = panel.scores.copy()
    log: list[str] = []
    # the rules depend on a row's flags text only: work them out once per distinct text
    codes, texts = pd.factorize(models["flags"], use_na_sentinel=False)
    rules = [_model_rules(text) for text in texts]
    models["flags"] = _replaced(models["flags"], [r[0] for r in rules], codes)
    drop: set[str] = set()
    acting = np.flatnonzero(np.asarray([bool(r[1]) for r in rules], dtype=bool)[codes]) if len(rules) else []
    if len(acting):
        ids, fams = models["model"].to_numpy(dtype=object), panel.models["family"].to_numpy(dtype=object)
        for i in acting:                      # the rows that a rule drops or moves, in order
            for action, f, arg in rules[codes[i]][1]:
                if action == "drop":
                    if ids[i] not in drop:
                        drop.add(ids[i])
                        log.append(f"dropped {ids[i]} ({f})")
                else:
                    log.append(f"moved {ids[i]} from family {fams[i]} to {arg} ({flag_name(f)})")
                    models.at[models.index[i], "family"] = arg
    models = models[~models["model"].isin(list(drop))].reset_index(drop=True)
    scores = scores[~scores["model"].isin(list(drop))].reset_index(drop=True)
    codes, texts = pd.factorize(scores["flags"], use_na_sentinel=False)
    rules = [_score_rules(text) for text in texts]
    scores["flags"] = _replaced(scores["flags"], [r[0] for r in rules], codes)
    relabel = np.asarray([r[2] for r in rules], dtype=object)[codes] if len(rules) else np.array([], dtype=object)
    relabelled = int(np.asarray([r[3] for r in rules], dtype=np.int64)[codes].sum()) if len(rules) else 0
    dropping = np.asarray([r[1] for r in rules], dtype=object)[codes] if len(rules) else np.array([], dtype=object)
    dropped = np.flatnonzero(pd.notna(dropping))
    if len(dropped):
        b, v, m = (scores[c].to_numpy(dtype=object)[dropped] for c in ("benchmark", "variant", "model"))
        log += [f"dropped the {b_} ({v_}) score of {m_} ({f})" for b_, v_, m_, f in zip(b, v, m, dropping[dropped])]
    if relabelled:
        moved = np.flatnonzero(pd.notna(relabel))
        scores.loc[scores.index[moved], "variant"] = relabel[moved]
    if len(dropped):
        scores = scores.drop(index=scores.index[dropped]).reset_index(drop=True)
    if relabelled:
        log.append(f"relabelled the variant of {relabelled} scores (mc2_labelled_mc1 -> mc2)")
    return replace(panel, models=models, scores=scores, cleaned=True, log=panel.log + log)


def correct(panel: Panel) -> Panel:
    """Apply the panel's errata layer (rows with ``layer == "errata"``); notes stay notes."""
    if panel.errata is None or not (panel.errata["layer"] == "errata").any():
        raise CapeError(f"panel '{panel.name}' has no errata layer; --corrected applies only "
                        "to panels that have one (paper-frontier)")
    scores = panel.scores.copy()
    log: list[str] = []
    for _, e in panel.errata[panel.errata["layer"] == "errata"].iterrows():
        hit = (scores["model"] == e["model"]) & (scores["benchmark"] == e["benchmark"])
        if not hit.any():
            continue
        for i in scores.index[hit]:
            old = scores.at[i, "value"]
            scores.at[i, "value"] = e["value"]
            scores.at[i, "source"] = e["source"]
            flags = [f for f in split_flags(scores.at[i, "flags"]) if flag_name(f) != "errata_available"]
            scores.at[i, "flags"] = join_flags(flags + ["corrected"])
            log.append(f"corrected {e['model']} {e['benchmark']}: {old:g} -> {e['value']:g} "
                       f"({e['source']}; {e['note']})")
    return replace(panel, scores=scores, corrected=True, log=panel.log + log)


# ----------------------------------------------------------------------------- selection
def select(panel: Panel, *, benchmarks: list[str] | None = None,
           family: list[str] | None = None) -> Panel:
    """Keep only some benchmarks (any alias works) and/or some families (case-insensitive)."""
    models, scores = panel.models, panel.scores
    if family:
        wanted = {f.strip().lower() for f in family if f.strip()}
        fam = models["family"].fillna("").str.lower()
        unknown = sorted(wanted - set(fam))
        if unknown:
            raise CapeError(f"panel '{panel.name}' has no family {', '.join(unknown)} "
                            f"(families: {', '.join(panel.families)})")
        models = models[fam.isin(wanted)]
        scores = scores[scores["model"].isin(models["model"])]
    if benchmarks:
        names = [resolve(b, field_name="--benchmarks").benchmark for b in benchmarks if b.strip()]
        present = set(scores["benchmark"].unique())
        missing = [b for b in names if b not in present]
        if missing:
            raise CapeError(f"panel '{panel.name}' has no scores for {', '.join(missing)} "
                            f"(it has: {', '.join(panel.benchmarks)})")
        scores = scores[scores["benchmark"].isin(names)]
        order = {b: i for i, b in enumerate(names)}
        scores = (scores.assign(_o=_map_distinct(scores["benchmark"], order)).sort_values("_o", kind="stable")
                  .drop(columns="_o"))
    return replace(panel, models=models.reset_index(drop=True), scores=scores.reset_index(drop=True))


#: The run time in an lm-evaluation-harness 0.4 results file name, as it is in the score's
#: default source: ``results_2024-05-01T10-00-00.123456.json`` (``:`` in place of ``-`` too).
_RUN_STAMP = r"results_(\d{4}-\d{2}-\d{2})T(\d{2})[-:](\d{2})[-:](\d{2}(?:\.\d+)?)"

RUN_STATUSES = ("current", "older run", "not picked", "conflict")


def run_dates(sources: pd.Series) -> pd.Series:
    """When each score's run was made, from the ``results_<ISO time>.json`` file name that
    lm-eval 0.4 writes (kept in the default source); ``NaT`` when the source names none."""
    # a panel has few sources and many scores: parse each distinct source once
    codes, uniques = pd.factorize(sources.astype("string"))
    parts = pd.Series(uniques, dtype="string").str.extract(_RUN_STAMP)
    stamp = parts[0] + "T" + parts[1] + ":" + parts[2] + ":" + parts[3]
    dates = pd.to_datetime(stamp, format="ISO8601", errors="coerce")
    return pd.Series(dates.array.take(codes, allow_fill=True), index=sources.index)


def _parse_times(text: pd.Series) -> pd.Series:
    """``pd.to_datetime(text, format="ISO8601", errors="coerce")``, parsing each distinct
    text once."""
    codes, uniques = pd.factorize(text)
    times = pd.to_datetime(pd.Series(uniques, dtype=text.dtype), format="ISO8601", errors="coerce")
    return pd.Series(times.array.take(codes, allow_fill=True), index=text.index)


def _dense(ids: np.ndarray) -> np.ndarray:
    """Non-negative integer ids renumbered 0..k-1 (the same groups): by a lookup table when
    their range is small, else by hashing."""
    ids = np.asarray(ids, dtype=np.int64)
    top = int(ids.max(initial=-1)) + 1
    if top > 4 * len(ids) + 1024:
        return pd.factorize(ids)[0]
    present = np.zeros(top, dtype=bool)
    present[ids] = True
    return (np.cumsum(present) - 1)[ids]


def _group_ids(columns: list[np.ndarray]) -> np.ndarray:
    """One integer per distinct combination of the columns' codes (non-negative integers,
    as ``pd.factorize(..., use_na_sentinel=False)`` gives them), row by row: the same
    groups as grouping by the columns themselves, computed once."""
    ids, span = np.zeros(len(columns[0]), dtype=np.int64), 1
    for codes in columns:
        k = int(codes.max(initial=-1)) + 1
        if span * max(k, 1) >= 2**62:                      # make the ids dense again first
            ids = _dense(ids)
            span = int(ids.max(initial=-1)) + 1
        ids, span = ids * k + codes, span * max(k, 1)
    return _dense(ids)


def _codes(column: pd.Series, as_str: bool = False) -> tuple[np.ndarray, pd.Index]:
    """``pd.factorize(column, use_na_sentinel=False)``; with ``as_str``, the codes group the
    values as ``column.astype(str)`` would (each distinct value converted once)."""
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    if as_str:
        codes = pd.factorize(pd.Index(uniques).astype(str), use_na_sentinel=False)[0][codes]
    return codes.astype(np.int64), uniques


def runs(scores: pd.DataFrame, *, run: str | None = None) -> pd.DataFrame:
    """The rule for several readings of one score (same model, benchmark, variant and
    shots, :data:`cape.schema.SCORE_IDENTITY`, from different sources).

    Returns a copy of ``scores`` with ``run_date`` (the stored one, read from the result
    file; else from the source name, :func:`run_dates`), ``status`` and ``current``
    (``status == "current"``):

    * ``run`` given (a piece of the source, e.g. a date ``2024-05-01`` or a file name): where
      a reading's source contains it, that reading is the one used; the others of the same
      score are ``not picked``. A ``run`` no source contains is an error.
    * readings that all have a run date: the newest is ``current``, older ones are kept as
      history (``older run``);
    * readings that all give one value (the same number from two sources): all ``current``;
    * otherwise (different values and no date to order them, or the newest date shared by
      readings that differ): those readings are ``conflict`` and the wide view leaves that
      benchmark out, with a note naming it.
    """
    s, code, _ = _resolve(scores, run)
    status = pd.Series(np.asarray(RUN_STATUSES, dtype=object)[code], index=s.index, dtype=object)
    if s.empty:
        return s.assign(run_date=pd.array([], dtype="string"), status=status,
                        current=status == "current")
    # format each distinct run time once
    codes, uniques = pd.factorize(s["run_date"])
    iso = pd.Series(uniques).dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str.removesuffix(".000000")
    iso = iso.astype("string").array.take(codes, allow_fill=True)
    return s.assign(run_date=iso, status=status, current=status == "current")


def _resolve(scores: pd.DataFrame, run: str | None) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """The rule of :func:`runs`: a copy of ``scores`` (variant filled, ``run_date`` as a
    time), each row's status as its position in :data:`RUN_STATUSES`, and the codes and
    distinct values of its model, benchmark and variant (:func:`_codes`), for reuse.

    Only readings that share their score with another reading need the rule; a score read
    once is ``current`` whatever ``run`` says, so the group arithmetic runs on the others.
    """
    s = scores.copy()
    s["variant"] = s["variant"].fillna(UNSPECIFIED)
    if len(s):
        stored = (_parse_times(s["run_date"].astype("string"))
                  if "run_date" in s else pd.Series(pd.NaT, index=s.index))
        s["run_date"] = stored.where(stored.notna(), run_dates(s["source"]))
    else:
        s["run_date"] = pd.Series(dtype="datetime64[ns]")
    code = np.zeros(len(s), dtype=np.int8)                 # 0 = "current"
    parts = {c: _codes(s[c]) for c in ("model", "benchmark", "variant")}
    if s.empty:
        return s, code, parts
    key = _group_ids([_codes(pd.Series(u), as_str=True)[0][c] for c, u in parts.values()]
                     + [_codes(s["n_shot"].astype("Float64").fillna(-1))[0]])
    if run:
        src_codes, sources = pd.factorize(s["source"].fillna("").astype(str))
        hit = pd.Series(sources).str.contains(run, regex=False).to_numpy(dtype=bool)[src_codes]
        if not hit.any():
            raise CapeError(f"no score comes from a run matching '{run}'",
                            hint="see the sources with `cape show PANEL --history`")
    several = np.flatnonzero(np.bincount(key)[key] > 1)    # rows whose score has other readings
    if not len(several):
        return s, code, parts
    key = pd.Series(key[several])
    status = pd.Series(0, index=key.index, dtype=np.int8)
    if run:
        hit = pd.Series(hit[several])
        status[hit.groupby(key).transform("any") & ~hit] = 2   # "not picked"
    live = status == 0
    value = pd.Series(s["value"].to_numpy(dtype=float, na_value=np.nan)[several]).round(9).where(live)
    date = pd.Series(s["run_date"].to_numpy()[several]).where(live)
    g = lambda x: x.groupby(key, dropna=False)  # noqa: E731
    n_live = g(live).transform("sum")
    dated = g(date.notna()).transform("sum") == n_live
    newest = date == g(date).transform("max")
    at_newest = g(value.where(newest)).transform("nunique")
    n_values = g(value).transform("nunique")
    by_date = live & dated & (n_live > 1)
    status[by_date & ~newest] = 1                            # "older run"
    status[live & ((by_date & newest & (at_newest > 1)) | (~dated & (n_values > 1)))] = 3  # "conflict"
    code[several] = status.to_numpy()
    return s, code, parts


def _conflict_notes(bad: pd.DataFrame, panel: str) -> dict[str, str]:
    """Benchmark -> one line on its first unresolved conflict, counting distinct values
    (``bad``: the readings whose status is ``conflict``)."""
    notes: dict[str, str] = {}
    for bench, rows in bad.groupby("benchmark", sort=False):
        first = rows.iloc[0]
        same = rows[(rows["model"] == first["model"]) & (rows["variant"] == first["variant"])
                    & (rows["n_shot"].astype("Float64").fillna(-1) == (-1 if pd.isna(first["n_shot"])
                                                                      else first["n_shot"]))]
        values = sorted({round(float(v), 9) for v in same["value"]})
        shots = "shots unknown" if pd.isna(first["n_shot"]) else f"{int(first['n_shot'])}-shot"
        n_models = rows["model"].nunique()
        more = f" (and {n_models - 1} other model(s))" if n_models > 1 else ""
        notes[str(bench)] = (
            f"panel '{panel}': model '{first['model']}' has {len(values)} different {bench} "
            f"({first['variant']}, {shots}) values {', '.join(f'{v:g}' for v in values)} from "
            f"{same['source'].nunique()} sources ({', '.join(map(str, dict.fromkeys(same['source'])))})"
            f"{more}, and no run date orders them")
    return notes


def _shot_targets(scores: pd.DataFrame, shots) -> tuple[dict[str, int | None], bool]:
    """Benchmark -> the shots the wide view prefers, and whether the user chose them."""
    if shots is not None:
        if isinstance(shots, dict):
            asked = {resolve(b, field_name="shots").benchmark: int(n) for b, n in shots.items()}
        else:
            asked = {b: int(shots) for b in scores["benchmark"].unique()}
        return asked, True
    target: dict[str, int | None] = {}
    known = scores.dropna(subset=["n_shot"])
    for bench, rows in known.groupby("benchmark"):
        counts = rows.drop_duplicates(["model", "n_shot"])["n_shot"].astype(int).value_counts()
        top = counts[counts == counts.max()].index
        target[str(bench)] = int(min(top))
    return target, False


def _several_values(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rows whose group (integer code) holds two or more distinct values."""
    codes = _dense(group)
    k = int(codes.max(initial=-1)) + 1
    out = np.zeros(len(group), dtype=bool)
    shared = np.flatnonzero(np.bincount(codes, minlength=k)[codes] > 1)
    if len(shared):
        pairs = pd.DataFrame({"g": codes[shared], "v": values[shared]}).drop_duplicates()
        counts = np.bincount(pairs["g"].to_numpy(), minlength=k)
        out[shared] = counts[codes[shared]] > 1
    return out


def _first_per_group(group: np.ndarray, keys: tuple[np.ndarray, ...]) -> np.ndarray:
    """Row positions of the first row of each group when the rows are ordered by ``keys``
    (the last is the primary key, as :func:`numpy.lexsort`) and then by position; in group
    code order. A group of one row needs no ordering."""
    n = len(group)
    codes = _dense(group)
    k = int(codes.max(initial=-1)) + 1
    sizes = np.bincount(codes, minlength=k)
    out = np.full(k, -1, dtype=np.int64)
    single = sizes[codes] == 1
    out[codes[single]] = np.flatnonzero(single)
    many = np.flatnonzero(~single)
    if len(many):
        order = many[np.lexsort((many,) + tuple(key[many] for key in keys) + (codes[many],))]
        head = np.r_[True, codes[order][1:] != codes[order][:-1]]
        out[codes[order][head]] = order[head]
    return out[out >= 0] if n else out


def _map_distinct(values: pd.Series, mapping: dict) -> pd.Series:
    """``values.map(mapping)``, looking up each distinct value once."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    mapped = pd.Series(uniques).map(mapping)
    return pd.Series(mapped.array.take(codes), index=values.index)


def wide(panel: Panel, *, variant_columns: bool = False, shots: int | dict | None = None,
         run: str | None = None) -> pd.DataFrame:
    """One row per model (index ``model``), model metadata, then one column per benchmark.

    Where a model has several variants of a benchmark, the benchmark's preferred variant is
    used (``cape.benchmarks``); ``variant_columns=True`` gives ``benchmark:variant`` columns
    instead. Where it has several shot counts (gsm8k 0-shot and 8-shot), the ``shots`` asked
    for are used (an int for every benchmark, or ``{"gsm8k": 8}``; a model without them has
    no value), else the shot count most models of the panel have for that benchmark (the
    smaller on a tie). Several readings of one score (two lm-eval runs of the model) follow
    :func:`runs`: ``run`` picks one, else the newest run wins; a benchmark whose readings
    cannot be ordered is left out of the table with a note naming it, and the others work.

    ``df.attrs["cape"]`` records the panel, the variant and shots behind each column, the
    benchmarks ``left_out`` (with the reason), and the clean/correct log plus these notes.
    """
    resolved, code, parts = _resolve(panel.scores, run)
    left_out = _conflict_notes(resolved[code == 3], panel.name)
    notes = [f"left out {b}: {why}; pick one run with run=/--run, or remove one source"
             for b, why in left_out.items()]
    kept = ~resolved["benchmark"].isin(list(left_out)).to_numpy(dtype=bool) if left_out else True
    n_older = int(((code == 1) & kept).sum())
    if n_older:
        notes.append(f"{n_older} score(s) of older runs kept as history, the newest run used "
                     "(see load_scores(history=True) / `cape show --history`)")
    use = np.flatnonzero((code == 0) & kept)               # the readings in use
    dedup = resolved.iloc[use]
    target, asked = _shot_targets(dedup, shots)
    shot = dedup["n_shot"].astype("Float64")
    want = _map_distinct(dedup["benchmark"], target).astype("Float64")
    hit = (shot == want).fillna(False).astype(bool)
    if asked:
        before = dedup[["model", "benchmark"]].drop_duplicates()
        usable = (hit | ~dedup["benchmark"].isin(list(target))).to_numpy(dtype=bool)
        dedup, use = dedup[usable], use[usable]
        hit = hit[dedup.index]
        lost = before.merge(dedup[["model", "benchmark"]].drop_duplicates(), how="left", indicator=True)
        for bench, rows in lost[lost["_merge"] == "left_only"].groupby("benchmark"):
            notes.append(f"{bench}: {len(rows)} model(s) have no {target[bench]}-shot score "
                         f"(shots asked for): {', '.join(map(str, rows['model']))}")
    # integer codes for the per-row work below (no string sorting or hashing per step)
    (m_codes, m_names), (b_codes, b_names), (v_codes, v_names) = (
        (c[use], u) for c, u in parts.values())
    mbv = (m_codes * len(b_names) + b_codes) * len(v_names) + v_codes
    s_fill = (shot[dedup.index] if asked else shot).fillna(-1).to_numpy(dtype=float)
    several = _several_values(mbv, s_fill)       # a (model, benchmark, variant) with 2+ shot counts
    for bench in sorted(set(b_names[np.unique(b_codes[several])])):
        n = target.get(bench)
        how = "as asked" if asked else "the shot count most of its models have"
        notes.append(f"{bench}: models with several shot counts use the {n}-shot scores ({how})")
    # the preference rank of each distinct (benchmark, variant)
    ranks = [[variant_rank(b, v) for v in v_names] for b in b_names]
    rank = np.asarray(ranks, dtype=np.int64).reshape(len(b_names), len(v_names))[b_codes, v_codes]
    n_pref = dedup["n_shot"].astype("Float64").fillna(10**6).to_numpy(dtype=float)
    miss = (~hit).to_numpy(dtype=int)
    if variant_columns:
        own = np.ones(len(v_names), dtype=bool)
        keys = (n_pref, miss)                     # within a cell: the asked shots, then fewer shots
    else:
        # a variant on another scale (e.g. normalised) gets its own column, never the plain one
        own = np.asarray([v in OTHER_SCALE_VARIANTS for v in v_names], dtype=bool)
        keys = (n_pref, miss, rank)               # then the preferred variant first
    # each (benchmark, variant) -> its column: "benchmark" or "benchmark:variant"
    grid = [f"{b}:{v}" if own[j] else b for b in b_names for j, v in enumerate(v_names)]
    grid_codes, c_names = pd.factorize(np.asarray(grid, dtype=object))
    c_names = list(c_names)
    c_codes = grid_codes.astype(np.int64).reshape(len(b_names), len(v_names))[b_codes, v_codes]
    # per (model, column) the first row by (keys..., row order): the value the table shows
    cell = m_codes * len(c_names) + c_codes
    win = _first_per_group(cell, keys)
    order = {b: i for i, b in enumerate(BENCHMARKS)}
    present = np.flatnonzero(np.bincount(c_codes[win], minlength=len(c_names)))
    cols = sorted((c_names[c] for c in present), key=lambda c: (order.get(c.split(":")[0], 999), c))
    meta_cols = [c for c in panel.models.columns if c != "model"]
    base = panel.models.set_index("model")[meta_cols]
    row_of = pd.Index(m_names).get_indexer(base.index)      # each model's codes, -1 for none
    values = dedup["value"].array
    by_name = {name: i for i, name in enumerate(c_names)}
    table = {}
    for col in cols:
        pick = np.full(len(m_names), -1, dtype=np.int64)
        w = win[c_codes[win] == by_name[col]]
        pick[m_codes[w]] = w
        take = np.where(row_of >= 0, pick[np.maximum(row_of, 0)], -1) if len(m_names) else row_of
        table[col] = values.take(take, allow_fill=True)
    # labelled as pivoting the column names (sorted) and reindexing them to ``cols`` labels them
    pivoted = pd.Index(sorted(cols), dtype=dedup["benchmark"].dtype)
    labels = pd.DataFrame(columns=pivoted).reindex(columns=cols).columns
    out = base.join(pd.DataFrame(table, index=base.index, columns=labels))
    out = out.reindex(panel.models["model"])
    out.index.name = "model"
    out.columns.name = None
    # the variants and shot counts behind each column: from the distinct (column, value) pairs
    w_cols = c_codes[win].astype(np.int64)
    w_shots = dedup["n_shot"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)[win]
    s_codes, s_values = pd.factorize(w_shots)                      # NaN -> -1
    variants: dict = {c_names[c]: set() for c in present}
    used_shots: dict = {c_names[c]: set() for c in present}
    for pair in np.unique(w_cols * len(v_names) + v_codes[win]):
        variants[c_names[pair // len(v_names)]].add(v_names[pair % len(v_names)])
    for pair in np.unique(w_cols * (len(s_values) + 1) + s_codes + 1):
        if pair % (len(s_values) + 1):
            used_shots[c_names[pair // (len(s_values) + 1)]].add(int(s_values[pair % (len(s_values) + 1) - 1]))
    variants = {c: sorted(variants[c]) for c in sorted(variants)}
    used_shots = {c: sorted(used_shots[c]) for c in sorted(used_shots)}
    out.attrs["cape"] = {
        "panel": panel.name,
        "benchmarks": cols,
        "variants": variants,
        "shots": used_shots,
        "left_out": left_out,
        "run": run,
        "clean": panel.cleaned,
        "corrected": panel.corrected,
        "log": list(panel.log) + notes,
    }
    return out
