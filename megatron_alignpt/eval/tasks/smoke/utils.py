"""Local data for the `alignpt_smoke` tasks: one tiny task per benchmark family of the paper's capability
set, run with no network (tests, and a check of an install before a cluster run). Each reads its rows from
`data/<name>.jsonl` beside this file, in the column layout of the real dataset, so the real task settings
(prompts, filters, scoring) run on them; the `split` column names the split a row belongs to.
"""
from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def _splits(name: str) -> "datasets.DatasetDict":  # noqa: F821
    import datasets

    rows = [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines() if line.strip()]
    by_split: dict[str, list[dict]] = {}
    for row in rows:
        by_split.setdefault(row.pop("split"), []).append(row)
    return datasets.DatasetDict({split: datasets.Dataset.from_list(items) for split, items in by_split.items()})


def arc(**_unused):
    return _splits("arc")


def gsm8k(**_unused):
    return _splits("gsm8k")


def ifeval(**_unused):
    return _splits("ifeval")


def cute(**_unused):
    return _splits("cute")


def popqa(**_unused):
    return _splits("popqa")


def _ifeval_utils():
    """lm-eval's IFEval scoring. Importing it tries to download NLTK's punkt_tab when absent; the smoke
    instructions never split sentences, so offline that attempt is skipped instead of failing slowly."""
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab")
        from lm_eval.tasks.ifeval import utils
    except LookupError:
        download, nltk.download = nltk.download, (lambda *args, **kwargs: False)
        try:
            from lm_eval.tasks.ifeval import utils
        finally:
            nltk.download = download
    return utils


def ifeval_process_results(doc, results):
    return _ifeval_utils().process_results(doc, results)


def agg_inst_level_acc(items):
    return _ifeval_utils().agg_inst_level_acc(items)
