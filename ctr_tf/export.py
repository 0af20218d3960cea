"""SavedModel export for TF Serving: raw Criteo/Avazu fields in, click probability out.

Layout: <export_dir>/<model_name>/<version>/{saved_model.pb, variables/, assets/}; the version
is the next integer after those present. A version is written under a hidden name and renamed
into place, so a server polling the base path never loads half an export.

Signatures:
  serving_default  inputs: one tensor per raw input, shape [batch] (I1..I13 float32 with NaN
                   for missing, C1..C26 string with "" for missing; Avazu: its string columns)
                   outputs: probability [batch, 1] float32
  predict_logits   the same inputs; outputs: logits [batch, 1]
The preprocessing of schema.json (ctr_tf.preprocessing) runs inside the graph; vocabulary files
travel as assets.
"""
from __future__ import annotations

import json
import os
import shutil

import tensorflow as tf

from ctr_tf import preprocessing
from ctr_tf import schema as schema_lib

SIGNATURE = "serving_default"
OUTPUT = "probability"


class ServingModule(tf.Module):
    def __init__(self, model: tf.keras.Model, schema: schema_lib.Schema):
        super().__init__(name="ctr_serving")
        self.model = model
        self.preprocessor = preprocessing.Preprocessor(schema)
        spec = {r.name: tf.TensorSpec([None], tf.float32 if r.dtype == "float32" else tf.string, name=r.name)
                for r in schema.raw_inputs}
        self.serve = tf.function(self._probability, input_signature=[spec])
        self.logits = tf.function(self._logits, input_signature=[spec])

    def _logits(self, features):
        dense, cat = self.preprocessor(features)
        return {"logits": tf.cast(self.model({"dense": dense, "cat": cat}, training=False), tf.float32)}

    def _probability(self, features):
        return {OUTPUT: tf.sigmoid(self._logits(features)["logits"])}


def next_version(base: str) -> int:
    versions = [int(d) for d in os.listdir(base) if d.isdigit()] if os.path.isdir(base) else []
    return max(versions, default=0) + 1


def export(model: tf.keras.Model, schema: schema_lib.Schema, export_dir: str, model_name: str,
           extra_assets: dict | None = None) -> str:
    """Writes the next version of `model_name`; returns its directory.

    extra_assets: {relative path: bytes} written under the version (e.g. assets.extra/...).
    """
    base = os.path.join(export_dir, model_name)
    os.makedirs(base, exist_ok=True)
    version = next_version(base)
    final = os.path.join(base, str(version))
    tmp = os.path.join(base, f".tmp-{version}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    module = ServingModule(model, schema)
    try:
        tf.saved_model.save(module, tmp, signatures={
            SIGNATURE: module.serve.get_concrete_function(),
            "predict_logits": module.logits.get_concrete_function()})
        os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
        with open(os.path.join(tmp, "assets.extra", "schema.json"), "w") as f:
            json.dump(schema.to_json(), f, indent=2, default=schema_lib._json_default)
        for rel, data in (extra_assets or {}).items():
            path = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def latest_version_dir(export_dir: str, model_name: str) -> str:
    base = os.path.join(export_dir, model_name)
    versions = [int(d) for d in os.listdir(base) if d.isdigit()] if os.path.isdir(base) else []
    if not versions:
        raise FileNotFoundError(f"no exported version of {model_name!r} under {export_dir}")
    return os.path.join(base, str(max(versions)))
