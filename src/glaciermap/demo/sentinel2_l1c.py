"""Sentinel-2 Level-1C (top-of-atmosphere) scenes for the same dates as the L2A scenes.

TOA reflectance per band b from the L2A surface reflectance rho_s (the L2A file's DN x 1e-4, so the same
pixels, clouds and noise): TOA = rho_path + T rho_s, with a Rayleigh optical depth
tau_R = 0.0088 lambda^-4.05 exp(-z_mean / 8 km) and an aerosol depth tau_A = 0.05 (lambda / 0.55)^-1.3
exp(-z_mean / 2 km) (lambda in um, z_mean the region's mean elevation), two-way transmittance
T = exp(-(tau_R + tau_A) (1 / mu_s + 1)) (x 0.85 more for the water-vapour band B09), path reflectance
rho_path = (0.5 tau_R + 0.15 tau_A) / mu_s, mu_s = sin(sun elevation). B10 (cirrus, 1.375 um, 60 m) is
0.002 + noise over clear ground (water-vapour absorption hides the surface), 0.03 under cirrus and 0.2
under cloud (from the L2A SCL). DN = rint(TOA x 10000) + 1000 from processing baseline 04.00 on (items
dated from 2022-01-25 carry ``s2:processing_baseline`` "05.09", earlier ones "02.07"); nodata 0 where the
L2A scene has none. No SCL. Items: ``S2x_<tile>_<date>_0_L1C`` in collection ``sentinel-2-l1c``.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import numpy as np

from .noise import block_mean
from .sentinel2 import BAND_INFO, BAND_RES, BANDS
from .writers import _asset_proj, _transform, write_cog

L1C_BANDS = BANDS[:10] + ["B10"] + BANDS[10:]
B10_INFO = ("cirrus", 1.375, 0.03)
BASELINE4 = date(2022, 1, 25)


def toa_coefficients(scene: dict, z_mean: float) -> dict:
    """Per band (path reflectance, transmittance) for a scene's sun elevation and the mean elevation."""
    mu = np.sin(np.radians(scene["sun_elevation"]))
    out = {}
    for b in BANDS:
        lam = BAND_INFO[b][1]
        tr = 0.0088 * lam ** -4.05 * np.exp(-z_mean / 8000.0)
        ta = 0.05 * (lam / 0.55) ** -1.3 * np.exp(-z_mean / 2000.0)
        t = np.exp(-(tr + ta) * (1.0 / mu + 1.0)) * (0.85 if b == "B09" else 1.0)
        out[b] = (float((0.5 * tr + 0.15 * ta) / mu), float(t))
    return out


def l1c_id(scene: dict) -> str:
    return scene["item_id"].replace("_L2A", "_L1C")


def baseline(scene: dict) -> str:
    return "05.09" if date.fromisoformat(scene["date"]) >= BASELINE4 else "02.07"


_W = None


def _job(args):
    import rasterio

    scene, l2a_dir, out_dir, threads = args
    W = _W
    l2a_dir, out_dir = Path(l2a_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    coef = toa_coefficients(scene, float(W.z30.mean()))
    off = 1000 if baseline(scene) >= "04.00" else 0
    rng = np.random.default_rng(scene["noise_seed"] + 1)
    for b in BANDS:
        with rasterio.open(l2a_dir / f"{b}.tif") as ds:
            dn = ds.read(1)
        rp, t = coef[b]
        toa = rp + t * dn.astype(np.float32) * np.float32(1e-4)
        out = np.clip(np.rint(toa * 10000.0) + off, 1, 65535).astype(np.uint16)
        out[dn == 0] = 0
        write_cog(out_dir / f"{b}.tif", out, _transform(W, BAND_RES[b]), 0, threads=threads)
    with rasterio.open(l2a_dir / "SCL.tif") as ds:
        scl = ds.read(1)
    cir = np.where(scl == 10, 0.03, np.where(np.isin(scl, (8, 9)), 0.2, 0.002)).astype(np.float32)
    b10 = block_mean(cir, 3) + 0.0005 * rng.standard_normal((scl.shape[0] // 3, scl.shape[1] // 3)).astype(np.float32)
    nod = block_mean((scl == 0).astype(np.float32), 3) > 0.5
    out = np.clip(np.rint(b10 * 10000.0) + off, 1, 65535).astype(np.uint16)
    out[nod] = 0
    write_cog(out_dir / "B10.tif", out, _transform(W, 60.0), 0, threads=threads)
    return None


def l1c_collection(root, W, s2_scenes: list[dict], cfg: dict, workers: int):
    import pystac
    from shapely.geometry import mapping

    from .catalog import _EXTENSIONS
    from .sensors import _collection, _dt, _pool_map
    from .writers import COG_MEDIA, CRS

    global _W
    root = Path(root)
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    jobs = [(sc, str(root / "inputs" / "scenes" / sc["item_id"]),
             str(root / "inputs" / "scenes_l1c" / l1c_id(sc)), threads) for sc in s2_scenes]
    _W = W
    try:
        _pool_map(_job, jobs, workers)
    finally:
        _W = None
    coll = _collection("sentinel-2-l1c", "Synthetic Sentinel-2 L1C-like scenes (top-of-atmosphere reflectance x "
                       "10000 (+1000 from processing baseline 04.00), uint16, nodata 0; no SCL)",
                       "Sentinel-2 L1C (synthetic)", W, [_dt(s["datetime"]) for s in s2_scenes])
    for sc in s2_scenes:
        geom = sc["footprint"]
        props = {"platform": sc["platform"], "constellation": "sentinel-2", "instruments": ["msi"],
                 "eo:cloud_cover": sc["cloud_cover"], "proj:code": CRS, "proj:epsg": 32632,
                 "s2:mgrs_tile": W.spec["mgrs_tile"], "s2:nodata_pixel_percentage": sc["nodata_pct"],
                 "s2:processing_baseline": baseline(sc), "sat:relative_orbit": 65 if sc["orbit"] == "A" else 108,
                 "view:sun_azimuth": round(sc["sun_azimuth"], 3), "view:sun_elevation": round(sc["sun_elevation"], 3)}
        item = pystac.Item(l1c_id(sc), mapping(geom), [float(v) for v in geom.bounds], _dt(sc["datetime"]), props,
                           stac_extensions=list(_EXTENSIONS))
        off = -1000 if baseline(sc) >= "04.00" else 0
        for b in L1C_BANDS:
            res = 60 if b == "B10" else BAND_RES[b]
            cn, cw, fw = B10_INFO if b == "B10" else BAND_INFO[b]
            extra = _asset_proj(W, res)
            extra["eo:bands"] = [{"name": b, "common_name": cn, "center_wavelength": cw, "full_width_half_max": fw}]
            extra["raster:bands"] = [{"nodata": 0, "data_type": "uint16", "spatial_resolution": res,
                                      "scale": 0.0001, "offset": off * 1e-4}]
            extra["gsd"] = res
            href = str((root / "inputs" / "scenes_l1c" / l1c_id(sc) / f"{b}.tif").resolve())
            item.add_asset(b, pystac.Asset(href, title=f"{b} - {cn} TOA ({res} m)", media_type=COG_MEDIA,
                                           roles=["data", "reflectance"], extra_fields=extra))
        coll.add_item(item)
    return coll, {"n_sentinel2_l1c": len(s2_scenes)}

