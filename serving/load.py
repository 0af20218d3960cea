"""A load generator: threads sending the same Predict request as fast as the server answers, in a
process of their own (clients live outside the server in any real deployment, and Python threads
in the server's process would compete with it for the interpreter).

  python -m serving.load --server=127.0.0.1:8500 --model=deepfm --input=rows.tsv [--rows=50]
      [--threads=4] [--seconds=60]

Each answer is one line on stdout, `<time> <version>`, and each failure `<time> error <status
code>`, the time on the system's monotonic clock (time.monotonic(), one clock for every process of
a machine); it stops after --seconds, when its stdin closes, or on SIGTERM. LoadProcess starts one
and reads those lines: the version-swap test and serving.benchmark see a new version's first
answer there.
"""
import queue
import signal
import subprocess
import sys
import threading
import time

from absl import app, flags

import ctr_tf  # noqa: F401  (tf-keras before TensorFlow)


def define_flags():
    flags.DEFINE_string("server", "127.0.0.1:8500", "The server's gRPC address.")
    flags.DEFINE_string("model", "deepfm", "The model's name.")
    flags.DEFINE_string("input", None, "A file of rows in any format the converter reads; the first --rows are sent.")
    flags.DEFINE_integer("rows", 50, "Rows per request.")
    flags.DEFINE_integer("threads", 4, "Client threads.")
    flags.DEFINE_float("seconds", 60.0, "Stop after this long.")


FLAGS = flags.FLAGS


def main(argv):
    del argv
    import grpc

    from serving import client as client_lib
    client = client_lib.PredictClient(FLAGS.server, FLAGS.model, retries=0)
    request = client.request(next(client_lib.read_batches(FLAGS.input, FLAGS.rows)).rows)
    stop, lock, start = threading.Event(), threading.Lock(), time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

    def say(text):
        with lock:
            sys.stdout.write(f"{time.monotonic():.4f} {text}\n")
            sys.stdout.flush()

    def hammer():
        while not stop.is_set() and time.monotonic() - start < FLAGS.seconds:
            try:
                say(client.prediction.Predict(request, timeout=30).model_spec.version.value)
            except grpc.RpcError as e:
                say(f"error {e.code().name}")
    threads = [threading.Thread(target=hammer) for _ in range(FLAGS.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class LoadProcess:
    """serving.load in a process of its own, its answers read as they come. `first_answer(version)`
    waits for one answer from that version and returns its time (time.monotonic()); failed
    requests are kept in `errors` by status code. Always `stop()` it (it ends with its stdin)."""

    def __init__(self, port: int, rows_file: str, model: str = "deepfm", threads: int = 4,
                 rows: int = 50, seconds: float = 600.0, cwd: str | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving.load", f"--server=127.0.0.1:{port}", f"--model={model}",
             f"--input={rows_file}", f"--rows={rows}", f"--threads={threads}", f"--seconds={seconds}"],
            cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.versions: list[int] = []
        self.errors: list[str] = []
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self._lines.put(line.split())
        self._lines.put(None)

    def first_answer(self, version: int, timeout: float) -> float:
        """The monotonic time of the first answer from `version`; TimeoutError after `timeout` s
        without one (or once the process ended)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = None
            if item is None:
                raise TimeoutError(f"no answer from version {version} within {timeout} s "
                                   f"(answers came from {sorted(set(self.versions))}, {len(self.errors)} failed)")
            if item[1] == "error":
                self.errors.append(item[2])
            else:
                self.versions.append(int(item[1]))
                if int(item[1]) == version:
                    return float(item[0])

    def stop(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (subprocess.TimeoutExpired, OSError):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    define_flags()
    flags.mark_flag_as_required("input")
    app.run(main)
