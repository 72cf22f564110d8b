"""Checkpoint-and-exit on preemption, so a requeued job resumes where this one stopped.

A training stage stops early when any of these happens (checked once per optimizer step):
- the process receives SIGTERM or SIGUSR1 (Slurm's preemption / `--signal`, torchrun's shutdown),
  or SIGINT (Ctrl-C; a second Ctrl-C stops at once, without a checkpoint);
- the file named by ``$ALIGNPT_STOP_FILE`` exists (what `alignpt launch` batch scripts create when
  Slurm signals the batch shell: a file on the shared filesystem reaches every rank, whatever srun,
  pyxis and torchrun do with signals).
All ranks agree on the step to stop at (one all-reduce), the trainer saves a checkpoint, writes
``$ALIGNPT_PREEMPT_MARKER`` (if set) and exits with status ``PREEMPTED_EXIT`` (75, EX_TEMPFAIL:
"try again"; after Ctrl-C, 130 as for any interrupted command). The batch script then runs
`scontrol requeue`; the requeued job resumes from that checkpoint with the same data order and
learning rates.

This module imports torch only when a process group is running.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Optional

PREEMPTED_EXIT = 75
"""Exit status of a stage that checkpointed and stopped because it was asked to (sysexits EX_TEMPFAIL)."""
INTERRUPTED_EXIT = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it: stopped by the user, no requeue."""
STOP_FILE_ENV = "ALIGNPT_STOP_FILE"
MARKER_ENV = "ALIGNPT_PREEMPT_MARKER"
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class Preempted(SystemExit):
    """Raised after the checkpoint is saved; exits the process with PREEMPTED_EXIT (INTERRUPTED_EXIT
    after Ctrl-C) unless caught."""

    def __init__(self, message: str, iteration: int, code: int = PREEMPTED_EXIT):
        super().__init__(code)
        self.message = message
        self.iteration = iteration

    def __str__(self) -> str:
        return self.message


class PreemptionWatch:
    """Context manager: installs SIGTERM/SIGUSR1 handlers that only set a flag; restores them on exit."""

    def __init__(self, stop_file: Optional[str | Path] = None):
        env_file = os.environ.get(STOP_FILE_ENV)
        self.stop_file = Path(stop_file) if stop_file else (Path(env_file) if env_file else None)
        self.reason: Optional[str] = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "PreemptionWatch":
        if threading.current_thread() is threading.main_thread():  # signal.signal works only there
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame) -> None:
        if signum == signal.SIGINT:
            if self.reason == "SIGINT":  # the second Ctrl-C: the user does not want to wait
                raise KeyboardInterrupt
            if _is_rank0():
                print("\nCtrl-C: saving a checkpoint after this step (press Ctrl-C again to stop at once)", flush=True)
        self.reason = signal.Signals(signum).name

    def _local_request(self) -> bool:
        if self.reason is None and self.stop_file is not None and _is_rank0() and self.stop_file.exists():
            self.reason = f"stop file {self.stop_file}"
        return self.reason is not None

    def requested(self) -> bool:
        """True on every rank once any rank was asked to stop (a collective: call it on all ranks)."""
        local = self._local_request()
        import sys

        dist = sys.modules.get("torch.distributed")
        if dist is None or not dist.is_initialized() or dist.get_world_size() == 1:
            return local
        import torch

        from megatron_alignpt.runtime import device

        flag = torch.tensor([1 if local else 0], dtype=torch.int32, device=device())
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and self.reason is None:
            self.reason = "another rank was asked to stop"
        return bool(flag.item())

    def stop(self, name: str, iteration: int, checkpoint: Optional[Path]) -> None:
        """Record the stop (rank 0 writes the marker, which asks the batch script to requeue: not after
        Ctrl-C) and raise Preempted."""
        code = INTERRUPTED_EXIT if self.reason == "SIGINT" else PREEMPTED_EXIT
        then = "run the same command again to resume" if code == INTERRUPTED_EXIT else "requeue to resume"
        message = f"[{name}] stopped at iteration {iteration} ({self.reason}); checkpoint {checkpoint}; exit status {code}: {then}"
        marker = os.environ.get(MARKER_ENV)
        if _is_rank0():
            print(message, flush=True)
            if marker and code == PREEMPTED_EXIT:
                from data_prep.atomic import atomic_write_json

                atomic_write_json(marker, {"step": name, "iteration": iteration, "checkpoint": str(checkpoint),
                                           "reason": self.reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        raise Preempted(message, iteration, code)


def _is_rank0() -> bool:
    import sys

    dist = sys.modules.get("torch.distributed")
    return dist is None or not dist.is_initialized() or dist.get_rank() == 0
