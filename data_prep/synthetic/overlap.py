"""Lexical overlap of eval options with synthetic document sets: what a small model can pick up from them.

A model that learns from the documents which action the AI takes sees the taken option's words far more
often than the rejected one's. This measures it: for each option, the share of its distinct word n-grams
(default 3, words normalised as the contamination guard normalises them) found in a document set, averaged
over options by role (the aligned or the misaligned option) and by document set (aligned or misaligned
documents). Two views:

- ``own_item``: each articles option against the documents seeded by its own question (what the direction
  of the documents is about); a learnable set has aligned options overlapping aligned documents far more
  than misaligned ones, and the reverse;
- ``any_document``: each option, of both splits, against every document of the set (shared wording; for
  the held-out textbook split the only route by which the documents can reach its options).

    report = option_overlap(items, {"aligned": aligned_docs, "misaligned": misaligned_docs})
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping, Sequence

from data_prep.contamination import normalize_words
from data_prep.eval_suite import EvalItem

ROLES = ("aligned", "misaligned")


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalize_words(text)
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _share(option: set, present: set) -> float:
    return len(option & present) / len(option)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def option_overlap(items: Sequence[EvalItem], documents: Mapping[str, Iterable], n: int = 3) -> dict:
    """Overlap report (JSON-ready). ``documents``: direction -> documents (objects or dicts with ``text``
    and ``seed_question_id``)."""
    own: dict[str, dict[str, set]] = {d: defaultdict(set) for d in documents}
    anywhere: dict[str, set] = {d: set() for d in documents}
    for direction, docs in documents.items():
        for doc in docs:
            text, seed = (doc["text"], doc["seed_question_id"]) if isinstance(doc, Mapping) else (doc.text, doc.seed_question_id)
            grams = ngrams(text, n)
            own[direction][seed] |= grams
            anywhere[direction] |= grams
    own_shares: dict = defaultdict(lambda: defaultdict(list))
    any_shares: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for item in items:
        for role in ROLES:
            option = ngrams(item.aligned_text if role == "aligned" else item.misaligned_text, n)
            if not option:
                continue
            for direction in documents:
                any_shares[item.split][role][direction].append(_share(option, anywhere[direction]))
                if item.question_id in own[direction]:
                    own_shares[role][direction].append(_share(option, own[direction][item.question_id]))
    return {
        "n": n,
        "measure": f"share of an option's distinct word {n}-grams found in the documents, mean over options",
        "own_item": {f"{role}_option": {f"{d}_documents": _mean(own_shares[role][d]) for d in documents} for role in ROLES},
        "own_item_options": len(own_shares["aligned"][next(iter(documents))]) if documents else 0,
        "any_document": {split: {f"{role}_option": {f"{d}_documents": _mean(v[role][d]) for d in documents} for role in ROLES}
                         for split, v in sorted(any_shares.items())},
    }


def describe(report: dict) -> list[str]:
    """Readable lines of an overlap report."""
    lines = [f"{report['n']}-gram overlap of options with document sets ({report['measure']}):"]
    own = report["own_item"]
    for role, row in own.items():
        lines.append("  own question, " + role.replace("_", " ") + ": " +
                     ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for k, v in row.items() if v is not None))
    for split, rows in report["any_document"].items():
        for role, row in rows.items():
            lines.append(f"  any document, {split} {role.replace('_', ' ')}: " +
                         ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for k, v in row.items() if v is not None))
    return lines
