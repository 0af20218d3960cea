"""Vocabulary mode in one parse of the text: the write pass with provisional ids, a binary form of
the rows, then the vocabularies and a remap into the shards (`ctr_tf.data.convert` drives it)."""
from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from ctr_tf import fs, preprocessing
from ctr_tf import schema as schema_lib
from ctr_tf.data.convert_config import SPLITS
from ctr_tf.data.write_pass import WritePass

if TYPE_CHECKING:
    from ctr_tf.data.convert import Converter


class VocabularyPass(WritePass):
    """Vocabulary mode with one parse of the text.

    The write pass runs once over the text with the vocabulary fields left as values. Each
    normalized value becomes a 64-bit key (its Fingerprint64, salted by field, so one table and
    one lookup serve every field); a key gets a provisional id the first time it is seen (in
    input order, in the main thread), the training rows' values are counted by those ids, and
    the rows go, split by split and in order, to a flat binary form in the work directory (label
    float32, dense float32 [D], categorical int32 [C]: final ids for the other fields,
    provisional ids for vocabulary fields, -1 for missing). Then the vocabularies are cut
    (training count >= the field's min_count; most frequent first, ties by value), and a remap pass over the
    binary form turns provisional ids into vocabulary ids (missing 0, out of vocabulary 1) and
    writes the shards. Two different values of one field with the same 64-bit fingerprint would
    share an id (about one chance in 30,000 for Kaggle's 34M values). The table of provisional
    ids holds every distinct value of every split (the two-pass converter counted the training
    split's).
    """

    REMAP_ROWS = 1 << 18

    def __init__(self, conv: "Converter", draft: schema_lib.Schema, tmp: str):
        super().__init__(conv, draft, tmp, "pass 1/2 parse + count")
        names = conv.sources[0].parser.cat_names
        self.vocab_cols = [(j, f) for j, f in enumerate(draft.categorical_features) if f.transform == "vocab"]
        self.vocab_src = [names.index(f.source) for _, f in self.vocab_cols]
        self.vocab_pos = np.array([j for j, _ in self.vocab_cols], np.int64)
        self._plain_columns = (self.vocab_src == list(range(len(names)))
                               and not any(f.params.get("last_chars") for _, f in self.vocab_cols))
        self.salts = tf.constant([(v + 1) * 0x9E3779B97F4A7C15 % 2**63 for v in range(len(self.vocab_cols))], tf.int64)
        self.table = tf.lookup.experimental.MutableHashTable(tf.int64, tf.int64, default_value=-1)
        self.next_id = 0
        self.counts = np.zeros(1 << 16, np.int64)
        self.id_strings: list[np.ndarray] = []  # per chunk, the values of the ids it created
        self.id_fields: list[np.ndarray] = []
        self.final_ids = np.zeros(0, np.int32)
        self.parsed_dir = os.path.join(getattr(conv, "scratch", tmp), ".parsed")  # a local directory
        os.makedirs(self.parsed_dir)
        self.parsed = {s: [open(os.path.join(self.parsed_dir, f"{s}.{part}"), "wb") for part in ("label", "dense", "cat")]
                       for s in SPLITS}
        self.dims = (draft.record_format["num_dense"], draft.record_format["num_categorical"])

    def _keyed(self, cat_raw):
        """Raw string columns [n, C] -> (normalized vocabulary values [n * V], their keys
        [n * V]), row-major."""
        if not self.vocab_cols:
            return tf.zeros([0], tf.string), tf.zeros([0], tf.int64)
        if self._plain_columns:  # every column, in order, as it is: a reshape, no copy of the strings
            values = tf.reshape(cat_raw, [-1])
        else:
            cols = [preprocessing.normalize_strings(cat_raw[:, c], f.params)
                    for c, (_, f) in zip(self.vocab_src, self.vocab_cols)]
            values = tf.reshape(tf.stack(cols, axis=1), [-1])
        fp = tf.bitcast(tf.fingerprint(values), tf.int64)  # Fingerprint64 as int64, one per value
        keys = tf.bitwise.bitwise_xor(tf.reshape(fp, [-1, len(self.vocab_cols)]), self.salts[None, :])
        return values, tf.reshape(keys, [-1])

    def chunk_extra(self, cat_raw, ok) -> tuple:
        """In the worker: the keys of the parsed rows' values, unique (uniq, idx: as tf.unique),
        each unique key's first place among all rows' values, and the values (every row: masking
        int64 keys is cheaper than masking strings)."""
        n_vocab = max(len(self.vocab_cols), 1)
        values, keys = self._keyed(cat_raw)
        keys = tf.reshape(tf.boolean_mask(tf.reshape(keys, [-1, n_vocab]), ok), [-1])
        uniq, idx = tf.unique(keys, out_idx=tf.int64)
        first = tf.math.unsorted_segment_min(tf.range(tf.size(keys), dtype=tf.int64), idx, tf.size(uniq))
        rows = tf.where(ok)[:, 0]
        first = tf.gather(rows, first // n_vocab) * n_vocab + first % n_vocab
        return uniq, idx, first, values

    def categorical_rows(self, split_id, cat, extra, slow, order, ok):
        uniq, idx, first, values = extra
        uniq, idx, first = uniq.numpy(), idx.numpy(), first.numpy()
        n_vocab = len(self.vocab_cols)
        if not n_vocab:
            return cat
        if order is not None:  # slow-path rows: key them too, then every row in line order
            slow_values, slow_keys = self._keyed(tf.constant(slow.cat))
            keys = np.concatenate([uniq[idx].reshape(-1, n_vocab), slow_keys.numpy().reshape(-1, n_vocab)])[order]
            ok_values = tf.boolean_mask(tf.reshape(values, [-1, n_vocab]), ok)
            values = tf.reshape(tf.gather(tf.concat([ok_values, tf.reshape(slow_values, [-1, n_vocab])], 0), order),
                                [-1])
            uniq, idx, first = _unique_first(keys.reshape(-1))
        cat = np.array(cat, np.int32)
        present = (cat[:, self.vocab_pos] != preprocessing.MISSING_ID).reshape(-1)  # the draft: present -> 1
        prov_u = self.table.lookup(tf.constant(uniq)).numpy()
        new = (prov_u < 0) & (np.bincount(idx[present], minlength=len(uniq)) > 0)
        if new.any():
            ids = np.arange(self.next_id, self.next_id + int(new.sum()), dtype=np.int64)
            self.table.insert(tf.constant(uniq[new]), tf.constant(ids))
            prov_u[new] = ids
            self.next_id += len(ids)
            self.id_strings.append(tf.gather(values, first[new]).numpy())
            self.id_fields.append((first[new] % n_vocab).astype(np.int32))
        prov = prov_u[idx]
        train = np.repeat(split_id == 0, n_vocab) & present
        if self.next_id > len(self.counts):
            grown = np.zeros(max(self.next_id, 2 * len(self.counts)), np.int64)
            grown[:len(self.counts)] = self.counts
            self.counts = grown
        self.counts[:self.next_id] += np.bincount(prov[train], minlength=self.next_id)
        cat[:, self.vocab_pos] = np.where(present, prov, -1).reshape(-1, n_vocab)
        return cat

    def add_rows(self, split, label, dense, cat):
        for f, a, dtype in zip(self.parsed[split], (label, dense, cat), ("<f4", "<f4", "<i4")):
            np.ascontiguousarray(a, dtype).tofile(f)

    def finish_parse(self, directory: str) -> dict[str, int]:
        """Ends the parse; writes vocab/<field>.txt (most frequent first, ties by value); sizes."""
        self.close_input()
        for files in self.parsed.values():
            for f in files:
                f.close()
        fs.makedirs(fs.join(directory, "vocab"))
        strings = np.concatenate(self.id_strings) if self.id_strings else np.zeros(0, object)
        fields = np.concatenate(self.id_fields) if self.id_fields else np.zeros(0, np.int32)
        self.final_ids = np.full(self.next_id, preprocessing.OOV_ID, np.int32)
        return self.assign_ids(directory, strings, fields, self.counts[:self.next_id])

    def assign_ids(self, directory: str, strings: np.ndarray, fields: np.ndarray, counts: np.ndarray) -> dict[str, int]:
        """Sets final_ids (vocabulary id of each provisional id; OOV stays OOV) and writes the
        vocabularies: values with training counts >= --min_count, most frequent first, ties by
        value. strings, fields, counts: each provisional id's value, its field (an index into
        vocab_cols) and its training count. Returns each field's vocabulary size."""
        sizes = {}
        for v, (_, feat) in enumerate(self.vocab_cols):
            ids = np.flatnonzero((fields == v) & (counts >= self.conv.cfg.min_count_of(feat.source)))
            ordered = write_vocabulary(directory, feat.source, zip(counts[ids].tolist(), strings[ids].tolist(), ids.tolist()))
            self.final_ids[[i for _, _, i in ordered]] = preprocessing.VOCAB_OFFSET + np.arange(len(ordered))
            sizes[feat.source] = len(ordered)
        return sizes

    def remap_and_write(self):
        """Pass 2: the binary form, provisional ids to vocabulary ids, into the shards."""
        num_dense, num_cat = self.dims
        final = np.append(self.final_ids, np.int32(preprocessing.MISSING_ID))  # index -1: missing
        for s in SPLITS:
            paths = [os.path.join(self.parsed_dir, f"{s}.{part}") for part in ("label", "dense", "cat")]
            with open(paths[0], "rb") as fl, open(paths[1], "rb") as fd, open(paths[2], "rb") as fc:
                while True:
                    label = np.fromfile(fl, "<f4", count=self.REMAP_ROWS)
                    if not len(label):
                        break
                    n = len(label)
                    dense = np.fromfile(fd, "<f4", count=n * num_dense).reshape(n, num_dense)
                    cat = np.fromfile(fc, "<i4", count=n * num_cat).reshape(n, num_cat)
                    if len(self.vocab_pos):
                        cat[:, self.vocab_pos] = final[cat[:, self.vocab_pos]]
                    self.writers[s].add(label, dense, cat)
        shutil.rmtree(self.parsed_dir)


def write_vocabulary(directory: str, field: str, entries) -> list:
    """vocab/<field>.txt from (training count, value bytes, ...) entries that met --min_count, most
    frequent first, ties by value: the order of both runners. Returns the entries in file order."""
    ordered = sorted(entries, key=lambda e: (-e[0], e[1]))
    with fs.open(fs.join(directory, "vocab", f"{field}.txt"), "wb") as f:
        f.write(b"".join(e[1] + b"\n" for e in ordered))
    return ordered


def _unique_first(keys: np.ndarray):
    """(unique keys, the inverse index, each unique key's first position), as tf.unique gives."""
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return uniq, inverse.astype(np.int64), first.astype(np.int64)
