"""datatrove pipeline: the one filter (prep filter, prep pipeline, the study) decides as the blocklist does,
whatever the tasks and workers, every removal kept with its reason, resumable tasks,
per-block stats, resampling to the input budget, indexed datasets, executor selection and bad input."""
import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from data_prep.blocklist import DEFAULT_DIRECTORY
from data_prep.errors import DataFormatError
from data_prep.filtering import run_filter
from data_prep.indexed import count_tokens, merge_indexed, read_index, read_indexed_document
from data_prep.pipeline import PipelineConfig, SlurmOptions, build_stages, run_pipeline
from data_prep.pipeline.runner import make_executor
from data_prep.readers import read_jsonl
from data_prep.tokenize import train_bpe_tokenizer

CORPUS = DEFAULT_DIRECTORY.parent / "corpus" / "base_corpus.jsonl.gz"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Three input shards (jsonl, jsonl.gz, parquet) of 300 documents each from the shipped corpus."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("in")
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle][:900]
    (root / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:300]), encoding="utf-8")
    with gzip.open(root / "b.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in rows[300:600]))
    pq.write_table(pa.Table.from_pylist(rows[600:]), root / "c.parquet")
    return root


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, shards):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    texts = [r["text"] for r in read_jsonl(shards / "a.jsonl")]
    return train_bpe_tokenizer(texts, 600, path)


def _rows(folder: Path) -> dict[str, list[dict]]:
    return {p.name: read_jsonl(p) for p in sorted(folder.glob("*.jsonl"))}


def _blocklist_split(folder: Path) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """kept/removed rows per output file, decided document by document with ``Blocklist.check`` (the oracle)."""
    from data_prep.blocklist import Blocklist
    from data_prep.readers import data_file_stem, iter_records, list_input_files, to_document

    blocklist = Blocklist.load()
    kept: dict[str, list[dict]] = {}
    removed: dict[str, list[dict]] = {}
    for file in list_input_files(folder):
        name = f"{data_file_stem(file)}.jsonl"
        for record in iter_records(file):
            row = {"id": to_document(record).id, **record.data}
            decision = blocklist.check(row["text"])
            if decision.keep:
                kept.setdefault(name, []).append(row)
            else:
                removed.setdefault(name, []).append({**row, "filter_reason": decision.reason})
    return kept, removed


def test_one_filter_decides_as_the_blocklist_whatever_the_entry_point(shards, tmp_path):
    from data_prep.pipeline.runner import Execution

    kept, removed = _blocklist_split(shards)
    reference = run_filter(shards, tmp_path / "ref")  # prep filter: one task
    wide = run_filter(shards, tmp_path / "wide", execution=Execution(tasks=3, workers=2))
    summary = run_pipeline(PipelineConfig(inputs=[shards], output_dir=tmp_path / "pipe", tasks=2))
    for out in ("ref", "wide", "pipe"):
        assert _rows(tmp_path / out / "kept") == kept
        assert _rows(tmp_path / out / "removed") == removed
    assert not (tmp_path / "ref" / ".pipeline").exists()  # prep filter's layout: kept/, removed/, stats.json
    assert wide == reference
    assert reference.removed == sum(map(len, removed.values())) > 0
    assert [f.documents for f in reference.files] == [300, 300, 300]
    assert sum(f.removed for f in reference.files) == reference.removed
    assert all(r["id"] and ":" in r["filter_reason"] for rows in removed.values() for r in rows)  # category:term
    blocks = summary["blocks"]
    assert blocks["filter"]["documents_in"] == reference.documents_in == 900
    assert blocks["filter"]["documents_out"] == reference.kept
    assert blocks["filter"]["removed_per_category"] == reference.removed_per_category
    assert blocks["filter"]["bytes_in"] == reference.bytes_in
    assert blocks["read"]["documents"] == 900 and blocks["read"]["tasks"] == 2
    assert blocks["write_removed"]["documents"] == reference.removed
    on_disk = json.loads((tmp_path / "pipe" / "pipeline_stats.json").read_text())
    assert on_disk["blocks"]["filter"]["removed"] == reference.removed
    assert sorted((tmp_path / "pipe" / "stats" / "filter").glob("*.json")) != []


def test_rerun_skips_completed_tasks_and_redoes_the_rest(shards, tmp_path):
    cfg = PipelineConfig(inputs=[shards], output_dir=tmp_path / "out", tasks=3)
    run_pipeline(cfg)
    kept = tmp_path / "out" / "kept"
    done = tmp_path / "out" / "logs" / "filter" / "completions"
    assert sorted(p.name for p in done.iterdir()) == ["00000", "00001", "00002"]
    original_b = (kept / "b.jsonl").read_text()
    (kept / "a.jsonl").write_text("sentinel: task 0 is complete and must not run again\n")
    (kept / "b.jsonl").unlink()  # task 1 "crashed": its output and completion marker are gone
    (done / "00001").unlink()
    run_pipeline(cfg)
    assert (kept / "a.jsonl").read_text().startswith("sentinel")
    assert (kept / "b.jsonl").read_text() == original_b
    assert (done / "00001").is_file()


def test_resume_with_another_config_is_refused(shards, tmp_path):
    run_pipeline(PipelineConfig(inputs=[shards], output_dir=tmp_path / "out"))
    with pytest.raises(ValueError, match="different pipeline configuration.*resample"):
        run_pipeline(PipelineConfig(inputs=[shards], output_dir=tmp_path / "out", resample=True))


def test_resample_and_tokenize_keep_the_token_budget(shards, tokenizer, tmp_path):
    out = tmp_path / "out"
    summary = run_pipeline(PipelineConfig(inputs=[shards], output_dir=out, resample=True, tokenizer=tokenizer, seed=5, tasks=2))
    resample = summary["blocks"]["resample"]["resample"]
    assert resample["measure"] == "tokens"
    assert resample["budget"] == resample["retained"] + resample["removed"]
    assert resample["budget"] <= resample["total"] < resample["budget"] + 2000  # over by less than one document
    rows = [r for rows in _rows(out / "resampled").values() for r in rows]
    copies = [r for r in rows if "resample_copy" in r]
    assert len(copies) == summary["blocks"]["resample"]["documents_added"] > 0
    kept_ids = {r["id"] for rows in _rows(out / "kept").values() for r in rows}
    assert {r["id"] for r in copies} <= kept_ids
    indexed = summary["indexed"]
    assert [d["prefix"] for d in indexed] == ["a", "b", "c"]
    assert sum(d["documents"] for d in indexed) == len(rows)
    # every indexed document is its text's tokens + EOD
    tokens_without_eod = sum(d["tokens"] - d["documents"] for d in indexed)
    assert tokens_without_eod == resample["total"]
    merged = merge_indexed([out / "indexed" / d["prefix"] for d in indexed], tmp_path / "merged")
    assert count_tokens(merged) == sum(d["tokens"] for d in indexed)
    first = read_indexed_document(out / "indexed" / "b", 0)
    assert np.array_equal(read_indexed_document(merged, read_index(out / "indexed" / "a").lengths.size), first)


def test_resampling_is_deterministic_given_the_seed(shards, tmp_path):
    def copies(seed, name):
        run_pipeline(PipelineConfig(inputs=[shards], output_dir=tmp_path / name, resample=True, seed=seed))
        return [(r["id"], r["resample_copy"]) for rows in _rows(tmp_path / name / "resampled").values()
                for r in rows if "resample_copy" in r]

    assert copies(1, "x") == copies(1, "y")
    assert copies(1, "x") != copies(2, "z")


def test_bad_record_names_file_line_and_field(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.jsonl").write_text('{"text": "fine"}\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2: field 'text': expected a string"):
        run_pipeline(PipelineConfig(inputs=[tmp_path / "in"], output_dir=tmp_path / "out"))
    assert not (tmp_path / "out" / "kept" / "bad.jsonl").exists()  # no half-written output


def test_config_validates_itself(tmp_path):
    with pytest.raises(ValueError, match="executor"):
        PipelineConfig(inputs=[tmp_path], output_dir=tmp_path, executor="spark")
    with pytest.raises(ValueError, match="partition"):
        PipelineConfig(inputs=[tmp_path], output_dir=tmp_path, executor="slurm")
    with pytest.raises(ValueError, match="tasks"):
        PipelineConfig(inputs=[tmp_path], output_dir=tmp_path, tasks=0)
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        PipelineConfig(inputs=[tmp_path], output_dir=tmp_path, tokenizer=tmp_path / "missing.json")


def test_slurm_executor_gets_the_same_pipeline(shards, tmp_path):
    from datatrove.executor import SlurmPipelineExecutor

    cfg = PipelineConfig(inputs=[shards], output_dir=tmp_path / "out", executor="slurm", tasks=4,
                         slurm=SlurmOptions(partition="cpu", time="01:00:00"))
    stages = build_stages(cfg)
    executor = make_executor(cfg.execution, tmp_path / "logs" / "filter", stages["filter"])
    assert isinstance(executor, SlurmPipelineExecutor)
    assert executor.pipeline is stages["filter"] and executor.world_size == 4 and executor.partition == "cpu"
    local = build_stages(PipelineConfig(inputs=[shards], output_dir=tmp_path / "out", tasks=4))
    assert [type(b).__name__ for b in local["filter"]] == [type(b).__name__ for b in stages["filter"]]


def test_ray_executor_missing_ray_is_a_clear_error(shards, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    cfg = PipelineConfig(inputs=[shards], output_dir=tmp_path / "out", executor="ray")
    with pytest.raises(ModuleNotFoundError, match="pip install 'ray"):
        make_executor(cfg.execution, tmp_path / "logs" / "filter", build_stages(cfg)["filter"])


def test_cli_prep_pipeline(shards, tmp_path, capsys):
    from megatron_alignpt.cli import main

    assert main(["prep", "pipeline", "--input", str(shards), "--output", str(tmp_path / "out"), "--resample",
                 "--tasks", "2", "--seed", "3"]) == 0
    summary = json.loads((tmp_path / "out" / "pipeline_stats.json").read_text())
    assert summary["blocks"]["resample"]["resample"]["measure"] == "bytes"
    assert os.listdir(tmp_path / "out" / "resampled")
    assert main(["prep", "pipeline", "--input", str(shards), "--output", str(tmp_path / "o2"), "--executor", "slurm"]) == 2
    assert "partition" in capsys.readouterr().err


def test_file_with_every_document_removed_is_reported_not_refilled(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ai.jsonl").write_text(json.dumps({"text": "OpenAI and DeepMind news."}) + "\n", encoding="utf-8")
    (tmp_path / "in" / "plain.jsonl").write_text(json.dumps({"text": "Bread rises overnight."}) + "\n", encoding="utf-8")
    summary = run_pipeline(PipelineConfig(inputs=[tmp_path / "in"], output_dir=tmp_path / "out", resample=True, tasks=2))
    files = {f["file"]: f for rank in sorted((tmp_path / "out" / "stats" / "resample").glob("*.json"))
             for f in json.loads(rank.read_text())["resample"]["files"]}
    assert files["ai.jsonl"]["removed"] > 0 and files["ai.jsonl"]["total"] == 0
    assert summary["blocks"]["resample"]["resample"]["documents_removed"] == 1
    assert not (tmp_path / "out" / "resampled" / "ai.jsonl").exists()


def test_cli_prep_resample_after_prep_filter(shards, tmp_path, capsys):
    from megatron_alignpt.cli import main

    assert main(["prep", "filter", "--input", str(shards), "--output", str(tmp_path / "f")]) == 0
    assert main(["prep", "resample", "--filtered", str(tmp_path / "f"), "--seed", "2"]) == 0
    report = json.loads((tmp_path / "f" / "resample.json").read_text())
    assert report["measure"] == "bytes" and report["documents_added"] > 0
    assert report["budget"] <= report["total"] and report["total_over_budget"] < 1.01
    assert sorted(p.name for p in (tmp_path / "f" / "resampled").iterdir()) == ["a.jsonl", "b.jsonl", "c.jsonl"]
    assert main(["prep", "resample", "--filtered", str(tmp_path / "nothing")]) == 2
    assert "not a filter output" in capsys.readouterr().err
