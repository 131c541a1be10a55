"""The names the graph is built from, in one place: asset groups and asset checks."""

CURATION = "curation"
TRAINING = "training"

ROWS_ACCOUNTED = "rows_accounted"
NO_PII_LEFT = "no_pii_left"
CLASS_RATIO_IN_RANGE = "class_ratio_in_range"
NO_REGRESSION = "no_regression"
