"""kto-pipeline: production thumbs and edits → curated weekly KTO fine-tunes."""
