"""Timing whole processes for the command-line benchmarks: wall time, peak RSS, the peers.

Shared by `benchmark_cli.py` and `benchmark_network_floor.py`; defines no flags.
"""

import os
import shutil
import statistics
import subprocess
import sys


# Runs a command and prints its wall time and peak RSS. The benchmark starts this small process,
# which forks the command: a process's peak RSS counts what its parent held when it forked it
# (Linux keeps the pre-exec high-water mark), so forking from the benchmark itself would report
# the benchmark's own memory for every command that uses less.
_LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    except OSError as error:
        sys.stderr.write(f"{sys.argv[1]}: {error}")
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def run_once(command: list) -> tuple:
    """Runs ``command`` (its stdout discarded); returns (wall seconds, peak RSS in MB). Fails
    loudly, with the end of its stderr, on a non-zero exit."""
    proc = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, *command], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"The launcher of {' '.join(command)} exited {proc.returncode}: {proc.stderr[-500:]}")
    wall, rss_kb, returncode = proc.stdout.split()
    if int(returncode) != 0:
        raise RuntimeError(f"{' '.join(command)} exited {returncode}: {proc.stderr[-500:]}")
    return float(wall), int(rss_kb) / 1024.0


def checked_run(command: list) -> subprocess.CompletedProcess:
    """Runs ``command``, capturing its output as text; fails with the end of its stderr on a
    non-zero exit."""
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr[-500:]}")
    return proc


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
