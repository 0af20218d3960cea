"""SavedModel export for TF Serving: raw Criteo/Avazu fields in, click probability out.

Layout: <export_dir>/<model_name>/<version>/{saved_model.pb, variables/, assets/, assets.extra/}
beside <export_dir>/batching_parameters.pbtxt and models.config for TF Serving; the version
is the next integer after those present. A version is written under a hidden name and renamed
into place, so a server polling the base path never loads half an export.

Signatures:
  serving_default  inputs: one tensor per raw input, shape [batch] (I1..I13 float32 with NaN
                   for missing, C1..C26 string with "" for missing; Avazu: its string columns)
                   outputs: probability [batch, 1] float32: the model's probability corrected for
                   negative downsampling and, when the run was calibrated, calibrated
  predict_logits   the same inputs; outputs: logits [batch, 1] (corrected for downsampling: the
                   logit on the full data's scale, before any calibration)
  classify         TF Serving's Classify API (method tensorflow/serving/classify): inputs
                   "inputs", serialized tf.Examples [batch] holding the raw columns (float_list /
                   bytes_list, a column left out = missing); outputs scores [batch, 2] (no click,
                   click) and classes [batch, 2] ("0", "1")
The preprocessing of schema.json (ctr_tf.preprocessing) runs inside the graph; vocabulary files
travel as assets.
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

from ctr_tf import fs, preprocessing
from ctr_tf import schema as schema_lib

SIGNATURE = "serving_default"
OUTPUT = "probability"
CLASSIFY = "classify"
CLASSIFY_METHOD = "tensorflow/serving/classify"


class ServingModule(tf.Module):
    """What the SavedModel holds: the preprocessing, the model's weights and the signatures.

    The Keras model itself is not an attribute (only a closure of the traced functions): a
    trained model tracks its optimizer, whose Adam slots are twice the tables, and saving through
    it would need a serving twin of the model to leave them out. Tracking the weights alone lets
    the trained model be exported as it is, with no second copy of its tables."""

    def __init__(self, model: tf.keras.Model, schema: schema_lib.Schema, logit_shift: float = 0.0,
                 calibration=None):
        super().__init__(name="ctr_serving")
        self._call_model = _ModelCall(model)
        self.model_weights = list(model.weights)
        self.logit_shift = float(logit_shift)
        self.calibration = calibration
        self.preprocessor = preprocessing.Preprocessor(schema)
        spec = {r.name: tf.TensorSpec([None], tf.float32 if r.dtype == "float32" else tf.string, name=r.name)
                for r in schema.raw_inputs}
        # One trace of preprocessing + model, which the three signatures call (traced for each of
        # them, the export took three times as long); no autograph: nothing here branches on a
        # tensor, and converting the preprocessing's source took most of an export's seconds.
        self.logits = tf.function(self._logits, input_signature=[spec], autograph=False)
        self.serve = tf.function(self._probability, input_signature=[spec], autograph=False)
        self.example_spec = {
            r.name: tf.io.FixedLenFeature([], tf.float32, default_value=float("nan")) if r.dtype == "float32"
            else tf.io.FixedLenFeature([], tf.string, default_value="") for r in schema.raw_inputs}
        self.classify = tf.function(self._classify, input_signature=[tf.TensorSpec([None], tf.string, name="inputs")],
                                    autograph=False)

    def _logits(self, features):
        dense, cat = self.preprocessor(features)
        z = tf.cast(self._call_model({"dense": dense, "cat": cat}), tf.float32)
        if self.logit_shift:
            z = z + tf.constant(self.logit_shift, tf.float32)
        return {"logits": z}

    def _probability(self, features):
        z = self.logits(features)["logits"]
        return {OUTPUT: self.calibration.tf_probability(z) if self.calibration is not None else tf.sigmoid(z)}

    def _classify(self, inputs):
        p = self._probability(tf.io.parse_example(inputs, self.example_spec))[OUTPUT]
        return {"scores": tf.concat([1 - p, p], axis=1),
                "classes": tf.tile(tf.constant([["0", "1"]]), [tf.shape(p)[0], 1])}


class _ModelCall:
    """A model's inference call, held where tf.Module's tracking does not follow."""

    def __init__(self, model):
        self._model = model

    def __call__(self, inputs):
        return self._model(inputs, training=False)


def set_method_name(saved_model_dir: str, signature: str, method: str) -> None:
    """Marks `signature` with a TF Serving method name, and writes the matching fingerprint.

    tf.saved_model.save marks every signature as Predict and has no way to say otherwise, while
    TF Serving's Classify and Regress APIs serve only signatures marked with their own method
    name; so the method is set in saved_model.pb after saving. That changes the file that
    fingerprint.pb checksums (saved_model_checksum, signature_def_hash), so the fingerprint is
    computed again from the rewritten file with TensorFlow's own fingerprinting, the function
    tf.saved_model.save itself calls.
    """
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    path = fs.join(saved_model_dir, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString(fs.read_bytes(path))
    for meta in sm.meta_graphs:
        meta.signature_def[signature].method_name = method
    fs.publish_file(path, sm.SerializeToString())
    fingerprint = fs.join(saved_model_dir, "fingerprint.pb")
    if fs.exists(fingerprint):
        fs.publish_file(fingerprint, fingerprinting.CreateFingerprintDef(saved_model_dir))


def versions(base: str) -> list[int]:
    """The numbered versions under a model's base path, in order."""
    return sorted(int(d) for d in fs.listdir(base) if d.isdigit()) if fs.isdir(base) else []


def next_version(base: str) -> int:
    return max(versions(base), default=0) + 1


def export(model: tf.keras.Model, schema: schema_lib.Schema, export_dir: str, model_name: str,
           extra_assets: dict | None = None, logit_shift: float = 0.0, calibration=None,
           version: int | None = None) -> str:
    """Writes the next version of `model_name` (or `version`, which must not exist yet); returns
    its directory.

    extra_assets: {relative path: bytes} written under the version (e.g. assets.extra/...).
    logit_shift, calibration: added to the logits (log r after negative downsampling at rate r),
    and the ctr_tf.calibration map the served probability goes through (None: the sigmoid); both
    are recorded in assets.extra/calibration.json.
    """
    base = fs.join(export_dir, model_name)
    fs.makedirs(base)
    version = next_version(base) if version is None else int(version)
    final = fs.join(base, str(version))
    if fs.exists(final):
        raise FileExistsError(f"version {version} of {model_name!r} exists already: {final}")
    tmp = fs.join(base, f".tmp-{version}-{os.getpid()}")
    fs.rmtree(tmp, ignore_errors=True)
    module = ServingModule(model, schema, logit_shift, calibration)
    served = {"logit_shift": logit_shift,
              "calibration": calibration.to_json() if calibration is not None else {"method": "none"}}
    extra_assets = {WARMUP_FILE: warmup_records(schema, model_name),
                    "assets.extra/calibration.json": json.dumps(served, indent=1).encode(), **(extra_assets or {})}
    try:
        tf.saved_model.save(module, tmp, signatures={
            SIGNATURE: module.serve.get_concrete_function(),
            "predict_logits": module.logits.get_concrete_function(),
            CLASSIFY: module.classify.get_concrete_function()})
        set_method_name(tmp, CLASSIFY, CLASSIFY_METHOD)
        extra_assets["assets.extra/schema.json"] = json.dumps(
            schema.to_json(), indent=2, default=schema_lib._json_default).encode()
        for rel, data in extra_assets.items():
            path = fs.join(tmp, rel)
            fs.makedirs(fs.dirname(path))
            with fs.open(path, "wb") as f:
                f.write(data)
        # Renamed into place: atomic on a local disk or HDFS; on an object store every file is
        # copied with saved_model.pb last, the file servers poll for (ctr_tf.fs).
        fs.rename(tmp, final, overwrite=False)
    finally:
        fs.rmtree(tmp, ignore_errors=True)
    write_serving_configs(export_dir)
    return final


def latest_version_dir(export_dir: str, model_name: str) -> str:
    base = fs.join(export_dir, model_name)
    found = versions(base)
    if not found:
        raise FileNotFoundError(f"no exported version of {model_name!r} under {export_dir}")
    return fs.join(base, str(found[-1]))


# ----------------------------------------------------------------------------- TF Serving files

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
BATCHING_FILE = "batching_parameters.pbtxt"
MODELS_CONFIG_FILE = "models.config"
BATCHING_PARAMETERS = {"max_batch_size": 1024, "batch_timeout_micros": 2000, "num_batch_threads": 4,
                       "max_enqueued_batches": 100}


def representative_rows(schema: schema_lib.Schema, n: int) -> dict:
    """n rows of raw inputs mixing missing values, common vocabulary values and typical numbers."""
    import numpy as np
    rows = {}
    for j, r in enumerate(schema.raw_inputs):
        if r.dtype == "float32":
            cycle = np.array([np.nan, 0.0, 1.0, 3.0, 10.0, 120.0, 2500.0], np.float32)
            rows[r.name] = cycle[(np.arange(n) + j) % len(cycle)]
        else:
            values = [b""]
            feat = next((f for f in schema.categorical_features if f.source == r.name), None)
            if feat is not None and feat.transform == "vocab" and feat.vocab_size > 2:
                with fs.open(schema.path(feat.params["vocab_file"]), "rb") as f:
                    values += [f.readline().rstrip(b"\n") for _ in range(3)]
            values.append(b"68fd1e64")
            rows[r.name] = np.array([values[(i + j) % len(values)] for i in range(n)], dtype=object)
    return rows


def predict_request(model_name: str, rows: dict, signature: str = SIGNATURE):
    """A tensorflow_serving PredictRequest carrying rows (dict of [n] arrays)."""
    from tensorflow_serving.apis import predict_pb2
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for name, values in rows.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
    return request


def warmup_records(schema: schema_lib.Schema, model_name: str) -> bytes:
    """TF Serving's warmup file: a TFRecord of PredictionLogs, one request of 1 row and one of 16."""
    from tensorflow_serving.apis import prediction_log_pb2
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".tfrecord") as tmp:
        with tf.io.TFRecordWriter(tmp.name) as w:
            for n in (1, 16):
                log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(
                    request=predict_request(model_name, representative_rows(schema, n))))
                w.write(log.SerializeToString())
        with open(tmp.name, "rb") as f:
            return f.read()


def write_serving_configs(export_dir: str) -> None:
    """batching_parameters.pbtxt and models.config (every model under export_dir) for TF Serving,
    with base paths as the official Docker image mounts them (/models/<name>)."""
    batching = "".join(f"{key} {{ value: {value} }}\n" for key, value in BATCHING_PARAMETERS.items())
    fs.publish_file(fs.join(export_dir, BATCHING_FILE), batching + "pad_variable_length_inputs: false\n")
    names = sorted(d for d in fs.listdir(export_dir)
                   if fs.isdir(fs.join(export_dir, d)) and not d.startswith("."))
    config = "".join(f'  config {{\n    name: "{name}"\n    base_path: "/models/{name}"\n'
                     f'    model_platform: "tensorflow"\n'
                     f"    model_version_policy {{ latest {{ num_versions: 1 }} }}\n  }}\n" for name in names)
    fs.publish_file(fs.join(export_dir, MODELS_CONFIG_FILE), "model_config_list {\n" + config + "}\n")
