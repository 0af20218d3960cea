"""The text formats CTR data comes in: their columns, their field validators, the raw inputs
each yields, and the detection of a file's format and layout from its first lines. The parsers
of the formats are in `ctr_tf.data.parsers`."""
from __future__ import annotations

import collections
import dataclasses
import re


CRITEO_DENSE = tuple(f"I{i}" for i in range(1, 14))
CRITEO_CAT = tuple(f"C{i}" for i in range(1, 27))
AVAZU_COLUMNS = ("id", "click", "hour", "C1", "banner_pos", "site_id", "site_domain",
                 "site_category", "app_id", "app_domain", "app_category", "device_id", "device_ip",
                 "device_model", "device_type", "device_conn_type", "C14", "C15", "C16", "C17",
                 "C18", "C19", "C20", "C21")
AVAZU_CAT = tuple(c for c in AVAZU_COLUMNS if c not in ("id", "click"))
FLEN_SLOT_CAT = (tuple(f"user_{i}" for i in range(12)) + tuple(f"item_{i}" for i in range(3))
                 + tuple(f"contex_{i}" for i in range(6)))

MAX_CRITEO_CAT_LEN = 8  # Criteo's categorical values are 32-bit hashes written as 8 hex digits.

# Field validators, as regex fragments without groups that capture.
LABEL_RE = r"[01](?:\.0*)?"
CRITEO_INT_RE = r"(?:[-+]?[0-9]+(?:\.0*)?)?"
CRITEO_CAT_RE = r"(?:[0-9a-fA-F]{1,%d})?" % MAX_CRITEO_CAT_LEN
AVAZU_VALUE_RE = r"[0-9A-Za-z_.-]{0,64}"
AVAZU_HOUR_RE = r"[0-9]{8}"
FLOAT_RE = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
SLOT_ID_RE = r"[0-9]{1,19}"

FORMATS = ("criteo_tsv", "criteo_csv", "paddlerec_slot", "avazu_csv", "avazu_slot")


class FormatError(ValueError):
    """The input's format cannot be recognised or does not match the one asked for."""


class Reject(Exception):
    """A line that cannot be used; the message is the reason written to the rejects file."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one file is laid out: its format, and where label and inputs sit.

    columns: the file's column names in order (delimited formats); the roles of the names
    come from the format. has_header: the first line names the columns and is not a row.
    """
    format: str
    has_header: bool
    has_label: bool
    columns: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        return "avazu" if self.format.startswith("avazu") else "criteo"


def raw_inputs(fmt: str) -> tuple[tuple[str, str], ...]:
    """The raw inputs (name, dtype) a format yields, in order: the serving signature's inputs."""
    if fmt in ("criteo_tsv", "criteo_csv", "paddlerec_slot"):
        return tuple((n, "float32") for n in CRITEO_DENSE) + tuple((n, "string") for n in CRITEO_CAT)
    if fmt == "avazu_csv":
        return tuple((n, "string") for n in AVAZU_CAT)
    if fmt == "avazu_slot":
        return tuple((n, "string") for n in FLEN_SLOT_CAT)
    raise FormatError(f"unknown input format {fmt!r}; expected one of {', '.join(FORMATS)}")


# ----------------------------------------------------------------------------- detection

def detect(lines: list[str], fmt: str = "auto", path: str = "<input>") -> Layout:
    """Works out a file's layout from its first lines (BOM and line ends already removed)."""
    sample = [ln for ln in lines if ln.strip()]
    if not sample:
        raise FormatError(f"{path}: no non-blank line to detect the format from")
    first = sample[0]
    guessed = _vote(sample)
    if fmt == "auto":
        if guessed is None:
            raise FormatError(
                f"{path}: unknown input format; the first line {first[:120]!r} is none of "
                f"{', '.join(FORMATS)}. Pass --input_format to name it.")
        fmt = guessed
    elif fmt not in FORMATS:
        raise FormatError(f"unknown --input_format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
    elif guessed is not None and guessed != fmt:
        raise FormatError(f"{path}: --input_format={fmt} but the file looks like {guessed} "
                          f"(first line {first[:120]!r})")
    if fmt == "criteo_tsv" and _is_criteo_header(first.split("\t")):
        return _csv_layout(first, fmt, path, _criteo_column_name, required=CRITEO_DENSE + CRITEO_CAT, sep="\t")
    if fmt == "criteo_tsv":
        # Kaggle train lines have 40 fields (fewer when trailing empties are stripped), test lines
        # 39: the more common of the two decides, so a few malformed lines cannot flip it.
        widths = [len(ln.split("\t")) for ln in sample]
        labeled = widths.count(40) > 0 and widths.count(40) >= widths.count(39)
        return Layout(fmt, False, labeled, CRITEO_COLUMNS_LABELED if labeled else CRITEO_COLUMNS_UNLABELED)
    if fmt == "criteo_csv":
        return _csv_layout(first, fmt, path, _criteo_column_name, required=CRITEO_DENSE + CRITEO_CAT)
    if fmt == "avazu_csv":
        if first.split(",")[0].strip().lower() == "id":
            return _csv_layout(first, fmt, path, _avazu_column_name, required=AVAZU_CAT)
        n = len(first.split(","))
        if n == 24:
            return Layout(fmt, False, True, AVAZU_COLUMNS)
        if n == 23:
            return Layout(fmt, False, False, tuple(c for c in AVAZU_COLUMNS if c != "click"))
        raise FormatError(f"{path}: Avazu CSV without header must have 24 (train) or 23 (test) "
                          f"columns; the first line has {n}")
    if fmt == "paddlerec_slot":
        return Layout(fmt, False, first.startswith("click:"))
    return Layout(fmt, False, first.startswith("click:"))


CRITEO_COLUMNS_LABELED = ("label",) + CRITEO_DENSE + CRITEO_CAT
CRITEO_COLUMNS_UNLABELED = CRITEO_DENSE + CRITEO_CAT


def _vote(sample: list[str]) -> str | None:
    """The format of the sampled lines: a CSV header on the first line decides; otherwise the
    most common per-line guess, so malformed lines at the top of a file do not hide its format."""
    first = _guess_format(sample[0])
    if first in ("criteo_csv", "avazu_csv") and not sample[0][:1].isdigit():
        return first
    if first == "criteo_tsv" and _is_criteo_header(sample[0].split("\t")):
        return first
    guesses = collections.Counter(g for g in (_guess_format(ln) for ln in sample) if g)
    return guesses.most_common(1)[0][0] if guesses else None


def _guess_format(first: str) -> str | None:
    tokens = first.split(" ")
    if tokens[0].startswith("click:") or (":" in tokens[0] and "\t" not in first and "," not in first):
        names = {t.split(":", 1)[0] for t in tokens}
        if "dense_feature" in names:
            return "paddlerec_slot"
        if "user_0" in names or "item_0" in names:
            return "avazu_slot"
        return None
    if "\t" in first:
        fields = first.split("\t")
        return "criteo_tsv" if 36 <= len(fields) <= 40 or _is_criteo_header(fields) else None
    if "," in first:
        names = [c.strip().strip('"') for c in first.split(",")]
        lower = {c.lower() for c in names}
        if {"i1", "c1", "c26"} <= lower:
            return "criteo_csv"
        if {"hour", "site_id", "c21"} <= lower:
            return "avazu_csv"
        if len(names) in (23, 24) and re.fullmatch(AVAZU_HOUR_RE, names[len(names) - 22]):
            return "avazu_csv"
    return None


def _criteo_column_name(c: str) -> str:
    low = c.lower()
    if low in ("label", "click", "clicked", "target"):
        return "label"
    if re.fullmatch(r"[ic][0-9]{1,2}", low):
        return low.upper()
    return "_ignored:" + c


def _avazu_column_name(c: str) -> str:
    if c.lower() == "click":
        return "click"
    for name in AVAZU_COLUMNS:
        if name.lower() == c.lower():
            return name
    return "_ignored:" + c


def _is_criteo_header(fields: list[str]) -> bool:
    return {"i1", "c1", "c26"} <= {c.strip().strip('"').lower() for c in fields}


def _csv_layout(header: str, fmt: str, path: str, rename, required, sep: str = ",") -> Layout:
    columns = tuple(rename(c.strip().strip('"')) for c in header.split(sep))
    missing = [c for c in required if c not in columns]
    if missing:
        raise FormatError(f"{path}: the CSV header lacks the columns {', '.join(missing)}")
    dup = {c for c in columns if columns.count(c) > 1 and not c.startswith("_ignored:")}
    if dup:
        raise FormatError(f"{path}: the CSV header repeats the columns {', '.join(sorted(dup))}")
    return Layout(fmt, True, ("label" in columns) or ("click" in columns), columns)
