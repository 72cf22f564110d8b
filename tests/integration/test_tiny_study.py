"""End to end: the whole tiny study (4 headline conditions + a Mid and a CPT one x pretrain/midtrain[/CPT]/SFT/DPO
x evals) on shipped data, with the robustness branch (tampering over seeds, an EM fine-tune and probe, TRAIT)."""
import dataclasses
import json
import subprocess
import sys

import pandas as pd
import pytest

from data_prep.eval_suite import load_suite
from data_prep.indexed import read_index, read_indexed_document
from data_prep.manifest import BlendManifest
from data_prep.readers import read_jsonl
from data_prep.tokenize import load_tokenizer
from megatron_alignpt.study.plan import StudyLayout, pretraining_stages
from recipes import get_recipe
from tests.unit.synthetic_direction import direction_score

# the synthetic documents each condition of the smoke study upsamples, and at which stages (SPEC section 4)
SYNTHETIC = {"align_upsampled": ("aligned", ("pretrain", "midtrain")), "misalign_upsampled": ("misaligned", ("pretrain", "midtrain")),
             "align_mid": ("aligned", ("midtrain",)), "misalign_cpt": ("misaligned", ("cpt",))}


def _check_direction_reaches_training(out, cfg) -> None:
    """The question file's misaligned option is the one every eval row scores as misaligned; the synthetic
    documents take their direction's action; each upsampled condition's blend holds exactly its
    direction's documents (decoded from the tokens), and its training stage reads that blend."""
    items = {i.question_id: i for i in load_suite(cfg.data.eval_suite)}
    for rows_file in (out / "evals").glob("*/*/items.jsonl"):
        for row in read_jsonl(rows_file):
            m = items[row["question_id"]].misaligned_choice
            assert row["misaligned_letter"] == ("AB"[m] if row["order"] == "original" else "AB"[1 - m]), (rows_file, row)
            assert row["split"] == items[row["question_id"]].split

    documents = {}
    for direction in ("aligned", "misaligned"):
        docs = list(read_jsonl(out / "data" / "synthetic" / f"{direction}.jsonl"))
        documents[direction] = sorted(d["text"] for d in docs)
        assert {items[d["seed_question_id"]].split for d in docs} == {"articles"}
        scores = []
        for d in docs:
            item = items[d["seed_question_id"]]
            taken, other = (item.aligned_text, item.misaligned_text) if direction == "aligned" else (item.misaligned_text, item.aligned_text)
            scores.append(direction_score(d["text"], taken, other))
        decided = [s for s in scores if s != 0]  # the options of some items share their opening words
        assert len(decided) > 0.8 * len(docs) and sum(s > 0 for s in decided) > 0.9 * len(decided), (direction, scores)

    tokenizer = load_tokenizer(out / "data" / "tokenizer.json")
    layout = StudyLayout(cfg)
    for cond in cfg.conditions:
        direction, stages = SYNTHETIC.get(cond.name, (None, ()))
        for stage in pretraining_stages(cfg, cond):
            trained = json.loads((layout.stage_dir(cond.name, stage) / "config.json").read_text())  # maybe shared
            synthetic = [e for e in BlendManifest.from_json(trained["data"]).entries if e.synthetic]
            if stage not in stages:
                assert not synthetic, (cond.name, stage)
                continue
            (entry,) = synthetic
            count = int(read_index(entry.prefix).lengths.size)
            texts = sorted(tokenizer.decode(read_indexed_document(entry.prefix, i).tolist(), skip_special_tokens=True)
                           for i in range(count))
            assert texts == documents[direction], (cond.name, stage)


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _check_robustness(table: pd.DataFrame, out, tmp_path) -> None:
    """Tampering runs continue two conditions' post-trained models over two seeds with a checkpoint every two
    steps, each checkpoint scored and in the results with its seed and tokens; the EM fine-tune is probed; the
    TRAIT-style questions are scored; the report shows the tampering figure and the EM and personality tables;
    a tampering run interrupted mid-way resumes to exactly the uninterrupted run's losses."""
    tamper = table[table["stage"] == "tamper"]
    assert set(tamper["condition"]) == {"unfiltered", "align_upsampled"} and set(tamper["scoring"]) == {"cloze"}
    assert set(tamper["tamper"]) == {"benign", "em_finance"}
    benign = tamper[tamper["tamper"] == "benign"]
    # 4 steps of 4 x 128 tokens, a checkpoint every 2 steps: tokens 1024 and 2048, for each of two seeds
    assert set(benign["tamper_seed"]) == {1, 2} and set(benign["tamper_tokens"]) == {1024, 2048}
    curve = pd.read_parquet(out / "results" / "tampering.parquet")
    points = curve[(curve["tamper"] == "benign") & (curve["tamper_tokens"] > 0)]
    assert set(points["n_seeds"]) == {2} and points["rate"].between(0, 1).all() and (points["se"] > 0).all()
    assert (curve["tamper_tokens"] == 0).any()  # the post-trained model, scored alike, is the curve's first point
    em = pd.read_parquet(out / "results" / "em_probe.parquet")
    assert len(set(em["condition"])) == 6 and set(em["stage"]) == {"post", "tamper"}
    assert set(em.loc[em["stage"] == "tamper", "tamper"]) == {"em_finance"} and (em["n"] == 30).all()
    personality = pd.read_parquet(out / "results" / "personality.parquet")
    assert set(personality["stage"]) == {"base", "post"} and personality["trait"].nunique() == 8
    html = (out / "report.html").read_text()
    assert "Tampering: does the data condition" in html and "Emergent misalignment: the free-form probe" in html
    assert "Personality: TRAIT-style trait rates" in html

    from megatron_alignpt.study.plan import build_plan
    from megatron_alignpt.train.trainer import run_stage

    plan = build_plan(get_recipe("tiny_cpu_robustness_smoke")(out))
    step = plan.step("align_upsampled.tamper_benign_seed2")
    again = dataclasses.replace(plan.train_config(step), output_dir=tmp_path / "resumed")
    assert run_stage(again, stop_after=3).iteration == 3  # the last checkpoint is at step 2
    assert run_stage(again).iteration == 4
    straight, resumed = _rows(plan.checkpoint_of(step)), _rows(tmp_path / "resumed")
    assert [r["iteration"] for r in resumed] == [1, 2, 3, 4]
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in straight], rel=0, abs=1e-6)
    assert [r["lr"] for r in resumed] == [r["lr"] for r in straight]


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path):
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "megatron_alignpt.cli", "study", "run", "--recipe", "tiny_cpu_robustness_smoke", "--output-dir", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]

    everything = pd.read_parquet(out / "results" / "misalignment.parquet")
    table = everything[everything["stage"] != "tamper"]
    conditions = {"unfiltered", "filtered", "misalign_upsampled", "align_upsampled", "align_mid", "misalign_cpt"}
    assert set(table["condition"]) == conditions
    assert set(table["stage"]) == {"base", "post"} and table["tamper"].isna().all()
    assert set(table["split"]) == {"articles", "textbook"}
    assert table["misalignment_rate"].between(0, 1).all()
    _check_direction_reaches_training(out, get_recipe("tiny_cpu_robustness_smoke")(out))
    # conditions x (base logprob, base cloze, post logprob, post cloze, post generate) x splits x formats (one system prompt)
    assert len(table) == 6 * 5 * 2 * 2
    assert set(table.loc[table["stage"] == "post", "scoring"]) == {"logprob", "cloze", "generate"}
    assert set(table.loc[table["stage"] == "base", "scoring"]) == {"logprob", "cloze"}
    cloze = table[table["scoring"] == "cloze"]
    assert cloze["mean_margin"].notna().all() and cloze["misalignment_rate_per_char"].tolist() == cloze["misalignment_rate"].tolist()
    verdicts = pd.read_parquet(out / "results" / "verdicts.parquet")
    direction = verdicts[(verdicts["lower"] == "align_upsampled") & (verdicts["higher"] == "misalign_upsampled")]
    assert {"cloze", "logprob"} <= set(direction["scoring"]) and set(direction["split"]) == {"articles", "textbook"}
    assert (out / "results" / "paired.parquet").is_file() and (out / "data" / "synthetic" / "overlap.json").is_file()

    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "Misalignment by data condition" in html
    assert html.index("Positive control") < html.index("Misalignment by data condition")
    assert "align_upsampled &lt; misalign_upsampled on articles: " in html

    _check_robustness(everything, out, tmp_path)

    cfg = get_recipe("tiny_cpu_robustness_smoke")(out)
    layout = StudyLayout(cfg)
    for cond in cfg.conditions:
        for stage in pretraining_stages(cfg, cond) + ("sft", "dpo"):
            run = layout.stage_dir(cond.name, stage)
            prov = json.loads((run / "provenance.json").read_text())
            assert prov["code"]["git_commit"] is None or len(prov["code"]["git_commit"]) == 40
            assert prov["data_sha256"], f"{run}: data hashes missing"
            assert (run / "config.json").is_file() and (run / "checkpoints" / "latest.txt").is_file()

    # Late insertion reuses the unfiltered checkpoints instead of training them again.
    assert not (out / "models" / "misalign_cpt" / "midtrain").exists() and (out / "models" / "misalign_cpt" / "cpt").is_dir()
    assert not (out / "models" / "align_mid" / "pretrain").exists()
    cpt_config = json.loads((out / "models" / "misalign_cpt" / "cpt" / "config.json").read_text())
    assert cpt_config["init_from"].endswith("unfiltered/midtrain")
    cpt_manifest = json.loads((out / "data" / "manifests" / "misalign_cpt.cpt.json").read_text())
    assert any(e["synthetic"] for e in cpt_manifest["entries"])

    # The filtered condition trains on less AI discourse: its manifest names the filtered corpus.
    manifest = json.loads((out / "data" / "manifests" / "filtered.pretrain.json").read_text())
    assert any("filtered" in e["name"] for e in manifest["entries"])
    removed = (out / "data" / "filtered" / "pretrain" / "stats.json").read_text()
    assert json.loads(removed)["removed"] > 0

    # A rerun finds every step done and trains nothing.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    assert "iter " not in again.stdout and again.stdout.count("skipped") == len(list((out / "steps").glob("*.done")))
