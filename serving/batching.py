"""Server-side dynamic batching: concurrent requests merged into one model call.

A batch closes when it holds max_batch_size rows or batch_timeout_micros passed since its first
request. A request larger than max_batch_size runs alone. run_batch([(payload, rows), ...])
returns one result per payload, from one model call; a result that is an Exception is raised to
that payload's caller alone. More than max_enqueued_batches batches' worth of rows waiting ->
UNAVAILABLE, as TF Serving answers.
"""
from __future__ import annotations

import asyncio
import collections

from serving import errors


class Batcher:
    """Dynamic batching on an asyncio event loop, running each batch on the loop itself.

    Handlers await submit(); the first request of a batch starts a batch_timeout_micros timer, and
    the batch runs when the timer fires or max_batch_size rows are waiting. The model call holds
    the loop (TensorFlow releases the GIL while it computes), and requests that arrive meanwhile
    make up the next batch. No thread handoff per request or per batch: on 2 cores this measured
    ~40% more requests/s than running batches on a batch thread (BENCHMARKS.md). The price: other
    calls to this server wait while a batch computes (a few ms).
    """

    def __init__(self, run_batch, max_batch_size=1024, batch_timeout_micros=2000, max_enqueued_batches=100,
                 num_batch_threads=1):
        del num_batch_threads  # TF Serving's knob; here one batch runs at a time, on the loop
        self.run_batch = run_batch
        self.max_batch_size = int(max_batch_size)
        self.timeout = batch_timeout_micros / 1e6
        self.max_pending = int(max_enqueued_batches) * self.max_batch_size
        self.items: collections.deque = collections.deque()
        self.rows = 0
        self.timer = None
        self.stats = {"batches": 0, "rows": 0, "largest": 0}  # what ran so far: rows per model call

    async def submit(self, payload, n: int):
        if self.rows + n > self.max_pending and n <= self.max_batch_size:
            raise errors.unavailable("the batch queue is full; retry later")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.items.append((payload, n, fut))
        self.rows += n
        if self.rows >= self.max_batch_size:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = loop.call_soon(self._flush)
        elif self.timer is None:
            self.timer = loop.call_later(self.timeout, self._flush)
        return await fut

    def _flush(self):
        self.timer = None
        batch, rows = [], 0
        while self.items and (not batch or rows + self.items[0][1] <= self.max_batch_size):
            item = self.items.popleft()
            batch.append(item)
            rows += item[1]
        self.rows -= rows
        if self.items:  # the rest forms the next batch, after what arrived meanwhile is queued
            self.timer = asyncio.get_running_loop().call_soon(self._flush)
        self.stats["batches"] += 1
        self.stats["rows"] += rows
        self.stats["largest"] = max(self.stats["largest"], rows)
        try:
            outs = self.run_batch([(payload, n) for payload, n, _ in batch])
        except Exception as e:
            outs = [e] * len(batch)
        for (_, _, fut), o in zip(batch, outs):
            if fut.done():  # cancelled: the client went away
                continue
            if isinstance(o, Exception):
                fut.set_exception(o)
            else:
                fut.set_result(o)
