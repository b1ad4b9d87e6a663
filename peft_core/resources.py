"""Wall time and peak memory of a block of work, for the comparison tables."""

from __future__ import annotations

import threading
import time

import psutil
import torch


class ResourceMeter:
    """`with ResourceMeter() as meter: ...` then read `meter.seconds` and `meter.peak_memory_mb`.

    On CUDA the peak is the allocator's high-water mark. On CPU it is the process's peak resident
    memory sampled every 20 ms, so units running in parallel threads of one process share it.
    """

    def __init__(self, interval_s: float = 0.02):
        self.interval_s = interval_s
        self.seconds = 0.0
        self.peak_memory_mb = 0.0
        self._stop = threading.Event()
        self._peak_rss = 0

    def __enter__(self) -> "ResourceMeter":
        self._start = time.perf_counter()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        else:
            self._process = psutil.Process()
            self._peak_rss = self._process.memory_info().rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._peak_rss = max(self._peak_rss, self._process.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start
        if torch.cuda.is_available():
            self.peak_memory_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self._peak_rss = max(self._peak_rss, self._process.memory_info().rss)
            self.peak_memory_mb = self._peak_rss / 2**20
