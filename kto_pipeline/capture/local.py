"""The capture service as a subprocess on a free loopback port, started exactly as
`kto-pipeline capture serve` starts it: for the simulator's users, the tests and the benchmark."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from kto_pipeline.config.deployment import CAPTURE_TOKENS, settings_env

CLI = Path(sys.executable).with_name("kto-pipeline")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CaptureServer:
    def __init__(
        self,
        dumps: Path,
        token: str,
        port: int | None = None,
        capture: dict | None = None,
        workers: int = 1,
    ):
        self.dumps, self.token, self.port = dumps, token, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, CAPTURE_TOKENS: f"local:{token}", **settings_env(capture=capture or {})}
        self.proc = subprocess.Popen(
            [str(CLI), "capture", "serve", "--dumps", str(dumps), "--port", str(self.port), "--workers", str(workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"capture server did not start: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """A graceful stop: the open segment is published."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)

    def kill(self) -> None:
        """kill -9: nothing is flushed or published."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
