"""Acquire: every candidate scene of the imagery source (``imagery``: Sentinel-2 L2A/L1C, Landsat C2 L2, ...)
for one glacier and epoch, read through :mod:`glaciermap.data.sources` onto its cube grid.

Output ``scenes/<glacier>/<epoch>.nc``: dims (time, y, x) on the cube grid; one variable per band named by its
common name (``blue``, ``green``, ``red``, ``nir``, ``swir1``, ...; the sensor's name in the ``sensor_band``
attribute), physical values stored losslessly as the source's uint16 digital numbers with its scale and offset
(Sentinel-2: reflectance x 1e-4, fill 0); the source's decoded masks ``mask_fill``, ``mask_cloud``,
``mask_shadow``, ``mask_snow`` (uint8; all 0 and ``has_cloud_mask`` = 0 for a source without a per-pixel
mask); per scene ``item_id``, ``scene_cloud_cover``, ``sun_azimuth``, ``sun_elevation``, ``platform``. A
candidate that cannot be read (missing asset, unreadable file, every pixel fill) is dropped, with its file and
reason in the ``dropped_items`` attribute, the log, and ``qc/dropped_candidates.csv``.
"""

from __future__ import annotations

import functools
import json
import logging

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from pyproj import Transformer

from glaciermap.data import stac
from glaciermap.data.grid import CubeGrid, cube_margin_m
from glaciermap.data.inventory import read_glacier
from glaciermap.io import GlacierInputError, run_glacier_step

log = logging.getLogger("glaciermap.data.acquire")

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


@functools.lru_cache(maxsize=64)
def _to_lonlat(crs) -> Transformer:
    """The transformer from ``crs`` to longitude/latitude: made once per CRS (making one costs ~0.2-0.4 ms, more
    than using it; the DAG build calls this twice for every glacier and epoch). pyproj transformers are thread-safe."""
    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def search_extent(glacier_row, cfg: dict, epoch: str) -> tuple[CubeGrid, tuple, str, str]:
    """Grid, lon/lat search box and date window of one glacier and epoch (the acquisition's query)."""
    grid = glacier_grid(glacier_row, cfg["grid"])
    start, end = epoch_window(cfg["epochs"][epoch], glacier_row["date"])
    return grid, _to_lonlat(grid.crs).transform_bounds(*grid.bounds), start, end


def imagery_source(cfg: dict):
    """The source named by ``imagery`` (``sources``, or ``s2`` made from the ``stac`` section)."""
    from glaciermap.config import source_configs
    from glaciermap.data.sources import cached_source

    name = cfg.get("imagery", "s2")
    return cached_source(name, source_configs(cfg)[name])


def _asset_keys(src, item) -> list[str]:
    """Asset keys the acquisition of ``item`` reads: its bands and its mask layer."""
    try:
        keys = [spec.asset for spec in src.bands(item).values()]
    except KeyError:  # e.g. a Landsat item of an unknown platform: the read names it
        keys = []
    return keys + ([src.mask.asset] if getattr(src, "mask", None) is not None else [])


def candidate_ids(glacier_row, cfg: dict, epoch: str, files: bool = False) -> list[str]:
    """Ids of the scenes the acquisition of this glacier and epoch will consider (for rerun triggers).

    ``files``: each id carries a token of its asset files' presence and size (:func:`stac.item_token`), so a
    missing or truncated scene file that comes back re-runs this acquisition.
    """
    return candidates(glacier_row, cfg, epoch, files=files)[0]


def candidates(glacier_row, cfg: dict, epoch: str, files: bool = False) -> tuple[list[str], float]:
    """(:func:`candidate_ids`, footprint coverage): one catalog search gives both while the DAG is built.

    The coverage is the largest share of the glacier's cube extent that one candidate's footprint (its STAC
    geometry) covers, 0 without a candidate. ``image selection`` skips a glacier when no scene has valid data
    on ``selection.min_valid_fraction`` of the cube; a footprint below that share means the same skip, known
    before any job runs (so the cross-validation split leaves the glacier out; issue 11). A footprint says
    where a scene may have data, not that it has: the scenes' own no-data is still checked by the selection.
    """
    src = imagery_source(cfg)
    grid, bbox_ll, start, end = search_extent(glacier_row, cfg, epoch)
    items = src.search(bbox_ll, start, end)
    ids = [stac.item_token(it, _asset_keys(src, it)) if files else it.id for it in items]
    return ids, footprint_coverage(grid, items)


def footprint_coverage(grid: CubeGrid, items) -> float:
    """Largest share of ``grid``'s extent inside one item's footprint (0.0 without items).

    The cube box is taken to longitude/latitude through its corners and edge points (21 per side): at a
    glacier's scale the map projection is affine to well under a pixel, so a ratio of areas in degrees is
    the ratio on the ground.
    """
    if not items:
        return 0.0
    from shapely.geometry import Polygon

    x0, y0, x1, y1 = grid.bounds
    t = np.linspace(0.0, 1.0, 21)
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full(21, x1), x1 - (x1 - x0) * t, np.full(21, x0)])
    ys = np.concatenate([np.full(21, y0), y0 + (y1 - y0) * t, np.full(21, y1), y1 - (y1 - y0) * t])
    lon, lat = _to_lonlat(grid.crs).transform(xs, ys)
    cube = Polygon(np.column_stack([lon, lat]))
    if not cube.area > 0:
        return 0.0
    return max(float(stac.footprint(it).intersection(cube).area / cube.area) for it in items)


def _layer_names(src, item) -> list[str]:
    """The names the acquisition stores: each default band by its common name (sensor name if it has none)."""
    names = []
    for d in src.default_bands:
        spec = src.band(d, item)
        names.append(spec.common_name or spec.name)
    return names


def band_encoding(spec) -> dict:
    """NetCDF encoding of one band: its digital numbers as uint16 with the source's scale and offset (lossless;
    fill 0) when the source declares a scale, else float32. Sentinel-2's per-item offset (``auto``) is applied
    before storing, so its scale alone (reflectance x 1e-4, as before the source registry) is used."""
    z = {"zlib": True, "complevel": 4, "grid_mapping": "spatial_ref"}
    if spec.scale not in (None, 1, 1.0):
        offset = 0.0 if isinstance(spec.offset, str) else float(spec.offset)
        enc = {"dtype": "uint16", "scale_factor": float(spec.scale), "_FillValue": 0, **z}
        if offset:
            enc["add_offset"] = offset
        return enc
    return {"dtype": "float32", "_FillValue": np.float32(np.nan), **z}


def _quantise(values: np.ndarray, enc: dict) -> np.ndarray:
    """Values as their uint16 encoding will store them, kept in 1..65535 (0 is the fill value)."""
    if enc.get("dtype") != "uint16":
        return values
    off, scale = enc.get("add_offset", 0.0), enc["scale_factor"]
    # half-up, as GDAL rounds a warp into integer digital numbers (the reads before the source registry); the
    # 1e-3 DN absorbs the float32 error of decoding before resampling, so x.5 DN stays x.5
    dn = np.clip(np.floor((values.astype(np.float64) - off) / scale + 0.5 + 1e-3), 1, 65535)
    return np.where(np.isfinite(values), dn * scale + off, np.nan).astype(np.float32)


def build_acquisition(glacier_id: str, epoch: str, cfg: dict, inventory_gpkg: str) -> tuple[xr.Dataset, dict]:
    """Every candidate scene of the imagery source over one glacier's cube grid: bands by common name as physical
    values, and the source's masks (fill, cloud, shadow, snow) when it has a per-pixel mask."""
    from glaciermap.data.sources import SourceConfigError

    row = read_glacier(inventory_gpkg, glacier_id).iloc[0]
    if row["qc_status"] != "ok":
        raise GlacierInputError(glacier_id, inventory_gpkg, f"not mapped: {row['qc_reason']}")
    src = imagery_source(cfg)
    grid, bbox_ll, start, end = search_extent(row, cfg, epoch)
    try:
        items = src.search(bbox_ll, start, end)
    except (FileNotFoundError, stac.StacSourceError, SourceConfigError) as e:
        raise GlacierInputError(glacier_id, src.stac_source, f"source '{src.name}': {e}") from e
    if not items:
        cc = f" with cloud cover < {src.max_cloud_cover} %" if src.max_cloud_cover is not None else ""
        raise GlacierInputError(glacier_id, src.stac_source,
                                f"source '{src.name}': no scene of collection '{src.collection}' intersects the cube "
                                f"extent between {start} and {end}{cc}")
    dropped, layers = [], []
    for item in items:
        try:
            names = _layer_names(src, item)
            res = src.read(grid, names, item=item, glacier_id=glacier_id)
        except KeyError as e:  # a band the item's platform does not have
            why = f"item {item.id}: {e.args[0] if e.args else e}"
            log.error("glacier %s: source '%s': %s (file: %s)", glacier_id, src.name, why, item.self_href)
            dropped.append({"item_id": item.id, "file": item.self_href or "", "reason": why})
            continue
        except GlacierInputError as e:  # names the file: missing asset, unreadable file, every pixel fill
            log.error("%s", e)
            where = e.path or item.self_href or ""
            dropped.append({"item_id": item.id, "file": where, "reason": f"{e.problem} (file: {where})"})
            continue
        specs = {n: src.band(n, item) for n in names}
        layers.append((item, res, specs))
    if not layers:
        raise GlacierInputError(glacier_id, src.stac_source,
                                f"source '{src.name}': none of {len(items)} candidate scenes between {start} and {end} "
                                "is usable: " + "; ".join(d["reason"] for d in dropped))
    names = []  # every band stored, in the order of the first scene that has it
    for _, r, _ in layers:
        names += [n for n in r.bands if n not in names]
    first_spec = {n: next(sp[n] for _, _, sp in layers if n in sp) for n in names}
    enc = {n: band_encoding(first_spec[n]) for n in names}
    x, y = grid.coords()
    times = pd.DatetimeIndex([it.datetime.replace(tzinfo=None) for it, _, _ in layers])
    nan = np.full(grid.shape, np.nan, np.float32)
    data = {n: (("time", "y", "x"), np.stack([_quantise(r.bands.get(n, nan), enc[n]) for _, r, _ in layers]))
            for n in names}
    has_mask = bool(layers[0][1].has_cloud_mask)
    for m in ("fill", "cloud", "shadow", "snow"):
        data[f"mask_{m}"] = (("time", "y", "x"), np.stack([getattr(r.masks, m) for _, r, _ in layers]).astype(np.uint8))
    out = xr.Dataset(data, coords={
        "time": times, "y": y, "x": x,
        "item_id": ("time", [it.id for it, _, _ in layers]),
        "scene_cloud_cover": ("time", [np.nan if src.cloud_cover(it) is None else float(src.cloud_cover(it))
                                       for it, _, _ in layers]),
        "sun_azimuth": ("time", [np.nan if r.attrs.get("sun_azimuth") is None else r.attrs["sun_azimuth"]
                                 for _, r, _ in layers]),
        "sun_elevation": ("time", [np.nan if r.attrs.get("sun_elevation") is None else r.attrs["sun_elevation"]
                                   for _, r, _ in layers]),
        "platform": ("time", [str(it.properties.get("platform", "")) for it, _, _ in layers])})
    out = out.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    for n in names:
        sp = first_spec[n]
        out[n].attrs = {"long_name": f"{src.kind} {n} ({sp.name})", "units": sp.units or "1",
                        "sensor_band": sp.name, "common_name": sp.common_name or ""}
    masks_doc = {"fill": "no data (mask layer or every band)", "cloud": "cloud", "shadow": "cloud shadow",
                 "snow": "snow (the mask layer's snow classes or bits)"}
    for m, what in masks_doc.items():
        out[f"mask_{m}"].attrs = {"long_name": f"{what} mask", "units": "1", "flag_values": np.array([0, 1], np.uint8),
                                  "flag_meanings": f"no {m}"}
        enc[f"mask_{m}"] = {"dtype": "uint8", "zlib": True, "complevel": 4, "grid_mapping": "spatial_ref"}
    out.attrs.update({"window_start": start, "window_end": end, "stac_source": str(src.stac_source),
                      "source": src.name, "source_kind": src.kind, "has_cloud_mask": int(has_mask),
                      "bands": " ".join(names), "n_candidates": len(items), "dropped_items": json.dumps(dropped)})
    return out, enc


def worker_warm(func: str, glacier_id: str, epoch: str, cfg: dict, *args, **kwargs) -> None:
    """Run by the job worker before it forks the child of an :func:`acquire` job: the imagery source's static
    catalog is read once and shared by the children (re-read when a catalog file changes; :mod:`glaciermap.worker`)."""
    from glaciermap.data.sources import warm_catalogs

    warm_catalogs(cfg["sources"])


def acquire(glacier_id: str, epoch: str, cfg: dict, inventory_gpkg: str, out_nc: str) -> dict:
    return run_glacier_step("acquire", glacier_id, epoch, out_nc,
                            lambda: build_acquisition(glacier_id, epoch, cfg, inventory_gpkg))
