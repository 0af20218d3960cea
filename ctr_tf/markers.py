"""The mark every directory created by a ctr_tf command carries, so `pipelines.clean` removes
what ctr_tf made and refuses anything else."""
from __future__ import annotations

import json
import time

from ctr_tf import fs

MARKER_FILE = ".ctr_tf-created"


def mark(directory: str, kind: str) -> None:
    """Creates `directory` if needed and marks it as made by the command `kind`, but only when the
    directory is new or empty: a directory the user already filled is never claimed."""
    fresh = not fs.isdir(directory) or not fs.listdir(directory)
    fs.makedirs(directory)
    path = fs.join(directory, MARKER_FILE)
    if fresh and not fs.exists(path):
        with fs.open(path, "w") as f:
            f.write(json.dumps({"kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")


def read(directory: str) -> dict | None:
    """The marker of `directory`, or None when ctr_tf did not create it."""
    path = fs.join(directory, MARKER_FILE)
    if not fs.isfile(path):
        return None
    try:
        return fs.read_json(path)
    except (OSError, json.JSONDecodeError, fs.tf.errors.OpError):
        return {"kind": "unknown"}
