"""The app: the `kto-pipeline` command (demo, simulation, instance set-up, sample dumps) and the
driver of `dagster` commands it uses.

The library does not import Dagster, so the command drives the pipeline the way a person would:
through the `dagster` command line, against the persistent instance in DAGSTER_HOME.
"""
