"""Terrain attributes: our numpy code against xdem 0.2.3 and against analytic surfaces."""

from __future__ import annotations

import numpy as np
import pytest
import xdem
from scipy import ndimage

from glaciermap import terrain

RES = 10.0
INNER = (slice(1, -1), slice(1, -1))


@pytest.fixture(scope="module")
def dem():
    """A realistic mountain DEM: regional tilt + 14 Gaussian peaks/hollows + 0.5 m noise, 10 m pixels."""
    rng = np.random.default_rng(42)
    n = 220
    y, x = np.mgrid[0:n, 0:n] * RES
    z = 2500 + 0.25 * x - 0.15 * y
    for _ in range(14):
        cx, cy = rng.uniform(0, n * RES, 2)
        z += rng.uniform(-300, 450) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * rng.uniform(150, 700) ** 2))
    return z + rng.normal(0, 0.5, z.shape)


def _xdem(dem, attr, **kw):
    return xdem.terrain.get_terrain_attribute(dem, attr, resolution=RES, **kw)


def _angle_diff(a, b):
    return np.abs((a - b + 180) % 360 - 180)


def test_slope_matches_xdem_horn(dem):
    ref = _xdem(dem, "slope", surface_fit="Horn")
    ours = terrain.slope(dem, RES)
    assert 10 < np.nanmedian(ref) < 60  # a real test surface, not a flat one
    np.testing.assert_allclose(ours[INNER], ref[INNER], rtol=0, atol=1e-9)


def test_aspect_matches_xdem_horn(dem):
    ref = _xdem(dem, "aspect", surface_fit="Horn")
    ours = terrain.aspect(dem, RES)
    assert _angle_diff(ours[INNER], ref[INNER]).max() < 1e-9
    assert ref[INNER].min() < 30 and ref[INNER].max() > 330  # all directions occur


def test_tri_matches_xdem_riley(dem):
    ref = _xdem(dem, "terrain_ruggedness_index")  # default tri_method="Riley", window 3
    np.testing.assert_allclose(terrain.terrain_ruggedness_index(dem)[INNER], ref[INNER], rtol=0, atol=1e-9)


def test_planform_curvature_matches_xdem_zevenbergen_thorne(dem):
    ref = _xdem(dem, "planform_curvature", surface_fit="ZevenbergThorne")
    ours = terrain.planform_curvature(dem, RES)
    assert np.abs(ref[INNER]).max() > 1  # non-trivial values
    np.testing.assert_allclose(ours[INNER], ref[INNER], rtol=1e-9, atol=1e-9)
    # geometric and directional planform are the same in xdem
    ref_d = _xdem(dem, "planform_curvature", surface_fit="ZevenbergThorne", curv_method="directional")
    np.testing.assert_allclose(ours[INNER], ref_d[INNER], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method", ["geometric", "directional"])
def test_profile_curvature_matches_xdem_zevenbergen_thorne(dem, method):
    ref = _xdem(dem, "profile_curvature", surface_fit="ZevenbergThorne", curv_method=method)
    ours = terrain.profile_curvature(dem, RES, method=method)
    assert np.abs(ref[INNER]).max() > 0.1
    np.testing.assert_allclose(ours[INNER], ref[INNER], rtol=1e-9, atol=1e-9)


def test_float32_dem_matches_xdem_to_float32_precision(dem):
    d32 = dem.astype(np.float32)
    ref = _xdem(d32, "slope", surface_fit="Horn")
    np.testing.assert_allclose(terrain.slope(d32, RES)[INNER], ref[INNER], atol=1e-4)
    ref = _xdem(d32, "planform_curvature", surface_fit="ZevenbergThorne")
    np.testing.assert_allclose(terrain.planform_curvature(d32, RES)[INNER], ref[INNER], rtol=1e-4, atol=1e-3)


def test_edge_nan_mode_and_nan_holes_reproduce_xdem_everywhere(dem):
    d = dem.copy()
    d[50:53, 80:84] = np.nan
    d[0, 10] = np.nan
    cases = [
        (terrain.slope(d, RES, edge="nan"), _xdem(d, "slope", surface_fit="Horn")),
        (terrain.terrain_ruggedness_index(d, edge="nan"), _xdem(d, "terrain_ruggedness_index")),
        (terrain.planform_curvature(d, RES, edge="nan"), _xdem(d, "planform_curvature", surface_fit="ZevenbergThorne")),
        (terrain.profile_curvature(d, RES, edge="nan"), _xdem(d, "profile_curvature", surface_fit="ZevenbergThorne")),
    ]
    for ours, ref in cases:
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9, equal_nan=True)
    # default edge mode: finite borders, NaN only around the holes
    s = terrain.slope(d, RES)
    assert np.isnan(s).sum() == 5 * 6 + 2 * 3 and np.isfinite(s[-1]).all()


@pytest.mark.parametrize("edge", ["extrapolate", "replicate"])
def test_tilted_plane(edge):
    a, b = 0.3, -0.4  # dz/dx (east), dz/dy (north)
    n = 40
    yy, xx = np.mgrid[0:n, 0:n]
    z = 1000 + a * xx * RES + b * (-yy) * RES  # rows go south
    inner = INNER if edge == "replicate" else (slice(None), slice(None))
    assert np.allclose(terrain.slope(z, RES, edge)[inner], np.degrees(np.arctan(np.hypot(a, b))), atol=1e-9)
    expected_aspect = np.degrees(np.arctan2(-a, -b)) % 360  # downhill direction: west-north-west here
    assert expected_aspect == pytest.approx(360 - np.degrees(np.arctan2(0.3, 0.4)))
    assert np.allclose(terrain.aspect(z, RES, edge)[inner], expected_aspect, atol=1e-9)
    assert np.abs(terrain.planform_curvature(z, RES, edge)[inner]).max() < 1e-9
    assert np.abs(terrain.profile_curvature(z, RES, edge=edge)[inner]).max() < 1e-9
    tri = RES * np.sqrt(6 * (a * a + b * b))  # sum over the 8 neighbours of (a dx + b dy)^2 res^2
    assert np.allclose(terrain.terrain_ruggedness_index(z, edge)[inner], tri, atol=1e-9)
    if edge == "replicate":  # the border row sees half the gradient across it
        assert terrain.slope(z, RES, edge)[0, 5] < np.degrees(np.arctan(np.hypot(a, b))) - 1


def test_aspect_cardinal_directions_and_flat():
    ramp = np.tile(np.arange(5.0), (5, 1)) * RES  # rises to the east -> faces west
    assert terrain.aspect(ramp, RES)[2, 2] == pytest.approx(270)
    assert terrain.aspect(-ramp, RES)[2, 2] == pytest.approx(90)
    north_up = ramp.T[::-1]  # rises to the north -> faces south
    assert terrain.aspect(north_up, RES)[2, 2] == pytest.approx(180)
    assert terrain.aspect(north_up[::-1], RES)[2, 2] % 360 == pytest.approx(0)
    assert terrain.aspect(np.full((5, 5), 7.0), RES)[2, 2] == 180  # flat: xdem/GDAL convention
    assert terrain.slope(np.full((5, 5), 7.0), RES).max() == 0
    assert terrain.planform_curvature(np.full((5, 5), 7.0), RES).max() == 0


def test_paraboloid_dome_curvatures_are_exact():
    c = 0.002  # z = -c rho^2 / 2: contour radius rho, planform = 100 / rho, profile = 100 c / (1 + c^2 rho^2)^1.5
    n = 61
    yy, xx = (np.mgrid[0:n, 0:n] - n // 2) * RES
    rho = np.hypot(xx, yy)
    z = 3000 - c * rho**2 / 2
    ok = (rho > 0) & (rho < 250)
    plan = terrain.planform_curvature(z, RES)
    prof = terrain.profile_curvature(z, RES)
    np.testing.assert_allclose(plan[ok], 100 / rho[ok], rtol=1e-6)
    np.testing.assert_allclose(prof[ok], 100 * c / (1 + c**2 * rho[ok] ** 2) ** 1.5, rtol=1e-6)
    assert plan[n // 2, n // 2] == 0  # summit: no gradient, xdem sets 0
    np.testing.assert_allclose(terrain.slope(z, RES)[ok], np.degrees(np.arctan(c * rho[ok])), rtol=1e-9)


def test_smooth_dem_is_the_3x3_gaussian_and_nan_aware(dem):
    k = terrain.gaussian_kernel3(1.0)
    assert k.sum() == pytest.approx(1) and k[1, 1] == pytest.approx(1 / (1 + 4 * np.exp(-0.5) + 4 * np.exp(-1)))
    ref = ndimage.gaussian_filter(dem, sigma=1.0, truncate=1.0)  # radius 1 -> the same 3x3 kernel
    sm = terrain.smooth_dem(dem, 1.0)
    np.testing.assert_allclose(sm[INNER], ref[INNER], rtol=0, atol=1e-9)
    assert np.abs(sm - dem).max() > 0.5
    const = np.full((6, 7), 12.5)
    np.testing.assert_allclose(terrain.smooth_dem(const), 12.5)  # borders too: weights renormalised
    d = dem.copy()
    d[10, 10] = np.nan
    s = terrain.smooth_dem(d)
    assert np.isnan(s[10, 10]) and np.isfinite(np.delete(s.ravel(), 10 * d.shape[1] + 10)).all()
    win = dem[9:12, 10:13]  # neighbour (10, 11) sees the NaN at its west: that weight is left out
    kk = k.copy()
    kk[1, 0] = 0
    assert s[10, 11] == pytest.approx((win * kk).sum() / kk.sum())
    assert terrain.smooth_dem(dem, 0) is not dem and np.array_equal(terrain.smooth_dem(dem, 0), dem)


def test_terrain_attributes_smooths_clips_and_masks_flat_planform(dem):
    d = dem.copy()
    d[150:200, 20:90] = 2000.0 + 0.001 * np.arange(70) * RES  # nearly flat area (0.06 deg)
    raw = terrain.terrain_attributes(d, RES, curvature_clip=None, flat_slope_deg=None)
    sm = terrain.smooth_dem(d, 1.0)
    np.testing.assert_allclose(raw["slope"], terrain.slope(sm, RES))
    np.testing.assert_allclose(raw["curv_planform"], terrain.planform_curvature(sm, RES))
    np.testing.assert_allclose(raw["curv_profile"], terrain.profile_curvature(sm, RES))
    np.testing.assert_allclose(raw["tri"], terrain.terrain_ruggedness_index(sm))
    np.testing.assert_allclose(raw["aspect_sin"], np.sin(np.radians(terrain.aspect(sm, RES))))
    np.testing.assert_allclose(raw["aspect_cos"], np.cos(np.radians(terrain.aspect(sm, RES))))
    flat = raw["slope"] < 1.0
    assert flat[160:190, 30:80].all() and np.abs(raw["curv_planform"]).max() > 50  # it does explode
    out = terrain.terrain_attributes(d, RES, curvature_clip=20.0, flat_slope_deg=1.0)
    assert (out["curv_planform"][flat] == 0).all()
    assert np.abs(out["curv_planform"]).max() <= 20 and np.abs(out["curv_profile"]).max() <= 20
    steep = ~flat & (np.abs(raw["curv_planform"]) < 20)
    np.testing.assert_array_equal(out["curv_planform"][steep], raw["curv_planform"][steep])
    no_smooth = terrain.terrain_attributes(d, RES, sigma=0)
    np.testing.assert_allclose(no_smooth["slope"], terrain.slope(d, RES))


def test_bad_edge_mode_raises(dem):
    with pytest.raises(ValueError, match="edge"):
        terrain.slope(dem, RES, edge="wrap")
    with pytest.raises(ValueError, match="method"):
        terrain.profile_curvature(dem, RES, method="nope")
