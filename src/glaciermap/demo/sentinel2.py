"""Sentinel-2 L2A-like rendering: surface spectra, endmember weights per date, clouds, swath edges, SCL."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .noise import block_mean, fractal_noise, smoothstep, upsample, upsample_nearest
from .terrain import cos_incidence, horizon_height, slope_aspect, surface_normals
from .glaciers import F, RES_DEM, _ordinal, glacier_state


# --------------------------------------------------------------------------------------------------
# Sentinel-2 L2A-like scenes
# --------------------------------------------------------------------------------------------------

BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
BAND_RES = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
            "B8A": 20, "B09": 60, "B11": 20, "B12": 20}
BAND_INFO = {  # common name, centre wavelength (um), full width (um)
    "B01": ("coastal", 0.443, 0.027), "B02": ("blue", 0.490, 0.098), "B03": ("green", 0.560, 0.045),
    "B04": ("red", 0.665, 0.038), "B05": ("rededge", 0.704, 0.019), "B06": ("rededge", 0.740, 0.018),
    "B07": ("rededge", 0.783, 0.028), "B08": ("nir", 0.842, 0.145), "B8A": ("nir08", 0.865, 0.033),
    "B09": ("nir09", 0.945, 0.026), "B11": ("swir16", 1.610, 0.143), "B12": ("swir22", 2.190, 0.242),
}
# Surface reflectance spectra at the band centres (B01 ... B12). Snow and ice: bright in the visible,
# falling through the NIR, almost black in the SWIR (what band ratios exploit); firn and ice darker
# than snow; rock, moraine and supraglacial debris are one family (grey gneiss / reddish schist,
# brightness from a lithology field) rising gently to the SWIR, so debris-covered ice looks like
# rock; vegetation has the red edge; turbid glacial lakes are dark with a green peak; clouds are
# bright in every band *including* the SWIR (unlike snow).
SPECTRA = {
    "fresh_snow": [0.96, 0.96, 0.95, 0.92, 0.90, 0.88, 0.85, 0.81, 0.79, 0.62, 0.10, 0.07],
    "old_snow": [0.86, 0.86, 0.84, 0.79, 0.76, 0.73, 0.68, 0.62, 0.60, 0.44, 0.05, 0.035],
    "firn": [0.66, 0.66, 0.64, 0.59, 0.56, 0.53, 0.49, 0.44, 0.42, 0.30, 0.035, 0.025],
    "ice": [0.46, 0.46, 0.42, 0.34, 0.30, 0.27, 0.24, 0.20, 0.19, 0.12, 0.025, 0.02],
    "rock_grey": [0.10, 0.115, 0.135, 0.155, 0.17, 0.18, 0.19, 0.20, 0.21, 0.21, 0.25, 0.22],
    "rock_red": [0.08, 0.095, 0.115, 0.15, 0.17, 0.185, 0.20, 0.215, 0.225, 0.225, 0.28, 0.25],
    "meadow": [0.035, 0.045, 0.085, 0.055, 0.13, 0.28, 0.34, 0.37, 0.38, 0.36, 0.22, 0.11],
    "meadow_autumn": [0.045, 0.055, 0.09, 0.085, 0.13, 0.22, 0.26, 0.28, 0.29, 0.28, 0.26, 0.15],
    "forest": [0.02, 0.03, 0.05, 0.03, 0.08, 0.19, 0.24, 0.26, 0.27, 0.25, 0.13, 0.06],
    "water": [0.075, 0.095, 0.13, 0.085, 0.06, 0.035, 0.025, 0.02, 0.018, 0.01, 0.005, 0.003],
    "cloud": [0.78, 0.77, 0.76, 0.76, 0.76, 0.76, 0.76, 0.75, 0.75, 0.55, 0.52, 0.36],
    "cirrus": [0.12, 0.11, 0.10, 0.09, 0.09, 0.09, 0.09, 0.085, 0.085, 0.06, 0.07, 0.05],
}
# share of diffuse sky light per band: what lights cast shadows (blue-rich)
DIFFUSE = np.array([0.36, 0.30, 0.22, 0.16, 0.14, 0.13, 0.12, 0.11, 0.11, 0.11, 0.06, 0.05], np.float32)
_ENDMEMBERS = ["snow", "old_snow", "firn", "ice", "rock_grey", "rock_red", "meadow", "forest", "water"]
SCL_NODATA, SCL_DARK, SCL_SHADOW, SCL_VEG, SCL_BARE, SCL_WATER = 0, 2, 3, 4, 5, 6
SCL_CLOUD_MED, SCL_CLOUD_HIGH, SCL_CIRRUS, SCL_SNOW = 8, 9, 10, 11
MAX_DN = 12000
NOISE_SCALE = 1.0  # sensor-noise multiplier (tests and experiments)
TERRAIN_RESIDUAL = 0.7  # share of the cos(incidence) shading left after an L2A-style terrain correction


def _spectra_for(scene: dict) -> np.ndarray:
    """(endmember, band) reflectance matrix for one date (fresh or old snow, green or autumn meadow)."""
    from datetime import date

    d = date.fromisoformat(scene["date"])
    autumn = float(np.clip((d - date(d.year, 8, 25)).days / 40.0, 0.0, 1.0))
    meadow = (1 - autumn) * np.array(SPECTRA["meadow"]) + autumn * np.array(SPECTRA["meadow_autumn"])
    snow = SPECTRA["fresh_snow"] if scene["fresh_snow"] else SPECTRA["old_snow"]
    rows = [snow, SPECTRA["old_snow"], SPECTRA["firn"], SPECTRA["ice"], SPECTRA["rock_grey"], SPECTRA["rock_red"],
            meadow, SPECTRA["forest"], SPECTRA["water"]]
    return np.array(rows, np.float32)


def surface_weights(W, scene: dict) -> tuple[np.ndarray, dict]:
    """Endmember weights (9, h, w) at 10 m for a date, before seasonal snow, plus the class masks.

    Glacier pixels still ice at this date are firn above the firn line (the local ELA, +150 m in
    a hot year), debris where the debris potential exceeds the glacier's time-interpolated threshold,
    bare ice elsewhere (darkened by dirt). Pixels the glacier has lost are fresh till, or proglacial
    lake inside a lake footprint. Land is rock (grey/red by lithology) with meadow and forest below
    the tree line; forefields are bare till; perennial snowfields are old snow.
    """
    h, w = W.h10, W.w10
    ordd = _ordinal(scene["date"])
    f = glacier_state(W, ordd)
    lab = W.lab10
    gl = lab > 0
    ice = gl & (W.q10 > f[lab])
    thr = W.thr0 + (W.thr1 - W.thr0) * f
    debris = ice & (W.p10 >= thr[lab])
    lake = W.lake10 | (W.lakefoot10 & ~ice)
    hot = scene["hot_year"]
    firn = ice & ~debris & (W.z10 > W.ela10 + (150.0 if hot else 0.0))
    clean = ice & ~debris & ~firn
    till = (gl & ~ice & ~lake) | W.forefield10
    wts = np.zeros((len(_ENDMEMBERS), h, w), np.float32)
    land = ~(ice | lake | W.snowpatch10)
    rock = np.where(land, W.lith10 * (1.0 - W.meadow10 - W.forest10), 0.0)
    rock = np.where(till, W.lith10 * 1.12, rock)
    dirt = W.dirt10 * (1.25 if hot else 1.0)
    rock = np.where(debris, W.lith10 * 0.88, rock)
    rock = rock + np.where(clean, 0.25 * dirt, 0.0)
    wts[4] = rock * (1.0 - W.tint10)
    wts[5] = rock * W.tint10
    wts[1] = W.snowpatch10
    wts[2] = np.where(firn, 0.85 if hot else 1.0, 0.0)
    wts[3] = np.where(clean, 1.0 - 0.5 * dirt, 0.0) + np.where(debris, 0.06, 0.0) + np.where(firn & hot, 0.15, 0.0)
    wts[6] = np.where(land & ~till, W.meadow10, 0.0)
    wts[7] = np.where(land & ~till, W.forest10, 0.0)
    wts[8] = lake
    return wts, {"ice": ice, "debris": debris, "lake": lake}


def _cloud_fields(W, scene: dict, rng):
    """Cloud opacity, cloud-shadow strength and cirrus at 60 m (shadow = cloud shifted down-sun)."""
    h60, w60 = W.h10 // 6, W.w10 // 6
    shift_m = scene["cloud_height_m"] / np.tan(np.radians(scene["sun_elevation"]))
    az = np.radians(scene["sun_azimuth"])
    dx = int(round(-np.sin(az) * shift_m / 60.0))  # columns (east +)
    dy = int(round(np.cos(az) * shift_m / 60.0))  # rows (south +)
    m = int(np.ceil(shift_m / 60.0)) + 2
    big = (h60 + 2 * m, w60 + 2 * m)
    base = fractal_noise(rng, big, 3.3) + 0.35 * fractal_noise(rng, big, 2.3)
    if scene["quality"] in ("best", "good"):
        # the clear dates stay clear over the glaciers: no cloud (or cloud shadow) within 2 km of ice
        near = np.zeros(big, bool)
        near[m:m + h60, m:m + w60] = W.near60
        shifted = np.zeros(big, bool)  # shifted[p] = near[p + (dy, dx)]: the shadow of p falls near ice
        shifted[max(0, -dy):big[0] - max(0, dy), max(0, -dx):big[1] - max(0, dx)] = \
            near[max(0, dy):big[0] - max(0, -dy), max(0, dx):big[1] - max(0, -dx)]
        base = np.where(near | shifted, base - 6.0, base)
    target = scene["cloud_target"]
    core = base[m:m + h60, m:m + w60]
    if target <= 0:
        cloud_full = np.zeros_like(base)
    else:
        thr = np.quantile(core, 1.0 - target)
        cloud_full = smoothstep((base - thr) / 0.5 + 0.5)
    cloud = cloud_full[m:m + h60, m:m + w60]
    shadow = cloud_full[m - dy:m - dy + h60, m - dx:m - dx + w60]
    if scene["cirrus"] > 0:
        cb = fractal_noise(rng, (h60, w60), 3.6)
        cir = smoothstep((cb - np.quantile(cb, 1.0 - scene["cirrus"])) / 0.8 + 0.3)
    else:
        cir = np.zeros((h60, w60), np.float32)
    return cloud.astype(np.float32), np.clip(shadow, 0, 1).astype(np.float32), cir.astype(np.float32)


def _swath_valid60(W, scene: dict) -> np.ndarray:
    """Valid-data mask at 60 m: everything for orbit A; west of a tilted swath edge for orbit B."""
    h60, w60 = W.h10 // 6, W.w10 // 6
    if scene["coverage"] >= 1.0:
        return np.ones((h60, w60), bool)
    yy, xx = np.mgrid[0:h60, 0:w60]
    a = np.radians(scene["swath_angle_deg"])
    u = xx * np.cos(a) + (h60 - yy) * np.sin(a)  # increases to the east(-north-east)
    return u <= np.quantile(u, scene["coverage"])


def render_scene(W, scene: dict) -> tuple[dict, dict]:
    """All 12 bands (uint16 DN at native resolution) and SCL (uint8, 20 m) of one acquisition.

    Reflectance = texture x sum_k(weight_k x spectrum_k) x illumination, with seasonal snow
    (smooth in the date's transient snow line, shifted by northness and a static irregularity,
    not on slopes above ~50 degrees or on water) mixed over the surface. Illumination per band:
    (1 - diffuse) x direct + diffuse x sky view, direct = 1 + TERRAIN_RESIDUAL (cos(i)/sin(sun
    elevation) - 1) (what an L2A terrain correction leaves), 0 in cast shadows (terrain horizon traced
    on the 30 m DEM) and dimmed in cloud shadows. Clouds and cirrus are mixed on top; sensor noise
    is added; pixels outside the swath get 0 in all bands and SCL. Returns (arrays by asset, metadata:
    cloud_cover, nodata_pct, snow_pct from the SCL, and the 60 m validity mask).
    """
    rng = np.random.default_rng(scene["noise_seed"])
    az, el = scene["sun_azimuth"], scene["sun_elevation"]
    spec = _spectra_for(scene)
    wts, masks = surface_weights(W, scene)
    tsl = scene["snowline_m"]
    fs = smoothstep((W.z10 + 120.0 * W.north10 + 90.0 * W.sn10 - tsl) / 160.0 + 0.5)
    fs *= 1.0 - smoothstep((W.slope10 - 42.0) / 14.0)
    fs = np.where(masks["lake"], 0.0, fs).astype(np.float32)
    wts *= (1.0 - fs)[None]
    wts[0] += fs
    # illumination
    hz = upsample(horizon_height(W.z30, RES_DEM, az, el), F)
    lit = np.clip((W.z10 - hz) / 15.0 + 0.5, 0.0, 1.0)
    ci = cos_incidence(W.nx10, W.ny10, W.nz10, az, el)
    # Sen2Cor-like partial terrain correction: only TERRAIN_RESIDUAL of the cos(i) modulation is left
    ratio = np.clip(ci / np.float32(np.sin(np.radians(el))), 0.0, 1.6)
    direct = np.where(ci > 0, 1.0 + TERRAIN_RESIDUAL * (ratio - 1.0), 0.0) * lit
    cloud60, shadow60, cir60 = _cloud_fields(W, scene, rng)
    valid60 = _swath_valid60(W, scene)
    out = {}
    stats = {}
    res_levels = {10: 1, 20: 2, 60: 6}
    cache = {}
    for r, fct in res_levels.items():
        if fct == 1:
            w_r, d_r, sky_r, tex_r = wts, direct, W.sky10, W.tex10
        elif fct == 2:
            w_r = block_mean(wts, 2)
            d_r, sky_r, tex_r = block_mean(direct, 2), block_mean(W.sky10, 2), block_mean(W.tex10, 2)
        else:
            w20, d20, s20, t20 = cache[20]
            w_r = block_mean(w20, 3)
            d_r, sky_r, tex_r = block_mean(d20, 3), block_mean(s20, 3), block_mean(t20, 3)
        cache[r] = (w_r, d_r, sky_r, tex_r)
        cl = upsample(cloud60, 6 // fct) if fct < 6 else cloud60
        sh = upsample(shadow60, 6 // fct) if fct < 6 else shadow60
        cr = upsample(cir60, 6 // fct) if fct < 6 else cir60
        valid = upsample_nearest(valid60, 6 // fct) if fct < 6 else valid60
        sh_eff = sh * (1.0 - cl)
        refl_r = {}
        for bi, band in enumerate(BANDS):
            if BAND_RES[band] != r:
                continue
            surf = np.tensordot(spec[:, bi], w_r, axes=(0, 0))
            illum = (1.0 - DIFFUSE[bi]) * d_r * (1.0 - 0.88 * sh_eff) + DIFFUSE[bi] * sky_r * (1.0 - 0.35 * sh_eff)
            refl = tex_r * surf * illum
            refl = refl * (1.0 - cl) + cl * SPECTRA["cloud"][bi] * (0.92 + 0.08 * tex_r)
            refl = refl + cr * SPECTRA["cirrus"][bi] * (1.0 - cl)
            refl_r[band] = refl
            dn = refl * 10000.0
            sigma = ((1.0 if r == 10 else 1.5 if r == 20 else 3.0) + 0.0007 * dn) * NOISE_SCALE
            dn = dn + sigma * rng.standard_normal(dn.shape, dtype=np.float32)
            dn = np.clip(np.rint(dn), 1, MAX_DN).astype(np.uint16)
            dn[~valid] = 0
            out[band] = dn
        if r == 20:
            stats["cl20"], stats["sh20"], stats["cr20"], stats["valid20"] = cl, sh_eff, cr, valid
            stats["refl20"] = refl_r
    # scene classification at 20 m
    refl20 = stats["refl20"]
    cl, sh, cr, valid = stats["cl20"], stats["sh20"], stats["cr20"], stats["valid20"]
    g20 = block_mean(out["B03"], 2) / np.float32(10000.0)
    red = block_mean(out["B04"], 2) / np.float32(10000.0)
    swir = refl20["B11"]
    nir = refl20["B8A"]
    ndsi = (g20 - swir) / np.maximum(g20 + swir, 1e-6)
    ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
    water20 = block_mean(masks["lake"].astype(np.float32), 2)
    scl = np.full(swir.shape, SCL_BARE, np.uint8)
    scl[ndvi > 0.4] = SCL_VEG
    scl[(ndsi > 0.42) & (nir > 0.11)] = SCL_SNOW
    scl[(water20 > 0.5) & (scl != SCL_SNOW)] = SCL_WATER
    scl[(nir < 0.03) & (g20 < 0.04) & (scl != SCL_WATER)] = SCL_DARK
    scl[(sh > 0.35) & (cl < 0.35)] = SCL_SHADOW
    scl[(cr > 0.3) & (cl < 0.35)] = SCL_CIRRUS
    scl[(cl >= 0.35) & (cl < 0.65)] = SCL_CLOUD_MED
    scl[cl >= 0.65] = SCL_CLOUD_HIGH
    scl[~valid] = SCL_NODATA
    out["SCL"] = scl
    nvalid = int((scl != SCL_NODATA).sum())
    ncloud = int(np.isin(scl, (SCL_CLOUD_MED, SCL_CLOUD_HIGH, SCL_CIRRUS)).sum())
    meta = {"cloud_cover": round(100.0 * ncloud / max(nvalid, 1), 2),
            "nodata_pct": round(100.0 * (1 - nvalid / scl.size), 2),
            "snow_pct": round(100.0 * float((scl == SCL_SNOW).sum()) / max(nvalid, 1), 2),
            "valid60": valid60}
    return out, meta


def prepare_render(W) -> None:
    """Static render inputs: 10 m surface normals and sky-view factor from the 30 m DEM, and the
    60 m mask of cells within 2 km of a glacier (kept cloud-free on the clear dates)."""
    _, _, gx, gn = slope_aspect(W.z30, RES_DEM)
    nx, ny, nz = surface_normals(gx, gn)
    W.nx10, W.ny10, W.nz10 = upsample(nx, F), upsample(ny, F), upsample(nz, F)
    W.sky10 = upsample(((1.0 + np.cos(np.radians(W.slope30))) / 2.0).astype(np.float32), F)
    ice60 = block_mean((W.lab10 > 0).astype(np.float32), 6) > 0
    W.near60 = ndimage.distance_transform_edt(~ice60) * 60.0 < 2000.0
