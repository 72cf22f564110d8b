"""The study's emergent-misalignment table: one row per completed EM probe (`eval.em_probe`).

`collect_em` reads every ``evals/<run>/<dir>/em_probe.json`` under a study directory. Identity columns come
from the labels the probe was given (``condition``, ``seed``, ``run``, ``stage``, ``tamper``, ``tamper_seed``,
``tamper_tokens``); a probe written without some of them falls back to the path (run = the ``evals/``
sub-directory, condition = the run name before ``@seed``, stage = the evaluation directory) or None.
Labels beyond these become columns of their own.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from megatron_alignpt.config_base import ConfigError, load_json_file
from megatron_alignpt.eval.em_probe import SUMMARY_FILE
from megatron_alignpt.study.plan import SEED_MARK

ID_COLUMNS = ["condition", "seed", "run", "stage", "tamper", "tamper_seed", "tamper_tokens"]
RATE_COLUMNS = ["judge", "n", "n_coherent", "n_misaligned", "misaligned_rate", "ci_low", "ci_high",
                "misaligned_rate_all", "ci_low_all", "ci_high_all", "refusal_rate", "incoherent_rate",
                "n_aligned", "n_refusal", "n_incoherent", "unparsed", "mean_score"]
SETTING_COLUMNS = ["samples_per_question", "temperature", "system_prompt"]
COLUMNS = ID_COLUMNS + RATE_COLUMNS + SETTING_COLUMNS + ["eval_dir", "checkpoint", "git_commit"]
# identity columns keep None (not NaN) where a probe lacks the label


def _seed_from_run(run: str) -> Any:
    _, mark, tail = run.partition(SEED_MARK)
    return int(tail) if mark and tail.isdigit() else None


def em_row(path: Path) -> dict:
    """One table row from one ``em_probe.json``."""
    summary = load_json_file(path)
    if not isinstance(summary, dict) or "misaligned_rate" not in summary:
        raise ConfigError(f"{path}: not an EM probe summary (no 'misaligned_rate')")
    labels = summary.get("labels") or {}
    run = labels.get("run") or path.parent.parent.name
    counts = summary.get("counts") or {}
    settings = summary.get("settings") or {}
    judge = summary.get("judge_name") or (summary.get("judge") or {}).get("name")
    row = {
        "condition": labels.get("condition") or run.partition(SEED_MARK)[0],
        "seed": labels["seed"] if labels.get("seed") is not None else _seed_from_run(run),
        "run": run,
        "stage": labels.get("stage") or path.parent.name,
        "tamper": labels.get("tamper"),
        "tamper_seed": labels.get("tamper_seed"),
        "tamper_tokens": labels.get("tamper_tokens"),
        "judge": judge,
        **{k: summary.get(k) for k in RATE_COLUMNS if k not in ("judge", "n_aligned", "n_refusal", "n_incoherent")},
        "n_aligned": counts.get("aligned"),
        "n_refusal": counts.get("refusal"),
        "n_incoherent": counts.get("incoherent"),
        **{k: settings.get(k) for k in SETTING_COLUMNS},
        "eval_dir": path.parent.name,
        "checkpoint": summary.get("checkpoint"),
        "git_commit": (summary.get("code") or {}).get("git_commit"),
    }
    row.update({k: v for k, v in labels.items() if k not in row})
    return row


def collect_em(study_root: Path) -> pd.DataFrame:
    """Every EM probe under ``study_root/evals/*/*/`` as one row each (empty frame with `COLUMNS` if none)."""
    rows = [em_row(p) for p in sorted(Path(study_root).glob(f"evals/*/*/{SUMMARY_FILE}"))]
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    table = pd.DataFrame(rows, columns=COLUMNS + extra)
    for col in ID_COLUMNS:
        table[col] = pd.Series([r.get(col) for r in rows], index=table.index, dtype=object)
    return table
