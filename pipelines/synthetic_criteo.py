"""Writes synthetic Criteo text from a planted model.

  python -m pipelines.synthetic_criteo --rows=100000 --output=/tmp/synth.tsv [--seed=0] [--scale=0.001]
      [--teacher=fm|cubic] [--null_fields=C5,I3] [--explain]
  python -m pipelines.synthetic_criteo --days=8 --rows=200000 --output=logs/day.tsv   # logs/day_000.tsv, ...

--explain prints each field's share of the teacher's logit variance and writes it to
<output>.explain.json. --days writes one file a day whose id-like fields gain values every day and
whose click rate drifts (ctr_tf.data.synthetic.write_days).
"""
import sys

from absl import app, flags

import ctr_tf  # noqa: F401
from ctr_tf.data import synthetic

flags.DEFINE_integer("rows", 100_000, "Number of rows to write.")
flags.DEFINE_string("output", None, "Output file (Criteo Kaggle TSV); probabilities go to <output>.proba.")
flags.DEFINE_integer("seed", 0, "Seed of the planted model (and of the rows unless --data_seed).")
flags.DEFINE_integer("data_seed", None, "Seed of the rows: same --seed, other --data_seed = held-out data.")
flags.DEFINE_float("scale", 0.001, "Scale of Kaggle's per-field cardinalities (1.0 = Kaggle's ~34M values).")
flags.DEFINE_float("positive_rate", 0.25, "Target click rate.")
flags.DEFINE_enum("teacher", "fm", synthetic.TEACHERS, "The planted model: fm (second order), or cubic (plus a "
                  "third-order term over field triples).")
flags.DEFINE_list("null_fields", [], "Fields the teacher gives no weight (they carry no signal), e.g. C5,I3.")
flags.DEFINE_boolean("explain", False, "Print each field's share of the teacher's logit variance and write it to "
                     "<output>.explain.json.")
flags.DEFINE_integer("days", 0, "Write this many day files (<stem>_000<ext>, ...) of --rows rows each, with new "
                     "values every day in the id-like fields and a drifting click rate; 0: one file.")
flags.mark_flag_as_required("output")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    try:
        if FLAGS.days:
            for day in synthetic.write_days(FLAGS.output, FLAGS.days, FLAGS.rows, seed=FLAGS.seed, scale=FLAGS.scale,
                                            positive_rate=FLAGS.positive_rate, data_seed=FLAGS.data_seed,
                                            teacher=FLAGS.teacher, null_fields=FLAGS.null_fields):
                print(f"wrote {day['rows']:,} rows to {day['path']} (positive rate {day['positive_rate']:.4f})")
            return
        info = synthetic.write(FLAGS.output, FLAGS.rows, seed=FLAGS.seed, scale=FLAGS.scale,
                               positive_rate=FLAGS.positive_rate, data_seed=FLAGS.data_seed, teacher=FLAGS.teacher,
                               null_fields=FLAGS.null_fields, explain=FLAGS.explain)
    except ValueError as e:
        sys.exit(f"synthetic_criteo: error: {e}")
    print(f"wrote {info['rows']:,} rows to {FLAGS.output} (positive rate {info['positive_rate']:.4f}); "
          f"true probabilities in {FLAGS.output}.proba")
    if FLAGS.explain:
        print("each field's share of the teacher's logit variance (most first):")
        for name, share in sorted(info["field_shares"].items(), key=lambda kv: -kv[1]):
            print(f"  {name:<4} {share:.4f}")
        print(f"written to {FLAGS.output}.explain.json")


if __name__ == "__main__":
    app.run(main)
