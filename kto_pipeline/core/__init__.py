"""Core: what every stage shares, and nothing stage-specific.

- `accounting`: every step's rows in = rows kept + rows dropped with a reason (by row id where
  rows have ids), the invariant behind the blocking `rows_accounted` checks;
- `weeks`: which feedback week a timestamp belongs to, in the same terms as Dagster's weekly
  partitions, so the library and the orchestration layer never disagree about a week;
- `missing`: one rule for "no value", so a field ingestion treats as absent is absent for every
  later stage too.
"""
