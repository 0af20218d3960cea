"""Writes synthetic Criteo text from a planted model.

  python -m pipelines.synthetic_criteo --rows=100000 --output=/tmp/synth.tsv [--seed=0] [--scale=0.001]
"""
from absl import app, flags

import ctr_tf  # noqa: F401
from ctr_tf.data import synthetic

flags.DEFINE_integer("rows", 100_000, "Number of rows to write.")
flags.DEFINE_string("output", None, "Output file (Criteo Kaggle TSV); probabilities go to <output>.proba.")
flags.DEFINE_integer("seed", 0, "Seed of the planted model (and of the rows unless --data_seed).")
flags.DEFINE_integer("data_seed", None, "Seed of the rows: same --seed, other --data_seed = held-out data.")
flags.DEFINE_float("scale", 0.001, "Scale of Kaggle's per-field cardinalities (1.0 = Kaggle's ~34M values).")
flags.DEFINE_float("positive_rate", 0.25, "Target click rate.")
flags.mark_flag_as_required("output")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    info = synthetic.write(FLAGS.output, FLAGS.rows, seed=FLAGS.seed, scale=FLAGS.scale,
                           positive_rate=FLAGS.positive_rate, data_seed=FLAGS.data_seed)
    print(f"wrote {info['rows']:,} rows to {FLAGS.output} (positive rate {info['positive_rate']:.4f}); "
          f"true probabilities in {FLAGS.output}.proba")


if __name__ == "__main__":
    app.run(main)
