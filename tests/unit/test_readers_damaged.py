"""Readers over damaged files: a truncated or corrupted .jsonl, .jsonl.gz, .jsonl.zst or .parquet file
gives the complete data or one DataFormatError naming the file, never a silent partial read."""
import gzip
import io
import json

import pytest
import zstandard
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from data_prep.errors import DataFormatError
from data_prep.readers import iter_lines, read_jsonl

ROWS = [{"id": str(i), "text": f"document {i} " + "word " * (i % 7)} for i in range(60)]
JSONL = "".join(json.dumps(r) + "\n" for r in ROWS).encode()


def _parquet(rows, **kwargs) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer, row_group_size=20, **kwargs)
    return buffer.getvalue()


# As the usual tools write them: gzip and the zstd CLI check every stream's length and checksum;
# pyarrow's page checksums are optional (the footer's schema is checked either way).
FILES = {
    "jsonl": JSONL,
    "jsonl.gz": gzip.compress(JSONL, mtime=0),
    "jsonl.zst": zstandard.ZstdCompressor(write_checksum=True).compress(JSONL),
    "parquet": _parquet(ROWS, write_page_checksum=True),
}
COMPRESSED = ("jsonl.gz", "jsonl.zst", "parquet")
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def read(tmp_path, suffix: str, data: bytes):
    """The rows read, or "error" for a DataFormatError that names the file (anything else fails the test)."""
    path = tmp_path / f"damaged.{suffix}"
    path.write_bytes(data)
    try:
        return read_jsonl(path)
    except DataFormatError as err:
        assert err.path == str(path) and "\n" not in str(err)
        return "error"


@pytest.mark.parametrize("suffix", list(FILES))
def test_undamaged_files_read_completely(tmp_path, suffix):
    assert read(tmp_path, suffix, FILES[suffix]) == ROWS


@pytest.mark.parametrize("suffix", COMPRESSED)
@EXAMPLES
@given(fraction=st.floats(0, 1, exclude_max=True))
@example(fraction=0.0)
@example(fraction=0.999)
def test_truncated_compressed_files_are_an_error(tmp_path, suffix, fraction):
    data = FILES[suffix]
    assert read(tmp_path, suffix, data[: int(fraction * len(data))]) == "error"


@EXAMPLES
@given(cut=st.integers(0, len(JSONL) - 1))
def test_truncated_jsonl_is_an_error_unless_cut_between_records(tmp_path, cut):
    """Plain JSON lines carry no length: a cut at a line end reads as the shorter file it is, but a
    record cut anywhere inside is an error, never a shorter record."""
    result = read(tmp_path, "jsonl", JSONL[:cut])
    at_line_end = cut == 0 or JSONL[cut - 1:cut] == b"\n" or JSONL[cut:cut + 1] == b"\n"
    assert result == "error" or (at_line_end and result == ROWS[: len(result)])


@pytest.mark.parametrize("suffix", COMPRESSED)
@EXAMPLES
@given(fraction=st.floats(0, 1, exclude_max=True), flip=st.integers(1, 255))
def test_corrupted_compressed_files_read_completely_or_fail(tmp_path, suffix, fraction, flip):
    data = bytearray(FILES[suffix])
    data[int(fraction * len(data))] ^= flip
    assert read(tmp_path, suffix, bytes(data)) in (ROWS, "error")


@EXAMPLES
@given(position=st.integers(0, len(JSONL) - 1), flip=st.integers(1, 255))
def test_corrupted_jsonl_never_loses_records(tmp_path, position, flip):
    """Plain text has no checksum, so a changed character may go unnoticed; a lost record may not."""
    data = bytearray(JSONL)
    data[position] ^= flip
    result = read(tmp_path, "jsonl", bytes(data))
    assert result == "error" or len(result) == len(ROWS)


def _frames(data: bytes, parts: int) -> tuple[bytes, list[int]]:
    """``data`` as ``parts`` zstd frames without checksums (zstandard's default), and the frame ends."""
    compressor = zstandard.ZstdCompressor()
    step = len(data) // parts + 1
    frames = [compressor.compress(data[i:i + step]) for i in range(0, len(data), step)]
    ends = [sum(len(f) for f in frames[: i + 1]) for i in range(len(frames))]
    return b"".join(frames), ends


@pytest.mark.parametrize("where", ["inside the third frame", "early in the only frame", "inside the first frame"])
def test_cut_zstd_is_reported_as_truncated_not_as_short_or_malformed(tmp_path, where):
    """Before: cut in its third frame, a 2,000-document file read as complete; cut early in a single
    frame, as empty; cut elsewhere, as "malformed JSON"."""
    data = "".join(json.dumps({"id": str(i), "text": f"text number {i}"}) + "\n" for i in range(2000)).encode()
    if where == "early in the only frame":
        blob = _frames(data, 1)[0][:100]
    else:
        blob, ends = _frames(data, 3)
        blob = blob[: ends[1] + 50] if where == "inside the third frame" else blob[: ends[0] // 2]
    path = tmp_path / "corpus.jsonl.zst"
    path.write_bytes(blob)
    with pytest.raises(DataFormatError, match="truncated zstd data") as err:
        read_jsonl(path)
    assert err.value.path == str(path)


def test_gzip_with_corrupt_deflate_data_is_one_error(tmp_path):
    data = bytearray(FILES["jsonl.gz"])
    data[len(data) // 2] ^= 0xFF  # zlib.error before, a traceback through the CLI
    path = tmp_path / "corpus.jsonl.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match="corrupt or truncated compressed data"):
        read_jsonl(path)


def test_parquet_footer_renaming_a_column_is_an_error(tmp_path):
    data = FILES["parquet"]
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    at = data.index(b"text", footer)  # the schema's column name (the Arrow copy is base64-encoded)
    damaged = data[:at] + b"texu" + data[at + 4:]
    path = tmp_path / "corpus.parquet"
    path.write_bytes(damaged)
    with pytest.raises(DataFormatError, match="corrupt Parquet footer"):
        read_jsonl(path)


def test_non_utf8_names_the_line(tmp_path):
    path = tmp_path / "corpus.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "fine"}\n{"text": "caf\xe9"}\n'))
    with pytest.raises(DataFormatError) as err:
        read_jsonl(path)
    assert (err.value.path, err.value.line) == (str(path), 2) and "not UTF-8" in str(err.value)


def test_empty_inputs_are_refused_unless_allowed(tmp_path):
    for name, data in (("empty.jsonl", b""), ("blank.jsonl", b"\n\n"), ("empty.jsonl.gz", gzip.compress(b""))):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DataFormatError, match="no records"):
            read_jsonl(path)
        assert read_jsonl(path, allow_empty=True) == []
    (tmp_path / "cut.jsonl.zst").write_bytes(b"")
    with pytest.raises(DataFormatError, match="truncated zstd"):
        read_jsonl(tmp_path / "cut.jsonl.zst", allow_empty=True)


def test_iter_lines_keeps_line_numbers_across_chunks(tmp_path, monkeypatch):
    import data_prep.readers as readers

    monkeypatch.setattr(readers, "_CHUNK_BYTES", 7)  # lines straddle many chunks
    path = tmp_path / "x.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(JSONL))
    lines = list(iter_lines(path))
    assert [n for n, _ in lines] == list(range(1, len(ROWS) + 1))
    assert [json.loads(t) for _, t in lines] == ROWS
