"""Synthetic top-up: plan and cap (pure), the teacher's prompt, and real distilabel runs.

The distilabel runs use the tiny local Llama from `tiny_models` (its text is nonsense, but the
pipeline, its worker processes, TransformersLLM and the cache folder are all real) and an
OpenAI-compatible server on 127.0.0.1 driven through distilabel's OpenAILLM. A run costs
5-15 s on a busy 2-core box, so the tiny-model run is shared by a module-scoped fixture.

Every run happens under a network guard that refuses and records (to a file) any DNS lookup
of, or connection to, a non-loopback address, with a fake `bs4` installed and an arXiv
reference added to ChatGeneration's docstring: exactly the conditions under which
distilabel's Distiset creation would call arxiv2bibtex.org. distilabel runs in a child
interpreter (and forks its workers from it), so the guard is installed there too, through a
`sitecustomize` on PYTHONPATH; a positive-control test shows it catches the real call.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import types
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from kto_pipeline.curate.synthesis import (
    DROPPED_DTYPES,
    PIPELINE_NAME,
    SynthesisConfig,
    SynthesisReason,
    TeacherConfig,
    apply_cap,
    build_llm,
    build_synthetic_rows,
    generate_synthetic,
    plan_synthesis,
    target_counts,
    teacher_messages,
)
from kto_pipeline.devtools.tiny_models import build_tiny_causal_lm
from kto_pipeline.ingest.contract import (
    ROW_DTYPES,
    SIGNAL_EDIT_ORIGINAL,
    SIGNAL_SYNTHETIC_DEGRADED,
    SIGNAL_SYNTHETIC_IMPROVED,
    SIGNAL_THUMB,
    SOURCE_PRODUCTION,
    SOURCE_SYNTHETIC,
    content_hash,
    frame_from_records,
)

PROJECT = Path(__file__).resolve().parent.parent
T0 = pd.Timestamp("2026-03-02 09:00", tz="UTC")
SECRET = "sk-test-SECRET-4f1c9e"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def make_row(
    i: int,
    label: bool,
    *,
    prompt: str | None = None,
    messages: list | None = None,
    completion: str | None = None,
    signal_: str = SIGNAL_THUMB,
    source: str = SOURCE_PRODUCTION,
) -> dict:
    text = prompt if prompt is not None else f"Question {i}: how do I fix problem number {i}?"
    return {
        "row_id": content_hash("row", i, label),
        "record_id": content_hash("rec", i),
        "week": "2026-W10",
        "timestamp": T0 + pd.Timedelta(minutes=i),
        "prompt": text,
        "prompt_messages": json.dumps(messages) if messages is not None else None,
        "completion": completion or f"Answer {i}.",
        "label": label,
        "signal": signal_,
        "source": source,
        "conversation_id": f"conv-{i}",
        "user_id": f"user-{i % 3}",
        "model_version": "prod-v1",
        "metadata": None,
        "dump": "dump-a.jsonl",
        "line": i + 1,
    }


def frame(rows: list[dict]) -> pd.DataFrame:
    return frame_from_records(rows, ROW_DTYPES)


# ---------------------------------------------------------------------------------------
# Network guard, citation trap, tiny model, local OpenAI-compatible server
# ---------------------------------------------------------------------------------------


# Installed in every Python child started while `guarded` is active (distilabel runs in one,
# and forks its workers from it): the same network guard and citation trap as in this process.
CHILD_SITECUSTOMIZE = """
import os, socket, sys, types, warnings

_LOG = os.environ["KTO_TEST_NETWORK_LOG"]
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_real_getaddrinfo, _real_connect = socket.getaddrinfo, socket.socket.connect


def _record(what):
    with open(_LOG, "a", encoding="utf-8") as fh:
        fh.write(what + "\\n")


def _getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name is not None and name not in _LOOPBACK:
        _record("getaddrinfo " + str(name))
        raise OSError("network guard: lookup of %r refused" % (name,))
    return _real_getaddrinfo(host, *args, **kwargs)


def _connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOOPBACK:
        _record("connect " + str(address[0]))
        raise OSError("network guard: connection to %r refused" % (address[0],))
    return _real_connect(self, address)


socket.getaddrinfo = _getaddrinfo
socket.socket.connect = _connect
_bs4 = types.ModuleType("bs4")
_bs4.BeautifulSoup = object
sys.modules["bs4"] = _bs4
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from distilabel.steps.tasks import ChatGeneration
ChatGeneration.__doc__ = (ChatGeneration.__doc__ or "").rstrip() + __ARXIV_REFERENCE__
"""

ARXIV_REFERENCE = "\n\n    References:\n        - [KTO](https://arxiv.org/abs/2402.01306)\n"


@contextmanager
def network_guard(log: Path):
    """Refuse and record lookups of / connections to anything but loopback in this process."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def record(what: str) -> None:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(what + "\n")

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK:
            record(f"getaddrinfo {name}")
            raise OSError(f"network guard: lookup of {name!r} refused")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            record(f"connect {address[0]}")
            raise OSError(f"network guard: connection to {address[0]!r} refused")
        return real_connect(self, address)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        mp.setattr(socket.socket, "connect", connect)
        yield


@contextmanager
def citation_trap():
    """What makes distilabel's Distiset creation fetch BibTeX: bs4 importable and a step
    whose docstring cites arXiv (distiset.py `_grab_citations` → utils/docstring.py `get_bibtex`)."""
    from kto_pipeline.curate.synthesis.llm import import_distilabel

    import_distilabel()
    from distilabel.steps.tasks import ChatGeneration

    fake_bs4 = types.ModuleType("bs4")
    fake_bs4.BeautifulSoup = object
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "bs4", fake_bs4)
        mp.setattr(ChatGeneration, "__doc__", (ChatGeneration.__doc__ or "").rstrip() + ARXIV_REFERENCE)
        yield


@contextmanager
def guarded(tmp: Path):
    """Network guard + citation trap here and in every Python child; yields the guard's log."""
    log = tmp / "network.log"
    log.touch()
    site = tmp / "guard_site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(CHILD_SITECUSTOMIZE.replace("__ARXIV_REFERENCE__", repr(ARXIV_REFERENCE)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KTO_TEST_NETWORK_LOG", str(log))
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p))
        with network_guard(log), citation_trap():
            yield log


@contextmanager
def capture_module_logs():
    """Records of the kto_pipeline.curate.synthesis loggers: its submodules' loggers propagate here,
    among them `child`'s, which the child's forwarded console output goes to."""
    handler = _ListHandler()
    log = logging.getLogger("kto_pipeline.curate.synthesis")
    old_level = log.level
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    try:
        yield handler.records
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "llama")


def sampling_teacher(model: Path, num_threads: int | None = 1) -> TeacherConfig:
    # The tiny random Llama decodes whitespace greedily; seeded sampling gives visible text
    # and exercises the harder determinism case. One torch thread: several times faster for
    # this tiny model on a busy 2-core box.
    return TeacherConfig(
        model=str(model), max_new_tokens=12, temperature=1.0, seed=7, batch_size=8, num_threads=num_threads
    )


def desirable_short_rows() -> pd.DataFrame:
    """10 thumbs-up, 30 thumbs-down (two of them on one prompt), one synthetic leftover."""
    rows = [make_row(i, i < 10) for i in range(40)]
    rows[39]["prompt"] = rows[38]["prompt"]  # same prompt twice: one request
    rows.append(make_row(99, True, source=SOURCE_SYNTHETIC, signal_=SIGNAL_SYNTHETIC_IMPROVED))
    return frame(rows)


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def tiny_run(tiny_model, tmp_path_factory):
    """One real distilabel run with the tiny model, and what it left behind."""
    from distilabel.constants import PIPELINES_CACHE_DIR

    tmp = tmp_path_factory.mktemp("tiny_run")
    rows = desirable_short_rows()
    plan = plan_synthesis(rows)
    home_cache = PIPELINES_CACHE_DIR / PIPELINE_NAME
    home_before = sorted(home_cache.rglob("*")) if home_cache.exists() else None
    root = logging.getLogger()
    state_before = (
        list(root.handlers),
        root.level,
        signal.getsignal(signal.SIGINT),
        os.environ.get("DISTILABEL_LOG_LEVEL"),
        os.environ.get("DISTILABEL_CACHE_DIR"),
    )
    with guarded(tmp) as net_log, capture_module_logs() as records:
        result = generate_synthetic(
            plan,
            sampling_teacher(tiny_model),
            tmp / "cache",
            log_level="INFO",
            keep_cache=True,
            timeout_s=300,
            attempts=2,
        )
    return types.SimpleNamespace(
        rows=rows,
        plan=plan,
        result=result,
        tmp=tmp,
        net_log=net_log,
        log_records=records,
        home_before=home_before,
        home_after=sorted(home_cache.rglob("*")) if home_cache.exists() else None,
        state_before=state_before,
        state_after=(
            list(root.handlers),
            root.level,
            signal.getsignal(signal.SIGINT),
            os.environ.get("DISTILABEL_LOG_LEVEL"),
            os.environ.get("DISTILABEL_CACHE_DIR"),
        ),
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests_seen: list[dict]


class _ChatHandler(BaseHTTPRequestHandler):
    """POST /v1/chat/completions in OpenAI's response shape: echoes the last user message,
    answers whitespace when it contains "SAY NOTHING"."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.server.requests_seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.path.rstrip("/") != "/v1/chat/completions":
            self.send_error(404)
            return
        last_user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        text = "   \n" if "SAY NOTHING" in last_user else f"Teacher says: {last_user}"
        payload = json.dumps(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def openai_server():
    server = _Server(("127.0.0.1", 0), _ChatHandler)
    server.requests_seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------------------------------
# The plan (pure)
# ---------------------------------------------------------------------------------------


def test_target_counts_balance_and_cap():
    c = target_counts(20, 60)  # 80 real rows, desirable short by 40
    assert (c.short_label, c.n_needed, c.n_cap, c.n_target) == (True, 40, 26, 26)
    assert c.n_cap / (c.n_real + c.n_cap) <= 0.25
    assert target_counts(60, 20).short_label is False
    assert target_counts(20, 60, target_ratio=2.0).n_needed == 10  # up to 60 / 2
    assert target_counts(30, 30).short_label is None
    assert target_counts(35, 60, target_ratio=2.0).n_target == 0  # already above 60 / 2
    assert target_counts(0, 10).n_target == 3  # an empty class is topped up too, within the cap
    assert target_counts(20, 60, max_share=0.0).n_target == 0
    assert target_counts(0, 0).n_target == 0
    # The cap is the largest s with s / (n + s) <= max_share, for any n.
    for n in range(1, 400):
        for share in (0.1, 0.25, 0.5):
            cap = target_counts(0, n, max_share=share).n_cap
            assert cap / (n + cap) <= share + 1e-12 < (cap + 1) / (n + cap + 1)


def test_plan_desirable_short_uses_distinct_thumbs_down_prompts():
    rows = desirable_short_rows()
    plan = plan_synthesis(rows)
    # 40 real rows (the synthetic leftover is ignored): 10 up, 30 down; cap 40/3 → 13
    assert plan.summary() | {"skipped": None} == {
        "short_label": True,
        "signal": SIGNAL_SYNTHETIC_IMPROVED,
        "n_real": 40,
        "n_desirable": 10,
        "n_undesirable": 30,
        "n_needed": 20,
        "n_cap": 13,
        "n_target": 13,
        "n_requests": 17,
        "n_eligible_prompts": 29,
        "shortfall": 0,
        "skipped": None,
        "ignored_synthetic": 1,
    }
    by_id = rows.set_index("row_id")
    assert all(not by_id.loc[r.source_row_id, "label"] for r in plan.requests)
    assert len({r.prompt for r in plan.requests}) == len(plan.requests)
    assert [r.rank for r in plan.requests] == list(range(17))
    assert all(r.row_id == content_hash(r.source_row_id, SIGNAL_SYNTHETIC_IMPROVED, 0) for r in plan.requests)
    # Deterministic and independent of row order; the seed changes the choice.
    shuffled = plan_synthesis(rows.sample(frac=1, random_state=3).reset_index(drop=True))
    assert shuffled.requests == plan.requests
    other = plan_synthesis(rows, SynthesisConfig(seed=1))
    assert {r.source_row_id for r in other.requests} != {r.source_row_id for r in plan.requests}


def test_plan_undesirable_short_uses_thumbs_up_prompts():
    rows = frame([make_row(i, i >= 4) for i in range(20)])  # 16 up, 4 down
    plan = plan_synthesis(rows, SynthesisConfig(overgeneration=1.0))
    assert (plan.short_label, plan.signal, plan.n_target) == (False, SIGNAL_SYNTHETIC_DEGRADED, 6)
    assert len(plan.requests) == 6
    ups = set(rows.loc[rows["label"], "row_id"])
    assert {r.source_row_id for r in plan.requests} <= ups


def test_plan_few_prompts_shortfall_and_extra_generations():
    # 3 up, 30 down but on only 3 distinct prompts: 3 sources for 11 target rows
    rows = frame([make_row(i, i >= 30, prompt=None if i >= 30 else f"Shared question {i % 3}") for i in range(33)])
    plan = plan_synthesis(rows)
    assert plan.n_target == 11 and len(plan.requests) == 3 and plan.shortfall == 8
    more = plan_synthesis(rows, SynthesisConfig(max_generations_per_prompt=3))
    assert [r.generation_index for r in more.requests] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len({r.row_id for r in more.requests}) == 9
    assert [r.source_row_id for r in more.requests[3:6]] == [r.source_row_id for r in more.requests[:3]]


def test_plan_source_signals_and_unusable_conversations():
    rows = [make_row(i, True) for i in range(3)]  # desirable short; the 5 down rows are sources
    rows += [make_row(20, False, messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "?"}])]
    rows += [make_row(21, False, messages=[{"role": "system", "content": "only a system prompt"}])]
    rows += [make_row(22, False, signal_=SIGNAL_EDIT_ORIGINAL), make_row(23, False)]
    bad_json = make_row(24, False)
    bad_json["prompt_messages"] = "{not json"
    rows.append(bad_json)
    plan = plan_synthesis(frame(rows))
    assert plan.skipped == {SynthesisReason.BAD_PROMPT_MESSAGES: 1, SynthesisReason.NOT_ENDING_WITH_USER: 2}
    assert sorted(r.source_row_id for r in plan.requests) == sorted([rows[-3]["row_id"], rows[-2]["row_id"]])
    thumbs_only = plan_synthesis(frame(rows), SynthesisConfig(source_signals=(SIGNAL_THUMB,)))
    assert [r.source_row_id for r in thumbs_only.requests] == [rows[-2]["row_id"]]


def test_plan_nothing_to_do():
    assert plan_synthesis(frame([make_row(i, i % 2 == 0) for i in range(10)])).requests == ()
    assert plan_synthesis(frame([])).requests == ()


# ---------------------------------------------------------------------------------------
# The teacher's prompt, rows from generations, the cap (pure)
# ---------------------------------------------------------------------------------------


def test_teacher_messages_show_the_conversation_and_the_rejected_answer():
    conversation = [
        {"role": "system", "content": "You are Acme's support bot."},
        {"role": "user", "content": "My order is late."},
        {"role": "assistant", "content": "Which order?"},
        {"role": "user", "content": "Order 1234."},
    ]
    # 1 up, 3 down on one conversation: one request, from its first row
    rows = frame(
        [make_row(0, True)]
        + [make_row(i, False, messages=conversation, completion="Orders are never late.") for i in range(1, 4)]
    )
    plan = plan_synthesis(rows, SynthesisConfig(max_share=0.5))
    (request,) = plan.requests
    assert request.source_row_id == rows["row_id"][1]
    messages = teacher_messages(request, plan.signal, plan.config)
    assert messages[1:] == conversation[1:]
    system = messages[0]
    assert system["role"] == "system"
    assert "Orders are never late." in system["content"]  # the rejected answer, to avoid its mistakes
    assert "You are Acme's support bot." in system["content"]  # the product's own system prompt
    assert "rated unhelpful" in system["content"]

    plain = plan_synthesis(
        frame(
            [make_row(i, True, prompt="Capital of France?", completion="Answer 9.") for i in range(5)]
            + [make_row(9, False)]
        )
    )
    degrade = teacher_messages(plain.requests[0], plain.signal, plain.config)
    assert degrade[1:] == [{"role": "user", "content": "Capital of France?"}]
    assert "flaw" in degrade[0]["content"] and "Answer 9." in degrade[0]["content"]

    custom = SynthesisConfig(improve_template="Fix this: {{ response }} (prompt was {{ prompt }})")
    assert teacher_messages(request, plan.signal, custom)[0]["content"] == (
        f"Fix this: Orders are never late. (prompt was {request.prompt})"
    )
    from jinja2.exceptions import UndefinedError

    with pytest.raises(UndefinedError, match="respons"):  # a typo in a template fails loudly
        teacher_messages(request, plan.signal, SynthesisConfig(improve_template="{{ respons }}"))


def test_build_synthetic_rows_fields_and_counted_drops():
    rows = frame([make_row(i, True) for i in range(8)] + [make_row(10 + i, False) for i in range(4)])
    plan = plan_synthesis(rows, SynthesisConfig(max_share=0.5, overgeneration=1.0))  # undesirable short: 4 requests
    r = plan.requests
    generations = {r[0].row_id: "  A flawed answer.\n", r[1].row_id: "", r[2].row_id: " \n\t "}
    # r[3] never came back; a None is a failed LLM call
    out, dropped = build_synthetic_rows(plan, generations, "teacher-x")
    assert dict(out.dtypes.astype(str)) == dict(frame([]).dtypes.astype(str))
    assert dict(dropped.dtypes.astype(str)) == dict(frame_from_records([], DROPPED_DTYPES).dtypes.astype(str))
    assert len(out) == 1 and sorted(dropped["reason"]) == sorted(
        [SynthesisReason.EMPTY_GENERATION, SynthesisReason.EMPTY_GENERATION, SynthesisReason.MISSING_OUTPUT]
    )
    _, failed = build_synthetic_rows(plan, {req.row_id: None for req in r}, "teacher-x")
    assert set(failed["reason"]) == {SynthesisReason.GENERATION_FAILED}

    row = out.iloc[0]
    src = rows.set_index("row_id").loc[r[0].source_row_id]
    assert row["row_id"] == row["record_id"] == content_hash(r[0].source_row_id, SIGNAL_SYNTHETIC_DEGRADED, 0)
    assert row["completion"] == "A flawed answer."
    assert (bool(row["label"]), row["signal"], row["source"]) == (False, SIGNAL_SYNTHETIC_DEGRADED, SOURCE_SYNTHETIC)
    for col in ("week", "timestamp", "prompt", "conversation_id", "user_id"):
        assert row[col] == src[col]
    assert pd.isna(row["prompt_messages"]) and pd.isna(row["dump"]) and row["line"] == 0
    assert row["model_version"] == "teacher-x"
    meta = json.loads(row["metadata"])
    assert meta == {
        "teacher_model": "teacher-x",
        "source_row_id": r[0].source_row_id,
        "generation_index": 0,
        "source_record_id": src["record_id"],
        "source_model_version": "prod-v1",
    }


def test_apply_cap_keeps_plan_order_and_respects_the_share():
    rows = desirable_short_rows()
    plan = plan_synthesis(rows)  # target 13, 17 requests
    gens = {r.row_id: f"better answer {r.rank}" for r in plan.requests}
    generated, _ = build_synthetic_rows(plan, gens, "t")
    filtered = generated.drop(index=[0, 5]).sample(frac=1, random_state=1)  # "dedup" dropped two
    capped = apply_cap(filtered, plan)
    assert len(capped.kept) == 13 and len(capped.dropped) == 2
    assert set(capped.dropped["reason"]) == {SynthesisReason.OVER_CAP}
    ranks = {r.row_id: r.rank for r in plan.requests}
    assert [ranks[i] for i in capped.kept["row_id"]] == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    real = int((rows["source"] != SOURCE_SYNTHETIC).sum())
    assert len(capped.kept) / (real + len(capped.kept)) <= plan.config.max_share

    # Real rows that shrank in their own dedup lower the cap.
    fewer = rows[rows["source"] != SOURCE_SYNTHETIC].iloc[:31]  # 10 up, 21 down: cap 10, needed 11
    assert apply_cap(filtered, plan, real_rows=fewer).n_target == 10
    assert len(apply_cap(generated.iloc[:0], plan).kept) == 0
    with pytest.raises(ValueError, match="not in the plan"):
        apply_cap(frame([make_row(1, True, source=SOURCE_SYNTHETIC)]), plan)


def test_teacher_config_and_llm_factory():
    import pickle

    from kto_pipeline.curate.synthesis.llm import import_distilabel

    import_distilabel()
    from distilabel.models.llms import OpenAILLM, TransformersLLM

    cfg = TeacherConfig(kind="openai", model="m", base_url="http://127.0.0.1:1/v1", api_key=SECRET, seed=3)
    assert SECRET not in repr(cfg) and SECRET not in json.dumps(cfg.describe())
    llm = build_llm(cfg)
    assert isinstance(llm, OpenAILLM) and llm.base_url == "http://127.0.0.1:1/v1"
    assert llm.api_key.get_secret_value() == SECRET and SECRET not in repr(llm)
    assert llm.generation_kwargs["extra_body"] == {"seed": 3} and llm.generation_kwargs["temperature"] == 0.0
    assert build_llm(TeacherConfig(kind="openai", model="m")).api_key.get_secret_value() == "EMPTY"

    local = build_llm(TeacherConfig(model="/models/x", device="cpu", max_new_tokens=9, num_threads=2))
    assert isinstance(local, TransformersLLM)
    assert (local.model, local.device, local.seed, local.num_threads) == ("/models/x", "cpu", 0, 2)
    assert local.generation_kwargs["do_sample"] is False and local.generation_kwargs["max_new_tokens"] == 9
    assert type(pickle.loads(pickle.dumps(local))) is type(local)  # the worker pool pickles it
    assert build_llm(TeacherConfig(model="x", temperature=0.7)).generation_kwargs["do_sample"] is True
    with pytest.raises(ValueError):
        TeacherConfig(kind="vllm", model="x")
    with pytest.raises(ValueError):
        TeacherConfig(model="")


# ---------------------------------------------------------------------------------------
# Real distilabel runs
# ---------------------------------------------------------------------------------------


def test_citation_guard_catches_distilabels_bibtex_fetch(tmp_path):
    """Positive control: under the guard, distilabel's own citation code does try the web, and
    the guard is active in child interpreters too (so the runs below are really checked)."""
    from distilabel.distiset import _grab_citations
    from distilabel.pipeline import Pipeline
    from distilabel.steps.tasks import ChatGeneration

    with guarded(tmp_path) as net_log:
        with Pipeline(name="control") as pipeline:
            ChatGeneration(
                name="t", llm=build_llm(TeacherConfig(kind="openai", model="m", base_url="http://127.0.0.1:1/v1"))
            )
        _grab_citations(pipeline.dag)
        assert net_log.read_text() == "getaddrinfo arxiv2bibtex.org\n"
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import socket, sys\nfrom distilabel.steps.tasks import ChatGeneration\n"
                "assert 'bs4' in sys.modules and 'arxiv.org/abs' in ChatGeneration.__doc__\n"
                "try:\n    socket.getaddrinfo('arxiv2bibtex.org', 443)\nexcept OSError:\n    pass\n"
                "socket.socket().connect(('93.184.215.14', 80))",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert child.returncode == 1 and "network guard" in child.stderr, child.stderr[-2000:]
    assert net_log.read_text().splitlines()[1:] == ["getaddrinfo arxiv2bibtex.org", "connect 93.184.215.14"]


def test_tiny_model_run_tops_up_only_the_short_class(tiny_run):
    plan, result = tiny_run.plan, tiny_run.result
    assert len(plan.requests) == 17
    assert len(result.rows) + len(result.dropped) == 17 and len(result.rows) >= 10
    rows = result.rows
    assert dict(rows.dtypes.astype(str)) == dict(frame([]).dtypes.astype(str))
    assert rows["label"].all() and set(rows["signal"]) == {SIGNAL_SYNTHETIC_IMPROVED}
    assert set(rows["source"]) == {SOURCE_SYNTHETIC}
    assert list(rows["row_id"]) == [r.row_id for r in plan.requests if r.row_id in set(rows["row_id"])]
    sources = tiny_run.rows.set_index("row_id")
    assert not sources.loc[[json.loads(m)["source_row_id"] for m in rows["metadata"]], "label"].any()
    assert (rows["completion"].str.strip() != "").all()
    capped = apply_cap(rows, plan)
    assert len(capped.kept) == min(13, len(rows))
    assert len(capped.kept) / (40 + len(capped.kept)) <= 0.25


def test_tiny_model_run_makes_no_network_call_and_keeps_the_cache_in_cache_dir(tiny_run):
    assert tiny_run.net_log.read_text() == ""
    cache = tiny_run.tmp / "cache"
    files = [p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()]
    assert any(f.endswith(".parquet") and "/steps_outputs/teacher/" in f for f in files)
    assert any("/steps_data/" in f for f in files)  # batch files, written even with use_cache=False
    assert tiny_run.home_after == tiny_run.home_before  # nothing under ~/.cache/distilabel


def test_tiny_model_run_leaves_the_caller_alone_and_logs_at_the_asked_level(tiny_run):
    # distilabel's root-logger, SIGINT and env changes stay in the child.
    assert tiny_run.state_after == tiny_run.state_before
    # log_level="INFO": distilabel's log lines (from the child and its workers) are forwarded.
    text = "\n".join(r.getMessage() for r in tiny_run.log_records)
    assert "distilabel.pipeline" in text and "distilabel.step.teacher" in text
    assert {r.levelno for r in tiny_run.log_records} == {logging.INFO}
    assert {r.name for r in tiny_run.log_records} == {
        "kto_pipeline.curate.synthesis.generate",
        "kto_pipeline.curate.synthesis.child",
    }
    assert set(tiny_run.result.stats["timings"]) == {"wall_s", "child_import_s", "pipeline_s", "attempts"}
    assert tiny_run.result.stats["timings"]["attempts"] in (1, 2)


def test_tiny_model_rerun_is_identical_and_cleans_up(tiny_run, tiny_model, tmp_path):
    cache = tmp_path / "cache"
    with guarded(tmp_path) as net_log:
        again = generate_synthetic(tiny_run.plan, sampling_teacher(tiny_model), cache)
    pd.testing.assert_frame_equal(again.rows, tiny_run.result.rows)
    pd.testing.assert_frame_equal(again.dropped, tiny_run.result.dropped)
    assert net_log.read_text() == ""
    assert list(cache.iterdir()) == []  # keep_cache=False removes the run's folder


def test_failed_teacher_load_raises_with_the_cause(tmp_path):
    root = logging.getLogger()
    before = (list(root.handlers), root.level, signal.getsignal(signal.SIGINT))
    plan = plan_synthesis(frame([make_row(i, i < 2) for i in range(8)]))
    with pytest.raises(RuntimeError, match="Failed to load"):
        generate_synthetic(plan, TeacherConfig(model=str(tmp_path / "no-such-model")), tmp_path / "cache")
    assert (list(root.handlers), root.level, signal.getsignal(signal.SIGINT)) == before
    assert list((tmp_path / "cache").iterdir()) == []


def test_timeout_kills_the_child_and_its_workers(tiny_model, tmp_path):
    import psutil

    plan = plan_synthesis(desirable_short_rows())
    # Other tests' long-lived helpers (a moto server, say) may be children too: only new ones count.
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(TimeoutError):
        generate_synthetic(plan, sampling_teacher(tiny_model), tmp_path / "cache", timeout_s=1.5)
    assert [p for p in psutil.Process().children(recursive=True) if p.pid not in before] == []


def test_a_step_that_failed_to_load_and_hangs_fails_the_run_instead_of_waiting_forever(tmp_path, monkeypatch):
    """distilabel's teardown after a failed step load has been seen to hang (a dead worker, its
    manager waiting): the run must end with the load failure, not wait for the timeout or forever."""
    import psutil

    from kto_pipeline.curate.synthesis import child

    hanging_child = (
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        "print(\"ERROR ❌ Failed to load step 'teacher': no such model\", flush=True); time.sleep(600)"
    )
    monkeypatch.setattr(child, "_CHILD_ENTRY", hanging_child)
    monkeypatch.setattr(child, "LOAD_FAILURE_GRACE_S", 1.0)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(RuntimeError, match="could not load(.|\n)*Failed to load step 'teacher'"):
        child.run_chat_generation(
            [{"request_id": "r1", "messages": [{"role": "user", "content": "hi"}]}],
            TeacherConfig(model="m"),
            tmp_path / "cache",
            timeout_s=120,
        )
    # The child and the worker it started are gone: the whole process group was ended.
    assert [p for p in psutil.Process().children(recursive=True) if p.pid not in before] == []


# A stand-in generation child: reads the payload, hangs the first time (a marker beside its run
# folder says it already did), answers the second; LINGER keeps it alive after the answer.
_FLAKY_CHILD = """
import json, pathlib, subprocess, sys, time
payload = json.loads(sys.stdin.read())
run_dir = pathlib.Path(payload["run_dir"])
marker = run_dir.parent / "hung-once"
if HANG_FIRST and not marker.exists():
    marker.touch()
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    time.sleep(600)
result = {"generations": {r["request_id"]: "answer" for r in payload["records"]}, "timings": {"pipeline_s": 0.1}}
(run_dir / "result.json").write_text(json.dumps(result))
if LINGER:
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    time.sleep(600)
"""


def _flaky_child(hang_first: bool, linger: bool) -> str:
    code = _FLAKY_CHILD.replace("HANG_FIRST", str(hang_first)).replace("LINGER", str(linger))
    return f"exec({code!r})"


def test_a_generation_run_that_hangs_is_killed_and_started_again(tmp_path, monkeypatch):
    import psutil

    from kto_pipeline.curate.synthesis import child

    monkeypatch.setattr(child, "_CHILD_ENTRY", _flaky_child(hang_first=True, linger=False))
    request = [{"request_id": "r1", "messages": [{"role": "user", "content": "hi"}]}]
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(TimeoutError, match="within 3"):  # one attempt: the hang is the error
        child.run_chat_generation(request, TeacherConfig(model="m"), tmp_path / "one", timeout_s=3)
    run = child.run_chat_generation(request, TeacherConfig(model="m"), tmp_path / "two", timeout_s=3, attempts=2)
    assert run.generations == {"r1": "answer"} and run.timings["attempts"] == 2
    assert [p for p in psutil.Process().children(recursive=True) if p.pid not in before] == []
    assert [p.name for p in (tmp_path / "two").iterdir()] == ["hung-once"]  # both run folders removed


def test_a_child_that_wrote_its_result_but_does_not_exit_is_ended_and_its_result_kept(tmp_path, monkeypatch):
    import psutil

    from kto_pipeline.curate.synthesis import child

    monkeypatch.setattr(child, "_CHILD_ENTRY", _flaky_child(hang_first=False, linger=True))
    monkeypatch.setattr(child, "EXIT_GRACE_S", 1.0)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    run = child.run_chat_generation(
        [{"request_id": "r1", "messages": [{"role": "user", "content": "hi"}]}],
        TeacherConfig(model="m"),
        tmp_path / "cache",
        timeout_s=120,
    )
    assert run.generations == {"r1": "answer"} and run.timings["wall_s"] < 60
    assert [p for p in psutil.Process().children(recursive=True) if p.pid not in before] == []


def test_openai_compatible_endpoint(openai_server, tmp_path, capfd):
    host, port = openai_server.server_address
    conversation = [
        {"role": "system", "content": "You are Acme's support bot."},
        {"role": "user", "content": "My order is late."},
        {"role": "assistant", "content": "Which order?"},
        {"role": "user", "content": "Order 1234."},
    ]
    prompts = [None, None, None, "Please SAY NOTHING here", None, None]
    rows = []
    for k in range(6):  # 6 distinct thumbs-up prompts, each liked twice
        for rep in range(2):
            rows.append(
                make_row(
                    10 * k + rep,
                    True,
                    prompt=prompts[k] or f"Explain topic {k}",
                    messages=conversation if k == 0 else None,
                    completion=f"Good answer {k}",
                )
            )
    rows += [make_row(100 + i, False) for i in range(4)]
    plan = plan_synthesis(frame(rows))  # undesirable short: target 5, 6 prompts → 6 requests
    assert (plan.short_label, plan.n_target, len(plan.requests)) == (False, 5, 6)

    teacher = TeacherConfig(
        kind="openai",
        model="teacher-model",
        base_url=f"http://{host}:{port}/v1",
        api_key=SECRET,
        max_new_tokens=64,
        seed=11,
        batch_size=4,
        max_retries=0,
    )
    openai_server.requests_seen.clear()
    with guarded(tmp_path) as net_log, capture_module_logs() as records:
        result = generate_synthetic(plan, teacher, tmp_path / "cache", log_level="DEBUG", keep_cache=True)
    assert net_log.read_text() == ""
    assert records  # DEBUG: distilabel talks, and none of it may carry the key

    seen = openai_server.requests_seen
    assert len(seen) == 6 and {s["path"] for s in seen} == {"/v1/chat/completions"}
    assert {s["auth"] for s in seen} == {f"Bearer {SECRET}"}
    for s in seen:
        body = s["body"]
        assert (body["model"], body["seed"], body["temperature"], body["max_tokens"]) == ("teacher-model", 11, 0.0, 64)
        assert body["messages"][0]["role"] == "system" and "flaw" in body["messages"][0]["content"]
    multi = [s["body"]["messages"] for s in seen if len(s["body"]["messages"]) > 2]
    assert len(multi) == 1 and multi[0][1:] == conversation[1:]
    assert "Good answer 0" in multi[0][0]["content"] and "Acme's support bot" in multi[0][0]["content"]

    out = result.rows
    assert len(out) == 5 and list(result.dropped["reason"]) == [SynthesisReason.EMPTY_GENERATION]
    assert (~out["label"]).all() and set(out["signal"]) == {SIGNAL_SYNTHETIC_DEGRADED}
    assert set(out["model_version"]) == {"teacher-model"}
    assert all(c.startswith("Teacher says: ") for c in out["completion"])
    assert len(apply_cap(out, plan).kept) == 5

    # The key went over the wire only: not to the cache folder, the logs or the console.
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert not any(SECRET in r.getMessage() for r in records)
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err


def test_runs_from_a_plain_python_process_quietly_and_not_in_home(tiny_model, tmp_path):
    """A plain `python script.py` (no pytest, no __main__ guard, HOME pointing at an empty
    folder) that used torch's OpenMP threads first: works (no fork deadlock), logs nothing at
    the default WARNING level, writes nothing under ~/.cache."""
    home = tmp_path / "home"
    home.mkdir()
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, sys
        import torch
        torch.randn(1500, 1500).cos().sum()  # starts OpenMP's thread pool in this process
        sys.path.insert(0, {str(PROJECT)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_synthesis import desirable_short_rows, sampling_teacher
        from kto_pipeline.curate.synthesis import plan_synthesis, generate_synthetic
        from pathlib import Path
        plan = plan_synthesis(desirable_short_rows())
        # torch's default threads in the worker: a forked worker deadlocks on OpenMP only with > 1
        res = generate_synthetic(plan, sampling_teacher(Path({str(tiny_model)!r}), num_threads=None),
                                 {str(tmp_path / "cache")!r})
        print("RESULT", json.dumps({{"rows": len(res.rows), "dropped": len(res.dropped)}}))
    """)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISTILABEL_", "XDG_", "HF_HOME"))}
    env.update(HOME=str(home), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["rows"] + result["dropped"] == 17 and result["rows"] >= 10
    noise = [
        line for line in (proc.stdout + proc.stderr).splitlines() if line.strip() and not line.startswith("RESULT")
    ]
    assert noise == [], noise[:20]
    assert not (home / ".cache" / "distilabel").exists()
    assert not (home / ".cache" / "huggingface" / "datasets").exists()  # no Distiset → no datasets cache
    assert list((tmp_path / "cache").iterdir()) == []
