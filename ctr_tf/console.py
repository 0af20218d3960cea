"""What ctr_tf's commands print: their own output, not TensorFlow's C++ start-up banner.

TensorFlow 2.21 writes its C++ log records straight to file descriptor 2, and the start-up ones
come before absl logging is initialised, so `TF_CPP_MIN_LOG_LEVEL` does not stop them: the absl
preamble, the oneDNN and CPU-feature notices, "Could not find cuda drivers" and an E-level
"failed call to cuInit" on a machine without a GPU, and at the first `fit` an E-level "oneDNN
supports DT_INT64 only on platforms with AVX-512". None of it is wrong on a CPU machine, yet a
newcomer's first screen says "error".

This module is the one place that deals with it. `install()`, called by `ctr_tf/__init__.py`
before anything imports TensorFlow, waits for the first `import tensorflow` (commands that never
import it pay nothing) and then puts a filter on descriptor 2: a small helper process (this file,
run as a script) reads everything the process writes there, C++ and Python alike, and passes it
on to the real stderr except the known noise:

- the absl "All log messages before absl::InitializeLog()" preamble, INFO records from C++
  sources, and the CPU-feature notice's continuation line;
- the oneDNN data-type notice, the duplicate-registration errors of the CUDA plugin factories
  and the missing-TensorRT notice;
- "no CUDA driver" and "cuInit failed", only on a machine with no NVIDIA device node: where a GPU
  is present they mean it is unusable, and they are shown.

Everything else comes through: warnings and errors from C++ (`TF_CPP_MIN_LOG_LEVEL` defaults to 1,
which only hides INFO), Python warnings, tracebacks, progress lines. A helper process rather than a
thread, so that what a crashing process wrote last (a failed CHECK, a fatal signal's report) is
still passed on after it dies. At exit the process waits for the helper to drain, so output never
trails behind the shell prompt.

Set `CTR_TF_VERBOSE=1` to see TensorFlow's output unfiltered.
"""
from __future__ import annotations

import atexit
import glob
import os
import re
import sys

VERBOSE_ENV = "CTR_TF_VERBOSE"

# A C++ absl/glog record: severity letter, date, time, thread, file:line] message.
_RECORD = re.compile(rb"^([IWEF])\d{4} [\d:.]+\s+\d+ ([\w.\-]+):\d+\] (.*)$")
_PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CONTINUATIONS = (b"To enable the following instructions:",)
# (source file, message fragment) of W/E records that are harmless wherever they appear.
_ALWAYS_NOISE = (
    (b"util.cc", b"only on platforms with AVX-512. Falling back to the default Eigen-based"),
    (b"cuda_dnn.cc", b"Unable to register cuDNN factory"),
    (b"cuda_fft.cc", b"Unable to register cuFFT factory"),
    (b"cuda_blas.cc", b"Unable to register cuBLAS factory"),
    (b"computation_placer.cc", b"already registered"),
    (b"", b"TF-TRT Warning: Could not find TensorRT"),
)
# Records that only say "there is no GPU": noise where that is true, a problem where it is not.
_NO_GPU_NOISE = (
    (b"cudart_stub.cc", b"Could not find cuda drivers"),
    (b"cuda_platform.cc", b"failed call to cuInit"),
    (b"cuda_executor.cc", b"failed call to cuInit"),
    (b"cuda_driver.cc", b"failed call to cuInit"),
    (b"cuda_diagnostics.cc", b""),
)
_CHILD_ENV = "_CTR_TF_STDERR_FILTER"
_filter = None  # (helper process, saved descriptor of the real stderr, owner pid)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").lower() in ("1", "true", "yes", "on")


def gpu_device_present() -> bool:
    """Whether this machine exposes an NVIDIA (or WSL GPU) device node."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/dxg")


def _matches(rules, source: bytes, message: bytes) -> bool:
    return any((not f or source == f) and frag in message for f, frag in rules)


def is_noise(line: bytes, gpu_present: bool) -> bool:
    """Whether one stderr line (without its terminator) is known start-up or runtime noise."""
    if line == _PREAMBLE or line.startswith(_CONTINUATIONS):
        return True
    m = _RECORD.match(line)
    if not m:
        return _matches(_ALWAYS_NOISE, b"", line)
    severity, source, message = m.groups()
    if severity == b"I" and source.endswith((b".cc", b".h")):
        return True
    if _matches(_ALWAYS_NOISE, source, message):
        return True
    return not gpu_present and _matches(_NO_GPU_NOISE, source, message)


def filter_text(data: bytes, gpu_present: bool) -> bytes:
    """The part of `data` a user should see: whole lines, noise lines removed."""
    return b"".join(seg for seg in re.split(rb"(?<=[\r\n])", data)
                    if seg and not is_noise(seg.rstrip(b"\r\n"), gpu_present))


def stderr_is_terminal() -> bool:
    """Whether the real stderr is a terminal (through the filter, descriptor 2 is a pipe)."""
    if _filter is not None:
        return os.isatty(_filter[1])
    return sys.stderr.isatty()


def quiet_python_logging() -> None:
    """A command's Python-side INFO chatter off, warnings kept: absl's (the command's own logging)
    and TensorFlow's (saver sharding, asset writes, autograph)."""
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    if verbose():
        return
    import tensorflow as tf

    tf.get_logger().setLevel("WARNING")
    tf.autograph.set_verbosity(0)


def install() -> None:
    """Filter TensorFlow's noise out of this process's stderr from its first `import tensorflow`."""
    if verbose() or os.name != "posix" or os.environ.get(_CHILD_ENV):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if "tensorflow" in sys.modules:
        _start_filter()
    elif not any(isinstance(f, _StartFilterOnTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _StartFilterOnTensorFlow())


class _StartFilterOnTensorFlow:
    """A meta-path finder that finds nothing: it starts the filter when TensorFlow is imported."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow":
            sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _StartFilterOnTensorFlow)]
            _start_filter()
        return None


def _start_filter() -> None:
    global _filter
    if _filter is not None:
        return
    import subprocess  # only once TensorFlow is wanted: it imports subprocess anyway

    try:
        os.fstat(2)
    except OSError:
        return  # no stderr to filter
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    try:
        helper = subprocess.Popen([sys.executable, "-S", "-E", os.path.abspath(__file__)],
                                  stdin=read_end, stdout=2, stderr=subprocess.DEVNULL,
                                  env=dict(os.environ, **{_CHILD_ENV: "1"}))
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return
    saved = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    os.close(read_end)
    _filter = (helper, saved, os.getpid())
    atexit.register(_stop_filter)


def _stop_filter() -> None:
    """Give stderr back and let the helper drain (it ends once no process writes to it)."""
    global _filter
    if _filter is None:
        return
    helper, saved, owner = _filter
    _filter = None
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(saved, 2)
    os.close(saved)
    if os.getpid() == owner:
        try:
            helper.wait(timeout=5)  # children still writing keep it alive; they are not waited for
        except Exception:  # noqa: BLE001  (a timeout or a lost child: stop waiting either way)
            pass


def _helper_main() -> None:
    """The helper: stdin -> filter -> stdout, until every writer has closed the pipe."""
    import select
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)  # outlive the process it serves; end on end of input
    gpu = gpu_device_present()
    pending = b""

    def emit(data):
        try:
            os.write(1, data)
        except OSError:
            pass  # the real stderr is gone: keep draining so writers never block

    while True:
        if pending and not select.select([0], [], [], 0.05)[0]:
            emit(filter_text(pending, gpu))  # a partial line (a prompt, a progress bar) waits no longer
            pending = b""
            continue
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        data = pending + chunk
        cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        pending = data[cut:]
        if cut:
            emit(filter_text(data[:cut], gpu))
    if pending:
        emit(filter_text(pending, gpu))


if __name__ == "__main__":
    try:
        _helper_main()
    except BaseException:  # noqa: BLE001  (never lose output: fall back to copying it unfiltered)
        while True:
            try:
                block = os.read(0, 1 << 16)
            except OSError:
                break
            if not block:
                break
            try:
                os.write(1, block)
            except OSError:
                pass
