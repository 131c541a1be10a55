"""OpenAI's shapes: chat messages with a thumb, the fine-tuning files, stored chat completions.

- chat + feedback: `messages` and a `label` / `feedback` / `thumbs` / `rating` field (what
  apps log themselves) → a thumb on the last assistant turn;
- chat fine-tuning JSONL (`messages`, optional per-message `weight`): examples the team wrote
  or approved → desirable `demonstration` rows (IngestOptions.demonstrations, on by default);
  a last assistant turn with weight 0 is not trained on (skipped: zero_weight);
- preference fine-tuning JSONL (`input`, `preferred_output`, `non_preferred_output`) → a pair;
- stored chat completions (`object: "chat.completion"`, from GET /v1/chat/completions): the
  thumb is read from the `metadata` the app set (a key among the feedback names); the request
  messages are not part of a stored completion, so the export must carry them under
  `messages` (GET /v1/chat/completions/{id}/messages; a list or its page object).

Fine-tuning files carry no time: their rows are dated when their dump was written.
"""

from __future__ import annotations

from kto_pipeline.ingest.adapters.text import assistant_text, chat_messages, completion_value, first
from kto_pipeline.ingest.contract import CanonicalRecord, ContractError, Reason
from kto_pipeline.ingest.options import IngestOptions
from kto_pipeline.ingest.parts import DUMP_WRITTEN_AT, Adapted, Rating, Response, Skipped, SkipReason, target_key

_LABEL_KEYS = ("label", "feedback", "thumbs", "rating")


def _split_transcript(messages: list) -> tuple[list, dict]:
    """(the turns before the last assistant turn, that turn)."""
    last = max(
        (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"), default=None
    )
    if last is None:
        raise ContractError(Reason.MISSING_COMPLETION, "no assistant message in messages")
    return messages[:last], messages[last]


def _chat(record: dict, options: IngestOptions) -> Adapted:
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ContractError(Reason.BAD_PROMPT, "messages must be a non-empty list")
    before, answer = _split_transcript(messages)
    label = first(record, *_LABEL_KEYS)
    common = {
        "id": record.get("id"),
        "conversation_id": record.get("conversation_id"),
        "user_id": first(record, "user_id", "user"),
        "model_version": first(record, "model_version", "model"),
        "metadata": record.get("metadata"),
    }
    timestamp = first(record, "timestamp", "created_at", "created")
    if label is not None or record.get("edited_completion") is not None:
        return CanonicalRecord(
            timestamp=timestamp,
            prompt=chat_messages(before),
            completion=assistant_text(answer, Reason.BAD_COMPLETION),
            label=label,
            edited_completion=record.get("edited_completion"),
            **common,
        )
    # No thumb: a fine-tuning example.
    if answer.get("weight") == 0:
        return Skipped(SkipReason.ZERO_WEIGHT, "the last assistant turn has weight 0 (not trained on)", timestamp)
    if not options.demonstrations:
        return Skipped(SkipReason.UNRATED, "a fine-tuning example, and demonstrations are off", timestamp)
    return CanonicalRecord(
        timestamp=timestamp if timestamp is not None else DUMP_WRITTEN_AT,
        prompt=chat_messages(before),
        completion=assistant_text(answer, Reason.BAD_COMPLETION),
        kind="demonstration",
        **common,
    )


def _preference(record: dict, options: IngestOptions) -> CanonicalRecord:
    given = record.get("input")
    messages = given.get("messages") if isinstance(given, dict) else None
    if not isinstance(messages, list) or not messages:
        raise ContractError(Reason.BAD_PROMPT, "input.messages must be a non-empty list")
    timestamp = first(record, "timestamp", "created_at")
    return CanonicalRecord(
        timestamp=timestamp if timestamp is not None else DUMP_WRITTEN_AT,
        prompt=chat_messages(messages),
        completion=completion_value(record.get("preferred_output")),
        rejected=completion_value(record.get("non_preferred_output")),
        kind="pair",
        id=record.get("id"),
        metadata=record.get("metadata"),
    )


def _stored_completion(record: dict, options: IngestOptions) -> Response:
    ident = record.get("id")
    if ident is None:
        raise ContractError(Reason.BAD_FIELD, "stored chat completion without an id")
    meta = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    rule = options.thumb_rule
    ratings = []
    thumb_key = next((k for k in meta if rule.is_thumb(k)), None)
    edit = first(meta, "edited_completion", "correction")
    label = rule.label(meta[thumb_key]) if thumb_key is not None else None
    if label is not None or edit is not None:
        ratings.append(Rating((target_key("openai", ident),), None, label, edit))

    def build() -> CanonicalRecord:
        messages = record.get("messages")
        if isinstance(messages, dict):  # the messages endpoint's page object
            messages = messages.get("data")
        if not isinstance(messages, list) or not messages:
            raise ContractError(
                Reason.MISSING_PROMPT,
                f"stored chat completion {ident} carries no request messages: export them with "
                f"client.chat.completions.messages.list({ident!r}) under 'messages'",
            )
        return CanonicalRecord(
            timestamp=record.get("created"),
            prompt=chat_messages(messages),
            completion=completion_value(record),
            id=ident,
            conversation_id=first(meta, "conversation_id", "thread_id", "session_id"),
            user_id=first(meta, "user_id", "user"),
            model_version=first(meta, "model_version") or record.get("model"),
            metadata=meta or None,
        )

    response = Response.built((target_key("openai", ident),), build, record.get("created"), ident)
    response.ratings = ratings
    return response


def from_openai(record: dict, options: IngestOptions) -> Adapted:
    if "preferred_output" in record or "non_preferred_output" in record:
        return _preference(record, options)
    if record.get("object") == "chat.completion" or "choices" in record:
        return _stored_completion(record, options)
    return _chat(record, options)
