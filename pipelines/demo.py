"""The main job on an embedded default, through the same commands a user runs.

  python -m pipelines.demo [--work_dir=demo] [--rows=200000] [--epochs=2] [--heldout_rows=20000]

1. python -m pipelines.synthetic_criteo     synthetic Criteo text with known click probabilities
2. python -m pipelines.criteo_to_tfrecords  TFRecords + schema.json (vocabulary, log1p)
3. python -m ctr_tf.train --flagfile=deepfm.flags   train, evaluate, export (the shipped flagfile)
4. python -m serving.server + python -m serving.client   serve the export over the TF Serving
   gRPC API and score held-out raw rows (when the serving package is present)

Every step runs in the current directory, so `--work_dir` (default ./demo) is relative to it,
wherever the package is installed.
"""
import importlib.util
import os
import shutil
import subprocess
import sys

from absl import app, flags

flags.DEFINE_string("work_dir", "demo", "Where the demo writes its data, model and predictions.")
flags.DEFINE_integer("rows", 200_000, "Synthetic rows.")
flags.DEFINE_integer("epochs", 2, "Training epochs.")
flags.DEFINE_integer("heldout_rows", 20_000, "Held-out rows of the same planted model, scored over gRPC.")
FLAGS = flags.FLAGS


def step(title, args):
    print(f"\n=== {title}\n$ {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", *args], check=True)


def main(argv):
    del argv
    work = os.path.abspath(FLAGS.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    text = os.path.join(work, "synthetic_criteo.tsv")
    data = os.path.join(work, "tfrecords")
    model = os.path.join(work, "model")
    heldout = os.path.join(work, "heldout_criteo.tsv")
    step("1. synthetic Criteo", ["pipelines.synthetic_criteo", f"--rows={FLAGS.rows}", f"--output={text}"])
    step("1b. held-out rows from the same planted model", ["pipelines.synthetic_criteo",
                                                          f"--rows={FLAGS.heldout_rows}", "--data_seed=1",
                                                          f"--output={heldout}"])
    step("2. text -> TFRecords + schema.json", ["pipelines.criteo_to_tfrecords", f"--input={text}",
                                                f"--output_dir={data}", "--progress=false"])
    step("3. train, evaluate, export DeepFM", ["ctr_tf.train", "--flagfile=deepfm.flags",
                                               f"--data_dir={data}", f"--model_dir={model}",
                                               f"--epochs={FLAGS.epochs}", "--batch_size=1024"])
    if importlib.util.find_spec("serving.local_demo") is not None:
        step("4. serve over the TF Serving gRPC API and score raw rows",
             ["serving.local_demo", f"--export_dir={os.path.join(model, 'export')}", f"--input={heldout}",
              f"--rows={FLAGS.heldout_rows}", f"--output={os.path.join(work, 'predictions.txt')}"])
    print(f"\ndemo done: everything is under {work}")


if __name__ == "__main__":
    app.run(main)
