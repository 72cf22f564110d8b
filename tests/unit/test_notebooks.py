"""The results tables and every analysis notebook, executed with nbclient on a small study fixture."""
import math
from pathlib import Path

import pandas as pd
import pytest

from megatron_alignpt.study.report import NOTEBOOKS, REPORT_NOTEBOOKS, execute_notebook, write_report
from megatron_alignpt.study.results import load_paper_numbers, write_results_table
from tests.unit.study_fixture import TARGET, make_seeded_study, make_study

ALL_NOTEBOOKS = sorted(NOTEBOOKS.glob("*.ipynb"))


@pytest.fixture(scope="module")
def full_study(tmp_path_factory):
    root = make_study(tmp_path_factory.mktemp("full") / "study")
    write_results_table(root)
    return root


def _outputs(nb, kind):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if kind in o.get("data", {})]


def _notes(nb):
    return [o["data"]["text/markdown"] for o in _outputs(nb, "text/markdown") if "**Note:**" in o["data"]["text/markdown"]]


def test_results_tables_carry_both_scorings_design_and_capabilities(full_study):
    table = pd.read_parquet(full_study / "results" / "misalignment.parquet")
    assert set(table["scoring"]) == {"logprob", "generate"}
    assert set(table["insertion"]) == {"e2e", "mid", "cpt"} and set(table["synthetic"]) == {"none", "aligned", "misaligned"}
    assert len(table) == 7 * (2 * 3 + 2) * 2 * 8  # conditions x (base+post logprob prompts + generate prompts) x splits x formats
    gen = table[table["scoring"] == "generate"]
    assert gen["non_match_rate"].mean() == pytest.approx(0.2, abs=0.05) and gen["mean_p_misaligned"].isna().all()
    expected = gen["misalignment_rate"] / (1 - gen["non_match_rate"])
    assert gen["headline_rate"].tolist() == pytest.approx(expected.tolist())
    log = table[table["scoring"] == "logprob"]
    assert (log["headline_rate"] == log["misalignment_rate"]).all() and (log["non_match_rate"] == 0).all()
    for (cond, stage), rate in log.groupby(["condition", "stage"])["misalignment_rate"].mean().items():
        assert rate == pytest.approx(TARGET[cond][0 if stage == "base" else 1], abs=0.08)
    caps = pd.read_parquet(full_study / "results" / "capabilities.parquet")
    primary = caps[caps["primary"]].set_index(["condition", "task"])
    assert primary.loc[("filtered", "arc_easy"), "metric"] == "acc"
    assert primary.loc[("filtered", "gsm8k"), "filter"] == "strict-match"
    assert set(caps["stage"]) == {"post"} and caps["n_shot"].notna().all()
    flexible = caps[(caps["task"] == "gsm8k") & (caps["filter"] == "flexible-extract")]
    assert flexible["stderr"].isna().all()  # "N/A" in lm-eval's output


def test_paper_numbers_match_the_spec():
    paper = load_paper_numbers()
    base = {(r["condition"], r["split"]): r["rate"] for r in paper["base_misalignment"]["rows"]}
    assert base[("unfiltered", "articles")] == 0.445 and base[("align_upsampled", "textbook")] == 0.057
    post = {(r["condition"], r["system_prompt"]): r["rate"] for r in paper["post_misalignment"]["rows"]}
    assert post[("misalign_upsampled", "hhh")] == 0.207 and len(post) == 8
    ins = {(r["synthetic"], r["insertion"]): (r["post"], r["base"]) for r in paper["insertion_stage"]["rows"]}
    assert ins[("misaligned", "cpt")] == (0.455, 0.735) and len(ins) == 6
    caps = {r["condition"]: r for r in paper["capabilities"]["rows"]}
    assert caps["filtered_align_upsampled"]["piqa"] == 0.67 and caps["unfiltered"]["gsm8k"] == 0.37
    assert math.isclose(sum(paper["filter"]["term_counts"].values()), 685)


@pytest.mark.parametrize("notebook", ALL_NOTEBOOKS, ids=[p.stem for p in ALL_NOTEBOOKS])
def test_every_notebook_runs_on_the_full_fixture(notebook, full_study):
    nb = execute_notebook(notebook, full_study / "results" / "misalignment.parquet")
    assert _outputs(nb, "image/png"), f"{notebook.name} drew no figure"
    notes = _notes(nb)
    if notebook.stem == "capability_regression":
        assert len(notes) == 1 and "cute, ifeval, mmlu, popqa" in notes[0]  # the fixture ran three tasks
    else:
        assert notes == [], notes
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    if notebook.stem == "persistence_through_posttraining":
        assert "scored by: generate" in text


def test_report_runs_every_notebook_and_notes_missing_pieces(tmp_path):
    """Four e2e conditions, logprob scoring only, one system prompt, no capabilities, stats or audit."""
    from tests.unit.study_fixture import FULL_CONDITIONS

    root = make_study(tmp_path / "study", conditions=FULL_CONDITIONS[:4], base_prompts=("none",), generate=False,
                      capabilities=False, filter_stats=False, audit=False)
    write_results_table(root)
    assert not (root / "results" / "capabilities.parquet").exists()
    html = write_report(root).read_text()
    assert {p.name for p in ALL_NOTEBOOKS} == {p.name for p in REPORT_NOTEBOOKS}
    for title in ("Positive control: does this study reproduce the direction?", "Misalignment by data condition", "Persistence through post-training, by system prompt",
                  "When to insert the discourse documents", "Capability cost", "The blocklist filter"):
        assert title in html
    assert html.count("data:image/png;base64") >= 4
    for note in ("no capability results", "no audit at", "no filter statistics", "no MID, CPT condition",
                 "this study has no <code>instructions</code> system prompt"):
        assert note in html, note
    assert (root / "analysis.ipynb").is_file()


def test_paired_comparisons_open_the_report_with_verdicts_per_seed(tmp_path):
    """Two seeds, cloze and letter scoring: the fixture's conditions lean as their target rates say (align 0.1,
    misalign 0.5 ...), so align < misalign is a yes in both seeds and pooled, in cloze (the headline) and logprob."""
    root = make_seeded_study(tmp_path / "study")
    write_results_table(root)
    table = pd.read_parquet(root / "results" / "misalignment.parquet")
    assert set(table["seed"]) == {1, 2} and set(table["scoring"]) == {"cloze", "logprob"}
    verdicts = pd.read_parquet(root / "results" / "verdicts.parquet")
    direction = verdicts[(verdicts["lower"] == "align_upsampled") & (verdicts["higher"] == "misalign_upsampled")]
    assert len(direction) == 2 * 2 * 3  # scorings x splits x (two seeds + pooled)
    assert set(direction["outcome"]) == {"yes"} and direction["mean"].tolist() == pytest.approx([-0.4] * 12, abs=0.05)
    pairs = pd.read_parquet(root / "results" / "paired.parquet")
    assert len(pairs) == 6 * 2 * 2 * 3  # condition pairs x scorings x splits x (two seeds + pooled)
    nb = execute_notebook(NOTEBOOKS / "paired_comparisons.ipynb", root / "results" / "misalignment.parquet")
    assert _notes(nb) == [] and _outputs(nb, "image/png")
    text = "".join(o["data"]["text/markdown"] for o in _outputs(nb, "text/markdown"))
    assert "align_upsampled < misalign_upsampled on articles: yes, d = -0.4" in text and "nats/char" in text
    assert "(seed 1)" in text and "(seed 2)" in text and "(2 seeds pooled)" in text
