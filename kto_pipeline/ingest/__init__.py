"""Ingest: feedback dumps as teams write them → rows in the feedback contract, or quarantine.

Production feedback arrives as files (JSONL, JSON, CSV, Parquet, gzipped or not) in a folder
or an object-store prefix, in whatever shape the capture tool exports, and real exports keep
the rating apart from the text it rates (a Langfuse score, a LangSmith feedback, a TensorZero
metric), often in a later dump. This stage reads every dump without giving up on a file for
one bad record, joins ratings to their responses by id across dumps, and accounts for every
record: kept as training rows of the week its feedback was given, quarantined with a reason,
or skipped with a reason (a response nobody rated), so the counts always add up.

- `dumps`: listing a location (local or fsspec), dump versions, reading records;
- `adapters/`: export shapes (contract/TRL, paired, OpenAI, Langfuse, LangSmith, TensorZero)
  → a whole record, or a response or a rating (`parts`);
- `thumbs`: which scores are users' thumbs and how their values read;
- `join`: ratings matched to responses (latest thumb wins, look-back, orphans, unrated);
- `contract`, `records`: what makes a field and a record valid, row ids, reasons, schemas;
- `edits`: when a user's edit is big enough to train on;
- `options`: the settings of all of the above (`IngestOptions`);
- `load`, `ledger`: dumps → rows, quarantine and the ledger of every record's fate (`ingest`).
"""
