"""Training patches drawn on the fly from the feature cubes (DL4GAM sections 3.4 and 3.5.3).

Patch locations are centres on a stride grid whose centre pixel lies inside the glacier's 50 m buffer,
plus one patch at the glacier centroid; per ensemble member a seeded subsample keeps
``1 + round((n_i - 1) f)`` patches of glacier ``i`` (the "1" is the centroid patch). Patches are cut
from cubes held in memory (a small LRU per DataLoader worker); nothing is written per patch.

No-leak rule (where the reference falls short): the loss mask of fold k is 0 on cloud, no data, every
pixel of a glacier whose role in fold k is "test", everything within 50 m of such a pixel and, because a
test glacier just outside a cube would not be labelled in it, the outer 50 m band of every cube. The
rule is applied per cube (the dilation crosses patch borders) by :func:`loss_mask`.

Normalisation: per channel mean/std pooled over whole training cubes (every pixel the network sees as
input, not only the glacier + buffer), excluding no data and the test-glacier + 50 m region; slope is
divided by 90; indices and sin/cos(aspect) are kept. A patch is normalised as ``(v - offset) / scale``.
NaN: dh/dt -> 0 m/yr, every other channel -> the patch mean of that channel (the training mean if the
whole patch is NaN), before normalisation.

Rule ``patches`` (workflow/rules/segmentation/patches.smk) runs :func:`run_centres` (the centre table of a set of cubes).
Rule ``normalise`` is in normalise.py; it calls :func:`fit_fold_normalisation` and :func:`save_normalisation`.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.ndimage import distance_transform_edt

from glaciermap.data.channels import get_channel, projection_channels, stored_layers
from glaciermap.data.features import DL4GAM_CHANNELS
from glaciermap.io import STATUS_SKIPPED, write_csv_atomic, write_json_atomic
from glaciermap.data.netcdf import MissingVariablesError, read_attrs, read_layers

#: Normalisation and NaN fill of each channel come from the channel registry (glaciermap.data.channels); for
#: the DL4GAM channels these are: kept as they are (already on a unit scale) ...
UNSCALED_CHANNELS = tuple(c for c in DL4GAM_CHANNELS if get_channel(c).normalisation == "none")
#: ... divided by a fixed constant instead of standardised ...
FIXED_SCALE = {c: get_channel(c).scale for c in DL4GAM_CHANNELS if get_channel(c).normalisation == "divide"}
#: ... and NaN set to 0 (raw units) instead of the patch mean.
ZERO_FILL_CHANNELS = tuple(c for c in DL4GAM_CHANNELS if get_channel(c).patch_fill == "zero")
NO_LEAK_BUFFER_M = 50.0
ROLES = ("train", "val", "test", "none")  # none: added later, test-only (split.added_glaciers)


# ---------------------------------------------------------------------------------------------------- cubes


@dataclass
class CubeArrays:
    """The arrays of one cube that patches need, in memory (inputs raw, before normalisation)."""

    path: str
    glacier_id: str
    x: np.ndarray            # [C, H, W] float32, raw units, NaN kept
    labels: np.ndarray       # [H, W] int32 index into glacier_ids, -1 none
    glacier_ids: list
    buffer50: np.ndarray     # [H, W] bool: this glacier + 50 m (excluding other glaciers)
    glacier: np.ndarray      # [H, W] bool: this glacier
    masked: np.ndarray       # [H, W] bool: cloud/shadow or no data
    nodata: np.ndarray       # [H, W] bool: no data only
    resolution: float
    channels: list
    attrs: dict = field(default_factory=dict)

    @property
    def shape(self):
        return self.labels.shape

    @property
    def glacier_area_m2(self) -> float:
        return float(self.glacier.sum()) * self.resolution ** 2

    @property
    def nbytes(self) -> int:
        return self.x.nbytes + self.labels.nbytes + 4 * self.labels.size


def open_cube(path):
    import xarray as xr

    return xr.open_dataset(path, engine="h5netcdf", decode_coords="all")


def cube_status(path) -> tuple[str, str]:
    """(glacier_id, status) from the cube attributes, without loading data."""
    attrs = read_attrs(path)
    return str(attrs.get("glacier_id", "")), str(attrs.get("status", "ok"))


#: Mask variables load_cube reads when a cube has them (nodata/cloud/glacier default to all-False).
_OPTIONAL_MASKS = ("mask_nodata", "mask_cloud", "mask_glacier")


def load_cube(path, channels=DL4GAM_CHANNELS, with_inputs: bool = True, projection: dict | None = None) -> CubeArrays:
    """Read the needed arrays of one cube into memory; a skip record raises ValueError (callers skip it first).

    Channels that are not cube layers (``pca1`` ...: fitted per fold) are computed from the stored layers they
    come from with ``projection`` (the ``projection`` entry of the fold's normalisation statistics,
    :func:`fit_projection`); without it such a channel is an error.

    The channels are layers of the cube's stack (``ds["layers"].sel(band=channels)``), read with the masks
    in one open through :func:`glaciermap.data.netcdf.read_layers` (h5py): the same values as ``open_cube`` +
    xarray, ~8x faster per cube (xarray's dataset set-up costs more than the read; README, performance).
    """
    required = ["mask_glacier_id", "mask_buffer_50m"]
    optional = required + list(_OPTIONAL_MASKS) + ["x", "glacier_ids"]
    channels = list(channels)
    proj = projection_channels(channels) if with_inputs else []
    if proj and not projection:
        raise ValueError(f"channel(s) {', '.join(proj)} are fitted per fold: loading cube {path} needs the fold's "
                         "projection (normalisation.json 'projection')")
    wanted = stored_layers(channels) if with_inputs else []
    try:
        x, v, attrs = read_layers(path, wanted, optional=optional)
    except MissingVariablesError as e:
        # a skip record has no layers: its status first, then the complaint
        attrs = read_attrs(path)
        if attrs.get("status") == STATUS_SKIPPED:
            raise ValueError(f"cube {path} is a skip record ({attrs.get('reason', '')}); it has no data") from e
        raise ValueError(f"cube {path} lacks layer(s) {', '.join(e.names)}") from e
    if attrs.get("status") == STATUS_SKIPPED:
        raise ValueError(f"cube {path} is a skip record ({attrs.get('reason', '')}); it has no data")
    missing = [c for c in required if c not in v]
    if missing:
        raise ValueError(f"cube {path} lacks variable(s) {', '.join(missing)}")
    labels = v["mask_glacier_id"].astype(np.int32)
    h, w = labels.shape
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    if proj:
        x = _assemble(x, wanted, channels, projection)
    if not with_inputs:
        x = np.empty((0, h, w), np.float32)
    xs = v["x"]
    res = float(abs(xs[1] - xs[0])) if xs.size > 1 else float(attrs.get("resolution_m", 10.0))

    def mask(name):
        return v[name].astype(bool) if name in v else np.zeros((h, w), bool)

    nodata = mask("mask_nodata")
    masked = nodata | mask("mask_cloud")
    glacier = mask("mask_glacier")
    ids = [str(g) for g in v["glacier_ids"]] if "glacier_ids" in v else []
    return CubeArrays(path=str(path), glacier_id=str(attrs.get("glacier_id", "")), x=x, labels=labels,
                      glacier_ids=ids, buffer50=v["mask_buffer_50m"].astype(bool), glacier=glacier,
                      masked=masked, nodata=nodata, resolution=res, channels=list(channels) if with_inputs else [],
                      attrs=attrs)


def _assemble(stack: np.ndarray, layers, channels, projection: dict) -> np.ndarray:
    """The model channels [C, H, W] from the stored ``layers`` of ``stack``, projection channels computed."""
    pos = {n: i for i, n in enumerate(layers)}
    names = list(projection["channels"])
    missing = [c for c in projection_channels(channels) if c not in names]
    if missing:
        raise ValueError(f"the fold's projection has channels {names}, not {missing}")
    projected = apply_projection(stack[[pos[b] for b in projection["inputs"]]], projection)
    out = np.empty((len(channels),) + stack.shape[1:], np.float32)
    for i, c in enumerate(channels):
        out[i] = projected[names.index(c)] if c in names else stack[pos[c]]
    return out


def apply_projection(bands: np.ndarray, projection: dict) -> np.ndarray:
    """(bands - mean) . components per pixel: bands [n_inputs, ...] -> [n_components, ...] float32; NaN where any
    input is NaN (the same numbers as scikit-learn's ``PCA.transform`` of the pixels, without whitening)."""
    b = np.asarray(bands, np.float64)
    comp = np.asarray(projection["components"], np.float64)
    mean = np.asarray(projection["mean"], np.float64)
    flat = b.reshape(b.shape[0], -1)
    out = comp @ (flat - mean[:, None])
    out[:, ~np.isfinite(flat).all(0)] = np.nan
    return out.reshape((comp.shape[0],) + b.shape[1:]).astype(np.float32)


def fit_projection(cube_paths, channels, exclude_glaciers=(), buffer_m: float = NO_LEAK_BUFFER_M,
                   max_pixels: int = 200_000, seed: int = 0) -> dict | None:
    """Principal components of the bands behind the projection channels of ``channels`` (``pca1`` ...), fitted on
    the given (training-glacier) cubes only: the pixels :func:`fit_normalisation` pools (not no data, not within
    ``buffer_m`` of an excluded glacier) with every band finite, a seeded subsample of at most ``max_pixels``
    spread evenly over the cubes; scikit-learn ``PCA`` (centred, not scaled, not whitened). None when
    ``channels`` has no projection channel."""
    from sklearn.decomposition import PCA

    proj = projection_channels(channels)
    if not proj:
        return None
    inputs = list(get_channel(proj[0]).inputs)
    names = sorted(proj, key=lambda c: int(c.removeprefix("pca")))
    n = int(names[-1].removeprefix("pca"))
    paths = [str(p) for p in sorted(str(p) for p in cube_paths) if cube_status(p)[1] != STATUS_SKIPPED]
    if not paths:
        raise ValueError("projection: no usable training cube")
    rng = np.random.default_rng(seed)
    quota = max(1, int(max_pixels) // len(paths))
    parts = []
    for p in paths:
        cube = load_cube(p, inputs)
        keep = ~exclusion_zone(cube.labels, cube.glacier_ids, exclude_glaciers, cube.resolution, buffer_m, edge_guard=False)
        keep &= ~cube.nodata & np.isfinite(cube.x).all(0)
        px = cube.x[:, keep].T
        if len(px) > quota:
            px = px[np.sort(rng.choice(len(px), quota, replace=False))]
        parts.append(px)
    X = np.concatenate(parts).astype(np.float64)
    if len(X) <= n:
        raise ValueError(f"projection: {len(X)} usable training pixel(s) for {n} principal components")
    pca = PCA(n_components=n, svd_solver="full").fit(X)
    return {"kind": "pca", "inputs": inputs, "channels": [f"pca{k}" for k in range(1, n + 1)],
            "mean": pca.mean_.tolist(), "components": pca.components_.tolist(),
            "explained_variance_ratio": pca.explained_variance_ratio_.tolist(), "n_pixels": int(len(X)),
            "n_cubes": len(paths), "seed": int(seed)}


def projection_key(stats: dict | None):
    """A hashable form of the statistics' projection (part of a cube cache key), None without one."""
    proj = (stats or {}).get("projection")
    return None if not proj else json.dumps(proj, sort_keys=True)


def load_training_cube(key):
    """Loader of a shared :class:`CubeCache`: key (path, channels, excluded glaciers, edge_guard[, label raster[,
    projection]]) -> (cube, loss mask) or, with a label raster (K-class models), (cube, loss mask, class raster).

    The class raster (glaciermap.segmentation.labels: uint8 class index, 255 = no label) must lie on the cube's grid;
    the projection is :func:`projection_key` of the fold's statistics (models with ``pca`` channels).
    """
    path, channels, exclude, edge_guard = key[:4]
    projection = json.loads(key[5]) if len(key) > 5 and key[5] else None
    cube = load_cube(path, list(channels), projection=projection)
    lm = loss_mask(cube, exclude, edge_guard=edge_guard)
    if len(key) < 5 or key[4] is None:
        return cube, lm
    from glaciermap.segmentation.labels import read_label_raster

    target = read_label_raster(key[4])[0]
    if target.shape != cube.shape:
        raise ValueError(f"glacier {cube.glacier_id}: label raster {key[4]} is {target.shape[0]} x {target.shape[1]} px "
                         f"but its cube {path} is {cube.shape[0]} x {cube.shape[1]}; re-make the labels")
    return cube, lm, target


class CubeCache:
    """LRU of loaded cubes, bounded by count and bytes; one per process (not pickled to workers)."""

    def __init__(self, loader, max_items: int = 32, max_bytes: float = 4e9):
        self.loader, self.max_items, self.max_bytes = loader, int(max_items), float(max_bytes)
        self._d: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key):
        if key in self._d:
            self._d.move_to_end(key)
            self.hits += 1
            return self._d[key]
        self.misses += 1
        val = self.loader(key)
        self._d[key] = val
        while len(self._d) > 1 and (len(self._d) > self.max_items or
                                    sum(v[0].nbytes if isinstance(v, tuple) else v.nbytes for v in self._d.values()) > self.max_bytes):
            self._d.popitem(last=False)
        return val


# ---------------------------------------------------------------------------------------------------- locations


def _as_masks(cube):
    """(buffer50, glacier) bool arrays from a CubeArrays, an xarray Dataset or a path."""
    if isinstance(cube, CubeArrays):
        return cube.buffer50, cube.glacier
    if isinstance(cube, (str, bytes)) or hasattr(cube, "__fspath__"):
        c = load_cube(cube, with_inputs=False)
        return c.buffer50, c.glacier
    b = cube["mask_buffer_50m"].values.astype(bool)
    g = cube["mask_glacier"].values.astype(bool) if "mask_glacier" in cube else b
    return b, g


def patch_centres(cube, stride: int) -> np.ndarray:
    """Patch centres (row, col), int64 [n, 2]: the glacier centroid first, then the stride grid inside the 50 m buffer.

    The grid is anchored at row/col 0 of the cube (with the DL4GAM margin of patch_size/2 + 50 m and a
    stride dividing patch_size/2, the same grid as the reference's top-left grid). The centroid is the
    mean pixel position of the glacier (of the buffer if the glacier has no pixel), rounded; it is not
    repeated if it also lies on the grid.
    """
    stride = int(stride)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    buf, gl = _as_masks(cube)
    region = gl if gl.any() else buf
    if not region.any():
        return np.zeros((0, 2), np.int64)
    rr, cc = np.nonzero(region)
    centroid = (int(round(rr.mean())), int(round(cc.mean())))
    sub = buf[::stride, ::stride]
    gr, gc = np.nonzero(sub)
    grid = np.stack([gr * stride, gc * stride], axis=1).astype(np.int64)
    grid = grid[~((grid[:, 0] == centroid[0]) & (grid[:, 1] == centroid[1]))]
    return np.concatenate([np.array([centroid], np.int64), grid], axis=0)


def centre_table(cube_paths, stride: int) -> pd.DataFrame:
    """Patch centres of many cubes (skip records left out): columns glac_id, path, row, col, centroid.

    Cheap (reads only the masks); meant to be computed once per region and stride and shared by folds.
    """
    rows = []
    for p in cube_paths:
        gid, status = cube_status(p)
        if status == STATUS_SKIPPED:
            continue
        c = load_cube(p, with_inputs=False)
        cen = patch_centres(c, stride)
        for k, (r, col) in enumerate(cen):
            rows.append((c.glacier_id or gid, str(p), int(r), int(col), k == 0))
    return pd.DataFrame(rows, columns=["glac_id", "path", "row", "col", "centroid"])


def subsample_counts(n_by_glacier: dict, n_total: int | None = None, fraction: float | None = None) -> tuple[dict, float]:
    """Patches kept per glacier, ``1 + round((n_i - 1) f)``, and f.

    With ``fraction`` f is given and the formula is exact. With ``n_total`` f is found by bisection and the
    rounding is done by largest remainder, so every count is floor or ceil of ``1 + (n_i - 1) f`` and the
    total is exactly ``n_total`` (clipped to [number of glaciers, number of patches]).
    """
    keys = sorted(n_by_glacier)
    n = np.array([int(n_by_glacier[k]) for k in keys], np.int64)
    if (n < 1).any():
        raise ValueError("every glacier needs at least one patch (its centroid)")
    extra = n - 1
    if (n_total is None) == (fraction is None):
        raise ValueError("give exactly one of n_total and fraction")
    if fraction is not None:
        f = float(fraction)
        if not 0 <= f <= 1:
            raise ValueError(f"fraction must be in [0, 1], got {f}")
        k = 1 + np.floor(extra * f + 0.5).astype(np.int64)   # round half up (np.round is half-to-even)
        return dict(zip(keys, k.tolist())), f
    target = int(min(max(int(n_total), len(n)), n.sum()))
    need = target - len(n)                     # patches beyond the centroids
    f = need / extra.sum() if extra.sum() > 0 else 0.0
    raw = extra * f
    k = np.floor(raw).astype(np.int64)
    rem = raw - k
    short = need - int(k.sum())
    if short > 0:
        # largest remainder first; ties broken by glacier order (deterministic)
        order = np.lexsort((np.arange(len(n)), -rem))
        k[order[:short]] += 1
    return dict(zip(keys, (1 + k).tolist())), float(f)


def sample_patches(centres_by_glacier: dict, n_total: int | None = None, fraction: float | None = None,
                   seed: int = 0) -> dict:
    """Seeded per-member subsample: glacier -> kept centres [k_i, 2] (the centroid, row 0, is always kept).

    The choice depends only on (seed, the centres), glaciers visited in sorted order.
    """
    counts, _ = subsample_counts({g: len(c) for g, c in centres_by_glacier.items()}, n_total, fraction)
    rng = np.random.default_rng(seed)
    out = {}
    for g in sorted(centres_by_glacier):
        c = np.asarray(centres_by_glacier[g])
        k = counts[g]
        rest = rng.choice(np.arange(1, len(c)), size=k - 1, replace=False) if k > 1 else np.zeros(0, np.int64)
        out[g] = c[np.concatenate([[0], np.sort(rest)]).astype(np.int64)]
    return out


# ---------------------------------------------------------------------------------------------------- folds


def fold_roles(split: pd.DataFrame, fold: int) -> dict:
    """glac_id -> role ("train"/"val"/"test") in fold ``fold`` (columns glac_id, role_<fold>)."""
    col = f"role_{int(fold)}"
    if col not in split.columns or "glac_id" not in split.columns:
        raise ValueError(f"fold split lacks column glac_id or {col}")
    roles = dict(zip(split["glac_id"].astype(str), split[col].astype(str)))
    bad = sorted({r for r in roles.values() if r not in ROLES})
    if bad:
        raise ValueError(f"fold split {col} has unknown role(s) {bad}; expected {ROLES}")
    return roles


@dataclass
class FoldItems:
    train: list                 # [(cube path, row, col)]
    val: list
    test_glaciers: frozenset
    train_cubes: list           # cube paths of training glaciers (for the normalisation)
    n_train_all: int            # training locations before subsampling
    f: float


def build_fold_items(centres_train: pd.DataFrame, centres_val: pd.DataFrame, split: pd.DataFrame, fold: int,
                     n_total: int | None = None, fraction: float | None = None, seed: int = 0,
                     n_val: int | None = None, val_fraction: float | None = None) -> FoldItems:
    """Training/validation items of one fold and member from :func:`centre_table` tables.

    Training patches come only from training glaciers (subsampled per member with ``seed``), validation
    patches only from validation glaciers (all of them unless n_val/val_fraction is given). Glaciers in
    the tables but not in the split are used for nothing.
    """
    roles = fold_roles(split, fold)

    def items(table, role, nt, fr, sd):
        t = table[table["glac_id"].astype(str).map(roles) == role]
        by_g, path_of = {}, {}
        for g, sub in t.groupby("glac_id", sort=True):
            sub = sub.sort_values("centroid", ascending=False, kind="stable")
            by_g[str(g)] = sub[["row", "col"]].to_numpy(np.int64)
            path_of[str(g)] = str(sub["path"].iloc[0])
        n_all = sum(len(v) for v in by_g.values())
        if not by_g:
            return [], [], n_all, 0.0
        if nt is None and fr is None:
            kept, f = by_g, 1.0
        else:
            kept = sample_patches(by_g, nt, fr, sd)
            f = subsample_counts({g: len(c) for g, c in by_g.items()}, nt, fr)[1]
        out = [(path_of[g], int(r), int(c)) for g in sorted(kept) for r, c in kept[g]]
        return out, sorted(set(path_of.values())), n_all, f

    train, train_cubes, n_all, f = items(centres_train, "train", n_total, fraction, seed)
    val, _, _, _ = items(centres_val, "val", n_val, val_fraction, seed + 1)
    test = frozenset(g for g, r in roles.items() if r == "test")
    return FoldItems(train=train, val=val, test_glaciers=test, train_cubes=train_cubes, n_train_all=n_all, f=f)


# ---------------------------------------------------------------------------------------------------- masks


def exclusion_zone(labels: np.ndarray, glacier_ids, exclude, resolution: float,
                   buffer_m: float = NO_LEAK_BUFFER_M, edge_guard: bool = True, frame=None) -> np.ndarray:
    """Pixels of the excluded glaciers, within ``buffer_m`` of them and (edge_guard) within ``buffer_m`` of the cube edge.

    ``frame``: (top, left, cube height, cube width) when ``labels`` is a window of the cube (the training store reads
    windows padded by ``buffer_m``, which give the whole cube's zone inside them); None = ``labels`` is the cube."""
    exclude = {str(g) for g in exclude}
    zone = np.zeros(labels.shape, bool)
    if not exclude:
        return zone
    codes = [k for k, g in enumerate(glacier_ids) if str(g) in exclude]
    if codes:
        pix = np.isin(labels, codes)
        if pix.any():
            zone = distance_transform_edt(~pix) * resolution <= buffer_m
    if edge_guard:
        n = int(math.floor(buffer_m / resolution + 1e-9))
        if n > 0:
            top, left, H, W = frame if frame is not None else (0, 0, *labels.shape)
            rows = np.arange(top, top + labels.shape[0])[:, None]
            cols = np.arange(left, left + labels.shape[1])[None, :]
            zone |= (rows < n) | (rows >= H - n) | (cols < n) | (cols >= W - n)
    return zone


def loss_mask(cube: CubeArrays, exclude_glaciers=(), buffer_m: float = NO_LEAK_BUFFER_M, edge_guard: bool = True) -> np.ndarray:
    """Pixels that may enter the loss: not cloud/no data, not in the test-glacier exclusion zone."""
    zone = exclusion_zone(cube.labels, cube.glacier_ids, exclude_glaciers, cube.resolution, buffer_m, edge_guard)
    return ~(cube.masked | zone)


# ---------------------------------------------------------------------------------------------------- normalisation


def channel_transform(channel: str) -> str:
    """The channel's normalisation (registry): "none", "divide" (by its scale) or "standardise"."""
    return get_channel(channel).normalisation


def fit_normalisation(cube_paths, channels=DL4GAM_CHANNELS, exclude_glaciers=(), buffer_m: float = NO_LEAK_BUFFER_M) -> dict:
    """Per channel offset/scale from the given (training-glacier) cubes only.

    Pooled over every pixel of each cube that is not no data (cloud pixels are inputs too, so they count)
    and not within ``buffer_m`` of an excluded (test) glacier; overlapping cubes count their shared pixels
    once per cube, as the reference's per-glacier stacks do. Moments combined per cube in float64 (Chan).
    """
    channels = list(channels)
    projection = fit_projection(cube_paths, channels, exclude_glaciers, buffer_m)
    C = len(channels)
    n = np.zeros(C)
    mean = np.zeros(C)
    m2 = np.zeros(C)
    used = []
    for p in sorted(str(p) for p in cube_paths):
        if cube_status(p)[1] == STATUS_SKIPPED:
            continue
        cube = load_cube(p, channels, projection=projection)
        keep = ~exclusion_zone(cube.labels, cube.glacier_ids, exclude_glaciers, cube.resolution, buffer_m, edge_guard=False)
        keep &= ~cube.nodata
        for i in range(C):
            v = cube.x[i][keep].astype(np.float64)
            v = v[np.isfinite(v)]
            if v.size == 0:
                continue
            nb, mb = v.size, v.mean()
            m2b = ((v - mb) ** 2).sum()
            d = mb - mean[i]
            tot = n[i] + nb
            mean[i] += d * nb / tot
            m2[i] += m2b + d * d * n[i] * nb / tot
            n[i] = tot
        used.append(p)
    if not used:
        raise ValueError("normalisation: no usable training cube")
    std = np.sqrt(np.where(n > 0, m2 / np.maximum(n, 1), 0.0))
    offset, scale, kind = [], [], []
    for i, c in enumerate(channels):
        t = channel_transform(c)
        kind.append(t)
        if t == "none":
            offset.append(0.0), scale.append(1.0)
        elif t == "divide":
            offset.append(0.0), scale.append(float(get_channel(c).scale))
        else:
            if n[i] == 0:
                raise ValueError(f"normalisation: channel {c} has no finite value in the training cubes")
            offset.append(float(mean[i])), scale.append(float(std[i]) if std[i] > 0 else 1.0)
    stats = {"channels": channels, "transform": kind, "offset": offset, "scale": scale,
             "mean": mean.tolist(), "std": std.tolist(), "n_pixels": n.astype(np.int64).tolist(),
             "n_cubes": len(used), "excluded_glaciers": len(set(exclude_glaciers)),
             "region": f"whole cubes minus no data and minus excluded glaciers + {buffer_m:g} m"}
    if projection is not None:  # only then: the statistics of models without pca channels are unchanged
        stats["projection"] = projection
    return stats


def save_normalisation(stats: dict, path) -> None:
    write_json_atomic(path, stats)


def load_normalisation(path) -> dict:
    with open(path) as f:
        return json.load(f)


def normalise(x: np.ndarray, stats: dict) -> np.ndarray:
    """(v - offset) / scale per channel, x [C, ...]."""
    off = np.asarray(stats["offset"], np.float32).reshape((-1,) + (1,) * (x.ndim - 1))
    sc = np.asarray(stats["scale"], np.float32).reshape((-1,) + (1,) * (x.ndim - 1))
    return (x - off) / sc


def fill_nan(x: np.ndarray, channels, stats: dict | None = None) -> np.ndarray:
    """NaN in a raw patch [C, h, w]: dh/dt -> 0, others -> the patch mean (training mean if all NaN). In place."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pm = np.nanmean(np.where(bad, np.nan, x), axis=(1, 2))
    for i, c in enumerate(channels):
        if not bad[i].any():
            continue
        if get_channel(c).patch_fill == "zero":
            v = 0.0
        elif np.isfinite(pm[i]):
            v = pm[i]
        else:
            v = stats["offset"][i] if stats is not None else 0.0
        x[i][bad[i]] = v
    return x


def extract(arr: np.ndarray, top: int, left: int, size: int, fill) -> np.ndarray:
    """Window [.., top:top+size, left:left+size] of ``arr`` (last two axes), padded with ``fill`` outside."""
    h, w = arr.shape[-2:]
    if 0 <= top and top + size <= h and 0 <= left and left + size <= w:
        return arr[..., top:top + size, left:left + size].copy()
    out = np.full(arr.shape[:-2] + (size, size), fill, dtype=arr.dtype)
    r0, r1 = max(top, 0), min(top + size, h)
    c0, c1 = max(left, 0), min(left + size, w)
    if r0 < r1 and c0 < c1:
        out[..., r0 - top:r1 - top, c0 - left:c1 - left] = arr[..., r0:r1, c0:c1]
    return out


def prepare_patch(raw: np.ndarray, channels, stats: dict) -> np.ndarray:
    """Raw patch -> model input: NaN filled, normalised, float32."""
    if list(stats["channels"]) != list(channels):
        raise ValueError("normalisation channels differ from the dataset channels")
    return normalise(fill_nan(raw.astype(np.float32, copy=True), channels, stats), stats).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- dataset


class PatchDataset:
    """Patches (x [C,P,P] float32, y, loss_mask [1,P,P] float32) from in-memory cubes.

    Binary target (no ``label_paths``): y [1,P,P] float32, 1 on any inventory glacier. K-class target
    (``label_paths``: cube path -> label raster of glaciermap.segmentation.labels): y [P,P] int64 class indices, and the
    loss mask is also 0 where the raster has no label (255; y is 0 there).

    A map-style dataset (``__len__``/``__getitem__``, all a ``DataLoader`` needs), deliberately not a
    ``torch.utils.data.Dataset`` subclass: this module then imports without torch, which the
    normalisation and patch-table jobs would otherwise load (~2 s each) for nothing.

    ``items``: (cube path, row, col) centres. ``exclude_glaciers``: the test glaciers of the fold (no-leak
    rule). Each worker process keeps its own LRU of loaded cubes (the cache is not pickled).
    """

    def __init__(self, items, channels, stats: dict, patch_size: int, exclude_glaciers=(), cache_size: int = 32,
                 cache_bytes: float = 4e9, edge_guard: bool = True, shared_cache: "CubeCache | None" = None,
                 label_paths: dict | None = None):
        self.items = [(str(p), int(r), int(c)) for p, r, c in items]
        self.label_paths = {str(k): str(v) for k, v in label_paths.items()} if label_paths is not None else None
        if self.label_paths is not None:
            missing = sorted({p for p, _, _ in self.items if p not in self.label_paths})
            if missing:
                raise ValueError(f"no label raster for {len(missing)} cube(s), e.g. {missing[0]}")
        self.channels = list(channels)
        self.stats = stats
        self.patch_size = int(patch_size)
        self.exclude = frozenset(str(g) for g in exclude_glaciers)
        self.edge_guard = edge_guard
        self.cache_size, self.cache_bytes = cache_size, cache_bytes
        if list(stats["channels"]) != self.channels:
            raise ValueError("normalisation channels differ from the dataset channels")
        self._cache = None
        # shared_cache: one CubeCache for several datasets of one process (the members of a packed fold read
        # each cube once); keys carry channels and exclusion, so datasets with other settings never mix
        self._shared = shared_cache

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_cache"] = None
        d["_meta_cache"] = None
        d["_shared"] = None  # worker processes build their own
        return d

    def _key(self, path):
        proj = projection_key(self.stats)
        if self.label_paths is None and proj is None:
            return str(path), tuple(self.channels), self.exclude, self.edge_guard
        label = None if self.label_paths is None else self.label_paths[str(path)]
        if proj is None:
            return str(path), tuple(self.channels), self.exclude, self.edge_guard, label
        return str(path), tuple(self.channels), self.exclude, self.edge_guard, label, proj

    def _load(self, path):
        return load_training_cube(self._key(path))

    def cube(self, path):
        if self._shared is not None:
            return self._shared.get(self._key(path))
        if self._cache is None:
            self._cache = CubeCache(self._load, self.cache_size, self.cache_bytes)
        return self._cache.get(str(path))

    def __len__(self):
        return len(self.items)

    def window(self, i):
        p, r, c = self.items[i]
        h = self.patch_size // 2
        return p, r - h, c - h

    def arrays(self, i):
        """numpy (x, y, loss_mask) of item i."""
        p, top, left = self.window(i)
        cube, lm, *target = self.cube(p)
        P = self.patch_size
        raw = extract(cube.x, top, left, P, np.nan)
        x = prepare_patch(raw, self.channels, self.stats)
        m = extract(lm, top, left, P, False)
        if target:  # K classes: class indices, no label (255, or outside the cube) out of the loss
            from glaciermap.segmentation.labels import IGNORE

            y = extract(target[0], top, left, P, IGNORE)
            m &= y != IGNORE
            return x, np.where(y == IGNORE, 0, y).astype(np.int64), m.astype(np.float32)[None]
        y = (extract(cube.labels, top, left, P, -1) >= 0).astype(np.float32)[None]
        return x, y, m.astype(np.float32)[None]

    def class_counts(self, n_classes: int) -> np.ndarray:
        """Labelled loss-mask pixels per class over the dataset's cubes (each cube once): the class weights' N_c."""
        counts = np.zeros(int(n_classes), np.int64)
        for p in sorted({p for p, _, _ in self.items}):
            _, lm, *target = self.cube(p)
            if not target:
                raise ValueError("class_counts needs label rasters (a K-class dataset)")
            t = target[0][lm & (target[0] != 255)]
            if t.size and int(t.max()) >= n_classes:
                raise ValueError(f"label raster {self.label_paths[p]} has class {int(t.max())}, but the model has "
                                 f"{n_classes} classes")
            counts += np.bincount(t, minlength=n_classes)[:n_classes]
        return counts

    def __getitem__(self, i):
        import torch

        x, y, m = self.arrays(i)
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m)

    def _meta(self, path):
        """(glacier id, glacier area m2) of a cube, read from its masks only and kept (cheap, no inputs loaded)."""
        if not hasattr(self, "_meta_cache") or self._meta_cache is None:
            self._meta_cache = {}
        if path not in self._meta_cache:
            c = load_cube(path, with_inputs=False)
            self._meta_cache[path] = (c.glacier_id, c.glacier_area_m2)
        return self._meta_cache[path]

    def glacier_of(self, i) -> str:
        return self._meta(self.items[i][0])[0]

    def glacier_area(self, i) -> float:
        return self._meta(self.items[i][0])[1]


def items_fingerprint(*parts) -> str:
    """Stable hash of item lists / stats / settings (resume refuses a checkpoint made from other inputs)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def fit_fold_normalisation(cube_by_glacier: dict, split: pd.DataFrame, fold: int, channels=DL4GAM_CHANNELS) -> dict:
    """Normalisation of fold ``fold``: the training glaciers' cubes, test glaciers (+ 50 m) excluded."""
    roles = fold_roles(split, fold)
    train = [p for g, p in sorted(cube_by_glacier.items()) if roles.get(str(g)) == "train"]
    test = {g for g, r in roles.items() if r == "test"}
    stats = fit_normalisation(train, channels, exclude_glaciers=test)
    stats["fold"] = int(fold)
    return stats


# ---------------------------------------------------------------------------------------------------- rule patches


def run_centres(cube_paths, stride: int, out_csv) -> None:
    write_csv_atomic(out_csv, centre_table(cube_paths, stride))
