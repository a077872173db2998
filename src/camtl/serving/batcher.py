"""Dynamic batching: requests of any tasks gathered into one model run, off the event loop.

A single worker thread owns the model. It waits for the first request, then gathers more
until ``max_wait_ms`` has passed since that first one or the queued tokens reach the budget,
and runs them together (``InferenceEngine.run``, which sorts by length and splits into
passes of at most ``max_batch_tokens``). One thread: PyTorch already uses every core for
one batch, and a second batch in parallel would only slow both.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from camtl.serving.engine import BatchStats, Prepared

log = logging.getLogger("camtl")


class QueueFull(Exception):
    """More requests are waiting than ``max_queue``."""


@dataclass
class _Job:
    request: Prepared
    future: Future


class DynamicBatcher:
    def __init__(
        self,
        run: Callable[[list[Prepared]], tuple[list[Any], BatchStats]],
        max_batch_tokens: int,
        max_wait_ms: float,
        max_queue: int,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self._run = run
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._pending = 0  # submitted and not yet in a model run (queued or being gathered)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="camtl-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._pending

    def submit(self, request: Prepared) -> Future:
        """Queue one request; its future gets the request's predictions."""
        with self._lock:
            if self._pending >= self.max_queue:
                raise QueueFull(f"{self._pending} requests are waiting (--max-queue)")
            self._pending += 1
        future: Future = Future()
        self._queue.put(_Job(request, future))
        return future

    def close(self) -> None:
        """Answer what is queued, then stop the worker."""
        self._queue.put(None)
        self._thread.join()

    def _take(self, timeout: float | None) -> _Job | None:
        return self._queue.get(timeout=timeout)

    def _loop(self) -> None:
        while True:
            first = self._take(None)
            if first is None:
                return
            jobs, tokens = [first], first.request.tokens
            deadline = time.monotonic() + self.max_wait
            stop = False
            while tokens < self.max_batch_tokens:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    job = self._take(remaining)
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
                tokens += job.request.tokens
            self._answer(jobs)
            if stop:
                self._drain()
                return

    def _drain(self) -> None:
        """After close: answer whatever arrived behind the stop signal."""
        leftover = []
        while True:
            try:
                job = self._take(0)
            except queue.Empty:
                break
            if job is not None:
                leftover.append(job)
        if leftover:
            self._answer(leftover)

    def _answer(self, jobs: list[_Job]) -> None:
        with self._lock:  # these leave the waiting line: their model run starts
            self._pending -= len(jobs)
        try:
            results, stats = self._run([job.request for job in jobs])
        except Exception as exc:  # the server answers 500 for these and keeps serving
            log.exception("model run failed")
            for job in jobs:
                job.future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(stats)
        for job, result in zip(jobs, results):
            job.future.set_result(result)
