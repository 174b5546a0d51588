"""benchmarks/training_store.py: the simulated cube cache and the epoch orders it compares."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import training_store as ts  # noqa: E402


def test_block_order_loads_each_cube_once_and_random_order_more():
    rng = np.random.default_rng(0)
    centres = rng.integers(1, 40, 300)
    items = ts.epoch_items(centres, 1200, seed=0)
    assert len(items) >= 1200 - 300 and set(np.unique(items)) == set(range(300))  # every glacier keeps its centroid
    mpx = np.full(300, 0.25)
    cache = dict(bytes_per_mpx=64e6, max_items=32, max_bytes=1e12)
    block = ts.order(items, "block", window=32, seed=1)
    assert sorted(block) == sorted(items)  # a permutation of the same patches
    assert len(ts.count_loads(block, mpx, **cache)) == 300
    rand = ts.order(items, "random", window=32, seed=1)
    assert sorted(rand) == sorted(items)
    assert len(ts.count_loads(rand, mpx, **cache)) > 2 * 300
    # a cache that holds every cube loads each once whatever the order
    assert len(ts.count_loads(rand, mpx, bytes_per_mpx=64e6, max_items=1000, max_bytes=1e12)) == 300
    # the byte bound evicts too: room for 2 cubes only
    assert len(ts.count_loads(block, mpx, bytes_per_mpx=64e6, max_items=1000, max_bytes=2 * 0.25 * 64e6)) > 300


def test_synthetic_training_windows_lie_inside_their_cubes_as_the_workflow_cuts_them():
    """The benchmark takes patch centres where training does (patches.patch_centres: the glacier's centroid and the
    32 px grid in its 50 m buffer) in cubes with the workflow's margin around the glacier: every 256 px window lies
    inside its cube, none is padded; a cube too small for the margin is refused."""
    for side in (ts.cube_side(0.01), 316, 500, 872):
        rad = ts.glacier_radius_px(side)
        assert rad >= 3 and side / 2 - rad == 133  # the margin: 128 px + 50 m at 10 m
        cen = ts.training_centres(side)
        assert len(cen) >= 1 and (cen[1:] % 32 == 0).all()
        assert len(cen) > 40 or side < 500  # the grid, not the centroid alone, in the bigger cubes
        top, left = cen[:, 0] - 128, cen[:, 1] - 128
        assert (top >= 0).all() and (left >= 0).all() and (top + 256 <= side).all() and (left + 256 <= side).all()
    with pytest.raises(ValueError, match="no room for a glacier"):
        ts.glacier_radius_px(270)
