"""The dump sensor: new or changed dumps → one curate run per closed week they touch.
Cursor: the version (ETag, or mtime and size) of every dump already planned, and the weeks
of those dumps that were still open, deferred until they close. Run keys carry the dump
versions, so a changed dump gets a new run and a replayed tick gets none.
"""

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import dagster as dg

from assets.jobs import curate_job
from assets.partitions import CALENDAR, feedback_weeks
from kto_pipeline.ingest.dumps import DumpFile, DumpReadError
from resources.feedback_source import FeedbackSource

_MAX_TAG_CHARS = 200


@dataclass
class DumpPlan:
    runs: dict[str, list[str]] = field(default_factory=dict)  # week → ["name@version", ...]
    cursor: dict = field(default_factory=dict)
    deferred: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)  # dump → error; retried next tick


def plan_dump_runs(
    dumps: Iterable[DumpFile],
    weeks_of: Callable[[DumpFile], set[str]],
    cursor: dict,
    last_closed_week: str | None,
) -> DumpPlan:
    """Which closed weeks to (re)curate for the dumps now at the location.

    A dump read before at the same version is not read again; its weeks that were open then
    are requested once they close. A dump that disappeared is forgotten; one that cannot be
    read (still uploading, corrupt) stays out of the cursor, so the next tick tries again.
    """
    old_versions: dict[str, str] = cursor.get("versions", {})
    old_deferred: dict[str, dict] = cursor.get("deferred", {})
    versions: dict[str, str] = {}
    deferred: dict[str, dict] = {}
    runs: dict[str, list[str]] = {}
    unreadable: dict[str, str] = {}

    for dump in dumps:
        if old_versions.get(dump.name) == dump.version:
            weeks = set(old_deferred.get(dump.name, {}).get("weeks", []))
        else:
            try:
                weeks = weeks_of(dump)
            except DumpReadError as exc:
                unreadable[dump.name] = str(exc)
                continue
        versions[dump.name] = dump.version
        closed = {w for w in weeks if last_closed_week is not None and w <= last_closed_week}
        still_open = sorted(weeks - closed)
        if still_open:
            deferred[dump.name] = {"version": dump.version, "weeks": still_open}
        for week in closed:
            runs.setdefault(week, []).append(f"{dump.name}@{dump.version}")

    return DumpPlan(
        runs={w: sorted(v) for w, v in sorted(runs.items())},
        cursor={"versions": versions, "deferred": deferred},
        deferred=sum(len(d["weeks"]) for d in deferred.values()),
        unreadable=unreadable,
    )


_MAX_RUN_KEY_CHARS = 250


def _weeks_of(feedback_source: FeedbackSource, dumps: list[DumpFile]) -> Callable[[DumpFile], set[str]]:
    """The weeks a dump's records land in, with every dump read once (on the first new or
    changed dump of the tick) so that ratings and the responses they name are joined."""
    cache: dict[str, dict] = {}

    def weeks_of(dump: DumpFile) -> set[str]:
        if not cache:
            cache["weeks"], cache["unreadable"] = feedback_source.weeks_by_dump(CALENDAR, dumps)
        if dump.name in cache["unreadable"]:
            raise DumpReadError(cache["unreadable"][dump.name])
        return cache["weeks"].get(dump.name, set())

    return weeks_of


def run_key(week: str, dump_versions: list[str]) -> str:
    """`week:name@version,...`, readable in the UI; a digest of it when many dumps share a week."""
    key = f"{week}:" + ",".join(sorted(dump_versions))
    if len(key) <= _MAX_RUN_KEY_CHARS:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{week}:{len(dump_versions)} dumps:{digest}"


@dg.sensor(
    job=curate_job,
    minimum_interval_seconds=60,
    description="Watches the feedback dump location; curates each closed week a new or changed dump touches.",
)
def feedback_dump_sensor(context: dg.SensorEvaluationContext, feedback_source: FeedbackSource):
    cursor = json.loads(context.cursor) if context.cursor else {}
    try:
        dumps = feedback_source.list_dumps()
    except DumpReadError as exc:
        return dg.SkipReason(str(exc))
    plan = plan_dump_runs(
        dumps,
        _weeks_of(feedback_source, dumps),
        cursor,
        feedback_weeks.get_last_partition_key(),
    )
    for name, error in plan.unreadable.items():
        context.log.warning(f"skipping {name} this tick: {error}")
    requests = []
    for week, dump_versions in plan.runs.items():
        names = ", ".join(dump_versions)
        requests.append(
            dg.RunRequest(
                run_key=run_key(week, dump_versions),
                partition_key=week,
                tags={
                    "kto_pipeline/trigger": "dump",
                    "kto_pipeline/dumps": names if len(names) <= _MAX_TAG_CHARS else names[: _MAX_TAG_CHARS - 1] + "…",
                },
            )
        )
    if not requests:
        reason = (
            f"no new or changed dumps; {plan.deferred} open week(s) deferred"
            if plan.deferred
            else "no new or changed dumps"
        )
        return dg.SensorResult(skip_reason=reason, cursor=json.dumps(plan.cursor, sort_keys=True))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(plan.cursor, sort_keys=True))
