"""Where a training process runs: its distribution strategy, and the process-wide TensorFlow state
a run needs (op determinism, seeds, the Keras dtype policy).

That state is global to the process, so it is set in one place, `process_state`, entered once by
the entry point (`trainer.run`), and put back as it was when the run ends: a comparison or a
sweep runs many trials in one process, and a library caller's own settings survive a run.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import re

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from ctr_tf import config as cfg_lib
from ctr_tf.layers.embedding import is_creating_table, table_shards


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, incompatible model_dir, bad data); the message says why."""


@contextlib.contextmanager
def precision(policy: str):
    """The Keras global dtype policy set to `policy` inside the block, the previous one after."""
    before = tf.keras.mixed_precision.global_policy()
    if before.name == policy:
        yield
        return
    tf.keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(before)


@contextlib.contextmanager
def process_state(t: cfg_lib.TrainConfig):
    """Seeds, op determinism and dtype policy for one run; restored on exit.

    The Python and NumPy generators get their state back; TensorFlow's global seed its previous
    value (None when none was set). Op determinism, once on, is turned off again only if it was
    off before.
    """
    from tensorflow.python.eager import context

    py_state, np_state = random.getstate(), np.random.get_state()
    tf_seed = context.global_seed()
    determinism_before = tf_config.is_op_determinism_enabled()
    if t.deterministic and not determinism_before:
        tf_config.enable_op_determinism()
    tf.keras.utils.set_random_seed(t.seed)
    try:
        with precision(t.precision.value):
            yield
    finally:
        if t.deterministic and not determinism_before:
            tf_config.disable_op_determinism()
        random.setstate(py_state)
        np.random.set_state(np_state)
        tf.random.set_seed(tf_seed)


def table_partitioner(shards: int):
    """A variable partitioner that splits embedding tables into `shards` by rows (fewer when a
    table has fewer rows) and leaves every other variable whole."""
    def partition(shape, dtype):
        del dtype
        if is_creating_table() and shards > 1:
            return [min(shards, int(shape[0]))] + [1] * (len(shape) - 1)
        return [1] * len(shape)
    return partition


def make_strategy(kind: cfg_lib.Strategy, ps_shards: int = 0) -> tf.distribute.Strategy:
    if kind == cfg_lib.Strategy.DEFAULT:
        return tf.distribute.get_strategy()
    if kind == cfg_lib.Strategy.MIRRORED:
        gpus = tf.config.list_logical_devices("GPU")
        # Without GPUs, mirror over the logical CPUs (tests split one CPU into several).
        return tf.distribute.MirroredStrategy(None if gpus else [d.name for d in tf.config.list_logical_devices("CPU")])
    if kind == cfg_lib.Strategy.MULTI_WORKER:
        if "TF_CONFIG" not in os.environ:
            raise TrainingError("--strategy=multi_worker needs TF_CONFIG describing the workers")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if "TF_CONFIG" not in os.environ:
        raise TrainingError("--strategy=parameter_server needs TF_CONFIG describing chief, workers and ps")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    num_ps = resolver.cluster_spec().num_tasks("ps")
    if num_ps < 1:
        raise TrainingError("--strategy=parameter_server needs at least one ps task in TF_CONFIG")
    return tf.distribute.experimental.ParameterServerStrategy(
        resolver, variable_partitioner=table_partitioner(ps_shards or num_ps))


def placement(model: tf.keras.Model, tables: list) -> dict:
    """Where a model's variables live: each embedding table's shards with their row ranges
    [start, end) and devices, and the other variables' devices (placement.json)."""
    out = {"tables": [], "dense": []}
    in_tables = set()
    for t in tables:
        parts = table_shards(t)
        sharded = parts[0] is not t
        in_tables.update(id(p) for p in parts)
        start, shards = 0, []
        for p in parts:
            shards.append({"rows": [start, start + int(p.shape[0])], "device": p.device})
            start += int(p.shape[0])
        name = parts[0].name.rsplit("/part_", 1)[0] if sharded else t.name
        out["tables"].append({"name": name.split(":")[0], "rows": start, "dim": int(t.shape[1]), "shards": shards})
    out["dense"] = [{"name": v.name, "shape": [int(d) for d in v.shape], "device": v.device}
                    for v in model.variables if id(v) not in in_tables]
    return out


def placement_lines(where: dict) -> list[str]:
    """One console line per table of `placement`'s account: its shards' rows and devices."""
    return [f"placement: {t['name']} ({t['rows']:,} x {t['dim']}) in {len(t['shards'])} shard(s): "
            + ", ".join(f"rows {s['rows'][0]:,}-{s['rows'][1]:,} on {s['device']}" for s in t["shards"])
            for t in where["tables"]]


def ps_failure_message(error: Exception, latest_checkpoint: str | None, model_dir: str) -> str:
    """What the chief says when training loses a parameter server (the coordinator reschedules a
    lost worker's steps itself; what reaches fit is a server whose variables are gone)."""
    tasks = sorted(set(re.findall(r"/job:ps/replica:\d+/task:(\d+)", str(error))))
    who = f"parameter server {', '.join(tasks)}" if tasks else "a parameter server"
    done = (f"Epochs up to {int(latest_checkpoint.rsplit('-', 1)[1])} are checkpointed in {model_dir}"
            if latest_checkpoint else f"No epoch is checkpointed in {model_dir} yet")
    return (f"{who} failed ({type(error).__name__}), and the variables it held are lost with it. {done}: "
            "start the parameter server again and run the same command again; training resumes after "
            "the last finished epoch.")


def is_chief(strategy) -> bool:
    """Whether this process writes model_dir: always, except on non-chief multi-worker tasks."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    tf_config_env = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = tf_config_env.get("task", {})
    if "chief" in tf_config_env.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type", "worker") == "worker" and task.get("index", 0) == 0


def peak_rss_mb() -> float:
    """This process's peak resident memory so far: Linux's VmHWM, which starts again at exec (its
    ru_maxrss keeps the peak of the process that forked it: a trainer started by a big parent
    reported the parent's size), else ru_maxrss (KiB on Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
