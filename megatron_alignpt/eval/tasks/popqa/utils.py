"""Answers and scoring of the PopQA task YAML in this folder (lm-evaluation-harness).

`possible_answers` is a JSON-encoded list in the HF dataset (a list in local copies). Accuracy as
Mallen et al. (2023) define it: a reply is correct when it contains any of the possible answers
(case-insensitive), which forgives a model that answers in a phrase rather than the bare name.
"""
from __future__ import annotations

import json


def possible_answers(doc: dict) -> list[str]:
    value = doc["possible_answers"]
    answers = json.loads(value) if isinstance(value, str) else value
    return [str(a).strip() for a in answers if str(a).strip()]


def popqa_target(doc: dict) -> str:
    return possible_answers(doc)[0]


def popqa_process_results(doc: dict, results: list[str]) -> dict[str, int]:
    reply = results[0].strip().casefold()
    return {"acc": int(bool(reply) and any(answer.casefold() in reply for answer in possible_answers(doc)))}
