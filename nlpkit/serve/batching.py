"""Dynamic batching across requests: one queue in front of the model, one model call at a time.

Requests put their inputs in the queue (:meth:`MicroBatcher.submit`) and wait for their own results. A worker
task takes the oldest waiting request, lets others join it until ``max_wait_ms`` has passed since that request
arrived or ``max_batch_tokens`` is reached, and runs the merged inputs as one call of the task's batched
``predict`` (which sorts them by length and pads each batch little) on the model thread. Each request then gets
its own rows back, in its own order. Requests merge only with requests of the same key (the same options:
``top_k``, decoding settings); a request whose key is None (a seeded sample) always runs alone.

There is one model thread: the model is in memory once and never runs two calls at the same time (a CPU
model would only fight itself for the cores). Warm-up and streamed generation run on the same thread through
:meth:`MicroBatcher.run`. A merged call that fails is retried request by request, so one bad request (an
unknown word, a bad option) fails alone and its batch mates still get their answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nlpkit.serve.metrics import ServeMetrics

__all__ = ["BatcherClosed", "MicroBatcher"]

logger = logging.getLogger("nlpkit.serve")


class BatcherClosed(RuntimeError):
    """The server is shutting down and takes no new work."""


@dataclass(eq=False)
class _Job:
    call: Callable[[list[Any]], Sequence[Any]]
    items: list[Any]
    tokens: int
    key: Hashable | None
    future: asyncio.Future
    request_id: str = ""
    #: Whether the job may run again alone when its merged call fails (not when it has sent part of its
    #: answer already, as a stream has).
    retry: bool = True
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """The queue and the worker that merges requests into model calls (see the module docstring)."""

    def __init__(self, *, max_batch_tokens: int, max_wait_ms: float, metrics: ServeMetrics | None = None,
                 initializer: Callable[[], None] | None = None):
        """``initializer`` runs first on the model thread (e.g. its torch thread count: an OpenMP setting is
        per thread, so setting it in another thread does not reach this one)."""
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlpkit-model", initializer=initializer)
        self._pending: deque[_Job] = deque()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._closing = False

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._wake = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="nlpkit-batcher")

    async def close(self) -> None:
        """Stop taking work, answer everything already queued, then stop the worker and the model thread."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._worker is not None:
            await self._worker
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)

    @property
    def queued(self) -> int:
        """Inputs waiting for the model."""
        return sum(len(j.items) for j in self._pending if not j.future.done())

    # ------------------------------------------------------------------ work
    async def submit(self, call: Callable[[list[Any]], Sequence[Any]], items: list[Any], *, tokens: int,
                     key: Hashable | None, request_id: str = "", retry: bool = True) -> list[Any]:
        """``call(items)``'s results, computed in one model call with other requests of the same ``key``
        (``call`` of the first of them is used for all: requests with one key must mean one computation).
        ``tokens`` estimates the size of ``items`` for the token budget. ``retry=False``: when the merged call
        fails, this request fails with it instead of running again alone (its call has effects, e.g. streams)."""
        if self._closing or self._wake is None:
            raise BatcherClosed("The server is shutting down.")
        job = _Job(call, list(items), max(1, tokens), key, asyncio.get_running_loop().create_future(), request_id,
                   retry)
        self._pending.append(job)
        self._gauge()
        self._wake.set()
        return await job.future

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the model thread, after the calls already running or handed to it."""
        if self._closing:
            raise BatcherClosed("The server is shutting down.")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self.queued)

    def _take(self) -> list[_Job]:
        """The oldest live job and the jobs that fit the token budget with it (in arrival order)."""
        while self._pending and self._pending[0].future.done():  # timed out or disconnected while queued
            self._pending.popleft()
        if not self._pending:
            return []
        first = self._pending.popleft()
        batch, tokens = [first], first.tokens
        if first.key is None:
            return batch
        keep: deque[_Job] = deque()
        while self._pending:
            job = self._pending.popleft()
            if job.future.done():
                continue
            if job.key == first.key and tokens + job.tokens <= self.max_batch_tokens:
                batch.append(job)
                tokens += job.tokens
            else:
                keep.append(job)
        self._pending = keep
        return batch

    def _ready(self) -> bool:
        """Whether the oldest job should go now: it has waited max_wait, the budget is full, or we drain."""
        live = [j for j in self._pending if not j.future.done()]
        if not live:
            return False
        if self._closing or live[0].key is None:
            return True
        if time.monotonic() - live[0].arrived >= self.max_wait:
            return True
        same = sum(j.tokens for j in live if j.key == live[0].key)
        return same >= self.max_batch_tokens

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            if not self._pending or not any(not j.future.done() for j in self._pending):
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._ready():
                # wait for more requests until the oldest has waited max_wait (or a new one fills the budget)
                oldest = next(j for j in self._pending if not j.future.done())
                left = self.max_wait - (time.monotonic() - oldest.arrived)
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=max(left, 0.0))
                except TimeoutError:
                    pass
                continue
            batch = self._take()
            self._gauge()
            if batch:
                await self._run(batch)

    async def _run(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        items = [x for job in batch for x in job.items]
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(items))
            self.metrics.batch_requests.observe(len(batch))
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, batch[0].call, items)
            logger.debug("model call: %d input(s) from %d request(s) in %.1f ms [%s]", len(items), len(batch),
                         (time.perf_counter() - started) * 1000, " ".join(j.request_id for j in batch))
            if len(results) != len(items):
                raise RuntimeError(f"The model call gave {len(results)} results for {len(items)} inputs.")
        except Exception as err:  # handed to the waiting requests, never lost
            if len(batch) > 1:
                for job in batch:  # one request's bad input must not fail its batch mates
                    if job.retry:
                        await self._run([job])
                    elif not job.future.done():
                        job.future.set_exception(err)
                return
            if not batch[0].future.done():
                batch[0].future.set_exception(err)
            return
        start = 0
        for job in batch:
            if not job.future.done():
                job.future.set_result(list(results[start:start + len(job.items)]))
            start += len(job.items)
