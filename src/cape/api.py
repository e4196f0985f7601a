"""The Python API: panels as DataFrames, reading and storing a user's own results.

>>> import cape
>>> df = cape.load_panel("paper-pythia", benchmarks=["hellaswag", "truthfulqa"])
>>> df[["params", "hellaswag", "truthfulqa"]].shape
(8, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .errors import CapeError
from .io import ReadResult, export_frame, read_results, write_export
from .panels import BUILTIN_PANELS, Panel, clean, correct, is_builtin, load_builtin, runs, select, wide

if TYPE_CHECKING:  # the store (SQLAlchemy) is imported where it is used: built-in panels need none
    from .store import IngestReport, MetadataReport, Store

__all__ = ["get_panel", "list_panels", "load_panel", "load_scores", "load_models", "ingest",
           "export_panel", "set_metadata", "delete_panel", "delete_models", "delete_source",
           "resolve_source"]


def _store(db: Store | str | None, *, must_exist: bool) -> Store | None:
    from .store import Store

    if isinstance(db, Store):
        return db
    if must_exist:
        return Store.existing(db)
    return Store(db)


def get_panel(name: str, *, clean_data: bool = False, corrected: bool = False,
              benchmarks: Sequence[str] | None = None, family: Sequence[str] | str | None = None,
              db: Store | str | None = None) -> Panel:
    """A panel by name: built-in (no database needed) or from the store.

    ``clean_data`` applies the flag rules of :mod:`cape.flags`; ``corrected`` applies the
    panel's errata layer; ``benchmarks`` and ``family`` select.
    """
    if is_builtin(name):
        panel = load_builtin(name)
    else:
        store = _store(db, must_exist=True)
        if store is None or not store.has_panel(name):
            known = list(BUILTIN_PANELS) + (store.panel_names() if store else [])
            import difflib

            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see `cape panels`"
            raise CapeError(f"no panel named '{name}' (panels: {', '.join(known)})", hint=hint)
        panel = store.panel(name)
    if corrected:
        panel = correct(panel)
    if clean_data:
        panel = clean(panel)
    if isinstance(family, str):
        family = [f for f in family.split(",")]
    if isinstance(benchmarks, str):
        benchmarks = [b for b in benchmarks.split(",")]
    if benchmarks or family:
        panel = select(panel, benchmarks=list(benchmarks or []), family=list(family or []))
    return panel


def list_panels(db: Store | str | None = None) -> pd.DataFrame:
    """Every panel: the built-in ones, then those in the store (if there is one); one row
    each, as :meth:`cape.panels.Panel.summary` (read without loading the panels, see
    :mod:`cape.catalog`)."""
    from .catalog import summaries

    return pd.DataFrame(summaries(db))


def load_panel(name: str, *, benchmarks: Sequence[str] | str | None = None,
               family: Sequence[str] | str | None = None, clean: bool = False,
               corrected: bool = False, variant_columns: bool = False,
               shots: int | dict | None = None, run: str | None = None,
               db: Store | str | None = None) -> pd.DataFrame:
    """One row per model (index ``model``), metadata columns, one column per benchmark.

    Scores are percentages. ``df.attrs["cape"]`` names the variant and shots behind each
    benchmark column, the benchmarks left out (``left_out``) and lists what
    ``clean``/``corrected`` changed. ``shots`` (``8`` or ``{"gsm8k": 8}``) and ``run`` (a
    piece of a source: a date, a file name) choose among several scores of one model, see
    :func:`cape.panels.wide`; by default the newest run wins.
    """
    panel = get_panel(name, clean_data=clean, corrected=corrected, benchmarks=benchmarks,
                      family=family, db=db)
    return wide(panel, variant_columns=variant_columns, shots=shots, run=run)


def load_scores(name: str, *, benchmarks: Sequence[str] | str | None = None,
                family: Sequence[str] | str | None = None, clean: bool = False,
                corrected: bool = False, history: bool = False, run: str | None = None,
                db: Store | str | None = None) -> pd.DataFrame:
    """Long form: one row per score (model, benchmark, variant, value, stderr, n_shot,
    harness, source, flags), every run included. ``history`` adds ``run_date``, ``status``
    (current, older run, not picked, conflict) and ``current`` (what the wide view uses),
    by the rule of :func:`cape.panels.runs`; ``run`` picks a run as in :func:`load_panel`."""
    panel = get_panel(name, clean_data=clean, corrected=corrected, benchmarks=benchmarks,
                      family=family, db=db)
    out = runs(panel.scores, run=run) if history or run else panel.scores.copy()
    out.attrs["cape"] = {"panel": name, "clean": clean, "corrected": corrected, "log": panel.log}
    return out


def load_models(name: str, *, clean: bool = False, family: Sequence[str] | str | None = None,
                db: Store | str | None = None) -> pd.DataFrame:
    """The panel's models with their metadata (one row each)."""
    return get_panel(name, clean_data=clean, family=family, db=db).models.copy()


def ingest(paths: Sequence[str | Path] | str | Path, panel: str, *, units: str | None = None,
           source: str | None = None, family: str | None = None, kind: str | None = None,
           replace: bool = False, skip_unknown: bool = False, dry_run: bool = False,
           strict: bool = False, db: Store | str | None = None,
           model: str | None = None) -> tuple[ReadResult, IngestReport]:
    """Read files (all of them, checked completely) and store them in ``panel`` in one
    transaction. Only ``panel`` changes (``replace`` too): the same model in another panel
    is a separate copy. See :func:`cape.io.read_results` and :meth:`cape.store.Store.ingest`."""
    if is_builtin(panel):
        raise CapeError(f"'{panel}' is a built-in panel and read-only; ingest into a panel of your own")
    result = read_results(paths, units=units, source=source, family=family, kind=kind,
                          skip_unknown=skip_unknown, strict=strict, model=model)
    store = _store(db, must_exist=False)
    report = store.ingest(result.dataset, panel, replace=replace, dry_run=dry_run)
    return result, report


def export_panel(name: str, path: str | Path, *, fmt: str | None = None, clean: bool = False,
                 corrected: bool = False, benchmarks: Sequence[str] | str | None = None,
                 family: Sequence[str] | str | None = None, db: Store | str | None = None) -> int:
    """Write a panel in the long export layout (re-ingestible). Returns the row count."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    panel = get_panel(name, clean_data=clean, corrected=corrected, benchmarks=benchmarks,
                      family=family, db=db)
    frame = export_frame(panel.models, panel.scores)
    write_export(frame, path, fmt)
    return len(frame)


# ----------------------------------------------------------- model metadata, deletions
def _stored(db: Store | str | None) -> Store:
    store = _store(db, must_exist=True)
    if store is None:
        raise CapeError("there is no CAPE database yet", hint="ingest a file first: cape ingest FILE --panel NAME")
    return store


def _own_panel(name: str) -> None:
    if is_builtin(name):
        raise CapeError(f"'{name}' is a built-in panel and read-only")


def set_metadata(panel: str, path: str | Path, *, add: bool = False, dry_run: bool = False,
                 db: Store | str | None = None) -> MetadataReport:
    """Apply a model metadata table (``model`` plus any of params, active_params, d_model,
    n_layers, tokens, release_date, family, organisation...) to a stored panel, in one
    transaction. The whole file is checked first; models the panel does not hold are an
    error unless ``add``. See :mod:`cape.io.metadata` and :meth:`cape.store.Store.set_metadata`."""
    from .io.metadata import read_metadata

    _own_panel(panel)
    data = read_metadata(path)
    store = _stored(db)
    if not store.has_panel(panel):
        get_panel(panel, db=store)  # raises with the list of panels and a suggestion
    return store.set_metadata(panel, data.models, add=add, dry_run=dry_run)


def delete_panel(name: str, *, db: Store | str | None = None) -> int:
    """Remove a stored panel (models and scores); other panels are untouched. Returns the
    number of scores removed."""
    _own_panel(name)
    return _stored(db).delete_panel(name)


def delete_models(panel: str, models: Sequence[str] | str, *, dry_run: bool = False,
                  db: Store | str | None = None) -> dict[str, int]:
    """Remove models (and their scores) from a stored panel only."""
    _own_panel(panel)
    return _stored(db).delete_models(panel, [models] if isinstance(models, str) else list(models),
                                     dry_run=dry_run)


def resolve_source(panel: str, source: str, *, db: Store | str | None = None) -> str:
    """The panel's source that ``source`` names: the source itself, or a file (its path as
    ingested, or its bare name) that matches exactly one ``KIND:FILE`` source
    (``gsm8k.json`` -> ``lm-eval:gsm8k.json``; ``results_2024-05-01T10-00-00.json`` ->
    ``lm-eval:org__model/results_2024-05-01T10-00-00.json``)."""
    store = _stored(db)
    sources = store.panel_sources(panel) if store.has_panel(panel) else {}
    if source in sources:
        return source
    hits = [s for s in sources if s.split(":", 1)[-1] == source]
    if not hits:
        hits = [s for s in sources if s.split(":", 1)[-1].rsplit("/", 1)[-1] == source]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise CapeError(f"'{source}' matches several sources of panel '{panel}': {', '.join(hits)}",
                        hint="give the full source")
    listed = ", ".join(list(sources)[:10]) + (" ..." if len(sources) > 10 else "")
    raise CapeError(f"panel '{panel}' has no scores from source '{source}' (sources: {listed or 'none'})")


def delete_source(panel: str, source: str, *, dry_run: bool = False,
                  db: Store | str | None = None) -> dict[str, int]:
    """Remove one run (the scores of one source) from a stored panel, with the models this
    leaves without scores. ``source`` may be a file name (see :func:`resolve_source`)."""
    _own_panel(panel)
    store = _stored(db)
    return store.delete_source(panel, resolve_source(panel, source, db=store), dry_run=dry_run)
