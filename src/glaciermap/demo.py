"""Deterministic synthetic glacier region (no network): terrain, glaciers, Sentinel-2 scenes, truth.

``generate(out_dir, seed=0, preset="demo")`` (or ``python -m glaciermap.demo --out resources/demo --seed 0
[--preset demo|tiny] [--force]``) writes the region in the layout fixed by docs/design.md::

    <out>/inputs/inventory.gpkg            layer "glaciers" (EPSG:32632): glac_id, area_km2, src_date, cenlon, cenlat
    <out>/inputs/dem/dem_glo30.tif         float32 30 m DEM, nodata -9999 (COG)
    <out>/inputs/dhdt/dhdt_<period>.tif    float32 m/yr at 100 m for 2010-2014 and 2015-2019, nodata -9999
    <out>/inputs/scenes/<item_id>/<B..>.tif  12 L2A bands (uint16, reflectance x 10000, nodata 0, native 10/20/60 m)
                                           and SCL (uint8, 20 m), all COGs (deflate + predictor, overviews /4 /16)
    <out>/inputs/catalog/catalog.json      static STAC catalog (collections sentinel-2-l2a and auxiliary)
    <out>/truth/                           outlines_t0.gpkg, outlines_2023.gpkg, areas.csv, debris_t0.tif,
                                           debris_2023.tif, scenes.csv (conditions of every date)
    <out>/.complete                        stamp {"seed", "preset", "version", "summary"}

It is idempotent: when ``catalog.json`` and a ``.complete`` stamp with the same seed, preset and
version exist nothing is done. Everything is written into ``.<out>.tmp-<pid>`` beside ``out`` and
renamed into place at the end, so a half-generated region never looks complete. Presets are plain
dicts in ``PRESETS`` ("demo": 40-60 glaciers on 25.2 x 19.8 km, 6 dates in each of 2015, 2016, 2017
and 2023, ~45-60 s on 2 cores and ~530-580 MB; "tiny": 4-6 glaciers on 6 x 5.1 km, 3 dates in 2015
and 2023, ~4 s). All randomness comes from ``numpy.random.Generator`` seeded from (seed, stage): the same
seed gives identical arrays and identical COG bytes; another seed gives another region.

What is planted
---------------
* **Terrain** (``make_terrain``): a steady-state stream-power landscape (cheapest-path elevation on an
  8-neighbour graph with channel slope ~ A^-0.45, threshold hillslopes steepening into rock walls
  high up, an uplift band forming a wavy WSW-ENE main chain), glacial troughs and cirque floors
  carved along the flux lines of a former, larger glaciation, ridged noise on the crests, scaled to
  ~1500-3950 m. The D8 drainage tree comes with it.
* **Glaciers** (``ice_from_flux``, ``tune_glaciers``): mass balance b = 0.0075 (z - ELA_local)
  (capped at +2 m w.e./yr), ELA_local = regional ELA + insolation (north faces lower) + mass-elevation
  effect + a rise near the region edge + noise. b is routed down the drainage tree, tributaries pass on
  only positive flux, and ice lies where the flux stays positive (not on rock walls > 47 degrees,
  whose avalanches still feed the flux); tongues are widened into their troughs from the flux. The
  regional ELA is tuned to the preset's glacier count and largest size. Ice is split into glaciers by
  the ice outlet each cell drains to, small basins merged into their longest-border neighbour, so
  adjacent glaciers share ice divides. At 10 m the outline is the smoothed 30 m mask plus sub-pixel
  irregularity. A handful of glaciers < 0.1 km2 are kept in the inventory; other small ice bodies
  become perennial snowfields (bright, not glaciers: false positives waiting to happen).
* **Inventory dates**: per year the best date of the schedule (in 2015 of the demo also a second
  clear date), assigned to spatial blocks of glaciers with shares ~68 % 2015, 26 % 2016, 6 % 2017.
  The inventory outlines *are* the t0 truth outlines (same pixels).
* **Area change** (``plant``): per glacier a rate r = -(1.55 - 0.85 log10 A) + N(0, 0.35) %/yr,
  clipped to [-4, -0.5] (x0.6 for debris-dominated glaciers), applied from the glacier's inventory date
  t0 to the 2023 truth date t1 = the date of the best 2023 scene: n1 = floor(n0 (1 + r years / 100))
  pixels are kept (always fewer than n0). Pixels are removed in order of a score: elevation, minus up
  to 100 m within 40 m of the outer margin (margin thinning; divides between glaciers do not count),
  plus correlated noise, +40 m on debris (insulated ice lingers). So truth areas are exact pixel counts
  x 100 m2 and equal the areas of the outline polygons. Intermediate dates interpolate the ranking:
  a scene on date t shows the pixels whose removal rank exceeds f = (t - t0) / (t1 - t0) (clipped to
  [0, 1]), i.e. exactly the t0 truth on t0 and the 2023 truth on t1.
* **Debris** : a potential = (relative position in the ablation zone)^1.3 x (0.35 + rock-wall supply
  routed down-glacier) + noise. Per glacier a debris fraction is drawn (many clean glaciers, typically
  a few to 35 %, 2-4 "debris-dominated" glaciers at 75-92 % chosen among low tongues below rock walls)
  and the potential is thresholded at that quantile; by 2023 the threshold drops so the debris share
  grows by 2-8 points (debris_2023 is a superset of debris_t0 on the remaining ice).
* **Lakes**: tarns on flat ground (DEM flattened under them) and 1-3 proglacial lakes in front of
  retreating tongues, growing into the deglaciated pixels.
* **Land cover**: rock with a lithology brightness / tint field, alpine meadow and forest below a
  tree line ~800 m under the ELA, bare forefields (Little Ice Age moraines and down-valley trails),
  fresh till where ice was lost.
* **dh/dt** (``make_dhdt``): thinning strongest at the tongues (also on debris), 2015-2019 1.3x
  2010-2014, ~0 off glacier, white + correlated + slope-dependent noise, a few voids.

Scenes
------
Surfaces have 12-band spectra (``SPECTRA``): fresh/old snow, firn, clean (dirty) ice, rock (grey,
reddish), debris and till (= rock family: debris-covered ice is spectrally rock), meadow (green or
autumn), forest, turbid water, cloud, cirrus. Reflectance = texture x mixed spectrum x illumination,
illumination = (1 - diffuse_b) x direct + diffuse_b x sky view, direct = an L2A-style partially
terrain-corrected cos(incidence) for the date's sun position (10:30 local, lat 46) and 0 in cast
shadows (horizon traced on the 30 m DEM), so ice in shadow is dark and bluish. Seasonal snow
follows the date's transient snow line. Clouds are thresholded fractal fields (the threshold fixes
the cloud share), cloud shadows are the cloud field shifted away from the sun by
height / tan(elevation); cirrus veils; orbit-B dates cover only the region west of a tilted swath
edge (nodata 0 in every band and SCL 0). Sensor noise ~1-1.5 DN + 0.07 %. SCL codes: 0 nodata, 2 dark
(deep terrain shadow), 3 cloud shadow, 4 vegetation (NDVI > 0.4), 5 not vegetated, 6 water, 8/9 cloud
medium/high, 10 cirrus, 11 snow/ice (NDSI > 0.42, NIR > 0.11). ``eo:cloud_cover`` = 100 x share of
SCL 8/9/10 among SCL != 0 pixels (rounded to 0.01).

Schedule (``make_schedule``): two relative orbits (A full, B partial), 10-day revisit with S2A only
(2015, 2016) and 5-day with S2B from 2017, candidates between 1 Aug and 15 Oct. Each year has exactly
one ``best`` date (orbit A, 12 Aug - 15 Sep, < 2 % cloud and none within 2 km of a glacier, snow line
above the ELA) - it is the truth date of that epoch - and the demo's 2015 a second ``good`` one. The
others are ``snow`` (fresh snow 500-900 m below the ELA: few clouds but bad), ``snowcloud``, ``cloudy``
(15-55 %), ``partly`` (5-15 %), ``hazy`` (cirrus), ``overcast`` (80-97 %: filtered by eo:cloud_cover <
75); early-August dates keep late-lying snow, October dates are mostly snowy. ``truth/scenes.csv`` lists
every date's quality, snow line, cloud target, coverage and sun angles - never read it in modelling.

Truth (``truth/``, for evaluation only): ``areas.csv`` has per glacier date_t0 (= src_date),
area_t0_km2, date_t1 (= best 2023 date), area_t1_km2, rate_km2_per_year and rate_pct_per_year over
(t1 - t0) / 365.25 years, debris fractions, size class, debris_dominated, zmin_m, zmax_m.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

# --------------------------------------------------------------------------------------------------
# noise and resampling helpers
# --------------------------------------------------------------------------------------------------


def fractal_noise(rng: np.random.Generator, shape, beta: float, stretch=(1.0, 1.0), pad: float = 1.25) -> np.ndarray:
    """Gaussian random field with power spectrum ~ k^-beta (spectral synthesis), zero mean, unit std.

    ``stretch`` = (sy, sx) scales the frequencies per axis: sx < 1 elongates features along x.
    The field is synthesised on a padded periodic grid and cropped, so opposite edges are not correlated.
    """
    from scipy.fft import next_fast_len

    h, w = int(shape[0]), int(shape[1])
    hh, ww = next_fast_len(int(h * pad) + 2), next_fast_len(int(w * pad) + 2, real=True)
    ky = (np.fft.fftfreq(hh) * stretch[0]).astype(np.float32)[:, None]
    kx = (np.fft.rfftfreq(ww) * stretch[1]).astype(np.float32)[None, :]
    k2 = kx * kx + ky * ky
    k2[0, 0] = 1.0
    amp = np.power(k2, np.float32(-beta / 4.0))
    amp[0, 0] = 0.0
    spec = np.empty((hh, ww // 2 + 1), np.complex64)
    spec.real = rng.standard_normal((hh, ww // 2 + 1), dtype=np.float32)
    spec.imag = rng.standard_normal((hh, ww // 2 + 1), dtype=np.float32)
    spec *= amp
    f = _irfft2(spec, s=(hh, ww))[:h, :w].astype(np.float64)
    f -= f.mean()
    sd = f.std()
    return (f / (sd if sd > 0 else 1.0)).astype(np.float32)


def _irfft2(a, s):
    from scipy import fft

    return fft.irfft2(a, s=s, workers=-1)


def smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _lin_axis(arr: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """Linear interpolation by an integer factor along one axis, cell centres aligned, edges clamped."""
    n = arr.shape[axis]
    pos = (np.arange(n * factor) + 0.5) / factor - 0.5
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, n - 1)
    i1 = np.clip(i0 + 1, 0, n - 1)
    w = np.clip(pos - i0, 0.0, 1.0).astype(np.float32)
    a0 = np.take(arr, i0, axis=axis)
    a1 = np.take(arr, i1, axis=axis)
    shp = [1] * arr.ndim
    shp[axis] = -1
    w = w.reshape(shp)
    return a0 + (a1 - a0) * w


def upsample(arr: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upsampling by an integer factor (pixel-centre aligned)."""
    if factor == 1:
        return arr.astype(np.float32, copy=True)
    a = np.asarray(arr, np.float32)
    return _lin_axis(_lin_axis(a, factor, 0), factor, 1)


def upsample_nearest(arr: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(arr, factor, axis=0), factor, axis=1)


def block_mean(arr: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks of the last two axes (sums of strided views: fast)."""
    if factor == 1:
        return arr
    out = None
    for dy in range(factor):
        for dx in range(factor):
            v = arr[..., dy::factor, dx::factor]
            out = v.astype(np.float32, copy=True) if out is None else np.add(out, v, out=out, casting="unsafe")
    out *= np.float32(1.0 / (factor * factor))
    return out


# --------------------------------------------------------------------------------------------------
# flow routing: steady-state stream-power terrain on an 8-neighbour graph
# --------------------------------------------------------------------------------------------------


class _Grid8:
    """8-neighbour graph of a raster plus one virtual outlet node linked to every boundary cell.

    Shortest paths from the outlet, with the cost of entering a cell = step length x that cell's
    channel slope, give an elevation field without pits whose shortest-path tree is a D8 drainage
    network (each cell drains to the neighbour it was reached from).
    """

    def __init__(self, h: int, w: int, res: float):
        self.h, self.w, self.n = h, w, h * w
        idx = np.arange(self.n).reshape(h, w)
        rows, cols, dist = [], [], []
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == 0 and dx == 0:
                    continue
                a = idx[max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
                b = idx[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
                rows.append(a.ravel())
                cols.append(b.ravel())
                dist.append(np.full(a.size, np.hypot(dy, dx) * res))
        self.boundary = np.r_[idx[0], idx[-1], idx[1:-1, 0], idx[1:-1, -1]]
        rows.append(np.full(self.boundary.size, self.n))
        cols.append(self.boundary)
        dist.append(np.zeros(self.boundary.size))
        rows, cols, dist = np.concatenate(rows), np.concatenate(cols), np.concatenate(dist)
        # CSR order of the edges (scipy's counting sort by row), found once and reused for every solve
        tag = sparse.csr_matrix((np.arange(1, rows.size + 1, dtype=np.float64), (rows, cols)),
                                shape=(self.n + 1, self.n + 1))
        order = tag.data.astype(np.int64) - 1
        self.rows, self.cols, self.dist = rows[order], cols[order], dist[order]
        self.indptr = tag.indptr
        self.is_outlet_edge = self.rows == self.n

    def solve(self, slope: np.ndarray, base: np.ndarray):
        """Elevation (m above the outlet) and receiver (-1 at the boundary) for cell slopes ``slope``."""
        data = self.dist * slope[self.cols]
        data[self.is_outlet_edge] = base[self.cols[self.is_outlet_edge]]
        g = sparse.csr_matrix((data, self.cols, self.indptr), shape=(self.n + 1, self.n + 1))
        z, pred = csgraph.dijkstra(g, directed=True, indices=self.n, return_predecessors=True)
        recv = pred[: self.n].astype(np.int64)
        recv[recv == self.n] = -1
        return z[: self.n], recv


class FlowTree:
    """A drainage tree given by receivers (-1 = outlet), with vectorised downstream accumulation.

    Cells are grouped by their number of hops to the outlet (list ranking by pointer jumping), so an
    accumulation is one ``np.add.at`` per level, from the most upstream level down.
    """

    def __init__(self, recv: np.ndarray):
        n = recv.size
        self.recv = recv
        has = recv >= 0
        nxt = np.where(has, recv, np.arange(n))
        rank = has.astype(np.int64)
        while True:
            nn = nxt[nxt]
            if np.array_equal(nn, nxt):
                break
            rank = rank + rank[nxt]
            nxt = nn
        self.depth = rank
        top = int(rank.max()) if rank.size else 0
        key = (top - rank).astype(np.uint16 if top < 65535 else np.int64)  # radix sort for small ints
        order = np.argsort(key, kind="stable")
        cuts = np.flatnonzero(np.diff(rank[order])) + 1
        self.levels = [lv for lv in np.split(order, cuts) if rank[lv[0]] > 0]

    def accumulate(self, w: np.ndarray, positive: bool = False) -> np.ndarray:
        """Sum of ``w`` over each cell and everything upstream of it.

        With ``positive`` only a positive upstream total is passed on (a tributary whose balance is
        negative at its mouth delivers no ice).
        """
        acc = np.asarray(w, np.float64).ravel().copy()
        r = self.recv
        for lv in self.levels:
            v = acc[lv]
            if positive:
                v = np.maximum(v, 0.0)
            np.add.at(acc, r[lv], v)
        return acc

    def root_within(self, mask: np.ndarray) -> np.ndarray:
        """For each cell in ``mask``: the last cell of its downstream path that is still inside ``mask``."""
        n = self.recv.size
        m = mask.ravel()
        r = self.recv
        inside_next = (r >= 0) & m & m[np.maximum(r, 0)]
        nxt = np.where(inside_next, r, np.arange(n))
        while True:
            nn = nxt[nxt]
            if np.array_equal(nn, nxt):
                return nxt
            nxt = nn


# --------------------------------------------------------------------------------------------------
# terrain
# --------------------------------------------------------------------------------------------------


def make_terrain(rng: np.random.Generator, h: int, w: int, relief, pad_m: float, res: float = 30.0, iters: int = 5):
    """Procedural Alpine DEM on an ``h`` x ``w`` grid of ``res`` metres, plus its drainage network.

    1. A steady-state stream-power landscape is solved on a padded domain whose border is the base
       level: channel slope S = ks U A^-0.45 (A = drainage area, U = uplift: a wavy WSW-ENE main
       chain, side spurs from anisotropic fractal noise), capped at a threshold hillslope angle that
       steepens with elevation (rock walls). Elevation = cheapest path from the border (Dijkstra),
       drainage = its path tree; iterating slope <-> drainage area converges to dendritic valleys.
    2. Glacial sculpting: above the "glacial" level channel slopes are lowered, giving flat cirque
       floors and trough valleys below steep head walls.
    3. The centre is cropped (valleys leave the region as in a real DEM tile), linearly scaled to
       ``relief`` (m), and given ridged noise on crests and fractal roughness.

    Returns ``z`` (float32, m), a :class:`FlowTree` over the cropped grid and the drainage area (cells).
    """
    zlo, zhi = relief
    p = int(round(pad_m / res))
    hh, ww = h + 2 * p, w + 2 * p
    grid = _Grid8(hh, ww, res)
    yy = ((np.arange(hh) - p + 0.5) / h)[:, None]
    xx = ((np.arange(ww) - p + 0.5) / w)[None, :]
    wav = ndimage.gaussian_filter1d(np.cumsum(rng.standard_normal(ww)), ww / 10.0, mode="nearest")
    wav = (wav - wav.mean()) / (wav.std() + 1e-9)
    tilt = rng.uniform(-0.12, 0.12)
    axis = 0.5 + 0.08 * wav[None, :] + tilt * (xx - 0.5)
    band = np.exp(-0.5 * ((yy - axis) / 0.28) ** 2)
    uplift = 0.5 + 0.9 * band + 0.22 * fractal_noise(rng, (hh, ww), 4.0, stretch=(1.0, 0.45))
    xedge = np.minimum(xx, 1.0 - xx) * w * res  # metres from the west / east edge of the crop
    uplift = uplift * (0.55 + 0.45 * smoothstep(xedge / 4000.0))
    uplift = np.clip(uplift, 0.25, 2.5).ravel()
    hill = np.clip(33.0 + 4.0 * fractal_noise(rng, (hh, ww), 2.5), 26.0, 42.0).ravel()
    rough = np.exp(0.22 * fractal_noise(rng, (hh, ww), 2.0)).ravel()
    per = ndimage.gaussian_filter1d(np.cumsum(rng.standard_normal(grid.boundary.size)), 25.0, mode="wrap")
    per = (per - per.min()) / (np.ptp(per) + 1e-9)
    base = np.zeros(grid.n)
    base[grid.boundary] = 1.0 + 400.0 * per
    area = np.ones(grid.n)
    cell_km2 = res * res / 1e6
    ks = 0.42
    z = np.zeros(grid.n)
    crop = (slice(p, p + h), slice(p, p + w))
    for it in range(iters):
        s = ks * uplift * (area * cell_km2) ** -0.45
        if it >= 2:
            zc = z.reshape(hh, ww)[crop]
            zq = np.percentile(zc, [2, 99.5])
            zn = (z - zq[0]) / (zq[1] - zq[0])  # 0 at the valley floors, 1 at the summits
            glacial = smoothstep((zn - 0.45) / 0.15) * (area > 4)
            s = s * (1.0 - 0.55 * glacial)
        steep = hill + 14.0 * smoothstep((z - 0.6 * z.max()) / (0.3 * z.max() + 1e-9)) if it else hill
        s = np.minimum(s, np.tan(np.radians(steep))) * rough
        z, recv = grid.solve(s, base)
        tree = FlowTree(recv)
        area = tree.accumulate(np.ones(grid.n))
    z2 = z.reshape(hh, ww)[crop]
    lo, hi = np.percentile(z2, 0.5), z2.max()
    zs = zlo + (z2 - lo) * (zhi - zlo) / (hi - lo)
    zn = np.clip((zs - zlo) / (zhi - zlo), 0, 1)
    ridged = 1.0 - np.abs(fractal_noise(rng, (h, w), 2.6))
    area2 = area.reshape(hh, ww)[crop]
    crest = smoothstep(zn / 0.8) * (area2 < 6)
    zs = zs + 45.0 * crest * (ridged - 0.6) + 10.0 * fractal_noise(rng, (h, w), 2.2)
    zs = ndimage.gaussian_filter(zs, 0.6)
    # receivers of the cropped grid (paths that leave the crop end at its border)
    rr = recv.reshape(hh, ww)[crop].ravel()
    ok = rr >= 0
    ry, rx = np.divmod(np.where(ok, rr, 0), ww)
    ry, rx = ry - p, rx - p
    inside = ok & (ry >= 0) & (ry < h) & (rx >= 0) & (rx < w)
    recv_c = np.where(inside, ry * w + rx, -1)
    tree_c = FlowTree(recv_c)
    return zs.astype(np.float32), tree_c, area2.astype(np.float32)


def slope_aspect(z: np.ndarray, res: float):
    """Slope (degrees) and aspect (radians clockwise from north, downslope direction), Horn-like."""
    zp = np.pad(z, 1, mode="edge").astype(np.float64)
    east = zp[:-2, 2:] + 2 * zp[1:-1, 2:] + zp[2:, 2:]
    west = zp[:-2, :-2] + 2 * zp[1:-1, :-2] + zp[2:, :-2]
    south = zp[2:, :-2] + 2 * zp[2:, 1:-1] + zp[2:, 2:]
    north = zp[:-2, :-2] + 2 * zp[:-2, 1:-1] + zp[:-2, 2:]
    dzdx = (east - west) / (8 * res)
    dzdy = (south - north) / (8 * res)
    # rows go south: dz/dnorth = -dzdy
    gx, gn = dzdx, -dzdy
    slope = np.degrees(np.arctan(np.hypot(gx, gn)))
    aspect = np.arctan2(-gx, -gn) % (2 * np.pi)  # direction of steepest descent
    return slope.astype(np.float32), aspect.astype(np.float32), gx.astype(np.float32), gn.astype(np.float32)


def surface_normals(gx: np.ndarray, gn: np.ndarray):
    """Unit normal (east, north, up) components from the elevation gradient."""
    norm = np.sqrt(gx * gx + gn * gn + 1.0)
    return (-gx / norm).astype(np.float32), (-gn / norm).astype(np.float32), (1.0 / norm).astype(np.float32)


def horizon_height(z: np.ndarray, res: float, sun_az_deg: float, sun_el_deg: float) -> np.ndarray:
    """Height of the sun-ward horizon line seen from each cell: max_k z(p + k step) - k step tan(elevation).

    A cell is in cast shadow where this exceeds its own elevation. Marching one cell at a time along
    the sun azimuth (rounded to the nearest cell), up to the distance at which the highest point of
    the grid can no longer shade.
    """
    h, w = z.shape
    az = np.radians(sun_az_deg)
    dx, dn = np.sin(az), np.cos(az)  # towards the sun
    step = 1.0 / max(abs(dx), abs(dn))
    drop = np.tan(np.radians(sun_el_deg)) * res * step * np.hypot(dx, dn)
    kmax = int(np.ceil((float(z.max()) - float(z.min())) / max(drop, 1e-6)))
    best = np.full(z.shape, -1e4, np.float32)
    zf = z.astype(np.float32)
    for k in range(1, kmax + 1):
        ox = int(round(k * step * dx))
        oy = int(round(-k * step * dn))  # north is up (row decreasing)
        if abs(ox) >= w or abs(oy) >= h:
            break
        tgt = best[max(0, -oy):h - max(0, oy), max(0, -ox):w - max(0, ox)]
        src = zf[max(0, oy):h - max(0, -oy), max(0, ox):w - max(0, -ox)]
        np.maximum(tgt, src - np.float32(k * drop), out=tgt)
    return best


def cos_incidence(nx, ny, nz, sun_az_deg: float, sun_el_deg: float):
    az, el = np.radians(sun_az_deg), np.radians(sun_el_deg)
    sx, sy, sz = np.cos(el) * np.sin(az), np.cos(el) * np.cos(az), np.sin(el)
    return nx * np.float32(sx) + ny * np.float32(sy) + nz * np.float32(sz)


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
    z, tree, _ = make_terrain(_rng(seed, 1), h30, w30, (zlo, zhi), spec["pad_m"], RES_DEM)
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
               + 1200.0 * (1.0 - smoothstep(dedge / 2500.0)) + 60.0 * fractal_noise(rc, (h30, w30), 3.5))
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
    fice += 0.10 * fractal_noise(rs, (h10, w10), 3.0)
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
# acquisition schedule: candidate dates per year and their conditions
# --------------------------------------------------------------------------------------------------

LAT0, LON0 = 46.0, 7.8  # nominal centre for the sun geometry
_WINDOW = ((8, 1), (10, 15))  # candidate window (month, day), as the workflow's epochs


def sun_position(when) -> tuple[float, float]:
    """Approximate solar (azimuth, elevation) in degrees at LAT0/LON0 for a UTC datetime."""
    doy = when.timetuple().tm_yday
    decl = np.radians(23.44) * np.sin(2 * np.pi * (doy - 81) / 365.0)
    hours = when.hour + when.minute / 60.0 + LON0 / 15.0
    ha = np.radians(15.0 * (hours - 12.0))
    lat = np.radians(LAT0)
    el = np.arcsin(np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(ha))
    az = np.arctan2(-np.sin(ha) * np.cos(decl), np.sin(decl) * np.cos(lat) - np.cos(decl) * np.sin(lat) * np.cos(ha))
    return float(np.degrees(az) % 360.0), float(np.degrees(el))


def make_schedule(seed: int, spec: dict, ela0: float) -> list[dict]:
    """Candidate Sentinel-2 acquisitions per year, each with its (hidden) conditions.

    Two relative orbits image the tile: orbit "A" covers it fully, orbit "B" only up to its swath edge
    (a line ~8-16 degrees off north, 25-65 % of the region). Until 2016 only Sentinel-2A flies (10-day
    revisit per orbit); from 2017 Sentinel-2B doubles it. Per year exactly one *best* date (orbit A, 12
    Aug - 15 Sep: cloud < 2 % and none within 2 km of a glacier, transient snow line 120-260 m above the
    ELA, 320-480 m in the hot 2023) is planted, in the demo's 2015 a second ``good`` one (20-140 m above
    the ELA). The other dates (orbit B twice as likely, at least one partial scene per year) are, in
    order: ``snow`` (fresh snow 500-900 m below the ELA, few clouds: tempting but bad), ``cloudy``
    (15-55 %), then a draw from ``cloudy``, ``overcast`` (80-97 %), ``hazy`` (cirrus veil),
    ``snowcloud``, ``partly`` (5-15 %); October dates are mostly ``snow`` and dates before 11 August
    keep late-lying snow (snow line 150-350 m below the ELA).
    """
    from datetime import date, datetime, timedelta

    rng = _rng(seed, 5)
    out = []
    for year, n in spec["years"].items():
        two = year >= 2017
        start = date(year, *_WINDOW[0])
        end = date(year, *_WINDOW[1])
        a0 = start + timedelta(days=int(rng.integers(0, 10)))
        cand = []
        step = 5 if two else 10
        k = 0
        while a0 + timedelta(days=k) <= end:
            d = a0 + timedelta(days=k)
            plat = "sentinel-2b" if (two and (k // 5) % 2) else "sentinel-2a"
            cand.append((d, "A", plat))
            if d + timedelta(days=3) <= end:
                cand.append((d + timedelta(days=3), "B", plat))
            k += step
        cand.sort()
        is_best_window = [c[1] == "A" and date(year, 8, 12) <= c[0] <= date(year, 9, 15) for c in cand]
        pool = [i for i, ok in enumerate(is_best_window) if ok]
        best = int(rng.choice(pool))
        chosen = {best: "best"}
        if spec.get("second_good", {}).get(year):
            far = [i for i, c in enumerate(cand) if c[1] == "A" and abs((c[0] - cand[best][0]).days) >= 15
                   and date(year, 8, 5) <= c[0] <= date(year, 9, 25)]
            if far:
                chosen[int(rng.choice(far))] = "good"
        rest = [i for i in range(len(cand)) if i not in chosen]
        wgt = np.array([2.0 if cand[i][1] == "B" else 1.0 for i in rest])
        extra = rng.choice(rest, size=min(n - len(chosen), len(rest)), replace=False, p=wgt / wgt.sum())
        b_rest = [i for i in rest if cand[i][1] == "B" and i not in extra]
        if len(extra) >= 2 and b_rest and not any(cand[i][1] == "B" for i in extra):
            extra[-1] = int(rng.choice(b_rest))  # every year has at least one partial (swath-edge) scene
        weathers = []
        for j, i in enumerate(sorted(int(e) for e in extra)):
            d = cand[i][0]
            if j == 0:
                wx = "snow"
            elif j == 1:
                wx = "cloudy"
            elif d.month == 10 and rng.random() < 0.6:
                wx = "snow"
            else:
                wx = str(rng.choice(["cloudy", "overcast", "hazy", "snowcloud", "cloudy", "partly"]))
            weathers.append((i, wx))
        for i, wx in weathers:
            chosen[i] = wx
        hot = year >= 2022
        for i in sorted(chosen, key=lambda i: cand[i][0]):
            d, orbit, plat = cand[i]
            wx = chosen[i]
            hms = (10, 27, 41) if orbit == "A" else (10, 37, 29)
            when = datetime(d.year, d.month, d.day, *hms)
            cloud = {"best": rng.uniform(0.0, 0.02), "good": rng.uniform(0.01, 0.05), "cloudy": rng.uniform(0.15, 0.55),
                     "partly": rng.uniform(0.05, 0.15),
                     "overcast": rng.uniform(0.8, 0.97), "hazy": rng.uniform(0.02, 0.1), "snow": rng.uniform(0.0, 0.15),
                     "snowcloud": rng.uniform(0.2, 0.5)}[wx]
            if wx == "best":
                tsl = ela0 + (rng.uniform(320, 480) if hot else rng.uniform(120, 260))
            elif wx == "good":
                tsl = ela0 + rng.uniform(20, 140)
            elif wx in ("snow", "snowcloud"):
                tsl = ela0 - rng.uniform(500, 900)
            else:
                tsl = ela0 + rng.uniform(-150, 150) + (200 if hot else 0)
            if d < date(year, 8, 11) and wx not in ("best", "good"):
                tsl = min(tsl, ela0 - rng.uniform(150, 350))  # late-lying winter snow
            if wx == "hazy":
                cirrus = float(rng.uniform(0.25, 0.45))
            else:
                draw = rng.random()
                cirrus = float(rng.uniform(0, 0.12)) if draw < 0.3 and wx not in ("best", "good") else 0.0
            az, el = sun_position(when)
            item_id = f"S2{plat[-1].upper()}_{spec['mgrs_tile']}_{d:%Y%m%d}_0_L2A"
            out.append({
                "item_id": item_id, "date": d.isoformat(), "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "year": year, "orbit": orbit, "platform": plat, "quality": wx,
                "cloud_target": float(cloud), "cirrus": cirrus,
                "snowline_m": float(tsl), "fresh_snow": wx in ("snow", "snowcloud"),
                "coverage": 1.0 if orbit == "A" else float(rng.uniform(0.25, 0.65)),
                "swath_angle_deg": float(rng.uniform(8, 16)), "cloud_height_m": float(rng.uniform(1500, 3500)),
                "sun_azimuth": az, "sun_elevation": el, "hot_year": hot,
                "noise_seed": int(rng.integers(0, 2**31 - 1)),
            })
    return out


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
    t1o = _ordinal(t1) if t1 else None
    for g in range(n):
        pix = px_of[g]
        n0 = pix.size
        t0 = dates[g]
        years = (t1o - _ordinal(t0)) / 365.25 if t1o else 0.0
        rate = planted_rate_pct(area0[g], rng, bool(dd[g]))
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


def glacier_state(W, when_ord: int):
    """Per-label retreat progress f in [0, 1] (0 = inventory date, 1 = 2023 truth date) at a date."""
    f = np.zeros(W.n + 1, np.float32)
    if W.t1_ord is not None:
        span = np.maximum(W.t1_ord - W.t0_ord[1:], 1)
        f[1:] = np.clip((when_ord - W.t0_ord[1:]) / span, 0.0, 1.0)
    return f


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


# --------------------------------------------------------------------------------------------------
# elevation change
# --------------------------------------------------------------------------------------------------

DHDT_PERIODS = {"2010-2014": ("2010-01-01", "2014-12-31", 1.0), "2015-2019": ("2015-01-01", "2019-12-31", 1.3)}


def make_dhdt(W, period: str) -> np.ndarray:
    """dh/dt (m/yr) at 100 m for a period: glacier thinning plus noise, -9999 in a few voids.

    Thinning on a glacier pixel = -(0.4 + A_g x e^1.3) x k_period, with e the relative position in
    the ablation zone (0 at the local ELA, 1 at the terminus) and A_g = 1.0 + 2.5 min(1, (area/5)^0.35)
    (big glaciers thin most at their tongues, up to ~4-5 m/yr), x1 for 2010-2014 and x1.3 for
    2015-2019; debris-covered pixels thin at 85-115 % of that (thinning on debris tongues stays
    strong). The glacier extent is the inventory (t0) one for both periods (ice lost during 2015-2019
    thinned until it was gone); the 10 m field is averaged to 100 m (margins get partial values).
    Noise: white 0.15 m/yr + spatially correlated 0.15 m/yr + slope-dependent up to
    ~0.4 m/yr on 45 degree slopes; ~5 % of the steep (> 40 degree) off-glacier cells are voids.
    """
    k = DHDT_PERIODS[period][2]
    rng = _rng(W.seed, 20 + list(DHDT_PERIODS).index(period))
    lab = W.lab10
    n = W.n
    area = W.table["area_t0_km2"].to_numpy()
    amp = np.r_[0.0, 1.0 + 2.5 * np.minimum(1.0, (area / 5.0) ** 0.35)]
    dfac = np.r_[1.0, rng.uniform(0.85, 1.15, n)]
    zmin = np.r_[0.0, W.table["zmin"].to_numpy()]
    ice = lab > 0  # the inventory extent: ice lost during 2015-2019 thinned (fast) until it was gone
    e = np.clip((W.ela10 - W.z10) / np.maximum(W.ela10 - zmin[lab], 30.0), 0.0, 1.0)
    thin = -(0.4 + amp[lab] * e ** 1.3) * k
    thin = np.where(W.debris1 | W.debris0, thin * dfac[lab], thin)
    dh10 = np.where(ice, thin, 0.0).astype(np.float32)
    dh = block_mean(dh10, 10)
    slope = block_mean(W.slope10, 10)
    shape = dh.shape
    dh = dh + 0.15 * rng.standard_normal(shape) + 0.15 * fractal_noise(rng, shape, 3.5)
    dh = dh + 0.4 * (slope / 45.0) ** 2 * rng.standard_normal(shape)
    glac = block_mean((lab > 0).astype(np.float32), 10) > 0
    void = (slope > 40.0) & ~glac & (rng.random(shape) < 0.05)
    dh = np.where(void, -9999.0, dh)
    return dh.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------------

CRS = "EPSG:32632"
COG_MEDIA = "image/tiff; application=geotiff; profile=cloud-optimized"


def _transform(W, res: float):
    from affine import Affine

    return Affine(res, 0.0, W.x0, 0.0, -res, W.y0)


def write_cog(path, arr: np.ndarray, transform, nodata, resampling: str = "average", threads: int = 1) -> None:
    """Cloud-Optimized GeoTIFF (GDAL COG driver): deflate + predictor, 512 px tiles, internal overviews.

    Deflate level 1: on these (noisy) rasters higher levels are 3x slower for < 1 % smaller files.

    Overviews are decimated by 4 and 16 (where the raster is big enough) rather than the driver's
    2/4/8 pyramid: a quarter of the overview bytes for the same coarse reads.
    """
    import rasterio
    from rasterio.enums import Resampling

    kind = np.dtype(arr.dtype).kind
    predictor = 3 if kind == "f" else 2
    h, w = arr.shape
    prof = dict(driver="COG", width=w, height=h, count=1, dtype=arr.dtype.name, crs=CRS, transform=transform,
                nodata=nodata, compress="DEFLATE", level=1, predictor=predictor,
                blocksize=512 if min(h, w) > 512 else 256, overviews="FORCE_USE_EXISTING",
                num_threads=str(threads), bigtiff="NO")
    factors = [f for f in (4, 16) if min(h, w) // f >= 100]
    with rasterio.open(path, "w", **prof) as ds:
        ds.write(arr, 1)
        if factors:
            ds.build_overviews(factors, Resampling[resampling])


def _write_gpkg(gdf, path, layer: str) -> None:
    """GeoPackage with a fixed timestamp (OGR_CURRENT_DATE), so the same region gives the same bytes."""
    import pyogrio

    key = "OGR_CURRENT_DATE"
    before = pyogrio.get_gdal_config_option(key)
    pyogrio.set_gdal_config_options({key: "2000-01-01T00:00:00.000Z"})
    try:
        gdf.to_file(path, layer=layer, driver="GPKG", engine="pyogrio")
    finally:
        pyogrio.set_gdal_config_options({key: before})


def _polygons(lab: np.ndarray, transform, n: int) -> list:
    """One (Multi)Polygon per label 1..n, traced along the 10 m pixel edges (area = pixels x 100 m2)."""
    import shapely
    from rasterio import features
    from shapely.geometry import shape

    parts: list[list] = [[] for _ in range(n + 1)]
    for geom, val in features.shapes(lab.astype(np.int32), mask=lab > 0, connectivity=4, transform=transform):
        parts[int(val)].append(shape(geom))
    out = []
    for g in range(1, n + 1):
        geom = shapely.union_all(parts[g]) if len(parts[g]) > 1 else (parts[g][0] if parts[g] else shapely.Polygon())
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
            if geom.geom_type == "GeometryCollection":
                geom = shapely.union_all([p for p in geom.geoms if p.geom_type in ("Polygon", "MultiPolygon")])
        out.append(geom)
    return out


def _lonlat(xs, ys):
    from pyproj import Transformer

    t = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    return t.transform(np.asarray(xs, float), np.asarray(ys, float))


def _footprint(W, valid60: np.ndarray):
    """Valid-data footprint (lon/lat polygon) of a scene from its 60 m validity mask."""
    import shapely
    from rasterio import features
    from shapely.geometry import shape

    t60 = _transform(W, 60.0)
    polys = [shape(g) for g, _ in features.shapes(valid60.astype(np.uint8), mask=valid60, transform=t60)]
    geom = shapely.union_all(polys).simplify(30.0)
    if geom.geom_type == "MultiPolygon":
        geom = max(geom.geoms, key=lambda p: p.area)
    xs, ys = np.asarray(geom.exterior.coords).T
    lon, lat = _lonlat(xs, ys)
    return shapely.Polygon(np.round(np.c_[lon, lat], 7))


def _asset_proj(W, res: float) -> dict:
    h, w = int(round(W.h10 * RES_TRUTH / res)), int(round(W.w10 * RES_TRUTH / res))
    t = _transform(W, res)
    return {"proj:shape": [h, w], "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "proj:bbox": [W.x0, W.y0 - h * res, W.x0 + w * res, W.y0]}


_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
]


def build_catalog(root, W, scenes: list[dict], aux: dict) -> None:
    """Static STAC catalog under ``<root>/inputs/catalog`` (relative hrefs, self-contained).

    Collections ``sentinel-2-l2a`` (one item per scene) and ``auxiliary`` (``dem-glo30`` with asset
    ``dem``; ``dhdt-2010-2014`` / ``dhdt-2015-2019`` with asset ``dhdt``).
    """
    from datetime import datetime, timezone

    import pystac
    import shapely
    from shapely.geometry import box, mapping

    root = Path(root)
    inputs = root / "inputs"
    x1, y1 = W.x0 + W.w10 * RES_TRUTH, W.y0 - W.h10 * RES_TRUTH
    lon, lat = _lonlat([W.x0, x1, x1, W.x0], [W.y0, W.y0, y1, y1])
    region_ll = shapely.Polygon(np.round(np.c_[lon, lat], 7))
    bbox_ll = [float(v) for v in region_ll.bounds]
    dts = sorted(datetime.strptime(s["datetime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) for s in scenes)
    cat = pystac.Catalog("glaciermap-demo",
                         f"Synthetic glacier region (glaciermap.demo, preset {W.spec['name']}, seed {W.seed})",
                         title="glaciermap demo region")
    s2 = pystac.Collection(
        "sentinel-2-l2a",
        "Synthetic Sentinel-2 L2A-like scenes (surface reflectance x 10000, uint16, nodata 0; SCL 20 m)",
        pystac.Extent(pystac.SpatialExtent([bbox_ll]), pystac.TemporalExtent([[dts[0], dts[-1]]])),
        license="CC-BY-4.0", title="Sentinel-2 L2A (synthetic)")
    auxc = pystac.Collection(
        "auxiliary", "Synthetic DEM (Copernicus GLO-30-like) and elevation-change maps",
        pystac.Extent(pystac.SpatialExtent([bbox_ll]),
                      pystac.TemporalExtent([[datetime(2010, 1, 1, tzinfo=timezone.utc),
                                              datetime(2019, 12, 31, tzinfo=timezone.utc)]])),
        license="CC-BY-4.0", title="auxiliary rasters")
    cat.add_child(s2)
    cat.add_child(auxc)
    for sc in scenes:
        dt = datetime.strptime(sc["datetime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        geom = sc["footprint"]
        props = {
            "platform": sc["platform"], "constellation": "sentinel-2", "instruments": ["msi"],
            "eo:cloud_cover": sc["cloud_cover"], "proj:code": CRS, "proj:epsg": 32632,
            "s2:mgrs_tile": W.spec["mgrs_tile"], "s2:nodata_pixel_percentage": sc["nodata_pct"],
            "s2:snow_ice_percentage": sc["snow_pct"], "sat:relative_orbit": 65 if sc["orbit"] == "A" else 108,
            "view:sun_azimuth": round(sc["sun_azimuth"], 3), "view:sun_elevation": round(sc["sun_elevation"], 3),
        }
        item = pystac.Item(sc["item_id"], mapping(geom), [float(v) for v in geom.bounds], dt, props,
                           stac_extensions=list(_EXTENSIONS), collection=s2)
        for band in BANDS + ["SCL"]:
            res = 20 if band == "SCL" else BAND_RES[band]
            extra = _asset_proj(W, res)
            if band == "SCL":
                extra["raster:bands"] = [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}]
                title, roles = "Scene classification map (SCL)", ["data"]
            else:
                cn, cw, fw = BAND_INFO[band]
                extra["eo:bands"] = [{"name": band, "common_name": cn, "center_wavelength": cw,
                                      "full_width_half_max": fw}]
                extra["raster:bands"] = [{"nodata": 0, "data_type": "uint16", "spatial_resolution": res,
                                          "scale": 0.0001, "offset": 0}]
                extra["gsd"] = res
                title, roles = f"{band} - {cn} ({res} m)", ["data", "reflectance"]
            href = str((inputs / "scenes" / sc["item_id"] / f"{band}.tif").resolve())
            item.add_asset(band, pystac.Asset(href, title=title, media_type=COG_MEDIA, roles=roles, extra_fields=extra))
        s2.add_item(item)
    for item_id, (asset, path, res, title, start, end) in aux.items():
        props = {"proj:code": CRS, "proj:epsg": 32632,
                 "start_datetime": f"{start}T00:00:00Z", "end_datetime": f"{end}T23:59:59Z"}
        item = pystac.Item(item_id, mapping(region_ll), bbox_ll, None, props,
                           stac_extensions=list(_EXTENSIONS[1:3]), collection=auxc)
        extra = _asset_proj(W, res)
        extra["raster:bands"] = [{"nodata": -9999, "data_type": "float32", "spatial_resolution": res,
                                  "unit": "m" if asset == "dem" else "m/yr"}]
        item.add_asset(asset, pystac.Asset(str(Path(path).resolve()), title=title, media_type=COG_MEDIA,
                                           roles=["data"], extra_fields=extra))
        auxc.add_item(item)
    cat_dir = inputs / "catalog"
    cat.normalize_hrefs(str(cat_dir))
    cat.make_all_asset_hrefs_relative()
    cat.save(pystac.CatalogType.SELF_CONTAINED)


# --------------------------------------------------------------------------------------------------
# presets and the entry points
# --------------------------------------------------------------------------------------------------

VERSION = 1

PRESETS = {
    "demo": {
        "origin": (400200.0, 5110200.0),  # upper-left corner (x, y) in EPSG:32632, ~7.7 E 46.1 N
        "size_m": (25200, 19800),  # width, height (multiples of 300 m: the 10/20/30/60/100 m grids nest)
        "relief_m": (1500.0, 3950.0),
        "pad_m": 4000.0,  # terrain is solved on a padded domain and cropped
        "n_glaciers": (40, 60),  # inventory size, glaciers under 0.1 km2 included
        "n_small": (3, 6),  # inventory glaciers under 0.1 km2
        "largest_km2": (7.0, 15.0),
        "n_debris_dominated": (2, 4),
        "n_lakes": 7,
        "n_proglacial_lakes": 3,
        "years": {2015: 6, 2016: 6, 2017: 6, 2023: 6},  # candidate dates per year
        "inventory_years": {2015: 0.68, 2016: 0.26, 2017: 0.06},  # shares of glaciers per inventory year
        "second_good": {2015: True},  # a second clear 2015 date (inventory built from two scenes)
        "mgrs_tile": "32TMS",
        "workers": 2,
    },
    "tiny": {
        "origin": (409200.0, 5103300.0),
        "size_m": (6000, 5100),
        "relief_m": (1900.0, 3500.0),
        "pad_m": 3000.0,
        "n_glaciers": (4, 6),
        "n_small": (0, 1),
        "largest_km2": (0.5, 3.0),
        "n_debris_dominated": (1, 1),
        "n_lakes": 1,
        "n_proglacial_lakes": 1,
        "years": {2015: 3, 2023: 3},
        "inventory_years": {2015: 1.0},
        "second_good": {},
        "mgrs_tile": "32TMS",
        "workers": 1,
    },
}

_WORLD = None  # the world shared with forked scene workers


def _render_and_write(args):
    scene, scene_dir, threads = args
    W = _WORLD
    arrays, meta = render_scene(W, scene)
    scene_dir = Path(scene_dir)
    scene_dir.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        res = 20 if key == "SCL" else BAND_RES[key]
        write_cog(scene_dir / f"{key}.tif", arr, _transform(W, res), 0,
                  resampling="nearest" if key == "SCL" else "average", threads=threads)
    meta["footprint"] = _footprint(W, meta.pop("valid60"))
    return meta


def _write_world_files(root: Path, W, schedule: list[dict]) -> dict:
    """Inventory, truth, DEM and dh/dt files (everything but the scenes and the catalog)."""
    import geopandas as gpd
    import pandas as pd

    inputs, truth = root / "inputs", root / "truth"
    for d in (inputs / "dem", inputs / "dhdt", truth):
        d.mkdir(parents=True, exist_ok=True)
    t10 = _transform(W, RES_TRUTH)
    tab = W.table
    n = W.n
    geoms0 = _polygons(W.lab10, t10, n)
    cen = gpd.GeoSeries(geoms0, crs=CRS).centroid
    lon, lat = _lonlat(cen.x.to_numpy(), cen.y.to_numpy())
    inv = gpd.GeoDataFrame({"glac_id": tab["glac_id"], "area_km2": tab["area_t0_km2"].round(6),
                            "src_date": tab["src_date"], "cenlon": np.round(lon, 6), "cenlat": np.round(lat, 6)},
                           geometry=geoms0, crs=CRS)
    _write_gpkg(inv, inputs / "inventory.gpkg", "glaciers")
    out0 = gpd.GeoDataFrame({"glac_id": tab["glac_id"], "date": tab["src_date"],
                             "area_km2": tab["area_t0_km2"].round(6)},
                            geometry=geoms0, crs=CRS)
    _write_gpkg(out0, truth / "outlines_t0.gpkg", "outlines")
    if W.t1 is not None:
        lab1 = np.where(W.kept1, W.lab10, 0)
        geoms1 = _polygons(lab1, t10, n)
        out1 = gpd.GeoDataFrame({"glac_id": tab["glac_id"], "date": W.t1, "area_km2": tab["area_t1_km2"].round(6)},
                                geometry=geoms1, crs=CRS)
        _write_gpkg(out1, truth / "outlines_2023.gpkg", "outlines")
        years = (W.t1_ord - W.t0_ord[1:]) / 365.25
        d_area = tab["area_t1_km2"] - tab["area_t0_km2"]
        areas = pd.DataFrame({
            "glac_id": tab["glac_id"], "date_t0": tab["src_date"], "area_t0_km2": tab["area_t0_km2"].round(6),
            "date_t1": W.t1, "area_t1_km2": tab["area_t1_km2"].round(6),
            "rate_km2_per_year": (d_area / years).round(8),
            "rate_pct_per_year": (100.0 * d_area / tab["area_t0_km2"] / years).round(6),
            "debris_frac_t0": tab["debris_frac_t0"].round(6), "debris_frac_t1": tab["debris_frac_t1"].round(6),
            "size_class": tab["size_class"], "debris_dominated": tab["debris_dominated"],
            "zmin_m": tab["zmin"].round(1), "zmax_m": tab["zmax"].round(1),
        })
        areas.to_csv(truth / "areas.csv", index=False)
        write_cog(truth / "debris_2023.tif", W.debris1.astype(np.uint8), t10, None, resampling="nearest")
    write_cog(truth / "debris_t0.tif", W.debris0.astype(np.uint8), t10, None, resampling="nearest")
    write_cog(inputs / "dem" / "dem_glo30.tif", W.z30.astype(np.float32), _transform(W, RES_DEM), -9999.0)
    aux = {"dem-glo30": ("dem", inputs / "dem" / "dem_glo30.tif", RES_DEM,
                         "Copernicus GLO-30-like DEM (synthetic)", "2011-01-01", "2014-12-31")}
    for period in DHDT_PERIODS:
        path = inputs / "dhdt" / f"dhdt_{period}.tif"
        write_cog(path, make_dhdt(W, period), _transform(W, RES_DHDT), -9999.0)
        start, end, _ = DHDT_PERIODS[period]
        aux[f"dhdt-{period}"] = ("dhdt", path, RES_DHDT, f"elevation change {period} (m/yr, synthetic)", start, end)
    return aux


def _stamp(seed: int, preset: str) -> dict:
    return {"seed": int(seed), "preset": preset, "version": VERSION}


def generate(out_dir, seed: int = 0, preset: str = "demo", force: bool = False, workers: int | None = None) -> dict:
    """Generate the synthetic region into ``out_dir`` (idempotent; see the module docstring).

    Returns a summary: n_glaciers, n_scenes, areas, dates and per-stage timings in seconds
    (``skipped`` is True when a complete region with this seed and preset was already there).
    """
    import json
    import os
    import shutil
    import time
    from concurrent.futures import ProcessPoolExecutor

    global _WORLD
    if preset not in PRESETS:
        raise ValueError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
    out = Path(out_dir)
    stamp = out / ".complete"
    if not force and stamp.exists() and (out / "inputs" / "catalog" / "catalog.json").exists():
        try:
            have = json.loads(stamp.read_text())
        except ValueError:
            have = {}
        if all(have.get(k) == v for k, v in _stamp(seed, preset).items()):
            return {**have.get("summary", {}), "skipped": True, "timings": {}}
    spec = dict(PRESETS[preset], name=preset)
    if 2023 not in spec["years"]:
        raise ValueError(f"preset '{preset}' needs the year 2023 (the truth epoch)")
    t_start = time.perf_counter()
    timings = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        t = time.perf_counter()
        W = build_world(seed, spec)
        schedule = make_schedule(seed, spec, W.ela0)
        plant(W, schedule)
        prepare_render(W)
        timings["world"] = time.perf_counter() - t
        t = time.perf_counter()
        aux = _write_world_files(tmp, W, schedule)
        timings["inventory_truth_dem_dhdt"] = time.perf_counter() - t
        t = time.perf_counter()
        import multiprocessing as mp

        n_workers = max(1, min(workers or spec["workers"], os.cpu_count() or 1))
        if "fork" not in mp.get_all_start_methods():
            n_workers = 1  # the workers share the world by forking
        threads = max(1, (os.cpu_count() or 1) // n_workers)
        jobs = [(sc, str(tmp / "inputs" / "scenes" / sc["item_id"]), threads) for sc in schedule]
        _WORLD = W
        try:
            if n_workers > 1:
                with ProcessPoolExecutor(n_workers, mp_context=mp.get_context("fork")) as ex:
                    metas = list(ex.map(_render_and_write, jobs))
            else:
                metas = [_render_and_write(j) for j in jobs]
        finally:
            _WORLD = None
        scenes = [{**sc, **m} for sc, m in zip(schedule, metas)]
        import pandas as pd

        pd.DataFrame([{k: v for k, v in sc.items() if k not in ("noise_seed", "footprint")} for sc in scenes]).to_csv(
            tmp / "truth" / "scenes.csv", index=False)
        timings["scenes"] = time.perf_counter() - t
        t = time.perf_counter()
        build_catalog(tmp, W, scenes, aux)
        timings["catalog"] = time.perf_counter() - t
        tab = W.table
        summary = {
            "preset": preset, "seed": int(seed), "n_glaciers": int(W.n), "n_scenes": len(scenes),
            "n_under_0.1km2": int((tab["area_t0_km2"] < 0.1).sum()),
            "area_min_km2": float(tab["area_t0_km2"].min()), "area_max_km2": float(tab["area_t0_km2"].max()),
            "area_total_km2": float(tab["area_t0_km2"].sum()), "ela_m": round(float(W.ela0), 1),
            "n_debris_dominated": int(tab["debris_dominated"].sum()), "truth_date_2023": W.t1,
            "best_dates": {str(s["year"]): s["date"] for s in schedule if s["quality"] == "best"},
            "inventory_dates": {d: int(c) for d, c in tab["src_date"].value_counts().sort_index().items()},
        }
        (tmp / ".complete").write_text(json.dumps({**_stamp(seed, preset), "summary": summary}, indent=2) + "\n")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    timings["total"] = time.perf_counter() - t_start
    return {**summary, "skipped": False, "timings": {k: round(v, 2) for k, v in timings.items()}}


def main(argv=None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m glaciermap.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="resources/demo", help="output folder (default resources/demo)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    ap.add_argument("--force", action="store_true", help="regenerate even if a complete region is there")
    ap.add_argument("--workers", type=int, default=None, help="scene-rendering processes (default: preset)")
    a = ap.parse_args(argv)
    summary = generate(a.out, seed=a.seed, preset=a.preset, force=a.force, workers=a.workers)
    if summary.get("skipped"):
        print(f"{a.out}: complete region (seed {a.seed}, preset {a.preset}) already there; nothing to do")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
