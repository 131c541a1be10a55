"""Defaults shared by the evaluation stages (TRL's KTOConfig values) and the names of the compared models."""

from __future__ import annotations

DEFAULT_BETA = 0.1  # KTOConfig.beta
DEFAULT_BATCH_SIZE = 8
DEFAULT_MAX_LENGTH = 1024  # KTOConfig.max_length

ROLE_BASE = "base"
ROLE_CHAMPION = "champion"
ROLE_CANDIDATE = "candidate"
ROLES = (ROLE_BASE, ROLE_CHAMPION, ROLE_CANDIDATE)
