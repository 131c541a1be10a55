"""`kto-pipeline capture serve`: the capture service under uvicorn (one or several workers)."""

from __future__ import annotations

import argparse
import json
import os

from kto_pipeline.capture.auth import parse_tokens
from kto_pipeline.config.deployment import CAPTURE_TOKENS, DeploymentSettings, settings_env


def add_parser(sub: argparse._SubParsersAction) -> None:
    capture = sub.add_parser("capture", help="the feedback capture service").add_subparsers(
        dest="capture_command", required=True
    )
    p = capture.add_parser(
        "serve",
        help="record responses and feedback over HTTP into the dump location "
        f"(tokens from {CAPTURE_TOKENS}; limits from {DeploymentSettings.variable('capture')})",
    )
    p.add_argument(
        "--dumps",
        help=f"dump location (default: {DeploymentSettings.variable('dumps')}, else ./feedback_dumps)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes; each writes its own segments")
    p.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    parse_tokens(os.environ.get(CAPTURE_TOKENS))  # fail now, with the reason, not in each worker
    if args.dumps:
        os.environ.update(settings_env(dumps=args.dumps))
    settings = DeploymentSettings.from_env()
    print(f"capture: writing to {settings.dumps_location()}; limits {json.dumps(settings.capture) or 'default'}")
    uvicorn.run(
        "kto_pipeline.capture.server:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
    )
    return 0
