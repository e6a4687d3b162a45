"""Training on two worker processes of this machine: MultiWorkerMirroredStrategy from TF_CONFIG.

Each test runs the training script twice over (one process per worker) on the CPU, as a
user would on two machines; every wait has a timeout, so a hung collective fails the test.
"""

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "train.py"
WORKERS = 2
RUN_TIMEOUT_S = 180
EXIT_TIMEOUT_S = 20


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for index in range(6):
        image = cv2.resize(rng.random((12, 12)), (48, 48), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"i{index}.png"), np.clip(255 * image, 0, 255).astype(np.uint8))
    return str(folder)


def _cluster() -> dict:
    """A two-worker cluster on free localhost ports (held together so they differ)."""
    sockets = [socket.socket() for _ in range(WORKERS)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return {"worker": [f"localhost:{port}" for port in ports]}


def _command(image_dir, tmp_path, steps, interval, *flags) -> list:
    return [
        sys.executable, str(SCRIPT), "--preset=liu2017_single_fc", f"--image_dir={image_dir}",
        f"--steps={steps}", f"--validation_interval={interval}", "--batch_size=8",
        "--validation_pairs=16", "--patches_per_image=4", "--verbose=2",
        "--distribution=multi_worker",
        f"--output_dir={tmp_path / 'run'}", f"--export_dir={tmp_path / 'export'}", *flags,
    ]


def _start(command, cluster, log_dir, tag) -> list:
    """Starts one process per worker; their output goes to ``<tag>_<index>.out/.err``."""
    workers = []
    for index in range(WORKERS):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        out, err = log_dir / f"{tag}_{index}.out", log_dir / f"{tag}_{index}.err"
        with open(out, "w") as stdout, open(err, "w") as stderr:
            process = subprocess.Popen(command, env=env, cwd=log_dir, stdout=stdout, stderr=stderr)
        workers.append((process, out, err))
    return workers


def _stop(workers) -> None:
    for process, _, _ in workers:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=EXIT_TIMEOUT_S)


def _fail(workers, why) -> None:
    _stop(workers)
    tails = "\n".join(
        f"--- worker {index} (exit {process.returncode}):\n{err.read_text()[-3000:]}"
        for index, (process, _, err) in enumerate(workers)
    )
    pytest.fail(f"{why}\n{tails}")


def _wait(workers, succeed: bool, timeout=RUN_TIMEOUT_S) -> list:
    """Waits for every worker to succeed (or to fail); returns their stdout (stderr) texts."""
    deadline = time.monotonic() + timeout
    for index, (process, _, _) in enumerate(workers):
        try:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _fail(workers, f"worker {index} still running after {timeout} s")
        if (process.returncode == 0) != succeed:
            _fail(workers, f"worker {index} exited with {process.returncode}")
    return [(out if succeed else err).read_text() for _, out, err in workers]


def _result(stdout: str) -> dict:
    """The result dict the script prints last."""
    return json.loads(stdout[stdout.rindex("\n{\n") + 1:])


def _history_epochs(run_dir) -> list:
    with open(run_dir / "history.csv", newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _backup_epoch(backup_dir):
    """The epoch in a BackupAndRestore folder, or None while none is complete."""
    try:
        return json.loads((backup_dir / "training_metadata.json").read_text())["epoch"]
    except (OSError, ValueError):
        return None


def test_two_workers_end_equal_and_only_the_chief_writes(image_dir, tmp_path):
    command = _command(image_dir, tmp_path, steps=4, interval=2)
    outputs = _wait(_start(command, _cluster(), tmp_path, "run"), succeed=True)
    chief, other = [_result(out) for out in outputs]

    assert chief["iterations"] == other["iterations"] == 4
    assert chief["final_weights_sha256"] == other["final_weights_sha256"]
    run, export = tmp_path / "run", tmp_path / "export"
    # The other worker's folder is gone, and it wrote no rows, no result and no export.
    assert [path.name for path in run.iterdir() if path.name.startswith("workertemp")] == []
    for name in ["flags.json", "preview.png", "train_config.json", "checkpoints/best.keras"]:
        assert (run / name).exists(), name
    assert _history_epochs(run) == [0, 1]
    assert "export" in chief and "export" not in other
    assert json.loads((run / "result.json").read_text())["export"] == chief["export"]
    assert sorted(os.listdir(export)) == ["model_card.json", "patch_model.keras"]
    card = json.loads((export / "model_card.json").read_text())
    assert card["hardware"]["distribution"] == "multi_worker"
    assert card["hardware"]["replicas"] == WORKERS


def test_killed_cluster_resumes_from_its_backups(image_dir, tmp_path):
    steps, interval = 9, 3
    epochs = steps // interval
    command, cluster = _command(image_dir, tmp_path, steps, interval, "--nopreview"), _cluster()
    run = tmp_path / "run"
    backups = [run / "backup", run / "workertemp_1" / "backup"]
    workers = _start(command, cluster, tmp_path, "first")
    # Wait for the first interval's backups of both workers and the chief's history row.
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        saved = [_backup_epoch(backup) for backup in backups]
        if saved[0] is not None and saved[0] == saved[1]:
            if (run / "history.csv").exists() and len(_history_epochs(run)) == saved[0]:
                break
        if time.monotonic() > deadline or any(p.poll() is not None for p, _, _ in workers):
            _fail(workers, f"no backup of the first interval before the run ended: {saved}")
        time.sleep(0.02)
    restored = saved[0]
    assert 1 <= restored < epochs
    os.kill(workers[1][0].pid, signal.SIGKILL)
    # Worker 0 waits on a collective with the dead worker (or fails): stop it too.
    _stop(workers)

    # Without the chief's backup the workers would start an interval apart: both refuse.
    (run / "backup").rename(tmp_path / "chief_backup")
    errors = _wait(_start(command, cluster, tmp_path, "mismatch"), succeed=False)
    assert all("restored different steps from their backups" in err for err in errors)
    (tmp_path / "chief_backup").rename(run / "backup")

    second = _wait(_start(command, cluster, tmp_path, "second"), succeed=True)
    results = [_result(out) for out in second]
    assert [r["iterations"] for r in results] == [steps] * WORKERS
    assert results[0]["final_weights_sha256"] == results[1]["final_weights_sha256"]
    for out in second:
        # Keras counts from 1: the restart begins after the restored interval, not at 1.
        first_epoch = re.search(rf"^Epoch (\d+)/{epochs}$", out, re.M)
        assert int(first_epoch.group(1)) == restored + 1
    assert _history_epochs(run) == list(range(epochs))
    assert not (run / "backup").exists() and not (run / "workertemp_1").exists()
