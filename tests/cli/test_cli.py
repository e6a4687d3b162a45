"""Helpers every script shares (mfkeras/cli/common.py)."""

import json
import os

import pytest

from mfkeras.cli import common as cli


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


def test_fusion_flags_reach_the_fusion_options():
    from absl import flags

    from mfkeras import fusion

    import functools
    import types

    values = flags.FlagValues()  # a private flag registry, not the global one
    module = types.SimpleNamespace(**{
        name: functools.partial(getattr(flags, name), flag_values=values)
        for name in ("DEFINE_string", "DEFINE_enum", "DEFINE_float", "DEFINE_bool", "DEFINE_integer")
    })
    cli.define_fusion_flags(module)
    values(["prog", "--inference_dtype=bfloat16", "--jit_compile", "--symmetric", "--refine=dilate",
            "--consistency=largest", "--area_ratio=0.02", "--dense", "--soft_band=3",
            "--nohalo_removal"])
    options = fusion.FusionOptions(**cli.fusion_option_kwargs(values))
    assert (options.inference_dtype, options.jit_compile, options.symmetric, options.dense) == (
        "bfloat16", True, True, True
    )
    assert (options.refine, options.consistency, options.area_ratio) == ("dilate", "largest", 0.02)
    assert options.soft_band == 3 and options.halo_removal is False


def test_the_scripts_dtype_list_is_the_librarys():
    from mfkeras.network import precision

    assert cli.INFERENCE_DTYPES == precision.INFERENCE_DTYPES


def test_every_translated_parameter_phrase_occurs_in_a_library_message():
    import pathlib
    import re

    import mfkeras

    source = "\n".join(p.read_text() for p in pathlib.Path(mfkeras.__file__).parent.rglob("*.py"))
    source = re.sub(r'"\s*\n\s*f?"', "", source)  # adjacent string literals read as one
    for parameter, flag in cli.PARAMETER_FLAGS.items():
        assert parameter in source, parameter
        assert flag.count("--") >= 1 and "--" not in parameter


def test_library_messages_read_as_flags_on_the_command_line(tmp_path):
    from mfkeras.io import images

    existing = tmp_path / "fused.png"
    existing.write_bytes(b"x")
    with pytest.raises(images.ImageError) as caught:
        images.check_output_path(str(existing))
    assert "--" not in str(caught.value)
    assert "pass --overwrite to replace it" in cli.as_flags(str(caught.value))
