"""What every benchmark shares: measurement processes, the machine description, and RESULTS.md sections."""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
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


RESULT_TAG = "RESULT "


def report_result(result: dict) -> None:
    """End of a measurement process: add its peak resident memory and print the result as one JSON line."""
    result["peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(RESULT_TAG + json.dumps(result), flush=True)


def child_env(root: Path) -> dict[str, str]:
    """Environment of a measurement process: the working tree's package after anything already on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(root / "src")) if p)
    return env


def read_result(task: str, proc: subprocess.CompletedProcess, note_width: int = 80) -> tuple[dict | None, str]:
    """The result a measurement process printed, or None and a note saying why there is none."""
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"  {task} failed (exit {proc.returncode}): {last}", file=sys.stderr)
        return None, f"failed: {last[:note_width]}"
    result = json.loads(lines[-1][len(RESULT_TAG) :])
    if result.get("status") == "not available":
        print(f"  {task}: not available ({result['reason']})", file=sys.stderr)
        return None, f"not available: {result['reason']}"
    return result, ""


def replace_section(text: str, section: str, heading: str) -> str:
    """Put ``section`` in place of the existing one under ``heading``, or append it; other bytes stay."""
    lines = text.splitlines(keepends=True)
    body = section.rstrip("\n") + "\n"
    try:
        begin = next(i for i, line in enumerate(lines) if line.rstrip("\n") == heading)
    except StopIteration:
        if not text:
            return "# Benchmarks\n\n" + body
        text = text if text.endswith("\n") else text + "\n"
        return text + ("" if text.endswith("\n\n") else "\n") + body
    end = next((i for i in range(begin + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "".join(lines[:begin]) + body + ("\n" if end < len(lines) else "") + "".join(lines[end:])


def write_section(out: Path, section: str, heading: str) -> None:
    """Write ``section`` into the results file ``out`` (replacing its own heading only) and show it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(replace_section(out.read_text() if out.exists() else "", section, heading))
    print()
    print(section)
    print(f"written to {out}")


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``, idle and iowait excluded)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(threshold: float, max_wait: float) -> float:
    """Wait until other processes use under ``threshold`` cores (1 s samples), at most ``max_wait`` s."""
    start = time.perf_counter()
    while True:
        before = busy_cpu_seconds()
        time.sleep(1.0)
        busy = busy_cpu_seconds() - before
        if busy < threshold or time.perf_counter() - start > max_wait:
            return busy


def growth_exponent(points: list[tuple[int, float]]) -> str:
    """The slope of log(seconds) against log(size) between the two largest sizes (1 = linear), as text; "—" with
    fewer than two points or under a second at either."""
    if len(points) < 2 or min(s for _, s in points[-2:]) < 1:
        return "—"
    (n1, s1), (n2, s2) = points[-2:]
    return f"{math.log(s2 / s1) / math.log(n2 / n1):.2f}"
