"""Helpers every script shares (experiments/cli.py)."""

import json
import os

import pytest

from experiments import cli


def test_write_json_creates_the_folder_and_accepts_a_bare_file_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli.write_json("figures.json", {"seconds": 0.5})
    cli.write_json(os.path.join("new", "dir", "more.json"), {"ok": [1, 2]})
    assert json.loads((tmp_path / "figures.json").read_text()) == {"seconds": 0.5}
    assert json.loads((tmp_path / "new" / "dir" / "more.json").read_text()) == {"ok": [1, 2]}


def test_write_json_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "figures.json"
    cli.write_json(path, {"run": 1})
    with pytest.raises(TypeError):
        cli.write_json(path, {"run": object()})  # not serialisable, fails half way
    assert json.loads(path.read_text()) == {"run": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures.json"]
