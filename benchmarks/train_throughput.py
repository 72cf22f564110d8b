"""Training throughput of a Pythia-shape GPT through the stage trainer's own pieces.

What runs per step is what `megatron_alignpt.train.trainer.run_stage` runs: `build_gpt_model`,
megatron DDP (`trainer.wrap_ddp`, fp32 grad buffers), megatron's optimizer (`train.optimizer`,
fp32 master weights for bf16; Transformer Engine's or apex's FusedAdam where `--fusions` allows and
one is installed, else torch's AdamW, as on CPU) and LR scheduler, and `trainer.train_step`, which
drives megatron's `get_forward_backward_func()` schedule over the micro-batches on GPU and CPU alike
(on CPU behind the `cpu_compat` shims). Only the data differs: a fixed-seed synthetic token stream
(below) instead of a blended GPTDataset, generated before timing starts.

Commands (from the repository root):

    # GPU: Pythia-1.4B shape, bf16, SDPA attention; one process per micro-batch size; golden losses
    python benchmarks/train_throughput.py --size 1.4b --micro-batch-sizes 1,2,4,8 \
        --out runs/bench/train_1p4b.json --golden-out benchmarks/golden/pythia_1p4b_bf16_sdpa.json

    # later: check a run of the same recipe against the golden losses (exit code 1 if off)
    python benchmarks/train_throughput.py --size 1.4b --micro-batch-sizes 4 \
        --check-golden benchmarks/golden/pythia_1p4b_bf16_sdpa.json

    # the paper's layer: Pythia-6.9B's hidden 4096 / 32 heads / FFN 16384 at 8 of its 32 layers (fits one
    # 80 GB GPU with fp32 master weights and Adam state); and the Pythia-2.8B shape
    python benchmarks/train_throughput.py --size 6.9b-8l --architecture pythia --layer-impl te --micro-batch-sizes 4
    python benchmarks/train_throughput.py --size 2.8b --architecture pythia --layer-impl te --micro-batch-sizes 4

    # fused kernels: all switched off, or one switched (see megatron_alignpt.model.config.FusionConfig)
    python benchmarks/train_throughput.py --size 1.4b --layer-impl te --micro-batch-sizes 8 --fusions off
    python benchmarks/train_throughput.py --size 1.4b --layer-impl te --micro-batch-sizes 8 --fusion rope=off

    # CPU smoke test (fp32, tiny model; every fusion resolves to off on CPU)
    python benchmarks/train_throughput.py --size tiny --micro-batch-sizes 1,2 --warmup 1 --steps 3
    python benchmarks/train_throughput.py --size tiny --micro-batch-sizes 2 --warmup 1 --steps 2 --fusions off

    # a parallel layout: each micro-batch size runs as one torchrun job of --nproc-per-node ranks
    python benchmarks/train_throughput.py --size 1.4b --micro-batch-sizes 2,4 --nproc-per-node 8 \
        --tensor-parallel 2 --sequence-parallel --pipeline-parallel 2 --virtual-pipeline 2 \
        --distributed-optimizer --layer-impl te --precision fp8 --fp8-recipe current --recompute selective
    # (CPU: --pipeline-parallel 2 --nproc-per-node 2 runs megatron's 1F1B schedule over gloo)

Parallel and precision options map onto `megatron_alignpt.model.config.ParallelConfig` and are
validated by it (and by the layout check against the world size and batch) before anything is built.
`--fusions auto` (the default) keeps `FusionConfig`'s defaults (every fused kernel `auto` except the
bias + GELU fusion, which computes tanh-GELU and stays off); `--fusions off` switches all off; each
`--fusion NAME=auto|on|off` then sets one. What they resolve to on the machine
(`megatron_alignpt.model.fusions.resolve_fusions`) is in the JSON as `resolved_fusions`.

Shapes (`--size`, from `benchmarks/_common.py`, Pythia's from `recipes/pythia_sizes.py`, vocab 50304):
160m, 410m, 1.4b, 2.8b (32 layers, hidden 2560, 32 heads, FFN 10240), 6.9b-8l (the 6.9B layer at
8 layers), tiny (CPU).

Each micro-batch size runs in its own process (clean peak-memory figures; an out-of-memory
size is reported, not fatal). The global batch is fixed (`--global-batch`, default 16
sequences) and the rest is gradient accumulation, so every size does the same work per step.

Timing: CUDA events around each `train_step` and around the whole timed region, after
`--warmup` untimed steps; the trainer reads the loss and gradient norm back every step (as
in real training), which is included. tokens/s = timed steps x global batch x seq / elapsed.

Model FLOPs (reported as TFLOP/s per GPU = FLOPs per step / step time / ranks; MFU = that / the
H100 dense peak of the precision: bf16 989, fp8 1979, fp32 67 TFLOP/s, or --peak-tflops), computed by
`megatron_alignpt.train.telemetry.model_flops_per_step`, the trainer's own formula; Megatron's formula
(Narayanan et al. 2021) for a GPT with a 4h MLP,

    FLOPs per step = 72 * B * s * L * h^2 * (1 + s / (6 h) + V / (12 h L))

with B sequences per step, s tokens each, L layers, hidden h, vocab V: forward + backward,
attention counted over the full s x s square (no causal discount), logits included, biases /
norms / rotary ignored, and activation recomputation (not used here) not counted. For the
1.4B shape (B=16, s=2048, L=24, h=2048, V=50304) that is 2.973e14 FLOPs per step.

Synthetic data (also the golden-loss stream): for step t, a torch CPU generator seeded with
`seed * 1_000_003 + t` draws ceil((s+1)/2) ids per sequence from a Zipf(1.1) law over ids
2..V-1 (inverse CDF of float64 uniforms); the sequence is those ids twice (a copy task on
top of a skewed unigram law), cut to s+1 tokens; tokens = x[:-1], labels = x[1:], every
position counted in the loss.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

from _common import (
    SHAPES,
    environment,
    model_config,
    print_table,
    write_json,
)

ZIPF_EXPONENT = 1.1


def synthetic_batch(step: int, batch: int, seq: int, vocab: int, seed: int) -> dict:
    import torch

    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    ranks = torch.arange(1, vocab - 1, dtype=torch.float64)
    cdf = torch.cumsum(ranks.pow(-ZIPF_EXPONENT), 0)
    cdf /= cdf[-1].clone()
    half = (seq + 2) // 2
    uniform = torch.rand(batch, half, generator=gen, dtype=torch.float64)
    ids = (torch.searchsorted(cdf, uniform) + 2).clamp(max=vocab - 1)
    x = torch.cat([ids, ids], dim=1)[:, : seq + 1].long()
    return {
        "tokens": x[:, :-1].contiguous(),
        "labels": x[:, 1:].contiguous(),
        "loss_mask": torch.ones(batch, seq, dtype=torch.float32),
        "position_ids": torch.arange(seq).unsqueeze(0).expand(batch, -1).contiguous(),
    }


class SyntheticLoader:
    """The slice of `GlobalBatchLoader`'s interface that `trainer.train_step` uses."""

    def __init__(self, batches: list[dict], micro_batch_size: int):
        self.batches = batches
        self.micro_batch_size = micro_batch_size
        self.num_microbatches = batches[0]["tokens"].shape[0] // micro_batch_size
        self.step = 0

    def next_global_batch(self) -> list[dict]:
        batch = self.batches[self.step]
        self.step += 1
        m = self.micro_batch_size
        return [{k: v[i * m : (i + 1) * m] for k, v in batch.items()} for i in range(self.num_microbatches)]


def fusion_config(args):
    """The FusionConfig of `--fusions` and the `--fusion NAME=SWITCH` overrides (validated by FusionConfig)."""
    from dataclasses import fields

    from megatron_alignpt.model.config import FusionConfig

    names = [f.name for f in fields(FusionConfig)]
    switches = {} if args.fusions == "auto" else {name: args.fusions for name in names}
    for item in args.fusion:
        name, _, switch = item.partition("=")
        if name not in names:
            raise SystemExit(f"--fusion {item}: unknown fusion {name!r}; choose from {', '.join(names)}")
        switches[name] = switch
    return FusionConfig(**switches)


def resolved_fusions(parallel, layer_impl: str) -> dict:
    """What each fusion switch resolves to on this machine for this layer implementation."""
    from megatron_alignpt.model.fusions import resolve_fusions
    from megatron_alignpt.model.specs import resolve_layer_impl

    return asdict(resolve_fusions(parallel.fusions, resolve_layer_impl(layer_impl)))


def parallel_config(args):
    """The ParallelConfig the command line asks for (validated by ParallelConfig itself)."""
    from megatron_alignpt.model.config import ParallelConfig, RecomputeConfig

    import torch

    return ParallelConfig(
        tensor_parallel=args.tensor_parallel, pipeline_parallel=args.pipeline_parallel,
        virtual_pipeline=args.virtual_pipeline, context_parallel=args.context_parallel,
        sequence_parallel=args.sequence_parallel, distributed_optimizer=args.distributed_optimizer,
        overlap_grad_reduce=args.overlap_grad_reduce, overlap_param_gather=args.overlap_param_gather,
        precision=args.precision or ("bf16" if torch.cuda.is_available() else "fp32"),
        fp8_format=args.fp8_format, fp8_recipe=args.fp8_recipe,
        recompute=RecomputeConfig(args.recompute, args.recompute_method, args.recompute_num_layers),
        fusions=fusion_config(args),
    )


def _parameters(chunks) -> int:
    """Parameters of the whole model: this rank's, summed over tensor- and pipeline-parallel ranks
    (tensor-parallel duplicates such as LayerNorm weights counted once)."""
    import torch
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel import param_is_not_tensor_parallel_duplicate

    local = sum(p.numel() for c in chunks for p in c.parameters() if param_is_not_tensor_parallel_duplicate(p))
    total = torch.tensor([local], dtype=torch.float64, device="cuda" if torch.cuda.is_available() else "cpu")
    torch.distributed.all_reduce(total, group=parallel_state.get_model_parallel_group())
    return int(total.item())


def run_one(args) -> dict:
    """One micro-batch size on this rank (of a torchrun job when --nproc-per-node > 1): build, warm up,
    time; returns the measurements."""
    import torch
    from megatron.core import parallel_state

    from megatron_alignpt.model.builder import build_model_chunks
    from megatron_alignpt.runtime import init_layout
    from megatron_alignpt.train.config import OptimizerConfig
    from megatron_alignpt.train.lm_task import LMTask
    from megatron_alignpt.train.optimizer import build_optimizer, build_scheduler
    from megatron_alignpt.train.telemetry import model_flops_per_step, peak_tflops
    from megatron_alignpt.train.trainer import train_step, validate_launch, wrap_ddp

    cuda = torch.cuda.is_available()
    shape = SHAPES[args.size]
    seq = args.seq_length or shape.seq_length
    parallel = parallel_config(args)
    precision = parallel.precision
    mbs, gbs = args.micro_batch_size, args.global_batch
    total_steps = args.warmup + args.steps

    init_layout(parallel, args.seed)
    world = torch.distributed.get_world_size()
    model_cfg = model_config(shape, args.layer_impl, seq, args.architecture)
    parallel.check_against(model_cfg, world)
    parallel.check_batch(world, gbs, mbs)
    chunks = build_model_chunks(model_cfg, parallel, shape.vocab_size)
    n_params = _parameters(chunks)
    ddp = wrap_ddp(chunks, parallel)
    opt_cfg = OptimizerConfig(lr=args.lr, min_lr=args.lr / 10, warmup_fraction=args.warmup_fraction)
    optimizer = build_optimizer(ddp, opt_cfg, parallel)
    scheduler = build_scheduler(optimizer, opt_cfg, total_steps)

    # Every data-parallel rank takes its slice of each global batch (the same slicing as GlobalBatchLoader).
    dp, dp_rank = parallel_state.get_data_parallel_world_size(), parallel_state.get_data_parallel_rank()
    per_rank = gbs // dp
    batches = []
    for t in range(total_steps):
        full = synthetic_batch(t, gbs, seq, shape.vocab_size, args.seed)
        batches.append({k: v[dp_rank * per_rank : (dp_rank + 1) * per_rank].contiguous() for k, v in full.items()})
        if t == 0:
            checksum = int(full["tokens"].sum())
    if cuda:
        batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]
    loader = SyntheticLoader(batches, mbs)
    cfg = SimpleNamespace(name=f"bench-{args.size}-mbs{mbs}", model=model_cfg, schedule=SimpleNamespace(micro_batch_size=mbs))
    task = SimpleNamespace(forward_step=LMTask.forward_step)
    del validate_launch  # the two checks above are what run_stage's validate_launch runs

    static_gib = None
    if cuda:
        torch.cuda.synchronize()
        static_gib = torch.cuda.memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()

    losses, grad_norms, step_ms = [], [], []
    events = []
    region_start = region_end = None
    wall0 = None
    for t in range(total_steps):
        if t == args.warmup:
            if cuda:
                region_start = torch.cuda.Event(enable_timing=True)
                region_start.record()
            wall0 = time.perf_counter()
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
        else:
            tick = time.perf_counter()
        metrics = train_step(ddp, optimizer, scheduler, task, loader, cfg)
        if cuda:
            end.record()
            events.append((begin, end))
        else:
            step_ms.append((time.perf_counter() - tick) * 1e3)
        losses.append(float(metrics["loss"]))
        grad_norms.append(float(metrics["grad_norm"]))
        if args.verbose and torch.distributed.get_rank() == 0:
            print(f"  step {t + 1}/{total_steps} loss {losses[-1]:.4f} grad_norm {grad_norms[-1]:.3f}", flush=True)
    if cuda:
        region_end = torch.cuda.Event(enable_timing=True)
        region_end.record()
        torch.cuda.synchronize()
        step_ms = [b.elapsed_time(e) for b, e in events]
        elapsed_s = region_start.elapsed_time(region_end) / 1e3
    else:
        elapsed_s = time.perf_counter() - wall0
    wall_s = time.perf_counter() - wall0

    tokens = args.steps * gbs * seq
    flops_step = model_flops_per_step(model_cfg, shape.vocab_size, gbs, seq)
    tflops = flops_step * args.steps / elapsed_s / world / 1e12
    peak = peak_tflops(precision, args.peak_tflops)
    result = {
        "micro_batch_size": mbs,
        "global_batch": gbs,
        "grad_accumulation": gbs // (mbs * dp),
        "seq_length": seq,
        "precision": precision,
        "layer_impl": args.layer_impl,
        "world_size": world,
        "data_parallel": dp,
        "parallel": asdict(parallel),
        "fusions": asdict(parallel.fusions),
        "resolved_fusions": resolved_fusions(parallel, args.layer_impl),
        "peak_tflops": peak,
        "parameters": n_params,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "timed_s": elapsed_s,
        "timed_wall_s": wall_s,
        "step_ms_median": statistics.median(step_ms[args.warmup :]),
        "step_ms_min": min(step_ms[args.warmup :]),
        "step_ms_max": max(step_ms[args.warmup :]),
        "step_ms_all": step_ms,
        "tokens_per_s": tokens / elapsed_s,
        "model_flops_per_step": flops_step,
        "tflops_per_gpu": tflops,
        "mfu": tflops / peak if peak else None,
        "losses": losses,
        "grad_norms": grad_norms,
        "data_checksum": checksum,
        "environment": environment(),
    }
    if cuda:
        result.update(
            static_memory_gib=static_gib,
            peak_allocated_gib=torch.cuda.max_memory_allocated() / 2**30,
            peak_reserved_gib=torch.cuda.max_memory_reserved() / 2**30,
        )
    if not all(math.isfinite(x) for x in losses):
        raise FloatingPointError(f"non-finite loss: {losses}")
    return result


def recipe(args, mbs: int) -> dict:
    shape = SHAPES[args.size]
    return {
        "size": args.size,
        "shape": asdict(shape),
        "seq_length": args.seq_length or shape.seq_length,
        "layer_impl": args.layer_impl,
        "architecture": args.architecture,
        "fusions": args.fusions,
        "fusion_overrides": list(args.fusion),
        "global_batch": args.global_batch,
        "micro_batch_size": mbs,
        "optimizer": {"type": "adam (megatron, decoupled wd 0.1, betas 0.9/0.95, eps 1e-8, clip 1.0)", "lr": args.lr,
                      "min_lr": args.lr / 10, "warmup_fraction": args.warmup_fraction, "decay": "cosine",
                      "train_iters_for_schedule": args.warmup + args.steps},
        "seed": args.seed,
        "data": f"synthetic Zipf({ZIPF_EXPONENT}) ids 2..V-1, each sequence its first half repeated; "
                "generator seed = seed * 1_000_003 + step (see benchmarks/train_throughput.py)",
    }


def check_golden(path: Path, result: dict, args) -> tuple[bool, str]:
    golden = json.loads(Path(path).read_text())
    if golden["data_checksum"] != result["data_checksum"]:
        return False, f"synthetic data differs from the golden run (checksum {result['data_checksum']} != {golden['data_checksum']})"
    want = golden["losses"]
    got = result["losses"][: len(want)]
    if len(got) < len(want):
        return False, f"run has {len(got)} steps, golden has {len(want)}: use --warmup/--steps totalling at least {len(want)}"
    worst = max(abs(g - w) / abs(w) for g, w in zip(got, want))
    ok = worst <= args.golden_rtol
    return ok, f"max relative loss difference over {len(want)} steps: {worst:.2e} (tolerance {args.golden_rtol:.0e})"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SHAPES), default="1.4b")
    p.add_argument("--micro-batch-sizes", default="1,2,4", help="comma-separated; each runs in its own process")
    p.add_argument("--global-batch", type=int, default=16, help="sequences per optimizer step")
    p.add_argument("--seq-length", type=int, default=0, help="0: the shape's own")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps")
    p.add_argument("--steps", type=int, default=15, help="timed steps")
    p.add_argument("--layer-impl", default="sdpa", choices=["sdpa", "local", "te", "auto"])
    p.add_argument("--architecture", default="gpt", choices=["gpt", "pythia"],
                   help="gpt: sequential residual; pythia: GPT-J parallel residual (the paper's models)")
    p.add_argument("--precision", choices=["bf16", "fp32", "fp8"], default=None, help="default: bf16 on GPU, fp32 on CPU")
    g = p.add_argument_group("parallel layout and precision (megatron_alignpt.model.config.ParallelConfig)")
    g.add_argument("--nproc-per-node", type=int, default=1,
                   help="ranks per micro-batch-size job (torchrun --standalone); the world size for the layout")
    g.add_argument("--tensor-parallel", type=int, default=1)
    g.add_argument("--pipeline-parallel", type=int, default=1)
    g.add_argument("--virtual-pipeline", type=int, default=1, help="model chunks per pipeline rank (interleaved 1F1B)")
    g.add_argument("--context-parallel", type=int, default=1)
    g.add_argument("--sequence-parallel", action="store_true")
    g.add_argument("--distributed-optimizer", action="store_true")
    g.add_argument("--overlap-grad-reduce", action="store_true")
    g.add_argument("--overlap-param-gather", action="store_true")
    g.add_argument("--fp8-format", choices=["hybrid", "e4m3"], default="hybrid")
    g.add_argument("--fp8-recipe", choices=["delayed", "current"], default="delayed")
    g.add_argument("--recompute", choices=["none", "selective", "full"], default="none")
    g.add_argument("--recompute-method", choices=["uniform", "block"], default="uniform")
    g.add_argument("--recompute-num-layers", type=int, default=1)
    g.add_argument("--peak-tflops", type=float, default=0.0, help="MFU denominator per GPU (0: H100 dense peak of the precision)")
    g.add_argument("--fusions", choices=["auto", "off"], default="auto",
                   help="fused kernels: auto (FusionConfig's defaults: all auto but bias_activation) or all off")
    g.add_argument("--fusion", action="append", default=[], metavar="NAME=auto|on|off",
                   help="one fused kernel's switch after --fusions (repeatable), e.g. rope=off, bias_activation=on")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup-fraction", type=float, default=0.25, help="LR warmup share of warmup+steps")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--out", type=Path, default=None, help="JSON with every measurement")
    p.add_argument("--golden-out", type=Path, default=None, help="write the losses of --golden-mbs's run here")
    p.add_argument("--golden-mbs", type=int, default=4, help="micro-batch size whose run gives the golden losses")
    p.add_argument("--check-golden", type=Path, default=None, help="compare losses with this golden file")
    p.add_argument("--golden-rtol", type=float, default=1e-2)
    p.add_argument("--child-timeout", type=int, default=900)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--micro-batch-size", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--child-result", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.global_batch % max(args.micro_batch_size, 1):
        p.error("--global-batch must be a multiple of each micro-batch size")
    return args


def _run_child(args, mbs: int, tmp: Path) -> dict:
    out = tmp / f"mbs{mbs}.json"
    launcher = [sys.executable]
    if args.nproc_per_node > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc_per_node}"]
    cmd = launcher + [str(Path(__file__).resolve()), "--micro-batch-size", str(mbs), "--child-result", str(out)]
    for flag in ("size", "global_batch", "seq_length", "warmup", "steps", "layer_impl", "architecture", "lr",
                 "warmup_fraction", "seed", "tensor_parallel", "pipeline_parallel", "virtual_pipeline", "context_parallel",
                 "fp8_format", "fp8_recipe", "recompute", "recompute_method", "recompute_num_layers", "peak_tflops",
                 "fusions"):
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    for item in args.fusion:
        cmd += ["--fusion", item]
    for flag in ("sequence_parallel", "distributed_optimizer", "overlap_grad_reduce", "overlap_param_gather", "verbose"):
        if getattr(args, flag):
            cmd.append(f"--{flag.replace('_', '-')}")
    if args.precision:
        cmd += ["--precision", args.precision]
    print(f"[train_throughput] micro-batch {mbs}: starting", flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.child_timeout)
    except subprocess.TimeoutExpired:
        return {"micro_batch_size": mbs, "error": f"timed out after {args.child_timeout}s"}
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stdout + proc.stderr)[-3000:]
        oom = "out of memory" in tail.lower()
        print(f"[train_throughput] micro-batch {mbs}: {'OUT OF MEMORY' if oom else 'FAILED'} (rc {proc.returncode})\n{tail}", flush=True)
        return {"micro_batch_size": mbs, "error": "out of memory" if oom else f"rc {proc.returncode}", "log_tail": tail}
    if args.verbose:
        print(proc.stdout, end="", flush=True)
    return json.loads(out.read_text())


def main(argv=None) -> int:
    from megatron_alignpt.library_noise import quiet_library_noise

    quiet_library_noise()
    args = parse_args(argv)
    if args.child_result is not None:  # one micro-batch size, in this process (one rank of the job)
        result = run_one(args)
        import torch

        if torch.distributed.get_rank() == 0:
            write_json(args.child_result, result)
        return 0

    sizes = [int(x) for x in args.micro_batch_sizes.split(",") if x.strip()]
    for m in sizes:
        if args.global_batch % m:
            raise SystemExit(f"--global-batch {args.global_batch} is not a multiple of micro-batch size {m}")
    fusion_config(args)  # a bad --fusion fails here, before any child starts
    with tempfile.TemporaryDirectory() as tmp:
        results = [_run_child(args, m, Path(tmp)) for m in sizes]
    ok = [r for r in results if "error" not in r]
    rc = 0 if ok else 1

    reference = next((r for r in ok if r["micro_batch_size"] == args.golden_mbs), ok[0] if ok else None)
    for r in ok:  # gradient accumulation must not change the maths: compare loss curves across sizes
        diffs = [abs(a - b) / abs(b) for a, b in zip(r["losses"], reference["losses"])]
        r["max_rel_loss_diff_vs_mbs%d" % reference["micro_batch_size"]] = max(diffs)

    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["micro_batch_size"], "-", "-", "-", "-", "-", "-", "-", r["error"]])
            continue
        rows.append([
            r["micro_batch_size"], r["grad_accumulation"], f"{r['step_ms_median']:.1f}", f"{r['tokens_per_s']:,.0f}",
            f"{r['tflops_per_gpu']:.3g}", "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%",
            "n/a" if "peak_allocated_gib" not in r else f"{r['peak_allocated_gib']:.1f}",
            "n/a" if "peak_reserved_gib" not in r else f"{r['peak_reserved_gib']:.1f}",
            f"{r['losses'][-1]:.4f}",
        ])
    best = max(ok, key=lambda r: r["tokens_per_s"]) if ok else None
    payload = {
        "benchmark": "train_throughput",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "environment": ok[0]["environment"] if ok else environment(),
        "recipe": recipe(args, 0),
        "flops_formula": "3*B*s*(L*(8h^2 + 4hf + 4sh) + 2hV) per step = 72*B*s*L*h^2*(1 + s/(6h) + V/(12hL)) "
                         "for f=4h (Narayanan et al. 2021); TFLOP/s per GPU divides by the ranks",
        "peak_tflops": ok[0]["peak_tflops"] if ok else None,
        "results": results,
        "best_micro_batch_size": best["micro_batch_size"] if best else None,
    }
    if args.golden_out and reference is not None:
        golden = {
            "recipe": recipe(args, reference["micro_batch_size"]),
            "precision": reference["precision"],
            "data_checksum": reference["data_checksum"],
            "losses": reference["losses"],
            "grad_norms": reference["grad_norms"],
            "loss_spread_across_micro_batch_sizes": {
                str(r["micro_batch_size"]): r["max_rel_loss_diff_vs_mbs%d" % reference["micro_batch_size"]] for r in ok
            },
            "environment": reference["environment"],
            "date": payload["date"],
            "note": "losses of steps 1..N (warmup steps included); compare with --check-golden",
        }
        write_json(args.golden_out, golden)
        print(f"[train_throughput] golden losses -> {args.golden_out}", flush=True)
    if args.check_golden and reference is not None:
        passed, message = check_golden(args.check_golden, reference, args)
        payload["golden_check"] = {"file": str(args.check_golden), "passed": passed, "message": message}
        print(f"[train_throughput] golden check {'PASSED' if passed else 'FAILED'}: {message}", flush=True)
        rc = rc or (0 if passed else 1)
    if args.out:
        write_json(args.out, payload)

    env = payload["environment"]
    print(f"\n{args.size}: {ok[0]['parameters'] / 1e6:,.1f}M parameters, " if ok else f"\n{args.size}: ", end="")
    layout = (f"{args.nproc_per_node} rank(s): TP {args.tensor_parallel} x CP {args.context_parallel} x "
              f"PP {args.pipeline_parallel}" + (f" (x{args.virtual_pipeline} virtual)" if args.virtual_pipeline > 1 else "")
              + (", SP" if args.sequence_parallel else "") + (", distributed optimizer" if args.distributed_optimizer else "")
              + (f", recompute {args.recompute}" if args.recompute != "none" else "")
              + f"; fusions {args.fusions}" + "".join(f", {item}" for item in args.fusion))
    print(f"seq {args.seq_length or SHAPES[args.size].seq_length}, global batch {args.global_batch}, "
          f"{args.layer_impl}, {ok[0]['precision'] if ok else '?'}; {layout}; "
          f"{env.get('gpu', env.get('cpu'))}; torch {env['torch']}, megatron-core {env['megatron_core']}")
    print_table(["mbs", "accum", "step ms", "tokens/s", "TFLOP/s", "MFU", "peak alloc GiB", "peak rsv GiB", "last loss"], rows)
    if ok:
        on = [name for name, value in ok[0]["resolved_fusions"].items() if value is True]
        print(f"resolved fusions: {', '.join(on) or 'none'} (cross-entropy {ok[0]['resolved_fusions']['cross_entropy_impl']})")
    if best:
        print(f"best: micro-batch {best['micro_batch_size']} at {best['tokens_per_s']:,.0f} tokens/s, "
              f"{best['tflops_per_gpu']:.3g} TFLOP/s" + ("" if best["mfu"] is None else f", MFU {100 * best['mfu']:.1f}%"))
        for r in ok:
            key = "max_rel_loss_diff_vs_mbs%d" % reference["micro_batch_size"]
            print(f"  mbs {r['micro_batch_size']}: losses vs mbs {reference['micro_batch_size']}: max rel diff {r[key]:.2e}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
