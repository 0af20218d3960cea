"""Probabilities a bidder can use: NE, the equal-mass calibration error and reliability bins,
Platt and isotonic calibration, negative downsampling and its correction, and all of it inside
the export."""
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf import calibration as calibration_lib
from ctr_tf import config as cfg_lib
from ctr_tf import export as export_lib
from ctr_tf import metrics, trainer
from ctr_tf import schema as schema_lib
from ctr_tf.data import records, synthetic
from pipelines import plot
from tests import helpers
from tests.test_trainer import make_cfg, raw_rows


def _planted(n, seed, a=1.7, b=-1.2):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(a * z + b)))).astype(np.float64)
    return y, z


def test_normalized_entropy_is_logloss_over_the_base_rate_entropy():
    y, z = _planted(5000, 0)
    p = 1 / (1 + np.exp(-z))
    rate = y.mean()
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)) / -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    assert metrics.normalized_entropy(y, p) == pytest.approx(expected, rel=1e-9)
    assert metrics.normalized_entropy(y, np.full_like(p, rate)) == pytest.approx(1.0, rel=1e-9)
    assert math.isnan(metrics.normalized_entropy(np.ones(4), np.full(4, 0.5)))


def test_calibration_error_over_equal_mass_bins_against_a_loop():
    y, z = _planted(1003, 1)
    p = 1 / (1 + np.exp(-z))
    order = sorted(range(len(p)), key=lambda i: (p[i], i))
    sizes = [len(part) for part in np.array_split(np.arange(len(p)), 20)]
    total, start = 0.0, 0
    for size in sizes:
        idx = order[start:start + size]
        start += size
        total += size * abs(sum(p[i] for i in idx) / size - sum(y[i] for i in idx) / size)
    assert metrics.expected_calibration_error(y, p) == pytest.approx(total / len(p), rel=1e-9)
    bins = metrics.reliability(y, p)
    assert sorted(bins["rows"]) == sorted(sizes) and sum(bins["rows"]) == 1003
    assert bins["predicted"] == sorted(bins["predicted"])
    assert metrics.expected_calibration_error(y, 1 / (1 + np.exp(-(1.7 * z - 1.2)))) < 0.05  # the true map
    assert set(metrics.summary(y, p)) == {"auc", "logloss", "ne", "ece", "ctr_ratio", "rows"}


def test_platt_recovers_the_planted_sigmoid():
    y, z = _planted(40000, 2)
    c = calibration_lib.Calibration.fit("platt", y, z)
    assert c.a == pytest.approx(1.7, abs=0.08) and c.b == pytest.approx(-1.2, abs=0.06)


def test_isotonic_corrects_a_miscalibrated_model_keeps_the_order_and_matches_in_tensorflow():
    y, z = _planted(20000, 3, a=2.5, b=0.3)  # the true log-odds are 2.5 z + 0.3: the logits z are off
    c = calibration_lib.Calibration.fit("isotonic", y, z)
    knots, offsets = np.array(c.knots), np.array(c.offsets)
    assert np.all(np.diff(knots) > 0) and len(knots) <= calibration_lib.ISOTONIC_BLOCKS
    assert np.all(np.diff(knots + offsets) >= 0)  # corrected logits never decrease
    y2, z2 = _planted(20000, 4, a=2.5, b=0.3)
    q = c.probability(z2)
    order = np.argsort(z2)
    assert np.all(np.diff(q[order]) >= 0)
    assert metrics.exact_auc(y2, q) == pytest.approx(metrics.exact_auc(y2, z2), abs=2e-4)  # ties only where centres tie
    truth = 1 / (1 + np.exp(-(2.5 * z2 + 0.3)))
    assert np.mean(np.abs(q - truth)) < 0.03
    assert metrics.expected_calibration_error(y2, q) < 0.5 * metrics.expected_calibration_error(y2, 1 / (1 + np.exp(-z2)))
    # beyond the end centres the end offsets hold: the model's own slope, no flat tails
    lo = np.array([knots[0] - 2, knots[0] - 1])
    np.testing.assert_allclose(c.probability(lo), 1 / (1 + np.exp(-(lo + offsets[0]))))
    np.testing.assert_allclose(c.tf_probability(tf.constant(z2[:, None], tf.float32)).numpy()[:, 0], q, atol=2e-5)
    again = calibration_lib.Calibration.from_json(json.loads(json.dumps(c.to_json())))
    np.testing.assert_array_equal(again.probability(z2), q)


def test_isotonic_leaves_a_calibrated_model_as_it_is_and_refuses_too_few_rows(tmp_path):
    """On a model whose probabilities are right, the offsets are noise: empirical Bayes shrinks them
    to nothing, where the step function fitted to the rows raised the held-out error."""
    y, z = _planted(12000, 5, a=1.0, b=0.0)  # z is the true log-odds
    c = calibration_lib.Calibration.fit("isotonic", y, z)
    np.testing.assert_array_equal(c.offsets, 0.0)
    y2, z2 = _planted(60000, 6, a=1.0, b=0.0)
    plain = metrics.expected_calibration_error(y2, 1 / (1 + np.exp(-z2)))
    assert metrics.expected_calibration_error(y2, c.probability(z2)) == pytest.approx(plain, abs=1e-12)
    with pytest.raises(ValueError, match="needs at least 10,000 rows .* has 9,999.* use platt"):
        calibration_lib.Calibration.fit("isotonic", y[:9999], z[:9999])
    # a stored map of the earlier form (block rates) is not applied: it is fitted anew
    (tmp_path / "calibration.json").write_text(json.dumps(
        {"method": "isotonic", "a": 1.0, "b": 0.0, "knots": [0.0, 1.0], "values": [0.2, 0.4], "fitted_on": {}}))
    assert calibration_lib.Calibration.load(str(tmp_path)) is None


def test_downsampling_correction_is_a_logit_shift():
    p = np.linspace(0.01, 0.99, 50)
    for r in (0.5, 0.25, 0.1):
        q = p / (p + (1 - p) / r)
        z = np.log(p / (1 - p)) + calibration_lib.downsampling_shift(r)
        np.testing.assert_allclose(1 / (1 + np.exp(-z)), q, rtol=1e-12)
    with pytest.raises(ValueError):
        calibration_lib.downsampling_shift(0.0)
    with pytest.raises(cfg_lib.ConfigError, match="--negative_downsampling=1.5"):
        cfg_lib.TrainConfig(model_dir="m", negative_downsampling=1.5)


def test_refit_intercept_makes_the_mean_probability_the_click_rate():
    y, z = _planted(20000, 4)
    z = z + 0.4  # logits whose mean probability is off the click rate
    b = calibration_lib.fit_intercept(z, y.sum())
    p = 1 / (1 + np.exp(-(z + b)))
    assert p.sum() == pytest.approx(y.sum(), rel=1e-10)
    # the same from float32 chunks and a shift (as the trainer streams a split's batches)
    z32 = (z - 0.7).astype(np.float32)
    chunked = calibration_lib.fit_intercept(np.array_split(z32, 7), y.sum(), shift=0.7)
    assert chunked == pytest.approx(calibration_lib.fit_intercept(z32.astype(np.float64) + 0.7, y.sum()), abs=1e-9)
    # against a brute-force scan of offsets: the one whose mean probability is nearest the rate
    grid = np.linspace(-2, 2, 4001)
    gaps = [abs((1 / (1 + np.exp(-(z + g)))).mean() - y.mean()) for g in grid]
    assert b == pytest.approx(grid[int(np.argmin(gaps))], abs=1e-3)
    # it is the maximum-likelihood bias for these logits: logloss is lowest there
    loss = lambda o: -np.mean(y * np.log(1 / (1 + np.exp(-(z + o)))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-(z + o)))))
    assert loss(b) < min(loss(b - 0.01), loss(b + 0.01))
    assert calibration_lib.fit_intercept(np.array([-50.0, 50.0, 50.0]), 2.0) > -30
    with pytest.raises(ValueError, match="both classes"):
        calibration_lib.fit_intercept(np.zeros(10), 0.0)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cal")
    synthetic.write(str(d / "s.tsv"), 8000, seed=11, scale=0.0005)
    synthetic.write(str(d / "h.tsv"), 2000, seed=11, scale=0.0005, data_seed=5)
    helpers.convert(str(d / "s.tsv"), d / "tfr", block_rows=256, min_count=2)
    return str(d / "tfr")


def _epoch_rows(ds):
    labels = np.concatenate([y.numpy().reshape(-1) for _, y in ds])
    return labels


def test_negative_downsampling_keeps_every_positive_a_fraction_of_negatives_fresh_each_epoch(data_dir):
    schema = schema_lib.load(data_dir)
    full = _epoch_rows(records.make_dataset(schema, "train", 512))
    ds = records.make_dataset(schema, "train", 512, shuffle=True, seed=3, negative_rate=0.25)
    first, second = [np.concatenate([np.concatenate([x["cat"].numpy(), y.numpy()], 1) for x, y in ds])
                     for _ in range(2)]
    for epoch in (first, second):
        labels = epoch[:, -1]
        assert (labels == 1).sum() == (full == 1).sum()
        assert (labels == 0).sum() == pytest.approx(0.25 * (full == 0).sum(), rel=0.1)
    assert {tuple(r) for r in first} != {tuple(r) for r in second}  # a fresh draw every epoch
    again = records.make_dataset(schema, "train", 512, shuffle=True, seed=3, negative_rate=0.25)
    replay = np.concatenate([np.concatenate([x["cat"].numpy(), y.numpy()], 1) for x, y in again])
    # deterministic for a seed: the same rows kept (their order is the shuffle's, seeded by the run)
    np.testing.assert_array_equal(replay[np.lexsort(replay.T)], first[np.lexsort(first.T)])


def test_downsampled_calibrated_run_reports_before_and_after_and_serves_what_it_evaluated(data_dir, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setattr(calibration_lib, "ISOTONIC_MIN_ROWS", 100)  # this split is small: the wiring is tested here
    md = tmp_path / "m"
    out = trainer.run(make_cfg(data_dir, md, epochs=3, negative_downsampling=0.5, refit_intercept=True,
                               calibration=cfg_lib.CalibrationMethod.ISOTONIC, early_stopping_patience=3))
    # every epoch is trained, each the expected kept rows long (a fresh draw's length varies, and
    # tf-keras stopped training for good at the first epoch shorter than the first one)
    schema = schema_lib.load(data_dir)
    rows, rate = schema.split_rows("train"), schema.splits["train"]["positive_rate"]
    steps = math.ceil((rows * rate + 0.5 * rows * (1 - rate)) / 256)
    assert out["train"]["steps"] == 3 * steps
    assert len(tf.train.get_checkpoint_state(str(md / "checkpoints")).all_model_checkpoint_paths) == 3
    test = json.load(open(md / "metrics-test.json"))
    assert test["negative_downsampling"] == 0.5 and test["calibration"].startswith("isotonic")
    offset = test["intercept"]["offset"]
    assert test["before_intercept_refit"]["auc"] == pytest.approx(test["uncalibrated"]["auc"], abs=1e-9)  # order kept
    for m in (test, test["uncalibrated"], test["before_intercept_refit"]):
        assert {"auc", "logloss", "ne", "ece", "ctr_ratio"} <= set(m) and len(m["reliability"]["rows"]) == 20
    assert out["test"]["auc"] == test["auc"]
    stored = calibration_lib.Calibration.load(str(md))
    best = json.load(open(md / "best_epoch.json"))["epoch"]
    assert stored.fitted_on["split"] == "valid" and stored.fitted_on["epoch"] == best
    # eval scalars: NE and ECE beside AUC every epoch
    from tests.test_trainer import scalars
    assert len(scalars(md / "tensorboard" / "eval", "epoch_ne")) == 3
    assert len(scalars(md / "tensorboard" / "eval", "epoch_ece")) == 3
    # the export: probability = calibration(predict_logits), logits on the full data's scale
    loaded = tf.saved_model.load(out["export"])
    rows, _ = raw_rows(os.path.join(os.path.dirname(data_dir), "h.tsv"), 300)
    feed = {k: tf.constant(v) for k, v in rows.items()}
    served = loaded.signatures["serving_default"](**feed)["probability"].numpy()[:, 0]
    z = loaded.signatures["predict_logits"](**feed)["logits"].numpy()[:, 0]
    np.testing.assert_allclose(served, stored.probability(z), atol=2e-5)
    scores = loaded.signatures["classify"](inputs=tf.constant(_examples(rows)))["scores"].numpy()
    np.testing.assert_allclose(scores[:, 1], served, atol=1e-6)
    assert os.path.exists(os.path.join(out["export"], export_lib.WARMUP_FILE))
    recorded = json.load(open(os.path.join(out["export"], "assets.extra", "calibration.json")))
    assert recorded["logit_shift"] == pytest.approx(math.log(0.5) + offset) and recorded["calibration"]["method"] == "isotonic"
    # the in-process scores of the test records equal what the export serves for their logits
    run = trainer.Run(make_cfg(data_dir, md, epochs=3, negative_downsampling=0.5, mode=cfg_lib.Mode.EXPORT,
                               refit_intercept=True, calibration=cfg_lib.CalibrationMethod.ISOTONIC,
                               early_stopping_patience=3))
    run.restore_for_export()
    assert run.fits.refit_intercept().offset == offset  # reused: fitted for this very epoch
    assert run.fits.calibrate() == stored
    # the refit intercept: on the whole training split the mean probability is its click rate
    ytr, ztr = run.scorer.labelled_logits(run.dataset("train", False))
    assert (1 / (1 + np.exp(-ztr))).mean() == pytest.approx(ytr.mean(), rel=1e-6)
    assert ytr.size == schema_lib.load(data_dir).split_rows("train")
    y, zin = run.scorer.labelled_logits(run.dataset("test", False))
    assert metrics.summary(y, stored.probability(zin))["auc"] == pytest.approx(test["auc"], abs=1e-12)
    # the reliability picture of that run
    paths = plot.plot_runs(str(md), str(tmp_path / "png"))
    assert os.path.basename(paths[-1]) == "reliability.png" and os.path.getsize(paths[-1]) > 5000
    assert [s for s, _ in plot.reliability_curves(str(md))] == [" (before calibration)", " (isotonic)"]


def _examples(rows):
    n = len(next(iter(rows.values())))
    out = []
    for i in range(n):
        feats = {}
        for k, v in rows.items():
            if v.dtype == object:
                feats[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v[i]]))
            else:
                feats[k] = tf.train.Feature(float_list=tf.train.FloatList(value=[v[i]]))
        out.append(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return out


def test_platt_export_mode_and_bad_input(data_dir, tmp_path):
    md = tmp_path / "p"
    trainer.run(make_cfg(data_dir, md, epochs=1))
    out = trainer.run(make_cfg(data_dir, md, epochs=1, mode=cfg_lib.Mode.EXPORT,
                               calibration=cfg_lib.CalibrationMethod.PLATT))
    c = calibration_lib.Calibration.load(str(md))
    assert c.method == cfg_lib.CalibrationMethod.PLATT and c.fitted_on["epoch"] == 0
    loaded = tf.saved_model.load(out["export"])
    rows, _ = raw_rows(os.path.join(os.path.dirname(data_dir), "h.tsv"), 50)
    feed = {k: tf.constant(v) for k, v in rows.items()}
    z = loaded.signatures["predict_logits"](**feed)["logits"].numpy()[:, 0]
    np.testing.assert_allclose(loaded.signatures["serving_default"](**feed)["probability"].numpy()[:, 0],
                               1 / (1 + np.exp(-(c.a * z + c.b))), atol=1e-6)
    with pytest.raises(ValueError, match="no labels"):
        calibration_lib.Calibration.fit("platt", np.array([np.nan, 1.0]), np.array([0.1, 0.2]))


def test_isotonic_on_a_small_validation_split_is_refused_at_start_naming_platt(data_dir, tmp_path):
    with pytest.raises(trainer.TrainingError, match="--calibration=isotonic needs at least 10,000 validation rows.*"
                                                    "--calibration=platt"):
        trainer.Run(make_cfg(data_dir, tmp_path / "m", calibration=cfg_lib.CalibrationMethod.ISOTONIC))
    assert not (tmp_path / "m" / "checkpoints").exists()
