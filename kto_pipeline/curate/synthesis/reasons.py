"""Why a source row was skipped or a generated row dropped, and the table such drops go to."""

from __future__ import annotations

__all__ = ["DROPPED_DTYPES", "SynthesisReason"]


class SynthesisReason:
    """Why a source row was skipped or a generated row dropped. Stable strings."""

    BAD_PROMPT_MESSAGES = "bad_prompt_messages"  # prompt_messages is not a JSON chat
    NOT_ENDING_WITH_USER = "conversation_not_ending_with_user"  # nothing for the teacher to answer
    EMPTY_GENERATION = "empty_generation"  # empty or whitespace-only text
    GENERATION_FAILED = "generation_failed"  # distilabel returned None (the LLM call raised)
    MISSING_OUTPUT = "missing_output"  # the request never came back from the pipeline
    OVER_CAP = "over_cap"  # more rows survived filtering than the target allows


DROPPED_DTYPES: dict[str, str] = {
    "row_id": "str",  # the id the generated row would have had
    "source_row_id": "str",
    "generation_index": "int64",
    "reason": "str",
    "detail": "str",
}
