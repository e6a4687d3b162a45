import numpy as np
import pytest

from mfkeras import fusion
from mfkeras.fusion import inference
from mfkeras.network.convert import to_fully_convolutional
from mfkeras.network.released import load_liu2017_mat, read_liu2017_mat

from conftest import shared_path


@pytest.fixture(scope="module")
def fixtures():
    return np.load(shared_path("ref", "liu2017", "patch_check.npz"))


@pytest.fixture(scope="module")
def clock_reference():
    return np.load(shared_path("ref", "liu2017", "clock.npz"))


def test_patch_scores_match_isolated_patches(released_model, fixtures):
    got = released_model.predict(
        [fixtures["patch_A"][..., None], fixtures["patch_B"][..., None]], verbose=0
    )[:, 1]
    np.testing.assert_allclose(got, fixtures["patch_score"], atol=1e-5)
    random = released_model.predict(
        [fixtures["random_A"][None, ..., None], fixtures["random_B"][None, ..., None]], verbose=0
    )[0, 1]
    assert abs(random - fixtures["random_score"]) <= 1e-5


@pytest.mark.parametrize("crop", ["odd", "even"])
def test_whole_image_scores_match_reference(released_model, fixtures, crop):
    network = to_fully_convolutional(released_model)
    scores = inference.score_map(network, fixtures[f"{crop}_A"], fixtures[f"{crop}_B"])
    assert scores.shape == fixtures[f"{crop}_score"].shape
    np.testing.assert_allclose(scores, fixtures[f"{crop}_score"], atol=1e-4)


def test_output_bias_is_left_out_unless_asked(tmp_path, fixtures):
    path = shared_path("ref", "liu2017", "cnnmodel.mat")
    with_bias = load_liu2017_mat(path, use_output_bias=True)
    without = load_liu2017_mat(path)
    assert not np.any(without.get_layer("logits").bias.numpy())
    bias = read_liu2017_mat(path)["biases_output"][:, 0]
    np.testing.assert_array_equal(with_bias.get_layer("logits").bias.numpy(), bias)


def test_clock_parity_with_the_authors_code(released_model, clock_reference):
    import cv2

    a = cv2.imread(str(shared_path("data", "grayscale", "clock_A.png")), cv2.IMREAD_UNCHANGED)
    b = cv2.imread(str(shared_path("data", "grayscale", "clock_B.png")), cv2.IMREAD_UNCHANGED)
    result = fusion.fuse([a, b], released_model, fusion.FusionOptions(refine="guided"))
    ref = clock_reference
    assert np.abs(result.score_map - ref["outMap"]).max() <= 2e-5
    assert np.abs(result.focus_map - ref["focusMap"]).max() <= 1e-5
    assert (result.decision == (ref["decision_srr"] > 0.5)).mean() >= 0.999
    assert np.abs(result.fused.astype(float) - ref["fused"]).mean() <= 0.5


def test_not_a_mat_file_is_a_clear_error(tmp_path):
    bogus = tmp_path / "cnnmodel.mat"
    bogus.write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="cnnmodel.mat"):
        read_liu2017_mat(bogus)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_liu2017_mat(tmp_path / "missing.mat")


def test_wrong_layout_is_a_clear_error(tmp_path):
    import scipy.io

    path = tmp_path / "other.mat"
    scipy.io.savemat(path, {"weights_b1_1": np.zeros((9, 32))})
    with pytest.raises(ValueError, match="weights_b1_2|shape"):
        read_liu2017_mat(path)
