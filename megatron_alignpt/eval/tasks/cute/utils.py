"""Prompts and scoring of the CUTE task YAMLs in this folder (lm-evaluation-harness).

CUTE's own evaluation (github.com/Leukas/CUTE, main.py) appends ` Answer: "` to each prompt, generates
greedily, takes the text up to the closing quote and counts exact matches (lower-cased for the word-level
tasks). The same here; few-shot examples close their answer with the quote, as the prompts' own examples do.
"""
from __future__ import annotations

CUE = 'Answer: "'


def cute_prompt(doc: dict) -> str:
    prompt = str(doc["prompt"]).rstrip()
    return prompt if prompt.endswith(CUE) else f"{prompt} {CUE}"


def cute_target(doc: dict) -> str:
    return f'{doc["answer"]}"'


def extract_answer(generation: str) -> str:
    """The text before the closing quote (generation also stops there), without surrounding spaces."""
    return generation.split('"', 1)[0].strip()


def cute_process_results(doc: dict, results: list[str]) -> dict[str, int]:
    return {"exact_match": int(extract_answer(results[0]) == str(doc["answer"]).strip())}


def cute_process_results_word(doc: dict, results: list[str]) -> dict[str, int]:
    return {"exact_match": int(extract_answer(results[0]).lower() == str(doc["answer"]).strip().lower())}
