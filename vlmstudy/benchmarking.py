"""Small helpers the scripts in ``benchmarks/`` share."""

from __future__ import annotations

import os


def busy_warning(threads: int, consequence: str = "these timings are not representative") -> list[float]:
    """The load averages before a run; prints a warning when other work competes for the cores
    (timings then mean little, and more threads than free cores can make small ops very slow)."""
    load = list(os.getloadavg())
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if load[0] + threads > cpus + 0.5:
        print(f"WARNING: load average {load[0]:.1f} on {cpus} CPUs before starting: other processes compete "
              f"for the cores, so {consequence}. Run on an idle machine.")
    return load
