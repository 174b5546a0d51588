"""Tiled region store: the training cubes' layers once, in float16 64 px chunks, for training at region scale.

Why (``docs/scale.md``, "Training data at region scale"; ``benchmarks/training_store.py``): an Alps fold has ~3,500
training glaciers and ~2 patches per glacier and epoch, so a loader that cuts patches from whole cubes re-reads
every cube every epoch (72.7 ms per patch against the paper model's 16 ms GPU step, measured). This store holds
every cube's stored layers in one HDF5 file, chunked (layers, 64, 64), so that one 256 px patch reads ~25 chunks
(a whole training patch: 4.7 ms in the benchmark, against 85-91 ms from the cubes). It is written once per model and region (rule ``training_store``) and read by
every fold and member of the model (``training_data: store`` in its ``models`` entry).

Layout (``h5py``; one group per cube, ``<glacier>/<epoch>`` from the cube path ``.../cubes/<glacier>/<epoch>.nc``)::

    /                       attrs: format, layers (names), chunk, n_cubes, skipped (cube paths of skip records)
    /<glacier>/<epoch>/x        float16 (layers, H, W), chunks (layers, 64, 64): (raw - offset) / scale per layer
    /<glacier>/<epoch>/labels   int16 (H, W): index into the group's glacier_ids, -1 none (mask_glacier_id)
    /<glacier>/<epoch>/masked   uint8 (H, W): 1 on cloud/shadow or no data
          attrs: offset, scale (float64 per layer: the cube's own mean and standard deviation of the finite values),
                 nonfinite (uint8 per layer: 1 if the layer has a NaN or inf anywhere in the cube),
                 glacier_ids, glacier_id, resolution, glacier_area_m2, source (the cube path)

Values are standardised per cube and layer before the float16 cast, so the rounding error is relative to each
layer's spread in that cube: at most ~0.001 standard deviations of the layer (float16: 11 significant bits;
elevations of ~3,000 m in raw float16 would be off by up to 2 m). NaN stays NaN.

Reading (:class:`StoreDataset`): a patch reads its window of ``x`` and, padded by the 50 m no-leak buffer, of
``labels`` and ``masked``; the fold's loss mask (no cloud / no data, not within 50 m of a test glacier, not within
50 m of the cube edge) is computed on the padded window (:func:`glaciermap.segmentation.patches.exclusion_zone`),
which gives the same mask as on the whole cube because only pixels within 50 m can matter. Then the same NaN fill,
fold normalisation and projection channels as the cube path (:class:`~glaciermap.segmentation.patches.PatchDataset`);
without projection channels, decode, normalisation and NaN fill are fused into one affine pass (``_decoded``).
Targets (y) and loss masks are identical to the cube path; inputs differ by the float16 rounding only
(``tests/test_training_store.py``). Binary models only: a K-class model's label rasters are not in the store.

Float16 hand-over (``StoreDataset(..., half=True)``, what training on a GPU uses when the fused decode applies; on the
CPU, where this decode in torch costs more than numpy's in the worker, training keeps the float32 items): a DataLoader
worker does not decode; it yields the stored float16 window (NaN outside the cube), y and the loss mask as uint8, and
per channel the coefficients (a, b, fill) of :meth:`StoreDataset._decoded` (:meth:`StoreDataset.arrays16`), and the
training step turns them into the float32 input on its device (:func:`decode_inputs`, after ``.to(device)``): half the
bytes to collate and hand over (2.2 MB a 16 x 256 x 256 patch instead of 4.7 MB). The fill values that depend on the
patch (mean of a channel's finite values) are computed in the worker, exactly as ``_decoded`` does, for the channels
that have a non-finite value only; the result equals :meth:`StoreDataset.arrays` bit for bit (separate float32 multiply
and add, as numpy does; ``tests/test_training_store.py``). Training's loaders get whole batches of it
(:meth:`StoreDataset.batch16`, through ``train.batch_loader``): each window read straight into its slot of the batch,
no second copy by torch's collate. A window inside its cube checks for non-finite values only the layers the store
flags as having one anywhere in the cube (group attribute ``nonfinite``), and where the cube holds no test glacier of
the fold its loss mask is the unpadded window's (the exclusion zone is then the cube's edge band alone).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from glaciermap.data.channels import get_channel, projection_channels, stored_layers
from glaciermap.segmentation.patches import (NO_LEAK_BUFFER_M, PatchDataset, _assemble, cube_status, exclusion_zone,
                                            extract, load_cube, prepare_patch)

log = logging.getLogger("glaciermap.segmentation.training_store")

FORMAT = "glaciermap-training-store-1"
CHUNK = 64


def decode_inputs(x16, coef):
    """The float32 model input of float16 windows ``x16`` [..., C, P, P] and their coefficients ``coef`` [..., C, 3]
    (a, b, fill: :meth:`StoreDataset.arrays16`), torch tensors on any device: ``x16 a + b``, then the fill where the
    result is not finite. A float32 multiply, then a float32 add (two operations: a fused multiply-add, as
    ``torch.addcmul`` or a compiler fusing the two would do, differs in the last bit for ~30 % of the values), as
    :meth:`StoreDataset._decoded` does in numpy: the same values bit for bit."""
    import torch

    a, b, fill = coef[..., 0, None, None], coef[..., 1, None, None], coef[..., 2, None, None]
    x = x16.float()  # exact: every float16 is a float32
    x.mul_(a)
    x.add_(b)
    # x - x is 0 exactly where x is finite, NaN elsewhere (faster on the CPU than torch.isfinite, same mask)
    return torch.where((x - x) == 0, x, fill)


def _batch_tensor(shape, dtype):
    """An uninitialised tensor for a collated batch; in a DataLoader worker in shared memory, as torch's
    ``default_collate`` allocates its output there, so that sending it to the training process copies nothing."""
    import torch
    from torch.utils.data import get_worker_info

    empty = torch.empty(0, dtype=dtype)
    if get_worker_info() is None:
        # numpy's allocation, not torch.empty: numpy asks the kernel for huge pages on large blocks, which halves the
        # cost of faulting a batch's fresh memory in (a 32 MiB batch: ~4 ms against ~9 ms, measured on this project's
        # 2-core VM; that cost was ~half of what a patch cost with torch.empty)
        return torch.from_numpy(np.empty(shape, empty.numpy().dtype))
    return empty.new(empty._typed_storage()._new_shared(math.prod(shape))).resize_(*shape)


def store_key(cube_path) -> str:
    """The group of a cube in the store: ``<glacier>/<epoch>`` from ``.../<glacier>/<epoch>.nc``."""
    p = Path(str(cube_path))
    return f"{p.parent.name}/{p.stem}"


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float16 values, offset, scale) per layer of x [L, H, W]: (x - mean) / std of the finite values."""
    L = x.shape[0]
    off, sc = np.zeros(L), np.ones(L)
    out = np.empty(x.shape, np.float16)
    for i in range(L):
        v = x[i]
        fin = v[np.isfinite(v)].astype(np.float64)
        if fin.size:
            off[i] = fin.mean()
            s = fin.std()
            sc[i] = s if s > 0 else 1.0
        out[i] = ((v.astype(np.float64) - off[i]) / sc[i]).astype(np.float16)
    return out, off, sc


def write_store(cube_paths, channels, out_path, chunk: int = CHUNK) -> dict:
    """Write the store of ``cube_paths`` with the stored layers behind ``channels``; returns a summary.

    Skip records (cubes of glaciers without a usable scene) are listed in the ``skipped`` attribute; a cube that
    cannot be read raises ValueError naming it. Written under a temporary name and renamed: a half-written store is
    never taken for a store.
    """
    import h5py

    layers = stored_layers(list(channels))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    written, skipped, n_px = [], [], 0
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["layers"] = np.array(layers, dtype=h5py.string_dtype())
            f.attrs["chunk"] = int(chunk)
            for p in sorted({str(p) for p in cube_paths}):
                key = store_key(p)
                if key in f:
                    raise ValueError(f"cube {p}: its group {key} is already in the store (two cubes of one glacier "
                                     "and epoch)")
                try:
                    status = cube_status(p)[1]
                except (OSError, ValueError, KeyError) as e:
                    raise ValueError(f"cube {p}: cannot be read for the training store: {e}") from e
                if status == "skipped":
                    skipped.append(p)
                    continue
                cube = load_cube(p, layers)
                xs, off, sc = _standardise(cube.x)
                h, w = cube.shape
                c = (min(chunk, h), min(chunk, w))
                g = f.create_group(key)
                g.create_dataset("x", data=xs, chunks=(len(layers),) + c)
                g.create_dataset("labels", data=cube.labels.astype(np.int16), chunks=c)
                g.create_dataset("masked", data=cube.masked.astype(np.uint8), chunks=c)
                # layers with a non-finite value anywhere in the cube: the only ones a window inside it must check
                nonfinite = np.array([np.bitwise_and(xs[i].view(np.uint16), 0x7FFF).max() >= 0x7C00
                                      for i in range(len(layers))])  # layer by layer: one layer's temporary
                g.attrs.update({"offset": off, "scale": sc, "nonfinite": nonfinite.astype(np.uint8),
                                "glacier_ids": np.array(cube.glacier_ids, dtype=h5py.string_dtype()),
                                "glacier_id": cube.glacier_id, "resolution": float(cube.resolution),
                                "glacier_area_m2": cube.glacier_area_m2, "source": p})
                written.append(p)
                n_px += h * w
            f.attrs["n_cubes"] = len(written)
            f.attrs["skipped"] = np.array(skipped, dtype=h5py.string_dtype())
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    summary = {"n_cubes": len(written), "n_skipped": len(skipped), "layers": layers, "megapixels": n_px / 1e6,
               "bytes": out_path.stat().st_size}
    log.info("training store %s: %d cube(s), %d skip record(s), %d layer(s), %.1f Mpx, %.1f MB", out_path,
             summary["n_cubes"], summary["n_skipped"], len(layers), summary["megapixels"], summary["bytes"] / 1e6)
    return summary


class StoreDataset(PatchDataset):
    """:class:`~glaciermap.segmentation.patches.PatchDataset` (binary target) reading its patches from a training
    store instead of whole cubes: same items (cube path, row, col), same targets and loss masks, inputs up to the
    store's float16 rounding. The HDF5 file is opened lazily per process (DataLoader workers open their own).

    ``half``: items are (float16 x, uint8 y, uint8 loss mask, coefficients) for :meth:`device_batch` to finish on the
    training device (module docstring, "Float16 hand-over"); only where the fused decode applies (no projection
    channel): otherwise ``self.half`` is False and items are (x, y, loss mask) in float32 as always."""

    def __init__(self, items, channels, stats: dict, patch_size: int, store_path, exclude_glaciers=(),
                 edge_guard: bool = True, buffer_m: float = NO_LEAK_BUFFER_M, half: bool = False):
        super().__init__(items, channels, stats, patch_size, exclude_glaciers=exclude_glaciers, edge_guard=edge_guard)
        self.store_path = str(store_path)
        self.buffer_m = float(buffer_m)
        self._h5 = None
        self._groups = {}
        self._h5_pid = None  # the process that opened self._h5
        self._proj = stats.get("projection") if projection_channels(self.channels) else None
        self._layers = stored_layers(self.channels)
        # without projection channels the model's channels are the stored layers: decode and normalise in one pass
        self._fused = self._proj is None and list(self._layers) == self.channels
        off = np.asarray(stats["offset"], np.float64)
        sc = np.asarray(stats["scale"], np.float64)
        self._fold_off, self._fold_sc = off, sc
        self._zero_fill = [float(-off[i] / sc[i]) if get_channel(c).patch_fill == "zero" else None
                           for i, c in enumerate(self.channels)]
        self.half = bool(half) and self._fused
        with self._file_once() as f:
            if f.attrs.get("format") != FORMAT:
                raise ValueError(f"{self.store_path} is not a training store ({f.attrs.get('format')!r})")
            have = [str(s) for s in f.attrs["layers"]]
            missing = [c for c in self._layers if c not in have]
            if missing:
                raise ValueError(f"training store {self.store_path} lacks layer(s) {', '.join(missing)} (has "
                                 f"{', '.join(have)}); re-make it (rule training_store)")
            self._pos = [have.index(c) for c in self._layers]
            self._all = self._pos == list(range(len(have)))  # every stored layer, in order: no selection to copy
            absent = sorted({store_key(p) for p, _, _ in self.items} - {k for k in self._keys(f)})
            if absent:
                raise ValueError(f"training store {self.store_path} has no cube {absent[0]} ({len(absent)} of the "
                                 "items' cubes missing); re-make it (rule training_store)")

    def _file_once(self):
        import h5py

        return h5py.File(self.store_path, "r")

    @staticmethod
    def _keys(f):
        return [f"{g}/{e}" for g in f for e in f[g]]

    def __getstate__(self):
        d = super().__getstate__()
        d["_h5"], d["_groups"], d["_h5_pid"] = None, {}, None
        return d

    def _group(self, path):
        if self._h5_pid != os.getpid() and self._h5 is not None:
            # a forked DataLoader worker inherits the parent's open file and datasets: HDF5's state is not meant to be
            # shared across a fork, so each process opens its own
            self._h5, self._groups = None, {}
        key = store_key(path)
        g = self._groups.get(key)
        if g is None:
            if self._h5 is None:
                self._h5, self._h5_pid = self._file_once(), os.getpid()
            grp = self._h5[key]
            a = grp.attrs
            g = {"x": grp["x"], "labels": grp["labels"], "masked": grp["masked"],
                 "offset": np.asarray(a["offset"], np.float32)[self._pos, None, None],
                 "scale": np.asarray(a["scale"], np.float32)[self._pos, None, None],
                 # fused decode (no projection): x_fold = x16 a + b with a = scale / fold scale,
                 # b = (offset - fold offset) / fold scale
                 "a": None, "b": None,
                 "ids": [str(s) for s in a["glacier_ids"]], "res": float(a["resolution"]),
                 "shape": grp["labels"].shape, "glacier_id": str(a["glacier_id"]),
                 "area": float(a["glacier_area_m2"]),
                 # the channels that can be non-finite in a window inside the cube (a store written before the
                 # attribute: every channel)
                 "check": (np.flatnonzero(np.asarray(a["nonfinite"], bool)[self._pos]) if "nonfinite" in a
                           else np.arange(len(self._pos)))}
            if self._fused:
                so, ss = np.asarray(a["offset"], np.float64)[self._pos], np.asarray(a["scale"], np.float64)[self._pos]
                g["a"] = (ss / self._fold_sc).astype(np.float32)[:, None, None]
                g["b"] = ((so - self._fold_off) / self._fold_sc).astype(np.float32)[:, None, None]
                # float16 hand-over: (a, b, fill) per channel; the fill of a mean-filled channel is the patch's
                g["coef"] = np.stack([g["a"][:, 0, 0], g["b"][:, 0, 0],
                                      np.array([np.nan if v is None else v for v in self._zero_fill], np.float32)], 1)
            self._groups[key] = g
        return g

    def arrays(self, i):
        """numpy (x, y, loss_mask) of item i, as :meth:`PatchDataset.arrays` gives them from the cube."""
        p, top, left = self.window(i)
        g = self._group(p)
        H, W = g["shape"]
        P = self.patch_size
        # inputs: the window clipped to the cube, NaN outside (as extract does)
        r0, r1, c0, c1 = max(top, 0), min(top + P, H), max(left, 0), min(left + P, W)
        if self._fused:
            x = self._decoded(g, top, left, r0, r1, c0, c1)
        else:  # projection channels: back to raw units, the fold's projection, then the cube path's preparation
            raw = np.full((len(self._layers), P, P), np.nan, np.float32)
            if r0 < r1 and c0 < c1:
                block = g["x"][:, r0:r1, c0:c1][self._pos]  # whole chunks: every layer of the store
                raw[:, r0 - top:r1 - top, c0 - left:c1 - left] = block.astype(np.float32) * g["scale"] + g["offset"]
            raw = _assemble(raw, self._layers, self.channels, self._proj)
            x = prepare_patch(raw, self.channels, self.stats)
        y, lm = self._targets(g, top, left)
        return x, y.astype(np.float32)[None], lm.astype(np.float32)[None]

    def _targets(self, g, top, left):
        """(y [P, P] bool, loss mask [P, P] bool) of the window at (top, left) of group g."""
        H, W = g["shape"]
        P = self.patch_size
        if "near_test" not in g:  # does the cube hold a glacier kept out of the loss (a test glacier of the fold)?
            g["near_test"] = any(str(i) in self.exclude for i in g["ids"])
        if not g["near_test"] and 0 <= top and top + P <= H and 0 <= left and left + P <= W:
            # no excluded glacier in the cube and the window inside it: the exclusion zone is the edge band alone,
            # which needs no padding; the same masks as below (tests/test_training_store.py), without the padded
            # reads and the zone's arrays. Not folded into the path below with the padding set to 0: that gives the
            # same masks at ~0.15 ms a patch against ~0.08-0.10 here (exclusion_zone's set and arrays; 2026-12-03)
            y = g["labels"][top:top + P, left:left + P] >= 0
            lm = g["masked"][top:top + P, left:left + P] == 0
            n = int(math.floor(self.buffer_m / g["res"] + 1e-9)) if (self.edge_guard and self.exclude) else 0
            if n > 0:
                lm[:max(n - top, 0)] = False
                lm[max(H - n - top, 0):] = False
                lm[:, :max(n - left, 0)] = False
                lm[:, max(W - n - left, 0):] = False
            return y, lm
        # masks: the window padded by the no-leak buffer, so that the exclusion zone is the whole cube's
        b = int(math.floor(self.buffer_m / g["res"] + 1e-9))
        R0, R1, C0, C1 = max(top - b, 0), min(top + P + b, H), max(left - b, 0), min(left + P + b, W)
        lm = np.zeros((P, P), bool)
        y = np.zeros((P, P), bool)
        if R0 < R1 and C0 < C1:
            lab = g["labels"][R0:R1, C0:C1].astype(np.int32)
            masked = g["masked"][R0:R1, C0:C1].astype(bool)
            zone = exclusion_zone(lab, g["ids"], self.exclude, g["res"], self.buffer_m, self.edge_guard,
                                  frame=(R0, C0, H, W))
            lm_pad = ~(masked | zone)
            lm = extract(lm_pad, top - R0, left - C0, P, False)  # outside the padded window = outside the cube
            y = extract(lab, top - R0, left - C0, P, -1) >= 0
        return y, lm

    def arrays16(self, i):
        """numpy (x16, y, loss mask, coef) of item i for the float16 hand-over: x16 [C, P, P] float16 the stored window
        (NaN outside the cube), y and loss mask [1, P, P] uint8, coef [C, 3] float32 per channel (a, b, fill) such
        that :func:`decode_inputs` gives :meth:`arrays`' x exactly. Fused decode only (no projection channel)."""
        C, P = len(self.channels), self.patch_size
        x16, y, lm, coef = (np.empty((C, P, P), np.float16), np.empty((1, P, P), np.uint8),
                            np.empty((1, P, P), np.uint8), np.empty((C, 3), np.float32))
        self._item16(i, x16, y[0], lm[0], coef)
        return x16, y, lm, coef

    def batch16(self, indices):
        """The float16 hand-over of a whole batch, collated: tensors (x16 [B, C, P, P] float16, y and loss mask
        [B, 1, P, P] uint8, coef [B, C, 3] float32), each item written in place (the window read straight into its
        slot) instead of made alone and stacked by the DataLoader's collate, which copied every 2.2 MB item once more.
        In a DataLoader worker the tensors are allocated in shared memory, as torch's own collate does, so handing the
        batch to the training process copies nothing. Item by item equal to :meth:`arrays16` (the same code)."""
        import torch

        B, C, P = len(indices), len(self.channels), self.patch_size
        x16, y, lm = (_batch_tensor((B, C, P, P), torch.float16), _batch_tensor((B, 1, P, P), torch.uint8),
                      _batch_tensor((B, 1, P, P), torch.uint8))
        coef = _batch_tensor((B, C, 3), torch.float32)
        xn, yn, mn, cn = (t.numpy() for t in (x16, y, lm, coef))
        for j, i in enumerate(indices):
            self._item16(int(i), xn[j], yn[j, 0], mn[j, 0], cn[j])
        return x16, y, lm, coef

    def _item16(self, i, x16, y, lm, coef):
        """Write item i's float16 hand-over into x16 [C, P, P], y and lm [P, P], coef [C, 3] (C-contiguous)."""
        if not self._fused:
            raise ValueError("the float16 hand-over needs the fused decode (no projection channel)")
        p, top, left = self.window(i)
        g = self._group(p)
        H, W = g["shape"]
        P, C = self.patch_size, len(self.channels)
        r0, r1, c0, c1 = max(top, 0), min(top + P, H), max(left, 0), min(left + P, W)
        inside = (r0, r1, c0, c1) == (top, top + P, left, left + P)
        if inside and self._all:
            g["x"].read_direct(x16, np.s_[:, r0:r1, c0:c1])  # the window straight into its slot
        else:
            x16.fill(np.nan)
            if r0 < r1 and c0 < c1:
                x16[:, r0 - top:r1 - top, c0 - left:c1 - left] = g["x"][:, r0:r1, c0:c1][self._pos]
        coef[...] = g["coef"]
        # channels with a non-finite value (float16 exponent all ones: NaN or inf); their decoded values are the
        # non-finite ones of _decoded (a > 0 and a finite float16 times a plus b stays finite). Inside the cube only
        # the channels the store flags as having one somewhere can (most windows: none or dh/dt's gaps alone)
        ks = g["check"] if inside else range(C)
        for k in ks:
            if self._zero_fill[k] is None and np.bitwise_and(x16[k].view(np.uint16), 0x7FFF).max() >= 0x7C00:
                xk = np.multiply(x16[k], g["a"][k])  # float32, as in _decoded
                xk += g["b"][k]
                coef[k, 2] = self._fill_value(k, xk, ~np.isfinite(xk))
        yy, mm = self._targets(g, top, left)
        y[...] = yy
        lm[...] = mm

    def __getitem__(self, i):
        if not self.half:
            return super().__getitem__(i)
        if not np.isscalar(i):  # a batch's indices: a loader without automatic batching (batch_loader)
            return self.batch16(i)
        import torch

        return tuple(torch.from_numpy(v) for v in self.arrays16(i))

    def device_batch(self, batch):
        """A collated batch, already on the training device, as the model takes it: (x16, y, loss mask, coef, *rest)
        -> [x float32, y float32, loss mask float32, *rest] (``half``); a float32 batch is returned as it is."""
        if not self.half:
            return batch
        x16, y, m, coef, *rest = batch
        return [decode_inputs(x16, coef), y.float(), m.float(), *rest]

    def _fill_value(self, i, xi, bi) -> float:
        """The NaN fill of channel i (normalised units) given its decoded values xi and their non-finite mask bi."""
        if self._zero_fill[i] is not None:
            return self._zero_fill[i]
        if not bi.all():
            return float(xi[~bi].mean(dtype=np.float64))
        return 0.0

    def _decoded(self, g, top, left, r0, r1, c0, c1) -> np.ndarray:
        """The model input of a window in one affine pass per pixel: stored float16 -> fold-normalised float32
        (``x a + b``, a and b per channel from the store's and the fold's offsets and scales), then the NaN fill in
        normalised units. The fill is linear, so this equals :func:`prepare_patch` of the raw patch (NaN fill,
        then normalisation) up to float32 rounding: dh/dt-like channels (fill 0 m) get the normalised value of 0,
        the others the mean of their finite normalised values in the patch, an all-NaN channel the normalised
        training mean, 0. Twice as fast as decoding to raw units and preparing (benchmarks/training_store.py)."""
        P = self.patch_size
        x = np.full((len(self.channels), P, P), np.nan, np.float32)
        if r0 < r1 and c0 < c1:
            sub = x[:, r0 - top:r1 - top, c0 - left:c1 - left]
            np.multiply(g["x"][:, r0:r1, c0:c1][self._pos], g["a"], out=sub)
            sub += g["b"]
        bad = ~np.isfinite(x)
        if bad.any():
            for i in np.flatnonzero(bad.any(axis=(1, 2))):
                xi, bi = x[i], bad[i]
                xi[bi] = self._fill_value(i, xi, bi)
        return x

    def class_counts(self, n_classes: int):
        raise ValueError("a training store holds binary targets only (K-class models read their cubes)")

    def _meta(self, path):
        g = self._group(path)
        return g["glacier_id"], g["area"]


def run_training_store(cube_paths, channels, out_path) -> dict:
    """What rule ``training_store`` runs."""
    return write_store(cube_paths, channels, out_path)
