"""Criteo / Avazu text -> sharded TFRecords + schema.json.

  python -m pipelines.criteo_to_tfrecords --input=GLOB[,GLOB] --output_dir=DIR \
      [--input_format=auto|criteo_tsv|criteo_csv|paddlerec_slot|avazu_csv|avazu_slot] \
      [--categorical_encoding=vocab|hash] [--min_count=N] [--hash_buckets=N] \
      [--dense_transform=log1p|bucketize|minmax] [--split=8,1,1] [--seed=N] \
      [--runner=local|beam [--beam_options='--runner=FlinkRunner --flink_master=HOST:8081']]

--runner=beam runs the same conversion as an Apache Beam pipeline (pip install 'ctr_tf[beam]');
without --beam_options, on Beam's DirectRunner with one worker process per core.
"""
import sys

from absl import app, flags

import ctr_tf  # noqa: F401
from ctr_tf.data import convert, reader
from pipelines.convert_flags import define_encoding_flags, encoding_config

define_encoding_flags()

flags.DEFINE_list("input", None, "Input files or globs, comma-separated (.gz allowed).")
flags.DEFINE_string("output_dir", None, "Directory for the TFRecords, schema.json, vocab/ and rejects.tsv.")
flags.DEFINE_list("split", ["8", "1", "1"], "train,valid,test ratios (a part may be 0).")
flags.DEFINE_list("valid_input", [], "Files for the validation split (then all of --input is train).")
flags.DEFINE_list("test_input", [], "Files for the test split (then all of --input is train).")
flags.DEFINE_integer("seed", 0, "Seed of the deterministic split.")
flags.DEFINE_boolean("overwrite", False, "Replace a data set already in --output_dir.")
flags.DEFINE_enum("runner", "local", ["local", "beam"],
                  "local: this process and its threads; beam: an Apache Beam pipeline (ctr_tf[beam]).")
flags.DEFINE_string("beam_options", "", "--runner=beam: Beam pipeline options, as one string (e.g. "
                    "'--runner=FlinkRunner --flink_master=host:8081'); default: DirectRunner, "
                    "multi-processing, one worker per core.")
flags.DEFINE_integer("beam_range_bytes", 64 << 20, "--runner=beam: bytes of input per unit of work "
                     "(a gzip file is one unit).")
flags.mark_flags_as_required(["input", "output_dir"])
FLAGS = flags.FLAGS


def config_from_flags() -> convert.ConvertConfig:
    try:
        split = tuple(float(x) for x in FLAGS.split)
    except ValueError:
        raise ValueError(f"--split={','.join(FLAGS.split)!r}: expected three numbers, e.g. 8,1,1") from None
    return encoding_config(inputs=tuple(FLAGS.input), output_dir=FLAGS.output_dir, split=split,
                           valid_inputs=tuple(FLAGS.valid_input), test_inputs=tuple(FLAGS.test_input), seed=FLAGS.seed,
                           overwrite=FLAGS.overwrite)


def main(argv):
    del argv
    if FLAGS.runner == "local" and (FLAGS.beam_options or FLAGS["beam_range_bytes"].present):
        sys.exit("criteo_to_tfrecords: error: --beam_options and --beam_range_bytes need --runner=beam")
    if FLAGS.beam_range_bytes < 1:
        sys.exit(f"criteo_to_tfrecords: error: --beam_range_bytes={FLAGS.beam_range_bytes}: must be >= 1")
    try:
        if FLAGS.runner == "beam":
            try:
                from ctr_tf.data import beam_convert
            except ImportError as e:
                sys.exit(f"criteo_to_tfrecords: error: {e}")
            schema = beam_convert.convert(config_from_flags(), FLAGS.beam_options, FLAGS.beam_range_bytes)
        else:
            schema = convert.convert(config_from_flags())
    except (ValueError, convert.ConversionError, reader.InputError) as e:
        sys.exit(f"criteo_to_tfrecords: error: {e}")
    print(convert.summary_table(schema))
    print(f"schema: {schema.path('schema.json')}")


if __name__ == "__main__":
    app.run(main)
