"""Curate: a week's contract rows → the training rows KTO should see.

Production thumbs are noisy, repetitive, personal and lopsided. Each module fixes one of those,
and each returns what it kept and what it dropped with a reason (rows are never lost silently):

- `redaction`: PII replaced by typed placeholders (Presidio), so customers' data never reaches
  the trainer;
- `embeddings`: the sentence embedder that semantic dedup and diversity selection share;
- `dedup/`: contradictions, exact, MinHash and SemDeDup duplicates, also against earlier weeks,
  so a question asked a hundred times is not trained on a hundred times;
- `deita/` and `select`: DEITA's complexity and quality scores, and its diversity-aware
  selection;
- `balance`: the held-out split and the KTO class weights the paper's ratio rule asks for;
- `synthesis/`: teacher-written rows for the short class (distilabel), screened like real rows.
"""
