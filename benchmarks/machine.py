"""The machine a benchmark ran on, described the same way in every section of RESULTS.md."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_description(packages: tuple[str, ...]) -> str:
    """CPU model, cores, RAM, OS, Python and the versions of ``packages``."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        mem_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
        ram = f"{mem_kib / 1024**2:.1f} GiB RAM"
    except (OSError, StopIteration):
        ram = "unknown RAM"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = ", ".join(f"{name} {package_version(name)}" for name in packages)
    return (
        f"{cpu}, {cores} cores available, {ram}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, {versions}"
    )
