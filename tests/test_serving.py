"""Export layout, and the local server driven over real loopback sockets: round trips equal the
SavedModel's own scores, TF Serving's status codes, version swaps under load, batching, REST."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc)

from ctr_tf import config as cfg_lib
from ctr_tf import export as export_lib
from ctr_tf import models
from ctr_tf.data import synthetic
from serving import client as client_lib
from serving import server as server_lib
from serving.models import ModelManager, VersionPolicy
from serving.load import LoadProcess
from serving.ports import free_port
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export_random_model(schema, export_dir, seed):
    """A DeepFM with large random weights (so scores differ row to row), exported."""
    model = models.build(schema, cfg_lib.ModelConfig(name="deepfm", embedding_dim=4, hidden_units=(8,)))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    return export_lib.export(model, schema, export_dir, "deepfm")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("serving")
    synthetic.write(str(d / "s.tsv"), 2000, seed=3, scale=0.0005)
    schema = helpers.convert(str(d / "s.tsv"), d / "tfr")
    export_dir = str(d / "export")
    v1 = export_random_model(schema, export_dir, 1)
    return {"dir": d, "schema": schema, "export_dir": export_dir, "v1": v1, "text": str(d / "s.tsv")}


def start_server(base, batching=None, max_request_bytes=64 << 20, policy=VersionPolicy(), labels=None, rest=True):
    manager = ModelManager("deepfm", base, policy, poll_seconds=0.1, labels=labels, batching=batching)
    server = server_lib.Server({"deepfm": manager}, port=0, rest_api_port=-1 if rest else 0,
                               max_request_bytes=max_request_bytes).start()
    assert manager.wait_until_available(60)
    return server


BATCHING = {"max_batch_size": 256, "batch_timeout_micros": 2000, "num_batch_threads": 1, "max_enqueued_batches": 100}


@pytest.fixture(scope="module", params=["threads", "batching"])
def server(setup, request):
    """Both transports: handlers on threads (no batching) and coroutines on grpc.aio (batching)."""
    s = start_server(os.path.join(setup["export_dir"], "deepfm"), batching=BATCHING if request.param == "batching" else None)
    assert s.batching == (request.param == "batching")
    yield s
    s.stop(0)


def stubs(port):
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    return prediction_service_pb2_grpc.PredictionServiceStub(ch), model_service_pb2_grpc.ModelServiceStub(ch)


def raw_rows(path, n):
    batch = next(client_lib.read_batches(path, n))
    return batch.rows, batch.labels


def saved_model_scores(version_dir, rows):
    fn = tf.saved_model.load(version_dir).signatures["serving_default"]
    return fn(**{k: tf.constant(v) for k, v in rows.items()})["probability"].numpy().reshape(-1)


# ----------------------------------------------------------------------------- export

def test_export_has_tf_serving_layout_warmup_and_configs(setup):
    v1 = setup["v1"]
    assert v1 == os.path.join(setup["export_dir"], "deepfm", "1")
    assert os.path.exists(os.path.join(v1, "saved_model.pb")) and os.path.isdir(os.path.join(v1, "variables"))
    assert not [d for d in os.listdir(os.path.dirname(v1)) if d.startswith(".")]
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(os.path.join(v1, export_lib.WARMUP_FILE))]
    assert [len(tf.make_ndarray(log.predict_log.request.inputs["C1"])) for log in logs] == [1, 16]
    assert "max_batch_size { value: 1024 }" in open(os.path.join(setup["export_dir"], "batching_parameters.pbtxt")).read()
    assert 'base_path: "/models/deepfm"' in open(os.path.join(setup["export_dir"], "models.config")).read()


def test_fingerprint_matches_the_saved_model_after_the_classify_method_is_set(setup, tmp_path):
    import shutil

    from tensorflow.core.protobuf import fingerprint_pb2, saved_model_pb2
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    def fresh(path):  # the fingerprint TensorFlow computes from the files as they are now
        fp = tf.saved_model.experimental.Fingerprint.from_proto(
            fingerprint_pb2.FingerprintDef.FromString(fingerprinting.CreateFingerprintDef(path)))
        return (fp.saved_model_checksum, fp.signature_def_hash, fp.graph_def_program_hash, fp.checkpoint_hash)

    v1 = setup["v1"]
    sm = saved_model_pb2.SavedModel.FromString(open(os.path.join(v1, "saved_model.pb"), "rb").read())
    assert sm.meta_graphs[0].signature_def[export_lib.CLASSIFY].method_name == export_lib.CLASSIFY_METHOD
    stored = tf.saved_model.experimental.read_fingerprint(v1)
    assert (stored.saved_model_checksum, stored.signature_def_hash, stored.graph_def_program_hash,
            stored.checkpoint_hash) == fresh(v1)
    # the check can fail: rewrite the method name without a new fingerprint and they differ
    copy = shutil.copytree(v1, tmp_path / "v")
    sm.meta_graphs[0].signature_def[export_lib.CLASSIFY].method_name = "tensorflow/serving/regress"
    (copy / "saved_model.pb").write_bytes(sm.SerializeToString())
    assert tf.saved_model.experimental.read_fingerprint(str(copy)).saved_model_checksum != fresh(str(copy))[0]


def test_saved_model_cli_shows_the_serving_signature(setup):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run([cli, "show", "--dir", setup["v1"], "--tag_set", "serve", "--signature_def",
                          "serving_default"], capture_output=True, text=True).stdout
    assert "inputs['I1'] tensor_info:\n      dtype: DT_FLOAT\n      shape: (-1)" in out
    assert "inputs['C26'] tensor_info:\n      dtype: DT_STRING\n      shape: (-1)" in out
    assert "outputs['probability'] tensor_info:\n      dtype: DT_FLOAT\n      shape: (-1, 1)" in out


def test_export_scores_equal_the_model_on_the_converted_records(setup, tmp_path):
    """The in-graph preprocessing gives the SavedModel the records' ids and values exactly."""
    schema = helpers.convert(setup["text"], tmp_path / "one", split=(1, 0, 0))
    model = models.build(schema, cfg_lib.ModelConfig(name="deepfm", embedding_dim=4, hidden_units=(8,)))
    rng = np.random.default_rng(5)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    path = export_lib.export(model, schema, str(tmp_path / "exp"), "deepfm")
    label, dense, cat = helpers.all_rows(schema)
    rows, _ = raw_rows(setup["text"], 2000)
    expected = tf.sigmoid(model({"dense": tf.constant(dense), "cat": tf.constant(cat)})).numpy().reshape(-1)
    np.testing.assert_allclose(saved_model_scores(path, rows), expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- gRPC

def test_plain_stubs_status_metadata_and_predict_match_the_saved_model(setup, server):
    predict_stub, model_stub = stubs(server.port)
    status = model_stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec={"name": "deepfm"}), timeout=10)
    assert [(s.version, s.state) for s in status.model_version_status] == [(1, 30)]
    meta = predict_stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": "deepfm"}, metadata_field=["signature_def"]), timeout=10)
    sigmap = get_model_metadata_pb2.SignatureDefMap()
    meta.metadata["signature_def"].Unpack(sigmap)
    assert set(sigmap.signature_def["serving_default"].inputs) == {r.name for r in setup["schema"].raw_inputs}
    rows, _ = raw_rows(setup["text"], 300)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "deepfm"
    for k, v in rows.items():
        req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    resp = predict_stub.Predict(req, timeout=10)
    assert resp.model_spec.version.value == 1 and resp.model_spec.signature_name == "serving_default"
    got = tf.make_ndarray(resp.outputs["probability"]).reshape(-1)
    np.testing.assert_allclose(got, saved_model_scores(setup["v1"], rows), rtol=1e-6)
    assert got.std() > 0.01


def test_client_scores_a_real_criteo_file_like_the_saved_model(setup, server):
    path = helpers.shared_file("criteo", "paddlerec_raw_b_stripped.txt")
    c = client_lib.PredictClient(f"127.0.0.1:{server.port}", "deepfm")
    probs, labels, rejects = client_lib.score_file(c, path, 32)
    assert len(probs) == 100 and not rejects and set(labels) <= {0.0, 1.0}
    rows, _ = raw_rows(path, 100)
    np.testing.assert_allclose(probs, saved_model_scores(setup["v1"], rows), rtol=1e-6)


def _predict(port, rows, **spec):
    predict_stub, _ = stubs(port)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = spec.get("name", "deepfm")
    if "version" in spec:
        req.model_spec.version.value = spec["version"]
    if "signature" in spec:
        req.model_spec.signature_name = spec["signature"]
    req.output_filter.extend(spec.get("output_filter", []))
    for k, v in rows.items():
        req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    return predict_stub.Predict(req, timeout=10)


@pytest.mark.parametrize("case,code", [
    ("unknown_model", grpc.StatusCode.NOT_FOUND),
    ("unknown_version", grpc.StatusCode.NOT_FOUND),
    ("missing_input", grpc.StatusCode.INVALID_ARGUMENT),
    ("extra_input", grpc.StatusCode.INVALID_ARGUMENT),
    ("wrong_dtype", grpc.StatusCode.INVALID_ARGUMENT),
    ("wrong_shape", grpc.StatusCode.INVALID_ARGUMENT),
    ("ragged_batch", grpc.StatusCode.INVALID_ARGUMENT),
    ("unknown_signature", grpc.StatusCode.INVALID_ARGUMENT),
    ("unknown_output", grpc.StatusCode.INVALID_ARGUMENT),
])
def test_bad_requests_get_tf_serving_status_codes_and_the_server_keeps_answering(setup, server, case, code):
    rows, _ = raw_rows(setup["text"], 4)
    spec = {}
    if case == "unknown_model":
        spec["name"] = "nope"
    elif case == "unknown_version":
        spec["version"] = 99
    elif case == "missing_input":
        rows = {k: v for k, v in rows.items() if k != "C7"}
    elif case == "extra_input":
        rows = {**rows, "C99": rows["C1"]}
    elif case == "wrong_dtype":
        rows = {**rows, "I1": np.nan_to_num(rows["I1"]).astype(np.int64)}
    elif case == "wrong_shape":
        rows = {**rows, "I2": rows["I2"].reshape(-1, 1)}
    elif case == "ragged_batch":
        rows = {**rows, "I3": rows["I3"][:2]}
    elif case == "unknown_signature":
        spec["signature"] = "nope"
    elif case == "unknown_output":
        spec["output_filter"] = ["nope"]
    with pytest.raises(grpc.RpcError) as e:
        _predict(server.port, rows, **spec)
    assert e.value.code() == code, e.value.details()
    good, _ = raw_rows(setup["text"], 4)
    assert _predict(server.port, good).outputs["probability"].tensor_shape.dim[0].size == 4


def test_output_filter_and_second_signature(setup, server):
    rows, _ = raw_rows(setup["text"], 5)
    resp = _predict(server.port, rows, signature="predict_logits", output_filter=["logits"])
    logits = tf.make_ndarray(resp.outputs["logits"]).reshape(-1)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), saved_model_scores(setup["v1"], rows), rtol=1e-5)


def examples_of(rows) -> list:
    """The rows as tf.Examples, a missing value (NaN, "") left out as TF Serving clients do."""
    n = len(next(iter(rows.values())))
    out = []
    for i in range(n):
        ex = tf.train.Example()
        for k, v in rows.items():
            if v.dtype == object:
                if v[i]:
                    ex.features.feature[k].bytes_list.value.append(v[i])
            elif not np.isnan(v[i]):
                ex.features.feature[k].float_list.value.append(float(v[i]))
        out.append(ex)
    return out


def test_classify_with_plain_stubs_matches_predict(setup, server):
    from tensorflow_serving.apis import classification_pb2
    rows, _ = raw_rows(setup["text"], 30)
    predict_stub, _ = stubs(server.port)
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name, req.model_spec.signature_name = "deepfm", "classify"
    req.input.example_list.examples.extend(examples_of(rows))
    resp = predict_stub.Classify(req, timeout=30)
    assert resp.model_spec.version.value == 1 and len(resp.result.classifications) == 30
    assert [c.label for c in resp.result.classifications[0].classes] == ["0", "1"]
    clicks = np.array([c.classes[1].score for c in resp.result.classifications])
    np.testing.assert_allclose(clicks, saved_model_scores(setup["v1"], rows), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([c.classes[0].score for c in resp.result.classifications], 1 - clicks, atol=1e-6)
    # with context: C1 shared by every example unless an example has its own
    shared = {k: v.copy() for k, v in rows.items()}
    shared["C1"] = np.array([b"68fd1e64"] * 30, dtype=object)
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name, req.model_spec.signature_name = "deepfm", "classify"
    req.input.example_list_with_context.context.features.feature["C1"].bytes_list.value.append(b"68fd1e64")
    for ex in examples_of({k: v for k, v in rows.items() if k != "C1"}):
        req.input.example_list_with_context.examples.append(ex)
    resp = predict_stub.Classify(req, timeout=30)
    np.testing.assert_allclose([c.classes[1].score for c in resp.result.classifications],
                               saved_model_scores(setup["v1"], shared), rtol=1e-5, atol=1e-6)
    # Classify on a Predict signature, and an empty input: INVALID_ARGUMENT, as TF Serving answers
    for signature, examples in (("serving_default", examples_of(rows)), ("classify", [])):
        req = classification_pb2.ClassificationRequest()
        req.model_spec.name, req.model_spec.signature_name = "deepfm", signature
        req.input.example_list.examples.extend(examples)
        with pytest.raises(grpc.RpcError) as e:
            predict_stub.Classify(req, timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()


def test_request_over_the_size_cap_is_resource_exhausted(setup):
    s = start_server(os.path.join(setup["export_dir"], "deepfm"), max_request_bytes=20_000, rest=False)
    try:
        rows, _ = raw_rows(setup["text"], 1000)
        with pytest.raises(grpc.RpcError) as e:
            _predict(s.port, rows)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        small, _ = raw_rows(setup["text"], 3)
        assert _predict(s.port, small).model_spec.version.value == 1
    finally:
        s.stop(0)


def test_version_swap_under_load_fails_no_request_renamed_or_written_in_place(setup, tmp_path):
    """Clients in another process keep a server busy; version 2 appears by a rename (as the
    export and the continuous pipeline's pushes publish), version 3 is written in place file by
    file with saved_model.pb first (a copy some other tool makes): each is served once whole, the
    partial one never breaks the served version, and no request fails. Bounded waits on the
    answers themselves, not on the clock."""
    import shutil
    base = tmp_path / "export"
    export_random_model(setup["schema"], str(base), 1)
    staged = tmp_path / "staged"  # versions 1 and 2 there become versions 2 and 3 of the served base path
    for seed in (2, 3):
        export_random_model(setup["schema"], str(staged), seed)
    s = start_server(str(base / "deepfm"), rest=False)
    load = LoadProcess(s.port, setup["text"], cwd=ROOT)
    try:
        load.first_answer(1, 120)
        os.rename(staged / "deepfm" / "1", base / "deepfm" / "2")
        load.first_answer(2, 120)
        (base / "deepfm" / "3").mkdir()
        src = staged / "deepfm" / "2"
        files = sorted(src.rglob("*"), key=lambda p: p.name != "saved_model.pb")
        assert len(files) > 5
        for f in files:
            target = base / "deepfm" / "3" / f.relative_to(src)
            if f.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, target)
        load.first_answer(3, 120)
    finally:
        load.stop()
        s.stop(0)
    assert load.errors == []
    manager = s.registry.manager("deepfm")
    assert manager.states[1][0] == 50 and manager.states[2][0] == 50  # retired (END) once 3 served


def test_corrupt_new_version_never_takes_down_the_served_one(setup, tmp_path, monkeypatch, caplog):
    """Version 1 serves; a directory 2/ with a corrupt saved_model.pb lands (a copy in progress):
    it is logged, reported END with its error, retried, and version 1 keeps answering. When the
    copy completes, version 2 loads and only then is version 1 retired. No request fails."""
    import logging as std_logging
    import shutil

    from serving import models as models_lib
    monkeypatch.setattr(models_lib, "RETRY_SECONDS", 0.1)
    caplog.set_level(std_logging.WARNING)
    base = tmp_path / "export"
    export_random_model(setup["schema"], str(base), 1)
    s = start_server(str(base / "deepfm"), rest=False)
    manager = s.registry.manager("deepfm")
    rows, _ = raw_rows(setup["text"], 50)
    c = client_lib.PredictClient(f"127.0.0.1:{s.port}", "deepfm", retries=0)
    _, model_stub = stubs(s.port)
    seen, failures, stop = [], [], threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                seen.append(c.prediction.Predict(c.request(rows), timeout=10).model_spec.version.value)
            except grpc.RpcError as e:
                failures.append((e.code(), e.details()))

    def status():
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = "deepfm"
        return {st.version: (st.state, st.status.error_message)
                for st in model_stub.GetModelStatus(req, timeout=10).model_version_status}

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        v2 = base / "deepfm" / "2"
        v2.mkdir()
        (v2 / "saved_model.pb").write_bytes(b"\x0a\xffnot a SavedModel, or only its first bytes")
        deadline = time.time() + 30
        while time.time() < deadline and (2 not in manager._failures or manager._failures[2].attempts < 3):
            time.sleep(0.05)
        assert manager._failures[2].attempts >= 3  # retried on later polls
        st = status()
        assert st[1] == (30, "")  # version 1 AVAILABLE throughout
        assert st[2][0] == 50 and "failed to load" in st[2][1]  # version 2 END, with its error
        n_before = len(seen)
        time.sleep(0.5)
        assert len(seen) > n_before and set(seen[n_before:]) == {1}

        # the copy completes: the right files replace the partial ones
        done = tmp_path / "complete"
        complete = export_random_model(setup["schema"], str(done), 2)
        shutil.rmtree(v2)
        shutil.copytree(complete, v2)
        deadline = time.time() + 60
        while time.time() < deadline and 2 not in seen:
            time.sleep(0.05)
    except BaseException:
        s.stop(0)
        raise
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        deadline = time.time() + 10  # the swap retires version 1 right after version 2 is in
        while time.time() < deadline and status().get(1, (0,))[0] != 50:
            time.sleep(0.05)
        st = status()
        after = c.prediction.Predict(c.request(rows), timeout=10).model_spec.version.value
    finally:
        s.stop(0)
    assert failures == []
    assert after == 2 and st[2] == (30, "") and st[1][0] == 50  # 2 AVAILABLE, then 1 retired (END)
    assert any("version 2 failed to load" in r.getMessage() for r in caplog.records)


def test_version_policy_specific_and_labels(setup, tmp_path):
    base = tmp_path / "export"
    for seed in (1, 2, 3):
        export_random_model(setup["schema"], str(base), seed)
    s = start_server(str(base / "deepfm"), policy=VersionPolicy(specific=(1, 3)), labels={"stable": 1, "canary": 3},
                     rest=False)
    try:
        rows, _ = raw_rows(setup["text"], 2)
        assert _predict(s.port, rows).model_spec.version.value == 3
        assert _predict(s.port, rows, version=1).model_spec.version.value == 1
        with pytest.raises(grpc.RpcError) as e:
            _predict(s.port, rows, version=2)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        predict_stub, _ = stubs(s.port)
        req = predict_pb2.PredictRequest()
        req.model_spec.name, req.model_spec.version_label = "deepfm", "stable"
        for k, v in rows.items():
            req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
        assert predict_stub.Predict(req, timeout=10).model_spec.version.value == 1
    finally:
        s.stop(0)


def test_dynamic_batching_merges_concurrent_requests_with_the_same_scores(setup):
    s = start_server(os.path.join(setup["export_dir"], "deepfm"), rest=False,
                     batching={"max_batch_size": 256, "batch_timeout_micros": 20000, "num_batch_threads": 1,
                               "max_enqueued_batches": 100})
    try:
        sig = s.registry.manager("deepfm").get().signature("serving_default")
        before = dict(sig.batcher.stats)
        rows, _ = raw_rows(setup["text"], 64)
        expected = saved_model_scores(setup["v1"], rows)
        results = {}

        refused = []

        def one(i):
            part = {k: v[i:i + 1] for k, v in rows.items()}
            results[i] = tf.make_ndarray(_predict(s.port, part).outputs["probability"]).reshape(-1)[0]

        def bad(i):  # refused inside the batch (values of the wrong length), not before it
            req = predict_pb2.PredictRequest()
            req.model_spec.name = "deepfm"
            for k, v in rows.items():
                req.inputs[k].CopyFrom(tf.make_tensor_proto(v[i:i + 1]))
            req.inputs["I5"].tensor_content = b"\0" * 6
            try:
                stubs(s.port)[0].Predict(req, timeout=30)
            except grpc.RpcError as e:
                refused.append(e.code())
        threads = [threading.Thread(target=one, args=(i,)) for i in range(64)]
        for j in range(8):  # interleaved with the good ones
            threads.insert(j * 9, threading.Thread(target=bad, args=(j,)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Batched matmuls are not bit-identical to single-row ones: equal to float tolerance.
        np.testing.assert_allclose([results[i] for i in range(64)], expected, rtol=1e-5, atol=1e-7)
        assert refused == [grpc.StatusCode.INVALID_ARGUMENT] * 8
        stats = {k: sig.batcher.stats[k] - before[k] for k in ("batches", "rows")}
        assert stats["rows"] == 72 and stats["batches"] < 72 and sig.batcher.stats["largest"] > 1
    finally:
        s.stop(0)


# ----------------------------------------------------------------------------- REST, CLI, shutdown

def _http(port, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode() if body else None,
                                 method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_rest_predict_in_row_and_columnar_form_and_status(setup, server):
    rows, _ = raw_rows(setup["text"], 3)
    expected = saved_model_scores(setup["v1"], rows)
    jsonable = {k: [None if isinstance(x, float) and np.isnan(x) else (x.decode() if isinstance(x, bytes) else float(x))
                    for x in v] for k, v in rows.items()}
    instances = [{k: jsonable[k][i] for k in jsonable} for i in range(3)]
    code, body = _http(server.rest_port, "/v1/models/deepfm:predict", {"instances": instances})
    assert code == 200
    np.testing.assert_allclose(np.array(body["predictions"]).reshape(-1), expected, rtol=1e-5)
    code, body = _http(server.rest_port, "/v1/models/deepfm/versions/1:predict", {"inputs": jsonable})
    assert code == 200
    np.testing.assert_allclose(np.array(body["outputs"]).reshape(-1), expected, rtol=1e-5)
    assert _http(server.rest_port, "/v1/models/deepfm") == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    assert _http(server.rest_port, "/v1/models/nope:predict", {"instances": instances})[0] == 404
    assert _http(server.rest_port, "/v1/models/deepfm:predict", {"instances": [{"I1": 1.0}]})[0] == 400


def test_client_cli_writes_one_probability_per_row_and_reports_auc(setup, server, tmp_path):
    out = tmp_path / "p.txt"
    proc = subprocess.run([sys.executable, "-m", "serving.client", f"--server=127.0.0.1:{server.port}",
                           "--model=deepfm", f"--input={setup['text']}", "--batch_size=300", f"--output={out}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(np.loadtxt(out)) == 2000
    assert "AUC" in proc.stdout


def test_client_retries_unavailable_then_reports_the_status():
    c = client_lib.PredictClient(f"127.0.0.1:{free_port()}", "deepfm", retries=2, backoff=0.05, timeout=1)
    start = time.time()
    with pytest.raises(client_lib.ServingClientError) as e:
        c.predict({"I1": np.zeros(1, np.float32)})
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert time.time() - start >= 0.15  # 0.05 + 0.1 of backoff


def test_server_process_stops_gracefully_on_sigterm(setup):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "serving.server", "--model_name=deepfm",
                             f"--model_base_path={os.path.join(setup['export_dir'], 'deepfm')}", f"--port={port}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        c = client_lib.PredictClient(f"127.0.0.1:{port}", "deepfm")
        c.wait_until_available(120)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        assert "stopping" in out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_server_serves_every_model_of_the_exported_models_config(setup, tmp_path):
    base = tmp_path / "export"
    model = models.build(setup["schema"], cfg_lib.ModelConfig(name="deepfm", embedding_dim=4, hidden_units=(8,)))
    export_lib.export(model, setup["schema"], str(base), "deepfm")
    export_lib.export(model, setup["schema"], str(base), "deepfm_canary")
    config = str(base / "models.config")
    assert 'name: "deepfm_canary"' in open(config).read()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "serving.server", f"--model_config_file={config}", f"--port={port}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        rows, _ = raw_rows(setup["text"], 3)
        for name in ("deepfm", "deepfm_canary"):
            c = client_lib.PredictClient(f"127.0.0.1:{port}", name)
            c.wait_until_available(120)
            assert c.predict(rows).shape == (3,)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
