"""Glacier facies demo data (Maslov et al.): true facies of every Landsat scene, labelled points, an SMB table.

The Landsat C2 L2 scenes the demo renders (``landsat.render_landsat``) are the facies scenes. For each of them
``facies_truth`` recomputes, deterministically and without touching any other stage's random numbers, what the
render drew on the 30 m grid: the class fractions of the date (``history.state_at``), the seasonal snow fraction
from the scene's snow line (``history.snow_fraction30``), the cast-shadow ``lit`` factor (horizon traced on the
30 m DEM) and the cloud / cloud-shadow fields (``landsat.cloud_fields30`` is the first draw from the scene's own
``default_rng(noise_seed)`` in ``render_landsat``, so a fresh generator with that seed reproduces them exactly),
and the Landsat 7 SLC-off gaps. The true class of a pixel, by priority:

1. ``cloud``    cloud opacity >= 0.4 (the QA_PIXEL cloud bit)
2. ``shadow``   cast shadow (lit < 0.5) or cloud shadow (strength x (1 - cloud) > 0.5)
3. ``water``    lake fraction > 0.5 (proglacial lakes where the ice has gone)
4. ``snow``     seasonal snow fraction > 0.5 or perennial snowfield > 0.5
5. the dominant of clean ice / firn / debris fractions (ties: ice, then firn, then debris: mixed ice/debris
   pixels go to ice, as the experts of the paper label them) -> ``ice``, ``firn``, ``debris``;
   ``refrozen`` (refrozen-like / superimposed ice, rare): a firn-dominant pixel of a hot year (2003, 2015,
   2022, 2023) whose firn lies mostly within ``REFROZEN_BAND_M`` (100 m) above the firn line (local ELA +
   150 m in a hot year): the lowest firn, next to bare ice, of the hot years in which the render mixes 15 %
   ice into the firn spectrum (bluish, darker firn). Spectrally it is that hot-year firn; what marks it is the
   context (the lower edge of the firn, bare ice below), so expect it to be the hardest facies, as in the paper.

Only pixels of inventory glaciers are classified (the 3 x 3 block of 10 m inventory pixels all of one glacier,
so any point in the 30 m pixel lies inside that outline) whose non-glacier land fraction at the date is < 0.25
(pixels the glacier has lost to till by a later date are not labelled; lakes are); elsewhere 0, fill (SLC-off
gaps) 255. Class codes 1..8 in ``CLASSES`` order: ice, snow, debris, firn, refrozen, shadow, water, cloud.

Outputs (``write_facies``)::

    inputs/facies/points.gpkg       layer "points", EPSG:4326 (lon/lat) POINTs: point_id ("P000001"), class,
                                    scene_id (Landsat STAC item id), glacier_id (the inventory's glac_id)
    inputs/facies/smb.csv           glacier_id, year, annual_balance (m w.e.; WGMS FoG-like, some glaciers only)
    truth/facies/<scene_id>.tif     uint8 30 m true facies per Landsat scene (codes above, 0 none, 255 fill)
    truth/facies_points.csv         point_id, scene_id, glacier_id, true_class, given_class, noisy, transition,
                                    bad_row_reason (empty for good rows)
    truth/smb.csv                   glacier_id, year, annual_balance_true, annual_balance, snowline_scene_id,
                                    snowline_regional_m, snowline_glacier_m, zmin_m, zmid_m, zmax_m, area_km2

Points (RNG stage 301): ``points_per_scene`` per Landsat scene on classified glacier pixels whose 33 x 33 px
window lies inside the scene and touches no fill. Classes are stratified to the paper's mix (``SHARES``:
ice 37 %, snow 21.5 %, debris 16 %, firn 15 %, shadow 7 %, refrozen ~6 % of the scenes that have it, water and
cloud ~0.6 % where present), renormalised over the classes a scene has and capped by what it has (the
deficit goes to the other classes), and at most ``CAP_FACTOR`` (3) x its share (so a scene mostly under
cloud shadow gives fewer points, not 100 shadow points); every class that exists somewhere gets at least
``MIN_PER_CLASS`` points. Positions are the pixel centre + U(-12, 12) m. Landsat 7 SLC-off scenes give no
points: their gap stripes repeat every 32 rows, so every 33 x 33 window touches fill.

Planted label noise (stage 302), facies classes only (ice, snow, debris, firn, refrozen; shadow / water /
cloud labels are never changed): round(``NOISE_SHARE`` (15 %) x n) labels are wrong, ``NOISE_TRANSITION``
(70 %) of them at transitions (a point whose 3 x 3 neighbourhood in the truth holds another facies class gets
the most frequent such neighbouring class), the rest random other facies classes drawn by class frequency.

Planted bad rows (stage 303), each with one defect (``bad_row_reason``): ``unknown_class`` (class "slush"),
``outside_glacier`` (a point on ice-free ground > 150 m from every outline), ``duplicate`` (an exact copy of a
good row: same coordinates, scene, class, glacier), ``unknown_scene`` (a Landsat-like id not in the
catalog), ``missing_class`` (class null). Rows are shuffled (stage 305) before the sequential point ids are
given, so neither the order nor the id tells a class, a scene or a bad row.

SMB (stage 304): for every inventory glacier of at least ``smb_min_area_km2`` and every year with Landsat
scenes, annual_balance = ``SMB_GRADIENT`` (2 m w.e.) x (zmid - SL) / (zmax - zmin) + N(0, ``SMB_NOISE``
0.15), zmid = (zmin + zmax) / 2 of the inventory (t0) glacier, SL = the glacier's end-of-summer snow line: the
highest ``snowline_m`` of that year's scenes within 20 days of 20 August with a cloud target <= 0.5 and no
SLC-off gaps (else with gaps, else of those within the window, else of all the year's scenes: each scene's snow
line is its own draw, so the SMB follows a scene a facies SMB regression can map), minus the glacier's mean snow-line offset of the render (120 x
northness + 90 x the static snow irregularity, as ``snow_fraction30``). The noise-free value is
clipped to [-3, 1.2] m w.e. (rarely active). Written rounded to 3 decimals (mm w.e.).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from .glaciers import F, RES_DEM, _rng
from .history import snow_fraction30, state_at
from .noise import block_mean
from .terrain import horizon_height

CLASSES = ("ice", "snow", "debris", "firn", "refrozen", "shadow", "water", "cloud")
FACIES = CLASSES[:5]
CODE = {c: i + 1 for i, c in enumerate(CLASSES)}
NONE, FILL = 0, 255
WINDOW = 33  # training patch (px) around a point: must lie inside the scene and touch no fill
REFROZEN_BAND_M = 100.0
LAND_MAX = 0.25  # pixels with more non-glacier land than this are not labelled
# class mix of the paper's dataset (Maslov et al., Table 1); refrozen raised where it exists (only hot years)
SHARES = {"ice": 0.37, "snow": 0.215, "debris": 0.16, "firn": 0.15, "refrozen": 0.06, "shadow": 0.07,
          "water": 0.006, "cloud": 0.006}
_RARE = ("refrozen", "water", "cloud")  # quotas by stochastic rounding
MIN_PER_CLASS = 2
CAP_FACTOR = 3.0  # a class takes at most 3 x its share of a scene's points
NOISE_SHARE = 0.15
NOISE_TRANSITION = 0.70
JITTER_M = 12.0
SMB_GRADIENT = 2.0
SMB_NOISE = 0.15
SMB_CLIP = (-3.0, 1.2)
SMB_WINDOW_DAYS = 20
SMB_MAX_CLOUD = 0.5
# RNG stages of their own (100-110 and 120-250 are other sensors'; nothing here draws from another stage)
_STAGE_POINTS, _STAGE_NOISE, _STAGE_BAD, _STAGE_SMB, _STAGE_ORDER = 301, 302, 303, 304, 305
BAD_REASONS = ("unknown_class", "outside_glacier", "duplicate", "unknown_scene", "missing_class")
DEFAULTS = {"points_per_scene": 110, "smb_min_area_km2": 0.5}


def glacier_pixels30(W) -> np.ndarray:
    """Inventory glacier label (1..n) of each 30 m pixel whose 3 x 3 10 m pixels all belong to it, else 0 (the
    inventory's outlines, so that no point lies on a tongue the inventory left out; the snowfields that the inventory
    takes for glaciers get no points)."""
    inv = getattr(W, "inv_lab10", W.lab10)
    inv = np.where(inv <= W.n, inv, 0)
    lab = inv[:W.h30 * F, :W.w30 * F].reshape(W.h30, F, W.w30, F)
    first = lab[:, 0, :, 0]
    same = (lab == first[:, None, :, None]).all(axis=(1, 3))
    return np.where(same, first, 0).astype(np.int32)


def facies_truth(W, scene: dict, lab30: np.ndarray | None = None) -> dict:
    """True facies (uint8 codes, 30 m) of one Landsat scene and the ingredients (see the module docstring).

    Needs ``history.prepare_history(W)`` (done by ``generate_sensors``).
    """
    from .landsat import _PATHS, cloud_fields30, slc_gaps

    if lab30 is None:
        lab30 = glacier_pixels30(W)
    hot = bool(scene["hot_year"])
    st = state_at(W, scene["date"], hot)
    fr = st["fr"]
    fs = snow_fraction30(W, scene["snowline_m"], fr["lake"])
    az, el = scene["sun_azimuth"], scene["sun_elevation"]
    lit = np.clip((W.z30 - horizon_height(W.z30, RES_DEM, az, el)) / 15.0 + 0.5, 0.0, 1.0)
    # render_landsat draws the cloud fields first from its scene generator: the same draws, exactly
    cloud, shadow = cloud_fields30(W, scene, np.random.default_rng(scene["noise_seed"]))
    sh_eff = shadow * (1.0 - cloud)
    gaps = (slc_gaps(W.z30.shape, scene, _PATHS[scene["path"]]) if scene["slc_off"]
            else np.zeros(W.z30.shape, bool))
    # refrozen band: hot-year firn within REFROZEN_BAND_M above the firn line (10 m, then its 30 m fraction)
    firn_line = W.ela10 + (150.0 if hot else 0.0)
    firn10 = st["ice10"] & ~st["debris10"] & (W.z10 > firn_line)
    band30 = block_mean((firn10 & (W.z10 <= firn_line + REFROZEN_BAND_M)).astype(np.float32), F)
    facies = np.stack([fr["clean"], fr["firn"], fr["debris"]])
    dom = np.array([CODE["ice"], CODE["firn"], CODE["debris"]], np.uint8)[np.argmax(facies, axis=0)]
    if hot:
        dom = np.where((dom == CODE["firn"]) & (band30 > 0.5 * fr["firn"]), CODE["refrozen"], dom)
    cls = np.where(fr["ice"] > 0, dom, NONE).astype(np.uint8)
    cls[(fs > 0.5) | (fr["snowpatch"] > 0.5)] = CODE["snow"]
    cls[fr["lake"] > 0.5] = CODE["water"]
    cls[(lit < 0.5) | (sh_eff > 0.5)] = CODE["shadow"]
    cls[cloud >= 0.4] = CODE["cloud"]
    cls[(lab30 == 0) | (fr["land"] >= LAND_MAX)] = NONE
    cls[gaps] = FILL
    return {"cls": cls, "gaps": gaps, "cloud": cloud, "sh_eff": sh_eff, "lit": lit, "snow": fs, "fr": fr,
            "refrozen_band": band30}


def window_ok(gaps: np.ndarray, size: int = WINDOW) -> np.ndarray:
    """Pixels whose size x size window lies inside the raster and holds no fill."""
    h, w = gaps.shape
    r = size // 2
    ok = ~ndimage.maximum_filter(gaps.astype(np.uint8), size=size, mode="constant", cval=0).astype(bool)
    inner = np.zeros_like(ok)
    inner[r:h - r, r:w - r] = True
    return ok & inner


def _quotas(avail: np.ndarray, n: int, rng) -> np.ndarray:
    """Points per class for one scene: SHARES renormalised over the classes present, capped by availability
    and at CAP_FACTOR x its share of ``n`` (a scene under cloud shadow gives a few shadow points, not 100)."""
    share = np.array([SHARES[c] for c in CLASSES]) * (avail > 0)
    q = np.zeros(len(CLASSES), np.int64)
    if share.sum() == 0 or n <= 0:
        return q
    avail = np.minimum(avail, np.ceil(n * np.minimum(1.0, CAP_FACTOR * share)).astype(np.int64))
    want = share / share.sum() * min(n, int(avail.sum()))
    rare = np.array([c in _RARE for c in CLASSES])
    for i in np.flatnonzero(rare & (avail > 0)):
        q[i] = int(np.floor(want[i])) + int(rng.random() < want[i] - np.floor(want[i]))
    q = np.minimum(q, avail)
    total = min(n, int(avail.sum()))
    common = ~rare
    for _ in range(len(CLASSES) + 1):  # largest remainder over the common classes, then move deficits on
        room = total - q.sum()
        spare = common & (avail > q)
        if room <= 0 or not spare.any():
            break
        w = share * spare
        if w.sum() == 0:
            w = spare.astype(float)
        add = w / w.sum() * room
        base = np.floor(add).astype(np.int64)
        rem = room - base.sum()
        order = np.argsort(-(add - base), kind="stable")
        base[order[:rem]] += 1
        q = np.minimum(q + base, avail)
    room = total - q.sum()
    for i in np.flatnonzero(avail > q):  # only rare classes can still take points (common ones are full)
        take = min(room, avail[i] - q[i])
        q[i] += take
        room -= take
    return q


def _noise_class(cls: np.ndarray, r: int, c: int, rng) -> str | None:
    """The most frequent other facies class in the 3 x 3 neighbourhood (ties at random), None if there is none."""
    win = cls[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].ravel()
    own = cls[r, c]
    codes = [CODE[f] for f in FACIES]
    counts = {k: int((win == k).sum()) for k in codes if k != own}
    best = max(counts.values())
    if best == 0:
        return None
    cand = sorted(k for k, v in counts.items() if v == best)
    return CLASSES[int(cand[int(rng.integers(len(cand)))]) - 1]


def make_points(W, scenes: list[dict], truths: dict, lab30: np.ndarray, n_per_scene: int):
    """Good points (list of dicts with row, col, scene, glacier, true class, x, y) of every scene."""
    rng = _rng(W.seed, _STAGE_POINTS)
    avail = np.zeros((len(scenes), len(CLASSES)), np.int64)
    cand = {}
    for s, sc in enumerate(scenes):
        cls = truths[sc["item_id"]]
        ok = window_ok(cls == FILL) & (cls >= 1) & (cls <= len(CLASSES))
        for k in range(len(CLASSES)):
            idx = np.flatnonzero(ok & (cls == k + 1))
            cand[s, k] = idx
            avail[s, k] = idx.size
    quotas = np.stack([_quotas(avail[s], n_per_scene, rng) for s in range(len(scenes))]) if scenes else avail
    # every class that exists somewhere gets at least MIN_PER_CLASS points
    for k in range(len(CLASSES)):
        need = min(MIN_PER_CLASS, int(avail[:, k].sum())) - int(quotas[:, k].sum())
        for s in np.argsort(-(avail[:, k] - quotas[:, k]), kind="stable"):
            if need <= 0:
                break
            if avail[s, k] > quotas[s, k]:
                j = int(np.argmax(quotas[s]))  # take it from the scene's biggest class
                if quotas[s, j] > 1 and j != k:
                    quotas[s, j] -= 1
                quotas[s, k] += 1
                need -= 1
    pts = []
    for s, sc in enumerate(scenes):
        for k in range(len(CLASSES)):
            if quotas[s, k] == 0:
                continue
            pick = np.sort(rng.choice(cand[s, k], size=int(quotas[s, k]), replace=False))
            rr, cc = np.divmod(pick, W.w30)
            for r, c in zip(rr.tolist(), cc.tolist()):
                pts.append({"scene_s": s, "scene_id": sc["item_id"], "row": r, "col": c,
                            "label": int(lab30[r, c]), "true_class": CLASSES[k]})
    for p in pts:  # pixel centre + jitter (inside the 30 m pixel, hence inside the outline)
        jx, jy = rng.uniform(-JITTER_M, JITTER_M, 2)
        p["x"] = W.x0 + (p["col"] + 0.5) * RES_DEM + float(jx)
        p["y"] = W.y0 - (p["row"] + 0.5) * RES_DEM + float(jy)
    return pts, avail, quotas


def plant_noise(W, pts: list[dict], truths: dict) -> None:
    """Sets given_class, noisy, transition on each point (see the module docstring)."""
    rng = _rng(W.seed, _STAGE_NOISE)
    fac = [i for i, p in enumerate(pts) if p["true_class"] in FACIES]
    for p in pts:
        p.update(given_class=p["true_class"], noisy=False, transition=False)
    neigh = {}
    for i in fac:
        p = pts[i]
        nb = _noise_class(truths[p["scene_id"]], p["row"], p["col"], rng)
        if nb is not None:
            p["transition"] = True
            neigh[i] = nb
    trans = np.array([i for i in fac if i in neigh], np.int64)
    rest = np.array([i for i in fac if i not in neigh], np.int64)
    k = int(round(NOISE_SHARE * len(fac)))
    k_t = min(int(round(NOISE_TRANSITION * k)), int(0.8 * trans.size))
    k_r = min(k - k_t, rest.size)
    for i in rng.choice(trans, size=k_t, replace=False) if k_t else []:
        pts[int(i)].update(given_class=neigh[int(i)], noisy=True)
    freq = {c: sum(pts[i]["true_class"] == c for i in fac) for c in FACIES}
    for i in rng.choice(rest, size=k_r, replace=False) if k_r else []:
        p = pts[int(i)]
        others = [c for c in FACIES if c != p["true_class"]]
        w = np.array([freq[c] + 1.0 for c in others])
        p.update(given_class=str(rng.choice(others, p=w / w.sum())), noisy=True)


def _bad_rows(W, scenes, truths, lab30, pts, used: set) -> list[dict]:
    """One row per defect of BAD_REASONS (see the module docstring)."""
    from datetime import date, timedelta

    rng = _rng(W.seed, _STAGE_BAD)
    out = []
    all_ids = {sc["item_id"] for sc in scenes}

    def fresh_glacier_pixel():
        for _ in range(10000):
            s = int(rng.integers(len(scenes)))
            cls = truths[scenes[s]["item_id"]]
            ok = window_ok(cls == FILL) & (cls >= 1) & (cls <= len(CLASSES))
            idx = np.flatnonzero(ok)
            if idx.size == 0:
                continue
            f = int(rng.choice(idx))
            if (s, f) not in used:
                used.add((s, f))
                r, c = divmod(f, W.w30)
                return s, r, c, CLASSES[int(cls[r, c]) - 1]
        raise RuntimeError("no free glacier pixel for a bad row")

    def xy(r, c):
        jx, jy = rng.uniform(-JITTER_M, JITTER_M, 2)
        return W.x0 + (c + 0.5) * RES_DEM + float(jx), W.y0 - (r + 0.5) * RES_DEM + float(jy)

    gids = W.table["glac_id"].to_numpy()
    for reason in BAD_REASONS:
        if reason == "duplicate":
            good = [p for p in pts if not p["noisy"]]
            src = good[int(rng.integers(len(good)))]
            out.append({**src, "bad_row_reason": reason, "noisy": False})
            continue
        if reason == "outside_glacier":
            far = ndimage.distance_transform_edt(W.lab10 == 0) * 10.0 > 150.0
            far30 = block_mean(far.astype(np.float32), F) == 1.0
            s = int(rng.integers(len(scenes)))
            cls = truths[scenes[s]["item_id"]]
            ok = far30 & window_ok(cls == FILL)
            f = int(rng.choice(np.flatnonzero(ok)))
            r, c = divmod(f, W.w30)
            # it claims the nearest glacier
            _, (iy, ix) = ndimage.distance_transform_edt(W.lab10 == 0, return_indices=True)
            lab = int(W.lab10[iy[r * F + 1, c * F + 1], ix[r * F + 1, c * F + 1]])
            x, y = xy(r, c)
            out.append({"scene_s": s, "scene_id": scenes[s]["item_id"], "row": r, "col": c, "label": lab,
                        "true_class": "", "given_class": "ice", "noisy": False, "transition": False,
                        "x": x, "y": y, "bad_row_reason": reason})
            continue
        s, r, c, true = fresh_glacier_pixel()
        x, y = xy(r, c)
        row = {"scene_s": s, "scene_id": scenes[s]["item_id"], "row": r, "col": c, "label": int(lab30[r, c]),
               "true_class": true, "given_class": true, "noisy": False, "transition": False, "x": x, "y": y,
               "bad_row_reason": reason}
        if reason == "unknown_class":
            row["given_class"] = "slush"
        elif reason == "missing_class":
            row["given_class"] = None
        elif reason == "unknown_scene":
            sc = scenes[s]
            for k in range(1, 100):  # the same path 16 k days later: a plausible id the catalog does not have
                d = date.fromisoformat(sc["date"]) + timedelta(days=16 * k)
                proc = max(d + timedelta(days=20), date(2020, 9, 8))
                cand = sc["item_id"][:17] + f"{d:%Y%m%d}_{proc:%Y%m%d}" + sc["item_id"][34:]
                if cand not in all_ids:
                    break
            row.update(scene_id=cand, true_class="")
        out.append(row)
    for row in out:
        row["glacier_id"] = str(gids[row["label"] - 1]) if row["label"] > 0 else ""
    return out


def _smb_scenes(scenes: list[dict], year: int) -> list[dict]:
    """The scenes of a year whose snow line may set its SMB: within SMB_WINDOW_DAYS of 20 August (the window a
    facies SMB regression maps, as the paper), not too cloudy and without SLC-off gaps; else the first non-empty of
    (in the window and not too cloudy), (in the window), (all of the year)."""
    from datetime import date

    ys = [sc for sc in scenes if int(sc["year"]) == year]
    near = [sc for sc in ys if abs((date.fromisoformat(sc["date"]) - date(year, 8, 20)).days) <= SMB_WINDOW_DAYS]
    clear = [sc for sc in near if sc["cloud_target"] <= SMB_MAX_CLOUD]
    return [sc for sc in clear if not sc["slc_off"]] or clear or near or ys


def make_smb(W, scenes: list[dict], lab30: np.ndarray, min_area_km2: float):
    """(public table rows, truth rows) of the planted surface mass balance (see the module docstring)."""
    rng = _rng(W.seed, _STAGE_SMB)
    tab = W.table
    offset = 120.0 * W.north30 + 90.0 * W.sn30
    n = W.n
    cnt = np.bincount(lab30.ravel(), minlength=n + 1)
    off_g = np.bincount(lab30.ravel(), weights=offset.ravel(), minlength=n + 1) / np.maximum(cnt, 1)
    years = sorted({int(sc["year"]) for sc in scenes})
    pub, truth = [], []
    for g in range(n):
        area = float(tab["area_t0_km2"].iloc[g])
        if area < min_area_km2 or cnt[g + 1] == 0:
            continue
        zmin, zmax = float(tab["zmin"].iloc[g]), float(tab["zmax"].iloc[g])
        zmid = 0.5 * (zmin + zmax)
        for y in years:
            top = max(_smb_scenes(scenes, y), key=lambda sc: sc["snowline_m"])
            sl = float(top["snowline_m"]) - float(off_g[g + 1])
            true = float(np.clip(SMB_GRADIENT * (zmid - sl) / max(zmax - zmin, 1.0), *SMB_CLIP))
            val = true + float(rng.normal(0.0, SMB_NOISE))
            gid = str(tab["glac_id"].iloc[g])
            pub.append({"glacier_id": gid, "year": y, "annual_balance": round(val, 3)})
            truth.append({"glacier_id": gid, "year": y, "annual_balance_true": round(true, 4),
                          "annual_balance": round(val, 3), "snowline_scene_id": top["item_id"],
                          "snowline_regional_m": round(float(top["snowline_m"]), 1),
                          "snowline_glacier_m": round(sl, 1), "zmin_m": round(zmin, 1), "zmid_m": round(zmid, 1),
                          "zmax_m": round(zmax, 1), "area_km2": round(area, 6)})
    return pub, truth


def write_facies(root, W, scenes: list[dict], cfg: dict) -> tuple[dict, dict]:
    """Truth rasters, points, truth table and SMB of the Landsat ``scenes``; returns (summary, timings)."""
    import time

    import geopandas as gpd
    import pandas as pd

    from .writers import _lonlat, _transform, _write_gpkg, write_cog

    cfg = {**DEFAULTS, **(cfg or {})}
    root = Path(root)
    timings = {}
    t = time.perf_counter()
    lab30 = glacier_pixels30(W)
    truths = {}
    tdir = root / "truth" / "facies"
    tdir.mkdir(parents=True, exist_ok=True)
    for sc in scenes:
        cls = facies_truth(W, sc, lab30)["cls"]
        truths[sc["item_id"]] = cls
        write_cog(tdir / f"{sc['item_id']}.tif", cls, _transform(W, RES_DEM), None, resampling="nearest")
    timings["truth"] = time.perf_counter() - t
    t = time.perf_counter()
    pts, avail, quotas = make_points(W, scenes, truths, lab30, int(cfg["points_per_scene"]))
    plant_noise(W, pts, truths)
    gids = W.table["glac_id"].to_numpy()
    for p in pts:
        p["glacier_id"] = str(gids[p["label"] - 1])
        p["bad_row_reason"] = ""
    used = {(p["scene_s"], p["row"] * W.w30 + p["col"]) for p in pts}
    bad = _bad_rows(W, scenes, truths, lab30, pts, used)
    order = _rng(W.seed, _STAGE_ORDER).permutation(len(pts) + len(bad))  # row order tells nothing
    rows = [(pts + bad)[i] for i in order]
    for i, r in enumerate(rows):
        r["point_id"] = f"P{i + 1:06d}"
    lon, lat = _lonlat([r["x"] for r in rows], [r["y"] for r in rows])
    gdf = gpd.GeoDataFrame({"point_id": [r["point_id"] for r in rows],
                            "class": pd.array([r["given_class"] for r in rows], dtype="string"),
                            "scene_id": [r["scene_id"] for r in rows],
                            "glacier_id": [r["glacier_id"] for r in rows]},
                           geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    fdir = root / "inputs" / "facies"
    fdir.mkdir(parents=True, exist_ok=True)
    _write_gpkg(gdf, fdir / "points.gpkg", "points")
    pd.DataFrame({"point_id": [r["point_id"] for r in rows], "scene_id": [r["scene_id"] for r in rows],
                  "glacier_id": [r["glacier_id"] for r in rows], "true_class": [r["true_class"] for r in rows],
                  "given_class": [r["given_class"] if r["given_class"] is not None else "" for r in rows],
                  "noisy": [bool(r["noisy"]) for r in rows], "transition": [bool(r["transition"]) for r in rows],
                  "bad_row_reason": [r["bad_row_reason"] for r in rows],
                  "x_32632": [round(r["x"], 3) for r in rows], "y_32632": [round(r["y"], 3) for r in rows]}
                 ).to_csv(root / "truth" / "facies_points.csv", index=False)
    timings["points"] = time.perf_counter() - t
    t = time.perf_counter()
    pub, truth = make_smb(W, scenes, lab30, float(cfg["smb_min_area_km2"]))
    cols = ["glacier_id", "year", "annual_balance"]
    pd.DataFrame(pub, columns=cols).to_csv(fdir / "smb.csv", index=False)
    pd.DataFrame(truth).to_csv(root / "truth" / "smb.csv", index=False)
    timings["smb"] = time.perf_counter() - t
    fac = [p for p in pts if p["true_class"] in FACIES]
    summary = {
        "n_points": len(pts), "n_bad_rows": len(bad), "n_smb_rows": len(pub),
        "points_true_per_class": {c: sum(p["true_class"] == c for p in pts) for c in CLASSES},
        "points_given_per_class": {c: sum(p["given_class"] == c for p in pts) for c in CLASSES},
        "noisy_share_facies": round(sum(p["noisy"] for p in fac) / max(len(fac), 1), 4),
        "noisy_transition_share": round(sum(p["noisy"] and p["transition"] for p in fac)
                                        / max(sum(p["noisy"] for p in fac), 1), 4),
    }
    return summary, timings


def generate_facies(root, W, spec: dict) -> tuple[dict, dict]:
    """The preset's ``facies`` entry on its Landsat scenes (recomputed schedule: RNG stage 101, no draw taken).

    Returns ({} , {}) when the preset has no ``facies`` entry or no Landsat scenes.
    """
    from .landsat import make_landsat_schedule

    cfg = spec.get("facies")
    lcfg = (spec.get("sensors") or {}).get("landsat")
    if cfg is None or cfg is False or not lcfg:
        return {}, {}
    scenes = make_landsat_schedule(W, lcfg)
    return write_facies(root, W, scenes, cfg)
