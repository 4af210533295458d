"""
Several processes sharing one `embed` run (`accelerate launch` or `torchrun`, one machine or several): each process
embeds its share of the inputs and the main process writes the one output, identical to a single-process run's.

The inputs are split with Accelerate's `PartialState.split_between_processes`, in order and in whole batches (the
batches a single process would form), so that every clip is embedded in the same company, with the same padding, as
in a single-process run; the rows come back to the main process (`accelerate.utils.gather_object`) in their order.
Windowed embedding splits whole files (each file's windows are batched on their own).
"""

from __future__ import annotations

import os


def process_state(device: str = "cpu"):
    """Accelerate's `PartialState` when this process is one of several (`WORLD_SIZE` > 1), else `None`. On the CPU
    its processes talk through gloo (Accelerate's CPU mode: without it, a CPU-only launch would not be seen as one)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=str(device).startswith("cpu"))


def process_device(device: str) -> str:
    """`cuda` means this process's own GPU (`cuda:LOCAL_RANK`) when several processes share a machine."""
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def my_share(state, n_items: int, group: int = 1) -> list[int]:
    """The item indices this process handles: groups of `group` consecutive items (the last may be smaller), split
    between the processes in order."""
    groups = [list(range(start, min(start + group, n_items))) for start in range(0, n_items, group)]
    with state.split_between_processes(groups) as mine:
        return [index for chunk in mine for index in chunk]


def gather_in_order(state, payload) -> list:
    """Every process's `payload`, in process order, on every process."""
    from accelerate.utils import gather_object

    return gather_object([payload])


__all__ = ["gather_in_order", "my_share", "process_device", "process_state"]
