"""Spectral indices against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from glaciermap.data.indices import ndsi, ndvi, ndwi, normalized_difference


def test_hand_computed_values():
    green = np.array([0.60, 0.30, 0.10, 0.20], dtype=np.float32)
    swir = np.array([0.10, 0.30, 0.30, 0.00], dtype=np.float32)
    # (0.6-0.1)/0.7 = 0.714286 ; 0 ; (0.1-0.3)/0.4 = -0.5 ; 0.2/0.2 = 1
    np.testing.assert_allclose(ndsi(green, swir), [5 / 7, 0.0, -0.5, 1.0], atol=1e-6)
    nir = np.array([0.20, 0.40, 0.05, 0.45])
    np.testing.assert_allclose(ndwi(green, nir), [0.5, -1 / 7, 1 / 3, -0.25 / 0.65], atol=1e-6)
    red = np.array([0.05, 0.10, 0.05, 0.15])
    # NIR first: (0.2-0.05)/0.25 = 0.6 ; 0.3/0.5 = 0.6 ; 0 ; 0.3/0.6 = 0.5
    np.testing.assert_allclose(ndvi(nir, red), [0.6, 0.6, 0.0, 0.5], atol=1e-6)


def test_argument_order_matters():
    assert ndsi(0.6, 0.1) == pytest.approx(5 / 7)
    assert ndsi(0.1, 0.6) == pytest.approx(-5 / 7)
    assert ndvi(0.5, 0.1) == pytest.approx(2 / 3)  # vegetation is positive


def test_zero_denominator_and_nan_give_nan_without_warnings():
    a = np.array([0.0, np.nan, 0.3, 0.2])
    b = np.array([0.0, 0.2, np.nan, -0.2])
    with np.errstate(all="raise"):
        out = normalized_difference(a, b)
    assert np.isnan(out).all()


def test_clipped_to_unit_interval():
    # negative reflectance (over-corrected shadow) would give |index| > 1
    out = ndsi(np.array([-0.02, 0.05]), np.array([0.05, -0.02]))
    np.testing.assert_array_equal(out, [-1.0, 1.0])


def test_integer_inputs_do_not_wrap():
    g = np.array([3000, 0], dtype=np.uint16)
    s = np.array([5000, 0], dtype=np.uint16)
    out = ndsi(g, s)
    assert out[0] == pytest.approx(-0.25) and np.isnan(out[1])


def test_xarray_keeps_coords_and_float32():
    coords = {"y": [1.0, 2.0], "x": [10.0, 20.0]}
    g = xr.DataArray(np.array([[0.5, 0.2], [0.0, 0.4]], np.float32), dims=("y", "x"), coords=coords)
    s = xr.DataArray(np.array([[0.1, 0.2], [0.0, 0.1]], np.float32), dims=("y", "x"), coords=coords)
    out = ndsi(g, s)
    assert isinstance(out, xr.DataArray) and out.dtype == np.float32
    assert list(out["x"].values) == [10.0, 20.0]
    np.testing.assert_allclose(out.values, [[4 / 6, 0.0], [np.nan, 0.6]], atol=1e-6)
