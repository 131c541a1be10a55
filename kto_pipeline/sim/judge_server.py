"""The oracle as the pipeline's judge, served like a real one: an OpenAI-compatible
`/v1/chat/completions` endpoint on a free loopback port, shared with the simulated teacher
(`teacher.py`: requests naming its model go to it).

The eval report's judge client sends it the production template (`evaluate/judge_prompt.md`)
filled with a held-out prompt and two answers, in both orders, and parses its reply; nothing
in that path knows it talks to a simulator. The oracle reads the request the way a judge
model reads it, through the template's own text: the literal parts between the slots, found
in the file at run time, cut the request back into prompt, answer A and answer B (so editing
the template cannot silently break it: a request it cannot read gets a reply without a
verdict, which the client counts as junk). It knows the task's right answers: a right answer
beats a wrong one, and two right (or two wrong) answers are a tie.

Starlette and uvicorn, both already here through dagster-webserver; the server runs in a
thread of the main job, beside the `dagster job execute` subprocess that calls it.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from kto_pipeline.evaluate.judge import SLOTS, load_template
from kto_pipeline.sim.task import is_right, parse_question
from kto_pipeline.sim.teacher import TEACHER_MODEL, SimTeacher, TeacherRequestError

ORACLE_MODEL = "oracle-judge"


def template_pattern(template: str) -> re.Pattern:
    """A regex that cuts a filled template back into its slots (named groups)."""
    parts = re.split(r"\{(" + "|".join(SLOTS) + r")\}", template)
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.*)" for i, p in enumerate(parts))
    return re.compile(regex, re.DOTALL)


@dataclass
class OracleJudge:
    """Verdicts from the task's right answers; counts what it was asked."""

    pattern: re.Pattern
    counts: Counter = field(default_factory=Counter)

    def reply(self, text: str) -> str:
        match = self.pattern.fullmatch(text)
        if match is None:
            self.counts["unreadable"] += 1
            return "I cannot read this request."
        prompt, a, b = match.group("prompt"), match.group("answer_a").strip(), match.group("answer_b").strip()
        try:
            parse_question(prompt)
        except ValueError:
            self.counts["no_question"] += 1
            return "There is no question I can check."
        right_a, right_b = is_right(prompt, a), is_right(prompt, b)
        verdict = "A" if right_a and not right_b else "B" if right_b and not right_a else "C"
        self.counts[verdict] += 1
        word = {True: "right", False: "wrong"}
        return f"Answer A is {word[right_a]} and answer B is {word[right_b]}.\n[[{verdict}]]"


def _bad_request(message: str):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=400)


def build_app(judge: OracleJudge, teacher: SimTeacher | None = None):
    """The endpoint: requests for the teacher's model name go to the teacher, all others to the judge."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return _bad_request("the body is not JSON")
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return _bad_request("messages must be a list of {role, content} objects")
        if teacher is not None and body.get("model") == TEACHER_MODEL:
            counts = teacher.counts
            try:
                content = teacher.reply(messages)
            except TeacherRequestError as exc:
                teacher.counts["bad_request"] += 1
                return _bad_request(str(exc))
        else:
            counts = judge.counts
            text = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
            content = judge.reply(text)
        counts["calls"] += 1
        return JSONResponse(
            {
                "id": f"chatcmpl-sim-{body.get('model')}-{counts['calls']}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", ORACLE_MODEL),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        )

    async def models(request: Request) -> JSONResponse:
        names = [ORACLE_MODEL] + ([TEACHER_MODEL] if teacher is not None else [])
        return JSONResponse(
            {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "sim"} for n in names]}
        )

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)])


@dataclass(frozen=True)
class RunningJudge:
    base_url: str
    model: str
    judge: OracleJudge
    teacher: SimTeacher | None = None
    teacher_model: str = TEACHER_MODEL


@contextmanager
def serve_app(app, *, start_timeout_s: float = 20.0) -> Iterator[str]:
    """Serve an ASGI app on a free 127.0.0.1 port in a thread; yields its `/v1` base URL, stops it after."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # port 0: the OS picks a free port; the socket keeps it ours
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="oracle-judge", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"the judge server did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def serve_oracle_judge(template_path: str | None = None, teacher: SimTeacher | None = None) -> Iterator[RunningJudge]:
    """The oracle judge (and the simulated teacher, when given) on loopback for the block."""
    judge = OracleJudge(template_pattern(load_template(template_path)))
    with serve_app(build_app(judge, teacher)) as base_url:
        yield RunningJudge(base_url=base_url, model=ORACLE_MODEL, judge=judge, teacher=teacher)
