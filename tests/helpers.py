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


# The 39 per-field vocabulary sizes that the BARS Criteo_x4_001 run logs print (reczoo/BARS,
# ranking/ctr/FinalNet/FinalNet_criteo_x4_001): FuxiCTR's sizes, padding and OOV rows included,
# I1-I13 bucketized as categorical fields. 910,747 rows in all.
BARS_X4_001_VOCAB = {
    "C1": 1446, "C2": 554, "C3": 157339, "C4": 117822, "C5": 306, "C6": 18, "C7": 11882, "C8": 630, "C9": 5,
    "C10": 39530, "C11": 5131, "C12": 156656, "C13": 3176, "C14": 28, "C15": 11043, "C16": 148913, "C17": 12,
    "C18": 4560, "C19": 2003, "C20": 5, "C21": 154564, "C22": 18, "C23": 17, "C24": 53031, "C25": 82,
    "C26": 40955, "I1": 44, "I2": 99, "I3": 122, "I4": 41, "I5": 220, "I6": 112, "I7": 80, "I8": 69, "I9": 92,
    "I10": 6, "I11": 27, "I12": 37, "I13": 72}


def bars_x4_001_schema(sizes: dict | None = None):
    """A schema of 39 categorical fields with the BARS Criteo_x4_001 vocabulary sizes (or `sizes`),
    in FuxiCTR's feature order (I1..I13, C1..C26), no dense features: the parameter counts of the
    BARS logs are counted on it."""
    from ctr_tf import schema as schema_lib
    sizes = sizes or BARS_X4_001_VOCAB
    names = [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]
    feats = tuple(schema_lib.FeatureSpec(n, "categorical", n, "hash", vocab_size=sizes[n],
                                         params={"hash_buckets": sizes[n] - 1}) for n in names)
    raw = tuple(schema_lib.RawInput(n, "string") for n in names)
    return schema_lib.Schema(raw, feats, {"type": "packed_rows_v1", "num_dense": 0, "num_categorical": 39})


# Criteo_x1 as the BARS logs of FuxiCTR 2.x print it (FinalNet_1B_criteo_x1, FinalMLP_criteo_x1):
# C1-C26 categorical, padding and OOV rows included; I1-I13 numeric, embedded as x_j v_j.
CRITEO_X1_VOCAB = {
    "C1": 1462, "C2": 560, "C3": 413424, "C4": 248543, "C5": 307, "C6": 23, "C7": 12192, "C8": 635, "C9": 5,
    "C10": 54712, "C11": 5350, "C12": 409749, "C13": 3182, "C14": 29, "C15": 12500, "C16": 365811, "C17": 12,
    "C18": 4934, "C19": 2096, "C20": 6, "C21": 397981, "C22": 20, "C23": 17, "C24": 88608, "C25": 98, "C26": 64073}


def one_row_fewer(sizes: dict) -> dict:
    """FuxiCTR 1.x gave a categorical field no padding row (2.x adds row 0): the sizes of the BARS
    runs made with 1.0.2 / 1.1.0, whose logs print none, from those of the 2.x logs."""
    return {k: v - 1 for k, v in sizes.items()}


def criteo_x1_schema(sizes: dict | None = None):
    """Criteo_x1 as FuxiCTR reads it: 13 numeric (dense) fields and 26 categorical ones at `sizes`
    (default CRITEO_X1_VOCAB)."""
    from ctr_tf import schema as schema_lib
    sizes = sizes or CRITEO_X1_VOCAB
    feats = tuple(schema_lib.FeatureSpec(f"I{i}", "dense", f"I{i}", "log1p") for i in range(1, 14)) + tuple(
        schema_lib.FeatureSpec(n, "categorical", n, "hash", vocab_size=v, params={"hash_buckets": v - 1})
        for n, v in sizes.items())
    raw = tuple(schema_lib.RawInput(f.source, "float32" if f.kind == "dense" else "string") for f in feats)
    return schema_lib.Schema(raw, feats, {"type": "packed_rows_v1", "num_dense": 13, "num_categorical": 26})


def trainable_parameters(model) -> int:
    """What FuxiCTR's logs count: trainable parameters (BatchNorm's moving statistics are not)."""
    import numpy as np
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)
