"""Read documents from JSON Lines (plain, .gz, .zst) and Parquet files, or directories of them.

Every problem is reported as a :class:`DataFormatError` naming the file, the 1-based line (Parquet: row
index + 1) and the field, so a bad record deep inside a large shard can be found and fixed directly.
"""
from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

from data_prep.errors import DataFormatError

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst")
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED_SUFFIXES = JSONL_SUFFIXES + PARQUET_SUFFIXES

try:
    from zstandard import ZstdError as _ZSTD_ERROR
except ImportError:  # zstandard is optional for users without .zst inputs
    _ZSTD_ERROR = OSError


@dataclass
class Document:
    """One text document; ``meta`` holds every input field except the text and id fields."""

    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    line: int = 0


class Record(NamedTuple):
    """A raw input object with its location (``line`` is 1-based)."""

    source: str
    line: int
    data: dict[str, Any]


def _is_supported(path: Path) -> bool:
    return path.name.lower().endswith(SUPPORTED_SUFFIXES)


def list_input_files(path: str | Path) -> list[Path]:
    """The supported data files under ``path`` (itself if a file), sorted; hidden files are skipped."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_file():
        if not _is_supported(path):
            raise DataFormatError(path, None, None, f"unsupported file type; expected one of {', '.join(SUPPORTED_SUFFIXES)}")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and _is_supported(p) and not _hidden(p, path))
    if not files:
        raise FileNotFoundError(f"no input files ({', '.join(SUPPORTED_SUFFIXES)}) under {path}")
    return files


def _hidden(path: Path, root: Path) -> bool:
    # Skips e.g. ``.name.tmp-123`` files left by an interrupted atomic write.
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _open_text(path: Path) -> io.TextIOBase:
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    if name.endswith(".zst"):
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
        return io.TextIOWrapper(raw, encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def _parse_line(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataFormatError(path, number, None, f"malformed JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(value, dict):
        raise DataFormatError(path, number, None, f"expected a JSON object, got {type(value).__name__}")
    return value


def _iter_jsonl(path: Path) -> Iterator[Record]:
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():  # blank lines (e.g. a trailing newline) carry no record
                    yield Record(str(path), number, _parse_line(path, number, line))
    except UnicodeDecodeError as err:
        raise DataFormatError(path, None, None, f"not UTF-8 text ({err.reason})") from None
    except FileNotFoundError:
        raise
    except (OSError, EOFError, _ZSTD_ERROR) as err:  # truncated or corrupt .gz / .zst
        raise DataFormatError(path, None, None, f"cannot read compressed data ({err})") from None


def _iter_parquet(path: Path, batch_size: int = 4096) -> Iterator[Record]:
    import pyarrow.parquet as pq  # heavy import, only needed for Parquet inputs

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises its own ArrowInvalid for non-Parquet bytes
        raise DataFormatError(path, None, None, f"not a readable Parquet file ({err})") from None
    row = 0
    for batch in parquet.iter_batches(batch_size=batch_size):
        for data in batch.to_pylist():
            row += 1
            yield Record(str(path), row, data)


def iter_records(path: str | Path) -> Iterator[Record]:
    """Yield every object in a file or directory as ``Record(source, line, data)``."""
    for file in list_input_files(path):
        if file.name.lower().endswith(PARQUET_SUFFIXES):
            yield from _iter_parquet(file)
        else:
            yield from _iter_jsonl(file)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All objects of a (possibly compressed) JSON Lines file or directory, in order."""
    return [record.data for record in iter_records(path)]


def to_document(record: Record, text_field: str = "text", id_field: str = "id") -> Document:
    """Validate one record's text field and build its :class:`Document`."""
    data = record.data
    if text_field not in data or data[text_field] is None:
        raise DataFormatError(record.source, record.line, text_field, "missing")
    text = data[text_field]
    if not isinstance(text, str):
        raise DataFormatError(record.source, record.line, text_field, f"expected a string, got {type(text).__name__}")
    if not text.strip():
        raise DataFormatError(record.source, record.line, text_field, "empty text")
    raw_id = data.get(id_field)
    doc_id = str(raw_id) if raw_id not in (None, "") else f"{data_file_stem(record.source)}:{record.line}"
    meta = {k: v for k, v in data.items() if k not in (text_field, id_field)}
    return Document(id=doc_id, text=text, meta=meta, source=record.source, line=record.line)


def data_file_stem(source: str | Path) -> str:
    """File name without its data suffixes: ``shard_01.jsonl.gz`` -> ``shard_01``."""
    name = Path(source).name
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(source).stem


def iter_documents(path: str | Path, text_field: str = "text", id_field: str = "id") -> Iterator[Document]:
    """Yield validated documents; a missing id becomes ``"<filestem>:<line>"``."""
    for record in iter_records(path):
        yield to_document(record, text_field, id_field)


def unique_input_files(inputs: Iterable[str | Path] | str | Path) -> list[Path]:
    """Expand files/directories and refuse two inputs that would write the same output name."""
    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    files = [f for p in paths for f in list_input_files(p)]
    seen: dict[str, Path] = {}
    for file in files:
        stem = data_file_stem(file)
        if stem in seen:
            raise ValueError(f"inputs {seen[stem]} and {file} would both write {stem}.jsonl; rename one of them")
        seen[stem] = file
    return files
