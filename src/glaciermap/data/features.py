"""Features: one model-ready cube per (glacier, epoch) on the 10 m cube grid.

The cube is one layer stack, ``layers`` (band, y, x) float32 with a ``band`` coordinate of layer names
(per-layer ``band_long_name``, ``band_units``, ``band_description``, ``band_dn_scale``), one layer per chunk,
and the masks beside it (glacier labels, the glacier itself, its buffers, cloud and no data), CF grid mapping
``spatial_ref``. ``xr.open_dataset(path)["layers"].sel(band=["B04", "ndsi"])`` is all a user needs. Which
layers, and how each is computed, filled and normalised, is the channel registry (:mod:`glaciermap.data.channels`);
by default the cube holds today's layers (all 12 bands, NDSI/NDWI/NDVI, the DEM and its terrain attributes
(smoothed first, as DL4GAM), dh/dt), and only the sources the layers need are read. Reflectance layers hold
the value of their uint16 digital number (DN x 1e-4), exactly what the former uint16 variables gave back.

Inputs that cannot be used raise :class:`GlacierInputError` (the glacier is skipped with the glacier and file
named); an acquisition skip record raises :class:`UpstreamSkipped`. :func:`write_cube` turns both into a skip
record and writes atomically.

DEM: reprojected bilinearly onto the cube grid; NaN (nodata or outside the file) is tolerated up to
``max_dem_nan_fraction`` of the glacier + 50 m buffer and filled with the nearest valid value everywhere
(count in ``dem_nan_filled``), more skips the glacier. dh/dt: reprojected the same way, NaN kept; optional
(``dhdt_href=None``: no dhdt layer, ``dhdt_file`` = "none").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from glaciermap.data import channels, indices, terrain  # noqa: F401  (indices: kept for callers)
from glaciermap.data.channels import CHANNEL_SETS
from glaciermap.data.georef import write_georef
from glaciermap.data.grid import CubeGrid
from glaciermap.io import GlacierInputError, UpstreamSkipped, check_upstream, run_glacier_step
from glaciermap.data.masks import buffer_mask, glacier_masks

log = logging.getLogger("glaciermap.data.features")

#: The 16 DL4GAM input channels, in model order (``channels.CHANNEL_SETS["dl4gam"]``).
DL4GAM_CHANNELS = list(CHANNEL_SETS["dl4gam"])
#: The optical bands DL4GAM uses (no data in any of them sets ``mask_nodata``).
DL4GAM_BANDS = ["B04", "B03", "B02", "B08", "B11"]
S2_BANDS = list(channels.S2_BANDS)
REFLECTANCE_SCALE = channels.REFLECTANCE_SCALE
#: The layers a cube holds unless told otherwise: today's cube (12 bands, 3 indices, DEM, terrain, dh/dt).
DEFAULT_LAYERS = list(channels.DEFAULT_LAYERS)
#: Name of the layer-stack variable and of its layer dimension.
LAYERS_VAR, BAND_DIM = "layers", "band"
#: Region over which DEM gaps are counted (DL4GAM's glacier + 50 m buffer).
DEM_CHECK_BUFFER_M = 50.0

DEFAULT_PARAMS = {
    "dem_smoothing_sigma": 1.0,
    "max_dem_nan_fraction": 0.05,
    "curvature_clip": 50.0,          # m-1 x 100 (xdem units); None = no clipping
    "planform_flat_slope_deg": 1.0,  # planform curvature := 0 below this slope; None = xdem's own rule only
    "buffers_m": [20, 50],
    "id_column": "glac_id",
    "sun_azimuth_deg": None,         # None: the sun position at the scene's time over the cube centre
    "sun_elevation_deg": None,
}


def _mask_variables(buffers=(20, 50)) -> dict:
    """Mask name -> attributes, in cube order."""
    v = {}
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
                       "description": "1 = the imagery source's mask marks cloud or cloud shadow (Sentinel-2 SCL classes, "
                                      "Landsat QA_PIXEL bits; all 0 for a source without a per-pixel cloud mask)"}
    v["mask_nodata"] = {"long_name": "no-data mask", "units": "1", "flag_values": np.array([0, 1], np.uint8),
                        "flag_meanings": "valid nodata",
                        "description": "1 = fill in the imagery source's mask, or no data in any of the blue, green, "
                                       "red, nir and swir1 bands (B02 B03 B04 B08 B11)"}
    return v


_LAYERS_ATTRS = {"long_name": "feature layers",
                 "description": "input layers on the cube grid, one per band coordinate (float32, NaN = missing); "
                                "per-layer long name, units and description in band_long_name, band_units and "
                                "band_description; select with ds['layers'].sel(band=[...])"}


def _variables(buffers=(20, 50)) -> dict:
    """name -> attributes (long_name, units, description, optional CF extras) of the data variables, in cube order."""
    return {LAYERS_VAR: {**_LAYERS_ATTRS, "units": "see band_units"}, **_mask_variables(buffers)}


_COORDS = {
    "x": ("m", "easting of the pixel centre in the cube CRS (10 m grid, north-up)"),
    "y": ("m", "northing of the pixel centre in the cube CRS"),
    "band": ("1", "coordinate (dim band), str: layer names (channel registry names, glaciermap.data.channels), in cube order"),
    "band_long_name": ("1", "coordinate (dim band), str: long name of each layer"),
    "band_units": ("1", "coordinate (dim band), str: units of each layer (UDUNITS)"),
    "band_description": ("1", "coordinate (dim band), str: how each layer was computed"),
    "band_dn_scale": ("1", "coordinate (dim band), float64: > 0 where the layer is a digital number times this "
                           "step exactly (reflectance: uint16 DN x 1e-4, DN = round(value / step)); 0 for the other layers"),
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


def describe_layers(layers=None) -> list[tuple[str, str, str]]:
    """``(name, units, description)`` of the layers (default: DEFAULT_LAYERS), from the channel registry."""
    return [(n, a["units"], f"{a['long_name']}: {a['description']}")
            for n in (DEFAULT_LAYERS if layers is None else layers) for a in [channels.layer_attrs(n)]]


def variables_markdown(buffers=(20, 50)) -> str:
    """:func:`describe_variables` as a Markdown table, then the default layers (:func:`describe_layers`)."""
    rows = ["| variable | units | description |", "| --- | --- | --- |"]
    rows += [f"| `{n}` | {u} | {d} |" for n, u, d in describe_variables(buffers)]
    rows += ["", "| layer (`band`) | units | description |", "| --- | --- | --- |"]
    rows += [f"| `{n}` | {u} | {d} |" for n, u, d in describe_layers()]
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


def warp_to_grid(href, grid: CubeGrid, glacier_id: str, what: str, band: int = 1) -> np.ndarray:
    """Band ``band`` of a raster (path or URL) reprojected bilinearly onto ``grid`` as float32, nodata -> NaN."""
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
            if band > src.count:
                raise GlacierInputError(glacier_id, href, f"{what} has {src.count} band(s), band {band} is needed")
            reproject(source=rasterio.band(src, band), destination=dst, src_transform=src.transform, src_crs=src.crs,
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


#: Masks of an acquisition in the source-registry format (bands by common name).
SCENE_MASKS = ["mask_fill", "mask_cloud", "mask_shadow"]
_COMMON_OF = {b: c for c, b in channels.COMMON_BANDS.items()}


@dataclass
class SceneLayers:
    """The chosen scene as the layer computation needs it: bands by common name, masks, grid, date, sun."""

    bands: dict          # common name (``red``, ``swir1`` ...; the sensor name if it has none) -> float32 (y, x)
    cloud: np.ndarray    # bool: cloud or cloud shadow
    nodata: np.ndarray   # bool: no data (mask/SCL classes or NaN in a DL4GAM band)
    x: np.ndarray
    y: np.ndarray
    grid: CubeGrid
    date: str
    time: object
    sun: tuple | None    # (azimuth, elevation) deg from the acquisition, None if it has none


def _load_scene(acquisition_nc, glacier_id: str, item_id: str) -> SceneLayers:
    """The chosen scene of an acquisition (h5py: see glaciermap.data.scenes): its bands by common name (attribute
    ``bands``), the source's ``mask_fill``/``mask_cloud``/``mask_shadow`` and the scene's sun angles."""
    from glaciermap.data.netcdf import MissingVariablesError, read_attrs
    from glaciermap.data.scenes import read_scenes

    meta = read_attrs(acquisition_nc)
    band_names = str(meta.get("bands", "")).split()
    try:
        scenes = read_scenes(acquisition_nc, band_names + SCENE_MASKS + ["sun_azimuth", "sun_elevation"], item_id)
    except MissingVariablesError as e:
        raise GlacierInputError(glacier_id, acquisition_nc, f"acquisition lacks variable(s) {', '.join(e.names)}") from e
    except LookupError as e:
        raise GlacierInputError(glacier_id, acquisition_nc, f"chosen {e.args[0]}") from e
    if scenes.crs is None:
        raise GlacierInputError(glacier_id, acquisition_nc, "acquisition has no CRS (spatial_ref)")
    v = scenes.bands
    bands = {n: v[n].astype(np.float32) for n in band_names}
    cloud = v["mask_cloud"].astype(bool) | v["mask_shadow"].astype(bool)
    nodata = v["mask_fill"].astype(bool)
    for b in DL4GAM_BANDS:
        c = _COMMON_OF[b]
        if c in bands:
            nodata |= ~np.isfinite(bands[c])
    az, el = float(v["sun_azimuth"]), float(v["sun_elevation"])  # NaN where the catalog had no angles
    sun = (az, el) if np.isfinite(az) and np.isfinite(el) else None
    return SceneLayers(bands, cloud, nodata, scenes.x, scenes.y, scenes.grid, scenes.times[0].isoformat(),
                       scenes.times[0], sun)


def _read_raster_source(spec: dict, role: str, grid: CubeGrid, when, glacier_id: str,
                        record: dict | None = None) -> np.ndarray:
    """A raster layer from a source of the registry: a ``raster`` or ``raster_per_year`` source (read for the
    scene's year) gives velocity as the stack (vx, vy) in the grid's axes when the source has components, else
    (magnitude, 0), and any other role as one band; a scene source (``landsat_c2l2`` for ``temperature``) gives the
    near-date composite of the role's band (:func:`glaciermap.data.sources.neardate.near_date_composite`: the
    ``near_date.n_dates`` usable dates nearest to the scene's date, cloud / shadow / fill masked, averaged).
    A read error (no mosaic for the year, no coverage, unreadable file; a required composite without a usable
    date) skips the glacier with the source and file named (GlacierInputError). ``record``: filled with what was
    read (source, kind, files, items and dates of a composite), for the cube attributes."""
    from glaciermap.data.sources import SCENE_CHANNEL_BANDS, build_source, near_date_composite

    source = build_source(spec["name"], spec["config"])
    record = {} if record is None else record
    if source.item_based:
        band = SCENE_CHANNEL_BANDS.get(role)
        if band is None:  # the config check refuses this before any job
            raise ValueError(f"channel source {role}: source '{source.name}' ({source.kind}) is a scene source; "
                             f"only {', '.join(SCENE_CHANNEL_BANDS)} may come from one")
        comp = near_date_composite(source, grid, band, when, glacier_id)
        record.update(comp.attrs)
        return comp.values[None]
    if role == "velocity" and {"vx", "vy"} <= set(source.bands()):
        res = source.read(grid, ["vx", "vy"], when=when, glacier_id=glacier_id)
        out = np.stack([res.bands["vx"], res.bands["vy"]]).astype(np.float32)
    else:
        res = source.read(grid, None, when=when, glacier_id=glacier_id)
        first = next(iter(res.bands.values())).astype(np.float32)
        out = np.stack([first, np.zeros_like(first)]) if role == "velocity" else first[None]
    files = res.attrs.get("files") or {}
    record.update({"source": source.name, "kind": source.kind,
                   "files": " ".join(str(files[k]) for k in sorted(files)) if isinstance(files, dict) else str(files)})
    if res.attrs.get("year") is not None:
        record["year"] = int(res.attrs["year"])
    return out


def _source_label(spec) -> str:
    """What to name for a raster source in messages and attributes: the file, or the registry source's name."""
    if isinstance(spec, dict):
        return f"source '{spec.get('name')}'"
    return str(spec)


def _sun_from(scene_time, grid: CubeGrid):
    """The sun position at ``scene_time`` over the centre of ``grid`` (lazy: only hillshade/cast_shadow ask)."""
    def sun():
        from pyproj import Transformer

        left, bottom, right, top = grid.bounds
        lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform((left + right) / 2,
                                                                                          (bottom + top) / 2)
        return terrain.sun_position(scene_time, lon, lat)

    return sun


def build_cube(acquisition_nc, selection_csv, inventory_gpkg, glacier_id: str, epoch: str, dem_href, dhdt_href,
               params: dict | None = None, layers=None, sources: dict | None = None) -> tuple[xr.Dataset, dict]:
    """Build the feature cube of one glacier and epoch: ``(dataset, encoding)`` for ``to_netcdf``.

    ``layers``: the layers to build (channel registry names, in stack order); default :data:`DEFAULT_LAYERS`
    (without ``dhdt`` when ``dhdt_href`` is None or "", and without the band layers a non-Sentinel-2 scene cannot
    give; named layers it cannot give skip the glacier). Only the sources those layers need are read: no DEM
    without a DEM layer, no dh/dt map without ``dhdt``. ``sources``: further raster sources (``velocity``,
    ``coherence``, ``temperature``) for layers that need them: a file href, or a source of the registry
    ``{"name": ..., "config": {...}}`` (``temperature`` may be a ``landsat_c2l2`` source: the near-date composite
    of its thermal band, see :func:`_read_raster_source`); what was read is in the ``<source>_*`` attributes. A layer list naming an unknown
    channel, or a layer whose source is not given, raises :class:`glaciermap.data.channels.ChannelError` /
    ValueError (a configuration error, not a glacier problem).
    """
    p = {**DEFAULT_PARAMS, **(params or {})}
    glacier_id = str(glacier_id)
    default = layers is None
    if layers is None:
        layers = [c for c in DEFAULT_LAYERS if c != "dhdt" or dhdt_href]
    layers, need = channels.cube_layers(layers)
    sources = {**(sources or {}), "dem": dem_href, "dhdt": dhdt_href}
    lacking = [s for s in need if s not in ("sentinel2", "sun") and not sources.get(s)]
    if lacking:
        users = [c for c in layers if set(channels.get_channel(c).sources) & set(lacking)]
        raise ValueError(f"layer(s) {', '.join(users)} need the source(s) {', '.join(lacking)}, which are not given")
    check_upstream(acquisition_nc, glacier_id)
    item_id = chosen_item(selection_csv, glacier_id)
    scene = _load_scene(acquisition_nc, glacier_id, item_id)
    grid, date = scene.grid, scene.date
    shape = grid.shape
    for b in list(scene.bands.values())[:1] + [scene.nodata]:
        if b.shape != shape:
            raise GlacierInputError(glacier_id, acquisition_nc, f"band shape {b.shape} does not match its grid {shape}")

    # masks
    idc = p["id_column"]
    glaciers = read_glaciers(inventory_gpkg, grid, glacier_id, idc)
    buffers = [float(b) for b in p["buffers_m"]]
    m = glacier_masks(glaciers, glacier_id, grid, buffers=buffers, id_column=idc)
    check_key = f"buffer_{int(DEM_CHECK_BUFFER_M)}m"
    check = m[check_key] if check_key in m else buffer_mask(glaciers, glacier_id, grid, DEM_CHECK_BUFFER_M,
                                                             m["labels"], m["ids"], idc)
    n_check = int(check.sum())

    dem, n_filled, nan_frac = None, "none", "none"
    if "dem" in need:
        # DEM: reproject, check gaps over glacier + 50 m, fill (the dem layer's fill rule: nearest)
        dem = warp_to_grid(dem_href, grid, glacier_id, "DEM")
        valid = np.isfinite(dem)
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

    dhdt, dh_frac, dh_frac_cube = None, "none", "none"
    if "dhdt" in need:
        # dh/dt: NaN stays NaN
        dhdt = warp_to_grid(dhdt_href, grid, glacier_id, "dh/dt map")
        dh_bad = ~np.isfinite(dhdt)
        dh_frac = float(dh_bad[check].sum() / n_check) if n_check else 0.0
        dh_frac_cube = float(dh_bad.mean())
        if dh_frac > 0:
            log.warning("glacier %s: dh/dt has %.1f %% NaN over glacier + %g m (%.1f %% of the cube), kept as NaN (file: %s)",
                        glacier_id, 100 * dh_frac, DEM_CHECK_BUFFER_M, 100 * dh_frac_cube, dhdt_href)

    bands, cloud, nodata = scene.bands, scene.cloud, scene.nodata

    # layers, from the channel registry (indices.py and terrain.py do the work)
    clip = p.get("curvature_clip")
    flat = p.get("planform_flat_slope_deg")
    if p.get("sun_azimuth_deg") is not None and p.get("sun_elevation_deg") is not None:
        sun = (p["sun_azimuth_deg"], p["sun_elevation_deg"])
    elif scene.sun is not None:
        sun = scene.sun
    else:
        sun = _sun_from(scene.time, grid)
    rasters, read_info = {}, {}
    for src in channels.RASTER_SOURCES:
        if src not in need:
            continue
        nb, what = (2 if src == "velocity" else 1), f"{src} raster"
        if isinstance(sources[src], dict):  # a source of the registry: {"name": ..., "config": {...}}
            rasters[src] = (lambda spec=sources[src], role=src:
                            _read_raster_source(spec, role, grid, scene.time, glacier_id,
                                                read_info.setdefault(role, {})))
        else:  # a raster file: band 1 (and 2: vy) as they are
            rasters[src] = (lambda h=sources[src], n=nb, w=what:
                            np.stack([warp_to_grid(h, grid, glacier_id, w, band=k + 1) for k in range(n)]))
    ctx = channels.LayerContext(grid.resolution, bands=bands, dem=dem, dhdt=dhdt, rasters=rasters, sun=sun,
                                params={"dem_smoothing_sigma": p["dem_smoothing_sigma"], "curvature_clip": clip,
                                        "planform_flat_slope_deg": flat})
    stack = {}
    for name in layers:
        ch = channels.get_channel(name)
        try:
            v = channels.compute_layer(name, ctx)
        except channels.MissingInputError as e:
            if default and "sentinel2" in ch.sources:   # default layers: those the source's bands allow
                log.info("glacier %s: no layer %s (%s)", glacier_id, name, e)
                continue
            raise GlacierInputError(glacier_id, acquisition_nc, f"layer {name}: {e}") from e
        try:
            v, _ = channels.apply_fill(name, v)
        except ValueError as e:
            src = next((s for s in ch.sources if s not in ("sentinel2", "sun")), None)
            if src is None:
                where = acquisition_nc
            elif isinstance(sources.get(src), dict):
                info = read_info.get(src, {})
                where = info.get("files") if info.get("files") not in (None, "none") else None
                e = ValueError(f"{_source_label(sources[src])} ({src}): {e}"
                               + (f" (items {info['items']}, window {info['window']})" if "items" in info else ""))
            else:
                where = sources.get(src)
            raise GlacierInputError(glacier_id, where, str(e)) from e
        stack[name] = v  # reflectance is quantised to its uint16 DN by cube_dataset

    masks = {"mask_glacier_id": m["labels"].astype(np.int32), "mask_glacier": m["glacier"].astype(np.uint8)}
    for b in buffers:
        masks[f"mask_buffer_{int(b)}m"] = m[f"buffer_{int(b)}m"].astype(np.uint8)
    masks["mask_cloud"] = cloud.astype(np.uint8)
    masks["mask_nodata"] = nodata.astype(np.uint8)

    attrs = {
        "title": f"glaciermap feature cube, glacier {glacier_id}, epoch {epoch}",
        "Conventions": "CF-1.8",
        "conventions": "CF-1.8",
        "glacier_id": glacier_id,
        "epoch": str(epoch),
        "date": date,
        "item_id": item_id,
        "crs": grid.crs,
        "resolution_m": grid.resolution,
        "dem_file": str(dem_href) if dem is not None else "none",
        "dhdt_file": str(dhdt_href) if dhdt is not None else "none",
        "dem_nan_filled": int(n_filled) if dem is not None else "none",
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
    if "sun" in need:
        attrs["sun_azimuth_deg"], attrs["sun_elevation_deg"] = ctx.sun
    for s in need:
        if s in ("sentinel2", "sun", "dem", "dhdt"):
            continue
        if not isinstance(sources[s], dict):
            attrs[f"{s}_file"] = str(sources[s])
            continue
        # a registry source: what was read (a near-date composite: its window, items and dates)
        info = read_info.get(s, {})
        attrs[f"{s}_source"] = str(sources[s].get("name"))
        attrs[f"{s}_file"] = str(info.get("files", "none"))
        for k, v in info.items():
            if k not in ("source", "files"):
                attrs[f"{s}_{k}"] = v
    ds = cube_dataset(stack, masks, scene.x, scene.y, m["ids"], grid.crs, grid.transform, attrs=attrs, buffers=buffers,
                      id_column=idc)
    return ds, cube_encoding(ds)


def cube_dataset(layers: dict, masks: dict, x, y, glacier_ids, crs, transform, attrs: dict | None = None,
                 buffers=(20, 50), id_column: str = "glac_id") -> xr.Dataset:
    """The cube as a Dataset: ``layers`` (band, y, x) float32 with per-band coordinates, the masks beside it.

    ``layers``: name -> 2-D array (stack order = dict order); ``masks``: name -> 2-D array (mask_glacier_id
    int32, the others uint8). Masks and layers get the attributes of :func:`describe_variables` and the
    channel registry. Reflectance layers (registry ``quantise``) are stored as the value of their uint16
    digital number (:func:`glaciermap.data.channels.quantise_reflectance`, the numbers the former uint16 x 1e-4
    variables gave back), and ``band_dn_scale`` says so (1e-4; 0 for the other layers). Used by
    :func:`build_cube` and by tests that write cubes by hand.
    """
    names = list(layers)
    h, w = len(y), len(x)
    stack = np.empty((len(names), h, w), np.float32)
    dn_scale = np.zeros(len(names), np.float64)
    for i, n in enumerate(names):
        if channels.get_channel(n).quantise:
            stack[i] = channels.quantise_reflectance(layers[n])
            dn_scale[i] = REFLECTANCE_SCALE
        else:
            stack[i] = layers[n]
    meta = [channels.layer_attrs(n) for n in names]
    mattrs = _mask_variables(buffers)
    coords = {"band": (BAND_DIM, np.array(names, dtype=object),
                       {"long_name": "layer name", "description": _COORDS["band"][1]}),
              "band_long_name": (BAND_DIM, np.array([a["long_name"] for a in meta], dtype=object),
                                 {"long_name": "long name of each layer"}),
              "band_units": (BAND_DIM, np.array([a["units"] for a in meta], dtype=object),
                             {"long_name": "units of each layer"}),
              "band_description": (BAND_DIM, np.array([a["description"] for a in meta], dtype=object),
                                   {"long_name": "description of each layer"}),
              "band_dn_scale": (BAND_DIM, dn_scale,
                                {"long_name": "digital-number step of each layer", "units": "1",
                                 "description": _COORDS["band_dn_scale"][1]}),
              "y": ("y", np.asarray(y)), "x": ("x", np.asarray(x)),
              "glacier_ids": ("glacier", np.array([str(g) for g in glacier_ids], dtype=object))}
    data = {LAYERS_VAR: ((BAND_DIM, "y", "x"), stack, {**_LAYERS_ATTRS})}
    for k, v in masks.items():
        a = mattrs.get(k) or {"long_name": k.replace("_", " "), "units": "1", "description": k}
        data[k] = (("y", "x"), np.asarray(v), dict(a))
    ds = xr.Dataset(data, coords=coords)
    ds["glacier_ids"].attrs = {"long_name": "glacier identifiers", "units": "1",
                               "description": f"ids ({id_column}) of every usable inventory glacier (qc_status ok or "
                                              "small) intersecting the cube, sorted; mask_glacier_id indexes this list"}
    ds = write_georef(ds, crs, transform)
    ds["x"].attrs.update(units="m", description="easting of the pixel centre")
    ds["y"].attrs.update(units="m", description="northing of the pixel centre")
    ds["spatial_ref"].attrs.update(units="1", description="coordinate reference system (CF grid mapping)")
    ds["spatial_ref"].attrs.setdefault("long_name", "coordinate reference system")
    ds.attrs = dict(attrs or {})
    return ds


def cube_encoding(ds: xr.Dataset, complevel: int = 4) -> dict:
    """NetCDF encoding: layers float32 (NaN fill), one layer per chunk; masks uint8/int32; zlib + shuffle everywhere."""
    z = {"zlib": True, "complevel": complevel, "shuffle": True}
    enc = {}
    for name, var in ds.data_vars.items():
        if name == LAYERS_VAR:
            enc[name] = {"dtype": "float32", "_FillValue": np.float32(np.nan),
                         "chunksizes": (1,) + tuple(var.shape[1:]), **z}
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
               params: dict | None, out_nc, layers=None, sources: dict | None = None) -> dict:
    """Build and write one cube atomically; a bad input becomes a skip record naming glacier and file."""
    return run_glacier_step("features", glacier_id, epoch, out_nc,
                            lambda: build_cube(acquisition_nc, selection_csv, inventory_gpkg, glacier_id, epoch,
                                               dem_href, dhdt_href, params, layers, sources))
