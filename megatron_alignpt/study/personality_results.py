"""The personality evaluations of a study as one table, and its figure.

`collect_personality` reads every ``evals/<run>/<dir>/personality.json`` (written by
`eval.personality.evaluate_personality`) into one row per evaluation x trait: the run's labels (``condition``,
``seed``, ``run``, ``stage`` and any other label the summary carries), ``syntax_group`` (base / chat / mixed),
``trait``, ``rate`` (share of high-trait choices over items and syntaxes), ``se`` (binomial, n = items),
``n`` (items), ``n_rows``, ``mean_p_high``, ``per_syntax`` (a JSON object of per-syntax rates), and provenance
(``checkpoint``, ``eval_dir``). A summary written without labels is labelled from its path: run = condition =
the ``evals/<run>`` folder, stage = the folder name's first part (``base_personality`` -> base).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from megatron_alignpt.config_base import ConfigError, load_json_file

SUMMARY_GLOB = "evals/*/*/personality.json"
COLUMNS = ["condition", "seed", "run", "stage", "syntax_group", "trait", "rate", "se", "n", "n_rows", "mean_p_high",
           "per_syntax", "checkpoint", "eval_dir"]
TRAIT_ORDER = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism",
               "machiavellianism", "narcissism", "psychopathy")
"""`data_prep.personality.TRAITS`, repeated so that reading results needs no data-prep import."""


def _path_labels(path: Path) -> dict:
    eval_dir = path.parent
    first = eval_dir.name.split("_")[0]
    return {"condition": eval_dir.parent.name, "seed": None, "run": eval_dir.parent.name,
            "stage": first if first in ("base", "post") else eval_dir.name}


def _rows_of(path: Path) -> list[dict]:
    summary = load_json_file(path)
    traits = summary.get("traits") if isinstance(summary, dict) else None
    if not isinstance(traits, dict):
        raise ConfigError(f"{path}: field 'traits': missing or not an object (not a personality summary?)")
    labels = {**_path_labels(path), **(summary.get("labels") or {})}
    common = {**labels, "syntax_group": summary.get("syntax_group", "base"), "checkpoint": summary.get("checkpoint"),
              "eval_dir": str(path.parent)}
    rows = []
    for trait, result in traits.items():
        missing = [k for k in ("rate", "se", "n") if not isinstance(result, dict) or k not in result]
        if missing:
            raise ConfigError(f"{path}: field 'traits.{trait}.{missing[0]}': missing")
        rows.append({**common, "trait": trait, "rate": result["rate"], "se": result["se"], "n": result["n"],
                     "n_rows": result.get("n_rows"), "mean_p_high": result.get("mean_p_high"),
                     "per_syntax": json.dumps(result.get("per_syntax", {}), sort_keys=True)})
    return rows


def collect_personality(study_root: Path) -> pd.DataFrame:
    """One row per personality evaluation x trait under ``study_root`` (see the module docstring); a study
    without any (or a missing directory) gives an empty frame with `COLUMNS`."""
    rows = [row for path in sorted(Path(study_root).glob(SUMMARY_GLOB)) for row in _rows_of(path)]
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.DataFrame(rows)
    extra = sorted(c for c in frame.columns if c not in COLUMNS)
    order = {t: i for i, t in enumerate(TRAIT_ORDER)}
    frame = frame[COLUMNS + extra]
    return frame.sort_values(["stage", "condition", "run", "syntax_group", "trait"],
                             key=lambda c: c.map(order) if c.name == "trait" else c.astype(str)).reset_index(drop=True)


def pooled_rates(df: pd.DataFrame) -> pd.DataFrame:
    """Rate per condition x stage x syntax group x trait, averaged over runs (seeds) with equal weight; its
    ``se`` is that of a mean of independent estimates, sqrt(sum se^2) / k, and ``runs`` is k."""
    keys = ["condition", "stage", "syntax_group", "trait"]
    if df.empty:
        return pd.DataFrame(columns=keys + ["rate", "se", "runs"])
    grouped = df.groupby(keys, dropna=False)
    out = grouped.agg(rate=("rate", "mean"), se=("se", lambda s: float((s.astype(float) ** 2).sum()) ** 0.5 / len(s)),
                      runs=("rate", "size")).reset_index()
    return out[keys + ["rate", "se", "runs"]]


def personality_figure(df: pd.DataFrame, title: str = ""):
    """Bars of the high-trait rate per trait, one colour per condition, one panel per stage (and syntax
    group), error bars = `pooled_rates`' se. An empty frame gives a figure that says so."""
    import matplotlib.pyplot as plt

    rates = pooled_rates(df)
    if rates.empty:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "no personality evaluations", ha="center", va="center")
        ax.set_axis_off()
        return fig
    panels = list(dict.fromkeys(zip(rates["stage"], rates["syntax_group"])))
    conditions = list(dict.fromkeys(rates["condition"]))
    traits = [t for t in TRAIT_ORDER if t in set(rates["trait"])] + sorted(set(rates["trait"]) - set(TRAIT_ORDER))
    width = 0.8 / len(conditions)
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, 1.1 * len(traits) * max(1, len(conditions) / 3)), 3.6 * len(panels)),
                             squeeze=False, sharey=True)
    for ax, (stage, group) in zip(axes[:, 0], panels):
        panel = rates[(rates["stage"] == stage) & (rates["syntax_group"] == group)].set_index(["condition", "trait"])
        for k, condition in enumerate(conditions):
            xs, ys, es = [], [], []
            for x, trait in enumerate(traits):
                if (condition, trait) in panel.index:
                    xs.append(x + (k - (len(conditions) - 1) / 2) * width)
                    ys.append(panel.loc[(condition, trait), "rate"])
                    es.append(panel.loc[(condition, trait), "se"])
            if xs:
                ax.bar(xs, ys, width, yerr=es, capsize=2, label=condition, color=f"C{k}")
        ax.axhline(0.5, color="black", lw=0.8, ls="--")
        ax.set_xticks(range(len(traits)), traits, rotation=20)
        ax.set_ylim(0, 1)
        ax.set_ylabel("high-trait rate")
        ax.set_title(f"{stage} models ({group} syntaxes)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title or "TRAIT-style personality: rate of choosing a high-trait option (± se)", y=1.0)
    fig.tight_layout()
    return fig
