"""Load the two-option misalignment eval suite (Tice et al. 2026) from files or the HF Hub.

Sources: a ``.jsonl`` / ``.json`` (JSON list or JSON lines) / ``.parquet`` / ``.arrow`` file, a directory
of them (among them a downloaded HF dataset: a Hub snapshot of ``article_questions-*.parquet`` and
``textbook_questions-*.parquet``, or a ``save_to_disk`` folder with one sub-folder of ``.arrow`` files per
split), or an HF dataset name such as ``geodesic-research/discourse-grounded-misalignment-evals`` (needs the
``datasets`` package and network; offline it fails with one line saying how to download it instead).
`write_suite` converts any of them into one JSON-lines file of our schema with a ``split`` field
(``alignpt prep eval-suite``).
Two row schemas are accepted and may be mixed:

- HF:  ``question_id, passage, question, choices: [str, str], misaligned_choice: 0|1, topics``
- raw: ``question_id, passage, question, options: [{label, text}] x2, aligned_label, misaligned_label, topics``

Split names are normalised to ``articles`` (seeds synthetic documents) and ``textbook`` (held out).
A row's split comes from the HF split key, else its ``split`` field, else a file name that starts with
a split name (HF's ``article_questions-00000-of-00001.parquet`` layout) or a folder named after one
(``save_to_disk``'s ``article_questions/data-00000-of-00001.arrow``), else the ``split`` asked for
(so ``ds["article_questions"].to_json(...)`` exports load with ``split="articles"``). Bad rows raise
``DataFormatError`` naming file, 1-based line (list index + 1 for JSON lists and parquet) and field;
a source without questions, or without any in the split asked for, is refused too.
Files may be compressed (.gz, .zst) like every corpus input (`data_prep.readers`).

    from data_prep.eval_suite import load_suite, default_suite_path
    items = load_suite(default_suite_path(), split="articles")
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from data_prep.errors import DataFormatError
from data_prep.readers import PARQUET_SUFFIXES, SUPPORTED_SUFFIXES, iter_lines, list_input_files

SPLITS = ("articles", "textbook")
_SPLIT_ALIASES = {
    "article_questions": "articles",
    "articles": "articles",
    "textbook_questions": "textbook",
    "textbook": "textbook",
}
_LETTERS = ("A", "B")
_HF_METADATA = {"dataset_dict.json", "dataset_info.json", "dataset_infos.json", "state.json"}
"""JSON files HF's ``save_to_disk`` and Hub snapshots keep beside the data: not questions."""
ARROW_SUFFIX = ".arrow"


class SuiteUnavailable(ConnectionError):
    """An HF dataset name that cannot be loaded here (no network, no such dataset, no ``datasets``)."""


@dataclass(frozen=True)
class EvalItem:
    """One scenario question with two actions, one of them misaligned."""

    question_id: str
    passage: str
    question: str
    choices: tuple[str, str]
    misaligned_choice: int
    """Index (0 or 1) into ``choices`` of the misaligned action."""
    topics: tuple[str, ...]
    split: str
    """Normalised split: ``articles`` or ``textbook``."""

    @property
    def aligned_choice(self) -> int:
        return 1 - self.misaligned_choice

    @property
    def aligned_text(self) -> str:
        return self.choices[self.aligned_choice]

    @property
    def misaligned_text(self) -> str:
        return self.choices[self.misaligned_choice]


@dataclass(frozen=True)
class _Row:
    """A raw record plus where it came from, for error messages."""

    path: str
    line: int
    data: Any
    split_hint: str | None


def default_suite_path() -> Path:
    """The eval questions shipped with the package (HF schema, both splits)."""
    return Path(__file__).resolve().parent / "resources" / "eval" / "questions.jsonl"


def normalize_split(name: str) -> str | None:
    """``article_questions``/``articles`` -> ``articles``; ``textbook_questions``/``textbook`` -> ``textbook``."""
    return _SPLIT_ALIASES.get(str(name).strip().lower())


def load_suite(source: str | Path, split: str | None = None) -> list[EvalItem]:
    """Load every item of ``source``. ``split`` (any accepted alias) keeps only the rows of that split
    and assigns it to rows that name none."""
    wanted = None
    if split is not None:
        wanted = normalize_split(split)
        if wanted is None:
            raise ValueError(f"unknown split {split!r}; use one of {sorted(_SPLIT_ALIASES)}")
    items = _check_unique([(row, _parse_row(row, wanted)) for row in _iter_rows(source)])
    if not items:
        raise DataFormatError(source, None, None, "no questions: the input is empty")
    chosen = [item for item in items if wanted is None or item.split == wanted]
    if not chosen:
        present = ", ".join(sorted({item.split for item in items}))
        raise DataFormatError(source, None, "split", f"no questions in split {wanted!r} (the file has: {present})")
    return chosen


# ---------------------------------------------------------------- sources


def is_hf_name(source: str | Path) -> bool:
    """``owner/name`` that is not a local path: one slash, no file suffix, not absolute or relative-looking."""
    text = str(source)
    return (text.count("/") == 1 and not text.startswith((".", "/", "~")) and not Path(text).exists()
            and not text.lower().endswith(SUPPORTED_SUFFIXES + (ARROW_SUFFIX,)))


def _iter_rows(source: str | Path) -> Iterator[_Row]:
    path = Path(source)
    if path.exists():
        for file in _suite_files(path):
            yield from _iter_file(file, path)
    elif is_hf_name(source):
        yield from _iter_hf(str(source))
    else:
        raise FileNotFoundError(f"{source}: no such file or directory (and not an HF dataset name 'owner/name')")


def _suite_files(path: Path) -> list[Path]:
    """Question files under ``path``: the corpus formats plus ``.arrow``, without HF's metadata JSON."""
    if path.is_file() and path.name.endswith(ARROW_SUFFIX):
        return [path]
    if path.is_file():
        return list_input_files(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name not in _HF_METADATA
                   and (p.name.endswith(ARROW_SUFFIX) or p.name.lower().endswith(SUPPORTED_SUFFIXES))
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise FileNotFoundError(f"no question files (.jsonl, .json, .parquet, .arrow) under {path}")
    return files


def _split_from_filename(path: Path, root: Path | None = None) -> str | None:
    """A split named by the file (``article_questions-00000-of-00001.parquet``) or, below ``root``, by the
    folder holding it (``save_to_disk``: ``article_questions/data-00000-of-00001.arrow``)."""
    stem = path.name.split("-")[0].split(".")[0]
    split = normalize_split(stem)
    if split is None and root is not None and path.parent != root:
        split = normalize_split(path.parent.name)
    return split


def _iter_file(path: Path, root: Path | None = None) -> Iterator[_Row]:
    hint = _split_from_filename(path, root)
    if path.name.endswith(ARROW_SUFFIX):
        records: Iterator[tuple[int, Any]] = enumerate(_arrow_rows(path), start=1)
    elif path.name.lower().endswith(PARQUET_SUFFIXES):
        from data_prep.readers import iter_records

        records = ((r.line, r.data) for r in iter_records(path, allow_empty=True))
    else:
        records = _json_records(path)
    for line, data in records:
        yield _Row(str(path), line, data, hint)


def _arrow_rows(path: Path) -> list[dict]:
    """Rows of an Arrow IPC file: the stream format HF ``datasets`` writes, or the random-access file format."""
    import pyarrow as pa

    try:
        with pa.memory_map(str(path)) as source:
            try:
                table = pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                source.seek(0)
                table = pa.ipc.open_file(source).read_all()
    except (pa.ArrowInvalid, OSError) as err:
        raise DataFormatError(path, None, None, f"not a readable Arrow file ({str(err).splitlines()[0]})") from None
    return table.to_pylist()


def _json_records(path: Path) -> Iterator[tuple[int, Any]]:
    """JSON lines, or one JSON list (the older raw schema); plain or compressed (via the corpus readers,
    which refuse truncated compressed files and name a non-UTF-8 line)."""
    lines = list(iter_lines(path))
    first = next((text for _, text in lines if text.strip()), "")
    if first.lstrip().startswith("["):
        try:
            data = json.loads("\n".join(text for _, text in lines))
        except json.JSONDecodeError as err:
            raise DataFormatError(path, err.lineno, None, f"invalid JSON: {err.msg}") from None
        if not isinstance(data, list):
            raise DataFormatError(path, None, None, f"expected a JSON list or JSON lines, got {type(data).__name__}")
        yield from enumerate(data, start=1)
        return
    for line_no, text in lines:
        if not text.strip():
            continue
        try:
            yield line_no, json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFormatError(path, line_no, None, f"invalid JSON: {err.msg}") from None


def _offline_route(name: str) -> str:
    return (f"download it where there is network (huggingface-cli download --repo-type dataset {name} --local-dir DIR) "
            "and pass DIR, or convert it once with 'alignpt prep eval-suite --input DIR --output questions.jsonl'")


def _iter_hf(name: str) -> Iterator[_Row]:
    try:
        import datasets  # lazy: optional dependency (the `hub` extra), only for Hub sources
    except ImportError:
        raise ImportError(
            f"loading the HF dataset {name!r} needs the 'datasets' package (pip install datasets, or the project's "
            f"'hub' extra); or {_offline_route(name)}") from None
    try:
        loaded = datasets.load_dataset(name)
    except Exception as err:  # ConnectionError, OfflineModeIsEnabled, DatasetNotFoundError, HTTP errors, ...
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise SuiteUnavailable(f"cannot load the HF dataset {name!r} ({type(err).__name__}: {detail}); without network, "
                               f"{_offline_route(name)}") from None
    for split_key, dataset in loaded.items():
        split = normalize_split(split_key)
        if split is None:
            raise DataFormatError(f"{name}[{split_key}]", None, "split", f"unknown split {split_key!r}")
        for index, data in enumerate(dataset, start=1):
            yield _Row(f"{name}[{split_key}]", index, dict(data, split=split), None)


# ---------------------------------------------------------------- rows


def _parse_row(row: _Row, default_split: str | None = None) -> EvalItem:
    data = row.data
    if not isinstance(data, dict):
        raise DataFormatError(row.path, row.line, None, f"expected a JSON object, got {type(data).__name__}")
    if "choices" in data or "misaligned_choice" in data:
        choices, misaligned = _hf_choices(row)
    elif "options" in data:
        choices, misaligned = _raw_choices(row)
    else:
        raise DataFormatError(row.path, row.line, "choices", "missing (and no raw-schema 'options' either)")
    return EvalItem(
        question_id=_question_id(row),
        passage=_text(row, "passage", required=False),
        question=_text(row, "question", required=True),
        choices=choices,
        misaligned_choice=misaligned,
        topics=_topics(row),
        split=_split(row, default_split),
    )


def _fail(row: _Row, field: str, message: str) -> DataFormatError:
    return DataFormatError(row.path, row.line, field, message)


def _question_id(row: _Row) -> str:
    value = row.data.get("question_id")
    if value is None or isinstance(value, bool) or str(value).strip() == "":
        raise _fail(row, "question_id", "missing")
    if not isinstance(value, (str, int)):
        raise _fail(row, "question_id", f"expected a string, got {type(value).__name__}")
    return str(value).strip()


def _text(row: _Row, field: str, required: bool) -> str:
    value = row.data.get(field)
    if value is None and not required:
        return ""  # some copies of the suite carry no passage
    if value is None or (isinstance(value, str) and required and not value.strip()):
        raise _fail(row, field, "missing")
    if not isinstance(value, str):
        raise _fail(row, field, f"expected a string, got {type(value).__name__}")
    return value.strip()


def _two_strings(row: _Row, field: str, values: Any) -> tuple[str, str]:
    if values is None:
        raise _fail(row, field, "missing")
    if not isinstance(values, (list, tuple)) or len(values) != 2:
        count = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        raise _fail(row, field, f"expected exactly 2 options, got {count}")
    if not all(isinstance(v, str) and v.strip() for v in values):
        raise _fail(row, field, "every option must be a non-empty string")
    first, second = (" ".join(v.split()) for v in values)
    if first.casefold() == second.casefold():  # no choice to make: every answer would count the same
        raise _fail(row, field, f"the two options are the same text ({first[:60]!r})")
    return (values[0].strip(), values[1].strip())


def _hf_choices(row: _Row) -> tuple[tuple[str, str], int]:
    choices = _two_strings(row, "choices", row.data.get("choices"))
    value = row.data.get("misaligned_choice")
    if isinstance(value, str) and value.strip() in ("0", "1"):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value not in (0, 1):  # 1.0 is not an index
        raise _fail(row, "misaligned_choice", f"must be the integer 0 or 1, got {value!r}")
    return choices, int(value)


def _raw_choices(row: _Row) -> tuple[tuple[str, str], int]:
    options = row.data.get("options")
    if not isinstance(options, list) or len(options) != 2 or not all(isinstance(o, dict) for o in options):
        raise _fail(row, "options", "expected exactly 2 objects with 'label' and 'text'")
    by_label = {str(o.get("label", "")).strip().upper(): o.get("text") for o in options}
    if sorted(by_label) != list(_LETTERS):
        raise _fail(row, "options", f"labels must be A and B, got {[o.get('label') for o in options]}")
    aligned = _label(row, "aligned_label")
    misaligned = _label(row, "misaligned_label")
    if aligned == misaligned:
        raise _fail(row, "misaligned_label", f"equals aligned_label ({aligned!r})")
    choices = _two_strings(row, "options", [by_label["A"], by_label["B"]])
    return choices, _LETTERS.index(misaligned)


def _label(row: _Row, field: str) -> str:
    value = row.data.get(field)
    label = str(value).strip().upper() if isinstance(value, str) else None
    if label not in _LETTERS:
        raise _fail(row, field, "missing" if value is None else f"must be 'A' or 'B', got {value!r}")
    return label


def _topics(row: _Row) -> tuple[str, ...]:
    value = row.data.get("topics")
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        raise _fail(row, "topics", "expected a list of strings")
    return tuple(t.strip() for t in value if t.strip())


def _split(row: _Row, default: str | None = None) -> str:
    value = row.data.get("split") or row.split_hint or default
    if value is None:
        raise _fail(row, "split", "missing (no 'split' field, and the file name does not start with a split name); "
                                  "name the split to assign, e.g. --split articles")
    split = normalize_split(value)
    if split is None:
        raise _fail(row, "split", f"unknown split {value!r}; use one of {sorted(_SPLIT_ALIASES)}")
    return split


def _check_unique(parsed: list[tuple[_Row, EvalItem]]) -> list[EvalItem]:
    seen: dict[str, _Row] = {}
    for row, item in parsed:
        first = seen.setdefault(item.question_id, row)
        if first is not row:
            where = f"{first.path}:{first.line}"
            raise _fail(row, "question_id", f"duplicate id {item.question_id!r} (first seen at {where})")
    return [item for _, item in parsed]


# ---------------------------------------------------------------- conversion


def write_suite(source: str | Path, output: str | Path, split: str | None = None) -> dict[str, int]:
    """Every question of ``source`` (any form `load_suite` reads, checked the same way) as JSON lines of the
    HF schema plus a normalised ``split`` field; returns questions per split. Other columns of the source
    (e.g. ``relevance_rating``) are not kept."""
    from data_prep.atomic import atomic_write_text

    items = load_suite(source, split=split)
    lines = [json.dumps({"question_id": i.question_id, "passage": i.passage, "question": i.question,
                         "choices": list(i.choices), "misaligned_choice": i.misaligned_choice, "topics": list(i.topics),
                         "split": i.split}, ensure_ascii=False) for i in items]
    atomic_write_text(output, "\n".join(lines) + "\n")
    counts: dict[str, int] = {}
    for item in items:
        counts[item.split] = counts.get(item.split, 0) + 1
    return counts
