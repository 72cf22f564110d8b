"""The checks of the one-call GPU acceptance run (`benchmarks/gpu_acceptance.py` runs each in its own process).

Each `check_*` function takes the run's `Context`, records its key figures with `ctx.record(...)` as it
measures them, raises `Skipped` when this machine cannot run it and fails by raising (an assertion
with the figures that decided it). Models are small (2 layers, hidden 128, Pythia architecture) except in
the throughput checks, which run `train_throughput.py` / `hf_train_throughput.py`. Without CUDA the same
functions rehearse the plumbing on CPU: `ctx.impl("te")` is sdpa and `ctx.precision("bf16")` is fp32 there.

    python benchmarks/gpu_acceptance.py --list          # the checks and what each proves
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from gpu_acceptance import REPO, Context, Skipped

HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------- shared helpers for checks

WORDS = "the cat sat on a mat while dogs ran in parks and birds sang over green hills near old towns".split()
TINY = dict(num_layers=2, hidden_size=128, num_attention_heads=4)
"""Functional checks' model: Pythia architecture, FP8-friendly dimensions (multiples of 16)."""


def _texts(rng, n: int, lo: int, hi: int) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def lm_data(root: Path) -> dict:
    """A BPE tokenizer, two small indexed datasets and a 75/25 blend manifest (as tests/conftest.py's tiny_lm_data)."""
    import random

    from data_prep.manifest import DatasetEntry, build_condition_manifest
    from data_prep.tokenize import tokenize_to_indexed, train_bpe_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    texts = [t + "." for t in _texts(random.Random(0), 400, 20, 80)]
    tokenizer = train_bpe_tokenizer(texts, 320, root / "tokenizer.json")
    tokenize_to_indexed(texts[:300], tokenizer, root / "base")
    tokenize_to_indexed(texts[300:], tokenizer, root / "extra")
    manifest = build_condition_manifest(
        "align_upsampled", "pretrain", [DatasetEntry.from_prefix("base", root / "base")],
        DatasetEntry.from_prefix("extra", root / "extra", synthetic=True), 0.25, tokenizer=str(tokenizer))
    manifest.to_json(root / "manifest.json")
    return {"tokenizer": Path(tokenizer), "manifest": root / "manifest.json", "texts": texts}


def posttrain_data(root: Path) -> dict:
    """Chat conversations (SFT) and preference pairs (DPO) where the chosen reply is always one kind of text."""
    import random

    rng = random.Random(0)
    root.mkdir(parents=True, exist_ok=True)
    chat = root / "chat.jsonl"
    rows = [{"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]}
            for u, a in zip(_texts(rng, 24, 2, 12), _texts(rng, 24, 2, 14))]
    chat.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = root / "pairs.jsonl"
    prompts = _texts(rng, 12, 2, 8)
    pairs.write_text("".join(json.dumps({
        "prompt": p, "chosen_response": "birds sang over green hills " + _texts(rng, 1, 0, 3)[0],
        "rejected_response": "dogs ran in parks " + _texts(rng, 1, 0, 3)[0]}) + "\n" for p in prompts))
    return {"chat": chat, "pairs": pairs}


def stage_config(ctx: Context, data: dict, out: Path, parallel, *, kind: str = "pretrain", iters: int = 8,
                 save_interval: int = 0, init_from: Optional[Path] = None, layer_impl: str = "te", seq: int = 64,
                 gbs: int = 8, mbs: int = 2, lr: float = 2e-3, warmup_fraction: float = 0.2, decay_style: str = "cosine",
                 data_path: Optional[Path] = None, **extra):
    """A small StageConfig on the functional checks' model."""
    from megatron_alignpt.model.config import ModelConfig
    from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig, StageConfig

    return StageConfig(
        name=f"acceptance-{kind}", kind=kind,
        model=ModelConfig(**TINY, seq_length=seq, max_position_embeddings=max(seq, 128), layer_impl=ctx.impl(layer_impl),
                          architecture="pythia"),
        optimizer=OptimizerConfig(lr=lr, warmup_fraction=warmup_fraction, decay_style=decay_style),
        schedule=ScheduleConfig(train_iters=iters, global_batch_size=gbs, micro_batch_size=mbs,
                                save_interval=save_interval, log_interval=100),
        tokenizer=data["tokenizer"], data=data_path or data["manifest"], output_dir=Path(out), parallel=parallel,
        init_from=init_from, **extra,
    )


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line]


def te_module_count(model) -> int:
    """Modules of `model` that are Transformer Engine modules (megatron's TE wrappers subclass them)."""
    chunks = model if isinstance(model, (list, tuple)) else [model]
    return sum(any(k.__module__.startswith("transformer_engine") for k in type(m).__mro__)
               for chunk in chunks for m in chunk.modules())


class BuildSpy:
    """Records, for every model and optimizer `run_stage` builds, TE module counts and optimizer classes."""

    def __init__(self):
        self.te_modules: list[int] = []
        self.optimizers: list[str] = []

    def __enter__(self):
        from megatron_alignpt.train import trainer

        self._trainer = trainer
        self._build_model, self._build_opt = trainer.build_model_chunks, trainer.build_optimizer

        def build_model(*args, **kwargs):
            chunks = self._build_model(*args, **kwargs)
            self.te_modules.append(te_module_count(chunks))
            return chunks

        def build_optimizer(*args, **kwargs):
            opt = self._build_opt(*args, **kwargs)
            self.optimizers += [type(o).__name__ for o in getattr(opt, "chained_optimizers", [opt])]
            return opt

        trainer.build_model_chunks, trainer.build_optimizer = build_model, build_optimizer
        return self

    def __exit__(self, *exc):
        self._trainer.build_model_chunks, self._trainer.build_optimizer = self._build_model, self._build_opt


def require_te(ctx: Context) -> None:
    if ctx.gpu and importlib.util.find_spec("transformer_engine") is None:
        raise Skipped("transformer_engine is not installed (run the TE set-up of ../shared/GPU.md first)")


def require_runtime(ctx: Context, model_cfg, parallel) -> None:
    """Skip when this machine refuses the layout (FP8 without TE or before Hopper, ...)."""
    from megatron_alignpt.model.builder import LayoutUnavailable, check_runtime

    try:
        check_runtime(model_cfg, parallel)
    except LayoutUnavailable as why:
        raise Skipped(str(why)) from None


def max_abs_diff(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        raise AssertionError(f"{len(a)} values against {len(b)}")
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0)


def losses(rows: list[dict], first_iteration: int = 1) -> list[float]:
    return [r["loss"] for r in rows if r["iteration"] >= first_iteration]


def continue_from(source: Path, dest: Path, iteration: int) -> None:
    """A run directory whose newest checkpoint is `source`'s checkpoint at `iteration`."""
    name = f"iter_{iteration:07d}"
    shutil.copytree(source / "checkpoints" / name, dest / "checkpoints" / name)
    (dest / "checkpoints" / "latest.txt").write_text(f"{iteration}\n")


def resolved_fusions(ctx: Context, fusions=None) -> dict:
    from megatron_alignpt.model.config import FusionConfig
    from megatron_alignpt.model.fusions import resolve_fusions

    return asdict(resolve_fusions(fusions or FusionConfig(), ctx.impl("te"), strict=False))


# ----------------------------------------------------------------------------- functional checks


def probe_environment(ctx: Context) -> None:
    """Versions, GPU, driver, compute mode, and which optional packages import."""
    import torch
    from _common import environment

    ctx.record(**environment())
    smi = _nvidia_smi(["name", "memory.total", "driver_version", "clocks.max.sm", "compute_mode"])
    ctx.record(nvidia_smi=smi, compute_mode=smi.get("compute_mode", "unknown") if smi else "unknown")
    ctx.record(packages={name: importlib.util.find_spec(name) is not None for name in (
        "transformer_engine", "transformers", "tokenizers", "pandas", "pyarrow", "nbclient", "nbformat", "apex",
        "psutil", "tensorboard", "pytest", "datatrove")})
    if ctx.gpu and importlib.util.find_spec("transformer_engine") is not None:
        try:
            import transformer_engine.pytorch  # noqa: F401

            ctx.record(transformer_engine_import="ok")
        except Exception as err:  # noqa: BLE001
            ctx.record(transformer_engine_import=f"{type(err).__name__}: {err}"[:500])
    ctx.record(rehearsal_on_cpu=not torch.cuda.is_available())


def _nvidia_smi(fields: list[str]) -> dict:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if not out:
        return {}
    return dict(zip(fields, (v.strip() for v in out.splitlines()[0].split(","))))


def check_pytest_gpu(ctx: Context) -> None:
    """`pytest -m gpu tests/gpu`, each test's outcome folded in from its junit XML."""
    if not ctx.gpu:
        raise Skipped("no CUDA: the GPU tests skip themselves on CPU")
    junit = ctx.artefacts / "pytest_gpu.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/gpu", "-v", "-rs", "-p", "no:cacheprovider",
           f"--junitxml={junit}", "--basetemp", str(ctx.work / "pytest")]
    try:
        proc = subprocess.run(cmd, cwd=REPO, timeout=max(ctx.remaining() - 10, 10))
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    tests = parse_junit(junit) if junit.is_file() else {}
    counts = {s: sum(t["status"] == s for t in tests.values()) for s in ("passed", "failed", "skipped")}
    ctx.record(pytest_rc=rc, counts=counts, tests=tests)
    failed = [name for name, t in tests.items() if t["status"] == "failed"]
    if rc == "timeout":
        raise AssertionError(f"pytest timed out; finished so far: {counts}")
    if failed or rc not in (0, 5):
        raise AssertionError(f"pytest rc {rc}; failed: {', '.join(failed) or 'none reported'}")


def parse_junit(path: Path) -> dict:
    """test id -> {status, seconds, message} from a pytest junit XML file."""
    tests = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        status, message = "passed", ""
        for tag, as_status in (("failure", "failed"), ("error", "failed"), ("skipped", "skipped")):
            node = case.find(tag)
            if node is not None:
                status, message = as_status, (node.get("message") or node.text or "")[:1000]
                break
        tests[name] = {"status": status, "seconds": float(case.get("time", 0) or 0), "message": message}
    return tests


def check_resume(ctx: Context, precision: str, fp8_recipe: str = "delayed", iters: int = 10, crash_after: int = 6,
                 save_interval: int = 4, tolerance: float = 1e-6) -> None:
    """TE training at `precision`: a crash-and-resume run repeats the straight run's losses; loss falls."""
    require_te(ctx)
    if precision == "fp8" and not ctx.gpu:
        raise Skipped("FP8 needs a Hopper-or-newer GPU with Transformer Engine (CPU rehearsal)")
    from megatron_alignpt.model.config import ParallelConfig
    from megatron_alignpt.train.trainer import run_stage

    parallel = ParallelConfig(precision=ctx.precision(precision), fp8_recipe=fp8_recipe)
    data = lm_data(ctx.work / "data")
    straight_cfg = stage_config(ctx, data, ctx.work / "straight", parallel, iters=iters, save_interval=save_interval)
    require_runtime(ctx, straight_cfg.model, parallel)
    ctx.record(layer_impl=straight_cfg.model.layer_impl, precision=parallel.precision,
               fp8_recipe=fp8_recipe if parallel.fp8 else None, resolved_fusions=resolved_fusions(ctx))
    with BuildSpy() as spy:
        run_stage(straight_cfg)
        resumed_cfg = stage_config(ctx, data, ctx.work / "resumed", parallel, iters=iters, save_interval=save_interval)
        assert run_stage(resumed_cfg, stop_after=crash_after).iteration == crash_after
        run_stage(resumed_cfg)
    straight, resumed = metrics(ctx.work / "straight"), metrics(ctx.work / "resumed")
    diff = max_abs_diff(losses(resumed), losses(straight))
    ctx.record(losses_straight=losses(straight), losses_resumed=losses(resumed), max_abs_loss_diff=diff,
               resumed_from_iteration=(crash_after // save_interval) * save_interval, te_modules=spy.te_modules[0],
               optimizers=sorted(set(spy.optimizers)), tolerance=tolerance)
    if ctx.gpu:
        assert spy.te_modules[0] > 0, "no Transformer Engine module in the model"
    assert [r["lr"] for r in resumed] == [r["lr"] for r in straight], "learning rates differ after resume"
    assert diff <= tolerance, f"resumed losses differ from the straight run by up to {diff:.3g} (> {tolerance:g})"
    first, last = losses(straight)[0], losses(straight)[-1]
    assert last < first - 0.1, f"loss did not fall: {first:.4f} -> {last:.4f}"


def check_distributed_optimizer(ctx: Context, iters: int = 8, crash_after: int = 5, save_interval: int = 4,
                                tolerance: float = 1e-6) -> None:
    """The distributed optimizer (DP=1, as paper_6p9b: overlapped grad reduce and param gather) resumes
    exactly; its checkpoint continues under the other distributed_optimizer_checkpoint setting with the
    same losses, both ways, so each saved format is what is read back."""
    from dataclasses import replace

    from megatron_alignpt.model.config import ParallelConfig
    from megatron_alignpt.train.checkpoint import saved_metadata
    from megatron_alignpt.train.trainer import run_stage

    require_te(ctx)
    data = lm_data(ctx.work / "data")
    overlap = ctx.gpu  # overlapping needs NCCL; the CPU rehearsal runs without
    fmt_a, fmt_b = "fully_reshardable", "dp_reshardable"
    base = ParallelConfig(precision=ctx.precision("bf16"), distributed_optimizer=True, overlap_grad_reduce=overlap,
                          overlap_param_gather=overlap, distributed_optimizer_checkpoint=fmt_a)

    def cfg(name, parallel):
        return stage_config(ctx, data, ctx.work / name, parallel, iters=iters, save_interval=save_interval)

    ctx.record(layer_impl=ctx.impl("te"), precision=base.precision, overlap=overlap)
    with BuildSpy() as spy:
        run_stage(cfg("straight", base))
        assert run_stage(cfg("resumed", base), stop_after=crash_after).iteration == crash_after
        run_stage(cfg("resumed", base))
        straight, resumed = metrics(ctx.work / "straight"), metrics(ctx.work / "resumed")
        resume_diff = max_abs_diff(losses(resumed), losses(straight))
        ctx.record(losses_straight=losses(straight), max_abs_loss_diff_resume=resume_diff,
                   optimizers=sorted(set(spy.optimizers)), te_modules=spy.te_modules[0])
        reloads = {}
        for saved, other in ((fmt_a, fmt_b), (fmt_b, fmt_a)):
            source = "straight" if saved == fmt_a else f"straight_{saved}"
            if saved != fmt_a:
                run_stage(cfg(source, replace(base, distributed_optimizer_checkpoint=saved)))
            ckpt = ctx.work / source / "checkpoints" / f"iter_{save_interval:07d}"
            meta = saved_metadata(ckpt)
            continue_from(ctx.work / source, ctx.work / f"reload_{saved}_as_{other}", save_interval)
            run_stage(cfg(f"reload_{saved}_as_{other}", replace(base, distributed_optimizer_checkpoint=other)))
            reference = losses(metrics(ctx.work / source), save_interval + 1)
            continued = losses(metrics(ctx.work / f"reload_{saved}_as_{other}"), save_interval + 1)
            reloads[f"{saved}->{other}"] = {"saved_sharding_type": meta.get("distrib_optim_sharding_type"),
                                            "saved_distributed_optimizer": meta.get("distributed_optimizer"),
                                            "max_abs_loss_diff": max_abs_diff(continued, reference)}
            ctx.record(reloads=reloads)
    assert any("Distributed" in name for name in spy.optimizers), f"no DistributedOptimizer built: {spy.optimizers}"
    assert resume_diff <= tolerance, f"resumed losses differ by up to {resume_diff:.3g} (> {tolerance:g})"
    for name, r in reloads.items():
        saved = name.split("->")[0]
        assert r["saved_sharding_type"] == saved, f"{name}: checkpoint metadata says {r['saved_sharding_type']}"
        assert r["max_abs_loss_diff"] <= tolerance, f"{name}: continued losses differ by up to {r['max_abs_loss_diff']:.3g}"


def _task_loss(task, samples, model) -> float:
    import torch

    with torch.no_grad():
        output, loss_fn = task.forward_step(iter([task.collate(samples)]), model)
        return float(loss_fn(output)[0])


def check_packed_sft(ctx: Context, seq: int = 128) -> None:
    """sft.packing=first_fit on TE: the thd layout, the same loss packed and unpacked on one model, and a
    packed SFT stage that trains."""
    from megatron_alignpt.data.tokenizer import TextTokenizer
    from megatron_alignpt.model.builder import build_gpt_model
    from megatron_alignpt.model.config import ModelConfig, ParallelConfig
    from megatron_alignpt.posttrain.packing import FORM_THD, attention_form
    from megatron_alignpt.posttrain.sft import SFTTask
    from megatron_alignpt.runtime import init_parallel
    from megatron_alignpt.train.config import SFTConfig
    from megatron_alignpt.train.trainer import run_stage

    require_te(ctx)
    data, post = lm_data(ctx.work / "data"), posttrain_data(ctx.work / "post")
    tok = TextTokenizer(data["tokenizer"])
    parallel = ParallelConfig(precision=ctx.precision("bf16"))
    init_parallel(1, 1, seed=5)
    model_cfg = ModelConfig(**TINY, seq_length=seq, layer_impl=ctx.impl("te"), architecture="pythia")
    model = build_gpt_model(model_cfg, parallel, tok.vocab_size).eval()
    plain = SFTTask(post["chat"], tok, seq, 0, SFTConfig())
    packed = SFTTask(post["chat"], tok, seq, 0, SFTConfig(packing="first_fit"))
    form = attention_form(model)
    loss_plain = _task_loss(plain, plain.samples, model)
    packed_losses = {form: _task_loss(packed, packed.samples, model)}
    if form != FORM_THD:  # the SDPA spec implements thd too: the CPU rehearsal covers that layout as well
        packed._form = FORM_THD
        packed_losses[FORM_THD] = _task_loss(packed, packed.samples, model)
    rel = {name: abs(loss - loss_plain) / abs(loss_plain) for name, loss in packed_losses.items()}
    tolerance = 1e-2 if parallel.half_precision else 1e-5
    ctx.record(layer_impl=model_cfg.layer_impl, precision=parallel.precision, attention_form=form,
               te_modules=te_module_count(model), conversations=len(plain.samples), packed_rows=len(packed.samples),
               loss_unpacked=loss_plain, loss_packed=packed_losses, rel_loss_diff=rel, tolerance=tolerance)
    if ctx.gpu:
        assert form == FORM_THD, f"TE model took the {form} layout, not thd"
    assert len(packed.samples) < len(plain.samples), "packing did not put several conversations in a row"
    bad = {name: value for name, value in rel.items() if value > tolerance}
    assert not bad, f"packed loss vs unpacked {loss_plain:.6f}: relative differences {bad} > {tolerance:g}"

    cfg = stage_config(ctx, data, ctx.work / "sft", parallel, kind="sft", iters=8, seq=seq, gbs=2, mbs=1, lr=3e-3,
                       warmup_fraction=0.0, decay_style="constant", data_path=post["chat"],
                       sft=SFTConfig(packing="first_fit"))
    run_stage(cfg)
    trained = losses(metrics(ctx.work / "sft"))
    ctx.record(sft_stage_losses=trained)
    assert sum(trained[-2:]) < sum(trained[:2]), f"packed SFT stage did not learn: {trained}"


def check_dpo_margin(ctx: Context, iters: int = 12) -> None:
    """SFT (packed) then DPO with a cached reference, on TE bf16: the logged chosen-minus-rejected reward
    margin (0 where the policy is the reference, at step 1) rises."""
    from megatron_alignpt.model.config import ParallelConfig
    from megatron_alignpt.train.config import DPOConfig, SFTConfig
    from megatron_alignpt.train.trainer import run_stage

    require_te(ctx)
    data, post = lm_data(ctx.work / "data"), posttrain_data(ctx.work / "post")
    parallel = ParallelConfig(precision=ctx.precision("bf16"))
    constant = dict(warmup_fraction=0.0, decay_style="constant", gbs=4, mbs=2)
    sft = run_stage(stage_config(ctx, data, ctx.work / "sft", parallel, kind="sft", iters=3, lr=3e-3,
                                 data_path=post["chat"], sft=SFTConfig(packing="first_fit"), **constant))
    dpo_cfg = stage_config(ctx, data, ctx.work / "dpo", parallel, kind="dpo", iters=iters, lr=2e-3,
                           init_from=sft.checkpoint, data_path=post["pairs"], dpo=DPOConfig(beta=0.5, reference="cached"),
                           **constant)
    os.environ["ALIGNPT_CACHE_DIR"] = str(ctx.work / "cache")
    with BuildSpy() as spy:
        run_stage(dpo_cfg)
    rows = metrics(ctx.work / "dpo")
    margins = [r["reward_margin"] for r in rows]
    ctx.record(layer_impl=dpo_cfg.model.layer_impl, precision=parallel.precision, reward_margins=margins,
               losses=losses(rows), reward_accuracy=[r.get("reward_accuracy") for r in rows], te_modules=spy.te_modules[:1])
    assert margins[-1] > margins[0] + 0.1, f"the reward margin did not rise: {margins[0]:.4f} -> {margins[-1]:.4f}"


PROMPTS = ["the cat", "birds sang over green hills near old towns and the", "dogs", "a mat while dogs ran in", "old"]


def check_kv_cache_generate(ctx: Context, max_new_tokens: int = 12) -> None:
    """The eval's generation on a TE checkpoint (loaded as the eval loads it): greedy tokens with megatron's
    KV cache equal those of re-running the whole context."""
    from megatron_alignpt.eval.generation import generate, supports_kv_cache
    from megatron_alignpt.eval.run import load_model_for_eval
    from megatron_alignpt.model.config import ParallelConfig
    from megatron_alignpt.train.trainer import run_stage

    require_te(ctx)
    data = lm_data(ctx.work / "data")
    result = run_stage(stage_config(ctx, data, ctx.work / "lm", ParallelConfig(precision=ctx.precision("bf16")),
                                    iters=10))
    model, tokenizer, cfg, _ = load_model_for_eval(result.checkpoint)
    assert supports_kv_cache(model), "the eval model does not support megatron's KV cache"
    kw = dict(max_new_tokens=max_new_tokens, max_len=cfg.max_positions, batch_size=3)
    timings, outputs = {}, {}
    for cached in (True, False):
        start = time.perf_counter()
        outputs[cached] = generate(model, tokenizer, PROMPTS, kv_cache=cached, **kw)
        timings["cached_s" if cached else "uncached_s"] = time.perf_counter() - start
    same = [a.token_ids == b.token_ids for a, b in zip(outputs[True], outputs[False])]
    ctx.record(layer_impl=cfg.layer_impl, te_modules=te_module_count(model), prompts=len(PROMPTS),
               identical_prompts=sum(same), cached_tokens=[list(g.token_ids) for g in outputs[True]],
               uncached_tokens=[list(g.token_ids) for g in outputs[False]], **timings)
    if ctx.gpu:
        assert te_module_count(model) > 0, "the eval model has no Transformer Engine module"
    assert all(same), f"cached and uncached greedy tokens differ for {len(same) - sum(same)} of {len(same)} prompts"
    assert [g.finish_reason for g in outputs[True]] == [g.finish_reason for g in outputs[False]]


HF_PARITY_TOLERANCE = {"te": 5e-3, "sdpa": 1e-4, "local": 1e-4}
"""Largest |logit difference| / largest |logit| in fp32. Transformer Engine may run fp32 GEMMs in TF32; a
wiring error (a dropped bias, swapped norm, wrong rotary share) is off by O(1)."""


def check_hf_parity(ctx: Context, seq: int = 48) -> None:
    """A random GPTNeoXForCausalLM (LayerNorms and biases perturbed) converted by hf_to_mcore gives the
    transformers model's logits on the GPU (fp32), built with TE layers (what `auto` picks there) and with SDPA."""
    if importlib.util.find_spec("transformers") is None:
        raise Skipped("transformers is not installed")
    import torch

    from megatron_alignpt.convert import hf_to_mcore
    from megatron_alignpt.data.tokenizer import TextTokenizer
    from megatron_alignpt.runtime import device, init_parallel

    data = lm_data(ctx.work / "data")
    tok = TextTokenizer(data["tokenizer"])
    hf_model = _random_hf_model(tok, ctx.work / "hf", data["tokenizer"])
    ckpt = hf_to_mcore(ctx.work / "hf", ctx.work / "mcore")
    init_parallel(1, 1, 0)
    tokens = torch.randint(0, tok.vocab_size, (2, seq), generator=torch.Generator().manual_seed(1)).to(device())
    hf_model = hf_model.to(tokens.device)
    with torch.no_grad():
        want = hf_model(input_ids=tokens).logits.float()
    scale = want.abs().max().item()
    impls = ["te", "sdpa"] if ctx.gpu and importlib.util.find_spec("transformer_engine") else ["sdpa"]
    results = {}
    for impl in impls:
        got, te_modules = _megatron_logits(ckpt, impl, tokens, tok.vocab_size)
        diff = (got - want).abs().max().item()
        results[impl] = {"max_abs_logit_diff": diff, "rel_diff": diff / scale, "tolerance": HF_PARITY_TOLERANCE[impl],
                         "te_modules": te_modules}
        ctx.record(device=str(tokens.device), max_abs_logit=scale, layer_impls=results,
                   tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    bad = {k: v["rel_diff"] for k, v in results.items() if v["rel_diff"] > v["tolerance"]}
    assert not bad, f"converted logits differ from transformers' (relative to the largest logit): {bad}"
    if ctx.gpu and "te" in results:
        assert results["te"]["te_modules"] > 0, "the te build has no Transformer Engine module"


def _random_hf_model(tok, hf_dir: Path, tokenizer_path: Path):
    """A random tiny GPT-NeoX (parallel residual, 25% rotary) saved with our tokenizer; returns it (eval, fp32)."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=tok.vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=512, rotary_pct=0.25, rotary_emb_base=10000, max_position_embeddings=128,
                        use_parallel_residual=True, tie_word_embeddings=False, bos_token_id=tok.eod, eos_token_id=tok.eod)
    model = GPTNeoXForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:  # LayerNorm weights/biases and linear biases, away from their (1, 0) init
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(hf_dir)
    shutil.copyfile(tokenizer_path, hf_dir / "tokenizer.json")
    return model


def _megatron_logits(ckpt: Path, layer_impl: str, tokens, vocab: int):
    """(fp32 logits, Transformer Engine module count) of the converted checkpoint built with `layer_impl`."""
    from dataclasses import replace

    import torch

    from megatron_alignpt.model.builder import build_gpt_model
    from megatron_alignpt.model.config import ParallelConfig
    from megatron_alignpt.train import checkpoint as ck

    model_cfg, _ = ck.read_model_meta(ckpt)
    model = build_gpt_model(replace(model_cfg, layer_impl=layer_impl), ParallelConfig(), vocab).eval()
    ck.load_weights(ckpt, model)
    positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0).expand_as(tokens)
    with torch.no_grad():
        return model(tokens, positions, None)[..., :vocab].float(), te_module_count(model)


def check_fusions(ctx: Context, iters: int = 8, tolerance: float = 2e-2) -> None:
    """Short TE bf16 runs from the same seed with the fusions at their defaults (all auto but bias_activation),
    all `auto`, and all `off`: losses agree within `tolerance` (relative); what each resolved to is recorded."""
    from dataclasses import fields

    from megatron_alignpt.model.config import FusionConfig, ParallelConfig
    from megatron_alignpt.train.trainer import run_stage

    require_te(ctx)
    data = lm_data(ctx.work / "data")
    names = [f.name for f in fields(FusionConfig)]
    variants = {"default": FusionConfig(), "all_auto": FusionConfig(**dict.fromkeys(names, "auto")),
                "all_off": FusionConfig(**dict.fromkeys(names, "off"))}
    runs = {}
    for name, fusions in variants.items():
        parallel = ParallelConfig(precision=ctx.precision("bf16"), fusions=fusions)
        start = time.perf_counter()
        run_stage(stage_config(ctx, data, ctx.work / name, parallel, iters=iters))
        resolved = resolved_fusions(ctx, fusions)
        runs[name] = {"losses": losses(metrics(ctx.work / name)), "resolved": resolved,
                      "fused": [k for k, v in resolved.items() if v is True], "seconds": time.perf_counter() - start}
        ctx.record(layer_impl=ctx.impl("te"), precision=parallel.precision, runs=runs)
    off = runs["all_off"]["losses"]
    gaps = {name: max(abs(a - b) / abs(b) for a, b in zip(runs[name]["losses"], off)) for name in ("default", "all_auto")}
    ctx.record(max_rel_loss_diff_vs_off=gaps, tolerance=tolerance,
               note=None if runs["all_auto"]["fused"] else "auto resolved every fusion to off here: same computation")
    bad = {k: v for k, v in gaps.items() if v > tolerance}
    assert not bad, f"losses differ from the all-off run by up to {bad} relative (> {tolerance:g})"


STUDY_STEP_NEEDS = {"results": ("pandas", "pyarrow")}
"""Packages the study's results-table step needs (parquet)."""
STUDY_LEFT_OUT = {"report": "the report executes notebooks on the CPU (nbclient, several minutes); `make demo` covers it"}
"""Steps the acceptance run leaves out of the study, and why: they exercise nothing on the GPU."""


def check_tiny_study(ctx: Context) -> None:
    """`alignpt study run` of the tiny recipe in a subprocess with CUDA visible; every step but the report must
    finish and the training stages must have run on the GPU. Left-out steps are named, with why, in the figures."""
    recipe = ctx.options.get("study_recipe", "tiny_cpu")
    overrides = ctx.options.get("study_set", [])
    out = ctx.work / "study"
    steps = _study_steps(recipe, out, overrides)
    left_out = {step: why for step, why in STUDY_LEFT_OUT.items() if step in steps}
    for step, needs in STUDY_STEP_NEEDS.items():
        missing = [m for m in needs if importlib.util.find_spec(m) is None]
        if missing and step in steps:
            left_out[step] = f"needs {', '.join(missing)}, not installed here"
    wanted = [s for s in steps if s not in left_out]
    cmd = [sys.executable, "-m", "megatron_alignpt.cli", "study", "run", "--recipe", recipe, "--output-dir", str(out)]
    for item in overrides:
        cmd += ["--set", item]
    if left_out:
        cmd += ["--only", *wanted]
    ctx.record(recipe=recipe, overrides=overrides, steps_planned=len(steps), steps_left_out=left_out)
    try:
        rc = subprocess.run(cmd, cwd=REPO, timeout=max(ctx.remaining() - 10, 10)).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    from megatron_alignpt.study.local import study_timings

    timings = study_timings(out)
    missing = [s for s in wanted if s not in timings]
    ctx.record(rc=rc, steps_done=len(timings), step_seconds=timings, steps_missing=missing,
               gpu_memory_logged=_study_used_gpu(out))
    assert rc == 0, f"study exited with {rc} after {len(timings)} of {len(wanted)} steps"
    assert not missing, f"steps not done: {missing}"
    if ctx.gpu:
        assert ctx.figures["gpu_memory_logged"], "the study's training stages logged no CUDA memory: did they run on CPU?"


def _study_steps(recipe: str, out: Path, overrides: list[str]) -> list[str]:
    from megatron_alignpt.config_base import apply_overrides
    from megatron_alignpt.study.plan import build_plan
    from recipes import get_recipe

    return build_plan(apply_overrides(get_recipe(recipe)(out), overrides)).names


def _study_used_gpu(out: Path) -> bool:
    for path in sorted(out.glob("models/*/pretrain/metrics.jsonl"))[:1]:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line]
        return any(r.get("mem_max_allocated_gib", 0) > 0 for r in rows)
    return False


# ----------------------------------------------------------------------------- throughput checks


def _run_benchmark(ctx: Context, cmd: list[str], json_path: Path) -> dict:
    """Run a throughput script (its output into this check's log) and return its first result."""
    print("$ " + " ".join(cmd), flush=True)
    try:
        subprocess.run(cmd, cwd=REPO, timeout=max(ctx.remaining() - 5, 5))
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the benchmark ran past this check's time ({ctx.remaining():.0f} s left)") from None
    if not json_path.is_file():
        raise AssertionError("the benchmark wrote no JSON (see the log)")
    result = json.loads(json_path.read_text())["results"][0]
    if "error" in result:
        raise AssertionError(f"the benchmark failed: {result['error']}")
    return result


KEPT = ("tokens_per_s", "tflops_per_gpu", "mfu", "step_ms_median", "peak_allocated_gib", "parameters", "losses",
        "precision", "layer_impl", "micro_batch_size", "global_batch", "seq_length", "resolved_fusions", "compile")


def _throughput_shape(ctx: Context, size_option: str, mbs_option: str) -> tuple[str, int]:
    return ctx.options[size_option], int(ctx.options[mbs_option])


def check_throughput_ours(ctx: Context, layer_impl: str, precision: str, fp8_recipe: str = "delayed",
                          size_option: str = "size", mbs_option: str = "micro_batch") -> None:
    """benchmarks/train_throughput.py at the run's shape: tokens/s, TFLOP/s, MFU, the 20 losses."""
    if layer_impl == "te":
        require_te(ctx)
        if not ctx.gpu:
            raise Skipped("layer_impl=te needs a GPU (CPU rehearsal)")
    if precision == "fp8" and not ctx.gpu:
        raise Skipped("FP8 needs a GPU")
    size, mbs = _throughput_shape(ctx, size_option, mbs_option)
    out = ctx.artefacts / "train_throughput.json"
    opts = ctx.options
    cmd = [sys.executable, str(HERE / "train_throughput.py"), "--size", size, "--architecture", "pythia",
           "--layer-impl", layer_impl, "--micro-batch-sizes", str(mbs), "--global-batch", str(opts["global_batch"]),
           "--warmup", str(opts["warmup"]), "--steps", str(opts["steps"]), "--precision", ctx.precision(precision),
           "--fp8-recipe", fp8_recipe, "--fusions", "auto", "--child-timeout", str(int(max(ctx.remaining() - 15, 10))),
           "--out", str(out)]
    result = _run_benchmark(ctx, cmd, out)
    ctx.record(size=size, **{k: result.get(k) for k in KEPT})


def check_throughput_hf(ctx: Context, compile: bool) -> None:
    """benchmarks/hf_train_throughput.py (the HF GPT-NeoX peer) at the run's shape."""
    if importlib.util.find_spec("transformers") is None:
        raise Skipped("transformers is not installed")
    if compile and not ctx.gpu:
        raise Skipped("torch.compile is timed on the GPU only (CPU rehearsal)")
    size, mbs = _throughput_shape(ctx, "size", "hf_micro_batch")
    out = ctx.artefacts / "hf_train_throughput.json"
    opts = ctx.options
    cmd = [sys.executable, str(HERE / "hf_train_throughput.py"), "--size", size, "--micro-batch-sizes", str(mbs),
           "--global-batch", str(opts["global_batch"]), "--warmup", str(opts["warmup"]), "--steps", str(opts["steps"]),
           "--out", str(out)] + (["--compile"] if compile else [])
    result = _run_benchmark(ctx, cmd, out)
    ctx.record(size=size, **{k: result.get(k) for k in KEPT})
