"""Terrain: steady-state stream-power landscape on an 8-neighbour graph, D8 drainage tree, slope/aspect,
surface normals, cast-shadow horizons and cos(incidence)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from .noise import fractal_noise, smoothstep


# --------------------------------------------------------------------------------------------------
# flow routing: steady-state stream-power terrain on an 8-neighbour graph
# --------------------------------------------------------------------------------------------------


class _Grid8:
    """8-neighbour graph of a raster plus one virtual outlet node linked to every boundary cell.

    Shortest paths from the outlet, with the cost of entering a cell = step length x that cell's
    channel slope, give an elevation field without pits whose shortest-path tree is a D8 drainage
    network (each cell drains to the neighbour it was reached from).
    """

    def __init__(self, h: int, w: int, res: float, outlets: np.ndarray | None = None):
        """``outlets``: further cells (flat indices) linked to the outlet node, after the boundary cells."""
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
        self.n_border = self.boundary.size
        if outlets is not None:
            extra = np.setdiff1d(np.asarray(outlets, np.int64), self.boundary)
            self.boundary = np.r_[self.boundary, extra]
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


def make_terrain(rng: np.random.Generator, h: int, w: int, relief, pad_m: float, res: float = 30.0, iters: int = 5,
                 tile=None):
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

    ``tile`` = (th, tw) cells: a grid larger than one tile is made of about (h / th) x (w / tw) landscapes of that
    size side by side, each like the one a tile-sized grid gets (its own main chain, spurs and edge taper), with
    the base level also along the borders between them (main valleys), and noise without scales beyond a tile.
    So a larger region has more glaciers of the same sizes, not larger ones. None (default): one landscape over
    the whole grid (the demo and tiny presets; their numbers are unchanged).

    Returns ``z`` (float32, m), a :class:`FlowTree` over the cropped grid and the drainage area (cells).
    """
    zlo, zhi = relief
    p = int(round(pad_m / res))
    hh, ww = h + 2 * p, w + 2 * p
    largest = tile_noise_scale(h, w, tile, p)
    if largest is None:  # one landscape over the whole grid (also a tiling of a single tile)
        grid = _Grid8(hh, ww, res)
        yy = ((np.arange(hh) - p + 0.5) / h)[:, None]
        xx = ((np.arange(ww) - p + 0.5) / w)[None, :]
        wav = ndimage.gaussian_filter1d(np.cumsum(rng.standard_normal(ww)), ww / 10.0, mode="nearest")
        wav = (wav - wav.mean()) / (wav.std() + 1e-9)
        tilt = rng.uniform(-0.12, 0.12)
        axis = 0.5 + 0.08 * wav[None, :] + tilt * (xx - 0.5)
        xedge = np.minimum(xx, 1.0 - xx) * w * res  # metres from the west / east edge of the crop
    else:
        (ny, ty), (nx, tx) = (_tiling(h, tile[0]), _tiling(w, tile[1]))
        # the borders between tiles are base level too (main valleys), across the padded grid
        lines_y = [p + int(round(j * ty)) for j in range(1, ny)]
        lines_x = [p + int(round(i * tx)) for i in range(1, nx)]
        idx = np.arange(hh * ww).reshape(hh, ww)
        grid = _Grid8(hh, ww, res, outlets=np.r_[idx[lines_y].ravel(), idx[:, lines_x].ravel()].astype(np.int64))
        # tile coordinates: 0..1 across each tile of the crop (the pad continues the outer tiles)
        ry, rx = np.arange(hh) - p + 0.5, np.arange(ww) - p + 0.5
        jy, ix = np.clip(np.floor(ry / ty), 0, ny - 1).astype(int), np.clip(np.floor(rx / tx), 0, nx - 1).astype(int)
        yy, xx = ((ry - jy * ty) / ty)[:, None], ((rx - ix * tx) / tx)[None, :]
        span = int(round(tx)) + 2 * p  # one random chain line per row of tiles, with the scales of one tile
        wav = np.empty((ny, ww))
        for j in range(ny):
            walk = np.cumsum(rng.standard_normal(ww))
            walk = ndimage.gaussian_filter1d(walk, span / 10.0, mode="nearest") - ndimage.gaussian_filter1d(
                walk, float(span), mode="nearest")
            wav[j] = (walk - walk.mean()) / (walk.std() + 1e-9)
        tilt = rng.uniform(-0.12, 0.12, size=(ny, nx))
        axis = 0.5 + 0.08 * wav[jy] + tilt[jy][:, ix] * (xx - 0.5)
        xedge = np.minimum(xx, 1.0 - xx) * tx * res  # metres from the west / east edge of the tile
    band = np.exp(-0.5 * ((yy - axis) / 0.28) ** 2)
    uplift = 0.5 + 0.9 * band + 0.22 * fractal_noise(rng, (hh, ww), 4.0, stretch=(1.0, 0.45), largest=largest)
    uplift = uplift * (0.55 + 0.45 * smoothstep(xedge / 4000.0))
    uplift = np.clip(uplift, 0.25, 2.5).ravel()
    hill = np.clip(33.0 + 4.0 * fractal_noise(rng, (hh, ww), 2.5, largest=largest), 26.0, 42.0).ravel()
    rough = np.exp(0.22 * fractal_noise(rng, (hh, ww), 2.0, largest=largest)).ravel()
    base = np.zeros(grid.n)
    for cells in (grid.boundary[:grid.n_border], grid.boundary[grid.n_border:]):  # the border, then inner valleys
        if cells.size:
            per = ndimage.gaussian_filter1d(np.cumsum(rng.standard_normal(cells.size)), 25.0, mode="wrap")
            per = (per - per.min()) / (np.ptp(per) + 1e-9)
            base[cells] = 1.0 + 400.0 * per
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
    ridged = 1.0 - np.abs(fractal_noise(rng, (h, w), 2.6, largest=largest))
    area2 = area.reshape(hh, ww)[crop]
    crest = smoothstep(zn / 0.8) * (area2 < 6)
    zs = zs + 45.0 * crest * (ridged - 0.6) + 10.0 * fractal_noise(rng, (h, w), 2.2, largest=largest)
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


def _tiling(n: int, size: float):
    """Tiles of about ``size`` cells along an axis of ``n`` cells: (count, exact tile length in cells)."""
    k = max(1, int(round(n / float(size))))
    return k, n / k


def tile_noise_scale(h: int, w: int, tile, pad_cells: float) -> float | None:
    """The largest noise scale (cells) of an ``h`` x ``w`` grid made of ``tile``-sized landscapes: one padded tile;
    None (the grid's own, the plain power law) without tiles or when the grid holds a single tile."""
    if tile is None or _tiling(h, tile[0])[0] * _tiling(w, tile[1])[0] == 1:
        return None
    return max(tile) + 2 * pad_cells


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
