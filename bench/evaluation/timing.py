"""Wall-clock timing of a phase, with device synchronisation and peak memory.

Besides wall time, each phase records the process's CPU time, the torch thread count, the machine's
1-minute load average at the start, its CPU count and host name: a wall time taken while other
work competed for the cores, or on another machine, can then be flagged rather than averaged in.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from bench.devices import synchronize

if TYPE_CHECKING:
    import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class TimingRow(NamedTuple):
    """One timed phase of a cell, as stored."""

    scenario: str
    k: str
    phase: str
    seconds: float
    cpu_seconds: float
    tasks: int
    tasks_per_s: float
    peak_memory_bytes: int
    memory_kind: str
    torch_threads: int
    load_1m: float
    cpus: int
    host: str


@dataclass
class PhaseTiming:
    phase: str
    seconds: float = 0.0
    peak_memory_bytes: int = 0
    memory_kind: str = "rss"
    tasks: int = 0
    cpu_seconds: float = 0.0
    torch_threads: int = 0
    load_1m: float = float("nan")
    cpus: int = 0
    host: str = ""

    @property
    def tasks_per_second(self) -> float:
        return self.tasks / self.seconds if self.seconds > 0 and self.tasks else float("nan")

    def row(self, scenario: str, k: str) -> TimingRow:
        """The store's row for this phase of ``(scenario, k)``."""
        return TimingRow(
            scenario,
            k,
            self.phase,
            self.seconds,
            self.cpu_seconds,
            self.tasks,
            self.tasks_per_second,
            self.peak_memory_bytes,
            self.memory_kind,
            self.torch_threads,
            self.load_1m,
            self.cpus,
            self.host,
        )


def load_average() -> float:
    """The 1-minute load average (NaN where the platform has none)."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return float("nan")


def _current_rss() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class _RssSampler(threading.Thread):
    """Samples resident memory in the background, where the kernel keeps no resettable peak."""

    def __init__(self, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = _current_rss()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _current_rss())
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, _current_rss())
        return self.peak


_HIGH_WATER = "/proc/self/status"
_RESET_HIGH_WATER = "/proc/self/clear_refs"
_marks_lock = threading.Lock()
_open_marks: list[_HighWaterMark] = []
_marks_work: bool | None = None
"""Whether this process can reset its high-water mark (found on first use)."""


def _high_water() -> int:
    """The kernel's peak resident size of this process since its last reset (VmHWM)."""
    with open(_HIGH_WATER, encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{_HIGH_WATER} has no VmHWM line")


def _reset_high_water() -> None:
    with open(_RESET_HIGH_WATER, "w", encoding="ascii") as fh:
        fh.write("5")  # Linux 4.0 and later: reset the peak resident size to the current one


class _HighWaterMark:
    """The peak resident memory over a block, as the kernel measured it: its high-water mark,
    reset when the block starts. Exact, and nothing runs beside the block (a sampling thread
    misses peaks between its samples and takes the interpreter's lock every few milliseconds).
    Blocks may nest or overlap in threads: each reset first hands the mark so far to every block
    still open."""

    carried: int
    """The most resident memory seen before the mark was last reset while this block ran."""

    def __init__(self) -> None:
        with _marks_lock:
            mark = _high_water()
            for block in _open_marks:
                block.carried = max(block.carried, mark)
            _reset_high_water()
            self.carried = _current_rss()
            _open_marks.append(self)

    def stop(self) -> int:
        with _marks_lock:
            _open_marks.remove(self)
            return max(self.carried, _high_water())


def _peak_meter() -> _HighWaterMark | _RssSampler:
    """A high-water mark where the kernel lets this process reset one, else a sampling thread."""
    global _marks_work
    with _marks_lock:  # no block is open before the first probe, so its reset loses nothing
        if _marks_work is None:
            try:
                _high_water()
                _reset_high_water()
                _marks_work = True
            except (OSError, ValueError):
                _marks_work = False
    if _marks_work:
        return _HighWaterMark()
    sampler = _RssSampler()
    sampler.start()
    return sampler


@contextmanager
def timed(phase: str, device: torch.device, tasks: int = 0) -> Iterator[PhaseTiming]:
    """Time the block; on CUDA, synchronise before and after and record peak allocated memory."""
    import torch

    result = PhaseTiming(
        phase,
        tasks=tasks,
        torch_threads=torch.get_num_threads(),
        load_1m=load_average(),
        cpus=os.cpu_count() or 1,
        host=socket.gethostname(),
    )
    sampler: _HighWaterMark | _RssSampler | None = None
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        result.memory_kind = "cuda"
    else:
        sampler = _peak_meter()
    start = time.perf_counter()
    cpu_start = time.process_time()
    try:
        yield result
    finally:
        synchronize(device)
        result.seconds = time.perf_counter() - start
        result.cpu_seconds = time.process_time() - cpu_start
        if sampler is not None:
            result.peak_memory_bytes = sampler.stop()
        else:
            result.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
