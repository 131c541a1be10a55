"""The on-disk bad-input corpus (tests/bad_input_corpus/, README.md there) through the library
and through Dagster: nothing raises, every record is kept or quarantined with its reason, the
counts are the README's, every step's `rows_accounted` check passes, and a file that cannot be
read at all fails its run with a message naming it."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from assets.balance import balanced_feedback
from assets.dedup import deduplicated_feedback
from assets.ingest import raw_feedback
from assets.partitions import CALENDAR
from assets.redact import redacted_feedback
from assets.score import scored_feedback
from conftest import assert_rows_accounted, checks
from conftest import curation_resources as _resources
from conftest import materialization_metadata as _meta
from kto_pipeline.core.weeks import WeekCalendar
from kto_pipeline.ingest.contract import Reason
from kto_pipeline.ingest.dumps import DumpReadError, list_dumps
from kto_pipeline.ingest.load import IngestOptions, ingest, records_kept
from kto_pipeline.ingest.parts import SkipReason
from resources import FeedbackSource, ParquetIOManager

CORPUS = Path(__file__).parent / "bad_input_corpus"
_spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
make_corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_corpus)

CAL = WeekCalendar(start_date="2025-01-06", day_offset=1)  # the deployment default
WEEKS = (make_corpus.W1, make_corpus.W2)
CURATION = [raw_feedback, redacted_feedback, deduplicated_feedback, scored_feedback, balanced_feedback]
REASONS = {v for k, v in vars(Reason).items() if k.isupper()}
SKIP_REASONS = {v for k, v in vars(SkipReason).items() if k.isupper()}


@dataclass(frozen=True)
class Expected:
    records: int
    kept: int
    quarantined: Counter
    week: str | None
    generated: bool
    skipped: Counter  # valid records not trained on (a response nobody rated), listed beside the reasons


_ROW = re.compile(
    r"^\| `(?P<file>[^`]+)`(?P<generated> \(generated\))? \| (?P<records>\d+) \| (?P<kept>\d+) \| (?P<quarantined>[^|]+) \| (?P<week>[^|]+) \|"
)
_REASON = re.compile(r"^(?P<reason>[a-z_0-9]+)(?: ×(?P<n>\d+))?$")


def readme_expectations() -> dict[str, Expected]:
    """The `dumps/` table of the corpus README: file → what the pipeline must do with it."""
    text = (CORPUS / "README.md").read_text(encoding="utf-8")
    table = text.split("## `dumps/`", 1)[1].split("\n## ", 1)[0]
    out = {}
    for row in table.splitlines():
        m = _ROW.match(row)
        if not m:
            continue
        reasons, skipped = Counter(), Counter()
        if m["quarantined"].strip() != "–":
            for part in m["quarantined"].split(","):
                r = _REASON.match(part.strip())
                assert r, f"README: cannot read {part!r} in {row!r}"
                (skipped if r["reason"] in SKIP_REASONS else reasons)[r["reason"]] += int(r["n"] or 1)
        week = m["week"].strip()
        out[m["file"]] = Expected(
            int(m["records"]), int(m["kept"]), reasons, None if week == "–" else week, bool(m["generated"]), skipped
        )
    return out


def readme_unreadable() -> list[str]:
    table = (CORPUS / "README.md").read_text(encoding="utf-8").split("## `unreadable/`", 1)[1]
    return re.findall(r"^\| `([^`]+)` \|", table, re.M)


EXPECTED = readme_expectations()


def pin_mtimes(folder: Path) -> None:
    written = pd.Timestamp(make_corpus.WRITTEN).timestamp()
    for path in folder.rglob("*"):
        os.utime(path, (written, written))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A copy of `dumps/` with the generated megabyte dumps, every file dated WRITTEN."""
    root = tmp_path_factory.mktemp("corpus")
    shutil.copytree(CORPUS / "dumps", root / "dumps")
    make_corpus.write_generated(root)
    pin_mtimes(root / "dumps")
    return root / "dumps"


def test_the_readme_lists_every_file_and_the_generator_reproduces_them():
    committed = make_corpus.committed_files()
    on_disk = {
        str(p.relative_to(CORPUS))
        for p in CORPUS.rglob("*")
        if p.is_file() and p.parent != CORPUS and "__pycache__" not in p.parts
    }
    assert on_disk == set(committed)
    for rel, data in committed.items():
        if not rel.endswith((".gz", ".parquet")):  # compressor versions may change those bytes, not their content
            assert (CORPUS / rel).read_bytes() == data, f"{rel}: run python tests/bad_input_corpus/make_corpus.py"
    generated = {rel.removeprefix("dumps/") for rel in make_corpus.generated_files()}
    assert set(EXPECTED) == {rel.removeprefix("dumps/") for rel in committed if rel.startswith("dumps/")} | generated
    assert {name for name, e in EXPECTED.items() if e.generated} == generated
    assert sorted(readme_unreadable()) == sorted(
        rel.removeprefix("unreadable/") for rel in committed if rel.startswith("unreadable/")
    )
    assert sum(map(len, committed.values())) < 300_000  # the megabytes are generated, not committed
    for name, e in EXPECTED.items():
        assert e.records == e.kept + sum(e.quarantined.values()) + sum(e.skipped.values()), name
        assert set(e.quarantined) <= REASONS, name


def test_the_corpus_through_the_library_gives_the_readme_counts(corpus):
    result = ingest(list_dumps(str(corpus)), IngestOptions(calendar=CAL))  # nothing raises
    q = result.quarantine
    assert q["reason"].isin(REASONS).all() and q["detail"].str.strip().str.len().gt(0).all()
    assert q["raw"].notna().all() or set(q.loc[q["raw"].isna(), "reason"]) <= {Reason.TRUNCATED_FILE}
    for name, e in EXPECTED.items():
        rows, bad = result.rows[result.rows["dump"] == name], q[q["dump"] == name]
        skipped = result.ledger[(result.ledger["dump"] == name) & (result.ledger["fate"] == "skipped")]
        assert (records_kept(rows), len(bad)) == (e.kept, sum(e.quarantined.values())), name
        assert Counter(bad["reason"]) == e.quarantined, name
        assert Counter(skipped["reason"]) == e.skipped, name
        assert set(rows["week"]) | set(bad["week"]) | set(skipped["week"]) == ({e.week} if e.week else set()), name
        # Every record of the file is kept, quarantined or skipped, once: lines 1..records, no gaps.
        lines = [*set(rows["line"]), *bad["line"], *skipped["line"]]
        assert sorted(lines) == list(range(1, e.records + 1)), name
    # Records in = kept + quarantined with a reason, in total and per week.
    assert result.weeks() == set(WEEKS)
    for part in [result, *(result.for_week(w) for w in WEEKS)]:
        account = part.account()
        assert account.balanced, account.summary()
    assert result.summary()["records_in"] == sum(e.records for e in EXPECTED.values())
    # Rerunning reads the same.
    again = ingest(list_dumps(str(corpus)), IngestOptions(calendar=CAL))
    pd.testing.assert_frame_equal(again.rows, result.rows)
    pd.testing.assert_frame_equal(again.quarantine, result.quarantine)


@pytest.mark.skipif(
    CALENDAR.start_date != CAL.start_date,
    reason="KTO_PIPELINE_START_DATE moves the first week the corpus is written for",
)
def test_the_corpus_through_dagster_every_step_accounts_for_every_row(corpus, tmp_path):
    storage = tmp_path / "warehouse"
    resources = _resources(corpus, storage)
    instance = dg.DagsterInstance.ephemeral()
    for week in WEEKS:  # in order: the second week is deduplicated against the first
        result = dg.materialize(CURATION, partition_key=week, resources=resources, instance=instance)
        assert result.success, week
        assert_rows_accounted(
            result, "raw_feedback", "redacted_feedback", "deduplicated_feedback", "scored_feedback", "balanced_feedback"
        )
        assert all(e.passed for e in checks(result).values()), week
        expected = [e for e in EXPECTED.values() if e.week == week]
        meta = _meta(result, "raw_feedback")
        assert (meta["records_in"], meta["records_kept"], meta["records_quarantined"], meta["records_skipped"]) == (
            sum(e.records for e in expected),
            sum(e.kept for e in expected),
            sum(sum(e.quarantined.values()) for e in expected),
            sum(sum(e.skipped.values()) for e in expected),
        )
        quarantine = pd.read_parquet(storage / "raw_feedback_quarantine" / f"{week}.parquet")
        assert Counter(quarantine["reason"]) == sum((e.quarantined for e in expected), Counter())
        assert (quarantine["week"] == week).all()
        # Downstream of ingestion each step's rows in = rows kept + rows dropped with a reason.
        raw = pd.read_parquet(storage / "raw_feedback" / f"{week}.parquet")
        kept = pd.read_parquet(storage / "deduplicated_feedback" / f"{week}.parquet")
        dropped = pd.read_parquet(storage / "deduplicated_feedback_dropped" / f"{week}.parquet")
        assert len(raw) == meta["rows_out"] == len(kept) + len(dropped) and dropped["reason"].notna().all()
        assert set(raw["row_id"]) == set(kept["row_id"]) | set(dropped["row_id"])


@pytest.mark.parametrize("name", readme_unreadable())
def test_a_file_that_cannot_be_read_fails_its_run_naming_the_file(name, tmp_path):
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    shutil.copy(CORPUS / "dumps" / "2025-06-08_app (copy).jsonl", dumps)  # a good dump beside it
    shutil.copy(CORPUS / "unreadable" / name, dumps / name)
    pin_mtimes(dumps)

    with pytest.raises(DumpReadError, match=re.escape(name)):
        ingest(list_dumps(str(dumps)), IngestOptions(calendar=CAL))

    result = dg.materialize(
        [raw_feedback],
        partition_key=make_corpus.W1,
        raise_on_error=False,
        resources={
            "io_manager": ParquetIOManager(base_path=str(tmp_path / "warehouse")),
            "feedback_source": FeedbackSource(location=str(dumps)),
        },
    )
    assert not result.success
    [failure] = result.get_step_failure_events()
    errors, error = [], failure.step_failure_data.error
    while error is not None:  # the step's error and its causes, as the UI shows them
        errors.append(error)
        error = error.cause or error.context
    [cause] = [e for e in errors if e.cls_name == "DumpReadError"]
    assert name in cause.message and str(dumps / name) in cause.message
    assert not (tmp_path / "warehouse" / "raw_feedback" / f"{make_corpus.W1}.parquet").exists()  # nothing half-written
