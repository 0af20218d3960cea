"""The console: TensorFlow's C++ start-up noise filtered from our commands, real output kept."""
import os
import subprocess
import sys

from ctr_tf import console

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What `import tensorflow` and the first fit print on this CPU machine with TensorFlow 2.21.
STARTUP = b"""WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795802985.912184    9162 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results.
I0000 00:00:1795802985.912479    9162 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1795803079.050605    9380 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions.
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1795802987.608467    9162 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
E0000 00:00:1795803155.402145    9675 util.cc:131] oneDNN supports DT_INT64 only on platforms with AVX-512. Falling back to the default Eigen-based implementation if present.
"""
NOISE_MARKERS = ("absl::InitializeLog", "cuInit", "cuda drivers", "oneDNN", "cpu_feature_guard",
                 "To enable the following instructions")
KEPT = b"""W0000 00:00:1795803312.020146   10267 cache_dataset_ops.cc:330] The calling iterator did not fully read the dataset being cached.
Traceback (most recent call last):
ValueError: a real error
I1127 18:12:33.123456 140 trainer.py:12] an absl-py INFO record from our own Python code
"""


def test_filter_removes_the_startup_banner_and_keeps_everything_else():
    assert console.filter_text(STARTUP + KEPT, gpu_present=False) == KEPT


def test_filter_keeps_the_cuda_lines_where_a_gpu_is_present():
    kept = console.filter_text(STARTUP, gpu_present=True).decode()
    assert "failed call to cuInit" in kept  # a GPU that cannot be used is worth a line
    assert "absl::InitializeLog" not in kept and "oneDNN" not in kept
    # the driver-stub notice is INFO: hidden either way; with a GPU, cuInit's E record tells the story
    assert kept.count("\n") == 1


def test_filter_passes_progress_lines_and_partial_lines_unchanged():
    data = b"\r 10% rows\r 20% rows\rdone\nprompt> "
    assert console.filter_text(data, gpu_present=False) == data


def _python(code, **env):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **env))


CODE = """
import ctr_tf, sys
import tensorflow as tf
tf.config.list_physical_devices()
for _ in tf.data.Dataset.range(4).cache({cache!r}).take(1):  # a C++ warning that matters
    pass
print("stdout line")
raise SystemExit("a real error: boom")
"""


def test_a_command_prints_its_own_output_warnings_and_errors_but_not_the_banner(tmp_path):
    proc = _python(CODE.format(cache=str(tmp_path / "c")))
    assert proc.returncode == 1
    assert proc.stdout == "stdout line\n"
    assert "a real error: boom" in proc.stderr
    assert "did not fully read the dataset being cached" in proc.stderr
    for marker in NOISE_MARKERS:
        assert marker not in proc.stderr, (marker, proc.stderr)


def test_ctr_tf_verbose_shows_tensorflow_unfiltered(tmp_path):
    proc = _python(CODE.format(cache=str(tmp_path / "c")), CTR_TF_VERBOSE="1")
    assert "a real error: boom" in proc.stderr
    assert "absl::InitializeLog" in proc.stderr  # the banner this machine's TensorFlow prints


def test_commands_that_never_import_tensorflow_do_not_start_the_filter():
    proc = _python("import sys, ctr_tf, pipelines.clean; print('tensorflow' in sys.modules, ctr_tf.console._filter)")
    assert proc.returncode == 0 and proc.stdout.split() == ["False", "None"]


def test_a_terminal_behind_the_filter_is_still_a_terminal():
    """Progress bars redraw in place only on a terminal: the filter's pipe must not hide it."""
    import pty
    code = "import ctr_tf, tensorflow, sys; from ctr_tf import console; print(console.stderr_is_terminal(), sys.stderr.isatty())"
    main, sub = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=sub, timeout=120)
    finally:
        os.close(sub)
        os.close(main)
    assert proc.stdout.split() == [b"True", b"False"]  # descriptor 2 is the filter's pipe; the user's is a tty
