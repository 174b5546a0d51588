"""The tiled region store (glaciermap.segmentation.training_store): the same patches as the cubes give (targets and
loss masks exactly, inputs up to float16), the no-leak rule on windows, bad input, and training from it resuming
after a kill exactly as an uninterrupted run."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial.distance import cdist

from glaciermap.data.features import DL4GAM_CHANNELS
from glaciermap.io import skip_dataset, write_netcdf_atomic
from glaciermap.segmentation import patches, train
from glaciermap.segmentation import training_store as ts
from test_patches import IDS, RES, scene_labels, split_table, write_cube
from test_train import TINY, Killed, _metrics


def _nan_holes(data):
    data["dhdt"][5:15, 5:40] = np.nan    # dh/dt: zero fill
    data["B04"][40:50, 60:75] = np.nan   # reflectance: patch-mean fill


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    d = tmp_path_factory.mktemp("store")
    lab = scene_labels()
    cloud = np.zeros(lab.shape, bool)
    cloud[62:66, 12:20] = True
    nodata = np.zeros(lab.shape, bool)
    nodata[:, 76:] = True
    paths = {g: str(write_cube(d / "cubes" / g / "2015.nc", lab, IDS, g, seed=k, cloud=cloud, nodata=nodata,
                               edit=_nan_holes))
             for k, g in enumerate(IDS)}
    skip = d / "cubes" / "S" / "2015.nc"
    write_netcdf_atomic(skip, skip_dataset("S", "2015", "no usable scene", "cube"))
    split = split_table({"A": "train", "T": "test", "V": "val"})
    stats = patches.fit_fold_normalisation(paths, split, 0)
    store = d / "store.h5"
    summary = ts.write_store([*paths.values(), str(skip)], DL4GAM_CHANNELS, store)
    return {"paths": paths, "skip": str(skip), "split": split, "stats": stats, "store": store, "summary": summary,
            "lab": lab, "cloud": cloud, "nodata": nodata}


def _every_window(paths, P, step=7):
    """Centres over the whole cube and beyond its edges (windows partly outside)."""
    return [(p, r, c) for p in paths.values() for r in range(-P // 4, 80 + P // 4, step)
            for c in range(-P // 4, 80 + P // 4, step)]


def test_store_layout_and_summary(region):
    s = region["summary"]
    assert s["n_cubes"] == 3 and s["n_skipped"] == 1 and s["layers"] == list(DL4GAM_CHANNELS)
    with h5py.File(region["store"], "r") as f:
        assert f.attrs["format"] == ts.FORMAT and [str(x) for x in f.attrs["skipped"]] == [region["skip"]]
        g = f["A/2015"]
        assert g["x"].dtype == np.float16 and g["x"].shape == (16, 80, 80) and g["x"].chunks == (16, 64, 64)
        assert [str(x) for x in g.attrs["glacier_ids"]] == IDS and str(g.attrs["glacier_id"]) == "A"
        # standardised per layer: raw = x * scale + offset, NaN kept
        cube = patches.load_cube(region["paths"]["A"])
        raw = g["x"][:].astype(np.float32) * g.attrs["scale"][:, None, None] + g.attrs["offset"][:, None, None]
        assert np.array_equal(np.isnan(raw), np.isnan(cube.x))
        err = np.nanmax(np.abs(raw - cube.x), axis=(1, 2)) / g.attrs["scale"]
        assert (err < 2e-3).all() and (err > 0).any()  # float16 rounding, relative to each layer's spread
        assert np.array_equal(g["labels"][:], cube.labels) and np.array_equal(g["masked"][:].astype(bool), cube.masked)


@pytest.mark.parametrize("test", [{"T"}, {"Z"}, set()])
def test_store_patches_equal_the_cube_patches(region, test):
    """Every window, edges and outside included: targets and loss masks identical, inputs within float16 rounding;
    with a test glacier in the cubes (the exclusion zone on padded windows), with one elsewhere in the region (the
    edge band alone: the unpadded fast path inside the cube) and with none."""
    P = 32
    items = _every_window(region["paths"], P)
    cube_ds = patches.PatchDataset(items, DL4GAM_CHANNELS, region["stats"], P, exclude_glaciers=test)
    store_ds = ts.StoreDataset(items, DL4GAM_CHANNELS, region["stats"], P, region["store"], exclude_glaciers=test)
    assert store_ds._fused  # no projection channel: decoded and normalised in one pass
    worst = 0.0
    for i in range(len(items)):
        xc, yc, mc = cube_ds.arrays(i)
        xs, ys, ms = store_ds.arrays(i)
        assert np.array_equal(yc, ys) and np.array_equal(mc, ms), f"window {items[i]}"
        assert np.isfinite(xs).all()
        worst = max(worst, float(np.abs(xc - xs).max()))
    assert 0 < worst < 0.01  # normalised units (N(0, 1)-like): float16 rounding only
    assert store_ds.glacier_of(0) == "A" and store_ds.glacier_area(0) == cube_ds.glacier_area(0)
    assert {g["near_test"] for g in store_ds._groups.values()} == {"T" in test}  # which path the masks took


def test_store_windows_keep_test_glaciers_out_of_the_loss(region):
    """The no-leak rule computed on padded windows: the test glacier and its 50 m never enter the loss (brute force),
    and without the rule they would (the test can fail)."""
    lab, P = region["lab"], 24
    zone = (cdist(np.argwhere(np.ones(lab.shape, bool)), np.argwhere(lab == 1)).min(1) * RES <= 50).reshape(lab.shape)
    items = _every_window(region["paths"], P, step=5)
    ds = ts.StoreDataset(items, DL4GAM_CHANNELS, region["stats"], P, region["store"], exclude_glaciers={"T"})
    leaky = ts.StoreDataset(items, DL4GAM_CHANNELS, region["stats"], P, region["store"], exclude_glaciers=())
    seen = 0
    for i in range(len(items)):
        _, top, left = ds.window(i)
        z = patches.extract(zone, top, left, P, False)
        m = ds.arrays(i)[2][0]
        assert (m[z] == 0).all(), f"test glacier pixel in the loss of window {items[i]}"
        seen += int((leaky.arrays(i)[2][0][z] == 1).sum())
        bad = patches.extract(region["cloud"] | region["nodata"], top, left, P, False)
        assert (m[bad] == 0).all()
    assert seen > 1000


def test_bad_input_names_the_problem(region, tmp_path):
    stats, P = region["stats"], 32
    with pytest.raises(ValueError, match="has no cube elsewhere/A"):
        ts.StoreDataset([("x/elsewhere/A.nc", 40, 40)], DL4GAM_CHANNELS, stats, P, region["store"])
    small = tmp_path / "small.h5"
    ts.write_store([region["paths"]["A"]], ["B04", "B03"], small)
    with pytest.raises(ValueError, match="lacks layer"):
        ts.StoreDataset([(region["paths"]["A"], 40, 40)], DL4GAM_CHANNELS, stats, P, small)
    broken = tmp_path / "cubes" / "B" / "2015.nc"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a netcdf file")
    out = tmp_path / "bad.h5"
    with pytest.raises(ValueError, match=str(broken)):
        ts.write_store([region["paths"]["A"], str(broken)], DL4GAM_CHANNELS, out)
    assert not out.exists() and not list(tmp_path.glob(".bad.h5.tmp-*"))  # nothing half-written left
    with pytest.raises(ValueError, match="K-class|binary"):
        ts.StoreDataset([(region["paths"]["A"], 40, 40)], DL4GAM_CHANNELS, stats, P, region["store"]).class_counts(3)


def test_training_from_the_store_resumes_after_a_kill_exactly(region, tmp_path):
    ct = patches.centre_table(region["paths"].values(), 16)
    cv = patches.centre_table(region["paths"].values(), 24)
    fi = patches.build_fold_items(ct, cv, region["split"], 0, n_total=6, seed=7)
    stats = region["stats"]
    cfg = {**TINY, "epochs": 3, "keep_last_checkpoint": True, "training_data": "store"}
    full, part = tmp_path / "full", tmp_path / "part"
    kw = dict(test_glaciers=fi.test_glaciers, store=region["store"])
    s_full = train.train_member(fi.train, fi.val, stats, cfg, full, "cpu", **kw)

    def kill(epoch, row):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train.train_member(fi.train, fi.val, stats, cfg, part, "cpu", on_epoch_end=kill, **kw)
    torch.manual_seed(999)
    np.random.seed(999)
    s = train.train_member(fi.train, fi.val, stats, cfg, part, "cpu", **kw)
    assert s["complete"] and s["epochs_done"] == 3
    for name in ("last.pt", "best.pt"):
        a = torch.load(full / name, weights_only=False)["model"]
        b = torch.load(part / name, weights_only=False)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), name
    pd.testing.assert_frame_equal(_metrics(full / "metrics.csv"), _metrics(part / "metrics.csv"))
    # the store is part of the fingerprint: a checkpoint made from it is not resumed from the cubes
    with pytest.raises(RuntimeError, match="other inputs"):
        train.train_member(fi.train, fi.val, stats, {**cfg, "training_data": "cubes"}, full, "cpu",
                           test_glaciers=fi.test_glaciers)
    # and training from the cubes learns nearly the same (float16 inputs): the losses agree closely
    cubes = train.train_member(fi.train, fi.val, stats, {**cfg, "training_data": "cubes"}, tmp_path / "cubes", "cpu",
                               test_glaciers=fi.test_glaciers)
    a, b = _metrics(full / "metrics.csv"), _metrics(tmp_path / "cubes" / "metrics.csv")
    np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=0.05)
    assert s_full["n_train"] == cubes["n_train"]
    with pytest.raises(ValueError, match="needs the model's training store"):
        train.train_member(fi.train, fi.val, stats, cfg, tmp_path / "none", "cpu", test_glaciers=fi.test_glaciers)


def test_projection_channels_from_the_store_equal_the_cube_path(tmp_path):
    """Channels fitted per fold (pca1, pca2 over the 12 Sentinel-2 bands) are computed from the store's layers at
    read, as from the cube's: the decode-then-prepare path, not the fused one."""
    from glaciermap.data.channels import PCA_INPUTS

    def bands(data):
        rng = np.random.default_rng(len(data))
        for b in PCA_INPUTS:
            if b not in data:
                data[b] = (0.3 + 0.05 * rng.normal(size=data["dem"].shape)).astype(np.float32)
        _nan_holes(data)

    lab = scene_labels()
    paths = {g: str(write_cube(tmp_path / "cubes" / g / "2015.nc", lab, IDS, g, seed=k, edit=bands))
             for k, g in enumerate(IDS)}
    channels = ["pca1", "pca2", "dem", "dhdt"]
    split = split_table({"A": "train", "T": "test", "V": "val"})
    stats = patches.fit_fold_normalisation(paths, split, 0, channels)
    assert stats["projection"]["channels"] == ["pca1", "pca2"]
    store = tmp_path / "store.h5"
    layers = ts.write_store(paths.values(), channels, store)["layers"]
    assert set(layers) == set(PCA_INPUTS) | {"dem", "dhdt"}  # the projection's inputs are stored, not pca1
    P = 24
    items = _every_window(paths, P, step=11)
    cube_ds = patches.PatchDataset(items, channels, stats, P, exclude_glaciers={"T"})
    store_ds = ts.StoreDataset(items, channels, stats, P, store, exclude_glaciers={"T"})
    assert not store_ds._fused
    # no float16 hand-over without the fused decode: float32 items as always, batches left as they are
    half = ts.StoreDataset(items, channels, stats, P, store, exclude_glaciers={"T"}, half=True)
    assert not half.half and [t.dtype for t in half[0]] == [torch.float32] * 3
    assert half.device_batch(["x"]) == ["x"]
    with pytest.raises(ValueError, match="fused"):
        half.arrays16(0)
    worst = 0.0
    for i in range(len(items)):
        xc, yc, mc = cube_ds.arrays(i)
        xs, ys, ms = store_ds.arrays(i)
        assert np.array_equal(yc, ys) and np.array_equal(mc, ms)
        worst = max(worst, float(np.abs(xc - xs).max()))
    assert 0 < worst < 0.02


def _store_with_empty_channels(tmp_path):
    """(cube path, store path) of one cube whose B04 and dh/dt layers hold no value at all."""
    def empty(data):
        data["B04"][:] = np.nan
        data["dhdt"][:] = np.nan

    path = str(write_cube(tmp_path / "cubes" / "A" / "2015.nc", scene_labels(), IDS, "A", seed=5, edit=empty))
    store = tmp_path / "store.h5"
    ts.write_store([path], DL4GAM_CHANNELS, store)
    return path, store


def test_a_channel_without_any_value_is_filled_as_on_the_cube_path(tmp_path, region):
    """All-NaN reflectance and dh/dt layers: the training mean (0 normalised) and 0 m/yr, on both paths."""
    path, store = _store_with_empty_channels(tmp_path)
    items = [(path, 40, 40), (path, 2, 70)]
    stats = region["stats"]
    cube_ds = patches.PatchDataset(items, DL4GAM_CHANNELS, stats, 32)
    store_ds = ts.StoreDataset(items, DL4GAM_CHANNELS, stats, 32, store)
    b04, dhdt = DL4GAM_CHANNELS.index("B04"), DL4GAM_CHANNELS.index("dhdt")
    for i in range(2):
        xc, xs = cube_ds.arrays(i)[0], store_ds.arrays(i)[0]
        assert np.allclose(xs[b04], 0.0) and np.allclose(xc[b04], 0.0)
        zero = (0.0 - stats["offset"][dhdt]) / stats["scale"][dhdt]
        assert np.allclose(xs[dhdt], zero, atol=1e-6) and np.allclose(xc[dhdt], zero, atol=1e-6)
        assert np.abs(xc - xs).max() < 0.01


def _bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def test_float16_hand_over_decodes_to_the_same_inputs_bit_for_bit(region, tmp_path):
    """arrays16 then decode_inputs (what the training step runs after .to(device); here on the CPU) give arrays' x
    bit for bit, y and loss mask exactly: windows over the whole cube, across its edges and beyond (NaN outside),
    over the NaN holes (dh/dt zero fill, reflectance patch-mean fill), a cube with all-NaN channels, and batches
    collated by a DataLoader and finished by device_batch."""
    P = 32
    items = _every_window(region["paths"], P)
    ds = ts.StoreDataset(items, DL4GAM_CHANNELS, region["stats"], P, region["store"], exclude_glaciers={"T"}, half=True)
    assert ds.half
    mean_fill = [k for k, c in enumerate(DL4GAM_CHANNELS) if ds._zero_fill[k] is None]
    n_edge = n_patch_fill = 0
    for i in range(len(items)):
        x, y, m = ds.arrays(i)
        x16, y8, m8, coef = ds.arrays16(i)
        assert x16.dtype == np.float16 and y8.dtype == m8.dtype == np.uint8 and coef.shape == (16, 3)
        xd = ts.decode_inputs(torch.from_numpy(x16), torch.from_numpy(coef)).numpy()
        assert xd.dtype == np.float32 and np.array_equal(_bits(xd), _bits(x)), f"window {items[i]}"
        assert np.array_equal(y8, y) and np.array_equal(m8, m)
        _, top, left = ds.window(i)
        n_edge += top < 0 or left < 0 or top + P > 80 or left + P > 80
        n_patch_fill += bool(np.isfinite(coef[mean_fill, 2]).any())
    assert n_edge > 100 and n_patch_fill > 100  # the fills were exercised, not only clean windows

    batches = torch.utils.data.DataLoader(ds, batch_size=7)
    half16 = next(iter(batches))
    assert half16[0].dtype == torch.float16 and half16[3].dtype == torch.float32
    xb, yb, mb = ds.device_batch(list(half16))
    ref = [np.stack(v) for v in zip(*(ds.arrays(i) for i in range(7)))]
    assert np.array_equal(_bits(xb.numpy()), _bits(ref[0]))
    assert yb.dtype == mb.dtype == torch.float32
    assert np.array_equal(yb.numpy(), ref[1]) and np.array_equal(mb.numpy(), ref[2])

    path, store = _store_with_empty_channels(tmp_path)
    items = [(path, 40, 40), (path, 2, 70), (path, -12, 90)]
    ds = ts.StoreDataset(items, DL4GAM_CHANNELS, region["stats"], P, store, half=True)
    for i in range(len(items)):
        x16, _, _, coef = ds.arrays16(i)
        xd = ts.decode_inputs(torch.from_numpy(x16), torch.from_numpy(coef)).numpy()
        assert np.array_equal(_bits(xd), _bits(ds.arrays(i)[0]))
        assert coef[DL4GAM_CHANNELS.index("B04"), 2] == 0.0  # all NaN: the normalised training mean


def test_training_from_float16_batches_equals_training_from_float32_batches(region, tmp_path, monkeypatch):
    """train_member from the store with float16 batches decoded on the device (what it does on a GPU; forced here on
    the CPU): the same weights and metrics as with the store's float32 batches (what it does on the CPU)."""
    ct = patches.centre_table(region["paths"].values(), 16)
    cv = patches.centre_table(region["paths"].values(), 24)
    fi = patches.build_fold_items(ct, cv, region["split"], 0, n_total=6, seed=7)
    cfg = {**TINY, "epochs": 2, "keep_last_checkpoint": True, "training_data": "store"}
    kw = dict(test_glaciers=fi.test_glaciers, store=region["store"])
    made, original = [], ts.StoreDataset

    def store_dataset(force):
        class Forced(original):
            def __init__(self, *a, half, **k):
                made.append(half)  # what train_member asks for
                super().__init__(*a, half=force, **k)
                assert self.half == force

        return Forced

    monkeypatch.setattr(ts, "StoreDataset", store_dataset(False))
    full = train.train_member(fi.train, fi.val, region["stats"], cfg, tmp_path / "f32", "cpu", **kw)
    assert made == [False, False]  # on the CPU train_member keeps float32 batches
    monkeypatch.setattr(ts, "StoreDataset", store_dataset(True))
    half = train.train_member(fi.train, fi.val, region["stats"], cfg, tmp_path / "half", "cpu", **kw)
    assert half["fingerprint"] == full["fingerprint"] and half["best_score"] == full["best_score"]
    for name in ("last.pt", "best.pt"):
        a = torch.load(tmp_path / "half" / name, weights_only=False)["model"]
        b = torch.load(tmp_path / "f32" / name, weights_only=False)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), name
    pd.testing.assert_frame_equal(_metrics(tmp_path / "half" / "metrics.csv"),
                                  _metrics(tmp_path / "f32" / "metrics.csv"))


def test_float16_batches_equal_the_items_in_a_worker_too_and_the_non_finite_flags_are_the_cubes(region, tmp_path):
    """What training's loader yields on a GPU (train.batch_loader -> StoreDataset.batch16: each item written into its
    slot of the batch, in a worker process into shared memory): arrays16's items in the sampler's order, stacked, bit
    for bit, in the same batches as torch's per-item collate; the validation wrapper's indices as one int64 tensor.
    The store's per-layer non-finite flags (which channels a window inside a cube must check) are the cube's own, and
    a store written before the flags existed gives the same items."""
    P = 32
    items = _every_window(region["paths"], P, step=11)
    ds = ts.StoreDataset(items, DL4GAM_CHANNELS, region["stats"], P, region["store"], exclude_glaciers={"T"}, half=True)
    ref = [np.stack(v) for v in zip(*(ds.arrays16(i) for i in range(len(items))))]
    order = [int(i) for i in np.random.default_rng(3).permutation(len(items))]
    n = len(order)
    for workers in (0, 1):
        got = list(train.batch_loader(ds, 5, order, num_workers=workers))
        assert [len(b[0]) for b in got] == [5] * (n // 5) + ([n % 5] if n % 5 else [])
        assert got[0][0].dtype == torch.float16 and got[0][1].dtype == got[0][2].dtype == torch.uint8
        for k in range(4):
            cat = torch.cat([b[k] for b in got]).numpy()
            assert np.array_equal(cat.view(np.uint8), np.ascontiguousarray(ref[k][order]).view(np.uint8)), (workers, k)
    vb = next(iter(train.batch_loader(train._Indexed(ds), 4, torch.utils.data.SequentialSampler(range(n)))))
    assert vb[4].dtype == torch.int64 and vb[4].tolist() == [0, 1, 2, 3]
    assert np.array_equal(vb[0].numpy().view(np.uint16), ref[0][:4].view(np.uint16))

    with h5py.File(region["store"], "r") as f:
        flags = {p: f[ts.store_key(p)].attrs["nonfinite"].astype(bool) for p in region["paths"].values()}
    for p, flag in flags.items():
        x = patches.load_cube(p, DL4GAM_CHANNELS).x
        assert np.array_equal(flag, ~np.isfinite(x).reshape(len(DL4GAM_CHANNELS), -1).all(axis=1)), p
    some = np.any(list(flags.values()), axis=0)
    assert some[DL4GAM_CHANNELS.index("dhdt")] and some[DL4GAM_CHANNELS.index("B04")] and not some.all()

    old = tmp_path / "before_flags.h5"
    old.write_bytes(region["store"].read_bytes())
    with h5py.File(old, "a") as f:
        for p in region["paths"].values():
            del f[ts.store_key(p)].attrs["nonfinite"]
    ds_old = ts.StoreDataset(items, DL4GAM_CHANNELS, region["stats"], P, old, exclude_glaciers={"T"}, half=True)
    for i in range(len(items)):
        assert all(np.array_equal(np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))
                   for a, b in zip(ds_old.arrays16(i), ds.arrays16(i))), items[i]


class _Opener(torch.utils.data.Dataset):
    """(pid of the process, pid that opened the store file the dataset reads) of each item."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        import os

        self.ds.arrays16(i)
        return torch.tensor([os.getpid(), self.ds._h5_pid])


def test_a_forked_worker_opens_the_store_itself(region):
    """A dataset that has read in the training process, then forked into DataLoader workers: each worker reads through
    a file it opened itself, not the parent's HDF5 handle (not meant to be shared across a fork), and gets the same
    items."""
    import os

    P = 32
    items = _every_window(region["paths"], P, step=23)
    ds = ts.StoreDataset(items, DL4GAM_CHANNELS, region["stats"], P, region["store"], exclude_glaciers={"T"}, half=True)
    ref = [ds.arrays16(i)[0] for i in range(len(items))]
    assert ds._h5_pid == os.getpid() and ds._h5 is not None  # open in this process before the fork
    ctx = torch.multiprocessing.get_context("fork")
    pids = torch.cat(list(torch.utils.data.DataLoader(_Opener(ds), batch_size=4, num_workers=2,
                                                      multiprocessing_context=ctx)))
    assert (pids[:, 0] != os.getpid()).all() and (pids[:, 0] == pids[:, 1]).all()
    got = [b[0] for b in train.batch_loader(ds, 4, list(range(len(items))), num_workers=2, multiprocessing_context=ctx)]
    assert np.array_equal(torch.cat(got).numpy().view(np.uint16), np.stack(ref).view(np.uint16))
