"""LocalRayCluster: real separate nodes, several clusters side by side, and stop() ends exactly
its own processes (never another cluster's, as a global `ray stop` would)."""

import psutil
import pytest

from kto_pipeline.devtools.ray_cluster import REDIS_PORT, LocalRayCluster


def _alive(pids: list[int]) -> list[int]:
    return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_two_clusters_run_side_by_side_and_stopping_one_leaves_the_other(tmp_path):
    import ray

    first = LocalRayCluster(nodes=2, cpus_per_node=1, env={"KTO_TEST_MARK": "first"}).start()
    second = LocalRayCluster(nodes=1, cpus_per_node=1).start()
    try:
        assert first.port != second.port and REDIS_PORT not in (first.port, second.port)
        assert first.alive_nodes() == 2 and second.alive_nodes() == 1
        ray.init(address=first.address, log_to_driver=False)

        @ray.remote(num_cpus=1)
        def where() -> tuple[str, str | None, str | None]:
            import os

            return (
                ray.get_runtime_context().get_node_id(),
                os.environ.get("KTO_TEST_MARK"),
                os.environ.get("HF_HUB_OFFLINE"),
            )

        results = ray.get([where.remote() for _ in range(8)])
        ray.shutdown()
        # Each node is its own raylet, and the workers see the cluster's environment.
        assert {tuple(marks) for _, *marks in results} == {("first", "1")}
        first_pids = first.worker_pids(0) + first.worker_pids(1)
        second_pids = second.worker_pids(0)
        assert first_pids and second_pids
        with pytest.raises(ValueError, match="head"):
            first.kill_worker_node(0)
        first.stop()
        assert _alive(first_pids) == []
        assert _alive(second_pids) == second_pids
        assert second.alive_nodes() == 1
    finally:
        first.stop()
        second.stop()
    assert _alive(second_pids) == []
    assert not first.temp_dir.exists() and not second.temp_dir.exists()


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="nodes"):
        LocalRayCluster(nodes=0)
    with pytest.raises(ValueError, match="cpus_per_node"):
        LocalRayCluster(cpus_per_node=0)
