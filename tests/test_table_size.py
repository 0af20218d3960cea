"""Tables that fit: per-field thresholds, per-field sizes (projected where a model needs one
size), the quotient-remainder trick, and float16 / int8 tables in the export, each against its
plain counterpart, served by the local server; bad settings refused at start, naming the flag."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import models, trainer
from ctr_tf import schema as schema_lib
from ctr_tf.layers.embedding import FieldEmbedding, quantize_int8, table_storage
from ctr_tf.layers.mixed_embedding import MixedEmbedding, rule_dims
from ctr_tf.models.common import table_layout
from serving import client as client_lib
from serving.models import ModelManager
from tests import helpers
from tests.test_layers import _toy_schema
from tests.test_trainer import make_cfg


def test_int8_rows_reconstruct_within_half_a_step_with_each_rows_own_scale_and_offset():
    rng = np.random.default_rng(0)
    table = (rng.normal(0, 1, (300, 8)) * rng.exponential(0.05, (300, 1)) + rng.normal(0, 0.01, (300, 1)))
    codes, k, zero, (log_min, step) = quantize_int8(table.astype(np.float32))
    assert codes.dtype == k.dtype == zero.dtype == np.uint8 and codes.shape == (300, 8) and k.shape == (300,)
    scale = np.exp(np.float32(log_min) + k.astype(np.float32) * np.float32(step))
    for r in range(300):  # row by row, as the layer docstring states the map
        back = scale[r] * (codes[r].astype(np.float64) - zero[r])
        span = max(table[r].max(), 0) - min(table[r].min(), 0)
        assert np.abs(back - table[r]).max() <= scale[r] / 2 + 1e-7
        assert scale[r] <= span / 254 * 1.03 + 1e-12  # its own scale: within one log step of the row's range
    one_wide, k1, z1, _ = quantize_int8(table[:, :1].astype(np.float32), rowwise=False)
    assert k1.shape == z1.shape == (1,) and one_wide.shape == (300, 1)


def test_quantised_lookups_serve_what_the_float_table_holds_within_its_step():
    ids = tf.constant(np.random.default_rng(1).integers(0, 40, (32, 2)), tf.int32)
    layer = FieldEmbedding([40, 40], 6, init_std=0.5)
    exact = layer(ids).numpy()
    for storage, tol in (("float16", 1e-3), ("int8", 0.5 * 2.0 / 254 + 1e-3)):
        with table_storage(storage):
            q = FieldEmbedding([40, 40], 6)
        q(ids)
        q.quantize_from(layer.embeddings.numpy())
        np.testing.assert_allclose(q(ids).numpy(), exact, atol=tol)
        assert q.get_config()["storage"] == storage


def test_a_table_in_shards_quantises_chunk_by_chunk_to_the_whole_tables_codes(monkeypatch):
    from ctr_tf.layers import embedding
    rng = np.random.default_rng(2)
    table = (rng.normal(0, 1, (50, 5)) * rng.exponential(0.05, (50, 1))).astype(np.float32)
    shards = [tf.Variable(table[:23]), tf.Variable(table[23:])]
    monkeypatch.setattr(embedding, "CHUNK_ROWS", 7)  # chunks of 7 rows over shards of 23 and 27
    for dim, src in ((5, table), (1, table[:, :1])):
        parts = shards if dim == 5 else [tf.Variable(src[:23]), tf.Variable(src[23:])]
        with table_storage("int8"):
            q = FieldEmbedding([20, 30], dim)
        q(tf.zeros((1, 2), tf.int32))
        q.quantize_from(parts)
        codes, k, zero, log_scale = quantize_int8(src, rowwise=dim > 1)
        np.testing.assert_array_equal(q.embeddings.numpy(), codes)
        np.testing.assert_array_equal(q.scale_codes.numpy(), k)
        np.testing.assert_array_equal(q.zeros.numpy(), zero)
        np.testing.assert_array_equal(q.log_scale.numpy(), log_scale)
    with table_storage("float16"):
        h = FieldEmbedding([20, 30], 5)
    h(tf.zeros((1, 2), tf.int32))
    h.quantize_from(shards)
    np.testing.assert_array_equal(h.embeddings.numpy(), table.astype(np.float16))


def test_mixed_sizes_and_qr_vectors_against_a_loop_over_fields():
    vocab, dims = [30, 50, 70], [2, 4, 6]
    layer = MixedEmbedding(vocab, dims, 4, qr=[0, 8, 8], qr_combiner="product", init_std=0.5)
    ids = np.array([[1, 49, 3], [29, 0, 69], [2, 17, 40]], np.int32)
    fresh = layer(tf.constant(ids))[1].numpy()
    quotients = {w.name.split("/")[-2]: w.numpy() for w in layer.weights if "quotient" in w.name}
    np.testing.assert_array_equal(fresh[:, 2:6], quotients["quotient_d4"][ids[:, 1] // 8])  # R starts at one
    np.testing.assert_array_equal(fresh[:, 6:], quotients["quotient_d6"][ids[:, 2] // 8])
    rng = np.random.default_rng(3)
    for w in layer.weights:  # remainders off one, so that the map below is tested on them too
        w.assign(rng.normal(0, 0.5, w.shape).astype(np.float32))
    vectors, flat = (t.numpy() for t in layer(tf.constant(ids)))
    tables = {t.name.split("/")[-2]: t.numpy() for t in layer.weights if "embeddings" in t.name}
    proj = {0: layer.projections["plain_d2"].numpy()[0], 2: layer.projections["qr_d6"].numpy()[0]}
    assert sorted(tables) == ["quotient_d4", "quotient_d6", "remainder_d4", "remainder_d6", "table_d2"]
    assert tables["quotient_d4"].shape == (-(-50 // 8), 4) and tables["remainder_d6"].shape == (8, 6)
    for b in range(3):
        own = [tables["table_d2"][ids[b, 0]],
               tables["quotient_d4"][ids[b, 1] // 8] * tables["remainder_d4"][ids[b, 1] % 8],
               tables["quotient_d6"][ids[b, 2] // 8] * tables["remainder_d6"][ids[b, 2] % 8]]
        np.testing.assert_allclose(flat[b], np.concatenate(own), rtol=1e-6)
        np.testing.assert_allclose(vectors[b, 0], own[0] @ proj[0], rtol=1e-5)
        np.testing.assert_allclose(vectors[b, 1], own[1], rtol=1e-6)  # already the common size
        np.testing.assert_allclose(vectors[b, 2], own[2] @ proj[2], rtol=1e-5)
    assert rule_dims("log:1:16", [2, 1000, 10 ** 7]) == [1, 10, 16]


def test_bad_settings_are_refused_naming_the_flag_and_value():
    schema = _toy_schema(vocab=(50, 60, 70))

    def build(name="deepfm", **kw):
        return models.build(schema, cfg_lib.model_config(name, embedding_dim=4, hidden_units=(8,), **kw))
    for kw, message in (({"embedding_dims": "C9=2"}, "C9 is no field of the data"),
                        ({"embedding_dims": "I1=2"}, "I1 is a dense feature, which has no table"),
                        ({"embedding_dims": "default=8"}, "default=8 differs from --embedding_dim=4"),
                        ({"qr_fields": "C0", "qr_collisions": 64}, "C0 has 50 rows, not more than --qr_collisions=64"),
                        ({"qr_fields": "Cx", "qr_collisions": 4}, "Cx is no categorical field")):
        with pytest.raises(cfg_lib.ConfigError, match=message):
            build(**kw)
    with pytest.raises(cfg_lib.ConfigError, match="--qr_collisions=0: --qr_fields/--qr_min_rows need"):
        cfg_lib.model_config("deepfm", qr_fields="C0")
    with pytest.raises(cfg_lib.ConfigError, match="--model=ffm's tables are .* it takes no per-field sizes"):
        build("ffm", embedding_dims="C0=2")
    assert table_layout(schema, cfg_lib.model_config("dnn", embedding_dim=4, qr_min_rows=60, qr_collisions=4)) == (
        [4, 4, 4], [0, 4, 4])
    with pytest.raises(cfg_lib.ConfigError, match="--export_table_dtype='int4'"):
        cfg_lib.TrainConfig(model_dir="m", export_table_dtype="int4")


def test_per_field_thresholds_are_applied_and_recorded(tmp_path):
    path = helpers.shared_file("criteo", "kaggle_random_a_with_id.csv")
    schema = helpers.convert(path, tmp_path / "d", min_count=1, field_min_counts=(("C3", 3), ("C12", 5)))
    by = {f.name: f for f in schema.categorical_features}
    assert by["C3"].params["min_count"] == 3 and by["C12"].params["min_count"] == 5 and by["C1"].params["min_count"] == 1
    plain = helpers.convert(path, tmp_path / "p", min_count=1)
    pby = {f.name: f for f in plain.categorical_features}
    assert by["C1"].vocab_size == pby["C1"].vocab_size and by["C3"].vocab_size < pby["C3"].vocab_size
    with pytest.raises(ValueError, match="--min_count names C99"):
        helpers.convert(path, tmp_path / "x", field_min_counts=(("C99", 2),))


@pytest.fixture(scope="module")
def data_dir(planted_records):
    return planted_records


def test_float16_and_int8_exports_are_smaller_score_as_float32_does_and_serve(data_dir, tmp_path):
    md = tmp_path / "m"
    out = trainer.run(make_cfg(data_dir, md, epochs=2, model_kw={"embedding_dim": 16}))
    src = os.path.join(os.path.dirname(data_dir), "s.tsv")
    rows = next(client_lib.read_batches(src, 500)).rows
    feed = {k: tf.constant(v) for k, v in rows.items()}

    def served(path):
        return tf.saved_model.load(path).signatures["serving_default"](**feed)["probability"].numpy().reshape(-1)

    def size(path):
        return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs_ in os.walk(os.path.join(path, "variables"))
                   for f in fs_)
    base = served(out["export"])
    tables = [(int(t.shape[0]), int(t.shape[1])) for t in models.embedding_tables(trainer.Run(
        make_cfg(data_dir, md, mode=cfg_lib.Mode.EXPORT, model_kw={"embedding_dim": 16})).model)]
    stored = {"float16": sum(r * d * 2 for r, d in tables), "int8": sum(r * (d + 2) if d > 1 else r for r, d in tables)}
    for dtype, tol in (("float16", 2e-3), ("int8", 2e-2)):
        cfg = make_cfg(data_dir, md, epochs=2, mode=cfg_lib.Mode.EXPORT, export_table_dtype=dtype,
                       model_kw={"embedding_dim": 16})
        path = trainer.run(cfg)["export"]
        timings = json.loads((md / "timings.json").read_text())  # the export's figures beside the training's
        assert timings["train_examples"] == out["timings"]["train_examples"] and "peak_rss_mb_export" in timings
        np.testing.assert_allclose(served(path), base, atol=tol)
        saved = size(out["export"]) - size(path)  # the tables' bytes, less what the dtype stores
        assert saved >= 0.98 * (sum(r * d * 4 for r, d in tables) - stored[dtype]), (dtype, saved)
    manager = ModelManager("deepfm", os.path.dirname(path))  # the local server loads the int8 version
    manager.poll()
    assert manager.get().version == 3
    assert sorted(os.listdir(md / "export" / "deepfm")) == ["1", "2", "3"]


def test_a_run_with_per_field_sizes_and_qr_trains_exports_and_serves_what_it_computes(data_dir, tmp_path):
    cfg = make_cfg(data_dir, tmp_path / "m", epochs=2,
                   model_kw={"embedding_dims": "C3=2,C12=2", "qr_fields": "C3,C4", "qr_collisions": 4})
    out = trainer.run(cfg)
    assert out["test"]["auc"] > 0.6
    r = trainer.Run(dataclasses_replace_mode(cfg))
    r.restore_latest()
    src = os.path.join(os.path.dirname(data_dir), "s.tsv")
    rows = next(client_lib.read_batches(src, 300)).rows
    from ctr_tf import preprocessing
    dense, cat = preprocessing.Preprocessor(r.schema)({k: tf.constant(v) for k, v in rows.items()})
    local = tf.sigmoid(r.model({"dense": dense, "cat": cat}, training=False) + r.logit_shift).numpy().reshape(-1)
    fn = tf.saved_model.load(out["export"]).signatures["serving_default"]
    np.testing.assert_allclose(fn(**{k: tf.constant(v) for k, v in rows.items()})["probability"].numpy().reshape(-1),
                               local, rtol=1e-5, atol=1e-6)
    schema = schema_lib.load(data_dir)
    plain = models.build(schema, cfg_lib.model_config("deepfm", embedding_dim=8, hidden_units=(32, 16)))
    assert r.model.count_params() < plain.count_params()
    from pipelines.benchmark_table_size import step_times  # the benchmark's paired timing, on this run
    run = {"model_dir": str(tmp_path / "m")}
    ms = step_times({"plain": run, "mixed_half": run, "qr4": run}, rounds=2, steps=2)
    assert sorted(ms) == ["mixed_half", "plain"] and all(v > 0 for v in ms.values())  # qr4 has no hash4 twin


def dataclasses_replace_mode(cfg):
    import dataclasses
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, mode=cfg_lib.Mode.EXPORT))


@pytest.mark.parametrize("name", models.names())
def test_every_model_takes_per_field_sizes_and_qr_or_refuses_them_naming_the_flag(name):
    from tests.test_layers import tiny_model_config
    schema = _toy_schema(vocab=(50, 60, 70))
    cfg = tiny_model_config(name, embedding_dims="C0=2,C2=6", qr_fields="C1,C2", qr_collisions=4)
    x = {"dense": tf.ones((3, 4)), "cat": tf.constant([[1, 5, 69], [0, 59, 3], [2, 2, 2]], tf.int32)}
    try:
        model = models.build(schema, cfg)
    except cfg_lib.ConfigError as e:
        assert "--embedding_dims" in str(e) or "--qr_" in str(e), e
        return
    assert model(x, training=False).shape == (3, 1)
    assert any("quotient" in w.name for w in model.weights)
