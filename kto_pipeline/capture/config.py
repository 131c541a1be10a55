"""The capture service's settings: request limits and how segments are written."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CaptureConfig:
    """Limits and segment settings of one capture server process."""

    max_body_bytes: int = field(default=1_048_576, metadata={"help": "Larger request bodies are refused (413)"})
    max_batch_events: int = field(default=1_000, metadata={"help": "Most events one batch request may carry"})
    max_text_chars: int = field(default=100_000, metadata={"help": "Longest prompt, completion or edit accepted"})
    rate_events_per_s: float = field(
        default=2_000.0, metadata={"help": "Events per second each token may send, sustained (429 beyond)"}
    )
    rate_burst_events: int = field(default=20_000, metadata={"help": "Events a token may send at once"})
    segment_max_bytes: int = field(default=64 * 2**20, metadata={"help": "A segment is published at this size"})
    segment_max_seconds: float = field(default=300.0, metadata={"help": "... or when it is this old"})
    staging_dir: str | None = field(
        default=None,
        metadata={
            "help": "Local folder for open segments; default: .capture-staging in a local dump location "
            "(hidden from the pipeline), else the system temp folder"
        },
    )
    dedup_window_hours: float = field(
        default=24.0,
        metadata={
            "help": "A restarted server reloads the event ids it published this recently, so a client's retry "
            "after a crash is not written twice"
        },
    )
    replica: str | None = field(
        default=None, metadata={"help": "Name in this process's segment names; default host-pid-random"}
    )

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_batch_events", "max_text_chars", "segment_max_bytes", "rate_burst_events"):
            if getattr(self, name) < 1:
                raise ValueError(f"capture {name} must be at least 1")
        if self.rate_burst_events < self.max_batch_events:
            raise ValueError("capture rate_burst_events must be at least max_batch_events (a full batch must pass)")
        if self.rate_events_per_s <= 0 or self.segment_max_seconds <= 0:
            raise ValueError("capture rate_events_per_s and segment_max_seconds must be positive")
