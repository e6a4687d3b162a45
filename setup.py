"""Setuptools shim; the metadata lives in setup.cfg.

The top-level ``saved_models/`` and ``demo/`` folders are copied into the wheel as
``mfkeras/saved_models/`` and ``mfkeras/demo/`` (mfkeras.network.zoo looks there first).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA_DIRS = ("saved_models", "demo")


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # editable installs read the top-level folders directly
        for name in DATA_DIRS:
            source = ROOT / name
            target = Path(self.build_lib) / "mfkeras" / name
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithData})
