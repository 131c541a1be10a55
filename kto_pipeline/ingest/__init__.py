"""Ingest: feedback dumps → contract rows (readers, adapters per export format, edits, quarantine)."""
