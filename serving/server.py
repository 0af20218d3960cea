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
import os
import re
import signal
import sys
import threading

import grpc
from absl import app, flags

from ctr_tf import console, fs
from serving import grpc_services, rest
from serving.handlers import Registry
from serving.models import AVAILABLE, ModelManager, VersionPolicy

# The request handling lives in serving.handlers (transport-independent), serving.grpc_services
# and serving.rest; this module is the server's lifecycle, its configuration files and main.


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
            grpc_services.add_services(self.grpc, self.registry)
            self.port = self.grpc.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind {host}:{port}")
        self.rest = None
        if rest_api_port:
            self.rest = rest.RestServer((host, rest_api_port if rest_api_port > 0 else 0),
                                        rest.make_rest_handler(self.registry, self.call, max_request_bytes))
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
        grpc_services.add_services(server, self.registry, self.executor, asynchronous=True)
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
        text_format.Parse(fs.read_text(path), config)
    except (OSError, fs.tf.errors.OpError, text_format.ParseError) as e:
        raise ValueError(f"cannot read --model_config_file={path}: {e}") from None
    managers = {}
    for mc in config.model_config_list.config:
        base = mc.base_path
        beside = fs.join(fs.dirname(fs.abspath(path)), fs.basename(base.rstrip("/")))
        if not fs.isdir(base) and fs.isdir(beside):
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
        text = fs.read_text(path)
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
    console.quiet_python_logging()
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
