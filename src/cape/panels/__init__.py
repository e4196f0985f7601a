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

import pandas as pd

from ..benchmarks import BENCHMARKS, OTHER_SCALE_VARIANTS, UNSPECIFIED, resolve, variant_rank
from ..errors import CapeError
from ..flags import FLAGS, flag_arg, flag_name
from ..schema import Dataset, join_flags, split_flags

__all__ = ["Panel", "BUILTIN_PANELS", "is_builtin", "load_builtin", "clean", "correct",
           "select", "wide", "runs", "run_dates", "RUN_STATUSES"]

#: The reference panels, in the order `cape panels` lists them.
BUILTIN_PANELS = ("paper-base", "paper-pythia", "paper-nc", "paper-frontier", "openllm-v1-base")

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
        present = set(self.scores["benchmark"].dropna())
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
    drop: list[str] = []
    for i, row in models.iterrows():
        kept = []
        for f in split_flags(row["flags"]):
            spec = FLAGS.get(flag_name(f))
            rule = spec.rule if spec else "keep"
            if rule == "drop":
                if row["model"] not in drop:
                    drop.append(row["model"])
                    log.append(f"dropped {row['model']} ({f})")
            elif rule == "set_family":
                new = flag_arg(f)
                log.append(f"moved {row['model']} from family {row['family']} to {new} ({flag_name(f)})")
                models.at[i, "family"] = new
            elif rule == "clear":
                continue
            else:
                kept.append(f)
        models.at[i, "flags"] = join_flags(kept)
    models = models[~models["model"].isin(drop)].reset_index(drop=True)
    scores = scores[~scores["model"].isin(drop)].reset_index(drop=True)
    relabelled = 0
    dropped_scores: list = []
    for i, row in scores.iterrows():
        kept = []
        for f in split_flags(row["flags"]):
            spec = FLAGS.get(flag_name(f))
            if spec is not None and spec.rule == "drop":  # a score flag: only this score goes
                if i not in dropped_scores:
                    dropped_scores.append(i)
                    log.append(f"dropped the {row['benchmark']} ({row['variant']}) score of "
                               f"{row['model']} ({f})")
            elif spec is not None and spec.rule == "relabel_variant":
                scores.at[i, "variant"] = spec.target
                relabelled += 1
            else:
                kept.append(f)
        scores.at[i, "flags"] = join_flags(kept)
    if dropped_scores:
        scores = scores.drop(index=dropped_scores).reset_index(drop=True)
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
        missing = [b for b in names if b not in set(scores["benchmark"])]
        if missing:
            raise CapeError(f"panel '{panel.name}' has no scores for {', '.join(missing)} "
                            f"(it has: {', '.join(panel.benchmarks)})")
        scores = scores[scores["benchmark"].isin(names)]
        order = {b: i for i, b in enumerate(names)}
        scores = scores.assign(_o=scores["benchmark"].map(order)).sort_values("_o", kind="stable").drop(columns="_o")
    return replace(panel, models=models.reset_index(drop=True), scores=scores.reset_index(drop=True))


#: The run time in an lm-evaluation-harness 0.4 results file name, as it is in the score's
#: default source: ``results_2024-05-01T10-00-00.123456.json`` (``:`` in place of ``-`` too).
_RUN_STAMP = r"results_(\d{4}-\d{2}-\d{2})T(\d{2})[-:](\d{2})[-:](\d{2}(?:\.\d+)?)"

RUN_STATUSES = ("current", "older run", "not picked", "conflict")


def run_dates(sources: pd.Series) -> pd.Series:
    """When each score's run was made, from the ``results_<ISO time>.json`` file name that
    lm-eval 0.4 writes (kept in the default source); ``NaT`` when the source names none."""
    parts = sources.astype("string").str.extract(_RUN_STAMP)
    stamp = parts[0] + "T" + parts[1] + ":" + parts[2] + ":" + parts[3]
    return pd.to_datetime(stamp, format="ISO8601", errors="coerce")


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
    s = scores.copy()
    s["variant"] = s["variant"].fillna(UNSPECIFIED)
    if len(s):
        stored = (pd.to_datetime(s["run_date"].astype("string"), format="ISO8601", errors="coerce")
                  if "run_date" in s else pd.Series(pd.NaT, index=s.index))
        s["run_date"] = stored.where(stored.notna(), run_dates(s["source"]))
    else:
        s["run_date"] = pd.Series(dtype="datetime64[ns]")
    status = pd.Series("current", index=s.index, dtype=object)
    if s.empty:
        return s.assign(run_date=pd.array([], dtype="string"), status=status,
                        current=status == "current")
    key = [s["model"].astype(str), s["benchmark"].astype(str), s["variant"].astype(str),
           s["n_shot"].astype("Float64").fillna(-1)]
    if run:
        hit = s["source"].fillna("").astype(str).str.contains(run, regex=False)
        if not hit.any():
            raise CapeError(f"no score comes from a run matching '{run}'",
                            hint="see the sources with `cape show PANEL --history`")
        status[hit.groupby(key).transform("any") & ~hit] = "not picked"
    live = status == "current"
    value = s["value"].astype(float).round(9).where(live)
    date = s["run_date"].where(live)
    g = lambda x: x.groupby(key, dropna=False)  # noqa: E731
    n_live = g(live).transform("sum")
    dated = g(date.notna()).transform("sum") == n_live
    newest = date == g(date).transform("max")
    at_newest = g(value.where(newest)).transform("nunique")
    n_values = g(value).transform("nunique")
    by_date = live & dated & (n_live > 1)
    status[by_date & ~newest] = "older run"
    status[live & ((by_date & newest & (at_newest > 1)) | (~dated & (n_values > 1)))] = "conflict"
    iso = s["run_date"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str.removesuffix(".000000")
    return s.assign(run_date=iso.astype("string"), status=status, current=status == "current")


def _conflict_notes(resolved: pd.DataFrame, panel: str) -> dict[str, str]:
    """Benchmark -> one line on its first unresolved conflict, counting distinct values."""
    bad = resolved[resolved["status"] == "conflict"]
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
    resolved = runs(panel.scores, run=run)
    left_out = _conflict_notes(resolved, panel.name)
    notes = [f"left out {b}: {why}; pick one run with run=/--run, or remove one source"
             for b, why in left_out.items()]
    older = resolved[(resolved["status"] == "older run") & ~resolved["benchmark"].isin(list(left_out))]
    if len(older):
        notes.append(f"{len(older)} score(s) of older runs kept as history, the newest run used "
                     "(see load_scores(history=True) / `cape show --history`)")
    dedup = resolved[resolved["current"] & ~resolved["benchmark"].isin(list(left_out))]
    target, asked = _shot_targets(dedup, shots)
    shot = dedup["n_shot"].astype("Float64")
    want = dedup["benchmark"].map(target).astype("Float64")
    hit = (shot == want).fillna(False).astype(bool)
    if asked:
        before = dedup[["model", "benchmark"]].drop_duplicates()
        dedup = dedup[hit | ~dedup["benchmark"].isin(list(target))]
        hit = hit[dedup.index]
        lost = before.merge(dedup[["model", "benchmark"]].drop_duplicates(), how="left", indicator=True)
        for bench, rows in lost[lost["_merge"] == "left_only"].groupby("benchmark"):
            notes.append(f"{bench}: {len(rows)} model(s) have no {target[bench]}-shot score "
                         f"(shots asked for): {', '.join(map(str, rows['model']))}")
    several = (dedup.assign(_s=shot[dedup.index].fillna(-1))
               .groupby(["model", "benchmark", "variant"])["_s"].transform("nunique") > 1)
    for bench in sorted(set(dedup.loc[several, "benchmark"])):
        n = target.get(bench)
        how = "as asked" if asked else "the shot count most of its models have"
        notes.append(f"{bench}: models with several shot counts use the {n}-shot scores ({how})")
    rank = [variant_rank(b, v) for b, v in zip(dedup["benchmark"], dedup["variant"])]
    dedup = dedup.assign(_rank=rank, _shot=(~hit).astype(int),
                         _n=dedup["n_shot"].astype("Float64").fillna(10**6))
    if variant_columns:
        dedup = dedup.assign(column=dedup["benchmark"] + ":" + dedup["variant"])
        dedup = dedup.sort_values(["model", "column", "_shot", "_n"], kind="stable")
    else:
        dedup = dedup.sort_values(["model", "benchmark", "_rank", "_shot", "_n"], kind="stable")
        # a variant on another scale (e.g. normalised) gets its own column, never the plain one
        other = dedup["variant"].isin(OTHER_SCALE_VARIANTS)
        dedup = dedup.assign(column=dedup["benchmark"].where(~other, dedup["benchmark"] + ":" + dedup["variant"]))
    dedup = dedup.drop_duplicates(["model", "column"])
    order = {b: i for i, b in enumerate(BENCHMARKS)}
    cols = sorted(dedup["column"].unique(), key=lambda c: (order.get(c.split(":")[0], 999), c))
    table = dedup.pivot(index="model", columns="column", values="value")
    meta_cols = [c for c in panel.models.columns if c != "model"]
    out = panel.models.set_index("model")[meta_cols].join(table.reindex(columns=cols))
    out = out.reindex(panel.models["model"])
    out.index.name = "model"
    out.columns.name = None
    variants = (dedup.groupby("column")["variant"].agg(lambda v: sorted(set(v))).to_dict())
    used_shots = (dedup.groupby("column")["n_shot"]
                  .agg(lambda v: sorted({int(x) for x in v.dropna()})).to_dict())
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
