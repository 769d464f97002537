"""Attribution regions: membranes grown by their partial-volume margin, checked on hand-drawn columns."""

import numpy as np
import pytest

from layer.regions.membranes import membrane_regions


def column(values: list[int]) -> np.ndarray:
    """A [D, 1, 2] label map: the same column twice."""
    return np.repeat(np.asarray(values, dtype=np.uint8)[:, None, None], 2, axis=2)


DRAWN = [0, 1, 1, 2, 2, 2, 3, 4, 4, 4, 5, 6, 6, 6, 0]


def test_margin_one_grows_each_membrane_one_voxel_each_side() -> None:
    out = membrane_regions(column(DRAWN), 1)
    # SFM (3) takes one voxel of superficial fat and one of deep fat; the DFM (5) one of deep fat and one of
    # muscle: deep fat goes from 3 voxels to 1.
    assert out[:, 0, 0].tolist() == [0, 1, 1, 2, 2, 3, 3, 3, 4, 5, 5, 5, 6, 6, 0]
    assert out.dtype == np.uint8


def test_margin_two_stops_where_a_neighbour_would_vanish() -> None:
    out = membrane_regions(column(DRAWN), 2)
    # Second step: the deep fat has one voxel left, so neither membrane takes it; the outer sides still grow.
    assert out[:, 0, 0].tolist() == [0, 1, 1, 2, 3, 3, 3, 3, 4, 5, 5, 5, 5, 6, 0]
    assert [int((out == k).sum()) // 2 for k in range(1, 7)] == [2, 1, 4, 1, 4, 1]


def test_zero_margin_and_batches() -> None:
    one = column(DRAWN)
    assert membrane_regions(one, 0) is one
    other = column([0, 1, 2, 2, 3, 4, 4, 5, 6, 6, 6, 6, 6, 0, 0])
    batch = np.stack([one, other])
    out = membrane_regions(batch, 1)
    assert out.shape == batch.shape
    assert np.array_equal(out[1], membrane_regions(other, 1))
    # A 2-voxel deep fat gives one voxel to the SFM (grown first); the DFM then finds it at one voxel and
    # grows into the muscle only.
    assert out[1, :, 0, 0].tolist() == [0, 1, 2, 3, 3, 3, 4, 5, 5, 6, 6, 6, 6, 0, 0]


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        membrane_regions(column(DRAWN), -1)
    with pytest.raises(ValueError, match="not layered"):
        membrane_regions(column([0, 1, 3, 2, 4, 5, 6, 0]), 1)
