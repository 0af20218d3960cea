"""Reading text inputs in chunks of whole lines: plain or gzip, BOM and CRLF removed.

Inputs are found and opened through an `InputFiles`: TensorFlow's file systems (ctr_tf.fs: local
paths, gs://, s3:// and hdfs:// with their plug-ins, ram://) unless a caller passes another (the
Beam runner passes Beam's FileSystems, which its workers read through)."""
from __future__ import annotations

import contextlib
import glob
import gzip
import zlib
from typing import Iterator

import numpy as np

from ctr_tf import fs
from ctr_tf.data import formats



class InputFiles:
    """How inputs are listed and opened (TensorFlow's file systems): a binary file object with
    read, seek and readline."""

    def glob(self, pattern: str) -> list[str]:
        return fs.glob(pattern)

    def isfile(self, path: str) -> bool:
        return fs.isfile(path)

    def size(self, path: str) -> int:
        return fs.size(path)

    def open(self, path: str):
        return fs.open(path, "rb")


TF_FILES = InputFiles()

BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"


class InputError(ValueError):
    """An input file is missing, empty, unreadable or corrupt."""


def expand_inputs(spec: str | list[str], files: InputFiles = TF_FILES) -> list[str]:
    """Turns `GLOB[,GLOB]` (or a list of them) into a sorted, de-duplicated list of files."""
    patterns = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    if not patterns:
        raise InputError("no input given")
    found: list[str] = []
    for pattern in patterns:
        matched = sorted(files.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        matched = [m for m in matched if not m.endswith(".proba")]
        if not matched:
            raise InputError(f"no file matches the input pattern {pattern!r}")
        for m in matched:
            if not files.isfile(m):
                raise InputError(f"input {m!r} does not exist or is not a file")
            if m not in found:
                found.append(m)
    return found


@contextlib.contextmanager
def open_binary(path: str, files: InputFiles = TF_FILES):
    """The file's bytes, decompressed when it is gzip (by its magic number, not its name)."""
    with files.open(path) as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic != GZIP_MAGIC:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
            yield unzipped


def head_lines(path: str, n: int = 200, files: InputFiles = TF_FILES) -> list[str]:
    """The first n lines, decoded leniently, for format detection."""
    out = []
    try:
        with open_binary(path, files) as f:
            for raw in f:
                out.append(_clean(raw.rstrip(b"\n"), first=not out).decode("utf-8", "replace"))
                if len(out) >= n:
                    break
    except (EOFError, OSError, zlib.error) as e:
        if not out:
            raise InputError(f"{path}: cannot read ({e})") from None
    return out


def _clean(line: bytes, first: bool) -> bytes:
    if first and line.startswith(BOM):
        line = line[len(BOM):]
    return line[:-1] if line.endswith(b"\r") else line


def iter_chunks(path: str, chunk_bytes: int = 4 << 20, files: InputFiles = TF_FILES
                ) -> Iterator[tuple[int, list[bytes]]]:
    """Yields (number of the chunk's first line, 1-based; its lines without line ends).

    The final line needs no newline. A BOM before the first line and CR before LF are dropped.
    A truncated or corrupt gzip stream raises InputError naming the file.
    """
    line_no = 1
    for _, lines in iter_range_chunks(path, 0, None, chunk_bytes, offsets=False, files=files):
        yield line_no, lines
        line_no += len(lines)


def is_compressed(path: str, files: InputFiles = TF_FILES) -> bool:
    with files.open(path) as f:
        return f.read(2) == GZIP_MAGIC


def byte_ranges(path: str, range_bytes: int, files: InputFiles = TF_FILES) -> list[tuple[int, int | None]]:
    """[start, end) byte ranges that cover a file, for readers working side by side; a gzip
    stream cannot be entered in the middle, so it is one range (end None: to the end)."""
    size = files.size(path)
    if is_compressed(path, files) or size <= range_bytes:
        return [(0, None)]
    return [(s, min(s + range_bytes, size)) for s in range(0, size, range_bytes)]


def iter_range_chunks(path: str, start: int = 0, end: int | None = None, chunk_bytes: int = 4 << 20,
                      offsets: bool = True, files: InputFiles = TF_FILES
                      ) -> Iterator[tuple[np.ndarray | None, list[bytes]]]:
    """Yields (each line's byte offset, int64; the lines without line ends) for the lines whose
    first byte lies in [start, end): the ranges of `byte_ranges` give every line of the file
    exactly once. Offsets count in the decompressed stream of a gzip file. Lines are cleaned as
    `iter_chunks` cleans them (BOM of the first line, CR before LF). offsets=False (whole files
    only) yields None for them and skips their cost.
    """
    if not offsets and (start or end is not None):
        raise ValueError("a byte range needs the lines' offsets")
    pos = start
    try:
        with open_binary(path, files) as f:
            carry = b""
            if start > 0:  # the line that holds byte start-1 belongs to the range before
                f.seek(start - 1)
                pos = _next_line(f, start - 1, chunk_bytes)
                f.seek(pos)
            while end is None or pos + len(carry) < end or carry:
                # One name for the block read and the block with the carry before it: holding both
                # (two live 4 MB buffers) made reading a third slower.
                data = f.read(chunk_bytes)
                if not data:
                    break
                data = carry + data
                cut = data.rfind(b"\n")
                if cut < 0:
                    carry = data
                    continue
                lines = data[:cut].split(b"\n")
                cr = b"\r" in data
                if not offsets:
                    first, carry, pos = pos == 0, data[cut + 1:], pos + cut + 1
                    yield None, _clean_lines(lines, first, cr)
                    continue
                ends = np.flatnonzero(np.frombuffer(data, np.uint8, count=cut + 1) == 10)
                starts = pos + np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
                if end is not None and starts[-1] >= end:
                    n = int(np.searchsorted(starts, end))
                    if n:
                        yield starts[:n], _clean_lines(lines[:n], pos == 0, cr)
                    return
                yield starts, _clean_lines(lines, pos == 0, cr)
                carry, pos = data[cut + 1:], pos + cut + 1
                if end is not None and pos >= end:
                    return
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise InputError(f"{path}: the compressed stream is truncated or corrupt near byte "
                         f"{pos} ({e})") from None
    if carry and (end is None or pos < end):
        yield (np.array([pos], np.int64) if offsets else None), [_clean(carry, pos == 0)]


def _next_line(f, pos: int, chunk_bytes: int) -> int:
    """The offset of the line after the one that holds byte `pos` (where f stands), or of the end.
    Not readline: TensorFlow's GFile.readline drops the CR of a CRLF, so the bytes it returns do
    not count the bytes it read."""
    while True:
        data = f.read(min(chunk_bytes, 1 << 16))
        if not data:
            return pos
        cut = data.find(b"\n")
        if cut >= 0:
            return pos + cut + 1
        pos += len(data)


def _clean_lines(lines: list[bytes], first: bool, cr: bool) -> list[bytes]:
    if first and lines[0].startswith(BOM):
        lines[0] = lines[0][len(BOM):]
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines] if cr else lines


def detect_layout(path: str, input_format: str = "auto", files: InputFiles = TF_FILES) -> formats.Layout:
    """The layout of one input file, from its first lines; an empty file is an error."""
    head = head_lines(path, files=files)
    if not head:
        raise InputError(f"input file {path} is empty")
    return formats.detect(head, input_format, path)


def data_chunks(path: str, layout: formats.Layout, chunk_bytes: int = 4 << 20, files: InputFiles = TF_FILES
                ) -> Iterator[tuple[int, list[bytes]]]:
    """iter_chunks without the header line of files that have one."""
    for line_no, lines in iter_chunks(path, chunk_bytes, files):
        if layout.has_header and line_no == 1:
            lines, line_no = lines[1:], 2
        if lines:
            yield line_no, lines
