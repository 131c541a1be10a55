"""Jobs: what the sensor and the schedule launch."""

from __future__ import annotations

import dagster as dg

from assets.names import CURATION

# Launched by the dump sensor for a week whose dumps are new or changed.
curate_job = dg.define_asset_job(
    "curate_job",
    selection=dg.AssetSelection.groups(CURATION),
    description="Re-curate one feedback week from its dumps.",
)

# Launched weekly for the week that just closed: every asset of the week, in order.
retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.all(),
    description="Materialize every asset of one feedback week.",
)
