"""Server-side dynamic batching: concurrent requests merged into one model call.

A batch closes when it holds max_batch_size rows or batch_timeout_micros passed since its first
request; num_batch_threads batches run at once. A request larger than max_batch_size runs alone.
run_batch([(payload, rows), ...]) returns one result per payload, from one model call.
More than max_enqueued_batches batches waiting -> UNAVAILABLE, as TF Serving answers.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

from serving import errors


class Batcher:
    def __init__(self, run_batch, max_batch_size=1024, batch_timeout_micros=2000, num_batch_threads=4,
                 max_enqueued_batches=100):
        self.run_batch = run_batch
        self.max_batch_size = int(max_batch_size)
        self.timeout = batch_timeout_micros / 1e6
        self.max_pending = int(max_enqueued_batches) * self.max_batch_size
        self.queue: queue.Queue = queue.Queue()
        self.pending_rows = 0
        self.lock = threading.Lock()
        self.closed = False
        self.threads = [threading.Thread(target=self._loop, daemon=True, name=f"batch-{i}")
                        for i in range(int(num_batch_threads))]
        for t in self.threads:
            t.start()

    def submit(self, payload, n: int) -> dict:
        if n > self.max_batch_size:
            return self.run_batch([(payload, n)])[0]
        with self.lock:
            if self.pending_rows + n > self.max_pending:
                raise errors.unavailable("the batch queue is full; retry later")
            self.pending_rows += n
        fut: Future = Future()
        self.queue.put((payload, n, fut))
        return fut.result()

    def _loop(self):
        while not self.closed:
            try:
                first = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if first is None:
                return
            items, rows = [first], first[1]
            deadline = time.perf_counter() + self.timeout
            while rows < self.max_batch_size:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    item = self.queue.get(timeout=left)
                except queue.Empty:
                    break
                if item is None:
                    self.queue.put(None)
                    break
                if rows + item[1] > self.max_batch_size:
                    self.queue.put(item)  # goes into the next batch
                    break
                items.append(item)
                rows += item[1]
            with self.lock:
                self.pending_rows -= rows
            self._run(items)

    def _run(self, items):
        try:
            outs = self.run_batch([(payload, n) for payload, n, _ in items])
            for (_, _, fut), o in zip(items, outs):
                fut.set_result(o)
        except Exception as e:
            for _, _, fut in items:
                if not fut.done():
                    fut.set_exception(e)

    def close(self):
        self.closed = True
        for _ in self.threads:
            self.queue.put(None)
