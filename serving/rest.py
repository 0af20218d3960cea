"""TF Serving's REST API: POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict with
"instances" (rows) or "inputs" (columns); GET /v1/models/<name>[/versions/<v>] (status) and
.../metadata. Errors map to the HTTP codes TF Serving uses."""
from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from serving import errors
from serving.handlers import STATE_NAMES

_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata)|:(predict))?$")
_HTTP = {grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.INVALID_ARGUMENT: 400,
         grpc.StatusCode.RESOURCE_EXHAUSTED: 413, grpc.StatusCode.UNAVAILABLE: 503}


def _spec(name, version, label):
    spec = predict_pb2.PredictRequest().model_spec
    spec.name = name
    if version:
        spec.version.value = int(version)
    if label:
        spec.version_label = label
    return spec


def _column(values, dtype: tf.DType):
    if dtype == tf.string:
        return np.array([v.encode() if isinstance(v, str) else bytes(v) for v in values], dtype=object)
    return np.array([np.nan if v is None else v for v in values], dtype=dtype.as_numpy_dtype)


def rest_predict(registry, call, name, version, label, body: dict) -> dict:
    """call(signature, {input: TensorProto}) -> outputs: runs it as gRPC requests run."""
    request = predict_pb2.PredictRequest()
    request.model_spec.CopyFrom(_spec(name, version, label))
    request.model_spec.signature_name = body.get("signature_name", "")
    loaded = registry.version(request.model_spec)
    sig = loaded.signature(request.model_spec.signature_name)
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise errors.invalid('"instances" must be a list of objects, one per row')
        columns = {k: [r.get(k) for r in rows] for k in sig.inputs}
        missing = [k for k in sig.inputs if any(r.get(k, ...) is ... for r in rows)]
        if missing:
            raise errors.invalid(f"instances lack the inputs {missing}")
    elif "inputs" in body and isinstance(body["inputs"], dict):
        columns = body["inputs"]
    else:
        raise errors.invalid('the body needs "instances" (row format) or "inputs" (columnar format)')
    arrays = {}
    for k, values in columns.items():
        spec = sig.inputs.get(k)
        if spec is None:
            raise errors.invalid(f"unknown input {k!r}; expected {sorted(sig.inputs)}")
        try:
            arrays[k] = _column(values, spec.dtype)
        except (TypeError, ValueError) as e:
            raise errors.invalid(f"input {k!r} cannot be read as {spec.dtype.name}: {e}") from None
    outputs = call(sig, {k: tf.make_tensor_proto(v) for k, v in arrays.items()})
    if "instances" in body:
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values())).tolist()}
        n = len(next(iter(outputs.values())))
        return {"predictions": [{k: v[i].tolist() for k, v in outputs.items()} for i in range(n)]}
    return {"outputs": {k: v.tolist() for k, v in outputs.items()} if len(outputs) > 1
            else next(iter(outputs.values())).tolist()}


def rest_status(registry, name, version) -> dict:
    m = registry.manager(name)
    states = {v: s for v, s in m.states.items() if not version or v == int(version)}
    if not states:
        raise errors.not_found(f"Could not find version {version} of model {name}")
    return {"model_version_status": [
        {"version": str(v), "state": STATE_NAMES[s], "status": {"error_code": "OK" if not msg else "UNKNOWN",
                                                                 "error_message": msg}}
        for v, (s, msg) in sorted(states.items())]}


def make_rest_handler(registry, call, max_body_bytes):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _send(self, code, payload):
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _serve(self, fn):
            try:
                self._send(200, fn())
            except errors.ServingError as e:
                self._send(_HTTP.get(e.code, 500), {"error": e.message})
            except Exception as e:
                self._send(500, {"error": f"{type(e).__name__}: {e}"})

        def do_GET(self):
            m = _PATH.match(self.path)
            if not m or m.group(5):
                return self._send(404, {"error": f"unknown path {self.path}"})
            name, version, label, metadata, _ = m.groups()
            if metadata:
                def meta():
                    loaded = registry.version(_spec(name, version, label))
                    from google.protobuf import json_format
                    return {"model_spec": {"name": name, "version": str(loaded.version)},
                            "metadata": {"signature_def": {"signature_def": {
                                k: json_format.MessageToDict(v) for k, v in loaded.signature_defs.items()}}}}
                return self._serve(meta)
            return self._serve(lambda: rest_status(registry, name, version))

        def do_POST(self):
            m = _PATH.match(self.path)
            if not m or not m.group(5):
                return self._send(404, {"error": f"unknown path {self.path}"})
            length = int(self.headers.get("Content-Length") or 0)
            if length > max_body_bytes:
                self.rfile.read(length)
                return self._send(413, {"error": f"request of {length} bytes is over the {max_body_bytes}-byte cap"})
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError as e:
                return self._send(400, {"error": f"malformed JSON: {e}"})
            name, version, label = m.group(1), m.group(2), m.group(3)
            self._serve(lambda: rest_predict(registry, call, name, version, label, body))

    return Handler


class RestServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default listen backlog of 5 resets connections under load
