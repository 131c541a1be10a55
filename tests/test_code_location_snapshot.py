"""The code location's shape, snapshotted: asset keys and their groups, dependencies, checks,
jobs, schedules, sensors, resources and every step's config fields with their defaults.

An unintended change to the graph (a renamed asset, a lost check, a default that moved) fails
here with a readable diff; an intended one is recorded by re-running with
KTO_PIPELINE_UPDATE_SNAPSHOT=1 and committing tests/snapshots/code_location.json.
"""

import json
import os
from typing import Any

import dagster as dg

from conftest import PROJECT

SNAPSHOT = PROJECT / "tests" / "snapshots" / "code_location.json"


def _config_fields(config_type: Any) -> dict[str, Any]:
    fields = getattr(config_type, "fields", None) or {}
    return {
        name: (field.default_value if field.default_provided else ("<required>" if field.is_required else None))
        for name, field in sorted(fields.items())
    }


def code_location_shape(defs: dg.Definitions) -> dict[str, Any]:
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "partitioned": node.partitions_def is not None,
            "pools": sorted(node.pools or ()),
        }
    checks = sorted(
        f"{c.asset_key.to_user_string()}:{c.name}{' (blocking)' if graph.get_check_spec(c).blocking else ''}"
        for c in graph.asset_check_keys
    )
    ops = {}
    for assets_def in repo.assets_defs_by_key.values():
        op = assets_def.op
        schema = op.config_schema
        ops[op.name] = _config_fields(schema.config_type) if schema is not None else {}
    jobs = {
        job.name: sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys)
        for job in repo.get_all_jobs()
        if not job.name.startswith("__")
    }
    schedules = {s.name: {"cron": s.cron_schedule, "job": s.job_name} for s in repo.schedule_defs}
    sensors = {
        s.name: {"jobs": sorted(j.name for j in s.jobs), "default": s.default_status.value} for s in repo.sensor_defs
    }
    resources = {
        key: {"class": type(res).__name__, "fields": sorted(type(res).model_fields)}
        for key, res in sorted(defs.resources.items())
    }
    return {
        "assets": assets,
        "checks": checks,
        "op_config": dict(sorted(ops.items())),
        "jobs": jobs,
        "schedules": schedules,
        "sensors": sensors,
        "resources": resources,
    }


def test_the_code_location_matches_its_snapshot():
    from definitions import defs

    shape = json.loads(json.dumps(code_location_shape(defs), default=str))
    if os.environ.get("KTO_PIPELINE_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(shape, indent=1, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    for part in expected:
        assert shape[part] == expected[part], (
            f"the code location's {part} changed: see the diff, then update the snapshot"
        )
    assert shape.keys() == expected.keys()
