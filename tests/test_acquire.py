"""Acquisition and selection on the tiny demo region, and the fully-clouded case."""

import json

import numpy as np
import pandas as pd
import pystac
import pytest
import rasterio
import xarray as xr
import yaml
from conftest import REPO

from glaciermap.data.acquire import acquire
from glaciermap.config import validate_config
from glaciermap.data.inventory import prepare_inventory, write_inventory
from glaciermap.io import read_status
from glaciermap.data.select import select_image
from glaciermap.data.sources import s2_offset


@pytest.fixture(scope="module")
def setup(tiny_region, tmp_path_factory):
    out = tmp_path_factory.mktemp("acq")
    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg = validate_config({
        "inventory": {"path": str(tiny_region / "inputs/inventory.gpkg")},
        "stac": {"source": str(tiny_region / "inputs/catalog/catalog.json")},
        "grid": {"patch_size": 64},
        **{k: demo[k] for k in ("dem", "dhdt", "epochs")},
    })
    checked = prepare_inventory(cfg)
    write_inventory(checked, out / "glaciers.gpkg", out / "manifest.csv")
    gid = checked.sort_values("area_km2").query("qc_status == 'ok'")["glac_id"].iloc[-1]
    nc = out / "scenes.nc"
    acquire(gid, "2023", cfg, str(out / "glaciers.gpkg"), str(nc))
    return cfg, out, gid, nc


def test_acquisition_matches_the_source_scenes(setup):
    cfg, out, gid, nc = setup
    assert read_status(nc)["status"] == "ok"
    with xr.open_dataset(nc, engine="h5netcdf", decode_coords="all") as ds:
        assert ds.rio.crs.to_epsg() == 32632
        common = ["coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "nir09",
                  "swir1", "swir2"]
        assert set(common) | {"mask_fill", "mask_cloud", "mask_shadow", "mask_snow"} <= set(ds.data_vars)
        assert [ds[c].attrs["sensor_band"] for c in common] == list(cfg["stac"]["bands"])
        assert ds.attrs["source"] == "s2" and ds.attrs["has_cloud_mask"] == 1
        # the cube extends 64/2 x 10 m + 50 m = 370 m beyond the glacier on every side
        assert ds.sizes["x"] * 10 >= 740 and ds.sizes["y"] * 10 >= 740
        item_id = str(ds["item_id"].values[0])
        b02 = ds["blue"].isel(time=0)
        x, y = float(b02.x[len(b02.x) // 2]), float(b02.y[len(b02.y) // 2])
        cat = pystac.read_file(cfg["stac"]["source"])
        item = next(i for i in cat.get_items(recursive=True) if i.id == item_id)
        href = item.assets["B02"].get_absolute_href()
        with rasterio.open(href) as src:
            dn = next(src.sample([(x, y)]))[0]
        got = float(b02.sel(x=x, y=y))
        off = s2_offset(item, cfg["stac"]["reflectance_offset"])
        if dn:
            assert abs(got - (dn * 1e-4 + off)) < 0.02  # bilinear onto the cube grid
        assert json.loads(ds.attrs["dropped_items"]) == []


def test_reflectance_offset_by_processing_baseline():
    new = pystac.Item("a", None, None, pd.Timestamp("2023-08-01").to_pydatetime(), {"s2:processing_baseline": "05.09"})
    old = pystac.Item("b", None, None, pd.Timestamp("2015-08-01").to_pydatetime(), {"s2:processing_baseline": "02.01"})
    assert s2_offset(new, "auto") == pytest.approx(-0.1) and s2_offset(old, "auto") == 0
    assert s2_offset(new, 0) == 0


def test_only_fully_clouded_candidates_skip_the_glacier(setup, tmp_path):
    cfg, out, gid, nc = setup
    with xr.open_dataset(nc, engine="h5netcdf", decode_coords="all") as ds:
        cloudy = ds.load()
    cloudy["mask_cloud"][:] = 1  # every candidate entirely under cloud
    enc = {v: dict(cloudy[v].encoding) for v in cloudy.data_vars}
    for v in enc:
        enc[v] = {k: enc[v][k] for k in ("dtype", "scale_factor", "_FillValue") if k in enc[v]}
        enc[v]["grid_mapping"] = "spatial_ref"
    cloudy.to_netcdf(tmp_path / "cloudy.nc", engine="h5netcdf", encoding=enc)
    table = select_image(gid, "2023", str(tmp_path / "cloudy.nc"), str(out / "glaciers.gpkg"), cfg["selection"],
                         str(tmp_path / "sel.csv"))
    assert not table["chosen"].any()
    assert (table["glacier_status"] == "skipped").all()
    reason = table["glacier_reason"].iat[0]
    assert gid in reason and "cloud fraction 1.000 > 0.3" in reason and "cloudy.nc" in reason


def test_no_scene_in_the_window_skips_the_glacier(setup, tmp_path):
    cfg, out, gid, nc = setup
    narrow = dict(cfg, epochs={**cfg["epochs"], "2023": {"start": "2031-08-01", "end": "2031-08-02", "dhdt": "2015-2019",
                                                         "inventory_year": False}})
    st = acquire(gid, "2023", narrow, str(out / "glaciers.gpkg"), str(tmp_path / "none.nc"))
    assert st["status"] == "skipped"
    assert f"glacier {gid}" in st["reason"] and "no scene" in st["reason"] and "catalog.json" in st["reason"]


# ---------------------------------------------------------------------------------------------------- footprints


def _item_over(lonlat_box, item_id="X"):
    from datetime import datetime

    from shapely.geometry import box, mapping

    return pystac.Item(item_id, mapping(box(*lonlat_box)), list(lonlat_box), datetime(2023, 8, 1), {})


def _cube_lonlat(grid):
    from pyproj import Transformer

    return Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform_bounds(*grid.bounds)


def test_footprint_coverage_is_the_best_single_scene_share_of_the_cube():
    """The share of the cube a footprint covers, measured against an equal-area ground computation: a scene
    over the whole cube covers 1, one ending at the cube's centre line ~0.5, one beside it 0; the best scene
    counts (two half scenes do not add up: the selection needs one scene with the valid data)."""
    from glaciermap.data.acquire import footprint_coverage
    from glaciermap.data.grid import CubeGrid
    from pyproj import Transformer
    import shapely
    from shapely.geometry import box

    grid = CubeGrid("EPSG:32632", 640_000, 5_180_000, 646_000, 5_184_000, 10)
    x0, y0, x1, y1 = _cube_lonlat(grid)
    whole = _item_over((x0 - 0.01, y0 - 0.01, x1 + 0.01, y1 + 0.01))
    assert footprint_coverage(grid, [whole]) == pytest.approx(1.0)
    assert footprint_coverage(grid, []) == 0.0
    assert footprint_coverage(grid, [_item_over((x1 + 0.01, y0, x1 + 0.05, y1))]) == 0.0
    # a footprint ending at a longitude 30 % into the cube: its share on the ground, computed in UTM
    cut = x0 + 0.3 * (x1 - x0)
    west = _item_over((x0 - 0.05, y0 - 0.05, cut, y1 + 0.05), "W")
    east = _item_over((cut, y0 - 0.05, x1 + 0.05, y1 + 0.05), "E")
    to_utm = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform
    cube = box(*grid.bounds)
    west_utm = shapely.transform(box(x0 - 0.05, y0 - 0.05, cut, y1 + 0.05).segmentize(1e-4),
                                 lambda c: np.column_stack(to_utm(c[:, 0], c[:, 1])))
    truth_w = west_utm.intersection(cube).area / cube.area
    assert 0.2 < truth_w < 0.4
    assert footprint_coverage(grid, [west]) == pytest.approx(truth_w, abs=0.002)
    assert footprint_coverage(grid, [west, east]) == pytest.approx(1 - truth_w, abs=0.002)
