"""Training throughput of a plain Hugging Face transformers GPT-NeoX loop: the peer of train_throughput.py.

The same shape (`--size`, `benchmarks/_common.py`), the same synthetic token stream
(`train_throughput.synthetic_batch`: same seed, same batches), the same FLOPs formula
(`_common.megatron_model_flops_per_step`) and timing, and the same JSON shape as
`train_throughput.py`, so the two can be set side by side (`gpu_acceptance.py` runs both in one call).

What runs, per step, is what a careful hand-written HF loop does:
- model: `GPTNeoXForCausalLM` built on the device from the config.json our converter writes for that
  shape (`megatron_alignpt.convert.hf_config.hf_config_from_model`: parallel residual, 25% rotary with
  base 10000, exact GELU, untied embeddings, LayerNorm eps 1e-5, no dropout), random init (std 0.02),
  attention `--attn-implementation` (default sdpa), fp32 weights;
- precision: bf16 = fp32 master weights with `torch.autocast(bfloat16)` around forward and loss; fp32
  (the default on CPU) = no autocast;
- loss: cross-entropy of the logits (in fp32) against the stream's labels, mean over the micro-batch's
  tokens, divided by the number of micro-batches (gradient accumulation to `--global-batch`);
- optimizer: `torch.optim.AdamW` (fused on CUDA, foreach on CPU), betas 0.9/0.95, eps 1e-8, weight decay
  0.1 on matrices only, gradient clipping to norm 1.0, and megatron's LR schedule (linear warm-up from 0
  over `--warmup-fraction` of the steps, cosine to lr/10), as train_throughput.py's optimizer;
- `--compile`: the forward + loss function goes through `torch.compile` (default mode); compilation
  happens in the warm-up steps.
The loss and gradient norm are read back every step, as in train_throughput.py.

Timing: CUDA events around each step and around the timed region after `--warmup` untimed steps
(wall clock on CPU); tokens/s = timed steps x global batch x seq / elapsed. TFLOP/s per GPU and MFU
(against the H100 dense peak of the precision, `megatron_alignpt.train.telemetry.peak_tflops`) use
Megatron's formula, 72 * B * s * L * h^2 * (1 + s/(6h) + V/(12 h L)), so HF and megatron figures count
the same model FLOPs. Micro-batch sizes run one after another in this process (peak memory is reset
between them; an out-of-memory size is reported, not fatal).

Commands (from the repository root):

    # GPU: Pythia-1.4B shape, seq 2048, global batch 16, bf16 autocast; then the same with torch.compile
    python benchmarks/hf_train_throughput.py --size 1.4b --micro-batch-sizes 8 --out runs/bench/hf_1p4b.json
    python benchmarks/hf_train_throughput.py --size 1.4b --micro-batch-sizes 8 --compile --out runs/bench/hf_1p4b_compile.json

    # CPU smoke test (fp32, tiny shape, no compile)
    python benchmarks/hf_train_throughput.py --size tiny --micro-batch-sizes 2 --warmup 1 --steps 2
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

from _common import SHAPES, Shape, environment, megatron_model_flops_per_step, print_table, write_json
from train_throughput import ZIPF_EXPONENT, synthetic_batch

ADAM_BETAS = (0.9, 0.95)
ADAM_EPS = 1e-8
WEIGHT_DECAY = 0.1
CLIP_GRAD = 1.0


def hf_config(shape: Shape, seq_length: int, attn_implementation: str):
    """The GPTNeoXConfig of a Pythia-architecture model of `shape` (what our HF export writes)."""
    from transformers import GPTNeoXConfig

    from megatron_alignpt.convert.hf_config import hf_config_from_model
    from megatron_alignpt.model.config import ModelConfig

    model = ModelConfig(num_layers=shape.num_layers, hidden_size=shape.hidden_size,
                        num_attention_heads=shape.num_attention_heads, ffn_hidden_size=shape.ffn_hidden_size,
                        seq_length=seq_length, architecture="pythia")
    fields = hf_config_from_model(model, shape.vocab_size, eod_id=0, dtype="float32")
    fields.update(use_cache=False, attn_implementation=attn_implementation)
    return GPTNeoXConfig(**fields)


def build_model(config, device):
    """Random-initialised GPTNeoXForCausalLM in fp32, built directly on `device`."""
    import torch
    from transformers import GPTNeoXForCausalLM

    with torch.device(device):
        model = GPTNeoXForCausalLM(config)
    return model.float().train()


def megatron_lr(step: int, lr: float, min_lr: float, warmup: int, total: int) -> float:
    """megatron's OptimizerParamScheduler (init_lr 0, linear warm-up, cosine decay) after `step` steps."""
    if warmup > 0 and step <= warmup:
        return lr * step / warmup
    if step > total:
        return min_lr
    ratio = (step - warmup) / max(total - warmup, 1)
    return min_lr + 0.5 * (math.cos(math.pi * ratio) + 1.0) * (lr - min_lr)


def build_optimizer(model, lr: float, cuda: bool):
    """AdamW with weight decay on matrices only (megatron leaves biases and norms undecayed)."""
    import torch

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
    kind = {"fused": True} if cuda else {"foreach": True}
    return torch.optim.AdamW(groups, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, **kind)


def make_forward_loss(model, precision: str, compile_model: bool):
    """(tokens, labels) -> mean token cross-entropy; autocast to bf16 for precision bf16."""
    import contextlib

    import torch

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

    def forward_loss(tokens, labels):
        with autocast():
            logits = model(input_ids=tokens, use_cache=False).logits
        return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))

    return torch.compile(forward_loss) if compile_model else forward_loss


class Trainer:
    """One micro-batch size: model, optimizer, LR schedule and the step."""

    def __init__(self, args, shape: Shape, seq: int, mbs: int, device):
        import torch

        self.args, self.mbs, self.device = args, mbs, device
        self.cuda = device.type == "cuda"
        torch.manual_seed(args.seed)
        self.model = build_model(hf_config(shape, seq, args.attn_implementation), device)
        self.params = list(self.model.parameters())
        self.optimizer = build_optimizer(self.model, args.lr, self.cuda)
        self.forward_loss = make_forward_loss(self.model, args.precision, args.compile)
        self.total_steps = args.warmup + args.steps
        self.warmup_steps = int(round(args.warmup_fraction * self.total_steps))
        self.done = 0

    def step(self, batch: dict) -> tuple[float, float]:
        """One optimizer step over the global batch; returns (loss, gradient norm before clipping)."""
        import torch

        lr = megatron_lr(self.done, self.args.lr, self.args.lr / 10, self.warmup_steps, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        micro = batch["tokens"].shape[0] // self.mbs
        total = torch.zeros((), device=self.device)
        for i in range(micro):
            rows = slice(i * self.mbs, (i + 1) * self.mbs)
            tokens = batch["tokens"][rows].to(self.device, non_blocking=True)
            labels = batch["labels"][rows].to(self.device, non_blocking=True)
            loss = self.forward_loss(tokens, labels) / micro
            loss.backward()
            total += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, CLIP_GRAD, foreach=True)
        self.optimizer.step()
        self.done += 1
        return float(total), float(grad_norm)

    def parameters(self) -> int:
        return sum(p.numel() for p in self.params)


def _timed_steps(trainer: Trainer, batches: list[dict], warmup: int, cuda: bool, verbose: bool) -> dict:
    """Run every batch; CUDA events (or wall clock on CPU) around each step and the timed region."""
    import torch

    losses, grad_norms, step_ms, events = [], [], [], []
    region_start = wall0 = None
    for t, batch in enumerate(batches):
        if t == warmup:
            if cuda:
                region_start = torch.cuda.Event(enable_timing=True)
                region_start.record()
            wall0 = time.perf_counter()
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
        tick = time.perf_counter()
        loss, grad_norm = trainer.step(batch)
        if cuda:
            end.record()
            events.append((begin, end))
        else:
            step_ms.append((time.perf_counter() - tick) * 1e3)
        losses.append(loss)
        grad_norms.append(grad_norm)
        if verbose:
            print(f"  step {t + 1}/{len(batches)} loss {loss:.4f} grad_norm {grad_norm:.3f}", flush=True)
    if cuda:
        region_end = torch.cuda.Event(enable_timing=True)
        region_end.record()
        torch.cuda.synchronize()
        step_ms = [b.elapsed_time(e) for b, e in events]
        elapsed_s = region_start.elapsed_time(region_end) / 1e3
    else:
        elapsed_s = time.perf_counter() - wall0
    return {"losses": losses, "grad_norms": grad_norms, "step_ms": step_ms, "elapsed_s": elapsed_s,
            "wall_s": time.perf_counter() - wall0}


def synthetic_batches(args, shape: Shape, seq: int, pin: bool) -> tuple[list[dict], int]:
    """The benchmark's synthetic global batches (train_throughput.synthetic_batch) and the first one's checksum."""
    total = args.warmup + args.steps
    batches = [synthetic_batch(t, args.global_batch, seq, shape.vocab_size, args.seed) for t in range(total)]
    checksum = int(batches[0]["tokens"].sum())
    if pin:
        batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]
    return batches, checksum


def run_one(args, mbs: int, batches: list[dict], checksum: int) -> dict:
    """Build, warm up and time one micro-batch size; returns train_throughput.py's result fields."""
    import torch

    from megatron_alignpt.train.telemetry import peak_tflops

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    shape = SHAPES[args.size]
    seq = args.seq_length or shape.seq_length
    trainer = Trainer(args, shape, seq, mbs, device)
    static_gib = None
    if cuda:
        torch.cuda.synchronize()
        static_gib = torch.cuda.memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    timed = _timed_steps(trainer, batches, args.warmup, cuda, args.verbose)
    flops_step = megatron_model_flops_per_step(args.global_batch, seq, shape.num_layers, shape.hidden_size, shape.vocab_size)
    tflops = flops_step * args.steps / timed["elapsed_s"] / 1e12
    peak = peak_tflops(args.precision, args.peak_tflops)
    step_ms = timed["step_ms"][args.warmup:]
    result = {
        "micro_batch_size": mbs, "global_batch": args.global_batch, "grad_accumulation": args.global_batch // mbs,
        "seq_length": seq, "precision": args.precision, "layer_impl": f"hf-{args.attn_implementation}",
        "attn_implementation": args.attn_implementation, "compile": args.compile, "world_size": 1, "data_parallel": 1,
        "peak_tflops": peak, "parameters": trainer.parameters(), "warmup_steps": args.warmup, "timed_steps": args.steps,
        "timed_s": timed["elapsed_s"], "timed_wall_s": timed["wall_s"], "step_ms_median": statistics.median(step_ms),
        "step_ms_min": min(step_ms), "step_ms_max": max(step_ms), "step_ms_all": timed["step_ms"],
        "tokens_per_s": args.steps * args.global_batch * seq / timed["elapsed_s"], "model_flops_per_step": flops_step,
        "tflops_per_gpu": tflops, "mfu": tflops / peak if peak else None, "losses": timed["losses"],
        "grad_norms": timed["grad_norms"], "data_checksum": checksum, "environment": environment(),
    }
    if cuda:
        result.update(static_memory_gib=static_gib, peak_allocated_gib=torch.cuda.max_memory_allocated() / 2**30,
                      peak_reserved_gib=torch.cuda.max_memory_reserved() / 2**30)
    if not all(math.isfinite(x) for x in timed["losses"]):
        raise FloatingPointError(f"non-finite loss: {timed['losses']}")
    return result


def run_size(args, mbs: int, batches: list[dict], checksum: int) -> dict:
    """`run_one`, with an out-of-memory size or a failure reported instead of raised."""
    import gc

    import torch

    print(f"[hf_train_throughput] micro-batch {mbs}: starting", flush=True)
    try:
        return run_one(args, mbs, batches, checksum)
    except torch.cuda.OutOfMemoryError:
        print(f"[hf_train_throughput] micro-batch {mbs}: OUT OF MEMORY", flush=True)
        return {"micro_batch_size": mbs, "error": "out of memory"}
    except Exception as err:  # noqa: BLE001 - one failing size must not stop the others
        print(f"[hf_train_throughput] micro-batch {mbs}: FAILED: {type(err).__name__}: {err}", flush=True)
        return {"micro_batch_size": mbs, "error": f"{type(err).__name__}: {err}"[:2000]}
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def recipe(args) -> dict:
    shape = SHAPES[args.size]
    return {
        "size": args.size,
        "shape": asdict(shape),
        "seq_length": args.seq_length or shape.seq_length,
        "model": "transformers GPTNeoXForCausalLM (parallel residual, 25% rotary, exact GELU, untied embeddings)",
        "attn_implementation": args.attn_implementation,
        "compile": args.compile,
        "precision": args.precision + (" (fp32 weights, torch.autocast bf16)" if args.precision == "bf16" else ""),
        "global_batch": args.global_batch,
        "optimizer": {"type": f"torch AdamW (fused on CUDA), betas {ADAM_BETAS}, eps {ADAM_EPS}, wd {WEIGHT_DECAY} on "
                              f"matrices, clip {CLIP_GRAD}", "lr": args.lr, "min_lr": args.lr / 10,
                      "warmup_fraction": args.warmup_fraction, "decay": "cosine (megatron's schedule)",
                      "train_iters_for_schedule": args.warmup + args.steps},
        "seed": args.seed,
        "data": f"synthetic Zipf({ZIPF_EXPONENT}) ids 2..V-1, each sequence its first half repeated; "
                "generator seed = seed * 1_000_003 + step (train_throughput.synthetic_batch)",
    }


def parse_args(argv=None):
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SHAPES), default="1.4b")
    p.add_argument("--micro-batch-sizes", default="8", help="comma-separated; run one after another in this process")
    p.add_argument("--global-batch", type=int, default=16, help="sequences per optimizer step")
    p.add_argument("--seq-length", type=int, default=0, help="0: the shape's own")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps (compilation happens here)")
    p.add_argument("--steps", type=int, default=15, help="timed steps")
    p.add_argument("--precision", choices=["bf16", "fp32"], default=None,
                   help="bf16: fp32 weights + bf16 autocast (default on GPU); fp32 (default on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the forward + loss")
    p.add_argument("--attn-implementation", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"])
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup-fraction", type=float, default=0.25, help="LR warmup share of warmup+steps")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="MFU denominator (0: H100 dense peak of the precision)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--out", type=Path, default=None, help="JSON with every measurement")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    args.precision = args.precision or ("bf16" if torch.cuda.is_available() else "fp32")
    if args.precision == "bf16" and not torch.cuda.is_available():
        p.error("--precision bf16 autocasts on CUDA; use fp32 on CPU")
    args.sizes = [int(x) for x in args.micro_batch_sizes.split(",") if x.strip()]
    for m in args.sizes:
        if args.global_batch % m:
            p.error(f"--global-batch {args.global_batch} is not a multiple of micro-batch size {m}")
    return args


def _print_summary(args, results: list[dict], env: dict) -> None:
    ok = [r for r in results if "error" not in r]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["micro_batch_size"], "-", "-", "-", "-", "-", "-", r["error"][:60]])
            continue
        rows.append([r["micro_batch_size"], r["grad_accumulation"], f"{r['step_ms_median']:.1f}", f"{r['tokens_per_s']:,.0f}",
                     f"{r['tflops_per_gpu']:.3g}", "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%",
                     "n/a" if "peak_allocated_gib" not in r else f"{r['peak_allocated_gib']:.1f}", f"{r['losses'][-1]:.4f}"])
    params = f"{ok[0]['parameters'] / 1e6:,.1f}M parameters, " if ok else ""
    print(f"\nHF GPT-NeoX {args.size}: {params}seq {args.seq_length or SHAPES[args.size].seq_length}, global batch "
          f"{args.global_batch}, {args.precision}, attention {args.attn_implementation}"
          f"{', torch.compile' if args.compile else ''}; {env.get('gpu', env.get('cpu'))}; torch {env['torch']}, "
          f"transformers {env.get('transformers')}")
    print_table(["mbs", "accum", "step ms", "tokens/s", "TFLOP/s", "MFU", "peak alloc GiB", "last loss"], rows)


def main(argv=None) -> int:
    import torch

    from megatron_alignpt.library_noise import quiet_library_noise

    quiet_library_noise()
    args = parse_args(argv)
    shape = SHAPES[args.size]
    batches, checksum = synthetic_batches(args, shape, args.seq_length or shape.seq_length, torch.cuda.is_available())
    results = [run_size(args, mbs, batches, checksum) for mbs in args.sizes]
    ok = [r for r in results if "error" not in r]
    best = max(ok, key=lambda r: r["tokens_per_s"]) if ok else None
    env = ok[0]["environment"] if ok else environment()
    payload = {
        "benchmark": "hf_train_throughput",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "environment": env,
        "recipe": recipe(args),
        "flops_formula": "72*B*s*L*h^2*(1 + s/(6h) + V/(12hL)) per step (Narayanan et al. 2021), as train_throughput.py",
        "peak_tflops": ok[0]["peak_tflops"] if ok else None,
        "results": results,
        "best_micro_batch_size": best["micro_batch_size"] if best else None,
    }
    if args.out:
        write_json(args.out, payload)
    _print_summary(args, results, env)
    if best:
        print(f"best: micro-batch {best['micro_batch_size']} at {best['tokens_per_s']:,.0f} tokens/s, "
              f"{best['tflops_per_gpu']:.3g} TFLOP/s" + ("" if best["mfu"] is None else f", MFU {100 * best['mfu']:.1f}%"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
