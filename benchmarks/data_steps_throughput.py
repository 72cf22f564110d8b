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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", action="store_true", help="time the tiny_cpu study's data steps instead")
    parser.add_argument("--size-mb", type=float, default=1000.0, help="corpus size in MB of text (default 1000)")
    parser.add_argument("--shards", type=int, default=16, help="input files (default 16)")
    parser.add_argument("--workers", default="1,2", help="local worker counts to run (default 1,2)")
    parser.add_argument("--workdir", default="/tmp/alignpt_data_steps_bench")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cpu_data_steps_throughput.json"))
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    if workdir.resolve().is_relative_to(REPO):
        parser.error(f"--workdir {workdir} is inside the repository; use a path under /tmp")
    result = {"machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "args": vars(args)}
    if args.demo:
        result["demo"] = time_demo_steps(workdir / "demo")
        print(json.dumps(result["demo"], indent=2))
        return result
    raise SystemExit("corpus mode: not yet available")


if __name__ == "__main__":
    main()
