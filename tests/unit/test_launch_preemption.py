"""The trainer's preemption watch: signals and the stop file only set a flag; handlers are restored."""
import json
import os
import signal

import pytest

from megatron_alignpt.launch.preemption import (
    INTERRUPTED_EXIT, MARKER_ENV, PREEMPTED_EXIT, STOP_FILE_ENV, Preempted, PreemptionWatch,
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_sets_the_flag_and_handlers_are_restored(sig):
    before = signal.getsignal(sig)
    with PreemptionWatch(stop_file=None) as watch:
        assert not watch.requested()
        os.kill(os.getpid(), sig)  # would end the test process without the watch
        assert watch.requested() and watch.reason == sig.name
    assert signal.getsignal(sig) is before


def test_stop_file_and_marker(tmp_path, monkeypatch, capsys):
    stop, marker = tmp_path / "job.stop", tmp_path / "job.preempted"
    monkeypatch.setenv(STOP_FILE_ENV, str(stop))
    monkeypatch.setenv(MARKER_ENV, str(marker))
    with PreemptionWatch() as watch:
        assert not watch.requested()
        stop.touch()
        assert watch.requested()
        with pytest.raises(Preempted) as raised:
            watch.stop("unfiltered.pretrain", 7, tmp_path / "iter_0000007")
    assert raised.value.code == PREEMPTED_EXIT == 75
    assert json.loads(marker.read_text())["iteration"] == 7
    assert "stopped at iteration 7" in capsys.readouterr().out


def _stop_requests(rank: int, flagged_rank: int):
    from megatron_alignpt.runtime import init_process_group

    init_process_group()
    watch = PreemptionWatch(stop_file=None)
    before = watch.requested()
    if rank == flagged_rank:
        watch.reason = "SIGUSR1"  # what the handler records
    return before, watch.requested(), watch.reason


@pytest.mark.slow
def test_all_ranks_stop_at_the_same_step_when_one_is_signalled():
    from megatron_alignpt.testing import run_distributed

    results = run_distributed(_stop_requests, 2, 1)
    assert [r[:2] for r in results] == [(False, True), (False, True)]
    assert results[0][2] == "another rank was asked to stop" and results[1][2] == "SIGUSR1"


def test_ctrl_c_asks_for_a_checkpoint_and_a_second_stops_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(MARKER_ENV, str(tmp_path / "job.preempted"))
    before = signal.getsignal(signal.SIGINT)
    with PreemptionWatch(stop_file=None) as watch:
        os.kill(os.getpid(), signal.SIGINT)  # without the watch: KeyboardInterrupt here
        assert watch.requested() and watch.reason == "SIGINT"
        assert "saving a checkpoint after this step" in capsys.readouterr().out
        with pytest.raises(Preempted) as raised:
            watch.stop("unfiltered.pretrain", 3, tmp_path / "iter_0000003")
        assert raised.value.code == INTERRUPTED_EXIT == 130 and "run the same command again" in str(raised.value)
        assert not (tmp_path / "job.preempted").exists()  # no requeue after Ctrl-C
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
