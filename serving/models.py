"""Loaded SavedModel versions and the manager that discovers, loads and retires them.

The manager polls `<base_path>/<version>/` like TF Serving: a new version is loaded (and warmed
with its assets.extra/tf_serving_warmup_requests) before it replaces the old, so a swap fails no
request. A version the policy no longer wants is retired only once every version it wants is
serving (or when its directory is gone): a corrupt or half-written new version (an rsync still in
progress) is logged, reported as END with its error in GetModelStatus, retried on later polls
(at once when its files change, otherwise with a growing delay), and never takes down the
version being served.
"""
from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

import tensorflow as tf
from absl import logging

from ctr_tf import fs
from serving import errors, merge
from serving.batching import Batcher

AVAILABLE, LOADING, UNLOADING, END = 30, 20, 40, 50
RETRY_SECONDS, MAX_RETRY_SECONDS = 1.0, 60.0


@dataclasses.dataclass
class _Failure:
    """A version that failed to load: retried when its files change or its delay has passed."""
    files: tuple
    attempts: int
    retry_at: float


def _dir_signature(path: str) -> tuple:
    """(relative path, size, mtime) of every file under a version directory: changes while copying."""
    out = []
    for root, _, names in fs.gfile.walk(path):
        for n in names:
            p = fs.join(root, n)
            try:
                st = fs.gfile.stat(p)
            except tf.errors.OpError:
                continue
            out.append((p[len(path.rstrip("/")) + 1:], st.length, st.mtime_nsec))
    return tuple(sorted(out))


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """latest N versions (TF Serving's default, N=1), or specific versions."""
    latest: int = 1
    specific: tuple[int, ...] = ()

    def choose(self, versions: list[int]) -> set[int]:
        if self.specific:
            return set(versions) & set(self.specific)
        return set(sorted(versions)[-self.latest:]) if self.latest > 0 else set()


class Signature:
    """One signature of a loaded version: input checks and the call, batched or not.

    Requests stay TensorProtos. A request is its K input protos serialized in a fixed order, and
    requests run through serving.merge's traced function, which decodes, checks and merges them
    in C++ and calls the signature once: one request unbatched, many under dynamic batching.
    Python only explains a request the graph refused (validate), so a good request costs Python
    one serialization per input. A signature merge cannot handle (see merge.supported) runs one
    request at a time through tf.io.parse_tensor, without batching.
    """

    def __init__(self, name, fn, batching=None):
        self.name = name
        self.fn = fn
        self.inputs = {k: v for k, v in fn.structured_input_signature[1].items()}
        self.input_order = sorted(self.inputs)
        self.outputs = sorted(fn.structured_outputs)
        specs = [self.inputs[k] for k in self.input_order]
        self._runner = merge.make_runner(fn, self.input_order, specs) if merge.supported(specs) else None
        if self._runner is None:
            def run_one(serialized):  # [inputs] -> outputs, for inputs merge does not handle
                return fn(**{k: tf.ensure_shape(tf.io.parse_tensor(serialized[j], spec.dtype), spec.shape)
                             for j, (k, spec) in enumerate(zip(self.input_order, specs))})
            self._run_one = tf.function(run_one, autograph=False).get_concrete_function(tf.TensorSpec([len(specs)], tf.string))
        self.batcher = Batcher(self._run_batch, **batching) if batching and self._runner is not None else None

    def validate(self, protos) -> int:
        """Checks names, dtypes and shapes from the TensorProtos' headers; returns the batch size."""
        return self._check({k: (tf.dtypes.as_dtype(p.dtype) if p.dtype else None, [d.size for d in p.tensor_shape.dim])
                            for k, p in protos.items()})

    def _check(self, given: dict) -> int:
        """given: input name -> (tf dtype or None, shape). Raises INVALID_ARGUMENT; returns the batch size."""
        missing = sorted(set(self.inputs) - set(given))
        extra = sorted(set(given) - set(self.inputs))
        if missing or extra:
            raise errors.invalid(
                f"Request inputs do not match required inputs for signature {self.name!r}. "
                f"Send extra: {extra}. Missing but required: {missing}. Expected inputs: {sorted(self.inputs)}")
        batch = None
        for name, spec in self.inputs.items():
            dtype, shape = given[name]
            if dtype != spec.dtype:
                raise errors.invalid(f"input {name!r} expects {spec.dtype.name} but "
                                     f"{dtype.name if dtype else 'an unsupported type'} is provided")
            if not spec.shape.is_compatible_with(shape):
                raise errors.invalid(f"input {name!r} expects shape {spec.shape} but got {shape}")
            n = shape[0] if shape else None
            if batch is None:
                batch = n
            elif n != batch:
                raise errors.invalid(f"inputs have different batch sizes ({batch} and {n} for {name!r})")
        return batch or 0

    def _explain(self, protos) -> errors.ServingError:
        """The error for a request the graph refused: validate's message, else the values' fault."""
        try:
            self.validate(protos)
        except errors.ServingError as e:
            return e
        return errors.invalid("an input tensor's values do not match its dtype and shape (tensor_content "
                              "of the wrong length, or a string tensor in tensor_content: send string_val)")

    def _serialized(self, protos) -> list[bytes] | None:
        """The request's input protos in input order; None unless it has exactly the inputs."""
        if len(protos) != len(self.input_order):
            return None
        out = []
        for k in self.input_order:
            p = protos.get(k)  # never protos[k]: indexing a message map inserts the key
            if p is None:
                return None
            out.append(p.SerializeToString())
        return out

    def _prepare(self, protos):
        """(payload for _run_batch, rows) of a request; raises the request's error if it has the
        wrong inputs."""
        serialized = self._serialized(protos)
        if serialized is None:
            raise self._explain(protos)
        first = protos.get(self.input_order[0])
        return (protos, serialized), (first.tensor_shape.dim[0].size if first.tensor_shape.dim else 0)

    def call_now(self, protos) -> dict:
        """Checks and runs one request (a map of TensorProtos) on its own, in the calling thread."""
        if self._runner is None:
            self.validate(protos)
            try:
                out = self._run_one(tf.constant([protos[k].SerializeToString() for k in self.input_order]))
            except tf.errors.InvalidArgumentError as e:
                raise errors.invalid(f"cannot read an input tensor: {e.message}") from None
            return {k: v.numpy() for k, v in out.items()}
        result = self._run_batch([self._prepare(protos)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    async def call_async(self, protos, executor=None) -> dict:
        """The same from the server's event loop: through the batcher when batching, else on
        `executor` so that the loop keeps serving while the model runs."""
        if self.batcher is None:
            return await asyncio.get_running_loop().run_in_executor(executor, self.call_now, protos)
        payload, n = self._prepare(protos)
        return await self.batcher.submit(payload, n)

    def _run_batch(self, items: list) -> list:
        """items: [((protos, serialized), rows)] -> per item its outputs (numpy) or its ServingError,
        from one call."""
        ok, rows, out = self._runner(tf.constant([serialized for (_, serialized), _ in items]))
        ok, rows = ok.numpy(), rows.numpy()
        out = {k: v.numpy() for k, v in out.items()}
        results, at = [], 0
        for ((protos, _), _), good, n in zip(items, ok, rows):
            if good:
                results.append({k: v[at:at + n] for k, v in out.items()})
                at += n
            else:
                results.append(self._explain(protos))
        return results


class LoadedVersion:
    """One loaded version. Only serving_default's Signature is made at load (tracing its runner
    is a third of a load); the others are made by `prepare_all`, which the manager calls once the
    version serves, or by their first request."""

    def __init__(self, model_name: str, version: int, path: str, batching=None):
        self.model_name, self.version, self.path = model_name, version, path
        self.module = tf.saved_model.load(path)
        self.batching = batching
        self._functions = dict(self.module.signatures)
        self._lock = threading.Lock()
        self.signatures = {}
        if "serving_default" in self._functions:
            self._make("serving_default")
        self.signature_defs = _read_signature_defs(path)

    def _make(self, name: str) -> Signature:
        with self._lock:
            if name not in self.signatures:
                self.signatures = {**self.signatures, name: Signature(name, self._functions[name], self.batching)}
            return self.signatures[name]

    def prepare_all(self):
        for name in self._functions:
            self._make(name)

    def signature(self, name: str) -> Signature:
        name = name or "serving_default"
        if name not in self._functions:
            raise errors.invalid(f'Serving signature key "{name}" not found; the model has '
                                 f"{sorted(self._functions)}")
        return self.signatures.get(name) or self._make(name)

    def warm_up(self) -> int:
        """Replays assets.extra/tf_serving_warmup_requests; returns how many ran."""
        path = fs.join(self.path, "assets.extra", "tf_serving_warmup_requests")
        if not fs.exists(path):
            return 0
        from tensorflow_serving.apis import prediction_log_pb2
        n = 0
        for record in tf.data.TFRecordDataset(path):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if log.HasField("predict_log"):
                req = log.predict_log.request
                self.signature(req.model_spec.signature_name).call_now(req.inputs)
                n += 1
        return n


def _read_signature_defs(path: str) -> dict:
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString(fs.read_bytes(fs.join(path, "saved_model.pb")))
    meta = next((m for m in sm.meta_graphs if "serve" in m.meta_info_def.tags), sm.meta_graphs[0])
    return {k: v for k, v in meta.signature_def.items() if not k.startswith("__")}


class ModelManager:
    """The versions of one model: discovery by polling, load-before-unload swaps, labels, states."""

    def __init__(self, name: str, base_path: str, policy: VersionPolicy = VersionPolicy(),
                 poll_seconds: float = 1.0, labels: dict | None = None, batching: dict | None = None):
        self.name, self.base_path, self.policy = name, base_path, policy
        self.poll_seconds, self.labels, self.batching = poll_seconds, dict(labels or {}), batching
        self._versions: dict[int, LoadedVersion] = {}
        self._failures: dict[int, _Failure] = {}
        self.states: dict[int, tuple[int, str]] = {}  # version -> (state, error message)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def on_disk(self) -> list[int]:
        if not fs.isdir(self.base_path):
            return []
        return sorted(int(d) for d in fs.listdir(self.base_path)
                      if d.isdigit() and fs.exists(fs.join(self.base_path, d, "saved_model.pb")))

    def poll(self):
        on_disk = self.on_disk()
        wanted = self.policy.choose(on_disk)
        for v in sorted(wanted - set(self._versions)):
            self._try_load(v)
        serving_all_wanted = wanted <= set(self._versions)
        for v in sorted(set(self._versions) - wanted):
            # Retire a version only once everything the policy wants serves in its place, or when
            # its files are gone: a new version that failed to load must not take it down.
            if serving_all_wanted or v not in on_disk:
                self._retire(v)
        for v in [v for v in self._failures if v not in on_disk]:
            del self._failures[v]  # removed from disk: nothing left to retry

    def _try_load(self, v: int):
        path = fs.join(self.base_path, str(v))
        files = _dir_signature(path)
        failure = self._failures.get(v)
        if failure is not None and failure.files == files and time.monotonic() < failure.retry_at:
            return
        self.states[v] = (LOADING, "")
        try:
            loaded = LoadedVersion(self.name, v, path, self.batching)
            loaded.warm_up()
        except Exception as e:  # noqa: BLE001  (any load error is this version's, not the server's)
            attempts = failure.attempts + 1 if failure else 1
            delay = min(RETRY_SECONDS * 2 ** (attempts - 1), MAX_RETRY_SECONDS)
            self._failures[v] = _Failure(files, attempts, time.monotonic() + delay)
            message = f"failed to load: {type(e).__name__}: {e}"
            self.states[v] = (END, message)
            logging.warning("model %s version %d %s (attempt %d; retrying when its files change or in %.1f s)",
                            self.name, v, message.splitlines()[0][:500], attempts, delay)
            return
        self._failures.pop(v, None)
        with self._lock:
            self._versions = {**self._versions, v: loaded}
        self.states[v] = (AVAILABLE, "")
        logging.info("model %s version %d available", self.name, v)
        loaded.prepare_all()  # the other signatures, now that the version serves

    def _retire(self, v: int):
        self.states[v] = (UNLOADING, "")
        with self._lock:  # requests holding the old version finish on it
            self._versions = {k: x for k, x in self._versions.items() if k != v}
        self.states[v] = (END, "")

    def start(self):
        self.poll()
        self._thread = threading.Thread(target=self._loop, name=f"poll-{self.name}", daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # noqa: BLE001  (an unreadable base path, say: log it, keep serving)
                logging.exception("model %s: polling %s failed; serving what is loaded", self.name, self.base_path)

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def get(self, version: int | None = None, label: str | None = None) -> LoadedVersion:
        versions = self._versions
        if label:
            if label not in self.labels:
                raise errors.not_found(f"Unrecognized servable version label: {label}")
            version = self.labels[label]
        if version is None:
            if not versions:
                raise errors.unavailable(f"Servable not found for request: Latest({self.name}): no version is loaded")
            return versions[max(versions)]
        if version not in versions:
            raise errors.not_found(f"Servable not found for request: Specific({self.name}, {version})")
        return versions[version]

    def wait_until_available(self, timeout: float = 60.0) -> bool:
        end = time.time() + timeout
        while time.time() < end:
            if self._versions:
                return True
            time.sleep(0.05)
        return False
