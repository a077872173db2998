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
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

from camtl.serving.engine import BatchStats, Prepared

log = logging.getLogger("camtl")


class QueueFull(Exception):
    """More requests are waiting than ``max_queue``."""


class WorkerStopped(Exception):
    """The worker thread is not running: the server is closing, or it died."""


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
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="camtl-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._pending

    @property
    def alive(self) -> bool:
        """Whether the worker thread runs and takes requests."""
        return self._thread.is_alive() and not self._closing

    def submit(self, request: Prepared) -> Future:
        """Queue one request; its future gets the request's predictions (or the exception
        that failed it)."""
        with self._lock:
            if not self.alive:
                raise WorkerStopped("the model worker is not running")
            if self._pending >= self.max_queue:
                raise QueueFull(f"{self._pending} requests are waiting (--max-queue)")
            self._pending += 1
        future: Future = Future()
        self._queue.put(_Job(request, future))
        return future

    def close(self) -> None:
        """Answer what is queued, then stop the worker."""
        with self._lock:
            self._closing = True
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
            self._answer_guarded(jobs)
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
            self._answer_guarded(leftover)

    def _answer_guarded(self, jobs: list[_Job]) -> None:
        try:
            self._answer(jobs)
        except Exception as exc:  # a bug of ours: fail these requests, keep the worker
            log.exception("answering a batch failed")
            for job in jobs:
                _settle(job.future, exc)

    def _answer(self, jobs: list[_Job]) -> None:
        """Run the jobs whose clients still wait and settle every future. Nothing that
        goes wrong here may end the worker: a request left unanswered waits forever, and
        so does every request after it."""
        with self._lock:  # these leave the waiting line: their model run starts
            self._pending -= len(jobs)
        # a future cancelled by its client (a timeout, a shutdown) is dropped; the others
        # turn RUNNING, after which a client's cancel can no longer race our set_result
        live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results, stats = self._run([job.request for job in live])
            if len(results) != len(live):
                raise RuntimeError(f"the model run answered {len(results)} of {len(live)} requests")
        except Exception as exc:  # the server answers 500 for these and keeps serving
            log.exception("model run failed")
            for job in live:
                _settle(job.future, exc)
            return
        for job, result in zip(live, results):
            _settle(job.future, result)
        if self._on_batch is not None:
            try:
                self._on_batch(stats)
            except Exception:  # metrics must not take the worker down
                log.exception("recording batch metrics failed")


def _settle(future: Future, result: Any) -> None:
    """Give ``future`` its result, or its exception when ``result`` is one."""
    try:
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
    except InvalidStateError:  # settled already; nobody waits for a second answer
        log.warning("a request's answer came after it was settled")
