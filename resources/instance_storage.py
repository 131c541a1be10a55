"""Dagster instance storage chosen by the environment: PostgreSQL when DAGSTER_PG_HOST is set,
else embedded SQLite under DAGSTER_HOME. Named in dagster.yaml, so one file serves a laptop
and a deployment, and every process (webserver, daemon, run workers) makes the same choice."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClass, ConfigurableClassData


def postgres_url_from_env(env: Mapping[str, str] = os.environ) -> str | None:
    """The SQLAlchemy URL of the instance database, or None when DAGSTER_PG_HOST is not set.

    The scheme names psycopg2: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which
    dagster-postgres does not install.
    """
    if not env.get("DAGSTER_PG_HOST"):
        return None
    from dagster_postgres.utils import get_conn_string

    return get_conn_string(
        username=env.get("DAGSTER_PG_USER", "postgres"),
        password=env.get("DAGSTER_PG_PASSWORD", ""),
        hostname=env["DAGSTER_PG_HOST"],
        db_name=env.get("DAGSTER_PG_DB", "dagster"),
        port=env.get("DAGSTER_PG_PORT", "5432"),
        scheme="postgresql+psycopg2",
    )


class EnvSelectedStorage(DagsterStorage, ConfigurableClass):
    """Not instantiated directly: `from_config_value` returns the real storage object."""

    @classmethod
    def config_type(cls) -> dict:
        from dagster import Field, StringSource

        return {"sqlite_base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> DagsterStorage:
        url = postgres_url_from_env()
        if url is not None:
            from dagster_postgres import DagsterPostgresStorage

            return DagsterPostgresStorage(postgres_url=url, inst_data=inst_data)
        base_dir = config_value.get("sqlite_base_dir") or os.environ.get("DAGSTER_HOME")
        if not base_dir:
            raise RuntimeError("DAGSTER_HOME must be set to use the SQLite instance storage")
        return DagsterSqliteStorage.from_local(base_dir=os.path.abspath(base_dir), inst_data=inst_data)
