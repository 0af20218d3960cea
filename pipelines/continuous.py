"""Continuous training: logs that arrive span by span (a day, an hour), each scored by the served
model before it is trained on, trained on by a candidate that continues the served model, gated,
and pushed as the next version the server picks up.

  python -m pipelines.continuous --spans='logs/day_*.tsv' --flagfile=deepfm.flags \\
      --work_dir=runs/daily --serving_base_path=serving/deepfm [--watch --poll_seconds=60] \\
      [--span_epochs=1] [--gate_holdout=0.1] [--gate_max_auc_drop=0.001] [--gate_max_reference_drop=0.01] \\
      [--gate_ctr_ratio=0.9,1.1] [--keep_versions=3] [--expire_after_spans=K] [--max_spans=N] \\
      [converter encoding flags] [trainer flags]

A span is one file, or one directory of files, matching --spans, taken in sorted order, in any
format the converter reads. Everything lives under --work_dir (ctr_tf.continuous.pipeline): a
killed run, started again with the same command, resumes in the step it was in. The history is
<work_dir>/history.tsv (and .json, TensorBoard scalars under tensorboard/, progressive_auc.png).
"""
import sys

from absl import flags

import ctr_tf  # noqa: F401  (tf-keras before TensorFlow)
from ctr_tf import config as cfg_lib
from ctr_tf import console
from ctr_tf import flags as ctr_flags
from ctr_tf.continuous import pipeline
from ctr_tf.runtime import TrainingError
from pipelines.convert_flags import define_encoding_flags, encoding_config

FLAGS = flags.FLAGS


def define_flags():
    ctr_flags.define_flags()
    define_encoding_flags()
    flags.DEFINE_string("spans", None, "A glob: each match, a file or a directory of files, is one span, in sorted "
                        "order.")
    flags.DEFINE_string("work_dir", None, "Where the spans' data, candidates, state and history live.")
    flags.DEFINE_string("serving_base_path", None, "The served model's base path (<dir>/<model name>): pushed "
                        "versions land in it, as TF Serving and serving.server read them.")
    flags.DEFINE_boolean("watch", False, "Keep polling --spans for new spans until --max_spans, SIGTERM or Ctrl-C.")
    flags.DEFINE_float("poll_seconds", 60.0, "--watch: seconds between looks for new spans.")
    flags.DEFINE_integer("max_spans", 0, "Stop once this many spans are done (0: no limit).")
    flags.DEFINE_integer("span_epochs", 1, "Epochs the candidate trains on each span.")
    flags.DEFINE_float("gate_holdout", 0.1, "The fraction of each span's rows (drawn by line hash) held out for the "
                       "gate, never trained on.")
    flags.DEFINE_float("gate_max_auc_drop", 0.001, "Push only if the candidate's AUC on this span's holdout is at "
                       "least the served model's less this.")
    flags.DEFINE_float("gate_max_reference_drop", 0.01, "... and its AUC on the holdout the served model was pushed "
                       "on is at least the served model's less this (a span of broken labels trains a model that "
                       "looks good on its own rows only).")
    flags.DEFINE_list("gate_ctr_ratio", ["0.9", "1.1"], "... and its predicted/actual CTR on this span's holdout is "
                      "within LOW,HIGH.")
    flags.DEFINE_float("gate_first_min_auc", 0.55, "The first span pushes if its candidate's holdout AUC is above "
                       "this.")
    flags.DEFINE_integer("keep_versions", 3, "Served versions kept under --serving_base_path.")
    flags.DEFINE_integer("expire_after_spans", 0, "Vocabulary mode: a value unseen for this many spans goes back to "
                         "OOV and its row is reused, reset, by the next admitted value (0: never).")


def config_from_flags() -> pipeline.ContinuousConfig:
    for name in ("spans", "work_dir", "serving_base_path"):
        if not FLAGS[name].value:
            raise cfg_lib.ConfigError(f"--{name} is required")
    FLAGS.data_dir = FLAGS.data_dir or "-"      # per span: the trainer's own are set by the pipeline
    FLAGS.model_dir = FLAGS.model_dir or "-"
    try:
        ratio = tuple(float(x) for x in FLAGS.gate_ctr_ratio)
    except ValueError:
        raise cfg_lib.ConfigError(f"--gate_ctr_ratio={','.join(FLAGS.gate_ctr_ratio)!r}: expected LOW,HIGH") from None
    if len(ratio) != 2:
        raise cfg_lib.ConfigError(f"--gate_ctr_ratio={','.join(FLAGS.gate_ctr_ratio)!r}: expected LOW,HIGH")
    return pipeline.ContinuousConfig(
        spans=FLAGS.spans, work_dir=FLAGS.work_dir, serving_base_path=FLAGS.serving_base_path,
        experiment=ctr_flags.config_from_flags(), convert=encoding_config(inputs=(), output_dir="-"),
        flags_text=ctr_flags.flags_text(), span_epochs=FLAGS.span_epochs, gate_holdout=FLAGS.gate_holdout,
        gate=pipeline.Gate(FLAGS.gate_max_auc_drop, FLAGS.gate_max_reference_drop, ratio, FLAGS.gate_first_min_auc),
        keep_versions=FLAGS.keep_versions, expire_after_spans=FLAGS.expire_after_spans, watch=FLAGS.watch,
        poll_seconds=FLAGS.poll_seconds, max_spans=FLAGS.max_spans)


def main(argv):
    console.quiet_python_logging()
    if len(argv) > 1:
        sys.exit(f"continuous: unexpected arguments {argv[1:]}")
    try:
        rows = pipeline.ContinuousTraining(config_from_flags()).run()
    except (cfg_lib.ConfigError, ValueError, TrainingError) as e:
        sys.exit(f"continuous: error: {e}")
    print(f"\n{len(rows)} span(s) in {FLAGS.work_dir}/history.tsv")
    for r in rows:
        print(f"  {r['span']:<24} {r['decision']:<8} progressive AUC {r['progressive_auc']:.4f}  version "
              f"{r['version'] or '-':<4} {r['reason']}")


if __name__ == "__main__":
    define_flags()
    ctr_flags.run_app(main, "continuous")
