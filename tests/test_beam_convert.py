"""The converter on Apache Beam (DirectRunner, two worker threads or processes) against the local converter:
the same rows in every split, the same vocabularies, rejects and schema; a failed run publishes
nothing and leaves no process behind. Also the pieces both runners share: byte ranges of a file,
the split drawn from a line's text, transforms whose bits do not depend on a row's place."""
import gzip
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf import preprocessing
from ctr_tf import schema as schema_lib
from ctr_tf.data import compare, reader, shards, synthetic
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Beam's DirectRunner over two worker processes (each imports TensorFlow and Beam: 25 s a run
# here) where a test is about worker processes; over two worker threads (11 s) where it compares
# what the pipeline writes, which goes through the same pickled transforms either way.
PROCESSES = "--runner=DirectRunner --direct_running_mode=multi_processing --direct_num_workers=2"
THREADS = "--runner=DirectRunner --direct_running_mode=multi_threading --direct_num_workers=2"


def run_converter(runner, out_dir, *flags, timeout=240, beam_options=PROCESSES):
    """The command line converter in a process group of its own; every process of the group is
    killed afterwards, and the test fails if any had outlived the command."""
    cmd = [sys.executable, "-m", "pipelines.criteo_to_tfrecords", f"--output_dir={out_dir}", "--progress=false",
           f"--runner={runner}", *flags]
    env = dict(os.environ)
    if runner == "beam":
        cmd += [f"--beam_options={beam_options}", "--beam_range_bytes=200000"]
        env["TMPDIR"] = tmp = tempfile.mkdtemp(prefix="beam-run-tmp")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=env)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        survivors = _group_members(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not survivors, f"processes of the {runner} converter outlived it: {survivors}"
    if runner == "beam":  # Beam's own temporary directories (its DirectRunner's Prism try left one a run)
        left = [n for n in os.listdir(tmp) if n.startswith("beam")]
        shutil.rmtree(tmp, ignore_errors=True)
        assert not left, f"the Beam runner left {left} in its temporary directory"
    return proc.returncode, out


def _group_members(pgid):
    members = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(pid))
    return members


def assert_same_conversion(local_dir, beam_dir):
    """The same rows per split bit for bit, vocabularies byte for byte, schema.json alike
    (`ctr_tf.data.compare`), and, as a check of that comparison, the splits' row counts."""
    assert compare.differences(str(local_dir), str(beam_dir)) == []
    local, beam = schema_lib.load(str(local_dir)), schema_lib.load(str(beam_dir))
    assert [local.split_rows(s) for s in compare.SPLITS] == [beam.split_rows(s) for s in compare.SPLITS]
    return local, beam


@pytest.fixture(scope="module")
def bad_input(tmp_path_factory):
    """Synthetic rows with CRLF line ends, a stripped line and four bad lines (field count, not
    UTF-8, label, extra field), and a header-only file for the failure test."""
    d = tmp_path_factory.mktemp("beam_in")
    synthetic.write(str(d / "s.tsv"), 12000, seed=5, scale=0.0005)
    lines = open(d / "s.tsv", "rb").read().split(b"\n")[:12000]
    lines[10] = b"1\tnot-a-number" + lines[10][1:]
    lines[20] = lines[20].rsplit(b"\t", 3)[0]
    lines[3000] = b"\xff\xfe" + lines[3000]
    lines[6000] = b"2" + lines[6000][1:]
    lines[9000] += b"\textra"
    (d / "bad.tsv").write_bytes(b"\r\n".join(lines) + b"\r\n")
    (d / "bad.tsv.proba").write_text("\n".join(open(d / "s.tsv.proba").read().split()[:12000]) + "\n")
    return d


def test_beam_runner_matches_local_in_vocabulary_mode_with_rejects(bad_input, tmp_path):
    """Vocabulary mode, min_count 2, gzip shards, small blocks: the same rows per split, the same
    vocabulary files byte for byte, the same schema and the same rejected count and reasons; the
    Beam rejects file locates each bad row by byte offset."""
    flags = [f"--input={bad_input / 'bad.tsv'}", "--min_count=2", "--compression=gzip", "--block_rows=500",
             "--seed=3", "--missing_indicator"]
    for runner in ("local", "beam"):
        rc, out = run_converter(runner, tmp_path / runner, *flags, beam_options=THREADS)
        assert rc == 0, out[-3000:]
    local, beam = assert_same_conversion(tmp_path / "local", tmp_path / "beam")
    assert beam.info["rejected_rows"] == 4 and len(beam.info["reject_reasons"]) == 3
    assert all(n.endswith(".tfrecord.gz") for s in ("train", "valid", "test") for n in beam.splits[s]["files"])
    raw = (bad_input / "bad.tsv").read_bytes()
    with open(tmp_path / "beam" / shards.REJECTS_FILE) as f:
        header, *rejects = f.read().splitlines()
    assert header.split("\t")[:2] == ["file", "byte_offset"]
    offsets = sorted(int(r.split("\t")[1]) for r in rejects)
    starts = [0] + [i + 1 for i in range(len(raw)) if raw[i:i + 1] == b"\n"]
    assert offsets == [starts[i] for i in (10, 3000, 6000, 9000)]
    assert "not computed" in beam.info["bayes_optimal"]  # said, not written wrong
    assert "bayes_optimal" in local.splits["train"]


def test_beam_runner_matches_local_on_real_files_in_hash_mode(tmp_path):
    """Real Kaggle CSV rows with a header and an Id column, a later file as the test split,
    per-field hash sizes: the same rows per split and the same schema."""
    flags = [f"--input={helpers.shared_file('criteo', 'kaggle_random_a_with_id.csv')}",
             f"--test_input={helpers.shared_file('criteo', 'kaggle_random_b_with_id.csv')}",
             "--categorical_encoding=hash", "--hash_buckets=C3=5000,C12=7000,default=1000"]
    for runner in ("local", "beam"):
        rc, out = run_converter(runner, tmp_path / runner, *flags)
        assert rc == 0, out[-3000:]
    local, beam = assert_same_conversion(tmp_path / "local", tmp_path / "beam")
    assert [local.split_rows(s) for s in ("train", "valid", "test")] == [1999, 0, 1999]
    assert beam.info["header_lines"] == 2


def test_failed_beam_run_publishes_nothing(bad_input, tmp_path):
    """Over --max_reject_rate the Beam run fails after its pipeline, with the reason; a worker's
    error (a truncated gzip file) comes back as one line; the output directory holds no
    schema.json, shard or vocabulary, and no worker process is left."""
    rc, out = run_converter("beam", tmp_path / "out", f"--input={bad_input / 'bad.tsv'}", "--max_reject_rate=0.0001",
                            "--categorical_encoding=hash", beam_options=THREADS)
    assert rc != 0 and "max_reject_rate" in out, out[-2000:]
    left = os.listdir(tmp_path / "out")
    assert not [n for n in left if n == "schema.json" or shards.SHARD_NAME.fullmatch(n) or n.startswith(".incomplete")
                or n == "vocab"], left
    # a worker process's error (a truncated gzip file): one line naming the file, no traceback, nothing left
    data = gzip.compress((bad_input / "bad.tsv").read_bytes())
    (tmp_path / "cut.tsv.gz").write_bytes(data[:len(data) // 2])
    rc, out = run_converter("beam", tmp_path / "cut", f"--input={tmp_path / 'cut.tsv.gz'}", "--categorical_encoding=hash")
    last = out.strip().splitlines()[-1]
    assert rc != 0 and last.startswith("criteo_to_tfrecords: error: the Beam pipeline failed: InputError: ")
    assert "cut.tsv.gz: the compressed stream is truncated" in last, out[-2000:]
    assert [n for n in os.listdir(tmp_path / "cut") if not n.startswith(".ctr_tf")] == []


def test_byte_ranges_give_every_line_once_with_its_offset(tmp_path):
    """Ranges of every size over files with CRLF, a BOM, empty lines and no final newline, and a
    gzip file as one range: the lines of iter_chunks, each once, each at its byte offset."""
    rng = np.random.default_rng(0)
    for trial in range(60):
        lines = [bytes(rng.choice(list(b"ab\tc"), rng.integers(0, 9))) for _ in range(rng.integers(1, 25))]
        ends = [b"\r\n" if rng.random() < 0.3 else b"\n" for _ in lines]
        raw = (reader.BOM if trial % 3 == 0 else b"") + b"".join(ln + e for ln, e in zip(lines, ends))
        if trial % 2 and lines[-1]:
            raw = raw[:-len(ends[-1])]
        path = tmp_path / f"f{trial}.txt"
        path.write_bytes(raw)
        expected = [ln for _, chunk in reader.iter_chunks(str(path), 5) for ln in chunk]
        starts = [0] + [i + 1 for i in range(len(raw)) if raw[i:i + 1] == b"\n"]
        for range_bytes in (1, 3, 7, 1000):
            got, offsets = [], []
            for start, end in reader.byte_ranges(str(path), range_bytes):
                for o, chunk in reader.iter_range_chunks(str(path), start, end, int(rng.integers(1, 8))):
                    got += chunk
                    offsets += o.tolist()
            assert got == expected, (trial, range_bytes)
            assert offsets == starts[:len(expected)], (trial, range_bytes)
    gz = tmp_path / "f.gz"
    gz.write_bytes(gzip.compress(b"a\nbb\r\nccc"))
    assert reader.byte_ranges(str(gz), 1) == [(0, None)]
    chunks = list(reader.iter_range_chunks(str(gz), 0, None, 2))
    assert [o for c in chunks for o in c[0].tolist()] == [0, 2, 6]
    assert [ln for c in chunks for ln in c[1]] == [b"a", b"bb", b"ccc"]


def test_split_follows_the_line_text_not_its_place(tmp_path):
    """The local converter draws a row's split from its line's text and the seed: the same lines in
    another order and spread over two files land in the same splits."""
    synthetic.write(str(tmp_path / "s.tsv"), 3000, seed=2, scale=0.001)
    lines = open(tmp_path / "s.tsv", "rb").read().splitlines()
    perm = np.random.default_rng(1).permutation(len(lines))
    (tmp_path / "p1.tsv").write_bytes(b"\n".join(lines[i] for i in perm[:1000]) + b"\n")
    (tmp_path / "p2.tsv").write_bytes(b"\n".join(lines[i] for i in perm[1000:]) + b"\n")
    a = helpers.convert(str(tmp_path / "s.tsv"), tmp_path / "a", categorical_encoding="hash", seed=11)
    b = helpers.convert([str(tmp_path / "p1.tsv"), str(tmp_path / "p2.tsv")], tmp_path / "b",
                        categorical_encoding="hash", seed=11)
    ra, rb = compare.split_rows(a), compare.split_rows(b)
    for s in ra:
        np.testing.assert_array_equal(ra[s], rb[s])
    counts = [a.split_rows(s) for s in ("train", "valid", "test")]
    assert 2200 < counts[0] < 2600 and min(counts[1:]) > 200
    c = helpers.convert(str(tmp_path / "s.tsv"), tmp_path / "c", categorical_encoding="hash", seed=12)
    assert [c.split_rows(s) for s in ("train", "valid", "test")] != counts  # the seed draws anew


def test_dense_transforms_do_not_depend_on_the_rows_place_in_a_batch(tmp_path):
    """log1p and the BARS bucketize give each value the same bits alone and at any place in a batch
    (float32 log differs by an ulp between vector and scalar code), equal to a float64 numpy
    reference rounded to float32."""
    synthetic.write(str(tmp_path / "s.tsv"), 50, seed=1, scale=0.001)
    for transform in ("log1p", "bucketize"):
        schema = helpers.convert(str(tmp_path / "s.tsv"), tmp_path / transform, dense_transform=transform,
                                 categorical_encoding="hash")
        pre = preprocessing.Preprocessor(schema)
        x = np.random.default_rng(0).integers(0, 100_000, size=(37, 13)).astype(np.float32)
        x[3, 2] = np.nan
        strings = tf.fill([37, 26], "a")
        dense, cat = (t.numpy() for t in pre.transform(tf.constant(x), strings))
        for i in (0, 5, 17, 36):
            d1, c1 = (t.numpy() for t in pre.transform(tf.constant(x[i:i + 1]), strings[:1]))
            np.testing.assert_array_equal(d1[0], dense[i])
            np.testing.assert_array_equal(c1[0], cat[i])
        x0 = np.nan_to_num(x.astype(np.float64), nan=0.0)
        if transform == "log1p":
            np.testing.assert_array_equal(dense[:, :13], np.log1p(x0).astype(np.float32))
        else:
            v = np.where(x0 > 2, np.floor(np.log(np.maximum(x0, 2)) ** 2), np.floor(x0))
            ids = np.clip(v, -5, 500).astype(np.int32) + 6
            ids[3, 2] = 0
            np.testing.assert_array_equal(cat[:, :13], ids)
