"""Ingest: feedback dumps as teams write them → rows in the feedback contract, or quarantine.

Production feedback arrives as files (JSONL, JSON, CSV, Parquet, gzipped or not) in a folder
or an object-store prefix, in whatever shape the capture tool exports. This stage reads them
without ever giving up on a file for one bad record: every record ends up either as training
rows of its week (an edit or a chosen/rejected pair becomes a desirable and an undesirable
row) or in the quarantine with a reason, so the counts always add up.

- `dumps`: listing a location (local or fsspec), dump versions, reading records;
- `adapters`: export shapes (TRL, OpenAI chat, paired, Langfuse, LangSmith) → one record type;
- `contract`: what makes a field valid, row ids, reasons, the output schemas;
- `edits`: when a user's edit is big enough to train on;
- `load`: dumps → rows and quarantine, assigned to feedback weeks (`ingest`).
"""
