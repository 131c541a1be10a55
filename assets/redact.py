"""`redacted_feedback`: the week's rows with PII replaced by typed placeholders (Presidio)."""

from collections import Counter

import dagster as dg
import pandas as pd

from assets.accounting import rows_accounted, rows_accounted_spec
from assets.metadata import counts_table, frame_metadata
from assets.names import CURATION, NO_PII_LEFT
from assets.partitions import feedback_weeks
from kto_pipeline.core.accounting import account_rows
from kto_pipeline.curate.redaction import recognizers_used, redact, scan_for_leaks
from resources.pii import PiiRedactor
from resources.ray_cluster import RayCluster


@dg.asset(
    partitions_def=feedback_weeks,
    group_name=CURATION,
    check_specs=[
        dg.AssetCheckSpec(
            NO_PII_LEFT,
            asset="redacted_feedback",
            partitions_def=feedback_weeks,
            blocking=True,
            description="A re-scan of the output with the same NER and recognizers finds no hit at or above the threshold.",
        ),
        rows_accounted_spec("redacted_feedback"),
    ],
    description="raw_feedback with e-mails, phone numbers, cards, IBANs, addresses and other PII replaced by placeholders consistent within a record (<EMAIL_ADDRESS_1>).",
)
def redacted_feedback(
    context: dg.AssetExecutionContext, raw_feedback: pd.DataFrame, pii: PiiRedactor, ray_cluster: RayCluster
):
    config = pii.config()
    backend = ray_cluster.backend()
    result = redact(raw_feedback, config, mapper=backend.redaction_mapper() if backend else None)
    recognizers, ner = recognizers_used(config)
    leaks = scan_for_leaks(result.rows, config, analyzer=backend.leak_analyzer() if backend else None)
    context.log.info(
        f"{sum(result.entities_found.values())} PII entities replaced in {result.records_with_pii} records; {len(leaks)} left after the re-scan"
    )
    leak_types = Counter(leak.entity_type for leak in leaks)
    return dg.MaterializeResult(
        value=result.rows,
        metadata={
            "rows_in": len(raw_feedback),
            "rows_out": len(result.rows),
            "records_with_pii": result.records_with_pii,
            "entities_replaced": sum(result.entities_found.values()),
            **{f"pii/{etype}": n for etype, n in sorted(result.entities_found.items())},
            "entities_by_type": counts_table(dict(sorted(result.entities_found.items())), "entity", "replaced"),
            "recognizers": dg.MetadataValue.text(", ".join(recognizers)),
            "ner": dg.MetadataValue.text(
                f"spaCy NER {ner} (PERSON, LOCATION; counted with personal context, strength {config.ner_strength})"
                if ner
                else "off (pii.ner = false): PERSON and LOCATION are not detected"
            ),
            "score_threshold": config.score_threshold,
            "ray_cluster": dg.MetadataValue.text(str(ray_cluster.address or "off")),
            **frame_metadata(result.rows, ["row_id", "prompt", "completion", "label", "signal"]),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=NO_PII_LEFT,
                passed=not leaks,
                metadata={
                    "leaks": len(leaks),
                    "by_type": counts_table(dict(leak_types), "entity", "hits"),
                    # Where, not what: the leaked text itself must not reach the UI or the logs.
                    "first_hits": dg.MetadataValue.json(
                        [
                            {"row_id": x.row_id, "field": x.field, "entity": x.entity_type, "score": x.score}
                            for x in leaks[:10]
                        ]
                    ),
                },
            ),
            # Redaction rewrites text and never drops a row.
            rows_accounted(
                "redacted_feedback", account_rows(raw_feedback["row_id"], result.rows["row_id"], result.rows.iloc[0:0])
            ),
        ],
    )
