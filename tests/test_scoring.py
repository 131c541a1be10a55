"""DEITA scoring (local and OpenAI-compatible backends) and the diversity-aware selection."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
import torch

from kto_pipeline.curate.deita import (
    COMPLEXITY_TEMPLATE,
    FALLBACK_SCORE,
    QUALITY_TEMPLATE,
    DeitaScorer,
    OpenAIScoreBackend,
    TransformersScoreBackend,
    digit_logprobs,
    digit_token_ids,
)
from kto_pipeline.curate.select import (
    SelectionConfig,
    SelectionReason,
    greedy_diverse,
    largest_remainder,
    select_diverse,
)
from kto_pipeline.devtools.tiny_models import build_tiny_causal_lm

PROMPTS = [
    "What is the capital of France?",
    "Explain how a hash map works, with an example in Python.",
    "Hi",
    "Summarise this email for me and draft a polite reply to the customer about the refund, "
    "mentioning that the refund takes five working days and apologising for the delay.",
    "Write a short poem about the sea.",
]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("scoring") / "tiny")


@pytest.fixture(scope="module")
def backend(tiny_lm):
    return TransformersScoreBackend(tiny_lm, device="cpu", batch_size=4)


def rendered(prompts=PROMPTS):
    return [COMPLEXITY_TEMPLATE.format(instruction=p) for p in prompts]


# ---------------------------------------------------------------------------------------
# Templates and the score
# ---------------------------------------------------------------------------------------


def test_templates_are_deitas():
    assert COMPLEXITY_TEMPLATE.format(instruction="Q") == (
        "You are a helpful assistant. Please identify the complexity score of the following user query. "
        "\n##Query: Q  \n##Complexity: "
    )
    assert QUALITY_TEMPLATE.format(instruction="Q", output="A") == (
        "You are a helpful assistant. Please identify the quality score of the Response corresponding to "
        "the Question. \n #Question#:\nQ\n#Response#:\nA \n##Quality: "
    )


def test_score_matches_hand_computation(backend, tiny_lm):
    prompt = rendered()[1]
    tok, model = backend.tokenizer, backend.model
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].double()
    digit_ids = [tok.convert_tokens_to_ids(d) for d in "123456"]
    p = torch.softmax(logits[digit_ids], dim=0).numpy()
    expected = float((p * np.arange(1, 7)).sum())
    got = backend.score([prompt])
    assert got.dtype == np.float64 and got.shape == (1,)
    assert got[0] == pytest.approx(expected, abs=1e-6)
    assert 1.0 < got[0] < 6.0


def test_batching_and_padding_do_not_change_scores(tiny_lm, backend):
    prompts = rendered()
    one = TransformersScoreBackend(tiny_lm, device="cpu", batch_size=1).score(prompts)
    four = backend.score(prompts)
    np.testing.assert_allclose(four, one, atol=1e-5, rtol=0)
    # Input order is kept whatever the length sort did; distinct prompts differ.
    rev = backend.score(prompts[::-1])
    np.testing.assert_allclose(rev, four[::-1], atol=1e-5, rtol=0)
    assert len(np.unique(np.round(four, 6))) == len(prompts)


def test_digit_ids_bare_first_and_variants(backend):
    tok = backend.tokenizer
    bare = digit_token_ids(tok, "tiny")
    assert [g[0] for g in bare] == [tok.convert_tokens_to_ids(d) for d in "123456"]
    assert all(len(g) == 1 for g in bare)
    merged = digit_token_ids(tok, "tiny", merge_variants=True)
    assert [g[0] for g in merged] == [g[0] for g in bare]
    assert tok.convert_tokens_to_ids("Ġ1") in merged[0]


def test_digit_not_single_token_is_a_clear_error():
    class SplitDigits:
        def get_vocab(self):
            return {}

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [7, 8]}

        def decode(self, ids):
            return "x"

        def convert_ids_to_tokens(self, ids):
            return ["▁", "x"]

    with pytest.raises(ValueError, match="org/scorer-model.*'1' is not a single token"):
        digit_token_ids(SplitDigits(), "org/scorer-model")


def test_truncation_keeps_template_and_tail(tiny_lm):
    b = TransformersScoreBackend(tiny_lm, device="cpu", batch_size=2, max_length=96)
    long_q = "How do I reset my password? " * 400
    long_a = "Open the settings page and choose reset password. " * 400
    cx = b.prepare(COMPLEXITY_TEMPLATE, [{"instruction": long_q}, {"instruction": "short"}])
    q = b.prepare(QUALITY_TEMPLATE, [{"instruction": long_q, "output": long_a}])
    assert b.stats["truncated"] == 2
    assert cx[1] == COMPLEXITY_TEMPLATE.format(instruction="short")
    head = COMPLEXITY_TEMPLATE.split("{instruction}")[0]
    assert cx[0].startswith(head) and cx[0].endswith("  \n##Complexity: ")
    assert q[0].startswith(QUALITY_TEMPLATE.split("{instruction}")[0]) and q[0].endswith(" \n##Quality: ")
    assert "\n#Response#:\nOpen the settings" in q[0]
    for text in (cx[0], q[0]):
        assert "[...]" in text
        assert len(b.tokenizer(text)["input_ids"]) <= 96
    scores = b.score(cx + q)
    assert np.isfinite(scores).all() and ((scores >= 1) & (scores <= 6)).all()


def test_truncation_without_tokenizer_counts_bytes():
    class Remote(OpenAIScoreBackend):
        def score(self, prompts):  # never called
            raise AssertionError

    b = Remote("m", "http://127.0.0.1:9/v1", max_length=300)
    (text,) = b.prepare(COMPLEXITY_TEMPLATE, [{"instruction": "é" * 5000}])
    assert text.endswith("##Complexity: ") and len(text.encode("utf-8")) + 8 <= 300
    assert "\ufffd" not in text


# ---------------------------------------------------------------------------------------
# DeitaScorer: one call per distinct text
# ---------------------------------------------------------------------------------------


class CountingBackend(TransformersScoreBackend):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[str] = []

    def score(self, prompts):
        self.seen.extend(prompts)
        return super().score(prompts)


def test_repeated_prompts_are_scored_once(tiny_lm):
    cx = CountingBackend(tiny_lm, device="cpu", batch_size=8)
    q = CountingBackend(tiny_lm, device="cpu", batch_size=8)
    rows = pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(6)],
            "prompt": ["P1", "P1", "P2", "P1", "P2", "P3"],
            "completion": ["A", "A", "B", "C", "B", "A"],
        }
    )
    result = DeitaScorer(cx, q).score(rows)
    assert sorted(cx.seen) == sorted(COMPLEXITY_TEMPLATE.format(instruction=p) for p in ("P1", "P2", "P3"))
    assert len(q.seen) == len(set(q.seen)) == 4  # (P1,A) (P2,B) (P1,C) (P3,A)
    s = result.scores
    assert list(s.columns) == ["row_id", "complexity", "quality", "evol_score"]
    assert list(s["row_id"]) == list(rows["row_id"])
    assert (s.dtypes[["complexity", "quality", "evol_score"]] == np.float64).all()
    np.testing.assert_array_equal(s["evol_score"], s["complexity"] * s["quality"])
    assert s.loc[0, "quality"] == s.loc[1, "quality"] != s.loc[3, "quality"]
    assert s.loc[0, "complexity"] == s.loc[3, "complexity"] != s.loc[2, "complexity"]
    assert result.info["unique_prompts"] == 3 and result.info["unique_pairs"] == 4
    assert result.info["quality_stats"]["prompts"] == 4
    # Same numbers as scoring each row alone.
    alone = cx.score([QUALITY_TEMPLATE.format(instruction="P1", output="C")])
    assert s.loc[3, "quality"] == pytest.approx(alone[0], abs=1e-6)


# ---------------------------------------------------------------------------------------
# OpenAI-compatible backend against a local server computing real logprobs
# ---------------------------------------------------------------------------------------


class FakeVLLM:
    """POST /v1/completions in the OpenAI shape; top_logprobs from the tiny model's real
    next-token log-softmax (mode "real"), or with every digit token removed ("no_digits")."""

    def __init__(self, tokenizer, model, mode: str = "real"):
        self.tokenizer, self.model, self.mode = tokenizer, model, mode
        self.requests: list[dict] = []
        self.authorizations: list[str | None] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.authorizations.append(self.headers.get("Authorization"))
                if self.path != "/v1/completions":
                    self.send_error(404)
                    return
                payload = json.dumps(fake.complete(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def complete(self, body: dict) -> dict:
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        k = int(body["logprobs"])
        choices = []
        with self.lock:
            self.requests.append(body)
            for index, prompt in enumerate(prompts):
                ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"]
                with torch.no_grad():
                    logprobs = torch.log_softmax(self.model(input_ids=ids).logits[0, -1].double(), dim=-1)
                if self.mode == "no_digits":
                    for tid in range(len(logprobs)):
                        if self.tokenizer.decode([tid]).strip() in "123456" and self.tokenizer.decode([tid]).strip():
                            logprobs[tid] = -math.inf
                values, top_ids = torch.topk(logprobs, min(k, len(logprobs)))
                top = {self.tokenizer.decode([int(t)]): float(v) for t, v in zip(top_ids, values) if math.isfinite(v)}
                first = self.tokenizer.decode([int(top_ids[0])])
                choices.append(
                    {
                        "index": index,
                        "text": first,
                        "finish_reason": "length",
                        "logprobs": {
                            "tokens": [first],
                            "token_logprobs": [float(values[0])],
                            "top_logprobs": [top],
                            "text_offset": [0],
                        },
                    }
                )
        return {
            "id": "cmpl-test",
            "object": "text_completion",
            "created": 0,
            "model": body["model"],
            "choices": choices,
            "usage": {"prompt_tokens": 0, "completion_tokens": len(prompts), "total_tokens": len(prompts)},
        }

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_openai_backend_equals_local_backend(tiny_lm, backend):
    prompts = rendered()
    vocab = len(backend.tokenizer)
    with FakeVLLM(backend.tokenizer, backend.model) as server:
        bare = OpenAIScoreBackend(
            "tiny", server.url, api_key=None, batch_size=2, concurrency=2, logprobs=vocab, merge_variants=False
        )
        got = bare.score(prompts)
        assert len(server.requests) == 3  # ceil(5 / 2) batched requests
        assert sorted(len(r["prompt"]) for r in server.requests) == [1, 2, 2]
        assert all(r["max_tokens"] == 1 and r["temperature"] == 0 for r in server.requests)
        default = OpenAIScoreBackend("tiny", server.url, batch_size=4, logprobs=vocab).score(prompts)
        merged = OpenAIScoreBackend("tiny", server.url, batch_size=4, logprobs=vocab, merge_variants=True).score(
            prompts
        )
        top20 = OpenAIScoreBackend("tiny", server.url, batch_size=4, logprobs=20, merge_variants=False)
        got20 = top20.score(prompts)
    np.testing.assert_allclose(got, backend.score(prompts), atol=1e-4, rtol=0)
    # Both backends default to DEITA's bare-digit rule, so defaults agree too.
    np.testing.assert_allclose(default, backend.score(prompts), atol=1e-4, rtol=0)
    assert bare.stats["fallbacks"] == 0 and bare.stats["prompts"] == 5
    # The byte-level tokenizer also has " 1".." 6": merging them is the local merge_variants score.
    local_merged = TransformersScoreBackend(tiny_lm, device="cpu", merge_variants=True).score(prompts)
    np.testing.assert_allclose(merged, local_merged, atol=1e-4, rtol=0)
    assert np.abs(merged - got).max() > 1e-3
    # Top-20 only: the digits present, renormalised; none present → the fallback.
    tok, model = backend.tokenizer, backend.model
    digit_ids = [tok.convert_tokens_to_ids(d) for d in "123456"]
    for prompt, value in zip(prompts, got20):
        with torch.no_grad():
            lp = torch.log_softmax(model(**tok(prompt, return_tensors="pt")).logits[0, -1].double(), -1)
        top = set(torch.topk(lp, 20).indices.tolist())
        present = [(i + 1, lp[t].item()) for i, t in enumerate(digit_ids) if t in top]
        if present:
            w = np.exp([v for _, v in present])
            assert value == pytest.approx(float((w / w.sum()) @ [d for d, _ in present]), abs=1e-4)
        else:
            assert value == FALLBACK_SCORE
    assert top20.stats["fallbacks"] == sum(1 for v in got20 if v == FALLBACK_SCORE)


def test_openai_backend_fallback_is_counted(backend):
    prompts = rendered()
    with FakeVLLM(backend.tokenizer, backend.model, mode="no_digits") as server:
        remote = OpenAIScoreBackend("tiny", server.url, batch_size=3, logprobs=50)
        scores = remote.score(prompts)
        # Scored through DeitaScorer too: its info reports the fallbacks.
        rows = pd.DataFrame({"prompt": PROMPTS[:2], "completion": ["a", "b"]})
        info = DeitaScorer(remote, remote).score(rows).info
    np.testing.assert_array_equal(scores, np.full(5, FALLBACK_SCORE))
    assert remote.stats["fallbacks"] == 5 + 4
    assert info["complexity_stats"]["fallbacks"] == 2 and info["quality_stats"]["fallbacks"] == 2


def test_digit_logprobs_merges_variants():
    top = {"1": math.log(0.2), " 1": math.log(0.1), "3": math.log(0.3), "x": 0.0}
    merged = digit_logprobs(top, merge_variants=True)
    assert merged[0] == pytest.approx(math.log(0.3)) and merged[2] == pytest.approx(math.log(0.3))
    assert np.isneginf(merged[[1, 3, 4, 5]]).all()
    assert digit_logprobs(top)[0] == pytest.approx(math.log(0.2))


# ---------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def frame(ids, labels, **extra):
    return pd.DataFrame({"row_id": ids, "label": labels, "prompt": [f"p{i}" for i in ids], **extra})


def test_near_copy_dropped_dissimilar_kept():
    rows = frame(["a", "a2", "b"], [True, True, True])
    emb = unit([[1, 0, 0], [1, 0.01, 0], [0, 1, 0]])
    scores = pd.DataFrame({"row_id": ["a", "a2", "b"], "complexity": [3.0, 2.0, 1.0], "quality": [3.0, 3.0, 3.0]})
    scores["evol_score"] = scores["complexity"] * scores["quality"]
    res = select_diverse(rows, scores, emb)
    assert list(res.kept["row_id"]) == ["a", "b"]
    assert list(res.kept["evol_score"]) == [9.0, 3.0]
    (drop,) = res.dropped.itertuples()
    assert (drop.row_id, drop.reason, drop.similar_to) == ("a2", SelectionReason.DIVERSITY, "a")
    assert drop.similarity == pytest.approx(float(emb[0] @ emb[1]), abs=1e-6) and drop.similarity > 0.9
    assert res.counts == {"rows_in": 3, "kept": 2, "below_score_floor": 0, "diversity": 1, "over_budget": 0}
    np.testing.assert_array_equal(res.kept_index, [0, 2])
    # Swap the scores: now a2 is kept and a is the copy.
    res = select_diverse(rows, [6.0, 9.0, 3.0], emb)
    assert list(res.kept["row_id"]) == ["a2", "b"] and res.dropped["similar_to"].tolist() == ["a2"]


def test_budget_split_in_proportion_to_class_sizes():
    assert largest_remainder(3, [5, 2]) == [2, 1]
    assert largest_remainder(6, [6, 3]) == [4, 2]
    assert largest_remainder(1, [1, 1]) == [1, 0]
    assert largest_remainder(100, [3, 4]) == [3, 4]
    n_pos, n_neg = 6, 3
    ids = [f"r{i}" for i in range(n_pos + n_neg)]
    rows = frame(ids, [True] * n_pos + [False] * n_neg)
    emb = np.eye(n_pos + n_neg, dtype=np.float32)
    evol = np.arange(n_pos + n_neg, dtype=float)  # higher row number → higher score
    res = select_diverse(rows, evol, emb, SelectionConfig(budget=6))
    assert res.info["classes"]["desirable"]["quota"] == 4 and res.info["classes"]["undesirable"]["quota"] == 2
    assert list(res.kept["row_id"]) == ["r2", "r3", "r4", "r5", "r7", "r8"]
    assert set(res.dropped["reason"]) == {SelectionReason.OVER_BUDGET}
    assert res.counts["over_budget"] == 3


def test_score_floor_applies_to_desirable_rows_only():
    rows = frame(["good", "weak", "neg"], [True, True, False])
    emb = np.eye(3, dtype=np.float32)
    res = select_diverse(rows, [20.0, 2.0, 2.0], emb, SelectionConfig(score_floor=5.0))
    assert list(res.kept["row_id"]) == ["good", "neg"]
    assert res.dropped[["row_id", "reason"]].values.tolist() == [["weak", SelectionReason.BELOW_SCORE_FLOOR]]
    assert res.dropped["similar_to"].isna().all() and res.dropped["similarity"].isna().all()


def test_unscored_rows_run_in_row_id_order_with_budget_and_no_floor():
    ids = ["r3", "r1", "r4", "r0", "r2"]
    rows = frame(ids, [True] * 5)
    emb = unit([[1, 0, 0], [0, 1, 0], [0, 1, 0.001], [0, 0, 1], [1, 1, 1]])
    res = select_diverse(rows, None, emb, SelectionConfig(budget=3, score_floor=100.0))
    assert not res.info["scored"] and res.info["order"] == "row_id"
    # r0, r1, r2 in row_id order; r3 and r4 are over budget (r4 never compared).
    assert list(res.kept["row_id"]) == ["r1", "r0", "r2"]
    assert res.kept["evol_score"].isna().all()
    assert dict(zip(res.dropped["row_id"], res.dropped["reason"])) == {"r3": "over_budget", "r4": "over_budget"}
    # Without the budget r4 is a copy of r1.
    res = select_diverse(rows, None, emb)
    assert res.dropped[["row_id", "reason", "similar_to"]].values.tolist() == [["r4", "diversity", "r1"]]


def test_partly_missing_scores_are_an_error():
    rows = frame(["a", "b"], [True, True])
    with pytest.raises(ValueError, match="1 of 2 rows have no evol_score"):
        select_diverse(rows, [1.0, np.nan], np.eye(2, dtype=np.float32))


def test_classes_are_selected_separately():
    rows = frame(["pos", "neg"], [True, False])
    emb = unit([[1, 0], [1, 0]])
    res = select_diverse(rows, [5.0, 4.0], emb)
    assert list(res.kept["row_id"]) == ["pos", "neg"]
    res = select_diverse(rows, [5.0, 4.0], emb, SelectionConfig(per_label=False))
    assert list(res.kept["row_id"]) == ["pos"] and res.dropped.loc[0, "similar_to"] == "pos"


def naive_greedy(x, threshold, cap):
    kept, status, match, sim = [], [], [], []
    for i in range(len(x)):
        if cap is not None and len(kept) == cap:
            status.append(2), match.append(-1), sim.append(np.nan)
            continue
        sims = [float(x[i] @ x[j]) for j in kept]
        best = int(np.argmax(sims)) if sims else -1
        if sims and sims[best] > threshold:
            status.append(1), match.append(kept[best]), sim.append(sims[best])
        else:
            kept.append(i)
            status.append(0), match.append(-1), sim.append(np.nan)
    return np.array(status), np.array(match), np.array(sim)


@pytest.mark.parametrize("block_size,cap", [(1, None), (7, None), (7, 40), (1024, 25)])
def test_blocked_greedy_equals_sequential_greedy(block_size, cap):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 16))
    x = unit(centres[rng.integers(0, 30, 300)] + 0.35 * rng.normal(size=(300, 16)))
    status, match, sim = greedy_diverse(x, 0.9, cap, block_size)
    ref_status, ref_match, ref_sim = naive_greedy(x, 0.9, cap)
    assert 0 < (ref_status == 1).sum() and 0 < (ref_status == 0).sum()
    np.testing.assert_array_equal(status, ref_status)
    div = ref_status == 1
    np.testing.assert_array_equal(match[div], ref_match[div])
    np.testing.assert_allclose(sim[div], ref_sim[div], atol=1e-5)


def test_selection_is_deterministic_and_independent_of_input_order():
    rng = np.random.default_rng(1)
    n = 400
    rows = frame([f"r{i:03d}" for i in range(n)], rng.random(n) < 0.7)
    evol = np.round(rng.uniform(1, 36, n), 0)  # many ties: broken by row_id
    centres = rng.normal(size=(40, 32))
    emb = unit(centres[rng.integers(0, 40, n)] + 0.3 * rng.normal(size=(n, 32)))
    config = SelectionConfig(threshold=0.9, budget=120, score_floor=4.0, block_size=64)
    first = select_diverse(rows, evol, emb, config)
    again = select_diverse(rows, evol, emb, config)
    pd.testing.assert_frame_equal(first.kept, again.kept)
    pd.testing.assert_frame_equal(first.dropped, again.dropped)
    perm = rng.permutation(n)
    shuffled = select_diverse(rows.iloc[perm].reset_index(drop=True), evol[perm], emb[perm], config)
    assert set(shuffled.kept["row_id"]) == set(first.kept["row_id"])
    key = ["row_id", "reason", "similar_to"]
    pd.testing.assert_frame_equal(
        shuffled.dropped[key].sort_values("row_id").reset_index(drop=True),
        first.dropped[key].sort_values("row_id").reset_index(drop=True),
    )
    assert first.counts["kept"] <= 120 and sum(first.counts[r] for r in SelectionReason.ALL) + first.counts["kept"] == n
    assert list(first.kept["row_id"]) == sorted(first.kept["row_id"])  # input order kept
    # A kept desirable row is never within the threshold of another kept desirable row.
    k = first.kept_index[first.kept["label"].to_numpy()]
    gram = emb[k] @ emb[k].T
    assert (gram[~np.eye(len(k), dtype=bool)] <= 0.9).all()
