"""Conversion behaviour: bad input, vocabularies, splits, transforms, records, synthetic data."""
import gzip
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf import metrics, preprocessing
from ctr_tf import schema as schema_lib
from ctr_tf.data import convert, formats, parsers, reader, records, synthetic
from tests import helpers


def criteo_line(label="0", ints=None, cats=None):
    ints = ints if ints is not None else [str(i) for i in range(13)]
    cats = cats if cats is not None else ["%08x" % (0xabc000 + i) for i in range(26)]
    return "\t".join([label] + ints + cats)


GOOD = criteo_line()


def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)
    return str(path)


def read_rejects(schema):
    with open(schema.path(schema.info["rejects_file"])) as f:
        rows = [ln.rstrip("\n").split("\t") for ln in f][1:]
    return {int(r[1]): r[2] for r in rows}


def test_bad_lines_are_counted_and_written_with_reasons(tmp_path):
    lines = [
        GOOD,                                                    # 1 ok
        "\t".join(GOOD.split("\t")[:20]),                        # 2 wrong field count
        criteo_line(ints=["x1"] + ["1"] * 12),                   # 3 non-integer I
        criteo_line(label="2"),                                  # 4 label not 0/1
        criteo_line(cats=["zzzz"] + ["ab"] * 25),                # 5 non-hex C
        criteo_line(cats=["abcdef0123"] + ["ab"] * 25),          # 6 over-long C
        "",                                                      # 7 blank line
        criteo_line(ints=["2.5"] + ["1"] * 12),                  # 8 non-integer I
        GOOD + "\textra",                                        # 9 too many fields
        criteo_line(ints=["260.0"] + [""] * 12),                 # 10 ok: integer written as float
    ]
    path = write(tmp_path / "bad.txt", "\ufeff" + "\r\n".join(lines) + "\r\n")  # BOM + CRLF
    schema = helpers.convert(path, tmp_path / "out")
    rejects = read_rejects(schema)
    assert schema.info["rows_read"] == 10
    assert schema.info["rows_written"] == 2
    assert schema.info["rejected_rows"] == 8 == len(rejects)
    assert schema.info["rows_written"] + schema.info["rejected_rows"] == schema.info["rows_read"]
    assert rejects[2].startswith("wrong field count: 20 fields")
    assert rejects[3].startswith("I1 not an integer")
    assert rejects[4].startswith("label not 0/1")
    assert rejects[5].startswith("C1 not a hex id")
    assert rejects[6].startswith("C1 over-long")
    assert rejects[7] == "blank line"
    assert rejects[8].startswith("I1 not an integer")
    assert rejects[9].startswith("wrong field count: 41")
    label, dense, cat = helpers.all_rows(schema)
    assert sorted(np.round(np.expm1(dense[:, 0])).tolist()) == [0.0, 260.0]


def test_non_utf8_line_is_rejected_not_fatal(tmp_path):
    path = write(tmp_path / "x.txt", (GOOD + "\n").encode() + b"\xff\xfe\x00junk\n" + GOOD.encode(), "wb")
    schema = helpers.convert(path, tmp_path / "out")
    assert schema.info["rows_written"] == 2 and schema.info["rejected_rows"] == 1
    assert read_rejects(schema)[2].startswith("not UTF-8")


def test_empty_file_is_a_clear_error(tmp_path):
    path = write(tmp_path / "empty.txt", "")
    with pytest.raises(reader.InputError, match="empty"):
        helpers.convert(path, tmp_path / "out")


def test_header_only_csv_is_a_clear_error(tmp_path):
    path = write(tmp_path / "h.csv", "label," + ",".join(formats.CRITEO_DENSE + formats.CRITEO_CAT) + "\n")
    with pytest.raises(reader.InputError, match="no data rows"):
        helpers.convert(path, tmp_path / "out")
    assert not os.path.exists(tmp_path / "out" / "schema.json")


def test_truncated_gzip_names_the_file_and_leaves_no_shards(tmp_path):
    data = gzip.compress(("\n".join([GOOD] * 20000) + "\n").encode())
    path = write(tmp_path / "cut.txt.gz", data[: len(data) // 2], "wb")
    out = tmp_path / "out"
    with pytest.raises(reader.InputError, match="cut.txt.gz.*truncated"):
        helpers.convert(path, out, chunk_bytes=1 << 16)
    left = os.listdir(out) if out.exists() else []
    assert not [f for f in left if "tfrecord" in f or f == "schema.json" or f.startswith(".incomplete")]


def test_unknown_format_is_a_clear_error(tmp_path):
    path = write(tmp_path / "x.txt", "this is not a CTR file\nat all\n")
    with pytest.raises(formats.FormatError, match="unknown input format"):
        helpers.convert(path, tmp_path / "out")


def test_max_reject_rate_aborts_and_writes_nothing(tmp_path):
    path = write(tmp_path / "x.txt", "\n".join([GOOD, "garbage", "garbage", GOOD]) + "\n")
    with pytest.raises(convert.ConversionError, match="max_reject_rate"):
        helpers.convert(path, tmp_path / "out", max_reject_rate=0.25)
    assert not os.path.exists(tmp_path / "out" / "schema.json")


def test_existing_output_needs_overwrite(tmp_path):
    path = write(tmp_path / "x.txt", GOOD + "\n")
    helpers.convert(path, tmp_path / "out")
    with pytest.raises(convert.ConversionError, match="--overwrite"):
        helpers.convert(path, tmp_path / "out")
    (tmp_path / "out" / "mine.tfrecord").write_bytes(b"not ours")
    assert helpers.convert(path, tmp_path / "out", overwrite=True).info["rows_written"] == 1
    assert (tmp_path / "out" / "mine.tfrecord").read_bytes() == b"not ours"


def test_gzip_input_gives_the_same_records_as_plain(tmp_path):
    synthetic.write(str(tmp_path / "s.tsv"), 3000, seed=1)
    with open(tmp_path / "s.tsv", "rb") as f, gzip.open(tmp_path / "s.tsv.gz", "wb") as g:
        g.write(f.read())
    a = helpers.all_rows(helpers.convert(str(tmp_path / "s.tsv"), tmp_path / "a", categorical_encoding="hash"))
    b = helpers.all_rows(helpers.convert(str(tmp_path / "s.tsv.gz"), tmp_path / "b", categorical_encoding="hash"))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_many_files_by_glob_and_list(tmp_path):
    for i in range(3):
        synthetic.write(str(tmp_path / f"part-{i}.tsv"), 500, seed=i)
    schema = helpers.convert(f"{tmp_path}/part-*.tsv", tmp_path / "out")
    assert schema.info["rows_read"] == 1500 and len(schema.info["sources"]) == 3


def test_vocabulary_counts_only_train_and_applies_min_count(tmp_path):
    # C1 value "aa" x3 and "bb" x1 in train; "cc" only in valid/test; min_count 2.
    train = [criteo_line(cats=["aa"] + ["01"] * 25)] * 3 + [criteo_line(cats=["bb"] + ["01"] * 25)]
    valid = [criteo_line(cats=["cc"] + ["01"] * 25), criteo_line(cats=[""] + ["01"] * 25)]
    t = write(tmp_path / "train.txt", "\n".join(train) + "\n")
    v = write(tmp_path / "valid.txt", "\n".join(valid) + "\n")
    schema = helpers.convert(t, tmp_path / "out", valid_inputs=(v,), min_count=2)
    c1 = schema.categorical_features[0]
    assert open(schema.path(c1.params["vocab_file"])).read().split() == ["aa"]
    assert c1.vocab_size == 3  # missing, OOV, "aa"
    _, _, cat_train = records.read_all(schema.split_files("train"), schema)
    _, _, cat_valid = records.read_all(schema.split_files("valid"), schema)
    assert cat_train[:, 0].tolist() == [2, 2, 2, preprocessing.OOV_ID]
    assert cat_valid[:, 0].tolist() == [preprocessing.OOV_ID, preprocessing.MISSING_ID]


def test_split_is_deterministic_respects_ratios_and_zero_parts(tmp_path):
    synthetic.write(str(tmp_path / "s.tsv"), 20000, seed=2)
    a = helpers.convert(str(tmp_path / "s.tsv"), tmp_path / "a", split=(8, 1, 1), seed=5)
    b = helpers.convert(str(tmp_path / "s.tsv"), tmp_path / "b", split=(8, 1, 1), seed=5)
    c = helpers.convert(str(tmp_path / "s.tsv"), tmp_path / "c", split=(9, 1, 0), seed=5)
    d = helpers.convert(str(tmp_path / "s.tsv"), tmp_path / "d", split=(8, 1, 1), seed=6)
    assert [a.split_rows(s) for s in convert.SPLITS] == [b.split_rows(s) for s in convert.SPLITS]
    assert abs(a.split_rows("train") / 20000 - 0.8) < 0.02
    assert abs(a.split_rows("valid") / 20000 - 0.1) < 0.01
    assert c.split_rows("test") == 0 and c.split_files("test") == []
    np.testing.assert_array_equal(helpers.all_rows(a)[1], helpers.all_rows(b)[1])
    assert not np.array_equal(helpers.all_rows(a, ["valid"])[1], helpers.all_rows(d, ["valid"])[1])


def test_schema_json_describes_what_was_written(tmp_path):
    synthetic.write(str(tmp_path / "s.tsv"), 1000, seed=3)
    helpers.convert(str(tmp_path / "s.tsv"), tmp_path / "out")
    out = tmp_path / "out"
    with open(out / "schema.json") as f:
        d = json.load(f)
    assert [f["name"] for f in d["features"]] == list(formats.CRITEO_DENSE) + list(formats.CRITEO_CAT)
    assert [f["kind"] for f in d["features"]] == ["dense"] * 13 + ["categorical"] * 26
    for feat in d["features"][13:]:  # vocabulary size = the vocabulary file's lines + missing and OOV ids
        with open(out / feat["vocab_file"], "rb") as f:
            assert feat["vocab_size"] == len(f.read().splitlines()) + preprocessing.VOCAB_OFFSET
    assert set(d["splits"]) == {"train", "valid", "test"}
    assert sum(s["rows"] for s in d["splits"].values()) == d["rows_written"] == d["rows_read"] == 1000
    assert d["rejected_rows"] == 0 and os.path.exists(out / d["rejects_file"])
    schema = schema_lib.load(str(out))
    for name, split in d["splits"].items():  # the files listed hold exactly the rows counted
        assert all(os.path.exists(out / f) for f in split["files"])
        rows = sum(int(y.shape[0]) for _, y in records.make_dataset(schema, name, 256))
        assert rows == split["rows"]


@pytest.mark.parametrize("transform", ["log1p", "minmax", "bucketize"])
def test_dense_transforms_match_a_numpy_reference(tmp_path, transform):
    values = ["", "-3", "-1", "0", "1", "2", "3", "7", "100", "1000000"]
    lines = [criteo_line(ints=[v] * 13) for v in values]
    path = write(tmp_path / "x.txt", "\n".join(lines) + "\n")
    schema = helpers.convert(path, tmp_path / "out", dense_transform=transform, split=(1, 0, 0),
                             missing_indicator=(transform == "log1p"))
    _, dense, cat = helpers.all_rows(schema)
    x = np.array([float(v) if v else np.nan for v in values])
    if transform == "log1p":
        np.testing.assert_allclose(dense[:, 0], np.log1p(np.maximum(np.nan_to_num(x), 0)), rtol=1e-6)
        np.testing.assert_array_equal(dense[:, 1], np.isnan(x).astype(np.float32))  # I1_missing
    elif transform == "minmax":
        for j in range(13):
            mn, diff = preprocessing.PADDLEREC_MIN[j], preprocessing.PADDLEREC_DIFF[j]
            ref = np.where(np.isnan(x), 0.0, (np.nan_to_num(x) - mn) / diff)
            np.testing.assert_allclose(dense[:, j], ref, rtol=1e-6)
    else:
        assert dense.shape[1] == 0
        ref = []
        for v in x:
            if math.isnan(v):
                ref.append(0)
            else:
                b = math.floor(math.log(v) ** 2) if v > 2 else math.floor(v)
                ref.append(min(max(b, -5), 500) + 6)
        np.testing.assert_array_equal(cat[:, 0], ref)
        assert schema.categorical_features[0].vocab_size == preprocessing.BUCKETIZE_VOCAB_SIZE


def test_preprocessor_on_serving_dict_equals_matrix_transform(tmp_path):
    synthetic.write(str(tmp_path / "s.tsv"), 300, seed=4)
    schema = helpers.convert(str(tmp_path / "s.tsv"), tmp_path / "out")
    pre = preprocessing.Preprocessor(schema)
    parser = parsers.make_parser(formats.detect(open(tmp_path / "s.tsv").read().split("\n")[:5]))
    ok, _, dense_raw, cat_raw = parser.fast(tf.constant(open(tmp_path / "s.tsv", "rb").read().split(b"\n")[:-1]))
    assert ok.numpy().all()
    names = [r.name for r in schema.raw_inputs]
    cols = tf.unstack(dense_raw, axis=1) + tf.unstack(cat_raw, axis=1)
    a = pre(dict(zip(names, cols)))
    b = pre.transform(dense_raw, cat_raw)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_avazu_hour_becomes_hour_of_day(tmp_path):
    path = helpers.shared_file("avazu", "avazu_train_6000_noheader.csv")
    schema = helpers.convert(path, tmp_path / "out", split=(1, 0, 0))
    hour = next(f for f in schema.categorical_features if f.name == "hour")
    assert hour.group == "context" and hour.params["last_chars"] == 2
    vocab = open(schema.path(hour.params["vocab_file"])).read().split()
    assert len(vocab) <= 24 and all(len(v) == 2 for v in vocab)
    groups = {f.group for f in schema.categorical_features}
    assert groups == {"user", "item", "context"}


def test_synthetic_generator_is_deterministic_and_reports_bayes_metrics(tmp_path):
    a, b = str(tmp_path / "a.tsv"), str(tmp_path / "b.tsv")
    info = synthetic.write(a, 5000, seed=7)
    synthetic.write(b, 5000, seed=7)
    assert open(a).read() == open(b).read() and open(a + ".proba").read() == open(b + ".proba").read()
    assert 0.2 < info["positive_rate"] < 0.3
    schema = helpers.convert(a, tmp_path / "out")
    p = np.array(open(a + ".proba").read().split(), float)
    y = np.array([float(ln[0]) for ln in open(a)])
    bayes = schema.splits["train"]["bayes_optimal"]
    assert 0.7 < bayes["auc"] < 0.9
    total = sum(schema.splits[s]["bayes_optimal"]["logloss"] * schema.split_rows(s) for s in convert.SPLITS)
    assert total / 5000 == pytest.approx(metrics.logloss(y, p), rel=1e-6)
    # NE, ECE and the CTR ratio of the true probabilities too: the ceilings a model is held to
    assert set(bayes) == {"auc", "logloss", "ne", "ece", "ctr_ratio"}
    assert 0.6 < bayes["ne"] < 0.9 and bayes["ece"] < 0.05 and 0.95 < bayes["ctr_ratio"] < 1.05
    missing_i12 = sum(1 for ln in open(a) if ln.split("\t")[12] == "") / 5000
    assert 0.7 < missing_i12 < 0.85


def test_make_dataset_returns_every_row_once_in_batches(tmp_path):
    synthetic.write(str(tmp_path / "s.tsv"), 5000, seed=8)
    schema = helpers.convert(str(tmp_path / "s.tsv"), tmp_path / "out", block_rows=300, split=(1, 0, 0))
    label, dense, cat = helpers.all_rows(schema)
    batches = list(records.make_dataset(schema, "train", 512))
    assert [int(b[1].shape[0]) for b in batches] == [512] * 9 + [5000 - 9 * 512]
    got = np.concatenate([b[0]["cat"].numpy() for b in batches])
    np.testing.assert_array_equal(got, cat)
    shuffled = np.concatenate([b[0]["cat"].numpy() for b in records.make_dataset(schema, "train", 512, shuffle=True, seed=1)])
    assert not np.array_equal(shuffled, cat)
    np.testing.assert_array_equal(np.sort(shuffled, axis=0), np.sort(cat, axis=0))


def test_make_dataset_refuses_a_schema_that_does_not_match_the_records(tmp_path):
    synthetic.write(str(tmp_path / "s.tsv"), 100, seed=9)
    schema = helpers.convert(str(tmp_path / "s.tsv"), tmp_path / "out")
    bad = schema_lib.Schema(schema.raw_inputs, schema.features[:-1], schema.record_format, schema.splits,
                            schema.info, schema.directory)
    with pytest.raises(schema_lib.SchemaError, match="record_format says"):
        records.make_dataset(bad, "train", 10)


def test_exact_auc_matches_pairwise_brute_force():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 1)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert metrics.exact_auc(y, s) == pytest.approx(brute, abs=1e-12)
    assert math.isnan(metrics.exact_auc([1, 1], [0.2, 0.3]))


def test_garbage_first_lines_do_not_hide_the_format_and_are_counted(tmp_path):
    lines = ["@@@ corrupted header @@@", "x,y,z"] + [GOOD] * 20 + ["\t".join(["9"] * 45)]
    path = write(tmp_path / "x.txt", "\n".join(lines) + "\n")
    schema = helpers.convert(path, tmp_path / "out")
    assert schema.info["format"] == "criteo_tsv" and schema.info["sources"][0]["has_label"] is True
    assert (schema.info["rows_read"], schema.info["rows_written"], schema.info["rejected_rows"]) == (23, 20, 3)


def test_unlabeled_file_with_a_few_wide_malformed_lines_stays_unlabeled(tmp_path):
    test_line = "\t".join(GOOD.split("\t")[1:])
    path = write(tmp_path / "test.txt", "\n".join([GOOD + "\tx"] + [test_line] * 10) + "\n")
    schema = helpers.convert(path, tmp_path / "out", split=(1, 0, 0))
    assert schema.info["sources"][0]["has_label"] is False
    assert (schema.info["rows_written"], schema.info["rejected_rows"]) == (10, 1)


def test_criteo_tsv_with_a_header_line_uses_it(tmp_path):
    header = "\t".join(("label",) + formats.CRITEO_DENSE + formats.CRITEO_CAT)
    path = write(tmp_path / "h.tsv", "\n".join([header, GOOD, GOOD]) + "\n")
    schema = helpers.convert(path, tmp_path / "out", split=(1, 0, 0))
    assert schema.info["sources"][0]["has_header"] is True
    assert (schema.info["rows_read"], schema.info["rows_written"], schema.info["rejected_rows"]) == (2, 2, 0)


def test_per_field_hash_sizes_reach_the_schema_the_records_and_the_export_preprocessing(tmp_path):
    from ctr_tf import preprocessing
    from ctr_tf.data import convert_config
    assert convert_config.parse_hash_buckets("5000") == (5000, ())
    assert convert_config.parse_hash_buckets("C3=50,C12=7,default=1000") == (1000, (("C3", 50), ("C12", 7)))
    synthetic.write(str(tmp_path / "s.tsv"), 3000, seed=4, scale=0.001)
    schema = helpers.convert(str(tmp_path / "s.tsv"), tmp_path / "out", categorical_encoding="hash",
                             hash_buckets=1000, field_hash_buckets=(("C3", 50), ("C12", 7)), split=(1.0, 0.0, 0.0))
    sizes = {f.name: f.vocab_size for f in schema.categorical_features}
    assert sizes["C3"] == 51 and sizes["C12"] == 8 and sizes["C1"] == 1001 and len(set(sizes.values())) == 3
    assert {f.name: f.params["hash_buckets"] for f in schema.categorical_features}["C3"] == 50
    _, _, cat = helpers.all_rows(schema)
    names = [f.name for f in schema.categorical_features]
    for j, name in enumerate(names):
        assert cat[:, j].min() >= 0 and cat[:, j].max() < sizes[name], name
    assert len(np.unique(cat[:, names.index("C12")])) <= 8
    # the export's in-graph preprocessing hashes each field into its own size, as the converter did
    lines = [ln.rstrip("\n").split("\t") for ln in open(tmp_path / "s.tsv")][:200]
    feats = {f"I{i}": tf.constant([float(r[i]) if r[i] else np.nan for r in lines], tf.float32) for i in range(1, 14)}
    feats.update({f"C{j}": tf.constant([r[13 + j] for r in lines]) for j in range(1, 27)})
    _, served_cat = preprocessing.Preprocessor(schema)(feats)
    np.testing.assert_array_equal(served_cat.numpy(), cat[:200])  # one split: the records keep file order
    with pytest.raises(ValueError, match="names C99, not a categorical field"):
        helpers.convert(str(tmp_path / "s.tsv"), tmp_path / "bad", categorical_encoding="hash",
                        field_hash_buckets=(("C99", 5),))
    with pytest.raises(ValueError, match="needs --categorical_encoding=hash"):
        helpers.convert(str(tmp_path / "s.tsv"), tmp_path / "bad2", field_hash_buckets=(("C3", 5),))


@pytest.mark.parametrize("slow_rows", [False, True])
def test_one_parse_vocabulary_matches_a_brute_force_reference(tmp_path, monkeypatch, slow_rows):
    """Vocabulary mode parses the text once (provisional ids, a binary form, a remap): its
    vocabularies and records equal a plain Python count over the training split's lines, with
    values first met in validation or test rows, stripped lines, rejects, and (slow_rows) a
    seventh of the lines handed from the fast parser to the slow one, merged back in line order."""
    if slow_rows:
        fast = parsers.DelimitedParser._fast_parse

        def refuse_some(self, lines):
            ok, label, dense, cat = fast(self, lines)
            return tf.logical_and(ok, tf.range(tf.shape(ok)[0]) % 7 != 3), label, dense, cat
        monkeypatch.setattr(parsers.DelimitedParser, "_fast_parse", refuse_some)
    synthetic.write(str(tmp_path / "s.tsv"), 3000, seed=9, scale=0.0003)
    lines = open(tmp_path / "s.tsv").read().splitlines()
    lines[5] = lines[5].rsplit("\t", 3)[0]          # trailing fields stripped: the slow path pads them
    lines[7] = "1\tnot-a-number" + lines[7][1:]     # rejected
    path = write(tmp_path / "in.tsv", "\n".join(lines) + "\n")
    schema = helpers.convert(path, tmp_path / "out", min_count=3, block_rows=100, seed=4)
    # the reference: every line's split from (seed, the line's key), as the converter draws it
    split = convert.shards.split_ids(4, convert.shards.line_keys([ln.encode() for ln in lines]).numpy(), (8, 1, 1))
    rows = {s: [] for s in range(3)}
    first_train, early = {}, 0
    for i, line in enumerate(lines):
        if i == 7:
            continue
        fields = line.split("\t") + [""] * (40 - len(line.split("\t")))
        rows[int(split[i])].append(fields[14:40])
        if split[i] == 0:
            for j, v in enumerate(fields[14:40]):
                first_train.setdefault((j, v), i)
    for i, line in enumerate(lines):  # values of validation/test rows met there before any training row
        if split[i] != 0 and i != 7:
            early += sum(first_train.get((j, v), -1) > i for j, v in enumerate(line.split("\t")[14:40]) if v)
    counts = [dict() for _ in range(26)]
    for cats in rows[0]:
        for j, v in enumerate(cats):
            if v:
                counts[j][v] = counts[j].get(v, 0) + 1
    vocab = [sorted((-n, v) for v, n in c.items() if n >= 3) for c in counts]
    ids = [{v: preprocessing.VOCAB_OFFSET + r for r, (_, v) in enumerate(voc)} for voc in vocab]
    for j, f in enumerate(schema.categorical_features):
        assert open(schema.path(f.params["vocab_file"])).read().splitlines() == [v for _, v in vocab[j]]
        assert f.vocab_size == len(vocab[j]) + preprocessing.VOCAB_OFFSET
    assert early > 0
    for s_i, s in enumerate(("train", "valid", "test")):
        _, _, cat = records.read_all(schema.split_files(s), schema)
        expected = np.array([[0 if not v else ids[j].get(v, preprocessing.OOV_ID) for j, v in enumerate(cats)]
                             for cats in rows[s_i]], np.int32)
        np.testing.assert_array_equal(cat, expected)
    assert schema.info["rejected_rows"] == 1 and not os.path.exists(tmp_path / "out" / ".parsed")


@pytest.mark.parametrize("setting, message", [
    (dict(min_count=0), "--min_count=0: must be >= 1"),
    (dict(field_min_counts=(("C3", 2), ("C3", 4))), "--min_count='C3,C3': names a field twice"),
    (dict(hash_buckets=0), "--hash_buckets=0: must be in"),
    (dict(field_hash_buckets=(("C3", 2), ("C3", 4))), "--hash_buckets='C3,C3': names a field twice"),
    (dict(split=(8.0, 1.0)), "--split='8.0,1.0': expected three"),
    (dict(split=(8.0, -1.0, 1.0)), "--split='8.0,-1.0,1.0': expected three"),
    (dict(compression="BZIP2"), "--compression='BZIP2': expected '' or GZIP"),
    (dict(max_reject_rate=1.5), "--max_reject_rate=1.5: must be in"),
    (dict(block_rows=4096, rows_per_shard=100), "--rows_per_shard=100: must be >= block_rows"),
])
def test_convert_config_refuses_each_bad_setting_naming_its_flag(setting, message):
    """Every check of the converter's settings runs, whatever else the settings say (a method
    placed between them once left all the ones after --min_count unreached)."""
    from ctr_tf.data.convert_config import ConvertConfig
    with pytest.raises(ValueError) as raised:
        ConvertConfig(inputs=("x.tsv",), output_dir="out", **setting)
    assert str(raised.value).startswith(message), str(raised.value)
