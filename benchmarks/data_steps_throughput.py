"""The study's data steps (filter, resample, tokenize) at corpus scale, with 1 and 2 local workers.

    python benchmarks/data_steps_throughput.py --size-mb 1000               # >= 1 GB corpus under /tmp
    python benchmarks/data_steps_throughput.py --size-mb 20 --workers 1,2   # a quick check
    python benchmarks/data_steps_throughput.py --demo                       # the demo's data steps, timed

Corpus mode builds ``--size-mb`` MB of text (UTF-8 bytes of the text field) from the shipped corpus, the
same way as ``benchmarks/data_throughput.py`` (each document a shipped one with its paragraphs and sentences
shuffled, seed 0), as ``--shards`` JSON Lines files under ``--workdir`` (default
``/tmp/alignpt_data_steps_bench``; never inside the repository). Then, for each worker count, it runs the
study's data steps through :class:`megatron_alignpt.study.data_steps.StudyData` (datatrove's local executor,
one task per shard) from scratch: filter (read, blocklist, write kept/ and removed/), resample + tokenize the
filtered corpus, and tokenize the unfiltered corpus, each into one merged ``.bin/.idx``. It reports wall
seconds, MB/s and docs/s of input text and tokens/s of output per step, and the scaling from 1 to N workers.

``--demo`` times the same StudyData steps on the ``tiny_cpu`` recipe's data (what ``make demo`` runs first)
and prints the SHA-256 of every indexed dataset, so two code versions can be compared for identical output.

Prints a markdown table and writes JSON to ``--out`` (default ``benchmarks/results/cpu_data_steps_throughput.json``).
"""
from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # tokenizers: one thread per worker process
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from _common import REPO  # noqa: E402  (puts the repository on sys.path)
from data_throughput import MB, build_corpus, machine  # noqa: E402


def _indexed_digests(data) -> dict[str, str]:
    from data_prep.atomic import sha256_file

    folder = data.root / "indexed"
    return {p.name: sha256_file(p) for p in sorted(folder.glob("*.bin")) + sorted(folder.glob("*.idx"))}


def time_demo_steps(workdir: Path) -> dict:
    """Wall seconds of the demo study's data steps (filter, tokenizer, synthetic, tokenize), and output digests."""
    from megatron_alignpt.study.data_steps import StudyData
    from recipes.tiny_cpu import tiny_cpu

    shutil.rmtree(workdir, ignore_errors=True)
    data = StudyData(workdir / "data", tiny_cpu(workdir).data)
    seconds = {}
    for name, step in (("filter", data.filter_corpora), ("tokenizer", data.build_tokenizer),
                       ("synthetic", data.generate_synthetic), ("tokenize", data.tokenize_all)):
        start = time.perf_counter()
        step()
        seconds[name] = time.perf_counter() - start
        print(f"data.{name}: {seconds[name]:.2f} s", flush=True)
    return {"seconds": seconds, "filter_plus_tokenize_s": seconds["filter"] + seconds["tokenize"],
            "digests": _indexed_digests(data)}


def corpus(workdir: Path, size_mb: float, shards: int) -> tuple[Path, dict]:
    """The benchmark corpus, built once per (size, shards) and reused."""
    folder = workdir / f"corpus_{size_mb:g}mb_{shards}"
    record = folder / "corpus.json"
    if record.is_file():
        return folder, json.loads(record.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    counts = build_corpus(folder / "shards", size_mb, join=1, seed=0, shards=shards)
    record.write_text(json.dumps(counts), encoding="utf-8")
    return folder, counts


def tokenizer(workdir: Path, vocab_size: int = 4096) -> Path:
    """The demo's tokenizer: byte-level BPE of ``vocab_size`` trained on the shipped corpus."""
    import gzip

    from data_prep.tokenize import train_bpe_tokenizer
    from data_throughput import SHIPPED

    path = workdir / f"tokenizer_{vocab_size}.json"
    if not path.is_file():
        with gzip.open(SHIPPED, "rt", encoding="utf-8") as handle:
            train_bpe_tokenizer((json.loads(line)["text"] for line in handle), vocab_size, path)
    return path


def run_steps(source: Path, counts: dict, tokenizer_path: Path, out: Path, workers: int) -> dict:
    """Filter, tokenize (unfiltered) and resample + tokenize (filtered) from scratch with ``workers`` local workers."""
    from megatron_alignpt.study.config import DataPlan
    from megatron_alignpt.study.data_steps import StudyData

    shutil.rmtree(out, ignore_errors=True)
    data = StudyData(out / "data", DataPlan(corpus=source, eval_suite="unused", tokenizer=tokenizer_path, workers=workers))
    data.build_tokenizer()
    rows = {}
    for name, step in (("filter", data.filter_corpora), ("tokenize", data.tokenize_corpora),
                       ("resample", lambda: data.resample_filtered("pretrain"))):
        cpu, wall = time.process_time(), time.perf_counter()
        step()
        rows[name] = {"wall_s": time.perf_counter() - wall, "cpu_s_this_process": time.process_time() - cpu}
    filtered = json.loads((data.filtered_dir("pretrain") / "stats.json").read_text())
    resample = json.loads(data.resample_report("pretrain").read_text())
    unfiltered = json.loads((data.pipeline_dir("pretrain_unfiltered") / "merged.json").read_text())
    merged = json.loads((data.pipeline_dir("pretrain_filtered") / "merged.json").read_text())
    resample_counts = json.loads(json.dumps(_counts(data.pipeline_dir("pretrain_filtered"))))
    sizes = {"filter": (counts["text_bytes"], filtered["documents_in"], None),
             "tokenize": (counts["text_bytes"], unfiltered["documents"], unfiltered["tokens"]),
             "resample": (resample_counts["write_resampled"]["bytes"], merged["documents"], merged["tokens"])}
    for name, (size, docs, tokens) in sizes.items():
        wall = rows[name]["wall_s"]
        rows[name].update({"text_mb": size / MB, "documents": docs, "tokens": tokens, "mb_per_s": size / MB / wall,
                           "docs_per_s": docs / wall, "tokens_per_s": tokens / wall if tokens else None})
    rows["all"] = {"wall_s": sum(r["wall_s"] for r in rows.values()), "corpus_mb": counts["text_bytes"] / MB,
                   "flag_rate": filtered["flag_rate"], "resample_total_over_budget": resample["total_over_budget"]}
    rows["all"]["corpus_mb_per_s"] = rows["all"]["corpus_mb"] / rows["all"]["wall_s"]
    shutil.rmtree(out, ignore_errors=True)
    return rows


def _counts(work_dir: Path) -> dict:
    from data_prep.pipeline.steps import step_counts

    return step_counts(work_dir)


STEP_LABELS = {"filter": "filter (read, blocklist, write kept/removed)", "tokenize": "tokenize unfiltered (read, encode, .bin/.idx, merge)",
               "resample": "resample + tokenize filtered (measure, copy, encode, merge)"}


def table(runs: dict[int, dict]) -> str:
    workers = sorted(runs)
    head = "| step | " + " | ".join(f"{w} worker{'s' if w > 1 else ''}" for w in workers) + " | scaling |"
    lines = [head, "|" + " --- |" * (len(workers) + 2)]
    for step, label in STEP_LABELS.items():
        cells = []
        for w in workers:
            r = runs[w][step]
            tokens = f", {r['tokens_per_s'] / 1e6:.2f} M tokens/s" if r["tokens_per_s"] else ""
            cells.append(f"{r['wall_s']:.1f} s: {r['mb_per_s']:.2f} MB/s, {r['docs_per_s']:,.0f} docs/s{tokens}")
        scaling = runs[workers[-1]][step]["mb_per_s"] / runs[workers[0]][step]["mb_per_s"]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | x{scaling:.2f} |")
    total = [runs[w]["all"] for w in workers]
    lines.append("| all three, per MB of corpus | " + " | ".join(f"{t['wall_s']:.1f} s: {t['corpus_mb_per_s']:.2f} MB/s" for t in total)
                 + f" | x{total[-1]['corpus_mb_per_s'] / total[0]['corpus_mb_per_s']:.2f} |")
    return "\n".join(lines)


PAPER_TOKENS = 550e9
"""The paper's pretraining corpus, in GPT-NeoX tokens."""


def projection(runs: dict[int, dict], cores_per_node: int, bytes_per_token: float, nodes=(1, 4, 16, 32)) -> str:
    """Projected wall time of the three steps over the paper's corpus per node count, from the measured
    1-worker rate (per core) and the measured scaling from 1 to the most workers (per-core efficiency),
    assuming both hold on every core of every node and input files outnumber the cores."""
    workers = sorted(runs)
    per_core = runs[workers[0]]["all"]["corpus_mb_per_s"]
    efficiency = runs[workers[-1]]["all"]["corpus_mb_per_s"] / per_core / workers[-1] if len(workers) > 1 else 1.0
    text_mb = PAPER_TOKENS * bytes_per_token / MB
    lines = [f"corpus {PAPER_TOKENS / 1e9:.0f}B tokens x {bytes_per_token} bytes/token = {text_mb / 1e6:.2f} TB of text; "
             f"{per_core:.2f} MB/s per core through filter + tokenize + resample/tokenize, scaling efficiency "
             f"{efficiency:.2f}, {cores_per_node} cores per node", "",
             "| nodes | cores | projected wall time |", "| --- | --- | --- |"]
    for n in nodes:
        seconds = text_mb / (per_core * efficiency * cores_per_node * n)
        lines.append(f"| {n} | {n * cores_per_node:,} | {seconds / 3600:,.1f} h |")
    return "\n".join(lines)


def render(result: dict, cores_per_node: int, bytes_per_token: float) -> str:
    runs = {int(w): r for w, r in result["runs"].items()}
    return table(runs) + "\n\n" + projection(runs, cores_per_node, bytes_per_token)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", action="store_true", help="time the tiny_cpu study's data steps instead")
    parser.add_argument("--size-mb", type=float, default=1000.0, help="corpus size in MB of text (default 1000)")
    parser.add_argument("--shards", type=int, default=16, help="input files (default 16)")
    parser.add_argument("--workers", default="1,2", help="local worker counts to run (default 1,2)")
    parser.add_argument("--workdir", default="/tmp/alignpt_data_steps_bench")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cpu_data_steps_throughput.json"))
    parser.add_argument("--cores-per-node", type=int, default=64, help="for the projection (default 64)")
    parser.add_argument("--bytes-per-token", type=float, default=4.4, help="of the paper's corpus (default 4.4)")
    parser.add_argument("--render", metavar="JSON", help="only print the table and projection of a saved result")
    args = parser.parse_args(argv)
    if args.render:
        result = json.loads(Path(args.render).read_text(encoding="utf-8"))
        print(render(result, args.cores_per_node, args.bytes_per_token))
        return result
    workdir = Path(args.workdir)
    if workdir.resolve().is_relative_to(REPO):
        parser.error(f"--workdir {workdir} is inside the repository; use a path under /tmp")
    result = {"machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "args": vars(args)}
    if args.demo:
        result["demo"] = time_demo_steps(workdir / "demo")
        print(json.dumps(result["demo"], indent=2))
        return result
    workdir.mkdir(parents=True, exist_ok=True)
    source, counts = corpus(workdir, args.size_mb, args.shards)
    result["corpus"] = counts
    print(f"corpus: {counts['documents']:,} documents, {counts['text_bytes'] / MB:.1f} MB of text in {args.shards} files", flush=True)
    tok = tokenizer(workdir)
    runs = {}
    for workers in (int(w) for w in args.workers.split(",")):
        runs[workers] = run_steps(source / "shards", counts, tok, workdir / f"run_{workers}", workers)
        print(f"{workers} worker(s): {json.dumps(runs[workers]['all'])}", flush=True)
    result["runs"] = {str(w): r for w, r in runs.items()}
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["table"] = render(result, args.cores_per_node, args.bytes_per_token)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(result["table"])
    return result


if __name__ == "__main__":
    main()
