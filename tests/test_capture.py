"""The capture service and client over a real server on loopback: round trips into the
pipeline, bad requests answered with a 4xx naming the problem, idempotent retries, and no
acknowledged event lost or doubled across a kill -9."""

import json
import threading
import time

import dagster as dg
import httpx
import pandas as pd
import pytest

from assets.ingest import raw_feedback
from assets.sensors import feedback_dump_sensor
from kto_pipeline.capture.client import CaptureClient
from kto_pipeline.capture.local import CaptureServer
from kto_pipeline.capture.server import OPENAPI_PATH, create_app
from kto_pipeline.ingest.dumps import list_dumps, read_dump
from kto_pipeline.ingest.load import ingest
from resources import FeedbackSource, ParquetIOManager

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server(tmp_path):
    srv = CaptureServer(tmp_path / "dumps", TOKEN)
    yield srv
    srv.stop()


def _event_ids(dumps) -> list[str]:
    return [raw.value["event_id"] for d in list_dumps(str(dumps)) for raw in read_dump(d)]


def test_the_committed_openapi_spec_is_the_app_s():
    app = create_app("/nonexistent", {TOKEN: "tests"})
    assert json.loads(OPENAPI_PATH.read_text()) == json.loads(json.dumps(app.openapi(), sort_keys=True))


def test_client_round_trip_through_the_server_into_ingest(server, tmp_path):
    client = CaptureClient(server.url, TOKEN, buffer_dir=tmp_path / "buffer")
    client.record_response(
        "r1",
        [{"role": "user", "content": "How do I export invoices?"}],
        "Billing → Invoices → Export.",
        user_id="u1",
        model_version="v7",
        timestamp="2026-11-03T10:00:00Z",
    )
    client.record_response("r2", "Is there an API?", "No.", timestamp="2026-11-03T10:05:00Z")
    client.record_response("r3", "Dark mode?", "Settings → Theme.", timestamp="2026-11-03T10:06:00Z")
    client.record_feedback("r1", "up", timestamp="2026-11-03T10:01:00Z")
    client.record_feedback(
        "r2", False, edited_completion="Yes: REST, see docs.acme.example/api.", timestamp="2026-11-04T09:00:00Z"
    )
    assert client.flush(30)
    client.close()
    assert client.stats["acknowledged"] == 5
    server.stop()  # publishes the open segment
    dumps = list_dumps(str(server.dumps))
    assert dumps and all(d.name.startswith("capture/") for d in dumps)
    result = ingest(dumps)
    rows = result.rows[["record_id", "signal", "label", "prompt", "completion", "timestamp"]].values.tolist()
    assert rows == [
        [
            "r1",
            "thumb",
            True,
            "user: How do I export invoices?",
            "Billing → Invoices → Export.",
            pd.Timestamp("2026-11-03T10:01:00Z"),
        ],
        [
            "r2",
            "edit",
            True,
            "Is there an API?",
            "Yes: REST, see docs.acme.example/api.",
            pd.Timestamp("2026-11-04T09:00:00Z"),
        ],
        ["r2", "edit_original", False, "Is there an API?", "No.", pd.Timestamp("2026-11-04T09:00:00Z")],
    ]
    assert result.summary()["skipped_by_reason"] == {"unrated": 1}  # r3
    assert result.summary()["by_format"]["capture"]["joined"] == 2


def test_bad_requests_get_a_4xx_naming_the_problem(tmp_path):
    srv = CaptureServer(
        tmp_path / "dumps",
        TOKEN,
        capture={"max_body_bytes": 4096, "max_batch_events": 3, "rate_events_per_s": 1, "rate_burst_events": 3},
    )
    try:
        ok = {"id": "r1", "prompt": "p", "completion": "c"}
        assert httpx.post(f"{srv.url}/v1/responses", json=ok).status_code == 401
        assert (
            httpx.post(
                f"{srv.url}/v1/responses", json=ok, headers={"Authorization": "Bearer wrong-token-123456"}
            ).status_code
            == 401
        )
        bad = httpx.post(f"{srv.url}/v1/feedback", json={"response_id": "r1", "thumb": "sideways"}, headers=AUTH)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "thumb"
        empty = httpx.post(f"{srv.url}/v1/feedback", json={"response_id": "r1"}, headers=AUTH)
        assert empty.status_code == 422 and "needs a thumb" in empty.text
        surrogate = httpx.post(
            f"{srv.url}/v1/responses",
            content=b'{"id": "r1", "prompt": "\\ud800", "completion": "c"}',
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert surrogate.status_code == 422 and "lone surrogate" in surrogate.text
        assert (
            httpx.post(
                f"{srv.url}/v1/responses", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
            ).status_code
            == 422
        )
        big = httpx.post(f"{srv.url}/v1/responses", json={**ok, "completion": "x" * 5000}, headers=AUTH)
        assert big.status_code == 413 and "4096 bytes" in big.text
        codes = [
            httpx.post(f"{srv.url}/v1/responses", json={**ok, "id": f"r{i}"}, headers=AUTH).status_code
            for i in range(5)
        ]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429
        limited = httpx.post(f"{srv.url}/v1/responses", json={**ok, "id": "r9"}, headers=AUTH)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1 and "rate limit" in limited.text
    finally:
        srv.stop()


def test_a_resent_event_is_recorded_once(server):
    event = {"type": "feedback", "event_id": "e-1", "response_id": "r1", "thumb": "up"}
    first = httpx.post(f"{server.url}/v1/events", json={"events": [event]}, headers=AUTH).json()
    again = httpx.post(
        f"{server.url}/v1/events", json={"events": [event, {**event, "event_id": "e-2"}]}, headers=AUTH
    ).json()
    assert (first, again) == ({"accepted": 1, "duplicates": 0}, {"accepted": 1, "duplicates": 1})
    server.stop()
    assert sorted(_event_ids(server.dumps)) == ["e-1", "e-2"]


def test_kill_9_mid_load_then_restart_loses_and_doubles_nothing(tmp_path):
    dumps = tmp_path / "dumps"
    srv = CaptureServer(dumps, TOKEN)
    client = CaptureClient(srv.url, TOKEN, buffer_dir=tmp_path / "buffer", batch_size=50, max_backoff=0.5, timeout=2)
    sent: list[str] = []

    def load():
        for i in range(3000):
            sent.append(client.record_feedback(f"r{i % 40}", "up" if i % 3 else "down"))
            time.sleep(0.0005)

    writer = threading.Thread(target=load)
    writer.start()
    time.sleep(1.0)
    srv.kill()  # mid-load: some batches written and acknowledged, one maybe written but not acknowledged
    staged = list((dumps / ".capture-staging").glob("*.part"))
    assert staged  # the open segment was left behind, unpublished
    assert all(".capture-staging" not in d.name for d in list_dumps(str(dumps)))  # and the pipeline cannot see it
    time.sleep(0.5)
    srv = CaptureServer(dumps, TOKEN, port=srv.port)  # recovers the orphaned segment
    writer.join()
    assert client.flush(120)
    client.close()
    srv.stop()
    ids = _event_ids(dumps)
    assert len(ids) == len(set(ids)) == len(sent) == 3000  # every event once: none lost, none doubled
    assert set(ids) == set(sent)
    assert client.stats["acknowledged"] + client.stats["duplicates"] >= 3000
    result = ingest(list_dumps(str(dumps)))
    assert set(result.quarantine["reason"]) == {"orphan_feedback"}  # whole records only: the responses were never sent


def test_several_workers_write_their_own_segments_and_lose_nothing(tmp_path):
    srv = CaptureServer(tmp_path / "dumps", TOKEN, workers=2)
    try:
        sent = [f"w-{i}" for i in range(400)]
        for start in range(0, len(sent), 20):  # new connections: the kernel spreads them over the workers
            events = [
                {"type": "feedback", "event_id": e, "response_id": "r1", "thumb": "up"}
                for e in sent[start : start + 20]
            ]
            reply = httpx.post(f"{srv.url}/v1/events", json={"events": events}, headers=AUTH)
            assert reply.json() == {"accepted": 20, "duplicates": 0}
    finally:
        srv.stop()
    assert sorted(_event_ids(tmp_path / "dumps")) == sorted(sent)
    assert not list((tmp_path / "dumps" / ".capture-staging").iterdir())  # every segment published


def test_direct_mode_writes_segments_without_a_server(tmp_path):
    client = CaptureClient(direct=str(tmp_path / "dumps"), buffer_dir=tmp_path / "buffer")
    client.record_response("r1", "Is there an API?", "Yes.", timestamp="2026-11-03T10:00:00Z")
    client.record_feedback("r1", "up", timestamp="2026-11-03T10:01:00Z")
    client.close()
    rows = ingest(list_dumps(str(tmp_path / "dumps"))).rows
    assert rows[["record_id", "signal", "label"]].values.tolist() == [["r1", "thumb", True]]


def test_server_and_client_through_the_sensor_and_raw_feedback(server, tmp_path):
    client = CaptureClient(server.url, TOKEN, buffer_dir=tmp_path / "buffer")
    client.record_response("r1", "How do I rotate keys?", "Settings → Keys.", timestamp="2026-11-03T10:00:00Z")
    client.record_feedback("r1", "down", timestamp="2026-11-03T11:00:00Z")
    client.close()
    server.stop()
    source = FeedbackSource(location=str(server.dumps))
    tick = feedback_dump_sensor(dg.build_sensor_context(resources={"feedback_source": source}))
    [request] = tick.run_requests
    assert request.partition_key == "2026-11-02"
    storage = tmp_path / "warehouse"
    result = dg.materialize(
        [raw_feedback],
        partition_key=request.partition_key,
        resources={"io_manager": ParquetIOManager(base_path=str(storage)), "feedback_source": source},
    )
    assert result.success
    rows = pd.read_parquet(storage / "raw_feedback" / "2026-11-02.parquet")
    assert rows[["record_id", "signal", "label", "completion"]].values.tolist() == [
        ["r1", "thumb", False, "Settings → Keys."]
    ]
