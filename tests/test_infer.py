"""Inference: window coverage, blending, cross-glacier batching, nearest-30 filling and the output file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from glaciermap.segmentation import infer, patches, train
from glaciermap.data.features import DL4GAM_CHANNELS
from glaciermap.io import read_status, skip_dataset, write_netcdf_atomic
from test_patches import CRS, IDS, scene_labels, write_cube


class Const(torch.nn.Module):
    def __init__(self, logit):
        super().__init__()
        self.logit = logit

    def forward(self, x):
        return torch.full((x.shape[0], 1) + x.shape[2:], self.logit)


def pointwise(channel=0, scale=1.0):
    """1x1 convolution reading one input channel: its prediction does not depend on the window."""
    m = torch.nn.Conv2d(16, 1, 1, bias=False)
    with torch.no_grad():
        m.weight.zero_()
        m.weight[0, channel] = scale
    return m


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    d = tmp_path_factory.mktemp("cubes")
    lab = scene_labels()
    cloud = np.zeros(lab.shape, bool)
    cloud[25:29, 12:16] = True                      # inside A
    cloud[18:21, 8:12] = True                       # A's buffer edge
    paths = {g: write_cube(d / f"{g}.nc", lab, IDS, g, seed=k, cloud=cloud) for k, g in enumerate(IDS)}
    sk = d / "S.nc"
    write_netcdf_atomic(sk, skip_dataset("S", "2015", "no usable image", "select"))
    stats = patches.fit_normalisation([paths["A"]], DL4GAM_CHANNELS)
    return paths, sk, stats, cloud


def _reference_windows(region, P, stride, extras=False):
    """Independent re-implementation of the reference's test-time windows (DL4GAM ``get_patches_df``).

    The reference takes every pixel (y, x) of the 50 m buffer mask with y % stride == 0 and x % stride == 0
    as a patch centre (so the grid is anchored at the cube's row/col 0) and cuts [y - P/2, y + P/2) x
    [x - P/2, x + P/2); its cubes have a margin of P/2 + 50 m, so no window leaves the cube. At test time
    it adds 4 "extreme" centres (the leftmost column at the mean row of its buffer pixels, the top row at
    the mean column of its pixels, the rightmost column, the bottom row) and the buffer centroid, both
    truncated to int and kept even when they repeat a grid centre.
    Returns the top-left corners (row, col) in that order.
    """
    ys, xs = np.where(region)
    keep = (ys % stride == 0) & (xs % stride == 0)
    centres = list(zip(ys[keep].tolist(), xs[keep].tolist()))
    if extras:
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
        centres += [(int(np.mean(ys[xs == x0])), x0), (y0, int(np.mean(xs[ys == y0]))),
                    (int(np.mean(ys[xs == x1])), x1), (y1, int(np.mean(xs[ys == y1]))),
                    (int(np.mean(ys)), int(np.mean(xs)))]
    return [(int(y) - P // 2, int(x) - P // 2) for y, x in centres]


def _counted(wins, shape, P, border):
    """How many windows count each pixel (window minus ``border`` px on each side, cut at the cube)."""
    cov = np.zeros(shape, int)
    for top, left in wins:
        cov[max(top + border, 0):max(top + P - border, 0), max(left + border, 0):max(left + P - border, 0)] += 1
    return cov


@pytest.mark.parametrize("centre", [(320, 320), (301, 287)])
def test_windows_reproduce_the_reference_grid(centre):
    """640 x 640 cube, round glacier buffer of radius 60 px, 256 px windows at stride 32 with the mean
    blending's 13 px border: the windows are exactly the reference's (every stride-grid point in the buffer
    is a window centre); the old bounding-box grid placed 1 window here."""
    yy, xx = np.mgrid[:640, :640]
    region = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= 60 ** 2
    P, s, b = 256, 32, infer.border_px(256, 0.05)
    assert b == 13
    wins = infer.inference_windows(region, P, s, b)
    ref = _reference_windows(region, P, s)
    assert len(wins) == len(ref) > 1
    assert sorted(map(tuple, wins.tolist())) == sorted(ref)
    # same windows, so the same per-pixel overlap count under mean blending
    np.testing.assert_array_equal(_counted(wins, region.shape, P, b), _counted(ref, region.shape, P, b))
    # with the reference's extreme and centroid windows: the same multiset (a repeated window is kept)
    wx = infer.inference_windows(region, P, s, b, reference_extras=True)
    rx = _reference_windows(region, P, s, extras=True)
    assert len(wx) == len(rx) == len(ref) + 5
    assert sorted(map(tuple, wx.tolist())) == sorted(rx)


def _random_regions(rng):
    """Masks of several kinds: rectangles, blobs touching the cube edge, scattered pixels, thin lines."""
    for trial in range(6):
        region = np.zeros((90, 110), bool)
        for _ in range(3):
            r, c = rng.integers(0, 80, 2)
            region[r:r + rng.integers(1, 30), c:c + rng.integers(1, 40)] = True
        yield region
    yy, xx = np.mgrid[:70, :95]
    for _ in range(3):
        cy, cx, rad = rng.integers(0, 70), rng.integers(0, 95), rng.integers(3, 40)
        yield (yy - cy) ** 2 + (xx - cx) ** 2 <= rad ** 2          # often cut by the cube edge
    yield rng.random((75, 60)) < 0.02                              # isolated pixels, some on the edge
    line = np.zeros((64, 64), bool)
    line[np.arange(64), np.arange(64)] = True                      # a 1 px diagonal through the corners
    yield line
    yield np.ones((20, 26), bool)                                  # cube smaller than the patch


@pytest.mark.parametrize("P, stride, border", [(32, 16, 2), (32, 28, 2), (32, 32, 0), (16, 5, 1), (24, 7, 3), (32, 8, 0)])
def test_windows_cover_every_region_pixel(P, stride, border):
    """Every region pixel is in the counted part (window minus the border) of some window; every window's
    counted part holds a region pixel; grid windows are not repeated."""
    rng = np.random.default_rng(P * 1000 + stride * 10 + border)
    for k, region in enumerate(_random_regions(rng)):
        wins = infer.inference_windows(region, P, stride, border)
        assert wins.dtype == np.int64 and wins.shape == (len(wins), 2)
        assert len({tuple(w) for w in wins.tolist()}) == len(wins), k
        for top, left in wins:
            assert region[max(top + border, 0):top + P - border, max(left + border, 0):left + P - border].any(), k
        cov = _counted(wins, region.shape, P, border)
        assert (cov[region] > 0).all(), (k, P, stride, border)
        np.testing.assert_array_equal(infer.inference_windows(region, P, stride, border), wins)   # reproducible
        wx = infer.inference_windows(region, P, stride, border, reference_extras=True)
        assert (_counted(wx, region.shape, P, border)[region] > 0).all()
    assert len(infer.inference_windows(np.zeros((40, 40), bool), P, stride, border)) == 0
    with pytest.raises(ValueError, match="stride"):
        infer.inference_windows(region, P, P - 2 * border + 1, border)


@pytest.mark.parametrize("P, stride, border", [(32, 16, 2), (32, 8, 0), (16, 5, 1), (24, 7, 3)])
def test_windows_inside_the_cube(P, stride, border):
    """Along an axis of n >= P px a window lies inside the cube unless it holds a region pixel within
    ``border`` px of the cube edge, and then only its dropped border reaches out: the counted part stays in
    the cube (also for P - 2 border <= n < P). An axis of n <= P - 2 border px gets one window, centred.
    With a margin of P/2 around the region (the cubes' layout) every reference grid window is used as is."""
    rng = np.random.default_rng(P + stride + border)
    kept = P - 2 * border
    for k, region in enumerate(_random_regions(rng)):
        wins = infer.inference_windows(region, P, stride, border)
        assert len(wins), k
        edge_band = region.copy()
        edge_band[border:region.shape[0] - border, border:region.shape[1] - border] = False
        for n, starts in zip(region.shape, wins.T):
            if n <= kept:
                assert (starts == (n - P) // 2).all(), k
                continue
            assert (starts >= -border).all() and (starts <= n - P + border).all(), k
            if n >= P and not edge_band.any():
                assert (starts >= 0).all() and (starts <= n - P).all(), k
        pad = P // 2 + stride
        big = np.zeros((region.shape[0] + 2 * pad, region.shape[1] + 2 * pad), bool)
        big[pad:-pad, pad:-pad] = region
        bw = {tuple(w) for w in infer.inference_windows(big, P, stride, border).tolist()}
        assert set(_reference_windows(big, P, stride)) <= bw, k
        assert all(0 <= t <= big.shape[0] - P and 0 <= c <= big.shape[1] - P for t, c in bw), k


def test_blend_weights():
    w = infer.blend_weights(20, "mean", 0.05)
    assert w[0].sum() == 0 and w[:, 0].sum() == 0 and w[1:19, 1:19].min() == 1
    h = infer.blend_weights(20, "hann", floor=0.01)
    assert h.min() >= 0.01 and h.max() <= 1 and np.allclose(h, h.T) and h[10, 10] > 0.95


@pytest.mark.parametrize("blend", ["hann", "mean"])
def test_blending_constant_and_pointwise(cubes, blend):
    paths, _, stats, _ = cubes
    out = infer.predict_glaciers([Const(0.3)], [paths["A"]], stats, patch_size=32, stride=12, blend=blend,
                                 batch_size=7, device="cpu")[str(paths["A"])]
    c = patches.load_cube(paths["A"])
    pred = np.isfinite(out[0])
    assert pred[c.buffer50].all() and not pred.all()
    np.testing.assert_allclose(out[0][pred], 1 / (1 + np.exp(-0.3)), rtol=1e-6)
    # a pointwise model: every blend must give back its own per-pixel value (masked pixels are filled, skip them)
    out = infer.predict_glaciers([pointwise(0, 0.5), pointwise(3, -0.2)], [paths["A"]], stats, patch_size=32, stride=12,
                                 blend=blend, device="cpu")[str(paths["A"])]
    xn = patches.normalise(c.x, stats)
    for k, (ch, s) in enumerate([(0, 0.5), (3, -0.2)]):
        exp = 1 / (1 + np.exp(-s * xn[ch]))
        ok = np.isfinite(out[k]) & ~(c.masked & c.buffer50)
        np.testing.assert_allclose(out[k][ok], exp[ok], rtol=1e-5, atol=1e-6)


def test_nearest_fill_equals_brute_force():
    rng = np.random.default_rng(3)
    H, W = 23, 19
    probs = rng.random((2, H, W)).astype(np.float32)
    masked = rng.random((H, W)) < 0.25
    valid = ~masked & (rng.random((H, W)) < 0.8)
    got = infer.fill_nearest_mean(probs, masked, valid, k=30)
    vr, vc = np.nonzero(valid)
    exp = probs.copy()
    for r, c in zip(*np.nonzero(masked)):
        d = np.hypot(vr - r, vc - c)
        dk = np.sort(d)[29]
        sel = d <= dk + 1e-9
        assert sel.sum() >= 30
        exp[:, r, c] = probs[:, vr[sel], vc[sel]].mean(1)
    np.testing.assert_allclose(got, exp, rtol=1e-6)
    assert not np.allclose(got[:, masked], probs[:, masked])
    np.testing.assert_array_equal(got[:, ~masked], probs[:, ~masked])
    # fewer valid pixels than k: all of them
    few = np.zeros((H, W), bool)
    few[0, :5] = True
    f = infer.fill_nearest_mean(probs[0], masked & ~few, few, k=30)
    np.testing.assert_allclose(f[masked & ~few], probs[0][few].mean(), rtol=1e-6)


def test_masked_pixels_filled_in_prediction(cubes):
    paths, _, stats, cloud = cubes
    kw = dict(patch_size=32, stride=16, blend="hann", device="cpu")
    raw = infer.predict_glaciers([pointwise()], [paths["A"]], stats, fill_masked=False, **kw)[str(paths["A"])]
    filled = infer.predict_glaciers([pointwise()], [paths["A"]], stats, **kw)[str(paths["A"])]
    c = patches.load_cube(paths["A"])
    m = c.masked & c.buffer50
    assert m.sum() > 10
    np.testing.assert_allclose(filled, infer.fill_nearest_mean(raw, m, c.buffer50 & ~c.masked), rtol=1e-6)
    assert not np.allclose(filled[0][m], raw[0][m])
    np.testing.assert_array_equal(filled[0][cloud & ~c.buffer50], raw[0][cloud & ~c.buffer50])


def test_cross_glacier_batching_equals_per_glacier_calls(cubes):
    paths, sk, stats, _ = cubes
    members = [train.build_model("Unet", "resnet18", 16, None, seed=s, decoder_channels=(16, 16, 8, 8, 8)).eval()
               for s in (1, 2)]
    order = [paths["A"], sk, paths["V"], paths["T"]]
    t_a, t_b = {}, {}
    kw = dict(patch_size=32, stride=24, blend="mean", batch_size=4, device="cpu")
    a = infer.predict_glaciers(members, order, stats, batch_across_glaciers=True, timings=t_a, **kw)
    b = infer.predict_glaciers(members, order, stats, batch_across_glaciers=False, timings=t_b, **kw)
    assert a[str(sk)] is None and b[str(sk)] is None
    n = [len(infer.inference_windows(patches.load_cube(p).buffer50, 32, 24, infer.border_px(32, 0.05)))
         for p in (paths["A"], paths["V"], paths["T"])]
    assert t_a["n_patches"] == t_b["n_patches"] == sum(n)
    assert t_a["n_batches"] == -(-sum(n) // 4) < t_b["n_batches"] == sum(-(-k // 4) for k in n)
    for p in (paths["A"], paths["V"], paths["T"]):
        x, y = a[str(p)], b[str(p)]
        assert x.shape == (2,) + scene_labels().shape
        assert np.array_equal(np.isnan(x), np.isnan(y))
        np.testing.assert_allclose(x[np.isfinite(x)], y[np.isfinite(y)], atol=1e-5)
    assert not np.allclose(a[str(paths["A"])][0], a[str(paths["A"])][1], equal_nan=True)   # members differ


def test_write_predictions_and_files(tmp_path, cubes):
    paths, sk, stats, _ = cubes
    outs = [tmp_path / "A.nc", tmp_path / "S.nc"]
    t = infer.predict_to_files([pointwise(0, 0.5), pointwise(1, 0.5), pointwise(2, 0.5)], [paths["A"], sk], outs, stats,
                               members=[3, 4, 5], attrs={"fold": 1}, patch_size=32, stride=16, device="cpu")
    assert t["n_cubes"] == 1 and t["model_s"] > 0
    assert read_status(outs[1])["status"] == "skipped" and read_status(outs[1])["reason"] == "no usable image"
    with xr.open_dataset(outs[0], engine="h5netcdf", decode_coords="all") as ds, \
            xr.open_dataset(paths["A"], engine="h5netcdf", decode_coords="all") as cube:
        assert ds["prob"].dims == ("member", "y", "x") and list(ds["member"].values) == [3, 4, 5]
        assert ds.rio.crs.to_string() == CRS == cube.rio.crs.to_string()
        np.testing.assert_array_equal(ds["x"].values, cube["x"].values)
        p = ds["prob"].values
        np.testing.assert_allclose(ds["mu"].values, p.mean(0), rtol=1e-6)
        np.testing.assert_allclose(ds["sigma"].values, p.std(0), rtol=1e-5, atol=1e-7)
        seen = np.zeros(p.shape[1:], bool)             # hann: every pixel of a window is predicted, none outside
        for top, left in infer.inference_windows(patches.load_cube(paths["A"]).buffer50, 32, 16, 0):
            seen[max(top, 0):top + 32, max(left, 0):left + 32] = True
        assert 0 < seen.sum() < seen.size and seen[40, 20]
        assert np.isnan(p[:, ~seen]).all() and np.isfinite(p[:, seen]).all()
        assert ds.attrs["glacier_id"] == "A" and ds.attrs["fold"] == 1
    infer.write_predictions(tmp_path / "u8.nc", p, paths["A"], dtype="uint8")
    with xr.open_dataset(tmp_path / "u8.nc", engine="h5netcdf") as ds:
        q = ds["prob"].values
        assert np.array_equal(np.isnan(q), np.isnan(p))
        np.testing.assert_allclose(q[np.isfinite(q)], p[np.isfinite(p)], atol=0.5 / 250 + 1e-6)


def test_channels_last_gives_the_same_probabilities(cubes):
    """The NHWC layout inference runs in by default changes the numbers only by float rounding."""
    paths, _, stats, _ = cubes
    members = [train.build_model("Unet", "resnet18", 16, None, seed=s, decoder_channels=(16, 16, 8, 8, 8)).eval()
               for s in (1, 2)]
    kw = dict(patch_size=32, stride=24, blend="hann", batch_size=4, device="cpu")
    order = [paths["A"], paths["T"]]
    nhwc = infer.predict_glaciers(members, order, stats, channels_last=True, **kw)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in members[0].parameters() if p.ndim == 4)
    nchw = infer.predict_glaciers(members, order, stats, channels_last=False, **kw)
    assert all(p.is_contiguous() for p in members[0].parameters())
    for p in order:
        x, y = nhwc[str(p)], nchw[str(p)]
        assert np.array_equal(np.isnan(x), np.isnan(y)) and np.isfinite(x).any()
        np.testing.assert_allclose(x[np.isfinite(x)], y[np.isfinite(y)], atol=1e-5)


class Shifted(torch.nn.Module):
    """Reads the pixel to the right (a 1x3 kernel): not mirror-symmetric, so flip averaging changes it."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(16, 1, (1, 3), padding=(0, 1), bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 0, 2] = 1.0

    def forward(self, x):
        return self.conv(x)


def test_flip_averaging_mirrors_back_and_averages(cubes):
    """flips=2: each window also run left-right mirrored, mirrored back, averaged. A pointwise model is
    unchanged; a model reading its right neighbour becomes the mean of reading the right and the left one."""
    paths, _, stats, _ = cubes
    # mean blending drops each window's 2 border px, so no counted pixel has a window edge (zero padding) beside it
    kw = dict(patch_size=32, stride=12, blend="mean", batch_size=5, device="cpu", fill_masked=False)
    a = str(paths["A"])
    one = infer.predict_glaciers([pointwise(0, 0.5)], [a], stats, flips=1, **kw)[a]
    four = infer.predict_glaciers([pointwise(0, 0.5)], [a], stats, flips=4, **kw)[a]
    np.testing.assert_allclose(four, one, atol=1e-6, equal_nan=True)
    two = infer.predict_glaciers([Shifted()], [a], stats, flips=2, **kw)[a][0]
    xn = np.nan_to_num(patches.normalise(patches.load_cube(paths["A"]).x, stats)[0])
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    right, left = np.roll(xn, -1, axis=1), np.roll(xn, 1, axis=1)
    exp = (sig(right) + sig(left)) / 2
    c = patches.load_cube(paths["A"])
    inner = c.buffer50 & np.isfinite(two)
    inner[:, [0, -1]] = False
    # the cube's edge columns and pixels beside a missing value see a zero there: the mean of both neighbours elsewhere
    ok = inner & np.isfinite(patches.normalise(c.x, stats)).all(0)
    ok &= np.roll(ok, 1, axis=1) & np.roll(ok, -1, axis=1)
    assert ok.sum() > 100
    np.testing.assert_allclose(two[ok], exp[ok], atol=1e-5)
    assert np.abs(two[ok] - sig(right)[ok]).max() > 0.05      # flip averaging did change this model
    with pytest.raises(ValueError, match="flips must be"):
        infer.predict_glaciers([Shifted()], [a], stats, flips=3, **kw)


def test_bfloat16_autocast_stays_close_to_float32(cubes):
    paths, _, stats, _ = cubes
    m = train.build_model("Unet", "resnet18", 16, None, seed=1, decoder_channels=(16, 16, 8, 8, 8)).eval()
    kw = dict(patch_size=32, stride=24, blend="hann", batch_size=4, device="cpu")
    a = str(paths["A"])
    f32 = infer.predict_glaciers([m], [a], stats, precision="float32", **kw)[a]
    b16 = infer.predict_glaciers([m], [a], stats, precision="bfloat16", **kw)[a]
    assert b16.dtype == np.float32 and np.array_equal(np.isnan(f32), np.isnan(b16))
    d = np.abs(f32 - b16)[np.isfinite(f32)]
    assert d.max() < 0.05 and d.max() > 0      # rounded convolutions: close, not the same numbers
    with pytest.raises(ValueError, match="precision must be"):
        infer.predict_glaciers([m], [a], stats, precision="float16", **kw)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_infer_settings_flips_and_precision_reach_the_predictions(tmp_path, cubes, precision):
    """`infer.flips` and `infer.precision` of the config are what the infer rule's predict_files runs with."""
    paths, _, stats, _ = cubes
    a = str(paths["A"])
    cfg = {"stride": 12, "blend": "mean", "batch_size": 5, "flips": 2, "precision": precision}
    out = tmp_path / f"A_{precision}.nc"
    infer.predict_files([Shifted()], [a], [out], stats, [0], cfg, 32, "cpu")
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        got = ds["prob"].values[0]
    kw = dict(patch_size=32, stride=12, blend="mean", batch_size=5, device="cpu")
    want = infer.predict_glaciers([Shifted()], [a], stats, flips=2, precision=precision, **kw)[a][0]
    one = infer.predict_glaciers([Shifted()], [a], stats, flips=1, precision=precision, **kw)[a][0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(want)], atol=1e-6)
    assert np.nanmax(np.abs(got - one)) > 0.05            # not the single-pass prediction
    defaults = {k: v for k, v in cfg.items() if k not in ("flips", "precision")}
    infer.predict_files([Shifted()], [a], [tmp_path / "d.nc"], stats, [0], defaults, 32, "cpu")
    with xr.open_dataset(tmp_path / "d.nc", engine="h5netcdf") as ds:
        np.testing.assert_allclose(ds["prob"].values[0], infer.predict_glaciers(
            [Shifted()], [a], stats, **kw)[a][0], atol=1e-6, equal_nan=True)   # without the keys: 1 flip, float32
