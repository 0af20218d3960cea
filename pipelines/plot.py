"""Training curves as pictures, read from TensorBoard event files with TensorBoard's reader.

  python -m pipelines.plot --logdir=DIR --output_dir=DIR [--runs=GLOB]

A run is any directory under --logdir holding tensorboard/train (a trainer model_dir). Writes,
one line per run, the legend beside the axes:
- train_loss.png, train_auc.png: per logged training step (the trainer logs every
  --log_every_n_steps; Keras' running mean over the epoch so far), against the global step; a run
  too short to have logged a step is drawn per epoch instead, and says so in the legend;
- eval_auc.png: the exact evaluation AUC after each epoch, on integer epoch ticks (epoch 1 is
  the end of the first epoch).
"""
from __future__ import annotations

import fnmatch
import os
import sys

import ctr_tf  # noqa: F401
from absl import app, flags

from ctr_tf import console

# (file, event subdirectory, per-step tag or None, per-epoch tag, axis label)
FIGURES = (("train_loss.png", "train", "batch_loss", "epoch_loss", "training loss"),
           ("train_auc.png", "train", "batch_auc", "epoch_auc", "training AUC"),
           ("eval_auc.png", "eval", None, "epoch_auc", "evaluation AUC"))


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
    fig.savefig(path, dpi=110, bbox_inches="tight")  # a legend beside the axes is kept whole
    pyplot().close(fig)
    return path


def series(model_dir: str, sub: str, step_tag: str | None, epoch_tag: str) -> tuple[str, list, list]:
    """What one run contributes to a figure: ("step", steps, values) from the per-step tag when the
    run logged any step, else ("epoch", 1-based epochs, values); empty lists when it has neither."""
    event_dir = os.path.join(model_dir, "tensorboard", sub)
    if step_tag:
        points = read_scalars(event_dir, step_tag)
        if points:
            return "step", [s for s, _ in points], [v for _, v in points]
    points = read_scalars(event_dir, epoch_tag)
    return "epoch", [s + 1 for s, _ in points], [v for _, v in points]


def _legend_outside(ax, drawn: int):
    if drawn:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  frameon=False)


def _integer_epochs(ax, last: int):
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, max(last, 1) + 0.5)


def plot_runs(logdir: str, output_dir: str, pattern: str = "*") -> list[str]:
    plt = pyplot()
    runs = find_runs(logdir, pattern)
    if not runs:
        raise FileNotFoundError(f"no run with TensorBoard events (tensorboard/train) under {logdir}"
                                + ("" if pattern == "*" else f" matching {pattern!r}"))
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for filename, sub, step_tag, epoch_tag, label in FIGURES:
        drawn = {name: series(model_dir, sub, step_tag, epoch_tag) for name, model_dir in runs.items()}
        drawn = {name: d for name, d in drawn.items() if d[1]}
        per_step = step_tag is not None and any(kind == "step" for kind, _, _ in drawn.values())
        fig, ax = plt.subplots(figsize=(8.5, 4.5))
        last_epoch = 1
        for name, (kind, xs, ys) in drawn.items():
            if per_step and kind == "epoch":
                continue  # no per-step points: on a step axis it has nothing to draw
            many = len(xs) > 30
            ax.plot(xs, ys, marker=None if many else "o", markersize=3, linewidth=1.2, label=name)
            if kind == "epoch":
                last_epoch = max(last_epoch, max(xs))
        skipped = [n for n, (k, _, _) in drawn.items() if per_step and k == "epoch"]
        if per_step:
            ax.set_xlabel("training step")
            ax.set_title(f"{label} per logged step (running mean over the epoch)")
        else:
            ax.set_xlabel("epoch")
            ax.set_title(f"{label} per epoch" + ("" if drawn else " (no data)"))
            _integer_epochs(ax, last_epoch)
        if skipped:
            ax.plot([], [], " ", label=f"(no logged step: {', '.join(skipped)})")
        ax.grid(alpha=0.3)
        _legend_outside(ax, len(drawn))
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
