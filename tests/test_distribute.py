"""tf.distribute strategies on this CPU machine: each trains a few steps, checkpoints and exports
the same serving signature. Each cluster runs in subprocesses (servers never shut down cleanly)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf.data import synthetic
from serving.ports import free_ports
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAW_INPUTS = sorted([f"I{i}" for i in range(1, 14)] + [f"C{j}" for j in range(1, 27)])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    synthetic.write(str(d / "s.tsv"), 3000, seed=5, scale=0.0003)
    helpers.convert(str(d / "s.tsv"), d / "tfr", block_rows=128)
    return str(d / "tfr")


def train_args(data_dir, model_dir, strategy, extra=()):
    return [sys.executable, "-m", "ctr_tf.train", "--flagfile=deepfm.flags",
            f"--data_dir={data_dir}", f"--model_dir={model_dir}", f"--strategy={strategy}", "--epochs=2",
            "--steps_per_epoch=4", "--batch_size=64", "--hidden_units=16", *extra]


def assert_trained(model_dir):
    assert os.path.exists(os.path.join(model_dir, "checkpoints", "epoch-1.index"))
    sig = tf.saved_model.load(os.path.join(model_dir, "export", "deepfm", "1")).signatures["serving_default"]
    assert sorted(sig.structured_input_signature[1]) == RAW_INPUTS
    assert sig.structured_outputs["probability"].shape.as_list() == [None, 1]


def test_mirrored_over_two_logical_cpus(data_dir, tmp_path):
    md = tmp_path / "m"
    script = f"""
import sys
sys.path.insert(0, {ROOT!r})
import ctr_tf, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from ctr_tf import flags as ctr_flags
from ctr_tf import train, trainer
orig = trainer.make_strategy
def make(kind, *args):
    s = orig(kind, *args)
    print("replicas", s.num_replicas_in_sync, flush=True)
    return s
trainer.make_strategy = make
sys.argv = {train_args(data_dir, md, "mirrored")[3:]!r}
sys.argv.insert(0, "train")
ctr_flags.run_app(train.main, "train")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "replicas 2" in proc.stdout
    assert_trained(str(md))


def test_multi_worker_with_two_local_workers(data_dir, tmp_path):
    md = tmp_path / "m"
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
        procs.append(subprocess.Popen(train_args(data_dir, md, "multi_worker"), cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    # both workers' logs on failure: one worker's error is usually "the other stopped heartbeating"
    assert [p.returncode for p in procs] == [0, 0], "\n\n".join(
        f"worker {i} exit {p.returncode}:\n{err[-2500:]}" for i, (p, (_, err)) in enumerate(zip(procs, outs)))
    assert_trained(str(md))
    assert not [d for d in os.listdir(md) if d.startswith("ctr_tf_worker_")]


def _trainer_flags(data_dir, model_dir, *extra):
    """The trainer's flags of train_args without the program and the strategy (the launcher adds it)."""
    return [a for a in train_args(data_dir, model_dir, "parameter_server", extra)[3:] if not a.startswith("--strategy")]


def _leftover_tasks() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pipelines.local_cluster --serve_task" in line]


def test_local_cluster_runs_ps_workers_and_chief_streams_their_logs_and_stops_them_all(data_dir, tmp_path):
    md = tmp_path / "m"
    proc = subprocess.run([sys.executable, "-m", "pipelines.local_cluster", "--workers=2", "--ps=2", "--",
                           *_trainer_flags(data_dir, md, "--early_stopping_patience=0")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    for task in ("[chief] exported SavedModel", "[ps 1] ps 1 serving on 127.0.0.1:", "[worker 1] worker 1 serving",
                 "[chief] placement: embedding/embeddings ("):
        assert task in proc.stdout, task
    assert_trained(str(md))
    assert [len(t["shards"]) for t in json.load(open(md / "placement.json"))["tables"]] == [2, 2]
    assert not _leftover_tasks()
    # --warm_start_from the sharded run into a run without parameter servers: the same weights
    # (one Adam step of 1e-12 apart)
    warm = subprocess.run(train_args(data_dir, tmp_path / "w", "default", [
        f"--warm_start_from={md}", "--epochs=1", "--steps_per_epoch=1", "--learning_rate=1e-12",
        "--early_stopping_patience=0"]), cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert warm.returncode == 0 and "warm start: weights from" in warm.stdout, warm.stderr[-3000:]
    from tests.test_serving import raw_rows, saved_model_scores
    rows, _ = raw_rows(os.path.join(os.path.dirname(data_dir), "s.tsv"), 300)
    np.testing.assert_allclose(saved_model_scores(str(tmp_path / "w" / "export" / "deepfm" / "1"), rows),
                               saved_model_scores(str(md / "export" / "deepfm" / "1"), rows), atol=1e-5)
    # a run cut short: every task is stopped, the status says why
    cut = subprocess.run([sys.executable, "-m", "pipelines.local_cluster", "--workers=1", "--ps=1", "--timeout=3",
                          "--", *_trainer_flags(data_dir, tmp_path / "cut", "--epochs=50")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert cut.returncode == 124 and "--timeout=3 s reached" in cut.stdout, cut.stdout[-2000:]
    assert not _leftover_tasks()


class _Cluster:
    """Tasks of a parameter-server cluster started one by one, so that a test can kill and
    restart them; every process is stopped by pid at the end, whatever happens."""

    def __init__(self, workers, ps):
        from pipelines import local_cluster
        self.lc = local_cluster
        self.cluster = local_cluster.cluster_spec(workers, ps, free_ports(1 + workers + ps))
        self.procs = {}
        self.logs = {}

    def start(self, kind, index):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CONFIG": self.lc.tf_config(self.cluster, kind, index)}
        log = open(self.logs.setdefault((kind, index), f"/tmp/ctr_tf_test_{os.getpid()}_{kind}{index}.log"), "ab")
        self.procs[(kind, index)] = subprocess.Popen(
            [sys.executable, "-m", "pipelines.local_cluster", "--serve_task"], cwd=ROOT, env=env,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def chief(self, args):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CONFIG": self.lc.tf_config(self.cluster, "chief", 0)}
        return subprocess.Popen([*args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, stdin=subprocess.DEVNULL)

    def kill(self, kind, index):
        p = self.procs.pop((kind, index))
        p.kill()
        p.wait()

    def stop(self):
        for p in self.procs.values():
            p.kill()
            p.wait()
        for path in self.logs.values():
            if os.path.exists(path):
                os.remove(path)


class _Chief:
    """The chief's process, its output gathered by a thread (so waiting on it has a timeout)."""

    def __init__(self, proc):
        import threading
        self.proc, self.lines = proc, []
        self.thread = threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        self.thread.start()

    def wait_for(self, pattern, timeout):
        import time
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(pattern in line for line in list(self.lines)):
                return True
            if self.proc.poll() is not None and not self.thread.is_alive():
                return any(pattern in line for line in self.lines)
            time.sleep(0.1)
        return False

    def finish(self, timeout):
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.thread.join(5)
        return self.proc.returncode

    @property
    def output(self):
        return "".join(self.lines)


def test_a_dead_worker_is_survived_a_dead_ps_stops_the_run_and_the_rerun_resumes(data_dir, tmp_path):
    """Real processes on 127.0.0.1: chief, 2 workers, 2 parameter servers, tables in 2 shards.
    A worker killed (SIGKILL) in the middle of epoch 2 and started again 3 s later: the run goes
    on. A parameter server killed in epoch 4: the chief stops, saying so. The same command, once
    the server is back, resumes after the last finished epoch (its optimizer slots paired as
    saved) and exports."""
    import time
    cluster = _Cluster(workers=2, ps=2)
    md = tmp_path / "m"
    args = train_args(data_dir, md, "parameter_server", ["--epochs=4", "--steps_per_epoch=200"])
    chief = None
    try:
        for kind in ("ps", "worker"):
            for i in range(2):
                cluster.start(kind, i)
        chief = _Chief(cluster.chief(args))
        assert chief.wait_for("Epoch 2/4", 180), chief.output[-3000:]
        time.sleep(1.0)
        cluster.kill("worker", 1)
        time.sleep(3)
        cluster.start("worker", 1)
        assert chief.wait_for("Epoch 4/4", 180), chief.output[-3000:]
        assert "failed with UnavailableError" in chief.output  # the coordinator saw the worker go
        time.sleep(0.5)
        cluster.kill("ps", 1)
        rc = chief.finish(180)
        out = chief.output
        assert rc not in (0, None), out[-3000:]
        assert "parameter server 1 failed" in out and "run the same command again" in out, out[-3000:]
        assert not os.path.exists(md / "export")
        done = sorted(int(n.split("-")[1].split(".")[0]) for n in os.listdir(md / "checkpoints") if n.endswith(".index"))
        assert done == [0, 1, 2], done
        cluster.start("ps", 1)
        chief = _Chief(cluster.chief(args))
        rc = chief.finish(240)
        out = chief.output
        assert rc == 0, out[-3000:]
        assert "(epoch 2 done)" in out and "Epoch 4/4" in out and "Epoch 3/4" not in out, out[-3000:]
        assert "Inconsistent references" not in out
        assert_trained(str(md))
        placement = json.load(open(md / "placement.json"))
        assert len(placement["tables"]) == 2 and placement["dense"]  # DeepFM: embeddings, first-order weights
        for table in placement["tables"]:
            assert sorted(s["device"].split("/")[3] for s in table["shards"]) == ["task:0", "task:1"]
            assert [s["rows"] for s in table["shards"]] == [[0, table["rows"] // 2 + table["rows"] % 2],
                                                             [table["rows"] // 2 + table["rows"] % 2, table["rows"]]]
        assert all(d["device"].startswith("/job:ps/") for d in placement["dense"])
        # the 2-shard checkpoint exported in 3 shards on this cluster, and by a run with no cluster
        chief = _Chief(cluster.chief(train_args(data_dir, md, "parameter_server", [
            "--mode=export", "--ps_shards=3", f"--export_dir={tmp_path / 'e3'}"])))
        assert chief.finish(180) == 0, chief.output[-3000:]
        assert "in 3 shard(s)" in chief.output
    finally:
        if chief is not None and chief.proc.poll() is None:
            chief.proc.kill()
            chief.proc.wait()
        cluster.stop()
    plain = subprocess.run(train_args(data_dir, md, "default", ["--mode=export", f"--export_dir={tmp_path / 'e0'}"]),
                           cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert plain.returncode == 0, plain.stderr[-3000:]
    from tests.test_serving import raw_rows, saved_model_scores
    rows, _ = raw_rows(os.path.join(os.path.dirname(data_dir), "s.tsv"), 500)
    own = saved_model_scores(str(md / "export" / "deepfm" / "1"), rows)
    for other in ("e3", "e0"):
        np.testing.assert_allclose(saved_model_scores(str(tmp_path / other / "deepfm" / "1"), rows), own, atol=1e-6)
    assert own.std() > 0.01
