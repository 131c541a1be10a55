"""One connection to the Ray cluster per process, opened on first use."""

from __future__ import annotations

import threading

from kto_pipeline.cluster.config import LOCAL, RayConfig

_lock = threading.Lock()
# (address, job id) of the connection this module opened: a connection opened by someone
# else, or after ours was shut down, has another job id.
_ours: tuple[str, str] | None = None


def connect(config: RayConfig) -> None:
    """Connect this process to `config.address` unless it is connected already (idempotent).

    A connection someone else opened (dagster-ray's resource, a test) is reused as it is: Ray
    allows one per process. Connecting to another address than an open connection of ours is
    an error rather than a silent switch of clusters mid-run.
    """
    global _ours
    if not config.enabled:
        raise ValueError("RayConfig.address is None: Ray is off, nothing to connect to")
    import ray

    with _lock:
        if ray.is_initialized():
            job = ray.get_runtime_context().get_job_id()
            if _ours is not None and _ours[1] == job and _ours[0] != config.address:
                raise RuntimeError(f"this process is connected to the Ray cluster at {_ours[0]}, not {config.address}")
            return
        ray.init(
            address=None if config.address == LOCAL else config.address,
            runtime_env=dict(config.runtime_env) if config.runtime_env else None,
            # The workers' prints stay in the cluster's logs instead of interleaving with ours.
            log_to_driver=False,
        )
        _ours = (config.address, ray.get_runtime_context().get_job_id())


def cluster_gpus() -> float:
    """GPUs the connected cluster has in all (0 without any)."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0))
