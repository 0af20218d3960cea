"""Continuous training: the running vocabulary, the continuation of weights and optimizer state into
grown tables, the id map between spans, and the pipeline over planted days (a gate that refuses
flipped labels, a span it cannot read, a kill -9 and a restart, --watch and SIGTERM)."""
import gzip
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import continuation, models, preprocessing
from ctr_tf import schema as schema_lib
from ctr_tf.continuous import pipeline, scoring
from ctr_tf.continuous.vocabulary import FREED, RunningVocabulary, SpanConverter
from ctr_tf.data import convert as convert_lib
from ctr_tf.data import synthetic
from ctr_tf.optimizers import LazyAdam
from serving import client as client_lib
from serving.models import ModelManager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_running_vocabulary_admits_by_summed_count_never_changes_an_id_and_reuses_expired_ones():
    v = RunningVocabulary.empty()
    pos, change = v.update(0, "C1", [b"a", b"b", b"c"], np.array([3, 1, 2]), min_count=2)
    assert pos.tolist() == [0, -1, 1] and change == {"admitted": 2, "expired": 0}  # a (3) before c (2)
    pos, _ = v.update(1, "C1", [b"c", b"b", b"d"], np.array([1, 1, 5]), min_count=2)
    assert pos.tolist() == [1, 3, 2]  # b reached 2 over the spans, after d (5); c kept its id
    assert v.field("C1").values == [b"a", b"c", b"d", b"b"]
    assert v.field("C1").assigned.tolist() == [0, 0, 1, 1]
    # a, unseen in spans 1 and 2, goes back to OOV; its id is the next admitted value's (e), reset
    pos, change = v.update(2, "C1", [b"c", b"a", b"e"], np.array([1, 0, 9]), min_count=2, expire_after=2)
    assert change == {"admitted": 1, "expired": 1} and pos.tolist() == [1, -1, 0]
    f = v.field("C1")
    assert f.values == [b"e", b"c", b"d", b"b"] and f.assigned.tolist() == [2, 0, 1, 1] and b"a" not in f.index
    pos, change = v.update(3, "C1", [b"a", b"g"], np.array([1, 1]), min_count=2, expire_after=2)
    assert pos.tolist() == [-1, -1] and change["expired"] == 2  # d and b, last seen at span 1
    assert f.values[2].startswith(FREED) and f.free == [2, 3] and f.pending == {b"a": 1, b"g": 1}


def _span(path, rows, seed, flip=False):
    synthetic.write(str(path), rows, seed=7, scale=0.0005, data_seed=seed)
    if flip:
        lines = open(path).read().splitlines()
        open(path, "w").write("".join(("1" if ln[0] == "0" else "0") + ln[1:] + "\n" for ln in lines))
        os.remove(str(path) + ".proba")
    return str(path)


def test_a_span_converts_against_the_state_and_leaves_it_beside_its_schema(tmp_path):
    days = [_span(tmp_path / f"d{i}.tsv", 1500, seed=i) for i in range(2)]
    state = RunningVocabulary.empty()
    out = []
    for i, day in enumerate(days):
        cfg = convert_lib.ConvertConfig(inputs=(day,), output_dir=str(tmp_path / f"s{i}"), split=(0.9, 0.1, 0),
                                        min_count=2, progress=False)
        out.append(SpanConverter(cfg, state, i).run())
        state = RunningVocabulary.load(str(tmp_path / f"s{i}"))
    first, second = out
    for a, b in zip(first.categorical_features, second.categorical_features):
        va = open(first.path(a.params["vocab_file"]), "rb").read().split(b"\n")[:-1]
        vb = open(second.path(b.params["vocab_file"]), "rb").read().split(b"\n")[:-1]
        assert vb[:len(va)] == va  # ids never change: the vocabulary only appends
        assert b.vocab_size == len(vb) + preprocessing.VOCAB_OFFSET
    assert sum(second.vocab_sizes) > sum(first.vocab_sizes)
    growth = second.info["vocabulary_growth"]["fields"]
    assert sum(f["admitted"] for f in growth.values()) == sum(second.vocab_sizes) - sum(first.vocab_sizes)
    assert state.span == 1 and state.sizes() == {f.name: f.vocab_size - 2 for f in second.categorical_features}


def _toy(vocab):
    feats = tuple(schema_lib.FeatureSpec(f"C{i}", "categorical", f"C{i}", "vocab", vocab_size=len(v) + 2,
                                         params={"vocab_file": f"vocab/C{i}.txt"}) for i, v in enumerate(vocab))
    raw = tuple(schema_lib.RawInput(f.source, "string") for f in feats)
    return schema_lib.Schema(raw, feats, {"type": "packed_rows_v1", "num_dense": 0, "num_categorical": len(vocab)})


def _save(schema, directory, vocab):
    os.makedirs(os.path.join(directory, "vocab"), exist_ok=True)
    for i, v in enumerate(vocab):
        open(os.path.join(directory, "vocab", f"C{i}.txt"), "wb").write(b"".join(x + b"\n" for x in v))
    return schema_lib.Schema(schema.raw_inputs, schema.features, schema.record_format, directory=directory)


def test_continue_from_keeps_rows_and_slots_bit_for_bit_and_starts_new_and_reused_rows_fresh(tmp_path):
    old_vocab = [[b"a", b"b", b"c"], [b"x", b"y"]]
    new_vocab = [[b"a", b"q", b"c", b"d"], [b"x", b"y", b"z", b"w"]]  # C0's id 3 reused (b -> q), d, z, w new
    src_schema = _save(_toy(old_vocab), str(tmp_path / "old"), old_vocab)
    dst_schema = _save(_toy(new_vocab), str(tmp_path / "new"), new_vocab)
    cfg = cfg_lib.model_config("deepfm", embedding_dim=3, hidden_units=(4,), embedding_init_std=0.3)
    tf.keras.utils.set_random_seed(1)
    src = models.build(src_schema, cfg)
    opt = LazyAdam(0.05, table_l2=1e-3, l2_tables=models.embedding_tables(src))
    src.compile(optimizer=opt, loss=tf.keras.losses.BinaryCrossentropy(from_logits=True))
    x = {"dense": tf.zeros((8, 0)), "cat": tf.constant([[2, 2], [3, 3], [4, 2], [2, 3]] * 2, tf.int32)}
    src.fit(x, tf.constant([[1.0], [0.0]] * 4), batch_size=4, epochs=2, verbose=0)
    opt.settle()
    dst = models.build(dst_schema, cfg)
    dst_opt = LazyAdam(0.05, table_l2=1e-3, l2_tables=models.embedding_tables(dst))
    dst_opt.build(dst.trainable_variables)
    fresh_table = models.embedding_tables(dst)[0].numpy().copy()
    fields = continuation.field_rows(src_schema, dst_schema)
    assert [f.keep.tolist() for f in fields] == [[True, True, True, False, True], [True, True, True, True]]
    done = continuation.carry_over(src, opt, dst, dst_opt, fields)
    table_src, table_dst = models.embedding_tables(src)[0].numpy(), models.embedding_tables(dst)[0].numpy()
    kept_src = [0, 1, 2, 4, 5, 6, 7, 8]            # C0 ids 0, 1, 2 (a), 4 (c); C1 ids 0-3
    kept_dst = [0, 1, 2, 4, 6, 7, 8, 9]            # the same ids in the grown layout (C0 has 6 rows now)
    np.testing.assert_array_equal(table_dst[kept_dst], table_src[kept_src])
    np.testing.assert_array_equal(table_dst[[3, 5, 10, 11]], fresh_table[[3, 5, 10, 11]])  # q (reused), d, z, w
    assert done["rows_kept"] > 0 and done["rows_fresh"] > 0
    m_src, v_src, last_src = opt._slots(models.embedding_tables(src)[0])
    m_dst, v_dst, last_dst = dst_opt._slots(models.embedding_tables(dst)[0])
    np.testing.assert_array_equal(m_dst.numpy()[kept_dst], m_src.numpy()[kept_src])
    np.testing.assert_array_equal(v_dst.numpy()[kept_dst], v_src.numpy()[kept_src])
    assert not m_dst.numpy()[[3, 5, 10, 11]].any() and not v_dst.numpy()[[3, 5, 10, 11]].any()
    step = int(opt.iterations.numpy())
    assert step == int(dst_opt.iterations.numpy()) == 4
    np.testing.assert_array_equal(last_dst.numpy()[[3, 5, 10, 11]], step)  # a fresh row owes no catch-up
    for a, b in zip(src.weights, dst.weights):
        if a.shape == b.shape and "embeddings" not in a.name:
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(continuation.ContinuationError, match="shrank"):
        continuation.field_rows(dst_schema, src_schema)


def test_ids_map_to_a_model_of_another_span_as_its_own_export_would_see_the_values(tmp_path):
    model_vocab = [[b"a", b"b", b"c"], [b"x"]]
    data_vocab = [[b"a", b"q", b"c", b"d"], [b"x", b"y"]]
    model = _save(_toy(model_vocab), str(tmp_path / "m"), model_vocab)
    data = _save(_toy(data_vocab), str(tmp_path / "d"), data_vocab)
    mapping = scoring.id_map(model, data)
    # C0: 0, 1, a=2, q->OOV (id 3 holds b for the model), c=4, d->OOV; C1: 0, 1, x=2, y->OOV
    assert mapping.tolist() == [0, 1, 2, 1, 4, 1, 0, 1, 2, 1]
    assert scoring.id_map(data, data) is None


# ----------------------------------------------------------------------------- the pipeline

def _pipeline_cfg(tmp, spans, **kw):
    experiment = cfg_lib.ExperimentConfig(
        data=cfg_lib.DataConfig(data_dir="-"),
        model=cfg_lib.model_config("deepfm", embedding_dim=4, hidden_units=(16,), embedding_table_l2=5e-5),
        train=cfg_lib.TrainConfig(model_dir="-", batch_size=256, refit_intercept=True, deterministic=True,
                                  early_stopping_patience=1, learning_rate=3e-3, log_every_n_steps=1000))
    convert = convert_lib.ConvertConfig(inputs=(), output_dir="-", min_count=2, progress=False)
    return pipeline.ContinuousConfig(spans=spans, work_dir=str(tmp / "work"),
                                     serving_base_path=str(tmp / "serving" / "deepfm"), experiment=experiment,
                                     convert=convert, **kw)


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    d = tmp_path_factory.mktemp("days")
    synthetic.write_days(str(d / "logs" / "day.tsv"), 3, 4000, seed=3, scale=0.0005)
    return d


def test_pipeline_scores_each_span_before_training_grows_the_vocabulary_pushes_and_refuses_bad_spans(days, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for p in sorted((days / "logs").iterdir()):
        (logs / p.name).write_bytes(p.read_bytes())
    _span(logs / "day_003.tsv", 4000, seed=9, flip=True)               # a day of flipped labels
    (logs / "day_004.tsv.gz").write_bytes(gzip.compress(b"0\t1\t2\n" * 50)[:-20])  # truncated
    cfg = _pipeline_cfg(tmp_path, str(logs / "day_*"), span_epochs=2,
                        gate=pipeline.Gate(ctr_ratio=(0.75, 1.35)))  # 400-row holdouts: a wide CTR band
    rows = pipeline.ContinuousTraining(cfg).run()
    assert [r["span"] for r in rows] == ["day_000.tsv", "day_001.tsv", "day_002.tsv", "day_003.tsv", "day_004.tsv.gz"]
    assert [r["decision"] for r in rows] == ["pushed", "pushed", "pushed", "refused", "skipped"]
    assert [r["version"] for r in rows[:4]] == [1, 2, 3, ""]
    assert "reference holdout AUC" in rows[3]["reason"] and rows[4]["reason"].startswith("InputError: ")
    assert np.isnan(rows[0]["progressive_auc"]) and all(0.6 < r["progressive_auc"] < r["bayes_auc"] for r in rows[1:3])
    assert rows[1]["vocabulary_rows"] > rows[0]["vocabulary_rows"] and rows[2]["admitted_ids"] > 0
    header = open(tmp_path / "work" / "history.tsv").readline().rstrip("\n").split("\t")
    for column in ("span", "rows", "admitted_ids", "progressive_auc", "progressive_logloss", "progressive_ctr_ratio",
                   "candidate_auc", "served_auc", "decision", "version", "reason", "train_seconds",
                   "overhead_seconds"):
        assert column in header
    assert len(json.load(open(tmp_path / "work" / "history.json"))) == 5
    assert os.path.getsize(tmp_path / "work" / "progressive_auc.png") > 5000
    # the refused candidate stays on disk with its reason; the served version did not change
    refused = tmp_path / "work" / "spans" / "00003-day_003.tsv"
    assert json.load(open(refused / "gate.json"))["push"] is False and (refused / "candidate" / "checkpoints").exists()
    state = json.load(open(tmp_path / "work" / "state.json"))
    assert state["served"]["version"] == 3 and sorted(os.listdir(tmp_path / "serving" / "deepfm")) == ["1", "2", "3"]
    # the server serves the last push, and scores a new value of the last day with its own row
    manager = ModelManager("deepfm", str(tmp_path / "serving" / "deepfm"))
    manager.poll()
    loaded = manager.get()
    assert loaded.version == 3
    batch = next(client_lib.read_batches(str(logs / "day_002.tsv"), 200))
    served = loaded.signature("serving_default").call_now(
        {k: tf.make_tensor_proto(v) for k, v in batch.rows.items()})["probability"].reshape(-1)
    run = pipeline.ContinuousTraining(cfg).served()
    dense, cat = preprocessing.Preprocessor(run.schema)({k: tf.constant(v) for k, v in batch.rows.items()})
    local = run.scorer._step({"dense": dense, "cat": cat}).numpy().reshape(-1) + run.logit_shift
    np.testing.assert_allclose(served, 1 / (1 + np.exp(-local)), rtol=1e-5, atol=1e-6)
    vocab = open(os.path.join(loaded.path, "assets", "C3.txt"), "rb").read().split(b"\n")[:-1]
    first_day = open(tmp_path / "work" / "spans" / "00000-day_000.tsv" / "data" / "vocab" / "C3.txt", "rb").read()
    assert len(vocab) > first_day.count(b"\n") and not any(v.startswith(FREED) for v in vocab)


def _command(spans, work, serving, *extra):
    return [sys.executable, "-m", "pipelines.continuous", f"--spans={spans}", "--flagfile=deepfm.flags",
            f"--work_dir={work}", f"--serving_base_path={serving}", "--embedding_dim=4", "--hidden_units=16",
            "--batch_size=256", "--deterministic", "--progress=false", "--learning_rate=0.003", *extra]


def _wait(predicate, timeout, proc=None, what=""):
    end = time.monotonic() + timeout
    while not predicate():
        assert proc is None or proc.poll() is None, f"the pipeline ended (rc {proc.returncode}) before {what}"
        assert time.monotonic() < end, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def _history(work):
    path = os.path.join(work, "history.json")
    return json.load(open(path)) if os.path.exists(path) else []


def test_a_kill_9_mid_span_then_the_same_command_ends_as_if_nothing_happened_and_sigterm_stops_watch(days, tmp_path):
    """The same command killed with -9 while it trains the second span, then run again: each span
    once in the history, each version pushed once, the same decisions and scores as a run never
    killed. With --watch it takes the next span when it lands, and SIGTERM ends it cleanly."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for p in sorted((days / "logs").iterdir())[:4]:  # days 0 and 1 (and their .proba)
        (logs / p.name).write_bytes(p.read_bytes())
    work, serving = str(tmp_path / "work"), str(tmp_path / "serving" / "deepfm")
    cmd = _command(str(logs / "day_*.tsv"), work, serving, "--watch", "--poll_seconds=0.2")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: os.path.exists(os.path.join(work, "spans", "00001-day_001.tsv", "candidate", "checkpoints")),
              240, proc, "span 1 trains")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _wait(lambda: len(_history(work)) == 2, 240, proc, "span 1 is recorded")
        for p in sorted((days / "logs").iterdir())[4:]:  # day 2 lands
            (logs / p.name).write_bytes(p.read_bytes())
        _wait(lambda: len(_history(work)) == 3, 240, proc, "span 2 is recorded")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "stopped between steps" in out, out[-2000:]
    killed = _history(work)
    reference = str(tmp_path / "reference")
    done = subprocess.run(_command(str(days / "logs" / "day_*.tsv"), reference, str(tmp_path / "ref_serving" / "deepfm")),
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    clean = _history(reference)
    assert [r["span"] for r in killed] == [r["span"] for r in clean] == ["day_000.tsv", "day_001.tsv", "day_002.tsv"]
    for a, b in zip(killed, clean):
        assert (a["decision"], a["version"], a["rows"], a["admitted_ids"]) == (b["decision"], b["version"], b["rows"],
                                                                               b["admitted_ids"])
        for key in ("progressive_auc", "candidate_auc", "served_auc"):
            assert a[key] == pytest.approx(b[key], abs=1e-6) if b[key] is not None else a[key] is None
    pushed = [str(r["version"]) for r in clean if r["decision"] == "pushed"]
    assert sorted(os.listdir(serving)) == sorted(os.listdir(tmp_path / "ref_serving" / "deepfm")) == pushed
