"""The project's contract (which is also TRL's unpaired prompt/completion/label format) and
paired chosen/rejected data (TRL's preference format)."""

from __future__ import annotations

from kto_pipeline.ingest.adapters.text import completion_value, first
from kto_pipeline.ingest.contract import CanonicalRecord
from kto_pipeline.ingest.options import IngestOptions


def common_fields(record: dict) -> dict:
    return {
        "timestamp": first(record, "timestamp", "created_at"),
        "id": record.get("id"),
        "conversation_id": record.get("conversation_id"),
        "user_id": record.get("user_id"),
        "model_version": record.get("model_version"),
        "metadata": record.get("metadata"),
    }


def from_contract(record: dict, options: IngestOptions) -> CanonicalRecord:
    completion = record.get("completion")
    return CanonicalRecord(
        prompt=record.get("prompt"),
        completion=completion_value(completion) if completion is not None else None,
        label=record.get("label"),
        edited_completion=record.get("edited_completion"),
        **common_fields(record),
    )


def from_paired(record: dict, options: IngestOptions) -> CanonicalRecord:
    prompt, chosen, rejected = record.get("prompt"), record.get("chosen"), record.get("rejected")
    if prompt is None and isinstance(chosen, list) and isinstance(rejected, list):
        # TRL's implicit-prompt conversational pairs: the prompt is the shared prefix.
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    return CanonicalRecord(
        prompt=prompt,
        completion=completion_value(chosen) if chosen is not None else None,
        rejected=completion_value(rejected) if rejected is not None else None,
        kind="pair",
        **common_fields(record),
    )
