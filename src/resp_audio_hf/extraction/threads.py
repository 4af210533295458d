"""Scoped control of torch's intra-op thread count."""

from __future__ import annotations

import contextlib
import os

import torch


@contextlib.contextmanager
def torch_threads(count: int | None):
    """Run the block with `torch.set_num_threads(count)` and restore the previous count after it (`None`: unchanged)."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def threads_beside_workers(num_workers: int) -> int | None:
    """
    Threads for the main process while `num_workers` DataLoader workers (one thread each) share this machine's cores:
    the cores left to it, at least one. `None` (torch's choice) without workers.
    """
    if num_workers <= 0:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(torch.get_num_threads(), cores - num_workers))
