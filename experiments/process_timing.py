"""Timing whole processes for the command-line benchmarks: wall time, peak RSS, the peers.

Shared by `benchmark_cli.py` and `benchmark_network_floor.py`; defines no flags.
"""

import os
import shutil
import statistics
import subprocess
import time


def run_once(command: list) -> tuple:
    """Runs ``command``; returns (wall seconds, peak RSS in MB). Fails loudly on a non-zero exit."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: {stderr[-500:]}")
    return wall, usage.ru_maxrss / 1024.0


def time_commands(commands: dict, repeats: int) -> dict:
    """Median wall time and peak RSS of each command, runs alternating between commands."""
    for command in commands.values():
        run_once(command)  # warm-up: file cache, lazy compilation caches
    samples = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            samples[name].append(run_once(command))
    return {
        name: {
            "median_s": statistics.median(wall for wall, _ in runs),
            "runs_s": [wall for wall, _ in runs],
            "peak_rss_mb": max(rss for _, rss in runs),
        }
        for name, runs in samples.items()
    }


def peer_commands(inputs: list, scratch: str, tag: str, focus_stack: str | None, enfuse: str | None) -> dict:
    """focus-stack's and enfuse's commands for ``inputs``, for those whose executable exists."""
    commands = {}
    if focus_stack and shutil.which(focus_stack):
        commands["focus_stack"] = [focus_stack, f"--output={os.path.join(scratch, tag + '_fs.png')}", *inputs]
    if enfuse and shutil.which(enfuse):
        commands["enfuse"] = [
            enfuse, "--exposure-weight=0", "--saturation-weight=0", "--contrast-weight=1", "--hard-mask",
            "--contrast-window-size=5", f"--output={os.path.join(scratch, tag + '_enfuse.tif')}", *inputs,
        ]
    return commands


def with_ratios(results: dict) -> dict:
    """Adds each command's wall-time ratio to focus-stack's (same run), where it was timed."""
    reference = results.get("focus_stack", {}).get("median_s")
    if reference:
        for figures in results.values():
            figures["ratio_to_focus_stack"] = figures["median_s"] / reference
    return results


def write_frames(scratch: str, sources: list, count: int, size=None) -> list:
    """Writes ``count`` PNG frames (the sources alternating; re-blurred when more than two;
    resized to ``size`` (W, H) if given) and returns their paths."""
    import cv2

    from mfkeras.io import images

    paths = []
    for index in range(count):
        frame = sources[index % 2]
        if size is not None:
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC)
        if count > 2:
            frame = cv2.GaussianBlur(frame, (0, 0), 0.3 + 0.4 * (index // 2))
        paths.append(os.path.join(scratch, f"frame_{size[0] if size else 0}_{index:02d}.png"))
        images.write_image(paths[-1], frame)
    return paths
