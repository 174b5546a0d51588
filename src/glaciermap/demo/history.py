"""Glacier history for the non-Sentinel-2 sensors: the ice extent at any date, and the surface state at 30 m.

Between a glacier's inventory date t0 and the 2023 truth date t1 the extent is exactly the one the
Sentinel-2 scenes show (``glacier_state``: pixels whose removal rank exceeds the interpolated progress).
Outside that interval the planted rate r (%/yr) continues as a log-linear area law,
A(t) = A(t0) exp(r/100 (t - t0)) before t0 and A(t) = A(t1) exp(r/100 (t - t1)) after t1 (t in years):

* before t0 the glacier grows back into a plausible maximum extent: ice-free pixels within 350 m of it
  (or 900 m on its bare forefield / Little-Ice-Age trail), below its highest point + 30 m, on slopes
  < 40 degrees, not lakes nor perennial snowfields, each given to the nearest glacier. They are
  re-added in decreasing order of a growth score = elevation - 1.5 x distance (m) + correlated noise
  (the reverse of the retreat: near and high first, the far down-valley tongue last). Re-grown pixels are
  debris-covered where the nearest t0 pixel is. A glacier whose maximum extent is used up stays there
  (``at_max_extent`` in the truth time series).
* after t1 the remaining pixels keep being removed in the retreat-score order of ``plant``.

Everything is deterministic (RNG stage 100 for the growth noise); nothing here draws from the streams of
the Sentinel-2 region, so the existing outputs do not change.
"""

from __future__ import annotations

from datetime import date

import numpy as np
from scipy import ndimage

from .glaciers import F, RES_DEM, RES_TRUTH, _ordinal, _rng, glacier_state
from .noise import block_mean, fractal_noise, smoothstep
from .terrain import slope_aspect, surface_normals

GROW_DIST_M = 350.0
GROW_FOREFIELD_M = 900.0
_STAGE_HISTORY = 100


def prepare_history(W) -> None:
    """Growth ranks before t0 and removal ranks after t1 (10 m), and the static 30 m fields (once per world)."""
    if getattr(W, "grow_rank", None) is not None:
        return
    lab = W.lab10
    n = W.n
    gl = lab > 0
    dist, (iy, ix) = ndimage.distance_transform_edt(~gl, return_indices=True)
    dist_m = (dist * RES_TRUTH).astype(np.float32)
    owner = lab[iy, ix]
    near_debris = W.debris0[iy, ix]
    zmax = np.r_[0.0, W.table["zmax"].to_numpy()]
    border = np.zeros_like(gl)
    border[8:-8, 8:-8] = True
    cand = (~gl & ~W.lake10 & ~W.snowpatch10 & (W.slope10 < 40.0) & border & (owner > 0)
            & ((dist_m <= GROW_DIST_M) | (W.forefield10 & (dist_m <= GROW_FOREFIELD_M)))
            & (W.z10 <= zmax[owner] + 30.0))
    rng = _rng(W.seed, _STAGE_HISTORY)
    wob = fractal_noise(rng, (W.h10, W.w10), 3.2)
    score = W.z10 - 1.5 * dist_m + 15.0 * wob
    grow_rank = np.zeros((W.h10, W.w10), np.int32)
    cap = np.zeros(n + 1, np.int64)
    flat = np.flatnonzero(cand)
    own = owner.ravel()[flat]
    o = np.lexsort((flat, -score.ravel()[flat], own))  # by glacier, highest score first, ties by index
    flat, own = flat[o], own[o]
    starts = np.searchsorted(own, np.arange(1, n + 1))
    ends = np.searchsorted(own, np.arange(1, n + 1), side="right")
    for g in range(1, n + 1):
        a, b = starts[g - 1], ends[g - 1]
        grow_rank.ravel()[flat[a:b]] = np.arange(1, b - a + 1)
        cap[g] = b - a
    W.grow_owner = np.where(cand, owner, 0).astype(np.uint16)
    W.grow_rank, W.grow_cap = grow_rank, cap
    W.grow_debris = cand & near_debris
    # after t1: the kept pixels in retreat-score order
    post_rank = np.full((W.h10, W.w10), np.iinfo(np.int32).max, np.int32)
    kept = np.flatnonzero(W.kept1)
    kl = lab.ravel()[kept]
    o = np.lexsort((kept, W.score10.ravel()[kept], kl))
    kept, kl = kept[o], kl[o]
    starts = np.searchsorted(kl, np.arange(1, n + 1))
    ends = np.searchsorted(kl, np.arange(1, n + 1), side="right")
    for g in range(1, n + 1):
        a, b = starts[g - 1], ends[g - 1]
        post_rank.ravel()[kept[a:b]] = np.arange(1, b - a + 1)
    W.post_rank = post_rank
    W.n0 = np.r_[0, W.table["n0"].to_numpy()].astype(np.int64)
    W.n1 = np.r_[0, W.table["n1"].to_numpy()].astype(np.int64)
    W.rate = np.r_[0.0, W.rate_pct]
    # static 30 m fields
    W.lith30, W.tint30 = block_mean(W.lith10, F), block_mean(W.tint10, F)
    W.meadow30, W.forest30 = block_mean(W.meadow10, F), block_mean(W.forest10, F)
    W.dirt30, W.tex30 = block_mean(W.dirt10, F), block_mean(W.tex10, F)
    W.sn30, W.north30 = block_mean(W.sn10, F), block_mean(W.north10, F)
    W.snowpatch30 = block_mean(W.snowpatch10.astype(np.float32), F)
    _, _, gx, gn = slope_aspect(W.z30, RES_DEM)
    W.nx30, W.ny30, W.nz30 = surface_normals(gx, gn)
    W.sky30 = ((1.0 + np.cos(np.radians(W.slope30))) / 2.0).astype(np.float32)


def labels_at(W, when) -> tuple[np.ndarray, np.ndarray]:
    """(10 m glacier label raster at a date, per-label flag 'maximum extent used up')."""
    o = _ordinal(when)
    f = glacier_state(W, o)
    lab = W.lab10
    n = W.n
    t0 = W.t0_ord
    yrs0 = (o - t0) / 365.25
    k_grow = np.zeros(n + 1, np.int64)
    capped = np.zeros(n + 1, bool)
    before = (o < t0) & (np.arange(n + 1) > 0)
    want = np.rint(W.n0 * np.exp(W.rate / 100.0 * yrs0)).astype(np.int64) - W.n0
    k_grow[before] = np.minimum(want[before], W.grow_cap[before])
    capped[before] = want[before] > W.grow_cap[before]
    k_post = np.zeros(n + 1, np.int64)
    if W.t1_ord is not None and o > W.t1_ord:
        yrs1 = (o - W.t1_ord) / 365.25
        k_post[1:] = np.maximum(0, W.n1[1:] - np.rint(W.n1[1:] * np.exp(W.rate[1:] / 100.0 * yrs1)).astype(np.int64))
        k_post[1:] = np.minimum(k_post[1:], W.n1[1:] - 1)
    ice = (lab > 0) & (W.q10 > f[lab]) & (W.post_rank > k_post[lab])
    out = np.where(ice, lab, 0).astype(np.uint16)
    grown = (W.grow_owner > 0) & (W.grow_rank <= k_grow[W.grow_owner])
    out[grown] = W.grow_owner[grown]
    return out, capped[1:]


def state_at(W, when, hot: bool, factor: int = F) -> dict:
    """10 m label raster and class fractions at 10 m x ``factor`` (30 m by default) at a date (no seasonal snow).

    Classes as in ``surface_weights``: firn (clean ice above the local ELA, +150 m in a hot year), clean
    ice, debris-covered ice (the glacier's time-interpolated debris threshold; re-grown pixels copy their
    nearest t0 pixel), lake (tarns, and proglacial lakes where the ice has gone), till (pixels the inventory
    glacier has lost, and bare forefields not under ice), perennial snowfields, and land.
    """
    lab_t, capped = labels_at(W, when)
    o = _ordinal(when)
    f = glacier_state(W, o)
    ice = lab_t > 0
    thr = W.thr0 + (W.thr1 - W.thr0) * f
    inside = W.lab10 > 0
    debris = ice & np.where(inside, W.p10 >= thr[W.lab10], W.grow_debris)
    lake = W.lake10 | (W.lakefoot10 & ~ice)
    firn = ice & ~debris & (W.z10 > W.ela10 + (150.0 if hot else 0.0))
    clean = ice & ~debris & ~firn
    till = ((inside & ~ice & ~lake) | W.forefield10) & ~ice
    fr = {k: block_mean(v.astype(np.float32), factor) for k, v in
          (("ice", ice), ("debris", debris), ("firn", firn), ("clean", clean), ("lake", lake), ("till", till))}
    fr["snowpatch"] = W.snowpatch30 if factor == F else block_mean(W.snowpatch10.astype(np.float32), factor)
    fr["land"] = np.clip(1.0 - fr["ice"] - fr["lake"] - fr["snowpatch"], 0.0, 1.0)
    return {"lab10": lab_t, "capped": capped, "fr": fr, "debris10": debris, "ice10": ice}


def weights30(W, st: dict, hot: bool) -> np.ndarray:
    """Endmember weights (9, h30, w30) in the order of ``_ENDMEMBERS`` from the 30 m class fractions."""
    fr = st["fr"]
    veg_room = np.clip(fr["land"] - fr["till"], 0.0, 1.0)
    meadow = np.minimum(W.meadow30, veg_room)
    forest = np.minimum(W.forest30, np.clip(veg_room - meadow, 0.0, 1.0))
    dirt = W.dirt30 * (1.25 if hot else 1.0)
    rock = (W.lith30 * np.clip(veg_room - meadow - forest, 0.0, 1.0) + W.lith30 * 1.12 * fr["till"]
            + W.lith30 * 0.88 * fr["debris"] + 0.25 * dirt * fr["clean"])
    w = np.zeros((9,) + W.z30.shape, np.float32)
    w[4] = rock * (1.0 - W.tint30)
    w[5] = rock * W.tint30
    w[1] = fr["snowpatch"]
    w[2] = fr["firn"] * (0.85 if hot else 1.0)
    w[3] = fr["clean"] * (1.0 - 0.5 * dirt) + 0.06 * fr["debris"] + (0.15 * fr["firn"] if hot else 0.0)
    w[6] = meadow
    w[7] = forest
    w[8] = fr["lake"]
    return w


def snow_fraction30(W, snowline_m: float, lake: np.ndarray) -> np.ndarray:
    """Seasonal snow cover at 30 m for a transient snow line (as the Sentinel-2 scenes)."""
    fs = smoothstep((W.z30 + 120.0 * W.north30 + 90.0 * W.sn30 - snowline_m) / 160.0 + 0.5)
    fs = fs * (1.0 - smoothstep((W.slope30 - 42.0) / 14.0))
    return (fs * (1.0 - lake)).astype(np.float32)


def mid_year(year: int) -> str:
    return date(year, 7, 1).isoformat()
