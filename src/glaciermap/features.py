"""Features: one model-ready cube per (glacier, epoch) on the 10 m cube grid.

The cube holds the chosen Sentinel-2 scene (all 12 bands), NDSI/NDWI/NDVI, the DEM and its terrain
attributes (smoothed first, as DL4GAM), the dh/dt map and the masks (glacier labels, the glacier itself,
its buffers, cloud and no data). Inputs that cannot be used raise :class:`GlacierInputError` (the
glacier is skipped with the glacier and file named); an acquisition skip record raises
:class:`UpstreamSkipped`. :func:`write_cube` turns both into a skip record and writes atomically.

DEM: reprojected bilinearly onto the cube grid; NaN (nodata or outside the file) is tolerated up to
``max_dem_nan_fraction`` of the glacier + 50 m buffer and filled with the nearest valid value everywhere
(count in ``dem_nan_filled``), more skips the glacier. dh/dt: reprojected the same way, NaN kept.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import xarray as xr

from . import indices, terrain
from .georef import write_georef
from .grid import CubeGrid
from .io import GlacierInputError, UpstreamSkipped, check_upstream, run_glacier_step
from .masks import buffer_mask, glacier_masks

log = logging.getLogger("glaciermap.features")

#: The 16 DL4GAM input channels, in model order.
DL4GAM_CHANNELS = ["B04", "B03", "B02", "B08", "B11", "ndsi", "ndwi", "ndvi", "dem", "slope", "aspect_sin",
                   "aspect_cos", "tri", "curv_planform", "curv_profile", "dhdt"]
#: The optical bands DL4GAM uses (no data in any of them sets ``mask_nodata``).
DL4GAM_BANDS = ["B04", "B03", "B02", "B08", "B11"]
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
REFLECTANCE_SCALE = 1e-4
#: Region over which DEM gaps are counted (DL4GAM's glacier + 50 m buffer).
DEM_CHECK_BUFFER_M = 50.0

DEFAULT_PARAMS = {
    "dem_smoothing_sigma": 1.0,
    "max_dem_nan_fraction": 0.05,
    "curvature_clip": 50.0,          # m-1 x 100 (xdem units); None = no clipping
    "planform_flat_slope_deg": 1.0,  # planform curvature := 0 below this slope; None = xdem's own rule only
    "buffers_m": [20, 50],
    "cloud_classes": [8, 9, 10],
    "shadow_classes": [3],
    "nodata_classes": [0],
    "id_column": "glac_id",
}

_BAND_INFO = {
    "B01": ("coastal aerosol", 443, 60), "B02": ("blue", 490, 10), "B03": ("green", 560, 10),
    "B04": ("red", 665, 10), "B05": ("red edge 1", 705, 20), "B06": ("red edge 2", 740, 20),
    "B07": ("red edge 3", 783, 20), "B08": ("near infrared", 842, 10), "B8A": ("narrow near infrared", 865, 20),
    "B09": ("water vapour", 945, 60), "B11": ("shortwave infrared 1", 1610, 20), "B12": ("shortwave infrared 2", 2190, 20),
}
_CURV_UNITS = "hm-1"  # 1/(100 m): xdem's "m-1 x 100"


def _variables(buffers=(20, 50)) -> dict:
    """name -> attributes (long_name, units, description, optional CF extras), in cube order."""
    v = {}
    for b in S2_BANDS:
        name, wl, res = _BAND_INFO[b]
        v[b] = {"long_name": f"Sentinel-2 {b} ({name}) surface reflectance", "units": "1",
                "standard_name": "surface_bidirectional_reflectance",
                "description": f"L2A bottom-of-atmosphere reflectance of the chosen scene, {wl} nm, native {res} m, "
                               "bilinear onto the 10 m grid; stored as uint16 x 1e-4, 0 = no data"}
    v["ndsi"] = {"long_name": "normalised difference snow index", "units": "1",
                 "description": "(B03 - B11) / (B03 + B11), NaN where the sum is 0 or a band has no data, clipped to [-1, 1]"}
    v["ndwi"] = {"long_name": "normalised difference water index (McFeeters)", "units": "1",
                 "description": "(B03 - B08) / (B03 + B08), NaN where the sum is 0 or a band has no data, clipped to [-1, 1]"}
    v["ndvi"] = {"long_name": "normalised difference vegetation index", "units": "1",
                 "description": "(B08 - B04) / (B08 + B04), NaN where the sum is 0 or a band has no data, clipped to [-1, 1]"}
    v["dem"] = {"long_name": "surface elevation", "units": "m", "standard_name": "surface_altitude",
                "description": "DEM bilinearly reprojected onto the cube grid (not smoothed); gaps filled with the "
                               "nearest valid value (count in the dem_nan_filled attribute)"}
    v["slope"] = {"long_name": "terrain slope", "units": "degree",
                  "description": "Horn (1981) slope of the DEM smoothed with a 3x3 Gaussian (sigma dem_smoothing_sigma px); "
                                 "DL4GAM divides it by 90 instead of standardising"}
    v["aspect_sin"] = {"long_name": "sine of terrain aspect", "units": "1",
                       "description": "sin(aspect), aspect = downslope direction clockwise from north (Horn 1981, "
                                      "smoothed DEM; flat cells have aspect 180 deg); +1 = facing east"}
    v["aspect_cos"] = {"long_name": "cosine of terrain aspect", "units": "1",
                       "description": "cos(aspect), as aspect_sin; +1 = facing north"}
    v["tri"] = {"long_name": "terrain ruggedness index", "units": "m",
                "description": "Riley et al. (1999): sqrt of the summed squared elevation differences to the 8 "
                               "neighbours, smoothed DEM"}
    v["curv_planform"] = {"long_name": "planform curvature", "units": _CURV_UNITS,
                          "description": "contour curvature (Zevenbergen & Thorne 1987 fit, xdem 0.2.3 formula, "
                                         "1/(100 m), positive convex) of the smoothed DEM; set to 0 where slope < "
                                         "planform_flat_slope_deg and clipped to +-curvature_clip (dataset attributes)"}
    v["curv_profile"] = {"long_name": "profile curvature", "units": _CURV_UNITS,
                         "description": "geometric slope-line curvature (Zevenbergen & Thorne 1987 fit, xdem 0.2.3 "
                                        "formula, 1/(100 m), positive convex) of the smoothed DEM; clipped to +-curvature_clip"}
    v["dhdt"] = {"long_name": "surface elevation change rate", "units": "m year-1",
                 "description": "dh/dt map of the epoch bilinearly reprojected onto the cube grid; NaN where the map "
                                "has no data (training fills it with 0)"}
    v["mask_glacier_id"] = {"long_name": "glacier label", "units": "1",
                            "description": "index into the glacier_ids coordinate of the glacier covering the pixel "
                                           "(all inventory glaciers intersecting the cube), -1 = no glacier"}
    v["mask_glacier"] = {"long_name": "glacier mask", "units": "1", "flag_values": np.array([0, 1], np.uint8),
                         "flag_meanings": "outside glacier",
                         "description": "1 = pixel of this glacier (rasterised outline, pixel centres)"}
    for b in buffers:
        v[f"mask_buffer_{int(b)}m"] = {
            "long_name": f"glacier + {int(b)} m buffer mask", "units": "1", "flag_values": np.array([0, 1], np.uint8),
            "flag_meanings": "outside inside",
            "description": f"1 = this glacier or within {int(b)} m of it, excluding pixels of other glaciers"}
    v["mask_cloud"] = {"long_name": "cloud or cloud shadow mask", "units": "1", "flag_values": np.array([0, 1], np.uint8),
                       "flag_meanings": "clear cloud_or_shadow",
                       "description": "1 = scene classification (SCL) is cloud (cloud_classes) or cloud shadow (shadow_classes)"}
    v["mask_nodata"] = {"long_name": "no-data mask", "units": "1", "flag_values": np.array([0, 1], np.uint8),
                        "flag_meanings": "valid nodata",
                        "description": "1 = no data in any of B02 B03 B04 B08 B11, or SCL in nodata_classes"}
    return v


_COORDS = {
    "x": ("m", "easting of the pixel centre in the cube CRS (10 m grid, north-up)"),
    "y": ("m", "northing of the pixel centre in the cube CRS"),
    "glacier_ids": ("1", "coordinate (dim glacier), str: ids of every usable inventory glacier intersecting the cube, "
                         "sorted; mask_glacier_id indexes it"),
    "spatial_ref": ("1", "CF grid mapping holding the CRS (rioxarray); every data variable points to it"),
}


def describe_variables(buffers=(20, 50), coords: bool = True) -> list[tuple[str, str, str]]:
    """``(name, units, description)`` of every cube variable in cube order, then the coordinates (README table)."""
    rows = [(n, a["units"], f"{a['long_name']}: {a['description']}") for n, a in _variables(buffers).items()]
    if coords:
        rows += [(n, u, d) for n, (u, d) in _COORDS.items()]
    return rows


def variables_markdown(buffers=(20, 50)) -> str:
    """:func:`describe_variables` as a Markdown table."""
    rows = ["| variable | units | description |", "| --- | --- | --- |"]
    rows += [f"| `{n}` | {u} | {d} |" for n, u, d in describe_variables(buffers)]
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------------- inputs


def chosen_item(selection_csv, glacier_id: str) -> str:
    """Item id of the scene chosen by the selection step; GlacierInputError if there is none."""
    try:
        sel = pd.read_csv(selection_csv, dtype={"item_id": str, "glacier_reason": str, "glacier_status": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise GlacierInputError(glacier_id, selection_csv, f"cannot read the selection table: {e}") from e
    missing = [c for c in ("item_id", "chosen") if c not in sel.columns]
    if missing:
        raise GlacierInputError(glacier_id, selection_csv, f"selection table lacks column(s) {', '.join(missing)}")
    chosen = sel["chosen"]
    if chosen.dtype != bool:
        chosen = chosen.astype(str).str.strip().str.lower().isin(["true", "1", "1.0", "yes"])
    win = sel[chosen.to_numpy()]
    if len(win) == 0:
        reasons = [r for r in sel.get("glacier_reason", pd.Series(dtype=str)).dropna().astype(str) if r.strip()]
        why = reasons[0] if reasons else "no candidate is marked as chosen"
        raise UpstreamSkipped(glacier_id, selection_csv, why, step="select")
    if len(win) > 1:
        raise GlacierInputError(glacier_id, selection_csv,
                                f"{len(win)} images marked as chosen ({', '.join(win['item_id'].astype(str))}); expected one")
    row = win.iloc[0]
    if "glacier_status" in sel.columns and str(row.get("glacier_status", "ok")) not in ("ok", "nan"):
        raise GlacierInputError(glacier_id, selection_csv, f"selection status {row['glacier_status']}: {row.get('glacier_reason', '')}")
    return str(row["item_id"])


def read_glaciers(inventory_gpkg, grid: CubeGrid, glacier_id: str, id_column: str = "glac_id"):
    """Usable outlines (``qc_status`` ok or small) intersecting the cube extent, in the cube CRS.

    Only features whose bounding box meets the cube extent (transformed to the file's CRS, layer
    ``glaciers`` if present, else the first) are read; the same rows select.py uses for its masks.
    """
    import geopandas as gpd
    import pyogrio
    from pyproj import Transformer
    from shapely.geometry import box

    try:
        layers = [str(n) for n in pyogrio.list_layers(inventory_gpkg)[:, 0]]
        layer = "glaciers" if "glaciers" in layers else layers[0]
        info = pyogrio.read_info(inventory_gpkg, layer=layer)
        if not info.get("crs"):
            raise GlacierInputError(glacier_id, inventory_gpkg, "inventory layer has no CRS")
        to_file = Transformer.from_crs(grid.crs, info["crs"], always_xy=True)
        bbox = to_file.transform_bounds(*grid.bounds, densify_pts=21)
        gdf = gpd.read_file(inventory_gpkg, layer=layer, bbox=tuple(bbox), engine="pyogrio")
    except GlacierInputError:
        raise
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as e:
        raise GlacierInputError(glacier_id, inventory_gpkg, f"cannot read the inventory: {e}") from e
    if id_column not in gdf.columns:
        raise GlacierInputError(glacier_id, inventory_gpkg, f"inventory has no column '{id_column}'")
    if "qc_status" in gdf.columns:
        gdf = gdf[gdf["qc_status"].isin(["ok", "small"])]
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    gdf = gdf.assign(**{id_column: gdf[id_column].astype(str)}).to_crs(grid.crs)
    gdf = gdf[gdf.intersects(box(*grid.bounds))]  # the bbox read is only a coarse filter
    if not (gdf[id_column] == str(glacier_id)).any():
        raise GlacierInputError(glacier_id, inventory_gpkg,
                                "glacier not found among the usable outlines (qc_status ok/small) intersecting its cube extent")
    return gdf


def warp_to_grid(href, grid: CubeGrid, glacier_id: str, what: str) -> np.ndarray:
    """Band 1 of a raster (path or URL) reprojected bilinearly onto ``grid`` as float32, nodata -> NaN."""
    import rasterio
    from rasterio._err import CPLE_BaseError
    from rasterio.enums import Resampling
    from rasterio.errors import CRSError, RasterioError
    from rasterio.warp import reproject

    dst = np.full(grid.shape, np.nan, dtype=np.float32)
    try:
        with rasterio.open(href) as src:
            if src.crs is None:
                raise GlacierInputError(glacier_id, href, f"{what} has no CRS")
            reproject(source=rasterio.band(src, 1), destination=dst, src_transform=src.transform, src_crs=src.crs,
                      src_nodata=src.nodata, dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=np.nan,
                      resampling=Resampling.bilinear)
    except GlacierInputError:
        raise
    except (RasterioError, CPLE_BaseError, CRSError, OSError) as e:
        raise GlacierInputError(glacier_id, href, f"cannot read the {what}: {type(e).__name__}: {e}") from e
    return dst


def fill_nearest(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """Fill NaN with the nearest valid value (Euclidean, via distance transform); returns (filled, count)."""
    from scipy.ndimage import distance_transform_edt

    bad = ~np.isfinite(arr)
    n = int(bad.sum())
    if n == 0:
        return arr, 0
    if n == arr.size:
        raise ValueError("nothing to fill from: every value is NaN")
    idx = distance_transform_edt(bad, return_distances=False, return_indices=True)
    return arr[tuple(idx)], n


# ---------------------------------------------------------------------------------------------------- cube


def _load_scene(acquisition_nc, glacier_id: str, item_id: str):
    """Bands and SCL of the chosen scene, the cube grid and the scene's date (h5py: see glaciermap.scenes)."""
    from .netcdf import MissingVariablesError
    from .scenes import read_scenes

    try:
        scenes = read_scenes(acquisition_nc, S2_BANDS + ["SCL"], item_id)
    except MissingVariablesError as e:
        raise GlacierInputError(glacier_id, acquisition_nc, f"acquisition lacks variable(s) {', '.join(e.names)}") from e
    except LookupError as e:
        raise GlacierInputError(glacier_id, acquisition_nc, f"chosen {e.args[0]}") from e
    if scenes.crs is None:
        raise GlacierInputError(glacier_id, acquisition_nc, "acquisition has no CRS (spatial_ref)")
    return scenes, scenes.grid, scenes.times[0].isoformat()


def build_cube(acquisition_nc, selection_csv, inventory_gpkg, glacier_id: str, epoch: str, dem_href, dhdt_href,
               params: dict | None = None) -> tuple[xr.Dataset, dict]:
    """Build the feature cube of one glacier and epoch: ``(dataset, encoding)`` for ``to_netcdf``."""
    p = {**DEFAULT_PARAMS, **(params or {})}
    glacier_id = str(glacier_id)
    check_upstream(acquisition_nc, glacier_id)
    item_id = chosen_item(selection_csv, glacier_id)
    scene, grid, date = _load_scene(acquisition_nc, glacier_id, item_id)
    shape = grid.shape
    if scene.bands["B02"].shape != shape:
        raise GlacierInputError(glacier_id, acquisition_nc,
                                f"band shape {scene.bands['B02'].shape} does not match its grid {shape}")

    # masks
    idc = p["id_column"]
    glaciers = read_glaciers(inventory_gpkg, grid, glacier_id, idc)
    buffers = [float(b) for b in p["buffers_m"]]
    m = glacier_masks(glaciers, glacier_id, grid, buffers=buffers, id_column=idc)
    check_key = f"buffer_{int(DEM_CHECK_BUFFER_M)}m"
    check = m[check_key] if check_key in m else buffer_mask(glaciers, glacier_id, grid, DEM_CHECK_BUFFER_M,
                                                             m["labels"], m["ids"], idc)

    # DEM: reproject, check gaps over glacier + 50 m, fill
    dem = warp_to_grid(dem_href, grid, glacier_id, "DEM")
    valid = np.isfinite(dem)
    n_check = int(check.sum())
    nan_frac = float((~valid[check]).sum() / n_check) if n_check else 0.0
    if not valid.any():
        raise GlacierInputError(glacier_id, dem_href, "DEM has no valid value on the cube grid (does it cover the glacier?)")
    if nan_frac > p["max_dem_nan_fraction"]:
        raise GlacierInputError(glacier_id, dem_href,
                                f"DEM has {100 * nan_frac:.1f} % NaN over the glacier + {DEM_CHECK_BUFFER_M:g} m buffer "
                                f"(at most {100 * p['max_dem_nan_fraction']:.1f} % allowed)")
    dem, n_filled = fill_nearest(dem)
    if n_filled:
        log.warning("glacier %s: filled %d DEM NaN pixels (%.2f %% of the cube, %.2f %% of glacier + %g m) with the "
                    "nearest valid value (file: %s)", glacier_id, n_filled, 100 * n_filled / dem.size, 100 * nan_frac,
                    DEM_CHECK_BUFFER_M, dem_href)

    # dh/dt: NaN stays NaN
    dhdt = warp_to_grid(dhdt_href, grid, glacier_id, "dh/dt map")
    dh_bad = ~np.isfinite(dhdt)
    dh_frac = float(dh_bad[check].sum() / n_check) if n_check else 0.0
    dh_frac_cube = float(dh_bad.mean())
    if dh_frac > 0:
        log.warning("glacier %s: dh/dt has %.1f %% NaN over glacier + %g m (%.1f %% of the cube), kept as NaN (file: %s)",
                    glacier_id, 100 * dh_frac, DEM_CHECK_BUFFER_M, 100 * dh_frac_cube, dhdt_href)

    # terrain
    clip = p.get("curvature_clip")
    flat = p.get("planform_flat_slope_deg")
    ter = terrain.terrain_attributes(dem, grid.resolution, sigma=p["dem_smoothing_sigma"], curvature_clip=clip,
                                     flat_slope_deg=flat)

    # optical bands, indices, scene masks
    bands = {b: scene.bands[b].astype(np.float32) for b in S2_BANDS}
    scl = scene.bands["SCL"]
    if np.issubdtype(scl.dtype, np.floating):
        scl = np.where(np.isfinite(scl), scl, p["nodata_classes"][0] if p["nodata_classes"] else 0)
    scl = scl.astype(np.int64)
    cloud = np.isin(scl, list(p["cloud_classes"]) + list(p["shadow_classes"]))
    nodata = np.isin(scl, list(p["nodata_classes"]))
    for b in DL4GAM_BANDS:
        nodata |= ~np.isfinite(bands[b])

    g, r, nir, swir = bands["B03"], bands["B04"], bands["B08"], bands["B11"]
    data = dict(bands)
    data["ndsi"] = indices.ndsi(g, swir)
    data["ndwi"] = indices.ndwi(g, nir)
    data["ndvi"] = indices.ndvi(nir, r)
    data["dem"] = dem
    for k in ("slope", "aspect_sin", "aspect_cos", "tri", "curv_planform", "curv_profile"):
        data[k] = ter[k]
    data["dhdt"] = dhdt
    data = {k: v.astype(np.float32, copy=False) for k, v in data.items()}
    data["mask_glacier_id"] = m["labels"].astype(np.int32)
    data["mask_glacier"] = m["glacier"].astype(np.uint8)
    for b in buffers:
        data[f"mask_buffer_{int(b)}m"] = m[f"buffer_{int(b)}m"].astype(np.uint8)
    data["mask_cloud"] = cloud.astype(np.uint8)
    data["mask_nodata"] = nodata.astype(np.uint8)

    attrs = _variables(buffers)
    coords = {"y": ("y", scene.y), "x": ("x", scene.x),
              "glacier_ids": ("glacier", np.array(m["ids"], dtype=object))}
    ds = xr.Dataset({k: (("y", "x"), v, attrs[k]) for k, v in data.items()}, coords=coords)
    ds["glacier_ids"].attrs = {"long_name": "glacier identifiers", "units": "1",
                               "description": f"ids ({idc}) of every usable inventory glacier (qc_status ok or small) "
                                              "intersecting the cube, sorted; mask_glacier_id indexes this list"}
    ds = write_georef(ds, grid.crs, grid.transform)
    ds["x"].attrs.update(units="m", description="easting of the pixel centre")
    ds["y"].attrs.update(units="m", description="northing of the pixel centre")
    ds["spatial_ref"].attrs.update(units="1", description="coordinate reference system (CF grid mapping)")
    ds["spatial_ref"].attrs.setdefault("long_name", "coordinate reference system")
    ds.attrs = {
        "title": f"glaciermap feature cube, glacier {glacier_id}, epoch {epoch}",
        "Conventions": "CF-1.8",
        "conventions": "CF-1.8",
        "glacier_id": glacier_id,
        "epoch": str(epoch),
        "date": date,
        "item_id": item_id,
        "crs": grid.crs,
        "resolution_m": grid.resolution,
        "dem_file": str(dem_href),
        "dhdt_file": str(dhdt_href),
        "dem_nan_filled": int(n_filled),
        "dem_nan_fraction": nan_frac,
        "dhdt_nan_fraction": dh_frac,
        "dhdt_nan_fraction_cube": dh_frac_cube,
        "nan_fraction_region": f"glacier + {DEM_CHECK_BUFFER_M:g} m buffer (excluding other glaciers)",
        "dem_smoothing_sigma": float(p["dem_smoothing_sigma"] or 0.0),
        "curvature_clip": "none" if clip is None else float(clip),
        "planform_flat_slope_deg": "none" if flat is None else float(flat),
        "dl4gam_channels": " ".join(DL4GAM_CHANNELS),
        "source_acquisition": str(acquisition_nc),
        "source_selection": str(selection_csv),
        "source_inventory": str(inventory_gpkg),
    }
    return ds, cube_encoding(ds)


def cube_encoding(ds: xr.Dataset, complevel: int = 4) -> dict:
    """NetCDF encoding: bands uint16 x 1e-4 (fill 0), masks uint8/int32, the rest float32; zlib everywhere."""
    z = {"zlib": True, "complevel": complevel, "shuffle": True}
    enc = {}
    for name, var in ds.data_vars.items():
        if name in S2_BANDS:
            enc[name] = {"dtype": "uint16", "scale_factor": REFLECTANCE_SCALE, "_FillValue": 0, **z}
        elif name == "mask_glacier_id":
            enc[name] = {"dtype": "int32", "_FillValue": None, **z}
        elif name.startswith("mask_"):
            enc[name] = {"dtype": "uint8", "_FillValue": None, **z}
        elif var.ndim == 2:
            enc[name] = {"dtype": "float32", "_FillValue": np.float32(np.nan), **z}
        if name in enc and "spatial_ref" in ds.coords:
            # an explicit encoding replaces the one rioxarray set: keep the CF grid_mapping link
            enc[name]["grid_mapping"] = "spatial_ref"
    for name in ("x", "y"):
        enc[name] = {"_FillValue": None, **z}
    return enc


def write_cube(acquisition_nc, selection_csv, inventory_gpkg, glacier_id: str, epoch: str, dem_href, dhdt_href,
               params: dict | None, out_nc) -> dict:
    """Build and write one cube atomically; a bad input becomes a skip record naming glacier and file."""
    return run_glacier_step("features", glacier_id, epoch, out_nc,
                            lambda: build_cube(acquisition_nc, selection_csv, inventory_gpkg, glacier_id, epoch,
                                               dem_href, dhdt_href, params))
