"""Durable JSONL segments: appended with fsync, rotated by size and age, published complete.

A segment is written in a local staging folder (`<name>.jsonl.part`, locked while its writer
lives) and published into the dump location under `capture/<date>/` once it is closed: by a
rename when the location is a local folder (staging sits in its hidden `.capture-staging`, which
the pipeline never lists), by one object upload elsewhere (an S3 object appears whole). Names
carry the start time and the replica, so replicas and restarts never collide.

After a crash, a restarted writer publishes the segments nobody holds any more, cut at their
last whole line (a torn line was never acknowledged), and reloads the event ids published in
the last `dedup_window_hours`, so a client's retry of an event that was written before the
crash is not written again.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec

from kto_pipeline.capture.config import CaptureConfig

CAPTURE_FOLDER = "capture"
_PART = ".jsonl.part"


def default_replica() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass
class _Open:
    path: Path
    fd: int
    name: str  # the published name, relative to the dump location
    started: float
    size: int = 0


class SegmentWriter:
    """Appends events to the open segment; not thread-safe (one committer thread drives it)."""

    def __init__(self, location: str, config: CaptureConfig | None = None, storage_options: dict | None = None):
        self.config = config or CaptureConfig()
        self.location = location
        self.fs, self.root = fsspec.core.url_to_fs(location, **(storage_options or {}))
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        self.local = protocol in ("file", "local")
        if self.config.staging_dir:
            staging = Path(self.config.staging_dir)
        elif self.local:
            staging = Path(self.root) / ".capture-staging"
        else:
            staging = Path(tempfile.gettempdir()) / "kto-capture-staging"
        self.staging = staging
        self.staging.mkdir(parents=True, exist_ok=True)
        self.replica = self.config.replica or default_replica()
        self.seen: set[str] = set()
        self._seq = 0
        self._open: _Open | None = None
        self.published: list[str] = []
        self.recover()

    # ------------------------------------------------------------------ writing

    def append(self, records: list[dict]) -> list[bool]:
        """Write the records whose event id is new, durably (one fsync); True per record written."""
        fresh, lines = [], []
        for record in records:
            event_id = record["event_id"]
            new = event_id not in self.seen
            fresh.append(new)
            if new:
                self.seen.add(event_id)
                lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        if lines:
            seg = self._segment()
            data = "".join(lines).encode("utf-8")
            view = memoryview(data)
            while view:
                view = view[os.write(seg.fd, view) :]
            os.fsync(seg.fd)
            seg.size += len(data)
        self.rotate_if_due()
        return fresh

    def rotate_if_due(self) -> None:
        seg = self._open
        if seg is None:
            return
        if seg.size >= self.config.segment_max_bytes or time.time() - seg.started >= self.config.segment_max_seconds:
            self.close()

    def close(self) -> None:
        """Publish the open segment (if it holds anything)."""
        seg, self._open = self._open, None
        if seg is None:
            return
        os.fsync(seg.fd)
        self._publish(seg.path, seg.name)
        os.close(seg.fd)  # closing drops the lock; the part file is gone by now

    def _segment(self) -> _Open:
        if self._open is None:
            now = datetime.now(UTC)
            self._seq += 1
            name = f"{CAPTURE_FOLDER}/{now:%Y-%m-%d}/{now:%Y%m%dT%H%M%S%fZ}_{self.replica}_{self._seq:06d}.jsonl"
            path = self.staging / (name.replace("/", "__") + _PART)
            # Locked under a name recovery does not look at, then renamed: another worker's
            # recovery can never take (and publish) a segment between its creation and its lock.
            creating = path.with_name("." + path.name + ".creating")
            fd = os.open(creating, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(creating, path)
            self._open = _Open(path, fd, name, time.time())
        return self._open

    def _publish(self, part: Path, name: str) -> None:
        if part.stat().st_size == 0:
            part.unlink()
            return
        target = f"{self.root.rstrip('/')}/{name}"
        if self.local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            if part.parent.stat().st_dev == Path(target).parent.stat().st_dev:
                os.replace(part, target)  # atomic: the file appears whole
            else:  # staging on another disk: copy to a hidden name, then rename
                hidden = Path(target).with_name("." + Path(target).name + ".tmp")
                self.fs.put_file(str(part), str(hidden))
                os.replace(hidden, target)
                part.unlink()
        else:
            self.fs.put_file(str(part), target)  # one object upload: visible only once complete
            part.unlink()
        self.published.append(name)

    # ------------------------------------------------------------------ recovery

    def recover(self) -> None:
        """Publish orphaned segments (their writer died) and reload recent event ids."""
        for part in sorted(self.staging.glob("*" + _PART)):
            fd = os.open(part, os.O_RDWR)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer (another worker) holds it
                data = part.read_bytes()
                whole = data[: data.rfind(b"\n") + 1]  # a torn last line was never acknowledged
                os.ftruncate(fd, len(whole))
                os.fsync(fd)
                self._remember(whole)
                self._publish(part, part.name[: -len(_PART)].replace("__", "/"))
            finally:
                os.close(fd)
        self._reload_published()

    def _remember(self, data: bytes) -> None:
        for line in data.splitlines():
            try:
                self.seen.add(json.loads(line)["event_id"])
            except (ValueError, KeyError, TypeError):
                continue

    def _reload_published(self) -> None:
        since = datetime.now(UTC) - timedelta(hours=self.config.dedup_window_hours)
        folder = f"{self.root.rstrip('/')}/{CAPTURE_FOLDER}"
        if not self.fs.exists(folder):
            return
        for day in sorted(self.fs.ls(folder, detail=False)):
            if os.path.basename(day.rstrip("/")) < f"{since:%Y-%m-%d}":
                continue
            for path in sorted(self.fs.ls(day, detail=False)):
                base = os.path.basename(path)
                if base.startswith(".") or base[:16] < f"{since:%Y%m%dT%H%M%S}"[:16]:
                    continue
                with self.fs.open(path, "rb") as fh:
                    self._remember(fh.read())
