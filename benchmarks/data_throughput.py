"""Data-preparation throughput per CPU core: blocklist filter and tokenizing into Megatron .bin/.idx.

    python benchmarks/data_throughput.py [--size-mb 200] [--workdir DIR] [--tokenize-mb 64] [--out FILE]

Builds a corpus of ``--size-mb`` MB of text (UTF-8 bytes of the text field) from the shipped corpus
(``data_prep/resources/corpus/base_corpus.jsonl.gz``, 4,000 documents): each benchmark document is a
shipped document drawn at random with its paragraphs and sentences shuffled (``--join N`` glues N of
them into one longer document), written as 8 JSON Lines shards. Then, in this one process (tokenizers
is pinned to one thread, so every figure is per core):

* ``blocklist check``: ``Blocklist.check`` over every document already in memory (MB/s, docs/s),
  beside the regex-only decision (``prefilter=False``) on the first 4 MB;
* ``filter end to end``: ``run_filter`` (read the shards, decide, write kept/ and removed/, stats);
* ``datatrove pipeline``: the same through ``data_prep.pipeline`` (LocalPipelineExecutor, 1 task);
* ``tokenize``: the first ``--tokenize-mb`` MB of text, as raw ``Tokenizer.encode_batch`` (batches of
  1,000, ids left in Python lists) and as ``tokenize_to_indexed`` writing ``.bin/.idx`` (the same
  batches, EOD appended, plus the writes); overhead = indexed time / raw time - 1.

Rates use CPU time of this process (``time.process_time``), so other load on the machine slows them
less than wall-clock would; wall-clock rates are in the JSON too. The tokenizer is a byte-level BPE
trained on the shipped corpus (``--vocab-size``, default 4096) unless ``--tokenizer`` names one.
Prints a markdown table and writes the JSON to ``--out`` (default ``benchmarks/results/cpu_data_throughput.json``).
"""
from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before tokenizers starts its thread pool: one core
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from _common import REPO  # noqa: E402  (puts the repository on sys.path)

SHIPPED = REPO / "data_prep" / "resources" / "corpus" / "base_corpus.jsonl.gz"
MB = 1_000_000
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class Timer:
    """CPU and wall seconds of a block."""

    def __enter__(self) -> "Timer":
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.cpu, self.wall = time.process_time() - self.cpu, time.perf_counter() - self.wall


def _shuffled(text: str, rng: random.Random) -> str:
    paragraphs = text.split("\n\n")
    rng.shuffle(paragraphs)
    out = []
    for paragraph in paragraphs:
        sentences = _SENTENCE.split(paragraph)
        rng.shuffle(sentences)
        out.append(" ".join(sentences))
    return "\n\n".join(out)


def build_corpus(directory: Path, size_mb: float, join: int, seed: int = 0, shards: int = 8) -> dict:
    """Write ``shards`` JSONL files holding about ``size_mb`` MB of text; returns counts."""
    with gzip.open(SHIPPED, "rt", encoding="utf-8") as handle:
        base = [json.loads(line)["text"] for line in handle]
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    target = size_mb * MB
    handles = [open(directory / f"shard_{i:02d}.jsonl", "w", encoding="utf-8") for i in range(shards)]
    written = documents = 0
    try:
        while written < target:
            text = "\n\n".join(_shuffled(rng.choice(base), rng) for _ in range(join))
            handles[documents % shards].write(json.dumps({"id": f"bench-{documents}", "text": text}) + "\n")
            written += len(text.encode("utf-8"))
            documents += 1
    finally:
        for handle in handles:
            handle.close()
    return {"documents": documents, "text_bytes": written, "shards": shards, "join": join, "seed": seed}


def _rate(amount: float, seconds: float) -> float:
    return amount / seconds if seconds > 0 else float("inf")


def bench_blocklist(texts: list[str], total_bytes: int) -> dict:
    from data_prep.blocklist import Blocklist

    blocklist = Blocklist.load()
    with Timer() as t:
        decisions = [blocklist.check(text) for text in texts]
    flagged = sum(not d.keep for d in decisions)
    sample, size = [], 0
    for text in texts:
        if size >= 4 * MB:
            break
        sample.append(text)
        size += len(text.encode("utf-8"))
    with Timer() as r:
        for text in sample:
            blocklist.check(text, prefilter=False)
    return {"mb_per_s": _rate(total_bytes / MB, t.cpu), "docs_per_s": _rate(len(texts), t.cpu),
            "wall_mb_per_s": _rate(total_bytes / MB, t.wall), "cpu_s": t.cpu, "flag_rate": flagged / len(texts),
            "regex_only_mb_per_s": _rate(size / MB, r.cpu), "regex_only_sample_mb": size / MB}


def bench_run_filter(corpus: Path, out: Path, total_bytes: int) -> dict:
    from data_prep.filtering import run_filter

    with Timer() as t:
        stats = run_filter(corpus, out, overwrite=True)
    return {"mb_per_s": _rate(total_bytes / MB, t.cpu), "wall_mb_per_s": _rate(total_bytes / MB, t.wall),
            "docs_per_s": _rate(stats.documents_in, t.cpu), "cpu_s": t.cpu, "flag_rate": stats.flag_rate}


def bench_pipeline(corpus: Path, out: Path, total_bytes: int) -> dict:
    from data_prep.pipeline import PipelineConfig, run_pipeline

    shutil.rmtree(out, ignore_errors=True)
    with Timer() as t:
        summary = run_pipeline(PipelineConfig(inputs=[corpus], output_dir=out, tasks=1, workers=1))
    documents = summary["blocks"]["filter"]["documents_in"]
    return {"mb_per_s": _rate(total_bytes / MB, t.cpu), "wall_mb_per_s": _rate(total_bytes / MB, t.wall),
            "docs_per_s": _rate(documents, t.cpu), "cpu_s": t.cpu, "flag_rate": summary["blocks"]["filter"]["flag_rate"]}


def bench_tokenize(texts: list[str], tokenizer_path: Path, prefix: Path, batch_size: int = 1000) -> dict:
    from data_prep.tokenize import load_tokenizer, tokenize_to_indexed

    tokenizer = load_tokenizer(tokenizer_path)
    batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    tokens = 0
    with Timer() as raw:
        for batch in batches:
            for encoding in tokenizer.encode_batch(batch, add_special_tokens=False):
                tokens += len(encoding.ids)
    with Timer() as indexed:
        stats = tokenize_to_indexed(texts, tokenizer_path, prefix, batch_size=batch_size)
    return {"texts": len(texts), "tokens": tokens, "indexed_tokens_with_eod": stats.tokens,
            "raw_tokens_per_s": _rate(tokens, raw.cpu), "indexed_tokens_per_s": _rate(tokens, indexed.cpu),
            "raw_wall_tokens_per_s": _rate(tokens, raw.wall), "indexed_wall_tokens_per_s": _rate(tokens, indexed.wall),
            "overhead_pct": 100.0 * (indexed.cpu / raw.cpu - 1.0), "raw_cpu_s": raw.cpu, "indexed_cpu_s": indexed.cpu}


def machine() -> dict:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import version

    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "tokenizers": version("tokenizers"), "datatrove": version("datatrove"),
            "loadavg_start": os.getloadavg()}


def table(result: dict) -> str:
    b, f, p, t = result["blocklist"], result["run_filter"], result["pipeline"], result["tokenize"]
    rows = [
        ("blocklist check (in memory)", f"{b['mb_per_s']:.1f} MB/s", f"{b['docs_per_s']:,.0f} docs/s", ">= 30 MB/s"),
        ("blocklist check, regex only (first 4 MB)", f"{b['regex_only_mb_per_s']:.1f} MB/s", "", ""),
        ("filter end to end (`run_filter`: read, decide, write)", f"{f['mb_per_s']:.1f} MB/s", f"{f['docs_per_s']:,.0f} docs/s", ""),
        ("datatrove pipeline filter (1 task)", f"{p['mb_per_s']:.1f} MB/s", f"{p['docs_per_s']:,.0f} docs/s", ""),
        ("raw `encode_batch`", f"{t['raw_tokens_per_s']:,.0f} tokens/s", "", ""),
        ("`tokenize_to_indexed` (.bin/.idx)", f"{t['indexed_tokens_per_s']:,.0f} tokens/s",
         f"overhead {t['overhead_pct']:+.1f}%", "<= 30% overhead"),
    ]
    lines = ["| measure (per core) | rate | | target |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {r} | {c} | {g} |" for a, r, c, g in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=200.0, help="corpus size in MB of text (default 200)")
    parser.add_argument("--join", type=int, default=1, help="shipped documents per benchmark document (default 1)")
    parser.add_argument("--tokenize-mb", type=float, default=64.0, help="MB of text to tokenize (default 64)")
    parser.add_argument("--tokenizer", help="tokenizer.json (default: BPE trained on the shipped corpus)")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--workdir", help="where the corpus and outputs go (default: a temporary directory, removed after)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cpu_data_throughput.json"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.size_mb < 1 or args.tokenize_mb <= 0 or args.join < 1:
        parser.error("--size-mb must be >= 1, --tokenize-mb > 0 and --join >= 1")

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="alignpt_data_bench_"))
    try:
        result = {"machine": machine(), "args": vars(args)}
        corpus = workdir / "corpus"
        shutil.rmtree(corpus, ignore_errors=True)
        result["corpus"] = build_corpus(corpus, args.size_mb, args.join, args.seed)
        print(f"corpus: {result['corpus']['documents']:,} documents, {result['corpus']['text_bytes'] / MB:.1f} MB of text", flush=True)

        from data_prep.readers import iter_documents
        from data_prep.tokenize import train_bpe_tokenizer

        texts = [doc.text for doc in iter_documents(corpus)]
        total = result["corpus"]["text_bytes"]
        result["blocklist"] = bench_blocklist(texts, total)
        print(f"blocklist: {result['blocklist']['mb_per_s']:.1f} MB/s", flush=True)
        result["run_filter"] = bench_run_filter(corpus, workdir / "filtered", total)
        print(f"run_filter: {result['run_filter']['mb_per_s']:.1f} MB/s", flush=True)
        result["pipeline"] = bench_pipeline(corpus, workdir / "pipeline", total)
        print(f"pipeline: {result['pipeline']['mb_per_s']:.1f} MB/s", flush=True)

        tokenizer = Path(args.tokenizer) if args.tokenizer else workdir / "tokenizer.json"
        if not args.tokenizer:
            with gzip.open(SHIPPED, "rt", encoding="utf-8") as handle:
                train_bpe_tokenizer((json.loads(line)["text"] for line in handle), args.vocab_size, tokenizer)
        subset, size = [], 0
        for text in texts:
            if size >= args.tokenize_mb * MB:
                break
            subset.append(text)
            size += len(text.encode("utf-8"))
        del texts
        result["tokenize"] = {"text_mb": size / MB, "tokenizer": str(args.tokenizer or f"BPE vocab {args.vocab_size}"),
                              **bench_tokenize(subset, tokenizer, workdir / "indexed" / "bench")}
        result["machine"]["loadavg_end"] = os.getloadavg()
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    markdown = table(result)
    result["table"] = markdown
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(markdown)
    print(f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores; load average "
          f"{result['machine']['loadavg_start']} -> {result['machine']['loadavg_end']}")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
