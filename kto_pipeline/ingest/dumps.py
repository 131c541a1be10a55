"""Feedback dumps on a local folder or any fsspec URL: listing, versions, and reading.

Reading never gives up on a whole file because of one bad record: each record comes back
either as a parsed object or as a `RawRecord` carrying the reason it could not be parsed.
A file that cannot be opened or decoded at all raises `DumpReadError` naming the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow.parquet as pq

from kto_pipeline.ingest.contract import RAW_PREVIEW_CHARS, Reason

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}

# No real export nests a record this deep (a LangSmith run is about ten levels). Deeper values
# are refused at read time so that every later step, which walks records recursively, runs
# within Python's recursion limit wherever it is called from (a deep caller stack, as under
# Dagster, would otherwise turn the same record into a crash in one place and a row in another).
MAX_JSON_DEPTH = 100

# The csv module refuses fields over 128 KiB and stops reading the file there, so one long text
# would take every later row of its dump with it; the length rule is max_text_chars, per record.
csv.field_size_limit(2**31 - 1)


class DumpReadError(RuntimeError):
    """A dump that cannot be read at all."""


@dataclass(frozen=True)
class DumpFile:
    path: str  # fully qualified URL or local path, as given to fsspec
    name: str  # path relative to the dump location: stable lineage across machines
    version: str  # changes when the content changes (ETag, or mtime and size)
    size: int
    fmt: str
    gzipped: bool
    mtime: float | None = None


@dataclass
class RawRecord:
    line: int  # 1-based record number in the file (0: about the file itself)
    value: Any = None  # the parsed record, when it parsed
    reason: str | None = None  # why it did not parse
    detail: str = ""
    raw: str = ""


def dump_format(path: str) -> tuple[str, bool] | None:
    lower = path.lower()
    gzipped = lower.endswith(".gz")
    if gzipped:
        lower = lower[:-3]
    for ext, fmt in FORMATS.items():
        if lower.endswith(ext):
            return fmt, gzipped
    return None


def _version(info: dict) -> str:
    for key in ("ETag", "etag", "md5", "checksum"):
        if info.get(key):
            return str(info[key]).strip('"')
    stamp = info.get("mtime") or info.get("LastModified") or info.get("created") or ""
    return f"{stamp}-{info.get('size')}"


def _mtime(info: dict) -> float | None:
    stamp = info.get("mtime") or info.get("LastModified") or info.get("created")
    if stamp is None:
        return None
    if hasattr(stamp, "timestamp"):
        return float(stamp.timestamp())
    try:
        return float(stamp)
    except (TypeError, ValueError):
        return None


def list_dumps(location: str, storage_options: dict | None = None) -> list[DumpFile]:
    """Every dump under `location`, sorted by name (the processing order everywhere)."""
    fs, root = fsspec.core.url_to_fs(location, **(storage_options or {}))
    if not fs.exists(root):
        raise DumpReadError(f"feedback dump location {location!r} does not exist")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    found = fs.find(root, detail=True)
    dumps = []
    root_stripped = root.rstrip("/")
    for path, info in found.items():
        if info.get("type") == "directory":
            continue
        name = path[len(root_stripped) :].lstrip("/") if path.startswith(root_stripped) else path
        if any(part.startswith(".") for part in name.split("/")):
            continue  # hidden files and partial uploads (.part, .tmp folders)
        fmt = dump_format(path)
        if fmt is None:
            continue
        full = path if protocol in ("file", "local") else fs.unstrip_protocol(path)
        dumps.append(DumpFile(full, name, _version(info), int(info.get("size") or 0), fmt[0], fmt[1], _mtime(info)))
    return sorted(dumps, key=lambda d: d.name)


def _preview(text: str) -> str:
    return text if len(text) <= RAW_PREVIEW_CHARS else text[:RAW_PREVIEW_CHARS] + "…"


def _has_surrogates(text: str) -> bool:
    """Strings decoded with surrogateescape carry lone surrogates where the bytes were not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _value_problem(value: Any) -> str | None:
    """BAD_UTF8 when a string in a parsed value has lone surrogates (bytes that were not UTF-8, or
    an escaped "\\udc80"), MALFORMED_JSON when it nests deeper than MAX_JSON_DEPTH, else None.

    Iterative, not recursive: a deeply nested record must not exhaust the stack (RecursionError
    escaped the reader and failed the whole week).
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _has_surrogates(item):
                return Reason.BAD_UTF8
        elif isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                return Reason.MALFORMED_JSON
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
                item = item.values()
            stack.extend((v, depth + 1) for v in item)
    return None


def _problem_record(n: int, value: Any, raw: str, problem: str | None) -> RawRecord | None:
    """The quarantine entry of a parsed value that cannot be a record as it is, or None."""
    if problem == Reason.BAD_UTF8:
        return RawRecord(n, reason=Reason.BAD_UTF8, detail="invalid UTF-8 bytes", raw=safe_preview(raw))
    if problem == Reason.MALFORMED_JSON:
        return RawRecord(
            n,
            reason=Reason.MALFORMED_JSON,
            detail=f"nested more than {MAX_JSON_DEPTH} levels deep",
            raw=safe_preview(raw),
        )
    if not isinstance(value, dict):
        return RawRecord(
            n,
            reason=Reason.MALFORMED_JSON,
            detail=f"record is a JSON {type(value).__name__}, not an object",
            raw=safe_preview(raw),
        )
    return None


def safe_preview(text: str) -> str:
    return _preview(text.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(text) else text)


def _read_bytes(dump: DumpFile, storage_options: dict | None) -> tuple[bytes, bool]:
    """The file's bytes, decompressed; the flag says the compressed stream was cut short."""
    try:
        with fsspec.open(dump.path, "rb", **(storage_options or {})) as fh:
            data = fh.read()
    except (OSError, ValueError) as exc:
        raise DumpReadError(f"cannot read feedback dump {dump.path}: {exc}") from exc
    if not dump.gzipped:
        return data, False
    # Decompress incrementally so a gzip cut in half still yields everything before the cut.
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = io.BytesIO()
    try:
        while data:
            out.write(decomp.decompress(data))
            if decomp.eof:
                data = decomp.unused_data  # concatenated gzip members
                decomp = zlib.decompressobj(16 + zlib.MAX_WBITS) if data else decomp
            else:
                data = b""
    except zlib.error as exc:
        if out.tell() == 0:
            raise DumpReadError(f"cannot decompress feedback dump {dump.path}: {exc}") from exc
        return out.getvalue(), True
    return out.getvalue(), not decomp.eof


def read_dump(dump: DumpFile, storage_options: dict | None = None) -> Iterator[RawRecord]:
    """Parsed records of one dump, bad ones flagged with their reason."""
    if dump.fmt == "parquet":
        yield from _read_parquet(dump, storage_options)
        return
    data, truncated = _read_bytes(dump, storage_options)
    text = data.decode("utf-8", "surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    if dump.fmt == "jsonl":
        yield from _read_jsonl(text, truncated)
    elif dump.fmt == "json":
        yield from _read_json(text, truncated)
    else:
        yield from _read_csv(text, truncated)


def _read_jsonl(text: str, truncated: bool) -> Iterator[RawRecord]:
    lines = text.split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    # The last record of a stream cut short (or of a file without its final newline) that fails
    # to parse was cut mid-record, not written malformed.
    cut_tail = truncated or not text.endswith("\n")
    n = 0
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        n += 1
        yield _parse_json_record(n, line, cut=cut_tail and i == last)


# What json raises on text it cannot turn into a value: JSONDecodeError (a ValueError), a plain
# ValueError for an integer literal over 4300 digits, RecursionError for deep nesting. The
# last two used to escape the reader and fail the whole week over one line.
_UNDECODABLE = (ValueError, RecursionError)


def _parse_json_record(n: int, chunk: str, cut: bool = False) -> RawRecord:
    try:
        value = json.loads(chunk)
    except _UNDECODABLE as exc:
        reason = Reason.TRUNCATED_FILE if cut else Reason.MALFORMED_JSON
        return RawRecord(n, reason=reason, detail=str(exc), raw=safe_preview(chunk))
    return _problem_record(n, value, chunk, _value_problem(value)) or RawRecord(n, value=value)


_WRAPPER_KEYS = ("data", "records", "items", "feedback", "traces", "runs", "rows")
_WRAPPED_ARRAY = re.compile(r'^\s*\{.*?"(' + "|".join(_WRAPPER_KEYS) + r')"\s*:\s*\[', re.S)


def _read_json(text: str, truncated: bool) -> Iterator[RawRecord]:
    """A JSON array of records, or an object holding one under a common key (exports wrap them).

    Elements are decoded one by one, so a file cut short still yields every whole record before
    the cut, and the rest becomes one quarantine entry.
    """
    stripped = text.lstrip()
    if not stripped:
        return
    if stripped[0] == "{":
        try:
            whole = json.loads(text)
        except _UNDECODABLE as exc:
            wrapped = _WRAPPED_ARRAY.match(text)
            if wrapped:  # a wrapped array cut short: read it element by element
                yield from _read_json_array(text, wrapped.end(), cut=truncated or not text.rstrip().endswith("}"))
                return
            reason = Reason.TRUNCATED_FILE if truncated or not text.rstrip().endswith("}") else Reason.MALFORMED_JSON
            yield RawRecord(1, reason=reason, detail=str(exc), raw=safe_preview(text))
            return
        for key in _WRAPPER_KEYS:
            if isinstance(whole.get(key), list):
                for n, value in enumerate(whole[key], start=1):
                    yield _checked(n, value)
                return
        yield _checked(1, whole)  # a single record
        return
    if stripped[0] != "[":
        yield RawRecord(
            1, reason=Reason.MALFORMED_JSON, detail="JSON dump must be an array or an object", raw=safe_preview(text)
        )
        return
    yield from _read_json_array(text, len(text) - len(stripped) + 1, cut=truncated or not text.rstrip().endswith("]"))


def _read_json_array(text: str, pos: int, cut: bool) -> Iterator[RawRecord]:
    """Elements of the array whose first element starts at `pos`. `cut`: the text does not end
    where a complete document would, so a failure at the tail is truncation, not bad JSON."""
    decoder = json.JSONDecoder()
    n = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            if cut:
                yield RawRecord(n + 1, reason=Reason.TRUNCATED_FILE, detail="JSON array is not closed", raw="")
            return
        if text[pos] == "]":
            return
        n += 1
        try:
            value, end = decoder.raw_decode(text, pos)
        except _UNDECODABLE as exc:
            rest = text[pos:]
            reason = Reason.TRUNCATED_FILE if cut else Reason.MALFORMED_JSON
            yield RawRecord(
                n, reason=reason, detail=f"{exc}; the rest of the array is unreadable", raw=safe_preview(rest)
            )
            return
        yield _checked(n, value, text[pos:end])
        pos = end


def _checked(n: int, value: Any, raw: str | None = None) -> RawRecord:
    problem = _value_problem(value)
    if problem is None and isinstance(value, dict):
        return RawRecord(n, value=value)
    if raw is None:  # an element of a document parsed whole
        try:
            raw = json.dumps(value, default=str, ensure_ascii=problem == Reason.BAD_UTF8)
        except RecursionError:  # as deep as json.loads could go: too deep to write back
            raw = ""
    return _problem_record(n, value, raw, problem)


def _read_csv(text: str, truncated: bool) -> Iterator[RawRecord]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[list[str]] = []
    error: str | None = None
    try:
        for row in reader:
            rows.append(row)
    except csv.Error as exc:
        error = str(exc)  # everything before the bad row is still read
    if not rows:
        if error:
            yield RawRecord(0, reason=Reason.MALFORMED_CSV, detail=f"header: {error}")
        return
    header = [h.strip() for h in rows[0]]
    body = [row for row in rows[1:] if any(cell.strip() for cell in row)]
    cut_tail = truncated or not text.endswith(("\n", "\r"))
    bad_header = any(_has_surrogates(h) for h in header)  # no row can be mapped to its fields
    for n, row in enumerate(body, start=1):
        raw = ",".join(row)
        if bad_header:
            yield RawRecord(
                n, reason=Reason.BAD_UTF8, detail="the CSV header has invalid UTF-8 bytes", raw=safe_preview(raw)
            )
        elif len(row) != len(header):
            reason = Reason.TRUNCATED_FILE if cut_tail and n == len(body) and not error else Reason.MALFORMED_CSV
            yield RawRecord(
                n, reason=reason, detail=f"{len(row)} fields, header has {len(header)}", raw=safe_preview(raw)
            )
        elif any(_has_surrogates(cell) for cell in row):
            yield RawRecord(n, reason=Reason.BAD_UTF8, detail="invalid UTF-8 bytes", raw=safe_preview(raw))
        else:
            yield RawRecord(n, value={k: (v if v != "" else None) for k, v in zip(header, row)})
    if error:
        reason = Reason.TRUNCATED_FILE if truncated else Reason.MALFORMED_CSV
        yield RawRecord(len(body) + 1, reason=reason, detail=f"{error}; the rest of the file is unreadable")


def _read_parquet(dump: DumpFile, storage_options: dict | None) -> Iterator[RawRecord]:
    try:
        with fsspec.open(dump.path, "rb", **(storage_options or {})) as fh:
            raw = fh.read()
        if dump.gzipped:
            raw = gzip.decompress(raw)
        table = pq.read_table(io.BytesIO(raw))
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DumpReadError(f"cannot read Parquet feedback dump {dump.path}: {exc}") from exc
    for n, value in enumerate(table.to_pylist(), start=1):
        yield RawRecord(n, value=value)
