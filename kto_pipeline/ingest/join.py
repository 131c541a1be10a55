"""The cross-file join: ratings matched to the responses they name, wherever each was dumped.

Every response and every rating read from any dump under the location meets here, so a
thumb that lands in a later dump than its response (feedback often comes days later) still
finds it. The rules, one for every export format:

- a rating joins the response whose key it names, if that response is at most `lookback`
  older than the rating; otherwise it is an orphan (quarantined: orphan_feedback);
- a response nobody rated is unrated: counted, never trained on;
- of several thumbs on one response the latest wins (by the rating's time, then by dump name
  and line), and likewise of several edits; the others are superseded;
- the joined record's time is the latest rating it uses, so the label's week is the week the
  feedback was given, not the week the response was shown;
- a response or a rating whose id was already read is a duplicate (the first read is kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from kto_pipeline.ingest.parts import Rating, Response


@dataclass(frozen=True)
class Origin:
    """Where a record was read, and which adapter read it."""

    dump: str
    line: int
    format: str

    def __str__(self) -> str:
        return f"{self.dump}:{self.line}"


@dataclass
class HeldRating:
    rating: Rating
    origin: Origin
    timestamp: pd.Timestamp | None  # the rating's parsed time
    raw: str = ""  # a preview of the exported record, for the quarantine
    inline: bool = False  # exported inside its response's record (not a record of its own)

    def sort_key(self, fallback: pd.Timestamp | None) -> tuple:
        when = self.timestamp if self.timestamp is not None else fallback
        return (when if when is not None else pd.Timestamp.min.tz_localize("UTC"), self.origin.dump, self.origin.line)


@dataclass
class HeldResponse:
    response: Response
    origin: Origin
    timestamp: pd.Timestamp | None  # the response's parsed time, None if it has none readable
    raw: str = ""
    inline: list[HeldRating] = field(default_factory=list)


@dataclass
class Joined:
    """A rated response: the ratings it uses (at most one thumb, one edit) and those superseded."""

    held: HeldResponse
    used: list[HeldRating]
    superseded: list[HeldRating]

    @property
    def label(self) -> bool | None:
        return next((r.rating.label for r in self.used if r.rating.label is not None), None)

    @property
    def edit(self):
        return next((r.rating.edit for r in self.used if r.rating.edit is not None), None)

    @property
    def timestamp(self) -> pd.Timestamp | None:
        times = [r.timestamp for r in self.used if r.timestamp is not None]
        return max(times) if times else self.held.timestamp


@dataclass
class Orphan:
    rating: HeldRating
    detail: str


@dataclass
class Duplicate:
    origin: Origin
    timestamp: pd.Timestamp | None
    raw: str
    record_id: str
    first: Origin
    role: str  # "response" or "rating"


@dataclass
class JoinResult:
    joined: list[Joined] = field(default_factory=list)
    unrated: list[HeldResponse] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)


def join(responses: list[HeldResponse], ratings: list[HeldRating], lookback: pd.Timedelta) -> JoinResult:
    """Match `ratings` to `responses` (both in the order they were read)."""
    out = JoinResult()
    by_key: dict[str, HeldResponse] = {}
    attached: dict[int, list[HeldRating]] = {}
    kept: list[HeldResponse] = []
    for held in responses:
        first = next((by_key[k] for k in held.response.keys if k in by_key), None)
        if first is not None:
            out.duplicates.append(
                Duplicate(held.origin, held.timestamp, held.raw, str(held.response.record.id), first.origin, "response")
            )
            continue
        for key in held.response.keys:
            by_key[key] = held
        attached[id(held)] = list(held.inline)
        kept.append(held)

    rating_ids: dict[str, Origin] = {}
    for held_rating in ratings:
        rid = held_rating.rating.id
        if rid is not None and rid in rating_ids:
            out.duplicates.append(
                Duplicate(held_rating.origin, held_rating.timestamp, held_rating.raw, rid, rating_ids[rid], "rating")
            )
            continue
        if rid is not None:
            rating_ids[rid] = held_rating.origin
        targets = held_rating.rating.targets
        target = next((by_key[k] for k in targets if k in by_key), None)
        ident = " or ".join(k.split(":")[-1] for k in targets) or "(none)"
        if target is None:
            out.orphans.append(Orphan(held_rating, f"no response with id {ident} in any dump"))
            continue
        if (
            target.timestamp is not None
            and held_rating.timestamp is not None
            and held_rating.timestamp - target.timestamp > lookback
        ):
            days = (held_rating.timestamp - target.timestamp) / pd.Timedelta(days=1)
            out.orphans.append(
                Orphan(
                    held_rating,
                    f"response {target.response.record.id} ({target.origin}) is {days:.1f} days older than the feedback; "
                    f"the look-back is {lookback.days} days",
                )
            )
            continue
        attached[id(target)].append(held_rating)

    for held in kept:
        given = attached[id(held)]
        if not given:
            out.unrated.append(held)
            continue
        ordered = sorted(given, key=lambda r: r.sort_key(held.timestamp))
        thumb = next((r for r in reversed(ordered) if r.rating.label is not None), None)
        edit = next((r for r in reversed(ordered) if r.rating.edit is not None), None)
        used = [r for r in ordered if r is thumb or r is edit]
        out.joined.append(Joined(held, used, [r for r in ordered if r is not thumb and r is not edit]))
    return out
