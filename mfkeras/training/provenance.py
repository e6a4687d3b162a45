"""Provenance of a run: which machine it ran on and which commit it ran from.

Used by the trainer (model cards) and by the benchmark scripts in ``experiments/``.
Only the standard library is imported at module level; TensorFlow is imported
inside :func:`describe_machine` when the GPU list is asked for.
"""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Optional


def _cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_names() -> list:
    import tensorflow as tf

    names = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        names.append(details.get("device_name", device.name))
    return names


def describe_machine(gpus: bool = False, load_average: bool = False) -> dict:
    """Describes the machine a run or benchmark ran on.

    Args:
        gpus: also list the visible GPUs by name under ``"gpus"`` (imports TensorFlow).
        load_average: also record ``os.getloadavg()`` under ``"load_average_at_start"``
            (None where the platform has none).

    Returns:
        ``{"cpu", "processor", "machine", "cpu_count", "platform", "python"}``, plus
        ``"gpus"`` and ``"load_average_at_start"`` when asked.
    """
    description = {
        "cpu": _cpu_model(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    if gpus:
        description["gpus"] = _gpu_names()
    if load_average:
        description["load_average_at_start"] = (
            list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        )
    return description


def git_commit(directory: Optional[str] = None) -> Optional[str]:
    """Returns ``git rev-parse HEAD`` of ``directory`` (default: this package), or None."""
    directory = directory or os.path.dirname(os.path.abspath(__file__))
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None
