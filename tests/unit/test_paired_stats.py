"""Paired comparisons of conditions on constructed item tables whose answers are known by construction.

Each table is built from per-item values chosen here (a condition's margin on an item, the same in every
format or split symmetrically between the two answer orders), so the expected mean difference, and in the
degenerate cases the exact interval, follow from the construction, not from the code under test.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from megatron_alignpt.study.paired import (
    bootstrap_ci, expected_orderings, item_values, outcome, pairwise_table, paired_difference, verdicts,
)

N_ITEMS = 100


def _rows(condition: str, margins: dict[str, float], seed=1, split="articles", scoring="cloze", order_bias=0.0) -> list[dict]:
    """Item rows in two formats per item: margin + bias in the original order, margin - bias in the swapped one."""
    rows = []
    for qid, margin in margins.items():
        for order, sign in (("original", 1), ("swapped", -1)):
            m = margin + sign * order_bias
            rows.append({"condition": condition, "seed": seed, "stage": "base", "scoring": scoring, "split": split,
                         "system_prompt": "none", "format": f"w0:{order}", "order": order, "question_id": qid,
                         "margin": m, "picked_misaligned": m > 0})
    return rows


def _items(values: np.ndarray) -> dict[str, float]:
    return {f"q{i:03d}": float(v) for i, v in enumerate(values)}


def test_formats_are_averaged_within_each_item():
    base = np.linspace(-1, 1, 10)
    frame = pd.DataFrame(_rows("a", _items(base), order_bias=0.7))
    values = item_values(frame).set_index("question_id")["value"]
    assert values.to_numpy() == pytest.approx(base)  # the +-0.7 order bias cancels within the item
    rates = item_values(frame, "rate").set_index("question_id")["value"]
    assert set(rates.round(6)) <= {0.0, 0.5, 1.0}


def test_a_constant_shift_is_found_exactly_however_different_the_items_are():
    """Items differ a lot (SD 1) but b is a's margin + 0.05 on every item: the paired difference is exactly
    -0.05 with a zero-width interval, where comparing the two means unpaired could not tell them apart."""
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, N_ITEMS)
    frame = pd.DataFrame(_rows("align", _items(a)) + _rows("misalign", _items(a + 0.05)))
    table = pairwise_table(frame)
    (row,) = table.to_dict("records")
    assert (row["condition_a"], row["condition_b"], row["scope"], row["n_items"]) == ("align", "misalign", "seed", N_ITEMS)
    assert row["mean"] == pytest.approx(-0.05)
    assert row["ci_low"] == pytest.approx(-0.05) and row["ci_high"] == pytest.approx(-0.05)
    assert row["sd"] == 0.0 and pd.isna(row["t"]) and pd.isna(row["dz"])


def test_bootstrap_interval_matches_the_normal_theory_width():
    """Differences of +-1 around 0.3 (SD ~1, n = 100): the mean is 0.3 and the 95% interval is about
    0.3 +- 1.96 * SD / sqrt(n), as the central limit theorem says for a mean of 100 draws."""
    d = 0.3 + np.array([1.0, -1.0] * (N_ITEMS // 2))
    result = paired_difference(d)
    se = d.std(ddof=1) / math.sqrt(N_ITEMS)
    assert result.mean == pytest.approx(0.3)
    assert result.ci_low == pytest.approx(0.3 - 1.96 * se, abs=0.02) and result.ci_high == pytest.approx(0.3 + 1.96 * se, abs=0.02)
    assert result.t == pytest.approx(0.3 / se) and result.dz == pytest.approx(0.3 / d.std(ddof=1))
    assert bootstrap_ci(d) == bootstrap_ci(d)  # seeded: a rerun gives the same interval


def test_coverage_of_the_bootstrap_interval_is_near_its_level():
    """Over many samples with a true mean of 0, the 95% interval misses zero about 5% of the time."""
    rng = np.random.default_rng(7)
    misses = sum(not (lo <= 0 <= hi) for lo, hi in (bootstrap_ci(rng.normal(0, 1, 60), n_boot=2000, seed=s) for s in range(300)))
    assert 0.02 <= misses / 300 <= 0.09


def test_only_items_both_conditions_were_scored_on_are_paired():
    a = _items(np.zeros(10))
    b = {k: v + 1.0 for k, v in list(a.items())[:6]}
    table = pairwise_table(pd.DataFrame(_rows("x", a) + _rows("y", b)))
    (row,) = table.to_dict("records")
    assert row["n_items"] == 6 and row["mean"] == pytest.approx(-1.0)


def test_seeds_each_get_their_own_comparison_and_a_pooled_one():
    """Seed 1 shifts by 0.1 and seed 2 by 0.3 on every item: each seed's difference is exact, the pooled one
    is their mean (0.2, exact interval over items), and the interval over seeds is the t interval with one
    degree of freedom: 0.2 +- 12.706 * SD / sqrt(2), SD = 0.1414."""
    rng = np.random.default_rng(3)
    base = rng.normal(0, 1, N_ITEMS)
    rows = []
    for seed, shift in ((1, 0.1), (2, 0.3)):
        noise = rng.normal(0, 1, N_ITEMS)  # seeds differ item by item; within a seed the shift is exact
        rows += _rows("misalign", _items(base + noise + shift), seed=seed) + _rows("align", _items(base + noise), seed=seed)
    table = pairwise_table(pd.DataFrame(rows), conditions=["misalign", "align"])
    by_scope = {(r["scope"], None if pd.isna(r["seed"]) else int(r["seed"])): r for r in table.to_dict("records")}
    assert set(by_scope) == {("seed", 1), ("seed", 2), ("pooled", None)}
    assert by_scope[("seed", 1)]["mean"] == pytest.approx(0.1) and by_scope[("seed", 2)]["mean"] == pytest.approx(0.3)
    pooled = by_scope[("pooled", None)]
    assert pooled["mean"] == pytest.approx(0.2) and pooled["ci_low"] == pytest.approx(0.2) and pooled["ci_high"] == pytest.approx(0.2)
    assert pooled["n_seeds"] == 2 and pooled["seed_sd"] == pytest.approx(math.sqrt(0.02))
    half = 12.7062047 * math.sqrt(0.02) / math.sqrt(2)
    assert pooled["seed_ci_low"] == pytest.approx(0.2 - half, rel=1e-5) and pooled["seed_ci_high"] == pytest.approx(0.2 + half, rel=1e-5)


def test_groups_are_compared_separately():
    """Splits and scorings are never mixed: each gets its own comparison with its own known difference."""
    a = _items(np.zeros(20))
    rows = (_rows("x", a, split="articles") + _rows("y", {k: 0.5 for k in a}, split="articles")
            + _rows("x", a, split="textbook") + _rows("y", {k: -0.25 for k in a}, split="textbook")
            + _rows("x", a, scoring="logprob") + _rows("y", a, scoring="logprob"))
    table = pairwise_table(pd.DataFrame(rows)).set_index(["scoring", "split"])
    assert table.loc[("cloze", "articles"), "mean"] == pytest.approx(-0.5)
    assert table.loc[("cloze", "textbook"), "mean"] == pytest.approx(0.25)
    assert table.loc[("logprob", "articles"), "mean"] == pytest.approx(0.0)


DESIGN = pd.DataFrame([
    {"condition": "unfiltered", "base": "unfiltered", "synthetic": "none", "insertion": "e2e"},
    {"condition": "filtered", "base": "filtered", "synthetic": "none", "insertion": "e2e"},
    {"condition": "misalign_upsampled", "base": "unfiltered", "synthetic": "misaligned", "insertion": "e2e"},
    {"condition": "align_upsampled", "base": "unfiltered", "synthetic": "aligned", "insertion": "e2e"},
    {"condition": "align_mid", "base": "unfiltered", "synthetic": "aligned", "insertion": "mid"},
    {"condition": "misalign_mid", "base": "unfiltered", "synthetic": "misaligned", "insertion": "mid"},
])


def test_the_paper_predicts_these_orderings():
    assert expected_orderings(DESIGN) == [
        ("align_upsampled", "misalign_upsampled"), ("align_mid", "misalign_mid"),
        ("unfiltered", "misalign_upsampled"), ("align_upsampled", "unfiltered"), ("filtered", "unfiltered"),
    ]


def test_verdicts_say_yes_no_or_not_shown():
    assert outcome(-0.3, -0.1) == "yes" and outcome(0.1, 0.3) == "no, the reverse" and outcome(-0.1, 0.2) == "not shown"
    rng = np.random.default_rng(5)
    base = rng.normal(0, 1, N_ITEMS)
    frame = pd.DataFrame(
        _rows("align_upsampled", _items(base - 0.2)) + _rows("misalign_upsampled", _items(base + 0.2))
        + _rows("unfiltered", _items(base + rng.normal(0, 0.01, N_ITEMS)))  # noise only: no shift from the others' midpoint
        + _rows("filtered", _items(base + 0.5)))                            # the reverse of the prediction
    table = verdicts(frame, DESIGN).set_index(["lower", "higher"])
    assert table.loc[("align_upsampled", "misalign_upsampled"), "outcome"] == "yes"
    assert table.loc[("align_upsampled", "misalign_upsampled"), "mean"] == pytest.approx(-0.4)
    assert table.loc[("align_upsampled", "unfiltered"), "outcome"] == "yes"
    assert table.loc[("filtered", "unfiltered"), "outcome"] == "no, the reverse"
    line = table.loc[("align_upsampled", "misalign_upsampled"), "line"]
    assert line.startswith("align_upsampled < misalign_upsampled on articles: yes, d = -0.4000 nats/char, 95% CI [")
