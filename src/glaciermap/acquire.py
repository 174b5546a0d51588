"""Acquire: every candidate Sentinel-2 scene of one glacier and epoch, clipped to its cube grid.

Output ``scenes/<glacier>/<epoch>.nc``: dims (time, y, x) on the 10 m cube grid; one variable per band
(reflectance, stored as uint16 x 1e-4 with fill 0), ``SCL`` (uint8 scene classes), coordinate
``item_id(time)``; a candidate that cannot be read is dropped, with its file and reason listed in the
``dropped_items`` attribute and the log.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from pyproj import Transformer

from . import stac
from .grid import CubeGrid, cube_margin_m
from .inventory import read_glacier
from .io import GlacierInputError, run_glacier_step

log = logging.getLogger("glaciermap.acquire")

REFLECTANCE_SCALE = 1e-4


def epoch_window(epoch_cfg: dict, glacier_date: str) -> tuple[str, str]:
    """Date window of an epoch for one glacier (inventory-year epochs use the glacier's outline year)."""
    if epoch_cfg.get("inventory_year"):
        year = str(glacier_date)[:4]
        return f"{year}-{epoch_cfg['start']}", f"{year}-{epoch_cfg['end']}"
    return epoch_cfg["start"], epoch_cfg["end"]


def glacier_grid(glacier_row, grid_cfg: dict) -> CubeGrid:
    """Cube grid of a glacier: its bounding box in its working CRS plus the patch-derived margin."""
    bounds = [glacier_row[k] for k in ("xmin", "ymin", "xmax", "ymax")]
    margin = cube_margin_m(grid_cfg["patch_size"], grid_cfg["resolution"])
    return CubeGrid.around(bounds, glacier_row["crs"], grid_cfg["resolution"], margin)


def search_extent(glacier_row, cfg: dict, epoch: str) -> tuple[CubeGrid, tuple, str, str]:
    """Grid, lon/lat search box and date window of one glacier and epoch (the acquisition's query)."""
    grid = glacier_grid(glacier_row, cfg["grid"])
    start, end = epoch_window(cfg["epochs"][epoch], glacier_row["date"])
    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    return grid, to_ll.transform_bounds(*grid.bounds), start, end


def candidate_ids(glacier_row, cfg: dict, epoch: str, files: bool = False) -> list[str]:
    """Ids of the scenes the acquisition of this glacier and epoch will consider (for rerun triggers).

    ``files``: each id carries a token of its asset files' presence and size (:func:`stac.item_token`), so a
    missing or truncated scene file that comes back re-runs this acquisition.
    """
    scfg = cfg["stac"]
    _, bbox_ll, start, end = search_extent(glacier_row, cfg, epoch)
    items = stac.search_scenes(scfg["source"], scfg["collection"], bbox_ll, start, end, scfg["max_scene_cloud_cover"],
                               scfg.get("missing_cloud_cover", "keep"))
    if not files:
        return [it.id for it in items]
    keys = list(scfg["bands"].values()) + [scfg["scl_asset"]]
    return [stac.item_token(it, keys) for it in items]


def reflectance_offset(item, setting) -> float:
    """DN offset of an item: since processing baseline 04.00 L2A digital numbers carry +1000."""
    if setting != "auto":
        return float(setting)
    baseline = item.properties.get("s2:processing_baseline")
    try:
        return -1000.0 if baseline is not None and float(baseline) >= 4.0 else 0.0
    except ValueError:
        return 0.0


def _load_item(item, keys: list[str], grid: CubeGrid, nearest: tuple[str, ...] = ()) -> xr.Dataset:
    """Load the assets ``keys`` of one item onto the cube grid (bilinear, nearest for class layers)."""
    import odc.stac

    resampling = {k: ("nearest" if k in nearest else "bilinear") for k in keys}
    ds = odc.stac.load([item], bands=keys, geobox=grid.to_geobox(), resampling=resampling,
                       groupby="id", fail_on_error=True, chunks=None)
    return ds.isel(time=0)


def _culprit(item, keys: list[str], grid: CubeGrid) -> tuple[str, str]:
    """Which asset of a failing item is unreadable: load each alone."""
    for key in keys:
        try:
            _load_item(item, [key], grid)
        except Exception as e:  # noqa: BLE001 - any read failure names this asset
            return item.assets[key].get_absolute_href(), f"{type(e).__name__}: {e}"
    return item.self_href or item.id, "read error that no single asset reproduces"


def build_acquisition(glacier_id: str, epoch: str, cfg: dict, inventory_gpkg: str) -> tuple[xr.Dataset, dict]:
    row = read_glacier(inventory_gpkg, glacier_id).iloc[0]
    if row["qc_status"] != "ok":
        raise GlacierInputError(glacier_id, inventory_gpkg, f"not mapped: {row['qc_reason']}")
    scfg = cfg["stac"]
    grid, bbox_ll, start, end = search_extent(row, cfg, epoch)
    try:
        items = stac.search_scenes(scfg["source"], scfg["collection"], bbox_ll, start, end, scfg["max_scene_cloud_cover"],
                                   scfg.get("missing_cloud_cover", "keep"))
    except (FileNotFoundError, stac.StacSourceError) as e:
        raise GlacierInputError(glacier_id, scfg["source"], str(e)) from e
    if not items:
        raise GlacierInputError(glacier_id, scfg["source"],
                                f"no scene of collection '{scfg['collection']}' intersects the cube extent between {start} and {end} "
                                f"with cloud cover < {scfg['max_scene_cloud_cover']} %")
    assets = scfg["bands"]
    dropped, layers = [], []
    for item in items:
        keys = list(assets.values()) + [scfg["scl_asset"]]
        missing = [k for k in keys if k not in item.assets]
        if missing:
            why = f"item {item.id} lacks asset(s) {', '.join(missing)}"
            log.error("glacier %s: %s (file: %s)", glacier_id, why, item.self_href)
            dropped.append({"item_id": item.id, "file": item.self_href or "", "reason": why})
            continue
        try:
            ds = _load_item(item, keys, grid, nearest=(scfg["scl_asset"],))
        except Exception:  # noqa: BLE001 - find and name the unreadable file, keep the other candidates
            href, err = _culprit(item, keys, grid)
            why = f"item {item.id}: cannot read {href}: {err}"
            log.error("glacier %s: %s", glacier_id, why)
            dropped.append({"item_id": item.id, "file": href, "reason": why})
            continue
        offset = reflectance_offset(item, scfg["reflectance_offset"])
        scl = ds[scfg["scl_asset"]].values.astype(np.uint8)
        bands = {}
        for band, key in assets.items():
            dn = ds[key].values.astype(np.float32)
            refl = (dn + offset) * REFLECTANCE_SCALE
            refl[dn == 0] = np.nan
            bands[band] = np.where(np.isnan(refl), np.nan, np.clip(refl, REFLECTANCE_SCALE, 6.5)).astype(np.float32)
        if all(np.isnan(v).all() for v in bands.values()):
            dropped.append({"item_id": item.id, "file": item.self_href or "", "reason": "no data over the cube extent"})
            continue
        layers.append((item, bands, scl))
    if not layers:
        raise GlacierInputError(glacier_id, scfg["source"],
                                f"none of {len(items)} candidate scenes between {start} and {end} is usable: "
                                + "; ".join(d["reason"] for d in dropped))
    x, y = grid.coords()
    times = pd.DatetimeIndex([it.datetime.replace(tzinfo=None) for it, _, _ in layers])
    data = {band: (("time", "y", "x"), np.stack([b[band] for _, b, _ in layers])) for band in assets}
    data["SCL"] = (("time", "y", "x"), np.stack([s for _, _, s in layers]))
    out = xr.Dataset(data, coords={"time": times, "y": y, "x": x,
                                   "item_id": ("time", [it.id for it, _, _ in layers]),
                                   "scene_cloud_cover": ("time", [float(it.properties.get("eo:cloud_cover", np.nan)) for it, _, _ in layers])})
    out = out.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    for band in assets:
        out[band].attrs = {"long_name": f"Sentinel-2 {band} surface reflectance", "units": "1"}
    out["SCL"].attrs = {"long_name": "Sentinel-2 scene classification", "units": "1"}
    out.attrs.update({"window_start": start, "window_end": end, "stac_source": str(scfg["source"]),
                      "n_candidates": len(items), "dropped_items": json.dumps(dropped)})
    # An explicit encoding replaces rioxarray's, so the CRS link (grid_mapping) is restated here.
    enc = {band: {"dtype": "uint16", "scale_factor": REFLECTANCE_SCALE, "_FillValue": 0, "zlib": True, "complevel": 4,
                  "grid_mapping": "spatial_ref"} for band in assets}
    enc["SCL"] = {"dtype": "uint8", "zlib": True, "complevel": 4, "grid_mapping": "spatial_ref"}
    return out, enc


def acquire(glacier_id: str, epoch: str, cfg: dict, inventory_gpkg: str, out_nc: str) -> dict:
    return run_glacier_step("acquire", glacier_id, epoch, out_nc,
                            lambda: build_acquisition(glacier_id, epoch, cfg, inventory_gpkg))
