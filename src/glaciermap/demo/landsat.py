"""Landsat Collection 2 Level-2 (surface reflectance, surface temperature, QA_PIXEL) from the same world.

Scenes (``make_landsat_schedule``): per preset year ``per_year`` summer dates (20 Jul - 20 Sep) on two
WRS-2 paths (195 and 194, row 28); the platform is drawn among those flying that summer: Landsat 5 TM
(1985-2011), 7 ETM+ (1999-; drawn with weight 0.35 while another one flies), 8 OLI/TIRS (2013-), 9 (2022-:
the first summer after its launch in late 2021), or forced per year by the preset (``platforms``).
Weather: 45 % clear (0-3 % cloud), 35 % partly (5-30 %), 20 % cloudy (30-70 %); the transient snow line
is ELA + U(-100, 300) m, lower by 6 m/yr before 2015, +200 m in hot years (2003, 2015, 2022, 2023). Sun at
10:07 UTC.

Surface reflectance (30 m, no terrain correction, as LaSRC): the 30 m class fractions of the date
(``history.state_at``) mixed with the Sentinel-2 endmember spectra at the band centres (TM/ETM+ SR_B1..
SR_B5, SR_B7 = S2 B02, B03, B04, B08, B11, B12; OLI SR_B1..SR_B7 = B01, B02, B03, B04, B8A, B11, B12),
seasonal snow from the snow line, illumination (1 - diffuse) cos(i)/sin(e) (<= 2.5) x cast-shadow + diffuse
x sky view, clouds (opacity thresholded from a fractal field to the target cover, shadows shifted away
from the sun by the cloud height / tan(elevation)), thin cirrus on OLI scenes, noise 0.008 (TM), 0.006
(ETM+), 0.004 (OLI) reflectance. DN = (reflectance + 0.2) / 2.75e-5, clipped to 7273..43636 (fill 0).

Surface temperature (ST_B6 / ST_B10, K, DN = (T - 149) / 0.00341802): air temperature at the date,
283 K at 2000 m - 6.5 K/km (+-2 K per date, +0.03 K/yr), rock and moraine heated by the direct sun
(+4 K + 14 K x cos(i)/sin(e), 0 in cast shadow; + a static 1.3 K thermal-property field), meadow -3 K
and forest -5 K relative to rock, clean ice and firn 272.6-273.1 K, snow 272.3 K, lakes 279 K;
debris-covered ice is the rock value minus a per glacier margin of 3-6 K (x U(0.75, 1.25) per pixel, not
below 273.4 K); smoothed (thermal pixels are 60-120 m), noise 0.4 K white + 0.6 K correlated; clouds
255-265 K.

QA_PIXEL (uint16): bit 0 fill, 1 dilated cloud (cloud dilated by 3 pixels), 2 cirrus (OLI only), 3 cloud
(opacity >= 0.4), 4 cloud shadow, 5 snow (NDSI > 0.4 and NIR > 0.11, clouds excepted: glaciers are
"snow" too), 6 clear (neither cloud nor dilated cloud), 7 water; confidence pairs 8-9 cloud, 10-11
shadow, 12-13 snow, 14-15 cirrus (OLI) are 3 (high) where the bit is set, else 1 (low): a clear land pixel
is 21824 on OLI, 5440 on TM/ETM+ (as USGS). Fill pixels are QA 1 and DN 0 in every band.

Landsat 7 after the scan-line-corrector failure (2003-05-31): wedge-shaped stripes of fill, periodic every
32 rows along track (tilted 12 degrees), width growing linearly from 0 on the nadir line to 14 pixels
at the swath edge (+-92.5 km); the region sits 45-75 km off nadir (path-dependent), so ~20-30 % of it
is fill. Before 2003-06 there are no gaps.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
from scipy import ndimage

from .glaciers import F, RES_DEM, _rng
from .history import snow_fraction30, state_at, weights30
from .noise import block_mean, fractal_noise, smoothstep
from .schedule import sun_position
from .sentinel2 import BANDS, DIFFUSE, SPECTRA
from .terrain import cos_incidence, horizon_height

SR_SCALE, SR_OFFSET = 2.75e-5, -0.2
ST_SCALE, ST_OFFSET = 0.00341802, 149.0
SR_VALID = (7273, 43636)
SLC_FAILURE = date(2003, 5, 31)
PLATFORM_YEARS = {"landsat-5": (1985, 2011), "landsat-7": (1999, 2100), "landsat-8": (2013, 2100),
                  "landsat-9": (2022, 2100)}
# asset -> (common name, Sentinel-2 band with the same centre, centre um, fwhm um)
TM_BANDS = {"SR_B1": ("blue", "B02", 0.485, 0.07), "SR_B2": ("green", "B03", 0.56, 0.08),
            "SR_B3": ("red", "B04", 0.66, 0.06), "SR_B4": ("nir08", "B08", 0.835, 0.13),
            "SR_B5": ("swir16", "B11", 1.65, 0.2), "SR_B7": ("swir22", "B12", 2.215, 0.27)}
OLI_BANDS = {"SR_B1": ("coastal", "B01", 0.443, 0.02), "SR_B2": ("blue", "B02", 0.482, 0.06),
             "SR_B3": ("green", "B03", 0.561, 0.06), "SR_B4": ("red", "B04", 0.655, 0.04),
             "SR_B5": ("nir08", "B8A", 0.865, 0.03), "SR_B6": ("swir16", "B11", 1.609, 0.09),
             "SR_B7": ("swir22", "B12", 2.201, 0.19)}
ST_ASSET = {"tm": "ST_B6", "oli": "ST_B10"}
SENSOR_CODE = {"landsat-5": "LT05", "landsat-7": "LE07", "landsat-8": "LC08", "landsat-9": "LC09"}
INSTRUMENTS = {"landsat-5": ["tm"], "landsat-7": ["etm+"], "landsat-8": ["oli", "tirs"], "landsat-9": ["oli", "tirs"]}
HOT_YEARS = (2003, 2015, 2022, 2023)
_PATHS = {195: 58.0, 194: -64.0}  # WRS-2 path -> cross-track offset (km) of the region centre from nadir
QA_FILL, QA_DILATED, QA_CIRRUS, QA_CLOUD, QA_SHADOW, QA_SNOW, QA_CLEAR, QA_WATER = (1 << b for b in range(8))
_STAGE_SCHEDULE = 101


def family(platform: str) -> str:
    return "oli" if platform in ("landsat-8", "landsat-9") else "tm"


def band_table(platform: str) -> dict:
    return OLI_BANDS if family(platform) == "oli" else TM_BANDS


def make_landsat_schedule(W, cfg: dict) -> list[dict]:
    """Landsat acquisitions for the preset's ``landsat`` entry: {years: {year: n}, platforms: {year: [...]}}."""
    rng = _rng(W.seed, _STAGE_SCHEDULE)
    out = []
    forced = {int(k): v for k, v in (cfg.get("platforms") or {}).items()}
    for year, n in sorted((int(y), int(c)) for y, c in cfg["years"].items()):
        flying = [p for p, (a, b) in PLATFORM_YEARS.items() if a <= year <= b]
        days = sorted(rng.choice(np.arange(0, 63), size=n, replace=False))
        for j, dd in enumerate(days):
            d = date(year, 7, 20) + timedelta(days=int(dd))
            # Landsat 7 is drawn less often while another Landsat flies (its SLC-off scenes are second choice)
            wgt = np.array([0.35 if p == "landsat-7" and len(flying) > 1 else 1.0 for p in flying])
            plat = forced[year][j % len(forced[year])] if year in forced else str(rng.choice(flying, p=wgt / wgt.sum()))
            path = 195 if rng.random() < 0.55 else 194
            when = datetime(d.year, d.month, d.day, 10, 7, 0)
            az, el = sun_position(when)
            u = rng.random()
            cloud = rng.uniform(0.0, 0.03) if u < 0.45 else rng.uniform(0.05, 0.3) if u < 0.8 else rng.uniform(0.3, 0.7)
            hot = year in HOT_YEARS
            tsl = W.ela0 + rng.uniform(-100, 300) - 6.0 * max(0, 2015 - year) + (200.0 if hot else 0.0)
            code = SENSOR_CODE[plat]
            proc = max(d + timedelta(days=20), date(2020, 9, 8))
            item_id = f"{code}_L2SP_{path:03d}028_{d:%Y%m%d}_{proc:%Y%m%d}_02_T1"
            out.append({
                "item_id": item_id, "date": d.isoformat(), "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "year": year, "platform": plat, "path": path, "row": 28, "cloud_target": float(cloud),
                "cirrus": float(rng.uniform(0.0, 0.15)) if family(plat) == "oli" and rng.random() < 0.3 else 0.0,
                "snowline_m": float(tsl), "hot_year": hot, "sun_azimuth": az, "sun_elevation": el,
                "cloud_height_m": float(rng.uniform(1500, 3500)), "slc_off": plat == "landsat-7" and d > SLC_FAILURE,
                "gap_phase": float(rng.uniform(0, 32)), "t_offset_k": float(rng.normal(0.0, 2.0)),
                "noise_seed": int(rng.integers(0, 2**31 - 1)),
            })
    out.sort(key=lambda s: (s["date"], s["item_id"]))
    return out


def slc_gaps(shape, scene: dict, x_offset_km: float) -> np.ndarray:
    """Wedge-shaped Landsat 7 SLC-off gaps (True = no data) on the 30 m grid."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    th = np.radians(12.0)
    xc = (xx - w / 2.0) * np.cos(th) - (yy - h / 2.0) * np.sin(th)  # cross-track pixels from the region centre
    s = (xx - w / 2.0) * np.sin(th) + (yy - h / 2.0) * np.cos(th)  # along track
    cross_km = np.abs(x_offset_km + xc * RES_DEM / 1000.0)
    width = 14.0 * np.clip(cross_km / 92.5, 0.0, 1.0)
    phase = np.mod(s + scene["gap_phase"], 32.0)
    return phase < width


def cloud_fields30(W, scene: dict, rng):
    """Cloud opacity and cloud-shadow strength on the 30 m grid."""
    h, w = W.h30, W.w30
    shift_m = scene["cloud_height_m"] / np.tan(np.radians(scene["sun_elevation"]))
    az = np.radians(scene["sun_azimuth"])
    dx = int(round(-np.sin(az) * shift_m / RES_DEM))
    dy = int(round(np.cos(az) * shift_m / RES_DEM))
    m = int(np.ceil(shift_m / RES_DEM)) + 2
    big = (h + 2 * m, w + 2 * m)
    base = fractal_noise(rng, big, 3.3) + 0.35 * fractal_noise(rng, big, 2.3)
    target = scene["cloud_target"]
    if target <= 0:
        full = np.zeros(big, np.float32)
    else:
        thr = np.quantile(base[m:m + h, m:m + w], 1.0 - target)
        full = smoothstep((base - thr) / 0.5 + 0.5)
    cloud = full[m:m + h, m:m + w]
    shadow = full[m - dy:m - dy + h, m - dx:m - dx + w]
    return cloud.astype(np.float32), np.clip(shadow, 0, 1).astype(np.float32)


def _spectra(scene: dict, s2_bands: list[str]) -> np.ndarray:
    """(endmember, band) spectra at the Landsat band centres (Sentinel-2 bands with the same centres)."""
    d = date.fromisoformat(scene["date"])
    autumn = float(np.clip((d - date(d.year, 8, 25)).days / 40.0, 0.0, 1.0))
    meadow = (1 - autumn) * np.array(SPECTRA["meadow"]) + autumn * np.array(SPECTRA["meadow_autumn"])
    rows = np.array([SPECTRA["old_snow"], SPECTRA["old_snow"], SPECTRA["firn"], SPECTRA["ice"], SPECTRA["rock_grey"],
                     SPECTRA["rock_red"], meadow, SPECTRA["forest"], SPECTRA["water"]], np.float32)
    idx = [BANDS.index(b) for b in s2_bands]
    return rows[:, idx]


def st_margins(W) -> np.ndarray:
    """Per-glacier ST cooling of debris-covered ice relative to off-glacier debris (K, 3-6), index = label."""
    rng = _rng(W.seed, 103)
    return np.r_[0.0, rng.uniform(3.0, 6.0, W.n)].astype(np.float32)


def render_landsat(W, scene: dict) -> tuple[dict, dict]:
    """SR bands, ST band and QA_PIXEL (uint16, 30 m) of one Landsat scene; metadata (cloud cover, labels)."""
    rng = np.random.default_rng(scene["noise_seed"])
    plat = scene["platform"]
    fam = family(plat)
    table = band_table(plat)
    hot = scene["hot_year"]
    st = state_at(W, scene["date"], hot)
    fr = st["fr"]
    wts = weights30(W, st, hot)
    fs = snow_fraction30(W, scene["snowline_m"], fr["lake"])
    wts *= (1.0 - fs)[None]
    wts[0] += fs
    s2b = [v[1] for v in table.values()]
    spec = _spectra(scene, s2b)
    az, el = scene["sun_azimuth"], scene["sun_elevation"]
    lit = np.clip((W.z30 - horizon_height(W.z30, RES_DEM, az, el)) / 15.0 + 0.5, 0.0, 1.0)
    ci = cos_incidence(W.nx30, W.ny30, W.nz30, az, el)
    ratio = np.clip(ci / np.float32(np.sin(np.radians(el))), 0.0, 2.5)
    direct = ratio * lit
    cloud, shadow = cloud_fields30(W, scene, rng)
    sh_eff = shadow * (1.0 - cloud)
    if scene["cirrus"] > 0:
        cb = fractal_noise(rng, (W.h30, W.w30), 3.6)
        cir = smoothstep((cb - np.quantile(cb, 1.0 - scene["cirrus"])) / 0.8 + 0.3)
    else:
        cir = np.zeros_like(cloud)
    sigma = {"landsat-5": 0.008, "landsat-7": 0.006}.get(plat, 0.004)
    gaps = slc_gaps(W.z30.shape, scene, _PATHS[scene["path"]]) if scene["slc_off"] else np.zeros(W.z30.shape, bool)
    out, refl = {}, {}
    for j, (asset, (_, s2band, _, _)) in enumerate(table.items()):
        bi = BANDS.index(s2band)
        surf = np.tensordot(spec[:, j], wts, axes=(0, 0))
        illum = (1.0 - DIFFUSE[bi]) * direct * (1.0 - 0.88 * sh_eff) + DIFFUSE[bi] * W.sky30 * (1.0 - 0.35 * sh_eff)
        r = W.tex30 * surf * illum
        r = r * (1.0 - cloud) + cloud * SPECTRA["cloud"][bi] * (0.92 + 0.08 * W.tex30)
        r = r + cir * SPECTRA["cirrus"][bi] * (1.0 - cloud)
        r = r + sigma * rng.standard_normal(r.shape, dtype=np.float32)
        refl[asset] = r
        dn = np.clip(np.rint((r - SR_OFFSET) / SR_SCALE), *SR_VALID).astype(np.uint16)
        dn[gaps] = 0
        out[asset] = dn
    # surface temperature
    t_air = 283.0 - 0.0065 * (W.z30 - 2000.0) + scene["t_offset_k"] + 0.03 * (scene["year"] - 2015)
    # static thermal-property field (rock type, moisture, grain size): ground and debris alike, every date
    t_rock = t_air + 4.0 + 14.0 * direct + 1.3 * fractal_noise(_rng(W.seed, 104), W.z30.shape, 3.0)
    margin = st_margins(W)
    deb10 = st["debris10"]
    # per-pixel cooling of the debris-covered ice (10 m: label x per-pixel factor), averaged to 30 m
    fac = rng.uniform(0.75, 1.25, W.z30.shape).astype(np.float32)
    cool10 = np.where(deb10, margin[st["lab10"]], 0.0).astype(np.float32)
    cool = block_mean(cool10, F) * fac  # = debris fraction x margin
    veg = W.meadow30 * (-3.0) + W.forest30 * (-5.0)
    t_land = t_rock + np.minimum(veg, 0.0)
    t = (fr["land"] * t_land + fr["debris"] * t_rock - cool + fr["clean"] * rng.uniform(272.6, 273.1)
         + fr["firn"] * 272.9 + fr["lake"] * 279.0 + fr["snowpatch"] * 272.3)
    deb_only = fr["debris"] > 0.5
    t = np.where(deb_only, np.maximum(t, 273.4), t)
    t = t * (1.0 - fs) + fs * 272.3
    t = ndimage.gaussian_filter(t, 1.0)
    t = t + 0.4 * rng.standard_normal(t.shape) + 0.6 * fractal_noise(rng, t.shape, 3.0)
    t_cloud = rng.uniform(255.0, 265.0)
    t = t * (1.0 - cloud) + cloud * t_cloud
    st_dn = np.clip(np.rint((t - ST_OFFSET) / ST_SCALE), 1, 65535).astype(np.uint16)
    st_dn[gaps] = 0
    out[ST_ASSET[fam]] = st_dn
    # QA_PIXEL
    green = refl["SR_B3" if fam == "oli" else "SR_B2"]
    nir = refl["SR_B5" if fam == "oli" else "SR_B4"]
    swir = refl["SR_B6" if fam == "oli" else "SR_B5"]
    cl = cloud >= 0.4
    dil = ndimage.binary_dilation(cl, iterations=3) & ~cl
    shd = (sh_eff > 0.35) & ~cl
    ndsi = (green - swir) / np.maximum(green + swir, 1e-6)
    snow = (ndsi > 0.4) & (nir > 0.11) & ~cl
    water = (fr["lake"] > 0.5) & ~cl & ~snow
    cirrus = (cir > 0.3) & ~cl if fam == "oli" else np.zeros_like(cl)
    clear = ~cl & ~dil
    qa = (QA_DILATED * dil + QA_CIRRUS * cirrus + QA_CLOUD * cl + QA_SHADOW * shd + QA_SNOW * snow
          + QA_CLEAR * clear + QA_WATER * water).astype(np.uint16)
    conf = lambda m, b: np.where(m, 3, 1).astype(np.uint16) << b  # noqa: E731
    qa |= conf(cl | dil, 8) | conf(shd, 10) | conf(snow, 12)
    if fam == "oli":
        qa |= conf(cirrus, 14)
    qa[gaps] = QA_FILL
    out["QA_PIXEL"] = qa
    valid = ~gaps
    nv = max(int(valid.sum()), 1)
    meta = {"cloud_cover": round(100.0 * float((cl & valid).sum()) / nv, 2),
            "nodata_pct": round(100.0 * float(gaps.mean()), 2),
            "snow_pct": round(100.0 * float((snow & valid).sum()) / nv, 2)}
    return out, meta
