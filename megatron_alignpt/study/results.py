"""The study's results tables, which analysts and notebooks read (never the run directories themselves).

``results/misalignment.parquet`` (with a CSV twin): one row per condition x seed x stage x scoring x split x
format x system prompt, from every completed ``evals/<condition>/<dir>/summary.json`` + ``items.jsonl``:

- ``misalignment_rate``: share of items answered with the misaligned option (for generate scoring a
  reply with no parseable letter counts as not misaligned);
- ``non_match_rate`` and ``normalized_misalignment_rate`` (= misaligned / matched): generate scoring
  (chat models); for logprob scoring 0 and the raw rate;
- ``headline_rate``: the rate the paper reports for that scoring: the normalised rate for generate
  scoring, the raw rate for logprob scoring;
- ``mean_p_misaligned`` (logprob scoring only), ``share_A`` (position bias, among answered items), ``n_items``;
- ``mean_margin`` (logprob and cloze scoring): the misaligned option's score minus the aligned one's, mean over
  items (nats for letters, nats per character for cloze); ``misalignment_rate_sum`` / ``_per_token`` /
  ``_per_char``: cloze scoring's rate under each length normalisation (``per_char`` is its headline);
- ``seed``: the training seed of the run (a study with ``seeds`` trains each condition once per seed);
- the condition's design from ``study.json``: ``base`` (unfiltered / filtered), ``synthetic``
  (aligned / misaligned / none), ``insertion`` (e2e / mid / cpt);
- provenance: ``checkpoint`` and ``git_commit`` of the evaluation.

``results/paired.parquet``: every pair of conditions compared item by item (`study.paired`): per stage,
scoring, split and system prompt, the mean difference of per-item margins (generated replies: of per-item
misaligned shares) with its paired bootstrap CI, per seed and pooled over seeds. ``results/verdicts.parquet``:
the orderings the paper predicts (aligned documents below misaligned ones, ...) with ``outcome`` yes / no,
the reverse / not shown and a one-line ``line``; the report opens with them.

Tampering checkpoints (stage ``tamper``, `study.config.TamperPlan`) add rows with ``tamper`` (the run's name),
``tamper_seed`` and ``tamper_tokens`` (tokens of tampering seen; empty on every other row); they stay out of the
paired tables. ``results/tampering.parquet`` combines them as the paper does (`study.tampering`: n_valid, the
non-match cut at 0.2, binomial SE, inverse-variance over seeds), ``results/em_probe.parquet`` holds the
emergent-misalignment probe's judged rates and ``results/personality.parquet`` the per-trait rates (each when present).

``results/capabilities.parquet`` (when any ``evals/<condition>/<dir>/capabilities.json`` exists, as
written by ``alignpt eval capabilities`` / `eval.capabilities.run_capabilities`): one row per condition
x stage x task x metric with ``value``, ``stderr``, ``n_shot``, ``primary`` (the metric the notebooks
compare with the paper) and provenance.

The paper's published numbers (SPEC section 2) are in ``megatron_alignpt/resources/paper_numbers.json``
(`load_paper_numbers`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pandas as pd

from data_prep.atomic import atomic_path
from megatron_alignpt.study.plan import EVAL_DIR_STAGES

TAMPER_COLUMNS = ["tamper", "tamper_seed", "tamper_tokens"]
GROUP = ["condition", "seed", "stage", "scoring", "split", "format", "wording", "order", "system_prompt"] + TAMPER_COLUMNS
CLOZE_NORMALISATIONS = ("sum", "per_token", "per_char")
CONDITION_COLUMNS = ["base", "synthetic", "insertion"]
PAPER_NUMBERS = Path(__file__).resolve().parents[1] / "resources" / "paper_numbers.json"
# lm-eval metric the paper's capability table is compared with, per task (first one present wins).
PRIMARY_METRICS: dict[str, tuple[str, ...]] = {
    "arc_easy": ("acc,none", "acc_norm,none"),
    "piqa": ("acc,none", "acc_norm,none"),
    "mmlu": ("acc,none",),
    "gsm8k": ("exact_match,strict-match", "exact_match,flexible-extract"),
    "ifeval": ("prompt_level_strict_acc,none", "inst_level_strict_acc,none"),
    "cute": ("exact_match,none", "acc,none"),
    "popqa": ("exact_match,none", "acc,none"),
}


def load_paper_numbers(path: Path = PAPER_NUMBERS) -> dict:
    return json.loads(Path(path).read_text())


def _scoring_of(items: pd.DataFrame, summary: dict) -> str:
    if "scoring" in items and items["scoring"].notna().all():
        return str(items["scoring"].iloc[0])
    if "scoring_method" in summary:
        return str(summary["scoring_method"])
    if "margin_per_char" in items:
        return "cloze"
    return "generate" if "matched" in items or "generate" in str(summary.get("scoring", "")) else "logprob"


def _dir_stage(eval_dir: Path) -> str:
    """The results-table stage of an evaluation directory, for rows written before they carried labels
    (a directory the plan does not name keeps its name)."""
    return EVAL_DIR_STAGES.get(eval_dir.name, eval_dir.name)


def load_item_rows(study_dir: Path) -> pd.DataFrame:
    """Every completed evaluation's item rows, labelled (labels missing from older runs come from the path)."""
    frames = []
    # evals/<run>/<scoring dir>/summary.json; a tampering run's checkpoints one level deeper (tokens_<N>/)
    for summary_path in sorted(Path(study_dir).glob("evals/*/*/summary.json")) + sorted(Path(study_dir).glob("evals/*/*/tokens_*/summary.json")):
        summary = json.loads(summary_path.read_text())
        items = pd.read_json(summary_path.parent / "items.jsonl", lines=True)
        if items.empty:
            continue
        if "condition" not in items:
            items["condition"] = summary_path.parent.parent.name
        if "stage" not in items:
            items["stage"] = _dir_stage(summary_path.parent)
        if "seed" not in items:
            items["seed"] = pd.NA  # evaluated before studies recorded seeds
        for column in TAMPER_COLUMNS:  # only tampering checkpoints carry them
            if column not in items:
                items[column] = pd.NA
        items["scoring"] = _scoring_of(items, summary)
        items["checkpoint"] = summary.get("checkpoint")
        items["git_commit"] = summary.get("code", {}).get("git_commit")
        frames.append(items)
    if not frames:
        raise FileNotFoundError(f"{study_dir}: no completed evaluations (evals/*/*/summary.json)")
    return pd.concat(frames, ignore_index=True)


def aggregate(items: pd.DataFrame) -> pd.DataFrame:
    keys = GROUP + ["checkpoint", "git_commit"]
    matched = items["matched"].fillna(True).astype(bool) if "matched" in items else pd.Series(True, index=items.index)
    mis = items["picked_misaligned"].fillna(False).astype(bool)
    work = items[keys + ["question_id"]].assign(
        _rows=1, _matched=matched.astype(int), _mis=mis.astype(int), _mis_matched=(mis & matched).astype(int),
        _a_matched=((items["picked"] == "A") & matched).astype(int),
        _p=items["p_misaligned"] if "p_misaligned" in items else float("nan"),
        _margin=items["margin"] if "margin" in items else float("nan"),
        **{f"_rate_{n}": items[f"picked_misaligned_{n}"].astype(float) if f"picked_misaligned_{n}" in items else float("nan")
           for n in CLOZE_NORMALISATIONS},
    )
    g = work.groupby(keys, dropna=False)
    sums = g[["_rows", "_matched", "_mis", "_mis_matched", "_a_matched"]].sum()
    table = pd.DataFrame({
        "misalignment_rate": sums["_mis"] / sums["_rows"],
        "non_match_rate": 1.0 - sums["_matched"] / sums["_rows"],
        "normalized_misalignment_rate": (sums["_mis_matched"] / sums["_matched"]).where(sums["_matched"] > 0),
        "mean_p_misaligned": g["_p"].mean(),
        "mean_margin": g["_margin"].mean(),
        **{f"misalignment_rate_{n}": g[f"_rate_{n}"].mean() for n in CLOZE_NORMALISATIONS},
        "share_A": (sums["_a_matched"] / sums["_matched"]).where(sums["_matched"] > 0),
        "n_items": g["question_id"].nunique().astype(int),
    }).reset_index()
    table["headline_rate"] = table["normalized_misalignment_rate"].where(table["scoring"] == "generate", table["misalignment_rate"])
    return table.sort_values(GROUP).reset_index(drop=True)


def condition_design(study_dir: Path) -> pd.DataFrame:
    """name, base, synthetic, insertion of each condition from study.json (empty if absent)."""
    path = Path(study_dir) / "study.json"
    if not path.is_file():
        return pd.DataFrame(columns=["condition", *CONDITION_COLUMNS])
    rows = [{"condition": c["name"], "base": c.get("base", "unfiltered"), "synthetic": c.get("synthetic") or "none",
             "insertion": c.get("insertion", "e2e")} for c in json.loads(path.read_text()).get("conditions", [])]
    return pd.DataFrame(rows, columns=["condition", *CONDITION_COLUMNS])


def misalignment_table(study_dir: Path) -> pd.DataFrame:
    table = aggregate(load_item_rows(study_dir))
    table = table.merge(condition_design(study_dir), on="condition", how="left")
    for col, default in (("base", "unfiltered"), ("synthetic", "none"), ("insertion", "e2e")):
        table[col] = table[col].fillna(default)
    return table


# ---------------------------------------------------------------- capabilities


def _primary_key(task: str, metrics: dict) -> Optional[str]:
    for key in PRIMARY_METRICS.get(task, ()):
        if key in metrics:
            return key
    return next((k for k, v in metrics.items() if isinstance(v, (int, float)) and "stderr" not in k and k != "alias"), None)


def load_capability_rows(study_dir: Path) -> pd.DataFrame:
    """Long table of every ``evals/*/*/capabilities.json`` (empty frame with the columns if none)."""
    columns = ["condition", "seed", "stage", "task", "metric", "filter", "value", "stderr", "n_shot", "primary", "checkpoint", "git_commit"]
    rows = []
    for path in sorted(Path(study_dir).glob("evals/*/*/capabilities.json")):
        result = json.loads(path.read_text())
        labels = result.get("labels") or {}
        condition = labels.get("condition", path.parent.parent.name)
        stage = labels.get("stage", _dir_stage(path.parent))
        for task, metrics in result.get("results", {}).items():
            primary = _primary_key(task, metrics)
            for key, value in metrics.items():
                if not isinstance(value, (int, float)) or isinstance(value, bool) or "_stderr" in key or key == "alias":
                    continue
                metric, _, filt = key.partition(",")
                stderr = metrics.get(f"{metric}_stderr,{filt}" if filt else f"{metric}_stderr")
                rows.append({
                    "condition": condition, "seed": labels.get("seed"), "stage": stage, "task": task, "metric": metric, "filter": filt or "none",
                    "value": float(value), "stderr": float(stderr) if isinstance(stderr, (int, float)) else float("nan"),
                    "n_shot": result.get("n-shot", {}).get(task), "primary": key == primary,
                    "checkpoint": result.get("checkpoint"), "git_commit": result.get("code", {}).get("git_commit"),
                })
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- data-side results


def load_filter_stats(study_dir: Path) -> pd.DataFrame:
    """One row per filtered corpus (``data/filtered/<corpus>/stats.json``): documents, removed, flag rate, per category."""
    rows = []
    for path in sorted(Path(study_dir).glob("data/filtered/*/stats.json")):
        stats = json.loads(path.read_text())
        row = {"corpus": path.parent.name, "documents_in": stats.get("documents_in"), "kept": stats.get("kept"),
               "removed": stats.get("removed"), "flag_rate": stats.get("flag_rate")}
        row.update({f"removed:{k}": v for k, v in sorted(stats.get("removed_per_category", {}).items())})
        rows.append(row)
    return pd.DataFrame(rows)


def _write_parquet_and_csv(table: pd.DataFrame, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(out.with_suffix(".csv")) as tmp:
        table.to_csv(tmp, index=False)
    return out


def paired_tables(study_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every pair of conditions, the paper's predicted orderings with verdicts), both from the item rows
    (`study.paired`), margins for letter and cloze scoring, misaligned shares for generated replies."""
    from megatron_alignpt.study.paired import pairwise_table, verdicts

    items = load_item_rows(study_dir)
    items = items[items["tamper"].isna()]  # tampering checkpoints: the tampering tables, per tokens seen
    design = condition_design(study_dir)
    order = list(design["condition"]) if not design.empty else None
    pairs, lines = [], []
    for value, rows in (("margin", items[items["scoring"] != "generate"]), ("rate", items[items["scoring"] == "generate"])):
        if rows.empty:
            continue
        pairs.append(pairwise_table(rows, order, value))
        if not design.empty:
            lines.append(verdicts(rows, design, value))
    return (pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame(),
            pd.concat(lines, ignore_index=True) if lines else pd.DataFrame())


def write_results_table(study_dir: Path) -> Path:
    """results/misalignment.parquet (+ .csv), results/paired.parquet and results/verdicts.parquet (paired
    comparisons of conditions), and results/capabilities.parquet when capability results exist."""
    study_dir = Path(study_dir)
    out = _write_parquet_and_csv(misalignment_table(study_dir), study_dir / "results" / "misalignment.parquet")
    pairs, verdict_rows = paired_tables(study_dir)
    for name, table in (("paired", pairs), ("verdicts", verdict_rows)):
        if not table.empty:
            _write_parquet_and_csv(table, study_dir / "results" / f"{name}.parquet")
    capabilities = load_capability_rows(study_dir)
    if not capabilities.empty:
        _write_parquet_and_csv(capabilities, study_dir / "results" / "capabilities.parquet")
    for name, table in robustness_tables(study_dir, pd.read_parquet(out)).items():
        if not table.empty:
            _write_parquet_and_csv(table, study_dir / "results" / f"{name}.parquet")
    return out


def robustness_tables(study_dir: Path, misalignment: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``tampering`` (misalignment per tokens of tampering, seeds combined: `study.tampering.tampering_curve`),
    ``em_probe`` (`study.em_results.collect_em`) and ``personality`` (`study.personality_results.collect_personality`)."""
    from megatron_alignpt.study.em_results import collect_em
    from megatron_alignpt.study.personality_results import collect_personality
    from megatron_alignpt.study.tampering import tampering_curve

    return {"tampering": tampering_curve(misalignment), "em_probe": collect_em(study_dir),
            "personality": collect_personality(study_dir)}


def capability_gaps(study_dir: Path) -> pd.DataFrame:
    """Capability tasks that did not run, and why: every task of an ``unavailable.json`` (the study's
    capability step could run none) and every ``skipped`` task of a ``capabilities.json``."""
    rows = []
    for path in sorted(Path(study_dir).glob("evals/*/*/unavailable.json")) + sorted(Path(study_dir).glob("evals/*/*/capabilities.json")):
        data = json.loads(path.read_text())
        reasons = data.get("reasons") if path.name == "unavailable.json" else data.get("skipped")
        condition = (data.get("labels") or {}).get("condition", path.parent.parent.name)
        stage = (data.get("labels") or {}).get("stage", _dir_stage(path.parent))
        rows += [{"condition": condition, "stage": stage, "task": task, "reason": str(why), "file": str(path)}
                 for task, why in (reasons or {}).items()]
    return pd.DataFrame(rows, columns=["condition", "stage", "task", "reason", "file"])
