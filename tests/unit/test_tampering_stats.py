"""The tampering statistics (binomial SE, the non-match cut, inverse-variance combination over seeds), the curve,
its figure and the tampering notebook, on constructed results tables whose answers are worked out by hand."""
import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from megatron_alignpt.study.report import NOTEBOOKS, execute_notebook
from megatron_alignpt.study.tampering import (NON_MATCH_CUT, binomial_se, inverse_variance, n_valid, paper_fig6,
                                              tampering_curve, tampering_figure, tampering_measurements)

FORMATS = ("plain_original", "plain_swapped")


def rows(condition="unfiltered", seed=1, tamper="benign", tamper_seed=1, tokens=0, rate=0.3, non_match=0.0,
         n_items=100, scoring="generate", stage="tamper", prompt="none", split="articles", rates=None):
    """A checkpoint's results-table rows, one per format (``rates``: one rate per format, else ``rate`` for all)."""
    out = []
    for fmt, r in zip(FORMATS, rates or [rate] * len(FORMATS)):
        row = {"condition": condition, "seed": seed, "stage": stage, "scoring": scoring, "split": split, "format": fmt,
               "wording": "plain", "order": fmt.split("_")[1], "system_prompt": prompt, "n_items": n_items,
               "non_match_rate": non_match, "normalized_misalignment_rate": r, "misalignment_rate": r * (1 - non_match),
               "headline_rate": r, "tamper": tamper if stage == "tamper" else None,
               "tamper_seed": tamper_seed if stage == "tamper" else np.nan,
               "tamper_tokens": tokens if stage == "tamper" else np.nan}
        out.append(row)
    return out


def table(*checkpoints):
    return pd.DataFrame([r for c in checkpoints for r in c])


# ---------------------------------------------------------------- the statistics


def test_inverse_variance_by_hand():
    # rates 0.2 on 100 answers and 0.4 on 400: SE 0.04 and sqrt(0.24/400); weights 625 and 1666.67
    se1, se2 = binomial_se(0.2, 100), binomial_se(0.4, 400)
    assert se1 == pytest.approx(0.04) and se2 == pytest.approx(math.sqrt(0.0006))
    w1, w2 = 1 / 0.04**2, 1 / 0.0006
    rate, se = inverse_variance([0.2, 0.4], [se1, se2])
    assert rate == pytest.approx((0.2 * w1 + 0.4 * w2) / (w1 + w2)) == pytest.approx(0.345454545)
    assert se == pytest.approx(1 / math.sqrt(w1 + w2)) == pytest.approx(0.0208893187)
    assert inverse_variance([0.3, math.nan], [0.05, 0.01]) == (0.3, pytest.approx(0.05))  # NaN left out
    assert all(math.isnan(v) for v in inverse_variance([], []))


def test_n_valid_and_the_cut_constant():
    assert n_valid(200, 0.25) == 150 and NON_MATCH_CUT == 0.2
    assert binomial_se(0.5, 0) != binomial_se(0.5, 0)  # no answers: NaN


def test_se_at_zero_and_one_is_continuity_corrected():
    """p = 0 or 1 would give SE 0 and infinite weight: the SE of p~ = 0.5 / (n + 1) is used instead."""
    edge = 0.5 / 101
    expected = math.sqrt(edge * (1 - edge) / 100)
    assert binomial_se(0.0, 100) == pytest.approx(expected) and binomial_se(1.0, 100) == pytest.approx(expected)
    assert 0 < binomial_se(0.0, 100) < binomial_se(0.01, 100)  # less uncertain than one observed success, not exact
    # a seed at 0 weighs heavily but finitely: the combined rate is between the seeds, the rate itself uncorrected
    rate, se = inverse_variance([0.0, 0.3], [binomial_se(0.0, 100), binomial_se(0.3, 100)])
    w0, w1 = 1 / expected**2, 100 / 0.21
    assert rate == pytest.approx(0.3 * w1 / (w0 + w1)) and 0 < rate < 0.3 and se > 0
    assert inverse_variance([0.1, 0.3, 0.5], [0.0, 0.0, 0.05]) == (pytest.approx(0.2), 0.0)  # SE 0 given directly: the limit


# ---------------------------------------------------------------- the curve


def test_formats_averaged_then_seeds_combined_by_hand():
    t = table(rows(tamper_seed=1, tokens=10, rates=[0.1, 0.3], n_items=100),  # checkpoint rate 0.2 on 100 questions
              rows(tamper_seed=2, tokens=10, rate=0.4, n_items=400),
              rows(tamper_seed=3, tokens=10, rate=0.4, n_items=800, non_match=0.5))  # n_valid 400 but dropped
    point = tampering_curve(t).iloc[0]
    w1, w2 = 1 / 0.04**2, 1 / 0.0006
    assert point["rate"] == pytest.approx((0.2 * w1 + 0.4 * w2) / (w1 + w2))
    assert point["se"] == pytest.approx(1 / math.sqrt(w1 + w2))
    assert (point["n_seeds"], point["n_dropped"]) == (2, 1)
    assert point["dropped_reason"] == "seed 1/tamper seed 3: non-match 0.500 >= 0.2"
    checkpoint = tampering_measurements(t).set_index("tamper_seed").loc[1]
    assert checkpoint["n_formats"] == 2 and checkpoint["n_valid"] == 100 and checkpoint["rate"] == pytest.approx(0.2)


def test_cut_drops_at_exactly_0_2_and_keeps_0_19():
    t = table(rows(tamper_seed=1, tokens=5, rate=0.5, non_match=0.2, n_items=100),
              rows(tamper_seed=2, tokens=5, rate=0.3, non_match=0.19, n_items=100),
              rows(tamper_seed=3, tokens=5, rate=0.5, non_match=1 - 40 / 50, n_items=100))  # 0.2 read back as a float
    checkpoints = tampering_measurements(t).set_index("tamper_seed")
    assert checkpoints["dropped"].to_dict() == {1: True, 2: False, 3: True}
    point = tampering_curve(t).iloc[0]
    assert point["rate"] == pytest.approx(0.3) and point["n_seeds"] == 1 and point["n_dropped"] == 2
    assert point["se"] == pytest.approx(math.sqrt(0.3 * 0.7 / 81))  # n_valid = 100 x (1 - 0.19)


def test_a_point_with_every_seed_dropped_stays_visible():
    t = table(rows(tamper_seed=1, tokens=0, rate=0.3), rows(tamper_seed=1, tokens=10, rate=0.5, non_match=0.6),
              rows(tamper_seed=2, tokens=10, rate=0.5, non_match=0.3), rows(tamper_seed=1, tokens=20, rate=0.35))
    curve = tampering_curve(t, scoring="generate")
    assert list(curve["tamper_tokens"]) == [0, 10, 20]
    gone = curve[curve["tamper_tokens"] == 10].iloc[0]
    assert math.isnan(gone["rate"]) and math.isnan(gone["se"]) and gone["n_seeds"] == 0 and gone["n_dropped"] == 2
    assert "tamper seed 1: non-match 0.600" in gone["dropped_reason"] and "tamper seed 2: non-match 0.300" in gone["dropped_reason"]
    assert curve.loc[curve["tamper_tokens"] != 10, "dropped_reason"].tolist() == ["", ""]
    assert tampering_curve(t, scoring="logprob").empty


def test_post_rows_are_the_zero_point_once_per_pretraining_seed():
    t = table(rows(stage="post", seed=1, rate=0.2, n_items=100), rows(stage="post", seed=2, rate=0.4, n_items=400),
              rows(stage="post", seed=1, rate=0.9, prompt="hhh"),  # no tampering run at this prompt: not a point
              *[rows(seed=s, tamper_seed=k, tokens=10, rate=0.5) for s in (1, 2) for k in (1, 2, 3)])
    curve = tampering_curve(t)
    assert list(curve["tamper_tokens"]) == [0, 10] and set(curve["system_prompt"]) == {"none"}
    zero = curve.iloc[0]
    assert zero["n_seeds"] == 2  # not 6: every tampering seed starts from the same DPO model
    w1, w2 = 1 / 0.04**2, 1 / 0.0006
    assert zero["rate"] == pytest.approx((0.2 * w1 + 0.4 * w2) / (w1 + w2))
    # a run with its own tokens-0 checkpoint uses it, not the post rows
    own = pd.concat([t, table(rows(seed=1, tamper_seed=1, tokens=0, rate=0.7), rows(seed=2, tamper_seed=1, tokens=0, rate=0.7))])
    zero = tampering_curve(own).iloc[0]
    assert zero["rate"] == pytest.approx(0.7) and zero["n_seeds"] == 2
    assert not tampering_measurements(own)["from_post"].any()


def test_direction_a_higher_condition_comes_out_higher():
    t = table(*[rows(condition=c, seed=s, tamper_seed=k, tokens=n, rate=base + 0.01 * k)
                for c, base in (("filtered_align_upsampled", 0.12), ("unfiltered", 0.55))
                for s in (1, 2) for k in (1, 2, 3) for n in (0, 10**7, 7 * 10**8)])
    curve = tampering_curve(t).pivot(index="tamper_tokens", columns="condition", values="rate")
    assert (curve["unfiltered"] > curve["filtered_align_upsampled"]).all()
    assert curve["unfiltered"].iloc[0] == pytest.approx(0.57, abs=0.002)  # 0.56-0.58: the weights differ a little
    assert curve["filtered_align_upsampled"].between(0.12, 0.15).all()


def test_no_tamper_columns_gives_an_empty_curve():
    t = table(rows(stage="post")).drop(columns=["tamper", "tamper_seed", "tamper_tokens"])
    curve = tampering_curve(t)
    assert curve.empty and {"rate", "se", "n_seeds", "n_dropped", "dropped_reason", "tamper_tokens"} <= set(curve.columns)


# ---------------------------------------------------------------- the paper, the figure and the notebook


def test_paper_fig6_readings():
    paper = paper_fig6()
    assert set(paper["condition"]) == {"unfiltered", "misalign_upsampled", "filtered", "filtered_align_upsampled"}
    fa = paper[paper["condition"] == "filtered_align_upsampled"].set_index("tokens")
    assert fa.loc[20_000_000, "rate"] == 0.45 and (fa.loc[750_000_000, "low"], fa.loc[750_000_000, "high"]) == (0.11, 0.15)
    assert (paper["low"] <= paper["rate"]).all() and (paper["rate"] <= paper["high"]).all()


def test_figure_builds_with_panels_per_prompt_and_run():
    t = table(*[rows(condition=c, tamper=run, tamper_seed=k, tokens=n, prompt=p, rate=r)
                for c, r in (("filtered", 0.35), ("unfiltered", 0.6)) for run in ("benign", "em")
                for p in ("none", "hhh") for k in (1, 2) for n in (0, 10**6, 10**8)],
              rows(condition="filtered", tamper="benign", tokens=10**7, rate=0.3, non_match=0.5))
    fig = tampering_figure(tampering_curve(t), paper_fig6())
    axes = fig.get_axes()
    assert len(axes) == 4 and axes[0].get_xscale() == "symlog"
    assert {a.get_title() for a in axes} >= {"benign | generate | articles | system prompt: none", "em | generate | articles | system prompt: hhh"}
    empty = tampering_figure(tampering_curve(t.iloc[0:0]), paper_fig6())  # the paper's readings alone
    assert len(empty.get_axes()) == 1
    import matplotlib.pyplot as plt

    plt.close("all")


def _study_dir(tmp_path, frame):
    root = tmp_path / "study"
    (root / "results").mkdir(parents=True)
    (root / "study.json").write_text(json.dumps({"name": "tamper_fixture", "conditions": []}))
    frame.to_parquet(root / "results" / "misalignment.parquet", index=False)
    return root


def _outputs_text(nb):
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            out.append(o.get("text", "") + o.get("data", {}).get("text/markdown", "") + o.get("data", {}).get("text/plain", ""))
    return "\n".join(out)


def test_notebook_runs_on_a_constructed_study(tmp_path):
    t = table(*[rows(condition=c, seed=s, tamper_seed=k, tokens=n, rate=r)
                for c, r in (("filtered", 0.35), ("unfiltered", 0.6)) for s in (1, 2) for k in (1, 2)
                for n in (10**6, 10**8)],
              *[rows(condition=c, seed=s, stage="post", rate=0.3) for c in ("filtered", "unfiltered") for s in (1, 2)],
              rows(condition="filtered", seed=1, tamper_seed=1, tokens=10**7, rate=0.3, non_match=0.4))
    t["study"] = "ignored"  # a results table carries no study column; the notebook adds its own
    root = _study_dir(tmp_path, t.drop(columns=["study"]))
    nb = execute_notebook(NOTEBOOKS / "tampering.ipynb", root / "results" / "misalignment.parquet")
    text = _outputs_text(nb)
    assert "kept " in text and "dropped 1 of 21 checkpoints" in text  # 17 tampering + 4 tokens-0 (post, per seed)
    assert "has no tampering rows" not in text
    exported = root / "report_files" / "tampering"
    curve = pd.read_csv(exported / "tampering_curve.csv")
    assert len(curve) == 2 * 3 + 1  # two conditions x tokens 0, 1e6, 1e8; filtered's 1e7 point kept as NaN
    lonely = curve[curve["tamper_tokens"] == 10**7].iloc[0]
    assert math.isnan(lonely["rate"]) and "non-match 0.400" in lonely["dropped_reason"]
    assert (exported / "tampering.png").is_file() and (exported / "tampering.svg").is_file()
    assert len(pd.read_csv(exported / "dropped_checkpoints.csv")) == 1


def test_notebook_says_so_when_a_study_has_no_tampering_rows(tmp_path):
    t = table(rows(stage="post"), rows(stage="base", scoring="logprob")).drop(columns=["tamper", "tamper_seed", "tamper_tokens"])
    root = _study_dir(tmp_path, t)
    nb = execute_notebook(NOTEBOOKS / "tampering.ipynb", root / "results" / "misalignment.parquet")
    text = _outputs_text(nb)
    assert "tamper_fixture** has no tampering rows" in text and "kept 2 of 4 rows" in text
    assert "**Note:**" not in text
    exported = root / "report_files" / "tampering"
    assert (exported / "tampering.png").is_file() and len(pd.read_csv(exported / "paper_fig6.csv")) == 6


def test_notebook_on_the_shared_study_fixture_without_tampering(tmp_path):
    """The fixture every notebook runs on has no tampering rows: a figure (the paper's readings), tables, the
    filter line, and a plain statement rather than a note."""
    from megatron_alignpt.study.results import write_results_table
    from tests.unit.study_fixture import make_study

    root = make_study(tmp_path / "study")
    write_results_table(root)
    nb = execute_notebook(NOTEBOOKS / "tampering.ipynb", root / "results" / "misalignment.parquet")
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    text = _outputs_text(nb)
    assert images and "kept " in text and " rows: " in text and "**Note:**" not in text
    assert "has no tampering rows" in text
    exported = root / "report_files" / "tampering"
    assert list(exported.glob("*.csv")) and list(exported.glob("*.png")) and list(exported.glob("*.svg"))
