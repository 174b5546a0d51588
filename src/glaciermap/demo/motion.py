"""Ice motion products from the same world: InSAR coherence (90 m) and surface velocity (120 m).

Coherence (``render_coherence``, one 24-day Sentinel-1 VV pair per year, 12 August -> 5 September, the
glaciers at the pair's middle date): per surface at 10 m, averaged to 90 m: stable rock 0.6-0.9 (lower
on steep slopes), moraine / till 0.65-0.8, meadow 0.4-0.5, forest 0.2-0.3, clean ice and firn 0.1-0.3,
debris-covered ice 0.15-0.35 (it moves), lakes ~0.03, snow-covered ground 0.2; layover and shadow
(ascending geometry) 0.12. Estimator: + a positive bias 0.05 |N| (1 - gamma) + N(0, 0.03), clipped to
[0, 1]; float32, nodata NaN.

Velocity (``render_velocity``, per year, vx east and vy north in m/yr in the region's UTM CRS, 120 m): on
the glaciers of 1 July of that year, speed = U_g x (0.25 + 0.75 exp(-((z - ELA) / (0.35 (zmax - zmin)))^2))
x (0.2 + 0.8 smoothstep(distance to the margin / 200 m)), U_g = 45 (A / 10 km2)^0.4 m/yr (x (1 - 0.01 (year
- 2015)) x U(0.9, 1.1) per year), at least 3 m/yr on clean ice; debris-covered ice moves at 15 % of that,
between 1.5 and 6 m/yr (stagnant tongues). Direction: down the surface slope smoothed over 150 m. Averaged
to 120 m with the ice fraction (0 off the ice), plus noise: 1.2 m/yr white + 0.8 m/yr correlated per
component, + up to 3 m/yr on 45-degree slopes; 5 % of the steep (> 40 degrees) off-glacier cells are voids
(NaN). Assets ``vx``, ``vy`` (one band each) and ``velocity`` (band 1 vx, band 2 vy).
"""

from __future__ import annotations

from datetime import date

import numpy as np
from scipy import ndimage

from .glaciers import F, RES_DEM, RES_TRUTH, _rng
from .history import mid_year, snow_fraction30, state_at
from .noise import block_mean, fractal_noise, smoothstep
from .sentinel1 import layover_shadow

RES_COH = 90.0
RES_VEL = 120.0
PAIR = ((8, 12), (9, 5))


def _crop(a: np.ndarray, k: int) -> np.ndarray:
    """Crop to whole k x k blocks (the 90 / 120 m grids may end a little short of the region's edge)."""
    return a[: a.shape[0] // k * k, : a.shape[1] // k * k]


def coherence_pair(year: int) -> tuple[str, str]:
    return date(year, *PAIR[0]).isoformat(), date(year, *PAIR[1]).isoformat()


def render_coherence(W, year: int) -> np.ndarray:
    rng = _rng(W.seed, 120 + (year - 1980))
    d0, d1 = (date.fromisoformat(d) for d in coherence_pair(year))
    mid = date.fromordinal((d0.toordinal() + d1.toordinal()) // 2).isoformat()
    st = state_at(W, mid, year in (2003, 2015, 2022, 2023))
    fr = st["fr"]  # 30 m
    veg_room = np.clip(fr["land"] - fr["till"], 0, 1)
    meadow = np.minimum(W.meadow30, veg_room)
    forest = np.minimum(W.forest30, np.clip(veg_room - meadow, 0, 1))
    rock = np.clip(veg_room - meadow - forest, 0, 1)
    g_rock = 0.9 - 0.3 * np.clip(W.slope30 / 50.0, 0, 1) + 0.03 * fractal_noise(rng, W.z30.shape, 3.0)
    g_ice = 0.2 + 0.06 * fractal_noise(rng, W.z30.shape, 3.0)
    g_deb = 0.25 + 0.06 * fractal_noise(rng, W.z30.shape, 3.0)
    fs = snow_fraction30(W, W.ela0 + 150.0, fr["lake"])
    land = rock * g_rock + fr["till"] * 0.72 + meadow * 0.45 + forest * 0.25
    g = (land * (1 - fs) + (rock + fr["till"] + meadow + forest) * fs * 0.2 + fr["clean"] * g_ice
         + fr["firn"] * g_ice * 0.9 + fr["debris"] * g_deb + fr["lake"] * 0.03 + fr["snowpatch"] * 0.2)
    _, lay, shd = layover_shadow(W.z30, 78.0, 39.0)
    g = np.where(lay | shd, 0.12, g).astype(np.float32)
    g90 = block_mean(_crop(g, 3), 3)
    g90 = g90 + 0.05 * np.abs(rng.standard_normal(g90.shape)) * (1 - g90) + 0.03 * rng.standard_normal(g90.shape)
    return np.clip(g90, 0.0, 1.0).astype(np.float32)


def planted_speed10(W, st: dict, year: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Speed (m/yr) on the 10 m ice of a date and the per-glacier year factor."""
    lab = st["lab10"]
    ice = lab > 0
    tab = W.table
    area = np.r_[1.0, tab["area_t0_km2"].to_numpy()]
    zmin, zmax = np.r_[0.0, tab["zmin"].to_numpy()], np.r_[1.0, tab["zmax"].to_numpy()]
    yfac = (1.0 - 0.01 * (year - 2015)) * rng.uniform(0.9, 1.1, W.n + 1)
    ug = 45.0 * (area / 10.0) ** 0.4 * yfac
    span = np.maximum(zmax - zmin, 50.0)
    shape = 0.25 + 0.75 * np.exp(-(((W.z10 - W.ela10) / (0.35 * span[lab])) ** 2))
    dmar = ndimage.distance_transform_edt(ice) * RES_TRUTH
    u = ug[lab] * shape * (0.2 + 0.8 * smoothstep(dmar / 200.0))
    u = np.maximum(u, 3.0)
    u = np.where(st["debris10"], np.clip(0.15 * u, 1.5, 6.0), u)
    return np.where(ice, u, 0.0).astype(np.float32), yfac


def render_velocity(W, year: int) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(W.seed, 130 + (year - 1980))
    st = state_at(W, mid_year(year), year in (2003, 2015, 2022, 2023))
    u10, _ = planted_speed10(W, st, year, rng)
    zs = ndimage.gaussian_filter(W.z30.astype(np.float64), 150.0 / RES_DEM)
    gy, gx = np.gradient(zs, RES_DEM)  # rows go south: d/dnorth = -gy
    ge, gnorth = gx, -gy
    mag = np.maximum(np.hypot(ge, gnorth), 1e-6)
    ue = np.repeat(np.repeat(-ge / mag, F, 0), F, 1)
    un = np.repeat(np.repeat(-gnorth / mag, F, 0), F, 1)
    k = int(RES_VEL / RES_TRUTH)
    vx = block_mean(_crop((u10 * ue).astype(np.float32), k), k)
    vy = block_mean(_crop((u10 * un).astype(np.float32), k), k)
    slope = block_mean(_crop(W.slope10, k), k)
    glac = block_mean(_crop((st["lab10"] > 0).astype(np.float32), k), k) > 0
    for v in (vx, vy):
        v += 1.2 * rng.standard_normal(v.shape) + 0.8 * fractal_noise(rng, v.shape, 3.0)
        v += 3.0 * (slope / 45.0) ** 2 * rng.standard_normal(v.shape)
    void = (slope > 40.0) & ~glac & (rng.random(vx.shape) < 0.05)
    vx[void] = np.nan
    vy[void] = np.nan
    return vx.astype(np.float32), vy.astype(np.float32)
