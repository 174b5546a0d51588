"""Every usable acquisition of one glacier (rule ``ts_acquisitions``, one job per glacier looping over its scenes).

Candidates: the items of each configured scene source (``timeseries.sources``: Landsat Collection 2 Level 2, or a
Sentinel-2 source carrying the model's bands) over the glacier's window from 1 January of the first year to 31
December of the last, through the same STAC code as every other step. Filters, in order, each a rejection reason:

* ``season``: the acquisition month outside the hemisphere's summer (``season.north`` May-October, ``season.south``
  November-April by default, as the paper), the hemisphere from the outline's centroid;
* ``scene_cloud``: the item's ``eo:cloud_cover`` at or above ``max_scene_cloud`` (paper: 10 %);
* ``unreadable``: a file that cannot be read (its message, naming the file, is logged; the glacier carries on);
* ``valid_share``: per-pixel masks (QA_PIXEL fill, cloud, dilated cloud, cloud shadow; SCL for Sentinel-2;
  Landsat 7's scan-line gaps are fill) leave less than ``min_valid_share`` of the glacier's domain observed.

The window (a grid at ``resolution``, windows read, never whole scenes) is the outline's bounds plus ``domain_m``.
The glacier's *domain* is every pixel within ``domain_m`` of its inventory outline that is nearer to it than to any
other outline: the glacier may have been larger in the past, and a neighbour's ice is never counted as its own.

Output: a NetCDF with named dimensions (time, y, x): each band in physical units (reflectance, kelvin; NaN where not
observed, and everywhere for a band the acquisition's source lacks, such as Sentinel-2's thermal), ``valid`` per
acquisition (observed in every band the source has), its ``source``, and static layers ``dem``, ``domain``, ``outline`` (inventory outline) and
``owner`` (index into the ``owner_ids`` attribute: the nearest glacier of every pixel, for the training's no-leak
mask), plus a CSV of every candidate with its status and reason.
"""

from __future__ import annotations

import functools
import json
import logging


import numpy as np
import pandas as pd

from glaciermap.io import GlacierInputError, write_csv_atomic, write_netcdf_atomic

log = logging.getLogger("glaciermap.timeseries.acquisitions")

CANDIDATE_COLUMNS = ["glacier_id", "source", "item_id", "datetime", "date", "year", "platform", "cloud_cover",
                     "valid_share", "status", "reason"]
REASONS = ("season", "scene_cloud", "unreadable", "valid_share")


def in_season(month: int, lat: float, season: dict) -> bool:
    """True when ``month`` lies in the summer window of the hemisphere of ``lat`` (windows may wrap the year end)."""
    a, b = season["north"] if lat >= 0 else season["south"]
    return a <= month <= b if a <= b else (month >= a or month <= b)


def glacier_window(geom, crs: str, resolution: float, domain_m: float):
    from glaciermap.data.grid import CubeGrid

    return CubeGrid.around(geom.bounds, crs, resolution, domain_m + 2 * resolution)


def domain_layers(glaciers, glacier_id: str, grid, domain_m: float) -> dict:
    """``outline`` (this glacier's inventory pixels), ``owner`` (index of the nearest outline of every pixel, into
    ``owner_ids``) and ``domain`` (nearest to this glacier and within ``domain_m`` of it) on ``grid``."""
    from rasterio.features import rasterize
    from scipy.ndimage import distance_transform_edt
    from shapely.geometry import box

    reach = box(grid.left - domain_m, grid.bottom - domain_m, grid.right + domain_m, grid.top + domain_m)
    near = glaciers[glaciers.intersects(reach)].reset_index(drop=True)
    ids = list(near["glac_id"].astype(str))
    if glacier_id not in ids:
        raise KeyError(glacier_id)
    # the glacier itself last, so that an overlap of outlines gives the pixel to it
    order = sorted(range(len(ids)), key=lambda i: ids[i] == glacier_id)
    lab = rasterize([(near.geometry[i], i + 1) for i in order], out_shape=grid.shape, transform=grid.transform,
                    fill=0, dtype="int32")
    me = ids.index(glacier_id) + 1
    outline = lab == me
    if not outline.any():  # a sliver under one pixel: its centre pixel stands for it
        c = near.geometry[me - 1].representative_point()
        r = min(max(int((grid.top - c.y) // grid.resolution), 0), grid.height - 1)
        k = min(max(int((c.x - grid.left) // grid.resolution), 0), grid.width - 1)
        lab[r, k] = me
        outline = lab == me
    if (lab > 0).all():
        owner = lab
    else:
        _, (iy, ix) = distance_transform_edt(lab == 0, return_indices=True)
        owner = lab[iy, ix]
    dist = distance_transform_edt(~outline) * grid.resolution
    domain = (owner == me) & (dist <= domain_m)
    return {"outline": outline, "owner": (owner - 1).astype(np.int32), "domain": domain, "owner_ids": ids}


def candidate_tokens(glacier_row, sources: dict, params: dict, crs: str) -> list[str]:
    """Ids (with a token of their files: :func:`glaciermap.data.stac.item_token`) of every item the glacier's
    acquisition job will consider: a Snakemake param, so that a new scene re-runs only the glaciers it covers.

    Called once per glacier while the DAG is built: the sources and each item's token are made once per process
    (a region's glaciers share their scenes), so a glacier costs one indexed catalog search.
    """
    from glaciermap.data.sources import cached_source

    bbox = _bbox_lonlat(glacier_row, crs, params)
    bands = tuple(params["bands"])
    out = []
    for name, cfg in sources.items():
        src = cached_source(name, cfg)
        for it in src.search(bbox, *_period(params)):
            out.append(_planning_token(src, bands, it))
    return sorted(out)


@functools.lru_cache(maxsize=None)
def _planning_token(src, bands: tuple, item) -> str:
    """``<source>:<item token>`` over the asset files the acquisition reads (its bands and mask) of one item of
    ``src`` (one object per source and config: :func:`glaciermap.data.sources.cached_source`)."""
    from glaciermap.data import stac

    keys = [src.band(b, item).asset for b in bands if b in src.provides] + ([src.mask.asset] if src.mask else [])
    return f"{src.name}:{stac.item_token(item, keys)}"


def _period(params: dict) -> tuple[str, str]:
    y0, y1 = (int(y) for y in params["years"])
    return f"{y0}-01-01", f"{y1}-12-31"


@functools.lru_cache(maxsize=8)
def _to_lonlat(crs: str):
    from pyproj import Transformer

    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def _bbox_lonlat(glacier_row, crs: str, params: dict) -> tuple:
    pad = float(params["domain_m"]) + 2 * float(params["resolution"])
    xmin, ymin, xmax, ymax = (float(glacier_row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
    t = _to_lonlat(crs)
    xs, ys = t.transform([xmin - pad, xmax + pad, xmin - pad, xmax + pad], [ymin - pad, ymin - pad, ymax + pad, ymax + pad])
    return (min(xs), min(ys), max(xs), max(ys))


def worker_warm(func: str, glacier_id: str, inventory_gpkg, dem_path, sources: dict, *args, **kwargs) -> None:
    """Run by the job worker before it forks the child of a :func:`run_ts_acquisitions` job: the sources' static
    catalogs are read once and shared by the children (re-read when a catalog file changes; :mod:`glaciermap.worker`)."""
    from glaciermap.data.sources import warm_catalogs

    warm_catalogs(sources)


def run_ts_acquisitions(glacier_id: str, inventory_gpkg, dem_path, sources: dict, params: dict, out_nc, out_csv) -> dict:
    """Search, filter and read every acquisition of one glacier; write the stack and the candidate table."""
    import xarray as xr
    from pyproj import Transformer

    from glaciermap.data.sources import build_source
    from glaciermap.facies.points import read_glaciers
    from glaciermap.facies.samples import read_dem

    glaciers = read_glaciers(inventory_gpkg)
    crs = str(glaciers.crs)
    row = glaciers[glaciers["glac_id"].astype(str) == glacier_id]
    if row.empty:
        raise GlacierInputError(f"glacier {glacier_id}: not among the mapped outlines of {inventory_gpkg}")
    geom = row.geometry.iloc[0]
    res, domain_m = float(params["resolution"]), float(params["domain_m"])
    bands = list(params["bands"])
    grid = glacier_window(geom, crs, res, domain_m)
    lay = domain_layers(glaciers, glacier_id, grid, domain_m)
    domain = lay["domain"]
    c = geom.centroid
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(c.x, c.y)
    xmin, ymin, xmax, ymax = geom.bounds
    bbox = _bbox_lonlat({"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}, crs, params)
    dem = read_dem(dem_path, grid)[0] if dem_path else np.full(grid.shape, np.nan, np.float32)
    rows, kept = [], []
    for name, cfg in sources.items():
        src = build_source(name, cfg)
        have = [b for b in bands if b in src.provides]   # a band the source lacks (Sentinel-2: thermal) stays NaN
        if len(have) < len(bands):
            log.info("glacier %s: source '%s' has no %s: left unobserved in its acquisitions", glacier_id, name,
                     ", ".join(b for b in bands if b not in have))
        try:
            items = src.search(bbox, *_period(params))
        except Exception as e:  # an unreadable catalog is a source problem: say which, and stop this glacier
            raise GlacierInputError(f"glacier {glacier_id}: time-series source '{name}': search failed: {e}") from e
        for it in sorted(items, key=lambda i: (i.datetime, i.id)):
            when = it.datetime
            cc = src.cloud_cover(it)
            rec = {"glacier_id": glacier_id, "source": name, "item_id": it.id,
                   "datetime": when.isoformat() if when else "", "date": when.date().isoformat() if when else "",
                   "year": when.year if when else -1, "platform": it.properties.get("platform", ""),
                   "cloud_cover": np.nan if cc is None else float(cc), "valid_share": np.nan, "status": "rejected",
                   "reason": ""}
            if when is None or not in_season(when.month, lat, params["season"]):
                rec["reason"] = "season"
            elif cc is not None and cc >= float(params["max_scene_cloud"]):
                rec["reason"] = "scene_cloud"
            else:
                try:
                    rd = src.read(grid, have, item=it, glacier_id=glacier_id, allow_all_fill=True)
                except (GlacierInputError, OSError, ValueError) as e:
                    log.warning("glacier %s: source '%s' item %s skipped (unreadable): %s", glacier_id, name, it.id, e)
                    rec["reason"] = "unreadable"
                    rows.append(rec)
                    continue
                stack = np.stack([rd.bands[b] if b in rd.bands else np.full(grid.shape, np.nan, np.float32)
                                  for b in bands]).astype(np.float32)
                valid = rd.masks.valid & np.isfinite(stack[[bands.index(b) for b in have]]).all(axis=0)
                share = float(valid[domain].mean()) if domain.any() else 0.0
                rec["valid_share"] = round(share, 4)
                if share < float(params["min_valid_share"]):
                    rec["reason"] = "valid_share"
                else:
                    rec["status"], rec["reason"] = "used", ""
                    stack[:, ~valid] = np.nan
                    kept.append((when, f"{name}:{it.id}", stack, valid, name))
            rows.append(rec)
    table = pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)
    x, y = grid.coords()
    times = np.array([np.datetime64(k[0].replace(tzinfo=None), "ns") for k in kept], dtype="datetime64[ns]")
    data = {b: (("time", "y", "x"), np.stack([k[2][i] for k in kept]) if kept else np.zeros((0, *grid.shape), np.float32))
            for i, b in enumerate(bands)}
    data["valid"] = (("time", "y", "x"), np.stack([k[3] for k in kept]).astype(np.uint8) if kept
                     else np.zeros((0, *grid.shape), np.uint8))
    data.update({"dem": (("y", "x"), dem.astype(np.float32)), "domain": (("y", "x"), domain.astype(np.uint8)),
                 "outline": (("y", "x"), lay["outline"].astype(np.uint8)), "owner": (("y", "x"), lay["owner"])})
    ds = xr.Dataset(data, coords={"time": times, "acquisition": ("time", [k[1] for k in kept]),
                                  "source": ("time", [k[4] for k in kept]), "y": y, "x": x},
                    attrs={"glacier_id": glacier_id, "crs": crs, "resolution": res, "latitude": float(lat),
                           "owner_ids": json.dumps(lay["owner_ids"]), "bands": json.dumps(bands),
                           "transform": json.dumps(list(grid.transform)[:6]), "domain_m": domain_m})
    enc = {b: {"zlib": True, "complevel": 4} for b in data}
    write_netcdf_atomic(out_nc, ds, enc)
    write_csv_atomic(out_csv, table)
    counts = table.loc[table["status"] == "rejected", "reason"].value_counts().to_dict()
    log.info("glacier %s: %d candidate acquisition(s), %d used, rejected %s", glacier_id, len(table), len(kept), counts)
    return {"n_candidates": len(table), "n_used": len(kept), "rejected": counts}
