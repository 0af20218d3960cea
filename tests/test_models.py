"""Every registered model, enumerated from the registry: trains under mixed_bfloat16, copies into
a float32 build, exports the raw-feature signature and scores exactly as in process, and survives a
Keras save/load; the trainer's whole path on real rows (Criteo, and Avazu for FLEN); every flagfile
parses and builds its model; model options are flags of their own; configs round-trip through JSON."""
import dataclasses
import glob
import os
import re
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from ctr_tf import config as cfg_lib
from ctr_tf import flags as ctr_flags
from ctr_tf import models, preprocessing, trainer
from serving import client as client_lib
from tests import helpers
from tests.test_layers import _toy_schema, tiny_model_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEEDS_GROUPS = {"flen"}  # models that read the schema's field groups: trained on Avazu


@pytest.fixture(scope="module")
def real_data(tmp_path_factory):
    """name -> (data_dir, held-out raw file): Criteo Kaggle rows, and Avazu rows for FLEN."""
    d = tmp_path_factory.mktemp("real")
    criteo = helpers.shared_file("criteo", "kaggle_random_a_with_id.csv")
    avazu = helpers.shared_file("avazu", "avazu_train_6000_noheader.csv")
    helpers.convert(criteo, d / "criteo", split=(9, 1, 0))
    helpers.convert(avazu, d / "avazu", split=(9, 1, 0))
    return {"criteo": (str(d / "criteo"), helpers.shared_file("criteo", "kaggle_random_b_with_id.csv")),
            "avazu": (str(d / "avazu"), helpers.shared_file("avazu", "avazu_test_1000_header.csv"))}


def _toy_rows(schema, n, seed):
    """n raw rows of the toy schema (the serving signature's inputs) and their labels."""
    rng = np.random.default_rng(seed)
    raw = {r.name: (rng.exponential(3.0, n).astype(np.float32) if r.dtype == "float32"
                    else np.array([f"v{v}".encode() for v in rng.integers(0, 40, n)], object))
           for r in schema.raw_inputs}
    raw["I0"][::7] = np.nan  # missing values too
    return raw, (rng.random(n) < 0.3).astype(np.float32)[:, None]


@pytest.mark.parametrize("name", models.names())
def test_every_model_trains_in_bfloat16_exports_and_serves_what_it_computes(tmp_path, name):
    """Each model at test size: trains two steps under mixed_bfloat16 with a finite loss (run
    eagerly: tracing Keras' train step per model costs more than the steps; the trainer's own
    mixed-precision test trains in a traced step); its
    weights copy into a float32 build (what an export after mixed precision or parameter servers
    does); the SavedModel, preprocessing inside, scores raw rows as the model does in process;
    and a Keras save/load round trip gives the same outputs."""
    from ctr_tf import export as export_lib
    from ctr_tf import runtime
    schema = _toy_schema()
    cfg = tiny_model_config(name)
    pre = preprocessing.Preprocessor(schema)
    raw, y = _toy_rows(schema, 96, seed=len(name))
    dense, cat = pre({k: tf.constant(v) for k, v in raw.items()})
    x = {"dense": dense, "cat": cat}
    with runtime.precision("mixed_bfloat16"):
        mixed = models.build(schema, cfg)
        mixed.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
                      run_eagerly=True)
        history = mixed.fit(x, y, batch_size=48, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert mixed(x, training=False).dtype == tf.float32
    model = models.build(schema, cfg)
    models.copy_weights(mixed, model)
    local = tf.sigmoid(model(x, training=False)).numpy()
    np.testing.assert_allclose(local, tf.sigmoid(mixed(x, training=False)).numpy(), atol=0.02)
    served = tf.saved_model.load(export_lib.export(model, schema, str(tmp_path / "export"), name))
    probability = served.signatures["serving_default"](**{k: tf.constant(v) for k, v in raw.items()})["probability"]
    np.testing.assert_allclose(probability.numpy(), local, rtol=1e-5, atol=1e-6)
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    np.testing.assert_allclose(tf.keras.models.load_model(path)(x, training=False).numpy(),
                               model(x, training=False).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["deepfm", "flen"])
def test_model_trains_on_real_rows_exports_and_serves_identical_scores(real_data, tmp_path, name):
    """The trainer's whole path on real rows: Kaggle Criteo CSV (Avazu for FLEN, which needs field
    groups); the served signature reads the raw held-out file's columns."""
    data_dir, heldout = real_data["avazu" if name in NEEDS_GROUPS else "criteo"]
    cfg = cfg_lib.ExperimentConfig(
        data=cfg_lib.DataConfig(data_dir=data_dir, test_split="valid"),
        model=tiny_model_config(name),
        train=cfg_lib.TrainConfig(model_dir=str(tmp_path / "m"), epochs=1, steps_per_epoch=4, batch_size=128,
                                  learning_rate=3e-3, eval_batch_size=1024))
    out = trainer.run(cfg)
    assert np.isfinite(out["test"]["logloss"])
    fn = tf.saved_model.load(out["export"]).signatures["serving_default"]
    batch = next(client_lib.read_batches(heldout, 300))
    raw = {k: tf.constant(v) for k, v in batch.rows.items()}
    served = fn(**raw)["probability"].numpy()
    r = trainer.Run(cfg)
    r.restore_latest()
    dense, cat = preprocessing.Preprocessor(r.schema)(raw)
    local = tf.sigmoid(r.model({"dense": dense, "cat": cat}, training=False)).numpy()
    assert served.shape == (300, 1)
    np.testing.assert_allclose(served, local, rtol=1e-5, atol=1e-6)


def test_flen_without_field_groups_fails_at_build_naming_what_is_missing():
    with pytest.raises(cfg_lib.ConfigError, match=r"--model=flen needs field groups .* \(C0, C1, C2\)"):
        models.build(_toy_schema(groups=None), tiny_model_config("flen"))


def test_every_registered_model_has_a_flagfile():
    have = {os.path.basename(p)[: -len(".flags")] for p in glob.glob(os.path.join(ctr_flags.SHIPPED_FLAGFILES, "*.flags"))}
    assert set(models.names()) <= have


# Files that name no model (common.flags, bars.flags) are included by the others.
MODEL_FLAGFILES = sorted(p for p in glob.glob(os.path.join(ctr_flags.SHIPPED_FLAGFILES, "*.flags"))
                         if "--model=" in open(p).read())


@pytest.mark.parametrize("path", MODEL_FLAGFILES, ids=os.path.basename)
def test_every_flagfile_parses_and_builds_its_model(monkeypatch, path):
    monkeypatch.chdir(tempfile.gettempdir())  # includes resolve beside the flagfile, from anywhere
    fv = flags.FlagValues()
    ctr_flags.define_flags(fv)
    argv, read = ctr_flags.expand_flagfiles(["train", f"--flagfile={path}", "--data_dir=d", "--model_dir=m"])
    assert read[0] == path and len(read) >= 2  # the model's file, then what it includes
    fv(argv)
    cfg = ctr_flags.config_from_flags(fv)
    assert cfg.train.early_stopping_patience > 0 and cfg.train.lr_schedule == cfg_lib.LRSchedule.PLATEAU
    model = models.build(_toy_schema(vocab=(50, 60, 70)), cfg.model)
    assert model.name == cfg.model.name and model.count_params() > 0
    if os.path.basename(path).endswith("_bars.flags"):   # the published runs' regulariser, as published
        assert cfg.model.embedding_table_l2 == 1e-5 and cfg.train.dense_table_l2 and cfg.model.embedding_l2 == 0


def _parsed(*args):
    fv = flags.FlagValues()
    ctr_flags.define_flags(fv)
    fv(["train", "--data_dir=d", "--model_dir=m", *args])
    return ctr_flags.config_from_flags(fv)


def test_flags_map_to_the_config_fields_of_the_same_name():
    from ctr_tf.models import zoo
    cfg = _parsed("--model=xdeepfm", "--cin_layer_sizes=8,4", "--cin_split_half=false", "--learning_rate=0.02")
    assert cfg.model.name == "xdeepfm" and cfg.model.options.cin_layer_sizes == (8, 4)
    assert not cfg.model.options.cin_split_half
    assert cfg.train.learning_rate == 0.02 and cfg.data.data_dir == "d"
    assert _parsed("--model=gate_dnn", "--embedding_gate=vector").model.options.embedding_gate == zoo.EmbeddingGate.VECTOR
    cfg = _parsed("--model=dcn_v2", "--cross_structure=stacked", "--cross_layers=2")
    assert cfg.model.options == zoo.DCNV2Options(cross_layers=2, cross_structure=zoo.CrossStructure.STACKED)


def test_an_option_of_another_model_is_named_in_a_warning_and_changes_nothing(capsys):
    cfg = _parsed("--model=deepfm", "--cin_layer_sizes=8,4", "--dlrm_top_units=7", "--cross_layers=3")
    err = capsys.readouterr().err
    assert re.search(r"--cin_layer_sizes=8,4 is an option of (--model=\w+, )*--model=xdeepfm(, --model=\w+)*, not of "
                     r"--model=deepfm", err), err
    assert "--dlrm_top_units=7 is an option of --model=dlrm" in err
    assert "cross_layers" not in err  # set, but to its default: a flags.txt sets every flag so
    assert cfg.model == _parsed("--model=deepfm").model


def test_every_model_option_is_a_flag_listed_under_its_model_in_helpfull():
    from ctr_tf.models import registry
    fv = flags.FlagValues()
    ctr_flags.define_flags(fv)
    text = fv.get_help()
    for name in registry.names():
        for field in dataclasses.fields(registry.options_class(name)):
            assert field.name in fv
            heading = f"--model={name} options ("
            block = text[text.index(heading):]
            block = block[:block.find("\n\n") if "\n\n" in block else len(block)]
            assert re.search(rf"--(\[no\])?{field.name}:", block), (name, field.name)


@pytest.mark.parametrize("model,flag,value,message", [
    ("xdeepfm", "cin_layer_sizes", "3,4", "every layer but the last must have an even size"),
    ("dcn", "cross_layers", "0", "must be >= 1"),
    ("flen", "flen_dice_factor", "1.0", "must be in"),
    ("deepfm", "hidden_units", "4,x", "expected integers"),
    ("gate_dnn", "hidden_gate_activation", "nope", "not a Keras activation"),
    ("finalnet", "finalnet_block1_units", "8,5", "sizes must be even"),
])
def test_invalid_model_flags_name_the_flag_and_value(model, flag, value, message):
    fv = flags.FlagValues()
    ctr_flags.define_flags(fv)
    fv(["train", "--data_dir=d", "--model_dir=m", f"--model={model}", f"--{flag}={value}"])
    with pytest.raises(cfg_lib.ConfigError, match=f"--{flag}=.*{message}"):
        ctr_flags.config_from_flags(fv)


def test_dlrm_bottom_mlp_must_end_at_the_embedding_size():
    with pytest.raises(cfg_lib.ConfigError, match="--dlrm_bottom_units='8,5': the last bottom layer must equal --embedding_dim=4"):
        cfg_lib.model_config("dlrm", embedding_dim=4, dlrm_bottom_units=(8, 5))


def test_experiment_config_json_round_trip_restores_tuples_and_enums():
    cfg = cfg_lib.ExperimentConfig(
        data=cfg_lib.DataConfig(data_dir="d"),
        model=cfg_lib.model_config("dcn_v2", hidden_units=(3, 2), cross_structure="stacked", cross_low_rank=4),
        train=cfg_lib.TrainConfig(model_dir="m", optimizer=cfg_lib.Optimizer.ADAGRAD,
                                  lr_schedule=cfg_lib.LRSchedule.PLATEAU))
    import json
    back = cfg_lib.ExperimentConfig.from_json(json.loads(cfg.dumps()))
    assert back == cfg
    with pytest.raises(cfg_lib.ConfigError, match="no option"):
        cfg_lib.ExperimentConfig.from_json({**cfg.to_json(), "model": {**cfg.to_json()["model"], "bogus": 1}})


def test_a_config_json_of_the_single_config_era_still_loads():
    """config.json written before options moved beside their models held every model's options
    in one flat dict: a run's own are read, the others ignored."""
    old = {"name": "dcn", "embedding_dim": 8, "embedding_init_std": 1e-4, "hidden_units": [4], "activation": "relu",
           "dropout": 0.0, "batch_norm": False, "embedding_l2": 0.0, "embedding_table_l2": 0.0, "dense_l2": 0.0,
           "cross_layers": 2, "cross_low_rank": 0, "cross_structure": "parallel", "paddlerec_shared_cross": True,
           "cin_layer_sizes": [200, 200, 200], "cin_split_half": True, "dlrm_bottom_units": [512, 256, 64, 16],
           "dlrm_top_units": [512, 256], "dlrm_self_interaction": False, "embedding_gate": "scalar",
           "hidden_gate": True, "hidden_gate_activation": "tanh", "fefm_l2": 0.0, "flen_dice_factor": 0.0,
           "paddlerec_flen_mf_only": False, "finalnet_field_gate": True, "finalnet_block1_units": [1000, 1000, 1000],
           "finalnet_block1_dropout": 0.4, "finalnet_block2_units": [512], "finalnet_block2_dropout": 0.4,
           "finalnet_self_distillation": True, "dcnv3_deep_layers": 3, "dcnv3_shallow_layers": 4,
           "dcnv3_deep_dropout": 0.1, "dcnv3_shallow_dropout": 0.2, "dcnv3_tri_bce": True}
    assert cfg_lib.ModelConfig.from_json(old) == cfg_lib.model_config(
        "dcn", embedding_dim=8, hidden_units=(4,), cross_layers=2, paddlerec_shared_cross=True)
