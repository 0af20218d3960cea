"""tf.distribute strategies on this CPU machine: each trains a few steps, checkpoints and exports
the same serving signature. Each cluster runs in subprocesses (servers never shut down cleanly)."""
import json
import os
import subprocess
import sys

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
def make(kind):
    s = orig(kind)
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


def test_parameter_server_with_in_process_servers(data_dir, tmp_path):
    md = tmp_path / "m"
    script = f"""
import json, os, sys
sys.path.insert(0, {ROOT!r})
import ctr_tf, tensorflow as tf
from serving.ports import free_ports
w0, w1, ps, chief = free_ports(4)
cluster = {{"worker": [f"127.0.0.1:{{w0}}", f"127.0.0.1:{{w1}}"], "ps": [f"127.0.0.1:{{ps}}"],
           "chief": [f"127.0.0.1:{{chief}}"]}}
spec = tf.train.ClusterSpec(cluster)
worker_config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=3)
for i in range(2):
    tf.distribute.Server(spec, job_name="worker", task_index=i, config=worker_config, protocol="grpc")
tf.distribute.Server(spec, job_name="ps", task_index=0, protocol="grpc")
os.environ["TF_CONFIG"] = json.dumps({{"cluster": cluster, "task": {{"type": "chief", "index": 0}}}})
from ctr_tf import flags as ctr_flags
from ctr_tf import train
sys.argv = ["train"] + {train_args(data_dir, md, "parameter_server")[3:]!r}
try:
    ctr_flags.run_app(train.main, "train")
except SystemExit as e:
    if e.code is not None and not isinstance(e.code, int):
        print(e.code, file=sys.stderr)
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(0 if e.code is None else e.code if isinstance(e.code, int) else 1)
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_trained(str(md))


def _trainer_flags(data_dir, model_dir, *extra):
    """The trainer's flags of train_args without the program and the strategy (the launcher adds it)."""
    return [a for a in train_args(data_dir, model_dir, "parameter_server", extra)[3:] if not a.startswith("--strategy")]


def _leftover_tasks() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pipelines.local_cluster --serve_task" in line]


def test_local_cluster_runs_ps_workers_and_chief_streams_their_logs_and_stops_them_all(data_dir, tmp_path):
    md = tmp_path / "m"
    proc = subprocess.run([sys.executable, "-m", "pipelines.local_cluster", "--workers=2", "--ps=1", "--",
                           *_trainer_flags(data_dir, md)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    for task in ("[chief] exported SavedModel", "[ps 0] ps 0 serving on 127.0.0.1:", "[worker 1] worker 1 serving"):
        assert task in proc.stdout, task
    assert_trained(str(md))
    assert not _leftover_tasks()
    # a run cut short: every task is stopped, the status says why
    cut = subprocess.run([sys.executable, "-m", "pipelines.local_cluster", "--workers=1", "--ps=1", "--timeout=3",
                          "--", *_trainer_flags(data_dir, tmp_path / "cut", "--epochs=50")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert cut.returncode == 124 and "--timeout=3 s reached" in cut.stdout, cut.stdout[-2000:]
    assert not _leftover_tasks()
