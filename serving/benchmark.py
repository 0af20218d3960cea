"""Inference benchmark (the seed's section 9 table): batch size x client concurrency.

  python -m serving.benchmark [--export_dir=DIR --model=deepfm] [--seconds=1.5]

Without --export_dir it exports a DeepFM of the seed's shape (embedding 9, MLP 400x3) over a
synthetic Criteo schema. For batch sizes 1, 16, 100, 128, 1024 and concurrency 1, 8, 32 it prints
requests/s, rows/s and p50/p99 latency for: the in-process SavedModel call (the floor), the local
gRPC server without and with dynamic batching, and REST. Servers run in their own processes;
requests are built before timing, so the figures are the serving path's.
Goals (2 cores): p99 <= 10 ms for a 100-row request at concurrency 1; gRPC <= 1.5x the
in-process time at batch 128; batching >= 3x the rows/s of unbatched at concurrency 32, batch 1.
The two ratios are judged on paired measurements after the table (see paired_ratios).

Mode `swap` times version swaps (measure_swaps): a server of its own polling its base path as the
real one does, new versions published by a rename into place (as exports and continuous
training's pushes do) or written in place file by file (as another tool's copy would), each timed
from the moment it is whole on disk to its first served answer, idle (one probe request every
20 ms) and under load (serving.load's clients in a process of their own); failed requests counted.
Goal: each swap within 5 s of the version's appearance, no failed request.
"""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from absl import app, flags
from tensorflow_serving.apis import prediction_service_pb2_grpc

from ctr_tf import config as cfg_lib
from ctr_tf import console
from ctr_tf import export as export_lib
from ctr_tf import models
from ctr_tf.data import convert, synthetic
from serving import client as client_lib
from serving.load import LoadProcess
from serving.ports import free_port



def define_flags():
    flags.DEFINE_string("export_dir", None, "An export directory (<export_dir>/<model>/<version>); default: make one.")
    flags.DEFINE_string("model", "deepfm", "Model name.")
    flags.DEFINE_list("batch_sizes", ["1", "16", "100", "128", "1024"], "Rows per request.")
    flags.DEFINE_list("concurrency", ["1", "8", "32"], "Client threads.")
    flags.DEFINE_list("modes", ["in_process", "grpc", "grpc_batching", "rest", "swap"], "What to measure.")
    flags.DEFINE_float("seconds", 1.5, "Measured seconds per cell.")
    flags.DEFINE_integer("goal_rounds", 7, "Rounds of paired windows behind each goal's ratio.")
    flags.DEFINE_float("goal_seconds", 0.5, "Seconds of each window of a pair.")
    flags.DEFINE_integer("swap_rounds", 3, "Swaps timed per condition (idle, under load) and way of publishing.")
    flags.DEFINE_integer("swap_load_threads", 4, "serving.load's client threads during the swaps under load "
                         "(0: idle swaps only).")
    flags.DEFINE_float("swap_poll_seconds", 1.0, "The swap server's --file_system_poll_wait_seconds (its default).")


FLAGS = flags.FLAGS


def make_export(work: str) -> tuple[str, str]:
    text = os.path.join(work, "s.tsv")
    synthetic.write(text, 20_000, seed=0)
    schema = convert.convert(convert.ConvertConfig(inputs=(text,), output_dir=os.path.join(work, "tfr"), progress=False))
    model = models.build(schema, cfg_lib.ModelConfig(name="deepfm", embedding_dim=9, hidden_units=(400, 400, 400)))
    export_lib.export(model, schema, os.path.join(work, "export"), "deepfm")
    return os.path.join(work, "export"), text


def measure(fn, concurrency: int, seconds: float):
    """Runs fn() from `concurrency` threads for `seconds`; returns (requests/s, latencies in ms)."""
    lat: list[float] = []
    errors = []
    stop = threading.Event()

    def worker():
        local = []
        while not stop.is_set():
            t = time.perf_counter()
            try:
                fn()
            except Exception as e:  # counted: a benchmark that hides failures lies
                errors.append(e)
                continue
            local.append((time.perf_counter() - t) * 1000)
        lat.extend(local)
    for _ in range(3):
        fn()  # warm-up
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    return len(lat) / elapsed, np.array(lat)


def measure_grpc(port: int, request, concurrency: int, seconds: float):
    """`concurrency` Predict calls kept in flight by coroutines on one grpc.aio channel: a load
    generator light enough (a fraction of a core) not to starve the server it shares 2 cores with,
    as 32 client threads would. Returns (requests/s, latencies in ms)."""
    async def run():
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(3):
                await stub.Predict(request, timeout=30)  # warm-up
            lat: list[float] = []
            failures: list[Exception] = []
            end = time.perf_counter() + seconds

            async def worker():
                while time.perf_counter() < end:
                    t = time.perf_counter()
                    try:
                        await stub.Predict(request, timeout=30)
                    except grpc.RpcError as e:  # counted: a benchmark that hides failures lies
                        failures.append(e)
                        continue
                    lat.append((time.perf_counter() - t) * 1000)
            start = time.perf_counter()
            await asyncio.gather(*[worker() for _ in range(concurrency)])
            elapsed = time.perf_counter() - start
        if failures:
            raise RuntimeError(f"{len(failures)} requests failed, first: {failures[0]}")
        return len(lat) / elapsed, np.array(lat)
    return asyncio.run(run())


def start_server(base, port, rest_port=0, batching=False, extra=()):
    args = [sys.executable, "-m", "serving.server", f"--model_name={FLAGS.model}", f"--model_base_path={base}",
            f"--port={port}", f"--rest_api_port={rest_port}", *extra]
    if batching:
        args += ["--enable_batching", f"--batching_parameters_file={os.path.join(os.path.dirname(base), 'batching_parameters.pbtxt')}"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client_lib.PredictClient(f"127.0.0.1:{port}", FLAGS.model).wait_until_available(120)
    return proc


def main(argv):
    del argv
    sys.setswitchinterval(0.0005)  # as the server does: fast handoffs between gRPC and caller threads
    console.quiet_python_logging()
    work = tempfile.mkdtemp(prefix="ctr_tf_serving_bench_")
    text = None
    export_dir = FLAGS.export_dir
    if export_dir is None:
        export_dir, text = make_export(work)
    base = os.path.join(export_dir, FLAGS.model)
    version = export_lib.latest_version_dir(export_dir, FLAGS.model)
    if text is None:
        text = os.path.join(work, "rows.tsv")
        synthetic.write(text, 2048, seed=1)
    sizes = [int(b) for b in FLAGS.batch_sizes]
    all_rows = next(client_lib.read_batches(text, max(sizes))).rows
    rows = {b: {k: v[:b] for k, v in all_rows.items()} for b in sizes}
    ports = {m: free_port() for m in ("grpc", "grpc_batching", "rest")}
    procs = []
    grpc_base = base
    if "swap" in FLAGS.modes:  # the swaps publish into a copy that the unbatched server serves
        grpc_base = os.path.join(work, "swap", FLAGS.model)
        shutil.copytree(version, os.path.join(grpc_base, os.path.basename(version)))
    if {"grpc", "rest", "swap"} & set(FLAGS.modes):
        procs.append(start_server(grpc_base, ports["grpc"], rest_port=ports["rest"],
                                  extra=[f"--file_system_poll_wait_seconds={FLAGS.swap_poll_seconds}"]))
    if "grpc_batching" in FLAGS.modes:
        procs.append(start_server(base, ports["grpc_batching"], batching=True))
    fn = tf.saved_model.load(version).signatures["serving_default"]
    results, swaps = [], []
    try:
        for mode in FLAGS.modes:
            if mode == "swap":
                continue  # after the table and the paired rounds, on the unbatched server
            for b in sizes:
                if mode == "in_process":
                    tensors = {k: tf.constant(v) for k, v in rows[b].items()}
                    call = lambda t=tensors: fn(**t)["probability"].numpy()  # noqa: E731
                elif mode in ("grpc", "grpc_batching"):
                    req = client_lib.PredictClient("127.0.0.1:1", FLAGS.model).request(rows[b])
                    call = None
                else:
                    body = json.dumps({"instances": [
                        {k: (None if isinstance(v[i], float) and np.isnan(v[i]) else
                             v[i].decode() if isinstance(v[i], bytes) else float(v[i])) for k, v in rows[b].items()}
                        for i in range(b)]}).encode()
                    url = f"http://127.0.0.1:{ports['rest']}/v1/models/{FLAGS.model}:predict"
                    call = lambda u=url, d=body: urllib.request.urlopen(urllib.request.Request(u, d), timeout=30).read()  # noqa: E731
                for c in [int(x) for x in FLAGS.concurrency]:
                    rps, lat = (measure(call, c, FLAGS.seconds) if call is not None
                                else measure_grpc(ports[mode], req, c, FLAGS.seconds))
                    results.append((mode, b, c, rps, rps * b, np.percentile(lat, 50), np.percentile(lat, 99)))
                    print(f"{mode:<14} batch {b:>5} conc {c:>3}: {rps:>9,.0f} req/s {rps * b:>11,.0f} rows/s "
                          f"p50 {results[-1][5]:7.2f} ms p99 {results[-1][6]:7.2f} ms", flush=True)
        served = {m: ports[m] for m in ("grpc", "grpc_batching") if m in FLAGS.modes}
        goal_rows = {b: next(client_lib.read_batches(text, b)).rows for b in (1, 128)}
        goal_requests = {b: client_lib.PredictClient("127.0.0.1:1", FLAGS.model).request(r) for b, r in goal_rows.items()}
        in_process = None
        if "in_process" in FLAGS.modes:
            tensors_128 = {k: tf.constant(v) for k, v in goal_rows[128].items()}
            in_process = lambda: fn(**tensors_128)["probability"].numpy()  # noqa: E731
        paired = paired_ratios(in_process, served, goal_requests, FLAGS.goal_rounds, FLAGS.goal_seconds)
        if "swap" in FLAGS.modes:
            swaps = measure_swaps(grpc_base, ports["grpc"], version, text, FLAGS.swap_rounds, FLAGS.swap_load_threads)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:  # stopped by its pid whatever happens
                p.kill()
                p.wait()
    print(f"\nDeepFM inference, {os.cpu_count()} CPUs; export {version}")
    print(f"{'mode':<14} {'batch':>5} {'conc':>4} {'req/s':>9} {'rows/s':>11} {'p50 ms':>8} {'p99 ms':>8}")
    for mode, b, c, rps, rowsps, p50, p99 in results:
        print(f"{mode:<14} {b:>5} {c:>4} {rps:>9,.0f} {rowsps:>11,.0f} {p50:>8.2f} {p99:>8.2f}")
    print_swaps(swaps)
    print_goals({(mode, b, c): (rps, p99) for mode, b, c, rps, _, _, p99 in results}, paired, swaps)


def paired_ratios(in_process_call, ports: dict, requests: dict, rounds: int, seconds: float) -> dict:
    """The two ratio goals, each measured as `rounds` back-to-back pairs of windows, both sides of
    a pair a second apart: this machine's speed drifts by tens of percent over the minutes between
    two cells of the table, which moved the table's 128-row ratio from 1.8x to 2.7x between runs
    of one commit.
    Returns goal -> [ratio of each round]."""
    ratios: dict[str, list[float]] = {}
    for _ in range(rounds):
        if in_process_call is not None and "grpc" in ports:
            floor, _ = measure(in_process_call, 1, seconds)
            served, _ = measure_grpc(ports["grpc"], requests[128], 1, seconds)
            ratios.setdefault("grpc_128", []).append(floor / served)
        if "grpc" in ports and "grpc_batching" in ports:
            unbatched, _ = measure_grpc(ports["grpc"], requests[1], 32, seconds)
            batched, _ = measure_grpc(ports["grpc_batching"], requests[1], 32, seconds)
            ratios.setdefault("batching_1x32", []).append(batched / unbatched)
    return ratios


def measure_swaps(base: str, port: int, version_dir: str, rows_file: str, rounds: int, load_threads: int) -> list:
    """Publishes `rounds` new versions (copies of version_dir) per condition and way into `base`,
    which the server at `port` serves; returns [(condition, way, seconds from whole on disk to
    first answer, failed requests)]. Renamed: copied under a hidden name, then renamed into place.
    In place: saved_model.pb first, then the rest file by file, so the server may see a partial
    version and must wait it out."""
    client = client_lib.PredictClient(f"127.0.0.1:{port}", FLAGS.model, retries=0)
    probe_request = client.request(next(client_lib.read_batches(rows_file, 1)).rows)
    out, number = [], max(int(d) for d in os.listdir(base) if d.isdigit())
    conditions = ["idle"] + ([f"load {load_threads}x50 rows"] if load_threads > 0 else [])
    for condition in conditions:
        load = LoadProcess(port, rows_file, FLAGS.model, threads=load_threads) if condition != "idle" else None
        try:
            if load:
                load.first_answer(number, 120)
            for way in ("renamed", "in place"):
                for _ in range(rounds):
                    number += 1
                    target = os.path.join(base, str(number))
                    if way == "renamed":
                        hidden = os.path.join(base, f".incoming-{number}")
                        shutil.copytree(version_dir, hidden)
                        os.rename(hidden, target)
                    else:
                        _copy_in_place(version_dir, target)
                    whole = time.monotonic()
                    errors_before = len(load.errors) if load else 0
                    if load:
                        first = load.first_answer(number, 120)
                        failed = len(load.errors) - errors_before
                    else:
                        first, failed = _probe_until(client, probe_request, number, 120)
                    out.append((condition, way, first - whole, failed))
                    print(f"swap {condition:<16} {way:<8} version {number:>3}: first answer "
                          f"{first - whole:6.2f} s after it was whole, {failed} failed", flush=True)
        finally:
            if load:
                load.stop()
    return out


def _copy_in_place(src: str, target: str):
    files = sorted((os.path.join(d, f) for d, _, names in os.walk(src) for f in names),
                   key=lambda p: os.path.basename(p) != "saved_model.pb")
    for f in files:
        dest = os.path.join(target, os.path.relpath(f, src))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(f, dest)


def _probe_until(client, request, version: int, timeout: float) -> tuple[float, int]:
    """One request every 20 ms until one comes back from `version`: (its time, failed requests)."""
    deadline, failed = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        try:
            if client.prediction.Predict(request, timeout=30).model_spec.version.value == version:
                return time.monotonic(), failed
        except grpc.RpcError:
            failed += 1
        time.sleep(0.02)
    raise TimeoutError(f"version {version} not served within {timeout} s")


def print_swaps(swaps: list):
    if not swaps:
        return
    print(f"\nVersion swaps (server polling every {FLAGS.swap_poll_seconds:g} s): seconds from a version "
          "whole on disk to its first served answer")
    print(f"{'condition':<18} {'published':<9} {'swaps':>5} {'median s':>9} {'max s':>7} {'failed':>7}")
    for key in dict.fromkeys((c, w) for c, w, _, _ in swaps):
        times = [t for c, w, t, _ in swaps if (c, w) == key]
        failed = sum(f for c, w, _, f in swaps if (c, w) == key)
        print(f"{key[0]:<18} {key[1]:<9} {len(times):>5} {np.median(times):>9.2f} {max(times):>7.2f} {failed:>7}")


def print_goals(cells: dict, paired: dict, swaps: list = ()):
    """The issue's goals: the p99 from the table; the ratios from paired windows (median over
    rounds, with the table's own ratio beside it); the swaps' worst time and failures. A goal
    whose cells were skipped is not shown."""
    goals = []
    if ("grpc", 100, 1) in cells:
        p99 = cells["grpc", 100, 1][1]
        goals.append((f"gRPC p99 at 100 rows, concurrency 1: {p99:.2f} ms", "<= 10 ms", p99 <= 10))

    # goal key, text, goal, test, (numerator cell, denominator cell) of the table's own ratio
    for key, text, goal, met, (num, den) in (
            ("grpc_128", "gRPC time / in-process time at 128 rows", "<= 1.5x", lambda r: r <= 1.5,
             (("in_process", 128, 1), ("grpc", 128, 1))),
            ("batching_1x32", "batching / unbatched req/s, 1 row, concurrency 32", ">= 3x", lambda r: r >= 3,
             (("grpc_batching", 1, 32), ("grpc", 1, 32)))):
        rounds = paired.get(key)
        if not rounds:
            continue
        median = float(np.median(rounds))
        table = f"; table {cells[num][0] / cells[den][0]:.2f}x" if num in cells and den in cells else ""
        goals.append((f"{text}: {median:.2f}x (rounds {min(rounds):.2f}-{max(rounds):.2f}{table})", goal, met(median)))
    if swaps:
        worst, failed = max(t for _, _, t, _ in swaps), sum(f for *_, f in swaps)
        goals.append((f"version swap, appearance to first answer: worst {worst:.2f} s, {failed} failed requests",
                      "<= 5 s, 0", worst <= 5 and failed == 0))
    if goals:
        print("\ngoals")
    for text, goal, met in goals:
        print(f"  {text:<78} goal {goal:<9} {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
