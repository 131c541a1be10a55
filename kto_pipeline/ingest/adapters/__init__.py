"""Adapters: export shapes → a whole record, or a response or a rating for the join.

| format      | recognised by (auto)                                   | reads |
|-------------|--------------------------------------------------------|-------|
| contract/trl| `prompt` or `completion`                               | prompt, completion, label, edited_completion, timestamp/created_at, id, conversation_id, user_id, model_version, metadata |
| paired      | `chosen` and `rejected`                                | prompt (or the shared chat prefix), chosen, rejected |
| openai      | `messages`; `preferred_output`; `object: chat.completion` | see openai.py: chat + thumb, fine-tuning, preference fine-tuning, stored completions |
| langfuse    | traces, observations, scores (API camelCase or blob export snake_case) | see langfuse.py |
| langsmith   | runs (`inputs`/`outputs`), feedback (`run_id` + `key`)  | see langsmith.py |
| tensorzero  | inferences (`function_name`), feedback (`metric_name`, `inference_id`, `target_id`) | see tensorzero.py |
| capture     | `event` ("response" / "feedback") and `event_id`        | see capture.py (kto_pipeline.capture's segments) |

`IngestOptions.format` forces one adapter for every record; "auto" recognises each record.
"""

from __future__ import annotations

from collections.abc import Callable

from kto_pipeline.ingest.adapters import capture, langfuse, langsmith, tensorzero
from kto_pipeline.ingest.adapters.capture import from_capture
from kto_pipeline.ingest.adapters.langfuse import from_langfuse
from kto_pipeline.ingest.adapters.langsmith import from_langsmith
from kto_pipeline.ingest.adapters.openai import from_openai
from kto_pipeline.ingest.adapters.plain import from_contract, from_paired
from kto_pipeline.ingest.adapters.tensorzero import from_tensorzero
from kto_pipeline.ingest.adapters.text import completion_value, prompt_value
from kto_pipeline.ingest.contract import ContractError, Reason
from kto_pipeline.ingest.options import ADAPTER_FORMATS, IngestOptions
from kto_pipeline.ingest.parts import Adapted

__all__ = ["ADAPTERS", "ADAPTER_FORMATS", "adapt", "completion_value", "detect_format", "format_of", "prompt_value"]

ADAPTERS: dict[str, Callable[[dict, IngestOptions], Adapted]] = {
    "contract": from_contract,
    "trl": from_contract,
    "openai": from_openai,
    "paired": from_paired,
    "langfuse": from_langfuse,
    "langsmith": from_langsmith,
    "tensorzero": from_tensorzero,
    "capture": from_capture,
}

UNKNOWN = "unknown"


def detect_format(record: dict) -> str:
    if capture.is_event(record):
        return "capture"
    if "chosen" in record and "rejected" in record:
        return "paired"
    if "preferred_output" in record or "non_preferred_output" in record:
        return "openai"
    if record.get("object") == "chat.completion" or ("choices" in record and "created" in record):
        return "openai"
    if "messages" in record and "completion" not in record:
        return "openai"
    if tensorzero.is_inference(record) or tensorzero.is_feedback(record):
        return "tensorzero"
    if "inputs" in record or "outputs" in record or langsmith.is_feedback(record):
        return "langsmith"
    if langfuse.is_score(record) or langfuse.is_observation(record) or langfuse.is_trace(record):
        return "langfuse"
    if "prompt" in record or "completion" in record:
        return "contract"
    raise ContractError(Reason.UNKNOWN_FORMAT, f"no adapter recognises keys {sorted(record)[:10]}")


def format_of(record: dict, forced: str = "auto") -> str:
    """The adapter that reads `record` (for the per-format counts), or "unknown"."""
    if forced != "auto":
        return forced
    try:
        return detect_format(record)
    except ContractError:
        return UNKNOWN


def adapt(record: dict, options: IngestOptions | None = None) -> Adapted:
    options = options or IngestOptions()
    fmt = detect_format(record) if options.format == "auto" else options.format
    return ADAPTERS[fmt](record, options)
