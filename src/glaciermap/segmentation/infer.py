"""Inference: ensemble probability maps per cube, patches batched across glaciers (DL4GAM section 3.5.1).

Per cube, a window is centred on every point of the stride grid (anchored at the cube's row/col 0) that
lies in the glacier's 50 m buffer, as in the reference, shifted to stay inside the cube; one more window is
added for each buffer pixel still outside the counted area (the part kept by the blending) of every window
(``reference_extras`` also adds the reference's 4 extreme and centroid windows; :func:`inference_windows`).
All windows of all cubes form one stream fed to the models in batches (the reference ran the model once per glacier; the
``batch_across_glaciers=False`` mode reproduces that for the benchmark). Overlaps are blended either by
averaging with ~5 % of each patch border dropped ("mean", the reference) or by a 2-D Hann window with
a small floor ("hann", lets a larger stride be used without seams). Probabilities (sigmoid; softmax over the
classes of a K-class model, giving ``prob(member, class, y, x)``) are blended,
then cloud/no-data pixels in the buffer get the mean of their >= 30 nearest valid buffer pixels
(KD-tree; every pixel tied with the 30th nearest is included, so the value is well defined).

Rule ``infer`` (workflow/rules/segmentation/infer.smk) runs :func:`run_infer`: loads a fold's members, predicts the
given cubes through :func:`predict_files` (:func:`predict_to_files`) under a per-(fold, epoch) lock, into
staged files that are moved into place at the end (docs/concurrency.md).
"""

from __future__ import annotations

import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from glaciermap.allocator import keep_freed_memory
from glaciermap.io import STATUS_SKIPPED, skip_dataset, write_netcdf_atomic
from glaciermap.segmentation.patches import CubeArrays, cube_status, extract, load_cube, prepare_patch

log = logging.getLogger("glaciermap.segmentation.infer")


# ---------------------------------------------------------------------------------------------------- geometry


def border_px(patch_size: int, border_frac: float) -> int:
    return int(round(patch_size * border_frac))


def blend_weights(patch_size: int, blend: str = "hann", border_frac: float = 0.05, floor: float = 0.01) -> np.ndarray:
    """[P, P] weights of one patch: 1 inside / 0 on the dropped border (mean) or floor + (1 - floor) Hann."""
    P = int(patch_size)
    if blend == "mean":
        b = border_px(P, border_frac)
        w = np.zeros((P, P), np.float32)
        w[b:P - b, b:P - b] = 1.0
        return w
    if blend == "hann":
        h = np.sin(np.pi * (np.arange(P) + 0.5) / P) ** 2     # periodic Hann at pixel centres, never exactly 0
        return (floor + (1 - floor) * np.outer(h, h)).astype(np.float32)
    raise ValueError(f"blend must be 'hann' or 'mean', got {blend!r}")


def _start_range(n: int, P: int) -> tuple[int, int]:
    """Allowed window starts (lo, hi) along an axis of ``n`` px: inside the axis, or centred on it if ``n < P``."""
    if n >= P:
        return 0, n - P
    t = (n - P) // 2
    return t, t


def _place(want, anchor, lo: int, hi: int, P: int, b: int):
    """Window starts: ``want`` clipped to [lo, hi], then moved the least needed to keep ``anchor`` in the counted span.

    The counted span of a window starting at t is [t + b, t + P - b); the second step can move a window out
    of [lo, hi], by at most ``b`` px when the cube is at least the patch size (only for anchors within ``b``
    px of the cube edge).
    """
    t = np.clip(want, lo, hi)
    return np.clip(t, anchor - P + b + 1, anchor - b)


def _reference_extra_centres(region: np.ndarray) -> np.ndarray:
    """The reference's 5 extra test-time centres (row, col): the 4 extremes of ``region``, then its centroid.

    Left/right: the leftmost/rightmost column at the (truncated) mean row of the region pixels in that column;
    top/bottom likewise; centroid: truncated mean row and column (DL4GAM ``get_patches_df``, ``add_extremes``,
    ``add_centroid``).
    """
    rr, cc = np.nonzero(region)
    c0, c1, r0, r1 = cc.min(), cc.max(), rr.min(), rr.max()
    pts = [(int(rr[cc == c0].mean()), c0), (r0, int(cc[rr == r0].mean())), (int(rr[cc == c1].mean()), c1),
           (r1, int(cc[rr == r1].mean())), (int(rr.mean()), int(cc.mean()))]
    return np.array(pts, np.int64)


def inference_windows(region: np.ndarray, patch_size: int, stride: int, border: int = 0,
                      reference_extras: bool = False) -> np.ndarray:
    """Top-left corners [n, 2] (int64) of the inference windows of one cube.

    1. Stride grid: a window is centred (top-left = centre - patch_size // 2, the reference's
       ``centre - patch_radius``) on every point (i s, j s) of the stride grid anchored at the cube's row/col 0
       that lies in ``region`` (the glacier's 50 m buffer): the reference's test-time grid and the grid of
       the training patch centres (``patches.patch_centres``). A window repeated by the shift below is
       kept once.
    2. ``reference_extras``: also the reference's 4 extreme and 1 centroid windows, kept even when they
       repeat a grid window (as the reference does, so that mean blending weighs them the same).
    3. Coverage: each region pixel not in the counted area (the window minus ``border`` px on each side) of
       some window gets one more window, placed in raster order (the pixel on the first counted row, the
       window centred on it along the columns); so every region pixel is counted by at least one window.

    Every window is shifted to lie inside the cube (centred on an axis shorter than the patch), then moved
    the least needed to keep its anchor (the grid point, extreme or uncovered pixel, a region pixel) in its
    counted area. So along an axis of at least ``patch_size`` px a window leaves the cube only for an anchor
    within ``border`` px of the cube edge, and then only by its dropped border (padded when cut); along an
    axis of at least ``patch_size - 2 border`` px the counted area stays in the cube; a shorter axis gets one
    window, centred on it. With a margin of patch_size / 2 around the region, as the reference's cubes have
    (and this project's, for a patch size up to ``grid.patch_size``), no window moves and step 1 is exactly
    the reference's grid.
    """
    P, b, s = int(patch_size), int(border), int(stride)
    kept = P - 2 * b
    if kept < 1:
        raise ValueError("border too large for the patch size")
    if not 1 <= s <= kept:
        raise ValueError(f"stride {s} must be in [1, {kept}] (patch size minus the dropped borders): a wider grid "
                         "leaves gaps between its windows")
    region = np.asarray(region, bool)
    if not region.any():
        return np.zeros((0, 2), np.int64)
    H, W = region.shape
    (rlo, rhi), (clo, chi) = _start_range(H, P), _start_range(W, P)
    h = P // 2

    def place(anchors: np.ndarray, want: np.ndarray) -> np.ndarray:
        return np.stack([_place(want[:, 0], anchors[:, 0], rlo, rhi, P, b),
                         _place(want[:, 1], anchors[:, 1], clo, chi, P, b)], axis=1).astype(np.int64)

    gr, gc = np.nonzero(region[::s, ::s])
    grid = np.stack([gr, gc], axis=1).astype(np.int64) * s
    wins = [np.unique(place(grid, grid - h), axis=0)] if len(grid) else []
    if reference_extras:
        ext = _reference_extra_centres(region)
        wins.append(place(ext, ext - h))
    wins = np.concatenate(wins, axis=0) if wins else np.zeros((0, 2), np.int64)

    # counted-area coverage of the windows so far (difference array, then 2-D cumulative sum)
    d = np.zeros((H + 1, W + 1), np.int64)
    r0, r1 = np.clip(wins[:, 0] + b, 0, H), np.clip(wins[:, 0] + P - b, 0, H)
    c0, c1 = np.clip(wins[:, 1] + b, 0, W), np.clip(wins[:, 1] + P - b, 0, W)
    np.add.at(d, (r0, c0), 1)
    np.add.at(d, (r0, c1), -1)
    np.add.at(d, (r1, c0), -1)
    np.add.at(d, (r1, c1), 1)
    covered = d.cumsum(0).cumsum(1)[:H, :W] > 0
    extra = []
    for r, c in zip(*np.nonzero(region & ~covered)):
        if covered[r, c]:
            continue
        a = np.array([[r, c]], np.int64)
        top, left = place(a, a - np.array([[b, h]]))[0]
        covered[max(top + b, 0):top + P - b, max(left + b, 0):left + P - b] = True
        extra.append((top, left))
    return np.concatenate([wins, np.array(extra, np.int64).reshape(-1, 2)], axis=0)


# ---------------------------------------------------------------------------------------------------- filling


def fill_nearest_mean(probs: np.ndarray, masked: np.ndarray, valid: np.ndarray, k: int = 30, chunk: int = 20000) -> np.ndarray:
    """Copy of ``probs`` ([M,] H, W) with each ``masked`` pixel set to the mean over the valid pixels at most as
    far as its k-th nearest valid pixel (ties included, so >= k pixels). KD-tree, O(n log n)."""
    out = np.array(probs, dtype=np.float32, copy=True)
    squeeze = out.ndim == 2
    if squeeze:
        out = out[None]
    mr, mc = np.nonzero(masked)
    vr, vc = np.nonzero(valid & ~masked)
    if mr.size == 0 or vr.size == 0:
        return out[0] if squeeze else out
    nv = vr.size
    kk = min(int(k), nv)
    kq = min(nv, kk + 32)
    tree = cKDTree(np.c_[vr, vc].astype(np.float64))
    vals_valid = out[:, vr, vc]                               # [M, nv]
    q_all = np.c_[mr, mc].astype(np.float64)
    for s in range(0, mr.size, chunk):
        q = q_all[s:s + chunk]
        d, idx = tree.query(q, k=kq)
        d, idx = d.reshape(len(q), kq), idx.reshape(len(q), kq)
        dk = d[:, kk - 1] + 1e-9
        inc = d <= dk[:, None]
        v = vals_valid[:, idx]                                # [M, n, kq]
        mean = (v * inc).sum(-1) / inc.sum(-1)
        over = np.nonzero(inc[:, -1] & (kq < nv))[0]          # tie group may continue past kq
        for j in over:
            nb = tree.query_ball_point(q[j], dk[j])
            mean[:, j] = vals_valid[:, nb].mean(-1)
        out[:, mr[s:s + chunk], mc[s:s + chunk]] = mean
    return out[0] if squeeze else out


# ---------------------------------------------------------------------------------------------------- prediction


@dataclass
class _Job:
    path: str
    cube: CubeArrays
    acc: np.ndarray            # [M, H, W] (binary) or [M, K, H, W] float32 weighted sums
    wsum: np.ndarray           # [H, W] float64
    pending: int
    enqueued: bool = False


def _models_on(models, device, channels_last: bool = False):
    import torch

    out = []
    for m in models:
        m = m.to(device)
        m = m.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        m.eval()
        out.append(m)
    return out


def iter_predictions(models, cube_paths, stats: dict, patch_size: int = 256, stride: int = 128, blend: str = "hann",
                     batch_size: int = 16, device=None, batch_across_glaciers: bool = True, border_frac: float = 0.05,
                     hann_floor: float = 0.01, fill_k: int = 30, fill_masked: bool = True, timings: dict | None = None,
                     channels_last: bool = True, reference_extras: bool = False, n_classes: int = 1,
                     flips: int = 1, precision: str = "float32"):
    """Yield ``(path, probs [M, H, W] float32 or None for a skip record, CubeArrays or status)`` as cubes complete.

    ``n_classes`` > 1 (a K-class model, K output logits): softmax over the classes, probs [M, K, H, W].

    Only a few cubes are in memory at a time (the one being cut and those with patches still in the
    current batch). ``timings`` (a dict) receives data_s, model_s, n_patches, n_batches, n_cubes.
    ``channels_last``: run the models on NHWC tensors, the layout oneDNN's CPU convolutions prefer (the
    same probabilities up to float rounding, tested to 1e-5; +21 % patches/s on the demo's CPU model,
    docs/performance.md). ``reference_extras``: add the reference's extreme and centroid windows
    (:func:`inference_windows`). ``flips``: test-time flip averaging, each window also run mirrored and the
    probabilities mirrored back and averaged (1: none, 2: + left-right, 4: + up-down and both; cheaper overlap
    than a denser window grid, benchmarks/inference.py). ``precision``: "float32", or "bfloat16" (autocast: the
    convolutions in bfloat16, probabilities in float32; faster on CPUs with AVX512-BF16/AMX and on GPUs).
    """
    import torch

    from glaciermap.segmentation.train import resolve_device

    device = resolve_device(device)
    models = _models_on(models, device, channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    channels = list(stats["channels"])
    P, K = int(patch_size), int(n_classes)
    flip_dims = {1: [()], 2: [(), (3,)], 4: [(), (3,), (2,), (2, 3)]}.get(int(flips))
    if flip_dims is None:
        raise ValueError(f"flips must be 1, 2 or 4, got {flips!r}")
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")
    amp = precision == "bfloat16"
    w = blend_weights(P, blend, border_frac, hann_floor)
    b = border_px(P, border_frac) if blend == "mean" else 0
    t = timings if timings is not None else {}
    for key in ("data_s", "model_s", "n_patches", "n_batches", "n_cubes"):
        t.setdefault(key, 0)

    batch_x, batch_own = [], []
    done = []

    def finish(job: _Job):
        t0 = time.perf_counter()
        with np.errstate(invalid="ignore", divide="ignore"):
            probs = np.where(job.wsum > 0, job.acc / job.wsum, np.nan).astype(np.float32)
        if fill_masked:
            pred = job.wsum > 0
            c = job.cube
            flat = probs.reshape((-1,) + probs.shape[-2:])   # [M (x K), H, W]: every map filled alike
            probs = fill_nearest_mean(flat, c.masked & c.buffer50 & pred, ~c.masked & c.buffer50 & pred,
                                      fill_k).reshape(probs.shape)
        t["data_s"] += time.perf_counter() - t0
        t["n_cubes"] += 1
        done.append((job.path, probs, job.cube))

    def run_batch():
        if not batch_x:
            return
        t0 = time.perf_counter()
        x = torch.from_numpy(np.stack(batch_x)).to(device).contiguous(memory_format=layout)
        def run(m):
            out = 0
            for dims in flip_dims:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    z = m(x.flip(dims) if dims else x)
                z = z.float()
                p = torch.sigmoid(z[:, 0]) if K == 1 else torch.softmax(z, dim=1)
                # [B, P, P] (binary) or [B, K, P, P]: the image axes are the last two either way
                out = out + (p.flip(tuple(d - (1 if K == 1 else 0) for d in dims)) if dims else p)
            return out / len(flip_dims)

        with torch.inference_mode():
            pr = torch.stack([run(m) for m in models]).cpu().numpy()   # [M, B, P, P] or [M, B, K, P, P]
        t["model_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for j, (job, top, left) in enumerate(batch_own):
            H, W = job.wsum.shape
            r0, r1, c0, c1 = max(top, 0), min(top + P, H), max(left, 0), min(left + P, W)
            wr = w[r0 - top:r1 - top, c0 - left:c1 - left]
            job.acc[..., r0:r1, c0:c1] += wr * pr[:, j, ..., r0 - top:r1 - top, c0 - left:c1 - left]
            job.wsum[r0:r1, c0:c1] += wr
            job.pending -= 1
            if job.pending == 0 and job.enqueued:
                finish(job)
        t["n_batches"] += 1
        t["n_patches"] += len(batch_x)
        batch_x.clear()
        batch_own.clear()
        t["data_s"] += time.perf_counter() - t0

    def load(path):
        if cube_status(path)[1] == STATUS_SKIPPED:
            return None
        return load_cube(path, channels, projection=stats.get("projection"))

    paths = [str(p) for p in cube_paths]
    with ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(load, paths[0]) if paths else None
        for i, path in enumerate(paths):
            t0 = time.perf_counter()
            cube = fut.result()
            fut = pool.submit(load, paths[i + 1]) if i + 1 < len(paths) else None   # prefetch the next cube
            if cube is None:
                t["data_s"] += time.perf_counter() - t0
                yield path, None, STATUS_SKIPPED
                continue
            wins = inference_windows(cube.buffer50, P, stride, b, reference_extras)
            lead = (len(models),) if K == 1 else (len(models), K)
            job = _Job(path, cube, np.zeros(lead + cube.shape, np.float32), np.zeros(cube.shape, np.float64),
                       pending=len(wins))
            t["data_s"] += time.perf_counter() - t0
            for top, left in wins:
                t0 = time.perf_counter()
                batch_x.append(prepare_patch(extract(cube.x, int(top), int(left), P, np.nan), channels, stats))
                batch_own.append((job, int(top), int(left)))
                t["data_s"] += time.perf_counter() - t0
                if len(batch_x) >= batch_size:
                    run_batch()
            job.enqueued = True
            if not batch_across_glaciers:
                run_batch()
            if job.pending == 0 and not any(o[0] is job for o in batch_own):
                finish(job)
            while done:
                yield done.pop(0)
        run_batch()
        while done:
            yield done.pop(0)


def predict_glaciers(models, cube_paths, stats: dict, patch_size: int = 256, stride: int = 128, blend: str = "hann",
                     batch_size: int = 16, device=None, batch_across_glaciers: bool = True, timings: dict | None = None,
                     **kw) -> dict:
    """path -> probability maps [M, H, W] (NaN outside the predicted region; None for a skip record)."""
    return {p: probs for p, probs, _ in iter_predictions(models, cube_paths, stats, patch_size, stride, blend, batch_size,
                                                         device, batch_across_glaciers, timings=timings, **kw)}


# ---------------------------------------------------------------------------------------------------- output


def write_predictions(path, probs_by_member: np.ndarray, cube_path, members=None, dtype: str = "float32",
                      attrs: dict | None = None, classes=None) -> None:
    """NetCDF with ``prob`` (member, y, x), ``mu`` and ``sigma`` (ensemble mean and population std) on the cube grid.

    A K-class prediction (``probs_by_member`` [M, K, H, W], ``classes`` its K names) has ``prob`` (member, class,
    y, x), ``mu`` and ``sigma`` (class, y, x; sigma = the member spread per class), ``label`` (y, x): the class of
    the largest ``mu`` (uint8, 255 outside the predicted region), the map to open in QGIS, and ``entropy`` (y, x):
    the uncertainty map, the entropy of ``mu`` over log K (0 = certain, 1 = uniform; uncalibrated).

    Coordinates, CRS and attributes come from the cube at ``cube_path`` (read through h5py: opening it as
    an xarray dataset cost ~0.2 s per file, a third of an inference job).
    ``dtype="uint8"`` stores prob as round(p * 250) with 255 = NaN (decoded back to floats on reading).
    """
    import xarray as xr

    from glaciermap.data.georef import read_grid, write_georef

    grid = read_grid(cube_path)
    x, y, crs, cube_attrs = grid.x, grid.y, grid.crs, grid.attrs
    p = np.asarray(probs_by_member, np.float32)
    if p.ndim == 2:
        p = p[None]
    M = p.shape[0]
    if p.shape[-2:] != (y.size, x.size):
        raise ValueError(f"prediction shape {p.shape[-2:]} differs from the cube grid {(y.size, x.size)}")
    members = list(range(M)) if members is None else list(members)
    mu = p.mean(0)
    sigma = p.std(0)
    coords = {"member": ("member", np.asarray(members)), "y": y, "x": x}
    if p.ndim == 4:
        if classes is None or len(classes) != p.shape[1]:
            raise ValueError(f"a {p.shape[1]}-class prediction needs its {p.shape[1]} class names, got {classes}")
        coords["class"] = ("class", np.asarray([str(c) for c in classes]))
        finite = np.isfinite(mu).all(0)
        label = np.where(finite, np.nanargmax(np.where(finite, mu, 0), axis=0), 255).astype(np.uint8)
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(mu > 0, mu * np.log(np.where(mu > 0, mu, 1)), 0)
        entropy = np.where(finite, -plogp.sum(0) / np.log(len(classes)), np.nan).astype(np.float32)
        ds = xr.Dataset(
            {"prob": (("member", "class", "y", "x"), p, {"long_name": "class probability per ensemble member",
                                                         "units": "1"}),
             "mu": (("class", "y", "x"), mu, {"long_name": "ensemble mean class probability", "units": "1"}),
             "sigma": (("class", "y", "x"), sigma, {"long_name": "ensemble standard deviation of the class "
                                                                 "probability (ddof 0)", "units": "1"}),
             "label": (("y", "x"), label, {"long_name": "class of the largest ensemble mean probability (uncalibrated)",
                                           "flag_values": np.arange(len(classes), dtype=np.uint8),
                                           "flag_meanings": " ".join(map(str, classes))}),
             "entropy": (("y", "x"), entropy, {"long_name": "predictive entropy of the ensemble mean (uncalibrated), "
                                                            "divided by log(K): 0 = certain, 1 = uniform", "units": "1"})},
            coords=coords)
    else:
        ds = xr.Dataset(
            {"prob": (("member", "y", "x"), p, {"long_name": "glacier probability per ensemble member", "units": "1"}),
             "mu": (("y", "x"), mu, {"long_name": "ensemble mean glacier probability", "units": "1"}),
             "sigma": (("y", "x"), sigma, {"long_name": "ensemble standard deviation of the glacier probability "
                                                        "(ddof 0)", "units": "1"})},
            coords=coords)
    ds["x"].attrs.update(grid.x_attrs)
    ds["y"].attrs.update(grid.y_attrs)
    if crs is not None:
        ds = write_georef(ds, crs, grid.transform)
    keep = ("glacier_id", "epoch", "date", "item_id", "crs", "resolution_m")
    ds.attrs = {k: cube_attrs[k] for k in keep if k in cube_attrs}
    ds.attrs.update({"title": "glaciermap ensemble predictions", "status": "ok", "reason": "",
                     "nan_meaning": "outside the predicted region (patches meeting the glacier's 50 m buffer)"})
    ds.attrs.update({k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in (attrs or {}).items()})
    z = {"zlib": True, "complevel": 4, "shuffle": True}
    gm = {"grid_mapping": "spatial_ref"} if "spatial_ref" in ds.coords else {}
    enc = {"mu": {"dtype": "float32", "_FillValue": np.float32(np.nan), **z, **gm},
           "sigma": {"dtype": "float32", "_FillValue": np.float32(np.nan), **z, **gm}}
    if "label" in ds:
        enc["entropy"] = {"dtype": "float32", "_FillValue": np.float32(np.nan), **z, **gm}
        enc["label"] = {"dtype": "uint8", "_FillValue": np.uint8(255), **z, **gm}
    if dtype == "uint8":
        enc["prob"] = {"dtype": "uint8", "scale_factor": np.float32(1 / 250), "_FillValue": np.uint8(255), **z, **gm}
    elif dtype == "float32":
        enc["prob"] = {"dtype": "float32", "_FillValue": np.float32(np.nan), **z, **gm}
    else:
        raise ValueError(f"dtype must be float32 or uint8, got {dtype!r}")
    write_netcdf_atomic(path, ds, enc)


def predict_to_files(models, cube_paths, out_paths, stats: dict, members=None, dtype: str = "float32",
                     attrs: dict | None = None, classes=None, **kw) -> dict:
    """Predict every cube and write one NetCDF per cube (``out_paths`` parallel to ``cube_paths``).

    A skip-record cube gives a skip record (reason carried). Returns the timings.
    """
    out_of = {str(c): o for c, o in zip(cube_paths, out_paths, strict=True)}
    timings: dict = {}
    K = 1 if classes is None or len(classes) <= 1 else len(classes)
    for path, probs, cube in iter_predictions(models, list(out_of), stats, timings=timings, n_classes=K, **kw):
        if probs is None:
            from glaciermap.io import read_status

            st = read_status(path)
            ds = skip_dataset(st["glacier_id"], st["epoch"], st["reason"], "infer")
            ds.attrs["skipped_at_step"] = st["skipped_at_step"] or "infer"
            write_netcdf_atomic(out_of[path], ds)
            continue
        t0 = time.perf_counter()
        write_predictions(out_of[path], probs, path, members, dtype, attrs, classes if K > 1 else None)
        timings["write_s"] = timings.get("write_s", 0.0) + time.perf_counter() - t0
    return timings


# ---------------------------------------------------------------------------------------------------- rule infer


def run_infer_folder(ensemble_json, norm_json, test_cubes, val_cubes, out_dir, cfg: dict, patch_size: int,
                     threads: int = 1) -> dict:
    """What the ``infer`` rule runs: the ensemble listed in ``ensemble_json`` on the test and validation cubes
    (``.../cubes/<glacier>/<epoch>.nc``), written into the folder ``out_dir`` (:func:`glaciermap.io.prediction_path`)."""
    import json

    from glaciermap.io import prediction_path

    members = json.loads(Path(ensemble_json).read_text())["members"]
    outs = [prediction_path(out_dir, Path(c).parent.name) for c in test_cubes]
    outs += [prediction_path(out_dir, Path(c).parent.name, val=True) for c in val_cubes]
    for d in {p.parent for p in outs} | {Path(out_dir)}:
        d.mkdir(parents=True, exist_ok=True)
    return run_infer(members, norm_json, [*test_cubes, *val_cubes], outs, cfg, patch_size, threads)


def run_infer(done_jsons, norm_json, cube_paths, out_paths, cfg: dict, patch_size: int, threads: int = 1) -> dict:
    """Ensemble prediction of one fold for the given cubes (all members in one pass, batched across glaciers).

    Holds a lock per (fold, epoch) in the fold's model folder and writes every prediction under a hidden
    staging name first, moving all into place only at the very end (docs/concurrency.md): a twin of this job
    waits, then returns without redoing complete outputs, and while it runs no final output exists that a
    failing twin's Snakemake could delete.
    """
    import os

    import torch

    from glaciermap.joblock import job_lock, outputs_complete
    from glaciermap.segmentation.patches import load_normalisation
    from glaciermap.segmentation.train import load_member, resolve_device

    out_paths = [Path(p) for p in out_paths]
    inputs = [*map(Path, done_jsons), Path(norm_json), *map(Path, cube_paths)]
    with job_lock(_infer_lock_path(done_jsons, out_paths), f"infer {_infer_job_name(done_jsons, out_paths)}") as lock:
        if lock.waited and outputs_complete(out_paths, inputs):
            log.info("inference: all %d outputs were written by the concurrent job: nothing to do", len(out_paths))
            return {"skipped": "outputs written by a concurrent job"}
        keep_freed_memory()
        torch.set_num_threads(max(int(threads), 1))
        device = resolve_device(cfg.get("device"))
        models, members, classes = [], [], None
        for done in done_jsons:
            model, meta = load_member(Path(done).parent / "best.pt", device)
            models.append(model)
            members.append(int(Path(done).parent.name.replace("member", "")))
            cl = meta.get("classes", ["glacier"])
            if classes is not None and cl != classes:
                raise ValueError(f"ensemble members of {Path(done).parent.parent} predict different classes: {classes} "
                                 f"and {cl} ({done})")
            classes = cl
        staged, staging_root = _staged_paths(out_paths)
        try:
            timings = predict_files(models, cube_paths, staged, load_normalisation(norm_json), members, cfg,
                                    patch_size, device, classes)
            for tmp, final in zip(staged, out_paths):
                final.parent.mkdir(parents=True, exist_ok=True)  # a twin's Snakemake may have removed the folder
                os.replace(tmp, final)
        finally:
            for tmp in staged:
                tmp.unlink(missing_ok=True)
            if staging_root is not None:  # only this job stages there while it holds the lock
                shutil.rmtree(staging_root, ignore_errors=True)
        log.info("inference: %s", timings)
        return timings


def _infer_epoch(out_paths) -> str | None:
    """The epoch of an inference job's outputs: their common stem (``<glacier>/<epoch>.nc``) or, in the layout of
    the ``infer`` rule (``predictions/<model>/fold<k>/<epoch>/<glacier>.nc``), their common folder's name."""
    import os

    stems = {Path(p).stem for p in out_paths}
    if len(stems) == 1:
        return stems.pop()
    if out_paths:
        return Path(os.path.commonpath([str(p) for p in out_paths])).name or None
    return None


def _staged_paths(out_paths) -> tuple[list[Path], Path | None]:
    """(staged paths, staging folder): each output is written first under a hidden sibling of the outputs' common
    folder (``.<epoch>.staging/``), outside a ``directory()`` output that Snakemake may remove, on the same
    filesystem, and moved into place at the end."""
    import os

    if not out_paths:
        return [], None
    common = Path(os.path.commonpath([str(Path(p).parent) for p in out_paths]))
    root = common.parent / f".{common.name}.staging"
    return [root / Path(p).relative_to(common) for p in out_paths], root


def _infer_lock_path(done_jsons, out_paths) -> Path:
    """``models/<model>/fold<k>/.infer_<epoch>.lock`` (epoch: :func:`_infer_epoch`; else a hash of the outputs)."""
    import hashlib

    fold_dir = Path(done_jsons[0]).parent.parent if len(done_jsons) else Path(out_paths[0] if out_paths else ".").parent
    epoch = _infer_epoch(out_paths)
    if epoch:
        return fold_dir / f".infer_{epoch}.lock"
    key = hashlib.sha1("\n".join(sorted(map(str, out_paths))).encode()).hexdigest()[:12]
    return fold_dir / f".infer_{key}.lock"


def _infer_job_name(done_jsons, out_paths) -> str:
    fold = Path(done_jsons[0]).parent.parent.name if len(done_jsons) else "?"
    epoch = _infer_epoch(out_paths)
    return f"{fold} epoch {epoch}" if epoch else f"{fold} ({len(out_paths)} outputs)"


def predict_files(models, cube_paths, out_paths, stats, members, cfg, patch_size, device, classes=None):
    return predict_to_files(models, list(map(str, cube_paths)), list(map(str, out_paths)), stats, members=members,
                            patch_size=int(patch_size), stride=int(cfg["stride"]), blend=cfg["blend"],
                            batch_size=int(cfg["batch_size"]), device=device, classes=classes,
                            # optional keys: a config without them runs iter_predictions' defaults (the schema's)
                            **{k: cfg[k] for k in ("flips", "precision") if k in cfg})
