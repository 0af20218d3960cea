"""Removes what ctr_tf's commands created, and only that.

  python -m pipelines.clean PATH... [--dry_run]

Every directory a ctr_tf command creates (converted data, downloads, model_dirs, comparison and
sweep outputs) carries a marker file; a path without one is refused, and nothing is removed
unless every path given is ctr_tf's. --dry_run lists what would go and the space it frees.
"""
from __future__ import annotations

import os
import shutil
import sys

from absl import app, flags

from ctr_tf import markers


def size_of(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def check(paths: list[str]) -> list[tuple[str, dict, int]]:
    """(path, marker, bytes) for every path; a path ctr_tf did not create raises ValueError."""
    found, refused = [], []
    for path in paths:
        if os.path.islink(path) or not os.path.isdir(path):
            refused.append(f"{path}: not a directory{' (a link)' if os.path.islink(path) else ''}")
            continue
        marker = markers.read(path)
        if marker is None:
            refused.append(f"{path}: not created by a ctr_tf command (no {markers.MARKER_FILE} in it)")
            continue
        found.append((path, marker, size_of(path)))
    if refused:
        raise ValueError("refusing to remove anything:\n  " + "\n  ".join(refused))
    return found


def define_flags():
    """The command's flags, defined when it runs (tests import its functions)."""
    flags.DEFINE_boolean("dry_run", False, "List what would be removed and how much space it frees; remove nothing.")


def main(argv):
    paths = argv[1:]
    if not paths:
        sys.exit("clean: error: give the directories to remove")
    try:
        found = check(paths)
    except ValueError as e:
        sys.exit(f"clean: error: {e}")
    total = sum(n for _, _, n in found)
    for path, marker, n in found:
        print(f"{'would remove' if flags.FLAGS.dry_run else 'removing'} {path}  ({marker.get('kind')}, {n / 2**20:,.1f} MiB)")
        if not flags.FLAGS.dry_run:
            shutil.rmtree(path)
    print(f"{'would free' if flags.FLAGS.dry_run else 'freed'} {total / 2**20:,.1f} MiB in {len(found)} director"
          f"{'y' if len(found) == 1 else 'ies'}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
