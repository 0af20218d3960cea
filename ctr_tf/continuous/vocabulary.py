"""The running vocabulary of continuous training: ids that never change, admitted by frequency over
the spans so far, optionally expired when unseen for K spans (ByteDance Monolith's collisionless
table with its frequency filter and time-to-live, on a plain table that grows between spans).

Per vocabulary field the state holds:
  values      id -> value, in id order (vocabulary id = VOCAB_OFFSET + position): what the span's
              vocab/<field>.txt holds, so the trainer and the export read it as any vocabulary;
              a freed id (expired, not yet reused) holds a placeholder no input can produce
  assigned    the span at which each id got its current value
  last_seen   the last span whose training rows held each id's value
  pending     values not admitted yet, with their training count summed over the spans so far
  free        freed ids, reused smallest first by the next admitted values

A span is converted against the state (`SpanConverter`): one parse counts its training rows'
values; a value already admitted keeps its id; one whose summed count reaches --min_count is
admitted (a freed id, else the next one); the rest stay out of vocabulary. The rows are written
with those ids, and the new state is written into the converted directory beside schema.json, so
it is published with the span's data, or not at all.
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np

from ctr_tf import fs, preprocessing
from ctr_tf.data import convert as convert_lib
from ctr_tf.data.vocabulary_pass import VocabularyPass

STATE_DIR = "vocabulary_state"
FREED = b"\x00freed-"  # the placeholder of a freed id (a NUL never reaches a vocabulary from text)


@dataclasses.dataclass
class FieldState:
    values: list = dataclasses.field(default_factory=list)
    assigned: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    last_seen: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    pending: dict = dataclasses.field(default_factory=dict)
    free: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.index = {v: i for i, v in enumerate(self.values) if not v.startswith(FREED)}

    def add(self, value: bytes, span: int) -> int:
        """Admits a value: a freed id if there is one, else the next; returns the id's position."""
        if self.free:
            i = self.free.pop(0)
            self.values[i] = value
            self.assigned[i] = self.last_seen[i] = span
        else:
            i = len(self.values)
            self.values.append(value)
            self.assigned = np.append(self.assigned, span)
            self.last_seen = np.append(self.last_seen, span)
        self.index[value] = i
        return i

    def expire(self, span: int, after: int) -> int:
        """Frees the ids whose values were last seen `after` or more spans before `span`."""
        stale = [i for i in np.flatnonzero(self.last_seen <= span - after) if not self.values[i].startswith(FREED)]
        for i in stale:
            del self.index[self.values[i]]
            self.values[i] = FREED + str(i).encode()
            self.free.append(int(i))
        self.free.sort()
        return len(stale)


class RunningVocabulary:
    """The state of every vocabulary field (see the module docstring)."""

    def __init__(self, fields: dict[str, FieldState], span: int = -1):
        self.fields = fields
        self.span = span  # the last span converted into it

    @classmethod
    def empty(cls) -> "RunningVocabulary":
        return cls({})

    def field(self, name: str) -> FieldState:
        return self.fields.setdefault(name, FieldState())

    def sizes(self) -> dict[str, int]:
        return {name: len(f.values) for name, f in self.fields.items()}

    def update(self, span: int, field: str, values: list, counts: np.ndarray, min_count: int,
               expire_after: int = 0) -> tuple[np.ndarray, dict]:
        """A span's training counts of one field's values: the position of each value's id (-1:
        out of vocabulary), and what changed (admitted, expired)."""
        state = self.field(field)
        expired = 0
        seen = [state.index.get(v) for v in values]
        for i, c in zip(seen, counts):
            if i is not None and c > 0:
                state.last_seen[i] = span
        if expire_after:
            expired = state.expire(span, expire_after)
            seen = [state.index.get(v) for v in values]
        positions = np.full(len(values), -1, np.int64)
        admit = []
        for k, (v, i, c) in enumerate(zip(values, seen, counts)):
            if i is not None:
                positions[k] = i
                continue
            total = state.pending.get(v, 0) + int(c)
            if total >= min_count:
                admit.append((-total, v, k))
            elif total:
                state.pending[v] = total
        for _, v, k in sorted(admit):  # the most frequent first, ties by value: deterministic ids
            state.pending.pop(v, None)
            positions[k] = state.add(v, span)
        return positions, {"admitted": len(admit), "expired": expired}

    # -- files
    def save(self, directory: str) -> None:
        """The state under <directory>/vocabulary_state/: per field its values (one a line),
        pending values and counts, and the arrays."""
        root = fs.join(directory, STATE_DIR)
        fs.makedirs(root)
        meta = {"span": self.span, "fields": sorted(self.fields)}
        for name, f in self.fields.items():
            pending = sorted(f.pending.items())
            fs.publish_file(fs.join(root, f"{name}.pending"), b"".join(v + b"\n" for v, _ in pending))
            arrays = {"assigned": f.assigned, "last_seen": f.last_seen, "free": np.asarray(f.free, np.int64),
                      "pending_counts": np.asarray([c for _, c in pending], np.int64)}
            buffer = io.BytesIO()  # savez seeks: written in memory, published whole
            np.savez(buffer, **arrays)
            fs.publish_file(fs.join(root, f"{name}.npz"), buffer.getvalue())
        fs.write_json(fs.join(root, "state.json"), meta)

    @classmethod
    def load(cls, directory: str) -> "RunningVocabulary":
        """The state a converted span left (its vocab/<field>.txt are the values)."""
        root = fs.join(directory, STATE_DIR)
        meta = fs.read_json(fs.join(root, "state.json"))
        fields = {}
        for name in meta["fields"]:
            values = _lines(fs.join(directory, "vocab", f"{name}.txt"))
            arrays = dict(np.load(io.BytesIO(fs.read_bytes(fs.join(root, f"{name}.npz")))))
            pending = dict(zip(_lines(fs.join(root, f"{name}.pending")), arrays["pending_counts"].tolist()))
            fields[name] = FieldState(values, arrays["assigned"], arrays["last_seen"], pending,
                                      arrays["free"].tolist())
        return cls(fields, meta["span"])


def _lines(path: str) -> list[bytes]:
    data = fs.read_bytes(path)
    return data.split(b"\n")[:-1] if data else []


class SpanVocabularyPass(VocabularyPass):
    """Vocabulary mode against the running state (the converter's `conv.vocabulary` and
    `conv.span`, `conv.expire_after`): ids from the state, the state updated and written beside
    the span's schema."""

    def assign_ids(self, directory, strings, fields, counts):
        state, span = self.conv.vocabulary, self.conv.span
        sizes, growth = {}, {}
        for v, (_, feat) in enumerate(self.vocab_cols):
            ids = np.flatnonzero(fields == v)
            positions, change = state.update(span, feat.source, strings[ids].tolist(), counts[ids],
                                             self.conv.cfg.min_count_of(feat.source), self.conv.expire_after)
            known = positions >= 0
            self.final_ids[ids[known]] = preprocessing.VOCAB_OFFSET + positions[known]
            values = state.field(feat.source).values
            with fs.open(fs.join(directory, "vocab", f"{feat.source}.txt"), "wb") as f:
                f.write(b"".join(value + b"\n" for value in values))
            sizes[feat.source] = len(values)
            growth[feat.source] = change
        state.span = span
        state.save(directory)
        self.conv.growth = growth
        return sizes


class SpanConverter(convert_lib.Converter):
    """The converter of one span in continuous training: vocabulary mode against `vocabulary`
    (updated in place), which it writes beside the span's schema.json."""

    VOCABULARY_PASS = SpanVocabularyPass

    def __init__(self, cfg: convert_lib.ConvertConfig, vocabulary: RunningVocabulary, span: int,
                 expire_after: int = 0):
        super().__init__(cfg)
        self.vocabulary, self.span, self.expire_after = vocabulary, span, expire_after
        self.growth = {}

    def info(self, *args, **kwargs) -> dict:
        out = super().info(*args, **kwargs)
        if self.growth:
            out["vocabulary_growth"] = {"span": self.span, "expire_after_spans": self.expire_after,
                                        "fields": self.growth}
        return out


def growth_of(schema) -> dict:
    """A converted span's vocabulary growth (schema.json's account), or {} in hash mode."""
    return schema.info.get("vocabulary_growth", {})


def admitted(schema) -> int:
    return sum(f["admitted"] for f in growth_of(schema).get("fields", {}).values())
