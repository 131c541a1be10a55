"""Deduplication: contradictions, exact, near (MinHash) and semantic (SemDeDup) duplicates.

Synthetic unit vectors stand in for embeddings wherever the model is not the point (random
32-dimensional vectors have pairwise cosines far below 1 - eps); the real MiniLM embedder
runs in the paraphrase and cross-week tests.
"""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import pandas as pd
import pytest
import xxhash
from datasketch import MinHash

from kto_pipeline.curate.dedup import (
    COMPLETION_HASH_SEED,
    PROMPT_HASH_SEED,
    DedupConfig,
    DedupHistory,
    DedupReason,
    SketchMismatchError,
    dedup_text,
    deduplicate,
    embed_rows,
    minhash_signatures,
    row_signatures,
    shingles,
)
from kto_pipeline.ingest.contract import ROW_DTYPES, frame_from_records

T0 = pd.Timestamp("2026-03-02 09:00", tz="UTC")

FORTY_WORDS = (
    "to change the billing address on your account open the settings page choose billing "
    "from the menu on the left enter the new street city and postal code then press save "
    "and wait for the green confirmation banner on top"
).split()
assert len(FORTY_WORDS) == 40

OTHER_FORTY = (
    "our support team answers tickets within one business day you can reach them by email "
    "or through the chat window in the lower right corner of every page please include your "
    "order number so they can find your purchase quickly"
).split()
assert len(OTHER_FORTY) == 40

LONG_PROMPT = (
    "You are a careful assistant for a travel booking site. The customer writes in about a "
    "reservation that was moved by the airline and asks whether the new departure time is "
    "acceptable to them and whether they want us to keep the booking as it is now. Answer "
    "with a single word or two if that is all that is needed."
)


def make_rows(specs: list[dict], week: str = "2026-W10", start: pd.Timestamp = T0) -> pd.DataFrame:
    """Rows in the contract's schema; spec keys: p, c, l, and optionally id, rec, t (minutes)."""
    records = []
    for i, spec in enumerate(specs):
        row_id = spec.get("id", f"{week}-r{i:03d}")
        records.append(
            {
                "row_id": row_id,
                "record_id": spec.get("rec", f"rec-{row_id}"),
                "week": week,
                "timestamp": start + pd.Timedelta(minutes=spec.get("t", i)),
                "prompt": spec["p"],
                "prompt_messages": None,
                "completion": spec["c"],
                "label": spec["l"],
                "signal": spec.get("signal", "thumb"),
                "source": "production",
                "conversation_id": None,
                "user_id": None,
                "model_version": None,
                "metadata": None,
                "dump": "dump.jsonl",
                "line": i + 1,
            }
        )
    return frame_from_records(records, ROW_DTYPES)


def random_unit(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def check(result, rows: pd.DataFrame) -> dict[str, int]:
    """Invariants every result must satisfy; returns the non-zero drop counts."""
    counts = result.counts
    assert counts["rows_in"] == len(rows)
    assert counts["rows_in"] == counts["kept"] + sum(counts[r] for r in DedupReason.ALL)
    assert set(counts) == {"rows_in", "kept", *DedupReason.ALL}
    assert len(result.kept) == counts["kept"]
    assert len(result.kept) + len(result.dropped) == len(rows)
    assert list(result.kept.columns) == list(rows.columns)
    assert result.kept.dtypes.equals(rows.dtypes)
    assert list(result.dropped.columns) == [*rows.columns, "reason", "duplicate_of"]
    assert result.dropped.dtypes.iloc[: len(rows.columns)].equals(rows.dtypes)
    assert result.dropped["reason"].value_counts().to_dict() == {r: counts[r] for r in DedupReason.ALL if counts[r]}
    ids = rows["row_id"].tolist()
    kept_ids = result.kept["row_id"].tolist()
    assert sorted(kept_ids + result.dropped["row_id"].tolist()) == sorted(ids)
    assert kept_ids == [i for i in ids if i in set(kept_ids)]  # input order
    assert result.kept_embeddings.shape[0] == len(result.kept)
    assert len(result.week_history) == len(result.kept)
    assert list(result.week_history.row_ids) == kept_ids
    return {r: counts[r] for r in DedupReason.ALL if counts[r]}


def reasons(result) -> dict[str, str]:
    return dict(zip(result.dropped["row_id"], result.dropped["reason"]))


def duplicate_of(result) -> dict[str, str | None]:
    return {
        rid: (None if pd.isna(d) else d) for rid, d in zip(result.dropped["row_id"], result.dropped["duplicate_of"])
    }


@pytest.fixture(scope="module")
def embedder():
    from kto_pipeline.curate.embeddings import TextEmbedder

    return TextEmbedder(device="cpu")


# -- text and signatures ------------------------------------------------------------------


def test_dedup_text_normalises_unicode_case_and_whitespace():
    assert dedup_text("  Hello\t\tWORLD \n", "Ｆｕｌｌ　width ß") == "hello world\nfull width ss"
    assert dedup_text("A  b", "C") == dedup_text("a b", " c ")
    assert dedup_text("a", "b c") != dedup_text("a b", "c")  # the boundary is kept


def test_signatures_equal_datasketch_affine32_minhash():
    texts = [" ".join(FORTY_WORDS), "Yes!", "ok thanks", "👍", ""]
    ours = minhash_signatures(texts, num_perm=128, seed=1, shingle_size=5, hash_seed=COMPLETION_HASH_SEED)
    assert ours.dtype == np.uint32 and ours.shape == (5, 128)
    hashfunc = functools.partial(xxhash.xxh32_intdigest, seed=COMPLETION_HASH_SEED)
    for text, sig in zip(texts, ours):
        m = MinHash(num_perm=128, seed=1, hashfunc=hashfunc)
        assert m.scheme == "affine32"
        m.update_batch([s.encode("utf-8") for s in shingles(text, 5)])
        assert np.array_equal(m.hashvalues, sig)

    # The row signature is the union of the two parts' sets: the element-wise minimum.
    p, c = row_signatures(["How do I reset my password?"], ["Open settings."])
    mp = MinHash(num_perm=128, seed=1, hashfunc=functools.partial(xxhash.xxh32_intdigest, seed=PROMPT_HASH_SEED))
    mp.update_batch([s.encode() for s in shingles("How do I reset my password?", 5)])
    assert np.array_equal(mp.hashvalues, p[0])
    mc = MinHash(num_perm=128, seed=1, hashfunc=hashfunc)
    mc.update_batch([s.encode() for s in shingles("Open settings.", 5)])
    assert np.array_equal(MinHash.union(mp, mc).hashvalues, np.minimum(p[0], c[0]))


def test_short_texts_have_their_own_nonempty_signatures():
    assert shingles("yes", 5) == ["yes"]
    assert shingles("OK, thanks!", 5) == ["ok thanks"]
    assert shingles("👍", 5) == ["👍"]
    sigs = minhash_signatures(["yes", "no", "ok thanks", "ok", "thanks", "👍", "👎", ""])
    empty = np.full(128, np.iinfo(np.uint32).max, dtype=np.uint32)
    for i, sig in enumerate(sigs):
        assert not np.array_equal(sig, empty)
        for j in range(i):
            assert (sigs[i] == sigs[j]).mean() < 0.1, (i, j)


# -- exact duplicates ---------------------------------------------------------------------


def test_exact_duplicates_with_case_and_whitespace_variants():
    base_p, base_c = "How do I export my data?", "Open Settings, then Privacy, then Export."
    rows = make_rows(
        [
            {"id": "late", "p": base_p, "c": base_c, "l": True, "t": 50},
            {"id": "upper", "p": base_p.upper(), "c": base_c.upper(), "l": True, "t": 20},
            {
                "id": "spaces",
                "p": "  How do I   export my data? ",
                "c": base_c.replace(" ", "\n  "),
                "l": True,
                "t": 10,
            },
            {"id": "nfkc", "p": "Ｈｏｗ do I export my data?", "c": base_c, "l": True, "t": 30},
            {"id": "other", "p": "How do I import my data?", "c": "Use the import wizard.", "l": True, "t": 40},
            {"id": "bad", "p": "What time is it?", "c": "It is noon.", "l": False, "t": 0},
            {"id": "bad2", "p": "what time is it?", "c": "It is  noon.", "l": False, "t": 5},
        ]
    )
    result = deduplicate(rows, random_unit(len(rows)), None, DedupConfig())
    assert check(result, rows) == {DedupReason.EXACT_DUPLICATE: 4}
    # The first by timestamp is kept, whatever the input order.
    assert sorted(result.kept["row_id"]) == ["bad", "other", "spaces"]
    assert duplicate_of(result) == {"late": "spaces", "upper": "spaces", "nfkc": "spaces", "bad2": "bad"}


# -- near duplicates ----------------------------------------------------------------------


def _one_word_changed(words: list[str], position: int, new: str) -> str:
    changed = list(words)
    changed[position] = new
    return " ".join(changed)


def test_near_duplicates_one_word_changed_in_40_words():
    prompt = "How do I change my billing address?"
    text = " ".join(FORTY_WORDS)
    other = " ".join(OTHER_FORTY)
    rows = make_rows(
        [
            {"id": "a", "p": prompt, "c": text, "l": True},
            # One word changed near an end of 40 words: Jaccard of 5-shingles 34/38 ≈ 0.89.
            # (A change in the middle touches 5 of 36 shingles: 31/41 ≈ 0.76, under 0.8.)
            {"id": "a_near", "p": prompt, "c": _one_word_changed(FORTY_WORDS, 1, "modify"), "l": True},
            {"id": "a_near2", "p": prompt, "c": _one_word_changed(FORTY_WORDS, 39, "bottom"), "l": True},
            # The same near copy with the other label is a different KTO example: kept.
            {"id": "a_near_bad", "p": prompt, "c": _one_word_changed(FORTY_WORDS, 39, "top!"), "l": False},
            {"id": "b", "p": "Who answers support tickets?", "c": other, "l": True},
            {
                "id": "b_near",
                "p": "Who answers support tickets?",
                "c": _one_word_changed(OTHER_FORTY, 0, "Your"),
                "l": True,
            },
            {"id": "c", "p": prompt, "c": other, "l": True},  # same prompt, different answer: kept
        ]
    )
    result = deduplicate(rows, random_unit(len(rows)), None, DedupConfig())
    assert check(result, rows) == {DedupReason.NEAR_DUPLICATE: 3}
    assert duplicate_of(result) == {"a_near": "a", "a_near2": "a", "b_near": "b"}
    assert result.info["lsh_bands"] * result.info["lsh_rows_per_band"] <= 128


def test_short_texts_are_not_collapsed_even_behind_a_long_shared_prompt():
    answers = ["yes", "no", "ok thanks", "ok", "thanks", "no thanks", "yes please", "👍"]
    specs = [{"p": "Did that help?", "c": a, "l": True} for a in answers]
    specs += [{"p": LONG_PROMPT, "c": a, "l": True} for a in answers]
    specs += [{"id": "ok_punct", "p": LONG_PROMPT, "c": "OK, thanks!", "l": True, "t": 99}]  # same words as "ok thanks"
    rows = make_rows(specs)
    result = deduplicate(rows, random_unit(len(rows)), None, DedupConfig())
    assert check(result, rows) == {DedupReason.NEAR_DUPLICATE: 1}
    assert reasons(result) == {"ok_punct": DedupReason.NEAR_DUPLICATE}
    assert (
        duplicate_of(result)["ok_punct"]
        == rows.loc[rows["completion"].eq("ok thanks") & rows["prompt"].eq(LONG_PROMPT), "row_id"].item()
    )


# -- semantic duplicates ------------------------------------------------------------------

PASSWORD_ANSWER = "Go to Settings > Security, click 'Reset password' and follow the link we email you."


def test_semantic_duplicates_with_the_real_embedder(embedder):
    rows = make_rows(
        [
            {"id": "reset", "p": "How do I reset my password?", "c": PASSWORD_ANSWER, "l": True},
            {"id": "reset_para", "p": "What is the way to reset my password?", "c": PASSWORD_ANSWER, "l": True},
            {"id": "delete", "p": "How do I delete my account?", "c": PASSWORD_ANSWER, "l": True},
            {
                "id": "bread",
                "p": "How do I bake sourdough bread?",
                "c": "Feed the starter, mix, proof overnight, bake hot.",
                "l": True,
            },
            {"id": "reset_bad", "p": "How can I reset my password?", "c": PASSWORD_ANSWER, "l": False},
        ]
    )
    emb = embed_rows(rows, embedder.embed)
    assert emb.dtype == np.float32 and emb.shape == (5, 2 * embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    cos = emb @ emb.T
    eps = 0.05
    # The paraphrase pair is well above 1 - eps; everything else well below it.
    assert cos[0, 1] >= 1 - eps + 0.02, cos[0, 1]
    assert cos[0, 2] <= 1 - eps - 0.05 and cos[1, 2] <= 1 - eps - 0.05, cos
    assert cos[3, :3].max() <= 0.7, cos

    # MinHash alone does not see the paraphrase.
    near_only = deduplicate(rows, random_unit(len(rows)), None, DedupConfig())
    assert check(near_only, rows) == {}

    result = deduplicate(rows, emb, None, DedupConfig(semdedup_eps=eps))
    assert check(result, rows) == {DedupReason.SEMANTIC_DUPLICATE: 1}
    (dropped,) = result.dropped["row_id"]
    assert dropped in {"reset", "reset_para"}
    assert duplicate_of(result)[dropped] == ({"reset", "reset_para"} - {dropped}).pop()
    assert {"delete", "bread", "reset_bad"} <= set(result.kept["row_id"])  # other label: kept
    np.testing.assert_array_equal(result.kept_embeddings, emb[rows["row_id"].isin(result.kept["row_id"]).to_numpy()])


def test_semdedup_keep_rule_hard_keeps_the_row_farthest_from_the_centroid():
    e = np.eye(8, dtype=np.float32)
    # v1 leans towards e1, as does the centroid (v2 is e1): v0 is the farther of the pair.
    vectors = np.stack([e[0], e[0] + 0.1 * e[1], e[1], e[3], e[4], e[5]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert vectors[0] @ vectors[1] > 0.99
    rows = make_rows([{"id": f"v{i}", "p": f"prompt number {i}", "c": f"answer {i}", "l": True} for i in range(6)])
    centroid = vectors.mean(axis=0)
    centroid /= np.linalg.norm(centroid)
    assert vectors[0] @ centroid < vectors[1] @ centroid - 0.01
    far, close = "v0", "v1"

    hard = deduplicate(rows, vectors, None, DedupConfig(semdedup_clusters=1, semdedup_eps=0.01))
    assert check(hard, rows) == {DedupReason.SEMANTIC_DUPLICATE: 1}
    assert reasons(hard) == {close: DedupReason.SEMANTIC_DUPLICATE} and duplicate_of(hard) == {close: far}

    easy = deduplicate(rows, vectors, None, DedupConfig(semdedup_clusters=1, semdedup_eps=0.01, keep="easy"))
    assert reasons(easy) == {far: DedupReason.SEMANTIC_DUPLICATE} and duplicate_of(easy) == {far: close}

    # Below the threshold nothing goes; with k > 1 the pair still shares a cluster.
    assert check(deduplicate(rows, vectors, None, DedupConfig(semdedup_eps=1e-5)), rows) == {}
    assert check(deduplicate(rows, vectors, None, DedupConfig(semdedup_clusters=3, semdedup_eps=0.01)), rows) == {
        DedupReason.SEMANTIC_DUPLICATE: 1
    }


def test_semdedup_pairwise_blocks_give_the_same_answer():
    base = random_unit(40, dim=16, seed=3)
    noise = random_unit(40, dim=16, seed=4) * 0.02
    vectors = np.concatenate([base, base + noise])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = make_rows([{"p": f"p {i}", "c": f"c {i}", "l": True} for i in range(80)])
    results = [
        deduplicate(rows, vectors, None, DedupConfig(semdedup_clusters=1, semdedup_eps=0.01, pairwise_batch_size=b))
        for b in (1, 7, 1024)
    ]
    assert check(results[0], rows) == {DedupReason.SEMANTIC_DUPLICATE: 40}
    for other in results[1:]:
        pd.testing.assert_frame_equal(other.dropped, results[0].dropped)


# -- labels: edits and contradictions -----------------------------------------------------


def test_edit_twin_pair_is_kept():
    prompt = "Summarise the refund policy."
    original = "Refunds are possible within 30 days of purchase if the item is unused and in its box."
    edited = "Refunds are possible within 14 days of purchase if the item is unused and in its box."
    vec = random_unit(1, seed=7)[0]
    rows = make_rows(
        [
            {"id": "edit", "rec": "r1", "p": prompt, "c": edited, "l": True, "signal": "edit"},
            {"id": "orig", "rec": "r1", "p": prompt, "c": original, "l": False, "signal": "edit_original"},
            # An edit that only changed case normalises to the same text: not a contradiction.
            {"id": "edit2", "rec": "r2", "p": "Name the capital.", "c": "PARIS", "l": True, "signal": "edit"},
            {"id": "orig2", "rec": "r2", "p": "Name the capital.", "c": "paris", "l": False, "signal": "edit_original"},
        ]
    )
    emb = np.stack([vec, vec, random_unit(1, seed=8)[0], random_unit(1, seed=8)[0]])  # twins embed alike
    result = deduplicate(rows, emb, None, DedupConfig())
    assert check(result, rows) == {}
    assert result.kept["row_id"].tolist() == ["edit", "orig", "edit2", "orig2"]


def test_contradictions_majority_wins_and_ties_drop_all():
    p, c = "Is the sky blue?", "Yes, on a clear day."
    rows = make_rows(
        [
            {"id": "t1", "p": p, "c": c, "l": True},
            {"id": "t2", "p": p.lower(), "c": c, "l": True},
            {"id": "f1", "p": p, "c": c, "l": False},
            {"id": "x1", "p": "Is water wet?", "c": "Arguably.", "l": True},
            {"id": "x2", "p": "Is water wet?", "c": "arguably. ", "l": False},
        ]
    )
    result = deduplicate(rows, random_unit(len(rows)), None, DedupConfig())
    assert check(result, rows) == {
        DedupReason.CONTRADICTION_MINORITY: 1,
        DedupReason.EXACT_DUPLICATE: 1,
        DedupReason.CONTRADICTION_TIE: 2,
    }
    assert result.kept["row_id"].tolist() == ["t1"]
    assert reasons(result) == {
        "t2": DedupReason.EXACT_DUPLICATE,
        "f1": DedupReason.CONTRADICTION_MINORITY,
        "x1": DedupReason.CONTRADICTION_TIE,
        "x2": DedupReason.CONTRADICTION_TIE,
    }
    assert duplicate_of(result) == {"t2": "t1", "f1": None, "x1": None, "x2": None}


def test_true_true_false_and_true_false():
    p, c = "Translate 'merci'.", "Thank you."
    three = make_rows([{"p": p, "c": c, "l": lab} for lab in (True, True, False)])
    r3 = deduplicate(three, random_unit(3), None, DedupConfig())
    assert check(r3, three) == {DedupReason.EXACT_DUPLICATE: 1, DedupReason.CONTRADICTION_MINORITY: 1}
    assert r3.kept["label"].tolist() == [True]

    two = make_rows([{"p": p, "c": c, "l": lab} for lab in (True, False)])
    r2 = deduplicate(two, random_unit(2), None, DedupConfig())
    assert check(r2, two) == {DedupReason.CONTRADICTION_TIE: 2}
    assert r2.kept.empty


# -- across weeks -------------------------------------------------------------------------


def _week1() -> pd.DataFrame:
    return make_rows(
        [
            {
                "id": "w1-export",
                "p": "How do I export my data?",
                "c": "Open Settings, then Privacy, then Export.",
                "l": True,
            },
            {"id": "w1-billing", "p": "How do I change my billing address?", "c": " ".join(FORTY_WORDS), "l": True},
            {"id": "w1-reset", "p": "How do I reset my password?", "c": PASSWORD_ANSWER, "l": True},
            {
                "id": "w1-bread",
                "p": "How do I bake sourdough bread?",
                "c": "Feed the starter, mix, proof overnight, bake hot.",
                "l": False,
            },
            {"id": "w1-support", "p": "Who answers support tickets?", "c": " ".join(OTHER_FORTY), "l": True},
        ],
        week="2026-W10",
    )


def _week2() -> pd.DataFrame:
    return make_rows(
        [
            {
                "id": "w2-export",
                "p": "how do I EXPORT my data?",
                "c": "Open settings, then privacy, then export.",
                "l": True,
            },
            {
                "id": "w2-billing",
                "p": "How do I change my billing address?",
                "c": _one_word_changed(FORTY_WORDS, 39, "screen"),
                "l": True,
            },
            {"id": "w2-reset", "p": "What is the way to reset my password?", "c": PASSWORD_ANSWER, "l": True},
            # Week 1's undesirable bread answer, now liked: another label, so no duplicate.
            {
                "id": "w2-bread-good",
                "p": "How do I bake sourdough bread?",
                "c": "Feed the starter, mix, proof overnight, bake hot.",
                "l": True,
            },
            {
                "id": "w2-weather",
                "p": "Will it rain tomorrow in Oslo?",
                "c": "Showers are likely in the afternoon.",
                "l": True,
            },
        ],
        week="2026-W11",
        start=T0 + pd.Timedelta(days=7),
    )


def test_cross_week_duplicates_use_the_stored_history(embedder, tmp_path):
    config = DedupConfig(embedding_model=embedder.name)
    week1 = _week1()
    r1 = deduplicate(week1, embed_rows(week1, embedder.embed), None, config)
    assert check(r1, week1) == {}

    # Persist week 1's history through Parquet, as the IO manager would, and load it back.
    path = tmp_path / "week1_history.parquet"
    r1.week_history.to_frame().to_parquet(path)
    history = DedupHistory.from_frame(pd.read_parquet(path))
    assert len(history) == 5 and history.embedding_model == embedder.name
    np.testing.assert_array_equal(history.minhashes, r1.week_history.minhashes)
    np.testing.assert_array_equal(history.embeddings, r1.week_history.embeddings)

    week2 = _week2()
    r2 = deduplicate(week2, embed_rows(week2, embedder.embed), history, config)
    assert check(r2, week2) == {
        DedupReason.EXACT_DUPLICATE_EARLIER_WEEK: 1,
        DedupReason.NEAR_DUPLICATE_EARLIER_WEEK: 1,
        DedupReason.SEMANTIC_DUPLICATE_EARLIER_WEEK: 1,
    }
    assert reasons(r2) == {
        "w2-export": DedupReason.EXACT_DUPLICATE_EARLIER_WEEK,
        "w2-billing": DedupReason.NEAR_DUPLICATE_EARLIER_WEEK,
        "w2-reset": DedupReason.SEMANTIC_DUPLICATE_EARLIER_WEEK,
    }
    assert duplicate_of(r2) == {"w2-export": "w1-export", "w2-billing": "w1-billing", "w2-reset": "w1-reset"}
    assert r2.kept["row_id"].tolist() == ["w2-bread-good", "w2-weather"]  # other label; new topic

    # Upgrading the embedder's runtime (torch → int8 ONNX, the CPU default) keeps the history
    # usable; another model is refused, with what to do.
    runtime = DedupConfig(embedding_model=embedder.name.split("|backend=")[0] + "|backend=onnx-int8")
    assert check(deduplicate(week2, embed_rows(week2, embedder.embed), history, runtime), week2) == check(r2, week2)
    with pytest.raises(ValueError, match="start a new history"):
        deduplicate(week2, embed_rows(week2, embedder.embed), history, DedupConfig(embedding_model="other/model"))

    # Week 1 recomputed is unchanged; the histories concatenate for week 3.
    again = deduplicate(week1, embed_rows(week1, embedder.embed), None, config)
    pd.testing.assert_frame_equal(again.kept, r1.kept)
    pd.testing.assert_frame_equal(again.dropped, r1.dropped)
    assert again.counts == r1.counts
    both = DedupHistory.concat([history, r2.week_history, DedupHistory.empty(128, 0)])
    assert list(both.row_ids) == [*history.row_ids, "w2-bread-good", "w2-weather"]
    r2_again = deduplicate(week2, embed_rows(week2, embedder.embed), both, config)
    assert r2_again.counts["kept"] == 0  # everything of week 2 is in the history now


def test_history_frame_round_trip_accepts_lists_and_detects_mismatches():
    rows = make_rows(
        [{"p": f"question {i} about topic {i}", "c": f"answer number {i}", "l": i % 2 == 0} for i in range(6)]
    )
    result = deduplicate(rows, random_unit(6), None, DedupConfig())
    frame = result.week_history.to_frame()
    assert frame["minhash_scheme"].unique().tolist() == ["affine32"]
    assert frame["datasketch_version"].unique().tolist() == ["2.0.0"]
    assert len(frame["minhash"].iloc[0]) == 128 * 4

    # Lists of numbers (e.g. a JSON or list-typed Parquet column) load too.
    as_lists = frame.copy()
    for col in ("minhash", "minhash_prompt", "minhash_completion"):
        as_lists[col] = [np.frombuffer(b, dtype="<u4").tolist() for b in frame[col]]
    as_lists["embedding"] = [np.frombuffer(b, dtype="<f4").tolist() for b in frame["embedding"]]
    loaded = DedupHistory.from_frame(as_lists)
    np.testing.assert_array_equal(loaded.minhash_prompt, result.week_history.minhash_prompt)
    np.testing.assert_array_equal(loaded.embeddings, result.week_history.embeddings)
    assert loaded.labels.tolist() == result.week_history.labels.tolist()

    legacy = frame.copy()
    legacy["minhash_scheme"] = "legacy"
    legacy["datasketch_version"] = "1.6.5"
    with pytest.raises(SketchMismatchError, match="legacy"):
        DedupHistory.from_frame(legacy)
    with pytest.raises(SketchMismatchError, match="unknown"):
        DedupHistory.from_frame(frame.drop(columns=["minhash_scheme"]))
    other_perm = frame.copy()
    other_perm["sketch"] = frame["sketch"].str.replace(r";perm=[0-9a-f]+", ";perm=0000000000000000", regex=True)
    with pytest.raises(SketchMismatchError, match="permutations"):
        DedupHistory.from_frame(other_perm)

    # A history made with another sketch cannot be used by a run with a different one.
    with pytest.raises(SketchMismatchError, match="num_perm"):
        deduplicate(rows, random_unit(6), DedupHistory.from_frame(frame), DedupConfig(num_perm=64))
    with pytest.raises(ValueError, match="width"):
        deduplicate(rows, random_unit(6, dim=16), DedupHistory.from_frame(frame), DedupConfig())


def test_history_keeps_the_config_the_week_ran_with(tmp_path):
    config = DedupConfig(
        minhash_threshold=0.85, lsh_weights=(0.2, 0.8), semdedup_clusters=3, keep="easy", embedding_model="test/model"
    )
    assert all(f.metadata.get("help") for f in dataclasses.fields(DedupConfig))
    as_dict = config.to_dict()
    assert as_dict["lsh_weights"] == [0.2, 0.8]
    assert DedupConfig.from_dict(json.loads(json.dumps(as_dict))) == config
    with pytest.raises(ValueError, match="unknown"):
        DedupConfig.from_dict({**as_dict, "no_such_field": 1})

    rows = make_rows([{"p": f"question {i} about topic {i}", "c": f"answer number {i}", "l": True} for i in range(4)])
    result = deduplicate(rows, random_unit(4), None, config)
    assert result.week_history.config == config

    # Through a Parquet file, as the history store keeps it.
    path = tmp_path / "week.parquet"
    result.week_history.to_frame().to_parquet(path, index=False)
    loaded = DedupHistory.from_frame(pd.read_parquet(path))
    assert loaded.config == config and loaded.config.lsh_weights == (0.2, 0.8)
    empty = DedupHistory.empty()
    empty.config = config
    empty_path = tmp_path / "empty.parquet"
    empty.to_frame().to_parquet(empty_path, index=False)
    assert DedupHistory.from_frame(pd.read_parquet(empty_path)).config == config

    # A frame written before configs were stored loads, with config None.
    old = result.week_history.to_frame()
    del old.attrs["dedup_config"]
    old_path = tmp_path / "old.parquet"
    old.to_parquet(old_path, index=False)
    old_history = DedupHistory.from_frame(pd.read_parquet(old_path))
    assert old_history.config is None and len(old_history) == len(loaded)

    # concat keeps a config only when every part that has one agrees.
    assert DedupHistory.concat([loaded, old_history, loaded]).config == config
    other = dataclasses.replace(loaded, config=dataclasses.replace(config, semdedup_eps=0.1))
    assert DedupHistory.concat([loaded, other]).config is None
    assert DedupHistory.concat([old_history]).config is None


# -- determinism and edge cases -----------------------------------------------------------


def _mixed_rows() -> tuple[pd.DataFrame, np.ndarray]:
    specs, vectors = [], []
    base = random_unit(30, seed=11)
    for i in range(30):
        words = [f"w{i}x{j}" for j in range(20)]  # last word changed: Jaccard 15/17
        specs.append({"p": f"question {i}", "c": " ".join(words), "l": i % 3 != 0})
        vectors.append(base[i])
        if i % 4 == 0:  # exact duplicate
            specs.append({"p": f"QUESTION {i}", "c": " ".join(words), "l": i % 3 != 0})
            vectors.append(base[i])
        if i % 5 == 0:  # near duplicate
            specs.append({"p": f"question {i}", "c": " ".join(words[:-1] + ["changed"]), "l": i % 3 != 0})
            vectors.append(base[i])
        if i % 6 == 0:  # semantic duplicate
            specs.append({"p": f"a rephrased question {i}", "c": f"another wording {i}", "l": i % 3 != 0})
            v = base[i] + 0.01 * random_unit(1, seed=100 + i)[0]
            vectors.append(v / np.linalg.norm(v))
    return make_rows(specs), np.stack(vectors).astype(np.float32)


def test_deterministic_and_independent_of_input_order():
    rows, emb = _mixed_rows()
    first = deduplicate(rows, emb, None, DedupConfig())
    counts = check(first, rows)
    assert counts == {
        DedupReason.EXACT_DUPLICATE: 8,
        DedupReason.NEAR_DUPLICATE: 6,
        DedupReason.SEMANTIC_DUPLICATE: 5,
    }
    second = deduplicate(rows, emb, None, DedupConfig())
    pd.testing.assert_frame_equal(first.kept, second.kept)
    pd.testing.assert_frame_equal(first.dropped, second.dropped)
    np.testing.assert_array_equal(first.kept_embeddings, second.kept_embeddings)
    pd.testing.assert_frame_equal(first.week_history.to_frame(), second.week_history.to_frame())

    perm = np.random.default_rng(5).permutation(len(rows))
    shuffled = deduplicate(rows.iloc[perm].reset_index(drop=True), emb[perm], None, DedupConfig())
    assert sorted(shuffled.kept["row_id"]) == sorted(first.kept["row_id"])
    assert reasons(shuffled) == reasons(first)


def test_empty_input():
    rows = make_rows([])
    result = deduplicate(rows, np.zeros((0, 32), dtype=np.float32), None, DedupConfig())
    check(result, rows)
    assert result.counts["rows_in"] == 0 and result.kept.empty and result.dropped.empty
    assert result.kept_embeddings.shape == (0, 32)
    history = DedupHistory.from_frame(result.week_history.to_frame())
    assert len(history) == 0
    # An empty history is fine for a later week.
    week = make_rows([{"p": "a question", "c": "an answer", "l": True}])
    assert deduplicate(week, random_unit(1), history, DedupConfig()).counts["kept"] == 1


def test_bad_arguments():
    rows = make_rows([{"p": "a", "c": "b", "l": True}, {"p": "c", "c": "d", "l": True}])
    with pytest.raises(ValueError, match="shape"):
        deduplicate(rows, random_unit(3), None, DedupConfig())
    with pytest.raises(ValueError, match="unique"):
        deduplicate(pd.concat([rows, rows], ignore_index=True), random_unit(4), None, DedupConfig())
    with pytest.raises(ValueError, match="keep"):
        DedupConfig(keep="median")


# -- the embedder -------------------------------------------------------------------------


def test_text_embedder_embeds_identical_texts_once(embedder, monkeypatch):
    seen: list[list[str]] = []
    encode = embedder.model.encode

    def spy(texts, *args, **kwargs):
        seen.append(list(texts))
        return encode(texts, *args, **kwargs)

    monkeypatch.setattr(embedder.model, "encode", spy)
    texts = ["How do I reset my password?", "ok thanks", "How do I reset my password?", "", "ok thanks"]
    vectors = embedder.embed(texts)
    assert seen == [["How do I reset my password?", "ok thanks", ""]]
    assert vectors.dtype == np.float32 and vectors.shape == (5, embedder.dim) and embedder.dim == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(vectors[0], vectors[2]) and np.array_equal(vectors[1], vectors[4])
    again = embedder.embed(texts)
    assert np.array_equal(vectors, again)
    assert embedder.embed([]).shape == (0, 384)
    assert "all-MiniLM-L6-v2" in embedder.name and "max_seq_length=128" in embedder.name


def test_an_embedding_function_only_sees_rows_the_cheaper_stages_kept():
    """Duplicates caught by the exact stage are never embedded, and the result is the same as
    with precomputed vectors."""
    rows = make_rows(
        [
            {"id": "p1", "p": "How do I reset my password?", "c": "Use the reset link on the login page.", "l": True},
            {"id": "p2", "p": "How do I reset my password?", "c": "Use the reset link on the login page.", "l": True},
            {"id": "p3", "p": "Where is the billing page?", "c": "Account, then Billing.", "l": False},
        ]
    )
    table = dict(zip(rows["row_id"], random_unit(3, dim=8)))
    seen = []

    def embed(frame):
        seen.extend(frame["row_id"])
        return np.stack([table[r] for r in frame["row_id"]])

    lazy = deduplicate(rows, embed)
    eager = deduplicate(rows, np.stack([table[r] for r in rows["row_id"]]))
    assert seen == ["p1", "p3"]
    assert lazy.kept.equals(eager.kept) and lazy.counts == eager.counts
    assert np.array_equal(lazy.kept_embeddings, eager.kept_embeddings)


def test_bulk_lsh_insertion_builds_the_same_index_as_minhashlsh_insert():
    from datasketch import LeanMinHash, MinHashLSH

    from kto_pipeline.curate.dedup import MINHASH_SCHEME, lsh_params, minhash_signatures
    from kto_pipeline.curate.dedup.minhash import _insert_many

    texts = [" ".join(FORTY_WORDS[i:] + FORTY_WORDS[:i]) for i in range(0, 40, 3)] + ["yes", "no", "ok thanks"]
    sigs = minhash_signatures(texts, 128, seed=1)
    params = lsh_params(0.8, 128, (0.1, 0.9))
    one_by_one, bulk = MinHashLSH(num_perm=128, params=params), MinHashLSH(num_perm=128, params=params)
    for key, sig in enumerate(sigs):
        one_by_one.insert(key, LeanMinHash(seed=1, hashvalues=sig, scheme=MINHASH_SCHEME))
    _insert_many(bulk, list(range(len(sigs))), sigs)
    for a, b in zip(one_by_one.hashtables, bulk.hashtables, strict=True):
        assert {k: a.get(k) for k in a.keys()} == {k: b.get(k) for k in b.keys()}
    query = LeanMinHash(seed=1, hashvalues=sigs[0], scheme=MINHASH_SCHEME)
    assert sorted(one_by_one.query(query)) == sorted(bulk.query(query))
