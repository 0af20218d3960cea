"""Reading text inputs in chunks of whole lines: plain or gzip, BOM and CRLF removed."""
from __future__ import annotations

import glob
import gzip
import io
import os
import zlib
from typing import Iterator

from ctr_tf.data import formats

BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"


class InputError(ValueError):
    """An input file is missing, empty, unreadable or corrupt."""


def expand_inputs(spec: str | list[str]) -> list[str]:
    """Turns `GLOB[,GLOB]` (or a list of them) into a sorted, de-duplicated list of files."""
    patterns = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    if not patterns:
        raise InputError("no input given")
    files: list[str] = []
    for pattern in patterns:
        matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        matched = [m for m in matched if not m.endswith(".proba")]
        if not matched:
            raise InputError(f"no file matches the input pattern {pattern!r}")
        for m in matched:
            if not os.path.isfile(m):
                raise InputError(f"input {m!r} does not exist or is not a file")
            if m not in files:
                files.append(m)
    return files


def open_binary(path: str):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")


def head_lines(path: str, n: int = 200) -> list[str]:
    """The first n lines, decoded leniently, for format detection."""
    out = []
    try:
        with open_binary(path) as f:
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


def iter_chunks(path: str, chunk_bytes: int = 4 << 20) -> Iterator[tuple[int, list[bytes]]]:
    """Yields (number of the chunk's first line, 1-based; its lines without line ends).

    The final line needs no newline. A BOM before the first line and CR before LF are dropped.
    A truncated or corrupt gzip stream raises InputError naming the file.
    """
    line_no = 1
    carry = b""
    first = True
    try:
        with open_binary(path) as f:
            reader = io.BufferedReader(f, buffer_size=chunk_bytes) if isinstance(f, gzip.GzipFile) else f
            while True:
                block = reader.read(chunk_bytes)
                if not block:
                    break
                block = carry + block
                cut = block.rfind(b"\n")
                if cut < 0:
                    carry = block
                    continue
                carry = block[cut + 1:]
                lines = block[:cut].split(b"\n")
                if first:
                    if lines[0].startswith(BOM):
                        lines[0] = lines[0][len(BOM):]
                    first = False
                if b"\r" in block:
                    lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
                yield line_no, lines
                line_no += len(lines)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise InputError(f"{path}: the compressed stream is truncated or corrupt near line "
                         f"{line_no} ({e})") from None
    if carry:
        yield line_no, [_clean(carry, first)]


def detect_layout(path: str, input_format: str = "auto") -> formats.Layout:
    """The layout of one input file, from its first lines; an empty file is an error."""
    head = head_lines(path)
    if not head:
        raise InputError(f"input file {path} is empty")
    return formats.detect(head, input_format, path)


def data_chunks(path: str, layout: formats.Layout, chunk_bytes: int = 4 << 20) -> Iterator[tuple[int, list[bytes]]]:
    """iter_chunks without the header line of files that have one."""
    for line_no, lines in iter_chunks(path, chunk_bytes):
        if layout.has_header and line_no == 1:
            lines, line_no = lines[1:], 2
        if lines:
            yield line_no, lines
