"""python -m ctr_tf.train --flagfile=deepfm.flags --data_dir=... --model_dir=...

`--flagfile=NAME.flags` is a file in the current directory or, failing that, the flagfile of that
name shipped with ctr_tf (`ctr_tf/flagfiles`); see `ctr_tf.flags`.
"""
import sys

import ctr_tf  # noqa: F401  (tf-keras before TensorFlow)

from ctr_tf import config as cfg_lib
from ctr_tf import flags as ctr_flags
from ctr_tf import schema as schema_lib

ctr_flags.define_flags()


def main(argv):
    if len(argv) > 1:
        sys.exit(f"train: unexpected arguments {argv[1:]}")
    from ctr_tf import console, trainer
    console.quiet_python_logging()
    try:
        cfg = ctr_flags.config_from_flags()
        trainer.run(cfg, ctr_flags.flags_text())
    except (cfg_lib.ConfigError, trainer.TrainingError, schema_lib.SchemaError) as e:
        sys.exit(f"train: error: {e}")


if __name__ == "__main__":
    ctr_flags.run_app(main, "train")
