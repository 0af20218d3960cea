"""Errors that map to the gRPC status codes TF Serving returns."""
import grpc


class ServingError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def not_found(msg):
    return ServingError(grpc.StatusCode.NOT_FOUND, msg)


def invalid(msg):
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, msg)


def unavailable(msg):
    return ServingError(grpc.StatusCode.UNAVAILABLE, msg)


def unimplemented(msg):
    return ServingError(grpc.StatusCode.UNIMPLEMENTED, msg)


def exhausted(msg):
    return ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, msg)
