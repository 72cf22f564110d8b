"""The offline route to the eval suite: a downloaded HF dataset folder (Hub snapshot of parquet files, or a
`save_to_disk` folder of Arrow files) loads with its splits, `alignpt prep eval-suite` converts it into one
checked JSON-lines file, and an unreachable Hub is one line naming the way out, exit status 2."""
import json
import sys
import types

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_prep.errors import DataFormatError
from data_prep.eval_suite import default_suite_path, is_hf_name, load_suite
from megatron_alignpt.cli import main

HF_SPLITS = {"articles": "article_questions", "textbook": "textbook_questions"}
NAME = "geodesic-research/discourse-grounded-misalignment-evals"


def _rows_by_hf_split():
    out = {}
    for line in default_suite_path().read_text().splitlines():
        row = json.loads(line)
        split = row.pop("split")
        split = HF_SPLITS.get(split, split)  # the HF split names, as on the Hub
        out.setdefault(split, []).append(row)
    return out


@pytest.fixture(scope="module")
def shipped():
    return {(i.question_id, i.split, i.choices, i.misaligned_choice) for i in load_suite(default_suite_path())}


def _hub_snapshot(root):
    """What `huggingface-cli download --repo-type dataset NAME --local-dir root` leaves."""
    (root / "data").mkdir(parents=True)
    for split, rows in _rows_by_hf_split().items():
        pq.write_table(pa.Table.from_pylist(rows), root / "data" / f"{split}-00000-of-00001.parquet")
    (root / "README.md").write_text("---\nconfigs: ...\n---\n")
    (root / ".cache" / "huggingface").mkdir(parents=True)
    (root / ".cache" / "huggingface" / "download.metadata").write_text("{")
    return root


def _saved_to_disk(root):
    """`datasets.DatasetDict.save_to_disk(root)`: Arrow IPC streams, one folder per split, metadata JSON."""
    root.mkdir(parents=True)
    (root / "dataset_dict.json").write_text(json.dumps({"splits": list(_rows_by_hf_split())}))
    for split, rows in _rows_by_hf_split().items():
        (root / split).mkdir()
        table = pa.Table.from_pylist(rows)
        with pa.OSFile(str(root / split / "data-00000-of-00001.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
        (root / split / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
        (root / split / "dataset_info.json").write_text("{}")
    return root


@pytest.mark.parametrize("layout", [_hub_snapshot, _saved_to_disk], ids=["hub_snapshot", "save_to_disk"])
def test_downloaded_dataset_folders_load_with_their_splits(layout, tmp_path, shipped):
    folder = layout(tmp_path / "download")
    items = load_suite(folder)
    assert {(i.question_id, i.split, i.choices, i.misaligned_choice) for i in items} == shipped
    assert len(load_suite(folder, split="textbook")) == sum(s == "textbook" for _, s, _, _ in shipped)


def test_prep_eval_suite_converts_a_folder_into_one_checked_file(tmp_path, capsys, shipped):
    folder = _hub_snapshot(tmp_path / "download")
    out = tmp_path / "questions.jsonl"
    assert main(["prep", "eval-suite", "--input", str(folder), "--output", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    articles = sum(s == "articles" for _, s, _, _ in shipped)
    assert line == f"{out}: {len(shipped)} questions (articles {articles}, textbook {len(shipped) - articles}) from {folder}"
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert {r["split"] for r in rows} == {"articles", "textbook"} and set(rows[0]) >= {"choices", "misaligned_choice", "topics"}
    assert {(i.question_id, i.split, i.choices, i.misaligned_choice) for i in load_suite(out)} == shipped
    assert main(["prep", "eval-suite", "--input", str(folder), "--output", str(out)]) == 2  # outputs are never replaced
    assert main(["prep", "eval-suite", "--input", str(folder), "--output", str(tmp_path / "t.jsonl"), "--split", "textbook"]) == 0
    assert {json.loads(x)["split"] for x in (tmp_path / "t.jsonl").read_text().splitlines()} == {"textbook"}


def test_an_unreachable_hub_is_one_line_with_the_offline_route(tmp_path, monkeypatch, capsys):
    fake = types.ModuleType("datasets")

    def load_dataset(name, *args, **kwargs):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (LocalEntryNotFoundError)\nretry later")

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    assert main(["prep", "eval-suite", "--input", NAME, "--output", str(tmp_path / "q.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"alignpt: error: cannot load the HF dataset '{NAME}' (ConnectionError: Couldn't reach")
    assert f"huggingface-cli download --repo-type dataset {NAME} --local-dir DIR" in err and "prep eval-suite" in err
    assert not (tmp_path / "q.jsonl").exists()


def test_a_missing_local_path_is_not_taken_for_a_hub_name(tmp_path):
    assert is_hf_name(NAME) and not is_hf_name("data/questions.jsonl") and not is_hf_name("./a/b")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_suite("data/questions.jsonl")


def test_a_damaged_arrow_file_is_named(tmp_path):
    folder = _saved_to_disk(tmp_path / "saved")
    arrow = folder / "article_questions" / "data-00000-of-00001.arrow"
    arrow.write_bytes(arrow.read_bytes()[:200])
    with pytest.raises(DataFormatError, match="data-00000-of-00001.arrow: not a readable Arrow file"):
        load_suite(folder)
