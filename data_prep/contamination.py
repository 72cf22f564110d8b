"""Contamination guard: refuse synthetic documents that overlap the eval suite (SPEC sections 6 and 8).

Synthetic documents are seeded by the *articles* split; the *textbook* split is held out to measure
generalisation, so nothing of it may reach training data. Before synthetic documents are tokenized,
every document is compared with the eval suite by word n-grams (lower-cased, NFKC-normalised, split on
anything that is not a letter or digit, so punctuation, case and whitespace do not matter). Two rules:

1. **Held-out textbook split: any overlap fails.** A document fails if it shares a single
   ``textbook_n``-gram (default 13 words) with a textbook item's passage, question or either choice.
   Thirteen words is the usual contamination n (GPT-3, PaLM): long enough that two independently
   written texts on the same topic practically never share one, short enough to catch a copied sentence.
2. **Any eval question's choices: overlap above a threshold fails.** For each choice of every item
   (both splits), the share of the choice's distinct n-grams found in the document; a share above
   ``choice_threshold`` (default 0.5) fails. This catches options copied nearly verbatim, which the
   generator prompt forbids (documents paraphrase the options). The n depends on the choice's length,
   because a long n leaves a short choice with one or two n-grams (share 0 or 1, nothing in between)
   and a short n matches common phrasing in long choices:

   * choices of ``long_choice_words`` (16) words or more use ``choice_n`` (8)-grams;
   * shorter choices use ``short_choice_n`` (5)-grams;
   * choices under ``min_choice_words`` (5) words are not checked: a four-word option ("refuse and report
     it") recurs in honest paraphrase, so its appearance says nothing about copying.

   A share above 0.5 with 8-grams means roughly the choice's first or second half appears word for word;
   with 5-grams, about eight consecutive words of a short choice.

``choice_overlap="warn"`` records rule-2 hits as warnings instead of failing (rule 1 always fails).

Cost: the eval suite becomes one hash table of n-gram hashes per n (three n's by default); a document
is tokenized once, its window hashes are computed with numpy (a polynomial hash over per-word random
64-bit codes, so no Python loop per window) and looked up in bulk; hits are then verified word by
word, so a hash collision can never fail a document. There is no loop over eval items per document.

    from data_prep.contamination import guard_files
    guard_files(["synthetic/aligned.jsonl"], suite="questions.jsonl", report_path="contamination.json")
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from data_prep.atomic import atomic_write_json
from data_prep.eval_suite import EvalItem, load_suite

RULE_TEXTBOOK = "textbook_ngram"
RULE_CHOICE = "choice_overlap"
HELD_OUT_SPLIT = "textbook"
_WORD = re.compile(r"[^\W_]+")
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant: the polynomial hash base
_MAX_TEXT_IN_REPORT = 300


@dataclass(frozen=True)
class GuardConfig:
    """Thresholds of the two rules (see the module docstring for why these defaults)."""

    textbook_n: int = 13
    choice_n: int = 8
    short_choice_n: int = 5
    long_choice_words: int = 16
    min_choice_words: int = 5
    choice_threshold: float = 0.5
    choice_overlap: str = "fail"
    """``fail``: rule-2 hits fail the check; ``warn``: they are reported as warnings only."""

    def __post_init__(self) -> None:
        for name in ("textbook_n", "choice_n", "short_choice_n", "min_choice_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"contamination guard: {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.choice_threshold < 1.0:
            raise ValueError(f"contamination guard: choice_threshold must be in [0, 1), got {self.choice_threshold}")
        if self.choice_overlap not in ("fail", "warn"):
            raise ValueError(f"contamination guard: choice_overlap must be 'fail' or 'warn', got {self.choice_overlap!r}")

    def choice_ngram_size(self, words: int) -> int | None:
        """The n used for a choice of ``words`` words; None when it is too short to check."""
        if words < self.min_choice_words:
            return None
        n = self.choice_n if words >= self.long_choice_words else self.short_choice_n
        return min(n, words)


@dataclass(frozen=True)
class Violation:
    """One document/eval-item overlap. ``field`` is ``passage``, ``question`` or ``choices[i]``."""

    doc_id: str
    rule: str
    item_id: str
    split: str
    field: str
    matched_text: str
    """The document's own text where it matched (spans joined by " … "), at most 300 characters."""
    ngrams_matched: int
    n: int
    share: float | None = None
    """Rule 2 only: share of the choice's distinct n-grams found in the document."""
    source: str = ""

    def describe(self) -> str:
        share = f", {self.share:.0%} of its {self.n}-grams" if self.share is not None else ""
        text = self.matched_text if len(self.matched_text) <= 80 else self.matched_text[:77] + "..."
        return f"{self.doc_id} matches {self.split} item {self.item_id} ({self.field}{share}): \"{text}\""


@dataclass
class ContaminationReport:
    """What :func:`check_documents` found; ``to_dict()`` is the report JSON."""

    config: GuardConfig
    documents_checked: int = 0
    eval_items: dict[str, int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    warnings: list[Violation] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    suite: str = ""

    @property
    def passed(self) -> bool:
        return not self.violations

    def offending_documents(self) -> list[str]:
        return list(dict.fromkeys(v.doc_id for v in self.violations))

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "documents_checked": self.documents_checked,
            "offending_documents": len(self.offending_documents()),
            "documents_with_warnings": len({v.doc_id for v in self.warnings}),
            "suite": self.suite,
            "sources": self.sources,
            "eval_items": self.eval_items,
            "config": asdict(self.config),
            "violations": [asdict(v) for v in self.violations],
            "warnings": [asdict(v) for v in self.warnings],
        }

    def summary(self) -> str:
        """One line for logs and errors."""
        head = (f"{len(self.offending_documents())} of {self.documents_checked} synthetic documents overlap the eval suite"
                if not self.passed else f"{self.documents_checked} synthetic documents checked, no eval overlap")
        if self.warnings:
            head += f"; {len({v.doc_id for v in self.warnings})} quote an eval choice above the threshold (warning only)"
        return head


class ContaminationError(ValueError):
    """Raised when documents overlap the eval suite; names the offending documents on one line."""

    def __init__(self, report: ContaminationReport, report_path: str | Path | None = None, shown: int = 5) -> None:
        self.report = report
        self.report_path = str(report_path) if report_path is not None else None
        first: dict[str, Violation] = {}
        for violation in report.violations:
            first.setdefault(violation.doc_id, violation)
        listed = "; ".join(v.describe() for v in list(first.values())[:shown])
        more = f"; and {len(first) - shown} more" if len(first) > shown else ""
        where = f" (report: {self.report_path})" if self.report_path else ""
        super().__init__(f"contamination guard: {report.summary()}{where}: {listed}{more}")


# ---------------------------------------------------------------- text -> words -> n-gram hashes


def words_with_offsets(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Normalised words of ``text`` and their character spans in ``text``.

    NFKC folding and lower-casing are applied per word, so the spans point into the original string.
    """
    words, spans = [], []
    for match in _WORD.finditer(text):
        words.append(unicodedata.normalize("NFKC", match.group(0)).lower())
        spans.append(match.span())
    return words, spans


def normalize_words(text: str) -> list[str]:
    """The words of ``text`` as compared by the guard (same result as ``words_with_offsets(text)[0]``)."""
    if text.isascii():  # fast path: per-word NFKC and lower-casing change nothing beyond str.lower()
        return _WORD.findall(text.lower())
    return words_with_offsets(text)[0]


def _word_code(word: str) -> int:
    """A stable pseudo-random 64-bit code per word (the same on every run and host)."""
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little") | 1


def _window_hashes(codes: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hash of every length-``n`` window of ``codes`` (uint64, wrapping arithmetic)."""
    if len(codes) < n:
        return np.empty(0, dtype=np.uint64)
    powers = np.ones(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n - 2, -1, -1):
            powers[k] = powers[k + 1] * _MULTIPLIER
        windows = np.lib.stride_tricks.sliding_window_view(codes, n)
        return (windows * powers).sum(axis=1, dtype=np.uint64)


@dataclass(frozen=True)
class _Source:
    """Where an eval n-gram comes from: item index, field name, word offset in that field."""

    item: int
    field: str
    start: int


class ContaminationIndex:
    """The eval suite's n-grams, hashed once; :meth:`check` tests one document against all of them."""

    def __init__(self, items: Sequence[EvalItem], config: GuardConfig | None = None) -> None:
        self.config = config or GuardConfig()
        self.items = list(items)
        self._codes: dict[str, int] = {}
        self._field_words: dict[tuple[int, str], list[str]] = {}
        # n -> sorted hash array (bulk lookup) and hash -> sources (verification and reporting)
        self._textbook: dict[int, list[_Source]] = defaultdict(list)
        self._choices: dict[int, dict[int, list[_Source]]] = defaultdict(lambda: defaultdict(list))
        self._choice_sizes: dict[tuple[int, str], int] = {}
        for index, item in enumerate(self.items):
            fields = {"passage": item.passage, "question": item.question}
            fields.update({f"choices[{i}]": choice for i, choice in enumerate(item.choices)})
            for name, text in fields.items():
                words = normalize_words(text)
                self._field_words[(index, name)] = words
                if item.split == HELD_OUT_SPLIT:
                    self._add(self._textbook, index, name, words, self.config.textbook_n)
                if name.startswith("choices["):
                    n = self.config.choice_ngram_size(len(words))
                    if n is not None:
                        distinct = self._add(self._choices[n], index, name, words, n)
                        self._choice_sizes[(index, name)] = distinct
        self._textbook_keys = np.array(sorted(self._textbook), dtype=np.uint64)
        self._choice_keys = {n: np.array(sorted(table), dtype=np.uint64) for n, table in self._choices.items()}

    def _add(self, table: dict[int, list[_Source]], index: int, name: str, words: list[str], n: int) -> int:
        """Add the n-grams of one field to ``table``; returns the number of distinct n-grams added."""
        hashes = _window_hashes(self._encode(words, grow=True), n)
        seen: set[int] = set()
        for start, value in enumerate(hashes.tolist()):
            if value not in seen:
                seen.add(value)
                table[value].append(_Source(index, name, start))
        return len(seen)

    def _encode(self, words: list[str], grow: bool) -> np.ndarray:
        """Per-word codes; a word the eval suite never uses gets code 0 (its windows are masked out)."""
        codes = self._codes
        if grow:
            for word in words:
                if word not in codes:
                    codes[word] = _word_code(word)
        return np.fromiter((codes.get(w, 0) for w in words), dtype=np.uint64, count=len(words))

    # ------------------------------------------------------------ checking

    def _hits(self, codes: np.ndarray, known: np.ndarray, n: int, keys: np.ndarray) -> list[tuple[int, int]]:
        """(position, hash) of every window of the document whose hash is in ``keys``."""
        if len(keys) == 0 or len(codes) < n:
            return []
        hashes = _window_hashes(codes, n)
        unknown = np.concatenate(([0], np.cumsum(~known)))
        valid = (unknown[n:] - unknown[:-n]) == 0  # windows made only of eval-suite words
        slots = np.minimum(np.searchsorted(keys, hashes), len(keys) - 1)  # keys are sorted
        found = (keys[slots] == hashes) & valid
        positions = np.nonzero(found)[0]
        return list(zip(positions.tolist(), hashes[positions].tolist()))

    def _verified(self, words: list[str], start: int, n: int, source: _Source) -> bool:
        field_words = self._field_words[(source.item, source.field)]
        return words[start:start + n] == field_words[source.start:source.start + n]

    def check(self, doc_id: str, text: str, source: str = "") -> tuple[list[Violation], list[Violation]]:
        """(violations, warnings) of one document."""
        words = normalize_words(text)
        codes = self._encode(words, grow=False)
        known = codes != 0
        found: list[Violation] = []
        spans: list[tuple[int, int]] = []
        cfg = self.config

        textbook: dict[tuple[int, str], list[int]] = defaultdict(list)
        for position, value in self._hits(codes, known, cfg.textbook_n, self._textbook_keys):
            for src in self._textbook[value]:
                if self._verified(words, position, cfg.textbook_n, src):
                    textbook[(src.item, src.field)].append(position)
        for (item_index, name), positions in textbook.items():
            found.append(self._violation(doc_id, RULE_TEXTBOOK, item_index, name, text, spans, positions,
                                         cfg.textbook_n, len(set(positions)), None, source))

        choice_hits: dict[tuple[int, str], dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        for n, keys in self._choice_keys.items():
            for position, value in self._hits(codes, known, n, keys):
                for src in self._choices[n][value]:
                    if self._verified(words, position, n, src):
                        choice_hits[(src.item, src.field)][src.start].append(position)
        flagged: list[Violation] = []
        for (item_index, name), by_gram in choice_hits.items():
            total = self._choice_sizes[(item_index, name)]
            share = len(by_gram) / total
            if share > cfg.choice_threshold:
                n = cfg.choice_ngram_size(len(self._field_words[(item_index, name)]))
                positions = [p for ps in by_gram.values() for p in ps]
                flagged.append(self._violation(doc_id, RULE_CHOICE, item_index, name, text, spans, positions,
                                               n, len(by_gram), round(share, 4), source))
        if cfg.choice_overlap == "fail":
            return found + flagged, []
        return found, flagged

    def _violation(self, doc_id: str, rule: str, item_index: int, name: str, text: str, spans: list,
                   positions: list[int], n: int, count: int,
                   share: float | None, source: str) -> Violation:
        item = self.items[item_index]
        return Violation(doc_id=doc_id, rule=rule, item_id=item.question_id, split=item.split, field=name,
                         matched_text=_matched_text(text, positions, n, spans), ngrams_matched=count, n=n,
                         share=share, source=source)


def _matched_text(text: str, positions: list[int], n: int, spans: list[tuple[int, int]]) -> str:
    """The document text covered by the matched windows, contiguous runs joined by " … "."""
    if not spans:  # computed once per offending document, on its first violation
        spans.extend(words_with_offsets(text)[1])
    runs: list[list[int]] = []
    for position in sorted(set(positions)):
        end = position + n - 1
        if runs and position <= runs[-1][1] + 1:
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([position, end])
    pieces = [" ".join(text[spans[a][0]:spans[b][1]].split()) for a, b in runs]
    joined = " … ".join(pieces)
    return joined if len(joined) <= _MAX_TEXT_IN_REPORT else joined[: _MAX_TEXT_IN_REPORT - 1] + "…"


# ---------------------------------------------------------------- whole corpora


def check_documents(docs: Iterable[Any], items: Sequence[EvalItem], config: GuardConfig | None = None,
                    source: str = "") -> ContaminationReport:
    """Check documents against the eval items; ``docs`` yields ``(id, text)`` pairs or objects with
    ``.id`` and ``.text`` (``SyntheticDocument``, ``readers.Document``)."""
    index = items if isinstance(items, ContaminationIndex) else ContaminationIndex(items, config)
    report = ContaminationReport(config=index.config, eval_items=_split_counts(index.items))
    _check_into(report, index, docs, source)
    return report


def _split_counts(items: Sequence[EvalItem]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        counts[item.split] += 1
    return dict(sorted(counts.items()))


def _check_into(report: ContaminationReport, index: ContaminationIndex, docs: Iterable[Any], source: str) -> None:
    for doc in docs:
        doc_id, text = (doc if isinstance(doc, tuple) else (doc.id, doc.text))
        violations, warnings = index.check(str(doc_id), text, source)
        report.violations.extend(violations)
        report.warnings.extend(warnings)
        report.documents_checked += 1


def guard_files(doc_paths: Sequence[str | Path], suite: str | Path | Sequence[EvalItem],
                report_path: str | Path | None = None, config: GuardConfig | None = None,
                text_field: str = "text", id_field: str = "id", suite_name: str | None = None) -> ContaminationReport:
    """Check document files (JSONL/Parquet, see ``readers``) against an eval suite (a path or items).

    Writes the report JSON (atomically) to ``report_path`` whether or not the check passes, and raises
    :class:`ContaminationError` naming the offending documents when it fails.
    """
    from data_prep.readers import iter_documents

    items = load_suite(suite) if isinstance(suite, (str, Path)) else list(suite)
    index = ContaminationIndex(items, config)
    report = ContaminationReport(config=index.config, eval_items=_split_counts(items),
                                 suite=suite_name or (str(suite) if isinstance(suite, (str, Path)) else ""))
    for path in doc_paths:
        report.sources.append(str(path))
        _check_into(report, index, iter_documents(path, text_field=text_field, id_field=id_field), str(path))
    if report_path is not None:
        atomic_write_json(report_path, report.to_dict())
    if not report.passed:
        raise ContaminationError(report, report_path)
    return report
