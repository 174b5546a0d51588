"""Facies maps with calibrated confidence, and per glacier and scene the snow-cover ratio, snowline and albedo
(rule ``facies_maps``, one job per year).

Scenes: every item of the facies source within ``window_days`` of the reference day (paper: 20 August +- 20 days,
the end of the ablation season) of the year, with ``eo:cloud_cover`` at most ``max_cloud_cover``.

Each glacier is mapped on its own window (outline bounds + ``halo_px``, read from the scene once per glacier: windows,
never whole scenes), with its own normalised elevation and outline distance (as its samples were), by the CNN of
the fold that held the glacier out (its test fold: the map of a glacier with points is out-of-sample), or by the
mean of every fold's probabilities for a glacier without points. The network runs densely
(:func:`glaciermap.facies.network.predict_dense`: every pixel's patch at once). Confidence = the fold's kernel
ridge calibration curve at the top class probability (mean over folds for an ensemble).

Per glacier and scene (the inventory outline's pixels; ``surface`` = pixels of a surface class, i.e. not shadow,
cloud or fill):

- ``snow_aar`` = snow pixels / surface pixels (the accumulation-area-ratio proxy);
- ``snowline_norm`` = (h_snow - z_mean) / (z_max - z_min), h_snow the 5th percentile of the snow pixels'
  elevations (paper eq. 2; NaN without snow);
- ``albedo``: mean shortwave broadband albedo of the surface pixels, Liang (2001) for Landsat TM/ETM+/OLI,
  0.356 blue + 0.130 red + 0.373 nir + 0.085 swir1 + 0.072 swir2 - 0.0018;
- ``valid_share`` = surface pixels / outline pixels, and the share of every class.

Outputs: ``<scene>_facies.tif`` (uint8 class index, 255 = not mapped; class names in the band description and tags)
and ``<scene>_confidence.tif`` (float32) per scene on one grid around all glaciers, and a CSV of the statistics.
"""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from glaciermap.io import GlacierInputError, write_csv_atomic

log = logging.getLogger("glaciermap.facies.maps")

LIANG = {"blue": 0.356, "red": 0.130, "nir": 0.373, "swir1": 0.085, "swir2": 0.072}
LIANG_OFFSET = -0.0018
NODATA = 255
STAT_COLUMNS = ["glacier_id", "scene_id", "date", "year", "fold", "n_px", "valid_share", "snow_aar", "snowline_m",
                "snowline_norm", "albedo"]


def window(year: int, reference: str, days: int) -> tuple[str, str]:
    m, d = (int(v) for v in reference.split("-"))
    ref = date(year, m, d)
    return (ref - timedelta(days=days)).isoformat(), (ref + timedelta(days=days)).isoformat()


def liang_albedo(bands: dict) -> np.ndarray:
    missing = [b for b in LIANG if b not in bands]
    if missing:
        raise KeyError(f"Liang (2001) albedo needs the bands {', '.join(LIANG)} (missing {', '.join(missing)})")
    return sum(w * bands[b] for b, w in LIANG.items()) + LIANG_OFFSET


def calibrate_conf(p_top: np.ndarray, curve: pd.DataFrame) -> np.ndarray:
    return np.interp(p_top, curve["score"].to_numpy(), curve["calibrated"].to_numpy())


def glacier_statistics(cls: np.ndarray, inside: np.ndarray, z: np.ndarray, albedo: np.ndarray, classes, snow_class: str,
                       surface_classes, stats: dict) -> dict:
    """Snow-cover ratio, snowline (absolute and normalised), albedo, valid share and class shares of one glacier."""
    idx = {c: i for i, c in enumerate(classes)}
    mapped = inside & (cls != NODATA)
    surface = mapped & np.isin(cls, [idx[c] for c in surface_classes])
    snow = surface & (cls == idx[snow_class])
    n_in, n_sf = int(inside.sum()), int(surface.sum())
    zs = z[snow & np.isfinite(z)]
    h_snow = float(np.percentile(zs, 5)) if zs.size else np.nan
    span = max(stats["z_max"] - stats["z_min"], 1.0)
    alb = albedo[surface & np.isfinite(albedo)]
    out = {"n_px": n_in, "valid_share": n_sf / n_in if n_in else 0.0,
           "snow_aar": int(snow.sum()) / n_sf if n_sf else np.nan,
           "snowline_m": h_snow, "snowline_norm": (h_snow - stats["z_mean"]) / span if zs.size else np.nan,
           "albedo": float(alb.mean()) if alb.size else np.nan}
    for c, i in idx.items():
        out[f"share_{c}"] = int((mapped & (cls == i)).sum()) / n_in if n_in else 0.0
    return out


def _write_tif(path: Path, arr: np.ndarray, grid, dtype: str, nodata, description: str, tags: dict) -> None:
    import rasterio

    from glaciermap.io import atomic_path

    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", driver="GTiff", height=grid.height, width=grid.width, count=1, dtype=dtype,
                           crs=grid.crs, transform=grid.transform, nodata=nodata, compress="deflate", tiled=True,
                           blockxsize=256, blockysize=256) as dst:
            dst.write(arr.astype(dtype), 1)
            dst.set_band_description(1, description)
            dst.update_tags(**tags)


def run_facies_maps(year: int, model_paths, curves_csv, points_gpkg, stats_csv, inventory_gpkg, dem_path,
                    source_name: str, source_cfg: dict, params: dict, out_dir, out_csv) -> dict:
    """Map every glacier on every scene of ``year``'s window; write the rasters and the statistics table."""
    import torch

    from glaciermap.data.sources import build_source
    from glaciermap.facies.network import predict_dense
    from glaciermap.facies.points import read_glaciers, read_points
    from glaciermap.facies.samples import (SHADOW_MARGIN_M, TERRAIN, crop, feature_stack, glacier_grid, glacier_layers,
                                           rasterize_outline, read_dem, terrain_layers)
    from glaciermap.facies.train import load_model

    torch.set_num_threads(int(params.get("threads", 1)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes, channels, bands = list(params["classes"]), list(params["channels"]), list(params["bands"])
    res, halo, psize = float(params["resolution"]), int(params["halo_px"]), int(params["patch_size"])
    models = {}
    for p in model_paths:
        m, meta = load_model(p)
        if list(meta["channels"]) != channels or list(meta["classes"]) != classes:
            raise ValueError(f"facies model {p}: channels/classes {meta['channels']}/{meta['classes']} differ from the "
                             f"configured {channels}/{classes}: re-run facies_train")
        models[int(meta["fold"])] = m
    curves = pd.read_csv(curves_csv)
    curve_of = {int(k): g.sort_values("score") for k, g in curves.groupby("fold")}
    fold_of = read_points(points_gpkg).groupby("glacier_id")["fold"].first().to_dict()
    gstats = pd.read_csv(stats_csv, dtype={"glacier_id": str}).set_index("glacier_id")
    glaciers = read_glaciers(inventory_gpkg)
    crs = str(glaciers.crs)
    source = build_source(source_name, source_cfg)
    start, end = window(int(year), params["reference"], int(params["window_days"]))
    items = source.search(tuple(float(v) for v in glaciers.to_crs("EPSG:4326").total_bounds), start, end)
    items = [it for it in items if (source.cloud_cover(it) is None or source.cloud_cover(it) <= params["max_cloud_cover"])]
    region = glacier_grid(tuple(glaciers.total_bounds), crs, res, halo)
    rows = []
    missing_stats = [g for g in glaciers["glac_id"] if g not in gstats.index]
    if missing_stats:
        from glaciermap.facies.samples import glacier_stats

        extra = glacier_stats(glaciers[glaciers["glac_id"].isin(missing_stats)], dem_path, res).set_index("glacier_id")
        gstats = pd.concat([gstats, extra])
    want = [c for c in channels if c in TERRAIN]
    # a region small enough (max_region_mpx) is read once per scene (bands, terrain) and cut per glacier; a larger
    # one per glacier window (bounded memory at any region size)
    whole = region.width * region.height <= float(params.get("max_region_mpx", 25.0)) * 1e6
    dem = read_dem(dem_path, region, SHADOW_MARGIN_M if "cast_shadow" in want else 2 * res) if whole else None
    for item in sorted(items, key=lambda it: it.datetime):
        cls_map = np.full(region.shape, NODATA, np.uint8)
        conf_map = np.full(region.shape, np.nan, np.float32)
        n_ok = 0
        if whole:
            try:
                rd_all = source.read(region, bands, item=item, glacier_id="region", allow_all_fill=True)
            except GlacierInputError as e:
                log.warning("facies maps %s: scene not mapped: %s", item.id, e)
                continue
            terr_all = terrain_layers(dem_path, region, rd_all.attrs.get("sun_azimuth"),
                                      rd_all.attrs.get("sun_elevation"), want, dem=dem)
        for g in glaciers.itertuples():
            gid = g.glac_id
            grid = glacier_grid(g.geometry.bounds, crs, res, halo)
            if whole:
                gb = {b: crop(rd_all.bands[b], region, grid) for b in bands}
                terr = {k: crop(v, region, grid) for k, v in terr_all.items()}
            else:
                try:
                    rd = source.read(grid, bands, item=item, glacier_id=gid, allow_all_fill=True)
                except GlacierInputError as e:
                    log.warning("facies maps %s: glacier %s not mapped: %s", item.id, gid, e)
                    continue
                gb = rd.bands
                terr = terrain_layers(dem_path, grid, rd.attrs.get("sun_azimuth"), rd.attrs.get("sun_elevation"), want)
            fill = ~np.isfinite(np.stack([gb[b] for b in bands])).all(axis=0)
            if fill.all():
                continue
            st = gstats.loc[gid].to_dict()
            glay = glacier_layers(g.geometry, grid, terr["z"], st, channels)
            stack = np.nan_to_num(feature_stack(channels, gb, terr, glay), nan=0.0)
            k = fold_of.get(gid)
            use = [k] if k in models else sorted(models)
            probs = []
            for f in use:
                logits = predict_dense(models[f], stack, window=psize)
                e = np.exp(logits - logits.max(axis=0, keepdims=True))
                probs.append(e / e.sum(axis=0, keepdims=True))
            p = np.mean(probs, axis=0)
            cls = p.argmax(axis=0).astype(np.uint8)
            conf = np.mean([calibrate_conf(np.take_along_axis(q, cls[None].astype(int), 0)[0], curve_of[f])
                            for q, f in zip(probs, use)], axis=0)
            cls[fill] = NODATA
            inside = rasterize_outline(g.geometry, grid)
            s = glacier_statistics(cls, inside, terr["z"], liang_albedo(gb), classes, params["snow_class"],
                                   params["surface_classes"], st)
            rows.append({"glacier_id": gid, "scene_id": item.id, "date": item.datetime.date().isoformat(),
                         "year": int(year), "fold": -1 if k is None else int(k), **s})
            # paste the glacier's pixels into the scene mosaic
            r0 = int(round((region.top - grid.top) / res))
            c0 = int(round((grid.left - region.left) / res))
            sub = (slice(r0, r0 + grid.height), slice(c0, c0 + grid.width))
            put = inside & (cls != NODATA)
            cls_map[sub][put] = cls[put]
            conf_map[sub][put] = conf[put]
            n_ok += 1
        tags = {"classes": json.dumps(classes), "scene_id": item.id, "source": source_name,
                "class_values": ", ".join(f"{i}={c}" for i, c in enumerate(classes))}
        _write_tif(out_dir / f"{item.id}_facies.tif", cls_map, region, "uint8", NODATA,
                   "facies class (" + ", ".join(f"{i} {c}" for i, c in enumerate(classes)) + ")", tags)
        _write_tif(out_dir / f"{item.id}_confidence.tif", conf_map, region, "float32", float("nan"),
                   "calibrated confidence of the facies class", tags)
        log.info("facies maps %s: %d glaciers mapped", item.id, n_ok)
    df = pd.DataFrame(rows)
    if df.empty:   # a year without a scene in its window: the header alone, every column a user reads
        df = pd.DataFrame(columns=STAT_COLUMNS + [f"share_{c}" for c in classes])
    write_csv_atomic(out_csv, df)
    return {"year": int(year), "n_scenes": len(items), "n_rows": int(len(df))}
