"""The README's CLI section lists every command, runnable as written (no placeholders); the slow test in
tests/integration/test_readme_commands.py runs it."""
import argparse

from megatron_alignpt.cli import build_parser
from tests.readme_commands import commands


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple = ()) -> list[tuple]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _subcommands(sub, prefix + (name,))
                out += nested or [prefix + (name,)]
    return out


def test_every_command_of_the_cli_is_in_the_walkthrough():
    listed = commands()
    assert all(c.startswith("alignpt ") for c in listed), [c for c in listed if not c.startswith("alignpt ")]
    missing = [" ".join(path) for path in _subcommands(build_parser())
               if not any(c.startswith("alignpt " + " ".join(path) + " ") for c in listed)]
    assert missing == [], f"commands missing from the README's CLI section: {missing}"


def test_the_walkthrough_has_no_placeholders():
    for command in commands():
        assert "[" not in command and "..." not in command and "NAME" not in command and " DIR" not in command, command


def test_example_config_is_a_loadable_stage_config_with_every_field_explained(capsys):
    import json

    from megatron_alignpt.cli import main
    from megatron_alignpt.config_base import from_dict
    from megatron_alignpt.train.config import StageConfig

    assert main(["train", "--example-config"]) == 0
    out, err = capsys.readouterr()
    cfg = from_dict(StageConfig, json.loads(out))
    assert cfg.kind == "pretrain" and str(cfg.data) == "out/align.pretrain.json" and str(cfg.tokenizer) == "out/tokenizer.json"
    assert "#   schedule.train_iters = 20  # Optimizer steps in this stage." in err.splitlines()
    assert "#   data = \"out/align.pretrain.json\"  # pretrain: a blend manifest (.json); sft: chat jsonl; dpo: preference jsonl." in err
    keys = [line.split(" = ")[0].removeprefix("#   ") for line in err.splitlines() if " = " in line]
    assert len(keys) == len(set(keys)) > 40 and "parallel.recompute.granularity" in keys


def test_example_data_copies_the_shipped_inputs_once(tmp_path, capsys):
    from data_prep.eval_suite import load_suite
    from megatron_alignpt.cli import main

    assert main(["prep", "example-data", "--output", str(tmp_path / "data")]) == 0
    names = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert names == ["corpus.jsonl.gz", "dpo_pairs.jsonl", "labelled.jsonl", "questions.jsonl", "sft_chat.jsonl"]
    assert len(load_suite(tmp_path / "data" / "questions.jsonl")) == 162
    assert main(["prep", "example-data", "--output", str(tmp_path / "data")]) == 2  # never replaced unasked
    assert "already exists" in capsys.readouterr().err
