import threading

import numpy as np
import pytest

from mfkeras.fusion import blending, halo, row_blocks
from test_halo import _scene


@pytest.mark.parametrize(
    "height, rows, workers", [(0, 5, 2), (1, 5, 2), (10, 3, 1), (10, 100, 3), (520, 256, 2), (7, 1, 8)]
)
def test_split_rows_covers_every_row_once_within_both_bounds(height, rows, workers):
    blocks = row_blocks.split_rows(height, rows, workers)
    covered = [row for block in blocks for row in range(block.start, block.stop)]
    assert covered == list(range(height))
    assert all(0 < b.stop - b.start <= min(rows, -(-height // workers)) for b in blocks)
    if height >= workers:
        assert len(blocks) >= workers  # every worker gets a block


@pytest.mark.parametrize("args", [(-1, 5, 1), (10, 0, 1), (10, 5, 0)])
def test_split_rows_names_bad_arguments(args):
    with pytest.raises(ValueError, match="Received"):
        row_blocks.split_rows(*args)


def test_for_each_block_runs_every_block_once_on_threads_and_raises_their_errors():
    seen, names = [], set()

    def record(block):
        seen.append(block.start)
        names.add(threading.current_thread().name)

    blocks = row_blocks.split_rows(100, 10, 4)
    row_blocks.for_each_block(record, blocks, workers=4)
    assert sorted(seen) == list(range(0, 100, 10))
    assert threading.current_thread().name not in names  # run by the pool's threads

    def fail(block):
        if block.start == 30:
            raise ArithmeticError("block 30")

    with pytest.raises(ArithmeticError, match="block 30"):
        row_blocks.for_each_block(fail, blocks, workers=4)


@pytest.mark.parametrize("workers", [2, 3, 7])
def test_blends_do_not_depend_on_the_number_of_threads(monkeypatch, workers):
    truth, frames, weights, grays = _scene(count=3, shape=(301, 90, 3))
    monkeypatch.setattr(row_blocks, "worker_count", lambda pixels: 1)
    plain, cleaned = blending.blend_stack(frames, weights[1:]), halo.blend_without_halos(frames, weights[1:], grays)
    monkeypatch.setattr(blending, "_BLEND_PIXELS", 16 * 90)
    monkeypatch.setattr(halo, "_BLOCK_PIXELS", 16 * 90)
    blocks = []
    split = row_blocks.split_rows
    monkeypatch.setattr(row_blocks, "split_rows", lambda *a: blocks.append(split(*a)) or blocks[-1])
    monkeypatch.setattr(row_blocks, "worker_count", lambda pixels: workers)
    np.testing.assert_array_equal(blending.blend_stack(frames, weights[1:]), plain)
    np.testing.assert_array_equal(halo.blend_without_halos(frames, weights[1:], grays), cleaned)
    assert not np.array_equal(cleaned, plain)  # halo removal changed pixels, in several blocks
    assert all(len(b) >= workers for b in blocks)


def test_only_large_images_are_split_over_threads(monkeypatch):
    monkeypatch.setattr(row_blocks.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert row_blocks.worker_count(520 * 520) == 1
    assert row_blocks.worker_count(row_blocks.PARALLEL_PIXELS - 1) == 1
    assert row_blocks.worker_count(6000 * 4000) == 3


def test_blocks_not_yet_started_are_dropped_after_an_error():
    import time

    ran = []

    def work(block):
        if block.start == 0:
            raise ArithmeticError("block 0")
        time.sleep(0.02)
        ran.append(block.start)

    with pytest.raises(ArithmeticError):
        row_blocks.for_each_block(work, row_blocks.split_rows(50, 1, 2), workers=2)
    time.sleep(0.05)
    assert len(ran) < 49  # not every other block


def test_empty_images_blend_to_empty_images():
    frames = [np.zeros((3, 0, 3), np.uint8), np.ones((3, 0, 3), np.uint8)]
    assert blending.blend_stack(frames, np.zeros((1, 3, 0))).shape == (3, 0, 3)
