"""Shared test helpers: the real sample data, small conversions, TF-log-free imports."""
import os

import pytest

import ctr_tf  # noqa: F401  (selects tf-keras first)

SHARED_DATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


def shared_file(*parts) -> str:
    """Path of a real sample file under ../shared/data, skipping the test when it is absent."""
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"real sample data not available ({path})")
    return path


def data_lines(path: str, has_header: bool) -> int:
    with open(path, "rb") as f:
        data = f.read()
    n = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    return n - int(has_header)


def convert(inputs, out_dir, **kwargs):
    from ctr_tf.data import convert as convert_lib
    kwargs.setdefault("progress", False)
    kwargs.setdefault("min_count", 1)
    if isinstance(inputs, str):
        inputs = (inputs,)
    return convert_lib.convert(convert_lib.ConvertConfig(inputs=tuple(inputs), output_dir=str(out_dir), **kwargs))


def all_rows(schema, splits=("train", "valid", "test")):
    """(label, dense, cat) of the given splits, concatenated in split order."""
    import numpy as np
    from ctr_tf.data import records
    parts = [records.read_all(schema.split_files(s), schema) for s in splits if schema.split_files(s)]
    return tuple(np.concatenate(p) for p in zip(*parts))
