"""--continue_from: a run that starts where another model_dir stopped, its weights and its
optimizer state (Adam's moments and step, lazy Adam's per-row last steps, the learning rate), on
data whose vocabularies may have grown since.

Vocabulary ids are append-only across the spans of continuous training (ctr_tf.continuous), so a
table grows by rows at the end of each field's block: every row of an id whose value is unchanged
is copied, with its optimizer slots, bit for bit; a new id's row, and the row of an id that now
holds another value (an expired id reused), start as a fresh table's rows do (the new build's
initializer, zero moments, lazy Adam's last step at the current step, so no catch-up is owed).
Which ids kept their value is read from the two data sets' vocab/<field>.txt; hash and bucketized
fields must keep their sizes.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from ctr_tf import fs
from ctr_tf.layers.embedding import FieldEmbedding


class ContinuationError(ValueError):
    """The source cannot be continued into this build; the message says why."""


@dataclasses.dataclass(frozen=True)
class FieldRows:
    """One categorical field's ids in the source and in the continuation."""
    name: str
    old: int
    new: int
    keep: np.ndarray  # [old] bool: the id's value is unchanged, its row carries over


def _vocab(schema, feature) -> list[bytes]:
    data = fs.read_bytes(schema.path(feature.params["vocab_file"]))
    return data.split(b"\n")[:-1] if data else []


def field_rows(src_schema, dst_schema) -> list[FieldRows]:
    """Per categorical field (schema order) which of the source's ids carry over."""
    src, dst = src_schema.categorical_features, dst_schema.categorical_features
    if [f.name for f in src] != [f.name for f in dst]:
        raise ContinuationError(f"the categorical fields differ: {[f.name for f in src]} vs {[f.name for f in dst]}")
    out = []
    for a, b in zip(src, dst):
        keep = np.ones(a.vocab_size, bool)
        if a.transform != b.transform:
            raise ContinuationError(f"field {a.name}: transform {a.transform} became {b.transform}")
        if a.transform == "vocab":
            old, new = _vocab(src_schema, a), _vocab(dst_schema, b)
            n = min(len(old), len(new))
            keep[2:2 + n] = [o == w for o, w in zip(old[:n], new[:n])]
            keep[2 + n:] = False
        elif a.vocab_size != b.vocab_size:
            raise ContinuationError(f"field {a.name} ({a.transform}): {a.vocab_size} ids became {b.vocab_size}; only "
                                    "vocabularies grow")
        if b.vocab_size < a.vocab_size:
            raise ContinuationError(f"field {a.name}: its vocabulary shrank ({a.vocab_size} -> {b.vocab_size} ids)")
        out.append(FieldRows(a.name, a.vocab_size, b.vocab_size, keep))
    return out


def _layouts(src_model, dst_model, fields: list[FieldRows]) -> dict[str, list[FieldRows]]:
    """{table variable's name in the new build: its fields, in the table's order}."""
    src = [layer for layer in src_model.submodules if isinstance(layer, FieldEmbedding)]
    dst = [layer for layer in dst_model.submodules if isinstance(layer, FieldEmbedding)]
    if len(src) != len(dst):
        raise ContinuationError(f"the builds have {len(src)} and {len(dst)} tables")
    layouts = {}
    for a, b in zip(src, dst):
        chosen, at = [], 0
        for old_size, new_size in zip(a.vocab_sizes, b.vocab_sizes):  # the table's fields, in schema order
            while at < len(fields) and (fields[at].old, fields[at].new) != (old_size, new_size):
                at += 1
            if at == len(fields):
                raise ContinuationError(f"table {b.name}: its fields are not the data's")
            chosen.append(fields[at])
            at += 1
        layouts[_name(b.embeddings)] = chosen
    return layouts


def _name(variable) -> str:
    return variable.name.split(":")[0]


def _table_of(variable, layouts: dict) -> list[FieldRows] | None:
    """The fields of the table `variable` is (or is an optimizer slot of: tf-keras names a slot
    '<slot>/<table>', the legacy optimizers '<table>/<slot>'), else None."""
    name = _name(variable)
    for table, blocks in layouts.items():
        if name == table or name.endswith("/" + table) or name.startswith(table + "/") or f"/{table}/" in name:
            return blocks
    return None


def _grown(old: np.ndarray, fresh: np.ndarray, blocks: list[FieldRows]) -> tuple[np.ndarray, np.ndarray]:
    """fresh with each field block's kept rows replaced by the source's; and the mask of the rows
    that did not carry over (new or reset)."""
    out, fresh_rows = fresh.copy(), np.ones(fresh.shape[0], bool)
    src_at = dst_at = 0
    for f in blocks:
        keep = np.flatnonzero(f.keep)
        out[dst_at + keep] = old[src_at + keep]
        fresh_rows[dst_at + keep] = False
        src_at, dst_at = src_at + f.old, dst_at + f.new
    return out, fresh_rows


def carry_over(src_model, src_optimizer, dst_model, dst_optimizer, fields: list[FieldRows]) -> dict:
    """dst's weights and optimizer variables := src's, tables grown as the module says. Both
    optimizers must be built (their slots made). Returns the rows kept and fresh."""
    layouts = _layouts(src_model, dst_model, fields)
    last_steps = {id(v) for v in getattr(dst_optimizer, "_last_steps", {}).values()}
    step = int(src_optimizer.iterations.numpy())
    done = {"tables": len(layouts), "rows_kept": 0, "rows_fresh": 0}

    def copy(a, b, what):
        blocks = _table_of(b, layouts)
        if blocks is None:
            if tuple(a.shape) != tuple(b.shape):
                raise ContinuationError(f"{what} {_name(b)}: shape {tuple(a.shape)} cannot become {tuple(b.shape)}")
            b.assign(a.read_value())
            return
        if a.shape[0] != sum(f.old for f in blocks) or tuple(a.shape[1:]) != tuple(b.shape[1:]):
            raise ContinuationError(f"{what} {_name(b)}: shape {tuple(a.shape)} is not the source table's")
        value, fresh_rows = _grown(a.numpy(), b.numpy(), blocks)
        if id(b) in last_steps:  # a fresh row owes no catch-up: its last step is now
            value[fresh_rows] = step
        b.assign(value)
        if what == "weight":
            done["rows_kept"] += int((~fresh_rows).sum())
            done["rows_fresh"] += int(fresh_rows.sum())

    if len(src_model.weights) != len(dst_model.weights):
        raise ContinuationError("the builds differ in structure (another model or other options)")
    for a, b in zip(src_model.weights, dst_model.weights):
        copy(a, b, "weight")
    src_vars, dst_vars = list(src_optimizer.variables), list(dst_optimizer.variables)
    if len(src_vars) != len(dst_vars):
        raise ContinuationError(f"the optimizers hold {len(src_vars)} and {len(dst_vars)} variables (another "
                                "--optimizer?)")
    for a, b in zip(src_vars, dst_vars):
        copy(a, b, "optimizer variable")
    return done


def exported_checkpoint(model_dir: str, early_stopping: bool) -> str:
    """The checkpoint an export of a model_dir takes: its best epoch's under early stopping, else
    its latest."""
    from ctr_tf.trainer import CHECKPOINT_DIR, CHECKPOINT_PREFIX
    best = fs.join(model_dir, "best_epoch.json")
    if early_stopping and fs.exists(best):
        return fs.join(model_dir, CHECKPOINT_DIR, f"{CHECKPOINT_PREFIX}-{fs.read_json(best)['epoch']}")
    latest = tf.train.latest_checkpoint(fs.join(model_dir, CHECKPOINT_DIR))
    if latest is None:
        raise ContinuationError(f"{model_dir} holds no checkpoint to continue from")
    return latest


def source(run, model_dir: str):
    """(model, optimizer, schema) of `model_dir`, a run of the same model and optimizer as `run`
    (a trainer Run), at the epoch its export takes."""
    from ctr_tf import config as cfg_lib
    from ctr_tf import models
    from ctr_tf import schema as schema_lib
    from ctr_tf.schedules import make_optimizer
    old = cfg_lib.ExperimentConfig.from_json(fs.read_json(fs.join(model_dir, "config.json")))
    if old.model != run.cfg.model or old.train.optimizer != run.t.optimizer:
        raise ContinuationError(f"it trained {old.model.name} with --optimizer={old.train.optimizer.value}, and this "
                                f"run is {run.cfg.model.name} with --optimizer={run.t.optimizer.value} (the model's "
                                "options must be the same too)")
    schema = schema_lib.load(old.data.data_dir)
    model = models.build(schema, run.model_cfg)
    optimizer = make_optimizer(run.t, run.cfg.sparse_table_l2, models.embedding_tables(model))
    optimizer.build(model.trainable_variables)
    path = exported_checkpoint(model_dir, old.train.early_stopping_patience > 0)
    tf.train.Checkpoint(model=model, optimizer=optimizer).restore(path).expect_partial()
    return model, optimizer, schema
