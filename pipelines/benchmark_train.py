"""Training throughput of DeepFM on synthetic TFRecords: table size, optimizer, precision, and
the same DeepFM written the obvious Keras way.

  python -m pipelines.benchmark_train [--sizes=100000,1000000,10000000] [--precisions=float32,mixed_bfloat16]

Each row trains --steps timed steps (after --warmup) at batch 4096, embedding 16, MLP 400x3,
and reports median ms/step and examples/s. "obvious Keras" is DeepFM as most tutorials write it:
one Input and one Embedding per field, dense features projected per field, tf.keras Adam.
Goals: step time at 10M rows <= 1.2x the step time at 100k; ours >= 2x the obvious way.
"""
import os
import shutil
import statistics
import time

from absl import app, flags

import ctr_tf  # noqa: F401
import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import models, optimizers, runtime
from ctr_tf.data import convert, records, synthetic

flags.DEFINE_list("sizes", ["100000", "1000000", "10000000"], "Total embedding rows (26 hashed fields).")
flags.DEFINE_list("optimizers", ["lazy_adam", "adagrad", "adam"], "Optimizers of our DeepFM.")
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"], "Precisions of our DeepFM with lazy_adam.")
flags.DEFINE_list("table_l2", ["sparse", "dense"], "Also time lazy_adam with --embedding_table_l2=5e-5 "
                  "applied sparsely by the optimizer, or as a loss term (a gradient at every row).")
flags.DEFINE_boolean("baseline", True, "Also time the obvious Keras DeepFM.")
flags.DEFINE_integer("rows", 200_000, "Synthetic training rows.")
flags.DEFINE_integer("batch_size", 4096, "Batch size.")
flags.DEFINE_integer("steps", 20, "Timed steps.")
flags.DEFINE_integer("warmup", 5, "Untimed steps first.")
flags.DEFINE_string("work_dir", "/tmp/ctr_tf_bench_train", "Scratch directory.")
FLAGS = flags.FLAGS
TABLE_L2 = 5e-5
EMB = 16
HIDDEN = (400, 400, 400)


class StepTimer(tf.keras.callbacks.Callback):
    def __init__(self, warmup):
        super().__init__()
        self.warmup, self.times, self.t = warmup, [], None

    def on_train_batch_begin(self, batch, logs=None):
        self.t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if batch >= self.warmup:
            self.times.append(time.perf_counter() - self.t)


def obvious_keras_deepfm(schema):
    """DeepFM the way a tutorial writes it: per-field inputs and embeddings."""
    dense_in = [tf.keras.Input((1,), name=f.name) for f in schema.dense_features]
    cat_in = [tf.keras.Input((1,), dtype=tf.int32, name=f.name) for f in schema.categorical_features]
    emb = [tf.keras.layers.Embedding(f.vocab_size, EMB)(x) for f, x in zip(schema.categorical_features, cat_in)]
    lin = [tf.keras.layers.Embedding(f.vocab_size, 1)(x) for f, x in zip(schema.categorical_features, cat_in)]
    emb += [tf.keras.layers.Reshape((1, EMB))(tf.keras.layers.Dense(EMB, use_bias=False)(x)) for x in dense_in]
    v = tf.keras.layers.Concatenate(axis=1)(emb)
    fm = tf.keras.layers.Lambda(lambda v: 0.5 * tf.reduce_sum(tf.square(tf.reduce_sum(v, 1)) - tf.reduce_sum(tf.square(v), 1), 1, keepdims=True))(v)
    linear = tf.keras.layers.Add()([tf.keras.layers.Flatten()(tf.keras.layers.Add()(lin)),
                                    tf.keras.layers.Dense(1)(tf.keras.layers.Concatenate()(dense_in))])
    h = tf.keras.layers.Flatten()(v)
    for u in HIDDEN:
        h = tf.keras.layers.Dense(u, activation="relu")(h)
    out = tf.keras.layers.Add()([linear, fm, tf.keras.layers.Dense(1)(h)])
    model = tf.keras.Model(dense_in + cat_in, out)
    model.compile(tf.keras.optimizers.Adam(1e-3), tf.keras.losses.BinaryCrossentropy(from_logits=True))
    names_dense = [f.name for f in schema.dense_features]
    names_cat = [f.name for f in schema.categorical_features]

    def split(x, y):
        feats = {n: x["dense"][:, i:i + 1] for i, n in enumerate(names_dense)}
        feats.update({n: x["cat"][:, i:i + 1] for i, n in enumerate(names_cat)})
        return feats, y
    return model, split


def ours(schema, optimizer, precision, table_l2=""):
    """Our DeepFM; table_l2: "" none, "sparse" (lazy_adam applies it), "dense" (in the loss)."""
    cfg = cfg_lib.ModelConfig(name="deepfm", embedding_dim=EMB, hidden_units=HIDDEN,
                              embedding_table_l2=TABLE_L2 if table_l2 == "dense" else 0.0)
    with runtime.precision(precision):
        model = models.build(schema, cfg)
        sparse = TABLE_L2 if table_l2 == "sparse" else 0.0
        model.compile(optimizers.make(cfg_lib.Optimizer(optimizer), 1e-3, table_l2=sparse,
                                      l2_tables=models.embedding_tables(model)),
                      tf.keras.losses.BinaryCrossentropy(from_logits=True))
    return model, None


def time_model(model, schema, split_fn):
    ds = records.make_dataset(schema, "train", FLAGS.batch_size, shuffle=True, seed=0, repeat=True, drop_remainder=True)
    if split_fn is not None:
        ds = ds.map(split_fn)
    timer = StepTimer(FLAGS.warmup)
    model.fit(ds, epochs=1, steps_per_epoch=FLAGS.warmup + FLAGS.steps, callbacks=[timer], verbose=0)
    ms = 1000 * statistics.median(timer.times)
    return ms, FLAGS.batch_size / ms * 1000


def main(argv):
    del argv
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    text = os.path.join(FLAGS.work_dir, f"synthetic_{FLAGS.rows}.tsv")
    if not os.path.exists(text + ".proba"):
        synthetic.write(text, FLAGS.rows, seed=0, scale=1.0)
    results = []
    for size in [int(s) for s in FLAGS.sizes]:
        out = os.path.join(FLAGS.work_dir, f"hash_{size}")
        shutil.rmtree(out, ignore_errors=True)
        schema = convert.convert(convert.ConvertConfig(
            inputs=(text,), output_dir=out, categorical_encoding="hash", hash_buckets=max(size // 26 - 1, 1),
            split=(1, 0, 0), progress=False))
        rows = sum(schema.vocab_sizes)
        for opt in FLAGS.optimizers:
            results.append((rows, f"ctr_tf DeepFM, {opt}, float32", *time_model(*ours(schema, opt, "float32")[:1], schema, None)))
            print(results[-1], flush=True)
        for mode in FLAGS.table_l2:
            results.append((rows, f"ctr_tf DeepFM, lazy_adam, table L2 {mode}", *time_model(
                ours(schema, "lazy_adam", "float32", mode)[0], schema, None)))
            print(results[-1], flush=True)
        for prec in FLAGS.precisions:
            if prec != "float32":
                results.append((rows, f"ctr_tf DeepFM, lazy_adam, {prec}", *time_model(ours(schema, "lazy_adam", prec)[0], schema, None)))
                print(results[-1], flush=True)
        if FLAGS.baseline:
            model, split_fn = obvious_keras_deepfm(schema)
            results.append((rows, "obvious Keras DeepFM, Adam, float32", *time_model(model, schema, split_fn)))
            print(results[-1], flush=True)
        tf.keras.backend.clear_session()
    devices = ", ".join(d.device_type for d in tf.config.list_logical_devices())
    print(f"\nDeepFM, batch {FLAGS.batch_size}, embedding {EMB}, MLP {HIDDEN}; devices: {devices}")
    print(f"{'embedding rows':>14}  {'configuration':<42} {'ms/step':>9} {'examples/s':>11}")
    for rows, name, ms, eps in results:
        print(f"{rows:>14,}  {name:<42} {ms:>9.1f} {eps:>11,.0f}")


if __name__ == "__main__":
    app.run(main)
