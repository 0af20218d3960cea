"""Every stage on paths of an object store: TensorFlow's in-memory ram:// file system stands in for
gs:// or s3:// (one process: converter, trainer, export, server, client), and Beam's own fake S3
client for the Beam runner's inputs, which its workers read through Beam's FileSystems."""
import gzip
import json
import uuid

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import fs, markers, trainer
from ctr_tf import schema as schema_lib
from ctr_tf.data import convert as convert_lib
from ctr_tf.data import synthetic
from serving import client as client_lib
from serving.models import ModelManager
from serving import server as server_lib
from tests import helpers

gfile = tf.io.gfile


@pytest.fixture()
def ram():
    """A fresh ram:// root, removed after the test."""
    root = f"ram://ctr_tf-{uuid.uuid4().hex[:8]}"
    gfile.makedirs(root)
    yield root
    fs.rmtree(root)


def test_convert_train_export_serve_and_score_on_ram_paths(ram, tmp_path):
    """Text gzipped on the store -> TFRecords + schema.json there -> a DeepFM whose model_dir and
    export are there -> the local server polling the store's base path -> the client's output on
    the store. Nothing touches the local disk but pytest's own directory."""
    synthetic.write(f"{ram}/day.tsv", 3000, seed=2, scale=0.0005)
    with fs.open(f"{ram}/day.tsv.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as z:
        z.write(fs.read_bytes(f"{ram}/day.tsv"))
    schema = convert_lib.convert(convert_lib.ConvertConfig(inputs=(f"{ram}/day.tsv.gz",), output_dir=f"{ram}/data",
                                                           min_count=1, progress=False))
    assert schema.directory == f"{ram}/data" and schema.split_rows("train") > 2000
    assert all(f.startswith(f"{ram}/data/") for f in schema.split_files("train"))
    assert not [n for n in fs.listdir(f"{ram}/data") if n.startswith(".incomplete")]
    assert markers.read(f"{ram}/data")["kind"] == "converted_data"
    assert fs.read_text(f"{ram}/data/rejects.tsv").startswith("file\tline\treason")
    cfg = cfg_lib.ExperimentConfig(
        data=cfg_lib.DataConfig(data_dir=f"{ram}/data"),
        model=cfg_lib.model_config("deepfm", embedding_dim=4, hidden_units=(8,)),
        train=cfg_lib.TrainConfig(model_dir=f"{ram}/runs/deepfm", epochs=2, batch_size=256, refit_intercept=True,
                                  early_stopping_patience=2, export_dir=f"{ram}/serving"))
    out = trainer.run(cfg)
    assert out["export"] == f"{ram}/serving/deepfm/1"
    for name in ("config.json", "flags.txt", "best_epoch.json", "intercept.json", "metrics-test.json", "timings.json"):
        assert fs.exists(f"{ram}/runs/deepfm/{name}"), name
    assert tf.train.latest_checkpoint(f"{ram}/runs/deepfm/checkpoints").endswith("epoch-1")
    assert gfile.glob(f"{ram}/runs/deepfm/tensorboard/eval/events.out.tfevents.*")
    assert fs.exists(f"{ram}/serving/models.config") and not [
        n for n in fs.listdir(f"{ram}/serving/deepfm") if n.startswith(".tmp")]
    # resumes from the store: nothing left to train; evaluated and exported again, as version 2
    again = trainer.run(cfg)
    assert again["train"]["steps"] == 0 and again["export"] == f"{ram}/serving/deepfm/2"
    # served from the store, the same scores as the SavedModel loaded from it
    rows = next(client_lib.read_batches(f"{ram}/day.tsv", 64)).rows
    fn = tf.saved_model.load(again["export"]).signatures["serving_default"]
    expected = fn(**{k: tf.constant(v) for k, v in rows.items()})["probability"].numpy().reshape(-1)
    manager = ModelManager("deepfm", f"{ram}/serving/deepfm", poll_seconds=0.1)
    server = server_lib.Server({"deepfm": manager}, port=0).start()
    try:
        assert manager.wait_until_available(60)
        served = client_lib.PredictClient(f"127.0.0.1:{server.port}", "deepfm").predict(rows)
        # a third export is picked up from the store
        cfg2 = cfg_lib.ExperimentConfig(cfg.data, cfg.model, cfg_lib.TrainConfig(
            model_dir=cfg.train.model_dir, mode=cfg_lib.Mode.EXPORT, refit_intercept=True,
            early_stopping_patience=2, export_dir=f"{ram}/serving"))
        assert trainer.run(cfg2)["export"] == f"{ram}/serving/deepfm/3"
        manager.poll()
        assert manager.get().version == 3
    finally:
        server.stop(0)
    np.testing.assert_allclose(np.asarray(served).reshape(-1), expected, rtol=1e-5, atol=1e-7)
    # the predict mode and the client write their outputs on the store
    trainer.run(cfg_lib.ExperimentConfig(cfg.data, cfg.model, cfg_lib.TrainConfig(
        model_dir=cfg.train.model_dir, mode=cfg_lib.Mode.PREDICT, predict_output=f"{ram}/predictions.txt")))
    assert len(fs.read_text(f"{ram}/predictions.txt").split()) == schema.split_rows("test")


def test_publish_on_a_store_without_renames_writes_saved_model_pb_last(ram, monkeypatch):
    """ram://, like an object store, has no directory rename: a version is copied file by file,
    saved_model.pb last (the file a server polls for), and the source removed."""
    gfile.makedirs(f"{ram}/base/.tmp-1/variables")
    for name in ("saved_model.pb", "fingerprint.pb", "variables/variables.index"):
        with fs.open(f"{ram}/base/.tmp-1/{name}", "w") as f:
            f.write(name)
    copied = []
    real_copy = gfile.copy
    monkeypatch.setattr(gfile, "copy", lambda a, b, overwrite=False: (copied.append(b), real_copy(a, b, overwrite)))
    fs.rename(f"{ram}/base/.tmp-1", f"{ram}/base/1")
    assert copied[-1] == f"{ram}/base/1/saved_model.pb" and len(copied) == 3
    assert fs.listdir(f"{ram}/base") == ["1"] and fs.read_text(f"{ram}/base/1/variables/variables.index")
    # a whole file is one upload there (no temporary name), locally a rename of a temporary file
    fs.write_json(f"{ram}/base/x.json", {"a": 1})
    assert fs.read_json(f"{ram}/base/x.json") == {"a": 1} and sorted(fs.listdir(f"{ram}/base")) == ["1", "x.json"]


def test_schema_paths_stay_urls():
    s = schema_lib.Schema((), (), {}, directory="gs://bucket/data")
    assert s.path("train-00000-of-00001.tfrecord") == "gs://bucket/data/train-00000-of-00001.tfrecord"
    assert s.path("gs://other/x") == "gs://other/x" and fs.abspath("gs://b/x") == "gs://b/x"


@pytest.fixture()
def fake_s3(monkeypatch):
    """Beam's S3 file system over Beam's own in-memory fake S3 client (its test helper), in this
    process: what Beam's FileSystems read for s3:// paths."""
    pytest.importorskip("apache_beam")
    from apache_beam.io.aws import s3io
    from apache_beam.io.aws.clients.s3 import fake_client
    client = fake_client.FakeS3Client()

    class FakeS3IO(s3io.S3IO):
        def __init__(self, client_=None, options=None):
            super().__init__(client=client)
    monkeypatch.setattr(s3io, "S3IO", FakeS3IO)

    def put(path, data: bytes):
        bucket, key = path[len("s3://"):].split("/", 1)
        client.add_file(fake_client.FakeFile(bucket, key, data))
    return put


def test_beam_runner_reads_its_inputs_through_beams_file_systems(fake_s3, tmp_path):
    """The inputs live on (Beam's fake) S3, which only Beam's FileSystems reach: the driver lists,
    sizes and sniffs them and the workers read their byte ranges through it, and the data set is
    the local converter's of the same bytes."""
    from ctr_tf.data import beam_convert, compare
    from ctr_tf.data.beam_convert import BEAM_FILES
    text = helpers.shared_file("criteo", "kaggle_random_a_with_id.csv")
    data = open(text, "rb").read()
    fake_s3("s3://ctr-tf-test/logs/day-0.csv", data)
    assert BEAM_FILES.glob("s3://ctr-tf-test/logs/day-*.csv") == ["s3://ctr-tf-test/logs/day-0.csv"]
    assert BEAM_FILES.size("s3://ctr-tf-test/logs/day-0.csv") == len(data)
    cfg = convert_lib.ConvertConfig(inputs=("s3://ctr-tf-test/logs/day-*.csv",), output_dir=str(tmp_path / "beam"),
                                    categorical_encoding="hash", hash_buckets=1000, progress=False)
    beam_convert.convert(cfg, beam_options="--runner=DirectRunner --direct_running_mode=in_memory",
                         range_bytes=len(data) // 3)
    convert_lib.convert(convert_lib.ConvertConfig(inputs=(text,), output_dir=str(tmp_path / "local"),
                                                  categorical_encoding="hash", hash_buckets=1000, progress=False))
    # the same rows, vocabularies and schema; only the sources' paths differ, as they do
    assert compare.differences(str(tmp_path / "beam"), str(tmp_path / "local")) == ["schema.json 'sources' differs"]
    beam, local = (json.load(open(tmp_path / d / "schema.json"))["sources"] for d in ("beam", "local"))
    assert beam[0]["path"] == "s3://ctr-tf-test/logs/day-0.csv"
    assert {**beam[0], "path": ""} == {**local[0], "path": ""}
