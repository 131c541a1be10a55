"""Numbers and model roles as the promotion reasons, the report and its plots show them."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from kto_pipeline.evaluate.constants import ROLE_CHAMPION

if TYPE_CHECKING:
    from kto_pipeline.evaluate.compare import EvalResult


def format_number(value: float | None, digits: int = 4, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    value = float(value) + 0.0  # no "-0.0000"
    if abs(value) < 0.5 * 10**-digits:
        value = 0.0
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def role_label(result: EvalResult, role: str) -> str:
    if role == ROLE_CHAMPION and result.champion_is_base:
        return "champion (= base)"
    return role
