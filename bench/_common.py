"""Helpers shared by the bench/*.py scripts (each puts this folder on sys.path and imports it)."""

import os
import platform


def machine():
    """The machine a benchmark ran on: CPU model, logical and usable CPUs, platform, Python version."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "usable_cpus": usable, "platform": platform.platform(),
            "python": platform.python_version()}
