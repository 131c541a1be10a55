"""Asset values as Parquet files under a local folder or an object-store URL (universal-pathlib)."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field
from upath import UPath


class ParquetUPathIOManager(dg.UPathIOManager):
    """`<base>/<asset key>/<week>.parquet`; a DataFrame in, the same DataFrame out."""

    extension = ".parquet"

    def dump_to_path(self, context: dg.OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} must be a DataFrame, got {type(obj).__name__}")
        if path.protocol in ("", "file", "local"):
            # Write beside and rename, so a crashed run never leaves half a partition behind.
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            with tmp.open("wb") as fh:
                obj.to_parquet(fh, index=False)
            tmp.rename(path)
        else:
            with path.open("wb") as fh:  # object-store uploads are atomic
                obj.to_parquet(fh, index=False)

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pd.DataFrame:
        with path.open("rb") as fh:
            return pd.read_parquet(fh)

    def load_input(self, context: dg.InputContext) -> Any:
        # UPathIOManager hands a window input None for 0 partitions and the bare frame for 1,
        # but a dict for 2+; an input typed as a dict always gets {week: frame}.
        if _wants_dict(context) and context.has_asset_partitions:
            keys = context.asset_partition_keys
            if not keys:
                return {}
            if len(keys) == 1:
                obj = self._load_partitions(context)
                return {} if obj is None else {keys[0]: obj}
        return super().load_input(context)


def _wants_dict(context: dg.InputContext) -> bool:
    typing_type = getattr(context.dagster_type, "typing_type", None)
    return typing_type is dict or getattr(typing_type, "__origin__", None) is dict


class ParquetIOManager(dg.ConfigurableIOManagerFactory):
    """Parquet files on any filesystem universal-pathlib knows (local, s3://, gs://, memory://)."""

    base_path: str = Field(description="Folder or URL the asset files go under, e.g. s3://bucket/kto")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options (endpoint, region); credentials come from the environment",
    )

    def create_io_manager(self, context: dg.InitResourceContext) -> ParquetUPathIOManager:
        return ParquetUPathIOManager(base_path=UPath(self.base_path, **self.storage_options))
