"""`raw_feedback` and its quarantine: the week's records, normalised to the contract."""

import dagster as dg

from assets.kept_and_dropped import emit_kept_and_dropped, kept_and_dropped_asset
from assets.metadata import counts_table, frame_metadata, label_balance
from assets.partitions import CALENDAR
from resources.feedback_source import FeedbackSource

_COUNTS = (
    "records_in",
    "records_kept",
    "records_quarantined",
    "records_skipped",
    "rows_out",
    "edits_expanded",
    "trivial_edits_skipped",
    "pairs_expanded",
    "demonstrations",
)
_FORMAT_COLUMNS = ("records", "joined", "orphaned", "unrated", "kept", "quarantined", "skipped")


def _by_format_table(by_format: dict[str, dict[str, int]]) -> dg.MetadataValue:
    """Per export format: records read, ratings joined to their response, orphaned ratings,
    unrated responses, records kept in rows."""
    schema = dg.TableSchema(
        columns=[dg.TableColumn("format", "string"), *(dg.TableColumn(c, "int") for c in _FORMAT_COLUMNS)]
    )
    records = [
        dg.TableRecord({"format": fmt, **{c: int(n[c]) for c in _FORMAT_COLUMNS}}) for fmt, n in by_format.items()
    ]
    return dg.MetadataValue.table(records=records, schema=schema)


@kept_and_dropped_asset(
    "raw_feedback",
    kept="Every rated record of the week in the feedback contract (ratings joined to their responses across dumps; "
    "the week is the feedback's); edits and pairs expanded into desirable and undesirable rows.",
    dropped="Records of the week that broke the contract, each with its reason and a preview of the input.",
    dropped_suffix="quarantine",
)
def raw_feedback(context: dg.AssetExecutionContext, feedback_source: FeedbackSource):
    """Reads every dump and keeps what belongs to this week (a dump may span weeks)."""
    week = context.partition_key
    dumps = feedback_source.list_dumps()
    result = feedback_source.load(CALENDAR, dumps).for_week(week)
    summary = result.summary()
    context.log.info(
        f"week {week}: {summary['records_in']} records from {len(dumps)} dumps; "
        f"{summary['records_kept']} kept, {summary['records_quarantined']} quarantined, "
        f"{summary['records_skipped']} skipped ({summary['skipped_by_reason']})"
    )
    reasons = summary["quarantined_by_reason"]
    yield from emit_kept_and_dropped(
        "raw_feedback",
        result.rows,
        {
            **{k: summary[k] for k in _COUNTS},
            **label_balance(result.rows["label"]),
            "rows_by_signal": counts_table(result.rows["signal"].value_counts().sort_index().to_dict(), "signal"),
            "quarantined_by_reason": counts_table(reasons, "reason", "records"),
            "skipped_by_reason": counts_table(summary["skipped_by_reason"], "reason", "records"),
            "records_by_format": _by_format_table(summary["by_format"]),
            "dumps_read": len(dumps),
            "dump_location": feedback_source.location,
            **frame_metadata(result.rows, ["row_id", "timestamp", "prompt", "completion", "label", "signal", "dump"]),
        },
        result.quarantine,
        {
            **{f"quarantined/{reason}": n for reason, n in reasons.items()},
            "quarantined_by_reason": counts_table(reasons, "reason", "records"),
            **frame_metadata(result.quarantine, ["dump", "line", "reason", "detail", "raw"]),
        },
        # By record: an edit or a pair becomes two rows, so rows are not what came in; a record
        # is kept, quarantined, or skipped (a response nobody rated, a superseded thumb).
        result.account(),
        dropped_suffix="quarantine",
    )
