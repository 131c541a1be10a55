"""Capture: record shown responses and users' feedback from day one, as dumps the pipeline reads.

A team without Langfuse or LangSmith points its app at this: a small HTTP service
(`kto-pipeline capture serve`, FastAPI on uvicorn) and a Python client. Each response shown and
each thumb or edit given later is an event; events are acknowledged only once they are on disk
(group commit with fsync), land in JSONL segments that rotate by size and age and are published
into the dump location complete (rename, or one object upload), and are read by the ingest
stage, whose join matches feedback to its response by id, even across weeks.

- `config`: the service's limits and segment settings (`CaptureConfig`);
- `events`: the request bodies (validated) and the JSONL records they become;
- `segments`: durable, rotated, crash-recovered segment files (`SegmentWriter`);
- `committer`: group commit: concurrent requests share one write and one fsync;
- `auth`: bearer tokens from the environment, per-token rate limits;
- `server`: the ASGI app (`create_app`), its OpenAPI spec committed beside it;
- `client`: what an app calls (`CaptureClient`): non-blocking, retried, buffered on disk.
"""
