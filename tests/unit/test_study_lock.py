"""Study and step locks: a running holder is refused with who it is, a dead one is reported and taken
over, --force-unlock takes any; two runs into one study never run the same step."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from megatron_alignpt.cli import main
from megatron_alignpt.study.lock import Lock, LockHeld, hold_study, step_lock_path, study_lock_path


@pytest.fixture
def live_pid():
    """A process that runs for the test's duration (a lock holder that is alive)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    time.sleep(0.2)
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(path, pid, host=None, started=None, job=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid, "started": "earlier",
                                "started_unix": started or time.time(), "command": "alignpt study run", "slurm_job": job}))


def test_lock_records_holder_and_is_released(tmp_path):
    path = tmp_path / "study.lock"
    with Lock(path, "study"):
        info = json.loads(path.read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and info["started"]
    assert not path.exists()


def test_running_holder_is_refused_with_who_it_is(tmp_path, live_pid):
    path = tmp_path / "study.lock"
    write_lock(path, live_pid)
    with pytest.raises(LockHeld) as err:
        Lock(path, "study x").acquire()
    assert f"pid {live_pid}" in str(err.value) and "is running" in str(err.value) and "--force-unlock" in str(err.value)
    said = []
    with Lock(path, "study x", force=True, echo=said.append):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert said and "--force-unlock" in said[0] and str(live_pid) in said[0]


def test_stale_lock_of_a_dead_process_is_reported_and_taken(tmp_path):
    path = tmp_path / "steps" / "a.lock"
    pid = dead_pid()
    write_lock(path, pid)
    said = []
    with Lock(path, "step a", echo=said.append):
        pass
    assert len(said) == 1 and said[0].startswith(f"removing stale lock {path}: pid {pid} on {socket.gethostname()}")
    assert "no longer running" in said[0] and not path.exists()


def test_reused_pid_is_not_the_holder(tmp_path, live_pid):
    """The holder's PID now belongs to a process started after the lock: the holder is gone."""
    path = tmp_path / "a.lock"
    write_lock(path, live_pid, started=time.time() - 3600)
    said = []
    Lock(path, "step a", echo=said.append).acquire().release()
    assert "no longer running" in said[0]


def test_holder_on_another_host_cannot_be_checked(tmp_path, monkeypatch):
    path = tmp_path / "a.lock"
    write_lock(path, 1, host="gpu-node-17")
    with pytest.raises(LockHeld, match="on another host"):
        Lock(path, "step a").acquire()
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # unless it is this job, before a requeue
    write_lock(path, 1, host="gpu-node-17", job="4242")
    said = []
    Lock(path, "step a", echo=said.append).acquire().release()
    assert "no longer running" in said[0]


def test_a_lock_being_written_is_waited_for_and_an_old_unreadable_one_is_stale(tmp_path):
    path = tmp_path / "a.lock"
    path.write_text("")
    old = time.time() - 60
    os.utime(path, (old, old))
    said = []
    Lock(path, "step a", echo=said.append).acquire().release()
    assert "unreadable lock file" in said[0]


def test_only_the_owner_releases(tmp_path):
    path = tmp_path / "a.lock"
    lock = Lock(path, "a").acquire()
    write_lock(path, 12345)  # taken over meanwhile (--force-unlock elsewhere)
    lock.release()
    assert json.loads(path.read_text())["pid"] == 12345


def test_whole_study_run_refused_while_a_step_runs_and_the_reverse(tmp_path, live_pid):
    write_lock(step_lock_path(tmp_path, "unfiltered.pretrain"), live_pid)
    with pytest.raises(LockHeld, match="has steps running: unfiltered.pretrain.lock"):
        with hold_study(tmp_path, whole=True):
            pass
    assert not study_lock_path(tmp_path).exists()  # released on the way out
    step_lock_path(tmp_path, "unfiltered.pretrain").unlink()
    write_lock(study_lock_path(tmp_path), live_pid)
    with pytest.raises(LockHeld, match="in use by a whole-study run"):
        with hold_study(tmp_path, whole=False):
            pass


def test_cli_refuses_a_step_another_run_holds(tmp_path, capsys, live_pid):
    out = tmp_path / "study"
    write_lock(step_lock_path(out, "data.filter"), live_pid)
    code = main(["study", "run", "--recipe", "tiny_cpu", "--output-dir", str(out), "--only", "data.filter"])
    err = capsys.readouterr().err
    assert code == 2 and "step data.filter is in use" in err and f"pid {live_pid}" in err
    assert not (out / "steps" / "data.filter.done").exists()
    code = main(["study", "run", "--recipe", "tiny_cpu", "--output-dir", str(out), "--only", "data.filter", "--force-unlock"])
    assert code == 0 and (out / "steps" / "data.filter.done").exists() and not step_lock_path(out, "data.filter").exists()


@pytest.mark.slow
def test_two_runs_into_one_study_never_run_the_same_step(tmp_path):
    """Before: both trained the same stage, one died on a vanished temp file, and metrics.jsonl kept
    interleaved rows. Now the second run stops at the first step the other holds."""
    cmd = [sys.executable, "-m", "megatron_alignpt.cli", "study", "run", "--recipe", "tiny_cpu",
           "--output-dir", str(tmp_path / "study"), "--only", "data."]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = [(p.wait(timeout=600), *p.communicate()) for p in (first, second)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, _, err in results if code == 2)
    assert "is in use" in refused and "Traceback" not in refused
    started = [line for _, out, _ in results for line in out.splitlines() if line.endswith(" ...")]
    assert len(started) == len(set(started)) == 5  # every data step ran exactly once
    assert len(list((tmp_path / "study" / "steps").glob("*.done"))) == 5
    assert not list((tmp_path / "study").rglob("*.lock"))
