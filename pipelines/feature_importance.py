"""Which fields matter: permutation importance per field (ctr_tf.importance), on a training run's
split or on a served export fed raw rows.

  python -m pipelines.feature_importance --model_dir=runs/deepfm [--split=test] [--repeats=3]
  python -m pipelines.feature_importance --export_dir=runs/deepfm/export/deepfm/1 --input=test.txt
      [--fields=C3,C12] [--groups='counts=I1,I2,I3;ads=C3,C12'] [--output_dir=DIR] [--seed=0]

Each field (each raw input: I1..I13, C1..C26 on Criteo) is shuffled across the rows --repeats
times; the AUC drop and logloss rise against the unshuffled score, with their spread, go to the
console, <output_dir>/importance.md, importance.json and importance.png (the AUC drop per field,
most important first). --output_dir defaults to the model_dir, or the export's base path.
The model_dir form scores the run's exported epoch as the export would (its intercept and
calibration); the export form needs no training run at all.
"""
from __future__ import annotations

import dataclasses
import sys

import ctr_tf  # noqa: F401  (tf-keras before TensorFlow)
import numpy as np
from absl import app, flags

from ctr_tf import config as cfg_lib
from ctr_tf import console, fs, importance, trainer
from ctr_tf.data import formats, reader, records
from ctr_tf.evaluation import probabilities
from ctr_tf.runtime import TrainingError

flags.DEFINE_string("model_dir", None, "A training run's model_dir: its exported epoch is scored on --split.")
flags.DEFINE_string("data_dir", None, "With --model_dir: the converted data (default: the run's own).")
flags.DEFINE_enum("split", "test", ["train", "valid", "test"], "With --model_dir: the split whose rows are shuffled.")
flags.DEFINE_string("export_dir", None, "A SavedModel version directory, or a base path (its newest version).")
flags.DEFINE_string("input", None, "With --export_dir: raw rows with labels, in any format the converter reads.")
flags.DEFINE_integer("repeats", 3, "Shuffles per field.")
flags.DEFINE_list("fields", [], "Only these fields (default: every one).")
flags.DEFINE_string("groups", "", "Groups shuffled together, 'NAME=F1,F2;OTHER=F3,...' (added to the table).")
flags.DEFINE_string("output_dir", None, "Where importance.md/.json/.png go (default: the model_dir, or the base path).")
flags.DEFINE_integer("seed", 0, "Seed of the shuffles.")
flags.DEFINE_integer("batch_size", 8192, "Rows per scoring batch.")
FLAGS = flags.FLAGS


def from_model_dir(model_dir: str, split: str, data_dir: str | None, batch_size: int):
    """(score, data, labels, fields, title) of a model_dir's exported epoch on a split."""
    cfg = cfg_lib.ExperimentConfig.from_json(fs.read_json(fs.join(model_dir, "config.json")))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=data_dir or cfg.data.data_dir),
                              train=dataclasses.replace(cfg.train, mode=cfg_lib.Mode.EXPORT, model_dir=model_dir))
    run = trainer.Run(cfg)
    if run.schema.split_rows(split) == 0:
        with_rows = [s for s in ("train", "valid", "test") if run.schema.split_rows(s)]
        raise importance.ImportanceError(f"--split={split}: {cfg.data.data_dir} has no rows there (splits with rows: "
                                         f"{', '.join(with_rows)})")
    run.restore_for_export()
    run.fits.refit_intercept()
    run.fits.calibrate()
    label, dense, cat = records.read_all(run.schema.split_files(split), run.schema)
    fields = {}
    for raw in run.schema.raw_inputs:
        cols = [("dense", j) for j, f in enumerate(run.schema.dense_features) if f.source == raw.name]
        cols += [("cat", j) for j, f in enumerate(run.schema.categorical_features) if f.source == raw.name]
        if cols:
            fields[raw.name] = importance.Field(raw.name, tuple(cols))

    def score(data):
        import tensorflow as tf
        logits = []
        for start in range(0, len(label), batch_size):
            x = {k: tf.constant(data[k][start:start + batch_size]) for k in ("dense", "cat")}
            logits.append(run.scorer._step(x).numpy().reshape(-1))
        return probabilities(np.concatenate(logits) + run.logit_shift, run.calibration)
    title = f"{cfg.model.name}, {model_dir}, {split} split"
    return score, {"dense": dense, "cat": cat}, label, fields, title


def version_dir(path: str) -> str:
    """A version directory, or a base path's newest version."""
    if fs.exists(fs.join(path, "saved_model.pb")):
        return path
    from ctr_tf import export as export_lib
    found = export_lib.versions(path)
    if not found:
        raise importance.ImportanceError(f"--export_dir={path}: no SavedModel there (no saved_model.pb, no versions)")
    return fs.join(path, str(found[-1]))


def from_export(export_dir: str, path: str, batch_size: int):
    """(score, data, labels, fields, title) of a served export on raw rows."""
    import tensorflow as tf

    from serving import client as client_lib
    version = version_dir(export_dir)
    fn = tf.saved_model.load(version).signatures["serving_default"]
    wanted = sorted(fn.structured_input_signature[1])
    rejects = []
    batches = list(client_lib.read_batches(path, 1 << 16, rejects=rejects))
    if rejects:
        print(f"feature_importance: {len(rejects):,} lines of {path} did not parse and are left out (first: line "
              f"{rejects[0][0]}: {rejects[0][1]})", file=sys.stderr)
    if not batches:
        raise importance.ImportanceError(f"--input={path}: no rows")
    given = sorted(batches[0].rows)
    missing, extra = sorted(set(wanted) - set(given)), sorted(set(given) - set(wanted))
    if missing or extra:
        raise importance.ImportanceError(
            f"--input={path} is {reader.detect_layout(path).format} with columns that do not match the export's inputs: missing "
            f"{', '.join(missing) or 'none'}; not in the export {', '.join(extra) or 'none'}")
    data = {k: np.concatenate([b.rows[k] for b in batches]) for k in wanted}
    labels = np.concatenate([b.labels for b in batches])

    def score(rows):
        out = []
        for start in range(0, len(labels), batch_size):
            out.append(fn(**{k: tf.constant(v[start:start + batch_size]) for k, v in rows.items()})["probability"]
                       .numpy().reshape(-1))
        return np.concatenate(out)
    fields = {k: importance.Field(k, ((k, None),)) for k in wanted}
    return score, data, labels, fields, f"export {version}, {path}"


def main(argv):
    console.quiet_python_logging()
    if len(argv) > 1:
        sys.exit(f"feature_importance: unexpected arguments {argv[1:]}")
    if bool(FLAGS.model_dir) == bool(FLAGS.export_dir):
        sys.exit("feature_importance: error: give --model_dir or --export_dir (with --input)")
    if FLAGS.export_dir and not FLAGS.input:
        sys.exit("feature_importance: error: --export_dir needs --input (raw rows with labels)")
    try:
        if FLAGS.model_dir:
            score, data, labels, fields, title = from_model_dir(FLAGS.model_dir, FLAGS.split, FLAGS.data_dir,
                                                                FLAGS.batch_size)
            out = FLAGS.output_dir or FLAGS.model_dir
        else:
            score, data, labels, fields, title = from_export(FLAGS.export_dir, FLAGS.input, FLAGS.batch_size)
            out = FLAGS.output_dir or fs.dirname(version_dir(FLAGS.export_dir).rstrip("/"))
        chosen = importance.select(fields, FLAGS.fields, importance.parse_groups(FLAGS.groups))
        result = importance.measure(score, data, labels, chosen, FLAGS.repeats, FLAGS.seed,
                                    progress=lambda i, n, r: print(f"[{i}/{n}] {r['name']}: AUC drop "
                                                                   f"{r['auc_drop_mean']:+.5f}", flush=True))
    except (importance.ImportanceError, cfg_lib.ConfigError, TrainingError, reader.InputError,
            formats.FormatError) as e:
        sys.exit(f"feature_importance: error: {e}")
    fs.makedirs(out)
    text = importance.table(result, title)
    fs.publish_file(fs.join(out, "importance.md"), text + "\n")
    fs.write_json(fs.join(out, "importance.json"), {"title": title, **result}, indent=1)
    png = importance.chart(result, fs.join(out, "importance.png"), title)
    print("\n" + text + f"\n\nwritten: {fs.join(out, 'importance.md')}, importance.json, {fs.basename(png)}")


if __name__ == "__main__":
    app.run(main)
