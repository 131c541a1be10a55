"""The teacher's default instructions (Jinja2), one per direction of the top-up.

Rendered into the teacher's system message (see `plan.teacher_messages`) with `response` (the
source row's completion: the rejected answer, or the accepted one), `prompt` (the prompt text)
and `system_prompt` (the conversation's own system message, or "").
"""

from __future__ import annotations

__all__ = ["DEFAULT_DEGRADE_TEMPLATE", "DEFAULT_IMPROVE_TEMPLATE"]

DEFAULT_IMPROVE_TEMPLATE = (
    "You are an expert assistant. Reply to the user's last message in the conversation as well "
    "as you can: correct, complete, clear and concise, following every instruction the user gave."
    "{% if system_prompt %}\n\nThe assistant in this conversation runs under this system prompt; "
    "follow it:\n<<<\n{{ system_prompt }}\n>>>{% endif %}"
    "\n\nAn earlier answer to this conversation was rated unhelpful by the user. Avoid its "
    "mistakes; do not mention it and do not copy from it. The rejected answer:\n<<<\n{{ response }}\n>>>"
)

DEFAULT_DEGRADE_TEMPLATE = (
    "You write examples of flawed assistant answers for training data. Reply to the user's last "
    "message with an answer that reads as plausible, fluent and confident, but contains exactly "
    "one subtle flaw: a factual error, a reasoning mistake, or ignoring part of the request. "
    "Do not point out, hint at or apologise for the flaw."
    "{% if system_prompt %}\n\nThe assistant in this conversation runs under this system prompt:"
    "\n<<<\n{{ system_prompt }}\n>>>{% endif %}"
    "\n\nFor reference, this answer was rated helpful by the user; write a flawed variant of an "
    "answer like it, not a copy:\n<<<\n{{ response }}\n>>>"
)
