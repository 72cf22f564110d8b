"""Execute the analysis notebooks on a study's results and export one self-contained HTML report.

    alignpt study report --study runs/demo        # rebuilds results/*.parquet, then runs/demo/report.html

The report runs every notebook of `REPORT_NOTEBOOKS` in order (paired comparisons with the verdicts, misalignment by condition, persistence
through post-training by system prompt, insertion stage, capability regression, tampering and the EM probe,
personality traits, filter audit) with
``ALIGNPT_RESULTS`` (the misalignment table), ``ALIGNPT_STUDY`` (the study directory) and ``ALIGNPT_EXPORT``
(``<study>/report_files``, where each notebook writes its tables as CSV and figures as PNG and SVG) set, and
joins them into ``analysis.ipynb`` and ``report.html`` (figures embedded, code hidden) under a header with the
study's name, directory, code commit, the commits its evaluations ran at, the date, and a table of contents.
The HTML needs no network: the notebooks carry no math, so MathJax, require.js and mermaid (which nbconvert's
template loads from a CDN) are left out. A notebook whose data is absent from the study (no CPT condition, no
capability results, no audit) shows a note instead.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

from data_prep.atomic import atomic_write_text

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
EXPORT_DIR = "report_files"
"""Beside report.html: each notebook's tables and figures, in a folder per notebook."""
CONTENTS_MARK = '<div id="alignpt-contents"></div>'
DEFAULT_NOTEBOOK = NOTEBOOKS / "misalignment_by_condition.ipynb"
REPORT_NOTEBOOKS = tuple(
    NOTEBOOKS / name
    for name in (
        "paired_comparisons.ipynb",  # first: the verdicts and the per-question differences (positive control)
        "misalignment_by_condition.ipynb",
        "persistence_through_posttraining.ipynb",
        "insertion_stage.ipynb",
        "capability_regression.ipynb",
        "tampering.ipynb",
        "personality_traits.ipynb",
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
    env = {"ALIGNPT_RESULTS": str(Path(results_table).resolve()), "ALIGNPT_STUDY": str(study.resolve()),
           "ALIGNPT_EXPORT": str((study / EXPORT_DIR).resolve())}
    with _environment(env), tempfile.TemporaryDirectory(prefix="alignpt-kernel-") as sockets:
        NotebookClient(nb, timeout=timeout_s, kernel_name="python3", config=_kernel_config(Path(sockets)),
                       resources={"metadata": {"path": str(notebook.parent)}}).execute()
    return nb


def _kernel_config(socket_dir: Path):
    """The kernel talks over IPC (Unix sockets in ``socket_dir``, an absolute path: the kernel runs in the
    notebook's folder) where the system has them: no open TCP ports, and so no ipykernel warning that the
    connection is unencrypted. TCP elsewhere (Windows)."""
    from traitlets.config import Config

    config = Config()
    if os.name == "posix":
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(socket_dir / "kernel")
    return config


def join_notebooks(notebooks: Sequence):
    """One notebook with the cells (and outputs) of each, in order."""
    import nbformat

    joined = nbformat.v4.new_notebook(metadata=dict(notebooks[0].metadata))
    for nb in notebooks:
        joined.cells.extend(nb.cells)
    return joined


def header_cell(study_dir: Path, notebooks: Sequence[Path]):
    """The report's first cell: which study, which code, when, and a contents placeholder (filled from the
    headings of the exported HTML, whose anchors nbconvert makes)."""
    import json
    from datetime import datetime, timezone

    import nbformat

    from megatron_alignpt.provenance import code_version

    study_dir = Path(study_dir)
    meta = json.loads((study_dir / "study.json").read_text()) if (study_dir / "study.json").is_file() else {}
    name = meta.get("name") or study_dir.name
    code = code_version()
    commit = code.get("git_commit") or f"package {code.get('package')} (no git checkout)"
    if code.get("git_dirty"):
        commit += " with uncommitted changes"
    lines = [
        f"# Study report: {name}",
        "",
        "| | |",
        "|---|---|",
        f"| study | `{name}`, directory `{study_dir.resolve()}` |",
        f"| report made with | commit `{commit}` |",
        f"| evaluations ran at | {_eval_commits(study_dir)} |",
        f"| generated | {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} |",
        f"| tables and figures | `{(study_dir / EXPORT_DIR).resolve()}` (CSV, PNG, SVG; one folder per notebook) |",
        f"| notebooks | {', '.join(f'`{Path(nb).stem}`' for nb in notebooks)} |",
        "",
        "## Contents",
        "",
        CONTENTS_MARK,
    ]
    return nbformat.v4.new_markdown_cell("\n".join(lines)), name


def _eval_commits(study_dir: Path) -> str:
    import pandas as pd

    table = study_dir / "results" / "misalignment.parquet"
    if not table.is_file():
        return "no results table"
    commits = pd.read_parquet(table, columns=["git_commit"])["git_commit"].fillna("unknown").value_counts()
    return ", ".join(f"`{c}` ({n} rows)" for c, n in commits.items())


def contents_html(html: str) -> str:
    """A nested list of links to the report's h1/h2 headings (the header's own excepted)."""
    import html as html_lib
    import re

    items, open_sub = [], False
    for level, anchor, inner in re.findall(r'<h([12]) id="([^"]+)">(.*?)(?:<a class="anchor-link"|</h\1>)', html, re.S):
        text = html_lib.unescape(re.sub(r"<[^>]+>", "", inner)).strip()
        if text.startswith("Study report:") or text == "Contents":
            continue
        link = f'<a href="#{anchor}">{html_lib.escape(text)}</a>'
        if level == "1":
            items.append(("</ul></li>" if open_sub else "") + f"<li>{link}<ul>")
            open_sub = True
        else:
            items.append(f"<li>{link}</li>")
    if open_sub:
        items.append("</ul></li>")
    return f'<nav class="alignpt-contents"><ul>{"".join(items)}</ul></nav>'


# nbconvert's lab template, minus what it loads from CDNs (the report must open offline): require.js,
# MathJax (the notebooks write no math) and mermaid (no diagrams).
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def export_html(notebook, title: str) -> str:
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(extra_loaders=[DictLoader({"alignpt_report.html.j2": OFFLINE_TEMPLATE})],
                            template_file="alignpt_report.html.j2")
    exporter.exclude_input = True  # readers see tables and figures; the code is in analysis.ipynb
    html, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
    if CONTENTS_MARK not in html:
        raise RuntimeError("report: the contents placeholder did not survive the HTML export")
    return html.replace(CONTENTS_MARK, contents_html(html))


def write_report(study_dir: Path, notebooks: Sequence[Path] = REPORT_NOTEBOOKS) -> Path:
    """study_dir/report.html with figures embedded, plus the executed notebooks joined in analysis.ipynb."""
    import nbformat

    study_dir = Path(study_dir)
    table = study_dir / "results" / "misalignment.parquet"
    executed = [execute_notebook(nb, table, study_dir=study_dir) for nb in notebooks]
    header, name = header_cell(study_dir, notebooks)
    joined = join_notebooks(executed)
    joined.cells.insert(0, header)
    atomic_write_text(study_dir / "analysis.ipynb", nbformat.writes(joined))
    out = study_dir / "report.html"
    atomic_write_text(out, export_html(joined, f"{name}: alignment pretraining study report"))
    return out
