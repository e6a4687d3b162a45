"""The wheel ships only mfkeras, with the models and the demo pair as package data."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {
    "li2018": "patch_model.keras",
    "liu2017": "patch_model.keras",
    "liu2017_single_fc": "patch_model.keras",
    "pixel_decision": "decision_model.keras",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(out), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    wheels = list(out.glob("mfkeras-*.whl"))
    if proc.returncode != 0 or not wheels:
        pytest.skip(f"pip wheel cannot build offline here: {proc.stderr[-500:]}")
    return wheels[0]


@pytest.mark.slow
def test_wheel_contents(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    top = {n.split("/", 1)[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"mfkeras"}
    for name, model_file in SHIPPED.items():
        assert f"mfkeras/saved_models/{name}/{model_file}" in names
        assert f"mfkeras/saved_models/{name}/model_card.json" in names
    assert "mfkeras/saved_models/pixel_decision/litert/pair.tflite" in names
    assert {"mfkeras/demo/demo_A.jpg", "mfkeras/demo/demo_B.jpg"} <= set(names)
    for script in ("fuse", "train", "evaluate", "export"):
        assert f"mfkeras-{script} = mfkeras.cli.{script}:run" in scripts
    assert "experiments" not in scripts


@pytest.mark.slow
def test_installed_wheel_finds_models_and_fuses_the_demo(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
         str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    work = tmp_path / "cwd"
    work.mkdir()
    code = ("import json, mfkeras.network.zoo as z; "
            "print(json.dumps([z.available_models(), str(z.SAVED_MODELS_DIR), [str(p) for p in z.demo_pair()]]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    models, directory, demo = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(SHIPPED) <= set(models)
    assert Path(directory).is_relative_to(target)
    assert all(Path(p).is_relative_to(target) for p in demo)

    proc = subprocess.run([sys.executable, "-m", "mfkeras.cli.fuse", "--demo"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import cv2

    fused = cv2.imread(str(work / "demo_output" / "fused.png"))
    source = cv2.imread(str(REPO_ROOT / "demo" / "demo_A.jpg"))
    assert fused is not None and fused.shape == source.shape


def test_no_module_uses_a_name_it_never_defined():
    """A name used but never imported or defined fails only when that line runs (a benchmark
    script's branch, an error path); pyflakes finds them all statically."""
    from pyflakes import api, messages, reporter

    class Collect(reporter.Reporter):
        def __init__(self):
            super().__init__(None, None)
            self.found = []

        def flake(self, message):
            if isinstance(message, (messages.UndefinedName, messages.UndefinedLocal)):
                self.found.append(str(message))

        def syntaxError(self, filename, msg, lineno, offset, text):
            self.found.append(f"{filename}:{lineno}: {msg}")

    collect = Collect()
    for folder in ("mfkeras", "experiments", "tests"):
        api.checkRecursive([str(REPO_ROOT / folder)], collect)
    assert collect.found == []
