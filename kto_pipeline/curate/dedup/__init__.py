"""Deduplication of a week's training rows: contradictions, exact, near and semantic duplicates.

`deduplicate` runs four stages, in this order, each against the current week and against
what earlier weeks kept (a `DedupHistory`). Every dropped row gets a reason; the counts add up
(rows_in == kept + the sum of the drops). Only rows with the *same label* are ever duplicates
of each other: a desirable and an undesirable row are different KTO examples, and the two
rows of one edit (the user's edit, desirable; the original, undesirable) are never removed
as duplicates of each other.

Rows are compared on `dedup_text(prompt, completion)`: the normalised prompt, a newline, and
the normalised completion (normalise = NFKC, casefold, collapse whitespace, strip).

Keep rules (every "first" is by (timestamp, row_id), so the result does not depend on the
order of the input rows):

1. Contradictions. Rows with the same dedup_text from different records but both labels
   disagree. The majority label wins: its rows stay (for the next stages) and the minority
   rows are dropped as "contradiction_minority". On a tie every row of that text is dropped
   as "contradiction_tie". Rows that all come from one record (an edit whose edited and
   original texts normalise to the same text) are not a contradiction.
2. Exact duplicates: same dedup_text and same label. A row whose (text hash, label) an
   earlier week kept is dropped as "exact_duplicate_earlier_week"; of the rest, the first of
   each group is kept and the others are dropped as "exact_duplicate".
3. Near duplicates: datasketch MinHash signatures (scheme "affine32", xxh32) over word
   5-shingles of the prompt and of the completion (hashed apart, so a row's set is their
   disjoint union) and one `MinHashLSH(threshold, num_perm)` index per label over the row
   signatures. An LSH candidate pair counts when the MinHash-estimated Jaccard of the prompts
   AND of the completions are both >= threshold, so one long shared prompt does not make
   different answers ("yes" / "no") look alike. Rows matching an earlier week's row are
   dropped as "near_duplicate_earlier_week"; the rest are grouped into connected components
   of matching pairs, the first row of each group is kept and the others are dropped as
   "near_duplicate" with duplicate_of = that first row (a chain A~B~C keeps A only).
4. Semantic duplicates: SemDeDup (Abbas et al. 2023) on the given embeddings. Spherical
   k-means into k clusters; inside each cluster rows are ordered by cosine distance to the
   centroid, keep="hard" putting the farthest first (facebookresearch/SemDeDup's default;
   "easy": closest first; "random": seeded shuffle). A row j is dropped as
   "semantic_duplicate" when max over earlier rows i of the same label and cluster of
   cos(i, j) >= 1 - eps, whether or not i was itself dropped (SemDeDup's rule, not
   transitive); duplicate_of follows the chain of best matches back to the kept row. Before
   that, each row is compared with the earlier weeks' rows of its label that fall in the same
   cluster (history vectors are assigned to this week's centroids) and dropped as
   "semantic_duplicate_earlier_week" at the same threshold.

In every stage, the comparison against earlier weeks comes first: the earlier week's row wins.

Layout: `text` (normalisation, shingles, the exact hash), `sketch` (MinHash signatures and the
sketch description), `shingle_hash` (shingling and xxh32 over a batch of texts with numpy,
bit-identical to datasketch), `embedding` (row vectors), `config`, `history` (`DedupHistory` and its
frame encoding), one module per stage (`exact`: stages 1-2, `minhash`: 3, `semdedup`: 4), each
returning a `drops.StageDrops`, and `pipeline` (the `deduplicate` driver).
"""

from kto_pipeline.curate.dedup.config import DedupConfig, DedupReason
from kto_pipeline.curate.dedup.drops import StageDrops
from kto_pipeline.curate.dedup.embedding import embed_rows, unit_rows
from kto_pipeline.curate.dedup.history import HISTORY_COLUMNS, DedupHistory
from kto_pipeline.curate.dedup.pipeline import DedupResult, deduplicate
from kto_pipeline.curate.dedup.sketch import (
    COMPLETION_HASH_SEED,
    DATASKETCH_VERSION,
    MINHASH_HASHFUNC,
    MINHASH_SCHEME,
    PROMPT_HASH_SEED,
    SketchMismatchError,
    estimated_jaccard,
    lsh_params,
    minhash_signatures,
    row_signatures,
    shingle_hashes,
    signatures_from_hashes,
    sketch_spec,
)
from kto_pipeline.curate.dedup.text import (
    EXACT_HASH,
    TEXT_NORMALISATION,
    dedup_text,
    exact_hash,
    normalise_text,
    shingles,
    words,
)

__all__ = [
    "COMPLETION_HASH_SEED",
    "DATASKETCH_VERSION",
    "EXACT_HASH",
    "HISTORY_COLUMNS",
    "MINHASH_HASHFUNC",
    "MINHASH_SCHEME",
    "PROMPT_HASH_SEED",
    "TEXT_NORMALISATION",
    "DedupConfig",
    "DedupHistory",
    "DedupReason",
    "DedupResult",
    "SketchMismatchError",
    "StageDrops",
    "dedup_text",
    "deduplicate",
    "embed_rows",
    "estimated_jaccard",
    "exact_hash",
    "lsh_params",
    "minhash_signatures",
    "normalise_text",
    "row_signatures",
    "shingle_hashes",
    "shingles",
    "signatures_from_hashes",
    "sketch_spec",
    "unit_rows",
    "words",
]
