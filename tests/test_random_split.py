"""CryoNet's random tile split: the region-wide tile grid, the seeded 80/20 assignment, the scored pixels, the
inflation over the geographic scores and a tiny end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from glaciermap.data.features import DL4GAM_CHANNELS
from glaciermap.io import read_record, skip_dataset, write_netcdf_atomic
from glaciermap.segmentation import random_split as rs
from glaciermap.segmentation.labels import IGNORE, write_label_raster
from test_patches import IDS, RES, scene_labels, write_cube

CLASSES = ["background", "clean_ice", "debris"]
LEFT, TOP = 400000.0, 5100000.0
# three overlapping cubes cut from one 80 x 80 px ground scene: (row offset, col offset, rows, cols)
WINDOWS = {"A": (0, 0, 80, 60), "T": (10, 15, 70, 65), "V": (3, 37, 77, 43)}


def ground_target(lab):
    """3 classes on the ground: background, clean ice, debris on the glaciers' rows below 40; a no-label strip."""
    t = np.where(lab >= 0, 1, 0).astype(np.uint8)
    t[(lab >= 0) & (np.arange(lab.shape[0])[:, None] > 40)] = 2
    t[:3, :] = IGNORE
    return t


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    """Cubes of A, T and V on one grid, overlapping and offset from each other (not by whole tiles); a cloud in
    the overlap; their label rasters; a skip record."""
    d = tmp_path_factory.mktemp("random_split")
    lab = scene_labels()
    cloud = np.zeros(lab.shape, bool)
    cloud[44:50, 36:42] = True                       # on T, inside A's, T's and V's cubes
    target = ground_target(lab)
    target[cloud] = IGNORE
    cubes, labels = {}, {}
    for k, (g, (r0, c0, h, w)) in enumerate(WINDOWS.items()):
        win = (slice(r0, r0 + h), slice(c0, c0 + w))
        cubes[g] = str(write_cube(d / f"{g}.nc", lab[win], IDS, g, seed=k, cloud=cloud[win],
                                  left=LEFT + c0 * RES, top=TOP - r0 * RES))
        labels[g] = str(d / f"{g}.tif")
        write_label_raster(labels[g], target[win], cubes[g], CLASSES, {"glacier_id": g})
    skip = str(d / "S.nc")
    write_netcdf_atomic(skip, skip_dataset("S", "2015", "no image", "select"))
    return d, lab, cloud, target, cubes, labels, skip


def ground_maps(path, P):
    """(global tile x, global tile y, global pixel col, global pixel row) per pixel, from the cube's own coordinates."""
    v, _ = read_record(path, ["x", "y"])
    X, Y = np.meshgrid(v["x"], v["y"])
    return (np.floor(X / (P * RES)).astype(int), np.floor(Y / (P * RES)).astype(int),
            np.floor(X / RES).astype(int), np.floor(Y / RES).astype(int))


# ---------------------------------------------------------------------------------------------------- tiles


@pytest.mark.parametrize("P", [16, 32])
def test_tiles_on_the_region_grid_get_one_role_in_every_cube(region, P):
    _, lab, _, _, cubes, _, skip = region
    tiles = rs.split_tiles([*cubes.values(), skip], P, 0.2, 0.1, seed=3)
    assert skip not in set(tiles["path"])                       # a skip record is left out
    roles = tiles.groupby(["tx", "ty"])["role"].nunique()
    assert (roles == 1).all()                                   # one role per ground tile
    assert (tiles.groupby(["tx", "ty"]).size() > 1).any()       # ... and some tiles are in several cubes
    role_of = {(a, b): r for a, b, r in zip(tiles["tx"], tiles["ty"], tiles["role"])}
    # per-pixel role maps of every cube from the pixel centres' coordinates, compared on the ground
    ground = {}
    for g, p in cubes.items():
        tx, ty, gx, gy = ground_maps(p, P)
        ci = rs.cube_grid_index(p)
        rty, rtx = rs.pixel_tiles(ci, P)
        np.testing.assert_array_equal(rtx, tx[0])              # the module's index is floor(x / (P res)) ...
        np.testing.assert_array_equal(rty, ty[:, 0])           # ... and floor(y / (P res))
        for a, b, r, c in zip(tx.ravel(), ty.ravel(), gy.ravel(), gx.ravel()):
            role = role_of.get((a, b))
            assert ground.setdefault((r, c), role) == role
        # kept tiles are exactly those meeting the cube's buffer
        buf = ci.buffer50
        kept_here = set(zip(tiles.loc[tiles["path"] == p, "tx"], tiles.loc[tiles["path"] == p, "ty"]))
        assert kept_here == set(zip(tx[buf], ty[buf]))
    # the offsets are not whole tiles: a per-cube grid (anchored at row/col 0) would not give one role per ground tile
    assert any((WINDOWS[g][0] % P, WINDOWS[g][1] % P) != (0, 0) for g in WINDOWS)
    own = tiles[tiles["owner"]]
    assert not own.duplicated(["tx", "ty"]).any() and len(own) == tiles.drop_duplicates(["tx", "ty"]).shape[0]


def test_train_val_test_tiles_are_disjoint_and_training_windows_stay_in_their_tile(region):
    _, _, _, _, cubes, _, _ = region
    P = 16
    tiles = rs.split_tiles(cubes.values(), P, 0.2, 0.1, seed=0)
    keys = {r: set(zip(*[tiles.loc[tiles["role"] == r, c] for c in ("tx", "ty")])) for r in rs.ROLES}
    assert keys["train"] and keys["val"] and keys["test"]
    assert not keys["train"] & keys["test"] and not keys["val"] & keys["test"] and not keys["train"] & keys["val"]
    n = len(keys["train"] | keys["val"] | keys["test"])
    assert len(keys["test"]) == int(np.floor(0.2 * n + 0.5))
    # every training / validation window covers exactly its own tile (ground pixel ranges -> one tile index)
    for role in ("train", "val"):
        items = rs.tile_items(tiles, role, P)
        assert len(items) == len(keys[role])
        for path, r, c in items:
            ci = rs.cube_grid_index(path)
            top, left = r - P // 2, c - P // 2
            gy = ci.gy0 - (top + np.arange(P))
            gx = ci.gx0 + left + np.arange(P)
            assert len(set(gy // P)) == 1 and len(set(gx // P)) == 1
            assert (int(gx[0] // P), int(gy[0] // P)) in keys[role]


def test_seeded_assignment_is_reproducible_and_sized():
    keys = [(a, b) for a in range(10) for b in range(-5, 5)]
    r1 = rs.assign_tiles(keys, 0.2, 0.1, seed=7)
    assert r1 == rs.assign_tiles(list(reversed(keys)), 0.2, 0.1, seed=7)    # the key order does not matter
    r2 = rs.assign_tiles(keys, 0.2, 0.1, seed=8)
    assert r1 != r2
    counts = pd.Series(r1).value_counts()
    assert counts["test"] == 20 and counts["val"] == 8 and counts["train"] == 72
    # tiny sets still get a test and a training tile
    small = pd.Series(rs.assign_tiles([(0, 0), (0, 1), (1, 0)], 0.2, 0.1, seed=0)).value_counts()
    assert small.get("test") == 1 and small.get("train", 0) >= 1
    with pytest.raises(ValueError):
        rs.assign_tiles(keys, 1.0, 0.1)


# ---------------------------------------------------------------------------------------------------- scores


def test_scored_pixels_are_the_test_tiles_buffer_pixels_once(region):
    _, lab, cloud, target, cubes, labels, _ = region
    P = 16
    tiles = rs.split_tiles(cubes.values(), P, 0.3, 0.1, seed=1)
    test_keys = set(zip(*[tiles.loc[tiles["role"] == "test", c] for c in ("tx", "ty")]))
    stats = {"channels": list(DL4GAM_CHANNELS), "offset": [0.0] * len(DL4GAM_CHANNELS),
             "scale": [1.0] * len(DL4GAM_CHANNELS)}
    seen = []

    def predict(x):
        seen.append(x.shape)
        return np.full((x.shape[0], P, P), 2, np.int64)

    lp = {cubes[g]: labels[g] for g in cubes}
    px = rs.scored_pixels(predict, tiles, stats, P, lp, batch_size=3)
    assert seen and all(s[1:] == (len(DL4GAM_CHANNELS), P, P) and s[0] <= 3 for s in seen)
    # expected, independently: union over cubes of buffer & not cloud & labelled pixels in test tiles
    expected, any_other = {}, False
    for g, p in cubes.items():
        v, _ = read_record(p, ["mask_buffer_50m", "mask_cloud"])
        tx, ty, gx, gy = ground_maps(p, P)
        r0, c0, h, w = WINDOWS[g]
        t = target[r0:r0 + h, c0:c0 + w]
        ok = v["mask_buffer_50m"].astype(bool) & ~v["mask_cloud"].astype(bool) & (t != IGNORE)
        in_test = np.array([(a, b) in test_keys for a, b in zip(tx.ravel(), ty.ravel())]).reshape(tx.shape)
        any_other |= bool((ok & ~in_test).any())
        for r, c, val in zip(gy[ok & in_test], gx[ok & in_test], t[ok & in_test]):
            expected.setdefault((r, c), val)
    assert any_other and expected                               # the tile restriction matters
    got = list(zip(px["gy"], px["gx"]))
    assert len(got) == len(set(got))                            # each ground pixel once
    assert set(got) == set(expected)
    assert all(expected[k] == t for k, t in zip(got, px["truth"]))
    assert (px["pred"] == 2).all()
    # a cloudy pixel, or one without a label, is never scored (the cloud lies in some tile of the scene)
    cloud_px = {(int(np.floor((TOP - RES / 2 - RES * r) / RES)), int(np.floor((LEFT + RES / 2 + RES * c) / RES)))
                for r, c in zip(*np.nonzero(cloud))}
    assert not cloud_px & set(got)


def test_binary_truth_is_any_glacier(region):
    _, lab, _, _, cubes, _, _ = region
    P = 16
    tiles = rs.split_tiles([cubes["A"]], P, 0.5, 0.0, seed=2)
    stats = {"channels": list(DL4GAM_CHANNELS), "offset": [0.0] * len(DL4GAM_CHANNELS),
             "scale": [1.0] * len(DL4GAM_CHANNELS)}
    px = rs.scored_pixels(lambda x: np.zeros((x.shape[0], P, P), np.int64), tiles, stats, P, None)
    assert len(px) and set(px["truth"]) <= {0, 1} and px["truth"].sum() > 0
    ci = rs.cube_grid_index(cubes["A"])
    rows, cols = ci.gy0 - px["gy"].to_numpy(), px["gx"].to_numpy() - ci.gx0
    np.testing.assert_array_equal(px["truth"], (lab[:, :60][rows, cols] >= 0).astype(int))


def test_json_and_csv_report_the_inflation(tmp_path):
    cm = np.array([[50, 5, 0], [4, 30, 6], [1, 3, 20]])
    geo = {"classes": CLASSES, "mean_iou": 0.5, "overall_accuracy": 0.7,
           "per_class": {"background": {"iou": 0.8}, "clean_ice": {"iou": 0.45}, "debris": {"iou": None}}}
    s = rs.score_summary(cm, CLASSES, geo)
    out = {"json": tmp_path / "random_split.json", "csv": tmp_path / "random_split.csv"}
    rs.write_outputs({**s, "test_fraction": 0.2, "seed": 0}, out)
    j = json.loads(out["json"].read_text())
    tp = np.diag(cm)
    iou = tp / (cm.sum(0) + cm.sum(1) - tp)
    assert j["mean_iou"] == pytest.approx(iou.mean()) and j["overall_accuracy"] == pytest.approx(tp.sum() / cm.sum())
    assert j["inflation"]["mean_iou"] == pytest.approx(iou.mean() - 0.5)
    assert j["inflation"]["overall_accuracy"] == pytest.approx(tp.sum() / cm.sum() - 0.7)
    assert j["inflation"]["per_class_iou"]["background"] == pytest.approx(iou[0] - 0.8)
    assert j["inflation"]["per_class_iou"]["debris"] is None            # NaN -> null
    assert j["geographic"]["mean_iou"] == 0.5 and j["per_class"]["clean_ice"]["iou"] == pytest.approx(iou[1])
    csv = pd.read_csv(out["csv"])
    assert list(csv.columns) == rs.CSV_COLUMNS and list(csv["class"]) == CLASSES
    np.testing.assert_allclose(csv["inflation"][:2], iou[:2] - [0.8, 0.45])
    np.testing.assert_allclose(csv["iou_random"], iou)
    assert np.isnan(csv["inflation"][2])
    with pytest.raises(ValueError, match="classes"):
        rs.score_summary(cm, CLASSES, {**geo, "classes": ["a", "b", "c"]})
    # with the geographic folds' single-member scores (rule confusion), those are the reference (like for like)
    single = {"mean_iou": 0.4, "overall_accuracy": 0.65, "per_class": {"background": {"iou": 0.7}}}
    s2 = rs.score_summary(cm, CLASSES, {**geo, "single_member": single})
    assert s2["inflation"]["mean_iou"] == pytest.approx(iou.mean() - 0.4)
    assert s2["inflation"]["per_class_iou"]["background"] == pytest.approx(iou[0] - 0.7)
    assert s2["geographic"]["kind"].startswith("single member") and s2["geographic"]["ensemble_mean_iou"] == 0.5
    assert s["geographic"]["kind"].startswith("calibrated ensemble")


# ---------------------------------------------------------------------------------------------------- end to end


@pytest.fixture
def torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("classes", [CLASSES, ["glacier"]])
def test_run_random_split_end_to_end(region, tmp_path, classes, torch_threads):
    _, _, _, _, cubes, labels, skip = region
    model = {"arch": "Unet", "encoder": "resnet18", "patch_size": 32, "batch_size": 4, "epochs": 1, "lr": 1e-3,
             "classes": classes, "channels": list(DL4GAM_CHANNELS), "members": 3, "stride": 8, "cache_size": 8,
             "device": "cpu", "labels": "x" if len(classes) > 1 else "glacier"}
    geo = tmp_path / "metrics.json"
    names = classes if len(classes) > 1 else ["background", "glacier"]
    geo.write_text(json.dumps({"classes": names, "mean_iou": 0.4, "overall_accuracy": 0.6,
                               "per_class": {c: {"iou": 0.3} for c in names}}))
    out = {"json": tmp_path / "seg" / "random_split.json", "csv": tmp_path / "seg" / "random_split.csv"}
    s = rs.run_random_split([*cubes.values(), skip], [*labels.values()], model,
                            {"test_fraction": 0.2, "val_fraction": 0.1, "seed": 0}, out, geo, threads=1)
    j = json.loads(out["json"].read_text())
    assert 0 <= j["mean_iou"] <= 1 and 0 <= j["overall_accuracy"] <= 1 and j["pixels"] > 0
    for c in names:
        v = j["per_class"][c]["iou"]
        assert v is None or 0 <= v <= 1
    assert j["n_test_tiles"] >= 1 and j["n_train_tiles"] >= 1 and j["n_val_tiles"] >= 1
    assert j["n_tiles"] == j["n_train_tiles"] + j["n_val_tiles"] + j["n_test_tiles"]
    assert j["test_fraction"] == 0.2 and j["seed"] == 0 and j["n_cubes"] == 3
    assert j["inflation"]["mean_iou"] == pytest.approx(j["mean_iou"] - 0.4)
    work = tmp_path / "seg" / "random_split"
    assert (work / "done.json").exists() and (work / "best.pt").exists()
    assert json.loads((work / "done.json").read_text())["n_train"] == j["n_train_tiles"]
    assert len(pd.read_csv(out["csv"])) == len(names)
    assert s["confusion"] and np.sum(s["confusion"]) == j["pixels"]
    # a rerun resumes the finished member (no training) and gives the same scores
    again = rs.run_random_split([*cubes.values(), skip], [*labels.values()], model,
                                {"test_fraction": 0.2, "val_fraction": 0.1, "seed": 0}, out, geo, threads=1)
    assert again["mean_iou"] == s["mean_iou"] and again["confusion"] == s["confusion"]
