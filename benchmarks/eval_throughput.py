"""Misalignment-suite scoring throughput: answer-letter log-probabilities per second.

Times `megatron_alignpt.eval.misalignment.score_items` itself, the eval's whole logprob path: every
item of the shipped suite (`data_prep.eval_suite.load_suite(default_suite_path())`, repeated under
new ids up to `--items`, e.g. 4174 for the paper's suite) rendered by `eval.formats.render_prompt` in
all 8 formats (4 wordings x 2 answer orders) under each system prompt asked for (default: `none`),
tokenized in one batch, scored by `eval.letter_scoring.continuation_logprobs` (length-sorted batches,
right padding, the vocabulary projection and log-softmax at each prompt's last position only when
" A" / " B" are single tokens), and turned into result rows; on a randomly initialised model of the
chosen shape built by `model.builder.build_gpt_model`. Weights do not change the cost, so no
checkpoint is needed. The share of each pass spent inside the model's forward is reported (forward
hooks, device synchronised), so the rest is the per-item Python work (rendering, tokenization, rows).
`--compare-full-logits` also times the older path that projects every position onto the vocabulary
(`letter_scoring.last_position_logits` disabled) and checks both give the same log-probabilities.

Tokens: by default (`--tokenizer bpe`) a byte-level BPE (`data_prep.tokenize.train_bpe_tokenizer`,
`--bpe-vocab` 4096) is trained on the fly on the suite's own passages, questions and choices,
with the answer cues added so " A" / " B" are single tokens (as in GPT-NeoX's BPE), and the
rendered prompts are tokenized with it; the report gives the resulting characters per
token, to compare with a production tokenizer. `--tokenizer random` instead draws uniform ids,
ceil(chars / 4) per prompt (about GPT-NeoX's rate on English text).

Units: a *prompt* is one (item, format, system prompt) row; *items/s* counts suite items with
all their formats and system prompts scored, i.e. prompts/s / (8 x system prompts).
Timing: wall clock around whole calls over all prompts (tokenization included, as in the eval;
its share is reported separately), median of `--repeats` passes after `--warmup-passes` untimed
passes per batch size, with the device synchronised before and after each pass.

Commands (from the repository root):

    # GPU: Pythia-1.4B shape, bf16
    python benchmarks/eval_throughput.py --size 1.4b --batch-sizes 8,32,64,128,256 --out runs/bench/eval_1p4b.json
    # the full eval grid: all 5 system prompts (6480 prompts)
    python benchmarks/eval_throughput.py --size 1.4b --batch-sizes 128 --system-prompts all
    # CPU: tiny model, fp32
    python benchmarks/eval_throughput.py --size tiny --batch-sizes 8,32 --out runs/bench/eval_tiny_cpu.json
    # CPU: a 4,174-item x 8-format pass (the paper's suite size), against the all-positions projection
    python benchmarks/eval_throughput.py --size tiny --items 4174 --batch-sizes 64 --repeats 1 --compare-full-logits
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import SHAPES, count_parameters, environment, model_config, print_table, write_json


class RandomIdTokenizer:
    """Stand-in with the tokenizer interface `continuation_logprobs` uses: uniform ids, ceil(chars / 4) per text."""

    eod = 0

    def __init__(self, texts: list[str], vocab: int, seed: int):
        import numpy as np

        rng = np.random.default_rng(seed)
        self.vocab_size = vocab
        self._ids = {t: rng.integers(2, vocab, size=math.ceil(len(t) / 4)).tolist() for t in dict.fromkeys(texts)}

    def tokenize(self, text: str) -> list[int]:
        return {" A": [2], " B": [3]}.get(text) or self._ids[text]

    def tokenize_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.tokenize(t) for t in texts]


def make_tokenizer(args, texts: list[str], item_texts: list[str], workdir: Path):
    """(tokenizer, description)."""
    if args.tokenizer == "random":
        return RandomIdTokenizer(texts, SHAPES[args.size].vocab_size, args.seed), "random ids, ceil(chars/4) per prompt"
    from data_prep.tokenize import train_bpe_tokenizer
    from megatron_alignpt.data.tokenizer import TextTokenizer

    # The answer cues, so that " A" / " B" become single tokens as in GPT-NeoX's BPE.
    cues = [f"Answer: {letter}" for letter in "AB"] * 50
    path = train_bpe_tokenizer(item_texts + cues, args.bpe_vocab, workdir / "tokenizer.json")
    tok = TextTokenizer(path)
    return tok, f"byte-level BPE, vocab {tok.vocab_size}, trained on the suite's item texts"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SHAPES), default="1.4b")
    p.add_argument("--batch-sizes", default="8,32,64")
    p.add_argument("--max-len", type=int, default=2048, help="prompt tokens kept (the end); also the model's positions")
    p.add_argument("--tokenizer", choices=["bpe", "random"], default="bpe")
    p.add_argument("--bpe-vocab", type=int, default=4096)
    p.add_argument("--system-prompts", default="none", help="as in the eval CLI: none, all, instructions,hhh, ...")
    p.add_argument("--layer-impl", default="sdpa", choices=["sdpa", "local", "te", "auto"])
    p.add_argument("--precision", choices=["bf16", "fp32"], default=None, help="default: bf16 on GPU, fp32 on CPU")
    p.add_argument("--warmup-passes", type=int, default=1, help="untimed passes per batch size")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per batch size (median reported)")
    p.add_argument("--items", type=int, default=0, help="suite items to score (the shipped suite repeated under new ids); 0: the suite as shipped")
    p.add_argument("--compare-full-logits", action="store_true", help="also time the all-positions vocabulary projection")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    import dataclasses

    import numpy as np
    import torch

    from data_prep.eval_suite import default_suite_path, load_suite
    from megatron_alignpt.eval import letter_scoring
    from megatron_alignpt.eval.formats import all_formats, parse_system_prompts, render_prompt
    from megatron_alignpt.eval.misalignment import score_items
    from megatron_alignpt.model.builder import build_gpt_model
    from megatron_alignpt.model.config import ParallelConfig
    from megatron_alignpt.runtime import init_parallel

    cuda = torch.cuda.is_available()
    precision = args.precision or ("bf16" if cuda else "fp32")
    batch_sizes = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    init_parallel(1, 1, args.seed)

    suite = load_suite(default_suite_path())
    n_items = args.items or len(suite)
    items = [dataclasses.replace(suite[i % len(suite)], question_id=f"{suite[i % len(suite)].question_id}#{i // len(suite)}")
             for i in range(n_items)]
    formats = all_formats()
    prompts = parse_system_prompts(args.system_prompts)
    texts = [render_prompt(item, fmt, sp.text).text for sp in prompts for fmt in formats for item in items]
    item_texts = [t for item in suite for t in (item.passage, item.question, *item.choices) if t.strip()]
    continuations = render_prompt(items[0], formats[0]).continuations
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, tok_desc = make_tokenizer(args, texts, item_texts, Path(tmp))
    t0 = time.perf_counter()
    ids = tokenizer.tokenize_batch(texts)
    tokenize_s = time.perf_counter() - t0
    single_token = all(len(tokenizer.tokenize(c)) == 1 for c in continuations)
    tok_vocab = tokenizer.vocab_size
    lengths = [min(len(x), args.max_len) for x in ids]
    truncated = sum(len(x) > args.max_len for x in ids)

    shape = SHAPES[args.size]
    vocab = max(shape.vocab_size, tok_vocab)
    model_cfg = model_config(shape, args.layer_impl, seq_length=args.max_len)
    model = build_gpt_model(model_cfg, ParallelConfig(precision=precision), vocab)
    n_params = count_parameters(model)
    model.eval()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    forward = {"seconds": 0.0, "start": 0.0}

    def before(module, args_):
        sync()
        forward["start"] = time.perf_counter()

    def after(module, args_, output):
        sync()
        forward["seconds"] += time.perf_counter() - forward["start"]

    model.register_forward_pre_hook(before)
    model.register_forward_hook(after)
    narrowing = letter_scoring._output_layer

    def one_pass(bs: int, full_logits: bool) -> tuple[float, float, np.ndarray]:
        """(wall seconds, seconds inside the model's forward, [prompts, 2] log-probabilities) of one score_items call."""
        letter_scoring._output_layer = (lambda model: None) if full_logits else narrowing
        forward["seconds"] = 0.0
        sync()
        t0 = time.perf_counter()
        rows = score_items(model, tokenizer, items, formats, prompts, args.max_len, bs)
        sync()
        wall = time.perf_counter() - t0
        letter_scoring._output_layer = narrowing
        return wall, forward["seconds"], np.array([[r["logprob_A"], r["logprob_B"]] for r in rows])

    variants = [("last position", False)] + ([("all positions", True)] if args.compare_full_logits else [])
    results, reference = [], None
    for bs in batch_sizes:
        for projection, full_logits in variants:
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            # warm-up: whole untimed passes, since every batch has its own padded width (kernel
            # choice and allocator growth per new shape); one warm-up call on a few batches was not enough
            for _ in range(args.warmup_passes):
                one_pass(bs, full_logits)
            passes = [one_pass(bs, full_logits) for _ in range(args.repeats)]
            logp = passes[-1][2]
            if not np.isfinite(logp).all():
                raise FloatingPointError(f"non-finite log-probabilities at batch size {bs}")
            if reference is None:
                reference = logp
            times = [p[0] for p in passes]
            seconds = statistics.median(times)
            forward_share = statistics.median(p[1] / p[0] for p in passes)
            row = {
                "batch_size": bs,
                "vocab_projection": projection,
                "seconds_per_pass": seconds,
                "all_pass_seconds": times,
                "model_forward_share": forward_share,
                "prompts_per_s": len(ids) / seconds,
                "items_per_s": len(items) / seconds,
                "prompt_tokens_per_s": sum(lengths) / seconds,
                # right padding and the projection path must not change a prompt's score
                "max_abs_logprob_diff_vs_first": float(np.abs(logp - reference).max()),
            }
            if cuda:
                row["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
            results.append(row)
            print(f"[eval_throughput] batch {bs}, {projection}: {row['prompts_per_s']:.1f} prompts/s, "
                  f"{100 * forward_share:.0f}% in the model forward", flush=True)

    best = max(results, key=lambda r: r["prompts_per_s"])
    env = environment()
    payload = {
        "benchmark": "eval_throughput",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "environment": env,
        "size": args.size,
        "parameters": n_params,
        "precision": precision,
        "layer_impl": args.layer_impl,
        "model_vocab": vocab,
        "tokenizer": tok_desc,
        "tokenize_seconds": tokenize_s,
        "continuations_single_token": single_token,
        "suite_items": len(items),
        "shipped_suite_items": len(suite),
        "formats": len(formats),
        "system_prompts": [sp.name for sp in prompts],
        "prompts": len(ids),
        "prompt_tokens_mean": statistics.mean(lengths),
        "prompt_tokens_median": statistics.median(lengths),
        "prompt_tokens_max": max(lengths),
        "prompts_truncated": truncated,
        "chars_per_token": sum(len(t) for t in texts) / sum(len(x) for x in ids),
        "results": results,
        "best_batch_size": best["batch_size"],
    }
    if args.out:
        write_json(args.out, payload)

    print(f"\n{args.size} ({n_params / 1e6:,.1f}M parameters, {precision}, {args.layer_impl}) on "
          f"{env.get('gpu', env.get('cpu'))}; torch {env['torch']}, megatron-core {env['megatron_core']}")
    print(f"{len(items)} items x {len(formats)} formats x {len(prompts)} system prompt(s) = {len(ids)} prompts; "
          f"{tok_desc}; tokens per prompt mean {payload['prompt_tokens_mean']:.0f}, max {payload['prompt_tokens_max']} "
          f"({payload['chars_per_token']:.2f} chars/token)")
    print_table(
        ["batch", "vocab projection", "s/pass", "prompts/s", "items/s", "in forward", "prompt tok/s", "peak GiB", "max |dlogp| vs first"],
        [[r["batch_size"], r["vocab_projection"], f"{r['seconds_per_pass']:.2f}", f"{r['prompts_per_s']:.1f}",
          f"{r['items_per_s']:.2f}", f"{100 * r['model_forward_share']:.0f}%", f"{r['prompt_tokens_per_s']:,.0f}",
          f"{r['peak_allocated_gib']:.1f}" if "peak_allocated_gib" in r else "n/a",
          f"{r['max_abs_logprob_diff_vs_first']:.2e}"] for r in results],
    )
    print(f"best: batch {best['batch_size']}: {best['prompts_per_s']:.1f} prompts/s = {best['items_per_s']:.2f} suite items/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
