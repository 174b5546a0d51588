"""Method comparison (Table 7) metrics on hand-built masks, and the debris map and truth outlines placed on a cube
grid."""

import math

import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine

from glaciermap.area_change.compare import (aggregate, cube_grid, debris_on_cube, glacier_counts, lost_ice_counts,
                                            outline_on_cube, read_truth_outlines, truth_outline_files)
from glaciermap.io import GlacierInputError


def _scene():
    """10 x 10 grid: glacier = rows 2..7 x cols 2..7 (36 px); buffer20 one pixel wider, buffer50 two wider."""
    ref = np.zeros((10, 10), bool)
    ref[2:8, 2:8] = True
    b20 = np.zeros_like(ref)
    b20[1:9, 1:9] = True
    b50 = np.zeros_like(ref)
    b50[0:10, 0:10] = True
    debris = np.zeros_like(ref)
    debris[6:8, 2:8] = True  # 12 px of debris on the tongue
    debris[0, 0] = True      # debris outside the outline does not count
    return ref, b20, b50, debris


def test_counts_recall_debris_and_ring():
    ref, b20, b50, debris = _scene()
    pred = ref.copy()
    pred[7, 2:8] = False          # 6 glacier px missed, all debris
    pred[0, 0:5] = True           # 5 px in the 20-50 m ring (row 0 is outside buffer20)
    pred[1, 1] = True             # 1 px in the 20 m buffer: area, not ring
    c = glacier_counts(pred, ref, b20, b50, debris)
    assert c["n_ref"] == 36 and c["n_tp"] == 30
    assert c["n_debris"] == 12 and c["n_debris_tp"] == 6
    assert c["n_ring"] == 100 - 64 and c["n_ring_fp"] == 5
    assert c["n_area"] == 30 + 1  # within glacier + 20 m only
    # other glaciers' pixels are outside the buffers and never enter the ring
    b50_n = b50.copy()
    b50_n[0, :5] = False
    assert glacier_counts(pred, ref, b20, b50_n, debris)["n_ring_fp"] == 0


def test_aggregate_pools_pixel_counts_and_rate():
    ref, b20, b50, debris = _scene()
    pred = ref.copy()
    pred[7, 2:8] = False
    c1 = glacier_counts(pred, ref, b20, b50, debris)
    c2 = glacier_counts(ref, ref, b20, b50, None)  # a clean glacier, perfectly mapped
    rows = pd.DataFrame([
        {"glac_id": "a", **c1, "a_px": 100.0, "n_area_t1": 24, "years": 6.0},
        {"glac_id": "b", **c2, "a_px": 100.0, "n_area_t1": 36, "years": 8.0},
    ])
    out = aggregate(rows, debris_min_fraction=0.01)
    assert out["n_glaciers"] == 2
    assert math.isclose(out["recall"], (30 + 36) / 72)
    assert out["n_debris_glaciers"] == 1 and math.isclose(out["debris_recall"], 6 / 12)
    assert math.isclose(out["debris_area_km2"], 12 * 100 / 1e6)
    assert out["fpr_ring"] == 0.0
    a0 = (30 + 36) * 1e-4
    assert math.isclose(out["area_t0_km2"], a0) and math.isclose(out["area_t1_km2"], (24 + 36) * 1e-4)
    rate = (24 - 30) * 1e-4 / 6.0
    assert math.isclose(out["rate_km2_per_year"], rate)
    assert math.isclose(out["rate_pct_per_year"], 100 * rate / a0)
    # the debris share threshold excludes glacier a (12/36 = 33 %) at 0.5
    assert aggregate(rows, debris_min_fraction=0.5)["debris_recall"] is None
    # without a debris map the debris columns are null
    nod = aggregate(rows, has_debris=False)
    assert nod["debris_recall"] is None and nod["n_debris_glaciers"] is None and math.isclose(nod["recall"], 66 / 72)


def test_aggregate_rejects_bad_dates():
    ref, b20, b50, _ = _scene()
    rows = pd.DataFrame([{"glac_id": "g1", **glacier_counts(ref, ref, b20, b50), "a_px": 100.0, "n_area_t1": 30,
                          "years": 0.0}])
    with pytest.raises(ValueError, match="g1"):
        aggregate(rows)


def _cube(path, x0, y0, n=20, res=10.0, crs="EPSG:32632"):
    xs = x0 + res / 2 + res * np.arange(n)
    ys = y0 - res / 2 - res * np.arange(n)
    ds = xr.Dataset({"mask_glacier": (("y", "x"), np.zeros((n, n), np.uint8))}, coords={"x": xs, "y": ys})
    if crs:
        ds = ds.rio.write_crs(crs)
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def test_debris_map_reprojected_onto_cube_grid(tmp_path):
    # a 10 m debris map whose pixel (row 5, col 7) is debris; the cube starts 30 m east, 20 m south of it
    data = np.zeros((40, 40), np.uint8)
    data[5, 7] = 1
    data[30:, :] = 255  # nodata
    dm = tmp_path / "debris.tif"
    with rasterio.open(dm, "w", driver="GTiff", width=40, height=40, count=1, dtype="uint8", crs="EPSG:32632",
                       transform=Affine(10.0, 0.0, 1000.0, 0.0, -10.0, 5000.0), nodata=255) as dst:
        dst.write(data, 1)
    cube = _cube(tmp_path / "cube.nc", 1030.0, 4980.0)
    d = debris_on_cube(dm, cube, "G1")
    assert d.shape == (20, 20) and d.sum() == 1 and d[3, 4]
    # a cube beyond the map: nothing, and nodata is never debris
    far = _cube(tmp_path / "far.nc", 1000.0, 4690.0)
    assert not debris_on_cube(dm, far, "G1").any()
    with pytest.raises(GlacierInputError, match="G2.*missing.tif"):
        debris_on_cube(tmp_path / "missing.tif", cube, "G2")


def test_lost_ice_is_the_true_t0_outline_minus_the_t1_one():
    a0 = np.zeros((10, 10), bool)
    a0[2:8, 2:8] = True                      # 36 px at t0
    a1 = a0.copy()
    a1[6:8, 2:8] = False                     # the tongue (12 px) is gone at t1
    pred = a0.copy()
    pred[7, 2:8] = False                     # the method keeps half of the lost tongue (6 px) and all the rest
    pred[0, 0] = True                        # a false positive elsewhere is not lost ice
    assert lost_ice_counts(pred, a0, a1) == {"n_lost": 12, "n_lost_mapped": 6}
    assert lost_ice_counts(a1, a0, a1) == {"n_lost": 12, "n_lost_mapped": 0}  # a perfect t1 map hides nothing
    with pytest.raises(ValueError, match="differ in shape"):
        lost_ice_counts(pred[:5], a0, a1)
    rows = pd.DataFrame([{"glac_id": "G1", "a_px": 100.0, "a_px_t1": 100.0, "years": 8.0, "n_area": 36,
                          "n_area_t1": 30, "n_ref": 36, "n_tp": 36, "n_debris": 0, "n_debris_tp": 0, "n_ring": 10,
                          "n_ring_fp": 1, **lost_ice_counts(pred, a0, a1)},
                         {"glac_id": "G2", "a_px": 100.0, "a_px_t1": 100.0, "years": 8.0, "n_area": 20,
                          "n_area_t1": 20, "n_ref": 20, "n_tp": 20, "n_debris": 0, "n_debris_tp": 0, "n_ring": 10,
                          "n_ring_fp": 0, "n_lost": 4, "n_lost_mapped": 4}])
    a = aggregate(rows, has_debris=False)
    assert a["lost_ice_mapped"] == pytest.approx(10 / 16)  # pooled pixels, not a mean of glacier shares
    assert a["lost_ice_km2"] == pytest.approx(16 * 100 / 1e6)
    no_truth = aggregate(rows.drop(columns=["n_lost", "n_lost_mapped", "a_px_t1"]), has_debris=False)
    assert no_truth["lost_ice_mapped"] is None and no_truth["lost_ice_km2"] is None


def test_truth_outlines_rasterized_onto_a_cube_grid(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    cube = _cube(tmp_path / "cube.nc", 1000.0, 5000.0)  # 20 x 20 px of 10 m, x 1000-1200, y 4800-5000 (UTM 32N)
    transform, shape, crs = cube_grid(cube, "G1")
    assert shape == (20, 20) and transform.a == 10.0 and transform.c == 1000.0 and transform.f == 5000.0
    # the truth in another CRS: a 60 x 40 m box whose pixel centres are rows 2..5, cols 3..8
    g = gpd.GeoSeries([box(1030.0, 4940.0, 1090.0, 4980.0)], crs="EPSG:32632").to_crs(4326)
    t0 = gpd.GeoDataFrame({"glac_id": ["G1", "G2"]}, geometry=[g.iloc[0], None], crs=4326)
    t0.to_file(tmp_path / "outlines_t0.gpkg")
    assert truth_outline_files(tmp_path, "2023") == []  # the t1 file is missing: no lost-ice column
    t0.iloc[:1].to_file(tmp_path / "outlines_2023.gpkg")
    files = truth_outline_files(tmp_path, "2023")
    assert files == [str(tmp_path / "outlines_t0.gpkg"), str(tmp_path / "outlines_2023.gpkg")]
    truth = read_truth_outlines(files[0])
    m = outline_on_cube(truth["G1"], transform, shape, crs)
    expected = np.zeros(shape, bool)
    expected[2:6, 3:9] = True
    assert np.array_equal(m, expected)
    assert not outline_on_cube(truth.get("G2"), transform, shape, crs).any()   # no geometry: no ice
    assert not outline_on_cube(truth.get("G3"), transform, shape, crs).any()   # not in the truth: no ice
    gpd.GeoDataFrame({"name": ["G1"]}, geometry=[g.iloc[0]], crs=4326).to_file(tmp_path / "bad.gpkg")
    with pytest.raises(ValueError, match="bad.gpkg.*glac_id"):
        read_truth_outlines(tmp_path / "bad.gpkg")
