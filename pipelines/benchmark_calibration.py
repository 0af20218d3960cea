"""Are the served probabilities probabilities? DeepFM from its flagfile on planted data, trained on
all rows and on downsampled negatives, exported plain and calibrated, each export scored on
held-out rows it never saw against the true click probabilities.

  python -m pipelines.benchmark_calibration [--rows=400000] [--heldout_rows=60000]
      [--rates=1,0.25,0.1] [--calibrations=platt,isotonic] [--calibration_rows=10000,30000,0]
      [--work_dir=DIR] [trainer flags]

For each negative-downsampling rate one training run (`--negative_downsampling`); the run at rate
1 is exported again with each `--calibration` (`--mode=export`, fitted on the validation split).
With the flagfile's --refit_intercept, each run is also scored as trained ("as trained": the
export's logits less the refit offset, corrected for downsampling only).
Every export is loaded as TF Serving would load it and scores the held-out raw text through its
`serving_default` signature. A second table fits each calibration on the first N rows of the
rate-1 run's validation split, for each N of `--calibration_rows` (0: all of them), and scores
the held-out rows through the map: a map that overfits its rows shows up at small N. The table: training examples/s, test AUC, logloss, NE, ECE (20
equal-mass bins) and predicted/actual CTR of each export, and the same for the Bayes-optimal
probabilities. Goals: AUC at 0.25 within 0.005 of rate 1; predicted/actual CTR in 0.97-1.03 at
0.25 and 0.1, in 0.98-1.02 calibrated; calibrated ECE no worse than the plain export's.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys

import ctr_tf  # noqa: F401  (tf-keras before TensorFlow)
from absl import flags

from ctr_tf import config as cfg_lib
from ctr_tf import console, metrics, trainer
from ctr_tf import flags as ctr_flags
from ctr_tf.data import convert as convert_lib
from ctr_tf.data import synthetic
from pipelines import experiment

FLAGS = flags.FLAGS


class _InProcess:
    """serving.client's predict(rows) over a loaded SavedModel: its serving_default probability;
    with without_offset, the probability of its predict_logits less that offset; with logits, the
    predict_logits themselves."""

    def __init__(self, export_path: str, without_offset: float | None = None, logits: bool = False):
        import tensorflow as tf
        self.tf = tf
        self.without_offset, self.logits = without_offset, logits
        signatures = tf.saved_model.load(export_path).signatures
        self.fn = signatures["serving_default" if without_offset is None and not logits else "predict_logits"]

    def predict(self, rows: dict):
        out = self.fn(**{k: self.tf.constant(v) for k, v in rows.items()})
        if self.logits:
            return out["logits"].numpy().reshape(-1).astype("float64")
        if self.without_offset is None:
            return out["probability"].numpy().reshape(-1)
        from ctr_tf.evaluation import probabilities
        return probabilities(out["logits"].numpy().reshape(-1).astype("float64") - self.without_offset)


def score_export(export_path: str, heldout: str, without_offset: float | None = None) -> dict:
    """The export's metrics on the held-out rows; with without_offset, of its logits less that
    refit intercept (the model as trained, corrected for downsampling only)."""
    from serving import client as client_lib
    probs, labels, rejects = client_lib.score_file(_InProcess(export_path, without_offset), heldout, 4096)
    if rejects:
        raise RuntimeError(f"{len(rejects)} held-out lines were rejected: {rejects[:3]}")
    return metrics.summary(labels, probs)


def prepare(work: str, rows: int, heldout_rows: int, scale: float) -> tuple[str, str, dict]:
    text, heldout, data = (os.path.join(work, n) for n in ("train.tsv", "heldout.tsv", "tfrecords"))
    if not os.path.exists(os.path.join(data, "schema.json")):
        synthetic.write(text, rows, seed=0, scale=scale)
        synthetic.write(heldout, heldout_rows, seed=0, scale=scale, data_seed=1)
        convert_lib.convert(convert_lib.ConvertConfig(inputs=(text,), output_dir=data, progress=False))
    import numpy as np
    y = np.array([int(line.split("\t", 1)[0]) for line in open(heldout)], dtype=np.float64)
    bayes = metrics.summary(y, synthetic.read_probabilities(heldout))
    return data, heldout, bayes


def calibration_sizes(model_dir: str, data: str, heldout: str, export_path: str, calibrations, sizes, overrides,
                      flagfile: str) -> list[dict]:
    """Each calibration fitted on the first N validation rows of the run in model_dir, scored on
    the held-out rows' logits (the export's predict_logits: shifted, uncalibrated)."""
    from ctr_tf import calibration as calibration_lib
    from serving import client as client_lib
    cfg, _ = experiment.trial_config(flagfile, data, model_dir, overrides)
    run = trainer.Run(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, mode=cfg_lib.Mode.EXPORT)))
    run.restore_for_export()
    run.fits.refit_intercept()
    y_valid, z_valid = run.scorer.labelled_logits(run.dataset("valid", False))
    z_held, y_held, _ = client_lib.score_file(_InProcess(export_path, logits=True), heldout, 4096)
    table = [{**metrics.summary(y_held, calibration_lib.Calibration().probability(z_held)), "fit": "none", "fit_rows": 0}]
    for n in sizes:
        n = n or len(y_valid)
        for method in calibrations:
            try:
                c = calibration_lib.Calibration.fit(method, y_valid[:n], z_valid[:n])
            except ValueError as e:
                table.append({"fit": method, "fit_rows": n, "refused": str(e)})
                continue
            table.append({**metrics.summary(y_held, c.probability(z_held)), "fit": method, "fit_rows": n})
    return table


def run(work: str, rows: int, heldout_rows: int, scale: float, rates, calibrations, overrides,
        sizes=()) -> tuple[list[dict], list[dict]]:
    os.makedirs(work, exist_ok=True)
    data, heldout, bayes = prepare(work, rows, heldout_rows, scale)
    flagfile = ctr_flags.shipped_flagfile("deepfm")
    table = []
    for rate in rates:
        model_dir = os.path.join(work, f"deepfm-rate-{rate:g}")
        shutil.rmtree(model_dir, ignore_errors=True)
        cfg, text = experiment.trial_config(flagfile, data, model_dir, [*overrides, f"--negative_downsampling={rate}"])
        out = trainer.run(cfg, text)
        speed = out["train"]["examples_per_second"]
        intercept = (out.get("test") or {}).get("intercept")
        if intercept is not None:
            table.append({"export": f"rate {rate:g}, as trained", "examples_per_second": speed,
                          **score_export(out["export"], heldout, without_offset=intercept["offset"])})
        table.append({"export": f"rate {rate:g}", "examples_per_second": speed,
                      **score_export(out["export"], heldout)})
        if rate == 1.0:
            for method in calibrations:
                cfg_x, text_x = experiment.trial_config(flagfile, data, model_dir,
                                                        [*overrides, f"--calibration={method}"])
                cfg_x = dataclasses.replace(cfg_x, train=dataclasses.replace(cfg_x.train, mode=cfg_lib.Mode.EXPORT))
                try:
                    path = trainer.run(cfg_x, text_x)["export"]
                except trainer.TrainingError as e:  # isotonic on too few validation rows
                    table.append({"export": f"rate 1, {method}", "refused": str(e)})
                    continue
                table.append({"export": f"rate 1, {method}", "examples_per_second": speed,
                              **score_export(path, heldout)})
            by_size = calibration_sizes(model_dir, data, heldout, out["export"], calibrations, sizes, overrides,
                                        flagfile) if sizes else []
    table.append({"export": "Bayes-optimal", "examples_per_second": float("nan"), **bayes})
    return table, by_size


def format_table(table: list[dict], heldout_rows: int) -> str:
    lines = [f"DeepFM (deepfm.flags) exports scored on {heldout_rows:,} held-out planted rows",
             f"{'export':<22} {'train ex/s':>10} {'AUC':>8} {'logloss':>8} {'NE':>7} {'ECE':>7} {'pred/actual':>11}"]
    for r in table:
        if "refused" in r:
            lines.append(f"{r['export']:<22} refused: {r['refused'].split(':')[0]}")
            continue
        speed = "-" if r["examples_per_second"] != r["examples_per_second"] else f"{r['examples_per_second']:,.0f}"
        lines.append(f"{r['export']:<22} {speed:>10} {r['auc']:>8.4f} {r['logloss']:>8.4f} {r['ne']:>7.4f} "
                     f"{r['ece']:>7.4f} {r['ctr_ratio']:>11.4f}")
    return "\n".join(lines)


def format_sizes(rows: list[dict]) -> str:
    lines = ["Calibration maps of the rate-1 run fitted on its first N validation rows, on the held-out rows",
             f"{'map':<10} {'fit rows':>9} {'AUC':>8} {'logloss':>8} {'ECE':>7} {'pred/actual':>11}"]
    for r in rows:
        if "refused" in r:
            lines.append(f"{r['fit']:<10} {r['fit_rows']:>9,} refused: {r['refused'].split(':')[0]}")
            continue
        lines.append(f"{r['fit']:<10} {r['fit_rows']:>9,} {r['auc']:>8.4f} {r['logloss']:>8.4f} {r['ece']:>7.4f} "
                     f"{r['ctr_ratio']:>11.4f}")
    return "\n".join(lines)


def define_flags():
    ctr_flags.define_flags()
    flags.DEFINE_integer("rows", 400_000, "Planted rows converted for training (split 8/1/1).")
    flags.DEFINE_integer("heldout_rows", 60_000, "Held-out planted rows (another data seed) that score the exports.")
    flags.DEFINE_float("scale", 0.001, "Scale of Kaggle's cardinalities for the planted data.")
    flags.DEFINE_list("rates", ["1", "0.25", "0.1"], "Negative-downsampling rates, one training each.")
    flags.DEFINE_list("calibrations", ["platt", "isotonic"], "Calibrations of the rate-1 run, one export each.")
    flags.DEFINE_list("calibration_rows", ["10000", "30000", "0"], "Validation rows each calibration is also fitted "
                      "on (the first N; 0: all), each scored on the held-out rows; empty: no such table.")
    flags.DEFINE_string("work_dir", "/tmp/ctr_tf_bench_calibration", "Scratch directory (data is reused).")


def main(argv):
    console.quiet_python_logging()
    if len(argv) > 1:
        sys.exit(f"benchmark_calibration: unexpected arguments {argv[1:]}")
    try:
        rates = [float(r) for r in FLAGS.rates]
        overrides = experiment.command_line_overrides(exclude=("negative_downsampling", "calibration"))
        sizes = [int(n) for n in FLAGS.calibration_rows]
        overrides = [o for o in overrides if not o.startswith("--calibration_rows")]
        table, by_size = run(FLAGS.work_dir, FLAGS.rows, FLAGS.heldout_rows, FLAGS.scale, rates, FLAGS.calibrations,
                             overrides, sizes)
    except (cfg_lib.ConfigError, ValueError) as e:
        sys.exit(f"benchmark_calibration: error: {e}")
    print("\n" + format_table(table, FLAGS.heldout_rows), flush=True)
    if by_size:
        print("\n" + format_sizes(by_size), flush=True)


if __name__ == "__main__":
    define_flags()
    ctr_flags.run_app(main, "benchmark_calibration")
