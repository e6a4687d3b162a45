"""The SavedModel serving module, its TensorFlow fusion steps, and loading without mfkeras."""

import ast
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from mfkeras.deploy import saved_model as export
from mfkeras import fusion
from mfkeras.fusion import inference
from mfkeras.network import zoo
from mfkeras.io import images
from mfkeras.network.config import POOL, ModelConfig
from mfkeras.network.model import build_patch_model

from conftest import band_by_loop, randomize_weights, shared_path

TINY = ModelConfig("tiny", (4, POOL, 8), (8,))
REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "experiments" / "export.py"
SAVED_MODEL_CLI = Path(sys.executable).with_name("saved_model_cli")
# Any import of mfkeras in the child process fails: it must not need the package.
NO_MFKERAS = "import sys\nsys.modules['mfkeras'] = None\n"


@pytest.fixture(scope="module")
def tiny_model():
    return randomize_weights(build_patch_model(TINY), seed=12, scale=0.3)


def _textured(shape, seed=0):
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random(shape), (0, 0), 1.5)
    image = (image - image.min()) / (image.max() - image.min())
    return np.round(image * 255).astype(np.uint8)


def _pair(shape, seed=0):
    """A sharp image and a copy blurred on its right half."""
    sharp = _textured(shape, seed)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    second = sharp.copy()
    second[:, shape[1] // 2 :] = blurred[:, shape[1] // 2 :]
    return sharp, second


def _child(code, *args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-c", NO_MFKERAS + textwrap.dedent(code), *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=env,
    )


# --- The TensorFlow fusion steps against mfkeras.fusion.pipeline ------------------------------------


def _blobs(shape, sigma, seed):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.random(shape), (0, 0), sigma) > 0.5


def _spiral(side):
    mask = np.zeros((side, side), bool)
    for k in range(0, side // 2 - 2, 4):
        mask[k, k : side - k] = mask[k : side - k, side - k - 1] = True
        mask[side - k - 1, k + 2 : side - k] = mask[k + 2 : side - k, k + 2] = True
    return mask


@pytest.mark.parametrize(
    "mask",
    [_blobs((60, 70), 2.0, 0), _blobs((97, 64), 4.0, 1), _spiral(64), np.zeros((20, 30), bool),
     np.ones((20, 30), bool), np.eye(25, dtype=bool)],
    ids=["fine", "blobs", "spiral", "empty", "full", "diagonal"],
)
def test_connected_components_partition_like_opencv(mask):
    labels = export.connected_components(mask).numpy()
    _, expected = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    # The same partition: label pairs match one to one.
    pairs = set(zip(labels.ravel().tolist(), expected.ravel().tolist()))
    assert len(pairs) == len(np.unique(labels)) == len(np.unique(expected))
    # Each region is labelled 1 + the raster index of its first pixel.
    flat = labels.ravel()
    for label in np.unique(flat[flat > 0]):
        assert np.flatnonzero(flat == label)[0] == label - 1


@pytest.mark.parametrize("min_area", [1, 7, 60, 400])
@pytest.mark.parametrize("mask", [_blobs((60, 70), 2.0, 2), _blobs((80, 50), 3.0, 3), _spiral(48)])
def test_region_cleaning_matches_fusion(mask, min_area):
    np.testing.assert_array_equal(
        export.remove_small_regions(mask, min_area).numpy(), fusion.remove_small_regions(mask, min_area)
    )
    np.testing.assert_array_equal(
        export.keep_largest_regions(mask).numpy(), fusion.keep_largest_regions(mask)
    )


@pytest.mark.parametrize("stride, shape", [(2, (37, 45)), (8, (40, 33)), (1, (20, 24)), (3, (31, 29))])
def test_focus_map_matches_fusion(stride, shape):
    rng = np.random.default_rng(4)
    scores = rng.random(((shape[0] - 16) // stride + 2, (shape[1] - 16) // stride + 2))
    np.testing.assert_allclose(
        export.focus_map(scores, shape, stride, 16).numpy(),
        fusion.focus_map(scores, shape, stride, 16),
        atol=1e-12,
    )


@pytest.mark.parametrize("radius, eps", [(8, 0.1), (2, 0.01)])
def test_guided_filter_matches_fusion(radius, eps):
    rng = np.random.default_rng(5)
    guide = cv2.GaussianBlur(rng.random((45, 61)), (0, 0), 2.0)
    source = (rng.random((45, 61)) > 0.5).astype(np.float64)
    np.testing.assert_allclose(
        export.guided_filter(guide, source, radius, eps).numpy(),
        fusion.guided_filter(guide, source, radius, eps),
        atol=1e-5,  # fusion's filter runs in float32
    )


def test_dilate_blend_and_gray_match_fusion():
    mask = _blobs((40, 50), 2.0, 6)
    options = fusion.FusionOptions(refine="dilate", dilate_radius=2)
    expected = fusion.refine_decision(mask, mask.astype(np.float32), mask.astype(np.float32), options)
    np.testing.assert_array_equal(export.dilate(mask, 2).numpy(), expected.astype(bool))
    rng = np.random.default_rng(7)
    first, second = (rng.random((2, 40, 50, 3)) * 255).astype(np.uint8)
    weights = rng.random((40, 50)) * 1.2 - 0.1
    np.testing.assert_array_equal(
        export.blend(first, second, weights).numpy(), fusion.blend(first, second, weights)
    )
    for image in (first, first[..., :1]):
        np.testing.assert_array_equal(
            export.to_gray(image).numpy(), fusion.to_gray(fusion.to_unit_range(image))
        )


# --- The serving module --------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        fusion.FusionOptions(),
        fusion.FusionOptions(consistency="largest", refine="dilate"),
        fusion.FusionOptions(consistency="none", refine="none", symmetric=True),
        fusion.FusionOptions(dense=True, area_ratio=0.05),
        fusion.FusionOptions(clip_weights=False),
        fusion.FusionOptions(soft_band=3),
    ],
    ids=["default", "largest-dilate", "none-symmetric", "dense", "unclipped", "soft-band"],
)
@pytest.mark.parametrize("channels", [3, 1])
def test_module_fuse_matches_python_fuse(tiny_model, options, channels):
    a, b = _pair((44, 58, 3), seed=channels)
    if channels == 1:
        a, b = a[..., :1], b[..., :1]
    expected = fusion.fuse([a, b], tiny_model, options)
    module = export.FusionModule(tiny_model, options)  # tf.function methods hold `self` weakly
    got = {k: v.numpy() for k, v in module.fuse(a, b).items()}
    assert got["fused"].shape == a.shape and got["fused"].dtype == np.uint8
    np.testing.assert_array_equal(got["decision_map"], expected.decision.astype(np.uint8))
    np.testing.assert_allclose(got["focus_map"], expected.focus_map, atol=1e-6)
    np.testing.assert_allclose(got["weight_map"], expected.final_decision, atol=1e-5)
    # Weights agree to float32 precision, so a blended value can round the other way.
    assert np.abs(got["fused"].astype(int) - expected.fused).max() <= 1


@pytest.mark.parametrize("options", [fusion.FusionOptions(), fusion.FusionOptions(symmetric=True)], ids=["default", "symmetric"])
def test_module_fuse_matches_python_fuse_for_the_default_decision_network(options):
    """The shipped per-pixel decision network through the SavedModel path, with its own rule."""
    a, b = (images.read_image(str(p)) for p in zoo.demo_pair())
    model = zoo.load_patch_model()
    # The module blends by its weight map as it is: the pipeline without halo removal.
    expected = fusion.fuse([a, b], model, dataclasses.replace(options, halo_removal=False))
    module = export.FusionModule(model, options)
    assert (module.options.guided_radius, module.options.area_ratio, module.options.soft_band) == (1, 0.003, 2)
    assert module.options.halo_removal is False
    got = {k: v.numpy() for k, v in module.fuse(a, b).items()}
    # One score per pixel from raw grey differences: oneDNN's float32 sums differ by ~1e-5.
    np.testing.assert_allclose(got["focus_map"], expected.focus_map, atol=5e-5)
    assert np.mean(got["decision_map"] == expected.decision.astype(np.uint8)) >= 0.9999
    assert np.abs(got["fused"].astype(int) - expected.fused).mean() <= 0.05
    # The soft band: there the weights are the focus map, not the refined decision.
    band = band_by_loop(got["decision_map"], 2)
    assert 0 < band.mean() < 0.5
    np.testing.assert_allclose(got["weight_map"][band], got["focus_map"][band], atol=1e-6)
    agree = got["decision_map"] == expected.decision
    np.testing.assert_allclose(got["weight_map"][agree], expected.final_decision[agree], atol=1e-4)


def test_module_refuses_halo_removal_it_cannot_run(tiny_model):
    with pytest.raises(ValueError, match="halo removal"):
        export.FusionModule(tiny_model, fusion.FusionOptions(halo_removal=True))
    assert export.FusionModule(zoo.load_patch_model(), fusion.FusionOptions()).options.halo_removal is False


def test_module_score_map_matches_inference(tiny_model):
    network = fusion.as_score_network(tiny_model)
    rng = np.random.default_rng(8)
    a, b = rng.random((2, 2, 37, 50, 1)).astype(np.float32)
    module = export.FusionModule(network)
    got = module.score_map(a, b)["score_map"].numpy()
    for index in range(2):
        expected = inference.score_map(network, a[index, ..., 0], b[index, ..., 0])
        np.testing.assert_allclose(got[index, ..., 0], expected, atol=1e-6)


def test_module_rejects_bad_inputs(tiny_model):
    module = export.FusionModule(tiny_model)
    image = _textured((30, 30, 3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="1 or 3 channels"):
        module.fuse(image[..., :2], image[..., :2])
    with pytest.raises(tf.errors.InvalidArgumentError, match="same shape"):
        module.fuse(image, image[:20])
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 16 pixels"):
        module.fuse(image[:10], image[:10])
    with pytest.raises(ValueError, match="inference_dtype must be one of"):
        export.FusionModule(tiny_model, inference_dtype="int8")
    with pytest.raises(TypeError, match="FusionOptions"):
        export.FusionModule(tiny_model, options={"refine": "none"})


@pytest.mark.parametrize(
    "inference_dtype, jit_compile", [("float32", True), ("bfloat16", False), ("float16", False)]
)
def test_reduced_precision_and_xla_stay_close(tiny_model, inference_dtype, jit_compile):
    network = fusion.as_score_network(tiny_model)
    rng = np.random.default_rng(9)
    a, b = rng.random((2, 1, 40, 48, 1)).astype(np.float32)
    reference = export.score_function(network)(a, b).numpy()
    got = export.score_function(network, inference_dtype, jit_compile)(a, b).numpy()
    assert got.dtype == np.float32
    tolerance = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}[inference_dtype]
    np.testing.assert_allclose(got, reference, atol=tolerance)


def test_reduced_precision_keeps_the_first_and_last_convolutions_float32(tiny_model):
    network = export.cast_network(fusion.as_score_network(tiny_model), "bfloat16")
    convs = [layer for model in (network.branch, network.head) for layer in model.layers if hasattr(layer, "kernel")]
    assert [layer.compute_dtype for layer in convs] == ["float32"] + ["bfloat16"] * (len(convs) - 2) + ["float32"]
    assert all(layer.kernel.dtype == "float32" for layer in convs)


@pytest.mark.slow
@pytest.mark.parametrize("inference_dtype", ["bfloat16", "float16"])
def test_reduced_precision_decisions_on_lytro(released_model, inference_dtype):
    """Mixed precision keeps the served bound, >= 99.5 % of the float32 decisions, on the
    whole of lytro_11 (98.9 % in bfloat16 when the first convolution is bfloat16 too)."""
    from mfkeras.io import images

    network = fusion.as_score_network(released_model)
    module = export.FusionModule(network, inference_dtype=inference_dtype)
    a, b = [images.read_image(str(shared_path("data", "lytro", f"lytro_11_{s}.jpg"))) for s in "AB"]
    expected = fusion.fuse([a, b], network)
    got = module.fuse(a, b)
    initial = got["focus_map"].numpy() > 0.5
    assert np.mean(initial == expected.initial_decision) >= 0.995
    assert np.mean(got["decision_map"].numpy().astype(bool) == expected.decision) >= 0.995


def _lytro_crop(name):
    """A 256 x 320 crop of a Lytro pair (the full pairs are in the README figure)."""
    from mfkeras.io import images

    pair = [images.read_image(str(shared_path("data", "lytro", f"lytro_{name}_{s}.jpg"))) for s in "AB"]
    return [image[120:376, 100:420] for image in pair]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["01", "08", "15"])
def test_served_fuse_agrees_with_python_on_lytro(released_model, name):
    network = fusion.as_score_network(released_model)
    a, b = _lytro_crop(name)
    expected = fusion.fuse([a, b], network)
    module = export.FusionModule(network)
    got = module.fuse(a, b)
    agreement = np.mean(got["decision_map"].numpy().astype(bool) == expected.decision)
    fused_diff = np.abs(got["fused"].numpy().astype(int) - expected.fused).mean()
    assert agreement >= 0.995 and fused_diff <= 1.0, (agreement, fused_diff)


# --- The SavedModel as users load it -------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model(tiny_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("saved_model") / "1"
    export.export_saved_model(directory, tiny_model)
    a, b = _pair((48, 64, 3), seed=3)
    np.save(directory.parent / "a.npy", a)
    np.save(directory.parent / "b.npy", b)
    module = export.FusionModule(tiny_model)
    expected = {k: v.numpy() for k, v in module.fuse(a, b).items()}
    return directory, expected


def test_saved_model_runs_in_a_fresh_process_without_mfkeras(saved_model):
    directory, expected = saved_model
    work = directory.parent
    proc = _child(
        """
        import numpy as np, tensorflow as tf
        model = tf.saved_model.load(sys.argv[1])
        assert sorted(model.signatures) == ["fuse", "score_map", "serving_default"], list(model.signatures)
        a, b = np.load("a.npy"), np.load("b.npy")
        out = model.signatures["serving_default"](image_a=tf.constant(a), image_b=tf.constant(b))
        np.savez("served.npz", **{k: v.numpy() for k, v in out.items()})
        gray = tf.zeros((2, 33, 41, 1))
        print(model.signatures["score_map"](image_a=gray, image_b=gray)["score_map"].shape)
        """,
        directory,
        cwd=work,
    )
    assert proc.returncode == 0, proc.stderr
    assert "(2, 10, 14, 1)" in proc.stdout  # ceil(33 / 2) - 8 + 1, ceil(41 / 2) - 8 + 1
    served = np.load(work / "served.npz")
    assert sorted(served.files) == ["decision_map", "focus_map", "fused", "weight_map"]
    for key, value in expected.items():
        np.testing.assert_array_equal(served[key], value)


def test_saved_model_cli_show_and_run(saved_model):
    directory, expected = saved_model
    work = directory.parent
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    show = subprocess.run(
        [str(SAVED_MODEL_CLI), "show", "--dir", str(directory), "--tag_set", "serve",
         "--signature_def", "fuse"],
        capture_output=True, text=True, env=env,
    )
    assert show.returncode == 0, show.stderr
    for name in ("inputs['image_a']", "DT_UINT8", "outputs['fused']", "outputs['decision_map']"):
        assert name in show.stdout
    # `run` loads the graph the way TensorFlow Serving does (a session, variables restored).
    run = subprocess.run(
        [str(SAVED_MODEL_CLI), "run", "--dir", str(directory), "--tag_set", "serve",
         "--signature_def", "serving_default",
         "--inputs", f"image_a={work / 'a.npy'};image_b={work / 'b.npy'}",
         "--outdir", str(work / "cli"), "--overwrite"],
        capture_output=True, text=True, env=env,
    )
    assert run.returncode == 0, run.stderr
    np.testing.assert_array_equal(np.load(work / "cli" / "fused.npy"), expected["fused"])
    np.testing.assert_array_equal(np.load(work / "cli" / "decision_map.npy"), expected["decision_map"])


# --- Keras import of the .keras files ------------------------------------------------------


def test_keras_files_load_in_a_fresh_process_without_mfkeras(tiny_model, tmp_path):
    """`keras.models.load_model` on each shipped .keras file (and a fresh one) needs only Keras.

    The loaded patch models give the library's outputs. One child process loads them all.
    """
    tiny_model.save(tmp_path / "tiny.keras")
    cases = {"tiny": (tiny_model, tmp_path / "tiny.keras")}
    for name in zoo.available_models():
        cases[name] = (zoo.load_patch_model(name), zoo.resolve_model_path(name))
    rng = np.random.default_rng(10)
    expected = {}
    for name, (model, path) in cases.items():
        size = model.inputs[0].shape[1] or 24  # decision networks take any size
        patches = rng.random((2, 6, size, size, 1)).astype(np.float32)
        np.save(tmp_path / f"{name}_patches.npy", patches)
        expected[name] = model.predict(list(patches), verbose=0)
    proc = _child(
        """
        import keras, numpy as np
        for name, path in zip(sys.argv[1::2], sys.argv[2::2]):
            patch_model = keras.models.load_model(path, compile=False)
            patches = np.load(f"{name}_patches.npy")
            np.save(f"{name}_patch_out.npy", patch_model.predict(list(patches), verbose=0))
        """,
        *[item for name, (_, path) in cases.items() for item in (name, path)],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    for name, patch_out in expected.items():
        np.testing.assert_allclose(
            np.load(tmp_path / f"{name}_patch_out.npy"), patch_out, atol=1e-5, err_msg=name
        )


@pytest.mark.parametrize("dense", [False, True], ids=["strided", "dense"])
def test_score_networks_round_trip_through_keras_files(dense, tmp_path):
    """A score network saved as .keras (custom layers registered by mfkeras) scores the same."""
    import keras

    network = fusion.as_score_network(zoo.load_patch_model(), dense=dense)
    network.model.save(tmp_path / "score.keras")
    loaded = keras.models.load_model(tmp_path / "score.keras", compile=False)
    images = list(np.random.default_rng(11).random((2, 1, 40, 52, 1)).astype(np.float32))
    assert [type(layer) for layer in loaded.get_layer("head").layers] == [
        type(layer) for layer in network.head.layers
    ]
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), network.model.predict(images, verbose=0))


# --- The mfkeras-export script -------------------------------------------------------------


def _script(*args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_script_choices_are_the_library_choices():
    """The scripts take their choices from mfkeras.fusion.options instead of copying them."""
    from mfkeras.cli import common
    from mfkeras.cli import export as export_cli
    from mfkeras.deploy import tflite
    from mfkeras.fusion import options
    from mfkeras.network import precision

    assert export_cli.QUANTIZATIONS is tflite.QUANTIZATIONS is options.QUANTIZATIONS
    assert common.INFERENCE_DTYPES is precision.INFERENCE_DTYPES is options.INFERENCE_DTYPES
    assert common.REFINE_MODES is options.REFINE_MODES and common.STACK_METHODS is options.STACK_METHODS


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "--output_dir is required"),
        (["--output_dir=out", "--tflite=int4"], "--tflite must list quantizations"),
        (["--output_dir=out", "--verify_dir=missing"], "--verify_dir is not a directory"),
        (["--output_dir=out", "--model=nowhere.keras"], "No trained model at nowhere.keras"),
    ],
)
def test_script_rejects_bad_flags_in_one_line(tmp_path, args, message):
    proc = _script(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_script_exports_savedmodel_tflite_and_parity(tiny_model, tmp_path):
    tiny_model.save(tmp_path / "tiny.keras")
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    a, b = _pair((48, 64, 3), seed=5)
    cv2.imwrite(str(pairs / "p1_A.png"), a)
    cv2.imwrite(str(pairs / "p1_B.png"), b)
    args = ["--output_dir=exported", f"--model={tmp_path / 'tiny.keras'}", "--tflite=float32",
            "--tflite_tile_size=32", f"--verify_dir={pairs}", f"--verify_json={tmp_path / 'parity.json'}"]
    proc = _script(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    exported = tmp_path / "exported"
    assert (exported / "1" / "saved_model.pb").is_file()
    assert sorted(p.name for p in (exported / "tflite").iterdir()) == [
        "score_map_float32.tflite", "score_map_tile32_float32.tflite"
    ]
    record = json.loads((exported / "export.json").read_text())
    assert record["signatures"] == ["serving_default", "fuse", "score_map"]
    summary = json.loads((tmp_path / "parity.json").read_text())["summary"]
    assert summary["pairs"] == 1 and summary["min_decision_agreement"] == 1.0
    assert summary["max_fused_mean_abs_diff"] <= 0.01
    for figures in summary["tflite"].values():
        assert figures["max_score_abs_diff"] <= 1e-4
    again = _script(*args[:3], cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
