"""The whole-process timing helpers the command-line benchmarks share (experiments/process_timing.py)."""

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "experiments" / "process_timing.py"
_SPEC = importlib.util.spec_from_file_location("process_timing", _PATH)
process_timing = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(process_timing)


def test_run_once_reports_the_childs_peak_memory_and_wall_time():
    touch = "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.2)"
    wall, rss_mb = process_timing.run_once([sys.executable, "-c", touch])
    assert 200 <= rss_mb < 400
    assert wall >= 0.2


def test_run_once_names_a_failing_command_with_its_stderr():
    with pytest.raises(RuntimeError, match=r"exited 3: .*went wrong"):
        process_timing.run_once([sys.executable, "-c", "import sys; sys.stderr.write('went wrong'); sys.exit(3)"])


def test_time_commands_alternates_the_commands_after_one_warm_up_each(tmp_path):
    log = tmp_path / "log"
    command = lambda name: [sys.executable, "-c", f"open({str(log)!r}, 'a').write({name!r})"]  # noqa: E731
    results = process_timing.time_commands({"a": command("a"), "b": command("b")}, repeats=3)
    assert log.read_text() == "ab" + "ab" * 3
    for figures in results.values():
        assert len(figures["runs_s"]) == 3
        assert figures["median_s"] == sorted(figures["runs_s"])[1]


def test_with_ratios_divides_by_focus_stack_of_the_same_run_only_when_it_was_timed():
    results = process_timing.with_ratios({"focus_stack": {"median_s": 0.2}, "mfkeras": {"median_s": 0.5}})
    assert results["mfkeras"]["ratio_to_focus_stack"] == pytest.approx(2.5)
    assert results["focus_stack"]["ratio_to_focus_stack"] == 1.0
    assert "ratio_to_focus_stack" not in process_timing.with_ratios({"mfkeras": {"median_s": 0.5}})["mfkeras"]


def test_peer_commands_skip_missing_executables(tmp_path):
    commands = process_timing.peer_commands(["a.png", "b.png"], str(tmp_path), "pair", sys.executable,
                                            str(tmp_path / "no-enfuse"))
    assert list(commands) == ["focus_stack"]
    assert commands["focus_stack"][-2:] == ["a.png", "b.png"]


def test_run_once_does_not_count_the_callers_own_memory():
    held = bytearray(300 * 2**20)
    held[::4096] = b"x" * len(held[::4096])  # resident in this process
    _, rss_mb = process_timing.run_once([sys.executable, "-S", "-c", "pass"])
    assert rss_mb < 50
    del held


def test_checked_run_returns_the_output_or_names_the_failure():
    assert process_timing.checked_run([sys.executable, "-c", "print('out')"]).stdout == "out\n"
    with pytest.raises(RuntimeError, match=r"exited 4: .*no good"):
        process_timing.checked_run([sys.executable, "-c", "import sys; sys.stderr.write('no good'); sys.exit(4)"])
