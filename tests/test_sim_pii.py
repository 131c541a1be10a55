"""The simulator's privacy check: every name, e-mail and phone number its users paste is gone
from what redaction hands on, with the default redaction settings."""

import pandas as pd

from kto_pipeline.curate.redaction import redact
from kto_pipeline.sim import OracleUser, simulate_week, task_split
from kto_pipeline.sim.pii_audit import leaked_pii, pasted_pii
from kto_pipeline.sim.task import question_of, right_answer


def oracle(prompts, temperature, seed):
    return [right_answer(p) for p in prompts]


def test_no_pasted_pii_survives_redaction():
    traffic = simulate_week(
        oracle, task_split().week_prompts(0, 300), "2026-11-02", user=OracleUser(pii_share=1.0, repeat_share=0.0),
        seed=5, model_version="v0",
    )  # fmt: skip
    rows = pd.DataFrame(
        {
            "record_id": [r["id"] for r in traffic.records],
            "prompt": [r["prompt"] for r in traffic.records],
            "prompt_messages": [None] * len(traffic.records),
            "completion": [r["completion"] for r in traffic.records],
        }
    )
    pasted = pasted_pii(rows["prompt"].tolist())
    assert min(pasted.values()) > 50  # every kind was pasted, many times
    redacted = redact(rows).rows
    assert leaked_pii(redacted) == {"PERSON": 0, "EMAIL_ADDRESS": 0, "PHONE_NUMBER": 0}
    # The question itself is left for the model to answer.
    assert [question_of(p) for p in redacted["prompt"]] == [question_of(p) for p in rows["prompt"]]


def test_the_audit_counts_what_is_left():
    left = pd.DataFrame({"prompt": ["Hi, I'm Ravi Eriksen (ravi.eriksen@example.com). 12+13="], "completion": ["25"]})
    assert leaked_pii(left) == {"PERSON": 1, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 0}
