"""The pairwise judge: template file, verdict parsing, both orders, junk, and the OpenAI-compatible path
(the simulator's oracle judge over HTTP, a scripted endpoint, an endpoint that is down)."""

from __future__ import annotations

import socket

import pytest

from kto_pipeline import evaluate as ev
from kto_pipeline.evaluate.judge import render
from kto_pipeline.sim.judge_server import serve_app, serve_oracle_judge

STATS = {"confidence": 0.95, "n_resamples": 500, "seed": 0}


class Scripted:
    """A judge backend that answers from a function of the request (and records what it was asked)."""

    name = "scripted"

    def __init__(self, answer):
        self.answer, self.asked = answer, []

    def complete(self, requests):
        self.asked.extend(requests)
        return [self.answer(r) for r in requests]


def test_the_template_is_one_file_with_three_slots_filled_in_one_pass(tmp_path):
    template = ev.load_template()
    assert ev.JUDGE_PROMPT_FILE.name == "judge_prompt.md" and "[[C]]" in template
    text = render(template, "2+2=", "4 {answer_b}", "5")
    assert "4 {answer_b}" in text and "{prompt}" not in text and text.count("5") >= 1
    bad = tmp_path / "bad.md"
    bad.write_text("Compare {answer_a} and {answer_b}.")
    with pytest.raises(ValueError, match="prompt"):
        ev.load_template(bad)
    own = tmp_path / "own.md"
    own.write_text("Q: {prompt}\nA: {answer_a}\nB: {answer_b}\nVerdict as [[A]], [[B]] or [[C]].")
    assert ev.load_template(own).startswith("Q: {prompt}")


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Answer A is right.\n[[A]]", "A"),
        ("reasoning ... [[ b ]]", "B"),
        ("Both fine. [[C]]", "tie"),
        ("[[TIE]]", "tie"),
        ("I think [[A]] ... on reflection, final: [[A]]", "A"),
        ("[[A]] or maybe [[B]]", None),
        ("A is better", None),
        ("", None),
        (None, None),
    ],
)
def test_verdict_parsing_is_strict_about_junk(reply, verdict):
    assert ev.parse_verdict(reply) == verdict


def test_both_orders_are_asked_and_a_position_biased_judge_scores_ties():
    always_a = Scripted(lambda r: "[[A]]")
    result = ev.judge_pairs(["p1", "p2", "p3"], ["x", "y", "z"], ["u", "v", "w"], always_a, **STATS)
    assert result.calls == len(always_a.asked) == 6
    # Each pair was asked with the candidate as A, then as B.
    assert "[Answer A]\nx\n" in always_a.asked[0] and "[Answer B]\nx\n" in always_a.asked[1]
    assert [p.score for p in result.pairs] == [0.5, 0.5, 0.5] and result.inconsistent == 3
    assert result.win_rate.estimate == 0.5


def test_junk_is_counted_and_left_out_and_identical_answers_are_not_asked():
    def answer(request):
        if "junk" in request or "[Answer A]\nhalf" in request:
            return "no idea"
        return "[[A]]" if "[Answer A]\ngood" in request else "[[B]]"

    judge = Scripted(answer)
    prompts = ["p1", "p2", "p3", "p4"]
    result = ev.judge_pairs(prompts, ["good", "junk", "same", "good"], ["meh", "meh", "same", "half"], judge, **STATS)
    assert result.calls == 6  # p3's identical answers were not sent
    assert result.junk == 3  # both orders of p2, and p4 with "half" shown as A
    labels = [p.label for p in result.pairs]
    assert labels[0] == "candidate wins" and labels[1] == "no verdict" and labels[2] == "tie (identical answers)"
    assert result.win_rate.n == 3  # p1, p3 (tie) and p4 (one valid order); p2 left out
    assert result.win_rate.estimate == pytest.approx((1.0 + 0.5 + 1.0) / 3)


def test_the_oracle_judge_answers_the_production_client_over_http():
    with serve_oracle_judge() as served:
        judge = ev.OpenAIJudge(served.model, served.base_url, concurrency=2)
        prompts = ["23+45=", "Hi, I'm <PERSON_1>. 10+10=", "11+11=", "12+12="]
        result = ev.judge_pairs(prompts, ["68", "21", "22", "24"], ["67", "20", "21", "24"], judge, **STATS)
        counts = dict(served.judge.counts)
    assert [p.label for p in result.pairs] == [
        "candidate wins",
        "champion wins",
        "candidate wins",
        "tie (identical answers)",
    ]
    assert result.junk == 0 and result.inconsistent == 0 and counts["calls"] == result.calls == 6
    assert result.win_rate.estimate == pytest.approx(2.5 / 4)


def test_a_request_the_oracle_cannot_read_and_a_dead_endpoint_are_junk_not_errors():
    with serve_oracle_judge() as served:
        judge = ev.OpenAIJudge(served.model, served.base_url)
        other = "Which is better for {prompt}? 1) {answer_a} 2) {answer_b}"
        result = ev.judge_pairs(["1+1="], ["2"], ["3"], judge, template=other, **STATS)
        assert served.judge.counts["unreadable"] == 2
    assert result.junk == 2 and result.pairs[0].score is None and result.win_rate.n == 0

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    dead = ev.OpenAIJudge("m", f"http://127.0.0.1:{port}/v1", max_retries=0, timeout_s=2)
    result = ev.judge_pairs(["1+1="], ["2"], ["3"], dead, **STATS)
    assert result.junk == 2 and result.win_rate.n == 0


def test_a_scripted_openai_compatible_endpoint_sees_both_orders():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    seen = []

    async def chat(request):
        body = await request.json()
        seen.append(body)
        text = body["messages"][-1]["content"]
        verdict = "[[A]]" if "[Answer A]\nfirst" in text else "[[B]]"  # prefers the answer "first"
        message = {"role": "assistant", "content": f"ok {verdict}"}
        return JSONResponse(
            {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
             "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
        )  # fmt: skip

    with serve_app(Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])) as url:
        result = ev.judge_pairs(["q"], ["first"], ["second"], ev.OpenAIJudge("judge-7b", url), **STATS)
    assert len(seen) == 2 and {b["model"] for b in seen} == {"judge-7b"}
    assert all(b["temperature"] == 0.0 for b in seen)
    assert result.pairs[0].score == 1.0 and result.inconsistent == 0


def test_the_win_rate_interval_is_seeded():
    judge = Scripted(lambda r: "[[A]]" if "[Answer A]\nw" in r else "[[B]]" if "[Answer B]\nw" in r else "[[A]]")
    cand = ["w", "l", "w", "w", "l", "w"]
    base = ["l", "w", "x", "l", "w", "l"]
    a = ev.judge_pairs(list("abcdef"), cand, base, judge, **STATS)
    b = ev.judge_pairs(list("abcdef"), cand, base, judge, **STATS)
    assert a.win_rate == b.win_rate and a.win_rate.low < a.win_rate.estimate < a.win_rate.high
