"""The simulated teacher: the synthetic top-up's distilabel path against it, over HTTP, unchanged.

It must answer like a stronger model (right at its configured accuracy when asked for a
better answer, plausibly wrong when asked for a flawed one), give the same answer to the same
request, and refuse what it cannot read with a 400 that becomes a dropped request, never a row.
"""

from __future__ import annotations

import json

import httpx
import pandas as pd
import pytest

from kto_pipeline.curate.synthesis import SynthesisConfig, TeacherConfig, generate_synthetic, plan_synthesis
from kto_pipeline.curate.synthesis.plan import teacher_messages
from kto_pipeline.ingest.contract import ROW_DTYPES, SIGNAL_THUMB, SOURCE_PRODUCTION, content_hash, frame_from_records
from kto_pipeline.sim.judge_server import serve_oracle_judge
from kto_pipeline.sim.task import is_right, parse_question, task_split
from kto_pipeline.sim.teacher import TEACHER_MODEL, SimTeacher, TeacherRequestError

T0 = pd.Timestamp("2026-03-02 09:00", tz="UTC")


def sim_rows(n_up: int, n_down: int) -> pd.DataFrame:
    """Simulator-like feedback: bare sums, thumbs-up on right answers, thumbs-down on wrong ones."""
    prompts = task_split().traffic[: n_up + n_down]
    rows = []
    for i, prompt in enumerate(prompts):
        a, b = parse_question(prompt)
        label = i < n_up
        rows.append(
            {
                "row_id": content_hash("row", i),
                "record_id": content_hash("rec", i),
                "week": "2026-W10",
                "timestamp": T0 + pd.Timedelta(minutes=i),
                "prompt": prompt,
                "prompt_messages": None,
                "completion": str(a + b if label else a + b - 10),
                "label": label,
                "signal": SIGNAL_THUMB,
                "source": SOURCE_PRODUCTION,
                "conversation_id": f"conv-{i}",
                "user_id": "u",
                "model_version": "base",
                "metadata": None,
                "dump": "d.jsonl",
                "line": i + 1,
            }
        )
    return frame_from_records(rows, ROW_DTYPES)


def requests_for(rows: pd.DataFrame, config: SynthesisConfig | None = None) -> list[list[dict]]:
    plan = plan_synthesis(rows, config)
    return [teacher_messages(r, plan.signal, config) for r in plan.requests]


def test_better_answers_are_right_at_the_configured_accuracy_and_flawed_ones_never():
    improve = requests_for(sim_rows(100, 700))  # desirable short: "answer better" requests
    degrade = requests_for(sim_rows(700, 100))  # undesirable short: "write a flawed answer"
    assert len(improve) >= 300 and len(degrade) >= 300
    teacher = SimTeacher(accuracy=0.9, seed=0)
    right = [is_right(m[-1]["content"], teacher.reply(m)) for m in improve]
    assert 0.85 <= sum(right) / len(right) <= 0.95
    for messages in degrade:
        question = messages[-1]["content"]
        answer = int(teacher.reply(messages))
        a, b = parse_question(question)
        assert answer != a + b and abs(answer - (a + b)) in (1, 10)  # a slip a model of the task makes
    assert teacher.counts["degrade_right"] == 0 and teacher.counts["improve_right"] == sum(right)


def test_the_same_request_gets_the_same_answer_and_the_seed_changes_them():
    improve = requests_for(sim_rows(100, 700))
    first, again, other = SimTeacher(0.5, seed=0), SimTeacher(0.5, seed=0), SimTeacher(0.5, seed=1)
    answers = [first.reply(m) for m in improve]
    assert answers == [again.reply(m) for m in improve]
    assert answers != [other.reply(m) for m in improve]


def test_requests_it_cannot_read_are_refused_with_the_reason():
    teacher = SimTeacher()
    messages = requests_for(sim_rows(100, 700))[0]
    with pytest.raises(TeacherRequestError, match="neither the improve nor the degrade"):
        teacher.reply([{"role": "system", "content": "Be nice."}, *messages[1:]])
    with pytest.raises(TeacherRequestError, match="no question"):
        teacher.reply([messages[0], {"role": "user", "content": "hello"}])
    with pytest.raises(TeacherRequestError, match="system instruction"):
        teacher.reply(messages[1:])
    with pytest.raises(ValueError, match="accuracy"):
        SimTeacher(accuracy=1.5)


def test_distilabel_tops_up_through_the_served_teacher_and_bad_requests_are_4xx_drops(tmp_path):
    rows = sim_rows(60, 140)
    plan = plan_synthesis(rows)
    assert plan.short_label is True and len(plan.requests) > 0
    with serve_oracle_judge(teacher=SimTeacher(accuracy=0.9, seed=0)) as served:
        teacher = TeacherConfig(
            kind="openai", model=served.teacher_model, base_url=served.base_url, max_new_tokens=8, max_retries=0
        )
        result = generate_synthetic(plan, teacher, tmp_path / "cache", timeout_s=180, attempts=2)
        out = result.rows
        assert len(out) == len(plan.requests) and result.dropped.empty
        assert out["label"].all() and set(out["model_version"]) == {TEACHER_MODEL}
        right = [is_right(p, c) for p, c in zip(out["prompt"], out["completion"], strict=True)]
        assert sum(right) / len(right) >= 0.75  # sampled requests: 0.9 give or take

        # The HTTP contract: bad bodies and unreadable requests are 400s naming the problem.
        url = f"{served.base_url}/chat/completions"
        bad = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "not JSON" in bad.json()["error"]["message"]
        unread = httpx.post(url, json={"model": TEACHER_MODEL, "messages": [{"role": "user", "content": "1+1="}]})
        assert unread.status_code == 400 and "system instruction" in unread.json()["error"]["message"]
        models = httpx.get(f"{served.base_url}/models").json()
        assert {m["id"] for m in models["data"]} == {served.model, TEACHER_MODEL}

        # A deployment's own template the teacher cannot read: every request fails and is dropped.
        custom = SynthesisConfig(improve_template="Answer well: {{ prompt }}")
        failed = generate_synthetic(
            plan_synthesis(rows, custom), teacher, tmp_path / "cache2", timeout_s=180, attempts=2
        )
        assert failed.rows.empty and len(failed.dropped) == len(plan.requests)
        assert served.teacher.counts["bad_request"] >= len(plan.requests)
    assert json.dumps(dict(served.teacher.counts))  # plain counts, for the results file
