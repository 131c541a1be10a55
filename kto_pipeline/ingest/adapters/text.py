"""Prompt and response text out of the wrappers exporters put around it.

Shared by every adapter: OpenAI chat messages (with tool calls and content parts), LangChain
messages and generations, ChatCompletion objects, and values exported as JSON-encoded strings.
"""

from __future__ import annotations

import json
from typing import Any

from kto_pipeline.ingest.contract import ContractError, Reason

_TEXT_KEYS = ("content", "text", "output", "answer", "completion", "response", "prompt", "input", "question", "query")

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


def json_value(value: Any, what: str, reason: str, strict: bool) -> Any:
    """`value`, or what it encodes when it is a JSON-encoded string.

    strict: the exporter always encodes (Langfuse's blob export, TensorZero's tables), so a
    string that does not parse is bad input. Otherwise a string is decoded only when it parses
    as an object or array, and is plain text when it does not.
    """
    if not isinstance(value, str):
        return value
    try:
        decoded = json.loads(value)
    except (ValueError, RecursionError) as exc:
        if strict:
            raise ContractError(reason, f"{what} is a string that is not JSON ({exc}): {value[:60]!r}") from None
        return value
    if strict or isinstance(decoded, (dict, list)):
        return decoded
    return value


def tool_call_text(calls: list) -> str:
    """Tool calls kept in a prompt as text, so the transcript a later turn answers stays whole."""
    parts = []
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            parts.append(f"[tool call] {fn.get('name')}({fn.get('arguments', '')})")
        elif isinstance(call, dict):
            parts.append(f"[tool call] {call.get('name')}({json.dumps(call.get('args', call.get('arguments')))})")
    return "\n".join(parts)


def _tool_names(calls: Any) -> str:
    names = []
    for call in calls if isinstance(calls, list) else []:
        fn = call.get("function") if isinstance(call, dict) else None
        names.append(str((fn or call).get("name")) if isinstance(fn or call, dict) else "?")
    return ", ".join(names) or "?"


def openai_message(msg: Any) -> Any:
    """An OpenAI chat message as {role, content}: tool calls as text, stored content_parts read."""
    if not isinstance(msg, dict) or "role" not in msg:
        return msg
    content = msg.get("content")
    if content is None and isinstance(msg.get("content_parts"), list):
        content = msg["content_parts"]
    if content is None and msg.get("tool_calls"):
        content = tool_call_text(msg["tool_calls"])
    elif content is None and isinstance(msg.get("function_call"), dict):
        content = tool_call_text([{"function": msg["function_call"]}])
    return {"role": msg["role"], "content": content}


def assistant_text(msg: dict, reason: str) -> Any:
    """The text of an assistant message that answers the user; a tool call alone is not one."""
    content = msg.get("content")
    if content is None and isinstance(msg.get("content_parts"), list):
        content = msg["content_parts"]
    if (content is None or content == "") and (msg.get("tool_calls") or msg.get("function_call")):
        calls = msg.get("tool_calls") or [{"function": msg.get("function_call")}]
        raise ContractError(
            Reason.TOOL_CALL_RESPONSE,
            f"the response calls tools ({_tool_names(calls)}) and has no text; tool calls are not trained on",
        )
    if content is None and msg.get("refusal"):
        return msg["refusal"]
    return content


def _langchain_message(msg: Any) -> Any:
    """LangChain's message shapes (serialised `{"lc": 1, "kwargs": …}` or `{"type": "human"}`)
    → {role, content}; anything else is left for the contract to judge."""
    if not isinstance(msg, dict) or "role" in msg:
        return msg
    if isinstance(msg.get("kwargs"), dict) and isinstance(msg.get("id"), list) and msg["id"]:
        kind, content, kwargs = msg["id"][-1], msg["kwargs"].get("content"), msg["kwargs"]
    elif "type" in msg and "content" in msg:
        kind, content, kwargs = msg["type"], msg["content"], msg
    else:
        return msg
    if not isinstance(kind, str):  # an empty `id` or a list as `type` raised IndexError / TypeError
        return msg
    out = {"role": _LANGCHAIN_ROLES.get(kind, kind), "content": content}
    if not content and kwargs.get("tool_calls"):
        out["tool_calls"] = kwargs["tool_calls"]
    return out


def chat_messages(messages: list) -> list:
    # LangChain chat-model runs log a batch: [[message, ...]]; one conversation per run.
    if len(messages) == 1 and isinstance(messages[0], list):
        messages = messages[0]
    return [openai_message(_langchain_message(m)) for m in messages]


def _last_assistant(messages: list, reason: str) -> Any:
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "assistant":
            return assistant_text(msg, reason)
    raise ContractError(reason, "no assistant message")


def completion_value(value: Any, reason: str = Reason.BAD_COMPLETION) -> Any:
    """The response text out of the shapes exporters wrap it in (left for the contract to check)."""
    if isinstance(value, dict) and ("lc" in value or "type" in value and "content" in value):
        value = _langchain_message(value)
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value):
        return _last_assistant(value, reason)
    if isinstance(value, dict):
        if "role" in value and ("content" in value or "tool_calls" in value):
            return assistant_text(value, reason)
        if isinstance(value.get("choices"), list):  # a ChatCompletion (OpenAI, LangSmith's wrap_openai)
            choice = value["choices"][0] if value["choices"] else None
            if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
                raise ContractError(reason, "the ChatCompletion has no choices[0].message")
            return assistant_text(choice["message"], reason)
        if isinstance(value.get("messages"), list):
            return _last_assistant(value["messages"], reason)
        if isinstance(value.get("generations"), list):  # LangChain LLM run output
            gens = value["generations"]
            first = gens[0][0] if gens and isinstance(gens[0], list) and gens[0] else (gens[0] if gens else None)
            if isinstance(first, dict):
                text = first.get("text")
                return text if text else completion_value(first.get("message"), reason)
            raise ContractError(reason, "the run's generations are empty")
        for key in _TEXT_KEYS:
            if key in value:
                return completion_value(value[key], reason)
        if len(value) == 1:
            return completion_value(next(iter(value.values())), reason)
        raise ContractError(reason, f"no response text among keys {sorted(value)[:8]}")
    return value


def prompt_value(value: Any) -> Any:
    """A prompt out of exporters' wrappers: text, a chat transcript, or a dict holding one."""
    if isinstance(value, list):
        return chat_messages(value)
    if isinstance(value, dict):
        if isinstance(value.get("messages"), list):
            return chat_messages(value["messages"])
        if isinstance(value.get("prompts"), list) and len(value["prompts"]) == 1:  # a LangChain LLM run
            return prompt_value(value["prompts"][0])
        for key in ("prompt", "input", "question", "query", "text", "content"):
            if key in value:
                return prompt_value(value[key])
        if len(value) == 1:
            return prompt_value(next(iter(value.values())))
        raise ContractError(Reason.BAD_PROMPT, f"no prompt among keys {sorted(value)[:8]}")
    return value


def first(record: dict, *keys: str) -> Any:
    for key in keys:
        if record.get(key) is not None:
            return record[key]
    return None
