"""The maps fitted after training, for the epoch that is exported, between the model's logit and
the served probability (ctr_tf.calibration has the math): the refit intercept, on the training
split, and the calibration, on the validation split. `--mode=export` and `--mode=predict` reuse a
fit stored in the model_dir for the same epoch (and shift); training modes fit anew."""
from __future__ import annotations

import time

from ctr_tf import calibration as calibration_lib
from ctr_tf import config as cfg_lib
from ctr_tf.runtime import TrainingError


class ProbabilityFits:
    """The fits of one trainer Run (ctr_tf.trainer): `intercept` and `calibration`, None until
    fitted (or when not asked for)."""

    def __init__(self, run):
        self.run = run
        self.intercept = None
        self.calibration = None
        split = run.cfg.data.eval_split
        rows = run.schema.split_rows(split) if split else 0
        if run.t.calibration == cfg_lib.CalibrationMethod.ISOTONIC and rows < calibration_lib.ISOTONIC_MIN_ROWS:
            raise TrainingError(f"--calibration=isotonic needs at least {calibration_lib.ISOTONIC_MIN_ROWS:,} "
                                f"validation rows, and the {split or 'no'} split has {rows:,}: on fewer its block "
                                "offsets are mostly noise; use --calibration=platt (two parameters) or more "
                                "validation rows")

    def _stored(self, stored, **conditions):
        """A fit saved in model_dir that --mode=export and predict reuse: one made for the same
        epoch (and the given conditions); None in training modes, which fit anew."""
        run = self.run
        reuse = run.t.mode in (cfg_lib.Mode.EXPORT, cfg_lib.Mode.PREDICT)
        return stored if reuse and calibration_lib.fitted_for(
            stored, epoch=run.epoch_in_model, negative_downsampling=run.t.negative_downsampling, **conditions) else None

    def refit_intercept(self):
        """With --refit_intercept: the logit offset for the weights in the model (the epoch to
        export) that makes the mean probability on the training split (read whole, no downsampling)
        equal its click rate; added to the logit shift everywhere a probability is made from here on
        (the final evaluation, the calibration fit, the export, predict). Saved as intercept.json."""
        run, t = self.run, self.run.t
        if not t.refit_intercept:
            return None
        base = calibration_lib.downsampling_shift(t.negative_downsampling)
        fitted = self._stored(calibration_lib.Intercept.load(t.model_dir))
        if fitted is None:
            t0 = time.perf_counter()
            try:
                fitted = calibration_lib.Intercept.fit(
                    run.scorer.batches(run.dataset("train", False)), base,
                    {"split": "train", "epoch": run.epoch_in_model, "negative_downsampling": t.negative_downsampling})
            except ValueError as e:
                raise TrainingError(f"--refit_intercept: the training split: {e}") from None
            run.timings["intercept_seconds"] = time.perf_counter() - t0
            if run.chief:
                fitted.save(t.model_dir)
        self.intercept = fitted
        run.scorer.logit_shift = base + fitted.offset
        print(f"intercept refit on {fitted.fitted_on['rows']:,} train rows of epoch {run.epoch_in_model}: logit "
              f"offset {fitted.offset:+.4f} (their predicted/actual CTR was {fitted.fitted_on['ctr_ratio_before']:.4f})",
              flush=True)
        return fitted

    def calibrate(self):
        """With --calibration: the map for the weights in the model (the epoch to export), fitted on
        the validation split's probabilities (after the logit shift) and saved as calibration.json;
        --mode=export and predict reuse a saved one fitted for the same epoch and shift."""
        run, t = self.run, self.run.t
        method = t.calibration
        if method == cfg_lib.CalibrationMethod.NONE:
            self.calibration = None
            return None
        split = run.cfg.data.eval_split
        stored = self._stored(calibration_lib.Calibration.load(t.model_dir), logit_shift=run.logit_shift)
        if stored is not None and stored.method == method:
            self.calibration = stored
        else:
            if not split or run.schema.split_rows(split) == 0:
                raise TrainingError(f"--calibration={method.value} is fitted on the validation split, and "
                                    f"{run.cfg.data.data_dir} has no rows in {split!r} (--eval_split)")
            y, z = run.scorer.labelled_logits(run.dataset(split, False))
            try:
                self.calibration = calibration_lib.Calibration.fit(
                    method, y, z, {"split": split, "epoch": run.epoch_in_model,
                                   "negative_downsampling": t.negative_downsampling, "logit_shift": run.logit_shift})
            except ValueError as e:
                raise TrainingError(f"--calibration={method.value}: {e}") from None
            if run.chief:
                self.calibration.save(t.model_dir)
        print(f"calibration ({self.calibration.describe()}) fitted on {self.calibration.fitted_on['rows']:,} "
              f"{split} rows of epoch {run.epoch_in_model}", flush=True)
        return self.calibration
