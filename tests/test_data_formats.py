"""Every real sample file converts, with each line accounted for and parsed as a reference parse."""
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf.data import formats, parsers, reader
from tests import helpers

REAL = [
    ("criteo", "paddlerec_raw_a.txt", "criteo_tsv", False),
    ("criteo", "paddlerec_raw_b_stripped.txt", "criteo_tsv", False),
    ("criteo", "paddlerec_raw_c_stripped.txt", "criteo_tsv", False),
    ("criteo", "paddlerec_raw_d.txt", "criteo_tsv", False),
    ("criteo", "criteo_1tb_like.tsv", "criteo_tsv", False),
    ("criteo", "deepctr_sample_header.csv", "criteo_csv", True),
    ("criteo", "kaggle_random_a_with_id.csv", "criteo_csv", True),
    ("criteo", "kaggle_random_b_with_id.csv", "criteo_csv", True),
    ("criteo", "paddlerec_slot_train.txt", "paddlerec_slot", False),
    ("criteo", "paddlerec_slot_test.txt", "paddlerec_slot", False),
    ("avazu", "avazu_train_6000_noheader.csv", "avazu_csv", False),
    ("avazu", "avazu_test_1000_header.csv", "avazu_csv", True),
    ("avazu", "deepctr_avazu_sample.csv", "avazu_csv", True),
    ("avazu", "paddlerec_flen_slot.txt", "avazu_slot", False),
]


@pytest.mark.parametrize("folder,name,fmt,header", REAL, ids=[r[1] for r in REAL])
def test_real_file_converts_with_every_line_accounted_for(tmp_path, folder, name, fmt, header):
    path = helpers.shared_file(folder, name)
    schema = helpers.convert(path, tmp_path / "out", categorical_encoding="hash", hash_buckets=1000)
    lines = helpers.data_lines(path, header)
    assert schema.info["format"] == fmt
    assert schema.info["rows_read"] == lines
    assert schema.info["rejected_rows"] == 0, schema.info["reject_reasons"]
    assert sum(schema.split_rows(s) for s in ("train", "valid", "test")) == lines
    for s in schema.splits.values():
        for f in s["files"]:
            assert os.path.exists(schema.path(f))


def _reference_rows(path, header):
    """A plain per-line parse of a Criteo TSV/CSV file: label, float inputs (NaN missing), strings."""
    with open(path, encoding="utf-8-sig") as f:
        text = f.read().replace("\r\n", "\n")
    lines = [ln for ln in text.split("\n") if ln]
    sep = "," if path.endswith(".csv") else "\t"
    cols = None
    if header:
        cols = lines[0].split(sep)
        lines = lines[1:]
    out = []
    for ln in lines:
        fields = ln.split(sep)
        if cols:
            row = dict(zip(cols, fields))
            label = row.get("label", row.get("Label"))
            ints = [row[f"I{i}"] for i in range(1, 14)]
            cats = [row[f"C{i}"] for i in range(1, 27)]
        else:
            fields += [""] * (40 - len(fields))
            label, ints, cats = fields[0], fields[1:14], fields[14:40]
        out.append((float(label), [float(x) if x else math.nan for x in ints], cats))
    return out


@pytest.mark.parametrize("name,header", [("paddlerec_raw_b_stripped.txt", False),
                                         ("kaggle_random_a_with_id.csv", True),
                                         ("deepctr_sample_header.csv", True)])
def test_records_hold_the_reference_parse_of_each_line(tmp_path, name, header):
    path = helpers.shared_file("criteo", name)
    schema = helpers.convert(path, tmp_path / "out", categorical_encoding="hash", hash_buckets=5000,
                             split=(1, 0, 0))
    label, dense, cat = helpers.all_rows(schema)
    ref = _reference_rows(path, header)
    assert len(ref) == len(label)
    ref_label = np.array([r[0] for r in ref], np.float32)
    ref_ints = np.array([r[1] for r in ref], np.float32)
    np.testing.assert_array_equal(label, ref_label)
    np.testing.assert_allclose(dense, np.log1p(np.maximum(np.nan_to_num(ref_ints, nan=0.0), 0)), rtol=1e-6)
    strings = np.array([r[2] for r in ref], dtype=object)
    expected = 1 + tf.strings.to_hash_bucket_fast(strings.astype(bytes), 5000).numpy()
    expected[strings == ""] = 0
    np.testing.assert_array_equal(cat, expected)


def test_stripped_lines_pad_missing_trailing_fields():
    path = helpers.shared_file("criteo", "paddlerec_raw_b_stripped.txt")
    text = open(path).read().split("\n")
    short = [ln for ln in text if len(ln.split("\t")) < 40]
    assert short, "the sample is expected to hold stripped lines"
    parser = parsers.make_parser(formats.detect(text[:50], "auto", path))
    for ln in short:
        label, dense, cat = parser.slow(ln)
        n = len(ln.split("\t"))
        assert cat[n - 14:] == [""] * (40 - n)
    ok = parser.fast(tf.constant([ln.encode() for ln in short]))[0].numpy()
    assert ok.all(), "stripped lines take the fast path"


@pytest.mark.parametrize("first,expected", [
    ("0\t1\t2\t\t4\t5\t6\t7\t8\t9\t10\t11\t12\t13" + "\tabcdef01" * 26, "criteo_tsv"),
    ("Id,Label," + ",".join(formats.CRITEO_DENSE + formats.CRITEO_CAT), "criteo_csv"),
    ("click:1 dense_feature:0.5 1:3", "paddlerec_slot"),
    ("click:0 user_0:8 item_0:1", "avazu_slot"),
    (",".join(formats.AVAZU_COLUMNS), "avazu_csv"),
    ("1000009418151094273,0,14102100,1005,0,1fbe01fe,f3845767,28905ebd,ecad2386,7801e8d9,07d7df22,"
     "a99f214a,ddd2926e,44956a24,1,2,15706,320,50,1722,0,35,-1,79", "avazu_csv"),
])
def test_format_detection(first, expected):
    assert formats.detect([first]).format == expected


def test_unknown_format_is_a_clear_error():
    with pytest.raises(formats.FormatError, match="unknown input format"):
        formats.detect(["hello world, this is not CTR data"], "auto", "x.txt")


def test_explicit_format_that_does_not_match_is_an_error():
    with pytest.raises(formats.FormatError, match="looks like criteo_csv"):
        formats.detect(["label," + ",".join(formats.CRITEO_DENSE + formats.CRITEO_CAT)], "avazu_csv", "x.csv")


def test_kaggle_test_file_without_label_is_unlabeled(tmp_path):
    rows = ["\t".join(["1"] * 13 + ["0a0b0c0d"] * 26), "\t".join([""] * 13 + [""] * 26)]
    p = tmp_path / "test.txt"
    p.write_text("\n".join(rows) + "\n")
    schema = helpers.convert(str(p), tmp_path / "out", split=(1, 0, 0))
    assert schema.info["sources"][0]["has_label"] is False
    label, dense, cat = helpers.all_rows(schema)
    assert np.isnan(label).all() and len(label) == 2
    assert schema.splits["train"]["labeled"] is False


def test_chunks_keep_line_numbers_across_chunk_boundaries(tmp_path):
    p = tmp_path / "f.txt"
    p.write_bytes(b"\xef\xbb\xbf" + b"".join(b"line%d\r\n" % i for i in range(1, 1001)) + b"last")
    got = []
    for first, lines in reader.iter_chunks(str(p), chunk_bytes=100):
        got += [(first + i, ln) for i, ln in enumerate(lines)]
    assert got[0] == (1, b"line1") and got[999] == (1000, b"line1000") and got[-1] == (1001, b"last")
    assert all(ln == b"line%d" % n for n, ln in got[:-1])
