"""Training curves as pictures, read from TensorBoard event files with TensorBoard's reader.

  python -m pipelines.plot --logdir=DIR --output_dir=DIR [--runs=GLOB]

A run is any directory under --logdir holding tensorboard/train (a trainer model_dir). Writes
train_loss.png, train_auc.png and eval_auc.png, one line per run, per epoch.
"""
from __future__ import annotations

import fnmatch
import os
import sys

import ctr_tf  # noqa: F401
from absl import app, flags

from ctr_tf import console

FIGURES = (("train_loss.png", "train", "epoch_loss", "training loss"),
           ("train_auc.png", "train", "epoch_auc", "training AUC"),
           ("eval_auc.png", "eval", "epoch_auc", "evaluation AUC"))


def find_runs(logdir: str, pattern: str = "*") -> dict[str, str]:
    """{run name (path relative to logdir): model_dir} for every model_dir with TensorBoard events."""
    runs = {}
    for root, dirs, _ in os.walk(logdir):
        if os.path.isdir(os.path.join(root, "tensorboard", "train")):
            name = os.path.relpath(root, logdir)
            name = os.path.basename(os.path.abspath(logdir)) if name == "." else name
            if fnmatch.fnmatch(name, pattern):
                runs[name] = root
            dirs[:] = []
    return dict(sorted(runs.items()))


def read_scalars(event_dir: str, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one scalar tag, from tf.summary (tensor) or legacy scalar events."""
    from tensorboard.backend.event_processing import event_accumulator
    import tensorflow as tf
    if not os.path.isdir(event_dir):
        return []
    acc = event_accumulator.EventAccumulator(event_dir, size_guidance={event_accumulator.TENSORS: 0,
                                                                       event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()
    points = {}
    if tag in tags.get("tensors", []):
        for e in acc.Tensors(tag):
            points[e.step] = float(tf.make_ndarray(e.tensor_proto))
    elif tag in tags.get("scalars", []):
        for e in acc.Scalars(tag):
            points[e.step] = float(e.value)
    return sorted(points.items())  # a resumed run rewrites an epoch: the last value wins


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, output_dir: str, filename: str) -> str:
    """Writes a figure as PNG, closes it, returns its path."""
    fig.tight_layout()
    path = os.path.join(output_dir, filename)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def plot_runs(logdir: str, output_dir: str, pattern: str = "*") -> list[str]:
    plt = pyplot()
    runs = find_runs(logdir, pattern)
    if not runs:
        raise FileNotFoundError(f"no run with TensorBoard events (tensorboard/train) under {logdir}"
                                + ("" if pattern == "*" else f" matching {pattern!r}"))
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for filename, sub, tag, label in FIGURES:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        drawn = 0
        for name, model_dir in runs.items():
            points = read_scalars(os.path.join(model_dir, "tensorboard", sub), tag)
            if points:
                ax.plot([s for s, _ in points], [v for _, v in points], marker="o", markersize=3, label=name)
                drawn += 1
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{label} per epoch" + ("" if drawn else " (no data)"))
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize="small", loc="best")
        paths.append(save(fig, output_dir, filename))
    return paths


def define_flags():
    """The command's flags, defined only when it runs (compare_models and sweep import plot_runs)."""
    flags.DEFINE_string("logdir", None, "A model_dir, or a directory holding several (searched recursively).")
    flags.DEFINE_string("output_dir", None, "Where the PNG files go.")
    flags.DEFINE_string("runs", "*", "Glob over run names (paths relative to --logdir).")


def main(argv):
    console.quiet_python_logging()
    del argv
    f = flags.FLAGS
    if not f.logdir or not f.output_dir:
        sys.exit("plot: error: --logdir and --output_dir are required")
    try:
        paths = plot_runs(f.logdir, f.output_dir, f.runs)
    except FileNotFoundError as e:
        sys.exit(f"plot: error: {e}")
    print(f"{len(find_runs(f.logdir, f.runs))} run(s): wrote " + ", ".join(paths))


if __name__ == "__main__":
    define_flags()
    app.run(main)
