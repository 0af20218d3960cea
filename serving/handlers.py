"""TF Serving's RPCs answered independently of the transport: model resolution, request and
response protos, status and metadata, and `RPCS`, the one table from which the gRPC servicers
(threaded and asyncio, `serving.grpc_services`) are built.

A model RPC is split in three so that each transport runs the model call its own way (on the
handler thread, or awaiting its dynamic batch): `prepare(registry, request)` resolves the model
version and signature and returns (signature, input TensorProtos, finish); the transport runs
the signature; `finish(outputs)` builds the response.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     predict_pb2)

from ctr_tf.export import CLASSIFY_METHOD
from serving import errors
from serving.models import ModelManager

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


def resolve(registry: Registry, request):
    """The loaded version and signature a PredictRequest names; checks its output filter."""
    loaded = registry.version(request.model_spec)
    sig = loaded.signature(request.model_spec.signature_name)
    for unknown in set(request.output_filter) - set(sig.outputs):
        raise errors.invalid(f"output tensor alias not found in signature: {unknown}")
    return loaded, sig


def predict_response(loaded, sig, request, outputs: dict) -> predict_pb2.PredictResponse:
    response = predict_pb2.PredictResponse()
    response.model_spec.name = loaded.model_name
    response.model_spec.version.value = loaded.version
    response.model_spec.signature_name = sig.name
    for name in (request.output_filter or outputs):
        fill_tensor_proto(response.outputs[name], outputs[name])
    return response


def fill_tensor_proto(proto, array: np.ndarray):
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


def classify_target(registry, request):
    """(loaded version, signature, its input: the serialized tf.Examples) of a ClassificationRequest."""
    loaded = registry.version(request.model_spec)
    sig = loaded.signature(request.model_spec.signature_name)
    method = loaded.signature_defs[sig.name].method_name
    if method != CLASSIFY_METHOD:
        raise errors.invalid(f"Expected classification signature method_name to be {CLASSIFY_METHOD}. "
                             f"Was: {method}")
    examples = serialized_examples(request.input)
    return loaded, sig, {"inputs": tf.make_tensor_proto(np.array(examples, dtype=object))}


def classification_response(loaded, sig, outputs: dict) -> classification_pb2.ClassificationResponse:
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


def metadata(registry, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
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


def model_status(registry, request) -> get_model_status_pb2.GetModelStatusResponse:
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




def prepare_predict(registry, request):
    loaded, sig = resolve(registry, request)
    return sig, request.inputs, lambda outputs: predict_response(loaded, sig, request, outputs)


def prepare_classify(registry, request):
    loaded, sig, inputs = classify_target(registry, request)
    return sig, inputs, lambda outputs: classification_response(loaded, sig, outputs)


@dataclasses.dataclass(frozen=True)
class Rpc:
    """How one RPC is answered: through a model call (`prepare`), directly (`answer`), or not."""
    prepare: Callable | None = None
    answer: Callable | None = None
    unimplemented: str = ""


RPCS = {
    "PredictionService": {
        "Predict": Rpc(prepare=prepare_predict),
        "Classify": Rpc(prepare=prepare_classify),
        "GetModelMetadata": Rpc(answer=metadata),
        "Regress": Rpc(unimplemented="Regress is not served by this server; use Predict"),
        "MultiInference": Rpc(unimplemented="MultiInference is not served by this server"),
    },
    "ModelService": {
        "GetModelStatus": Rpc(answer=model_status),
        "HandleReloadConfigRequest": Rpc(unimplemented="reloading the model config is not supported; restart"),
    },
}
