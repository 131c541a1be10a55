"""The capture service: an ASGI app (FastAPI) that records responses and feedback durably.

    POST /v1/responses   one response shown           → 200 {"accepted", "duplicates"}
    POST /v1/feedback    one thumb and/or edit         → 200
    POST /v1/events      a batch of either, any mix    → 200
    GET  /healthz        liveness, no token needed

A 200 means the events are on disk. Bad requests get a 4xx whose body names the problem: 401
without a valid bearer token, 413 over the body limit, 422 naming each invalid field and why,
429 over the token's rate (with Retry-After). Run several workers or replicas freely: each
writes its own segments.
"""

from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from kto_pipeline.capture.auth import RateLimiter, parse_tokens, token_name
from kto_pipeline.capture.committer import GroupCommitter
from kto_pipeline.capture.config import CaptureConfig
from kto_pipeline.capture.events import Accepted, EventBatch, FeedbackEvent, ResponseEvent, field_over_limit
from kto_pipeline.capture.segments import SegmentWriter
from kto_pipeline.config.deployment import CAPTURE_TOKENS, DeploymentSettings

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
_bearer = HTTPBearer(auto_error=False, description=f"A token from {CAPTURE_TOKENS}")


class BodyLimit:
    """Refuses bodies over `limit` bytes with a 413, also when no Content-Length is sent."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            return await self.app(scope, counted, send)
        except _TooLarge:
            return await self._refuse(send)

    async def _refuse(self, send):
        body = json.dumps({"detail": f"request body over the limit of {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class Problem(BaseModel):
    detail: str = Field(description="What was wrong with the request, or why it was not recorded")


PROBLEMS: dict[int | str, dict] = {
    400: {"model": Problem, "description": "The body cannot be parsed as JSON"},
    401: {"model": Problem, "description": "No valid bearer token"},
    413: {"model": Problem, "description": "The body, or the number of events, is over the limit"},
    429: {"model": Problem, "description": "Over the token's event rate; retry after Retry-After seconds"},
    503: {"model": Problem, "description": "Not recorded (the disk failed); retry"},
}


def create_app(
    location: str, tokens: dict[str, str], config: CaptureConfig | None = None, storage_options: dict | None = None
) -> FastAPI:
    """The app writing into the dump `location`; `tokens` maps each accepted token to its name."""
    config = config or CaptureConfig()
    limiter = RateLimiter(config.rate_events_per_s, config.rate_burst_events)
    state: dict[str, GroupCommitter] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        committer = GroupCommitter(SegmentWriter(location, config, storage_options))
        committer.start()
        state["committer"] = committer
        yield
        await committer.stop()

    app = FastAPI(
        title="kto-pipeline capture",
        version="1",
        summary="Record responses shown and users' thumbs and edits; written durably as feedback dumps.",
        lifespan=lifespan,
    )

    # async: FastAPI runs a plain-def dependency in its thread pool, a quarter of a request's time.
    async def caller(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
        name = token_name(tokens, credentials.credentials) if credentials else None
        if name is None:
            raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        return name

    async def record(name: str, events: list[ResponseEvent | FeedbackEvent], batch: bool = False) -> Accepted:
        if len(events) > config.max_batch_events:
            raise HTTPException(413, f"{len(events)} events in one request; the limit is {config.max_batch_events}")
        received = datetime.now(UTC)
        records = [e.record(received) for e in events]
        for i, rec in enumerate(records):
            field = field_over_limit(rec, config.max_text_chars)
            if field is not None:
                loc = ("body", "events", i, field) if batch else ("body", field)
                msg = f"{field} is over {config.max_text_chars} characters"
                raise RequestValidationError([{"type": "string_too_long", "loc": loc, "msg": msg, "input": None}])
        wait = limiter.take(name, len(records))
        if wait:
            raise HTTPException(
                429,
                f"rate limit of {config.rate_events_per_s:g} events/s for token {name!r}",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        fresh = await state["committer"].submit(records)
        return Accepted(accepted=sum(fresh), duplicates=len(fresh) - sum(fresh))

    @app.post("/v1/responses", response_model=Accepted, responses=PROBLEMS, summary="Record one response shown")
    async def post_response(event: ResponseEvent, name: str = Depends(caller)) -> Accepted:
        return await record(name, [event])

    @app.post(
        "/v1/feedback",
        response_model=Accepted,
        responses=PROBLEMS,
        summary="Record a thumb and/or an edit on a response",
    )
    async def post_feedback(event: FeedbackEvent, name: str = Depends(caller)) -> Accepted:
        return await record(name, [event])

    @app.post(
        "/v1/events", response_model=Accepted, responses=PROBLEMS, summary="Record a batch of responses and feedback"
    )
    async def post_events(batch: EventBatch, name: str = Depends(caller)) -> Accepted:
        return await record(name, batch.events, batch=True)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's own handler echoes the input, and a lone surrogate in it cannot be encoded
        # as UTF-8 (a 500); escaped as ASCII JSON it can.
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True, default=str)
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(OSError)
    async def disk_error(request: Request, exc: OSError) -> JSONResponse:
        # The events were not acknowledged; the client retries. Not the caller's fault: 503.
        return JSONResponse({"detail": f"events not recorded, retry: {exc.strerror or exc}"}, status_code=503)

    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    return app


def app_from_env() -> FastAPI:
    """The app `kto-pipeline capture serve` runs in each uvicorn worker, configured by the
    deployment's environment (the dump location, the tokens, CaptureConfig overrides)."""
    settings = DeploymentSettings.from_env()
    return create_app(
        settings.dumps_location(), parse_tokens(os.environ.get(CAPTURE_TOKENS)), CaptureConfig(**settings.capture)
    )
