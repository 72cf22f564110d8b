"""End to end: the whole tiny study (4 headline conditions + a Mid and a CPT one x pretrain/midtrain[/CPT]/SFT/DPO
x evals) on shipped data."""
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


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path):
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "megatron_alignpt.cli", "study", "run", "--recipe", "tiny_cpu_smoke", "--output-dir", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]

    table = pd.read_parquet(out / "results" / "misalignment.parquet")
    conditions = {"unfiltered", "filtered", "misalign_upsampled", "align_upsampled", "align_mid", "misalign_cpt"}
    assert set(table["condition"]) == conditions
    assert set(table["stage"]) == {"base", "post"}
    assert set(table["split"]) == {"articles", "textbook"}
    assert table["misalignment_rate"].between(0, 1).all()
    _check_direction_reaches_training(out, get_recipe("tiny_cpu_smoke")(out))
    # conditions x (base logprob, base cloze, post logprob, post generate) x splits x formats (one system prompt)
    assert len(table) == 6 * 4 * 2 * 2
    assert set(table.loc[table["stage"] == "post", "scoring"]) == {"logprob", "generate"}
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

    cfg = get_recipe("tiny_cpu_smoke")(out)
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
