"""Read documents from JSON Lines (plain, .gz, .zst) and Parquet files, or directories of them.

Every problem is reported as a :class:`DataFormatError` naming the file, the 1-based line (Parquet: row
index + 1) and the field, so a bad record deep inside a large shard can be found and fixed directly.
"""
from __future__ import annotations

import gzip
import io
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, NamedTuple

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


_CHUNK_BYTES = 1 << 20


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
        yield chunk


def _zstd_chunks(handle: IO[bytes], path: Path) -> Iterator[bytes]:
    """Decompressed bytes of every frame of a .zst file.

    zstandard's stream reader ends quietly where the file ends, even inside a frame, so a cut file
    read as a shorter one (``zstd -t`` calls it "premature end"). Frames are decoded one by one
    here, and input that ends before its frame does is an error. Frame checksums, when written
    (the zstd CLI's default), are verified by the decompressor.
    """
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    data = handle.read(_CHUNK_BYTES)
    if not data:
        raise DataFormatError(path, None, None, "truncated zstd data (the file is empty)")
    frame = dctx.decompressobj()
    while True:
        out = frame.decompress(data)
        if out:
            yield out
        if frame.eof:  # a frame ended; more input means another frame
            data = frame.unused_data or handle.read(_CHUNK_BYTES)
            if not data:
                return
            frame = dctx.decompressobj()
            continue
        data = handle.read(_CHUNK_BYTES)
        if not data:
            raise DataFormatError(path, None, None, "truncated zstd data (the file ends inside a frame; "
                                  "`zstd -t` says 'premature end')")


def _gzip_chunks(handle: io.BufferedReader, path: Path) -> Iterator[bytes]:
    """Decompressed bytes of every member; gzip checks each member's CRC and length at its end and
    raises EOFError for a cut member."""
    if not handle.peek(1):
        raise DataFormatError(path, None, None, "truncated gzip data (the file is empty)")
    with gzip.GzipFile(fileobj=handle, mode="rb") as unzipped:
        yield from _chunks(unzipped)


def _byte_chunks(path: Path, handle: IO[bytes]) -> Iterator[bytes]:
    name = path.name.lower()
    if name.endswith(".gz"):
        return _gzip_chunks(handle, path)
    if name.endswith(".zst"):
        return _zstd_chunks(handle, path)
    return _chunks(handle)


def _split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Lines (without their ``\\n``) of a byte stream given in chunks; a last line without one is kept."""
    rest = b""
    for chunk in chunks:
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _decode_line(path: Path, number: int, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:  # decoded per line, so the error can name it
        raise DataFormatError(path, number, None, f"not UTF-8 text ({err.reason} at byte {err.start + 1} of the line)") from None
    return text[1:] if number == 1 and text.startswith("\ufeff") else text  # a byte-order mark is not data


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(1-based line number, text)`` of every line of a plain, .gz or .zst text file.

    A truncated or corrupt compressed file raises DataFormatError (never a silent early end),
    and so does a line that is not UTF-8, naming the line.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(_split_lines(_byte_chunks(path, handle)), start=1):
                yield number, _decode_line(path, number, raw)
    except DataFormatError:
        raise
    except (IsADirectoryError, FileNotFoundError, PermissionError):
        raise
    except (OSError, EOFError, zlib.error, _ZSTD_ERROR) as err:  # a truncated or corrupt .gz / .zst
        raise DataFormatError(path, None, None, f"corrupt or truncated compressed data ({_reason(err)})") from None


def _reason(err: BaseException) -> str:
    """A library's error message on one line (pyarrow's span several)."""
    return " ".join(str(err).split())


def _parse_line(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataFormatError(path, number, None, f"malformed JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(value, dict):
        raise DataFormatError(path, number, None, f"expected a JSON object, got {type(value).__name__}")
    return value


def _iter_jsonl(path: Path) -> Iterator[Record]:
    # Streamed: a corrupt tail raises when it is reached, and the caller's atomic writer then
    # discards what it wrote so far.
    for number, line in iter_lines(path):
        if line.strip():  # blank lines (e.g. a trailing newline) carry no record
            yield Record(str(path), number, _parse_line(path, number, line))


def _iter_parquet(path: Path, batch_size: int = 4096) -> Iterator[Record]:
    """Rows of a Parquet file; page checksums (when written) are verified, and the rows read must add
    up to the count the footer records, so a damaged file is an error rather than fewer rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq  # heavy import, only needed for Parquet inputs

    errors = (pa.ArrowException, OSError, ValueError, EOFError, IndexError)
    try:
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
        expected = parquet.metadata.num_rows
        schema_problem = _schema_disagreement(parquet)
    except errors as err:  # pyarrow raises its own ArrowInvalid for non-Parquet bytes
        raise DataFormatError(path, None, None, f"not a readable Parquet file ({_reason(err)})") from None
    if schema_problem:
        raise DataFormatError(path, None, None, f"corrupt Parquet footer: {schema_problem}")
    row = 0
    batches = parquet.iter_batches(batch_size=batch_size)
    while True:
        try:
            batch = next(batches, None)
            rows = batch.to_pylist() if batch is not None else None
        except errors as err:
            raise DataFormatError(path, row + 1, None, f"corrupt Parquet data ({_reason(err)})") from None
        if rows is None:
            break
        for data in rows:
            row += 1
            yield Record(str(path), row, data)
    if row != expected:
        raise DataFormatError(path, None, None, f"corrupt Parquet file: read {row} rows, its footer records {expected}")


def _schema_disagreement(parquet) -> str | None:
    """Files written by pyarrow keep the schema twice in the footer, which has no checksum: as Parquet
    columns and as the Arrow schema. A damaged footer can rename a column or turn strings into bytes;
    the two copies then disagree."""
    import base64

    import pyarrow as pa

    stored = (parquet.metadata.metadata or {}).get(b"ARROW:schema")
    if stored is None:
        return None
    arrow = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(stored)))
    actual = parquet.schema_arrow
    if actual.names != arrow.names:
        return f"columns {actual.names} disagree with the recorded schema's {arrow.names}"
    for field, recorded in zip(actual, arrow):
        flat = not pa.types.is_nested(recorded.type)
        if flat and not field.type.equals(recorded.type):
            return f"column {field.name!r} reads as {field.type}, recorded as {recorded.type}"
    return None


def iter_records(path: str | Path, allow_empty: bool = False) -> Iterator[Record]:
    """Yield every object in a file or directory as ``Record(source, line, data)``.

    A ``path`` without any record is refused (DataFormatError) unless ``allow_empty``: an empty
    input almost always means a wrong path or a failed download, and would give empty results
    that look finished.
    """
    count = 0
    for file in list_input_files(path):
        reader = _iter_parquet if file.name.lower().endswith(PARQUET_SUFFIXES) else _iter_jsonl
        for record in reader(file):
            count += 1
            yield record
    if not count and not allow_empty:
        raise DataFormatError(path, None, None, "no records: the input is empty")


def read_jsonl(path: str | Path, allow_empty: bool = False) -> list[dict[str, Any]]:
    """All objects of a (possibly compressed) JSON Lines or Parquet file or directory, in order."""
    return [record.data for record in iter_records(path, allow_empty=allow_empty)]


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


def iter_documents(path: str | Path, text_field: str = "text", id_field: str = "id",
                   allow_empty: bool = False) -> Iterator[Document]:
    """Yield validated documents; a missing id becomes ``"<filestem>:<line>"``."""
    for record in iter_records(path, allow_empty=allow_empty):
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
