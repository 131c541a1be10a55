"""Generated production feedback for the benchmarks: ≈300-character prompts and completions,
with PII, exact, near and paraphrased duplicates and edits at rates seen in support traffic."""

from __future__ import annotations

import random

import pandas as pd

from kto_pipeline.ingest.contract import ROW_DTYPES, content_hash, frame_from_records

_WORDS = (
    "account billing invoice export report dashboard password reset login token access team member role "
    "admin permission project workspace integration webhook api key limit quota plan upgrade downgrade "
    "refund charge payment card subscription renewal trial feature request bug error timeout latency sync "
    "upload download file folder share link settings profile email notification alert schedule calendar "
    "meeting agenda task deadline priority status ticket support agent customer order shipping delivery "
    "address warehouse inventory product price discount coupon tax region language translation search "
    "filter sort column table chart metric query database backup restore version release update install "
    "device browser mobile desktop network proxy firewall certificate domain server cluster deploy build "
    "pipeline job queue worker cache memory storage disk usage cost budget forecast audit log history"
).split()
_FILLER = "the a to of and for in on with your you we it is can will should please how what when why".split()

_PII = [
    lambda r: f"my email is {r.choice(['ana', 'li', 'omar', 'kate', 'raj'])}.{r.randint(1, 999)}@example.com",
    lambda r: f"call me on (212) 555-{r.randint(1000, 9999)}",
    lambda r: "my card is 4111 1111 1111 1111",
    lambda r: f"from ip 10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
    lambda r: f"ssn 536-22-{r.randint(1000, 9999)}",
    lambda r: "iban DE89 3704 0044 0532 0130 00",
]


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(_WORDS) if rng.random() < 0.55 else rng.choice(_FILLER) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def _text(rng: random.Random, chars: int, pii_rate: float) -> str:
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < chars:
        parts.append(_sentence(rng, rng.randint(8, 16)))
    text = " ".join(parts)[: chars + 40]
    if rng.random() < pii_rate:
        text = f"{text} {rng.choice(_PII)(rng)}."
    return text


def make_rows(
    n: int,
    seed: int = 0,
    pii_rate: float = 0.15,
    exact_rate: float = 0.05,
    near_rate: float = 0.05,
    paraphrase_rate: float = 0.03,
    edit_rate: float = 0.08,
) -> pd.DataFrame:
    """About `n` rows in the contract's schema (an edit adds a second row to its record)."""
    rng = random.Random(seed)
    rows: list[dict] = []
    base = pd.Timestamp("2026-10-05T00:00:00Z")
    while len(rows) < n:
        i = len(rows)
        r = rng.random()
        if rows and r < exact_rate:
            src = rows[rng.randrange(len(rows))]
            prompt, completion, label = src["prompt"], src["completion"], src["label"]
        elif rows and r < exact_rate + near_rate:
            src = rows[rng.randrange(len(rows))]
            words = src["completion"].split()
            words[rng.randrange(len(words))] = rng.choice(_WORDS)
            prompt, completion, label = src["prompt"], " ".join(words), src["label"]
        elif rows and r < exact_rate + near_rate + paraphrase_rate:
            src = rows[rng.randrange(len(rows))]
            prompt, completion, label = (
                "Hi! " + src["prompt"].lower(),
                src["completion"].replace(".", "!"),
                src["label"],
            )
        else:
            prompt, completion, label = _text(rng, 300, pii_rate), _text(rng, 300, pii_rate), rng.random() < 0.7
        record_id = content_hash("bench", seed, i)
        common = {
            "record_id": record_id,
            "week": "2026-10-05",
            "timestamp": base + pd.Timedelta(seconds=i * 6),
            "prompt": prompt,
            "prompt_messages": None,
            "source": "production",
            "conversation_id": f"c{i // 4}",
            "user_id": f"u{rng.randint(1, 5000)}",
            "model_version": "v1",
            "metadata": None,
            "dump": "bench.jsonl",
            "line": i + 1,
        }
        if not label and rng.random() < edit_rate:
            edited = _text(rng, 300, pii_rate)
            rows.append(
                {
                    **common,
                    "row_id": content_hash(record_id, "edit"),
                    "completion": edited,
                    "label": True,
                    "signal": "edit",
                }
            )
            rows.append(
                {
                    **common,
                    "row_id": content_hash(record_id, "edit_original"),
                    "completion": completion,
                    "label": False,
                    "signal": "edit_original",
                }
            )
        else:
            rows.append(
                {
                    **common,
                    "row_id": content_hash(record_id, "thumb"),
                    "completion": completion,
                    "label": label,
                    "signal": "thumb",
                }
            )
    return frame_from_records(rows[:n], ROW_DTYPES)
