"""Predicted outlines: speck removal, polygonisation and the GeoPackage of a tiny workflow run."""

import shutil

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from rasterio.transform import from_origin

from glaciermap.area_change import outlines

T = from_origin(500000.0, 5100000.0, 10.0, 10.0)  # 10 m pixels, north-up


def _hand_mask():
    m = np.zeros((12, 14), bool)
    m[1:8, 1:9] = True        # main body: 56 px
    m[3:5, 4:6] = False       # hole of 4 px inside it
    m[10, 1] = True           # 1 px speck
    m[9:11, 11:13] = True     # 2x2 speck (4 px)
    m[1:6, 11:13] = True      # 10 px patch: kept with min_patch_px = 10
    m[8, 9] = True            # touches the body only diagonally: its own 1 px patch (4-connectivity)
    return m


def test_remove_specks_on_hand_built_array():
    m = _hand_mask()
    clean, removed, filled = outlines.remove_specks(m, min_patch_px=5, min_hole_px=5)
    assert removed == 1 + 4 + 1 and filled == 4
    assert not clean[10, 1] and not clean[9:11, 11:13].any() and not clean[8, 9]
    assert clean[3:5, 4:6].all()               # hole filled
    assert clean[1:6, 11:13].all()             # 10 px patch kept
    assert clean.sum() == m.sum() - removed + filled
    # thresholds are strict "fewer than": a 10 px patch goes at 11, stays at 10
    assert outlines.remove_specks(m, 11, 0)[0][1:6, 11:13].sum() == 0
    assert outlines.remove_specks(m, 10, 0)[0][1:6, 11:13].all()
    # 0 and 1 disable both steps
    same, r0, f0 = outlines.remove_specks(m, 0, 1)
    assert (same == m).all() and r0 == f0 == 0
    # a background region touching the border is never a hole
    edge = np.ones((5, 5), bool)
    edge[0, 2] = False
    assert outlines.remove_specks(edge, 0, 100)[2] == 0


def test_polygon_area_equals_raster_area_and_geometry_is_valid():
    m = _hand_mask()
    geom = outlines.polygonise(m, T)
    assert geom.geom_type == "MultiPolygon" and geom.is_valid
    assert geom.area == pytest.approx(m.sum() * 100.0)
    # the hole survives as an interior ring, the diagonal pixel stays a separate polygon
    assert sum(len(p.interiors) for p in geom.geoms) == 1
    assert len(geom.geoms) == 5
    minx, miny, maxx, maxy = geom.bounds
    assert (minx, maxy) == (500010.0, 5099990.0)
    assert outlines.polygonise(np.zeros((3, 3), bool), T).is_empty


def test_glacier_outline_counts_match_speck_rule():
    rng = np.random.default_rng(3)
    mu = rng.uniform(0, 1, (40, 40))
    mu[5:30, 5:30] = 0.9
    mu[0, 0] = np.nan  # NaN never counts as glacier
    buf = np.zeros(mu.shape, bool)
    buf[2:38, 2:38] = True
    out = outlines.glacier_outline(mu, buf, T, min_patch_px=10, min_hole_px=10)
    raster = int(((mu >= 0.5) & buf).sum())
    assert out["raster_px"] == raster
    assert out["clean_px"] == raster - out["removed_px"] + out["filled_px"]
    assert out["removed_px"] > 0  # the noise outside the square leaves specks
    assert out["geometry"].area == pytest.approx(out["clean_px"] * 100.0)


@pytest.fixture(scope="module")
def outline_file(model_run):
    work, proc = model_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work / "results/tiny/area_change/dl4gam/outlines/predicted_outlines.gpkg", work


def test_outlines_gpkg_readable_with_crs_and_attributes(outline_file):
    path, work = outline_file
    g = gpd.read_file(path, layer="outlines")
    assert g.crs is not None and g.crs.is_projected
    for col in ("glac_id", "epoch", "date", "fold", "area_km2", "area_lb_km2", "area_ub_km2", "tau", "polygon_area_km2"):
        assert col in g.columns, col
    areas = pd.read_csv(work / "results/tiny/area_change/dl4gam/areas/glacier_areas.csv", dtype={"glac_id": str, "epoch": str})
    assert len(g) == len(areas)  # one row per glacier and epoch
    ok = g[g["status"] == "ok"]
    assert len(ok) >= 2
    assert set(ok.geometry.geom_type) == {"MultiPolygon"}
    assert ok.geometry.is_valid.all()
    # the attributes are the area table's
    m = ok.merge(areas, on=["glac_id", "epoch"], suffixes=("", "_a"))
    assert np.allclose(m["area_km2"], m["area_pred_km2"]) and np.allclose(m["tau"], m["tau_a"])
    assert (m["area_lb_km2"] <= m["area_km2"] + 1e-12).all() and (m["area_km2"] <= m["area_ub_km2"] + 1e-12).all()
    # polygon area = raster area of the same mask, up to the pixels the speck rule removed or filled
    px_km2 = ok["pixel_area_m2"] / 1e6
    expected = ok["area_km2"] + px_km2 * (ok["filled_px"] - ok["removed_px"])
    assert np.allclose(ok["polygon_area_km2"], expected, atol=1e-9)
    # and the geometry in the file has that area (the file CRS is the cubes' CRS here)
    assert np.allclose(ok.geometry.area / 1e6, ok["polygon_area_km2"], rtol=1e-9)
    assert pd.to_datetime(ok["date"]).notna().all()


def test_outlines_reject_a_broken_prediction_naming_glacier_and_file(outline_file, tmp_path):
    from glaciermap.io import GlacierInputError

    path, work = outline_file
    r = work / "results/tiny"
    areas = pd.read_csv(r / "area_change/dl4gam/areas/glacier_areas.csv", dtype={"glac_id": str, "epoch": str})
    row = areas[areas["status"] == "ok"].iloc[0]
    g, e = row["glac_id"], row["epoch"]
    bad = tmp_path / f"{g}.nc"
    bad.write_bytes(b"not a netcdf file")
    calib = sorted(str(p) for p in r.glob("models/dl4gam/fold*/calibration.json"))
    with pytest.raises(GlacierInputError, match=g) as ei:
        outlines.outline_table([(g, e)], [str(bad)], [str(r / f"cubes/{g}/{e}.nc")], calib, r / "area_change/dl4gam/areas/glacier_areas.csv", 10)
    assert str(bad) in str(ei.value)
    # a common output CRS other than the cubes' keeps the cube-CRS polygon area
    shutil.copy(next(r.glob(f"predictions/dl4gam/fold*/{e}/{g}.nc")), tmp_path / "p.nc")
    t = outlines.outline_table([(g, e)], [str(tmp_path / "p.nc")], [str(r / f"cubes/{g}/{e}.nc")], calib,
                               r / "area_change/dl4gam/areas/glacier_areas.csv", 10, 10, crs="EPSG:4326")
    assert t.crs.to_epsg() == 4326
    assert t["polygon_area_km2"].iloc[0] == pytest.approx(t.to_crs(t["cube_crs"].iloc[0]).geometry.area.iloc[0] / 1e6)


def test_skip_records_keep_a_row_without_geometry(outline_file, tmp_path):
    from glaciermap.io import skip_dataset, write_netcdf_atomic

    path, work = outline_file
    r = work / "results/tiny"
    areas = pd.read_csv(r / "area_change/dl4gam/areas/glacier_areas.csv", dtype={"glac_id": str, "epoch": str})
    ok = areas[areas["status"] == "ok"]
    (g0, e0), (g1, e1) = ok[["glac_id", "epoch"]].iloc[0], ok[["glac_id", "epoch"]].iloc[1]
    skip = tmp_path / "skip.nc"
    write_netcdf_atomic(skip, skip_dataset(g0, e0, f"glacier {g0}: no usable scene", "select"))
    calib = sorted(str(p) for p in r.glob("models/dl4gam/fold*/calibration.json"))
    t = outlines.outline_table([(g0, e0), (g1, e1)], [str(skip), str(next(r.glob(f"predictions/dl4gam/fold*/{e1}/{g1}.nc")))],
                               [str(r / f"cubes/{g0}/{e0}.nc"), str(r / f"cubes/{g1}/{e1}.nc")], calib,
                               r / "area_change/dl4gam/areas/glacier_areas.csv", 10)
    assert t["status"].tolist() == ["skipped", "ok"]
    assert t.geometry.iloc[0] is None and not t.geometry.iloc[1].is_empty
    out = tmp_path / "o.gpkg"
    outlines.write_outlines(t, out)
    back = gpd.read_file(out, layer="outlines")
    assert len(back) == 2 and back.geometry.iloc[0] is None and back.crs == t.crs


def test_bad_output_crs_names_the_key(outline_file):
    path, work = outline_file
    r = work / "results/tiny"
    calib = sorted(str(p) for p in r.glob("models/dl4gam/fold*/calibration.json"))
    areas = pd.read_csv(r / "area_change/dl4gam/areas/glacier_areas.csv", dtype={"glac_id": str, "epoch": str})
    g, e = areas[["glac_id", "epoch"]].iloc[0]
    with pytest.raises(ValueError, match="outlines.crs"):
        outlines.outline_table([(g, e)], [str(next(r.glob(f"predictions/dl4gam/fold*/{e}/{g}.nc")))], [str(r / f"cubes/{g}/{e}.nc")], calib,
                               r / "area_change/dl4gam/areas/glacier_areas.csv", 10, 10, crs="not-a-crs")
