"""Training data at region scale: the cube cache of today against a block-shuffled cube order and a patch store.

    python benchmarks/training_store.py                       # Alps-sized fold: 3,500 training glaciers
    python benchmarks/training_store.py --glaciers 500 --cubes 8 --store-patches 128   # quick

What it does, every step on this machine:

1. **Glacier sizes**: the real RGI outlines of the Ötztal Alps (``../shared/data/oggm-sample``), glaciers of at
   least ``--min-area`` km2, drawn with replacement to ``--glaciers`` training glaciers (the Ötztal size
   distribution standing in for the Alps': an assumption). Each gets its cube size (bounding box + the DL4GAM
   margin at 10 m, :func:`glaciermap.resources.cube_megapixels`) and its patch centres at ``--stride``
   (glacier + 50 m buffer / stride^2 + the centroid).
2. **Cube load cost**: ``--cubes`` synthetic cubes in the real format (``features.cube_dataset``, 16 DL4GAM layers
   and the masks, zlib as the workflow writes them) spanning the size range, each loaded the way training loads it
   (:func:`glaciermap.segmentation.patches.load_training_cube`: layers, masks, the no-leak loss mask) with the
   file's pages dropped from the page cache first (``posix_fadvise DONTNEED``: a cold read); a line
   seconds = a + b x Mpx is fitted. Also the cost of cutting and preparing one patch from a loaded cube.
3. **Simulated epoch** of ``--patches`` patches (the paper's 7,488 per member), drawn per glacier in proportion
   to its centres as ``sample_patches`` does, under three orders with today's cache (LRU of ``--cache-items``
   cubes and ``--cache-gb``): *random* (today's ``EpochSampler``), *block* (cubes shuffled, then the patches of
   a window of cubes that fits the cache shuffled), *store* (patches read from a per-fold patch store). Cube
   loads are counted and timed with the fit of step 2.
   The built store's rows read patches centred where training centres them (the glacier and its 50 m buffer, in
   cubes with the workflow's margin, so every window lies inside its cube) from cubes with dh/dt gaps and, in every
   fourth, an optical no-data band (:func:`write_cube`).
4. **Patch store read cost**: ``--store-patches`` prepared patches written as one float16 ``.npy`` (one patch
   contiguous: ~2 MB at 16 x 256 x 256), pages dropped, then read in random order, converted to float32; and the
   float16 rounding error on normalised values.

It prints the loader time per patch of each order against the GPU step of the paper's model (``--step-ms``,
16 ms: DL4GAM trains a member in ~1 h on an A100, 30 epochs x 7,488 patches) and the goal (loader < 10 % of
the step). One process, no DataLoader workers, except the built store's last rows: the same patches through a
torch ``DataLoader`` with ``--loader-workers`` K workers (what a training run uses), from the first batch on.

Built store, float16 hand-over rows (``StoreDataset(half=True)``, what ``training_data: store`` trains from on a
GPU): the same patches, but the dataset yields the stored float16 window, y and loss mask as uint8 and per-channel
(a, b, fill) coefficients (``arrays16``; 2.2 MB a 16 x 256 x 256 patch instead of 4.7 MB to collate and hand over);
the affine and fill that turn them into the float32 input run in the training step after ``.to(device)``
(``training_store.decode_inputs``). Those rows leave that step out; it is timed separately, on a collated batch of 16,
on this machine's CPU in torch (with torch's threads and with 1 thread: the cost where no GPU does it) and, where
CUDA is available, on the GPU.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RGI = REPO.parent / "shared" / "data" / "oggm-sample" / "rgi_oetztal.shp"


def glacier_sizes(n: int, min_area_km2: float, patch: int, stride: int, seed: int):
    """(cube Mpx, patch centres) of ``n`` glaciers drawn from the Ötztal outlines."""
    import geopandas as gpd

    from glaciermap.data.grid import cube_margin_m
    from glaciermap.resources import cube_megapixels

    g = gpd.read_file(RGI).to_crs("EPSG:32632")
    g = g[g.area >= min_area_km2 * 1e6]
    margin = cube_margin_m(patch, 10.0)
    mpx = np.array([cube_megapixels(*geom.bounds, margin, 10.0) for geom in g.geometry])
    centres = np.array([1 + int(geom.buffer(50).area / (stride * 10.0) ** 2) for geom in g.geometry])
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(g), n)
    return mpx[pick], centres[pick], len(g)


def _drop_cache(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _margin_px(patch: int = 256) -> float:
    from glaciermap.data.grid import cube_margin_m

    return cube_margin_m(patch, 10.0) / 10.0


def cube_side(mpx: float, patch: int = 256) -> int:
    """The side (px) of a square synthetic cube of about ``mpx`` Mpx, at least big enough for a glacier of 3 px radius
    inside the workflow's margin."""
    return max(int(round(np.sqrt(mpx * 1e6))), int(np.ceil(2 * (_margin_px(patch) + 3))))


def glacier_radius_px(side: int, patch: int = 256) -> float:
    """The radius of the round glacier in the middle of a synthetic cube of side px: the cube is the glacier's bounding
    box plus the DL4GAM margin (patch / 2 + 50 m, at 10 m), as the workflow cuts cubes, so that every patch centred
    in the glacier's 50 m buffer lies inside the cube, as in training."""
    rad = side / 2 - _margin_px(patch)
    if rad < 3:
        raise ValueError(f"a cube of {side} px has no room for a glacier inside the {_margin_px(patch):.0f} px margin")
    return rad


def _disc(side: int):
    """(distance of each pixel from the middle [side, side], the glacier's radius) of a synthetic cube of side px."""
    yy, xx = np.mgrid[0:side, 0:side]
    return np.hypot(yy - side / 2, xx - side / 2), glacier_radius_px(side)


def write_cube(path, side: int, seed: int):
    """A synthetic cube of side x side px in the workflow's format: 16 DL4GAM layers, one round glacier in the middle
    with the workflow's margin around it (:func:`glacier_radius_px`), dh/dt gaps (NaN blobs over ~5 % of the cube, as
    in the Hugonnet et al. grids) in every cube and, in every fourth cube, an optical no-data band (the scene's edge:
    NaN in the bands and indices over the cube's last eighth of rows)."""
    from affine import Affine
    from scipy.ndimage import gaussian_filter

    from glaciermap.data.features import DL4GAM_CHANNELS, cube_dataset, cube_encoding
    from glaciermap.io import write_netcdf_atomic

    rng = np.random.default_rng(seed)
    r, rad = _disc(side)
    gl = r < rad
    labels = np.where(gl, 0, -1).astype(np.int32)
    layers = {c: (rng.normal(size=(side, side)) * 0.1 + 0.3).astype(np.float32) for c in DL4GAM_CHANNELS}
    layers["dem"] = (3000 + 2 * r).astype(np.float32)
    noise = gaussian_filter(rng.normal(size=(side, side)), 6)
    layers["dhdt"][noise > np.quantile(noise, 0.95)] = np.nan
    if seed % 4 == 0:
        for c in DL4GAM_CHANNELS[:8]:
            layers[c][side - side // 8:] = np.nan
    masks = {"mask_glacier_id": labels, "mask_glacier": gl.astype(np.uint8),
             "mask_buffer_20m": (r < rad + 2).astype(np.uint8), "mask_buffer_50m": (r < rad + 5).astype(np.uint8),
             "mask_cloud": np.zeros((side, side), np.uint8), "mask_nodata": np.zeros((side, side), np.uint8)}
    x = 400000 + 5 + 10 * np.arange(side)
    y = 5100000 - 5 - 10 * np.arange(side)
    ds = cube_dataset(layers, masks, x, y, ["G"], "EPSG:32632", Affine(10, 0, 400000, 0, -10, 5100000),
                      attrs={"glacier_id": "G", "epoch": "2015", "status": "ok", "reason": ""})
    write_netcdf_atomic(path, ds, cube_encoding(ds))
    return path


def measure_cube_loads(workdir: Path, mpx_range, n_cubes: int, patch: int):
    """Cold load seconds per cube size, the fit (a, b), bytes in memory per Mpx, and cut+prepare seconds per patch."""
    from glaciermap.data.features import DL4GAM_CHANNELS
    from glaciermap.segmentation.patches import extract, load_training_cube, prepare_patch

    stats = {"channels": list(DL4GAM_CHANNELS), "offset": [0.0] * 16, "scale": [1.0] * 16}
    sizes = np.linspace(*mpx_range, n_cubes)
    rows = []
    cut = []
    for k, m in enumerate(sizes):
        side = cube_side(m, patch)
        p = write_cube(workdir / f"cube{k}.nc", side, k)
        _drop_cache(p)
        t = time.perf_counter()
        cube, lm = load_training_cube((str(p), tuple(DL4GAM_CHANNELS), frozenset(), True))
        rows.append((side * side / 1e6, time.perf_counter() - t, cube.x.nbytes + lm.nbytes + cube.labels.nbytes))
        for _ in range(5):
            top, left = np.random.default_rng(k).integers(0, side - patch, 2)
            t = time.perf_counter()
            prepare_patch(extract(cube.x, top, left, patch, np.nan), DL4GAM_CHANNELS, stats)
            extract(lm, top, left, patch, False)
            cut.append(time.perf_counter() - t)
        os.remove(p)
    m, s, b = (np.array(c) for c in zip(*rows))
    fit = np.polyfit(m, s, 1)
    return rows, (float(fit[1]), float(fit[0])), float(np.median(b / m)), float(np.median(cut))


def epoch_items(centres, n_patches: int, seed: int):
    """Glacier index of each patch of one member: the centroid plus a share of the other centres, as
    ``sample_patches`` keeps them (1 + round((n_i - 1) f), f chosen so the total is n_patches)."""
    from glaciermap.segmentation.patches import subsample_counts

    counts, _ = subsample_counts({i: int(c) for i, c in enumerate(centres)}, n_total=n_patches)
    return np.repeat(np.arange(len(centres)), [counts[i] for i in range(len(centres))])


def order(items, policy: str, window: int, seed: int):
    rng = np.random.default_rng(seed)
    if policy == "random":
        return items[rng.permutation(len(items))]
    cubes = rng.permutation(np.unique(items))
    out = []
    for w in range(0, len(cubes), window):
        block = items[np.isin(items, cubes[w:w + window])]
        out.append(block[rng.permutation(len(block))])
    return np.concatenate(out)


def count_loads(seq, mpx, bytes_per_mpx, max_items: int, max_bytes: float):
    """Cube loads (their Mpx) of an LRU bounded like ``patches.CubeCache`` over the patch sequence."""
    lru, size, loads = OrderedDict(), 0.0, []
    for g in seq:
        if g in lru:
            lru.move_to_end(g)
            continue
        loads.append(mpx[g])
        lru[g] = mpx[g] * bytes_per_mpx
        size += lru[g]
        while len(lru) > 1 and (len(lru) > max_items or size > max_bytes):
            _, b = lru.popitem(last=False)
            size -= b
    return np.array(loads)


def measure_store(workdir: Path, n: int, patch: int, channels: int = 16, seed: int = 0):
    """Cold random-order read seconds per patch of a float16 .npy store, and the float16 rounding error."""
    rng = np.random.default_rng(seed)
    path = workdir / "store.npy"
    store = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, channels, patch, patch))
    worst = 0.0
    for i in range(n):
        x = rng.normal(size=(channels, patch, patch)).astype(np.float32) * 2  # normalised values (~N(0, 2))
        store[i] = x.astype(np.float16)
        worst = max(worst, float(np.max(np.abs(store[i].astype(np.float32) - x))))
    store.flush()
    del store
    os.sync()
    _drop_cache(path)
    ro = np.load(path, mmap_mode="r")
    idx = rng.permutation(n)
    t = time.perf_counter()
    for i in idx:
        np.asarray(ro[i], dtype=np.float32)
    per = (time.perf_counter() - t) / n
    del ro
    size = path.stat().st_size
    os.remove(path)
    return per, worst, size / n


def measure_tiled(workdir: Path, mpx_range, n_cubes: int, patch: int, reads: int, tile: int = 64, channels: int = 16,
                  seed: int = 0):
    """Cold random 256 px window reads from one HDF5 file holding every cube as a float16 (channel, y, x) dataset
    in (channels, tile, tile) chunks, uncompressed: seconds per patch (read, float32, an affine normalisation) and
    bytes per Mpx. The region's store, shared by folds, members and models with the same layers."""
    import h5py

    rng = np.random.default_rng(seed)
    path = workdir / "tiles.h5"
    sides = []
    with h5py.File(path, "w") as f:
        for k, m in enumerate(np.linspace(*mpx_range, n_cubes)):
            side = max(int(round(np.sqrt(m * 1e6))), patch + 2)
            ds = f.create_dataset(f"g{k}", shape=(channels, side, side), dtype="float16",
                                  chunks=(channels, tile, tile))
            for r in range(0, side, 512):
                ds[:, r:r + 512] = rng.normal(size=(channels, min(512, side - r), side)).astype(np.float16)
            sides.append(side)
    os.sync()
    _drop_cache(path)
    off, scale = rng.normal(size=(channels, 1, 1)).astype(np.float32), np.float32(1.3)
    picks = rng.integers(0, n_cubes, reads)
    t = time.perf_counter()
    with h5py.File(path, "r") as f:
        for k in picks:
            side = sides[k]
            r, c = rng.integers(0, side - patch, 2)
            x = f[f"g{k}"][:, r:r + patch, c:c + patch].astype(np.float32)
            (x - off) / scale
    per = (time.perf_counter() - t) / reads
    size = path.stat().st_size
    os.remove(path)
    return per, size / (sum(s * s for s in sides) / 1e6)


def measure_loader_workers(ds, store: Path, workers, batch: int = 16) -> dict:
    """Seconds per patch of ``ds`` through a torch ``DataLoader`` as training builds it (``train.batch_loader``: a
    float16 hand-over dataset collates its own batches) with each number of ``workers`` (0 = in this process), from
    the first batch on (the workers' start, which a training run pays once, left out): {K: (cold, warm)}, cold with the
    store's pages dropped first, warm in a second pass over the same items (what every epoch after the first costs on
    a node whose memory holds the store). A float16 dataset's device-side decode is not in it."""
    from torch.utils.data import SequentialSampler

    from glaciermap.segmentation.train import batch_loader

    def one_pass(dl):
        n, t = 0, None
        for xb, *_ in dl:
            if t is None:
                t = time.perf_counter()
                continue
            n += len(xb)
        return (time.perf_counter() - t) / max(n, 1)

    out = {}
    for k in workers:
        _drop_cache(store)
        dl = batch_loader(ds, batch, SequentialSampler(range(len(ds))), num_workers=k, persistent_workers=k > 0)
        out[k] = (one_pass(dl), one_pass(dl))
    return out


def training_centres(side: int, stride: int = 32) -> np.ndarray:
    """The patch centres [n, 2] (row, col) training uses in a synthetic cube of side px: the glacier's centroid and the
    points of the stride grid anchored at the cube's row and column 0 that lie in the glacier's 50 m buffer
    (``patches.patch_centres`` on :func:`write_cube`'s masks)."""
    import xarray as xr

    from glaciermap.segmentation.patches import patch_centres

    r, rad = _disc(side)
    masks = xr.Dataset({"mask_glacier": (("y", "x"), r < rad), "mask_buffer_50m": (("y", "x"), r < rad + 5)})
    return patch_centres(masks, stride)


def measure_store_dataset(workdir: Path, mpx_range, n_cubes: int, patch: int, reads: int, seed: int = 0,
                          workers=(), stride: int = 32):
    """The built store (glaciermap.segmentation.training_store): write it from ``n_cubes`` real-format cubes, drop its
    pages, then time :class:`StoreDataset.arrays` (window read, loss mask, NaN fill, fold normalisation: everything a
    training patch costs) on ``reads`` patches drawn from the cubes' training centres (:func:`training_centres`).
    Returns (seconds per patch, write seconds per Mpx, bytes per Mpx, {K: (cold, warm) seconds per patch through a
    DataLoader with K workers}, the float16 hand-over's :func:`measure_half`). No ``pin_memory``: the copy into pinned
    memory that training on CUDA adds (~2.2 MB a patch, in the training process) is not in these numbers."""
    from glaciermap.data.features import DL4GAM_CHANNELS
    from glaciermap.segmentation import training_store as ts

    rng = np.random.default_rng(seed)
    paths, sides = [], []
    for k, m in enumerate(np.linspace(*mpx_range, n_cubes)):
        side = cube_side(m, patch)
        p = workdir / "cubes" / f"G{k}" / "2015.nc"
        p.parent.mkdir(parents=True, exist_ok=True)
        paths.append(str(write_cube(p, side, 100 + k)))
        sides.append(side)
    store = workdir / "training_store.h5"
    t = time.perf_counter()
    ts.write_store(paths, DL4GAM_CHANNELS, store)
    write_s = time.perf_counter() - t
    mpx = sum(s * s for s in sides) / 1e6
    os.sync()
    _drop_cache(store)
    stats = {"channels": list(DL4GAM_CHANNELS), "offset": [0.3] * 16, "scale": [0.1] * 16}
    picks = rng.integers(0, n_cubes, reads)
    centres = {k: training_centres(sides[k], stride) for k in set(picks.tolist())}
    items = [(paths[k], *(int(v) for v in centres[k][rng.integers(len(centres[k]))])) for k in picks]
    # a fold with test glaciers (the edge band applies), none of them in these cubes (most windows of a region)
    ds = ts.StoreDataset(items, DL4GAM_CHANNELS, stats, patch, store, exclude_glaciers={"T"})
    t = time.perf_counter()
    for i in range(len(items)):
        ds.arrays(i)
    per = (time.perf_counter() - t) / len(items)
    size = store.stat().st_size
    by_workers = measure_loader_workers(ds, store, workers)
    half = ts.StoreDataset(items, DL4GAM_CHANNELS, stats, patch, store, exclude_glaciers={"T"}, half=True)
    return per, write_s / mpx, size / mpx, by_workers, measure_half(half, store, workers)


def measure_half(ds, store: Path, workers, batch: int = 16, reps: int = 20) -> dict:
    """The float16 hand-over of the same items: ``arrays16`` in one process (seconds per patch, pages dropped first),
    through a DataLoader with each K, bytes per item (float32 and float16), and the device-side decode
    (``StoreDataset.device_batch`` on a collated batch: seconds per patch, median of ``reps``) on the CPU with torch's
    threads and with 1, and on CUDA where there is one."""
    import torch
    from torch.utils.data import default_collate

    from glaciermap.segmentation.training_store import decode_inputs

    assert ds.half
    _drop_cache(store)
    t = time.perf_counter()
    for i in range(len(ds)):
        ds.arrays16(i)
    per16 = (time.perf_counter() - t) / len(ds)
    by_workers = measure_loader_workers(ds, store, workers, batch)
    hb = default_collate([ds[i] for i in range(min(batch, len(ds)))])
    # the decode really computes what arrays gives (bit for bit; tests/test_training_store.py checks every case)
    x = decode_inputs(hb[0], hb[3]).numpy()
    exact = all(np.array_equal(x[j].view(np.uint32), ds.arrays(j)[0].view(np.uint32)) for j in range(len(x)))

    def timed(b, sync=lambda: None):
        out = []
        for _ in range(reps + 2):
            t = time.perf_counter()
            ds.device_batch(list(b))
            sync()
            out.append(time.perf_counter() - t)
        return float(np.median(out[2:])) / len(b[0])

    threads = torch.get_num_threads()
    cpu = timed(hb)
    torch.set_num_threads(1)
    try:
        cpu1 = timed(hb)
    finally:
        torch.set_num_threads(threads)
    cuda = None
    if torch.cuda.is_available():
        cuda = timed([v.cuda() for v in hb], torch.cuda.synchronize)
    f32 = sum(v.nbytes for v in ds.arrays(0))  # the float32 item: x, y, loss mask
    f16 = sum(v.nbytes for v in ds.arrays16(0))
    return {"per": per16, "by_workers": by_workers, "decode_cpu": cpu, "decode_cpu_1": cpu1, "threads": threads,
            "decode_cuda": cuda, "bytes32": f32, "bytes16": f16, "exact": exact}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--glaciers", type=int, default=3500, help="training glaciers of the fold (Alps fold: ~3,500)")
    ap.add_argument("--patches", type=int, default=7488, help="patches per member and epoch (paper: 7,488)")
    ap.add_argument("--patch-size", type=int, default=256)
    ap.add_argument("--stride", type=int, default=32, help="training patch-centre grid (paper: 32)")
    ap.add_argument("--min-area", type=float, default=0.1, help="km2; smaller glaciers are not training glaciers")
    ap.add_argument("--cubes", type=int, default=12, help="synthetic cubes written and loaded for the cost fit")
    ap.add_argument("--store-patches", type=int, default=512, help="patches written to the store for its read cost")
    ap.add_argument("--cache-items", type=int, default=512, help="today's cube cache: cubes (train.py)")
    ap.add_argument("--cache-gb", type=float, default=4.0, help="today's cube cache: GB")
    ap.add_argument("--step-ms", type=float, default=16.0, help="GPU step per patch of the paper's model")
    ap.add_argument("--loader-workers", type=int, nargs="*", default=[0, 1, 2], metavar="K",
                    help="also read the built store through a torch DataLoader with K workers (default: 0 1 2; "
                         "none: no such rows)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="where the synthetic cubes and the store go (default: a temp dir)")
    a = ap.parse_args(argv)
    random.seed(a.seed)

    mpx, centres, n_rgi = glacier_sizes(a.glaciers, a.min_area, a.patch_size, a.stride, a.seed)
    with tempfile.TemporaryDirectory(dir=a.workdir) as d:
        work = Path(d)
        rows, (ca, cb), bpm, cut_s = measure_cube_loads(work, (float(np.percentile(mpx, 5)), float(mpx.max())),
                                                         a.cubes, a.patch_size)
        store_s, f16_err, store_bytes = measure_store(work, a.store_patches, a.patch_size)
        tiled_s, tiled_bpm = measure_tiled(work, (float(np.percentile(mpx, 5)), float(mpx.max())), a.cubes,
                                           a.patch_size, a.store_patches)
        built_s, built_write, built_bpm, by_workers, half = measure_store_dataset(
            work, (float(np.percentile(mpx, 5)), float(mpx.max())), a.cubes, a.patch_size, a.store_patches, a.seed,
            a.loader_workers, a.stride)

    print(f"glaciers: {a.glaciers} drawn from {n_rgi} Ötztal outlines >= {a.min_area} km2; cube "
          f"{np.median(mpx):.2f} Mpx median, {mpx.max():.2f} max; {int(centres.sum()):,} centres at stride {a.stride}; "
          f"cubes in memory {mpx.sum() * bpm / 1e9:.1f} GB in all")
    print("\ncold cube loads (load_training_cube: 16 layers, masks, loss mask):")
    print("| Mpx | seconds | MB in memory |\n| ---: | ---: | ---: |")
    for m, s, b in rows:
        print(f"| {m:.2f} | {s:.3f} | {b / 1e6:.0f} |")
    print(f"fit: seconds = {ca:.3f} + {cb:.3f} x Mpx; cut + prepare one patch from a loaded cube: {cut_s * 1e3:.1f} ms")

    items = epoch_items(centres, a.patches, a.seed)
    step = a.step_ms / 1e3
    print(f"\none member's epoch: {len(items):,} patches of {len(np.unique(items)):,} glaciers; GPU step "
          f"{a.step_ms:.0f} ms/patch = {len(items) * step:.0f} s; goal: loader < {0.1 * a.step_ms:.1f} ms/patch\n")
    print("| order | cube loads | loader s/epoch | ms/patch | share of the step | peak cache GB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    window = max(1, min(a.cache_items, int(a.cache_gb * 1e9 / (np.percentile(mpx, 90) * bpm))))
    for policy in ("random", "block"):
        seq = order(items, policy, window, a.seed)
        loads = count_loads(seq, mpx, bpm, a.cache_items, a.cache_gb * 1e9)
        sec = float(np.sum(ca + cb * loads)) + len(items) * cut_s
        name = "random (today)" if policy == "random" else f"block of {window} cubes"
        print(f"| {name} | {len(loads):,} | {sec:.0f} | {sec / len(items) * 1e3:.1f} | {sec / len(items) / step:.0%} | "
              f"{a.cache_gb:.1f} |")
    sec = len(items) * store_s
    print(f"| patch store (float16 .npy) | 0 | {sec:.0f} | {store_s * 1e3:.2f} | {store_s / step:.0%} | 0 |")
    sec = len(items) * tiled_s
    print(f"| tiled region store (float16, 64 px chunks) | 0 | {sec:.0f} | {tiled_s * 1e3:.2f} | {tiled_s / step:.0%} | 0 |")
    sec = len(items) * built_s
    print(f"| the built store (training_store.StoreDataset: read, loss mask, NaN fill, normalisation) | 0 | {sec:.0f} | "
          f"{built_s * 1e3:.2f} | {built_s / step:.0%} | 0 |")
    for k, pair in by_workers.items():
        for sec_k, cache in zip(pair, ("", ", page cache warm")):
            print(f"| the built store through a DataLoader, {k} worker{'s' if k != 1 else ''} (batches of 16; "
                  f"{os.cpu_count()} cores here{cache}) | 0 | {len(items) * sec_k:.0f} | {sec_k * 1e3:.2f} | "
                  f"{sec_k / step:.0%} | 0 |")
    sec = len(items) * half["per"]
    print(f"| the built store, float16 hand-over (StoreDataset.arrays16: read, loss mask, fill values; no decode) | 0 | "
          f"{sec:.0f} | {half['per'] * 1e3:.2f} | {half['per'] / step:.0%} | 0 |")
    for k, pair in half["by_workers"].items():
        for sec_k, cache in zip(pair, ("", ", page cache warm")):
            print(f"| the built store, float16 hand-over, through a DataLoader, {k} worker{'s' if k != 1 else ''} "
                  f"(batches made by StoreDataset.batch16; decode on the device not counted{cache}) | 0 | "
                  f"{len(items) * sec_k:.0f} | {sec_k * 1e3:.2f} | {sec_k / step:.0%} | 0 |")
    cuda = f", on CUDA {half['decode_cuda'] * 1e3:.3f} ms" if half["decode_cuda"] is not None else ", no CUDA here"
    print(f"\nfloat16 hand-over: {half['bytes16'] / 1e6:.2f} MB an item instead of {half['bytes32'] / 1e6:.2f} MB; its "
          f"decode (affine + fill, batch of 16) per patch: on this CPU {half['decode_cpu'] * 1e3:.2f} ms "
          f"({half['threads']} torch threads), {half['decode_cpu_1'] * 1e3:.2f} ms (1 thread){cuda}; equal to "
          f"StoreDataset.arrays bit for bit: {half['exact']}")
    print(f"\nthe built store: written at {built_write:.2f} s per Mpx of cubes ({mpx.sum() * built_write / 60:.0f} min for "
          f"these glaciers), {built_bpm / 1e6:.1f} MB per Mpx; a patch from it costs {built_s * 1e3:.1f} ms in one process "
          f"(the raw read above {tiled_s * 1e3:.1f} ms + preparing the patch, as the cube path does: {cut_s * 1e3:.1f} ms)")
    print(f"\ntiled region store: {tiled_bpm / 1e6:.1f} MB per Mpx, {mpx.sum() * tiled_bpm / 1e9:.1f} GB for these "
          f"{a.glaciers:,} glaciers' cubes (one epoch; every fold, member and model with these layers shares it)")
    print(f"patch store: {store_bytes / 1e6:.1f} MB per patch, {len(items) * store_bytes / 1e9:.1f} GB per member's "
          f"patches; float16 rounding of normalised values (N(0, 2)): max {f16_err:.4f}")
    print(f"writing it once costs one pass over the fold's cubes: {float(np.sum(ca + cb * mpx[np.unique(items)])):.0f} s "
          f"of cube loads + {len(items) * cut_s:.0f} s of cutting (per fold, shared by its members)")


if __name__ == "__main__":
    main()
