"""What machine a number was measured on: the CPU model, cores, threads and load.

Speed and wall time depend on the CPU (an AVX2-only AMD EPYC and an AVX-512 Xeon differ by 2x on
the same command) and on what else runs: every run's ``summary.json`` and every benchmark
records :func:`describe` so that a number can be read with its machine.
"""

from __future__ import annotations

import os
import platform

import torch


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``'s "model name"), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith(("model name", "Model", "Hardware")) and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> float | None:
    """The 1-minute load average, or None where the system has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def describe() -> dict:
    """CPU model, logical cores, torch's intra-op threads, the load average, torch's version."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load": load_average(),
        "torch": torch.__version__,
    }


def line() -> str:
    """One printable line of :func:`describe` (benchmarks print it first)."""
    d = describe()
    load = "n/a" if d["load"] is None else f"{d['load']:.1f}"
    return (f"CPU {d['cpu']} ({d['cores']} logical cores), torch {d['torch']} with "
            f"{d['threads']} thread(s), load average {load}")
