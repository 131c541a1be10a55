"""Process-level settings the simulator's torch loops run under.

On a small shared CPU, PyTorch's intra-op threads fight each other and other processes for
cores: the tiny model's pretraining step took 0.15 s on one thread and 0.5–1.5 s on two
while another process was busy. The loops here are far too small to gain from parallel
kernels, so they run single-threaded and restore the caller's setting afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` intra-op threads (None: leave the setting alone)."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
