"""The other sensors of the demo region: files, truth tables and STAC collections (see the package docstring).

``generate_sensors`` renders what the preset's ``sensors`` entry asks for into ``<root>/inputs/...`` and
``<root>/truth/...`` and returns the new ``pystac.Collection`` objects (asset hrefs absolute; the catalog
builder makes them relative). It draws only from its own RNG stages (100+) and never touches the
Sentinel-2 L2A scenes, the DEM, dh/dt, the inventory or the existing truth.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .glaciers import RES_DEM, RES_TRUTH
from .writers import COG_MEDIA, CRS, _asset_proj, _lonlat, _transform, write_cog

SENSOR_NAMES = ("landsat", "sentinel1", "coherence", "velocity", "sentinel2_l1c")
_EXT = {
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "view": "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "sar": "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
}
_W = None  # the world shared with forked workers


def write_cog_bands(path, arr: np.ndarray, transform, nodata, threads: int = 1) -> None:
    """Multi-band COG (bands first), same options as ``write_cog``."""
    import rasterio
    from rasterio.enums import Resampling

    n, h, w = arr.shape
    prof = dict(driver="COG", width=w, height=h, count=n, dtype=arr.dtype.name, crs=CRS, transform=transform,
                nodata=nodata, compress="DEFLATE", level=1, predictor=3 if arr.dtype.kind == "f" else 2,
                blocksize=512 if min(h, w) > 512 else 256, overviews="FORCE_USE_EXISTING",
                num_threads=str(threads), bigtiff="NO")
    factors = [f for f in (4, 16) if min(h, w) // f >= 100]
    with rasterio.open(path, "w", **prof) as ds:
        ds.write(arr)
        if factors:
            ds.build_overviews(factors, Resampling["average"])


def _dt(s: str) -> datetime:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _region(W):
    import shapely

    x1, y1 = W.x0 + W.w10 * RES_TRUTH, W.y0 - W.h10 * RES_TRUTH
    lon, lat = _lonlat([W.x0, x1, x1, W.x0], [W.y0, W.y0, y1, y1])
    poly = shapely.Polygon(np.round(np.c_[lon, lat], 7))
    return poly, [float(v) for v in poly.bounds]


def _collection(cid, desc, title, W, dts):
    import pystac

    _, bbox = _region(W)
    return pystac.Collection(cid, desc, pystac.Extent(pystac.SpatialExtent([bbox]),
                                                      pystac.TemporalExtent([[min(dts), max(dts)]])),
                             license="CC-BY-4.0", title=title)


def _item(W, item_id, dt, props, exts, start=None, end=None):
    import pystac
    from shapely.geometry import mapping

    poly, bbox = _region(W)
    props = {"proj:code": CRS, "proj:epsg": 32632, **props}
    if start:
        props["start_datetime"], props["end_datetime"] = start, end
    return pystac.Item(item_id, mapping(poly), bbox, dt, props, stac_extensions=[_EXT[e] for e in exts])


def _proj(W, res: float, shape) -> dict:
    """STAC projection fields of a grid anchored at the region's upper-left corner (may end short of it)."""
    h, w = int(shape[0]), int(shape[1])
    t = _transform(W, res)
    return {"proj:shape": [h, w], "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "proj:bbox": [W.x0, W.y0 - h * res, W.x0 + w * res, W.y0]}


def _asset(path, title, roles, extra):
    import pystac

    return pystac.Asset(str(Path(path).resolve()), title=title, media_type=COG_MEDIA, roles=roles, extra_fields=extra)


def _pool_map(fn, jobs, workers: int):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    n = max(1, min(workers, os.cpu_count() or 1))
    if n > 1 and "fork" in mp.get_all_start_methods() and len(jobs) > 1:
        with ProcessPoolExecutor(n, mp_context=mp.get_context("fork")) as ex:
            return list(ex.map(fn, jobs))
    return [fn(j) for j in jobs]


# ---------------------------------------------------------------------------------------------------- Landsat


def _write_scene(out_dir, arrays: dict, res: float, mask_key: str, mask_nodata, nodata, threads: int) -> None:
    """One rendered scene's arrays as COGs: its mask/QA layer ``mask_key`` nearest-resampled, the rest averaged."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        is_mask = key == mask_key
        write_cog(out_dir / f"{key}.tif", arr, _transform(_W, res), mask_nodata if is_mask else nodata,
                  resampling="nearest" if is_mask else "average", threads=threads)


def _render_all(job, sched: list, root: Path, subdir: str, workers: int) -> list:
    """Render every scheduled scene with ``job`` (in the worker pool) into ``inputs/<subdir>/<item_id>``."""
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    jobs = [(sc, str(root / "inputs" / subdir / sc["item_id"]), threads) for sc in sched]
    metas = _pool_map(job, jobs, workers)
    return [{**sc, **m} for sc, m in zip(sched, metas)]


def _landsat_job(args):
    from .landsat import render_landsat

    scene, out_dir, threads = args
    arrays, meta = render_landsat(_W, scene)
    _write_scene(out_dir, arrays, RES_DEM, "QA_PIXEL", None, 0, threads)
    return meta


def _landsat(root: Path, W, cfg: dict, workers: int):
    import pandas as pd

    from . import landsat as L
    from .history import labels_at

    scenes = _render_all(_landsat_job, L.make_landsat_schedule(W, cfg), root, "landsat", workers)
    coll = _collection("landsat-c2-l2", "Synthetic Landsat Collection 2 Level-2 scenes (TM, ETM+, OLI/TIRS): "
                       "SR_B* reflectance = DN x 2.75e-5 - 0.2, ST_B6/ST_B10 K = DN x 0.00341802 + 149, QA_PIXEL bits; "
                       "uint16, fill 0, 30 m", "Landsat C2 L2 (synthetic)", W, [_dt(s["datetime"]) for s in scenes])
    for sc in scenes:
        plat = sc["platform"]
        props = {"platform": plat, "instruments": L.INSTRUMENTS[plat], "eo:cloud_cover": sc["cloud_cover"],
                 "view:sun_azimuth": round(sc["sun_azimuth"], 3), "view:sun_elevation": round(sc["sun_elevation"], 3),
                 "landsat:wrs_path": f"{sc['path']:03d}", "landsat:wrs_row": f"{sc['row']:03d}",
                 "landsat:collection_category": "T1", "landsat:collection_number": "02", "landsat:correction": "L2SP",
                 "gsd": 30}
        item = _item(W, sc["item_id"], _dt(sc["datetime"]), props, ["eo", "proj", "raster", "view"])
        d = root / "inputs" / "landsat" / sc["item_id"]
        for asset, (cn, _, cw, fw) in L.band_table(plat).items():
            extra = _asset_proj(W, RES_DEM)
            extra["eo:bands"] = [{"name": asset, "common_name": cn, "center_wavelength": cw, "full_width_half_max": fw}]
            extra["raster:bands"] = [{"nodata": 0, "data_type": "uint16", "spatial_resolution": 30,
                                      "scale": L.SR_SCALE, "offset": L.SR_OFFSET, "unit": "1"}]
            item.add_asset(asset, _asset(d / f"{asset}.tif", f"{asset} surface reflectance ({cn})",
                                         ["data", "reflectance"], extra))
        st = L.ST_ASSET[L.family(plat)]
        extra = _asset_proj(W, RES_DEM)
        extra["raster:bands"] = [{"nodata": 0, "data_type": "uint16", "spatial_resolution": 30,
                                  "scale": L.ST_SCALE, "offset": L.ST_OFFSET, "unit": "kelvin"}]
        extra["eo:bands"] = [{"name": st, "common_name": "lwir11" if st == "ST_B10" else "lwir",
                              "center_wavelength": 10.9 if st == "ST_B10" else 11.45}]
        item.add_asset(st, _asset(d / f"{st}.tif", "Surface temperature (K)", ["data", "temperature"], extra))
        extra = _asset_proj(W, RES_DEM)
        extra["raster:bands"] = [{"data_type": "uint16", "spatial_resolution": 30, "unit": "bit index"}]
        extra["classification:bitfields"] = [
            {"name": n, "offset": b, "length": 1} for b, n in enumerate(
                ["fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow", "snow", "clear", "water"])] + [
            {"name": n, "offset": b, "length": 2} for b, n in ((8, "cloud_confidence"), (10, "cloud_shadow_confidence"),
                                                               (12, "snow_ice_confidence"), (14, "cirrus_confidence"))]
        item.add_asset("QA_PIXEL", _asset(d / "QA_PIXEL.tif", "Pixel quality assessment (bit flags)",
                                          ["cloud", "cloud-shadow", "snow-ice", "water-mask", "data-mask"], extra))
        coll.add_item(item)
    # truth: glacier areas at every Landsat date (and each glacier's t0 and the 2023 truth date)
    rows = []
    dates = sorted({s["date"] for s in scenes} | set(W.table["src_date"]) | ({W.t1} if W.t1 else set()))
    gids = W.table["glac_id"].to_numpy()
    for d in dates:
        lab, capped = labels_at(W, d)
        npx = np.bincount(lab.ravel(), minlength=W.n + 1)[1:]
        for g in range(W.n):
            rows.append({"glac_id": gids[g], "date": d, "area_km2": round(npx[g] * 1e-4, 6),
                         "planted_rate_pct_per_year": round(float(W.rate_pct[g]), 6), "at_max_extent": bool(capped[g])})
    ts = pd.DataFrame(rows).sort_values(["glac_id", "date"], kind="stable")
    ts.to_csv(root / "truth" / "areas_timeseries.csv", index=False)
    pd.DataFrame({"glac_id": gids, "st_debris_margin_k": np.round(L.st_margins(W)[1:], 4),
                  "max_extent_km2": np.round((W.n0[1:] + W.grow_cap[1:]) * 1e-4, 6)}).to_csv(
        root / "truth" / "glaciers_sensors.csv", index=False)
    pd.DataFrame([{k: v for k, v in s.items() if k != "noise_seed"} for s in scenes]).to_csv(
        root / "truth" / "landsat_scenes.csv", index=False)
    return coll, {"n_landsat": len(scenes), "landsat_platforms": {p: sum(s["platform"] == p for s in scenes)
                                                                  for p in sorted({s["platform"] for s in scenes})}}


# ---------------------------------------------------------------------------------------------------- Sentinel-1


def _s1_job(args):
    from .sentinel1 import render_s1

    scene, out_dir, threads = args
    arrays, meta = render_s1(_W, scene)
    _write_scene(out_dir, arrays, 20.0, "ls_mask", 0, np.nan, threads)
    return meta


def _sentinel1(root: Path, W, cfg: dict, workers: int):
    import pandas as pd

    from . import sentinel1 as S

    scenes = _render_all(_s1_job, S.make_s1_schedule(W, cfg), root, "sentinel1", workers)
    coll = _collection("sentinel-1-grd", "Synthetic Sentinel-1 IW GRD backscatter (VV, VH in dB, float32, 20 m, "
                       "nodata NaN; ls_mask: 1 layover, 2 radar shadow)", "Sentinel-1 GRD (synthetic)", W,
                       [_dt(s["datetime"]) for s in scenes])
    for sc in scenes:
        props = {"platform": sc["platform"], "constellation": "sentinel-1", "instruments": ["c-sar"],
                 "sar:instrument_mode": "IW", "sar:frequency_band": "C", "sar:center_frequency": 5.405,
                 "sar:polarizations": ["VV", "VH"], "sar:product_type": "GRD", "sar:resolution_range": 20,
                 "sar:resolution_azimuth": 22, "sar:looks_equivalent_number": S.LOOKS,
                 "sar:observation_direction": "right", "sat:orbit_state": sc["orbit_state"],
                 "sat:relative_orbit": sc["relative_orbit"], "view:incidence_angle": round(sc["incidence"], 2),
                 "glaciermap:units": "dB", "glaciermap:look_azimuth": sc["look_azimuth"]}
        item = _item(W, sc["item_id"], _dt(sc["datetime"]), props, ["sar", "sat", "proj", "raster", "view"])
        d = root / "inputs" / "sentinel1" / sc["item_id"]
        for key in ("vv", "vh"):
            extra = _asset_proj(W, 20.0)
            extra["raster:bands"] = [{"nodata": "nan", "data_type": "float32", "spatial_resolution": 20, "unit": "dB"}]
            extra["sar:polarizations"] = [key.upper()]
            item.add_asset(key, _asset(d / f"{key}.tif", f"{key.upper()} backscatter (dB)", ["data", "backscatter"],
                                       extra))
        extra = _asset_proj(W, 20.0)
        extra["raster:bands"] = [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}]
        item.add_asset("ls_mask", _asset(d / "ls_mask.tif", "Layover (1) / radar shadow (2) mask", ["data-mask"],
                                         extra))
        coll.add_item(item)
    pd.DataFrame([{k: v for k, v in s.items() if k != "noise_seed"} for s in scenes]).to_csv(
        root / "truth" / "sentinel1_scenes.csv", index=False)
    return coll, {"n_sentinel1": len(scenes)}


# -------------------------------------------------------------------------------------- coherence, velocity


def _coherence(root: Path, W, cfg: dict):
    from .motion import RES_COH, coherence_pair, render_coherence

    years = sorted(int(y) for y in cfg["years"])
    d = root / "inputs" / "coherence"
    d.mkdir(parents=True, exist_ok=True)
    coll = _collection("insar-coherence", "Synthetic Sentinel-1 VV interferometric coherence, 24-day pairs, 90 m, "
                       "float32 0..1, nodata NaN", "InSAR coherence (synthetic)", W,
                       [datetime(y, 8, 12, tzinfo=timezone.utc) for y in years])
    for y in years:
        path = d / f"coherence_{y}.tif"
        coh = render_coherence(W, y)
        write_cog(path, coh, _transform(W, RES_COH), np.nan)
        a, b = coherence_pair(y)
        item = _item(W, f"coherence-{y}", None, {"sar:polarizations": ["VV"], "sar:frequency_band": "C",
                                                  "glaciermap:temporal_baseline_days": 24,
                                                  "glaciermap:pair": [a, b]},
                     ["proj", "raster", "sar"], f"{a}T00:00:00Z", f"{b}T23:59:59Z")
        extra = _proj(W, RES_COH, coh.shape)
        extra["raster:bands"] = [{"nodata": "nan", "data_type": "float32", "spatial_resolution": RES_COH, "unit": "1"}]
        item.add_asset("coherence", _asset(path, f"InSAR coherence {a} / {b}", ["data"], extra))
        coll.add_item(item)
    return coll, {"coherence_years": years}


def _velocity(root: Path, W, cfg: dict):
    from .motion import RES_VEL, render_velocity

    years = sorted(int(y) for y in cfg["years"])
    d = root / "inputs" / "velocity"
    d.mkdir(parents=True, exist_ok=True)
    coll = _collection("surface-velocity", "Synthetic annual glacier surface velocity (vx east, vy north, m/yr, "
                       "EPSG:32632, 120 m, float32, nodata NaN)", "surface velocity (synthetic)", W,
                       [datetime(y, 1, 1, tzinfo=timezone.utc) for y in years])
    t = _transform(W, RES_VEL)
    for y in years:
        vx, vy = render_velocity(W, y)
        item = _item(W, f"velocity-{y}", None, {"glaciermap:units": "m/yr"}, ["proj", "raster"],
                     f"{y}-01-01T00:00:00Z", f"{y}-12-31T23:59:59Z")
        for key, arr in (("vx", vx), ("vy", vy)):
            path = d / f"velocity_{y}_{key}.tif"
            write_cog(path, arr, t, np.nan)
            extra = _proj(W, RES_VEL, vx.shape)
            extra["raster:bands"] = [{"nodata": "nan", "data_type": "float32", "spatial_resolution": RES_VEL,
                                      "unit": "m/yr"}]
            item.add_asset(key, _asset(path, f"{'east' if key == 'vx' else 'north'} velocity (m/yr)", ["data"], extra))
        path = d / f"velocity_{y}.tif"
        write_cog_bands(path, np.stack([vx, vy]), t, np.nan)
        extra = _proj(W, RES_VEL, vx.shape)
        extra["raster:bands"] = [{"name": k, "nodata": "nan", "data_type": "float32", "spatial_resolution": RES_VEL,
                                  "unit": "m/yr"} for k in ("vx", "vy")]
        item.add_asset("velocity", _asset(path, "velocity: band 1 vx, band 2 vy (m/yr)", ["data"], extra))
        coll.add_item(item)
    return coll, {"velocity_years": years}


# ---------------------------------------------------------------------------------------------------- entry


def generate_sensors(root, W, s2_scenes: list[dict], spec: dict, workers: int = 1) -> tuple[list, dict, dict]:
    """Render the preset's other sensors; returns (collections, summary, timings)."""
    import time

    from .history import prepare_history

    global _W
    cfg = spec.get("sensors") or {}
    unknown = set(cfg) - set(SENSOR_NAMES)
    if unknown:
        raise ValueError(f"unknown sensor(s) {sorted(unknown)} in preset (known: {', '.join(SENSOR_NAMES)})")
    root = Path(root)
    colls, summary, timings = [], {}, {}
    if not cfg:
        return colls, summary, timings
    t = time.perf_counter()
    prepare_history(W)
    timings["history"] = time.perf_counter() - t
    _W = W
    try:
        steps = [("sentinel2_l1c", lambda c: _l1c(root, W, s2_scenes, c, workers)),
                 ("landsat", lambda c: _landsat(root, W, c, workers)),
                 ("sentinel1", lambda c: _sentinel1(root, W, c, workers)),
                 ("coherence", lambda c: _coherence(root, W, c)),
                 ("velocity", lambda c: _velocity(root, W, c))]
        for name, fn in steps:
            if cfg.get(name) is not None and cfg.get(name) is not False:
                t = time.perf_counter()
                coll, s = fn(cfg[name])
                colls.append(coll)
                summary.update(s)
                timings[name] = time.perf_counter() - t
    finally:
        _W = None
    return colls, summary, timings


def _l1c(root, W, s2_scenes, cfg, workers):
    from .sentinel2_l1c import l1c_collection

    return l1c_collection(root, W, s2_scenes, cfg, workers)
