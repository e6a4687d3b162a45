"""The LiteRT backend: the same scores, stacks and fused images as the Keras backend, no TensorFlow."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfkeras.fusion import FusionOptions, inference, pipeline
from mfkeras.fusion.litert import LiteRTNetwork
from mfkeras.io import images
from mfkeras.network import zoo
from mfkeras.network.config import POOL, ModelConfig
from mfkeras.network.convert import as_score_network
from mfkeras.network.decision_config import DecisionConfig
from mfkeras.network.decision_model import build_decision_model
from mfkeras.network.model import build_patch_model

from conftest import randomize_weights

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    "same": ModelConfig("tiny_same", (4, POOL, 8), (8,)),
    "valid_single_fc": ModelConfig("tiny_valid", (4, POOL, 8), (), padding="valid"),
    # A per-pixel decision network: one score per pixel, dilated branch, 1x1 head.
    "decision": DecisionConfig("tiny_decision", (4, 4, 4), (1, 2, 4), feature_channels=4, head_units=4),
}


def _textured(shape, seed):
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random(shape), (0, 0), 1.2)
    return ((image - image.min()) / (image.max() - image.min())).astype(np.float32)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def networks(request, tmp_path_factory):
    """(Keras score network, LiteRT network) of one tiny random model."""
    from mfkeras.deploy import tflite

    config = CONFIGS[request.param]
    if isinstance(config, DecisionConfig):
        model = randomize_weights(build_decision_model(config), seed=4, scale=0.3)
    else:
        model = randomize_weights(build_patch_model(config), seed=4, scale=0.3)
    network = as_score_network(model)
    bundle = tmp_path_factory.mktemp("litert")
    written = tflite.write_litert_bundle(network, str(bundle), model.name)
    assert set(written) == {"pair.tflite", "project.tflite", "tail.tflite", "litert.json"}
    return network, LiteRTNetwork(bundle)


def test_geometry_matches_the_keras_network(networks):
    network, lite = networks
    assert (lite.stride, lite.patch_size, lite.receptive_field) == (
        network.stride, network.patch_size, network.receptive_field
    )
    assert lite.output_shape_for(67, 90) == network.output_shape_for(67, 90)


def test_score_maps_match_keras_tiled_untiled_and_symmetric(networks):
    network, lite = networks
    a, b = _textured((67, 90), 1), _textured((67, 90), 2)
    keras_scores = inference.score_map(network, a, b)
    np.testing.assert_allclose(lite.score_map(a, b), keras_scores, atol=1e-5)
    np.testing.assert_allclose(lite.score_map(a, b, max_tile_side=40), lite.score_map(a, b), atol=1e-5)
    symmetric = lite.score_map(a, b, symmetric=True)
    np.testing.assert_allclose(symmetric, inference.score_map(network, a, b, symmetric=True), atol=1e-5)
    np.testing.assert_allclose(lite.score_map(b, a, symmetric=True), 1.0 - symmetric, atol=1e-5)


@pytest.mark.parametrize("stack_scoring", ["all_pairs", "knockout"])
def test_stack_scores_match_keras_tiled_and_untiled(networks, stack_scoring):
    network, lite = networks
    grays = [_textured((50, 61), seed) for seed in range(4)]
    expected = inference.stack_scores(network, grays, stack_scoring=stack_scoring)
    for tile_side in (None, 40):
        got = lite.stack_scores(grays, max_tile_side=tile_side, stack_scoring=stack_scoring)
        if stack_scoring == "all_pairs":
            np.testing.assert_allclose(got, expected, atol=1e-5)
        else:  # a comparison within float noise of a tie may go either way
            assert np.mean(np.abs(got - expected).max(axis=0) <= 1e-5) >= 0.99


def test_fusion_with_either_backend_agrees(networks):
    network, lite = networks
    if lite.kind == "decision":
        # A random decision network scores most pixels of a stack within float noise of each
        # other, so the argmax is a coin toss; the trained default's parity is tested below.
        pytest.skip("near-tied scores of a random per-pixel network")
    sources = [(_textured((64, 80, 3), seed) * 255).astype(np.uint8) for seed in (5, 6, 7)]
    for frames in (sources[:2], sources):
        keras_result = pipeline.fuse(frames, network)
        lite_result = pipeline.fuse(frames, lite)
        assert np.mean(lite_result.decision == keras_result.decision) >= 0.999
        assert np.abs(lite_result.fused.astype(int) - keras_result.fused).mean() <= 0.5


@pytest.mark.parametrize(
    "options", [FusionOptions(dense=True), FusionOptions(inference_dtype="bfloat16"), FusionOptions(jit_compile=True)]
)
def test_keras_only_options_are_refused_by_name(networks, options):
    _, lite = networks
    frame = (_textured((32, 32), 0) * 255).astype(np.uint8)
    with pytest.raises(ValueError, match="LiteRT backend runs the strided float32 network"):
        pipeline.fuse([frame, frame], lite, options)


def test_missing_bundle_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="No LiteRT bundle"):
        LiteRTNetwork(tmp_path)
    with pytest.raises(zoo.ModelNotFoundError, match="has no float32 LiteRT files"):
        zoo.load_litert_network("liu2017")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, quantization",
    [("pixel_decision", "float32"), ("liu2017_single_fc", "float32"), ("liu2017_single_fc", "dynamic_int8")],
)
def test_shipped_bundle_matches_a_fresh_export(tmp_path, name, quantization):
    from mfkeras.deploy import tflite

    shipped = zoo.litert_dir(name, quantization=quantization)
    assert shipped is not None, f"{name} ships its {quantization} LiteRT files"
    network = as_score_network(zoo.load_patch_model(name))
    tflite.write_litert_bundle(network, str(tmp_path), name, quantization)
    for name in ("pair.tflite", "project.tflite", "tail.tflite", "litert.json"):
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes(), name


def _parity_pairs():
    pairs = [tuple(str(p) for p in zoo.demo_pair())]
    lytro = REPO_ROOT.parent / "shared" / "data" / "lytro"
    for number in ("01", "02"):
        if (lytro / f"lytro_{number}_A.jpg").is_file():
            pairs.append((str(lytro / f"lytro_{number}_A.jpg"), str(lytro / f"lytro_{number}_B.jpg")))
    return pairs


@pytest.mark.slow
def test_shipped_default_parity_with_keras():
    from mfkeras.deploy import parity

    pairs = [(Path(a).stem, a, b) for a, b in _parity_pairs()]
    report = parity.compare_backends(pairs, zoo.load_patch_model(), zoo.load_litert_network())
    summary = report["summary"]
    assert summary["pairs"] == len(pairs)
    assert summary["max_score_abs_diff"] <= 1e-4
    assert summary["min_decision_agreement"] >= 0.999
    assert summary["max_fused_mean_abs_diff"] <= 0.5
    # Dynamic-range int8 keeps the patch classifier's decisions (>= 99.94 % on the 20 Lytro
    # pairs, 99.88 % on the demo pair; README) but not the decision network's (90 % on the
    # demo pair), which therefore ships float32 files only.
    patch_model = zoo.load_patch_model("liu2017_single_fc")
    int8 = parity.compare_backends(
        pairs, patch_model, zoo.load_litert_network("liu2017_single_fc", quantization="dynamic_int8")
    )["summary"]
    assert int8["min_decision_agreement"] >= 0.998 and int8["max_fused_mean_abs_diff"] <= 0.5
    assert zoo.litert_dir(quantization="dynamic_int8") is None


BLOCK_TENSORFLOW = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras"):
            raise ImportError(f"blocked import of {name}")
sys.meta_path.insert(0, Block())
sys.argv = ["mfkeras-fuse", *sys.argv[1:]]
from mfkeras.cli import fuse
fuse.run()
"""


def test_cli_fuses_with_litert_and_never_imports_tensorflow(tmp_path):
    out = tmp_path / "fused.png"
    a, b = (str(p) for p in zoo.demo_pair())
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_TENSORFLOW, a, b, "-o", str(out), "--backend=litert", "--timings"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "(litert)" in proc.stdout
    stages = proc.stderr.strip().splitlines()[-1]
    for stage in ("decode", "score", "decision", "refine", "blend", "encode"):
        assert f" {stage} " in stages, stages
    expected = pipeline.fuse([images.read_image(a), images.read_image(b)], zoo.load_patch_model()).fused
    assert np.abs(images.read_image(str(out)).astype(int) - expected).mean() <= 0.5


def test_progress_sees_every_tile_and_stack_step(networks):
    from mfkeras.fusion import scoring

    network, lite = networks
    seen = []

    def progress(iterable, description):
        items = list(iterable)
        seen.append((description, len(items)))
        return items

    frames = [(_textured((70, 90, 3), seed) * 255).astype(np.uint8) for seed in (1, 2, 3)]
    tiles = len(scoring.plan_tiles(network, 70, 90, 40))
    for model in (network, lite):
        seen.clear()
        pipeline.fuse(frames, model, FusionOptions(max_tile_side=40, stack_method="sequential"), progress=progress)
        assert seen == [("tiles", tiles), ("frames", 1), ("tiles", tiles)]
        seen.clear()
        pipeline.fuse(frames, model, FusionOptions(max_tile_side=40), progress=progress)
        assert seen == [("tiles", tiles)]


def test_decision_networks_take_larger_tiles_only_on_large_images(networks):
    from mfkeras.fusion import litert

    _, lite = networks
    if lite.kind != "decision":
        assert lite.tile_side_for(6000, 4000) == lite.tile_side == litert.TILE_SIDES["patch"]
        return
    assert lite.tile_side_for(520, 520) == lite.tile_side == 320  # small images keep the 320 bound
    assert lite.tile_side_for(1000, 1500) == 320
    assert lite.tile_side_for(2000, 3000) == 353  # a 48th of 6 Mpx
    assert lite.tile_side_for(3000, 4000) == 500  # a 48th of 12 Mpx
    assert lite.tile_side_for(4000, 6000) == lite.tile_side_for(10000, 10000) == 704
    # Joint stacks hold every frame's projection per tile: smaller bounds.
    assert lite.tile_side_for(520, 520, frames=10) == lite.tile_side_for(1500, 2000, frames=3) == 256
    assert lite.tile_side_for(4000, 6000, frames=5) == 500  # a 96th of 24 Mpx
    assert lite.tile_side_for(10000, 10000, frames=3) == 512
    assert lite.tile_side_for(4000, 6000, frames=2) == 704


@pytest.mark.parametrize(
    "tile_side, pair_released, stack_released", [(None, True, True), (200, True, True), (100, False, True), (40, False, False)]
)
def test_interpreters_sized_for_large_tiles_are_released_after_scoring(
    networks, monkeypatch, tile_side, pair_released, stack_released
):
    from mfkeras.fusion import litert

    _, lite = networks
    monkeypatch.setattr(litert, "TILE_SIDES", {"patch": 64})
    if lite.kind == "patch":
        pair_released = stack_released = tile_side != 40
    # Pairs are released above their bound (128 here), joint stacks above theirs (64).
    monkeypatch.setattr(litert, "DECISION_TILES", {"pair": (128, 704, 48), "stack": (64, 512, 96)})
    a, b = _textured((120, 150), 1), _textured((120, 150), 2)
    expected = lite.score_map(a, b, max_tile_side=40)
    np.testing.assert_allclose(lite.score_map(a, b, max_tile_side=tile_side), expected, atol=1e-5)
    assert (litert.PAIR_FILE not in lite._interpreters) == pair_released
    got = lite.stack_scores([a, b, a[::-1].copy()], max_tile_side=tile_side)
    assert (litert.PROJECT_FILE not in lite._interpreters) == stack_released
    assert got.shape[0] == 3
    np.testing.assert_allclose(lite.score_map(a, b, max_tile_side=40), expected, atol=1e-5)  # made again


def test_kept_interpreters_survive_large_tiles(networks, monkeypatch):
    from mfkeras.fusion import litert

    _, lite = networks
    # Bounds below the image, so that an untiled call is a large-tile one.
    monkeypatch.setattr(litert, "TILE_SIDES", {"patch": 64})
    monkeypatch.setattr(litert, "DECISION_TILES", {"pair": (64, 704, 48), "stack": (64, 512, 96)})
    kept = litert.LiteRTNetwork(lite.directory, keep_interpreters=True)
    a, b = _textured((120, 150), 1), _textured((120, 150), 2)
    np.testing.assert_allclose(kept.score_map(a, b), lite.score_map(a, b, max_tile_side=40), atol=1e-5)
    kept.stack_scores([a, b, a[::-1].copy()])
    assert {litert.PAIR_FILE, litert.PROJECT_FILE} <= set(kept._interpreters)


def test_fuse_gives_large_images_the_larger_tiles_and_joint_stacks_their_own(monkeypatch):
    from mfkeras.fusion import litert

    lite = zoo.load_litert_network()
    planned = []
    monkeypatch.setattr(litert.LiteRTNetwork, "score_map", lambda self, a, b, **k: planned.append(
        k["max_tile_side"]) or np.full(np.shape(a), 0.75, np.float32))
    monkeypatch.setattr(litert.LiteRTNetwork, "stack_scores", lambda self, grays, **k: planned.append(
        ("stack", k["max_tile_side"])) or np.full((len(grays), *np.shape(grays[0])), 1 / len(grays), np.float32))
    # Shares of 1, so that a small image counts as large.
    monkeypatch.setattr(litert, "DECISION_TILES", {"pair": (320, 704, 1), "stack": (256, 512, 1)})
    frame = (_textured((600, 700, 3), 3) * 255).astype(np.uint8)
    pipeline.fuse([frame, frame], lite, FusionOptions(halo_removal=False))
    pipeline.fuse([frame, frame], lite, FusionOptions(halo_removal=False, max_tile_side=300))
    pipeline.fuse([frame, frame], lite, FusionOptions(halo_removal=False, memory_budget_mb=8))
    pipeline.fuse([frame] * 3, lite, FusionOptions(halo_removal=False))
    pipeline.fuse([frame] * 3, lite, FusionOptions(halo_removal=False, stack_method="sequential"))
    assert planned[0] == 648 > lite.tile_side  # the whole 600x700 image's square root
    assert planned[1] == 300 and planned[2] < 256
    assert planned[3] == ("stack", 512)  # a joint stack: the stack's large bound
    assert planned[4:] == [648, 648]  # a sequential stack's steps are pairs
