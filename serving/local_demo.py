"""Serves an export with the local server and scores a file through the gRPC client.

  python -m serving.local_demo --export_dir=MODEL_DIR/export --input=FILE [--model=deepfm] [--rows=N]

Starts `python -m serving.server` on a free loopback port, waits for AVAILABLE, runs the client
on the file's first --rows rows, then stops the server with SIGTERM.
"""
import os
import signal
import subprocess
import sys
import tempfile

import numpy as np
from absl import app, flags

from ctr_tf import metrics
from serving import client as client_lib
from serving.ports import free_port

def define_flags():
    flags.DEFINE_string("export_dir", None, "The trainer's export directory (<export_dir>/<model>/<version>).")
    flags.DEFINE_string("model", "deepfm", "Model name.")
    flags.DEFINE_string("input", None, "File to score.")
    flags.DEFINE_integer("rows", 20_000, "Rows of the file to score.")
    flags.DEFINE_string("output", None, "Probabilities file.")


FLAGS = flags.FLAGS


def main(argv):
    del argv
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "serving.server", f"--model_name={FLAGS.model}",
                               f"--model_base_path={os.path.join(FLAGS.export_dir, FLAGS.model)}",
                               f"--port={port}", "--enable_batching"])
    try:
        with tempfile.NamedTemporaryFile("w", suffix=os.path.splitext(FLAGS.input)[1], delete=False) as f:
            with open(FLAGS.input) as src:
                for i, line in enumerate(src):
                    if i >= FLAGS.rows:
                        break
                    f.write(line)
        c = client_lib.PredictClient(f"127.0.0.1:{port}", FLAGS.model)
        c.wait_until_available(120)
        print(f"server on 127.0.0.1:{port}: {FLAGS.model} versions {c.status()}", flush=True)
        probs, labels, rejects = client_lib.score_file(c, f.name, 512)
        os.unlink(f.name)
        if FLAGS.output:
            np.savetxt(FLAGS.output, probs, fmt="%.6f")
        m = metrics.summary(labels, probs)
        print(f"scored {len(probs):,} raw rows over gRPC: AUC {m['auc']:.5f}  logloss {m['logloss']:.5f}  "
              f"CTR ratio {m['ctr_ratio']:.4f}" + (f"; {len(rejects)} unparsable lines" if rejects else ""), flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    define_flags()
    app.run(main)
