"""The Dagster layer of kto-pipeline: partitions, assets, jobs, the schedule and the sensor.

Thin by design: each asset calls kto_pipeline and reports what happened as metadata.
"""
