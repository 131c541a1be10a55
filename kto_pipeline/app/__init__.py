"""The app: the `kto-pipeline` command and the driver of `dagster` commands."""
