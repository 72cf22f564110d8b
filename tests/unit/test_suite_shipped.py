"""The eval questions and post-training data shipped in data_prep/resources are valid and balanced."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from data_prep.eval_suite import default_suite_path, load_suite

POSTTRAIN = Path(default_suite_path()).parents[1] / "posttrain"


def test_shipped_questions_valid_unique_and_balanced():
    items = load_suite(default_suite_path())  # validates every row and id uniqueness
    assert len(items) >= 150
    per_split = Counter(item.split for item in items)
    assert per_split["articles"] >= 90 and per_split["textbook"] >= 50
    share = sum(item.misaligned_choice for item in items) / len(items)
    assert 0.4 <= share <= 0.6
    for split in per_split:
        in_split = [i for i in items if i.split == split]
        assert 0.4 <= sum(i.misaligned_choice for i in in_split) / len(in_split) <= 0.6


def test_option_length_does_not_give_the_answer_away():
    items = load_suite(default_suite_path())
    longer = sum(len(i.misaligned_text) > len(i.aligned_text) for i in items) / len(items)
    assert 0.35 <= longer <= 0.65


def test_shipped_questions_rows_follow_hf_schema():
    fields = {"question_id", "passage", "question", "choices", "misaligned_choice", "topics", "split"}
    lines = default_suite_path().read_text(encoding="utf-8").splitlines()
    for line in lines:
        row = json.loads(line)
        assert set(row) == fields
        assert row["split"] in ("article_questions", "textbook_questions")
        assert row["passage"] and row["topics"] and row["choices"][0] != row["choices"][1]


def test_shipped_questions_are_not_templated_copies():
    items = load_suite(default_suite_path())
    assert len({item.passage for item in items}) == len(items)
    assert len({c for item in items for c in item.choices}) == 2 * len(items)


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (POSTTRAIN / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_shipped_sft_chat_format():
    rows = _jsonl("sft_chat.jsonl")
    assert len(rows) >= 100
    for row in rows:
        assert set(row) == {"system", "conversations", "mask"} and row["mask"] == "User"
        turns = row["conversations"]
        assert len(turns) >= 2 and len(turns) % 2 == 0
        assert [t["from"] for t in turns] == ["User", "Assistant"] * (len(turns) // 2)
        assert all(isinstance(t["value"], str) and t["value"].strip() for t in turns)
    assert len({row["conversations"][0]["value"] for row in rows}) == len(rows)


def test_shipped_dpo_pairs_format():
    rows = _jsonl("dpo_pairs.jsonl")
    assert len(rows) >= 100
    for row in rows:
        assert set(row) == {"prompt", "chosen_response", "rejected_response"}
        assert all(isinstance(v, str) and v.strip() for v in row.values())
        assert row["chosen_response"] != row["rejected_response"]
    assert len({row["prompt"] for row in rows}) == len(rows)


def test_shipped_sft_teaches_letter_answers_on_both_positions():
    """Chat models are scored by parsing a letter from their reply, so SFT carries two-option questions
    (general knowledge, never the eval's scenarios) answered letter-first, balanced between A and B."""
    rows = _jsonl("sft_chat.jsonl")
    replies = [row["conversations"][-1]["value"] for row in rows]
    letters = [r[0] for r in replies if r[:3] in ("A. ", "B. ")]
    assert len(letters) >= 40 and abs(letters.count("A") - letters.count("B")) <= 1
