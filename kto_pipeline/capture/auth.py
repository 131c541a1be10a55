"""Bearer tokens from the environment, and a token bucket per token.

Tokens are read from the deployment's capture tokens variable (`config.deployment.CAPTURE_TOKENS`:
`name:token` pairs, or bare tokens, comma-
separated) when the app starts, never from files; a request names itself by its token's name in
logs and limits, so a token never appears in either.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Mapping

from kto_pipeline.config.deployment import CAPTURE_TOKENS


def parse_tokens(raw: str | None) -> dict[str, str]:
    """token → name. Refuses an empty list: the service never runs open."""
    tokens: dict[str, str] = {}
    for n, item in enumerate(part.strip() for part in (raw or "").split(",")):
        if not item:
            continue
        name, sep, token = item.partition(":")
        if not sep:
            name, token = f"token-{n + 1}", item
        if len(token) < 16:
            raise ValueError(f"capture token {name!r} is shorter than 16 characters")
        tokens[token] = name
    if not tokens:
        raise ValueError(f"no capture tokens: set {CAPTURE_TOKENS} (name:token,...)")
    return tokens


def token_name(tokens: Mapping[str, str], given: str) -> str | None:
    """The name of the token `given`, compared in constant time, or None."""
    found = None
    for token, name in tokens.items():
        if hmac.compare_digest(token.encode(), given.encode("utf-8", "surrogateescape")):
            found = name
    return found


class RateLimiter:
    """A token bucket of events per token name (per server process)."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, name: str, events: int) -> float:
        """0 if `events` may pass now, else the seconds to wait before they would."""
        with self._lock:
            now = time.monotonic()
            level, last = self._buckets.get(name, (float(self.burst), now))
            level = min(float(self.burst), level + (now - last) * self.rate)
            if events > level:
                self._buckets[name] = (level, now)
                return (events - level) / self.rate
            self._buckets[name] = (level - events, now)
            return 0.0
