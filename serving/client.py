"""A TensorFlow Serving gRPC client that scores CTR files.

  python -m serving.client --server=HOST:PORT --model=deepfm --input=<Criteo/Avazu file> \
      [--batch_size=512] [--output=predictions.txt] [--timeout=10] [--retries=3]

Reads any format the data pipeline reads (and .gz), sends PredictRequests of raw named inputs,
writes one probability per row, and reports AUC and logloss when the file has labels. Lines
that do not parse are counted and reported, never silently dropped. Works against this
project's local server and against the real tensorflow_model_server alike.

As a library:
  client = PredictClient("127.0.0.1:8500", "deepfm")
  p = client.predict({"I1": np.array([...], np.float32), ..., "C26": np.array([b"...", ...], object)})
"""
from __future__ import annotations

import dataclasses
import sys
import time
from typing import Iterator

import grpc
import numpy as np
import tensorflow as tf
from absl import app, flags
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from ctr_tf import fs, metrics
from ctr_tf.data import formats, parsers, reader

RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)


class ServingClientError(RuntimeError):
    """A non-OK answer from the server, with its status code."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code


class PredictClient:
    def __init__(self, server: str, model: str, signature: str = "serving_default", version: int | None = None,
                 timeout: float = 10.0, retries: int = 3, backoff: float = 0.2, output: str = "probability"):
        self.channel = grpc.insecure_channel(server, options=[("grpc.max_receive_message_length", 256 << 20),
                                                              ("grpc.max_send_message_length", 256 << 20)])
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.model, self.signature, self.version = model, signature, version
        self.timeout, self.retries, self.backoff, self.output = timeout, retries, backoff, output

    def _spec(self, spec):
        spec.name = self.model
        if self.version is not None:
            spec.version.value = self.version

    def _call(self, method, request):
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as e:
                if e.code() in RETRYABLE and attempt < self.retries:
                    time.sleep(self.backoff * 2 ** attempt)
                    continue
                raise ServingClientError(e.code(), e.details()) from None

    def request(self, rows: dict) -> predict_pb2.PredictRequest:
        req = predict_pb2.PredictRequest()
        self._spec(req.model_spec)
        req.model_spec.signature_name = self.signature
        for name, values in rows.items():
            req.inputs[name].CopyFrom(tf.make_tensor_proto(values))
        return req

    def predict(self, rows: dict) -> np.ndarray:
        """Probabilities [n] for rows given as a dict of [n] arrays (float32 / bytes)."""
        resp = self._call(self.prediction.Predict, self.request(rows))
        if self.output not in resp.outputs:
            raise ServingClientError(grpc.StatusCode.INVALID_ARGUMENT,
                                     f"the response has no output {self.output!r}: {sorted(resp.outputs)}")
        return tf.make_ndarray(resp.outputs[self.output]).reshape(-1)

    def status(self) -> list[tuple[int, str]]:
        req = get_model_status_pb2.GetModelStatusRequest()
        self._spec(req.model_spec)
        resp = self._call(self.models.GetModelStatus, req)
        names = get_model_status_pb2.ModelVersionStatus.State.Name
        return [(s.version, names(s.state)) for s in resp.model_version_status]

    def wait_until_available(self, deadline_s: float = 60.0) -> None:
        end = time.time() + deadline_s
        last = None
        while time.time() < end:
            try:
                if any(state == "AVAILABLE" for _, state in self.status()):
                    return
            except ServingClientError as e:
                last = e
            time.sleep(0.1)
        raise ServingClientError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                 f"model {self.model!r} not AVAILABLE after {deadline_s}s ({last})")

    def close(self):
        self.channel.close()


@dataclasses.dataclass
class FileBatch:
    rows: dict
    labels: np.ndarray  # NaN where the file has no label


def read_batches(path: str, batch_size: int, input_format: str = "auto", rejects: list | None = None) -> Iterator[FileBatch]:
    """Raw-input batches of a CTR file, parsed exactly as the data pipeline parses it.

    Lines that do not parse are appended to `rejects` as (line number, reason).
    """
    layout = reader.detect_layout(path, input_format)
    parser = parsers.make_parser(layout)
    names = [n for n, _ in formats.raw_inputs(layout.format)]
    buf = {"label": [], "dense": [], "cat": []}
    buffered = 0
    for line_no, lines in reader.data_chunks(path, layout):
        ok, label, dense, cat = (t.numpy() for t in parser.fast(tf.constant(lines)))
        keep = np.flatnonzero(ok)
        slow = parser.slow_rows(lines, np.flatnonzero(~ok), line_no)
        if rejects is not None:
            rejects.extend((ln, reason) for ln, reason, _ in slow.rejects)
        _, arrays = parsers.merge_in_line_order(keep + line_no, (label[keep], dense[keep], cat[keep]),
                                                slow.line_nos, (slow.label, slow.dense, slow.cat))
        for key, values in zip(("label", "dense", "cat"), arrays):
            buf[key].append(values)
        buffered += len(arrays[0])
        while buffered >= batch_size:
            yield _take(buf, names, parser, batch_size)
            buffered -= batch_size
    if buffered:
        yield _take(buf, names, parser, buffered)


def _take(buf, names, parser, n) -> FileBatch:
    label, dense, cat = (np.concatenate(buf[k]) for k in ("label", "dense", "cat"))
    buf["label"], buf["dense"], buf["cat"] = [label[n:]], [dense[n:]], [cat[n:]]
    rows = {name: dense[:n, j].astype(np.float32) for j, name in enumerate(parser.dense_names)}
    rows.update({name: cat[:n, j].astype(object) for j, name in enumerate(parser.cat_names)})
    return FileBatch({k: rows[k] for k in names}, label[:n])


def score_file(client: PredictClient, path: str, batch_size: int, input_format: str = "auto"):
    """(probabilities, labels, rejects) of every row of a file."""
    rejects: list = []
    probs, labels = [], []
    for batch in read_batches(path, batch_size, input_format, rejects):
        probs.append(client.predict(batch.rows))
        labels.append(batch.labels)
    if not probs:
        return np.zeros([0]), np.zeros([0]), rejects
    return np.concatenate(probs), np.concatenate(labels), rejects


def define_flags():
    """The command-line flags; defined only when this module runs as a program."""
    flags.DEFINE_string("server", "127.0.0.1:8500", "host:port of the gRPC server (TF Serving or serving.server).")
    flags.DEFINE_string("model", "deepfm", "Model name on the server.")
    flags.DEFINE_string("input", None, "A CTR file in any format the data pipeline reads.")
    flags.DEFINE_enum("input_format", "auto", ("auto",) + formats.FORMATS, "Input format.")
    flags.DEFINE_integer("batch_size", 512, "Rows per PredictRequest.")
    flags.DEFINE_string("output", None, "Where to write one probability per row (default: stdout).")
    flags.DEFINE_string("signature", "serving_default", "Signature name.")
    flags.DEFINE_integer("version", None, "A specific model version (default: the latest).")
    flags.DEFINE_float("timeout", 10.0, "Seconds per request.")
    flags.DEFINE_integer("retries", 3, "Retries with exponential backoff on UNAVAILABLE.")
    flags.DEFINE_float("wait_for_model", 30.0, "Seconds to wait for the model to become AVAILABLE.")


FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not FLAGS.input:
        sys.exit("client: error: --input is required")
    client = PredictClient(FLAGS.server, FLAGS.model, FLAGS.signature, FLAGS.version, FLAGS.timeout, FLAGS.retries)
    try:
        client.wait_until_available(FLAGS.wait_for_model)
        start = time.perf_counter()
        probs, labels, rejects = score_file(client, FLAGS.input, FLAGS.batch_size, FLAGS.input_format)
        seconds = time.perf_counter() - start
    except (ServingClientError, reader.InputError, formats.FormatError) as e:
        sys.exit(f"client: error: {e}")
    if FLAGS.output:  # through TensorFlow's file systems: a local path, gs://, s3://, ...
        with fs.open(FLAGS.output, "w") as out:
            np.savetxt(out, probs, fmt="%.6f")
    else:
        np.savetxt(sys.stdout, probs, fmt="%.6f")
    msg = f"scored {len(probs):,} rows in {seconds:.2f}s ({len(probs) / max(seconds, 1e-9):,.0f} rows/s)"
    if rejects:
        msg += f"; {len(rejects):,} lines could not be parsed (first: line {rejects[0][0]}: {rejects[0][1]})"
    has = ~np.isnan(labels)
    if has.any():
        m = metrics.summary(labels[has], probs[has])
        msg += f"; AUC {m['auc']:.5f}  logloss {m['logloss']:.5f}  CTR ratio {m['ctr_ratio']:.4f}"
    print(msg, file=sys.stderr if not FLAGS.output else sys.stdout)


if __name__ == "__main__":
    define_flags()
    app.run(main)
