"""Training curves as pictures, read from TensorBoard event files with TensorBoard's reader.

  python -m pipelines.plot --logdir=DIR --output_dir=DIR [--runs=GLOB]

A run is any directory under --logdir holding tensorboard/train (a trainer model_dir). Writes,
one line per run, the legend beside the axes:
- train_loss.png, train_auc.png: per logged training step (the trainer logs every
  --log_every_n_steps; Keras' running mean over the epoch so far), against the global step; a run
  too short to have logged a step is drawn per epoch instead, and says so in the legend;
- eval_auc.png: the exact evaluation AUC after each epoch, on integer epoch ticks (epoch 1 is
  the end of the first epoch);
- reliability.png, for the runs that have a final evaluation (metrics-test.json): the mean
  predicted probability against the observed click rate in each of 20 equal-mass bins, the
  diagonal of perfect calibration, and the rows per bin; a calibrated run is drawn before
  (dashed) and after calibration.
"""
from __future__ import annotations

import fnmatch
import os
import sys

import ctr_tf  # noqa: F401
from absl import app, flags

from ctr_tf import console, fs

# (file, event subdirectory, per-step tag or None, per-epoch tag, axis label)
FIGURES = (("train_loss.png", "train", "batch_loss", "epoch_loss", "training loss"),
           ("train_auc.png", "train", "batch_auc", "epoch_auc", "training AUC"),
           ("eval_auc.png", "eval", None, "epoch_auc", "evaluation AUC"))


def find_runs(logdir: str, pattern: str = "*") -> dict[str, str]:
    """{run name (path relative to logdir): model_dir} for every model_dir with TensorBoard events."""
    runs = {}
    top = logdir.rstrip("/")
    for root, dirs, _ in fs.gfile.walk(top):
        root = root.rstrip("/")
        if fs.isdir(fs.join(root, "tensorboard", "train")):
            name = root[len(top) + 1:] if root != top else fs.basename(fs.abspath(top))
            if fnmatch.fnmatch(name, pattern):
                runs[name] = root
            dirs[:] = []
    return dict(sorted(runs.items()))


def read_scalars(event_dir: str, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one scalar tag, from tf.summary (tensor) or legacy scalar events."""
    from tensorboard.backend.event_processing import event_accumulator
    import tensorflow as tf
    if not fs.isdir(event_dir):
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
    path = fs.join(output_dir, filename)
    with fs.open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")  # a legend beside the axes is kept whole
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
    fs.makedirs(output_dir)
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
    reliability = plot_reliability(runs, output_dir)
    return paths + ([reliability] if reliability else [])


def reliability_curves(model_dir: str, split: str = "test") -> list[tuple[str, dict]]:
    """[(suffix, bins)] of a run's final evaluation: the served probabilities, and before
    calibration when it was calibrated; [] without metrics-<split>.json or bins in it."""
    path = fs.join(model_dir, f"metrics-{split}.json")
    if not fs.exists(path):
        return []
    m = fs.read_json(path)
    out = []
    if (m.get("uncalibrated") or {}).get("reliability"):
        out.append((" (before calibration)", m["uncalibrated"]["reliability"]))
    if m.get("reliability"):
        out.append(("" if not out else f" ({m.get('calibration', 'calibrated').split(':')[0]})", m["reliability"]))
    return out


def plot_reliability(runs: dict[str, str], output_dir: str, split: str = "test") -> str | None:
    curves = {name: reliability_curves(model_dir, split) for name, model_dir in runs.items()}
    curves = {name: c for name, c in curves.items() if c}
    if not curves:
        return None
    plt = pyplot()
    fig, (ax, ax_rows) = plt.subplots(2, 1, figsize=(8.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top, most = 0.0, 1
    for i, (name, parts) in enumerate(curves.items()):
        color = f"C{i % 10}"
        for suffix, bins in parts:
            dashed = "before" in suffix
            ax.plot(bins["predicted"], bins["observed"], color=color, linestyle="--" if dashed else "-",
                    marker="o", markersize=3, linewidth=1.0 if dashed else 1.4, label=name + suffix)
            top = max(top, max(bins["predicted"]), max(bins["observed"]))
            if not dashed:  # equal-mass bins hold equal rows; where they stand shows the spread
                ax_rows.vlines(bins["predicted"], 0, bins["rows"], color=color, linewidth=2, alpha=0.7)
                most = max(most, max(bins["rows"]))
    top = min(1.0, top * 1.05 + 0.01)
    ax.plot([0, top], [0, top], color="0.5", linestyle=":", linewidth=1.0, label="perfect calibration")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_ylabel("observed click rate")
    ax.set_title(f"reliability on the {split} split ({len(next(iter(curves.values()))[0][1]['rows'])} "
                 "equal-mass bins)")
    ax.grid(alpha=0.3)
    _legend_outside(ax, len(curves))
    ax_rows.set_xlabel("mean predicted probability in the bin")
    ax_rows.set_ylabel("rows per bin")
    ax_rows.set_ylim(0, most * 1.15)
    ax_rows.grid(alpha=0.3)
    return save(fig, output_dir, "reliability.png")


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
