"""Core: what every stage shares: row accounting, the feedback week calendar, one rule for a missing value."""
