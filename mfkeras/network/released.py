"""Loads the weights released by Liu et al. (2017) into a Keras patch model.

The authors' ``cnnmodel.mat`` holds the ``liu2017_single_fc`` layout. MATLAB
reshapes column-major and the original code correlates with the reshaped
kernels, so the kernels go into Keras unflipped after a Fortran-order reshape.
The released output bias is never applied by the authors' inference code; it is
left out here too unless asked for.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from mfkeras.network.config import get_preset
from mfkeras.network.model import BRANCH_NAME, LOGITS_NAME, build_patch_model

_EXPECTED_SHAPES = {
    "weights_b1_1": (9, 64),
    "weights_b1_2": (64, 9, 128),
    "weights_b1_3": (128, 9, 256),
    "weights_output": (512, 64, 2),
    "biases_b1_1": (64, 1),
    "biases_b1_2": (128, 1),
    "biases_b1_3": (256, 1),
    "biases_output": (2, 1),
}


def read_liu2017_mat(path: str | os.PathLike) -> dict:
    """Reads and validates the arrays of a released ``cnnmodel.mat``.

    Args:
        path: the ``.mat`` file.

    Returns:
        A dict of float32 arrays keyed as in the file.
    """
    import scipy.io

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Released-weights file not found: {path!r}")
    try:
        contents = scipy.io.loadmat(path)
    except Exception as error:  # scipy raises several types for non-MAT input.
        raise ValueError(f"Cannot read {path!r} as a MATLAB .mat file: {error}") from error
    arrays = {}
    for key, shape in _EXPECTED_SHAPES.items():
        if key not in contents:
            raise ValueError(
                f"{path!r} is not a liu2017 weights file: missing {key!r}. "
                f"Received keys: {sorted(k for k in contents if not k.startswith('__'))}"
            )
        value = np.asarray(contents[key], dtype=np.float32)
        if value.shape != shape:
            raise ValueError(
                f"{path!r}: {key} has shape {value.shape}, expected {shape}."
            )
        arrays[key] = value
    return arrays


def liu2017_keras_weights(arrays: dict, use_output_bias: bool = False) -> dict:
    """Converts the released arrays to Keras kernel/bias values.

    Args:
        arrays: the output of :func:`read_liu2017_mat`.
        use_output_bias: add the released output bias (the authors' code does not).

    Returns:
        A dict mapping layer name to ``[kernel, bias]``.
    """
    conv1 = arrays["weights_b1_1"].reshape(3, 3, 64, order="F")[:, :, None, :]
    conv2 = arrays["weights_b1_2"].reshape(64, 3, 3, 128, order="F").transpose(1, 2, 0, 3)
    conv3 = arrays["weights_b1_3"].reshape(128, 3, 3, 256, order="F").transpose(1, 2, 0, 3)
    output = arrays["weights_output"].reshape(512, 8, 8, 2, order="F").transpose(1, 2, 0, 3)
    output_bias = arrays["biases_output"][:, 0] if use_output_bias else np.zeros(2, np.float32)
    return {
        "conv1": [conv1, arrays["biases_b1_1"][:, 0]],
        "conv2": [conv2, arrays["biases_b1_2"][:, 0]],
        "conv3": [conv3, arrays["biases_b1_3"][:, 0]],
        # Keras' Flatten is row-major over (row, col, channel).
        LOGITS_NAME: [output.reshape(8 * 8 * 512, 2), output_bias],
    }


def load_liu2017_mat(path: str | os.PathLike, use_output_bias: bool = False) -> keras.Model:
    """Builds the ``liu2017_single_fc`` patch model holding the released weights.

    Args:
        path: the authors' ``cnnmodel.mat``.
        use_output_bias: add the released output bias (the authors' code does not).

    Returns:
        A patch model named ``liu2017_released``.
    """
    weights = liu2017_keras_weights(read_liu2017_mat(path), use_output_bias)
    model = build_patch_model(get_preset("liu2017_single_fc"))
    branch = model.get_layer(BRANCH_NAME)
    for name in ("conv1", "conv2", "conv3"):
        branch.get_layer(name).set_weights(weights[name])
    model.get_layer(LOGITS_NAME).set_weights(weights[LOGITS_NAME])
    # Keras model names are read-only after construction; rebuild with the new name.
    return keras.Model(model.inputs, model.outputs, name="liu2017_released")
