"""A parameter-server cluster on this machine, in one command.

  python -m pipelines.local_cluster --workers=2 --ps=2 -- --flagfile=deepfm.flags \
      --data_dir=DIR --model_dir=DIR --steps_per_epoch=N [any trainer flag]

Starts `--ps` parameter servers and `--workers` workers (TensorFlow servers, each its own
process) and the chief (`python -m ctr_tf.train` with `--strategy=parameter_server`), each with
the TF_CONFIG of its task on 127.0.0.1 ports; streams every task's output, each line prefixed
with its task (`[chief]`, `[worker 0]`, `[ps 1]`); and stops them all, by process id, when the
chief ends, on Ctrl-C, on SIGTERM, or after `--timeout` seconds. The exit status is the chief's.

On a real cluster each machine runs one task with its own TF_CONFIG, e.g. on the first worker:

  TF_CONFIG='{"cluster": {"chief": ["host0:2222"], "worker": ["host1:2222", "host2:2222"],
              "ps": ["host3:2222", "host4:2222"]}, "task": {"type": "worker", "index": 0}}'
  python -m pipelines.local_cluster --serve_task

and the chief runs the trainer with `--strategy=parameter_server` and its own TF_CONFIG
(task chief, index 0).

TensorFlow's gRPC servers listen on every interface of the machine, whatever address the cluster
names (TensorFlow has no option for the address they bind); the tasks here reach each other over
127.0.0.1 only.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import ctr_tf  # noqa: F401  (tf-keras before TensorFlow)
from absl import flags

from ctr_tf import flags as ctr_flags

FLAGS = flags.FLAGS
STOP_GRACE_SECONDS = 10


def cluster_spec(workers: int, ps: int, ports: list[int]) -> dict:
    """{"chief": [...], "worker": [...], "ps": [...]} on 127.0.0.1, one port a task."""
    addr = [f"127.0.0.1:{p}" for p in ports]
    return {"chief": addr[:1], "worker": addr[1:1 + workers], "ps": addr[1 + workers:1 + workers + ps]}


def tf_config(cluster: dict, task_type: str, index: int) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def serve_task():
    """This process is the worker or parameter server TF_CONFIG names: a TensorFlow server until killed."""
    import tensorflow as tf
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    spec = resolver.cluster_spec()
    config = None
    if resolver.task_type == "worker":
        # A worker needs more inter-op threads than workers, or the coordinator's functions wait
        # on each other and fit hangs without a word.
        config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=len(spec.as_dict().get("worker", [])) + 1)
    server = tf.distribute.Server(spec, job_name=resolver.task_type, task_index=resolver.task_id,
                                  config=config, protocol="grpc", start=True)
    print(f"{resolver.task_type} {resolver.task_id} serving on {spec.task_address(resolver.task_type, resolver.task_id)}",
          flush=True)
    server.join()


class Task:
    """One process of the cluster, its output streamed with a prefix."""

    def __init__(self, name: str, args: list[str], env: dict):
        self.name = name
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.reader = threading.Thread(target=self._stream, daemon=True)
        self.reader.start()

    def _stream(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            print(f"[{self.name}] {line}", flush=True)

    def stop(self):
        """SIGTERM, then SIGKILL after the grace period; waits for the process either way."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)


def launch(workers: int, ps: int, trainer_args: list[str], timeout: float = 0.0) -> int:
    """Runs the cluster until the chief ends (or the timeout); returns the chief's exit status
    (124 on a timeout). Every task is stopped before this returns."""
    from serving.ports import free_ports
    if workers < 1 or ps < 1:
        raise ValueError(f"--workers={workers} --ps={ps}: a parameter-server cluster needs at least one of each")
    cluster = cluster_spec(workers, ps, free_ports(1 + workers + ps))
    base = {**os.environ, "PYTHONUNBUFFERED": "1"}
    here = [sys.executable, "-m", "pipelines.local_cluster", "--serve_task"]
    tasks = []
    try:
        for kind, count in (("ps", ps), ("worker", workers)):
            for i in range(count):
                tasks.append(Task(f"{kind} {i}", here, {**base, "TF_CONFIG": tf_config(cluster, kind, i)}))
        chief = Task("chief", [sys.executable, "-m", "ctr_tf.train", *trainer_args, "--strategy=parameter_server"],
                     {**base, "TF_CONFIG": tf_config(cluster, "chief", 0)})
        tasks.append(chief)
        print(f"local cluster: chief {cluster['chief'][0]}, workers {', '.join(cluster['worker'])}, "
              f"ps {', '.join(cluster['ps'])}", flush=True)
        deadline = time.monotonic() + timeout if timeout else None
        while chief.proc.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                print(f"local cluster: --timeout={timeout:g} s reached; stopping every task", flush=True)
                return 124
            for t in tasks[:-1]:
                if t.proc.poll() is not None:
                    # a server that dies is the chief's business (the coordinator reschedules a
                    # worker's functions; a parameter server's loss stops the run): say so here
                    print(f"local cluster: {t.name} exited with status {t.proc.returncode}", flush=True)
                    tasks.remove(t)
            time.sleep(0.2)
        return chief.proc.returncode
    finally:
        for t in reversed(tasks):
            t.stop()


def define_flags():
    flags.DEFINE_integer("workers", 2, "Worker tasks.")
    flags.DEFINE_integer("ps", 2, "Parameter-server tasks.")
    flags.DEFINE_float("timeout", 0.0, "Stop every task after this many seconds (0: when the chief ends).")
    flags.DEFINE_boolean("serve_task", False, "Run as the worker or parameter server that TF_CONFIG names.")


def main(argv):
    if FLAGS.serve_task:
        serve_task()
        return
    trainer_args = argv[1:]
    if trainer_args[:1] == ["--"]:
        trainer_args = trainer_args[1:]
    if not trainer_args:
        sys.exit("local_cluster: give the trainer's flags after --, e.g. -- --flagfile=deepfm.flags --data_dir=... "
                 "--model_dir=... --steps_per_epoch=N")

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        status = launch(FLAGS.workers, FLAGS.ps, trainer_args, FLAGS.timeout)
    except ValueError as e:
        sys.exit(f"local_cluster: error: {e}")
    except KeyboardInterrupt:
        print("local cluster: interrupted; every task stopped", flush=True)
        status = 130
    sys.exit(status)


if __name__ == "__main__":
    define_flags()
    ctr_flags.run_app(main, "local_cluster")
