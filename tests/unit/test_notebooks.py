"""The results tables and every analysis notebook, executed with nbclient on a small study fixture."""
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from megatron_alignpt.study.report import NOTEBOOKS, REPORT_NOTEBOOKS, execute_notebook, write_report
from megatron_alignpt.study.results import load_paper_numbers, write_results_table
from tests.unit.study_fixture import FULL_CONDITIONS, TARGET, make_seeded_study, make_study

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


def _text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.parametrize("notebook", ALL_NOTEBOOKS, ids=[p.stem for p in ALL_NOTEBOOKS])
def test_every_notebook_runs_on_the_full_fixture(notebook, full_study):
    nb = execute_notebook(notebook, full_study / "results" / "misalignment.parquet")
    assert _outputs(nb, "image/png"), f"{notebook.name} drew no figure"
    notes = _notes(nb)
    if notebook.stem == "capability_regression":  # the fixture ran three tasks; mmlu was recorded as skipped
        assert len(notes) == 2 and "`mmlu` did not run" in notes[0] and "no network" in notes[0]
        assert "cute, ifeval, mmlu, popqa" in notes[1]
    elif notebook.stem == "persistence_through_posttraining":  # the fixture generates with two of its three prompts
        assert len(notes) == 1 and "system prompt `none`: no generate-scored post-trained rows" in notes[0]
    else:
        assert notes == [], notes
    text = _text(nb)
    if notebook.stem != "filter_audit":  # it shows every corpus and audit row it reads: no filter
        assert "kept " in text and " rows: " in text, "every notebook says what its filters kept"
    exported = full_study / "report_files" / notebook.stem
    assert list(exported.glob("*.csv")) and list(exported.glob("*.png")) and list(exported.glob("*.svg"))


def test_persistence_keeps_post_trained_rows_of_prompts_without_generate_scoring(tmp_path):
    """The demo generates with `none` only: the `hhh` post-trained rows (the prompt the paper reports) are
    letter-scored, and must reach every table and the comparison with the paper, said so in a note."""
    root = make_study(tmp_path / "study", conditions=FULL_CONDITIONS[:4], base_prompts=("none", "hhh"),
                      generate_prompts=("none",), capabilities=False, filter_stats=False, audit=False)
    write_results_table(root)
    nb = execute_notebook(NOTEBOOKS / "persistence_through_posttraining.ipynb", root / "results" / "misalignment.parquet")
    exported = root / "report_files" / "persistence_through_posttraining"
    rates = pd.read_csv(exported / "base_and_post_rates.csv")
    assert len(rates) == 4 * 2 * 2 and rates["post_rate"].notna().all() and rates["base_rate"].notna().all()
    hhh = rates[rates["system_prompt"] == "hhh"].set_index(["split", "condition"])["post_rate"]
    for (split, cond), rate in hhh.items():
        assert rate == pytest.approx(TARGET[cond][1], abs=0.12), (split, cond)  # letter-scored rows, not dropped
    paper = pd.read_csv(exported / "against_the_paper.csv")
    assert paper.loc[paper["system_prompt"] == "hhh", "post_rate"].notna().all()
    notes = _notes(nb)
    assert any("system prompt `hhh`: no generate-scored post-trained rows" in n for n in notes)
    assert any("against the paper" in n and "system_prompt=instructions" in n for n in notes)  # not evaluated: said
    assert "system_prompt=logprob+hhh" not in _text(nb)  # kept, not dropped
    assert "dropped 64: scoring+system_prompt=logprob+none (64)" in _text(nb)


def test_a_missing_combination_is_a_visible_note(tmp_path):
    root = make_study(tmp_path / "study", conditions=FULL_CONDITIONS[:4], base_prompts=("none",), generate=False,
                      capabilities=False, filter_stats=False, audit=False)
    import shutil

    shutil.rmtree(root / "evals" / "filtered" / "post")  # the filtered model's post-trained evaluation never ran
    write_results_table(root)
    for name in ("misalignment_by_condition", "persistence_through_posttraining"):
        notes = _notes(execute_notebook(NOTEBOOKS / f"{name}.ipynb", root / "results" / "misalignment.parquet"))
        assert any("condition=filtered" in n and "post" in n and "split=articles" in n for n in notes), (name, notes)


def test_several_studies_side_by_side(tmp_path, monkeypatch):
    a = make_study(tmp_path / "a", conditions=FULL_CONDITIONS[:4], base_prompts=("none",), generate=False, seed=1)
    b = make_study(tmp_path / "b", conditions=FULL_CONDITIONS[:2], base_prompts=("none",), generate=False, seed=2)
    (b / "study.json").write_text(json.dumps({"name": "second", "conditions": FULL_CONDITIONS[:2]}))
    for root in (a, b):
        write_results_table(root)
    monkeypatch.setenv("ALIGNPT_STUDIES", f"{a}:{b / 'results' / 'misalignment.parquet'}")
    nb = execute_notebook(NOTEBOOKS / "misalignment_by_condition.ipynb", a / "results" / "misalignment.parquet")
    rates = pd.read_csv(a / "report_files" / "misalignment_by_condition" / "rates_by_condition.csv")
    assert set(rates["study"]) == {"fixture", "second"}
    assert set(rates.loc[rates["study"] == "second", "condition"]) == {"unfiltered", "filtered"}
    assert "2 studies side by side" in _text(nb)
    notes = _notes(nb)  # the second study has no upsampled conditions: said, not hidden
    assert any("study=second, condition=misalign_upsampled" in n for n in notes)


def test_report_runs_every_notebook_and_notes_missing_pieces(tmp_path, capfd):
    """Four e2e conditions, logprob scoring only, one system prompt, no capabilities, stats or audit."""
    from tests.unit.study_fixture import FULL_CONDITIONS

    root = make_study(tmp_path / "study", conditions=FULL_CONDITIONS[:4], base_prompts=("none",), generate=False,
                      capabilities=False, filter_stats=False, audit=False)
    write_results_table(root)
    assert not (root / "results" / "capabilities.parquet").exists()
    html = write_report(root).read_text()
    out, err = capfd.readouterr()
    assert "without encryption" not in err + out and "IPKernelApp" not in err + out  # kernel over IPC: no warnings
    assert {p.name for p in ALL_NOTEBOOKS} == {p.name for p in REPORT_NOTEBOOKS}
    # a header naming the study, the code and the date; a table of contents linking every notebook's headings
    assert "<title>fixture: alignment pretraining study report</title>" in html and "Study report: fixture" in html
    assert re.search(r"report made with</td>\s*<td>commit <code>[0-9a-f]{40}", html)
    assert re.search(r"generated</td>\s*<td>\d{4}-\d\d-\d\d \d\d:\d\d UTC", html)
    contents = re.search(r'<nav class="alignpt-contents">(.*?)</nav>', html, re.S).group(1)
    for anchor in re.findall(r'href="#([^"]+)"', contents):
        assert f'id="{anchor}"' in html, anchor
    assert contents.count("<li>") >= 5 + 8
    # opens offline: nothing loaded from elsewhere
    assert "<script src" not in html and not re.search(r'(src|href)="https?:', html) and "cdnjs" not in html
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
    d = re.search(r"align_upsampled < misalign_upsampled on articles: yes, d = (-[0-9.]+) nats/char", text)
    assert d and float(d.group(1)) == pytest.approx(-0.4, abs=0.05)
    assert "(seed 1)" in text and "(seed 2)" in text and "(2 seeds pooled)" in text


def test_paired_comparisons_side_by_side(tmp_path, monkeypatch):
    """Two seeded studies: verdicts for each, one figure per study, every table carrying the study."""
    a = make_seeded_study(tmp_path / "a", seed=1)
    b = make_seeded_study(tmp_path / "b", seeds=(3,), conditions=FULL_CONDITIONS[:4], seed=2)
    (b / "study.json").write_text(json.dumps({"name": "second", "conditions": FULL_CONDITIONS[:4], "seeds": [3]}))
    for root in (a, b):
        write_results_table(root)
    monkeypatch.setenv("ALIGNPT_STUDIES", f"{a}:{b}")
    nb = execute_notebook(NOTEBOOKS / "paired_comparisons.ipynb", a / "results" / "misalignment.parquet")
    assert _notes(nb) == []
    text = "".join(o["data"]["text/markdown"] for o in _outputs(nb, "text/markdown"))
    assert "**fixture: the direction**" in text and "**second: the direction**" in text
    exported = a / "report_files" / "paired_comparisons"
    verdicts = pd.read_csv(exported / "verdicts.csv")
    assert set(verdicts["study"]) == {"fixture", "second"} and set(verdicts["scoring"]) == {"cloze"}
    assert set(verdicts.loc[verdicts["study"] == "second", "seed"].dropna()) == {3}
    assert set(pd.read_csv(exported / "pairs.csv")["study"]) == {"fixture", "second"}
    assert len(list(exported.glob("per_question_differences_*.png"))) == 2


def test_report_on_a_base_only_seeded_study(tmp_path):
    """The organism's shape: base models only, two seeds, cloze and letter scoring, no post-training,
    capabilities or filter statistics. Every notebook runs; the absent post-training is said once, not an error."""
    root = make_seeded_study(tmp_path / "study")
    write_results_table(root)
    html = write_report(root).read_text()
    assert "Positive control: does this study reproduce the direction?" in html
    assert html.count("data:image/png;base64") >= 3
    assert (root / "report_files" / "misalignment_by_condition" / "p_misaligned_by_condition.png").is_file()
