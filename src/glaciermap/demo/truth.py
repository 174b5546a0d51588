"""Inventory, truth outlines and areas, DEM and dh/dt files of the demo region."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .glaciers import DHDT_PERIODS, RES_DEM, RES_DHDT, RES_TRUTH, make_dhdt
from .writers import CRS, _lonlat, _polygons, _transform, _write_gpkg, write_cog


def _write_world_files(root: Path, W, schedule: list[dict]) -> dict:
    """Inventory, truth, DEM and dh/dt files (everything but the scenes and the catalog)."""
    import geopandas as gpd
    import pandas as pd

    inputs, truth = root / "inputs", root / "truth"
    for d in (inputs / "dem", inputs / "dhdt", truth):
        d.mkdir(parents=True, exist_ok=True)
    t10 = _transform(W, RES_TRUTH)
    tab = W.table
    n = W.n
    geoms0 = _polygons(W.lab10, t10, n)
    # the inventory: the t0 truth but for the planted errors (glaciermap.demo.inventory_errors)
    it = W.inv_table
    geoms_inv = geoms0 if W.inv_lab10 is W.lab10 else _polygons(W.inv_lab10, t10, len(it))
    cen = gpd.GeoSeries(geoms_inv, crs=CRS).centroid
    lon, lat = _lonlat(cen.x.to_numpy(), cen.y.to_numpy())
    inv = gpd.GeoDataFrame({"glac_id": it["glac_id"], "area_km2": it["area_km2"].round(6),
                            "src_date": it["src_date"], "cenlon": np.round(lon, 6), "cenlat": np.round(lat, 6)},
                           geometry=geoms_inv, crs=CRS)
    _write_gpkg(inv, inputs / "inventory.gpkg", "glaciers")
    W.inv_errors_table.to_csv(truth / "inventory_errors.csv", index=False)
    out0 = gpd.GeoDataFrame({"glac_id": tab["glac_id"], "date": tab["src_date"],
                             "area_km2": tab["area_t0_km2"].round(6)},
                            geometry=geoms0, crs=CRS)
    _write_gpkg(out0, truth / "outlines_t0.gpkg", "outlines")
    if W.t1 is not None:
        lab1 = np.where(W.kept1, W.lab10, 0)
        geoms1 = _polygons(lab1, t10, n)
        out1 = gpd.GeoDataFrame({"glac_id": tab["glac_id"], "date": W.t1, "area_km2": tab["area_t1_km2"].round(6)},
                                geometry=geoms1, crs=CRS)
        _write_gpkg(out1, truth / "outlines_2023.gpkg", "outlines")
        years = (W.t1_ord - W.t0_ord[1:]) / 365.25
        d_area = tab["area_t1_km2"] - tab["area_t0_km2"]
        areas = pd.DataFrame({
            "glac_id": tab["glac_id"], "date_t0": tab["src_date"], "area_t0_km2": tab["area_t0_km2"].round(6),
            "date_t1": W.t1, "area_t1_km2": tab["area_t1_km2"].round(6),
            "rate_km2_per_year": (d_area / years).round(8),
            "rate_pct_per_year": (100.0 * d_area / tab["area_t0_km2"] / years).round(6),
            "debris_frac_t0": tab["debris_frac_t0"].round(6), "debris_frac_t1": tab["debris_frac_t1"].round(6),
            "size_class": tab["size_class"], "debris_dominated": tab["debris_dominated"],
            "zmin_m": tab["zmin"].round(1), "zmax_m": tab["zmax"].round(1),
        })
        areas.to_csv(truth / "areas.csv", index=False)
        write_cog(truth / "debris_2023.tif", W.debris1.astype(np.uint8), t10, None, resampling="nearest")
    write_cog(truth / "debris_t0.tif", W.debris0.astype(np.uint8), t10, None, resampling="nearest")
    write_debris_map(inputs / "debris" / "debris_map.gpkg", W.debris0, t10)
    write_cog(inputs / "dem" / "dem_glo30.tif", W.z30.astype(np.float32), _transform(W, RES_DEM), -9999.0)
    aux = {"dem-glo30": ("dem", inputs / "dem" / "dem_glo30.tif", RES_DEM,
                         "Copernicus GLO-30-like DEM (synthetic)", "2011-01-01", "2014-12-31")}
    for period in DHDT_PERIODS:
        path = inputs / "dhdt" / f"dhdt_{period}.tif"
        write_cog(path, make_dhdt(W, period), _transform(W, RES_DHDT), -9999.0)
        start, end, _ = DHDT_PERIODS[period]
        aux[f"dhdt-{period}"] = ("dhdt", path, RES_DHDT, f"elevation change {period} (m/yr, synthetic)", start, end)
    return aux


#: the user's debris map of the demo: mapped at 30 m (3 x 3 majority of the 10 m truth) and patches under this
#: area left out, as a regional debris inventory from Landsat would be (e.g. Herreid and Pellicciotti 2020)
DEBRIS_MAP_BLOCK = 3
DEBRIS_MAP_MIN_AREA_M2 = 2700.0


def write_debris_map(path: Path, debris: np.ndarray, transform) -> None:
    """A debris-cover input map (GeoPackage polygons): the t0 truth seen at 30 m, small patches missed.

    Deterministic (no random numbers): it degrades the truth the way a coarser regional map does, so that a model
    trained on it (the debris method's labels) is scored against a truth it has not seen exactly.
    """
    import geopandas as gpd
    from affine import Affine
    from rasterio.features import shapes
    from shapely.geometry import shape

    b = DEBRIS_MAP_BLOCK
    h, w = (debris.shape[0] // b) * b, (debris.shape[1] // b) * b
    coarse = debris[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3)) > 0.5
    t30 = transform @ Affine.scale(b)
    geoms = [shape(g) for g, v in shapes(coarse.astype(np.uint8), mask=coarse, transform=t30) if v == 1]
    geoms = [g for g in geoms if g.area >= DEBRIS_MAP_MIN_AREA_M2]
    gdf = gpd.GeoDataFrame({"debris": np.ones(len(geoms), np.int16)}, geometry=geoms, crs=CRS)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_gpkg(gdf, path, "debris")
