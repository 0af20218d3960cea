"""A model scoring rows converted with another span's vocabularies.

Vocabulary ids are append-only across spans, so a value has the same id in every span that knows
it, but for an id reused after expiry. A model trained with span s's vocabularies scores the rows
of span t through a map from t's ids to its own: an id it has, holding the same value, is itself;
any other (a value admitted after s, or an id that holds another value now) is out of vocabulary
to it, as the model's own export would see that raw value. Hash and bucketized ids are the same
everywhere.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ctr_tf import metrics, preprocessing
from ctr_tf.continuation import _vocab
from ctr_tf.data import records
from ctr_tf.evaluation import probabilities


def id_map(model_schema, data_schema) -> np.ndarray | None:
    """[sum of the data's vocab sizes] int32: a data id (offset by its field's start in the
    data's fused id space) -> the model's id in that field; None where every id maps to itself."""
    parts, identity = [], True
    for a, b in zip(model_schema.categorical_features, data_schema.categorical_features):
        if a.name != b.name:
            raise ValueError(f"the model reads {a.name} where the data holds {b.name}")
        ids = np.arange(b.vocab_size, dtype=np.int32)
        if b.transform == "vocab":
            mine, theirs = _vocab(model_schema, a), _vocab(data_schema, b)
            n = min(len(mine), len(theirs))
            same = np.zeros(len(theirs), bool)
            same[:n] = [x == y for x, y in zip(mine[:n], theirs[:n])]
            ids[preprocessing.VOCAB_OFFSET:][~same] = preprocessing.OOV_ID
            identity &= bool(same.all()) and len(mine) >= len(theirs)
        elif a.vocab_size != b.vocab_size:
            raise ValueError(f"field {a.name}: {a.vocab_size} ids in the model, {b.vocab_size} in the data")
        parts.append(ids)
    return None if identity or not parts else np.concatenate(parts)


def dataset(model_schema, data_schema, splits, batch_size: int = 8192) -> tf.data.Dataset:
    """The data's rows of `splits` in order, their ids seen as the model's."""
    sets = [records.make_dataset(data_schema, s, batch_size) for s in splits if data_schema.split_rows(s)]
    if not sets:
        raise ValueError(f"{data_schema.directory} has no rows in {', '.join(splits)}")
    ds = sets[0]
    for more in sets[1:]:
        ds = ds.concatenate(more)
    mapping = id_map(model_schema, data_schema)
    if mapping is None:
        return ds
    table = tf.constant(mapping)
    offsets = tf.constant(np.concatenate([[0], np.cumsum(data_schema.vocab_sizes)[:-1]]).astype(np.int32))

    def remap(x, y):
        return {"dense": x["dense"], "cat": tf.gather(table, x["cat"] + offsets[None, :])}, y
    return ds.map(remap, num_parallel_calls=tf.data.AUTOTUNE)


def predictions(run, data_schema, split) -> tuple[np.ndarray, np.ndarray]:
    """(labels, served probabilities) of a trainer Run (its logit shift and calibration) on one
    split of the data."""
    y, z = run.scorer.labelled_logits(dataset(run.schema, data_schema, (split,)))
    return y, probabilities(z, run.calibration)


def evaluate(run, data_schema, splits) -> dict:
    """A trainer Run's served probabilities on the data's splits: AUC, logloss, NE, ECE, CTR
    ratio, rows."""
    parts = [predictions(run, data_schema, s) for s in splits if data_schema.split_rows(s)]
    if not parts:
        raise ValueError(f"{data_schema.directory} has no rows in {', '.join(splits)}")
    return metrics.summary(np.concatenate([y for y, _ in parts]), np.concatenate([p for _, p in parts]))
