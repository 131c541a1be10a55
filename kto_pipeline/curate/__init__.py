"""Curate: redaction, deduplication, DEITA scoring and selection, class balance, synthetic top-up."""
