"""The mark every directory created by a ctr_tf command carries, so `pipelines.clean` removes
what ctr_tf made and refuses anything else."""
from __future__ import annotations

import json
import os
import time

MARKER_FILE = ".ctr_tf-created"


def mark(directory: str, kind: str) -> None:
    """Creates `directory` if needed and marks it as made by the command `kind`, but only when the
    directory is new or empty: a directory the user already filled is never claimed."""
    fresh = not os.path.isdir(directory) or not os.listdir(directory)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, MARKER_FILE)
    if fresh and not os.path.exists(path):
        with open(path, "w") as f:
            json.dump({"kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}, f)
            f.write("\n")


def read(directory: str) -> dict | None:
    """The marker of `directory`, or None when ctr_tf did not create it."""
    path = os.path.join(directory, MARKER_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {"kind": "unknown"}
