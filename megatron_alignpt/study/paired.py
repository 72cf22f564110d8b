"""Paired comparisons of conditions on the same eval items: per-item margins, paired bootstrap CIs, verdicts.

Every condition is scored on the same questions, so conditions are compared item by item rather than by
their rates alone:

- **per-item value** of a run (condition x seed) at a stage, scoring, split and system prompt: the mean over
  formats of the row ``margin`` (the misaligned option's score minus the aligned one's; > 0 leans misaligned;
  nats for letters, nats per character for cloze), or with ``value="rate"`` the share of formats answered
  with the misaligned option. Averaging the formats within the item (both answer orders) cancels position
  bias and makes the item the unit of resampling;
- **paired difference** of conditions a and b: d_i = value_i(a) - value_i(b) over the items both were
  scored on. The estimate is the mean of d_i; its CI is a percentile bootstrap over items (items drawn with
  replacement, `N_BOOT` resamples, seeded so a rerun gives the same interval). It answers: on questions
  like these, does a lean less (d < 0) or more (d > 0) toward the misaligned option than b, for these
  trained models? The t statistic (mean / SE) and dz (mean / SD) are given beside it;
- **across seeds**, when a study trains each condition with several seeds: each seed's own paired
  difference (scope ``seed``), and scope ``pooled``: d_i averaged over the seeds, bootstrapped over items
  (item sampling only), with the per-seed means' spread and a t interval over seeds (df = seeds - 1),
  which is what says whether the effect survives another training run (wide with two seeds, by design).

``verdicts`` turns the comparisons the paper predicts (from each condition's design: aligned documents
below misaligned ones, aligned below none, none below misaligned, filtered below unfiltered) into one line
each: "align_upsampled < misalign_upsampled on articles: yes, d = -0.031, 95% CI [-0.040, -0.022]", where
"yes" means the CI lies below zero, "no, the reverse" above it, "not shown" that it includes zero.

    items = load_item_rows(study)            # study.results
    table = pairwise_table(items)            # every pair of conditions, per seed and pooled
    lines = verdicts(items, condition_design(study))
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Optional, Sequence

import numpy as np
import pandas as pd

N_BOOT = 10_000
LEVEL = 0.95
BOOT_SEED = 0
KEYS = ["stage", "scoring", "split", "system_prompt"]
"""What a comparison holds fixed; conditions (and seeds) vary within it."""
UNITS = {"logprob": "nats", "cloze": "nats/char"}
HEADLINE_SCORINGS = ("cloze", "logprob", "generate")
"""Which scoring a report leads with, first present first: cloze where a study scored option texts (small
models, which answer one letter whatever the question), else letters, else generated replies."""


def item_values(items: pd.DataFrame, value: str = "margin") -> pd.DataFrame:
    """Per item, the mean over formats: columns ``condition, seed, *KEYS, question_id, value``.

    ``value``: ``margin`` (rows without one, i.e. generated replies, are left out) or ``rate`` (share of
    formats answered with the misaligned option)."""
    if value not in ("margin", "rate"):
        raise ValueError(f"value must be 'margin' or 'rate', got {value!r}")
    work = items.copy()
    if "seed" not in work:
        work["seed"] = pd.NA
    if value == "margin":
        if "margin" not in work:
            return pd.DataFrame(columns=["condition", "seed", *KEYS, "question_id", "value"])
        work = work[work["margin"].notna()].assign(value=lambda f: f["margin"].astype(float))
    else:
        work = work.assign(value=work["picked_misaligned"].fillna(False).astype(float))
    keys = ["condition", "seed", *KEYS, "question_id"]
    return work.groupby(keys, dropna=False, sort=True)["value"].mean().reset_index()


def bootstrap_ci(diffs: np.ndarray, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (items drawn with replacement)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(n_boot, len(diffs)))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


@dataclass
class PairedDifference:
    """Mean of per-item differences a - b with its bootstrap CI (over items)."""

    mean: float
    ci_low: float
    ci_high: float
    n_items: int
    sd: float
    t: Optional[float]
    """mean / (sd / sqrt(n)); None when every difference is the same."""
    dz: Optional[float]
    """mean / sd, the standardised paired effect; None when sd is 0."""


def paired_difference(diffs: Sequence[float], n_boot: int = N_BOOT, level: float = LEVEL, seed: int = BOOT_SEED) -> PairedDifference:
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0:
        raise ValueError("no items in common: nothing to compare")
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if d.size > 1 else 0.0
    if sd <= 1e-12 * max(1.0, float(np.abs(d).max())):  # equal differences, up to rounding
        sd = 0.0
    low, high = bootstrap_ci(d, n_boot, level, seed)
    return PairedDifference(mean, low, high, int(d.size), sd,
                            mean / (sd / math.sqrt(d.size)) if sd > 0 else None, mean / sd if sd > 0 else None)


def seed_interval(seed_means: Sequence[float], level: float = LEVEL) -> dict:
    """Spread of per-seed mean differences: their mean, SD and a t interval over seeds (None with one seed)."""
    from scipy import stats

    m = np.asarray(seed_means, dtype=np.float64)
    out = {"n_seeds": int(m.size), "seed_mean": float(m.mean()), "seed_sd": None, "seed_ci_low": None, "seed_ci_high": None}
    if m.size > 1:
        sd = float(m.std(ddof=1))
        half = float(stats.t.ppf(1 - (1 - level) / 2, m.size - 1)) * sd / math.sqrt(m.size)
        out.update(seed_sd=sd, seed_ci_low=out["seed_mean"] - half, seed_ci_high=out["seed_mean"] + half)
    return out


def _seeds(frame: pd.DataFrame) -> list:
    return sorted(frame["seed"].dropna().unique().tolist()) or [pd.NA]


def _per_item(frame: pd.DataFrame, condition: str, seed) -> pd.Series:
    rows = frame[(frame["condition"] == condition) & ((frame["seed"] == seed) if not pd.isna(seed) else frame["seed"].isna())]
    return rows.set_index("question_id")["value"]


def compare(frame: pd.DataFrame, a: str, b: str, n_boot: int = N_BOOT, level: float = LEVEL) -> list[dict]:
    """Rows comparing condition a with b (a - b) within one comparison group of `item_values`: one per seed
    both were trained with, and, with several seeds, one pooled over them."""
    rows, per_seed, pooled = [], [], []
    for seed in _seeds(frame):
        va, vb = _per_item(frame, a, seed), _per_item(frame, b, seed)
        common = va.index.intersection(vb.index)
        if common.empty:
            continue
        diff = (va[common] - vb[common]).sort_index()
        result = paired_difference(diff.to_numpy(), n_boot, level)
        rows.append({"condition_a": a, "condition_b": b, "scope": "seed", "seed": seed, **asdict(result)})
        per_seed.append(result.mean)
        pooled.append(diff)
    if len(pooled) > 1:
        by_item = pd.concat(pooled, axis=1).dropna().mean(axis=1)  # items every seed scored, averaged over seeds
        result = paired_difference(by_item.to_numpy(), n_boot, level)
        rows.append({"condition_a": a, "condition_b": b, "scope": "pooled", "seed": pd.NA, **asdict(result),
                     **seed_interval(per_seed, level)})
    return rows


def pairwise_table(items: pd.DataFrame, conditions: Optional[Sequence[str]] = None, value: str = "margin",
                   n_boot: int = N_BOOT, level: float = LEVEL) -> pd.DataFrame:
    """Every pair of conditions (a before b in ``conditions``' order, default: as they first appear), per
    comparison group (stage, scoring, split, system prompt), per seed and pooled; difference = a - b."""
    values = item_values(items, value)
    order = list(conditions) if conditions is not None else list(dict.fromkeys(items["condition"]))
    rows = []
    for group, frame in values.groupby(KEYS, dropna=False, sort=True):
        present = [c for c in order if c in set(frame["condition"])]
        for a, b in combinations(present, 2):
            for row in compare(frame, a, b, n_boot, level):
                rows.append({**dict(zip(KEYS, group)), "value": value, **row})
    columns = [*KEYS, "value", "condition_a", "condition_b", "scope", "seed", "mean", "ci_low", "ci_high", "n_items", "sd",
               "t", "dz", "n_seeds", "seed_mean", "seed_sd", "seed_ci_low", "seed_ci_high"]
    table = pd.DataFrame(rows)
    for column in columns:
        if column not in table:
            table[column] = pd.NA
    table = table[columns]
    table["seed"] = table["seed"].astype("Int64")
    table["n_seeds"] = table["n_seeds"].astype("Int64")
    return table


# ---------------------------------------------------------------- what the paper predicts, and whether it holds


def expected_orderings(design: pd.DataFrame) -> list[tuple[str, str]]:
    """(lower, higher) pairs the paper predicts, the first less misaligned, from each condition's design
    (``condition, base, synthetic, insertion``): aligned documents below misaligned ones (same base and
    insertion); aligned below none and none below misaligned (same base, end-to-end); filtered below
    unfiltered (no documents). The direction comparison (aligned vs misaligned) comes first."""
    rows = design.fillna({"synthetic": "none", "insertion": "e2e", "base": "unfiltered"}).to_dict("records")
    out: list[tuple[str, str]] = []
    for x in rows:
        for y in rows:
            same_base = x["base"] == y["base"]
            if same_base and x["insertion"] == y["insertion"] and (x["synthetic"], y["synthetic"]) == ("aligned", "misaligned"):
                out.append((x["condition"], y["condition"]))
    for x in rows:
        for y in rows:
            e2e = {x["insertion"], y["insertion"]} == {"e2e"}
            if x["base"] == y["base"] and e2e and (x["synthetic"], y["synthetic"]) in (("aligned", "none"), ("none", "misaligned")):
                out.append((x["condition"], y["condition"]))
    for x in rows:
        for y in rows:
            if (x["base"], y["base"]) == ("filtered", "unfiltered") and x["synthetic"] == y["synthetic"] == "none":
                out.append((x["condition"], y["condition"]))
    return list(dict.fromkeys(out))


def outcome(ci_low: float, ci_high: float) -> str:
    """For d = lower - higher: "yes" when the CI is below zero, "no, the reverse" above, else "not shown"."""
    if ci_high < 0:
        return "yes"
    if ci_low > 0:
        return "no, the reverse"
    return "not shown"


def verdicts(items: pd.DataFrame, design: pd.DataFrame, value: str = "margin", n_boot: int = N_BOOT,
             level: float = LEVEL) -> pd.DataFrame:
    """One row per predicted ordering x comparison group x seed (and pooled), with ``outcome`` and ``line``."""
    values = item_values(items, value)
    rows = []
    for group, frame in values.groupby(KEYS, dropna=False, sort=True):
        present = set(frame["condition"])
        for lower, higher in expected_orderings(design):
            if lower not in present or higher not in present:
                continue
            for row in compare(frame, lower, higher, n_boot, level):
                keys = dict(zip(KEYS, group))
                units = UNITS.get(keys["scoring"], "") if value == "margin" else "share of formats"
                verdict = outcome(row["ci_low"], row["ci_high"])
                where = f"seed {row['seed']}" if row["scope"] == "seed" and not pd.isna(row["seed"]) else (
                    f"{row.get('n_seeds', '')} seeds pooled" if row["scope"] == "pooled" else "")
                line = (f"{lower} < {higher} on {keys['split']}: {verdict}, d = {row['mean']:+.4f} {units}, "
                        f"{level:.0%} CI [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]" + (f" ({where})" if where else ""))
                rows.append({**keys, "value": value, "lower": lower, "higher": higher, **row, "outcome": verdict, "line": line})
    return pd.DataFrame(rows)
