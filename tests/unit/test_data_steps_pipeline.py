"""The study's data steps on datatrove: sharded tokenize and resample steps merge into exactly what one
process writes, reruns skip finished shards, an interrupted run resumes, changed settings start over, bad
input names file, line and field and leaves no dataset, and the study config drives the executor."""
import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_prep.blocklist import DEFAULT_DIRECTORY
from data_prep.errors import DataFormatError
from data_prep.filtering import filter_files, run_filter
from data_prep.indexed import bin_path, idx_path
from data_prep.pipeline.blocks import IndexedTokenizerStep
from data_prep.pipeline.runner import Execution, SlurmOptions
from data_prep.pipeline.steps import StagePending, resample_and_tokenize, tokenize_files
from data_prep.readers import iter_documents, read_jsonl
from data_prep.resample import resample_filter_output
from data_prep.tokenize import tokenize_to_indexed, train_bpe_tokenizer

CORPUS = DEFAULT_DIRECTORY.parent / "corpus" / "base_corpus.jsonl.gz"
TWO_WORKERS = Execution(tasks=3, workers=2)


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def rows():
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line, _ in zip(handle, range(180))]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, rows):
    """Three files of 60 documents (some of them blocklisted)."""
    root = tmp_path_factory.mktemp("corpus")
    for i, name in enumerate(("a", "b", "c")):
        _write(root / f"{name}.jsonl", rows[60 * i:60 * (i + 1)])
    return root


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, rows):
    return train_bpe_tokenizer([r["text"] for r in rows], 600, tmp_path_factory.mktemp("tok") / "tokenizer.json")


def _same_dataset(a: Path, b: Path) -> bool:
    return bin_path(a).read_bytes() == bin_path(b).read_bytes() and idx_path(a).read_bytes() == idx_path(b).read_bytes()


def _one_process(source: Path, tokenizer: Path, prefix: Path) -> Path:
    tokenize_to_indexed((d.text for d in iter_documents(source)), tokenizer, prefix)
    return prefix


def test_two_workers_write_shards_that_merge_into_the_one_process_dataset(corpus, tokenizer, tmp_path):
    record = tokenize_files(corpus, tokenizer, tmp_path / "indexed" / "x", tmp_path / "work", TWO_WORKERS)
    assert _same_dataset(tmp_path / "indexed" / "x", _one_process(corpus, tokenizer, tmp_path / "ref"))
    assert [r["shard"] for r in record["shards"]] == ["a", "b", "c"]  # one per input file, in input order
    assert sum(r["tokens"] for r in record["shards"]) == record["tokens"] > 0
    assert record["documents"] == 180 and not (tmp_path / "work" / "shards").exists()  # merged, then removed
    assert sorted(p.name for p in (tmp_path / "work" / "logs" / "tokenize" / "completions").iterdir()) == ["00000", "00001", "00002"]


def test_resample_step_equals_filter_then_resample_then_tokenize(corpus, tokenizer, tmp_path):
    run_filter(corpus, tmp_path / "ref")
    resample_filter_output(tmp_path / "ref", seed=3, tokenizer=tokenizer)
    _one_process(tmp_path / "ref" / "resampled", tokenizer, tmp_path / "ref_indexed")

    stats = filter_files(corpus, tmp_path / "f", tmp_path / "work_f")
    resample_and_tokenize(tmp_path / "f", tokenizer, 3, tmp_path / "filtered", tmp_path / "work_r", TWO_WORKERS)
    assert stats.removed > 0
    assert _same_dataset(tmp_path / "filtered", tmp_path / "ref_indexed")
    for name in ("a.jsonl", "b.jsonl", "c.jsonl"):
        assert read_jsonl(tmp_path / "f" / "resampled" / name) == read_jsonl(tmp_path / "ref" / "resampled" / name)
    for report in ("stats.json", "resample.json"):
        ours, ref = (json.loads((tmp_path / d / report).read_text()) for d in ("f", "ref"))
        assert ours == ref if report == "resample.json" else {k: v for k, v in ours.items() if k != "files"} == \
            {k: v for k, v in ref.items() if k != "files"}


def test_rerun_skips_finished_shards_and_an_interrupted_run_resumes(corpus, tokenizer, tmp_path, monkeypatch):
    ran: list[int] = []
    original = IndexedTokenizerStep.run

    def killed_at_rank_2(self, data, rank=0, world_size=1):
        ran.append(rank)
        if rank == 2:
            raise RuntimeError("killed")
        yield from original(self, data, rank, world_size)

    one_at_a_time = Execution(tasks=3, workers=1)  # in this process, so the patch applies
    prefix, work = tmp_path / "indexed" / "x", tmp_path / "work"
    monkeypatch.setattr(IndexedTokenizerStep, "run", killed_at_rank_2)
    with pytest.raises(RuntimeError, match="killed"):
        tokenize_files(corpus, tokenizer, prefix, work, one_at_a_time)
    assert not idx_path(prefix).exists() and not bin_path(prefix).exists()  # nothing that looks complete
    assert sorted(p.name for p in (work / "shards").glob("*.idx")) == ["a.idx", "b.idx"]

    def recording(self, data, rank=0, world_size=1):
        ran.append(rank)
        yield from original(self, data, rank, world_size)

    monkeypatch.setattr(IndexedTokenizerStep, "run", recording)
    ran.clear()
    tokenize_files(corpus, tokenizer, prefix, work, one_at_a_time)
    assert ran == [2]  # the finished shards were skipped
    assert _same_dataset(prefix, _one_process(corpus, tokenizer, tmp_path / "ref"))
    ran.clear()
    tokenize_files(corpus, tokenizer, prefix, work, one_at_a_time)
    assert ran == []
    assert _same_dataset(prefix, tmp_path / "ref")


def test_changed_settings_start_over(corpus, tokenizer, tmp_path):
    filter_files(corpus, tmp_path / "f", tmp_path / "work_f")
    resample_and_tokenize(tmp_path / "f", tokenizer, 1, tmp_path / "x", tmp_path / "work_r")
    first = bin_path(tmp_path / "x").read_bytes()
    resample_and_tokenize(tmp_path / "f", tokenizer, 2, tmp_path / "x", tmp_path / "work_r")
    resample_and_tokenize(tmp_path / "f", tokenizer, 2, tmp_path / "fresh", tmp_path / "work_fresh")
    assert bin_path(tmp_path / "x").read_bytes() != first
    assert _same_dataset(tmp_path / "x", tmp_path / "fresh")
    assert json.loads((tmp_path / "f" / "resample.json").read_text())["seed"] == 2


def test_bad_input_names_file_line_and_field_and_leaves_no_output(tmp_path, tokenizer):
    _write(tmp_path / "in" / "good.jsonl", [{"text": "Bread rises overnight."}])
    _write(tmp_path / "in" / "bad.jsonl", [{"text": "fine"}, {"text": 3}])
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2: field 'text': expected a string"):
        filter_files(tmp_path / "in", tmp_path / "f", tmp_path / "work_f", Execution(tasks=2, workers=2))
    assert not (tmp_path / "f" / "stats.json").exists() and not (tmp_path / "f" / "kept" / "bad.jsonl").exists()
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2: field 'text'"):
        tokenize_files(tmp_path / "in", tokenizer, tmp_path / "x", tmp_path / "work_t")
    assert not idx_path(tmp_path / "x").exists() and not bin_path(tmp_path / "x").exists()


def test_cli_prep_filter_bad_input_exits_2_naming_the_line(tmp_path, capsys):
    from megatron_alignpt.cli import main

    _write(tmp_path / "bad.jsonl", [{"text": "fine"}, {"txt": "no text"}])
    assert main(["prep", "filter", "--input", str(tmp_path / "bad.jsonl"), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2: field 'text': missing" in err and len(err.strip().splitlines()) == 1  # datatrove's logs: in files
    assert not (tmp_path / "out").exists()


def test_slurm_tasks_still_out_leave_the_step_pending(corpus, tokenizer, tmp_path, monkeypatch):
    import data_prep.pipeline.steps as steps

    class Submitted:
        def run(self):
            pass  # sbatch accepted the array; nothing has run yet

    monkeypatch.setattr(steps, "make_executor", lambda *args, **kwargs: Submitted())
    slurm = Execution(executor="slurm", tasks=3, workers=-1, slurm=SlurmOptions(partition="cpu"))
    with pytest.raises(StagePending, match="3 of 3 tasks not finished"):
        tokenize_files(corpus, tokenizer, tmp_path / "x", tmp_path / "work", slurm)
    assert not idx_path(tmp_path / "x").exists()


def test_a_waiting_slurm_step_goes_on_when_its_tasks_finish_and_fails_when_the_job_ends_short(corpus, tokenizer, tmp_path, monkeypatch):
    """A study's Slurm data-step job waits for the array it submitted (its dependents start when it ends)."""
    import data_prep.pipeline.steps as steps

    real, real_wait = steps.make_executor, steps.wait_for_slurm_tasks
    expected = tmp_path / "one"
    tokenize_files(corpus, tokenizer, expected, tmp_path / "work_one", Execution())
    local = Execution(tasks=3, workers=1)

    class Array:  # sbatch accepted the array; the "cluster" runs it while the step polls
        job_id = "4242"

        def __init__(self, execution, logging_dir, pipeline, depends=None):
            self.run_later = lambda: real(local, logging_dir, pipeline).run()

        def run(self):
            pass

    polls = []

    def fake_wait(logging_dir, tasks, job_id, poll_s, alive=None, sleep=None):
        polls.append((job_id, poll_s))
        return real_wait(logging_dir, tasks, job_id, poll_s, alive=lambda _: True,
                                          sleep=lambda _: arrays[-1].run_later())

    arrays = []
    monkeypatch.setattr(steps, "make_executor", lambda *a, **k: arrays.append(Array(*a, **k)) or arrays[-1])
    monkeypatch.setattr(steps, "wait_for_slurm_tasks", fake_wait)
    slurm = Execution(executor="slurm", tasks=3, workers=-1, slurm=SlurmOptions(partition="cpu"), wait_s=30)
    tokenize_files(corpus, tokenizer, tmp_path / "x", tmp_path / "work", slurm)
    assert polls == [("4242", 30)] and idx_path(tmp_path / "x").is_file()
    assert bin_path(tmp_path / "x").read_bytes() == bin_path(expected).read_bytes()

    # the job left the queue with a task never done: an error naming the job, and no dataset
    monkeypatch.setattr(steps, "wait_for_slurm_tasks", lambda *a, **k: [2])
    with pytest.raises(RuntimeError, match="Slurm job 4242 ended with 1 of 3 tasks unfinished"):
        tokenize_files(corpus, tokenizer, tmp_path / "y", tmp_path / "work_y", slurm)
    assert not idx_path(tmp_path / "y").exists()


def test_wait_for_slurm_tasks_polls_until_done_or_the_job_is_gone(tmp_path):
    from data_prep.pipeline.steps import wait_for_slurm_tasks

    done = tmp_path / "completions"
    done.mkdir()
    sleeps = []

    def finish_one(_):  # each poll, one more task completes
        sleeps.append(1)
        (done / f"{len(sleeps) - 1:05d}").touch()

    assert wait_for_slurm_tasks(tmp_path, 3, "7", 5, alive=lambda _: True, sleep=finish_one) == []
    assert len(sleeps) == 3
    gone = tmp_path / "gone"
    (gone / "completions").mkdir(parents=True)
    (gone / "completions" / "00000").touch()
    assert wait_for_slurm_tasks(gone, 3, "7", 5, alive=lambda _: False, sleep=finish_one) == [1, 2]


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(1, 29), min_size=0, max_size=3, unique=True), tasks=st.integers(1, 4))
def test_any_split_into_files_merges_to_the_same_dataset(rows, tokenizer, tmp_path_factory, cuts, tasks):
    root = tmp_path_factory.mktemp("split")
    bounds = [0, *sorted(cuts), 30]
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        _write(root / "in" / f"part_{i:02d}.jsonl", rows[lo:hi])
    tokenize_files(root / "in", tokenizer, root / "x", root / "work", Execution(tasks=tasks, workers=1))
    assert _same_dataset(root / "x", _one_process(root / "in", tokenizer, root / "ref"))


# ---------------------------------------------------------------- the study's side


def test_study_config_chooses_and_checks_the_data_executor(tmp_path):
    import os

    from megatron_alignpt.config_base import ConfigError
    from megatron_alignpt.study.config import DataPlan
    from megatron_alignpt.study.data_steps import data_execution

    plan = DataPlan(corpus=tmp_path, eval_suite="x")
    assert data_execution(plan).executor == "local" and data_execution(plan).workers == len(os.sched_getaffinity(0))
    slurm = data_execution(DataPlan(corpus=tmp_path, eval_suite="x", executor="slurm", slurm_partition="cpu", tasks=64))
    assert (slurm.tasks, slurm.workers, slurm.slurm.partition) == (64, -1, "cpu")
    for bad, field in (({"executor": "spark"}, "data.executor"), ({"executor": "slurm"}, "data.slurm_partition"),
                       ({"tasks": -1}, "data.tasks"), ({"workers": -2}, "data.workers")):
        with pytest.raises(ConfigError, match=field):
            DataPlan(corpus=tmp_path, eval_suite="x", **bad)


def test_data_step_resources_for_the_plan(corpus, tmp_path):
    from megatron_alignpt.study.config import DataPlan
    from megatron_alignpt.study.data_steps import data_step_resources

    here = data_step_resources(DataPlan(corpus=corpus, eval_suite="x", workers=2))
    assert set(here) == {"data.filter", "data.tokenize"}
    assert (here["data.filter"].tasks, here["data.filter"].workers, here["data.filter"].executor) == (3, 2, "local")
    assert 0 < here["data.filter"].cpu_hours < here["data.tokenize"].cpu_hours
    far = DataPlan(corpus=tmp_path / "on_the_cluster", eval_suite="x", executor="slurm", slurm_partition="cpu", tasks=512)
    assert data_step_resources(far)["data.filter"].cpu_hours is None
    scaled = data_step_resources(far, corpus_tokens=550_000_000_000)["data.tokenize"]
    assert scaled.tasks == 512 and scaled.workers == -1 and scaled.cpu_hours > 100
    assert "slurm: 512 tasks, all at once" in scaled.describe()
