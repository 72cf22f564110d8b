"""Stage-aware manifests: insertion stage x training stage, CPT natural data, the repetition cap, and the
study's filtered datasets built from resampled documents."""
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from data_prep.blocklist import DEFAULT_DIRECTORY
from data_prep.indexed import IndexedDatasetWriter, count_tokens
from data_prep.manifest import BlendManifest, DatasetEntry, build_condition_manifest
from megatron_alignpt.study.config import ConditionSpec, DataPlan
from megatron_alignpt.study.data_steps import StageData, StudyData

SYNTHETIC_TOKENS = 1000


def _dataset(prefix: Path, tokens: int, documents: int = 10) -> None:
    with IndexedDatasetWriter(prefix, 512) as writer:
        for i in range(documents):
            writer.add_document(np.full(tokens // documents, 2 + i % 100))


def _study(tmp_path: Path, corpora=("pretrain",), doses=(0.01, 0.01, 0.01), **plan) -> StudyData:
    stages = {stage: StageData(tmp_path / f"{stage}.jsonl" if stage in corpora and stage != "pretrain" else None, dose)
              for stage, dose in zip(("pretrain", "midtrain", "cpt"), doses)}
    data = StudyData(tmp_path / "data", DataPlan(corpus=tmp_path / "pretrain.jsonl", eval_suite="unused", **plan), stages)
    for corpus in corpora:
        for base in ("unfiltered", "filtered"):
            _dataset(data.prefix(f"{corpus}_{base}"), 100_000)
    for direction in ("aligned", "misaligned"):
        _dataset(data.prefix(f"synthetic_{direction}"), SYNTHETIC_TOKENS)
    data.tokenizer.parent.mkdir(parents=True, exist_ok=True)
    data.tokenizer.write_text("{}")
    return data


EXPECTED = {  # insertion -> stages that carry the synthetic documents
    "e2e": {"pretrain", "midtrain"},
    "mid": {"midtrain"},
    "cpt": {"cpt"},
}


@pytest.mark.parametrize("insertion", ["e2e", "mid", "cpt"])
@pytest.mark.parametrize("stage", ["pretrain", "midtrain", "cpt"])
def test_insertion_by_stage(tmp_path, insertion, stage):
    data = _study(tmp_path, doses=(0.01, 0.02, 0.03))
    cond = ConditionSpec(name="align", base="filtered", synthetic="aligned", insertion=insertion)
    data.write_manifests([cond], {stage: 10_000})
    manifest = BlendManifest.from_json(data.manifest("align", stage))
    inserted = stage in EXPECTED[insertion]
    assert manifest.stage == stage and manifest.stage_tokens == 10_000
    assert manifest.dose == pytest.approx({"pretrain": 0.01, "midtrain": 0.02, "cpt": 0.03}[stage] if inserted else 0.0)
    assert [e.name for e in manifest.entries] == ["pretrain_filtered"] + (["synthetic_aligned"] if inserted else [])
    assert sum(e.weight for e in manifest.entries) == pytest.approx(1.0)


def test_natural_conditions_never_get_synthetic_data(tmp_path):
    data = _study(tmp_path)
    data.write_manifests([ConditionSpec(name="unfiltered"), ConditionSpec(name="filtered", base="filtered")],
                         {"pretrain": 1000, "midtrain": 1000, "cpt": 1000})
    for name in ("unfiltered", "filtered"):
        for stage in ("pretrain", "midtrain", "cpt"):
            manifest = BlendManifest.from_json(data.manifest(name, stage))
            assert manifest.dose == 0 and [e.name for e in manifest.entries] == [f"pretrain_{name}"]


def test_default_writes_pretrain_and_midtrain_only(tmp_path):
    data = _study(tmp_path)
    data.write_manifests([ConditionSpec(name="align", synthetic="aligned")])
    assert sorted(p.name for p in (data.root / "manifests").iterdir()) == ["align.midtrain.json", "align.pretrain.json"]


@pytest.mark.parametrize("corpora, expected", [
    (("pretrain",), "pretrain"),
    (("pretrain", "midtrain"), "midtrain"),
    (("pretrain", "midtrain", "cpt"), "cpt"),
    (("pretrain", "cpt"), "cpt"),
])
def test_cpt_natural_data(tmp_path, corpora, expected):
    data = _study(tmp_path, corpora=corpora)
    cond = ConditionSpec(name="mis", synthetic="misaligned", insertion="cpt")
    data.write_manifests([cond], {"cpt": 10_000, "midtrain": 10_000})
    assert BlendManifest.from_json(data.manifest("mis", "cpt")).entries[0].name == f"{expected}_unfiltered"
    midtrain = "midtrain" if "midtrain" in corpora else "pretrain"
    assert BlendManifest.from_json(data.manifest("mis", "midtrain")).entries[0].name == f"{midtrain}_unfiltered"


def test_impossible_dose_names_condition_stage_and_fixes(tmp_path):
    data = _study(tmp_path, doses=(0.01, 0.01, 0.1), max_synthetic_repetitions=5)
    cond = ConditionSpec(name="align_cpt", synthetic="aligned", insertion="cpt")
    data.write_manifests([cond], {"cpt": 50_000})  # needs 5,000 = 1,000 x 5: allowed, exactly at the cap
    with pytest.raises(ValueError) as err:
        data.write_manifests([cond], {"cpt": 50_001})
    message = str(err.value)
    for part in ("'align_cpt'", "'cpt'", "5,000 synthetic tokens", "1,000 tokens", "5 repetitions",
                 "lower the dose", "data.max_synthetic_repetitions", "generate more documents"):
        assert part in message, message
    data.write_manifests([cond], {"pretrain": 10**9, "midtrain": 10**9})  # no insertion there: no check


def test_build_condition_manifest_keeps_its_old_signature():
    base = DatasetEntry("base", "b", 1.0, 5000, 5, "x", "y")
    synthetic = DatasetEntry("syn", "s", 1.0, 100, 2, "x", "y")
    manifest = build_condition_manifest("align_upsampled", "cpt", [base], synthetic, 0.05)
    assert manifest.stage == "cpt" and manifest.stage_tokens is None and manifest.dose == pytest.approx(0.05)
    with pytest.raises(ValueError, match="max_repetitions"):
        build_condition_manifest("align_upsampled", "cpt", [base], synthetic, 0.05, stage_tokens=10, max_repetitions=0.5)
    with pytest.raises(ValueError, match="stage_tokens"):
        build_condition_manifest("align_upsampled", "cpt", [base], synthetic, 0.05, stage_tokens=-1, max_repetitions=2)


def test_filtered_datasets_are_resampled_to_the_unfiltered_budget(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    with gzip.open(DEFAULT_DIRECTORY.parent / "corpus" / "base_corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        corpus.write_text("".join(handle.readline() for _ in range(400)), encoding="utf-8")
    data = StudyData(tmp_path / "data", DataPlan(corpus=corpus, eval_suite="unused", tokenizer_vocab_size=400))
    for direction in ("aligned", "misaligned"):
        data.synthetic_file(direction).parent.mkdir(parents=True, exist_ok=True)
        data.synthetic_file(direction).write_text(json.dumps({"text": f"a short {direction} document"}) + "\n")
    data.filter_corpora()
    data.build_tokenizer()
    data.tokenize_all()
    report = json.loads(data.resample_report("pretrain").read_text())
    assert report["measure"] == "tokens" and report["documents_removed"] > 0 and report["documents_added"] > 0
    unfiltered, filtered = count_tokens(data.prefix("pretrain_unfiltered")), count_tokens(data.prefix("pretrain_filtered"))
    # both include one EOD per document; the text tokens match the budget to within one document
    text_tokens = filtered - (report["documents_retained"] + report["documents_added"])
    assert text_tokens == report["total"] >= report["budget"] == unfiltered - 400
    assert filtered - unfiltered < 1000
