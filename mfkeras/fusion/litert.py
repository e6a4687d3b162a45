"""The LiteRT backend: score maps and stack scores from ``.tflite`` files, without TensorFlow.

A LiteRT bundle is a folder (``saved_models/<name>/litert/`` for shipped models, written by
``mfkeras-export --litert_dir``) holding three models and a manifest:

* ``pair.tflite``: ``(image_a, image_b)`` [1, H, W, 1] float32 in [0, 1] -> ``score_map``
  [1, H', W', 1], any size (the signature runner resizes the inputs);
* ``project.tflite``: frames [B, H, W, 1] -> projections [B, H', W', 2U], the branch and the
  first head layer without its bias, for the O(N) stack rule;
* ``tail.tflite``: pre-activations [P, H', W', U] -> scores [P, H', W', 1];
* ``litert.json``: the architecture (its geometry: stride, window, halo), U and the bias;
  ``kind`` says whether it is a patch classifier (``patch``) or a per-pixel decision
  network (``decision``, one score per pixel).

Only ``ai_edge_litert``, NumPy and this package's TensorFlow-free modules are imported.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from mfkeras.fusion import scoring
from mfkeras.io.stderr import native_stderr_silenced
from mfkeras.network.config import ModelConfig
from mfkeras.network.decision_config import DecisionConfig, DecisionGeometry
from mfkeras.network.geometry import IMAGE_A, IMAGE_B, ScoreGeometry

MANIFEST_FILE = "litert.json"
PAIR_FILE = "pair.tflite"
PROJECT_FILE = "project.tflite"
TAIL_FILE = "tail.tflite"
SIGNATURE_KEY = "serving_default"
SCORE_MAP = "score_map"
FRAMES = "frames"
PROJECTION = "projection"
PRE_ACTIVATION = "pre_activation"
SCORES = "scores"
# Largest tile the pipeline gives LiteRT unless told otherwise, by kind of network. Patch
# classifiers: in single whole-process runs on a shared 2-core x86 CPU, a 520x520 pair took
# 257 MB peak in 320-pixel tiles against 587 MB untiled, no slower (0.82 s against 2.76 s),
# with identical fused images. Decision networks: see DECISION_TILES.
TILE_SIDES = {"patch": 320}
# Decision networks: (bound on images of a few megapixels, bound on large images, share) for
# pairs (and each step of a sequential stack) and for joint stacks. On a large image a tile
# holds at most 1/share of its pixels, up to the large bound. XNNPACK holds about 1.2 KB per
# tile pixel for a pair, and tiles past ~600 pixels run slower per pixel (their layers leave the
# caches); fewer, larger tiles overlap less (each carries the 32-pixel reach on every inner side).
# Whole-process runs on a 2-core x86, identical fused images at every size: a 520x520 pair in
# the two 292-pixel tiles a side of a 320-pixel bound took 0.51-0.52 s and 242 MB (172 MB when
# the interpreter is released before the steps after scoring, which costs the next call its
# planning), in the three 216-pixel ones of 256 0.50-0.57 s and 199 MB, untiled 0.60 s and
# 389 MB; a 6000x4000 pair scored in 9.26-9.39 s in 704-pixel tiles, 9.45-9.65 s in 512 and
# 10.1 s in 1000, at a 1.13 GB peak (1.39 GB with 1000). A joint stack also holds every frame's
# projection for the tile: a 10-frame 520x520 stack took 1.65-1.68 s and 298 MB with a 256-pixel
# bound against 1.70-1.82 s and 447 MB with 320. The tiles all have one shape, so the
# interpreter plans once (the first call at a new shape costs several calls' time); those above
# the first bound are dropped after the call (see release()).
DECISION_TILES = {"pair": (320, 704, 48), "stack": (256, 512, 96)}


def make_interpreter(model, num_threads: int | None = None):
    """A LiteRT interpreter for ``.tflite`` bytes or a file path, on ``num_threads`` threads.

    Tensors are allocated by the signature runner at each input size (allocating the
    default 1x1 shape first leaves XNNPACK unable to reshape some networks).
    """
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, (bytes, bytearray)):
        return Interpreter(model_content=bytes(model), num_threads=num_threads)
    return Interpreter(model_path=os.fspath(model), num_threads=num_threads)


def quiet_runner(interpreter, quiet: bool = True):
    """The interpreter's signature runner; its first call, which creates the XNNPACK
    delegate (and logs so from C++), runs with the native stderr silenced if ``quiet``."""
    run = interpreter.get_signature_runner(SIGNATURE_KEY)
    state = {"first": True}

    def call(**inputs):
        if state["first"]:
            state["first"] = False
            with native_stderr_silenced(quiet):
                return run(**inputs)
        return run(**inputs)

    return call


class LiteRTNetwork:
    """A score network run by LiteRT interpreters, with the geometry of its architecture.

    One interpreter per model file, created on first use and kept for the life of the
    object (one per process when the CLI loads the model once), except after a call in tiles
    above the small-image bound of :meth:`tile_side_for`: those interpreters are released (see
    :meth:`release`) unless ``keep_interpreters``.

    Args:
        directory: the bundle folder (see the module docstring).
        num_threads: CPU threads per interpreter (default: every core).
        quiet: keep the runtime's native log lines off stderr.
        keep_interpreters: never release interpreters after a call (a process scoring many large
            images of one size keeps their planned buffers, at the cost of holding them).
    """

    def __init__(self, directory, num_threads: int | None = None, quiet: bool = True,
                 keep_interpreters: bool = False):
        self.directory = Path(directory)
        manifest_path = self.directory / MANIFEST_FILE
        if not manifest_path.is_file():
            raise FileNotFoundError(f"No LiteRT bundle at {self.directory} (missing {MANIFEST_FILE}).")
        manifest = json.loads(manifest_path.read_text())
        self.name = manifest["name"]
        self.kind = manifest.get("kind", "patch")
        if self.kind == "decision":
            self.config = DecisionConfig.from_dict(manifest["model_config"])
            self.geometry = DecisionGeometry(self.config)
        else:
            self.config = ModelConfig.from_dict(manifest["model_config"])
            self.geometry = ScoreGeometry(self.config, dense=False)
        self.units = int(manifest["units"])
        self.bias = np.asarray(manifest["bias"], np.float32)
        self.quantization = manifest.get("quantization", "float32")
        self.num_threads = num_threads or os.cpu_count()
        self.quiet = quiet
        self.keep_interpreters = keep_interpreters
        self._interpreters = {}

    # The geometry that tiling and the decision steps read.
    dense = False

    @property
    def tile_side(self) -> int:
        """Largest tile the pipeline gives this network for a pair of up to a few megapixels."""
        return self.tile_side_for(0, 0)

    def tile_side_for(self, height: int, width: int, frames: int = 2) -> int:
        """Largest tile the pipeline gives this network for ``frames`` images of the given size
        (more than 2: a joint stack): ``TILE_SIDES[kind]``, and for decision networks the
        bounds of ``DECISION_TILES``, larger on large images."""
        if self.kind != "decision":
            return TILE_SIDES[self.kind]
        small, large, share = DECISION_TILES["pair" if frames <= 2 else "stack"]
        return int(min(large, max(small, math.isqrt(height * width // share))))

    def release(self) -> None:
        """Drops the interpreters and their buffers; the next call makes them again."""
        self._interpreters.clear()

    @property
    def stride(self) -> int:
        """Pixels between neighbouring scores."""
        return self.geometry.stride

    @property
    def patch_size(self) -> int:
        """Side of the window each score describes."""
        return self.geometry.patch_size

    @property
    def receptive_field(self) -> int:
        """Halo of 'same'-padded configs (0 for 'valid')."""
        return self.geometry.receptive_field

    def output_shape_for(self, height: int, width: int) -> tuple:
        """Returns the score-map shape for an image of the given size."""
        return self.geometry.output_shape_for(height, width)

    def runner(self, file_name: str):
        """The signature runner of one model file of the bundle; its interpreter is made once."""
        if file_name not in self._interpreters:
            interpreter = make_interpreter(self.directory / file_name, self.num_threads)
            self._interpreters[file_name] = quiet_runner(interpreter, self.quiet)
        return self._interpreters[file_name]

    def score_map(
        self, gray_a, gray_b, symmetric: bool = False, max_tile_side: int | None = None, progress=None
    ):
        """The score map of two gray images, as :func:`mfkeras.fusion.inference.score_map` gives it."""
        progress = progress or scoring.no_progress
        run = self.runner(PAIR_FILE)
        height, width = np.shape(gray_a)
        scores = np.empty(self.output_shape_for(height, width), np.float32)
        try:
            for tile in progress(scoring.plan_tiles(self, height, width, max_tile_side), "tiles"):
                a = np.asarray(gray_a[tile.image_rows, tile.image_cols], np.float32)[None, :, :, None]
                b = np.asarray(gray_b[tile.image_rows, tile.image_cols], np.float32)[None, :, :, None]
                local = run(**{IMAGE_A: a, IMAGE_B: b})[SCORE_MAP][0, :, :, 0]
                if symmetric:
                    swapped = run(**{IMAGE_A: b, IMAGE_B: a})[SCORE_MAP][0, :, :, 0]
                    local = 0.5 * (local + 1.0 - swapped)
                scores[tile.score_rows, tile.score_cols] = local[tile.local_rows, tile.local_cols]
        finally:
            self._release_if_large(max_tile_side, height, width)
        return scores

    def _release_if_large(self, max_tile_side, height, width, frames: int = 2) -> None:
        """Releases interpreters sized for tiles above the small-image bound for ``frames``
        images, so that their buffers are not held through the steps after scoring (they would
        add to the process's peak)."""
        if self.keep_interpreters:
            return
        if min(max_tile_side or max(height, width), max(height, width)) > self.tile_side_for(0, 0, frames):
            self.release()

    def stack_scores(
        self, grays: list, max_tile_side: int | None = None, progress=None, stack_scoring: str = "all_pairs"
    ):
        """Scores of every frame of a stack, as :func:`mfkeras.fusion.inference.stack_scores`."""
        project = self.runner(PROJECT_FILE)
        tail = self.runner(TAIL_FILE)
        try:
            return scoring.stack_scores(
                self,
                grays,
                lambda frames: project(**{FRAMES: frames})[PROJECTION],
                lambda pre_activation: tail(**{PRE_ACTIVATION: np.ascontiguousarray(pre_activation)})[SCORES],
                self.units,
                self.bias,
                max_tile_side,
                progress,
                stack_scoring,
            )
        finally:
            self._release_if_large(max_tile_side, *np.shape(grays[0]), frames=len(grays))
