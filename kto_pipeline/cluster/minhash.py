"""MinHash signatures on a Ray cluster: a drop-in for `kto_pipeline.curate.dedup.row_signatures`.

A row's signature depends on its own texts only, so blocks of rows can be signed anywhere and
concatenated: the result is the local one exactly. One block is one `minhash_signatures` block
(1024 texts by default), which that function signs on one thread, as its task's one CPU
promises. The LSH index and the candidate checks stay on the driver (see the package docstring).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kto_pipeline.cluster.config import RayConfig
from kto_pipeline.cluster.session import connect
from kto_pipeline.curate.dedup.sketch import row_signatures


def _sign_task(
    prompts: list[str], completions: list[str], num_perm: int, seed: int, shingle_size: int
) -> tuple[np.ndarray, np.ndarray]:
    return row_signatures(prompts, completions, num_perm, seed, shingle_size)


class RayRowSignatures:
    """`row_signatures(prompts, completions, num_perm, seed, shingle_size)` computed by Ray tasks
    over blocks of rows."""

    def __init__(self, ray_config: RayConfig):
        self.ray_config = ray_config

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        num_perm: int = 128,
        seed: int = 1,
        shingle_size: int = 5,
    ) -> tuple[np.ndarray, np.ndarray]:
        prompts, completions = list(prompts), list(completions)
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        if not prompts:
            return row_signatures([], [], num_perm, seed, shingle_size)
        import ray

        connect(self.ray_config)
        task = ray.remote(_sign_task).options(
            num_cpus=self.ray_config.num_cpus_per_task,
            num_returns=2,
            max_retries=self.ray_config.max_retries,
            retry_exceptions=False,
        )
        step = self.ray_config.minhash_rows_per_task
        blocks = [
            task.remote(prompts[i : i + step], completions[i : i + step], num_perm, seed, shingle_size)
            for i in range(0, len(prompts), step)
        ]
        parts_p = ray.get([p for p, _ in blocks])
        parts_c = ray.get([c for _, c in blocks])
        return np.concatenate(parts_p), np.concatenate(parts_c)
