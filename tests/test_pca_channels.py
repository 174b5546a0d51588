"""Tasseled Cap channels (Nedkov 2017 coefficients) and the fold-fitted PCA channels of the CryoNet stack."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from glaciermap.data import channels as ch
from glaciermap.segmentation import patches
from test_patches import IDS, scene_labels, write_cube


def _bands(seed, shape=(80, 80), test_value=None, labels=None):
    """12 correlated reflectance bands (two latent factors + noise); ``test_value`` on glacier T's pixels."""
    rng = np.random.default_rng(seed)
    f1, f2 = rng.random(shape), rng.random(shape)
    load = np.linspace(0.2, 1.0, 12)
    out = {}
    for i, b in enumerate(ch.S2_BANDS):
        v = 0.1 + 0.4 * load[i] * f1 + 0.2 * (1 - load[i]) * f2 + 0.02 * rng.normal(size=shape)
        if test_value is not None:
            v = np.where(labels == 1, test_value, v)
        out[b] = v.astype(np.float32)
    return out


def _cube(path, seed, test_value=None, glacier="A", nan_px=None):
    lab = scene_labels()

    def edit(data):
        data.update(_bands(seed, lab.shape, test_value, lab))
        if nan_px is not None:
            data["B05"][nan_px] = np.nan

    return write_cube(path, lab, IDS, glacier, seed=seed, edit=edit)


def test_tasseled_cap_is_the_coefficient_sum_and_a_stored_layer():
    rng = np.random.default_rng(1)
    bands = {b: rng.random((5, 6)).astype(np.float32) for b in ch.S2_BANDS}
    bands["B03"][0, 0] = np.nan
    ctx = ch.LayerContext(10.0, bands=bands)
    for comp, coef in ch.TASSELED_CAP.items():
        got = ch.compute_layer(f"tc_{comp}", ctx)
        want = sum(np.float64(c) * bands[b].astype(np.float64) for b, c in coef.items())
        np.testing.assert_allclose(got, want, rtol=1e-5, equal_nan=True)
        assert np.isnan(got[0, 0])
    # Nedkov (2017): brightness is all-positive, wetness negative in the SWIR
    assert min(ch.TASSELED_CAP["brightness"].values()) > 0
    assert ch.TASSELED_CAP["wetness"]["B12"] < 0 < ch.TASSELED_CAP["wetness"]["B03"]
    assert ch.cube_layers(["tc_wetness"])[0] == ["tc_wetness"]


def test_pca_channels_are_not_layers_their_bands_are():
    layers, sources = ch.cube_layers(["B04", "pca1", "pca3", "slope"])
    assert layers[:2] == ["B04", "slope"]
    assert sorted(layers[2:]) == sorted(b for b in ch.S2_BANDS if b != "B04")
    assert "pca1" not in layers and sources == ["sentinel2", "dem"]
    assert ch.projection_channels(["B04", "pca2", "ndsi"]) == ["pca2"]
    with pytest.raises(ValueError, match="computed per fold"):
        ch.compute_layer("pca1", ch.LayerContext(10.0, bands={}))


def test_fit_projection_equals_scikit_learn_on_training_pixels_only(tmp_path):
    a = _cube(tmp_path / "a.nc", 0, glacier="A")
    proj = patches.fit_projection([a], ["pca1", "pca2"], exclude_glaciers=["T"], max_pixels=10**9)
    assert proj["channels"] == ["pca1", "pca2"] and proj["inputs"] == ch.S2_BANDS
    # the same pixels by hand: everything except T + 50 m, through scikit-learn
    cube = patches.load_cube(a, ch.S2_BANDS)
    keep = ~patches.exclusion_zone(cube.labels, cube.glacier_ids, ["T"], cube.resolution, 50.0, edge_guard=False)
    ref = PCA(n_components=2, svd_solver="full").fit(cube.x[:, keep].T.astype(np.float64))
    np.testing.assert_allclose(proj["components"], ref.components_, atol=1e-6)
    np.testing.assert_allclose(proj["mean"], ref.mean_, atol=1e-7)
    assert proj["explained_variance_ratio"][0] > 0.5          # two latent factors: the first dominates
    # the test glacier's pixels never enter the fit: changing them changes nothing
    b = _cube(tmp_path / "b.nc", 0, test_value=5.0, glacier="A")
    proj_b = patches.fit_projection([b], ["pca1", "pca2"], exclude_glaciers=["T"], max_pixels=10**9)
    np.testing.assert_allclose(proj_b["components"], proj["components"], atol=1e-9)
    # ... but they do when T is not excluded
    proj_c = patches.fit_projection([b], ["pca1", "pca2"], exclude_glaciers=[], max_pixels=10**9)
    assert not np.allclose(proj_c["mean"], proj["mean"])


def test_load_cube_projects_with_the_fold_components_and_nan_stays_nan(tmp_path):
    nan_px = (np.array([3]), np.array([4]))
    a = _cube(tmp_path / "a.nc", 2, nan_px=nan_px)
    proj = patches.fit_projection([a], ["pca1", "pca2", "pca3"], max_pixels=5000, seed=3)
    assert proj["n_pixels"] == 5000
    cube = patches.load_cube(a, ["slope", "pca2", "B04", "pca1"], projection=proj)
    assert cube.channels == ["slope", "pca2", "B04", "pca1"]
    raw = patches.load_cube(a, ch.S2_BANDS)
    sk = PCA(n_components=3)
    sk.mean_, sk.components_ = np.asarray(proj["mean"]), np.asarray(proj["components"])
    sk.whiten, sk.explained_variance_ = False, np.ones(3)
    flat = raw.x.reshape(12, -1).T.astype(np.float64)
    ok = np.isfinite(flat).all(1)
    want = np.full((flat.shape[0], 3), np.nan)
    want[ok] = sk.transform(flat[ok])
    np.testing.assert_allclose(cube.x[3].ravel(), want[:, 0], atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(cube.x[1].ravel(), want[:, 1], atol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(cube.x[2], raw.x[3])                     # B04 as stored
    assert np.isnan(cube.x[3][3, 4]) and np.isfinite(cube.x[0][3, 4])
    with pytest.raises(ValueError, match="pca2, pca1.*projection"):
        patches.load_cube(a, ["slope", "pca2", "B04", "pca1"])


def test_fold_normalisation_carries_the_projection_and_patches_use_it(tmp_path):
    a = _cube(tmp_path / "a.nc", 4, glacier="A")
    stats = patches.fit_normalisation([a], ["pca1", "ndsi", "pca2"], exclude_glaciers=["T"])
    proj = stats["projection"]
    assert proj["channels"] == ["pca1", "pca2"]
    assert stats["transform"] == ["standardise", "none", "standardise"]
    # pca channels are centred by construction: their pooled mean over the fit pixels is ~0
    assert abs(stats["mean"][0]) < 0.02 * stats["std"][0]
    assert "projection" not in patches.fit_normalisation([a], ["ndsi", "B04"])
    ds = patches.PatchDataset([(str(a), 40, 20)], ["pca1", "ndsi", "pca2"], stats, 32, exclude_glaciers=["T"])
    x, y, m = ds.arrays(0)
    cube = patches.load_cube(a, ["pca1", "ndsi", "pca2"], projection=proj)
    raw = patches.extract(cube.x, 24, 4, 32, np.nan)
    np.testing.assert_allclose(x, patches.prepare_patch(raw, ["pca1", "ndsi", "pca2"], stats), atol=1e-6)
    # the first component of correlated bands varies a lot across the patch (not a constant fill)
    assert x[0].std() > 0.3
