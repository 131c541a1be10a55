"""What the simulated users pasted that is still there after redaction: the main job's privacy check.

The simulator knows every name, e-mail and phone number it pasted (they follow the patterns in
`users`), so it can count, without any NER, how many reached the redacted table the trainer reads.
"""

from __future__ import annotations

import pandas as pd

from kto_pipeline.sim.users import EMAIL_PATTERN, NAME_PATTERN, PHONE_PATTERN

PASTED = {"PERSON": NAME_PATTERN, "EMAIL_ADDRESS": EMAIL_PATTERN, "PHONE_NUMBER": PHONE_PATTERN}
TEXT_COLUMNS = ("prompt", "prompt_messages", "completion")


def pasted_pii(texts: pd.Series | list[str]) -> dict[str, int]:
    """Occurrences of simulated PII per type in `texts`."""
    joined = "\n".join(str(t) for t in texts if isinstance(t, str))
    return {kind: len(pattern.findall(joined)) for kind, pattern in PASTED.items()}


def leaked_pii(redacted: pd.DataFrame) -> dict[str, int]:
    """Simulated PII per type left in a week's `redacted_feedback` (0 everywhere is the goal)."""
    columns = [c for c in TEXT_COLUMNS if c in redacted.columns]
    return pasted_pii(pd.concat([redacted[c] for c in columns]).tolist()) if columns else dict.fromkeys(PASTED, 0)
