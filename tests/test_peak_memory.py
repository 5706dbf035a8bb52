"""The peak resident memory a timed phase records: the kernel's high-water mark reset at the
phase's start, carried over to phases still open, and a sampling thread where no mark can be
reset."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import torch

import bench.evaluation.timing as timing
from bench.evaluation.timing import timed

CPU = torch.device("cpu")
MB = 2**20
BLOCK = 160 * MB


def touched(size: int) -> np.ndarray:
    """An array of ``size`` bytes whose every page is resident."""
    return np.ones(size // 8, dtype=np.float64)


needs_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the kernel's high-water mark is Linux's"
)


@needs_linux
def test_a_phase_records_its_own_peak_not_the_process_s_earlier_one() -> None:
    with timed("fit", CPU) as big:
        array = touched(BLOCK)
        del array
    with timed("predict", CPU) as small:
        kept = touched(8 * MB)
    assert big.peak_memory_bytes - small.peak_memory_bytes > 0.8 * BLOCK
    assert small.peak_memory_bytes >= timing._current_rss() - 16 * MB
    del kept


@needs_linux
def test_a_phase_still_open_keeps_the_peak_an_inner_phase_reset() -> None:
    with timed("fit", CPU) as outer:
        base = timing._current_rss()
        array = touched(BLOCK)
        del array
        with timed("inner", CPU) as inner:
            pass
    assert outer.peak_memory_bytes - base > 0.8 * BLOCK
    assert outer.peak_memory_bytes - inner.peak_memory_bytes > 0.8 * BLOCK


def test_without_a_resettable_mark_a_thread_samples_the_peak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(timing, "_marks_work", False)
    with timed("fit", CPU) as sampled:
        base = timing._current_rss()
        array = touched(BLOCK)
        time.sleep(0.05)  # several sampling intervals with the block resident
        del array
    assert sampled.peak_memory_bytes - base > 0.8 * BLOCK
