"""Sentinel-1 IW GRD-like backscatter (VV, VH in dB, float32, 20 m) from the same world.

Dates (``make_s1_schedule``): per preset year ``per_year`` dates between 1 August and 10 October,
alternating ascending (relative orbit 88, ~17:25 UTC, looking east-north-east, azimuth 78 degrees) and
descending (orbit 66, ~05:35 UTC, looking west-north-west, 282 degrees) passes; Sentinel-1A, and 1B
between mid-2016 and 2021. Incidence 38-40 degrees over the region.

Backscatter per surface (VV / VH dB, mixed in linear power by the 20 m class fractions): rock -8 / -15,
moraine and till -8.5 / -15.5, debris-covered ice -9 / -16 (rough like moraine: SAR alone hardly separates
them), bare ice -13 / -21, forest -8.5 / -14, meadow -12 / -18, lakes -22 / -29 (+ wind 0-5 dB), wet snow
-20 / -27, dry snow and firn -7 / -14 (volume scattering). Snow (firn, snowfields and the date's seasonal
snow) is wet below a wet-snow line: on afternoon (ascending) passes 3600-4300 m in August, lower in
autumn; on morning (descending) passes the surface has refrozen (2200-2800 m). Dry seasonal snow on rock is
transparent (rock backscatter). Terrain: + 6 dB x (cos(local incidence) - cos(incidence)) (no terrain
flattening), layover (slope towards the sensor > incidence) +5 dB and flagged 1 in ``ls_mask``, radar
shadow (slope away > 90 - incidence) at the -25 dB noise floor and flagged 2. Speckle: linear power x
Gamma(4.4 looks). No clouds and no ``eo:cloud_cover``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np

from .glaciers import _rng
from .history import state_at
from .noise import block_mean, smoothstep
from .terrain import slope_aspect

RES_S1 = 20.0
LOOKS = 4.4
# class -> (VV dB, VH dB)
SIGMA0 = {"rock": (-8.0, -15.0), "till": (-8.5, -15.5), "debris": (-9.0, -16.0), "ice": (-13.0, -21.0),
          "forest": (-8.5, -14.0), "meadow": (-12.0, -18.0), "water": (-22.0, -29.0), "wet_snow": (-20.0, -27.0),
          "dry_snow": (-7.0, -14.0)}
ORBITS = {"ascending": (88, 78.0, (17, 25, 12)), "descending": (66, 282.0, (5, 35, 40))}
_STAGE = 110


def make_s1_schedule(W, cfg: dict) -> list[dict]:
    rng = _rng(W.seed, _STAGE)
    out = []
    for year, n in sorted((int(y), int(c)) for y, c in cfg["years"].items()):
        days = sorted(rng.choice(np.arange(0, 71), size=n, replace=False))
        for j, dd in enumerate(days):
            d = date(year, 8, 1) + timedelta(days=int(dd))
            state = "ascending" if j % 2 == 0 else "descending"
            orbit, look_az, hms = ORBITS[state]
            b_flying = date(2016, 6, 1) <= d <= date(2021, 12, 23)
            plat = "sentinel-1b" if b_flying and rng.random() < 0.5 else "sentinel-1a"
            when = datetime(d.year, d.month, d.day, *hms)
            autumn = float(np.clip((d - date(year, 8, 20)).days / 50.0, 0, 1))
            z_wet = (rng.uniform(3600, 4300) - 900 * autumn) if state == "ascending" else rng.uniform(2200, 2800)
            out.append({
                "item_id": f"S1{plat[-1].upper()}_IW_GRDH_1SDV_{when:%Y%m%dT%H%M%S}_{orbit:03d}",
                "date": d.isoformat(), "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "year": year,
                "platform": plat, "orbit_state": state, "relative_orbit": orbit, "look_azimuth": look_az,
                "incidence": float(rng.uniform(38.0, 40.0)), "wet_snow_line_m": float(z_wet),
                "snowline_m": float(W.ela0 + rng.uniform(-150, 250)), "wind_db": float(rng.uniform(0, 5)),
                "noise_seed": int(rng.integers(0, 2**31 - 1)),
            })
    out.sort(key=lambda s: (s["date"], s["item_id"]))
    return out


def layover_shadow(z30, look_az_deg: float, inc_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cos local incidence, layover, shadow) on the 30 m DEM for a look azimuth and incidence angle."""
    _, _, gx, gn = slope_aspect(z30, 30.0)
    la = np.radians(look_az_deg)
    le, ln = np.sin(la), np.cos(la)  # horizontal look direction (sensor -> ground)
    fore = gx * le + gn * ln  # tan of the slope facing the sensor (terrain rising along the look direction)
    alpha = np.degrees(np.arctan(fore))
    th = np.radians(inc_deg)
    nrm = np.sqrt(gx * gx + gn * gn + 1.0)
    cos_loc = (-gx * (-np.sin(th) * le) - gn * (-np.sin(th) * ln) + np.cos(th)) / nrm
    return cos_loc.astype(np.float32), alpha > inc_deg, -alpha > 90.0 - inc_deg


def _up15(a30: np.ndarray) -> np.ndarray:
    """30 m -> 20 m: 10 m nearest replication, then 2 x 2 means."""
    a10 = np.repeat(np.repeat(a30, 3, axis=0), 3, axis=1)
    return block_mean(a10.astype(np.float32), 2)


def render_s1(W, scene: dict) -> tuple[dict, dict]:
    rng = np.random.default_rng(scene["noise_seed"])
    st = state_at(W, scene["date"], False, factor=2)
    fr = st["fr"]
    z20 = block_mean(W.z10, 2)
    fs = smoothstep((z20 + 120.0 * block_mean(W.north10, 2) + 90.0 * block_mean(W.sn10, 2) - scene["snowline_m"])
                    / 160.0 + 0.5) * (1.0 - fr["lake"])
    wet = z20 < scene["wet_snow_line_m"]
    meadow = np.minimum(block_mean(W.meadow10, 2), np.clip(fr["land"] - fr["till"], 0, 1))
    forest = np.minimum(block_mean(W.forest10, 2), np.clip(fr["land"] - fr["till"] - meadow, 0, 1))
    rock = np.clip(fr["land"] - fr["till"] - meadow - forest, 0, 1)
    snowy = fr["firn"] + fr["snowpatch"] + fs * (fr["clean"] + fr["debris"] * 0.5)  # snow on ice wets / shows
    out = {}
    for k, pol in enumerate(("vv", "vh")):
        lin = lambda c: np.float32(10.0 ** (SIGMA0[c][k] / 10.0))  # noqa: E731
        wet_s, dry_s = lin("wet_snow"), lin("dry_snow")
        snow_lin = np.where(wet, wet_s, dry_s)
        land_snow_wet = np.where(wet, fs, 0.0)  # wet seasonal snow masks the ground; dry snow is transparent
        p = (rock * lin("rock") + fr["till"] * lin("till") + meadow * lin("meadow") + forest * lin("forest")) * (
            1.0 - land_snow_wet) + (rock + fr["till"] + meadow + forest) * land_snow_wet * wet_s
        p = p + fr["debris"] * (1.0 - 0.5 * fs) * lin("debris") + fr["clean"] * (1.0 - fs) * lin("ice")
        p = p + snowy * snow_lin + fr["lake"] * np.float32(10.0 ** ((SIGMA0["water"][k] + scene["wind_db"]) / 10.0))
        out[pol] = p
    cos_loc, lay, shd = layover_shadow(W.z30, scene["look_azimuth"], scene["incidence"])
    terr_db = _up15(6.0 * (cos_loc - np.cos(np.radians(scene["incidence"]))))
    lay20, shd20 = _up15(lay.astype(np.float32)) > 0.5, _up15(shd.astype(np.float32)) > 0.5
    res = {}
    for pol in ("vv", "vh"):
        db = 10.0 * np.log10(np.maximum(out[pol], 1e-6)) + terr_db
        db = np.where(lay20, db + 5.0, db)
        db = np.where(shd20, -25.0, db)
        speck = rng.gamma(LOOKS, 1.0 / LOOKS, db.shape).astype(np.float32)
        res[pol] = (db + 10.0 * np.log10(speck)).astype(np.float32)
    mask = (lay20 * 1 + shd20 * 2).astype(np.uint8)
    res["ls_mask"] = mask
    return res, {"layover_pct": round(100.0 * float(lay20.mean()), 2),
                 "shadow_pct": round(100.0 * float(shd20.mean()), 2)}
