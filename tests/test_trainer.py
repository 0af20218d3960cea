"""The trainer end to end on converted synthetic data: checkpoints, resume, evaluation, export."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import evaluation, metrics, models, schedules, trainer
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(planted_records):
    return planted_records


def make_cfg(data_dir, model_dir, model="deepfm", **train):
    train.setdefault("epochs", 2)
    train.setdefault("batch_size", 256)
    train.setdefault("eval_batch_size", 1024)
    train.setdefault("log_every_n_steps", 5)
    model_kw = train.pop("model_kw", {})
    return cfg_lib.ExperimentConfig(
        data=cfg_lib.DataConfig(data_dir=data_dir),
        model=cfg_lib.model_config(model, **{"embedding_dim": 8, "hidden_units": (32, 16), **model_kw}),
        train=cfg_lib.TrainConfig(model_dir=str(model_dir), **train))


def raw_rows(path, n):
    """The first n lines of a Criteo TSV as serving inputs (dict of [n] arrays) and labels."""
    lines = [ln.rstrip("\n").split("\t") for ln in open(path)][:n]
    feats = {f"I{i}": np.array([float(r[i]) if r[i] else np.nan for r in lines], np.float32) for i in range(1, 14)}
    feats.update({f"C{j}": np.array([r[13 + j].encode() for r in lines], object) for j in range(1, 27)})
    return feats, np.array([float(r[0]) for r in lines])


def scalars(logdir, tag) -> list[tuple[int, float]]:
    """(step, value) of a TF2 summary scalar, from the event files of one TensorBoard run."""
    from tensorboard.backend.event_processing import event_accumulator
    ea = event_accumulator.EventAccumulator(str(logdir), size_guidance={event_accumulator.TENSORS: 0})
    ea.Reload()
    if tag not in ea.Tags()["tensors"]:
        return []
    return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in ea.Tensors(tag)]


def test_train_and_evaluate_writes_checkpoints_events_config_and_a_faithful_export(data_dir, tmp_path):
    md = tmp_path / "m"
    out = trainer.run(make_cfg(data_dir, md, epochs=3))
    assert sorted(os.path.basename(p) for p in glob.glob(str(md / "checkpoints" / "*.index"))) == \
        ["epoch-0.index", "epoch-1.index", "epoch-2.index"]
    # TensorBoard: one exact validation AUC per epoch (the best one is best_epoch.json's), and
    # training throughput every log_every_n_steps
    aucs, rates = scalars(md / "tensorboard" / "eval", "epoch_auc"), scalars(md / "tensorboard" / "train",
                                                                           "examples_per_second")
    assert [step for step, _ in aucs] == [0, 1, 2]
    best = json.load(open(md / "best_epoch.json"))
    assert max(aucs, key=lambda sv: sv[1]) == (best["epoch"], pytest.approx(best["auc"], abs=1e-6))
    assert rates and all(v > 0 for _, v in rates)
    assert cfg_lib.ExperimentConfig.from_json(json.load(open(md / "config.json"))) == make_cfg(data_dir, md, epochs=3)
    assert out["test"]["auc"] > 0.62, out["test"]
    assert out["export"].endswith(os.path.join("export", "deepfm", "1"))
    # The SavedModel fed raw rows scores them as the in-process model does on their records.
    loaded = tf.saved_model.load(out["export"])
    fn = loaded.signatures["serving_default"]
    assert sorted(fn.structured_input_signature[1]) == sorted([f"I{i}" for i in range(1, 14)] + [f"C{j}" for j in range(1, 27)])
    src = os.path.join(os.path.dirname(data_dir), "s.tsv")
    feats, labels = raw_rows(src, 400)
    served = fn(**{k: tf.constant(v) for k, v in feats.items()})["probability"].numpy()
    assert served.shape == (400, 1)
    r = trainer.Run(make_cfg(data_dir, md, mode=cfg_lib.Mode.EXPORT))
    r.restore_latest()
    from ctr_tf import preprocessing
    dense, cat = preprocessing.Preprocessor(r.schema)({k: tf.constant(v) for k, v in feats.items()})
    local = tf.sigmoid(r.model({"dense": dense, "cat": cat}, training=False)).numpy()
    np.testing.assert_allclose(served, local, rtol=1e-5, atol=1e-6)
    assert metrics.exact_auc(labels, served) > 0.6


def test_resume_continues_after_the_last_finished_epoch(data_dir, tmp_path):
    md = tmp_path / "m"
    trainer.run(make_cfg(data_dir, md, epochs=1, mode=cfg_lib.Mode.TRAIN))
    r1 = trainer.Run(make_cfg(data_dir, md, epochs=1, mode=cfg_lib.Mode.TRAIN))
    r1.restore_latest()
    steps_per_epoch = int(r1.optimizer.iterations)
    assert steps_per_epoch > 0
    r2 = trainer.Run(make_cfg(data_dir, md, epochs=3, mode=cfg_lib.Mode.TRAIN))
    r2.train()
    assert int(r2.optimizer.iterations) == 3 * steps_per_epoch  # epochs 1 and 2 only, none repeated
    assert os.path.exists(md / "checkpoints" / "epoch-2.index")


def test_killed_run_resumes_without_losing_or_repeating_epochs(data_dir, tmp_path):
    md = tmp_path / "m"
    script = f"""
import sys, os
sys.path.insert(0, {ROOT!r})
import ctr_tf, tensorflow as tf
from ctr_tf import trainer
from tests.test_trainer import make_cfg
class Kill(tf.keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            os._exit(9)
r = trainer.Run(make_cfg({data_dir!r}, {str(md)!r}, epochs=4, mode=trainer.cfg_lib.Mode.TRAIN))
r.train(callbacks=[Kill()])
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert sorted(os.path.basename(p) for p in glob.glob(str(md / "checkpoints" / "*.index"))) == \
        ["epoch-0.index", "epoch-1.index"]
    r = trainer.Run(make_cfg(data_dir, md, epochs=4, mode=cfg_lib.Mode.TRAIN))
    assert r.restore_latest() == 2
    per_epoch = int(r.optimizer.iterations) // 2
    r.train()
    assert int(r.optimizer.iterations) == 4 * per_epoch
    assert os.path.exists(md / "checkpoints" / "epoch-3.index")


def test_evaluate_mode_tables_a_range_of_saved_epochs(data_dir, tmp_path, capsys):
    md = tmp_path / "m"
    trainer.run(make_cfg(data_dir, md, epochs=3, mode=cfg_lib.Mode.TRAIN))
    rows = trainer.run(make_cfg(data_dir, md, mode=cfg_lib.Mode.EVALUATE, eval_epochs="0:3"))["epochs"]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert len({round(r["logloss"], 8) for r in rows}) == 3  # three different weights
    table = capsys.readouterr().out
    assert "evaluation on test:" in table
    assert [ln.split()[0] for ln in table.splitlines() if ln.strip()[:1].isdigit()][-3:] == ["0", "1", "2"]
    with pytest.raises(trainer.TrainingError, match="no checkpoint of epoch 7"):
        trainer.run(make_cfg(data_dir, md, mode=cfg_lib.Mode.EVALUATE, eval_epochs="7"))


def test_predict_writes_one_probability_per_row(data_dir, tmp_path):
    md = tmp_path / "m"
    trainer.run(make_cfg(data_dir, md, epochs=1, mode=cfg_lib.Mode.TRAIN))
    path = trainer.run(make_cfg(data_dir, md, mode=cfg_lib.Mode.PREDICT))["predictions"]
    p = np.loadtxt(path)
    from ctr_tf import schema as schema_lib
    assert len(p) == schema_lib.load(data_dir).split_rows("test")
    assert ((p > 0) & (p < 1)).all()


def test_same_seed_and_deterministic_give_the_same_auc(data_dir, tmp_path):
    a = trainer.run(make_cfg(data_dir, tmp_path / "a", epochs=1, deterministic=True, seed=3))["test"]
    b = trainer.run(make_cfg(data_dir, tmp_path / "b", epochs=1, deterministic=True, seed=3))["test"]
    assert a["auc"] == b["auc"] and a["logloss"] == b["logloss"]


def test_model_dir_of_another_model_is_a_clear_error(data_dir, tmp_path):
    md = tmp_path / "m"
    trainer.run(make_cfg(data_dir, md, epochs=1, mode=cfg_lib.Mode.TRAIN))
    with pytest.raises(trainer.TrainingError, match="checkpoints of another model"):
        trainer.Run(make_cfg(data_dir, md, model="fm"))


def test_missing_or_empty_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(trainer.TrainingError, match="does not exist"):
        trainer.Run(make_cfg(str(tmp_path / "nope"), tmp_path / "m"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(trainer.TrainingError, match="schema.json not found"):
        trainer.Run(make_cfg(str(tmp_path / "empty"), tmp_path / "m"))


def test_nan_loss_stops_with_the_step(data_dir, tmp_path):
    cfg = make_cfg(data_dir, tmp_path / "m", epochs=1, learning_rate=1e12, optimizer=cfg_lib.Optimizer.SGD,
                   mode=cfg_lib.Mode.TRAIN)
    with pytest.raises(trainer.TrainingError, match=r"loss became (nan|inf) at epoch 0, step \d+"):
        trainer.run(cfg)


@pytest.mark.parametrize("model", ["lr", "fm", "dnn"])
def test_shallow_models_train_and_beat_chance(data_dir, tmp_path, model):
    out = trainer.run(make_cfg(data_dir, tmp_path / model, model=model, epochs=2, learning_rate=3e-3))
    assert out["test"]["auc"] > 0.6


@pytest.mark.parametrize("schedule,extra", [("plateau", {"learning_rate": 1e-8}), ("warmup_decay", {"warmup_steps": 3, "decay_steps": 10})])
def test_lr_schedules_change_the_learning_rate(data_dir, tmp_path, schedule, extra):
    cfg = make_cfg(data_dir, tmp_path / "m", epochs=3, lr_schedule=cfg_lib.LRSchedule(schedule),
                   lr_plateau_patience=0, early_stopping_patience=2, clipnorm=1.0, mode=cfg_lib.Mode.TRAIN, **extra)
    r = trainer.Run(cfg)
    r.train()
    assert schedules.current_lr(r.optimizer) < cfg.train.learning_rate


def test_train_and_evaluate_with_early_stopping_evaluates_the_best_epoch(data_dir, tmp_path):
    md = tmp_path / "m"
    out = trainer.run(make_cfg(data_dir, md, epochs=3, early_stopping_patience=5, learning_rate=0.05))
    best = json.load(open(md / "best_epoch.json"))
    r = trainer.Run(make_cfg(data_dir, md, early_stopping_patience=5, mode=cfg_lib.Mode.EXPORT))
    r.restore_epoch(best["epoch"])
    assert evaluation.evaluate(r.model, r.dataset("test", False))["auc"] == pytest.approx(out["test"]["auc"], abs=1e-9)


def test_early_stopping_exports_the_best_epoch(data_dir, tmp_path):
    md = tmp_path / "m"
    trainer.run(make_cfg(data_dir, md, epochs=4, early_stopping_patience=1, learning_rate=0.05,
                         mode=cfg_lib.Mode.TRAIN))
    best = json.load(open(md / "best_epoch.json"))
    r = trainer.Run(make_cfg(data_dir, md, early_stopping_patience=1, mode=cfg_lib.Mode.EXPORT))
    r.restore_for_export()
    assert r.scorer.evaluate(r.dataset("valid", False))["auc"] == pytest.approx(best["auc"], abs=1e-9)
    assert evaluation.evaluate(r.model, r.dataset("valid", False))["auc"] == pytest.approx(best["auc"], abs=1e-9)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_finite_loss_and_float32_export(data_dir, tmp_path, precision):
    out = trainer.run(make_cfg(data_dir, tmp_path / "m", epochs=1, steps_per_epoch=3, batch_size=32,
                               precision=cfg_lib.Precision(precision)))
    assert tf.keras.mixed_precision.global_policy().name == "float32"  # the run put the policy back
    assert np.isfinite(out["test"]["logloss"])
    fn = tf.saved_model.load(out["export"]).signatures["serving_default"]
    assert fn.structured_outputs["probability"].dtype == tf.float32


def test_warm_start_copies_weights_only(data_dir, tmp_path):
    trainer.run(make_cfg(data_dir, tmp_path / "a", epochs=1, mode=cfg_lib.Mode.TRAIN))
    src = trainer.Run(make_cfg(data_dir, tmp_path / "a", mode=cfg_lib.Mode.EXPORT))
    src.restore_latest()
    r = trainer.Run(make_cfg(data_dir, tmp_path / "b", warm_start_from=str(tmp_path / "a"), mode=cfg_lib.Mode.TRAIN))
    r.warm_start()
    for a, b in zip(src.model.get_weights(), r.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(r.optimizer.iterations) == 0


def test_cli_trains_from_the_flagfile_and_rejects_bad_flags(data_dir, tmp_path):
    md = tmp_path / "cli"
    cmd = [sys.executable, "-m", "ctr_tf.train", "--flagfile=deepfm.flags",
           f"--data_dir={data_dir}", f"--model_dir={md}", "--epochs=2", "--hidden_units=16"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (md / "flags.txt").read_text().count("--embedding_dim=9") == 1
    assert os.path.exists(md / "export" / "deepfm" / "1" / "saved_model.pb")
    bad = subprocess.run(cmd[:3] + [f"--data_dir={data_dir}", f"--model_dir={tmp_path / 'x'}", "--dropout=1.5"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "--dropout=1.5" in bad.stderr
    typo = subprocess.run(cmd[:3] + ["--model=deepfn"], capture_output=True, text=True, cwd=ROOT)
    assert typo.returncode != 0 and "deepfn" in typo.stderr


def test_avazu_deepfm_trains_exports_and_serves_string_only_inputs(tmp_path):
    """A schema with no dense feature (Avazu): records, training, export and the signature."""
    path = helpers.shared_file("avazu", "avazu_train_6000_noheader.csv")
    helpers.convert(path, tmp_path / "data")
    out = trainer.run(make_cfg(str(tmp_path / "data"), tmp_path / "m", epochs=1))
    assert out["test"]["auc"] > 0.55
    fn = tf.saved_model.load(out["export"]).signatures["serving_default"]
    inputs = fn.structured_input_signature[1]
    assert "hour" in inputs and all(spec.dtype == tf.string for spec in inputs.values())
    test = helpers.shared_file("avazu", "avazu_test_1000_header.csv")
    from serving import client as client_lib
    batch = next(client_lib.read_batches(test, 1000))
    p = fn(**{k: tf.constant(v) for k, v in batch.rows.items()})["probability"].numpy()
    assert p.shape == (1000, 1) and np.isnan(batch.labels).all()


def test_run_restores_the_process_state_it_changes(data_dir, tmp_path):
    """Seeds, op determinism and the dtype policy are the caller's again after a run."""
    import random

    from tensorflow.python.eager import context
    from tensorflow.python.framework import config as tf_config
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    tf.random.set_seed(77)
    assert not tf_config.is_op_determinism_enabled()
    trainer.run(make_cfg(data_dir, tmp_path / "m", epochs=1, steps_per_epoch=2, deterministic=True, seed=5,
                         precision=cfg_lib.Precision.MIXED_BFLOAT16, mode=cfg_lib.Mode.TRAIN))
    assert (random.random(), np.random.rand()) == expected
    assert context.global_seed() == 77
    assert not tf_config.is_op_determinism_enabled()
    assert tf.keras.mixed_precision.global_policy().name == "float32"
    tf.random.set_seed(None)


def test_sparse_table_l2_saves_settled_tables_and_shrinks_rows_never_looked_up(data_dir, tmp_path):
    runs = {}
    for l2 in (0.0, 1e-3):
        cfg = make_cfg(data_dir, tmp_path / f"l2-{l2}", epochs=1, deterministic=True, mode=cfg_lib.Mode.TRAIN,
                       model_kw={"embedding_table_l2": l2})
        trainer.run(cfg)
        r = trainer.Run(cfg)
        r.restore_latest()
        r.optimizer.build(r.model.trainable_variables)   # creates the slots the checkpoint restores into
        runs[l2] = r
    plain, l2 = runs[0.0], runs[1e-3]
    assert not l2.model.losses   # lazy_adam applies it: the loss carries no dense table term
    steps = int(l2.optimizer.iterations)
    shrunk = 0
    for a, b in zip(models.embedding_tables(plain.model), models.embedding_tables(l2.model)):
        m, _, _ = plain.optimizer._slots(a)
        never = np.all(m.numpy() == 0, axis=1) & np.any(a.numpy() != 0, axis=1)   # same seed: same start
        _, _, last = l2.optimizer._slots(b)
        np.testing.assert_array_equal(last.numpy(), steps)   # caught up before the checkpoint
        assert np.all(np.abs(b.numpy()[never]) < np.abs(a.numpy()[never]))
        shrunk += int(never.sum())
    assert shrunk > 0   # the validation and test ids the training split never had


def test_dense_table_l2_puts_the_term_in_the_loss_instead(data_dir, tmp_path):
    cfg = make_cfg(data_dir, tmp_path / "m", epochs=1, dense_table_l2=True, mode=cfg_lib.Mode.TRAIN,
                   model_kw={"embedding_table_l2": 1e-3})
    r = trainer.Run(cfg)
    assert r.model.losses and not r.optimizer.table_l2


def test_ps_shards_is_refused_without_parameter_servers_and_when_negative(tmp_path):
    with pytest.raises(cfg_lib.ConfigError, match="--ps_shards=2.*parameter_server"):
        cfg_lib.TrainConfig(model_dir=str(tmp_path), ps_shards=2)
    with pytest.raises(cfg_lib.ConfigError, match="--ps_shards=-1"):
        cfg_lib.TrainConfig(model_dir=str(tmp_path), ps_shards=-1, strategy=cfg_lib.Strategy.PARAMETER_SERVER,
                            steps_per_epoch=5)
    assert cfg_lib.TrainConfig(model_dir=str(tmp_path), ps_shards=3, strategy=cfg_lib.Strategy.PARAMETER_SERVER,
                               steps_per_epoch=5).ps_shards == 3


class _ScriptedScorer:
    """Validation metrics given in advance, one dict an epoch (what ExactEvaluation reads)."""

    def __init__(self, epochs):
        self.epochs = iter(epochs)

    def evaluate(self, dataset):
        m = next(self.epochs)
        return {"ne": m["logloss"] / 0.6, "ece": 0.01, "ctr_ratio": 1.0, "rows": 100, **m}


def test_patience_min_steps_stretches_patience_on_short_epochs_only():
    from ctr_tf.callbacks import patience_epochs
    assert patience_epochs(3, 100, 4) == 75  # 25 epochs of 4 steps hold 100
    assert patience_epochs(1, 100, 30) == 4
    assert patience_epochs(3, 100, 100) == 3 and patience_epochs(3, 100, 70_000) == 3
    assert patience_epochs(3, 0, 4) == 3 and patience_epochs(3, 100, 0) == 3 and patience_epochs(0, 100, 4) == 0


def _drive_epochs(cbs, epochs: int):
    """Runs the epoch ends of `cbs` on a toy model at SGD rate 1.0 until one stops training:
    (the last epoch, the learning rate after each)."""
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer=tf.keras.optimizers.legacy.SGD(1.0), loss="mse")
    for cb in cbs:
        cb.set_model(model)
        cb.on_train_begin()
    lrs = []
    for epoch in range(epochs):
        logs = {}  # the evaluation writes val_<metric> into it for those after it
        for cb in cbs:
            cb.on_epoch_end(epoch, logs)
        lrs.append(float(model.optimizer.learning_rate))
        if model.stop_training:
            break
    return epoch, lrs


def test_patience_min_steps_delays_the_plateau_cut_and_the_stop(tmp_path):
    """Epochs of 2 steps under --patience_min_steps=5: each epoch of patience spans 3, so the
    plateau patience 1 cuts after three epochs without a gain and early stopping's 2 stops after six."""
    from ctr_tf import callbacks
    t = cfg_lib.TrainConfig(model_dir=str(tmp_path), lr_schedule=cfg_lib.LRSchedule.PLATEAU, lr_plateau_patience=1,
                            early_stopping_patience=2, patience_min_steps=5)
    scorer = _ScriptedScorer([{"auc": 0.72 - 0.01 * i, "logloss": 0.5} for i in range(10)])
    cbs = callbacks.for_training(t, scorer=scorer, eval_dataset=object(), model_dir=str(tmp_path), chief=True,
                                 manager=None, parameter_servers=False, sparse_table_l2=False, epoch_steps=2)[:3]
    assert (cbs[1].patience, cbs[2].patience) == (3, 6)
    epoch, lrs = _drive_epochs(cbs, 10)
    assert epoch == 6 and lrs[:3] == [1.0] * 3 and lrs[3] < 1.0


def test_trainer_counts_patience_in_steps_of_its_epochs(data_dir, tmp_path, capsys):
    """The trainer gives the callbacks its epoch's steps: the training split's batches."""
    cfg = make_cfg(data_dir, tmp_path / "m", epochs=1, early_stopping_patience=2, patience_min_steps=10_000,
                   lr_schedule=cfg_lib.LRSchedule.PLATEAU, mode=cfg_lib.Mode.TRAIN)
    r = trainer.Run(cfg)
    r.train()
    steps = -(-r.schema.split_rows("train") // 256)
    factor = -(-10_000 // steps)
    assert (f"an epoch is {steps} steps, under --patience_min_steps=10000: the plateau cut after {factor} "
            f"epochs without a gain, early stopping after {2 * factor}") in capsys.readouterr().out


@pytest.mark.parametrize("metric,best", [("auc", 1), ("logloss", 0), ("ne", 0)])
def test_early_stopping_metric_decides_the_best_epoch_the_plateau_and_the_stop(tmp_path, metric, best):
    """Epoch 1 has the best AUC, epoch 0 the lowest logloss (and NE): best_epoch.json, the plateau
    schedule and early stopping follow --early_stopping_metric, and the file says which."""
    from ctr_tf import callbacks
    t = cfg_lib.TrainConfig(model_dir=str(tmp_path), lr_schedule=cfg_lib.LRSchedule.PLATEAU, lr_plateau_patience=0,
                            early_stopping_patience=2, early_stopping_metric=cfg_lib.StoppingMetric(metric))
    scorer = _ScriptedScorer([{"auc": 0.70, "logloss": 0.50}, {"auc": 0.72, "logloss": 0.60},
                              {"auc": 0.71, "logloss": 0.55}, {"auc": 0.69, "logloss": 0.58}])
    cbs = callbacks.for_training(t, scorer=scorer, eval_dataset=object(), model_dir=str(tmp_path), chief=True,
                                 manager=None, parameter_servers=False, sparse_table_l2=False)[:3]
    evaluation_cb, plateau, stopping = cbs
    assert (plateau.monitor, stopping.monitor) == (f"val_{metric}", f"val_{metric}")
    epoch, lrs = _drive_epochs(cbs, 4)
    stored = json.load(open(tmp_path / "best_epoch.json"))
    assert (stored["epoch"], stored["metric"]) == (best, metric)
    assert epoch == best + 2  # two epochs without a gain, then the stop
    assert lrs[best] == 1.0 and lrs[best + 1] < 1.0  # cut at the first epoch without a gain


def test_peak_memory_is_the_processs_own_not_that_of_the_process_that_started_it():
    """ru_maxrss survives exec: a trainer started by a big parent (a benchmark holding a model)
    reported the parent's size as its own peak. The child here runs the trainer's function (runtime's) alone,
    without TensorFlow, from this test process, which holds TensorFlow and the suite's models."""
    import ast
    from ctr_tf import runtime
    source = open(runtime.__file__).read()
    fn = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "peak_rss_mb")
    parent = runtime.peak_rss_mb()
    out = subprocess.run([sys.executable, "-S", "-c", ast.get_source_segment(source, fn) + "\nprint(peak_rss_mb())"],
                         capture_output=True, text=True, timeout=60, check=True)
    child = float(out.stdout)
    assert parent > 300 and child < 60, (parent, child)
