"""Loaded SavedModel versions and the manager that discovers, loads and retires them.

The manager polls `<base_path>/<version>/` like TF Serving: a new version is loaded (and warmed
with its assets.extra/tf_serving_warmup_requests) before it replaces the old, so a swap fails no
request; versions the policy drops are unloaded after the swap.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from serving import errors
from serving.batching import Batcher

AVAILABLE, LOADING, UNLOADING, END = 30, 20, 40, 50


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

    Requests stay TensorProtos: an unbatched request's serialized bytes go into one traced
    function that parses them in C++ (tf.io.parse_tensor) and runs the signature; a batch is
    merged per input straight from the protos' value fields (tensor_content, string_val) and
    runs the signature once. No request becomes a numpy object array and back.
    """

    def __init__(self, name, fn, batching=None):
        self.name = name
        self.fn = fn
        self.inputs = {k: v for k, v in fn.structured_input_signature[1].items()}
        self.input_order = sorted(self.inputs)
        self.outputs = sorted(fn.structured_outputs)
        specs = [self.inputs[k] for k in self.input_order]

        def run_one(serialized):  # [inputs]: the unbatched path, without the map_fn loop
            return fn(**{k: tf.ensure_shape(tf.io.parse_tensor(serialized[j], spec.dtype), spec.shape)
                         for j, (k, spec) in enumerate(zip(self.input_order, specs))})
        self._run_one = tf.function(run_one, input_signature=[tf.TensorSpec([len(specs)], tf.string)])
        self.batcher = Batcher(self._call_batch, **batching) if batching else None

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

    def _serialized(self, protos) -> list[bytes]:
        return [protos[k].SerializeToString() for k in self.input_order]

    def _numpy(self, out) -> dict:
        return {k: v.numpy() for k, v in out.items()}

    def call_one(self, protos) -> dict:
        """Runs the signature on one request's TensorProtos, unbatched; returns numpy outputs."""
        try:
            return self._numpy(self._run_one(tf.constant(self._serialized(protos))))
        except tf.errors.InvalidArgumentError as e:
            raise errors.invalid(f"cannot read an input tensor: {e.message}") from None

    def _call_batch(self, items: list) -> list[dict]:
        """items: [(protos, rows)] -> one output dict per item, from a single model call."""
        if len(items) == 1:
            return [self.call_one(items[0][0])]
        merged = [_merge([p[k] for p, _ in items], self.inputs[k]) for k in self.input_order]
        out = self._numpy(self._run_one(tf.constant(merged)))
        bounds = np.cumsum([0] + [n for _, n in items])
        return [{k: v[bounds[i]:bounds[i + 1]] for k, v in out.items()} for i in range(len(items))]

    def call_protos(self, protos) -> dict:
        """Checks and runs a request given as a map of TensorProtos (a PredictRequest's inputs)."""
        n = self.validate(protos)
        if self.batcher is not None and n:
            return self.batcher.submit(protos, n)
        return self.call_one(protos)

    def __call__(self, arrays: dict) -> dict:
        """The same on numpy arrays (REST)."""
        return self.call_protos({k: tf.make_tensor_proto(v) for k, v in arrays.items()})


_VALUE_FIELDS = {tf.float32: "float_val", tf.float64: "double_val", tf.int32: "int_val", tf.int64: "int64_val",
                 tf.bool: "bool_val", tf.string: "string_val"}


def _values(proto, dtype):
    """The values of one TensorProto as a flat list or array (repeated-field fill included)."""
    n = int(np.prod([d.size for d in proto.tensor_shape.dim])) if proto.tensor_shape.dim else 1
    if dtype != tf.string and proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype.as_numpy_dtype)
    values = getattr(proto, _VALUE_FIELDS[dtype])
    if len(values) == 1 and n > 1:  # TF's encoding of a tensor filled with one value
        return list(values) * n if dtype == tf.string else np.full(n, values[0], dtype.as_numpy_dtype)
    return list(values) if dtype == tf.string else np.asarray(values, dtype.as_numpy_dtype)


def _merge(protos, spec) -> bytes:
    """One serialized TensorProto holding the requests' tensors of one input, concatenated along
    the batch axis: byte joins and repeated-field extends, no TensorFlow op per input."""
    if spec.dtype not in _VALUE_FIELDS:
        raise errors.invalid(f"dtype {spec.dtype.name} is not supported with batching")
    out = tensor_pb2.TensorProto(dtype=spec.dtype.as_datatype_enum)
    out.tensor_shape.dim.add(size=sum(p.tensor_shape.dim[0].size for p in protos))
    for d in spec.shape.as_list()[1:]:
        out.tensor_shape.dim.add(size=d)
    if spec.dtype != tf.string and all(p.tensor_content for p in protos):
        out.tensor_content = b"".join(p.tensor_content for p in protos)
    else:
        field = getattr(out, _VALUE_FIELDS[spec.dtype])
        for p in protos:
            field.extend(_values(p, spec.dtype))
    return out.SerializeToString()


class LoadedVersion:
    def __init__(self, model_name: str, version: int, path: str, batching=None):
        self.model_name, self.version, self.path = model_name, version, path
        self.module = tf.saved_model.load(path)
        self.signatures = {k: Signature(k, fn, batching) for k, fn in self.module.signatures.items()}
        self.signature_defs = _read_signature_defs(path)

    def signature(self, name: str) -> Signature:
        name = name or "serving_default"
        if name not in self.signatures:
            raise errors.invalid(f'Serving signature key "{name}" not found; the model has '
                                 f"{sorted(self.signatures)}")
        return self.signatures[name]

    def warm_up(self) -> int:
        """Replays assets.extra/tf_serving_warmup_requests; returns how many ran."""
        path = os.path.join(self.path, "assets.extra", "tf_serving_warmup_requests")
        if not os.path.exists(path):
            return 0
        from tensorflow_serving.apis import prediction_log_pb2
        n = 0
        for record in tf.data.TFRecordDataset(path):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if log.HasField("predict_log"):
                req = log.predict_log.request
                self.signature(req.model_spec.signature_name).call_one(req.inputs)
                n += 1
        return n

    def close(self):
        for sig in self.signatures.values():
            if sig.batcher is not None:
                sig.batcher.close()


def _read_signature_defs(path: str) -> dict:
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    meta = next((m for m in sm.meta_graphs if "serve" in m.meta_info_def.tags), sm.meta_graphs[0])
    return {k: v for k, v in meta.signature_def.items() if not k.startswith("__")}


class ModelManager:
    """The versions of one model: discovery by polling, load-before-unload swaps, labels, states."""

    def __init__(self, name: str, base_path: str, policy: VersionPolicy = VersionPolicy(),
                 poll_seconds: float = 1.0, labels: dict | None = None, batching: dict | None = None):
        self.name, self.base_path, self.policy = name, base_path, policy
        self.poll_seconds, self.labels, self.batching = poll_seconds, dict(labels or {}), batching
        self._versions: dict[int, LoadedVersion] = {}
        self.states: dict[int, tuple[int, str]] = {}  # version -> (state, error message)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def on_disk(self) -> list[int]:
        if not os.path.isdir(self.base_path):
            return []
        return sorted(int(d) for d in os.listdir(self.base_path)
                      if d.isdigit() and os.path.exists(os.path.join(self.base_path, d, "saved_model.pb")))

    def poll(self):
        wanted = self.policy.choose(self.on_disk())
        current = set(self._versions)
        for v in sorted(wanted - current):
            self.states[v] = (LOADING, "")
            try:
                loaded = LoadedVersion(self.name, v, os.path.join(self.base_path, str(v)), self.batching)
                loaded.warm_up()
            except Exception as e:  # a broken version must not take the server down
                self.states[v] = (END, f"failed to load: {e}")
                continue
            with self._lock:
                self._versions = {**self._versions, v: loaded}
            self.states[v] = (AVAILABLE, "")
        for v in sorted(current - wanted):
            self.states[v] = (UNLOADING, "")
            with self._lock:
                old = self._versions.get(v)
                self._versions = {k: x for k, x in self._versions.items() if k != v}
            if old is not None:
                old.close()
            self.states[v] = (END, "")

    def start(self):
        self.poll()
        self._thread = threading.Thread(target=self._loop, name=f"poll-{self.name}", daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # keep polling; state errors are reported per version
                pass

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        for v in list(self._versions.values()):
            v.close()

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
