"""The experiment pipelines: comparison, sweep, curves, download and cleanup."""
import glob
import hashlib
import http.server
import io
import math
import os
import re
import subprocess
import sys
import tarfile
import threading

import pytest
import tensorflow as tf

from ctr_tf import flags as ctr_flags
from ctr_tf import markers
from ctr_tf import schema as schema_lib
from ctr_tf.data import synthetic
from pipelines import clean, download_criteo, plot, sweep
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, ok=True):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if ok:
        assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipe")
    synthetic.write(str(d / "s.tsv"), 4000, seed=5, scale=0.0005)
    helpers.convert(str(d / "s.tsv"), d / "tfr", block_rows=256)
    return str(d / "tfr")


def test_compare_models_tables_charts_skips_resumes_and_survives_a_failing_model(data_dir, tmp_path):
    flagfiles = tmp_path / "flagfiles"
    flagfiles.mkdir()
    for name in ("lr", "fm", "flen"):
        (flagfiles / f"{name}.flags").write_text(open(ctr_flags.shipped_flagfile(name)).read())
    # dnn diverges: its loss becomes NaN, the comparison marks it failed and goes on.
    (flagfiles / "dnn.flags").write_text("--model=dnn\n--optimizer=sgd\n--learning_rate=1e12\n")
    out = tmp_path / "out"
    args = ("pipelines.compare_models", "--models=lr,dnn,fm,flen", f"--data_dir={data_dir}", f"--output_dir={out}",
            f"--flagfile_dir={flagfiles}", "--epochs=1", "--batch_size=256", "--seeds=2")
    first = run(*args, ok=False)
    assert first.returncode != 0 and "some models failed" in first.stderr
    assert "skipping flen: --model=flen needs field groups" in first.stdout
    assert "[1/6] lr (seed 0)" in first.stdout and "FAILED: TrainingError: the loss became" in first.stdout
    table = (out / "results.md").read_text()
    assert "| lr |" in table and "| fm |" in table and "| dnn | failed" in table
    assert "±" in table and "Bayes AUC" in table and "skipped flen" in table
    assert "| test NE | test ECE |" in table and "Bayes-optimal probabilities of the test split" in table
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("model,status,parameters,best_epoch,valid_auc,test_auc") and len(rows) == 4
    for png in ("auc.png", "speed.png", "train_loss.png", "train_auc.png", "eval_auc.png"):
        assert (out / png).stat().st_size > 5000, png
    again = run(*args, ok=False)
    assert again.stdout.count("already finished") == 4  # lr and fm, two seeds each: not retrained


def test_compare_models_names_an_unknown_model(data_dir, tmp_path):
    proc = run("pipelines.compare_models", "--models=deepfm,nope", f"--data_dir={data_dir}",
               f"--output_dir={tmp_path}", ok=False)
    assert proc.returncode != 0 and "unknown model(s) nope" in proc.stderr


def test_sweep_runs_each_grid_point_with_hparams_and_a_sorted_table(data_dir, tmp_path):
    out = tmp_path / "sweep"
    proc = run("pipelines.sweep", "--model=lr", f"--data_dir={data_dir}", f"--output_dir={out}",
               "--grid=learning_rate=0.001,0.01;batch_size=256,512", "--epochs=1")
    trials = sorted(os.path.basename(p) for p in glob.glob(str(out / "runs" / "*")) if os.path.isdir(p))
    assert trials == ["learning_rate=0.001,batch_size=256", "learning_rate=0.001,batch_size=512",
                      "learning_rate=0.01,batch_size=256", "learning_rate=0.01,batch_size=512"]
    for trial in trials:
        plugins = set()
        for path in glob.glob(str(out / "runs" / trial / "events.*")):
            for event in tf.compat.v1.train.summary_iterator(path):
                plugins |= {v.metadata.plugin_data.plugin_name for v in event.summary.value}
        assert "hparams" in plugins, trial
    root_events = glob.glob(str(out / "runs" / "events.*"))
    assert root_events  # the experiment config of the HParams dashboard
    table = (out / "results.md").read_text().splitlines()
    aucs = [float(line.split("|")[3]) for line in table if line.startswith("| 0.0")]
    assert len(aucs) == 4 and aucs == sorted(aucs, reverse=True)
    assert "HParams: tensorboard --logdir" in proc.stdout
    # numeric keys are numbers in the HParams dashboard (a log axis, numeric order), not strings
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
    infos = {}
    for path in root_events:
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
                    infos.update({h.name: h for h in data.experiment.hparam_infos})
    assert infos["learning_rate"].type == api_pb2.DATA_TYPE_FLOAT64
    assert sorted(v.number_value for v in infos["learning_rate"].domain_discrete.values) == [0.001, 0.01]
    assert sorted(v.number_value for v in infos["batch_size"].domain_discrete.values) == [256, 512]


@pytest.mark.parametrize("grid,message", [
    ("optimizer=adam,bogus", "optimizer=bogus"),
    ("hidden_units=400x3,40y", "hidden_units='40y'"),
    ("no_such_flag=1", "'no_such_flag' is not a trainer flag"),
])
def test_sweep_refuses_an_invalid_grid_before_any_trial(data_dir, tmp_path, grid, message):
    from ctr_tf import config as cfg_lib
    with pytest.raises(cfg_lib.ConfigError, match=re.escape(message)):
        sweep.sweep("lr", data_dir, str(tmp_path / "s"), grid, 0, "", [])
    assert not (tmp_path / "s").exists()


def test_the_sweep_command_says_why_it_refuses_a_grid(data_dir, tmp_path):
    proc = run("pipelines.sweep", "--model=lr", f"--data_dir={data_dir}", f"--output_dir={tmp_path / 's'}",
               "--grid=optimizer=adam,bogus", ok=False)
    assert proc.returncode != 0 and "sweep: error: " in proc.stderr and "optimizer=bogus" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "s").exists()


def test_grid_list_values_expand():
    assert sweep.parse_grid("hidden_units=400x3,512-256-128;learning_rate=0.1") == {
        "hidden_units": ["400,400,400", "512,256,128"], "learning_rate": ["0.1"]}
    assert len(sweep.points({"a": ["1", "2", "3"], "b": ["x", "y"]}, 4, seed=0)) == 4


def test_plot_draws_training_per_logged_step_and_evaluation_on_integer_epochs(data_dir, tmp_path):
    from ctr_tf import config as cfg_lib
    from ctr_tf import trainer
    # 3,200 training rows / 256 = 13 steps an epoch: one run logs every 4 steps, one never does
    for lr, every in (("0.01", 4), ("0.001", 1000)):
        trainer.run(cfg_lib.ExperimentConfig(
            data=cfg_lib.DataConfig(data_dir=data_dir), model=cfg_lib.ModelConfig(name="lr"),
            train=cfg_lib.TrainConfig(model_dir=str(tmp_path / "runs" / f"lr-{lr}"), epochs=3, batch_size=256,
                                      learning_rate=float(lr), mode=cfg_lib.Mode.TRAIN, log_every_n_steps=every)))
    run_dir = str(tmp_path / "runs" / "lr-0.01")
    assert [s for s, _ in plot.read_scalars(os.path.join(run_dir, "tensorboard", "eval"), "epoch_auc")] == [0, 1, 2]
    kind, steps, losses = plot.series(run_dir, "train", "batch_loss", "epoch_loss")
    steps_per_epoch = math.ceil(schema_lib.load(data_dir).split_rows("train") / 256)
    assert kind == "step" and steps == list(range(4, 3 * steps_per_epoch + 1, 4)) and all(map(math.isfinite, losses))
    kind, epochs, aucs = plot.series(run_dir, "eval", None, "epoch_auc")
    assert kind == "epoch" and epochs == [1, 2, 3] and len(aucs) == 3
    quiet = plot.series(str(tmp_path / "runs" / "lr-0.001"), "train", "batch_loss", "epoch_loss")
    assert quiet[0] == "epoch" and quiet[1] == [1, 2, 3]  # no logged step: per epoch instead
    proc = run("pipelines.plot", f"--logdir={tmp_path / 'runs'}", f"--output_dir={tmp_path / 'png'}")
    assert "2 run(s)" in proc.stdout
    for png in ("train_loss.png", "train_auc.png", "eval_auc.png"):
        assert (tmp_path / "png" / png).stat().st_size > 5000
    missing = run("pipelines.plot", f"--logdir={tmp_path / 'png'}", f"--output_dir={tmp_path / 'x'}", ok=False)
    assert missing.returncode != 0 and "no run with TensorBoard events" in missing.stderr


class _ArchiveServer(http.server.BaseHTTPRequestHandler):
    """Serves one payload on 127.0.0.1 with Range support; `cut` drops the first transfer after
    that many bytes; /broken answers 500."""
    payload = b""
    cut = None

    def do_GET(self):
        if self.path.endswith("broken.tar.gz"):
            self.send_error(500, "boom")
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        body = self.payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if _ArchiveServer.cut is not None:
            self.wfile.write(body[: _ArchiveServer.cut])
            _ArchiveServer.cut = None
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def archive_server():
    buf = io.BytesIO()
    data = ("\n".join(["0\t1\t2"] * 20000)).encode()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    _ArchiveServer.payload = buf.getvalue()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ArchiveServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _ArchiveServer.payload
    server.shutdown()


def test_download_resumes_an_interrupted_transfer_verifies_and_unpacks(archive_server, tmp_path):
    base, payload = archive_server
    url, sha = f"{base}/dac.tar.gz", hashlib.sha256(payload).hexdigest()
    _ArchiveServer.cut = len(payload) // 3
    with pytest.raises(download_criteo.DownloadError, match="run the same command again to resume"):
        download_criteo.download(url, str(tmp_path), sha, progress=False)
    assert not (tmp_path / "dac.tar.gz").exists()
    assert (tmp_path / "dac.tar.gz.part").stat().st_size == len(payload) // 3
    proc = run("pipelines.download_criteo", f"--output_dir={tmp_path}", f"--url={url}", f"--sha256={sha}", "--progress=false")
    assert "verified" in proc.stdout and "pipelines.criteo_to_tfrecords --input=" in proc.stdout
    assert (tmp_path / "dac.tar.gz").read_bytes() == payload and not (tmp_path / "dac.tar.gz.part").exists()
    assert (tmp_path / "train.txt").read_text().count("\n") == 19999


def test_download_with_a_wrong_checksum_or_a_server_error_leaves_nothing_complete(archive_server, tmp_path):
    base, _ = archive_server
    proc = run("pipelines.download_criteo", f"--output_dir={tmp_path}", f"--url={base}/dac.tar.gz",
               "--sha256=" + "0" * 64, "--progress=false", ok=False)
    assert proc.returncode != 0 and "does not match --sha256" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == [markers.MARKER_FILE]
    proc = run("pipelines.download_criteo", f"--output_dir={tmp_path}", f"--url={base}/broken.tar.gz",
               "--progress=false", ok=False)
    assert "HTTP 500" in proc.stderr and sorted(os.listdir(tmp_path)) == [markers.MARKER_FILE]


def test_clean_removes_only_directories_ctr_tf_made(data_dir, tmp_path):
    mine = tmp_path / "made"
    markers.mark(str(mine), "model_dir")
    (mine / "weights.bin").write_bytes(b"x" * 2_000_000)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "precious.txt").write_text("keep")
    refused = run("pipelines.clean", str(mine), str(theirs), ok=False)
    assert refused.returncode != 0 and "not created by a ctr_tf command" in refused.stderr
    assert mine.exists() and theirs.exists()
    dry = run("pipelines.clean", "--dry_run", str(mine))
    assert "would remove" in dry.stdout and "1.9 MiB" in dry.stdout and mine.exists()
    run("pipelines.clean", str(mine))
    assert not mine.exists() and theirs.exists()
    assert markers.read(data_dir)["kind"] == "converted_data"  # the converter marks its output


def test_marking_never_claims_a_directory_the_user_filled(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("x")
    markers.mark(str(tmp_path / "a"), "model_dir")
    assert markers.read(str(tmp_path / "a")) is None
    assert clean.check([]) == []
