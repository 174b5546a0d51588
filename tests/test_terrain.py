"""Terrain attributes: our numpy code against xdem 0.2.3, against xdem 0.1.0's curvature formulas (the
DL4GAM reference definitions, transcribed below) and against analytic surfaces."""

from __future__ import annotations

import numpy as np
import pytest
import xdem
from scipy import ndimage

from glaciermap.data import terrain

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


# ------------------------------------------------------------------ xdem 0.1.0 curvatures (DL4GAM's reference)

def _xdem_010_curvatures(dem, res, cval=np.nan):
    """xdem 0.1.0's planform and profile curvature, transcribed: Zevenbergen & Thorne (1987) coefficients D, E,
    F, G, H as 3x3 kernels divided by res^2 / res^2 / res^2 / res / res, applied by convolution (xdem's
    scipy/numba engines flip the kernel; the result does not depend on it), then
    PLANC = -2 (D H^2 + E G^2 - F G H) / (G^2 + H^2) x 100 and PROFC = 2 (D G^2 + E H^2 + F G H) / (G^2 + H^2)
    x 100, both 0 where G^2 + H^2 == 0 (xdem/terrain.py before the Minar et al. 2020 rewrite, xdem 0.2)."""
    k = {"D": np.array([[0, .5, 0], [0, -1, 0], [0, .5, 0]]) / res**2,
         "E": np.array([[0, 0, 0], [.5, -1, .5], [0, 0, 0]]) / res**2,
         "F": np.array([[-.25, 0, .25], [0, 0, 0], [.25, 0, -.25]]) / res**2,
         "G": np.array([[0, .5, 0], [0, 0, 0], [0, -.5, 0]]) / res,
         "H": np.array([[0, 0, 0], [-.5, 0, .5], [0, 0, 0]]) / res}
    C = {n: ndimage.convolve(np.asarray(dem, np.float64), w, mode="constant", cval=cval) for n, w in k.items()}
    D, E, F, G, H = (C[n] for n in "DEFGH")
    g2 = G**2 + H**2
    with np.errstate(divide="ignore", invalid="ignore"):
        plan = np.where(g2 == 0.0, 0.0, -2 * (D * H**2 + E * G**2 - F * G * H) / g2 * 100)
        prof = np.where(g2 == 0.0, 0.0, 2 * (D * G**2 + E * H**2 + F * G * H) / g2 * 100)
    return plan, prof


def test_reference_curvatures_are_xdem_010s_formulas(dem):
    plan, prof = _xdem_010_curvatures(dem, RES)
    ours_plan, ours_prof = terrain.planform_curvature_ref(dem, RES), terrain.profile_curvature_ref(dem, RES)
    assert np.abs(plan[INNER]).max() > 1 and np.abs(prof[INNER]).max() > 1
    np.testing.assert_allclose(ours_plan[INNER], plan[INNER], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours_prof[INNER], prof[INNER], rtol=1e-9, atol=1e-9)
    # edge="nan" and holes: xdem's NaN border and NaN neighbourhoods, everywhere
    d = dem.copy()
    d[50:53, 80:84] = np.nan
    plan, prof = _xdem_010_curvatures(d, RES)
    for ours, ref in ((terrain.planform_curvature_ref(d, RES, edge="nan"), plan),
                      (terrain.profile_curvature_ref(d, RES, edge="nan"), prof)):
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9, equal_nan=True)


def test_reference_curvatures_are_xdem_023s_directional_tangential_and_minus_profile(dem):
    """xdem 0.2's rewrite (GlacioHack/xdem#777): the former planform_curvature is tangential_curvature with
    curv_method="directional"; the former profile_curvature is the directional profile_curvature, sign flipped."""
    tan = _xdem(dem, "tangential_curvature", surface_fit="ZevenbergThorne", curv_method="directional")
    prof = _xdem(dem, "profile_curvature", surface_fit="ZevenbergThorne", curv_method="directional")
    np.testing.assert_allclose(terrain.planform_curvature_ref(dem, RES)[INNER], tan[INNER], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(terrain.profile_curvature_ref(dem, RES)[INNER], -prof[INNER], rtol=1e-9, atol=1e-9)


def test_reference_planform_is_planform_times_gradient_and_profile_is_minus_profile(dem):
    p, q, *_ = terrain.zt_derivatives(dem, RES)
    grad = np.hypot(p, q)                                  # |grad z| of the same fit, m/m
    plan, plan_ref = terrain.planform_curvature(dem, RES), terrain.planform_curvature_ref(dem, RES)
    ok = grad**2 >= 1e-14                                  # where xdem 0.2.3 does not zero planform
    assert ok.mean() > 0.99
    np.testing.assert_allclose(plan_ref[ok], plan[ok] * grad[ok], rtol=1e-9, atol=1e-12)
    prof_ref = terrain.profile_curvature_ref(dem, RES)
    np.testing.assert_array_equal(prof_ref, -terrain.profile_curvature(dem, RES, method="directional"))
    # against the geometric profile curvature (curv_profile): opposite sign and a (1 + |grad z|^2)^1.5 factor
    np.testing.assert_allclose(prof_ref, -terrain.profile_curvature(dem, RES) * (1 + grad**2) ** 1.5,
                               rtol=1e-9, atol=1e-12)
    steep = np.degrees(np.arctan(grad)) > 30
    assert steep.any() and (np.abs(prof_ref[steep]) >= 1.5 * np.abs(terrain.profile_curvature(dem, RES)[steep])).all()


def test_reference_curvatures_are_bounded_by_the_hessian(dem):
    """Both are second directional derivatives (x 100), so at most 100 x the largest |eigenvalue| of the
    Hessian [[r, s], [s, t]] anywhere, whatever the gradient; planform_curvature has no such bound."""
    _, _, r, s, t = terrain.zt_derivatives(dem, RES)
    lam = 100 * (np.abs(r + t) / 2 + np.hypot((r - t) / 2, s))
    for c in (terrain.planform_curvature_ref(dem, RES), terrain.profile_curvature_ref(dem, RES)):
        assert (np.abs(c) <= lam * (1 + 1e-9) + 1e-12).all()


def test_reference_planform_is_small_on_near_flat_ground_where_planform_explodes():
    rng = np.random.default_rng(3)
    n = 80
    yy, xx = np.mgrid[0:n, 0:n] * RES
    z = 2000.0 + 1e-4 * xx + rng.normal(0, 1e-3, (n, n))   # 0.006 deg tilt and 1 mm noise: a lake, a flat
    plan, plan_ref = terrain.planform_curvature(z, RES), terrain.planform_curvature_ref(z, RES)
    prof_ref = terrain.profile_curvature_ref(z, RES)
    assert np.abs(plan).max() > 100                        # 1/gradient: hundreds of hm-1 from 1 mm of noise
    assert np.isfinite(plan_ref).all() and np.abs(plan_ref).max() < 0.01 and np.abs(prof_ref).max() < 0.01
    # a perfectly flat DEM: 0 (xdem 0.1.0: where G = H = 0)
    flat = np.full((6, 7), 1234.5)
    assert (terrain.planform_curvature_ref(flat, RES) == 0).all()
    assert (terrain.profile_curvature_ref(flat, RES) == 0).all()


@pytest.mark.parametrize("sign", [1, -1])
def test_reference_curvature_signs_on_a_paraboloid_dome_and_bowl(sign):
    """Dome z = -c rho^2 / 2 (sign 1; a bowl for -1): the ZT fit is exact on a quadric (p = -c x, q = -c y,
    r = t = -c, s = 0), so planform_ref = 100 c (convex: positive, like planform = 100 / rho) and
    profile_ref = -100 c (NEGATIVE on the convex dome, whereas profile = +100 c / (1 + c^2 rho^2)^1.5)."""
    c = 0.002 * sign
    n = 61
    yy, xx = (np.mgrid[0:n, 0:n] - n // 2) * RES
    rho = np.hypot(xx, yy)
    z = 3000 - c * rho**2 / 2
    ok = (rho > 0) & (rho < 250)
    plan_ref, prof_ref = terrain.planform_curvature_ref(z, RES), terrain.profile_curvature_ref(z, RES)
    np.testing.assert_allclose(plan_ref[ok], 100 * c, rtol=1e-9)
    np.testing.assert_allclose(prof_ref[ok], -100 * c, rtol=1e-9)
    plan, prof = terrain.planform_curvature(z, RES), terrain.profile_curvature(z, RES)
    assert (np.sign(plan[ok]) == sign).all() and (np.sign(plan_ref[ok]) == sign).all()
    assert (np.sign(prof[ok]) == sign).all() and (np.sign(prof_ref[ok]) == -sign).all()
    assert plan_ref[n // 2, n // 2] == 0 and prof_ref[n // 2, n // 2] == 0   # summit: no gradient


def test_reference_curvatures_are_second_derivatives_along_contour_and_slope_line():
    """On a tilted, rotated quadric with a cross term (rows run south): planform_ref = -100 z_uu along the
    contour direction u, profile_ref = +100 z_vv along the slope line (gradient direction) v, both from the
    analytic surface, so the orientation of x, y and the sign of the cross term s are checked too."""
    a, b, cc, dx, dy = 0.0007, -0.0011, 0.0004, 0.3, -0.2   # z = a x^2 + b x y + cc y^2 + dx x + dy y

    def f(x, y):
        return 1500 + a * x * x + b * x * y + cc * y * y + dx * x + dy * y

    n = 41
    rows, cols = np.mgrid[0:n, 0:n]
    x, y = cols * RES, -rows * RES                          # x east, y north
    z = f(x, y)
    i = (slice(5, -5), slice(5, -5))
    gx, gy = 2 * a * x + b * y + dx, b * x + 2 * cc * y + dy
    g = np.hypot(gx, gy)
    h = 7.0

    def d2(ux, uy):
        return (f(x + h * ux, y + h * uy) - 2 * z + f(x - h * ux, y - h * uy)) / h**2   # exact on a quadric
    z_uu = d2(-gy / g, gx / g)
    z_vv = d2(gx / g, gy / g)
    np.testing.assert_allclose(terrain.planform_curvature_ref(z, RES)[i], -100 * z_uu[i], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(terrain.profile_curvature_ref(z, RES)[i], 100 * z_vv[i], rtol=1e-6, atol=1e-9)
    # and the existing definitions: contour curvature = -z_uu / |grad z|, directional profile = -z_vv
    np.testing.assert_allclose(terrain.planform_curvature(z, RES)[i], -100 * z_uu[i] / g[i], rtol=1e-6)
    np.testing.assert_allclose(terrain.profile_curvature(z, RES, method="directional")[i], -100 * z_vv[i],
                               rtol=1e-6, atol=1e-9)


def test_terrain_attributes_reference_curvatures_are_smoothed_clipped_and_not_flat_masked(dem):
    d = dem.copy()
    d[150:200, 20:90] = 2000.0 + 0.001 * np.arange(70) * RES  # nearly flat area (0.06 deg)
    sm = terrain.smooth_dem(d, 1.0)
    raw = terrain.terrain_attributes(d, RES, curvature_clip=None, flat_slope_deg=None)
    np.testing.assert_allclose(raw["curv_planform_ref"], terrain.planform_curvature_ref(sm, RES))
    np.testing.assert_allclose(raw["curv_profile_ref"], terrain.profile_curvature_ref(sm, RES))
    flat = raw["slope"] < 1.0
    assert np.abs(raw["curv_planform"][flat]).max() > 50                 # the existing one explodes there
    assert np.abs(raw["curv_planform_ref"][flat]).max() < 1              # the reference does not
    out = terrain.terrain_attributes(d, RES, curvature_clip=2.0, flat_slope_deg=1.0)
    for k in ("curv_planform_ref", "curv_profile_ref"):
        assert np.abs(out[k]).max() <= 2.0 and (np.abs(raw[k]) > 2.0).any(), k      # clipped like the others
        keep = np.abs(raw[k]) < 2.0
        np.testing.assert_array_equal(out[k][keep], raw[k][keep])       # incl. the flat area: no flat rule
    assert (out["curv_planform"][flat] == 0).all() and (out["curv_planform_ref"][flat] != 0).any()


def test_the_dl4gam_set_takes_the_reference_curvatures():
    from glaciermap.data import channels

    for name in ("dl4gam", "dl4gam_no_dhdt"):
        s = channels.CHANNEL_SETS[name]
        assert "curv_planform_ref" in s and "curv_profile_ref" in s, name
        assert "curv_planform" not in s and "curv_profile" not in s, name
    assert channels.CHANNEL_SETS["dl4gam"][13:15] == ["curv_planform_ref", "curv_profile_ref"]
    for k in ("curv_planform", "curv_profile", "curv_planform_ref", "curv_profile_ref"):
        ch = channels.get_channel(k)                                     # all four registered, same units
        assert ch.units == "hm-1" and ch.kind == "terrain" and ch.sources == ("dem",), k
    assert "xdem 0.1.0" in channels.get_channel("curv_planform_ref").description
    assert "CONCAVE" in channels.get_channel("curv_profile_ref").description
    assert set(channels.CHANNEL_SETS["dl4gam"]) <= set(channels.DEFAULT_LAYERS)
    # computed through the registry from the same terrain attributes, with the features parameters
    rng = np.random.default_rng(0)
    z = 2500 + np.cumsum(rng.normal(0, 3, (40, 40)), axis=0) + np.cumsum(rng.normal(0, 3, (40, 40)), axis=1)
    params = {"dem_smoothing_sigma": 1.0, "curvature_clip": 50.0, "planform_flat_slope_deg": 1.0}
    ctx = channels.LayerContext(RES, dem=z, params=params)
    ta = terrain.terrain_attributes(z, RES, sigma=1.0, curvature_clip=50.0, flat_slope_deg=1.0)
    for k in ("curv_planform_ref", "curv_profile_ref"):
        np.testing.assert_array_equal(channels.compute_layer(k, ctx), ta[k].astype(np.float32))


def test_dl4gams_smoothing_kernel_is_the_3x3_gaussian_of_sigma_1_over_sqrt2():
    """DL4GAM smooths with oggm.core.gis.gaussian_blur(dem, size=1): kernel exp(-(x^2 + y^2) / size) on
    [-1, 1]^2, normalised, i.e. exp(-d^2 / (2 sigma^2)) with sigma = 1/sqrt(2) px (not 1; docs/terrain.md)."""
    x, y = np.mgrid[-1:2, -1:2]
    oggm = np.exp(-(x**2 / 1.0 + y**2 / 1.0))
    np.testing.assert_allclose(terrain.gaussian_kernel3(2 ** -0.5), oggm / oggm.sum(), rtol=1e-12)
    assert not np.allclose(terrain.gaussian_kernel3(1.0), oggm / oggm.sum(), rtol=1e-3)
