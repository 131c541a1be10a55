"""The Dagster UI in a real browser, on a live `dagster dev`.

What happens, in order:

1. A fresh instance (the project's dagster.yaml in a DAGSTER_HOME under tmp) and a private copy
   of the bundled sample dumps; `dagster dev -w workspace.yaml` (webserver, daemon and code
   server) starts on 127.0.0.1 at a free port, in its own process group. The tiny local
   models of the demo (`demo_models_env`) stand in for the scorer and the base model.
2. One week partition of `retrain_job` (every asset, ingestion to `eval_report`) is launched
   through the webserver's GraphQL API (`launchRun` with the `dagster/partition` tag), exactly
   what the UI's launchpad sends; the run is queued, the daemon starts it, and the test polls
   `runOrError` until it ends. The whole job goes through GraphQL (one run, in-process
   executor) rather than preparing the report with `dagster job execute` beforehand: it is the
   path a user takes, and one run is also the fastest way to get there (one code load). The
   teacher LLM is off (`synthetic_topup` then records "no teacher"), which saves most of a
   minute on 2 cores; the scorer, the trainer and the evaluation run on the tiny models.
3. Headless Chromium (Debian's `chromium`, driven by Playwright) opens the global asset
   lineage with both groups expanded (a node per asset), the training group alone (its nodes
   in full, materialized a moment ago), the `eval_report` asset's page for the partition, the
   report itself (the "Show Markdown" dialog: the decision, the metrics table, both plots
   rendered from their data URIs) and the run's page; it asserts on what is shown and saves
   full-page screenshots under tests/output/ui/ (kept as CI artifacts; a step whose check
   failed saves `<name>-FAILED.png`), with the server's log beside them. On a failure the
   message carries the tail of the `dagster dev` log.

Needs /usr/bin/chromium (or KTO_PIPELINE_CHROMIUM) and the `playwright` package (dev extra);
without them it skips with a message, unless KTO_PIPELINE_REQUIRE_BROWSER=1 (CI) makes it fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import PROJECT

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("KTO_PIPELINE_CHROMIUM", "/usr/bin/chromium")
SHOTS = PROJECT / "tests" / "output" / "ui"
WEEK = "2026-10-05"  # the first week of the bundled sample dumps
LOCATION = "kto_pipeline"  # workspace.yaml's location_name
PIPELINE_ASSETS = (
    "raw_feedback",
    "redacted_feedback",
    "deduplicated_feedback",
    "scored_feedback",
    "balanced_feedback",
    "synthetic_topup",
    "kto_checkpoint",
    "eval_report",
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]
START_TIMEOUT_S = 420  # dagster dev imports torch, transformers and Presidio: slow on 2 busy cores
RUN_TIMEOUT_S = 900
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
# An asset node's "Latest event" a moment ago (never materialized: no "… ago").
RECENT_EVENT = re.compile(r"Latest event\s*(a few seconds|an? (minute|hour)|\d+ (seconds?|minutes?|hours?)) ago")


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not found (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


_missing = _browser_missing()
if _missing:
    if os.environ.get("KTO_PIPELINE_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"KTO_PIPELINE_REQUIRE_BROWSER=1 but {_missing}")
    pytest.skip(f"UI browser test skipped: {_missing}", allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterDev:
    """A running `dagster dev` and what the test needs from it."""

    def __init__(self, proc: subprocess.Popen, url: str, log: Path, home: Path, env: dict[str, str]):
        self.proc, self.url, self.log, self.home, self.env = proc, url, log, home, env

    def log_tail(self, chars: int = 6000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"\n--- dagster dev log ({self.log}), last {chars} chars ---\n{text[-chars:]}"

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.load(response)
        assert not payload.get("errors"), f"GraphQL errors: {payload['errors']}" + self.log_tail()
        return payload["data"]

    def fail(self, message: str):
        pytest.fail(message + self.log_tail(), pytrace=False)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to `dagster dev` alone (it shuts its webserver, daemon and code servers down in
    order, 10-20 s), then SIGKILL to whatever is left of its process group, run workers
    included."""
    started = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print(
                f"dagster dev still running {time.monotonic() - started:.0f}s after SIGTERM: SIGKILL to its process group"
            )
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    from kto_pipeline.app.cli import demo_models_env
    from kto_pipeline.app.dagster_command import OFFLINE_ENV
    from kto_pipeline.devtools.sample_data import SAMPLE_DIR

    root = tmp_path_factory.mktemp("ui")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROJECT / "dagster.yaml", home / "dagster.yaml")
    dumps = root / "dumps"
    shutil.copytree(SAMPLE_DIR, dumps)

    # The instance and the deployment are this test's alone: no PostgreSQL, no settings of the
    # caller's shell (a KTO_PIPELINE_START_DATE would move the partitions).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "KTO_PIPELINE_"))}
    env.update(OFFLINE_ENV)
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "KTO_PIPELINE_DUMPS": str(dumps),
            "KTO_PIPELINE_STORAGE": str(home / "warehouse"),
            "KTO_PIPELINE_MODELS": str(home / "models"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "dagster_dev.log"
    # The demo's tiny local models (scorer, base model); no teacher LLM, to save time.
    env.update({**demo_models_env(home, plumbing=True), "KTO_PIPELINE_TEACHER_KIND": "none"})
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = DagsterDev(proc, url, log, home, env)
    try:
        started = time.monotonic()
        _wait_until_loaded(server)
        print(f"dagster dev at {url}: code location loaded in {time.monotonic() - started:.0f}s")
        yield server
    finally:
        _stop(proc)
        # Keep the server's log beside the screenshots: the CI artifact shows what it did.
        SHOTS.mkdir(parents=True, exist_ok=True)
        if log.exists():
            shutil.copyfile(log, SHOTS / "dagster_dev.log")


def _wait_until_loaded(server: DagsterDev) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.proc.poll() is not None:
            server.fail(f"dagster dev exited early with code {server.proc.returncode}")
        try:
            with urllib.request.urlopen(f"{server.url}/server_info", timeout=5) as response:
                info = json.load(response)
            statuses = server.graphql(
                "{locationStatusesOrError{__typename ... on WorkspaceLocationStatusEntries{entries{name loadStatus}}}}"
            )
            entries = {e["name"]: e["loadStatus"] for e in statuses["locationStatusesOrError"].get("entries", [])}
            if entries.get(LOCATION) == "LOADED":
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            server.fail(f"dagster dev did not load the {LOCATION} code location within {START_TIMEOUT_S}s")
        time.sleep(2)
    assert info["dagster_version"] == "1.13.27", info
    # The location loaded without an error, with both jobs.
    workspace = server.graphql(
        "{workspaceOrError{... on Workspace{locationEntries{name locationOrLoadError{__typename"
        " ... on PythonError{message} ... on RepositoryLocation{repositories{name jobs{name}}}}}}}}"
    )
    [entry] = [e for e in workspace["workspaceOrError"]["locationEntries"] if e["name"] == LOCATION]
    location = entry["locationOrLoadError"]
    if location["__typename"] != "RepositoryLocation":
        server.fail(f"code location {LOCATION} failed to load: {location.get('message')}")
    jobs = {job["name"] for repo in location["repositories"] for job in repo["jobs"]}
    assert {"curate_job", "retrain_job"} <= jobs, jobs


LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status tags { key value } } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
    ... on RunConflict { message }
    ... on UnauthorizedError { message }
  }
}
"""

RUN_STATUS = "query($runId: ID!){runOrError(runId: $runId){__typename ... on Run{status jobName tags{key value}}}}"

RUN_ERRORS = """
query($runId: ID!) {
  logsForRun(runId: $runId, limit: 2000) {
    ... on EventConnection { events { __typename ... on MessageEvent { message level stepKey } } }
  }
}
"""

MATERIALIZATIONS = """
query($key: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset { assetMaterializations(partitions: $partitions) { runId partition metadataEntries { label } } }
  }
}
"""


@pytest.fixture(scope="module")
def retrain_run(dagster_dev):
    """retrain_job for WEEK, launched through GraphQL and polled until it ends; its id and status."""
    from kto_pipeline.app.dagster_command import IN_PROCESS

    params = {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "jobName": "retrain_job"},
        "runConfigData": IN_PROCESS,
        "executionMetadata": {
            "tags": [
                {"key": "dagster/partition", "value": WEEK},
                {"key": "kto_pipeline/trigger", "value": "ui_test"},
            ]
        },
    }
    launched = dagster_dev.graphql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        dagster_dev.fail(f"launchRun answered {launched}")
    run_id = launched["run"]["runId"]
    assert {"key": "dagster/partition", "value": WEEK} in launched["run"]["tags"]

    started = time.monotonic()
    deadline = started + RUN_TIMEOUT_S
    seen = []
    while True:
        run = dagster_dev.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        if not seen or seen[-1] != run["status"]:
            seen.append(run["status"])
        if run["status"] in TERMINAL:
            break
        if time.monotonic() > deadline:
            dagster_dev.fail(f"run {run_id} still {run['status']} after {RUN_TIMEOUT_S}s (statuses {seen})")
        time.sleep(3)
    assert run["jobName"] == "retrain_job"
    print(f"run {run_id}: {' → '.join(seen)} in {time.monotonic() - started:.0f}s")
    return {"run_id": run_id, "status": run["status"], "statuses": seen}


def _run_errors(server: DagsterDev, run_id: str) -> str:
    events = server.graphql(RUN_ERRORS, {"runId": run_id})["logsForRun"].get("events", [])
    errors = [f"[{e.get('stepKey')}] {e.get('message')}" for e in events if e.get("level") in ("ERROR", "CRITICAL")]
    return "\n".join(errors[-20:]) or "(no error events)"


def _report_summary(server: DagsterDev) -> dict:
    from kto_pipeline.models.registry import EVAL_SUMMARY

    path = server.home / "models" / "reports" / WEEK / EVAL_SUMMARY
    assert path.is_file(), f"eval_report wrote no {path}" + server.log_tail()
    return json.loads(path.read_text())


def _names(label: str, name: str) -> bool:
    """Whether a node label shows `name`: whole, or cut in the middle with "…"."""
    if "…" not in label:
        return label == name
    head, _, tail = label.partition("…")
    return len(head) + len(tail) < len(name) and name.startswith(head) and name.endswith(tail)


def _dismiss_community_dialog(page: Page) -> None:
    """A fresh instance greets the first visit with a "Join the Dagster community" dialog;
    Playwright clicks Skip whenever it shows up in the way."""
    page.add_locator_handler(
        page.get_by_text("Join the Dagster community"),
        lambda: page.get_by_role("button", name="Skip").click(),
    )


@pytest.fixture(scope="module")
def page(dagster_dev):
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000}, base_url=dagster_dev.url)
            context.set_default_timeout(60_000)  # a busy 2-core machine renders slowly
            expect.set_options(timeout=30_000)
            page = context.new_page()
            _dismiss_community_dialog(page)
            yield page
        finally:
            browser.close()


class Shot:
    """Saves a full-page screenshot when the block ends, also when an assertion in it failed,
    and puts the server's log tail into the failure."""

    def __init__(self, page: Page, server: DagsterDev, name: str):
        self.page, self.server, self.name = page, server, name

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        suffix = "" if exc_type is None else "-FAILED"
        try:
            self.page.screenshot(path=str(SHOTS / f"{self.name}{suffix}.png"), full_page=True)
        except Exception as shot_error:  # the screenshot must not hide the real failure
            print(f"screenshot {self.name} failed: {shot_error}")
        if exc_type is AssertionError:
            raise AssertionError(
                f"{exc}\n(screenshot: {SHOTS / (self.name + suffix)}.png){self.server.log_tail()}"
            ) from None
        return False


def test_ui_shows_the_asset_graph_and_the_eval_report_of_a_run_launched_through_graphql(dagster_dev, retrain_run, page):
    server, run_id = dagster_dev, retrain_run["run_id"]
    summary = _report_summary(server)
    promoted = bool(summary["decision"]["promote"])
    # A run passes, or fails only at the promotion gate (a blocking check): then the report
    # exists and says DO NOT PROMOTE. Anything else is a broken pipeline.
    if retrain_run["status"] != "SUCCESS" and (retrain_run["status"] != "FAILURE" or promoted):
        server.fail(
            f"run {run_id} ended {retrain_run['status']} (statuses {retrain_run['statuses']}):\n{_run_errors(server, run_id)}"
        )
    assert retrain_run["statuses"][-1] in TERMINAL and len(retrain_run["statuses"]) >= 2, (
        retrain_run
    )  # it was queued or started first

    # Every asset of the job, and the report, were materialized for the week by this run.
    for key in PIPELINE_ASSETS:
        asset = server.graphql(MATERIALIZATIONS, {"key": {"path": [key]}, "partitions": [WEEK]})["assetOrError"]
        assert asset["__typename"] == "Asset", (key, asset)
        assert run_id in {m["runId"] for m in asset["assetMaterializations"]}, (
            f"{key} has no materialization of {WEEK} from run {run_id}"
        )
    [report_mat] = server.graphql(MATERIALIZATIONS, {"key": {"path": ["eval_report"]}, "partitions": [WEEK]})[
        "assetOrError"
    ]["assetMaterializations"]
    assert {"report", "promoted", "candidate/reward_accuracy"} <= {e["label"] for e in report_mat["metadataEntries"]}

    # 1. The global asset lineage, both asset groups expanded: one node per asset of the code
    #    location, each labelled with its name (long ones middle-truncated: "deduplic…_feedback").
    defined = sorted(
        "/".join(n["assetKey"]["path"]) for n in server.graphql("{assetNodes{assetKey{path}}}")["assetNodes"]
    )
    assert set(PIPELINE_ASSETS) <= set(defined), defined
    with Shot(page, server, "1_asset_graph"):
        page.goto("/asset-groups?expanded=" + "%2C".join(f"global%40global%3A{g}" for g in ("curation", "training")))
        expect(page.get_by_text("Global asset lineage")).to_be_visible()
        labels = page.locator('[class*="AssetNode_assetName"]')  # the node titles
        expect(labels).to_have_count(len(defined))
        drawn = labels.all_inner_texts()
        for name in defined:
            matches = [label for label in drawn if _names(label, name)]
            assert len(matches) == 1, f"asset {name}: node labels {matches} among {drawn}"
        expect(page.get_by_text("Join the Dagster community")).to_be_hidden()

    # 2. Only the training group expanded: its nodes are drawn in full, with the latest
    #    materialization (the run's, a moment ago) and the partitions.
    with Shot(page, server, "2_asset_graph_training"):
        page.goto("/asset-groups?expanded=global%40global%3Atraining")
        for name in ("kto_checkpoint", "eval_report"):
            node = page.locator('[class*="AssetNode_assetNodeContainer"]').filter(
                has=page.get_by_text(name, exact=True)
            )
            expect(node).to_have_count(1)
            expect(node).to_contain_text(RECENT_EVENT)
            expect(node).to_contain_text("Partitions")
        expect(page.get_by_text("curation", exact=True).first).to_be_visible()  # the other group, collapsed
        expect(page.get_by_text("(fetching statuses)")).to_have_count(0)  # its status badge, for the screenshot

    # 3. The eval_report asset, its partitions tab on the week: materialized by our run, with
    #    the report's metadata.
    with Shot(page, server, "3_eval_report_partition"):
        page.goto(f"/assets/eval_report?view=partitions&partition={WEEK}")
        expect(page.get_by_text("Materialized (1)")).to_be_visible()
        expect(page.get_by_role("link", name=run_id[:8]).first).to_be_visible()  # the run that made it
        expect(page.get_by_text("retrain_job").first).to_be_visible()
        for label in (
            "report",
            "promoted",
            "champion_before",
            "eval_rows",
            "candidate/reward_accuracy",
            "candidate/kl",
        ):
            expect(page.get_by_text(label, exact=True).first, f"metadata {label}").to_be_visible()
        expect(page.get_by_text(str(server.home / "models" / "reports" / WEEK / "eval_report.md"))).to_be_visible()
        expect(page.get_by_text("Join the Dagster community")).to_be_hidden()

    # 4. The report itself (the Markdown metadata, in a dialog): the decision and the metrics
    #    of the candidate (this run's checkpoint) against the base.
    with Shot(page, server, "4_eval_report"):
        page.get_by_text("Show Markdown").first.click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_role("heading", name=f"KTO evaluation: week {WEEK}")).to_be_visible()
        verdict = "PROMOTE" if promoted else "DO NOT PROMOTE"  # what eval_report decided, on disk
        expect(dialog.get_by_text(f"Decision: {verdict}", exact=True)).to_be_visible()
        expect(dialog.get_by_role("heading", name="Metrics")).to_be_visible()
        expect(dialog.get_by_role("columnheader", name="KTO loss")).to_be_visible()
        for role in ("base", "candidate"):
            expect(dialog.get_by_role("cell", name=role, exact=True)).to_be_visible()
        expect(dialog.get_by_text(str(server.home / "models" / "checkpoints" / WEEK), exact=True)).to_be_visible()

    # 5. Its plots, rendered from the data URIs the asset embeds.
    with Shot(page, server, "5_eval_report_plots"):
        for alt in ("Reward distributions per model and class", "Main metrics per model"):
            img = dialog.get_by_role("img", name=alt)
            img.scroll_into_view_if_needed()
            expect(img).to_be_visible()
            assert img.evaluate("e => e.complete && e.naturalWidth > 100"), f"plot {alt!r} did not render"

    # 6. The run's page: the partition, the outcome the API reported, the steps, and the
    #    training process's log lines (streamed back through Pipes).
    with Shot(page, server, "6_run"):
        page.goto(f"/runs/{run_id}")
        expect(page.get_by_text(f"partition: {WEEK}")).to_be_visible()
        expect(page.get_by_text("retrain_job").first).to_be_visible()
        outcome = {"SUCCESS": "Success", "FAILURE": "Failure"}[retrain_run["status"]]
        expect(page.get_by_text(outcome, exact=True).first).to_be_visible()
        if retrain_run["status"] == "SUCCESS":
            expect(
                page.get_by_text("Succeeded (8)")
            ).to_be_visible()  # one step per asset above (the top-up's is a multi-asset)
            expect(page.get_by_text("Errored (0)")).to_be_visible()
        expect(page.get_by_text(f"training {WEEK} from").first).to_be_visible()
