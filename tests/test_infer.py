"""Inference: window coverage, blending, cross-glacier batching, nearest-30 filling and the output file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from glaciermap import infer, patches, train
from glaciermap.features import DL4GAM_CHANNELS
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


def test_windows_cover_every_region_pixel():
    rng = np.random.default_rng(0)
    for trial in range(6):
        region = np.zeros((90, 110), bool)
        for _ in range(3):
            r, c = rng.integers(0, 80, 2)
            region[r:r + rng.integers(1, 30), c:c + rng.integers(1, 40)] = True
        for P, stride, border in [(32, 16, 2), (32, 28, 2), (32, 32, 0), (16, 5, 1)]:
            wins = infer.inference_windows(region, P, stride, border)
            cov = np.zeros(region.shape, int)
            for top, left in wins:
                cov[max(top + border, 0):top + P - border, max(left + border, 0):left + P - border] += 1
                assert region[max(top + border, 0):top + P - border, max(left + border, 0):left + P - border].any()
            assert (cov[region] > 0).all(), (trial, P, stride, border)
    with pytest.raises(ValueError, match="stride"):
        infer.inference_windows(region, 32, 30, 2)


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
    kw = dict(patch_size=32, stride=24, blend="mean", batch_size=5, device="cpu")
    a = infer.predict_glaciers(members, order, stats, batch_across_glaciers=True, timings=t_a, **kw)
    b = infer.predict_glaciers(members, order, stats, batch_across_glaciers=False, timings=t_b, **kw)
    assert a[str(sk)] is None and b[str(sk)] is None
    assert t_a["n_patches"] == t_b["n_patches"] and t_a["n_batches"] < t_b["n_batches"]
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
        assert np.isnan(p[:, 0, 0]).all() and np.isfinite(p[:, 40, 20]).all()
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
