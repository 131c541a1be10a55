"""What an app calls to record responses and feedback: `CaptureClient`.

    client = CaptureClient("http://capture:8000", token=os.environ["CAPTURE_TOKEN"])
    client.record_response(id=answer_id, prompt=messages, completion=text, user_id=user)
    ...
    client.record_feedback(answer_id, thumb="down", edited_completion=fixed)   # later

Calls never block on the network and never raise into the app's request path: events go into
a bounded queue that a background thread sends in batches, retrying with backoff. While the
server is down (or the queue is full) events go to a local disk buffer, sent once the server is
back, also by the next process started with the same `buffer_dir`. `flush()` waits for what is
queued; `close()` (also at interpreter exit) flushes and stops. Each event carries an id, so a
retried batch is recorded once. `direct=` writes segments straight to a dump location (batch
jobs, notebooks) with the server's own writer, no server needed.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import random
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from kto_pipeline.capture.config import CaptureConfig
from kto_pipeline.capture.events import EventBatch
from kto_pipeline.capture.segments import SegmentWriter

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class CaptureClient:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        direct: str | None = None,
        buffer_dir: str | os.PathLike | None = None,
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        timeout: float = 10.0,
        max_backoff: float = 30.0,
        tries_before_buffering: int = 3,
        config: CaptureConfig | None = None,
    ):
        if (url is None) == (direct is None):
            raise ValueError("give the capture server's url, or direct= a dump location")
        self.url = url.rstrip("/") if url else None
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._writer = SegmentWriter(direct, config) if direct else None
        self._queue: queue.Queue[dict] = queue.Queue(maxsize=queue_size)
        self.batch_size, self.flush_interval = batch_size, flush_interval
        self.max_backoff, self.tries_before_buffering = max_backoff, tries_before_buffering
        self.buffer_dir = Path(buffer_dir or Path.home() / ".cache" / "kto-pipeline" / "capture-buffer")
        self.buffer_dir.mkdir(parents=True, exist_ok=True)
        self._buffer_lock = threading.Lock()
        self._buffer = self.buffer_dir / f"pending-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._http = httpx.Client(timeout=timeout) if self.url else None
        self._busy = threading.Event()  # a batch is in flight
        self._stop = threading.Event()
        self.stats = {"acknowledged": 0, "duplicates": 0, "buffered": 0, "rejected": 0}
        self._thread = threading.Thread(target=self._run, name="kto-capture-client", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # ------------------------------------------------------------------ the app's calls

    def record_response(
        self,
        id: str,
        prompt: str | list[dict],
        completion: str,
        *,
        model_version: str | None = None,
        user_id: str | None = None,
        conversation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        timestamp: datetime | str | None = None,
    ) -> str:
        """Queue a response shown to a user; returns its event id."""
        return self._put(
            {
                "type": "response",
                "id": id,
                "prompt": prompt,
                "completion": completion,
                "model_version": model_version,
                "user_id": user_id,
                "conversation_id": conversation_id,
                "metadata": metadata,
            },
            timestamp,
        )

    def record_feedback(
        self,
        response_id: str,
        thumb: str | bool | None = None,
        *,
        edited_completion: str | None = None,
        comment: str | None = None,
        timestamp: datetime | str | None = None,
    ) -> str:
        """Queue a thumb ("up"/"down", or True/False) and/or an edit of a recorded response."""
        if isinstance(thumb, bool):
            thumb = "up" if thumb else "down"
        return self._put(
            {
                "type": "feedback",
                "response_id": response_id,
                "thumb": thumb,
                "edited_completion": edited_completion,
                "comment": comment,
            },
            timestamp,
        )

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every queued and buffered event is acknowledged (or `timeout`); True if so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks or self._busy.is_set() or self._pending_files():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 10.0) -> None:
        if self._stop.is_set():
            return
        self.flush(timeout)
        self._stop.set()
        self._thread.join(timeout)
        if self._writer is not None:
            self._writer.close()
        if self._http is not None:
            self._http.close()
        atexit.unregister(self.close)

    # ------------------------------------------------------------------ internals

    def _put(self, event: dict, timestamp: datetime | str | None) -> str:
        event["event_id"] = event_id = uuid.uuid4().hex
        event["timestamp"] = timestamp.isoformat() if isinstance(timestamp, datetime) else (timestamp or _now())
        event = {k: v for k, v in event.items() if v is not None}
        try:
            self._queue.put_nowait(event)
        except queue.Full:  # never block the app: keep it on disk instead
            self._spill([event])
        return event_id

    def _spill(self, events: list[dict]) -> None:
        try:
            with self._buffer_lock, open(self._buffer, "a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events))
                fh.flush()
                os.fsync(fh.fileno())
            self.stats["buffered"] += len(events)
        except OSError as exc:  # not even the disk: say so loudly, never raise into the app
            log.error("capture: %d events lost, the buffer %s cannot be written: %s", len(events), self._buffer, exc)

    def _pending_files(self) -> list[Path]:
        return sorted(p for p in self.buffer_dir.glob("pending-*.jsonl") if p.stat().st_size)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._drain_buffer()
            batch = []
            try:
                batch.append(self._queue.get(timeout=self.flush_interval))
                while len(batch) < self.batch_size:
                    batch.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            if not batch:
                continue
            self._busy.set()
            try:
                if not self._send(batch, self.tries_before_buffering):
                    self._spill(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()
                self._busy.clear()

    def _drain_buffer(self) -> None:
        """Send buffered events (this process's and those an earlier process left)."""
        for path in self._pending_files():
            with self._buffer_lock:
                if path == self._buffer:  # new spills go to a fresh file while this one is sent
                    self._buffer = self.buffer_dir / f"pending-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
                try:
                    lines = path.read_text(encoding="utf-8").splitlines()
                except OSError:
                    continue
            events = [json.loads(line) for line in lines if line.strip().endswith("}")]
            self._busy.set()
            try:
                for start in range(0, len(events), self.batch_size):
                    if not self._send(events[start : start + self.batch_size], 1):
                        return  # still down: keep the file, try again next round
                path.unlink(missing_ok=True)
            finally:
                self._busy.clear()

    def _send(self, events: list[dict], tries: int) -> bool:
        """True once the events are recorded (or rejected as invalid); False to buffer them."""
        if self._writer is not None:
            received = datetime.now(UTC)
            batch = EventBatch.model_validate({"events": events})
            fresh = self._writer.append([e.record(received) for e in batch.events])
            self.stats["acknowledged"] += sum(fresh)
            self.stats["duplicates"] += len(fresh) - sum(fresh)
            return True
        delay = 0.1
        for attempt in range(tries):
            if self._stop.is_set() and attempt:
                return False
            try:
                reply = self._http.post(f"{self.url}/v1/events", json={"events": events}, headers=self._headers)
            except httpx.HTTPError:
                reply = None
            if reply is not None and reply.status_code == 200:
                body = reply.json()
                self.stats["acknowledged"] += body["accepted"]
                self.stats["duplicates"] += body["duplicates"]
                return True
            if reply is not None and reply.status_code in (413, 422) and len(events) > 1:
                half = len(events) // 2  # find the bad events; send the rest
                return self._send(events[:half], tries) and self._send(events[half:], tries)
            if reply is not None and reply.status_code in (400, 401, 403, 413, 422):
                self.stats["rejected"] += len(events)
                log.error("capture: %d events refused (%s): %s", len(events), reply.status_code, reply.text[:500])
                self._reject(events, reply.text)
                return True
            wait = float(reply.headers.get("Retry-After", delay)) if reply is not None else delay
            time.sleep(min(self.max_backoff, wait) * (0.5 + random.random()))
            delay = min(self.max_backoff, delay * 2)
        return False

    def _reject(self, events: list[dict], why: str) -> None:
        with open(self.buffer_dir / "rejected.jsonl", "a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps({"event": e, "why": why[:500]}) + "\n" for e in events))
