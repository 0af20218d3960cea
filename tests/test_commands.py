"""The README's commands, run as a user runs them (smaller sizes), so the README stays true."""
import os
import re
import subprocess
import sys


from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_proc(*args, timeout=600):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


def run(*args, timeout=600):
    proc = run_proc(*args, timeout=timeout)
    return proc.stdout + proc.stderr


# The demo runs from an installed wheel in an empty directory: tests/test_package.py.


def test_convert_command_on_a_real_file_prints_the_summary(tmp_path):
    path = helpers.shared_file("criteo", "paddlerec_raw_c_stripped.txt")
    out = run("pipelines.criteo_to_tfrecords", f"--input={path}", f"--output_dir={tmp_path / 'o'}",
              "--categorical_encoding=hash", "--hash_buckets=1000", "--split=9,1,0")
    assert "rows read 100  written 100  rejected 0" in out
    assert os.path.exists(tmp_path / "o" / "schema.json")


def test_convert_command_reports_errors_without_a_traceback(tmp_path):
    bad = tmp_path / "x.txt"
    bad.write_text("not ctr data at all\n")
    proc = subprocess.run([sys.executable, "-m", "pipelines.criteo_to_tfrecords", f"--input={bad}",
                           f"--output_dir={tmp_path / 'o'}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "criteo_to_tfrecords: error:" in proc.stderr and "Traceback" not in proc.stderr


def test_train_helpfull_documents_the_run_flags():
    proc = subprocess.run([sys.executable, "-m", "ctr_tf.train", "--helpfull"], cwd=ROOT, capture_output=True, text=True)
    # absl-py ends every help request with exit status 1; anything else (a crash while importing or
    # defining the flags) is a failure, and the help goes to stdout only
    assert proc.returncode == 1 and proc.stderr == "", proc.stderr[-3000:]
    for flag in ("--model", "--data_dir", "--model_dir", "--epochs", "--batch_size", "--learning_rate", "--optimizer",
                 "--mode", "--export_dir", "--precision", "--strategy", "--eval_epochs", "--warm_start_from"):
        assert flag in proc.stdout, flag


def test_data_benchmark_prints_its_table(tmp_path):
    # Beam over worker threads: the rows and their comparison are the same, without the worker
    # processes' start-up (tests/test_beam_convert.py runs those)
    out = run("pipelines.benchmark_data", "--rows=5000", "--beam_rows=1000", "--rounds=1", f"--work_dir={tmp_path}",
              "--beam_options=--runner=DirectRunner --direct_running_mode=multi_threading --direct_num_workers=2")
    assert "raw line read + split (Python, the floor)" in out and "TFRecord read + parse" in out
    assert "convert, vocabulary (one parse + remap)" in out
    # the Beam runner's rows, each compared with the local runner's output
    assert out.count("same data as local") == 2 and "DIFFERS" not in out


def test_train_benchmark_prints_its_table(tmp_path):
    out = run("pipelines.benchmark_train", "--sizes=20000", "--rows=5000", "--steps=2", "--warmup=1",
              "--batch_size=256", "--optimizers=lazy_adam", "--precisions=float32", f"--work_dir={tmp_path}")
    assert "obvious Keras DeepFM, Adam, float32" in out and "ctr_tf DeepFM, lazy_adam, float32" in out


def test_serving_benchmark_prints_its_table():
    out = run("serving.benchmark", "--seconds=0.2", "--batch_sizes=1,16", "--concurrency=1,2",
              "--goal_rounds=2", "--goal_seconds=0.2", "--swap_rounds=1", "--swap_load_threads=0",
              "--swap_poll_seconds=0.2")
    for mode in ("in_process", "grpc", "grpc_batching", "rest"):
        assert f"\n{mode}" in out
    # the ratio goals come from their own paired rounds, whatever cells the table had
    assert re.search(r"gRPC time / in-process time at 128 rows: [\d.]+x \(rounds [\d.]+-[\d.]+\)", out), out
    assert re.search(r"batching / unbatched req/s, 1 row, concurrency 32: [\d.]+x \(rounds", out), out
    # one swap each way, from a version whole on disk to its first answer; idle only (swaps under
    # serving.load's clients: tests/test_serving.py's swap test)
    swaps = out[out.index("Version swaps (server polling every 0.2 s)"):]
    for way in ("renamed", "in place"):
        assert re.search(rf"\nidle +{way} +1 +[\d.]+ +[\d.]+ +0\n", swaps), swaps
    assert "\nload " not in swaps
    assert re.search(r"version swap, appearance to first answer: worst [\d.]+ s, 0 failed requests", out), out


def test_calibration_benchmark_prints_its_table(tmp_path):
    out = run("pipelines.benchmark_calibration", "--rows=6000", "--heldout_rows=1000", "--rates=1,0.5",
              "--calibrations=platt,isotonic", "--calibration_rows=300,0", "--epochs=1", "--hidden_units=16",
              f"--work_dir={tmp_path}")
    table = out[out.index("DeepFM (deepfm.flags) exports scored on 1,000 held-out planted rows"):]
    for row in ("rate 1 ", "rate 1, platt", "rate 1, isotonic", "rate 0.5", "Bayes-optimal"):
        assert f"\n{row}" in table, table
    assert re.search(r"\nrate 1, isotonic +refused: --calibration=isotonic needs at least 10,000", table), table
    sizes = out[out.index("Calibration maps of the rate-1 run fitted on its first N validation rows"):]
    for row in (r"none +0 +0\.\d+", r"platt +300 +0\.\d+", r"isotonic +300 refused: isotonic calibration needs"):
        assert re.search("\n" + row, sizes), sizes


def test_scale_benchmark_prints_its_table_with_peak_memory_per_stage(tmp_path):
    out = run("pipelines.benchmark_scale", "--rows=3000", "--scale=0.001", "--table_scale=0.0005",
              "--small_table=2000", f"--work_dir={tmp_path}")
    table = out[out.index("Kaggle-size benchmark, 3,000 synthetic rows"):]
    for stage in ("convert: vocab", "convert: hash_full", "train: deepfm_small_a", "train: deepfm_full",
                  "checkpoint write", "settle (table L2)", "export", "serve: load + first request"):
        assert f"\n{stage}" in table or f"\n  {stage}" in table, stage
    assert re.search(r"\ntrain: deepfm_full +[\d.]+ +[\d.]+ +[\d,]+ examples/s", table), table
    assert "whole run's peak / training state" in table and "PROJECTION, not measured" in table


def test_table_size_benchmark_prints_its_table_and_goals(tmp_path):
    out = run("pipelines.benchmark_table_size", "--rows=2000", "--heldout_rows=2000", "--scale=0.0005",
              "--models=deepfm",
              "--configurations=plain", "--dtypes=float32,int8", "--epochs=1", f"--work_dir={tmp_path}")
    table = out[out.index("model    table"):]
    for dtype in ("float32", "int8"):
        assert re.search(rf"\ndeepfm +plain +{dtype} +0\.\d{{4}} +0\.\d{{4}} +[\d,]+ ", table), table
    assert re.search(r"deepfm int8: export [\d.]+% of float32, server [\d.]+%, the server's memory for it "
                     r"-?[\d.]+% \(<= 30%\); served AUC [+-]0\.\d+", out)
    assert re.search(r"the server without a model: [\d.]+ GB \(on deepfm plain int8", out)
