"""Patch locations, per-member subsampling, the no-leak loss mask, NaN filling and normalisation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine
from scipy.ndimage import distance_transform_edt
from scipy.spatial.distance import cdist

from glaciermap.segmentation import patches
from glaciermap.data.features import DL4GAM_CHANNELS, cube_dataset, cube_encoding
from glaciermap.io import skip_dataset, write_netcdf_atomic

CRS = "EPSG:32632"
RES = 10.0
IDS = ["A", "T", "V"]          # sorted, as the cubes store them


def scene_labels(h=80, w=80):
    """Train glacier A, test glacier T 40 m east of it, validation glacier V 50 m east of T."""
    lab = np.full((h, w), -1, np.int32)
    lab[20:60, 10:30] = 0    # A
    lab[22:58, 34:50] = 1    # T
    lab[20:60, 55:70] = 2    # V
    return lab


def write_cube(path, labels, ids, glacier_id, seed=0, cloud=None, nodata=None, edit=None, left=400000.0, top=5100000.0):
    """A cube in the features.py format (layer stack + masks, features.cube_dataset); ``edit(data)`` may change the arrays before writing."""
    h, w = labels.shape
    rng = np.random.default_rng(seed)
    data = {c: rng.normal(size=(h, w)).astype(np.float32) for c in DL4GAM_CHANNELS}
    data["dem"] = (3000 + 200 * rng.random((h, w))).astype(np.float32)
    data["slope"] = (60 * rng.random((h, w))).astype(np.float32)
    data["B04"] = (0.5 + 0.1 * data["B04"]).astype(np.float32)
    own = ids.index(glacier_id)
    gl = labels == own
    others = (labels >= 0) & ~gl
    dist = distance_transform_edt(~gl) * RES
    data["mask_glacier_id"] = labels.astype(np.int32)
    data["mask_glacier"] = gl.astype(np.uint8)
    data["mask_buffer_20m"] = ((dist <= 20) & ~others).astype(np.uint8)
    data["mask_buffer_50m"] = ((dist <= 50) & ~others).astype(np.uint8)
    data["mask_cloud"] = (np.zeros((h, w), bool) if cloud is None else cloud).astype(np.uint8)
    data["mask_nodata"] = (np.zeros((h, w), bool) if nodata is None else nodata).astype(np.uint8)
    if edit is not None:
        edit(data)
    x = left + RES / 2 + RES * np.arange(w)
    y = top - RES / 2 - RES * np.arange(h)
    masks = {k: data.pop(k) for k in list(data) if k.startswith("mask_")}
    ds = cube_dataset(data, masks, x, y, ids, CRS, Affine(RES, 0.0, left, 0.0, -RES, top),
                      attrs={"glacier_id": glacier_id, "epoch": "2015", "status": "ok", "reason": ""})
    write_netcdf_atomic(path, ds, cube_encoding(ds))
    return path


def split_table(roles: dict, fold: int = 0, n_folds: int = 5) -> pd.DataFrame:
    rows = {"glac_id": list(roles)}
    for k in range(n_folds):
        rows[f"role_{k}"] = [roles[g] if k == fold else "train" for g in roles]
    return pd.DataFrame(rows)


def identity_stats(channels=DL4GAM_CHANNELS):
    return {"channels": list(channels), "offset": [0.0] * len(channels), "scale": [1.0] * len(channels)}


@pytest.fixture
def scene(tmp_path):
    lab = scene_labels()
    cloud = np.zeros(lab.shape, bool)
    cloud[62:66, 12:20] = True            # a cloud below A, away from T
    paths = {g: write_cube(tmp_path / f"{g}.nc", lab, IDS, g, seed=k, cloud=cloud) for k, g in enumerate(IDS)}
    return lab, paths, cloud


# ---------------------------------------------------------------------------------------------------- locations


def test_patch_centres_grid_inside_buffer_plus_centroid(scene):
    lab, paths, _ = scene
    with patches.open_cube(paths["A"]) as ds:
        buf = ds["mask_buffer_50m"].values.astype(bool)
        cen = patches.patch_centres(ds, stride=4)
    rr, cc = np.nonzero(lab == 0)
    assert tuple(cen[0]) == (round(rr.mean()), round(cc.mean()))
    grid = cen[1:]
    assert (grid % 4 == 0).all()
    assert buf[grid[:, 0], grid[:, 1]].all()
    # every grid point inside the buffer is there, exactly once (the centroid is not repeated)
    expected = buf[::4, ::4].sum() - int(buf[cen[0][0], cen[0][1]] and (cen[0] % 4 == 0).all())
    assert len(grid) == expected == len({tuple(c) for c in grid})
    # the same from a path and from the loaded arrays
    assert np.array_equal(patches.patch_centres(paths["A"], 4), cen)


def test_subsample_count_formula_and_determinism():
    n = {"g1": 1, "g2": 5, "g3": 12, "g4": 40, "g5": 7}
    counts, f = patches.subsample_counts(n, fraction=0.5)
    assert counts == {g: 1 + int(np.floor((k - 1) * 0.5 + 0.5)) for g, k in n.items()}
    counts, f = patches.subsample_counts(n, n_total=30)
    assert sum(counts.values()) == 30
    for g, k in n.items():
        raw = 1 + (k - 1) * f
        assert counts[g] in (int(np.floor(raw)), int(np.ceil(raw)))
    assert sum(patches.subsample_counts(n, n_total=1000)[0].values()) == sum(n.values())   # capped
    assert sum(patches.subsample_counts(n, n_total=2)[0].values()) == len(n)               # one per glacier

    rng = np.random.default_rng(1)
    centres = {g: rng.integers(0, 500, (k, 2)) for g, k in n.items()}
    a = patches.sample_patches(centres, n_total=30, seed=3)
    b = patches.sample_patches(centres, n_total=30, seed=3)
    c = patches.sample_patches(centres, n_total=30, seed=4)
    assert all(np.array_equal(a[g], b[g]) for g in n)
    assert any(not np.array_equal(a[g], c[g]) for g in n)
    for g in n:
        assert len(a[g]) == counts[g]
        assert np.array_equal(a[g][0], centres[g][0])              # centroid kept
        assert len({tuple(r) for r in a[g]}) == len(a[g])          # no duplicates


def _fold(paths, stride_train=4, stride_val=8, **kw):
    split = split_table({"A": "train", "T": "test", "V": "val"})
    ct = patches.centre_table(paths.values(), stride_train)
    cv = patches.centre_table(paths.values(), stride_val)
    return patches.build_fold_items(ct, cv, split, 0, **kw), split


def test_fold_items_come_from_their_role_only(scene):
    _, paths, _ = scene
    fi, _ = _fold(paths)
    assert {p for p, _, _ in fi.train} == {str(paths["A"])}
    assert {p for p, _, _ in fi.val} == {str(paths["V"])}
    assert fi.test_glaciers == {"T"} and fi.train_cubes == [str(paths["A"])]
    half, _ = _fold(paths, fraction=0.5, seed=1)
    assert len(half.train) == 1 + round((fi.n_train_all - 1) * 0.5)


# ---------------------------------------------------------------------------------------------------- no leak


def test_no_leak_rule_masks_test_glacier_and_50m(scene):
    lab, paths, cloud = scene
    fi, _ = _fold(paths)
    P = 32
    # the 50 m zone around T by brute force (pixel-centre distances), independent of the implementation
    t_pix = np.argwhere(lab == 1)
    all_pix = np.argwhere(np.ones(lab.shape, bool))
    zone = (cdist(all_pix, t_pix).min(1) * RES <= 50).reshape(lab.shape)
    assert zone.sum() > (lab == 1).sum()
    stats = identity_stats()
    seen = 0
    for items in (fi.train, fi.val):
        ds = patches.PatchDataset(items, DL4GAM_CHANNELS, stats, P, exclude_glaciers=fi.test_glaciers)
        leaky = patches.PatchDataset(items, DL4GAM_CHANNELS, stats, P, exclude_glaciers=())
        for i in range(len(ds)):
            x, y, m = (t.numpy() for t in ds[i])
            assert x.shape == (16, P, P) and y.shape == m.shape == (1, P, P)
            _, top, left = ds.window(i)
            z = patches.extract(zone, top, left, P, False)
            assert (m[0][z] == 0).all(), f"test glacier pixel in the loss of patch {i}"
            seen += int(z.sum())
            cl = patches.extract(cloud, top, left, P, False)
            assert (m[0][cl] == 0).all()
            # without the rule the same pixels would count: the test can fail
            _, _, m_leaky = leaky.arrays(i)
            assert (m_leaky[0][z] == 1).all()
            assert (y[0][patches.extract(lab == 1, top, left, P, False)] == 1).all()   # T is still labelled glacier
    assert seen > 1000


def test_no_leak_edge_guard_and_padding(scene):
    lab, paths, _ = scene
    ds = patches.PatchDataset([(paths["A"], 2, 40)], DL4GAM_CHANNELS, identity_stats(), 32, exclude_glaciers={"T"})
    x, y, m = ds.arrays(0)
    assert np.isfinite(x).all()
    # rows of the patch outside the cube (top row -14..-1) are padding: no loss, no label
    assert (m[0, :14] == 0).all() and (y[0, :14] == 0).all()
    # the outer 50 m band of the cube is excluded too (a test glacier just outside would not be labelled)
    assert (m[0, 14:19] == 0).all()
    free = patches.PatchDataset([(paths["A"], 2, 40)], DL4GAM_CHANNELS, identity_stats(), 32, exclude_glaciers=())
    assert (free.arrays(0)[2][0, 14:19, :] == 1).all()


# ---------------------------------------------------------------------------------------------------- NaN, stats


def test_nan_filling(tmp_path):
    lab = scene_labels()

    def holes(d):
        d["B04"][30:34, 15:19] = np.nan
        d["dem"][40:42, 20:22] = np.nan
        d["dhdt"][25:35, 12:16] = np.nan

    p = write_cube(tmp_path / "A.nc", lab, IDS, "A", edit=holes)
    stats = {"channels": DL4GAM_CHANNELS, "offset": [0.1 * i for i in range(16)], "scale": [1.0 + i for i in range(16)]}
    ds = patches.PatchDataset([(p, 32, 20)], DL4GAM_CHANNELS, stats, 32)
    x, _, _ = ds.arrays(0)
    assert np.isfinite(x).all()
    with patches.open_cube(p) as c:
        raw = {k: c["layers"].sel(band=k).values[16:48, 4:36] for k in ("B04", "dem")}
    i_b, i_d, i_h = (DL4GAM_CHANNELS.index(c) for c in ("B04", "dem", "dhdt"))
    exp_b = (np.nanmean(raw["B04"]) - stats["offset"][i_b]) / stats["scale"][i_b]
    np.testing.assert_allclose(x[i_b, 14:18, 11:15], exp_b, rtol=1e-5)
    exp_d = (np.nanmean(raw["dem"]) - stats["offset"][i_d]) / stats["scale"][i_d]
    np.testing.assert_allclose(x[i_d, 24:26, 16:18], exp_d, rtol=1e-5)
    np.testing.assert_allclose(x[i_h, 9:19, 8:12], (0 - stats["offset"][i_h]) / stats["scale"][i_h], rtol=1e-6)
    # an all-NaN channel falls back to the training mean (0 after normalisation)
    raw = np.ones((16, 4, 4), np.float32)
    raw[i_b] = np.nan
    assert (patches.prepare_patch(raw, DL4GAM_CHANNELS, stats)[i_b] == 0).all()


def test_normalisation_uses_training_glaciers_only(tmp_path, scene):
    lab, paths, _ = scene
    split = split_table({"A": "train", "T": "test", "V": "val"})
    by_g = {g: str(p) for g, p in paths.items()}
    s0 = patches.fit_fold_normalisation(by_g, split, 0)
    i_dem = DL4GAM_CHANNELS.index("dem")
    # expected: A's cube only, minus the 50 m zone around T (no nodata here)
    zone = distance_transform_edt(lab != 1) * RES <= 50
    with patches.open_cube(paths["A"]) as ds:
        dem = ds["layers"].sel(band="dem").values[~zone].astype(np.float64)
    assert s0["offset"][i_dem] == pytest.approx(dem.mean(), rel=1e-9)
    assert s0["scale"][i_dem] == pytest.approx(dem.std(), rel=1e-6)
    assert s0["transform"][DL4GAM_CHANNELS.index("slope")] == "divide"
    assert s0["scale"][DL4GAM_CHANNELS.index("slope")] == 90.0
    for c in ("ndsi", "ndwi", "ndvi", "aspect_sin", "aspect_cos"):
        i = DL4GAM_CHANNELS.index(c)
        assert (s0["offset"][i], s0["scale"][i]) == (0.0, 1.0)

    def bump_t(d):
        d["dem"][lab == 1] += 5000.0          # the test glacier's pixels inside A's cube
        d["dem"][zone & (lab != 1)] -= 700.0  # and its 50 m buffer
    write_cube(paths["T"], lab, IDS, "T", seed=99, edit=lambda d: d.update(dem=d["dem"] * 3))
    write_cube(paths["A"], lab, IDS, "A", seed=0, cloud=scene[2], edit=bump_t)
    write_cube(paths["V"], lab, IDS, "V", seed=77)
    s1 = patches.fit_fold_normalisation(by_g, split, 0)
    assert s1["offset"] == s0["offset"] and s1["scale"] == s0["scale"]

    # ... while a change on A outside the zone does move the stats (the test can fail)
    def bump_a(d):
        d["dem"][lab == 0] += 100.0
    write_cube(paths["A"], lab, IDS, "A", seed=0, edit=bump_a)
    s2 = patches.fit_fold_normalisation(by_g, split, 0)
    assert s2["offset"][i_dem] > s0["offset"][i_dem] + 1

    patches.save_normalisation(s0, tmp_path / "stats.json")
    assert patches.load_normalisation(tmp_path / "stats.json")["offset"] == s0["offset"]


def test_skip_records_are_left_out(tmp_path, scene):
    _, paths, _ = scene
    sk = tmp_path / "S.nc"
    write_netcdf_atomic(sk, skip_dataset("S", "2015", "no image", "select"))
    t = patches.centre_table([paths["A"], sk], 8)
    assert set(t["glac_id"]) == {"A"} and t["centroid"].sum() == 1
    with pytest.raises(ValueError, match="skip record"):
        patches.load_cube(sk)
