"""Materialization metadata shared by the assets: counts, reasons, schema and a preview."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd

_PREVIEW_ROWS = 5
_PREVIEW_CHARS = 120

_TYPE_NAMES = {"bool": "bool", "int64": "int", "float64": "float"}


def _cell(value: Any) -> str | None:
    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return None
    text = str(value)
    return text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS] + "…"


def table_schema(df: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(str(c), _TYPE_NAMES.get(str(t), str(t))) for c, t in df.dtypes.items()]
    )


def preview(df: pd.DataFrame, columns: list[str] | None = None) -> dg.MetadataValue:
    """The first rows as a UI table (text cut to a readable width)."""
    head = df[columns] if columns else df
    head = head.head(_PREVIEW_ROWS)
    schema = dg.TableSchema(columns=[dg.TableColumn(str(c), "string") for c in head.columns])
    records = [dg.TableRecord({str(c): _cell(v) for c, v in row.items()}) for _, row in head.iterrows()]
    return dg.MetadataValue.table(records=records, schema=schema)


def counts_table(counts: dict[str, int], key: str, value: str = "rows") -> dg.MetadataValue:
    schema = dg.TableSchema(columns=[dg.TableColumn(key, "string"), dg.TableColumn(value, "int")])
    return dg.MetadataValue.table(
        records=[dg.TableRecord({key: k, value: int(v)}) for k, v in counts.items()], schema=schema
    )


def frame_metadata(df: pd.DataFrame, preview_columns: list[str] | None = None) -> dict[str, Any]:
    return {
        "dagster/row_count": len(df),
        "dagster/column_schema": table_schema(df),
        "preview": preview(df, preview_columns),
    }


def label_balance(labels: pd.Series) -> dict[str, Any]:
    desirable = int(labels.sum())
    undesirable = int(len(labels) - desirable)
    return {
        "desirable": desirable,
        "undesirable": undesirable,
        "desirable_share": dg.MetadataValue.float(round(desirable / len(labels), 4) if len(labels) else 0.0),
    }
