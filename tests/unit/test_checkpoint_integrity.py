"""Half-written checkpoints are detected before loading, with what is missing; resuming falls back to
the newest complete one, saying so; a killed run's temporaries are removed by the next run."""
import json
import os
import shutil

import pytest

from megatron_alignpt.train.checkpoint import resolve_checkpoint
from megatron_alignpt.train.checkpoint_integrity import IncompleteCheckpoint, checkpoint_problems, verify_checkpoint
from tests.unit.test_train_core import losses, stage


@pytest.fixture(scope="module")
def trained(tiny_lm_data, tmp_path_factory):
    """A 4-step stage checkpointed at steps 2 and 4."""
    from megatron_alignpt.train.trainer import run_stage

    out = tmp_path_factory.mktemp("integrity") / "run"
    run_stage(stage(tiny_lm_data, out, iters=4, save_interval=2))
    return out


@pytest.fixture
def run_copy(trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    return out


def newest(run):
    return run / "checkpoints" / "iter_0000004"


def test_complete_checkpoint_has_no_problems(trained):
    assert checkpoint_problems(newest(trained)) == []
    assert resolve_checkpoint(trained) == newest(trained)


@pytest.mark.parametrize("damage, named", [
    ("rm __0_0.distcp", "__0_0.distcp is missing"),
    ("rm .metadata", ".metadata is missing"),
    ("rm common.pt", "common.pt is missing"),
    ("rm metadata.json", "metadata.json is missing"),
    ("rm model.json", "model.json is missing"),
    ("cut __0_1.distcp", "__0_1.distcp is truncated"),
    ("cut .metadata", ".metadata is unreadable"),
    ("cut common.pt", "common.pt is truncated or corrupt"),
    ("cut metadata.json", "metadata.json is not valid JSON"),
])
def test_damaged_checkpoint_names_what_is_missing(run_copy, damage, named):
    action, name = damage.split()
    path = newest(run_copy) / name
    if action == "rm":
        path.unlink()
    else:
        os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(IncompleteCheckpoint, match="is incomplete") as err:
        verify_checkpoint(newest(run_copy))
    assert named in str(err.value)
    with pytest.raises(IncompleteCheckpoint):  # what eval, convert and init_from go through
        resolve_checkpoint(run_copy)


def test_eval_of_a_half_written_checkpoint_is_one_line(run_copy, capsys, tmp_path):
    """Before: a bare EOFError / AttributeError traceback."""
    from data_prep.eval_suite import default_suite_path
    from megatron_alignpt.cli import main

    (newest(run_copy) / "__0_0.distcp").unlink()
    code = main(["eval", "misalignment", "--checkpoint", str(run_copy), "--data", str(default_suite_path()),
                 "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err
    assert code == 2 and "__0_0.distcp is missing" in err and len(err.strip().splitlines()) == 1


def test_garbled_latest_txt_is_named(run_copy):
    (run_copy / "checkpoints" / "latest.txt").write_text("4O\n")
    with pytest.raises(IncompleteCheckpoint, match=r"latest.txt: expected an iteration number, got '4O'"):
        resolve_checkpoint(run_copy)


def test_resume_falls_back_to_the_newest_complete_checkpoint(run_copy, trained, tiny_lm_data, capsys):
    from megatron_alignpt.train.trainer import run_stage

    (newest(run_copy) / "__0_1.distcp").unlink()  # the last save was cut short
    stale = [run_copy / "checkpoints" / ".iter_0000006.tmp", run_copy / ".metrics.jsonl.tmp-999999"]
    stale[0].mkdir()
    stale[1].write_text("half")
    result = run_stage(stage(tiny_lm_data, run_copy, iters=4, save_interval=2))
    said = capsys.readouterr().out
    assert "resuming from iter_0000002, the newest complete checkpoint (iter_0000004 is incomplete: __0_1.distcp is missing)" in said
    assert "resumed from" in said and "at iteration 2" in said
    assert result.iteration == 4 and checkpoint_problems(newest(run_copy)) == []
    assert losses(run_copy) == pytest.approx(losses(trained), rel=0, abs=1e-6)  # steps 3-4 redone exactly
    assert not any(p.exists() for p in stale)


def test_bad_latest_txt_does_not_stop_a_resume(run_copy, tiny_lm_data, capsys):
    from megatron_alignpt.train.trainer import run_stage

    (run_copy / "checkpoints" / "latest.txt").write_text("garbage")
    (newest(run_copy) / "model.json").write_text(json.dumps({"model": {}})[:5])
    run_stage(stage(tiny_lm_data, run_copy, iters=4, save_interval=2))
    said = capsys.readouterr().out
    assert "latest.txt does not hold an iteration number; ignoring it" in said
    assert "resuming from iter_0000002" in said and "model.json is not valid JSON" in said
