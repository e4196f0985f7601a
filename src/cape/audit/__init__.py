"""The claims audit: every headline claim of the two preprints, recomputed from data.

Claims are data (``data/claims.yaml``, format ``cape-claims/1``): an id, the claim, the
published figure as text, the published values as numbers with a tolerance (or none, for a
qualitative claim), the analysis to call and its arguments. Adding a claim means adding a
row; an analysis is a function in :mod:`cape.audit.analyses` registered under a name.

Each analysis returns a :class:`Computation`: the values recomputed by the preprint's
protocol (or whether a qualitative claim holds), a one-line account of them, and the sound
variant (family-level resampling, exact tests, corrected data, null models, out-of-sample
scores) with whether it agrees. :func:`verdict` turns a claim and its computation into one
of the verdicts below, with a reason built from the numbers. Paper B's predictions are
rows too; their verdict is their status (see :mod:`cape.predictions`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from ..analysis.results import Result, fmt_num
from ..defaults import REPLICATION_PANEL
from ..stats import DEFAULT_BOOTSTRAP
from ..errors import CapeError
from ..yamlfile import load_yaml

__all__ = ["FORMAT", "VERDICTS", "Claim", "Computation", "load_claims", "builtin_claims", "verdict",
           "figure", "brief_reason", "AuditResult", "run_audit", "ANALYSES", "register", "REPLICATION_PANEL"]

FORMAT = "cape-claims/1"
VERDICTS = ("reproduced", "reproduced but fragile", "not reproduced", "not computable", "not computed yet")

#: name -> function(ctx, **args) -> Computation; filled by :mod:`cape.audit.analyses`.
ANALYSES: dict[str, Callable] = {}


def register(name: str):
    def deco(fn):
        ANALYSES[name] = fn
        return fn
    return deco


@dataclass
class Tolerance:
    """How far a recomputed value may sit from the published one: ``absolute`` points or a
    ``relative`` fraction of the published value."""

    amount: float
    relative: bool

    def allows(self, published: float, computed: float) -> bool:
        if computed is None or not math.isfinite(computed):
            return False
        limit = self.amount * abs(published) if self.relative else self.amount
        return abs(computed - published) <= limit + 1e-12

    def __str__(self) -> str:
        return f"{self.amount * 100:g}%" if self.relative else f"{self.amount:g}"


@dataclass
class Claim:
    id: str
    paper: str
    claim: str
    published: str
    values: dict[str, float]
    tolerance: Tolerance | None
    analysis: str
    args: dict
    origin: str = ""


@dataclass
class Computation:
    """What an analysis found for a claim.

    ``values``: recomputed by the preprint's protocol, keyed like the claim's values;
    ``holds``: for a qualitative claim, whether it holds by that protocol; ``text``: one
    line of the numbers; ``sound``: one line on the sound variant and ``sound_agrees``
    whether it supports the claim (None: no sound variant). ``status`` 'not computable' or
    'not computed yet' short-circuits the verdict (``text`` says why / the command).
    """

    values: dict[str, float] = field(default_factory=dict)
    holds: bool | None = None
    text: str = ""
    sound: str = ""
    sound_agrees: bool | None = None
    status: str | None = None
    #: CAPE's figure in a few words for the terminal table (default: the values, or
    #: whether the claim holds); ``brief``: the reason in one clause (default: the first
    #: clause of the full reason).
    figure: str = ""
    brief: str = ""

    def __setattr__(self, name, value):
        # numpy comparisons give np.bool_, for which ``is False`` is never true: ``holds``
        # and ``sound_agrees`` stay Python bools (or None) whatever an analysis hands in,
        # at construction (the dataclass __init__ assigns through here) and afterwards.
        if name in ("holds", "sound_agrees"):
            value = _flag(value)
        object.__setattr__(self, name, value)


def _flag(v) -> bool | None:
    """A verdict flag as a Python bool, or None (undecided: None, NaN, pandas NA)."""
    if v is None:
        return None
    try:
        return None if v != v else bool(v)   # NaN != NaN
    except (TypeError, ValueError):          # pandas NA and other undecidable values
        return None


def _parse_tolerance(raw, where, err) -> Tolerance:
    if isinstance(raw, bool) or raw is None:
        raise err(where, "tolerance is a number (absolute) or a percentage such as '10%'")
    if isinstance(raw, (int, float)):
        if not (raw >= 0 and math.isfinite(raw)):
            raise err(where, f"tolerance must be >= 0, not {raw}")
        return Tolerance(float(raw), False)
    text = str(raw).strip()
    if text.endswith("%"):
        try:
            v = float(text[:-1]) / 100
        except ValueError:
            raise err(where, f"tolerance '{raw}' is not a percentage") from None
        if v < 0:
            raise err(where, f"tolerance must be >= 0, not {raw}")
        return Tolerance(v, True)
    raise err(where, f"tolerance '{raw}' is neither a number nor a percentage such as '10%'")


def load_claims(path: str | Path | None = None, *, text: str | None = None, name: str | None = None) -> list[Claim]:
    """Read and check a claims file. Errors name the file, the line and the field; an
    unknown analysis name or a missing tolerance (for a claim with values) is refused."""
    from . import analyses  # noqa: F401  (fills ANALYSES)

    label = name or (str(path) if path is not None else "<claims>")
    data, err = load_yaml(path, text=text, label=label, what="claims file")
    if not isinstance(data, dict) or "claims" not in data:
        raise err((), "a claims file is a mapping with a 'claims' list")
    fmt = data.get("format", FORMAT)
    if fmt != FORMAT:
        raise err(("format",), f"unknown format '{fmt}' (this CAPE reads {FORMAT})")
    rows = data["claims"]
    if not isinstance(rows, list) or not rows:
        raise err(("claims",), "claims is a non-empty list")
    out, seen = [], set()
    for i, row in enumerate(rows):
        at = ("claims", i)
        if not isinstance(row, dict):
            raise err(at, "a claim is a mapping (id, claim, published, analysis, ...)")
        known = {"id", "paper", "claim", "published", "values", "tolerance", "analysis", "args"}
        for k in row:
            if k not in known:
                raise err(at + (k,), f"unknown field '{k}' (known: {', '.join(sorted(known))})")
        for k in ("id", "claim", "published", "analysis"):
            if not isinstance(row.get(k), str) or not str(row.get(k)).strip():
                raise err(at + (k,), f"'{k}' is required (text)")
        cid = row["id"].strip()
        if cid in seen:
            raise err(at + ("id",), f"duplicate claim id '{cid}'")
        seen.add(cid)
        if row["analysis"] not in ANALYSES:
            raise err(at + ("analysis",), f"unknown analysis '{row['analysis']}' (known: {', '.join(sorted(ANALYSES))})")
        values = row.get("values") or {}
        if not isinstance(values, dict):
            raise err(at + ("values",), "values is a mapping of name: number")
        for k, v in list(values.items()):
            if isinstance(v, str):          # YAML 1.1 reads 3.5e9 (no exponent sign) as text
                try:
                    v = values[k] = float(v)
                except ValueError:
                    pass
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise err(at + ("values", k), f"value '{k}' must be a number, not {v!r}")
        tol = None
        if values:
            if "tolerance" not in row:
                raise err(at, f"claim {cid} has values but no tolerance")
            tol = _parse_tolerance(row["tolerance"], at + ("tolerance",), err)
        args = row.get("args") or {}
        if not isinstance(args, dict):
            raise err(at + ("args",), "args is a mapping")
        out.append(Claim(cid, str(row.get("paper", cid[:1])), row["claim"].strip(), str(row["published"]).strip(),
                         {k: float(v) for k, v in values.items()}, tol, row["analysis"], dict(args), label))
    return out


def builtin_claims() -> list[Claim]:
    """The claims of both preprints (CLAIMS.md), shipped with the package."""
    f = resources.files("cape.audit").joinpath("data", "claims.yaml")
    return load_claims(text=f.read_text(encoding="utf-8"), name="claims.yaml (built-in)")


def _num(v: float) -> str:
    return fmt_num(v, 4)


def verdict(claim: Claim, comp: Computation) -> tuple[str, str]:
    """(verdict, reason). Not computable / not computed yet when the analysis says so;
    otherwise reproduced when every value is within the tolerance (or the qualitative claim
    holds), else not reproduced; reproduced but fragile when the sound variant disagrees."""
    if comp.status is not None:            # not computable, not computed yet, a prediction's status
        return comp.status, comp.text
    if claim.values:
        missing = [k for k in claim.values if k not in comp.values]
        if missing:
            return "not computable", f"the analysis gave no {', '.join(missing)}"
        off = [k for k, p in claim.values.items() if not claim.tolerance.allows(p, comp.values[k])]
        if off:
            return "not reproduced", "; ".join(
                f"{k}: published {_num(claim.values[k])}, CAPE {_num(comp.values[k])} (tolerance {claim.tolerance})"
                for k in off)
        within = "within tolerance " + str(claim.tolerance) + ": " + ", ".join(
            f"{k} {_num(comp.values[k])}" for k in claim.values)
    else:
        if comp.holds is None:
            return "not computable", comp.text or "the analysis could not decide"
        if not comp.holds:
            return "not reproduced", comp.text
        within = comp.text
    if _flag(comp.sound_agrees) is False:
        return "reproduced but fragile", f"{within}; but {comp.sound}"
    return "reproduced", within + (f"; {comp.sound}" if comp.sound else "")


def _first_clause(text: str) -> str:
    """Text up to the first '; ' outside brackets (a whole clause, never half an interval)."""
    text = str(text)
    depth = 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth <= 0 and text.startswith("; ", i):
            return text[:i].strip()
    return text.strip()


def figure(claim: Claim, comp: Computation) -> str:
    """CAPE's figure in a few words, for the terminal table: ``comp.figure`` when the
    analysis gives one, else the recomputed values of the claim (or whether it holds)."""
    if comp.figure:
        return comp.figure
    if comp.status is not None:                  # the verdict column says it
        return "-"
    keys = [k for k in claim.values if k in comp.values] or list(comp.values)
    if keys:
        return ", ".join(f"{k} {_num(comp.values[k])}" for k in keys)
    return {True: "holds", False: "does not hold"}.get(comp.holds, "undecided")


def brief_reason(claim: Claim, comp: Computation, verdict_: str) -> str:
    """The reason in one clause, for the terminal table (the full reason stays in the
    ``reason`` column, the Markdown and the report): ``comp.brief`` when the analysis gives
    one, else the tolerance test, or the first clause of the analysis's own account; for a
    fragile verdict, what the sound variant says (its first clause)."""
    if comp.status is not None:
        return comp.brief or _first_clause(comp.text)
    if verdict_ == "not computable":
        return _first_clause(verdict(claim, comp)[1])
    if claim.values:
        off = [k for k in claim.values if k in comp.values and not claim.tolerance.allows(claim.values[k], comp.values[k])]
        head = (", ".join(f"{k}: published {_num(claim.values[k])}, CAPE {_num(comp.values[k])}" for k in off)
                + f" (tolerance {claim.tolerance})") if off else f"within tolerance {claim.tolerance}"
    else:
        head = comp.brief or _first_clause(comp.text)
    if verdict_ == "reproduced but fragile":
        return f"{head}; but {_first_clause(comp.sound)}"
    return head


@dataclass
class AuditResult(Result):
    """One row per claim: ``table`` columns id, source (A, B or P for a prediction), claim,
    published, paper (CAPE's recomputation by the preprint's protocol), sound (the sound
    variant), verdict, reason, values (the recomputed numbers), analysis, and for the
    terminal table figure (CAPE's figure in a few words) and brief (the reason in one
    clause)."""

    table: pd.DataFrame
    counts: dict
    seed: int | None
    n_resamples: int
    seconds: float
    replication: object = None

    def summary(self) -> str:
        parts = ", ".join(f"{n} {v}" for v, n in self.counts.items() if n)
        text = f"Audit of {len(self.table)} claims: {parts}."
        if self.replication is not None:
            rep = self.replication
            reason = getattr(rep, "verdict_reason", "")
            flip = getattr(rep, "flip", None)
            where = fmt_num(flip.n_c) if flip is not None else getattr(rep, "verdict_split", "")
            text += (f" Independent replication on {rep.panel} (a flip within families at {where}): "
                     f"{rep.verdict}" + (f" ({reason})" if reason else "") + ".")
        return text

    def to_markdown(self) -> str:
        cols = ["id", "claim", "published", "paper", "sound", "verdict", "reason"]
        esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        lines = ["| id | claim | published | CAPE (paper protocol) | sound variant | verdict | reason |",
                 "|---|---|---|---|---|---|---|"]
        for r in self.table[cols].itertuples(index=False):
            lines.append("| " + " | ".join(esc(v) for v in r) + " |")
        if self.replication is not None:
            lines += ["", f"## Independent replication ({self.replication.panel})", "", "```",
                      self.replication.summary(), "```"]
        return "\n".join(lines)


# REPLICATION_PANEL, the independent panel the replication section runs on (one harness, 148
# base models), is set in cape.defaults (`cape --help` shows it).


def run_audit(claims: list[Claim] | None = None, *, seed: int | None = 0, n_resamples: int = DEFAULT_BOOTSTRAP,
              only: list[str] | None = None, replication: str | None = REPLICATION_PANEL,
              steering: list | None = None,
              progress: Callable[[int, int], None] | None = None) -> AuditResult:
    """Run every claim's analysis (sharing one cache of panels and results) and judge it.

    ``replication`` names the panel of the independent-replication section (loaded clean:
    flagged problems resolved by their rules, e.g. a chat model inside a base family dropped)
    (:func:`cape.analysis.replication.replication`), split at the panel's own N_c and at
    the preprint's (the published value of the claim whose analysis is ``critical_scale``);
    None leaves the section out. ``steering``: files or folders of saved steering evaluations
    (``cape steer eval``) for the steering claim; default: those recorded in
    ``$CAPE_HOME/steering`` (:func:`cape.steer.evaluate.saved_evaluations`)."""
    from .analyses import Context

    t0 = time.perf_counter()
    claims = builtin_claims() if claims is None else claims
    if only:
        wanted = {c.strip() for c in only}
        unknown = wanted - {c.id for c in claims}
        if unknown:
            raise CapeError(f"no claim {', '.join(sorted(unknown))} (claims: {', '.join(c.id for c in claims)})")
        claims = [c for c in claims if c.id in wanted]
    ctx = Context(seed=seed, n_resamples=n_resamples, steering=steering)
    rows = []
    for i, c in enumerate(claims):
        try:
            comp = ANALYSES[c.analysis](ctx, **c.args)
        except CapeError as exc:
            comp = Computation(status="not computable", text=f"the analysis failed: {exc}")
        v, reason = verdict(c, comp)
        rows.append({"id": c.id, "source": c.paper, "claim": c.claim, "published": c.published,
                     "paper": comp.text, "sound": comp.sound, "verdict": v, "reason": reason,
                     "values": dict(comp.values), "analysis": c.analysis,
                     "figure": figure(c, comp), "brief": brief_reason(c, comp, v)})
        if progress:
            progress(i + 1, len(claims))
    table = pd.DataFrame(rows, columns=["id", "source", "claim", "published", "paper", "sound", "verdict",
                                        "reason", "values", "analysis", "figure", "brief"])
    rep = None
    if replication:
        from ..analysis.replication import replication as _replication

        nc_claims = [c for c in claims if c.analysis == "critical_scale" and "nc" in c.values]
        published_nc = [c.values["nc"] for c in nc_claims]
        claimed = next(((c.values["ci_low"], c.values["ci_high"]) for c in nc_claims
                        if {"ci_low", "ci_high"} <= set(c.values)), None)
        # N_c's uncertainty, propagated into the flip test: the preprint protocol's own bootstrap
        draws = None
        if nc_claims and "panel" in nc_claims[0].args:
            try:
                dist = ctx.nc(nc_claims[0].args["panel"]).paper_distribution     # log10 N_c
                draws = None if dist is None else 10.0 ** dist
            except CapeError:
                draws = None
        # its steps follow the claims' in the progress reports (so a caller can also stop it)
        rep_progress = None if progress is None else (lambda d, t: progress(len(claims) + d, len(claims) + t))
        rep = ctx.get(("replication", replication), lambda: _replication(
            ctx.panel(replication, clean=True), n_c=published_nc or None, claimed=claimed, n_c_draws=draws,
            n_resamples=n_resamples, seed=seed, progress=rep_progress))
    counts = {v: int((table["verdict"] == v).sum()) for v in VERDICTS}
    for v in sorted(set(table["verdict"]) - set(VERDICTS)):
        counts[v] = int((table["verdict"] == v).sum())
    return AuditResult(table, counts, seed, n_resamples, time.perf_counter() - t0, rep)
