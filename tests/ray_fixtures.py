"""Pytest fixtures for tests that need a real multi-node Ray cluster.

Import them into a test module (`from ray_fixtures import ray_cluster`, as the
other modules import conftest helpers); they are not in
conftest.py so that only the modules that use Ray start one.
"""

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """A 2-node local Ray cluster (1 CPU each), started once per test session."""
    from kto_pipeline.devtools.ray_cluster import LocalRayCluster

    with LocalRayCluster(nodes=2, cpus_per_node=1) as cluster:
        yield cluster
