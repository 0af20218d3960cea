"""The gRPC servicers of PredictionService and ModelService, built from `handlers.RPCS`.

Two flavours of the same table: handlers on gRPC's worker threads (the server without dynamic
batching: a request runs the model on the thread that received it, with no hand-off), and
coroutines on a grpc.aio event loop (the server with dynamic batching: a request waiting for its
batch holds no thread, batches run on the loop, and a signature that cannot batch runs on an
executor so that the loop keeps serving meanwhile).
"""
from __future__ import annotations

import grpc
from absl import logging
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving import errors, handlers

_BASES = {"PredictionService": (prediction_service_pb2_grpc.PredictionServiceServicer,
                                prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server),
          "ModelService": (model_service_pb2_grpc.ModelServiceServicer,
                           model_service_pb2_grpc.add_ModelServiceServicer_to_server)}


def _failure(e: Exception) -> tuple[grpc.StatusCode, str]:
    """ServingError -> its status; anything else -> INTERNAL, logged. The server never dies on a request."""
    if isinstance(e, errors.ServingError):
        return e.code, e.message
    logging.exception("request failed")
    return grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}"


def _start(rpc: handlers.Rpc, registry, request):
    """(response, None) for an RPC answered without the model, else (None, (signature, inputs, finish))."""
    if rpc.unimplemented:
        raise errors.unimplemented(rpc.unimplemented)
    if rpc.answer is not None:
        return rpc.answer(registry, request), None
    return None, rpc.prepare(registry, request)


def _sync_method(rpc: handlers.Rpc, registry):
    def method(self, request, context):
        try:
            response, call = _start(rpc, registry, request)
            if call is None:
                return response
            sig, inputs, finish = call
            return finish(sig.call_now(inputs))
        except Exception as e:  # noqa: BLE001  (mapped to a status; see _failure)
            context.abort(*_failure(e))
    return method


def _async_method(rpc: handlers.Rpc, registry, executor):
    async def method(self, request, context):
        try:
            response, call = _start(rpc, registry, request)
            if call is None:
                return response
            sig, inputs, finish = call
            return finish(await sig.call_async(inputs, executor))
        except Exception as e:  # noqa: BLE001  (mapped to a status; see _failure)
            code, message = _failure(e)
        await context.abort(code, message)
    return method


def add_services(server, registry, executor=None, asynchronous: bool = False) -> None:
    """Adds PredictionService and ModelService, answered by `handlers.RPCS`, to a gRPC server."""
    for service, table in handlers.RPCS.items():
        base, add = _BASES[service]
        methods = {name: (_async_method(rpc, registry, executor) if asynchronous else _sync_method(rpc, registry))
                   for name, rpc in table.items()}
        add(type(f"{'Async' if asynchronous else ''}{service}", (base,), methods)(), server)
