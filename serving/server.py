"""A local server that speaks TensorFlow Serving's gRPC and REST APIs, for machines without
tensorflow_model_server (there is no binary of it on PyPI or Debian).

  python -m serving.server --model_base_path=EXPORT/deepfm --model_name=deepfm --port=8500 \
      [--rest_api_port=8501] [--enable_batching] [--batching_parameters_file=...]
  python -m serving.server --model_config_file=EXPORT/models.config   # every exported model

gRPC: PredictionService.Predict, Classify (signatures marked tensorflow/serving/classify, like the
export's "classify") and GetModelMetadata, ModelService.GetModelStatus (Regress and
MultiInference answer UNIMPLEMENTED). REST: POST /v1/models/<name>[/versions/<v>|
/labels/<l>]:predict with "instances" or "inputs"; GET /v1/models/<name>[/versions/<v>] and
.../metadata. Status codes follow TF Serving: NOT_FOUND for an unknown model or version,
INVALID_ARGUMENT for missing inputs or wrong dtypes/shapes, RESOURCE_EXHAUSTED above the request
size cap. Binds 127.0.0.1 unless --host says otherwise; SIGTERM stops it gracefully.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import os
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import tensorflow as tf
from absl import app, flags, logging
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)

from ctr_tf import console
from ctr_tf.export import CLASSIFY_METHOD
from serving import errors
from serving.models import AVAILABLE, ModelManager, VersionPolicy

STATE_NAMES = {0: "UNKNOWN", 10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}


class Registry:
    """Model name -> ModelManager."""

    def __init__(self, managers: dict[str, ModelManager]):
        self.managers = managers

    def manager(self, name: str) -> ModelManager:
        if name not in self.managers:
            raise errors.not_found(f"Servable not found for request: Latest({name})")
        return self.managers[name]

    def version(self, spec):
        m = self.manager(spec.name)
        version = spec.version.value if spec.HasField("version") else None
        return m.get(version, spec.version_label or None)


def _resolve(registry: Registry, request):
    """The loaded version and signature a PredictRequest names; checks its output filter."""
    loaded = registry.version(request.model_spec)
    sig = loaded.signature(request.model_spec.signature_name)
    for unknown in set(request.output_filter) - set(sig.outputs):
        raise errors.invalid(f"output tensor alias not found in signature: {unknown}")
    return loaded, sig


def _response(loaded, sig, request, outputs: dict) -> predict_pb2.PredictResponse:
    response = predict_pb2.PredictResponse()
    response.model_spec.name = loaded.model_name
    response.model_spec.version.value = loaded.version
    response.model_spec.signature_name = sig.name
    for name in (request.output_filter or outputs):
        _fill_tensor_proto(response.outputs[name], outputs[name])
    return response


def _fill_tensor_proto(proto, array: np.ndarray):
    """tf.make_tensor_proto's encoding (tensor_content for numbers) without its per-call cost."""
    if array.dtype.kind in "fiub" and array.dtype.byteorder in "=|<":
        proto.dtype = tf.dtypes.as_dtype(array.dtype).as_datatype_enum
        for d in array.shape:
            proto.tensor_shape.dim.add(size=d)
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    else:
        proto.CopyFrom(tf.make_tensor_proto(array))


def serialized_examples(inp) -> list[bytes]:
    """A tensorflow.serving.Input's tf.Examples, serialized; with example_list_with_context the
    context's features are added to every example (an example's own feature wins), as TF Serving
    does by concatenating the two serialized messages."""
    kind = inp.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in inp.example_list.examples]
    elif kind == "example_list_with_context":
        context = inp.example_list_with_context.context.SerializeToString()
        examples = [context + e.SerializeToString() for e in inp.example_list_with_context.examples]
    else:
        examples = []
    if not examples:
        raise errors.invalid("Input is empty.")
    return examples


def _answer(context, fn):
    """fn()'s response; ServingError -> its status, anything else -> INTERNAL. The server never
    dies on a bad request."""
    try:
        return fn()
    except errors.ServingError as e:
        code, message = e.code, e.message
    except Exception as e:
        logging.exception("request failed")
        code, message = grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}"
    context.abort(code, message)


async def _answer_async(context, fn):
    """_answer for grpc.aio, where fn() may return an awaitable."""
    try:
        result = fn()
        return await result if inspect.isawaitable(result) else result
    except errors.ServingError as e:
        code, message = e.code, e.message
    except Exception as e:
        logging.exception("request failed")
        code, message = grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}"
    await context.abort(code, message)


def _classify_target(registry, request):
    """(loaded version, signature, its input: the serialized tf.Examples) of a ClassificationRequest."""
    loaded = registry.version(request.model_spec)
    sig = loaded.signature(request.model_spec.signature_name)
    method = loaded.signature_defs[sig.name].method_name
    if method != CLASSIFY_METHOD:
        raise errors.invalid(f"Expected classification signature method_name to be {CLASSIFY_METHOD}. "
                             f"Was: {method}")
    examples = serialized_examples(request.input)
    return loaded, sig, {"inputs": tf.make_tensor_proto(np.array(examples, dtype=object))}


def _classification(loaded, sig, outputs: dict) -> classification_pb2.ClassificationResponse:
    response = classification_pb2.ClassificationResponse()
    response.model_spec.name = loaded.model_name
    response.model_spec.version.value = loaded.version
    response.model_spec.signature_name = sig.name
    scores, classes = outputs.get("scores"), outputs.get("classes")
    for i in range(len(scores if scores is not None else classes)):
        row = response.result.classifications.add()
        for j in range(scores.shape[1] if scores is not None else classes.shape[1]):
            c = row.classes.add()
            if classes is not None:
                c.label = classes[i, j].decode()
            if scores is not None:
                c.score = float(scores[i, j])
    return response


def _metadata(registry, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
    if list(request.metadata_field) != ["signature_def"]:
        raise errors.invalid("Metadata field signature_def must be requested alone")
    loaded = registry.version(request.model_spec)
    resp = get_model_metadata_pb2.GetModelMetadataResponse()
    resp.model_spec.name = loaded.model_name
    resp.model_spec.version.value = loaded.version
    sigmap = get_model_metadata_pb2.SignatureDefMap()
    for k, v in loaded.signature_defs.items():
        sigmap.signature_def[k].CopyFrom(v)
    resp.metadata["signature_def"].Pack(sigmap)
    return resp


def _model_status(registry, request) -> get_model_status_pb2.GetModelStatusResponse:
    m = registry.manager(request.model_spec.name)
    resp = get_model_status_pb2.GetModelStatusResponse()
    wanted = request.model_spec.version.value if request.model_spec.HasField("version") else None
    states = {v: s for v, s in m.states.items() if wanted is None or v == wanted}
    if not states:
        raise errors.not_found(f"Could not find version {wanted} of model {m.name}" if wanted
                               else f"Could not find any versions of model {m.name}")
    for v, (state, msg) in sorted(states.items()):
        st = resp.model_version_status.add()
        st.version, st.state = v, state
        if msg:
            st.status.error_code, st.status.error_message = 13, msg
    return resp


_REGRESS = "Regress is not served by this server; use Predict"
_MULTI = "MultiInference is not served by this server"
_RELOAD = "reloading the model config is not supported; restart"


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Handlers on gRPC's worker threads (the server without dynamic batching): a request runs the
    model on the thread that received it, with no hand-off to another thread."""

    def __init__(self, registry):
        self.registry = registry

    def Predict(self, request, context):
        def run():
            loaded, sig = _resolve(self.registry, request)
            return _response(loaded, sig, request, sig.call_now(request.inputs))
        return _answer(context, run)

    def Classify(self, request, context):
        def run():
            loaded, sig, inputs = _classify_target(self.registry, request)
            return _classification(loaded, sig, sig.call_now(inputs))
        return _answer(context, run)

    def GetModelMetadata(self, request, context):
        return _answer(context, lambda: _metadata(self.registry, request))

    def Regress(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, _REGRESS)

    def MultiInference(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, _MULTI)


class AsyncPredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """The same handlers as coroutines on a grpc.aio event loop (the server with dynamic batching):
    a request waiting for its batch holds no thread, and batches run on the loop. A signature
    that cannot batch runs on `executor`, so that the loop keeps serving meanwhile."""

    def __init__(self, registry, executor):
        self.registry, self.executor = registry, executor

    async def Predict(self, request, context):
        async def run():
            loaded, sig = _resolve(self.registry, request)
            return _response(loaded, sig, request, await sig.call_async(request.inputs, self.executor))
        return await _answer_async(context, run)

    async def Classify(self, request, context):
        async def run():
            loaded, sig, inputs = _classify_target(self.registry, request)
            return _classification(loaded, sig, await sig.call_async(inputs, self.executor))
        return await _answer_async(context, run)

    async def GetModelMetadata(self, request, context):
        return await _answer_async(context, lambda: _metadata(self.registry, request))

    async def Regress(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, _REGRESS)

    async def MultiInference(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, _MULTI)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry):
        self.registry = registry

    def GetModelStatus(self, request, context):
        return _answer(context, lambda: _model_status(self.registry, request))

    def HandleReloadConfigRequest(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, _RELOAD)


class AsyncModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry):
        self.registry = registry

    async def GetModelStatus(self, request, context):
        return await _answer_async(context, lambda: _model_status(self.registry, request))

    async def HandleReloadConfigRequest(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, _RELOAD)


# ----------------------------------------------------------------------------- REST

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


class _RestServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default listen backlog of 5 resets connections under load


# ----------------------------------------------------------------------------- the server

class Server:
    """The gRPC server, optionally the REST server, and the model managers; start() and stop()
    from any thread.

    Without dynamic batching gRPC runs its handlers on `workers` threads and each request runs the
    model on its own handler thread. With batching (any manager given batching parameters) the
    handlers are coroutines on a grpc.aio event loop in a thread of its own, so that requests
    waiting for a batch hold no thread. Measured on 2 cores (serving.benchmark, BENCHMARKS.md):
    the threaded server answers a 128-row request about 0.4 ms sooner than the event loop handing
    the model call to a thread, and the event loop batches 1-row requests faster than threads that
    each wait for their batch.
    """

    def __init__(self, managers: dict, host="127.0.0.1", port=8500, rest_api_port=0,
                 max_request_bytes=64 << 20, workers=8):
        self.registry = Registry(managers)
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predict")
        options = [("grpc.max_receive_message_length", max_request_bytes),
                   ("grpc.max_send_message_length", 256 << 20)]
        self.batching = any(m.batching for m in managers.values())
        self.loop = None
        if self.batching:
            self.loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self.loop.run_forever, name="grpc-aio", daemon=True)
            self._thread.start()
            self.grpc, self.port = self._on_loop(self._create_aio(options, f"{host}:{port}"))
        else:
            self.grpc = grpc.server(self.executor, options=options)
            prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
                PredictionService(self.registry), self.grpc)
            model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(self.registry), self.grpc)
            self.port = self.grpc.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind {host}:{port}")
        self.rest = None
        if rest_api_port:
            self.rest = _RestServer((host, rest_api_port if rest_api_port > 0 else 0),
                                    make_rest_handler(self.registry, self.call, max_request_bytes))
            self.rest_port = self.rest.server_address[1]

    def call(self, sig, protos) -> dict:
        """Runs a request from another thread (REST) the way gRPC requests run: with batching on
        the event loop, batched with gRPC's requests; else in the calling thread."""
        if self.loop is None:
            return sig.call_now(protos)
        return self._on_loop(sig.call_async(protos, self.executor))

    def _on_loop(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def _create_aio(self, options, address):
        server = grpc.aio.server(options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            AsyncPredictionService(self.registry, self.executor), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(AsyncModelService(self.registry), server)
        return server, server.add_insecure_port(address)

    def start(self):
        for m in self.registry.managers.values():
            m.start()
        if self.loop is not None:
            self._on_loop(self.grpc.start())
        else:
            self.grpc.start()
        if self.rest is not None:
            threading.Thread(target=self.rest.serve_forever, daemon=True, name="rest").start()
        return self

    def stop(self, grace: float = 5.0):
        """Refuses new requests, lets those in flight finish (up to `grace` seconds), then stops."""
        if self.loop is not None:
            self._on_loop(self.grpc.stop(grace))
        else:
            self.grpc.stop(grace).wait()
        if self.rest is not None:
            self.rest.shutdown()
        for m in self.registry.managers.values():
            m.stop()
        self.executor.shutdown(wait=True)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)


def managers_from_config(path: str, poll_seconds: float, batching: dict | None) -> dict[str, ModelManager]:
    """ModelManagers for every model of a TF Serving models.config (ModelServerConfig, text format).

    A base_path that does not exist here but names a folder beside the config file (the Docker
    recipe mounts the export directory at /models) is taken from beside the config file.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2
    config = model_server_config_pb2.ModelServerConfig()
    try:
        with open(path) as f:
            text_format.Parse(f.read(), config)
    except (OSError, text_format.ParseError) as e:
        raise ValueError(f"cannot read --model_config_file={path}: {e}") from None
    managers = {}
    for mc in config.model_config_list.config:
        base = mc.base_path
        beside = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.basename(base.rstrip("/")))
        if not os.path.isdir(base) and os.path.isdir(beside):
            base = beside
        policy = mc.model_version_policy
        if policy.HasField("specific"):
            vp = VersionPolicy(specific=tuple(policy.specific.versions))
        elif policy.HasField("all"):
            vp = VersionPolicy(latest=1 << 30)
        else:
            vp = VersionPolicy(latest=policy.latest.num_versions or 1)
        managers[mc.name] = ModelManager(mc.name, base, vp, poll_seconds, dict(mc.version_labels), batching)
    if not managers:
        raise ValueError(f"--model_config_file={path} lists no model")
    return managers


def parse_batching_parameters(path: str | None) -> dict:
    """The fields of a TF Serving batching_parameters.pbtxt that the local batcher reads
    (num_batch_threads is read but not used: batches run one at a time on the event loop)."""
    params = {"max_batch_size": 1024, "batch_timeout_micros": 2000, "num_batch_threads": 4, "max_enqueued_batches": 100}
    if path:
        text = open(path).read()
        for key in params:
            m = re.search(rf"{key}\s*\{{\s*value:\s*(\d+)\s*\}}", text)
            if m:
                params[key] = int(m.group(1))
    return params


def define_flags():
    """The command-line flags; defined only when this module runs as a program."""
    flags.DEFINE_string("model_name", "default", "Name the model is served under.")
    flags.DEFINE_string("model_base_path", None, "Directory holding numbered versions (<base>/<version>/saved_model.pb).")
    flags.DEFINE_string("model_config_file", None, "A TF Serving models.config (text ModelServerConfig) serving several "
                        "models; the export writes one beside the model folders.")
    flags.DEFINE_string("host", "127.0.0.1", "Address to bind; 0.0.0.0 exposes the server beyond this machine.")
    flags.DEFINE_integer("port", 8500, "gRPC port (0 picks a free one).")
    flags.DEFINE_integer("rest_api_port", 0, "REST port; 0 disables REST, -1 picks a free port.")
    flags.DEFINE_boolean("enable_batching", False, "Server-side dynamic batching.")
    flags.DEFINE_string("batching_parameters_file", None, "TF Serving batching_parameters.pbtxt.")
    flags.DEFINE_float("file_system_poll_wait_seconds", 1.0, "How often to look for new versions.")
    flags.DEFINE_integer("num_versions", 1, "Version policy latest-N: serve the newest N versions.")
    flags.DEFINE_list("specific_versions", [], "Version policy specific: serve exactly these versions.")
    flags.DEFINE_list("version_labels", [], "label=version pairs, e.g. stable=1,canary=2.")
    flags.DEFINE_integer("max_request_bytes", 64 << 20, "Requests above this many bytes get RESOURCE_EXHAUSTED.")
    flags.DEFINE_integer("grpc_workers", 8, "Threads running gRPC handlers (each runs its request's model "
                         "call); with batching, threads for signatures that cannot batch.")
    flags.DEFINE_float("gil_switch_interval_ms", 0.5, "CPython's thread switch interval (default 5 ms).")


FLAGS = flags.FLAGS


def main(argv):
    del argv
    # Requests pass between the event loop, the batcher and the model threads; with CPython's
    # default 5 ms GIL switch interval those handoffs dominated small-request latency.
    sys.setswitchinterval(FLAGS.gil_switch_interval_ms / 1000)
    logging.set_verbosity(logging.WARNING)
    console.quiet_tensorflow_python()
    if bool(FLAGS.model_base_path) == bool(FLAGS.model_config_file):
        sys.exit("server: error: give either --model_base_path (one model) or --model_config_file")
    batching = parse_batching_parameters(FLAGS.batching_parameters_file) if FLAGS.enable_batching else None
    if FLAGS.model_config_file:
        try:
            managers = managers_from_config(FLAGS.model_config_file, FLAGS.file_system_poll_wait_seconds, batching)
        except ValueError as e:
            sys.exit(f"server: error: {e}")
    else:
        try:
            labels = {k: int(v) for k, v in (p.split("=") for p in FLAGS.version_labels)}
            specific = tuple(int(v) for v in FLAGS.specific_versions)
        except ValueError:
            sys.exit("server: error: --version_labels takes label=version pairs and --specific_versions integers")
        managers = {FLAGS.model_name: ModelManager(
            FLAGS.model_name, FLAGS.model_base_path, VersionPolicy(latest=FLAGS.num_versions, specific=specific),
            FLAGS.file_system_poll_wait_seconds, labels, batching)}
    server = Server(managers, FLAGS.host, FLAGS.port, FLAGS.rest_api_port,
                    FLAGS.max_request_bytes, FLAGS.grpc_workers).start()
    for m in managers.values():
        if not m.on_disk():
            print(f"server: warning: no version of {m.name} under {m.base_path} yet; polling", file=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    rest = f", REST on {FLAGS.host}:{server.rest_port}" if server.rest else ""
    models = "; ".join(f"{m.name} versions {sorted(v for v, (st, _) in m.states.items() if st == AVAILABLE)}"
                       for m in managers.values())
    print(f"serving {models} on {FLAGS.host}:{server.port} (gRPC){rest}", flush=True)
    stop.wait()
    print("server: stopping", flush=True)
    server.stop()
    print("server: stopped", flush=True)
    sys.stderr.flush()
    # Requests are drained and every server thread is stopped; interpreter finalization would now
    # force-unwind gRPC's and TensorFlow's C++ threads, which aborts the process, so leave at once.
    os._exit(0)


if __name__ == "__main__":
    define_flags()
    app.run(main)
