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

from ..benchmarks import BENCHMARKS, UNSPECIFIED, resolve, variant_rank
from ..errors import CapeError
from ..flags import FLAGS, flag_arg, flag_name
from ..schema import Dataset, join_flags, split_flags

__all__ = ["Panel", "BUILTIN_PANELS", "is_builtin", "load_builtin", "clean", "correct",
           "select", "wide"]

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


def wide(panel: Panel, *, variant_columns: bool = False) -> pd.DataFrame:
    """One row per model (index ``model``), model metadata, then one column per benchmark.

    Where a model has several variants of a benchmark, the benchmark's preferred variant is
    used (``cape.benchmarks``); ``variant_columns=True`` gives ``benchmark:variant`` columns
    instead. Two sources giving different values for the same model, benchmark and variant
    is an error: use :func:`load_scores` to see both. ``df.attrs["cape"]`` records the panel,
    the variant behind each column, and the clean/correct log.
    """
    scores = panel.scores.copy()
    scores["variant"] = scores["variant"].fillna(UNSPECIFIED)
    # identical values from two sources are not a conflict
    dedup = scores.drop_duplicates(["model", "benchmark", "variant", "value"])
    clash = dedup.duplicated(["model", "benchmark", "variant"], keep=False)
    if clash.any():
        r = dedup[clash].iloc[0]
        srcs = dedup[clash & (dedup["model"] == r["model"]) & (dedup["benchmark"] == r["benchmark"])]
        raise CapeError(
            f"panel '{panel.name}': model '{r['model']}' has {len(srcs)} different {r['benchmark']} "
            f"({r['variant']}) values from sources {', '.join(map(str, srcs['source']))}",
            hint="use load_scores() / `cape show --long` to see them all",
        )
    if variant_columns:
        dedup = dedup.assign(column=dedup["benchmark"] + ":" + dedup["variant"])
    else:
        rank = [variant_rank(b, v) for b, v in zip(dedup["benchmark"], dedup["variant"])]
        dedup = dedup.assign(_rank=rank).sort_values(["model", "benchmark", "_rank"], kind="stable")
        dedup = dedup.drop_duplicates(["model", "benchmark"]).assign(column=lambda d: d["benchmark"])
    order = {b: i for i, b in enumerate(BENCHMARKS)}
    cols = sorted(dedup["column"].unique(), key=lambda c: (order.get(c.split(":")[0], 999), c))
    table = dedup.pivot(index="model", columns="column", values="value")
    meta_cols = [c for c in panel.models.columns if c != "model"]
    out = panel.models.set_index("model")[meta_cols].join(table.reindex(columns=cols))
    out = out.reindex(panel.models["model"])
    out.index.name = "model"
    out.columns.name = None
    variants = (dedup.groupby("column")["variant"].agg(lambda v: sorted(set(v))).to_dict())
    out.attrs["cape"] = {
        "panel": panel.name,
        "benchmarks": cols,
        "variants": variants,
        "clean": panel.cleaned,
        "corrected": panel.corrected,
        "log": list(panel.log),
    }
    return out

