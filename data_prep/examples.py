"""The sample data shipped with the package, copied where a user can point commands at it.

    alignpt prep example-data --output data      # data/corpus.jsonl.gz, data/questions.jsonl, ...

Small fixtures (the demo's inputs), each in the format its real counterpart uses, so every command of the
README's CLI walkthrough runs on them as written, from any directory, with or without a repository checkout.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

RESOURCES = Path(__file__).resolve().parent / "resources"


@dataclass(frozen=True)
class ExampleFile:
    name: str
    source: Path
    what: str


EXAMPLES = (
    ExampleFile("corpus.jsonl.gz", RESOURCES / "corpus" / "base_corpus.jsonl.gz",
                "pretraining corpus: general web-like documents, some about AI (DCLM's jsonl layout, `text` field)"),
    ExampleFile("questions.jsonl", RESOURCES / "eval" / "questions.jsonl",
                "misalignment eval questions, both splits (the HF dataset's schema + `split`)"),
    ExampleFile("sft_chat.jsonl", RESOURCES / "posttrain" / "sft_chat.jsonl", "SFT conversations (NeMo-Aligner chat format)"),
    ExampleFile("dpo_pairs.jsonl", RESOURCES / "posttrain" / "dpo_pairs.jsonl",
                "DPO preference pairs (prompt, chosen_response, rejected_response)"),
    ExampleFile("labelled.jsonl", RESOURCES / "audit" / "labelled.jsonl", "hand-labelled documents for the blocklist audit"),
)


def copy_examples(output: Path, overwrite: bool = False) -> list[tuple[Path, str]]:
    """Copy every example file into ``output`` (refusing files that exist unless ``overwrite``)."""
    from data_prep.atomic import atomic_path, check_output

    targets = [(output / ex.name, ex) for ex in EXAMPLES]
    for target, _ in targets:  # all checks before any copy
        check_output(target, overwrite=overwrite)
    output.mkdir(parents=True, exist_ok=True)
    for target, ex in targets:
        with atomic_path(target) as tmp:
            shutil.copyfile(ex.source, tmp)
    return [(target, ex.what) for target, ex in targets]
