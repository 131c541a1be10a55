"""Group commit: every request waits for its events to be on disk, and concurrent requests
share one write and one fsync (the throughput of a log with fsync is the number of fsyncs a
second times the events each one covers)."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor

from kto_pipeline.capture.segments import SegmentWriter


class GroupCommitter:
    def __init__(self, writer: SegmentWriter):
        self.writer = writer
        self._queue: asyncio.Queue[tuple[list[dict], asyncio.Future]] = asyncio.Queue()
        # One thread owns the writer: appends, rotations and the final close never overlap.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="capture-commit")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, records: list[dict]) -> list[bool]:
        """True per record written now, False per duplicate; returns once they are durable."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((records, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                first = await asyncio.wait_for(self._queue.get(), timeout=1.0)
            except TimeoutError:
                await loop.run_in_executor(self._thread, self.writer.rotate_if_due)
                continue
            batch = [first]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            records = [r for recs, _ in batch for r in recs]
            try:
                fresh = await loop.run_in_executor(self._thread, self.writer.append, records)
            except Exception as exc:  # a full disk: every waiting request fails, none is acknowledged
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for recs, future in batch:
                if not future.done():
                    future.set_result(fresh[start : start + len(recs)])
                start += len(recs)

    async def stop(self) -> None:
        """Finish what is queued, then publish the open segment."""
        if self._task is not None:
            while not self._queue.empty():
                await asyncio.sleep(0.01)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.get_running_loop().run_in_executor(self._thread, self.writer.close)
        self._thread.shutdown(wait=True)
