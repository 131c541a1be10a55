"""The simulator's traffic through the capture service gives the rows a direct contract dump gives."""

from kto_pipeline.ingest.dumps import list_dumps
from kto_pipeline.ingest.load import ingest
from kto_pipeline.sim.capture_traffic import send_week_through_capture
from kto_pipeline.sim.users import write_week_dump

WEEK = "2026-11-02"


def _records() -> list[dict]:
    out = []
    for k in range(40):
        record = {
            "id": f"sim-{WEEK}-{k:05d}",
            "timestamp": f"2026-11-0{3 + k % 5}T1{k % 10}:00:00Z",
            "prompt": f"Hi, I'm Ravi Eriksen. {k}+{k}=",
            "completion": str(2 * k + (k % 3 == 0)),
            "label": k % 3 != 0,
            "user_id": f"user-{k % 7}",
            "conversation_id": f"conv-{WEEK}-{k:05d}",
            "model_version": "champion",
            "metadata": {"app": "calculator"},
        }
        if k % 6 == 0:
            record["edited_completion"] = str(2 * k)
        out.append(record)
    return out


def test_capture_path_gives_the_same_rows_as_a_contract_dump(tmp_path):
    records = _records()
    stats = send_week_through_capture(records, tmp_path / "captured")
    assert stats["acknowledged"] == 2 * len(records)
    write_week_dump(records, tmp_path / "direct", WEEK)
    cols = [
        "row_id",
        "record_id",
        "week",
        "timestamp",
        "prompt",
        "completion",
        "label",
        "signal",
        "user_id",
        "metadata",
    ]
    captured = ingest(list_dumps(str(tmp_path / "captured")))
    direct = ingest(list_dumps(str(tmp_path / "direct")))
    assert captured.quarantine.empty and captured.summary()["records_skipped"] == 0
    assert captured.rows[cols].equals(direct.rows[cols])
    assert len(captured.rows) == len(records) + sum("edited_completion" in r for r in records)
