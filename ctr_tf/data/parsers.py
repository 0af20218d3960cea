"""The parsers of the text formats, each two ways.

A fast path handles the lines that match the format's line regex, in batches with TensorFlow
string ops (split, pad, to_number). Every other line goes to a per-line Python slow path, which
either parses it (a legal variant: a Criteo line with stripped trailing empty fields, slots out
of order) or rejects it with a reason naming the field. Both paths yield the same raw row:
label (float, NaN when the file has none), the format's float inputs (NaN = missing) and its
string inputs ("" = missing).
"""
from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import tensorflow as tf

from ctr_tf.data.formats import (AVAZU_HOUR_RE, AVAZU_VALUE_RE, CRITEO_CAT_RE, CRITEO_INT_RE, FLEN_SLOT_CAT,
                                 FLOAT_RE, LABEL_RE, MAX_CRITEO_CAT_LEN, SLOT_ID_RE, Layout, Reject,
                                 raw_inputs)


@dataclasses.dataclass
class SlowRows:
    """The slow path's result for a chunk: parsed rows as arrays, and the rejected lines."""
    line_nos: np.ndarray  # int64 [k]
    label: np.ndarray     # float32 [k]
    dense: np.ndarray     # float32 [k, D], NaN = missing
    cat: np.ndarray       # bytes [k, C], b"" = missing
    rejects: list         # (line number, reason, raw bytes)


def merge_in_line_order(line_nos, arrays, more_line_nos, more_arrays):
    """Fast-path rows and slow-path rows of one chunk, together and in line order."""
    if not len(more_line_nos):
        return line_nos, tuple(arrays)
    merged = np.concatenate([line_nos, more_line_nos])
    order = np.argsort(merged, kind="stable")
    return merged[order], tuple(np.concatenate([a, b])[order] for a, b in zip(arrays, more_arrays))


class Parser:
    """Parses lines of one layout into (label, dense [n, D] float32, cat [n, C] string)."""

    def __init__(self, layout: Layout):
        self.layout = layout
        names = raw_inputs(layout.format)
        self.dense_names = tuple(n for n, t in names if t == "float32")
        self.cat_names = tuple(n for n, t in names if t == "string")
        self._fast = tf.function(self._fast_parse, input_signature=[tf.TensorSpec([None], tf.string)])

    def fast(self, lines: tf.Tensor):
        """Returns (ok [n] bool, label [n], dense [n, D], cat [n, C]); rows with ok=False are garbage."""
        return self._fast(lines)

    def _fast_parse(self, lines):
        raise NotImplementedError

    def slow(self, line: str):
        """Parses one line or raises Reject; returns (label, dense list, cat list)."""
        raise NotImplementedError

    def slow_rows(self, lines: list[bytes], indices, first_line_no: int) -> SlowRows:
        """The slow path over the lines at `indices` (those the fast path refused)."""
        kept, rejects = [], []
        for i in indices:
            raw, line_no = lines[i], first_line_no + int(i)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                rejects.append((line_no, f"not UTF-8 text ({e.reason} at byte {e.start})", raw))
                continue
            try:
                kept.append((line_no, self.slow(text)))
            except Reject as r:
                rejects.append((line_no, str(r), raw))
        k = len(kept)
        return SlowRows(
            line_nos=np.array([ln for ln, _ in kept], np.int64),
            label=np.array([row[0] for _, row in kept], np.float32),
            dense=np.array([row[1] for _, row in kept], np.float32).reshape(k, len(self.dense_names)),
            cat=np.array([row[2] for _, row in kept], dtype=object).reshape(k, len(self.cat_names)).astype(bytes),
            rejects=rejects)


def _to_float(x: tf.Tensor) -> tf.Tensor:
    return tf.strings.to_number(tf.where(tf.equal(x, ""), "nan", x), tf.float32)


def _split_to_matrix(lines: tf.Tensor, sep: str, width: int) -> tf.Tensor:
    """Splits lines into a [n, width] string matrix, padding short rows and cutting long ones.

    When every line has exactly `width` fields (the common case), the split's flat values are
    reshaped directly, which skips the ragged-to-dense padding.
    """
    parts = tf.strings.split(lines, sep)
    uniform = tf.reduce_all(tf.equal(parts.row_lengths(), width))
    return tf.cond(uniform, lambda: tf.reshape(parts.flat_values, [-1, width]),
                   lambda: parts.to_tensor("", shape=[None, width]))


class DelimitedParser(Parser):
    """Criteo TSV/CSV and Avazu CSV: fields by position, validated by one regex a line."""

    def __init__(self, layout: Layout):
        super().__init__(layout)
        fmt = layout.format
        self.delimiter = "\t" if fmt == "criteo_tsv" else ","
        self.columns = layout.columns
        self.ncols = len(self.columns)
        # Criteo TSV lines whose trailing empty fields were stripped are legal (37+ of 40 fields).
        self.min_cols = self.ncols - 3 if fmt == "criteo_tsv" and not layout.has_header else self.ncols
        self.validators = [self._validator(c) for c in self.columns]
        parts = [self.validators[0]] + [re.escape(self.delimiter) + v for v in self.validators[1:]]
        required = "".join(parts[:self.min_cols])
        optional = ""
        for p in reversed(parts[self.min_cols:]):
            optional = f"(?:{p}{optional})?"
        self.line_re = required + optional
        self._line_re_py = re.compile(self.line_re)
        self.label_col = next((i for i, c in enumerate(self.columns) if c in ("label", "click")), None)
        self.dense_cols = [self.columns.index(n) for n in self.dense_names]
        self.cat_cols = [self.columns.index(n) for n in self.cat_names]

    def _validator(self, col: str) -> str:
        if col in ("label", "click"):
            return LABEL_RE
        if col.startswith("_ignored:") or col == "id":
            return r'[^,\t"]*'
        if self.layout.family == "avazu":
            return AVAZU_HOUR_RE if col == "hour" else AVAZU_VALUE_RE
        return CRITEO_INT_RE if col.startswith("I") else CRITEO_CAT_RE

    def _fast_parse(self, lines):
        ok = tf.strings.regex_full_match(lines, self.line_re)
        fields = _split_to_matrix(lines, self.delimiter, self.ncols)
        n = tf.shape(lines)[0]
        if self.label_col is None:
            label = tf.fill([n], float("nan"))
        else:
            label = tf.strings.to_number(tf.where(ok, fields[:, self.label_col], "0"), tf.float32)
        if self.dense_cols:
            dense_str = tf.where(ok[:, None], tf.gather(fields, self.dense_cols, axis=1), "")
            dense = _to_float(dense_str)
        else:
            dense = tf.zeros([n, 0], tf.float32)
        cat = tf.gather(fields, self.cat_cols, axis=1)
        return ok, label, dense, cat

    def slow(self, line: str):
        if not line.strip():
            raise Reject("blank line")
        fields = line.split(self.delimiter)
        if not self.min_cols <= len(fields) <= self.ncols:
            expected = (f"{self.ncols}" if self.min_cols == self.ncols
                        else f"{self.min_cols}-{self.ncols}")
            raise Reject(f"wrong field count: {len(fields)} fields, expected {expected}")
        fields += [""] * (self.ncols - len(fields))
        for col, value, pattern in zip(self.columns, fields, self.validators):
            if not re.fullmatch(pattern, value):
                raise Reject(self._reason(col, value))
        label = float(fields[self.label_col]) if self.label_col is not None else math.nan
        dense = [float(fields[i]) if fields[i] else math.nan for i in self.dense_cols]
        cat = [fields[i] for i in self.cat_cols]
        return label, dense, cat

    def _reason(self, col: str, value: str) -> str:
        shown = value if len(value) <= 40 else value[:40] + "..."
        if col in ("label", "click"):
            return f"{col} not 0/1: {shown!r}"
        if self.layout.family == "criteo" and col.startswith("I"):
            return f"{col} not an integer: {shown!r}"
        if self.layout.family == "criteo" and col.startswith("C"):
            if len(value) > MAX_CRITEO_CAT_LEN and re.fullmatch(r"[0-9a-fA-F]+", value):
                return f"{col} over-long ({len(value)} > {MAX_CRITEO_CAT_LEN} hex digits): {shown!r}"
            return f"{col} not a hex id: {shown!r}"
        if col == "hour":
            return f"hour not YYMMDDHH: {shown!r}"
        return f"{col} has an invalid value: {shown!r}"


class SlotParser(Parser):
    """PaddleRec slot lines: `click:<0|1>` then `name:value` tokens separated by spaces.

    Criteo (paddlerec_slot): 13 `dense_feature:<float>` in order, then `1:<id>` .. `26:<id>`.
    Avazu FLEN (avazu_slot): `user_0..user_11`, `item_0..item_2`, `contex_0..contex_5`.
    The fast path takes lines with every slot present, in canonical order; the slow path takes
    any order and fills an absent slot as missing (PaddleRec pads absent slots too).
    """

    def __init__(self, layout: Layout):
        super().__init__(layout)
        criteo = layout.format == "paddlerec_slot"
        self.dense_slot = "dense_feature" if criteo else None
        self.cat_slots = tuple(str(i) for i in range(1, 27)) if criteo else FLEN_SLOT_CAT
        tokens = ([rf"dense_feature:{FLOAT_RE}"] * (13 if criteo else 0)
                  + [rf"{re.escape(s)}:{SLOT_ID_RE}" for s in self.cat_slots])
        self.ntokens = len(tokens) + 1
        self.line_re = rf"click:{LABEL_RE} " + " ".join(tokens)
        self.ndense = 13 if criteo else 0

    def _fast_parse(self, lines):
        ok = tf.strings.regex_full_match(lines, self.line_re)
        tokens = _split_to_matrix(lines, " ", self.ntokens)
        values = tf.strings.split(tf.reshape(tokens, [-1]), ":", maxsplit=1).to_tensor("", shape=[None, 2])[:, 1]
        values = tf.reshape(values, [-1, self.ntokens])
        values = tf.where(ok[:, None], values, "")
        label = tf.strings.to_number(tf.where(ok, values[:, 0], "0"), tf.float32)
        dense = _to_float(values[:, 1:1 + self.ndense])
        cat = values[:, 1 + self.ndense:]
        return ok, label, dense, cat

    def slow(self, line: str):
        if not line.strip():
            raise Reject("blank line")
        label = math.nan
        dense: list[float] = []
        cat = {}
        for token in line.split():
            name, sep, value = token.partition(":")
            if not sep:
                raise Reject(f"token {token[:40]!r} is not name:value")
            if name == "click":
                if not re.fullmatch(LABEL_RE, value):
                    raise Reject(f"click not 0/1: {value[:40]!r}")
                label = float(value)
            elif name == self.dense_slot:
                if not re.fullmatch(FLOAT_RE, value):
                    raise Reject(f"dense_feature not a number: {value[:40]!r}")
                dense.append(float(value))
            elif name in self.cat_slots:
                if not re.fullmatch(SLOT_ID_RE, value):
                    raise Reject(f"slot {name} not an integer id: {value[:40]!r}")
                if name in cat:
                    raise Reject(f"slot {name} appears twice")
                cat[name] = value
            # PaddleRec's reader ignores slots it does not know; so do we.
        if self.layout.has_label and math.isnan(label):
            raise Reject("no click slot")
        if len(dense) > self.ndense:
            raise Reject(f"{len(dense)} dense_feature slots, expected {self.ndense}")
        if not cat and not dense:
            raise Reject("no feature slots")
        dense += [math.nan] * (self.ndense - len(dense))
        return label, dense, [cat.get(s, "") for s in self.cat_slots]


def make_parser(layout: Layout) -> Parser:
    if layout.format in ("paddlerec_slot", "avazu_slot"):
        return SlotParser(layout)
    return DelimitedParser(layout)
