"""The Ray cluster the curation steps may run their heavy stages on; off (address None) by default.

Built on dagster-ray's `RayResource` (the base of its `LocalRay` and KubeRay resources): it
connects with `ray.init` when a step starts (`ray_init_options`, `env_vars`, retries) and
disconnects when it ends. With no address it neither imports Ray nor connects, and the steps
run exactly as on one machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import dagster as dg
from dagster_ray import RayResource

from kto_pipeline.cluster import LOCAL, RayBackend, RayConfig
from resources.library_config import config_from


class RayCluster(
    config_from(
        RayConfig,
        base=RayResource,
        fields=[
            "address",
            "minhash_rows_per_task",
            "embedding_batches_per_task",
            "num_cpus_per_task",
            "gpus_per_task",
            "max_retries",
        ],
        name="RayClusterConfig",
    )
):
    """A Ray cluster by address (host:port of its GCS, ray://host:10001, 'auto'), 'local' for an
    in-process Ray, or None: no Ray (the default)."""

    @property
    def host(self) -> str:
        if self.address in (None, LOCAL, "auto"):
            return "127.0.0.1"
        return self.address.removeprefix("ray://").rsplit(":", 1)[0]

    @property
    def ray_address(self) -> str | None:  # type: ignore[override]
        # None starts an in-process Ray, as dagster-ray's LocalRay does.
        return None if self.address == LOCAL else self.address

    @property
    def name(self) -> str:
        return f"Ray cluster at {self.address}"

    @property
    def created(self) -> bool:
        return True  # an existing cluster: nothing to create

    @property
    def ready(self) -> bool:
        return True

    @contextlib.contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Generator[RayCluster, None, None]:
        if self.address is None:  # off: no `import ray`, no connection
            yield self
            return
        with super().yield_for_execution(context) as resource:
            yield resource

    def backend(self) -> RayBackend | None:
        """The executors for the curation stages, or None when Ray is off."""
        if self.address is None:
            return None
        return RayBackend(self.to_library())
