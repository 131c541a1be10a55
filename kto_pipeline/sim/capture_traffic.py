"""A simulated week's traffic sent the way a real app sends it: through the capture service.

The main job starts the capture service on a free loopback port (`kto-pipeline capture serve`,
a real uvicorn process), the app records every answer it shows, and the oracle user's thumb or
edit follows as a feedback event on that answer; the service writes the segments the pipeline
then reads, and the ingest join pairs each feedback event with its response. So README command
1 runs the whole loop: app → capture → dumps → weekly KTO → champion.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kto_pipeline.capture.client import CaptureClient
from kto_pipeline.capture.local import CaptureServer


def send_week_through_capture(records: Sequence[dict[str, Any]], dumps: str | os.PathLike) -> dict[str, int]:
    """Record `records` (simulate_week's, in the contract's shape) through a capture service
    writing into `dumps`; returns the client's counts. The service stops when the week is sent,
    which publishes its segment."""
    token = secrets.token_hex(16)
    server = CaptureServer(Path(dumps), token)
    try:
        with tempfile.TemporaryDirectory(prefix="kto-capture-buffer-") as buffer:
            client = CaptureClient(server.url, token, buffer_dir=buffer, batch_size=1000)
            for r in records:
                client.record_response(
                    r["id"],
                    r["prompt"],
                    r["completion"],
                    model_version=r.get("model_version"),
                    user_id=r.get("user_id"),
                    conversation_id=r.get("conversation_id"),
                    metadata=r.get("metadata"),
                    timestamp=r["timestamp"],
                )
                client.record_feedback(
                    r["id"],
                    "up" if r["label"] else "down",
                    edited_completion=r.get("edited_completion"),
                    timestamp=r["timestamp"],
                )
            if not client.flush(300):
                raise RuntimeError("the capture service did not acknowledge the week's events within 5 minutes")
            client.close()
    finally:
        server.stop()
    expected = 2 * len(records)
    if client.stats["acknowledged"] != expected or client.stats["rejected"]:
        raise RuntimeError(f"capture acknowledged {client.stats} of {expected} events")
    return dict(client.stats)
