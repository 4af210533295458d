"""Shared helpers of the benchmark scripts: interleaved timing, peak memory in a fresh process, tables and JSON.

Every script compares resp_audio_hf with a reference implementation *in one process, on the same inputs*, so that the
ratio is meaningful on a shared, noisy machine: the candidates are run in turn inside every repeat (alternating the
order), and the reported ratio is the median of the per-repeat ratios. Memory is measured in a fresh child process
per configuration, so one configuration's allocations never inflate another's peak.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resp_audio_hf.data.file_io import atomic_write_json

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The repository's root (its `pretrained/` folders, `tests/` helpers).
REPO = Path(__file__).resolve().parents[1]
# `<repo>/../shared/data`, where the team keeps the real recordings (never copied into the repository).
SHARED_DATA = REPO.parent / "shared" / "data"


# ---------------------------------------------------------------------------------------------------- arguments


def make_parser(description: str, repeats: int) -> argparse.ArgumentParser:
    """Parser with the flags every benchmark takes: `--repeats`, `--quick`, `--threads`, `--no-json`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=repeats, help=f"timed repeats per candidate (default {repeats})")
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run, < 1 min)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--no-json", action="store_true", help="print the table only, write no results file")
    return parser


def setup_threads(threads: int | None) -> None:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------- timing


@dataclass
class Timings:
    """Seconds per repeat of every candidate: wall clock, and CPU time of this process (all threads)."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]


def time_interleaved(candidates: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> Timings:
    """
    Time `repeats` calls of every candidate, after `warmup` untimed calls each. Within a repeat the candidates run one
    after another, in reversed order every other repeat, so that a slow phase of a shared machine hits all of them
    alike. CPU time is recorded too: on a machine shared with other jobs it is far steadier than wall time (it leaves
    out the time the process waited for a core), though it also counts the threads' spinning.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    timings = Timings({name: [] for name in names}, {name: [] for name in names})
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            candidates[name]()
            timings.wall[name].append(time.perf_counter() - wall_start)
            timings.cpu[name].append(time.process_time() - cpu_start)
    return timings


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over repeats of `numerator[i] / denominator[i]` (e.g. reference seconds / our seconds = speed-up)."""
    if len(numerator) != len(denominator):
        raise ValueError("Ratios need the same number of repeats on both sides.")
    return median([a / b for a, b in zip(numerator, denominator)])


def spread(values: list[float]) -> str:
    """`min-max` of a list of seconds, for the table."""
    return f"{min(values):.3f}-{max(values):.3f}"


# ---------------------------------------------------------------------------------------------------- memory


def current_rss_mb() -> float:
    """Resident set size of this process now (MiB)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _proc_line(path: str, prefix: str) -> str | None:
    """The first line of the /proc file `path` that starts with `prefix`; None where there is none (not Linux)."""
    try:
        with open(path) as handle:
            return next((line for line in handle if line.startswith(prefix)), None)
    except OSError:
        return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MiB) since start or since the last `reset_peak_rss`."""
    line = _proc_line("/proc/self/status", "VmHWM:")
    if line is not None:
        return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def children_peak_rss_mb() -> float:
    """Largest peak RSS of the child processes (e.g. DataLoader workers) this process has waited for (MiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


class PeakMemory:
    """
    Context manager measuring the peak RSS of a block: on entry it resets the kernel's peak counter (so earlier setup
    does not count) and records the current RSS; `peak_mb` and `increase_mb` hold the result after the block.
    """

    def __enter__(self) -> PeakMemory:
        import gc

        gc.collect()
        self.reset = reset_peak_rss()
        self.start_mb = current_rss_mb()
        self.peak_mb = self.increase_mb = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        self.peak_mb = peak_rss_mb()
        self.increase_mb = self.peak_mb - self.start_mb


def _child_entry(queue, start_method, function, kwargs) -> None:
    # A spawned child would spawn its own children (DataLoader workers) too, re-importing everything in each; give it
    # the parent's default start method so that it behaves like a process started from a shell.
    multiprocessing.set_start_method(start_method, force=True)
    try:
        queue.put(("ok", function(**kwargs)))
    except BaseException as error:  # report any failure to the parent rather than hanging it
        import traceback

        queue.put(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))


def run_in_subprocess(function: Callable[..., dict], timeout: float | None = None, **kwargs) -> dict:
    """
    Run `function(**kwargs)` in a fresh (spawned) Python process and return its result (a picklable dict). The
    function must be defined at module level of an importable module or of the running script.
    """
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start_method = multiprocessing.get_start_method()
    process = context.Process(target=_child_entry, args=(queue, start_method, function, kwargs))
    process.start()
    try:
        status, payload = queue.get(timeout=timeout)
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.terminate()
    if status != "ok":
        raise RuntimeError(f"Benchmark child process failed: {payload}")
    return payload


# ---------------------------------------------------------------------------------------------------- reporting


def environment() -> dict:
    """Facts that make a result interpretable: versions, threads, CPU, machine load when the run started."""
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu": _cpu_name(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    for package in ("transformers", "torchaudio", "hear21passt", "resp_audio_hf"):
        try:
            from importlib.metadata import version

            info[package] = version(package)
        except Exception:  # a missing optional package is simply not reported
            info[package] = None
    return info


def _cpu_name() -> str:
    line = _proc_line("/proc/cpuinfo", "model name")
    return line.split(":", 1)[1].strip() if line is not None else platform.processor()


def format_value(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        if value == 0:
            return "0"
        return f"{value:.3g}"
    if value is None:
        return "-"
    return str(value)


def print_table(title: str, rows: list[dict], columns: list[str] | None = None) -> None:
    """Print `rows` (dicts) as an aligned text table with the given column order."""
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    cells = [[format_value(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column)] + [len(cell[i]) for cell in cells]) for i, column in enumerate(columns)]
    line = "  ".join(column.ljust(width) for column, width in zip(columns, widths))
    print(f"\n{title}\n{line}\n{'  '.join('-' * width for width in widths)}")
    for cell in cells:
        print("  ".join(value.ljust(width) for value, width in zip(cell, widths)))


def write_json(name: str, payload: dict, directory: Path = RESULTS_DIR) -> Path:
    """Write `payload` to `<directory>/<name>.json` atomically (temporary file + `os.replace`)."""
    return atomic_write_json(directory / f"{name}.json", payload, default=_json_default)


def _json_default(value):
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot write {type(value).__name__} to JSON.")


def finish(
    name: str,
    args: argparse.Namespace,
    settings: dict,
    rows: list[dict],
    title: str,
    columns: list[str],
    targets: list[dict] | None = None,
) -> None:
    """Print the table (and the targets, if any) and write `results/<name>.json` unless `--no-json`."""
    print_table(title, rows, columns)
    if targets:
        print_table("Targets", targets, ["target", "measured", "met"])
    if not args.no_json:
        payload = {
            "benchmark": name,
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
            "settings": settings,
            "environment": environment(),
            "rows": rows,
            "targets": targets or [],
        }
        path = write_json(name + ("_quick" if args.quick else ""), payload)
        print(f"\nwrote {path}")


def target_row(description: str, measured: float, threshold: float, unit: str = "x") -> dict:
    """One line of the targets table: `measured >= threshold`?"""
    met = measured == measured and measured >= threshold
    return {"target": description, "measured": f"{measured:.2f}{unit}", "met": "yes" if met else "NO"}
