"""Adapters: common export shapes → `CanonicalRecord`.

| format      | recognised by (auto)          | prompt                    | completion                      | label                                   | edit                          | timestamp                  |
|-------------|-------------------------------|---------------------------|---------------------------------|-----------------------------------------|-------------------------------|----------------------------|
| contract/trl| `prompt` or `completion`      | `prompt` (text or chat)   | `completion` (text or chat)     | `label`                                 | `edited_completion`           | `timestamp` / `created_at` |
| openai      | `messages`                    | messages before the last assistant turn | last assistant message | `label` / `feedback` / `thumbs` / `rating` | `edited_completion`         | `timestamp` / `created_at` / `created` |
| paired      | `chosen` and `rejected`       | `prompt`, or the shared chat prefix | `chosen` → desirable, `rejected` → undesirable | (implied)                   | –                             | `timestamp` / `created_at` |
| langfuse    | `input`/`output` with `scores` or `traceId` | `input`         | `output`                        | the first score named like user feedback | a score with dataType CORRECTION | `timestamp`              |
| langsmith   | `inputs` / `outputs`          | `inputs`                  | `outputs`                       | the first feedback whose key is a thumbs key (`score`, else `value`) | feedback `correction` | run `start_time`, else feedback `created_at` |

Langfuse: `userId` → user_id, `sessionId` → conversation_id, `release` or `version` →
model_version, `id` → id. LangSmith: `id` (or `run_id`) → id, `extra.metadata.user_id` →
user_id, `extra.metadata.thread_id`/`session_id`/`conversation_id` → conversation_id,
`extra.metadata.model_version`/`ls_model_name` → model_version. Feedback may sit in a
`feedback` list on the run, or the record may be one flat feedback row joined with its run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kto_pipeline.ingest.contract import CanonicalRecord, ContractError, Reason

ADAPTER_FORMATS = ("auto", "contract", "trl", "openai", "paired", "langfuse", "langsmith")

FEEDBACK_SCORE_NAMES = (
    "user-feedback",
    "user_feedback",
    "feedback",
    "thumbs",
    "thumbs_up",
    "thumb",
    "user_score",
    "user-score",
    "label",
    "helpful",
)

_TEXT_KEYS = ("content", "text", "output", "answer", "completion", "response", "prompt", "input", "question", "query")


def _first(record: dict, *keys: str) -> Any:
    for key in keys:
        if record.get(key) is not None:
            return record[key]
    return None


def _last_assistant(messages: list, reason: str) -> Any:
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "assistant":
            return msg.get("content")
    raise ContractError(reason, "no assistant message")


def completion_value(value: Any, reason: str = Reason.BAD_COMPLETION) -> Any:
    """The response text out of the shapes exporters wrap it in (left for the contract to check)."""
    if isinstance(value, dict) and ("lc" in value or "type" in value and "content" in value):
        value = _langchain_message(value)
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value):
        return _last_assistant(value, reason)
    if isinstance(value, dict):
        if "role" in value and "content" in value:
            return value["content"]
        if isinstance(value.get("messages"), list):
            return _last_assistant(value["messages"], reason)
        if isinstance(value.get("generations"), list):  # LangChain LLM run output
            gens = value["generations"]
            first = gens[0][0] if gens and isinstance(gens[0], list) and gens[0] else (gens[0] if gens else None)
            if isinstance(first, dict):
                text = first.get("text")
                return text if text else completion_value(first.get("message"), reason)
        for key in _TEXT_KEYS:
            if key in value:
                return completion_value(value[key], reason)
        if len(value) == 1:
            return completion_value(next(iter(value.values())), reason)
        raise ContractError(reason, f"no response text among keys {sorted(value)[:8]}")
    return value


_LANGCHAIN_ROLES = {
    "human": "user",
    "HumanMessage": "user",
    "ai": "assistant",
    "AIMessage": "assistant",
    "system": "system",
    "SystemMessage": "system",
    "tool": "tool",
    "ToolMessage": "tool",
}


def _langchain_message(msg: Any) -> Any:
    """LangChain's message shapes (serialised `{"lc": 1, "kwargs": …}` or `{"type": "human"}`)
    → {role, content}; anything else is left for the contract to judge."""
    if not isinstance(msg, dict) or "role" in msg:
        return msg
    if isinstance(msg.get("kwargs"), dict) and isinstance(msg.get("id"), list) and msg["id"]:
        kind, content = msg["id"][-1], msg["kwargs"].get("content")
    elif "type" in msg and "content" in msg:
        kind, content = msg["type"], msg["content"]
    else:
        return msg
    if not isinstance(kind, str):  # an empty `id` or a list as `type` raised IndexError / TypeError
        return msg
    return {"role": _LANGCHAIN_ROLES.get(kind, kind), "content": content}


def chat_messages(messages: list) -> list:
    # LangChain chat-model runs log a batch: [[message, ...]]; one conversation per run.
    if len(messages) == 1 and isinstance(messages[0], list):
        messages = messages[0]
    return [_langchain_message(m) for m in messages]


def prompt_value(value: Any) -> Any:
    """A prompt out of exporters' wrappers: text, a chat transcript, or a dict holding one."""
    if isinstance(value, list):
        return chat_messages(value)
    if isinstance(value, dict):
        if isinstance(value.get("messages"), list):
            return chat_messages(value["messages"])
        for key in ("prompt", "input", "question", "query", "text", "content"):
            if key in value:
                return prompt_value(value[key])
        if len(value) == 1:
            return prompt_value(next(iter(value.values())))
        raise ContractError(Reason.BAD_PROMPT, f"no prompt among keys {sorted(value)[:8]}")
    return value


def _common(record: dict) -> dict:
    return {
        "timestamp": _first(record, "timestamp", "created_at"),
        "id": record.get("id"),
        "conversation_id": record.get("conversation_id"),
        "user_id": record.get("user_id"),
        "model_version": record.get("model_version"),
        "metadata": record.get("metadata"),
    }


def from_contract(record: dict) -> CanonicalRecord:
    """The project's contract, which is also TRL's unpaired prompt/completion/label format."""
    completion = record.get("completion")
    return CanonicalRecord(
        prompt=record.get("prompt"),
        completion=completion_value(completion) if completion is not None else None,
        label=record.get("label"),
        edited_completion=record.get("edited_completion"),
        **_common(record),
    )


def from_openai(record: dict) -> CanonicalRecord:
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ContractError(Reason.BAD_PROMPT, "messages must be a non-empty list")
    last = max(
        (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"), default=None
    )
    if last is None:
        raise ContractError(Reason.MISSING_COMPLETION, "no assistant message in messages")
    common = _common(record)
    common["timestamp"] = _first(record, "timestamp", "created_at", "created")
    common["user_id"] = _first(record, "user_id", "user")
    common["model_version"] = _first(record, "model_version", "model")
    return CanonicalRecord(
        prompt=messages[:last],
        completion=messages[last].get("content"),
        label=_first(record, "label", "feedback", "thumbs", "rating"),
        edited_completion=record.get("edited_completion"),
        **common,
    )


def from_paired(record: dict) -> CanonicalRecord:
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
        **_common(record),
    )


def _named_score(scores: list, names: tuple[str, ...]) -> dict | None:
    wanted = {n.lower() for n in names}
    for score in scores:
        if isinstance(score, dict) and str(score.get("name", "")).lower() in wanted:
            return score
    return None


def from_langfuse(record: dict, score_names: tuple[str, ...] = FEEDBACK_SCORE_NAMES) -> CanonicalRecord:
    scores = record.get("scores") or []
    if not isinstance(scores, list):
        raise ContractError(Reason.BAD_LABEL, "scores must be a list")
    score = _named_score(scores, score_names)
    label = None
    if score is not None:
        label = score.get("stringValue") if score.get("dataType") == "CATEGORICAL" else score.get("value")
    edit = None
    for s in scores:
        if isinstance(s, dict) and (
            s.get("dataType") == "CORRECTION" or str(s.get("name", "")).lower() == "correction"
        ):
            edit = _first(s, "stringValue", "value")
    output = record.get("output")
    return CanonicalRecord(
        timestamp=record.get("timestamp"),
        prompt=prompt_value(record.get("input")) if record.get("input") is not None else None,
        completion=completion_value(output) if output is not None else None,
        label=label,
        edited_completion=edit,
        id=record.get("id"),
        conversation_id=record.get("sessionId"),
        user_id=record.get("userId"),
        model_version=_first(record, "release", "version"),
        metadata=record.get("metadata"),
    )


def from_langsmith(record: dict, feedback_keys: tuple[str, ...] = FEEDBACK_SCORE_NAMES) -> CanonicalRecord:
    feedback = record.get("feedback")
    if feedback is None and "key" in record:
        feedback = [record]  # one flat feedback row joined with its run
    if feedback is not None and not isinstance(feedback, list):
        raise ContractError(Reason.BAD_LABEL, "feedback must be a list")
    wanted = {k.lower() for k in feedback_keys}
    chosen = next((f for f in feedback or [] if isinstance(f, dict) and str(f.get("key", "")).lower() in wanted), None)
    label = edit = None
    if chosen is not None:
        label = chosen.get("score") if chosen.get("score") is not None else chosen.get("value")
        if chosen.get("correction") is not None:
            edit = completion_value(chosen["correction"], Reason.BAD_EDIT)
    extra = record.get("extra")
    meta = extra.get("metadata") if isinstance(extra, dict) else None
    # Ids are read from an object only (a string `metadata` raised AttributeError); any other
    # value is still kept, as the row's metadata.
    ids = meta if isinstance(meta, dict) else {}
    outputs = record.get("outputs")
    return CanonicalRecord(
        timestamp=_first(record, "start_time", "timestamp") or (chosen or {}).get("created_at"),
        prompt=prompt_value(record.get("inputs")) if record.get("inputs") is not None else None,
        completion=completion_value(outputs) if outputs is not None else None,
        label=label,
        edited_completion=edit,
        id=_first(record, "run_id", "id") if "key" in record else record.get("id"),
        conversation_id=_first(ids, "thread_id", "session_id", "conversation_id"),
        user_id=ids.get("user_id"),
        model_version=_first(ids, "model_version", "ls_model_name"),
        metadata=meta or None,
    )


ADAPTERS: dict[str, Callable[[dict], CanonicalRecord]] = {
    "contract": from_contract,
    "trl": from_contract,
    "openai": from_openai,
    "paired": from_paired,
    "langfuse": from_langfuse,
    "langsmith": from_langsmith,
}


def detect_format(record: dict) -> str:
    if "chosen" in record and "rejected" in record:
        return "paired"
    if "messages" in record and "completion" not in record:
        return "openai"
    if "inputs" in record or "outputs" in record:
        return "langsmith"
    if ("input" in record or "output" in record) and (
        "scores" in record or "traceId" in record or "sessionId" in record
    ):
        return "langfuse"
    if "prompt" in record or "completion" in record:
        return "contract"
    raise ContractError(Reason.UNKNOWN_FORMAT, f"no adapter recognises keys {sorted(record)[:10]}")


def adapt(record: dict, fmt: str = "auto") -> CanonicalRecord:
    if fmt not in ADAPTER_FORMATS:
        raise ValueError(f"unknown feedback format {fmt!r}; one of {ADAPTER_FORMATS}")
    return ADAPTERS[detect_format(record) if fmt == "auto" else fmt](record)
