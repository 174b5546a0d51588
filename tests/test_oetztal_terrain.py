"""Terrain channels on real data: the Ötztal RGI outlines and SRTM DEM, on the project's own cube grids.

Five real glaciers of the OGGM sample (``conftest.oggm_sample()``; see tests/test_oetztal.py for the
inventory itself), from the largest to the smallest: Gepatschferner (RGI50-11.00746, 16.6 km2),
Hintereisferner (RGI50-11.00897, 8.0 km2), Kesselwandferner (RGI50-11.00787, 4.0 km2), RGI50-11.00779
(1.4 km2) and RGI50-11.00684 (0.34 km2, the smallest of the 20, qc "small" at min_area 0.5 km2).

Each glacier goes the way of the workflow: the checked inventory (its UTM CRS, here EPSG:32632) gives the
cube grid (``acquire.glacier_grid``), the SRTM DEM (EPSG:4326, 3", int16) is warped onto it and
gap-filled exactly as ``features.build_cube`` does (``warp_to_grid``, the gap check over glacier + 50 m,
``fill_nearest``), and the layers come from the channel registry (``channels.LayerContext`` +
``compute_layer`` + ``apply_fill``, with ``features.DEFAULT_PARAMS``), i.e. the code the workflow runs.

Grid: resolution 10 m, the workflow's own (config.yaml ``grid.resolution``: the Sentinel-2 cube grid), so
the DEM is upsampled 9x bilinearly just as in a real cube; patch_size 64 instead of 256 only shrinks the
margin (370 m instead of 1330 m): the warp is pointwise on a grid snapped to multiples of 10 m, so every
pixel inside has the same value as on the full-size grid, and the five cubes take ~0.3 s each.

Checks:
- against xdem 0.2.3 on the same warped DEM, smoothed the same way independently (scipy's 3x3 Gaussian,
  sigma 1 px, ``truncate=1``), given to ``xdem.DEM.from_array`` with the grid's transform and CRS; compared
  2 px away from the cube edge (the project's smoothing renormalises the kernel at the border, scipy's
  reflects, and that reaches one more pixel through the 3x3 derivatives; xdem's own border is NaN);
- physical facts: glacier elevations vs RGI's Zmin/Zmed/Zmax, mean slope vs RGI's Slope, mean aspect vs
  RGI's Aspect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xdem
from scipy import ndimage

from glaciermap.data import channels, features, terrain
from glaciermap.data.acquire import glacier_grid
from glaciermap.data.inventory import check_inventory, read_inventory
from glaciermap.data.masks import glacier_masks

from conftest import oggm_sample

SAMPLE = oggm_sample()
GLACIERS = ["RGI50-11.00746", "RGI50-11.00897", "RGI50-11.00787", "RGI50-11.00779", "RGI50-11.00684"]
GRID = {"crs": "auto", "resolution": 10, "patch_size": 64}
TERRAIN = ["dem", "slope", "aspect_sin", "aspect_cos", "tri", "curv_planform", "curv_profile", "hillshade"]
INNER = (slice(2, -2), slice(2, -2))
P = features.DEFAULT_PARAMS
CLIP = P["curvature_clip"]            # 50 hm-1
FLAT = P["planform_flat_slope_deg"]   # 1 deg
SIGMA = P["dem_smoothing_sigma"]      # 1 px


@pytest.fixture(scope="module")
def inventory():
    rgi = read_inventory(SAMPLE / "rgi_oetztal.shp")
    checked = check_inventory(rgi, SAMPLE / "rgi_oetztal.shp", "RGIId", "BgnDate", 0.1)
    return rgi.set_index("RGIId"), checked


def _sun(row):
    """Sun over the glacier at 10:00 UTC (about the Sentinel-2 overpass) on the inventory date (2003-07-15)."""
    return terrain.sun_position(pd.Timestamp(f"{row['date']}T10:00"), row["cenlon"], row["cenlat"])


def _cube(row, checked, sun):
    """The terrain layers of one glacier's cube, the way features.build_cube makes them."""
    gid = row["glac_id"]
    grid = glacier_grid(row, GRID)
    usable = checked[checked["qc_status"].isin(["ok", "small"])].to_crs(grid.crs)
    m = glacier_masks(usable, gid, grid, buffers=(features.DEM_CHECK_BUFFER_M,))
    check = m[f"buffer_{int(features.DEM_CHECK_BUFFER_M)}m"]
    dem = features.warp_to_grid(SAMPLE / "srtm_oetztal.tif", grid, gid, "DEM")
    nan_frac = float(np.isnan(dem[check]).mean())
    dem, n_filled = features.fill_nearest(dem)
    ctx = channels.LayerContext(grid.resolution, dem=dem, sun=sun,
                                params={"dem_smoothing_sigma": SIGMA, "curvature_clip": CLIP,
                                        "planform_flat_slope_deg": FLAT})
    layers = {n: channels.apply_fill(n, channels.compute_layer(n, ctx))[0] for n in TERRAIN}
    return dict(grid=grid, glacier=m["glacier"], check=check, nan_frac=nan_frac, n_filled=n_filled, raw_dem=dem,
                ctx=ctx, **layers)


def _xdem(dem, grid, sun):
    """xdem 0.2.3 on the DEM smoothed like the project (scipy's 3x3 Gaussian), as float64 arrays.

    surface_fit must be given: xdem 0.2.3's default is "Florinsky" (5x5); the project matches "Horn" for
    slope/aspect/hillshade and "ZevenbergThorne" for the curvatures (see tests/test_terrain.py).
    """
    sm = ndimage.gaussian_filter(np.asarray(dem, np.float64), SIGMA, truncate=1.0)
    d = xdem.DEM.from_array(sm, grid.transform, grid.crs, nodata=-9999.0)
    assert d.res == (grid.resolution, grid.resolution)
    arr = lambda r: np.ma.filled(r.data.astype(np.float64), np.nan)  # noqa: E731
    az, el = sun
    return {
        "slope": arr(d.slope(surface_fit="Horn")),
        "aspect": arr(d.aspect(surface_fit="Horn")),
        "tri": arr(d.terrain_ruggedness_index(method="Riley")),
        "planform": arr(d.planform_curvature(surface_fit="ZevenbergThorne")),
        "profile": arr(d.profile_curvature(surface_fit="ZevenbergThorne", curv_method="geometric")),
        # at xdem's default sun (315, 45): see test_hillshade
        "hillshade_315_45": arr(d.hillshade(surface_fit="Horn", azimuth=315.0, altitude=45.0)),
    }


@pytest.fixture(scope="module")
def cubes(inventory):
    _, checked = inventory
    rows = checked.set_index("glac_id", drop=False)
    out = {}
    for gid in GLACIERS:
        row = rows.loc[gid]
        sun = _sun(row)
        cube = _cube(row, checked, sun)
        cube["sun"] = sun
        cube["xdem"] = _xdem(cube["raw_dem"], cube["grid"], sun)
        out[gid] = cube
    return out


def _assert_f32_equal(ours, ref, what, ulps=2):
    """``ours`` (the float32 layer) equals the float64 reference up to ``ulps`` float32 ulps (+1e-9 near 0).

    Measured (2026-11-30) on the five glaciers: 0.5 ulp (the float32 rounding of the same float64 value) for
    slope, aspect sin/cos, TRI, profile and hillshade, up to 1.2 ulp for planform (Gepatschferner, where
    1/gradient^1.5 amplifies float64 round-off); largest differences 3.8e-6 deg, 3.0e-8, 1.9e-6 m, 1.9e-6 hm-1,
    2.4e-7 hm-1. The 1e-9 floor covers float64 round-off near 0 (eps z / res^2 x 100 / gradient^1.5 is
    ~3e-10 hm-1 at the 1 deg planform threshold); every difference used at most 25 % of the tolerance.
    """
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert np.isfinite(ref).all() and np.isfinite(ours).all(), what
    tol = ulps * np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64) + 1e-9
    err = np.abs(ours - ref)
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    assert (err <= tol).all(), (f"{what}: |ours - xdem| = {err[worst]:.3g} at {worst} "
                                f"(ours {ours[worst]}, xdem {ref[worst]})")


# ---------------------------------------------------------------------------------------------------- grids


def test_cube_grids_and_dem_gaps(inventory, cubes):
    _, checked = inventory
    assert checked.set_index("glac_id").loc[GLACIERS, "crs"].eq("EPSG:32632").all()
    shapes = {g: c["grid"].shape for g, c in cubes.items()}
    # measured: 679 x 680 (Gepatsch), 457 x 667, 378 x 375, 219 x 243, 175 x 156 px
    assert shapes["RGI50-11.00746"] == (679, 680) and shapes["RGI50-11.00684"] == (175, 156)
    for g, c in cubes.items():
        assert c["grid"].resolution == 10.0 and c["grid"].crs == "EPSG:32632"
        # the SRTM crop covers every cube and has no voids: no NaN over glacier + 50 m, nothing filled
        assert c["nan_frac"] == 0.0 and c["n_filled"] == 0, g
        assert c["ctx"].resolution == 10.0
        # the dem layer is the warped DEM itself (not smoothed): its values lie in SRTM's range (387..3727 m)
        assert np.array_equal(c["dem"], c["raw_dem"].astype(np.float32))
        assert 387 <= c["dem"].min() and c["dem"].max() <= 3727


# ---------------------------------------------------------------------------------------------------- xdem


@pytest.mark.parametrize("gid", GLACIERS)
def test_slope_aspect_tri_match_xdem(cubes, gid):
    c, x = cubes[gid], cubes[gid]["xdem"]
    _assert_f32_equal(c["slope"][INNER], x["slope"][INNER], "slope (Horn, deg)")
    rad = np.radians(x["aspect"][INNER])
    _assert_f32_equal(c["aspect_sin"][INNER], np.sin(rad), "aspect_sin (Horn)")
    _assert_f32_equal(c["aspect_cos"][INNER], np.cos(rad), "aspect_cos (Horn)")
    _assert_f32_equal(c["tri"][INNER], x["tri"][INNER], "TRI (Riley, m)")
    # a real surface: slopes to > 40 deg (measured max 53.8-68.9 deg), every aspect (0.0001..359.99 deg)
    assert x["slope"][INNER].max() > 40 and x["aspect"][INNER].min() < 10 and x["aspect"][INNER].max() > 350


@pytest.mark.parametrize("gid", GLACIERS)
def test_curvatures_match_xdem(cubes, gid):
    """Planform: xdem's contour curvature -(r q^2 - 2 s p q + t p^2) / (p^2 + q^2)^1.5; profile: xdem's
    geometric curvature -(r p^2 + 2 s p q + t q^2) / ((p^2 + q^2) (1 + p^2 + q^2)^1.5); both
    Zevenbergen & Thorne (1987) 3x3 fit, x 100 (1/(100 m), "hm-1"), positive convex.

    The project then sets planform to 0 where the slope is below planform_flat_slope_deg (1 deg) and clips both
    to +-curvature_clip (50 hm-1); the same rules are applied to xdem's values (slope from xdem too).
    Measured (Gepatsch / smallest): 1000 / 1 cells below 1 deg, 46 / 1 cells with |xdem planform| > 50, none
    with |profile| > 50; the 1-99 % range of planform is about -3..+5 hm-1, of profile -0.9..+1.2 hm-1.
    """
    c, x = cubes[gid], cubes[gid]["xdem"]
    flat = x["slope"] < FLAT
    plan = np.where(flat, 0.0, np.clip(x["planform"], -CLIP, CLIP))
    _assert_f32_equal(c["curv_planform"][INNER], plan[INNER], "planform curvature (hm-1)")
    _assert_f32_equal(c["curv_profile"][INNER], np.clip(x["profile"], -CLIP, CLIP)[INNER], "profile curvature (hm-1)")
    # the values are not trivially 0 or clipped: most cells are compared unclipped and non-zero (measured:
    # 99.78-99.996 % of the cells, max |planform| there 42.8-48.4, 99th percentile of |profile| 1.08-1.37)
    free = ~flat[INNER] & (np.abs(x["planform"][INNER]) < CLIP)
    assert free.mean() > 0.98 and np.abs(x["planform"][INNER][free]).max() > 10
    assert np.percentile(np.abs(x["profile"][INNER]), 99) > 0.5


@pytest.mark.parametrize("gid", GLACIERS)
def test_hillshade(cubes, gid):
    """Hillshade channel = cosine of the sun's incidence angle on the smoothed DEM (Horn), clipped to [0, 1].

    At the real sun (inventory date, 10:00 UTC: az ~139 deg, el ~60 deg) it equals the textbook formula
    sin(el) cos(slope) + cos(el) sin(slope) cos(az - aspect) on xdem's Horn slope and aspect. xdem's own
    hillshade, 1.5 + 254 cos(incidence), is compared at its default sun (315, 45) only: for other azimuths
    xdem 0.2.3 shades as if the sun were at 270 - az (measured on Hintereisferner: xdem at the real azimuth
    differs from ours by up to 0.065, xdem at 270 - az by 3e-8; on tilted planes ours is the analytic value).
    """
    c, x = cubes[gid], cubes[gid]["xdem"]
    az, el = (np.radians(v) for v in c["sun"])
    s, a = np.radians(x["slope"]), np.radians(x["aspect"])
    cos_i = np.sin(el) * np.cos(s) + np.cos(el) * np.sin(s) * np.cos(az - a)
    _assert_f32_equal(c["hillshade"][INNER], np.clip(cos_i, 0, 1)[INNER], "hillshade at the real sun")
    assert 0.2 < np.mean(c["hillshade"]) < 1 and (c["hillshade"] < 0.5).any()  # measured 0.74-0.83; 6-19 % < 0.5
    # through the registry again, now at xdem's default sun
    ctx = channels.LayerContext(10.0, dem=c["raw_dem"], sun=(315.0, 45.0),
                                params={"dem_smoothing_sigma": SIGMA, "curvature_clip": CLIP,
                                        "planform_flat_slope_deg": FLAT})
    hs = channels.compute_layer("hillshade", ctx)
    # xdem clips 1.5 + 254 cos(i) to [0, 255], i.e. cos(i) to 253.5 / 254 at the top (ours: to 1)
    ref = np.clip((x["hillshade_315_45"] - 1.5) / 254.0, 0, 1)
    _assert_f32_equal(np.minimum(hs, 253.5 / 254)[INNER], ref[INNER], "hillshade at (315, 45) vs xdem", ulps=4)


# ---------------------------------------------------------------------------------------------------- physics

# RGI 5 Zmin/Zmed/Zmax/Slope/Aspect of these outlines (dated 2003-07) come from a ~90 m DEM of the SRTM era;
# our values come from SRTM (February 2000) bilinearly upsampled to 10 m and rasterised at 10 m. Sources of
# difference: which pixels count as glacier (a 90 m SRTM cell spans 90 tan(30 deg) = 52 m of height on a
# 30 deg headwall, so Zmin/Zmax can move by up to one such step), SRTM's vertical error (16 m absolute, 90 %,
# mission spec; larger in steep terrain), C-band penetration into the winter snow and firn (a few metres) and
# 2000-2003 thinning (~1 m/yr on the tongues, less above). Measured differences (ours - RGI) in m, 2026-11-30:
#   glacier          Zmin    Zmed    Zmax
#   RGI50-11.00746   -9.3    +7.0    +1.8    (Gepatschferner, 2140/3093/3488 in RGI)
#   RGI50-11.00897  +14.6   +10.0    +5.0    (Hintereisferner, 2430/3050/3674)
#   RGI50-11.00787   -9.1    +3.1    +1.2    (Kesselwandferner, 2773/3185/3457)
#   RGI50-11.00779   +2.4    +9.7   +26.5
#   RGI50-11.00684   -3.4    +5.7    +9.4
# Over all 20 glaciers (except the two Vernagtferner parts, whose RGI statistics are the whole glacier's):
# |dZmin| <= 17.4, |dZmed| <= 30.3 (RGI50-11.00698, 1.7 km2, steep), |dZmax| <= 45.5 (RGI50-11.00887).
# Tolerances: 50 m on Zmin/Zmax (one SRTM cell step on a 30 deg slope), 20 m on Zmed (a median of thousands
# of pixels: SRTM error, penetration and thinning only).
Z_TOL = {"Zmin": 50.0, "Zmed": 20.0, "Zmax": 50.0}


@pytest.mark.parametrize("gid", GLACIERS)
def test_glacier_elevations_agree_with_rgi(inventory, cubes, gid):
    rgi, _ = inventory
    c = cubes[gid]
    z = c["dem"][c["glacier"]].astype(np.float64)
    # rasterised area vs RGI's (100 m2 pixels): the mask is the right glacier on the right grid (measured
    # -0.02..-0.04 %, -0.12 % for the 0.34 km2 one)
    assert z.size * 1e-4 == pytest.approx(rgi.loc[gid, "Area"], rel=0.02)
    ours = {"Zmin": z.min(), "Zmed": np.median(z), "Zmax": z.max()}
    for k, tol in Z_TOL.items():
        assert abs(ours[k] - rgi.loc[gid, k]) <= tol, f"{gid} {k}: {ours[k]:.1f} m here, {rgi.loc[gid, k]} m in RGI"
    # the glacier spans most of its cube's relief (measured 0.58 (00684) .. 0.96 (Hintereisferner))
    assert ours["Zmax"] - ours["Zmin"] > 0.3 * (c["dem"].max() - c["dem"].min())


# Mean slope over the glacier pixels vs RGI's Slope (mean slope, deg). Measured (ours - RGI): +0.18 (Gepatsch,
# 11.48 vs 11.3), +0.35 (Hintereis, 16.55 vs 16.2), +0.09 (Kesselwand, 11.69 vs 11.6), +0.66 (00779, 20.16
# vs 19.5), +1.96 (00684, 29.06 vs 27.1); over all 20 (less Vernagt) +0.09..+1.96. Ours is never lower: a 10 m
# Horn gradient sees the slope within one 90 m cell, RGI's 3x3 Horn at 90 m averages the gradient over 270 m,
# and the mean of |gradient| exceeds |mean gradient| (most on small, steep glaciers). Tolerance -0.5..+2.5 deg.
# Mean aspect (circular, from aspect_sin/aspect_cos) vs RGI's Aspect: measured -3.0..+1.4 deg on the first
# four, -6.9 on 00684 (106 vs 113 deg); all 20 within 6.9 deg; tolerance 10 deg. A sign error of either
# component would put Hintereisferner (ENE, 71 deg) at 292, 109 or 248 deg.
SLOPE_TOL = (-0.5, 2.5)
ASPECT_TOL = 10.0


@pytest.mark.parametrize("gid", GLACIERS)
def test_mean_slope_and_aspect_agree_with_rgi(inventory, cubes, gid):
    rgi, _ = inventory
    c = cubes[gid]
    g = c["glacier"]
    slope = float(np.mean(c["slope"][g], dtype=np.float64))
    assert 5 < slope < 35  # glaciers: gentle tongues, steep cirques; never a cliff or a plain on average
    d = slope - rgi.loc[gid, "Slope"]
    assert SLOPE_TOL[0] <= d <= SLOPE_TOL[1], f"{gid}: mean slope {slope:.2f} here, {rgi.loc[gid, 'Slope']} in RGI"
    asp = np.degrees(np.arctan2(np.mean(c["aspect_sin"][g], dtype=np.float64),
                                np.mean(c["aspect_cos"][g], dtype=np.float64))) % 360
    da = (asp - rgi.loc[gid, "Aspect"] + 180) % 360 - 180
    assert abs(da) <= ASPECT_TOL, f"{gid}: mean aspect {asp:.1f} here, {rgi.loc[gid, 'Aspect']} in RGI"
    # the glacier is rougher than nothing and smoother than the cube's roughest 1 % (measured median on the
    # glacier 3.9-12.3 m, 99th percentile of the cube 26-32 m)
    assert 0 < np.median(c["tri"][g]) < np.percentile(c["tri"], 99)
