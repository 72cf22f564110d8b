"""Lock files, so that two runs never write the same study outputs at once.

A lock is a small JSON file (host, PID, start time, command, Slurm job id) created atomically with
O_CREAT | O_EXCL. A whole-study run holds ``<study>/study.lock``; every step, however it is started
(a whole run, ``--only``, one Slurm job per step), holds ``<study>/steps/<step>.lock`` while it runs.

A lock whose process is gone (same host, PID no longer running or reused since) is stale: it is
reported and taken over. One held by a live process, or by a process on another host (whose state
cannot be checked from here), is refused with who holds it; ``--force-unlock`` takes it anyway.
A requeued Slurm job takes over the locks of its own earlier run (same job id).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from data_prep.atomic import pid_running


class LockHeld(FileExistsError):
    """Another run holds the lock; the message says who and what to do."""


@dataclass
class LockInfo:
    host: str
    pid: int
    started: str
    """Local time, for people."""
    started_unix: float
    command: str
    slurm_job: Optional[str] = None

    @classmethod
    def here(cls) -> "LockInfo":
        now = time.time()
        return cls(host=socket.gethostname(), pid=os.getpid(), started=time.strftime("%Y-%m-%d %H:%M:%S%z", time.localtime(now)),
                   started_unix=now, command=" ".join(sys.argv)[:300], slurm_job=os.environ.get("SLURM_JOB_ID"))

    @classmethod
    def read(cls, path: Path) -> Optional["LockInfo"]:
        """The holder recorded in ``path``; None if it vanished meanwhile. A lock file cut short
        (its writer killed at once) reads as an unknown holder on this host, hence stale."""
        try:
            data = json.loads(path.read_text())
            return cls(**{k: data[k] for k in ("host", "pid", "started", "started_unix", "command")},
                       slurm_job=data.get("slurm_job"))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, OSError):
            try:
                written = path.stat().st_mtime
            except OSError:
                return None
            return cls(host=socket.gethostname(), pid=-1, started="unknown", started_unix=written, command="unreadable lock file")

    def running(self) -> Optional[bool]:
        """Whether the holder still runs: True/False on this host, None (unknown) on another."""
        if self.slurm_job and self.slurm_job == os.environ.get("SLURM_JOB_ID"):
            return False  # our own job before a requeue: it cannot be running beside us
        if self.host != socket.gethostname():
            return None
        return _process_running(self.pid, self.started_unix)

    def describe(self) -> str:
        job = f", Slurm job {self.slurm_job}" if self.slurm_job else ""
        return f"pid {self.pid} on {self.host}{job}, started {self.started} ({self.command})"


def _process_running(pid: int, started_unix: float) -> bool:
    if pid <= 0:
        return False
    try:
        import psutil  # in the train extra; gives the start time, to tell a reused PID from the holder
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return psutil.Process(pid).create_time() <= started_unix + 1.0
        except psutil.NoSuchProcess:
            return False
        except psutil.Error:
            return True
    return pid_running(pid)


class Lock:
    """``with Lock(path, what):`` holds ``path`` for the block. ``what`` names the locked thing in messages."""

    def __init__(self, path: str | Path, what: str, force: bool = False, echo: Callable[[str], None] = print):
        self.path = Path(path)
        self.what = what
        self.force = force
        self.echo = echo
        self.info: Optional[LockInfo] = None

    def acquire(self) -> "Lock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(12):  # a holder may vanish (or finish writing its lock) between our attempts
            info = LockInfo.here()
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._clear_or_refuse()
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(asdict(info), handle)
            self.info = info
            return self
        raise LockHeld(f"{self.what}: could not take {self.path}; another run keeps taking it")

    def _clear_or_refuse(self) -> None:
        holder = LockInfo.read(self.path)
        if holder is None:
            return
        if holder.pid == -1 and time.time() - holder.started_unix < 5:  # its writer may be filling it in now
            time.sleep(0.5)
            return
        state = holder.running()
        if self.force:
            self.echo(f"--force-unlock: removing {self.path}, held by {holder.describe()}")
        elif state is False:
            self.echo(f"removing stale lock {self.path}: {holder.describe()} is no longer running")
        else:
            how = ("is running" if state else
                   "may still be running (on another host, so this machine cannot check)")
            raise LockHeld(f"{self.what} is in use: {holder.describe()} {how}; lock file {self.path}. "
                           "Wait for it to finish; if it is gone, rerun with --force-unlock")
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock file if it is still ours (a --force-unlock elsewhere may have taken it)."""
        if self.info is None:
            return
        holder = LockInfo.read(self.path)
        if holder is not None and (holder.host, holder.pid, holder.started_unix) == (self.info.host, self.info.pid, self.info.started_unix):
            self.path.unlink(missing_ok=True)
        self.info = None

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def live_holders(paths, echo: Callable[[str], None] = print, force: bool = False) -> list[str]:
    """Descriptions of the locks among ``paths`` held by running (or unverifiable) processes;
    stale ones (and, with ``force``, all) are removed on the way, saying so."""
    held = []
    for path in paths:
        holder = LockInfo.read(path)
        if holder is None:
            continue
        state = holder.running()
        if force or state is False:
            echo(f"{'--force-unlock: removing' if force else 'removing stale lock'} {path} ({holder.describe()})")
            path.unlink(missing_ok=True)
        else:
            held.append(f"{path.name}: {holder.describe()}")
    return held


def study_lock_path(root: Path) -> Path:
    return Path(root) / "study.lock"


def step_lock_path(root: Path, step: str) -> Path:
    return Path(root) / "steps" / f"{step}.lock"


@contextlib.contextmanager
def hold_study(root: Path, whole: bool, force: bool = False, active: bool = True,
               echo: Callable[[str], None] = print) -> Iterator[None]:
    """For a whole-study run (``whole``): hold ``study.lock``, and refuse while any step is held
    (e.g. a Slurm job running one). For a run of some steps: refuse while a whole-study run holds
    the study. ``active`` False (ranks other than the first) takes nothing."""
    if not active:
        yield
        return
    root = Path(root)
    if not whole:
        held = live_holders([study_lock_path(root)], echo, force)
        if held:
            raise LockHeld(f"study {root} is in use by a whole-study run: {held[0]}. Wait for it to finish; "
                           "if it is gone, rerun with --force-unlock")
        yield
        return
    with Lock(study_lock_path(root), f"study {root}", force, echo):
        held = live_holders(sorted((root / "steps").glob("*.lock")), echo, force)
        if held:
            raise LockHeld(f"study {root} has steps running: {'; '.join(held)}. Wait for them to finish; "
                           "if they are gone, rerun with --force-unlock")
        yield


@contextlib.contextmanager
def hold_step(root: Path, step: str, force: bool = False, active: bool = True,
              echo: Callable[[str], None] = print) -> Iterator[None]:
    """Hold ``steps/<step>.lock`` while the step runs (first rank only)."""
    if not active:
        yield
        return
    with Lock(step_lock_path(root, step), f"step {step}", force, echo):
        yield
