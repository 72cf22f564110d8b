"""Tampering: misalignment of post-trained models while they are fine-tuned further, with the paper's statistics.

Each DPO model of a condition is fine-tuned on (benign or narrowly harmful) data over several tampering
seeds, and evaluated every K tokens. The results table holds those checkpoints as rows with
``stage == "tamper"`` and the columns ``tamper`` (name of the tampering run), ``tamper_seed`` and
``tamper_tokens`` (tokens of tampering seen; 0 = the DPO model itself).

The statistics follow the paper (section 4.1, appendix D):

- **one measurement** = one checkpoint: a (pretraining ``seed``, ``tamper_seed``) run of a condition at a
  number of tampering tokens, scoring, split and system prompt. Its prompt formats are averaged first (mean of
  ``headline_rate``, as every notebook does: the normalised rate for generated replies, the raw rate for
  letter and cloze scoring), and so are their non-match rates. Formats ask the same questions, so the
  checkpoint, not the format, is the unit: ``n_valid = n_items x (1 - non_match_rate)`` counts questions;
- **the cut**: a measurement with ``non_match_rate >= NON_MATCH_CUT`` (0.2) is dropped: its normalised rate
  rests on too few parsed replies and on which ones failed to parse;
- **its standard error** is binomial, ``sqrt(p (1 - p) / n_valid)``. At p = 0 or 1 that is 0, which would
  give one seed infinite weight: there `binomial_se` uses the continuity-corrected rate p~ = 0.5 / (n_valid + 1)
  (or 1 - p~), i.e. half an observation on the other side (Haldane-Anscombe), so such a seed weighs a lot
  but finitely. The rate itself is never corrected;
- **seeds combined** by inverse-variance weighting (`inverse_variance`): weights 1 / SE^2, rate = the weighted
  mean, SE = 1 / sqrt(sum of weights). This is a fixed-effect combination: it says how precisely the
  checkpoints measured the rate, not how much another seed would differ.

The tokens = 0 point: where a run has no ``tamper_tokens == 0`` row, the ``stage == "post"`` rows of the same
condition and pretraining seed (same scoring, split and system prompt) are that point, for every tampering
run of the model. They are one measurement per pretraining seed, not per tampering seed: every tampering seed
starts from the same DPO model, and counting it once per tampering seed would overstate its precision.

A point whose every measurement was dropped stays in `tampering_curve` with a NaN rate and its reason.

    curve = tampering_curve(pd.read_parquet("runs/s/results/misalignment.parquet"), scoring="generate")
    fig = tampering_figure(curve, paper_fig6())
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from megatron_alignpt.study.analysis import ordered

NON_MATCH_CUT = 0.2
"""A measurement with at least this share of unparsed replies is dropped (the paper's cut)."""
POINT = ["condition", "tamper", "scoring", "split", "system_prompt", "tamper_tokens"]
"""What one point of the curve holds fixed; the (seed, tamper_seed) runs vary within it."""
RUN = ["seed", "tamper_seed"]
CURVE_COLUMNS = POINT + ["rate", "se", "n_seeds", "n_dropped", "dropped_reason"]
CONDITION_ORDER = ("unfiltered", "filtered", "misalign_upsampled", "align_upsampled", "filtered_align_upsampled")
PROMPT_ORDER = ("none", "instructions", "ai_assistant", "helpful", "hhh")


def n_valid(n_items, non_match_rate):
    """Questions with a parsed answer: ``n_items x (1 - non_match_rate)`` (scalars or arrays)."""
    return n_items * (1 - non_match_rate)


def binomial_se(p, n_valid):
    """Binomial standard error of a rate ``p`` over ``n_valid`` answers; at p = 0 or 1 the SE of the
    continuity-corrected rate 0.5 / (n_valid + 1) (see the module docstring), NaN without answers."""
    p, n = np.asarray(p, dtype=float), np.asarray(n_valid, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        edge = 0.5 / (n + 1)
        p_for_se = np.where(p <= 0, edge, np.where(p >= 1, 1 - edge, p))
        se = np.where(n > 0, np.sqrt(p_for_se * (1 - p_for_se) / n), np.nan)
    return float(se) if se.ndim == 0 else se


def inverse_variance(rates: Sequence[float], ses: Sequence[float]) -> tuple[float, float]:
    """Fixed-effect combination: ``(sum(w r) / sum(w), 1 / sqrt(sum(w)))`` with ``w = 1 / se^2``.

    Entries with a NaN rate or SE are left out; none left gives (NaN, NaN). An SE of exactly 0 (possible only
    when given directly: `binomial_se` never returns it) is the limit of an infinite weight: the mean of the
    zero-SE rates, with SE 0."""
    r, s = np.asarray(rates, dtype=float), np.asarray(ses, dtype=float)
    ok = ~(np.isnan(r) | np.isnan(s))
    r, s = r[ok], s[ok]
    if not len(r):
        return math.nan, math.nan
    if (s < 0).any():
        raise ValueError(f"standard errors must be >= 0, got {s.tolist()}")
    if (s == 0).any():
        return float(r[s == 0].mean()), 0.0
    w = 1 / s**2
    return float((w * r).sum() / w.sum()), float(1 / math.sqrt(w.sum()))


# ---------------------------------------------------------------- from the results table


def _column(table: pd.DataFrame, name: str, default) -> pd.Series:
    return table[name] if name in table else pd.Series(default, index=table.index)


def _tokens_zero_from_post(tamper: pd.DataFrame, post: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The post rows that stand for tamper_tokens = 0, copied once per tampering run of the same model that lacks
    a tokens-0 row (one per pretraining seed: ``tamper_seed`` stays NaN)."""
    model = [k for k in keys if k not in ("tamper", "tamper_seed")]  # study, condition, seed, scoring, split, prompt
    runs = tamper[model + ["tamper"]].drop_duplicates()
    has_zero = tamper.loc[tamper["tamper_tokens"] == 0, model + ["tamper"]].drop_duplicates().assign(_zero=True)
    runs = runs.merge(has_zero, on=model + ["tamper"], how="left")
    runs = runs[runs["_zero"].isna()].drop(columns="_zero")
    if runs.empty or post.empty:
        return post.iloc[0:0]
    zero = post.drop(columns=["tamper"], errors="ignore").merge(runs, on=model, how="inner")
    return zero.assign(tamper_tokens=0, tamper_seed=np.nan)


def tampering_measurements(table: pd.DataFrame, scoring: Optional[str] = None) -> pd.DataFrame:
    """One row per checkpoint (condition x seed x tamper x tamper_seed x tokens x scoring x split x prompt, and
    ``study`` when present), prompt formats averaged: ``rate``, ``non_match_rate``, ``n_items``, ``n_valid``,
    ``se``, ``n_formats``, ``from_post`` (the tokens-0 point read from the post rows), ``dropped``, ``reason``.

    Needs the results table's ``stage``, ``condition``, ``seed``, ``scoring``, ``split``, ``system_prompt``,
    ``headline_rate`` (else ``misalignment_rate``), ``non_match_rate`` (absent: 0), ``n_items`` and, on the
    tamper rows, ``tamper``, ``tamper_seed``, ``tamper_tokens``."""
    keys = (["study"] if "study" in table else []) + ["condition", "seed", "tamper", "tamper_seed", "scoring", "split", "system_prompt"]
    columns = keys + ["tamper_tokens", "rate", "non_match_rate", "n_items", "n_valid", "se", "n_formats", "from_post",
                      "dropped", "reason"]
    if scoring is not None:
        table = table[table["scoring"] == scoring]
    if table.empty or "tamper_tokens" not in table or not (table["stage"] == "tamper").any():
        return pd.DataFrame(columns=columns)
    work = table.assign(
        rate=_column(table, "headline_rate", np.nan).fillna(table["misalignment_rate"]).astype(float),
        non_match_rate=_column(table, "non_match_rate", 0.0).fillna(0.0).astype(float),
        seed=_column(table, "seed", np.nan), tamper_seed=_column(table, "tamper_seed", np.nan))
    tamper = work[work["stage"] == "tamper"].assign(from_post=False)
    tamper = tamper.assign(tamper_tokens=tamper["tamper_tokens"].astype("int64"))
    zero = _tokens_zero_from_post(tamper, work[work["stage"] == "post"], keys).assign(from_post=True)
    rows = pd.concat([tamper, zero], ignore_index=True)
    group = keys + ["tamper_tokens", "from_post"]
    out = rows.groupby(group, dropna=False).agg(
        rate=("rate", "mean"), non_match_rate=("non_match_rate", "mean"), n_items=("n_items", "mean"),
        n_formats=("rate", "size")).reset_index()
    out["n_valid"] = n_valid(out["n_items"], out["non_match_rate"])
    out["se"] = binomial_se(out["rate"], out["n_valid"])
    cut = out["non_match_rate"] >= NON_MATCH_CUT - 1e-12  # 0.2 read back from a float table is still "at the cut"
    empty = out["rate"].isna() | ~(out["n_valid"] > 0)
    out["dropped"] = cut | empty
    out["reason"] = np.where(cut, [f"non-match {r:.3f} >= {NON_MATCH_CUT}" for r in out["non_match_rate"]],
                             np.where(empty, "no parsed replies", ""))
    return out[columns].sort_values(keys + ["tamper_tokens"], kind="stable").reset_index(drop=True)


def _run_label(seed, tamper_seed) -> str:
    seed_part = "seed -" if pd.isna(seed) else f"seed {int(seed) if float(seed).is_integer() else seed}"
    return seed_part + ("" if pd.isna(tamper_seed) else f"/tamper seed {int(tamper_seed)}")


def tampering_curve(table: pd.DataFrame, scoring: Optional[str] = None) -> pd.DataFrame:
    """One row per condition x tamper x scoring x split x system_prompt x tamper_tokens (and ``study`` when the
    table has it): ``rate`` and ``se`` of the seeds kept, combined by inverse variance; ``n_seeds`` (measurements
    used), ``n_dropped`` (measurements dropped by the cut) and ``dropped_reason`` (which and why, "" if none).
    A point with every measurement dropped has NaN ``rate`` and ``se``. ``scoring``: one scoring, or all."""
    checkpoints = tampering_measurements(table, scoring)
    point = (["study"] if "study" in checkpoints else []) + POINT
    if checkpoints.empty:
        return pd.DataFrame(columns=point + CURVE_COLUMNS[len(POINT):])
    rows = []
    for key, group in checkpoints.groupby(point, dropna=False, sort=True):
        kept, dropped = group[~group["dropped"]], group[group["dropped"]]
        rate, se = inverse_variance(kept["rate"], kept["se"])
        reasons = "; ".join(f"{_run_label(s, t)}: {r}" for s, t, r in zip(dropped["seed"], dropped["tamper_seed"], dropped["reason"]))
        rows.append(dict(zip(point, key), rate=rate, se=se, n_seeds=len(kept), n_dropped=len(dropped), dropped_reason=reasons))
    curve = pd.DataFrame(rows, columns=point + CURVE_COLUMNS[len(POINT):])
    return curve.astype({"n_seeds": int, "n_dropped": int, "tamper_tokens": "int64"})


# ---------------------------------------------------------------- the paper and the figure


def paper_fig6(numbers: Optional[dict] = None) -> pd.DataFrame:
    """The paper's Fig. 6 readings (approximate): ``condition, tokens, rate, low, high, reading``."""
    from megatron_alignpt.study.results import load_paper_numbers

    rows = (numbers or load_paper_numbers())["tampering"]["rows"]
    frame = pd.DataFrame(rows)
    for column in ("low", "high"):
        frame[column] = frame[column] if column in frame else np.nan
        frame[column] = frame[column].fillna(frame["rate"])
    return frame[["condition", "tokens", "rate", "low", "high", "reading"]]


def _panels(curve: pd.DataFrame) -> tuple[list, list, list[str]]:
    """Grid of panels: one column per system prompt, one row per (study,) tamper run, scoring and split."""
    row_keys = [c for c in ("study", "tamper", "scoring", "split") if c in curve]
    rows = list(curve[row_keys].drop_duplicates().itertuples(index=False, name=None)) if len(curve) else []
    prompts = ordered(curve["system_prompt"], PROMPT_ORDER) if len(curve) else []
    return rows or [()], prompts or [None], row_keys


def tampering_figure(curve: pd.DataFrame, paper: Optional[pd.DataFrame] = None):
    """Misalignment rate against tampering tokens: one panel per system prompt (columns) and per (study,) tamper
    run, scoring and split (rows), one line per condition with a +-1 SE band; a point whose every seed was dropped
    breaks the line and is an open marker at the foot of the panel. ``paper`` (`paper_fig6`): its readings as dashed lines and diamonds (range bars where
    the paper gives a range) in every panel, since the paper names neither prompt nor split for the figure.
    The x axis is symmetric-log: linear up to the first checkpoint, so tokens = 0 stays on it."""
    import matplotlib.pyplot as plt

    rows, prompts, row_keys = _panels(curve)
    conditions = ordered(list(curve["condition"]) + (list(paper["condition"]) if paper is not None else []), CONDITION_ORDER)
    colours = {c: f"C{i % 10}" for i, c in enumerate(conditions)}
    fig, axes = plt.subplots(len(rows), len(prompts), figsize=(5.2 * len(prompts), 3.8 * len(rows)),
                             squeeze=False, sharey=True)
    positive = [t for t in list(curve["tamper_tokens"]) + (list(paper["tokens"]) if paper is not None else []) if t > 0]
    linthresh = min(positive) if positive else 1.0
    ticks = [0] + [10.0**k for k in range(math.ceil(math.log10(linthresh)), math.ceil(math.log10(max(positive, default=10))) + 1)]
    for i, row in enumerate(rows):
        for j, prompt in enumerate(prompts):
            ax = axes[i][j]
            sub = curve
            for key, value in zip(row_keys, row):
                sub = sub[sub[key] == value]
            if prompt is not None:
                sub = sub[sub["system_prompt"] == prompt]
            _draw_study(ax, sub, colours)
            if paper is not None:
                _draw_paper(ax, paper, colours)
            ax.set_xscale("symlog", linthresh=linthresh, linscale=0.5)
            ax.set_xticks(ticks)
            ax.set_ylim(0, 1)
            ax.axhline(0.5, ls=":", color="grey", lw=1)
            title = " | ".join([str(v) for v in row] + ([f"system prompt: {prompt}"] if prompt is not None else []))
            ax.set_title(title or "no tampering rows", fontsize=9)
            ax.set_xlabel("tampering tokens")
            if j == 0:
                ax.set_ylabel("misalignment rate")
    handles = [plt.Line2D([], [], color=colours[c], marker="o", label=c) for c in conditions]
    if curve["rate"].isna().any():
        handles.append(plt.Line2D([], [], color="black", ls="none", marker="o", mfc="none", label="every seed dropped"))
    if paper is not None:
        handles.append(plt.Line2D([], [], color="black", ls="--", marker="D", label="paper Fig. 6 (approximate)"))
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 6), bbox_to_anchor=(0.5, 1.0 + 0.06 / len(rows)))
    fig.tight_layout()
    return fig


def _draw_study(ax, sub: pd.DataFrame, colours: dict) -> None:
    for condition, line in sub.groupby("condition", sort=False):  # a panel holds one study: one line per condition
        line = line.sort_values("tamper_tokens")
        colour = colours[condition]
        # NaN rates (every seed dropped) break the line and the band: a gap, not an interpolation
        x, y, se = line["tamper_tokens"].to_numpy(float), line["rate"].to_numpy(float), line["se"].to_numpy(float)
        ax.plot(x, y, "o-", color=colour, ms=4, lw=1.5)
        ax.fill_between(x, y - se, y + se, color=colour, alpha=0.2, lw=0)
        gone = line[line["rate"].isna()]
        ax.plot(gone["tamper_tokens"].to_numpy(float), np.full(len(gone), 0.02), "o", mfc="none", color=colour, ms=6)


def _draw_paper(ax, paper: pd.DataFrame, colours: dict) -> None:
    for condition, points in paper.groupby("condition", sort=False):
        points = points.sort_values("tokens")
        colour = colours[condition]
        x, y = points["tokens"].to_numpy(float), points["rate"].to_numpy(float)
        ax.plot(x, y, "--", color=colour, lw=1, alpha=0.8)
        ax.errorbar(x, y, yerr=[y - points["low"].to_numpy(float), points["high"].to_numpy(float) - y],
                    fmt="D", color=colour, mec="black", ms=5, capsize=3, lw=1)
