"""Step fingerprints: a rerun with other settings or inputs is refused before anything is rewritten,
--rerun-changed redoes exactly the changed steps, and study.json always describes what is on disk.
Runs the tiny recipe's real data steps (seconds); training steps are compared without running them."""
import gzip
import json
import shutil

import pytest

from megatron_alignpt.config_base import apply_overrides
from megatron_alignpt.study.fingerprint import StudyChanged, study_fingerprints
from megatron_alignpt.study.local import run_study
from megatron_alignpt.study.plan import build_plan
from recipes import get_recipe

DATA = ["data."]


def recipe(root, *overrides):
    return apply_overrides(get_recipe("tiny_cpu")(root), list(overrides))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The data steps of the tiny study, run once; tests work on copies."""
    root = tmp_path_factory.mktemp("fingerprint") / "study"
    run_study(recipe(root), only=DATA)
    return root


@pytest.fixture
def study(finished, tmp_path):
    root = tmp_path / "study"
    shutil.copytree(finished, root)
    return root


def snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in [root / "study.json", *sorted((root / "steps").glob("*"))]}


def test_markers_record_fingerprints_and_a_same_rerun_skips_all(study):
    marker = json.loads((study / "steps" / "data.manifests.done").read_text())
    assert marker["fingerprint"] and marker["settings"]["data.pretrain_dose"] == 0.1 and "data.tokenize" in marker["after"]
    assert run_study(recipe(study), only=DATA) == {}


def test_changed_settings_are_refused_and_nothing_is_rewritten(study):
    """Before: every step was skipped as done and study.json rewritten with the new values."""
    before = snapshot(study)
    with pytest.raises(StudyChanged) as err:
        run_study(recipe(study, "data.pretrain_dose=0.2", "pretrain.schedule.train_iters=8"), only=DATA)
    message = str(err.value)
    assert "data.manifests: " in message and "data.pretrain_dose 0.1 -> 0.2" in message
    assert "stage tokens.pretrain 512000 -> 16384" in message
    assert "--rerun-changed" in message and "--output-dir" in message
    assert snapshot(study) == before


def test_rerun_changed_redoes_exactly_the_changed_steps(study):
    cfg = recipe(study, "data.resample_seed=3")
    timings = run_study(cfg, only=DATA, rerun_changed=True)
    assert set(timings) == {"data.tokenize", "data.manifests"}  # and not filter, tokenizer, synthetic
    assert json.loads((study / "study.json").read_text())["data"]["resample_seed"] == 3
    assert run_study(cfg, only=DATA) == {}
    with pytest.raises(StudyChanged, match="data.resample_seed 3 -> 0"):
        run_study(recipe(study), only=DATA)


def test_inputs_count_by_content_not_by_path(study, tmp_path):
    corpus = tmp_path / "moved" / "corpus.jsonl.gz"
    corpus.parent.mkdir()
    shutil.copyfile(recipe(study).data.corpus, corpus)
    cfg = recipe(study, f"data.corpus={corpus}")
    assert run_study(cfg, only=DATA) == {}  # the same corpus elsewhere is no change
    with open(corpus, "ab") as handle:  # one more document, as a second gzip member
        handle.write(gzip.compress(b'{"id": "new", "text": "one more document about the garden"}\n'))
    with pytest.raises(StudyChanged) as err:
        run_study(cfg, only=DATA)
    assert f"data.filter: input data.corpus ({corpus}) changed" in str(err.value)
    assert "data.tokenizer" in str(err.value) and "data.manifests" in str(err.value)
    assert set(run_study(cfg, only=DATA, rerun_changed=True)) == {"data.filter", "data.tokenizer", "data.synthetic",
                                                                  "data.tokenize", "data.manifests"}
    stats = json.loads((study / "data" / "filtered" / "pretrain" / "stats.json").read_text())
    assert stats["files"][0]["input"] == str(corpus)


def test_a_moved_study_directory_is_unchanged(study, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.move(study, moved)
    assert run_study(recipe(moved), only=DATA) == {}


def test_markers_from_before_fingerprints_are_compared_with_study_json(study):
    for marker in (study / "steps").glob("*.done"):
        marker.write_text(json.dumps({"step": marker.stem, "seconds": 1.0}))
    with pytest.raises(StudyChanged, match="data.pretrain_dose 0.1 -> 0.2"):
        run_study(recipe(study, "data.pretrain_dose=0.2"), only=DATA)
    assert run_study(recipe(study), only=DATA) == {}
    upgraded = json.loads((study / "steps" / "data.filter.done").read_text())
    assert upgraded["fingerprint"] and upgraded["seconds"] == 1.0


def test_a_change_reaches_the_steps_after_it_and_no_others(tmp_path):
    base = study_fingerprints(recipe(tmp_path))

    def changed(*overrides):
        now = study_fingerprints(recipe(tmp_path, *overrides))
        return {step for step in base if base[step].fingerprint != now[step].fingerprint}

    evals = {s.name for s in build_plan(recipe(tmp_path)) if s.kind == "eval" and s.scoring != "generate"}
    assert changed("eval.system_prompts=all") == evals | {"results", "report"}
    assert changed("parallel.tensor_parallel=2") == set()  # a layout, not a result
    trained = changed("sft.optimizer.lr=1e-4")
    assert "unfiltered.sft" in trained and "unfiltered.dpo" in trained and "unfiltered.eval_post" in trained
    assert not any(s.startswith("data.") or s.endswith((".pretrain", ".midtrain", ".eval_base")) for s in trained)


def test_rerun_changed_training_stage_starts_over(study):
    """A changed training stage must not resume from the old run's final checkpoint (with fewer
    iterations it would train nothing and pass the old weights off as new)."""
    import dataclasses

    from megatron_alignpt.study.fingerprint import settle
    from megatron_alignpt.study.plan import StudyLayout

    old = recipe(study)
    layout = StudyLayout(old)
    marker = layout.marker("unfiltered.pretrain")
    marker.write_text(json.dumps({"step": "unfiltered.pretrain", "seconds": 60.0,
                                  **dataclasses.asdict(study_fingerprints(old)["unfiltered.pretrain"])}))
    stage_dir = layout.stage_dir("unfiltered", "pretrain")
    (stage_dir / "checkpoints" / "iter_0000250").mkdir(parents=True)
    new = recipe(study, "data.max_synthetic_repetitions=60", "pretrain.optimizer.lr=1e-3")
    with pytest.raises(StudyChanged, match=r"unfiltered.pretrain: optimizer.lr 0.002 -> 0.001"):
        settle(new)
    said = []
    _, rerun = settle(new, rerun_changed=True, echo=said.append)
    assert rerun == {"data.manifests", "unfiltered.pretrain"}
    assert not marker.exists() and not stage_dir.exists()
    assert any(f"removing {stage_dir}" in line for line in said)
