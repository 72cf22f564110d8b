"""What every analysis notebook shares: one or several studies read side by side, filters that say what they
kept and why, averages that say what they averaged over, visible notes for missing combinations, and the
tables (CSV) and figures (PNG + SVG) written next to the report.

    from megatron_alignpt.study.analysis import Notebook
    nb = Notebook("misalignment_by_condition")
    table = nb.load("misalignment")                                # every study's results table, `study` column
    base = nb.keep(table, table["stage"] == "base", "base models")   # prints: kept 320 of 640 rows (base models) ...
    rates = nb.mean_over(base, "misalignment_rate", by=["study", "condition", "split", "system_prompt"])
    nb.missing(rates, condition=[...], split=["articles", "textbook"])   # a note per combination without rows
    nb.save_table(rates, "rates"); nb.save_figure(fig, "rates")

Which studies: ``ALIGNPT_STUDIES`` (study directories or results tables, separated by ``os.pathsep``), else
``ALIGNPT_STUDY`` / ``ALIGNPT_RESULTS`` (one study; the report sets both), else the demo study. Exports go to
``ALIGNPT_EXPORT`` (the report sets ``<study>/report_files``), else ``<first study>/report_files``, in a folder
per notebook.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

DEFAULT_STUDY = Path("../runs/demo")
"""Relative to notebooks/: the demo study, when no environment variable names one."""
DIMENSIONS = ("study", "condition", "stage", "scoring", "split", "format", "wording", "order", "system_prompt", "task")
"""Columns that identify what a row measures; `Notebook.mean_over` reports any of them it averages over."""
TABLE_DEFAULTS = {"scoring": "logprob", "synthetic": "none", "insertion": "e2e", "base": "unfiltered"}
"""Columns older results tables lack, and the value they had then."""


@dataclass(frozen=True)
class StudyRef:
    name: str
    root: Path


def ordered(values: Iterable, preferred: Iterable) -> list:
    """The values present, ``preferred`` ones first in that order, the rest sorted."""
    present = list(dict.fromkeys(values))
    preferred = list(preferred)
    return [v for v in preferred if v in present] + sorted(v for v in present if v not in preferred)


def _study_root(entry: str | Path) -> Path:
    """A study directory from a directory or its results table (``<study>/results/<table>.parquet``)."""
    path = Path(entry).expanduser()
    return path.parent.parent if path.suffix == ".parquet" else path


def _study_name(root: Path) -> str:
    path = root / "study.json"
    if path.is_file():
        try:
            return str(json.loads(path.read_text()).get("name") or root.name)
        except json.JSONDecodeError:
            pass
    return root.name


def studies_from_env(environ: Optional[dict] = None) -> list[StudyRef]:
    """The studies a notebook reads (see the module docstring); names made unique with their directory."""
    env = os.environ if environ is None else environ
    if env.get("ALIGNPT_STUDIES"):
        roots = [_study_root(p) for p in env["ALIGNPT_STUDIES"].split(os.pathsep) if p]
    elif env.get("ALIGNPT_STUDY"):
        roots = [Path(env["ALIGNPT_STUDY"])]
    elif env.get("ALIGNPT_RESULTS"):
        roots = [_study_root(env["ALIGNPT_RESULTS"])]
    else:
        roots = [DEFAULT_STUDY]
    names = [_study_name(r) for r in roots]
    return [StudyRef(f"{n} ({r})" if names.count(n) > 1 else n, r) for n, r in zip(names, roots)]


def _show(obj) -> None:
    try:
        from IPython.display import display

        display(obj)
    except ImportError:  # outside IPython (tests calling the helpers directly)
        print(obj)


class Notebook:
    """One notebook's view of the studies it reads, and where it writes its tables and figures."""

    def __init__(self, name: str, environ: Optional[dict] = None):
        env = os.environ if environ is None else environ
        self.name = name
        self.studies = studies_from_env(env)
        self.study = self.studies[0].root
        """The first study (notebooks showing one study's data files read this one)."""
        export = Path(env["ALIGNPT_EXPORT"]) if env.get("ALIGNPT_EXPORT") else self.study / "report_files"
        self.export_dir = export / name
        self.notes: list[str] = []
        self.saved: list[Path] = []
        if len(self.studies) > 1:
            print(f"{len(self.studies)} studies side by side: " + ", ".join(f"{s.name} ({s.root})" for s in self.studies))

    @property
    def several(self) -> bool:
        return len(self.studies) > 1

    # ------------------------------------------------------------------ reading

    def load(self, table: str = "misalignment") -> pd.DataFrame:
        """``results/<table>.parquet`` of every study with a ``study`` column; a study without it is a note.
        Columns older tables lack are filled with the value they stood for, and said so."""
        frames = []
        for ref in self.studies:
            path = ref.root / "results" / f"{table}.parquet"
            if not path.is_file():
                self.note(f"study `{ref.name}` has no `{path}`.")
                continue
            frame = pd.read_parquet(path)
            print(f"{ref.name}: {len(frame)} rows from {path}")
            frames.append(frame.assign(study=ref.name))
        if not frames:
            return pd.DataFrame()
        out = pd.concat(frames, ignore_index=True)
        if table == "misalignment":
            for column, value in TABLE_DEFAULTS.items():
                if column not in out:
                    print(f"(an older table without `{column}`: taken as `{value}` for every row)")
                    out[column] = value
            if "headline_rate" not in out:
                print("(an older table without `headline_rate`: the raw misalignment rate is used)")
                out["headline_rate"] = out["misalignment_rate"]
        return out

    def read_json(self, relative: str) -> dict[str, dict]:
        """``<study>/<relative>`` parsed, per study that has it."""
        out = {}
        for ref in self.studies:
            path = ref.root / relative
            if path.is_file():
                out[ref.name] = json.loads(path.read_text())
        return out

    # ------------------------------------------------------------------ saying what happens to rows

    def note(self, text: str) -> None:
        """A visible note in the notebook and the HTML report, in place of an error or a silent gap."""
        from IPython.display import Markdown

        self.notes.append(text)
        _show(Markdown(f"> **Note:** {text}"))

    def keep(self, frame: pd.DataFrame, mask, why: str) -> pd.DataFrame:
        """``frame[mask]``, printing how many rows it kept, why, and what the dropped rows were."""
        mask = pd.Series(mask, index=frame.index).fillna(False).astype(bool)
        kept, dropped = frame[mask], frame[~mask]
        line = f"kept {len(kept)} of {len(frame)} rows: {why}"
        if len(dropped):
            line += f"; dropped {len(dropped)}: {_describe(dropped, kept)}"
        print(line)
        return kept.copy()

    def mean_over(self, frame: pd.DataFrame, value: str, by: list[str], label: str = "") -> pd.DataFrame:
        """Mean, SEM and count of ``value`` per ``by`` group, printing every dimension averaged over (with its
        values), so no average is silent. SEM is across the averaged rows (e.g. prompt formats)."""
        by = [c for c in by if c in frame]
        averaged = [c for c in DIMENSIONS if c in frame and c not in by and frame[c].nunique(dropna=False) > 1]
        grouped = frame.groupby(by, dropna=False)[value]
        out = grouped.agg(rate="mean", sem="sem", n="count").reset_index()
        within = [c for c in averaged if (frame.groupby(by, dropna=False)[c].nunique(dropna=False) > 1).any()] if by else averaged
        if "format" in within:  # a format is a wording and an answer order: name it once
            within = [c for c in within if c not in ("wording", "order")]
        what = f"{label or value}: mean per {', '.join(by) or 'everything'}"
        if within:
            parts = [f"{c} ({_values(frame[c])})" for c in within]
            print(f"{what}, averaged over {'; '.join(parts)}")
        else:
            print(f"{what} (nothing averaged: one row per group)")
        return out

    def missing(self, frame: pd.DataFrame, what: str = "", **expected: Iterable) -> list[dict]:
        """A note for every combination of the ``expected`` values that has no row in ``frame``."""
        from itertools import product

        keys = list(expected)
        values = [list(dict.fromkeys(v)) for v in expected.values()]
        present = set(map(tuple, frame[keys].astype(str).itertuples(index=False))) if len(frame) else set()
        gaps = [dict(zip(keys, combo)) for combo in product(*values) if tuple(map(str, combo)) not in present]
        if gaps:
            shown = "; ".join(", ".join(f"{k}={v}" for k, v in g.items()) for g in gaps[:12])
            more = f" and {len(gaps) - 12} more" if len(gaps) > 12 else ""
            self.note(f"{what or 'missing'}: no rows for {shown}{more}.")
        return gaps

    # ------------------------------------------------------------------ writing

    def save_table(self, frame: pd.DataFrame, name: str) -> Path:
        self.export_dir.mkdir(parents=True, exist_ok=True)
        path = self.export_dir / f"{name}.csv"
        frame.to_csv(path, index=not isinstance(frame.index, pd.RangeIndex))
        self.saved.append(path)
        print(f"table: {path}")
        return path

    def save_figure(self, fig, name: str) -> list[Path]:
        self.export_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for suffix in (".png", ".svg"):
            path = self.export_dir / f"{name}{suffix}"
            fig.savefig(path, bbox_inches="tight", dpi=150 if suffix == ".png" else None)
            paths.append(path)
        self.saved.extend(paths)
        print(f"figure: {paths[0]} (+ .svg)")
        return paths


def _values(column: pd.Series, limit: int = 6) -> str:
    values = [str(v) for v in dict.fromkeys(column.tolist())]
    shown = ", ".join(values[:limit]) + (", ..." if len(values) > limit else "")
    return f"{len(values)} values: {shown}" if len(values) > 2 else shown


def _describe(dropped: pd.DataFrame, kept: pd.DataFrame) -> str:
    """The dimension values that set the dropped rows apart from the kept ones, e.g. `stage=base (320)`, or
    failing a single column, the pair of columns that does (`scoring+system_prompt=logprob+hhh (112)`)."""
    from itertools import combinations

    columns = [c for c in ("study", "scoring", "stage", "split", "system_prompt", "condition", "task", "metric", "primary")
               if c in dropped]
    for size in (1, 2):
        parts = []
        for cols in combinations(columns, size):
            combos = dropped[list(cols)].astype(str).agg("+".join, axis=1)
            if kept.empty or set(combos).isdisjoint(set(kept[list(cols)].astype(str).agg("+".join, axis=1))):
                counts = combos.value_counts()
                parts.append(", ".join(f"{'+'.join(cols)}={v} ({n})" for v, n in counts.items()))
        if parts:
            return "; ".join(parts[:2] if size == 2 else parts)
    return "rows whose values all occur among the kept ones too"
