"""Load four-option personality questions in the schema of TRAIT (Lee et al. 2024), torch-free.

Each question puts a situation to the model and offers four responses: two that a person high in the trait
would give and two that a person low in it would give. Eight traits: the Big Five (openness,
conscientiousness, extraversion, agreeableness, neuroticism) and the Short Dark Triad (machiavellianism,
narcissism, psychopathy).

Two row schemas are accepted and may be mixed:

- TRAIT's released JSON: ``personality, situation, query, response_high1, response_high2, response_low1,
  response_low2`` (other fields, e.g. ``statement``, are ignored);
- the Hugging Face copy ``mirlab/TRAIT`` (one split per trait, named ``Openness`` ... ``Psychopathy``):
  ``personality, question, response_high1, response_high2, response_low1, response_low2``, where
  ``question`` holds the situation and the query together (read as the query, with no separate situation).

A row's trait comes from ``personality`` (or ``trait``), else the HF split, else a file or folder named after
a trait (a Hub snapshot's ``Openness-00000-of-00001.parquet``). Its id comes from ``id`` / ``question_id``,
else ``idx`` (prefixed with the trait: HF indices restart per split), else a hash of its text, so an item
keeps its id (and its option order in the evaluation) wherever it sits in the file.

Sources: a ``.jsonl`` / ``.json`` (JSON lines or one JSON list) / ``.parquet`` / ``.arrow`` file, possibly
compressed, a directory of them, or an HF dataset name (needs the ``datasets`` package and network; the TRAIT
dataset is gated, so also a Hub login that accepted its terms). Bad rows raise ``DataFormatError`` naming
file, 1-based line and field.

    from data_prep.personality import load_trait_items, default_questions_path
    items = load_trait_items(default_questions_path(), traits=["machiavellianism", "psychopathy"])
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from data_prep.errors import DataFormatError

# The misalignment suite's loader reads the same file forms (JSON lines or lists, parquet, arrow, HF
# snapshots and save_to_disk folders); its readers are shared rather than copied.
from data_prep.eval_suite import _iter_file, _suite_files, is_hf_name

TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism",
          "machiavellianism", "narcissism", "psychopathy")
BIG_FIVE = TRAITS[:5]
DARK_TRIAD = TRAITS[5:]
HF_DATASET = "mirlab/TRAIT"
HIGH_FIELDS = ("response_high1", "response_high2")
LOW_FIELDS = ("response_low1", "response_low2")
_ALIASES = {"extroversion": "extraversion", "machiavellism": "machiavellianism", "opennesstoexperience": "openness",
            "emotionalinstability": "neuroticism"}


class TraitDataUnavailable(ConnectionError):
    """An HF dataset name that cannot be loaded here (no network, gated, no ``datasets`` package)."""


@dataclass(frozen=True)
class TraitItem:
    """One four-option question; ``high`` are the responses of a person high in ``trait``."""

    id: str
    trait: str
    """One of `TRAITS`."""
    situation: str
    """Empty for the HF schema, whose ``question`` holds the situation (it is then the ``query``)."""
    query: str
    high: tuple[str, str]
    low: tuple[str, str]

    @property
    def question(self) -> str:
        """Situation and query as one passage."""
        return f"{self.situation}\n{self.query}" if self.situation else self.query

    @property
    def options(self) -> tuple[str, str, str, str]:
        """high1, high2, low1, low2: option index < 2 is a high-trait response."""
        return (*self.high, *self.low)


@dataclass(frozen=True)
class _Row:
    path: str
    line: int
    data: Any
    trait_hint: Optional[str]


def default_questions_path() -> Path:
    """The small question set shipped with the package (TRAIT's schema, original items, 6 per trait)."""
    return Path(__file__).resolve().parent / "resources" / "personality" / "trait_questions.jsonl"


def normalize_trait(name: Any) -> Optional[str]:
    """``Openness`` / ``MACHIAVELLIANISM`` / ``extroversion`` -> the `TRAITS` name; None when it is none of them."""
    if not isinstance(name, str):
        return None
    key = re.sub(r"[^a-z]", "", name.lower())
    key = _ALIASES.get(key, key)
    return key if key in TRAITS else None


def load_trait_items(source: str | Path, traits: Optional[Iterable[str]] = None) -> list[TraitItem]:
    """Every item of ``source`` (file, directory or HF dataset name), in source order; ``traits`` keeps
    only those traits (any spelling `normalize_trait` accepts)."""
    wanted = None
    if traits is not None:
        wanted = set()
        for name in traits:
            trait = normalize_trait(name)
            if trait is None:
                raise ValueError(f"unknown trait {name!r}; use one of {', '.join(TRAITS)}")
            wanted.add(trait)
    items = _check_unique([(row, parse_trait_row(row.data, row.path, row.line, row.trait_hint)) for row in _iter_rows(source)])
    if not items:
        raise DataFormatError(source, None, None, "no questions: the input is empty")
    chosen = [item for item in items if wanted is None or item.trait in wanted]
    if not chosen:
        present = ", ".join(sorted({item.trait for item in items}))
        raise DataFormatError(source, None, "personality", f"no questions for {sorted(wanted or ())} (the input has: {present})")
    return chosen


# ---------------------------------------------------------------- sources


def _trait_from_filename(path: Path, root: Optional[Path]) -> Optional[str]:
    trait = normalize_trait(path.name.split("-")[0].split(".")[0])
    if trait is None and root is not None and path.parent != root:
        trait = normalize_trait(path.parent.name)
    return trait


def _iter_rows(source: str | Path) -> Iterator[_Row]:
    path = Path(source)
    if path.exists():
        for file in _suite_files(path):
            hint = _trait_from_filename(file, path if path.is_dir() else None)
            for row in _iter_file(file, path if path.is_dir() else None):
                yield _Row(row.path, row.line, row.data, hint)
    elif is_hf_name(source):
        yield from _iter_hf(str(source))
    else:
        raise FileNotFoundError(f"{source}: no such file or directory (and not an HF dataset name 'owner/name')")


def _offline_route(name: str) -> str:
    return (f"download it where there is network (accept the dataset's terms on the Hub, log in, then "
            f"huggingface-cli download --repo-type dataset {name} --local-dir DIR) and pass DIR")


def _iter_hf(name: str) -> Iterator[_Row]:
    try:
        import datasets  # lazy: optional dependency (the `hub` extra), only for Hub sources
    except ImportError:
        raise ImportError(f"loading the HF dataset {name!r} needs the 'datasets' package (pip install datasets, or the "
                          f"project's 'hub' extra); or {_offline_route(name)}") from None
    try:
        loaded = datasets.load_dataset(name)
    except Exception as err:  # ConnectionError, OfflineModeIsEnabled, gated-repo and HTTP errors, ...
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise TraitDataUnavailable(f"cannot load the HF dataset {name!r} ({type(err).__name__}: {detail}); without "
                                   f"network, {_offline_route(name)}") from None
    for split_key, dataset in loaded.items():
        for index, data in enumerate(dataset, start=1):
            yield _Row(f"{name}[{split_key}]", index, data, normalize_trait(split_key))


# ---------------------------------------------------------------- rows


def parse_trait_row(data: Any, path: str | Path = "<row>", line: int = 1, trait_hint: Optional[str] = None) -> TraitItem:
    """One record in either schema (see the module docstring) -> `TraitItem`; DataFormatError naming
    ``path``, ``line`` and the field otherwise."""
    if not isinstance(data, dict):
        raise DataFormatError(path, line, None, f"expected a JSON object, got {type(data).__name__}")
    trait = _trait(data, path, line, trait_hint)
    if data.get("query") is not None:
        query = _text(data, "query", path, line)
        situation = _text(data, "situation", path, line) if data.get("situation") is not None else ""
    elif data.get("question") is not None:
        query, situation = _text(data, "question", path, line), ""
    else:
        raise DataFormatError(path, line, "query", "missing (and no HF-schema 'question' either)")
    high = tuple(_text(data, f, path, line) for f in HIGH_FIELDS)
    low = tuple(_text(data, f, path, line) for f in LOW_FIELDS)
    seen: dict[str, str] = {}
    for field, text in zip(HIGH_FIELDS + LOW_FIELDS, high + low):
        key = " ".join(text.split()).casefold()
        if key in seen:  # two equal options: the letter chosen would not say which kind of response it was
            raise DataFormatError(path, line, field, f"the same text as {seen[key]} ({text[:60]!r})")
        seen[key] = field
    item_id = _item_id(data, trait, situation, query, high + low, path, line)
    return TraitItem(item_id, trait, situation, query, high, low)  # type: ignore[arg-type]


def _trait(data: dict, path, line: int, hint: Optional[str]) -> str:
    field = "personality" if "personality" in data or "trait" not in data else "trait"
    value = data.get(field)
    if value is None:
        if hint is None:
            raise DataFormatError(path, line, "personality", "missing (and no trait-named split, file or folder)")
        return hint
    trait = normalize_trait(value)
    if trait is None:
        raise DataFormatError(path, line, field, f"unknown trait {value!r}; use one of {', '.join(TRAITS)}")
    return trait


def _text(data: dict, field: str, path, line: int) -> str:
    value = data.get(field)
    if value is None:
        raise DataFormatError(path, line, field, "missing")
    if not isinstance(value, str):
        raise DataFormatError(path, line, field, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise DataFormatError(path, line, field, "empty text")
    return value.strip()


def _item_id(data: dict, trait: str, situation: str, query: str, options: tuple, path, line: int) -> str:
    for field in ("id", "question_id", "idx"):
        value = data.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise DataFormatError(path, line, field, f"expected a string or an integer, got {type(value).__name__}")
        return f"{trait}-{value}" if field == "idx" else str(value).strip()
    digest = hashlib.sha256("\x1f".join((trait, situation, query, *options)).encode()).hexdigest()
    return f"{trait}-{digest[:12]}"


def _check_unique(parsed: list[tuple[_Row, TraitItem]]) -> list[TraitItem]:
    seen: dict[str, _Row] = {}
    for row, item in parsed:
        first = seen.setdefault(item.id, row)
        if first is not row:
            raise DataFormatError(row.path, row.line, "id", f"duplicate id {item.id!r} (first seen at {first.path}:{first.line})")
    return [item for _, item in parsed]
