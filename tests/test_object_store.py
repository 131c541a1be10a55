"""Dumps read from, and assets written to, s3:// URLs (a moto S3 server on 127.0.0.1)."""

import io

import dagster as dg
import pandas as pd
import pytest

from assets.ingest import raw_feedback
from kto_pipeline.devtools.sample_data import SAMPLE_DIR
from kto_pipeline.ingest.dumps import list_dumps
from kto_pipeline.ingest.load import ingest
from resources import FeedbackSource, ParquetIOManager


@pytest.fixture
def s3(monkeypatch):
    server_mod = pytest.importorskip("moto.server")
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="feedback")
    client.create_bucket(Bucket="warehouse")
    for path in sorted(SAMPLE_DIR.iterdir()):
        client.put_object(Bucket="feedback", Key=f"dumps/{path.name}", Body=path.read_bytes())
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    yield {"endpoint": endpoint, "client": client, "options": {"endpoint_url": endpoint}}
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


def test_dumps_on_s3_read_the_same_as_the_local_folder(s3):
    remote = list_dumps("s3://feedback/dumps", s3["options"])
    local = list_dumps(str(SAMPLE_DIR))
    assert [d.name for d in remote] == [d.name for d in local]
    assert all(d.path.startswith("s3://feedback/dumps/") for d in remote)
    assert all(d.version for d in remote)  # the ETag
    a = ingest(remote, storage_options=s3["options"])
    b = ingest(local)
    assert a.rows.equals(b.rows)
    assert a.quarantine.equals(b.quarantine)


def test_raw_feedback_materializes_from_s3_to_s3(s3):
    result = dg.materialize(
        [raw_feedback],
        partition_key="2026-10-26",
        resources={
            "io_manager": ParquetIOManager(base_path="s3://warehouse/kto", storage_options=s3["options"]),
            "feedback_source": FeedbackSource(location="s3://feedback/dumps", storage_options=s3["options"]),
        },
    )
    assert result.success
    body = s3["client"].get_object(Bucket="warehouse", Key="kto/raw_feedback/2026-10-26.parquet")["Body"].read()
    rows = pd.read_parquet(io.BytesIO(body))
    assert len(rows) > 0 and set(rows["week"]) == {"2026-10-26"}
    keys = {o["Key"] for o in s3["client"].list_objects_v2(Bucket="warehouse")["Contents"]}
    assert keys == {"kto/raw_feedback/2026-10-26.parquet", "kto/raw_feedback_quarantine/2026-10-26.parquet"}
