"""The dump sensor ticked by Dagster's own sensor daemon code, end to end.

tests/test_sensor.py calls the sensor function directly; here the ticks go through
`dagster._daemon.sensor.execute_sensor_iteration` (what `dagster-daemon` / `dagster dev` runs every
few seconds) against the project's real code location (definitions.py, loaded in a gRPC code
server as the daemon does) on a temporary SQLite instance. The property under test: the sensor
never makes two runs for the same dump version. Our cursor avoids asking twice; the run key
(`week:name@version,...`) makes Dagster drop a request it already has a run for, even when the
cursor is lost or reset, or a tick dies half way.

Runs are created and submitted but never executed: the instance uses Dagster's default
(queued) run coordinator and no run-queue daemon runs here, and its run launcher is Dagster's
test MockedRunLauncher (as Dagster's own daemon sensor tests configure it), which records and
does nothing.
"""

import json
import logging
import os
import time
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.remote_representation.external import RemoteSensor
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.storage.tags import PARTITION_NAME_TAG, RUN_KEY_TAG, SENSOR_NAME_TAG
from dagster._core.test_utils import (
    BlockingThreadPoolExecutor,
    create_test_daemon_workspace_context,
    freeze_time,
    instance_for_test,
    load_remote_repo,
    wait_for_futures,
)
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.sensor import execute_sensor_iteration
from dagster_graphql.test.utils import execute_dagster_graphql

from assets.partitions import CALENDAR
from kto_pipeline.ingest.dumps import list_dumps

PROJECT = Path(__file__).resolve().parent.parent
SENSOR = "feedback_dump_sensor"
LOCATION = "kto_pipeline"
REPOSITORY = "__repository__"  # the repository a Definitions object becomes
LOGGER = logging.getLogger("dagster.daemon.SensorDaemon")

# What the UI's "Edit cursor" dialog sends (from dagster-webserver's EditCursorDialog.tsx).
SET_CURSOR = """
mutation SetSensorCursorMutation($sensorSelector: SensorSelector!, $cursor: String) {
  setSensorCursor(sensorSelector: $sensorSelector, cursor: $cursor) {
    __typename
    ... on PythonError { message }
  }
}
"""


# -- the deployment: an instance, a dump folder, the code location in a code server ----------


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("sensor_daemon")
    dumps, home = root / "dumps", root / "home"
    dumps.mkdir()
    home.mkdir()
    with pytest.MonkeyPatch.context() as env:
        # Read by definitions.py when the code server imports it (it inherits this environment).
        env.setenv("KTO_PIPELINE_DUMPS", str(dumps))
        env.setenv("KTO_PIPELINE_STORAGE", str(root / "warehouse"))
        env.setenv("KTO_PIPELINE_MODELS", str(root / "models"))
        overrides = {"run_launcher": {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}}
        with instance_for_test(overrides=overrides, temp_dir=str(home)) as instance:
            target = ModuleTarget(
                module_name="definitions", attribute=None, working_directory=str(PROJECT), location_name=LOCATION
            )
            with create_test_daemon_workspace_context(target, instance) as workspace:
                sensor = load_remote_repo(workspace, REPOSITORY).get_sensor(SENSOR)
                yield instance, workspace, sensor, dumps


class Daemon:
    """One started sensor on a wiped instance, ticked by the daemon code at a frozen clock."""

    def __init__(
        self, instance: DagsterInstance, workspace: WorkspaceProcessContext, sensor: RemoteSensor, dumps: Path
    ):
        self.instance, self.workspace, self.sensor, self.dumps = instance, workspace, sensor, dumps
        self.now = time.time()

    def tick(self, crash: dict | None = None, expect_error: bool = False):
        """One daemon iteration, past the sensor's minimum interval; returns the tick it made."""
        self.now += self.sensor.min_interval_seconds + 1
        with freeze_time(self.now):
            errors = [
                e for e in execute_sensor_iteration(self.workspace, LOGGER, None, None, debug_crash_flags=crash) if e
            ]
        assert bool(errors) == expect_error, [e.to_string() for e in errors]
        return self.ticks()[0]

    def ticks(self):
        return self.instance.get_ticks(self.sensor.get_remote_origin_id(), self.sensor.selector_id)

    def runs(self):
        oldest_first = reversed(self.instance.get_runs())
        return sorted(oldest_first, key=lambda r: (r.tags[PARTITION_NAME_TAG], r.tags.get(RUN_KEY_TAG, "")))

    def cursor(self) -> str | None:
        state = self.instance.get_instigator_state(self.sensor.get_remote_origin_id(), self.sensor.selector_id)
        return state.instigator_data.cursor

    def set_cursor(self, cursor: str | None) -> None:
        """Through the webserver's GraphQL mutation, as the UI (or `dagster sensor cursor`) does."""
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": SENSOR}
        result = execute_dagster_graphql(
            self.workspace.create_request_context(), SET_CURSOR, {"sensorSelector": selector, "cursor": cursor}
        )
        assert result.data["setSensorCursor"]["__typename"] == "Sensor", result.data
        assert self.cursor() == cursor

    def version(self, name: str) -> str:
        return {d.name: d.version for d in list_dumps(str(self.dumps))}[name]


@pytest.fixture
def daemon(deployment):
    instance, workspace, sensor, dumps = deployment
    instance.wipe()
    instance.wipe_all_schedules()  # sensor states (cursors) and ticks
    for path in dumps.iterdir():
        path.unlink()
    instance.start_sensor(sensor)
    return Daemon(instance, workspace, sensor, dumps)


# -- dumps --------------------------------------------------------------------------------------


def _week_ago(n: int) -> str:
    now_week = CALENDAR.week_of(pd.Timestamp.now(tz="UTC"))
    return (pd.Timestamp(now_week) - pd.Timedelta(weeks=n)).date().isoformat()


def _write(path: Path, weeks: list[str], n: int, tag: str, day: int = 2) -> None:
    """`n` records in each week, `day` days after its Monday; in the open week, at the current time
    (later ones would be quarantined as future timestamps, not placed in that week)."""
    now = datetime.now(UTC)
    lines = []
    for week in weeks:
        start = datetime.fromisoformat(week).replace(tzinfo=UTC)
        at = start + timedelta(days=day) if start + timedelta(days=7) <= now else now
        lines += [
            json.dumps(
                {
                    "timestamp": (at - timedelta(seconds=i)).isoformat(),
                    "prompt": f"{tag} {week} q{i}",
                    "completion": f"a{i}",
                    "label": i % 2 == 0,
                }
            )
            for i in range(n)
        ]
    path.write_text("\n".join(lines) + "\n")


def _assert_submitted(runs) -> None:
    """Made by this sensor for curate_job, and handed to the run coordinator (queued), once."""
    for run in runs:
        assert run.job_name == "curate_job"
        assert run.tags[SENSOR_NAME_TAG] == SENSOR
        assert run.status == DagsterRunStatus.QUEUED, run.status


# -- the cases ------------------------------------------------------------------------------------


def test_a_new_dump_makes_one_run_per_closed_week_and_a_quiet_tick_makes_none(daemon):
    before, last, open_week = _week_ago(2), _week_ago(1), _week_ago(0)
    _write(daemon.dumps / "dump.jsonl", [before, last, open_week], 2, "d")
    version = daemon.version("dump.jsonl")

    tick = daemon.tick()
    runs = daemon.runs()
    assert tick.status == TickStatus.SUCCESS
    assert [r.tags[PARTITION_NAME_TAG] for r in runs] == [before, last]  # the open week waits
    assert [r.tags[RUN_KEY_TAG] for r in runs] == [f"{before}:dump.jsonl@{version}", f"{last}:dump.jsonl@{version}"]
    assert sorted(tick.run_ids) == sorted(r.run_id for r in runs)
    _assert_submitted(runs)
    assert json.loads(daemon.cursor())["deferred"]["dump.jsonl"]["weeks"] == [open_week]

    quiet = daemon.tick()
    assert quiet.status == TickStatus.SKIPPED and quiet.tick_id != tick.tick_id
    assert "no new or changed dumps; 1 open week(s) deferred" in quiet.skip_reason
    assert [r.run_id for r in daemon.runs()] == [r.run_id for r in runs]


@pytest.mark.parametrize("reset_to", ["", None], ids=["ui_cleared", "deleted"])
def test_a_reset_cursor_replays_the_same_run_keys_and_the_daemon_skips_them(daemon, reset_to):
    _write(daemon.dumps / "a.jsonl", [_week_ago(3)], 2, "a")
    first = daemon.tick()
    runs = daemon.runs()
    assert len(runs) == 1
    cursor = daemon.cursor()

    daemon.set_cursor(reset_to)
    replay = daemon.tick()
    assert [r.run_id for r in daemon.runs()] == [r.run_id for r in runs]  # no new run...
    # ...though the sensor, knowing nothing, asked again with the same key: Dagster dropped it.
    assert replay.run_keys == first.run_keys == [r.tags[RUN_KEY_TAG] for r in runs]
    assert replay.run_ids == []
    _assert_submitted(daemon.runs())  # the old runs were not resubmitted either
    assert daemon.cursor() == cursor  # and the cursor is rebuilt as it was

    assert daemon.tick().status == TickStatus.SKIPPED
    assert len(daemon.runs()) == 1


def test_a_changed_dump_makes_exactly_one_new_run(daemon):
    week = _week_ago(1)
    dump = daemon.dumps / "feedback.jsonl"
    _write(dump, [week], 3, "v1")
    daemon.tick()
    [old] = daemon.runs()

    _write(dump, [week], 5, "v2")
    os.utime(dump, (dump.stat().st_atime, dump.stat().st_mtime + 10))
    daemon.tick()
    new = [r for r in daemon.runs() if r.run_id != old.run_id]
    assert [r.tags[PARTITION_NAME_TAG] for r in new] == [week]
    assert (
        new[0].tags[RUN_KEY_TAG] == f"{week}:feedback.jsonl@{daemon.version('feedback.jsonl')}" != old.tags[RUN_KEY_TAG]
    )
    _assert_submitted(new)

    assert daemon.tick().status == TickStatus.SKIPPED
    daemon.set_cursor(None)  # a replay now only knows the new version, which has its run
    assert daemon.tick().run_ids == []
    assert len(daemon.runs()) == 2


def test_a_dump_touched_with_identical_bytes_is_curated_once_more(daemon):
    """The version of a local dump is its mtime and size: a touch is a new version, and gets one
    re-curation of each closed week it touches, once (the tick after asks for nothing).

    Accepted on purpose: the mtime is itself an input of ingestion (kto_pipeline.ingest.load: the
    future-timestamp bound is mtime + FUTURE_TOLERANCE, and a dump without readable timestamps
    is placed in its mtime's week), so a content hash alone would miss changes to the output; and
    re-curating unchanged rows writes byte-identical files (test_raw_feedback_asset,
    test_curation_assets), so the extra run costs compute, never data.
    """
    week = _week_ago(2)
    dump = daemon.dumps / "feedback.jsonl"
    _write(dump, [week], 3, "same")
    content = dump.read_bytes()
    daemon.tick()
    [old] = daemon.runs()

    os.utime(dump, (dump.stat().st_atime, dump.stat().st_mtime + 10))
    assert dump.read_bytes() == content
    daemon.tick()
    new = [r for r in daemon.runs() if r.run_id != old.run_id]
    assert [r.tags[PARTITION_NAME_TAG] for r in new] == [week]  # one re-curation of that week only
    assert new[0].tags[RUN_KEY_TAG] != old.tags[RUN_KEY_TAG]
    assert daemon.tick().status == TickStatus.SKIPPED
    assert len(daemon.runs()) == 2


def test_two_dumps_for_the_same_week_in_one_tick_share_one_run(daemon):
    week = _week_ago(1)
    _write(daemon.dumps / "a.jsonl", [week], 2, "a")
    _write(daemon.dumps / "c.jsonl", [week], 2, "c", day=4)
    tick = daemon.tick()
    [run] = daemon.runs()
    assert run.tags[RUN_KEY_TAG] == f"{week}:a.jsonl@{daemon.version('a.jsonl')},c.jsonl@{daemon.version('c.jsonl')}"
    assert tick.run_ids == [run.run_id]
    _assert_submitted([run])


def _died(crash_at: str) -> dict:
    """Dagster's debug crash flags: raise inside the daemon at that point of the tick."""
    return {SENSOR: {crash_at: Exception(f"daemon died at {crash_at}")}}


@pytest.mark.parametrize("crash_at", ["RUN_CREATED", "RUN_LAUNCHED"])
def test_a_tick_that_died_half_way_is_finished_by_the_next_without_a_second_run(daemon, crash_at):
    """The daemon dies after making the run (before or after submitting it), before the tick and
    the cursor are committed. The next tick resumes the failed one with the run ids it had
    reserved: the same run, submitted once."""
    week = _week_ago(1)
    _write(daemon.dumps / "a.jsonl", [week], 2, "a")
    died = daemon.tick(crash=_died(crash_at), expect_error=True)
    [run] = daemon.runs()
    assert died.status == TickStatus.FAILURE and died.run_ids == []
    assert daemon.cursor() is None  # the cursor did not advance
    assert run.status == (DagsterRunStatus.NOT_STARTED if crash_at == "RUN_CREATED" else DagsterRunStatus.QUEUED)

    resumed = daemon.tick()
    assert run.run_id in resumed.tick_data.reserved_run_ids
    assert [r.run_id for r in daemon.runs()] == [run.run_id]
    _assert_submitted(daemon.runs())  # a run left NOT_STARTED is submitted now, once
    assert json.loads(daemon.cursor())["versions"] == {"a.jsonl": daemon.version("a.jsonl")}
    assert daemon.tick().status == TickStatus.SKIPPED
    assert len(daemon.runs()) == 1


def test_a_tick_given_up_after_dying_twice_is_redone_and_its_run_found_by_run_key(daemon):
    """A failed tick is resumed once (MAX_FAILURE_RESUBMISSION_RETRIES); when the resumption dies
    too, the next tick evaluates the sensor afresh from the old cursor, with new run ids. Only the
    run key ties its request to the run the dead ticks made."""
    week = _week_ago(1)
    _write(daemon.dumps / "a.jsonl", [week], 2, "a")
    daemon.tick(crash=_died("RUN_CREATED"), expect_error=True)
    again = daemon.tick(crash=_died("RUN_CREATED"), expect_error=True)
    [run] = daemon.runs()
    assert again.status == TickStatus.FAILURE and run.status == DagsterRunStatus.NOT_STARTED
    assert daemon.cursor() is None

    fresh = daemon.tick()
    assert run.run_id not in fresh.tick_data.reserved_run_ids  # not a resumption
    assert [r.run_id for r in daemon.runs()] == [run.run_id]
    assert fresh.run_keys == [run.tags[RUN_KEY_TAG]]
    _assert_submitted(daemon.runs())
    assert daemon.tick().status == TickStatus.SKIPPED
    assert len(daemon.runs()) == 1


def test_the_daemon_does_not_start_a_second_tick_while_one_is_in_flight(daemon):
    """Two iterations of the daemon loop while the first tick is still running: the second one
    does not evaluate the sensor again (one tick per sensor in flight), so one run."""
    week = _week_ago(1)
    _write(daemon.dumps / "a.jsonl", [week], 2, "a")
    futures: dict[str, Future] = {}
    with BlockingThreadPoolExecutor() as pool, freeze_time(daemon.now + 61):
        list(execute_sensor_iteration(daemon.workspace, LOGGER, pool, None, futures))
        [in_flight] = futures.values()
        list(execute_sensor_iteration(daemon.workspace, LOGGER, pool, None, futures))
        assert list(futures.values()) == [in_flight]  # nothing new submitted
        pool.allow()
        results = wait_for_futures(futures, timeout=120)
    assert all(e is None for errors in results.values() for e in errors)
    assert len(daemon.ticks()) == 1
    assert len(daemon.runs()) == 1
