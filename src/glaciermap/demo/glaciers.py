"""The world: glaciers from the terrain, the 10 m outlines, planted change (inventory dates, retreat ranks),
debris, lakes, land cover, the glacier state at a date, and dh/dt."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .noise import block_mean, fractal_noise, smoothstep, upsample, upsample_nearest
from .terrain import (FlowTree, cos_incidence, horizon_height, make_terrain, slope_aspect, surface_normals,
                      tile_noise_scale)


# --------------------------------------------------------------------------------------------------
# glaciers from the terrain
# --------------------------------------------------------------------------------------------------

_GAMMA = 0.0075  # mass-balance gradient, m w.e. per m per year
_BMAX = 2.0  # accumulation cap, m w.e./yr


def mass_balance(z, ela_local):
    return np.clip(_GAMMA * (z - ela_local), -12.0, _BMAX)


def ice_from_flux(z, slope, tree: FlowTree, ela_local, res: float):
    """Ice mask from mass-balance flux routed down the drainage tree.

    Every cell gains b(z) = gamma (z - ELA_local) x cell area per year (capped above the ELA); the flux
    is summed downstream along the D8 tree, a tributary passing on only a positive total (ice that
    reaches its mouth). Ice lies where the flux stays positive, except on rock walls steeper than
    ~47 degrees (their snow avalanches down and still feeds the flux below). In the ablation zone the
    flux line is widened into a valley tongue: cells within half-width ~ 0.22 Q^0.5 of a flux line
    and below its ice surface (bed + thickness ~ 0.055 Q^0.5) are ice, so tongues fill their troughs.
    Returns (ice mask, flux Q in m3 w.e./yr).
    """
    h, w = z.shape
    b = mass_balance(z, ela_local) * (res * res)
    q = tree.accumulate(b.ravel(), positive=True).reshape(h, w)
    # a tongue ablates over its whole width, not only along its flux line: scale the ablation of
    # flux-line cells by the width the flux implies, and re-route (two fixed-point passes)
    for _ in range(2):
        width = np.where((q > 0) & (b < 0), np.maximum(1.0, 2 * 0.22 * np.sqrt(np.maximum(q, 0)) / res), 1.0)
        q = tree.accumulate((b * width).ravel(), positive=True).reshape(h, w)
    core = (q > 0) & ((slope < 47.0) | (q > 4e5))
    trunk = (q > 2e3) & (b < 0) & core
    ice = core.copy()
    for reach, (iy, ix) in _near_lines(trunk, q, res):
        surf = z[iy, ix] + 0.08 * np.sqrt(q[iy, ix])
        ice |= reach & (z <= surf) & (slope < 50.0)
    ice = ndimage.binary_closing(ice, structure=np.ones((3, 3)), iterations=1)
    ice = ndimage.binary_opening(ice, structure=np.ones((2, 2)))
    filled = ndimage.binary_fill_holes(ice)
    holes, nh = ndimage.label(filled & ~ice)
    if nh:
        hsize = np.bincount(holes.ravel())
        small_hole = hsize < 12
        small_hole[0] = False
        ice |= small_hole[holes]
    return ice, q


def _near_lines(lines: np.ndarray, q: np.ndarray, res: float, k_half: float = 0.22, cap: float = 1.0):
    """Cells within the half-width k_half sqrt(q) of a flux line, per half-width class.

    Yields (within-reach mask, indices of the nearest line cell); classes keep a big trunk from
    being shadowed by a nearby small tributary.
    """
    half = k_half * np.sqrt(np.where(lines, q, 0.0))
    edges = [1e-9, 60.0, 150.0, 300.0, 1e9]
    for lo_, hi_ in zip(edges[:-1], edges[1:]):
        sel = lines & (half >= lo_) & (half < hi_)
        if not sel.any():
            continue
        dist, (iy, ix) = ndimage.distance_transform_edt(~sel, sampling=res, return_indices=True)
        yield dist <= cap * half[iy, ix], (iy, ix)


def carve_troughs(z, slope, tree: FlowTree, ela_paleo: float, res: float):
    """Glacial troughs and cirques: U-shaped cross-sections along the flux lines of a larger, former glaciation.

    Cells within 1.3 half-widths of a paleo flux line are lowered onto a parabola rising 0.6 x the
    half-width above the line (only ever lowered), which flattens valley floors and cirque floors.
    """
    h, w = z.shape
    b = mass_balance(z, np.full_like(z, ela_paleo)) * (res * res)
    q = tree.accumulate(b.ravel(), positive=True).reshape(h, w)
    lines = q > 3e4
    q = np.minimum(q, (450.0 / 0.25) ** 2)  # half-widths capped at 450 m
    delta = np.zeros_like(z)
    for _, (iy, ix) in _near_lines(lines, q, res, k_half=0.25, cap=1.3):
        half = 0.25 * np.sqrt(q[iy, ix])
        d = np.hypot((np.arange(h)[:, None] - iy) * res, (np.arange(w)[None, :] - ix) * res)
        u = d / np.maximum(half, 1.0)
        trough = z[iy, ix] + 0.6 * half * u * u
        taper = 1.0 - smoothstep((u - 0.9) / 0.4)
        delta = np.maximum(delta, np.maximum(z - trough, 0.0) * taper)
    delta = ndimage.gaussian_filter(delta, 1.5)
    return (z - delta).astype(np.float32)


def split_basins(ice: np.ndarray, tree: FlowTree, min_cells: int) -> np.ndarray:
    """Glacier labels: ice cells grouped by the ice outlet their flow path leaves the ice at.

    Basins smaller than ``min_cells`` are merged into the touching basin with which they share the
    longest border (a larger one), so neighbouring glaciers meet along ice divides.
    """
    h, w = ice.shape
    root = tree.root_within(ice).reshape(h, w)
    lab = _compact(np.where(ice, root + 1, 0))
    for _ in range(20):
        n = int(lab.max()) + 1
        size = np.bincount(lab.ravel(), minlength=n)
        a = np.concatenate([lab[:, :-1].ravel(), lab[:-1, :].ravel()])
        bb = np.concatenate([lab[:, 1:].ravel(), lab[1:, :].ravel()])
        m = (a != bb) & (a > 0) & (bb > 0)
        a, bb = a[m], bb[m]
        a, bb = np.r_[a, bb], np.r_[bb, a]
        key, cnt = np.unique(a * n + bb, return_counts=True)
        src, dst = key // n, key % n
        bigger = (size[dst] > size[src]) | ((size[dst] == size[src]) & (dst > src))
        cand = (size[src] < min_cells) & bigger
        if not cand.any():
            break
        src, dst, cnt = src[cand], dst[cand], cnt[cand]
        order = np.lexsort((-size[dst], -cnt, src))  # per source: longest border first
        src, dst = src[order], dst[order]
        first = np.r_[True, src[1:] != src[:-1]]
        mapping = np.arange(n)
        mapping[src[first]] = dst[first]
        for _ in range(64):
            nm = mapping[mapping]
            if np.array_equal(nm, mapping):
                break
            mapping = nm
        lab = mapping[lab]
    return _compact(lab)


def _compact(lab: np.ndarray) -> np.ndarray:
    """Relabel to 0 (background) and 1..k in order of the old label values."""
    present = np.bincount(lab.ravel()) > 0
    present[0] = True
    newid = np.cumsum(present) - 1
    return newid[lab].astype(np.int64)


def _clear_border(mask: np.ndarray, cells: int) -> np.ndarray:
    out = mask.copy()
    out[:cells] = out[-cells:] = False
    out[:, :cells] = out[:, -cells:] = False
    return out


def tune_glaciers(z, slope, tree: FlowTree, ela_offset, spec: dict, res: float):
    """Find the regional ELA (and the basin-merging size) that gives the preset's glacier population.

    The ELA is lowered in 40 m steps from near the summits; for each ice extent, basins are split
    with a few merging sizes. The first combination whose number of glaciers >= 0.1 km2 and whose
    largest glacier fall in the preset's ranges wins (otherwise the closest one).
    Returns (ela0, ice mask, labels).
    """
    zlo, zhi = spec["relief_m"]
    lo, hi = spec["n_glaciers"]
    slo, shi = spec["n_small"]
    alo, ahi = spec["largest_km2"]
    cell_km2 = res * res / 1e6
    want_lo, want_hi = lo - slo, hi - shi
    start = float(np.percentile(z, 99.0)) - 150.0
    best, best_pen = None, np.inf
    for ela0 in np.arange(start, zlo + 0.35 * (zhi - zlo), -40.0):
        ice, _ = ice_from_flux(z, slope, tree, ela0 + ela_offset, res)
        ice = _clear_border(ice, 3)
        if ice.sum() * cell_km2 < alo:
            continue
        for merge_km2 in (0.1, 0.15, 0.25, 0.4):
            lab = split_basins(ice, tree, int(round(merge_km2 / cell_km2)))
            size = np.bincount(lab.ravel())[1:] * cell_km2
            n_big = int((size >= 0.1).sum())
            n_small = int(((size >= 0.012) & (size < 0.1)).sum())
            largest = float(size.max()) if size.size else 0.0
            pen = (max(0, want_lo - n_big) + max(0, n_big - want_hi)
                   + 3 * max(0.0, alo - largest) + 3 * max(0.0, largest - ahi) + max(0, slo - n_small))
            if pen < best_pen:
                best, best_pen = (float(ela0), ice, lab), pen
            if pen == 0:
                return best
        if best is not None and n_big > want_hi and largest > ahi:
            break  # lower ELAs only make it worse
    return best


# --------------------------------------------------------------------------------------------------
# the world: terrain, glaciers at 10 m, planted change, debris, lakes, land cover
# --------------------------------------------------------------------------------------------------

RES_DEM = 30.0
RES_TRUTH = 10.0
RES_DHDT = 100.0
F = 3  # 30 m -> 10 m


def _rng(seed: int, stage: int) -> np.random.Generator:
    """Independent generator per stage, so changing one stage never shifts another's numbers."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), 7919, int(stage)]))


def planted_rate_pct(area_km2: float, rng: np.random.Generator, debris_dominated: bool) -> float:
    """Planted relative area change (%/yr): -(1.55 - 0.85 log10 A) + N(0, 0.35), clipped to [-4, -0.5].

    Small glaciers lose a larger fraction (10 km2: ~-0.7 %/yr, 1 km2: ~-1.6, 0.1 km2: ~-2.4,
    0.03 km2: ~-2.8); debris-dominated glaciers retreat at 60 % of that (insulated tongues).
    """
    mu = -(1.55 - 0.85 * np.log10(max(area_km2, 1e-3)))
    r = float(np.clip(mu + rng.normal(0.0, 0.35), -4.0, -0.5))
    if debris_dominated:
        r = min(-0.4, 0.6 * r)
    return r


def _per_label_components(lab: np.ndarray, min_px: int) -> np.ndarray:
    """Remove, glacier by glacier, 4-connected fragments smaller than ``min_px``."""
    out = lab.copy()
    for g, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None:
            continue
        sub = lab[sl] == g
        cc, n = ndimage.label(sub)
        if n <= 1:
            continue
        size = np.bincount(cc.ravel())
        small = size < min_px
        small[0] = False
        # keep at least the biggest piece
        small[np.argmax(np.where(np.arange(size.size) > 0, size, -1))] = False
        kill = small[cc]
        o = out[sl]
        o[kill] = 0
    return out


def _insolation(z, nx, ny, nz, res):
    """Mean clear-sky direct illumination for three midsummer sun positions (with cast shadows)."""
    out = np.zeros_like(z)
    for az in (120.0, 180.0, 240.0):
        lit = horizon_height(z, res, az, 55.0) < z
        out += np.clip(cos_incidence(nx, ny, nz, az, 55.0), 0, None) * lit / 3.0
    return out


def _pick_spread(rng, cand_idx: np.ndarray, n: int, shape, min_cells: float) -> list[int]:
    """Up to ``n`` random cells of ``cand_idx`` at least ``min_cells`` apart."""
    chosen: list[int] = []
    if cand_idx.size == 0:
        return chosen
    for i in rng.permutation(cand_idx)[: 50 * n]:
        y, x = divmod(int(i), shape[1])
        if all((y - cy) ** 2 + (x - cx) ** 2 >= min_cells ** 2 for cy, cx in (divmod(c, shape[1]) for c in chosen)):
            chosen.append(int(i))
        if len(chosen) >= n:
            break
    return sorted(chosen)


def build_world(seed: int, spec: dict) -> "SimpleNamespace":
    """Everything static about the region (terrain, glaciers at t0 and their planted change), as arrays.

    The scene dates come from ``make_schedule`` (inventory dates are the clear dates of each year).
    """
    from types import SimpleNamespace

    wm, hm = spec["size_m"]
    h30, w30 = int(round(hm / RES_DEM)), int(round(wm / RES_DEM))
    h10, w10 = h30 * F, w30 * F
    zlo, zhi = spec["relief_m"]
    W = SimpleNamespace(seed=seed, spec=spec, h30=h30, w30=w30, h10=h10, w10=w10,
                        x0=float(spec["origin"][0]), y0=float(spec["origin"][1]))

    # --- terrain and glaciers (30 m)
    # "tile_m" (the scale preset): the region is made of demo-sized landscapes side by side (make_terrain); a
    # region of one tile is made as the demo is (so the scale preset at 50 glaciers is the demo's terrain)
    tile = None if spec.get("tile_m") is None else (spec["tile_m"][1] / RES_DEM, spec["tile_m"][0] / RES_DEM)
    largest = tile_noise_scale(h30, w30, tile, spec["pad_m"] / RES_DEM)  # the noise's scales: one tile's
    z, tree, _ = make_terrain(_rng(seed, 1), h30, w30, (zlo, zhi), spec["pad_m"], RES_DEM, tile=tile)
    slope, _, _, _ = slope_aspect(z, RES_DEM)
    z = carve_troughs(z, slope, tree, zlo + 0.45 * (zhi - zlo), RES_DEM)
    slope, aspect, gx, gn = slope_aspect(z, RES_DEM)
    nx, ny, nz = surface_normals(gx, gn)
    rc = _rng(seed, 2)
    ins = _insolation(z, nx, ny, nz, RES_DEM)
    mass = ndimage.gaussian_filter(z, 4000.0 / RES_DEM)
    yy, xx = np.mgrid[0:h30, 0:w30]
    dedge = np.minimum(np.minimum(yy, h30 - 1 - yy), np.minimum(xx, w30 - 1 - xx)) * RES_DEM
    ela_off = (350.0 * (ins - np.sin(np.radians(55.0))) + 0.5 * (mass - mass.mean())
               + 1200.0 * (1.0 - smoothstep(dedge / 2500.0))
               + 60.0 * fractal_noise(rc, (h30, w30), 3.5, largest=largest))
    ela0, ice30, lab30 = tune_glaciers(z, slope, tree, ela_off, spec, RES_DEM)
    ela30 = (ela0 + ela_off).astype(np.float32)
    W.ela0 = ela0
    # glacier surfaces are smooth: blend the DEM towards a smoothed copy over (and just around) the ice
    wice = ndimage.gaussian_filter(ice30.astype(np.float32), 1.5)
    z = (z + np.clip(1.5 * wice, 0, 1) * (ndimage.gaussian_filter(z, 2.5) - z)).astype(np.float32)

    # --- tarns: flat spots away from the ice, DEM flattened under the water
    rl = _rng(seed, 3)
    icebuf = ndimage.binary_dilation(ice30, iterations=4)
    cand = (slope < 8) & ~icebuf & (z > ela0 - 1100) & (z < ela0 + 100) & _clear_border(np.ones_like(ice30), 12)
    lake30 = np.zeros_like(ice30)
    for c in _pick_spread(rl, np.flatnonzero(cand), spec["n_lakes"], (h30, w30), 25):
        cy, cx = divmod(c, w30)
        r = rl.uniform(2.0, 5.5)
        noise = fractal_noise(rl, (25, 25), 3.0)
        yy2, xx2 = np.mgrid[-12:13, -12:13]
        blob = np.hypot(yy2, xx2) + 1.3 * noise < r
        sl = (slice(cy - 12, cy + 13), slice(cx - 12, cx + 13))
        blob &= (slope[sl] < 22) & ~icebuf[sl]
        cc, _ = ndimage.label(blob)
        if cc[12, 12] == 0:
            continue
        blob = cc == cc[12, 12]
        zz = z[sl]
        zz[blob] = np.percentile(zz[blob], 25)
        lake30[sl] |= blob
    slope, aspect, gx, gn = slope_aspect(z, RES_DEM)
    nx, ny, nz = surface_normals(gx, gn)
    W.z30, W.slope30, W.aspect30, W.ice30, W.ela30 = z, slope, aspect, ice30, ela30
    W.tree = tree

    # --- 10 m glacier outlines: smooth the 30 m mask, add sub-pixel irregularity, label by nearest basin
    rs = _rng(seed, 4)
    z10 = upsample(z, F)
    fice = upsample(ndimage.gaussian_filter(ice30.astype(np.float32), 0.8), F)
    fice += 0.10 * fractal_noise(rs, (h10, w10), 3.0, largest=None if largest is None else largest * F)
    ice10 = fice > 0.5
    _, (iy, ix) = ndimage.distance_transform_edt(lab30 == 0, return_indices=True)
    near = upsample_nearest(lab30[iy, ix], F)
    lab10 = np.where(ice10, near, 0)
    lab10[:6] = lab10[-6:] = 0
    lab10[:, :6] = lab10[:, -6:] = 0
    lab10 = _per_label_components(lab10, 30)
    npx = np.bincount(lab10.ravel(), minlength=int(lab10.max()) + 1)
    ids = np.arange(npx.size)
    big = ids[(ids > 0) & (npx >= 1000)]
    small = ids[(ids > 0) & (npx >= 100) & (npx < 1000)]
    lo, hi = spec["n_glaciers"]
    k = int(rs.integers(spec["n_small"][0], spec["n_small"][1] + 1))
    k = max(min(k, hi - big.size), lo - big.size, 0)
    k = min(k, small.size)
    keep_small = np.sort(rs.choice(small, size=k, replace=False)) if k else np.array([], int)
    keep = np.concatenate([big, keep_small])
    if keep.size > hi:  # fallback: the smallest extra glaciers become perennial snowfields
        keep = keep[np.argsort(-npx[keep], kind="stable")][:hi]
    kept = np.zeros(npx.size, bool)
    kept[keep] = True
    snowpatch10 = (lab10 > 0) & ~kept[lab10]
    # renumber west -> east by centroid
    cols = np.arange(w10)[None, :]
    sumx = ndimage.sum_labels(np.broadcast_to(cols, lab10.shape), lab10, keep)
    cenx = sumx / npx[keep]
    order = keep[np.argsort(cenx, kind="stable")]
    remap = np.zeros(npx.size, np.int32)
    remap[order] = np.arange(1, order.size + 1)
    lab10 = remap[lab10].astype(np.uint16)
    n = order.size
    W.n = n
    W.z10 = z10
    W.lab10 = lab10
    W.snowpatch10 = snowpatch10
    W.lake30 = lake30
    return W


# --------------------------------------------------------------------------------------------------
# planted change, debris, lakes and land cover (10 m)
# --------------------------------------------------------------------------------------------------


def _ordinal(d) -> int:
    from datetime import date

    return (date.fromisoformat(d) if isinstance(d, str) else d).toordinal()


def _assign_inventory_dates(W, schedule, rng) -> list[str]:
    """Inventory date of each glacier: the clear ('best'/'good') date of its inventory year.

    Years are assigned in spatial blocks (as an inventory compiled from several scenes): glaciers are
    ordered along a random direction and cut by the preset's year shares (each year gets at least one);
    in a year with two clear dates the glaciers are split again along another direction.
    """
    n = W.n
    shares = W.spec["inventory_years"]
    years = list(shares)
    cy, cx = W.cen_rc[:, 0], W.cen_rc[:, 1]
    ang = rng.uniform(0, 2 * np.pi)
    order = np.argsort(np.cos(ang) * cx + np.sin(ang) * cy, kind="stable")
    cum = np.cumsum([shares[y] for y in years])
    cut = np.round(cum / cum[-1] * n).astype(int)
    for i in range(len(cut) - 1):  # every year gets at least one glacier
        cut[i] = min(max(cut[i], (cut[i - 1] if i else 0) + 1), n - (len(cut) - 1 - i))
    year_of = np.empty(n, int)
    prev = 0
    for y, c in zip(years, cut):
        year_of[order[prev:c]] = y
        prev = c
    dates = [""] * n
    for y in years:
        clear = [s for s in schedule if s["year"] == y and s["quality"] in ("best", "good")]
        clear.sort(key=lambda s: s["quality"] != "best")
        members = np.flatnonzero(year_of == y)
        if len(clear) == 1 or members.size < 2:
            for g in members:
                dates[g] = clear[0]["date"]
            continue
        ang2 = rng.uniform(0, 2 * np.pi)
        o2 = members[np.argsort(np.cos(ang2) * cx[members] + np.sin(ang2) * cy[members], kind="stable")]
        ncut = int(round(0.6 * o2.size))
        for g in o2[:ncut]:
            dates[g] = clear[0]["date"]
        for g in o2[ncut:]:
            dates[g] = clear[1]["date"]
    return dates


def plant(W, schedule: list[dict]) -> None:
    """Inventory dates, debris cover, planted retreat to 2023, proglacial lakes and the land cover."""
    import pandas as pd

    seed, spec = W.seed, W.spec
    h10, w10, n = W.h10, W.w10, W.n
    lab = W.lab10
    rng = _rng(seed, 6)
    idx_all = np.arange(1, n + 1)
    npx = np.bincount(lab.ravel(), minlength=n + 1)
    rr, cc = np.mgrid[0:h10, 0:w10]
    W.cen_rc = np.stack([ndimage.mean(rr, lab, idx_all), ndimage.mean(cc, lab, idx_all)], axis=1)
    del rr, cc
    z10 = W.z10
    ela10 = upsample(W.ela30, F)
    slope10 = upsample(W.slope30, F)
    W.ela10 = ela10
    W.slope10 = slope10
    zmin = ndimage.minimum(z10, lab, idx_all)
    zmax = ndimage.maximum(z10, lab, idx_all)

    # inventory (t0) dates and the 2023 truth date
    dates = _assign_inventory_dates(W, schedule, rng)
    t1 = next(s["date"] for s in schedule if s["year"] == 2023 and s["quality"] == "best") if any(
        s["year"] == 2023 for s in schedule) else None
    W.t1 = t1

    # debris potential: position in the ablation zone x rock-wall debris supply routed downglacier
    rock30 = (W.slope30 >= 38.0) & ~W.ice30
    supply = ndimage.gaussian_filter(rock30.astype(np.float32), 1.5).ravel()
    up = W.tree.accumulate(np.ones(supply.size))
    conc = (W.tree.accumulate(supply) / up).reshape(W.h30, W.w30).astype(np.float32)
    conc = ndimage.gaussian_filter(conc, 3.0)
    conc10 = upsample(np.clip(conc / 0.3, 0, 1), F)
    zmin_px = np.r_[0.0, zmin][lab]
    e10 = np.clip((ela10 - z10) / np.maximum(ela10 - zmin_px, 30.0), 0.0, 1.0)
    rp = _rng(seed, 7)
    p10 = (e10 ** 1.3 * (0.35 + 1.2 * conc10) + 0.10 * fractal_noise(rp, (h10, w10), 3.0)
           + 0.04 * fractal_noise(rp, (h10, w10), 2.0)).astype(np.float32)
    W.p10 = p10
    gl = lab > 0
    flat = np.flatnonzero(gl)
    labf = lab.ravel()[flat]
    srt = np.argsort(labf, kind="stable")
    flat, labf = flat[srt], labf[srt]
    starts = np.searchsorted(labf, idx_all)
    ends = np.searchsorted(labf, idx_all, side="right")
    px_of = [flat[a:b] for a, b in zip(starts, ends)]

    # debris-dominated glaciers: small/medium ones with low tongues under rock walls
    mean_e = ndimage.mean(e10, lab, idx_all)
    mean_c = ndimage.mean(conc10, lab, idx_all)
    area0 = npx[1:] * 1e-4
    eligible = np.flatnonzero((area0 >= 0.1) & (area0 <= 2.5))
    nd = int(rng.integers(spec["n_debris_dominated"][0], spec["n_debris_dominated"][1] + 1))
    score = mean_e + mean_c
    top = eligible[np.argsort(-score[eligible], kind="stable")][: max(2 * nd, nd)]
    dd = np.zeros(n, bool)
    if nd and top.size:
        dd[np.sort(rng.choice(top, size=min(nd, top.size), replace=False))] = True

    # t0 debris fractions and thresholds
    thr0 = np.zeros(n + 1, np.float32)
    pmax = np.zeros(n + 1, np.float32)
    frac_target = np.zeros(n)
    for g in range(n):
        pv = p10.ravel()[px_of[g]]
        pmax[g + 1] = pv.max() + 1e-3
        if dd[g]:
            f0 = rng.uniform(0.75, 0.92)
        elif zmin[g] > np.median(ela10.ravel()[px_of[g]]) - 50 or rng.random() < 0.3:
            f0 = 0.0
        else:
            f0 = float(np.clip(0.05 * area0[g] ** 0.3 * np.exp(rng.normal(0, 0.7)), 0.005, 0.35))
        frac_target[g] = f0
        thr0[g + 1] = np.quantile(pv, 1.0 - f0) if f0 > 0 else pmax[g + 1]
    debris0 = gl & (p10 >= thr0[lab])

    # planted retreat: rank pixels, lowest (tongue) and outer-margin pixels first
    er = gl.copy()
    dmargin = np.zeros((h10, w10), np.float32)
    for _ in range(4):
        er = ndimage.binary_erosion(er)
        dmargin += er
    dmargin = dmargin * RES_TRUTH + 5.0  # ~ distance (m) to the nearest ice-free pixel, capped at 45
    wob = fractal_noise(rng, (h10, w10), 3.2)
    score10 = z10 - 2.5 * np.maximum(0.0, 40.0 - dmargin) + 12.0 * wob + 40.0 * debris0
    q10 = np.full((h10, w10), np.inf, np.float32)
    n1 = np.zeros(n, int)
    rates = np.zeros(n)
    t1o = _ordinal(t1) if t1 else None
    for g in range(n):
        pix = px_of[g]
        n0 = pix.size
        t0 = dates[g]
        years = (t1o - _ordinal(t0)) / 365.25 if t1o else 0.0
        rate = planted_rate_pct(area0[g], rng, bool(dd[g]))
        rates[g] = rate
        if t1o:
            k1 = int(np.floor(n0 * (1.0 + rate / 100.0 * years)))
            k1 = min(n0 - 1, max(1, k1))
            remove = n0 - k1
            sv = score10.ravel()[pix]
            o = np.lexsort((pix, sv))  # lowest score first, ties by pixel index
            q10.ravel()[pix[o[:remove]]] = (np.arange(1, remove + 1) / remove).astype(np.float32)
        else:
            k1 = n0
        n1[g] = k1
    kept1 = gl & (q10 > 1.0)

    # debris grows by 2023 (thresholds lowered; debris-free glaciers may get a little)
    W_debris_frac0 = ndimage.mean(debris0, lab, idx_all)
    thr1 = thr0.copy()
    for g in range(n):
        if not t1o:
            break
        pix = px_of[g]
        kp = pix[q10.ravel()[pix] > 1.0]
        pv = p10.ravel()[kp]
        cur = float((pv >= thr0[g + 1]).mean()) if pv.size else 0.0
        if frac_target[g] > 0:
            cur = max(cur, float(W_debris_frac0[g]))
            f1 = min(0.97, cur + (rng.uniform(0.03, 0.06) if dd[g] else rng.uniform(0.02, 0.08)))
        elif rng.random() < 0.3 and zmin[g] < np.median(ela10.ravel()[pix]) - 50:
            f1 = rng.uniform(0.01, 0.03)
        else:
            f1 = 0.0
        if f1 > 0 and pv.size:
            thr1[g + 1] = min(thr0[g + 1], np.quantile(pv, 1.0 - f1))
    debris1 = kept1 & (p10 >= thr1[lab])
    W.thr0, W.thr1, W.q10, W.dd = thr0, thr1, q10, dd
    W.rate_pct, W.score10 = rates, score10  # (kept for the other sensors' glacier history; no draws)
    W.t0_ord = np.r_[0, [_ordinal(d) for d in dates]].astype(np.int64)
    W.t1_ord = t1o

    # proglacial lakes in front of (and growing into) some retreating tongues
    rk = _rng(seed, 8)
    lakefoot = np.zeros((h10, w10), bool)
    cand = [g for g in range(n) if area0[g] >= 0.3 and not dd[g] and t1o]
    rk.shuffle(cand)
    made = 0
    for g in cand:
        if made >= spec["n_proglacial_lakes"]:
            break
        pix = px_of[g]
        term = pix[np.argmin(z10.ravel()[pix])]
        ty, tx = divmod(int(term), w10)
        rad = rk.uniform(12, 28)  # pixels
        r0, r1 = max(0, ty - 40), min(h10, ty + 41)
        c0, c1 = max(0, tx - 40), min(w10, tx + 41)
        yy, xx = np.mgrid[r0:r1, c0:c1]
        near = np.hypot(yy - ty, xx - tx) < rad
        sub_lab = lab[r0:r1, c0:c1]
        removed = (sub_lab == g + 1) & (q10[r0:r1, c0:c1] <= 1.0)
        outside = (sub_lab == 0) & (z10[r0:r1, c0:c1] <= z10[ty, tx] + 12.0) & ~W.snowpatch10[r0:r1, c0:c1]
        foot = near & (removed | outside) & (slope10[r0:r1, c0:c1] < 25.0)
        if foot.sum() < 150 or removed[foot].mean() < 0.3:
            continue
        cc_, _ = ndimage.label(foot)
        keep_lbl = np.bincount(cc_.ravel())
        keep_lbl[0] = 0
        foot = cc_ == np.argmax(keep_lbl)
        lakefoot[r0:r1, c0:c1] |= foot
        made += 1
    W.lakefoot10 = lakefoot

    # static land cover
    rv = _rng(seed, 9)
    lake10 = upsample(ndimage.gaussian_filter(W.lake30.astype(np.float32), 0.6), F) > 0.45
    lake10 &= ~gl
    W.lake10 = lake10
    dist_ice = upsample(ndimage.distance_transform_edt(~W.ice30) * RES_DEM, F)
    fore = ~gl & ~lake10 & (dist_ice < 200.0) & (z10 < ela10 - 150.0)
    # former (Little Ice Age) extent down-valley of the tongues
    ice30 = W.ice30
    recv = W.tree.recv
    term30 = np.flatnonzero(ice30.ravel() & ((recv < 0) | ~ice30.ravel()[np.maximum(recv, 0)])
                            & (W.z30.ravel() < W.ela30.ravel() - 100))
    trail = np.zeros(ice30.size, bool)
    cur = term30
    for _ in range(18):
        cur = recv[cur]
        cur = cur[cur >= 0]
        trail[cur] = True
    trail = ndimage.binary_dilation(trail.reshape(W.h30, W.w30), iterations=1)
    trail = upsample(ndimage.gaussian_filter(trail.astype(np.float32), 1.2), F) > 0.3
    fore |= trail & ~gl & ~lake10
    W.forefield10 = fore
    treeline = W.ela0 - 800.0 + 80.0 * upsample(fractal_noise(rv, (W.h30, W.w30), 3.0), F)
    n30 = lambda beta: upsample(fractal_noise(rv, (W.h30, W.w30), beta), F)  # noqa: E731 - smooth at 10 m
    patch = 0.8 + 0.2 * n30(2.8)
    meadow = smoothstep((treeline + 250.0 - z10) / 450.0) * (1.0 - smoothstep((slope10 - 30.0) / 14.0))
    meadow = meadow * np.clip(patch, 0, 1)
    forest = smoothstep((treeline - 120.0 - z10) / 220.0) * (1.0 - smoothstep((slope10 - 36.0) / 10.0))
    forest = forest * smoothstep(0.5 + n30(3.0))
    meadow = np.minimum(meadow, 1.0 - forest)
    nov = gl | lake10 | fore | W.snowpatch10 | lakefoot
    W.meadow10 = np.where(nov, 0.0, meadow).astype(np.float32)
    W.forest10 = np.where(nov, 0.0, forest).astype(np.float32)
    lith = 1.0 + 0.13 * n30(3.2) + 0.025 * n30(2.4) + 0.01 * fractal_noise(rv, (h10, w10), 2.6)
    W.lith10 = np.clip(lith, 0.65, 1.4).astype(np.float32)
    W.tint10 = smoothstep(0.5 + 0.35 * n30(3.5)).astype(np.float32)
    W.tex10 = (1.0 + 0.012 * fractal_noise(rv, (h10, w10), 2.8)).astype(np.float32)
    W.dirt10 = np.clip(0.25 + 0.6 * np.clip(p10, 0, 1) + 0.15 * n30(2.8), 0, 1).astype(np.float32)
    W.sn10 = upsample(fractal_noise(rv, (W.h30, W.w30), 3.0), F)
    W.north10 = upsample((np.cos(W.aspect30) * np.sin(np.radians(W.slope30))).astype(np.float32), F)

    # glacier table
    size_edges = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20]
    def size_class(a):
        if a < 0.1:
            return "<0.1"
        for lo_, hi_ in zip(size_edges[:-1], size_edges[1:]):
            if lo_ <= a < hi_:
                return f"{lo_:g}-{hi_:g}"
        return ">=20"
    tab = pd.DataFrame({
        "gid": idx_all, "glac_id": [f"DEMO-{g:05d}" for g in idx_all], "src_date": dates,
        "n0": npx[1:], "n1": n1, "debris_dominated": dd,
        "debris_frac_t0": ndimage.mean(debris0, lab, idx_all),
        "debris_frac_t1": (ndimage.sum_labels(debris1, lab, idx_all) / np.maximum(n1, 1)) if t1o else np.nan,
        "zmin": zmin, "zmax": zmax,
    })
    tab["area_t0_km2"] = tab["n0"] * 1e-4
    tab["area_t1_km2"] = tab["n1"] * 1e-4
    tab["size_class"] = [size_class(a) for a in tab["area_t0_km2"]]
    W.table = tab
    W.debris0, W.debris1, W.kept1 = debris0, debris1, kept1


def glacier_state(W, when_ord: int):
    """Per-label retreat progress f in [0, 1] (0 = inventory date, 1 = 2023 truth date) at a date."""
    f = np.zeros(W.n + 1, np.float32)
    if W.t1_ord is not None:
        span = np.maximum(W.t1_ord - W.t0_ord[1:], 1)
        f[1:] = np.clip((when_ord - W.t0_ord[1:]) / span, 0.0, 1.0)
    return f


# --------------------------------------------------------------------------------------------------
# elevation change
# --------------------------------------------------------------------------------------------------

DHDT_PERIODS = {"2010-2014": ("2010-01-01", "2014-12-31", 1.0), "2015-2019": ("2015-01-01", "2019-12-31", 1.3)}
DHDT_SAMPLES = 5  # glacier extents per period (1 July of each year) whose ice share weights the thinning


def ice_share(W, period: str, samples: int = DHDT_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """(share of a period each 10 m pixel was ice, the glacier it belonged to): the glacier extents
    (``history.labels_at``) on 1 July of each year of the period, averaged.

    Before the inventory date the glaciers are larger (grown back at their planted rate), between it
    and 2023 they retreat, so the 2010-2014 extent reaches beyond the inventory outlines and ice lost
    during 2015-2019 is ice for only part of that period.
    """
    from .history import labels_at, prepare_history

    prepare_history(W)
    start, end, _ = DHDT_PERIODS[period]
    y0, y1 = int(start[:4]), int(end[:4])
    years = np.linspace(y0, y1, samples).round().astype(int)
    share = np.zeros((W.h10, W.w10), np.float32)
    owner = np.zeros((W.h10, W.w10), np.uint16)
    for y in years:
        lab_t, _ = labels_at(W, f"{y}-07-01")
        share += lab_t > 0
        owner = np.where(lab_t > 0, lab_t, owner)  # the latest owner (a pixel never changes glacier)
    return share / len(years), owner


def dhdt_signal10(W, period: str, debris_factor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(noise-free 10 m dh/dt of a period, m/yr; the share of the period each pixel was ice): see ``make_dhdt``."""
    k = DHDT_PERIODS[period][2]
    area = W.table["area_t0_km2"].to_numpy()
    amp = np.r_[0.0, 1.0 + 2.5 * np.minimum(1.0, (area / 5.0) ** 0.35)]
    zmin = np.r_[0.0, W.table["zmin"].to_numpy()]
    share, lab = ice_share(W, period)
    e = np.clip((W.ela10 - W.z10) / np.maximum(W.ela10 - zmin[lab], 30.0), 0.0, 1.0)
    thin = -(0.4 + amp[lab] * e ** 1.3) * k
    thin = np.where(W.debris1 | W.debris0 | W.grow_debris, thin * debris_factor[lab], thin)
    return np.where(lab > 0, thin * share, 0.0).astype(np.float32), share


def make_dhdt(W, period: str) -> np.ndarray:
    """dh/dt (m/yr) at 100 m for a period: glacier thinning plus noise, -9999 in a few voids.

    Thinning on a glacier pixel = -(0.4 + A_g x e^1.3) x k_period, with e the relative position in
    the ablation zone (0 at the local ELA, 1 at the terminus) and A_g = 1.0 + 2.5 min(1, (area/5)^0.35)
    (big glaciers thin most at their tongues, up to ~4-5 m/yr), x1 for 2010-2014 and x1.3 for
    2015-2019; debris-covered pixels thin at 85-115 % of that (thinning on debris tongues stays
    strong). Each period is drawn on its own glacier extents (``ice_share``): a pixel's thinning is
    weighted by the share of the period it was ice, so the 2010-2014 map thins beyond the inventory
    outlines (ice lost before the inventory date) and ice lost during 2015-2019 thins for part of that
    period; ice lost after 2019 still thins over the whole of 2015-2019 (the caveat of DL4GAM's
    section 4.4.2: the dh/dt is older than the 2023 image). The 10 m field is averaged to 100 m
    (margins get partial values).
    Noise: white 0.15 m/yr + spatially correlated 0.15 m/yr + slope-dependent up to
    ~0.4 m/yr on 45 degree slopes; ~5 % of the steep (> 40 degree) off-glacier cells are voids.
    """
    rng = _rng(W.seed, 20 + list(DHDT_PERIODS).index(period))
    dfac = np.r_[1.0, rng.uniform(0.85, 1.15, W.n)]
    dh10, share = dhdt_signal10(W, period, dfac)
    dh = block_mean(dh10, 10)
    slope = block_mean(W.slope10, 10)
    shape = dh.shape
    dh = dh + 0.15 * rng.standard_normal(shape) + 0.15 * fractal_noise(rng, shape, 3.5)
    dh = dh + 0.4 * (slope / 45.0) ** 2 * rng.standard_normal(shape)
    glac = block_mean((share > 0).astype(np.float32), 10) > 0
    void = (slope > 40.0) & ~glac & (rng.random(shape) < 0.05)
    dh = np.where(void, -9999.0, dh)
    return dh.astype(np.float32)
