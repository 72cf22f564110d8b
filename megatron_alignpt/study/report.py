"""Execute the analysis notebooks on a study's results and export one self-contained HTML report.

    alignpt study report --study runs/demo        # rebuilds results/*.parquet, then runs/demo/report.html

The report runs every notebook of `REPORT_NOTEBOOKS` in order (paired comparisons with the verdicts, misalignment by condition, persistence
through post-training by system prompt, insertion stage, capability regression, filter audit) with
``ALIGNPT_RESULTS`` (the misalignment table) and ``ALIGNPT_STUDY`` (the study directory) set, and joins
them into ``analysis.ipynb`` and ``report.html`` (figures embedded, code hidden). A notebook whose data
is absent from the study (no CPT condition, no capability results, no audit) shows a note instead.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

from data_prep.atomic import atomic_write_text

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
DEFAULT_NOTEBOOK = NOTEBOOKS / "misalignment_by_condition.ipynb"
REPORT_NOTEBOOKS = tuple(
    NOTEBOOKS / name
    for name in (
        "paired_comparisons.ipynb",  # first: the verdicts and the per-question differences (positive control)
        "misalignment_by_condition.ipynb",
        "persistence_through_posttraining.ipynb",
        "insertion_stage.ipynb",
        "capability_regression.ipynb",
        "filter_audit.ipynb",
    )
)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute_notebook(notebook: Path, results_table: Path, timeout_s: int = 600, study_dir: Optional[Path] = None):
    """Run ``notebook`` in a fresh kernel on a results table (its study directory defaults to the table's grandparent)."""
    import nbformat
    from nbclient import NotebookClient

    notebook = Path(notebook)
    nb = nbformat.read(notebook, as_version=4)
    study = Path(study_dir) if study_dir is not None else Path(results_table).resolve().parent.parent
    env = {"ALIGNPT_RESULTS": str(Path(results_table).resolve()), "ALIGNPT_STUDY": str(study.resolve())}
    with _environment(env):
        NotebookClient(nb, timeout=timeout_s, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}).execute()
    return nb


def join_notebooks(notebooks: Sequence):
    """One notebook with the cells (and outputs) of each, in order."""
    import nbformat

    joined = nbformat.v4.new_notebook(metadata=dict(notebooks[0].metadata))
    for nb in notebooks:
        joined.cells.extend(nb.cells)
    return joined


def write_report(study_dir: Path, notebooks: Sequence[Path] = REPORT_NOTEBOOKS) -> Path:
    """study_dir/report.html with figures embedded, plus the executed notebooks joined in analysis.ipynb."""
    import nbformat
    from nbconvert import HTMLExporter

    study_dir = Path(study_dir)
    table = study_dir / "results" / "misalignment.parquet"
    executed = [execute_notebook(nb, table, study_dir=study_dir) for nb in notebooks]
    joined = join_notebooks(executed)
    atomic_write_text(study_dir / "analysis.ipynb", nbformat.writes(joined))
    exporter = HTMLExporter()
    exporter.exclude_input = True  # readers see tables and figures; the code is in analysis.ipynb
    html, _ = exporter.from_notebook_node(joined)
    out = study_dir / "report.html"
    atomic_write_text(out, html)
    return out
