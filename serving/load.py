"""A load generator: threads sending the same Predict request as fast as the server answers, in a
process of their own (clients live outside the server in any real deployment, and Python threads
in the server's process would compete with it for the interpreter).

  python -m serving.load --server=127.0.0.1:8500 --model=deepfm --input=rows.tsv [--rows=50]
      [--threads=4] [--seconds=60]

Each answer is one line on stdout, `<seconds since start> <version>`, and each failure
`<seconds> error <status code>`; it stops after --seconds, when its stdin closes, or on SIGTERM.
The version-swap test and serving.benchmark read those lines to see a new version's first answer.
"""
import signal
import sys
import threading
import time

from absl import app, flags

import ctr_tf  # noqa: F401  (tf-keras before TensorFlow)

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
            sys.stdout.write(f"{time.monotonic() - start:.4f} {text}\n")
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


if __name__ == "__main__":
    flags.mark_flag_as_required("input")
    app.run(main)
