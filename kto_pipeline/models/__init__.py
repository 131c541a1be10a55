"""Models: the weekly checkpoints and which one is the champion.

A checkpoint is a Hugging Face folder (adapter or full model, tokenizer, model card) plus a
manifest that says what kind it is and what it came from; the registry derives the champion
from promotion records instead of keeping a mutable pointer, so re-running a week's evaluation
compares against the same champion as the first time.

Layout: `manifest` (`kto_checkpoint.json` as a `CheckpointManifest`), `checkpoints` (the folder
format, loading any model reference), `registry` (folders, promotions, the champion), `lineage`
(which checkpoint a week starts from) and `promotion` (recording an evaluation: the report and
the promote or withdraw).
"""
