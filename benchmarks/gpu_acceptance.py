"""One-call GPU acceptance run: every feature of the `paper_6p9b` recipe that one GPU can run, in one JSON.

On a GPU machine, after the Transformer Engine set-up of ../shared/GPU.md (TE 2.20.2 + megatron-core
0.19.2, Python 3.12), from the repository root:

    source /tmp/te_env.sh && PYTHONPATH=$PYTHONPATH:$PWD bash benchmarks/gpu_session.sh

which runs, with $OUT (default runs/gpu_session) for everything that should come back:

    python3 benchmarks/gpu_acceptance.py --out $OUT            # -> $OUT/acceptance.json, $OUT/logs/<check>.log

Other uses:

    python benchmarks/gpu_acceptance.py --list                                   # the checks, limits, phases
    python benchmarks/gpu_acceptance.py --out runs/acc --only te_bf16_resume,dpo_margin
    python benchmarks/gpu_acceptance.py --out runs/acc --skip tiny_study --budget-s 400
    # CPU rehearsal of the plumbing (sdpa / fp32 stand in for TE / bf16; FP8 and torch.compile skipped;
    # throughput on the tiny shape). It proves the checks run, not that the GPU path works.
    python benchmarks/gpu_acceptance.py --out runs/acc_cpu --only te_bf16_resume,packed_sft_te,hf_parity_gpu

How it runs. Every check is a function of `benchmarks/acceptance_checks.py` run in its own
process (`--run-check`), in its own process group, with its own time limit: a check that fails, hangs,
runs out of memory or crashes the interpreter is recorded as failed (with the tail of its log) and the
others still run. Checks raise `Skipped` when the machine cannot run them (no TE, no Hopper GPU, no
`transformers`). Phase 1 (`functional`, small models) runs `--jobs` checks at once; phase 2
(`throughput`) runs alone, one check after another, in order of value, so the GPU is not shared while
it is timed. `--budget-s` bounds the whole run; phase 1 gets at most `--functional-s` of it. A check
that cannot start for lack of time is skipped with that reason. `$OUT/acceptance.json` is rewritten after
every check, so a run cut short still leaves every finished check in it (unfinished ones: `pending`).

Per check, the JSON holds: status (passed / failed / skipped), reason or error, seconds, limit, key
figures (losses, differences, throughput), and the log path. Top level: the environment (GPU, driver,
compute capability, torch, CUDA, cuDNN, megatron-core, Transformer Engine, transformers), the options,
counts, and `targets`: the issue's throughput targets on the Pythia-1.4B shape (seq 2048, global batch
16) evaluated from the throughput checks of the same run:

    bf16 (TE):  MFU >= 52% (514 TFLOP/s of the 989 bf16 peak), tokens/s >= 1.15 x the HF + torch.compile loop
    FP8:        tokens/s >= 1.35 x TE bf16 (delayed and current scaling), loss at step 20 within 1% of bf16

Checks (phase, default limit in seconds):
    pytest_gpu            functional 240  `pytest -m gpu tests/gpu` with --junitxml; every test's result folded in
    te_bf16_resume        functional 150  TE layers, bf16: crash after step 6, resume from step 4 = the straight run
    fp8_delayed_resume    functional 150  TE FP8 (hybrid, delayed scaling): loss falls; resume exact
    fp8_current_resume    functional 150  TE FP8 (hybrid, current scaling, the paper's): loss falls; resume exact
    distributed_optimizer functional 180  distributed optimizer (DP=1) with overlapped grad reduce / param gather:
                                          resume exact; a fully_reshardable checkpoint continued with
                                          distributed_optimizer_checkpoint=dp_reshardable (and the reverse)
                                          gives the same losses: the saved format is read back
    packed_sft_te         functional 150  sft.packing=first_fit on TE: thd layout, packed loss = unpacked loss on one
                                          model; a packed SFT stage trains
    dpo_margin            functional 150  SFT then DPO (cached reference), TE bf16: the chosen-minus-rejected margin rises
    kv_cache_generate     functional 150  eval's KV-cached greedy generation = uncached, on a TE checkpoint
    hf_parity_gpu         functional 150  random GPTNeoXForCausalLM -> hf_to_mcore -> logits on GPU = transformers'
                                          (TE and SDPA builds, fp32)
    fusions_auto_vs_off   functional 150  parallel.fusions defaults / all auto / all off: losses agree; resolved
                                          fusions recorded
    tiny_study            functional 240  `alignpt study run --recipe tiny_cpu` end to end with CUDA visible (all but
                                          the report step, which renders notebooks on the CPU)
    throughput_te_bf16, throughput_hf_compile, throughput_te_fp8_delayed, throughput_te_fp8_current,
    throughput_sdpa_bf16, throughput_hf_eager, throughput_paper_layer_te_bf16 (6.9b-8l)
                          throughput ~40-150 each: train_throughput.py / hf_train_throughput.py, 20 steps
"""
from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCRIPT = Path(__file__).resolve()
SUMMARY_FILE = "acceptance.json"
MIN_START_S = 20
"""By default a check is not started with less time than this left in its phase (`Check.min_s`)."""
KILL_GRACE_S = 10
LOG_CAP_BYTES = 2 * 2**20


# ----------------------------------------------------------------------------- check definitions


@dataclass(frozen=True)
class Check:
    name: str
    target: str
    """`module:function` run in a child process; the function takes a `Context` and records figures."""
    limit_s: int
    phase: str = "functional"
    """functional (small models, run concurrently) or throughput (alone, in the listed order)."""
    summary: str = ""
    kwargs: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    """Extra environment variables for the child."""
    min_s: int = MIN_START_S
    """Not started with less time than this left: it could not finish."""


DETERMINISTIC = {"NVTE_ALLOW_NONDETERMINISTIC_ALGO": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
"""Resume checks compare losses to 1e-6: Transformer Engine's deterministic attention kernels."""

ME = "acceptance_checks"


def default_checks() -> list[Check]:
    """Every check, functional ones first (longest first: the pool starts them early), then throughput by value."""
    functional = [
        Check("tiny_study", f"{ME}:check_tiny_study", 240, summary="alignpt study run --recipe tiny_cpu with CUDA visible"),
        Check("pytest_gpu", f"{ME}:check_pytest_gpu", 240, summary="pytest -m gpu tests/gpu (junit folded in)"),
        Check("distributed_optimizer", f"{ME}:check_distributed_optimizer", 180, env=DETERMINISTIC,
              summary="distributed optimizer save/resume exact; checkpoint reloaded under the other checkpoint format"),
        Check("te_bf16_resume", f"{ME}:check_resume", 150, kwargs={"precision": "bf16"}, env=DETERMINISTIC,
              summary="TE bf16 training: crash-and-resume equals the straight run"),
        Check("fp8_delayed_resume", f"{ME}:check_resume", 150, kwargs={"precision": "fp8", "fp8_recipe": "delayed"},
              env=DETERMINISTIC, summary="TE FP8 delayed scaling: loss falls, resume exact"),
        Check("fp8_current_resume", f"{ME}:check_resume", 150, kwargs={"precision": "fp8", "fp8_recipe": "current"},
              env=DETERMINISTIC, summary="TE FP8 current scaling: loss falls, resume exact"),
        Check("packed_sft_te", f"{ME}:check_packed_sft", 150, summary="packed SFT (first_fit, thd) on TE: packed loss = unpacked"),
        Check("dpo_margin", f"{ME}:check_dpo_margin", 150, summary="DPO after SFT on TE bf16: reward margin rises"),
        Check("kv_cache_generate", f"{ME}:check_kv_cache_generate", 150, summary="KV-cached greedy generation = uncached"),
        Check("hf_parity_gpu", f"{ME}:check_hf_parity", 150, summary="HF GPTNeoX -> megatron conversion: logits on GPU match"),
        Check("fusions_auto_vs_off", f"{ME}:check_fusions", 150, summary="fusions auto vs off: losses agree"),
    ]
    ours = f"{ME}:check_throughput_ours"
    hf = f"{ME}:check_throughput_hf"
    throughput = [
        Check("throughput_te_bf16", ours, 150, "throughput", "ours, TE, bf16", {"layer_impl": "te", "precision": "bf16"},
              min_s=60),
        Check("throughput_hf_compile", hf, 240, "throughput", "HF GPT-NeoX, bf16 autocast, torch.compile",
              {"compile": True}, min_s=120),
        Check("throughput_te_fp8_delayed", ours, 150, "throughput", "ours, TE, FP8 delayed scaling",
              {"layer_impl": "te", "precision": "fp8", "fp8_recipe": "delayed"}, min_s=60),
        Check("throughput_te_fp8_current", ours, 150, "throughput", "ours, TE, FP8 current scaling",
              {"layer_impl": "te", "precision": "fp8", "fp8_recipe": "current"}, min_s=60),
        Check("throughput_sdpa_bf16", ours, 150, "throughput", "ours, SDPA, bf16", {"layer_impl": "sdpa", "precision": "bf16"},
              min_s=60),
        Check("throughput_hf_eager", hf, 150, "throughput", "HF GPT-NeoX, bf16 autocast, no compile", {"compile": False},
              min_s=50),
        Check("throughput_paper_layer_te_bf16", ours, 150, "throughput", "ours, TE, bf16, the 6.9B layer at 8 layers",
              {"layer_impl": "te", "precision": "bf16", "size_option": "paper_layer_size", "mbs_option": "paper_layer_mbs"},
              min_s=60),
    ]
    return functional + throughput


# ----------------------------------------------------------------------------- the child side


class Skipped(Exception):
    """This machine cannot run the check; the message says why."""


@dataclass
class Context:
    """What a check function gets: scratch and artefact folders, its deadline, and the run's options."""

    name: str
    work: Path
    """Scratch space (checkpoints, data), outside $OUT."""
    artefacts: Path
    """Small files worth bringing back (JSON, junit XML), under $OUT/checks/<name>/."""
    deadline: float
    options: dict
    result_path: Path
    figures: dict = field(default_factory=dict)

    @property
    def gpu(self) -> bool:
        """CUDA is visible (torch is imported only when a check asks)."""
        import torch

        return torch.cuda.is_available()

    def remaining(self) -> float:
        return self.deadline - time.time()

    def record(self, **figures: Any) -> None:
        """Keep figures as they are measured (written at once, so a later crash or kill keeps them)."""
        self.figures.update(figures)
        _write_json(self.result_path, {"status": "running", "figures": self.figures})

    def impl(self, requested: str = "te") -> str:
        """The layer implementation to build: `requested` on GPU, sdpa in a CPU rehearsal."""
        return requested if self.gpu else "sdpa"

    def precision(self, requested: str) -> str:
        """`requested` on GPU; fp32 in a CPU rehearsal."""
        return requested if self.gpu else "fp32"


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)


def _resolve_target(target: str) -> Callable:
    module_name, _, func = target.partition(":")
    return getattr(importlib.import_module(module_name), func)


def run_check_here(args) -> None:
    """The child: run one check function, write its result file and exit 0."""
    from megatron_alignpt.library_noise import quiet_library_noise

    quiet_library_noise()  # the check's log shows our progress and errors, not the libraries' notices
    ctx = Context(name=args.run_check, work=Path(args.work), artefacts=Path(args.artefacts), deadline=args.deadline,
                  options=json.loads(args.options), result_path=Path(args.result))
    ctx.work.mkdir(parents=True, exist_ok=True)
    ctx.artefacts.mkdir(parents=True, exist_ok=True)
    try:
        _resolve_target(args.target)(ctx, **json.loads(args.kwargs))
        result = {"status": "passed"}
    except Skipped as why:
        result = {"status": "skipped", "reason": str(why)}
    except BaseException as err:  # noqa: BLE001 - every failure is a result, including SystemExit
        tb = traceback.format_exc()
        print(tb, flush=True)
        result = {"status": "failed", "error": f"{type(err).__name__}: {err}"[:4000], "traceback_tail": tb[-4000:]}
    _write_json(ctx.result_path, {**result, "figures": ctx.figures})
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the result is written: skip interpreter teardown (process-group destructors can hang there)


# ----------------------------------------------------------------------------- the parent side


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - chars))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _cap_log(path: Path) -> None:
    """Keep a runaway log to its last LOG_CAP_BYTES."""
    try:
        if path.stat().st_size > LOG_CAP_BYTES:
            tail = _tail(path, LOG_CAP_BYTES)
            path.write_text(f"[log cut to its last {LOG_CAP_BYTES} bytes]\n" + tail)
    except OSError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _kill_group(proc: subprocess.Popen) -> None:
    """End the check's process group (the check and anything it started): TERM, then KILL after a grace."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5)):
        if not _group_alive(proc.pid):
            break
        os.killpg(proc.pid, sig)
        end = time.time() + grace
        while time.time() < end and _group_alive(proc.pid):
            if proc.poll() is None:
                try:
                    proc.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    pass
            else:
                time.sleep(0.2)
    proc.poll()


LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""Left out of a check's environment: each check makes its own 1-process group."""


def child_environment(extra: dict, threads: Optional[int]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


class Runner:
    """Runs checks in child processes and keeps the summary JSON up to date."""

    def __init__(self, out: Path, work: Path, options: dict, budget_s: float, functional_s: float, jobs: int,
                 checks: list[Check], command: str = "", limit_scale: float = 1.0):
        self.out, self.work, self.options, self.jobs, self.limit_scale = out, work, options, jobs, limit_scale
        self.start = time.time()
        self.deadline = self.start + budget_s
        self.functional_deadline = min(self.deadline, self.start + functional_s)
        self.checks = checks
        self.lock = threading.Lock()
        self.active: set[subprocess.Popen] = set()
        self.stopped = ""
        self.summary = {
            "acceptance": "megatron_alignpt one-call GPU acceptance run (benchmarks/gpu_acceptance.py)",
            "date": _now(), "command": command, "git_commit": _git_commit(), "budget_s": budget_s,
            "functional_s": functional_s, "jobs": jobs, "options": options, "environment": {},
            "counts": {}, "checks": {c.name: {"status": "pending", "phase": c.phase, "summary": c.summary,
                                              "limit_s": c.limit_s} for c in checks},
            "targets": {}, "wall_s": 0.0,
        }
        (out / "logs").mkdir(parents=True, exist_ok=True)
        self.write()

    def write(self) -> None:
        with self.lock:
            statuses = [c["status"] for c in self.summary["checks"].values()]
            self.summary["counts"] = {s: statuses.count(s) for s in ("passed", "failed", "skipped", "pending")}
            self.summary["wall_s"] = round(time.time() - self.start, 1)
            _write_json(self.out / SUMMARY_FILE, self.summary)

    def run_child(self, check: Check, deadline: float, threads: Optional[int] = None) -> dict:
        """Run one check in its own process group until done or `deadline`; returns its record."""
        left = deadline - time.time()
        if self.stopped:
            return {"status": "skipped", "reason": f"not started: {self.stopped}", "seconds": 0.0}
        if left < check.min_s:
            return {"status": "skipped", "seconds": 0.0,
                    "reason": f"not started: {max(left, 0):.0f} s left of the time budget, it needs about {check.min_s} s"}
        limit = min(check.limit_s * self.limit_scale, left)
        result_path = self.work / "results" / f"{check.name}.json"
        log_path = self.out / "logs" / f"{check.name}.log"
        cmd = [sys.executable, str(SCRIPT), "--run-check", check.name, "--target", check.target,
               "--kwargs", json.dumps(check.kwargs), "--work", str(self.work / check.name),
               "--artefacts", str(self.out / "checks" / check.name), "--result", str(result_path),
               "--deadline", str(time.time() + limit), "--options", json.dumps(self.options)]
        result_path.unlink(missing_ok=True)
        began = time.time()
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
                                    env=child_environment(check.env, threads))
            with self.lock:
                self.active.add(proc)
            if self.stopped:  # stopped while this one was starting
                _kill_group(proc)
            try:
                rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                rc = None
            finally:
                _kill_group(proc)  # also ends anything the check started and left behind
                with self.lock:
                    self.active.discard(proc)
        _cap_log(log_path)
        record = _read_result(result_path)
        if self.stopped and record.get("status") in (None, "running"):
            record.update(status="failed", error=f"ended: {self.stopped}")
        elif rc is None:
            record.update(status="failed", error=f"timed out after {limit:.0f} s (limit {check.limit_s * self.limit_scale:.0f} s)")
        elif record.get("status") in (None, "running"):
            record.update(status="failed", error=f"the check's process exited with code {rc} before finishing")
        if record["status"] == "failed":
            record["log_tail"] = _tail(log_path)
        record.update(seconds=round(time.time() - began, 1), log=str(log_path.relative_to(self.out)))
        return record

    def stop(self, signum: int, _frame=None) -> None:
        """SIGTERM / SIGINT: end every running check (recorded as ended), start no more, keep the summary."""
        self.stopped = f"the run was stopped by signal {signum}"
        with self.lock:
            running = list(self.active)
        for proc in running:
            _kill_group(proc)

    def finish(self, check: Check, record: dict) -> None:
        with self.lock:
            self.summary["checks"][check.name].update(record)
        self.write()
        reason = record.get("reason") or record.get("error") or ""
        print(f"[acceptance] {check.name}: {record['status'].upper()} ({record.get('seconds', 0):.0f} s)"
              + (f": {reason.splitlines()[0][:160]}" if reason else ""), flush=True)

    def run_functional(self, checks: list[Check]) -> None:
        threads = max(1, (os.cpu_count() or 1) // max(self.jobs, 1))
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(self.jobs, 1)) as pool:
            futures = {pool.submit(self.run_child, c, self.functional_deadline, threads): c for c in checks}
            for future in concurrent.futures.as_completed(futures):
                check = futures[future]
                try:
                    record = future.result()
                except Exception as err:  # noqa: BLE001 - a runner bug must not lose the other checks
                    record = {"status": "failed", "error": f"runner: {type(err).__name__}: {err}"}
                self.finish(check, record)

    def run_serial(self, checks: list[Check]) -> None:
        for check in checks:
            try:
                record = self.run_child(check, self.deadline)
            except Exception as err:  # noqa: BLE001
                record = {"status": "failed", "error": f"runner: {type(err).__name__}: {err}"}
            self.finish(check, record)

    def run(self, environment_check: Optional[Check] = None) -> dict:
        if environment_check is not None:
            env = self.run_child(environment_check, self.deadline)
            self.summary["environment"] = env.get("figures", {}) | {"probe_status": env["status"]}
            print("[acceptance] environment: " + describe_environment(self.summary["environment"]), flush=True)
            if env.get("figures", {}).get("compute_mode", "").lower().startswith("exclusive"):
                self.jobs = 1  # one CUDA context at a time on this GPU
                self.summary["jobs"] = 1
            self.write()
        self.run_functional([c for c in self.checks if c.phase == "functional"])
        self.run_serial([c for c in self.checks if c.phase == "throughput"])
        with self.lock:
            self.summary["targets"] = evaluate_targets(
                {name: rec.get("figures", {}) for name, rec in self.summary["checks"].items()})
        self.write()
        return self.summary


def describe_environment(env: dict) -> str:
    device = env.get("gpu") or env.get("cpu") or "?"
    return (f"{device}, driver {env.get('nvidia_driver', '-')}, torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), "
            f"megatron-core {env.get('megatron_core')}, transformer-engine {env.get('transformer_engine')}, "
            f"transformers {env.get('transformers')}")


def _read_result(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


# ----------------------------------------------------------------------------- targets


TARGETS = {
    "bf16_mfu": (">=", 0.52, "throughput_te_bf16 MFU (bf16 peak 989 TFLOP/s)"),
    "bf16_tflops_per_gpu": (">=", 514.0, "throughput_te_bf16 TFLOP/s per GPU"),
    "bf16_vs_hf_compile": (">=", 1.15, "tokens/s of throughput_te_bf16 / throughput_hf_compile"),
    "fp8_delayed_vs_bf16": (">=", 1.35, "tokens/s of throughput_te_fp8_delayed / throughput_te_bf16"),
    "fp8_current_vs_bf16": (">=", 1.35, "tokens/s of throughput_te_fp8_current / throughput_te_bf16"),
    "fp8_delayed_loss_vs_bf16": ("<=", 0.01, "|loss - bf16 loss| / bf16 loss at the last (20th) step, delayed scaling"),
    "fp8_current_loss_vs_bf16": ("<=", 0.01, "|loss - bf16 loss| / bf16 loss at the last (20th) step, current scaling"),
}
INFORMATIVE = {
    "sdpa_bf16_vs_hf_compile": "tokens/s of throughput_sdpa_bf16 / throughput_hf_compile",
    "te_bf16_vs_sdpa_bf16": "tokens/s of throughput_te_bf16 / throughput_sdpa_bf16",
    "hf_compile_vs_hf_eager": "tokens/s of throughput_hf_compile / throughput_hf_eager",
    "paper_layer_tflops_vs_paper": "TFLOP/s of throughput_paper_layer_te_bf16 / the paper's ~449 per GH200",
}
PAPER_TFLOPS_PER_GPU = 449.0


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def _last_loss_gap(run: dict, reference: dict) -> Optional[float]:
    a, b = run.get("losses"), reference.get("losses")
    if not a or not b or len(a) != len(b):
        return None
    return abs(a[-1] - b[-1]) / abs(b[-1])


def evaluate_targets(figures: dict[str, dict]) -> dict:
    """The issue's targets from the throughput checks' figures; `met` is None where a figure is missing."""
    bf16, sdpa = figures.get("throughput_te_bf16", {}), figures.get("throughput_sdpa_bf16", {})
    hf_c, hf_e = figures.get("throughput_hf_compile", {}), figures.get("throughput_hf_eager", {})
    delayed, current = figures.get("throughput_te_fp8_delayed", {}), figures.get("throughput_te_fp8_current", {})
    paper = figures.get("throughput_paper_layer_te_bf16", {})
    tps = "tokens_per_s"
    values = {
        "bf16_mfu": bf16.get("mfu"),
        "bf16_tflops_per_gpu": bf16.get("tflops_per_gpu"),
        "bf16_vs_hf_compile": _ratio(bf16.get(tps), hf_c.get(tps)),
        "fp8_delayed_vs_bf16": _ratio(delayed.get(tps), bf16.get(tps)),
        "fp8_current_vs_bf16": _ratio(current.get(tps), bf16.get(tps)),
        "fp8_delayed_loss_vs_bf16": _last_loss_gap(delayed, bf16),
        "fp8_current_loss_vs_bf16": _last_loss_gap(current, bf16),
    }
    out = {}
    for name, (op, target, what) in TARGETS.items():
        value = values[name]
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        out[name] = {"value": value, "target": f"{op} {target}", "met": met, "what": what}
    informative = {
        "sdpa_bf16_vs_hf_compile": _ratio(sdpa.get(tps), hf_c.get(tps)),
        "te_bf16_vs_sdpa_bf16": _ratio(bf16.get(tps), sdpa.get(tps)),
        "hf_compile_vs_hf_eager": _ratio(hf_c.get(tps), hf_e.get(tps)),
        "paper_layer_tflops_vs_paper": _ratio(paper.get("tflops_per_gpu"), PAPER_TFLOPS_PER_GPU),
    }
    for name, what in INFORMATIVE.items():
        out[name] = {"value": informative[name], "target": None, "met": None, "what": what}
    return out


# ----------------------------------------------------------------------------- command line


def default_options(gpu: bool) -> dict:
    """Throughput shape and steps (the issue's: 1.4B, seq 2048, global batch 16, 20 steps), the study recipe."""
    if gpu:
        return {"size": "1.4b", "micro_batch": 8, "hf_micro_batch": 8, "paper_layer_size": "6.9b-8l",
                "paper_layer_mbs": 4, "global_batch": 16, "warmup": 5, "steps": 15, "study_recipe": "tiny_cpu",
                "study_set": []}
    return {"size": "tiny", "micro_batch": 4, "hf_micro_batch": 4, "paper_layer_size": "tiny", "paper_layer_mbs": 4,
            "global_batch": 16, "warmup": 1, "steps": 2, "study_recipe": "tiny_cpu_smoke", "study_set": []}


def select_checks(checks: list[Check], only: str, skip: str) -> list[Check]:
    names = {c.name for c in checks}
    wanted = [n for n in only.split(",") if n] if only else sorted(names)
    dropped = [n for n in skip.split(",") if n]
    unknown = sorted(set(wanted + dropped) - names)
    if unknown:
        raise SystemExit(f"unknown check(s): {', '.join(unknown)}; see --list")
    return [c for c in checks if c.name in wanted and c.name not in dropped]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "runs/gpu_acceptance")),
                   help=f"summary ({SUMMARY_FILE}), logs/ and checks/ (default: $OUT or runs/gpu_acceptance)")
    p.add_argument("--work", type=Path, default=None, help="scratch space (default: a new folder under /tmp, removed after)")
    p.add_argument("--keep-work", action="store_true", help="keep the scratch folder (checkpoints, study outputs)")
    p.add_argument("--only", default="", help="comma-separated check names")
    p.add_argument("--skip", default="", help="comma-separated check names")
    p.add_argument("--list", action="store_true", help="print the checks and exit")
    p.add_argument("--budget-s", type=float, default=550.0, help="wall-clock limit of the whole run")
    p.add_argument("--functional-s", type=float, default=240.0, help="most of the budget phase 1 may take")
    p.add_argument("--jobs", type=int, default=4, help="functional checks at once (1 on an exclusive-process GPU)")
    p.add_argument("--limit-scale", type=float, default=1.0, help="multiply every check's time limit (slow machines)")
    p.add_argument("--size", default=None, help="throughput shape (default 1.4b on GPU, tiny on CPU)")
    p.add_argument("--micro-batch", type=int, default=None, help="our throughput micro-batch (default 8 on GPU)")
    p.add_argument("--hf-micro-batch", type=int, default=None, help="the HF peer's micro-batch (default 8 on GPU)")
    p.add_argument("--study-recipe", default=None, help="tiny study recipe (default tiny_cpu on GPU)")
    p.add_argument("--study-set", action="append", default=[], metavar="KEY=VALUE", help="study --set override (repeatable)")
    for hidden in ("--run-check", "--target", "--kwargs", "--artefacts", "--result", "--options"):
        p.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_options(args, gpu: bool) -> dict:
    options = default_options(gpu)
    for key in ("size", "micro_batch", "hf_micro_batch", "study_recipe"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    options["study_set"] = list(args.study_set)
    return options


def print_summary(summary: dict) -> None:
    print("\ncheck                          status    seconds  note")
    for name, rec in summary["checks"].items():
        note = (rec.get("reason") or rec.get("error") or "-").splitlines()[0][:90]
        print(f"{name:30s} {rec['status']:8s} {rec.get('seconds', 0):8.0f}  {note}")
    shown = {k: v for k, v in summary["targets"].items() if v["value"] is not None}
    for name, t in shown.items():
        verdict = "" if t["met"] is None else ("  met" if t["met"] else "  NOT met")
        print(f"target {name}: {t['value']:.4g} {t['target'] or ''}{verdict}")
    print(f"counts: {summary['counts']}; wall {summary['wall_s']:.0f} s", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.run_check:
        return run_check_here(args)
    checks = select_checks(default_checks(), args.only, args.skip)
    if args.list:
        for c in default_checks():
            print(f"{c.name:32s} {c.phase:10s} {c.limit_s:4d} s  {c.summary}")
        return 0
    import torch  # only to pick the defaults; the checks run in their own processes

    gpu = torch.cuda.is_available()
    work = args.work or Path(tempfile.mkdtemp(prefix="alignpt_acceptance_"))
    runner = Runner(args.out, work, run_options(args, gpu), args.budget_s, args.functional_s, args.jobs, checks,
                    command=" ".join([Path(sys.executable).name] + sys.argv), limit_scale=args.limit_scale)
    print(f"[acceptance] {len(checks)} checks; summary -> {args.out / SUMMARY_FILE}; scratch {work}"
          + ("" if gpu else " (no CUDA: CPU rehearsal)"), flush=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, runner.stop)
    try:
        summary = runner.run(Check("environment", f"{ME}:probe_environment", 90))
    finally:
        if not args.keep_work and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print_summary(summary)
    return 1 if summary["counts"].get("failed") else 0


if __name__ == "__main__":
    # Run as the importable module, so that check targets ("gpu_acceptance:...") and `Skipped` are one class.
    sys.path.insert(0, str(HERE))
    import gpu_acceptance

    sys.exit(gpu_acceptance.main())
