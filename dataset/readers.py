"""Readers for labelled text files: TSV and CSV with a header row, and JSON lines; each may be gzipped.

Every reader returns the texts, the labels as strings (integers are kept as their decimal text) and the
1-based line number of each row, so that later checks can name the row that is wrong.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import zlib
from dataclasses import dataclass, field

from core.errors import UserError

FORMATS = ("tsv", "csv", "jsonl")
# The csv module refuses fields over 131,072 characters by default; a long review is still a review.
csv.field_size_limit(2**31 - 1)


@dataclass
class Rows:
    """Rows of one file. `labels` is None when the file was read without a label column."""
    path: str
    texts: list[str] = field(default_factory=list)
    labels: list[str] | None = None
    lines: list[int] = field(default_factory=list)
    empty: int = 0  # rows skipped because their text was empty
    texts_b: list[str] | None = None  # second segments of sentence pairs


def detect_format(path: str, fmt: str | None = None) -> str:
    if fmt:
        return fmt
    name = path[:-3] if path.endswith(".gz") else path
    ext = os.path.splitext(name)[1].lower().lstrip(".")
    ext = {"json": "jsonl", "ndjson": "jsonl", "txt": "tsv"}.get(ext, ext)
    if ext not in FORMATS:
        raise UserError(f"{path}: cannot tell the format from the extension '.{ext}'; "
                        f"set data.format to one of: {', '.join(FORMATS)}")
    return ext


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise UserError(f"{path}: file not found")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, expected a file")


def open_binary(path: str):
    """The file's bytes, decompressed when its name ends in .gz."""
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _read_bytes(path: str) -> bytes:
    _check_file(path)
    try:
        with open_binary(path) as raw:
            return raw.read()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: cannot read: {e}") from None


def _open_text(path: str, tolerant: bool = False):
    """The file as text. Strict: invalid UTF-8 is an error naming the line. Tolerant: bytes that are not
    UTF-8 become surrogates (see _has_bad_bytes), so that the rows around them can still be read."""
    data = _read_bytes(path)
    if tolerant:
        text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
        return io.StringIO(text, newline="")
    try:
        return io.StringIO(data.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: not valid UTF-8 text (byte {e.start})") from None


def _has_bad_bytes(text: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in text)


def _label_text(value, path: str, line: int, column: str) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list, float)):
        raise UserError(f"{path}: line {line}: label column '{column}' holds {value!r}, "
                        "expected a string or an integer")
    return str(value).strip()


def _rows_from_records(path, records, text_column, label_column, header, text_b_column=None):
    rows = Rows(path, labels=[] if label_column else None, texts_b=[] if text_b_column else None)
    for line, record in records:
        text = record.get(text_column)
        if text is None:
            raise UserError(f"{path}: line {line}: no text column '{text_column}'"
                            + (f"; columns: {', '.join(header)}" if header else ""))
        if not isinstance(text, str):
            raise UserError(f"{path}: line {line}: text column '{text_column}' holds {text!r}, "
                            "expected a string")
        if label_column:
            if label_column not in record:
                raise UserError(f"{path}: line {line}: no label column '{label_column}'"
                                + (f"; columns: {', '.join(header)}" if header else ""))
            label = _label_text(record[label_column], path, line, label_column)
            if not label:
                raise UserError(f"{path}: line {line}: empty label in column '{label_column}'")
        if text_b_column:
            text_b = record.get(text_b_column)
            if not isinstance(text_b, str):
                raise UserError(f"{path}: line {line}: second text column '{text_b_column}' "
                                + ("is missing" if text_b is None else f"holds {text_b!r}, expected a string"))
        if not text.strip():
            rows.empty += 1
            continue
        if text_b_column:
            rows.texts_b.append(text_b)
        rows.texts.append(text)
        rows.lines.append(line)
        if label_column:
            rows.labels.append(label)
    return rows


def _delimited_records(path, stream, delimiter):
    """(header, records); records yields (line, record or None, error or None): a row with the wrong number
    of fields is an error item, so that a tolerant reader can go on after it."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(stream, delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader)
    except StopIteration:
        raise UserError(f"{path}: file is empty (expected a header row)") from None
    header = [h.strip() for h in header]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise UserError(f"{path}: line 1: the header names column '{repeated[0]}' more than once "
                        f"({', '.join(header)})")

    def records():
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                yield reader.line_num, None, (f"{len(row)} fields, but the header has {len(header)} "
                                              f"({', '.join(header)})")
                continue
            yield reader.line_num, dict(zip(header, row)), None

    return header, records()


def _jsonl_records(path, stream):
    """Yields (line, record or None, error or None) for every non-blank line."""
    for line_no, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            yield line_no, None, f"not valid JSON: {e.msg}"
            continue
        except RecursionError:
            yield line_no, None, "JSON nested too deeply"
            continue
        if not isinstance(record, dict):
            yield line_no, None, "expected a JSON object"
            continue
        yield line_no, record, None


def _records(path: str, fmt: str, stream, columns):
    """(header or None, records) of one file in any format; every named column must be in the header."""
    if fmt == "jsonl":
        return None, _jsonl_records(path, stream)
    header, records = _delimited_records(path, stream, "\t" if fmt == "tsv" else ",")
    for column in columns:
        if column and column not in header:
            raise UserError(f"{path}: no column '{column}'; columns: {', '.join(header)}")
    return header, records


def _strict(path, records):
    for line, record, error in records:
        if error:
            raise UserError(f"{path}: line {line}: {error}")
        yield line, record


def read_rows(path: str, fmt: str | None, text_column: str, label_column: str | None,
              text_b_column: str | None = None) -> Rows:
    """Read one file; `label_column=None` reads texts only (unlabeled data); `text_b_column` also reads
    the second text of sentence pairs."""
    _check_file(path)
    fmt = detect_format(path, fmt)
    stream = _open_text(path)
    try:
        header, records = _records(path, fmt, stream, (text_column, label_column, text_b_column))
        rows = _rows_from_records(path, _strict(path, records), text_column, label_column, header, text_b_column)
    except csv.Error as e:
        raise UserError(f"{path}: malformed {fmt.upper()}: {e}") from None
    if not rows.texts:
        raise UserError(f"{path}: no rows with text in column '{text_column}'")
    return rows


def iter_rows_tolerant(path: str, fmt: str | None, text_column: str, text_b_column: str | None = None):
    """For prediction: yields (line, text, text_b, error) for every row, where a row that cannot be read
    (bad UTF-8, bad JSON, wrong field count, missing column) or whose text is empty or only whitespace has
    text None and an error message, and the rows after it are still read. The formats are parsed as read_rows
    parses them (a quoted CSV field may span lines; a blank line between JSON records or CSV rows is no
    row). fmt 'lines' (or a .txt file): one text per line, a blank line an empty text."""
    name = path[:-3] if path.endswith(".gz") else path
    fmt = fmt or ("lines" if name.endswith(".txt") else detect_format(path))
    stream = _open_text(path, tolerant=True)
    if fmt == "lines":
        records = ((n, {text_column: line.rstrip("\r\n")}, None) for n, line in enumerate(stream, start=1))
    else:
        _, records = _records(path, fmt, stream, (text_column, text_b_column))
    try:
        for line, record, error in records:
            if error is None:
                texts = [record.get(c) for c in (text_column, text_b_column) if c]
                missing = [c for c, t in zip((text_column, text_b_column), texts) if not isinstance(t, str)]
                if missing:
                    error = f"no text in column '{missing[0]}'"
                elif any(_has_bad_bytes(t) for t in texts):
                    error = "not valid UTF-8"
                elif not all(t.strip() for t in texts):
                    error = "empty text"
            if error:
                yield line, None, None, error
            else:
                yield line, texts[0], texts[1] if text_b_column else None, None
    except csv.Error as e:
        raise UserError(f"{path}: malformed {fmt.upper()}: {e}") from None
