"""Permutation importance of input layers and groups: the joint permutation, the drops against theory and against
scikit-learn, the test patches of a fold, the ensemble prediction and the rule's end-to-end outputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.inspection import permutation_importance as sk_permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, jaccard_score

from glaciermap.data.features import DL4GAM_CHANNELS
from glaciermap.io import skip_dataset, write_json_atomic, write_netcdf_atomic
from glaciermap.segmentation import calibrate, importance, infer, patches, train
from glaciermap.segmentation.labels import IGNORE, write_label_raster
from test_patches import IDS, scene_labels, write_cube

CLASSES = ["background", "clean_ice", "debris"]


# ---------------------------------------------------------------------------------------------------- permutation


def test_permute_jointly_keeps_values_pairs_and_other_channels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5, 6, 6)).astype(np.float32)
    x[:, 3] = 2 * x[:, 1] + 1                       # channel 3 a function of channel 1: pairs must stay together
    before = x.copy()
    out = importance.permute_jointly(x, [1, 3], np.random.default_rng(7))
    np.testing.assert_array_equal(x, before)         # a copy; the input is untouched
    for c in (1, 3):                                 # each channel keeps its multiset of values ...
        np.testing.assert_array_equal(np.sort(out[:, c], axis=None), np.sort(x[:, c], axis=None))
        assert not np.array_equal(out[:, c], x[:, c])                          # ... but is shuffled
    np.testing.assert_array_equal(out[:, 3], 2 * out[:, 1] + 1)            # one permutation for the group
    for c in (0, 2, 4):
        np.testing.assert_array_equal(out[:, c], x[:, c])
    # across patches: patch 0 receives values of other patches (flattened N x P x P)
    assert not np.array_equal(np.sort(out[0, 1], axis=None), np.sort(x[0, 1], axis=None))
    perm = np.random.default_rng(7).permutation(4 * 6 * 6)
    np.testing.assert_array_equal(out[:, 1].ravel(), x[:, 1].ravel()[perm])
    # deterministic for a seed, different for another
    np.testing.assert_array_equal(out, importance.permute_jointly(x, [1, 3], np.random.default_rng(7)))
    assert not np.array_equal(out, importance.permute_jointly(x, [1, 3], np.random.default_rng(8)))
    # separately permuted channels lose the pairing
    sep = importance.permute_jointly(importance.permute_jointly(x, [1], np.random.default_rng(1)), [3],
                                     np.random.default_rng(2))
    assert not np.array_equal(sep[:, 3], 2 * sep[:, 1] + 1)
    for bad in ([], [1, 1], [5], [-1]):
        with pytest.raises(ValueError):
            importance.permute_jointly(x, bad, np.random.default_rng(0))


def _channel0_problem(n=40, p=16, c=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c, p, p)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    valid = rng.random((n, p, p)) > 0.1
    return x, y, valid


def test_only_the_used_channel_and_its_groups_matter():
    x, y, valid = _channel0_problem()
    calls = []

    def predict(a):
        calls.append(1)
        return (a[:, 0] > 0).astype(np.int64)

    feats = {"c0": [0], "c1": [1], "c2": [2], "c3": [3], "g02": [0, 2], "g12": [1, 2], "g3": [3]}
    kinds = {"g3": "group"}
    df = importance.permutation_importance(predict, x, y, valid, feats, 2, n_repeats=3, seed=1, kinds=kinds)
    assert len(calls) == 1 + 3 * len(feats)
    assert list(df.columns) == ["feature", "kind", "repeat", "overall_accuracy", "mean_iou", "iou_0", "iou_1",
                                "drop_overall_accuracy", "drop_mean_iou", "drop_iou_0", "drop_iou_1"]
    assert df.attrs["baseline"]["overall_accuracy"] == 1.0 and df.attrs["baseline"]["mean_iou"] == 1.0
    kind = df.groupby("feature")["kind"].first()
    assert kind["c0"] == "layer" and kind["g02"] == "group" and kind["g3"] == "group"   # one-channel group
    m = df.groupby("feature")[["drop_overall_accuracy", "drop_mean_iou"]].mean()
    # a random guess of the sign: accuracy 0.5, IoU of each class 1/3
    assert m.loc["c0", "drop_overall_accuracy"] == pytest.approx(0.5, abs=0.02)
    assert m.loc["c0", "drop_mean_iou"] == pytest.approx(2 / 3, abs=0.02)
    assert m.loc["g02", "drop_overall_accuracy"] == pytest.approx(0.5, abs=0.02)
    for f in ("c1", "c2", "c3", "g12", "g3"):
        assert (df.loc[df["feature"] == f, ["drop_overall_accuracy", "drop_mean_iou", "drop_iou_0", "drop_iou_1"]]
                == 0).all().all()
    # the rows are the drops of exactly permute_jointly(x, idx, feature_rng(seed, i, r))
    r = df[(df["feature"] == "g02") & (df["repeat"] == 2)].iloc[0]
    xp = importance.permute_jointly(x, [0, 2], importance.feature_rng(1, 4, 2))
    assert r["overall_accuracy"] == importance.scores(predict(xp), y, valid, 2)["overall_accuracy"]
    # deterministic
    again = importance.permutation_importance(predict, x, y, valid, feats, 2, n_repeats=3, seed=1, kinds=kinds)
    pd.testing.assert_frame_equal(df, again)


def test_pixelwise_torch_model_through_ensemble_predict():
    x, y, valid = _channel0_problem(n=24)
    conv = torch.nn.Conv2d(4, 1, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = 5.0
        conv.bias.zero_()
    conv.eval()
    pred = importance.ensemble_predict([conv], x, batch_size=5)
    np.testing.assert_array_equal(pred, y)
    df = importance.permutation_importance(lambda a: importance.ensemble_predict([conv], a, batch_size=8), x, y, valid,
                                           {"c0": [0], "c1": [1], "c2": [2], "c3": [3], "g01": [0, 1]}, 2, n_repeats=2)
    m = df.groupby("feature")["drop_overall_accuracy"].mean()
    assert m["c0"] > 0.4 and m["g01"] > 0.4
    assert (m[["c1", "c2", "c3"]] == 0).all()


def test_correlated_layers_understate_and_the_group_does_not():
    """Two identical informative layers averaged by the model: permuting one leaves the other, so each alone drops
    the accuracy by 1/4 (P(sign(x + e) = sign(x)) = 3/4 for independent normal x, e), the pair by 1/2. With three
    copies and a median, a single layer's drop is exactly 0 although the group carries everything."""
    rng = np.random.default_rng(3)
    n, p = 60, 16
    s = rng.normal(size=(n, p, p)).astype(np.float32)
    noise = rng.normal(size=(n, p, p)).astype(np.float32)
    x = np.stack([s, s, s, noise], axis=1)
    y = (s > 0).astype(np.int64)
    valid = np.ones_like(y, bool)
    feats = {"a": [0], "b": [1], "c": [2], "noise": [3], "ab": [0, 1], "abc": [0, 1, 2]}

    def mean2(a):
        return ((a[:, 0] + a[:, 1]) / 2 > 0).astype(np.int64)

    d = importance.permutation_importance(mean2, x, y, valid, feats, 2, n_repeats=4)
    m = d.groupby("feature")["drop_overall_accuracy"].mean()
    assert m["a"] == pytest.approx(0.25, abs=0.02) and m["b"] == pytest.approx(0.25, abs=0.02)
    assert m["ab"] == pytest.approx(0.5, abs=0.02) and m["c"] == 0 and m["noise"] == 0
    assert max(m["a"], m["b"]) < 0.6 * m["ab"]

    def median3(a):
        return (np.median(a[:, :3], axis=1) > 0).astype(np.int64)

    d = importance.permutation_importance(median3, x, y, valid, feats, 2, n_repeats=2)
    m = d.groupby("feature")["drop_overall_accuracy"].mean()
    assert m["a"] == m["b"] == m["c"] == 0
    assert m["abc"] == pytest.approx(0.5, abs=0.02)
    assert m["ab"] == pytest.approx(0.5, abs=0.02)     # two equal permuted copies out-vote the third
    s_ = importance.summarise(d, ["background", "glacier"])
    assert set(s_["feature"][:2]) == {"ab", "abc"} and (s_["kind"][:2] == "group").all()


def test_single_layer_drops_match_scikit_learn():
    rng = np.random.default_rng(0)
    n_img, p, c = 40, 25, 4                          # 25000 pixels
    X = rng.normal(size=(n_img * p * p, c))
    logit = 2.0 * X[:, 0] - 1.0 * X[:, 1] + 0.3 * X[:, 2]
    yy = (rng.random(X.shape[0]) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    clf = LogisticRegression().fit(X, yy)
    x = X.reshape(n_img, p, p, c).transpose(0, 3, 1, 2).copy()
    y = yy.reshape(n_img, p, p)
    valid = np.ones_like(y, bool)

    def predict(a):
        return clf.predict(a.transpose(0, 2, 3, 1).reshape(-1, c)).reshape(a.shape[0], *a.shape[2:])

    R = 15
    ours = importance.permutation_importance(predict, x, y, valid, {f"c{i}": [i] for i in range(c)}, 2, n_repeats=R)
    sk = sk_permutation_importance(clf, X, yy, scoring="accuracy", n_repeats=R, random_state=0)
    summ = importance.summarise(ours, ["a", "b"]).set_index("feature").loc[[f"c{i}" for i in range(c)]]
    np.testing.assert_allclose(summ["drop_overall_accuracy_mean"], sk.importances_mean, atol=0.006)
    np.testing.assert_allclose(summ["drop_overall_accuracy_std"], sk.importances_std, atol=0.004)
    assert list(np.argsort(-summ["drop_overall_accuracy_mean"].to_numpy())[:3]) == \
        list(np.argsort(-sk.importances_mean)[:3])
    assert summ.loc["c0", "drop_overall_accuracy_mean"] > 0.2


def test_scores_equal_scikit_learn_over_valid_pixels():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, (6, 9, 9))
    pred = np.where(rng.random(y.shape) < 0.7, y, rng.integers(0, 4, y.shape))
    pred[pred == 3] = 2
    y[y == 3] = 1                                    # class 3 neither true nor predicted: IoU undefined
    valid = rng.random(y.shape) > 0.2
    s = importance.scores(pred, y, valid, 4)
    assert s["overall_accuracy"] == pytest.approx(accuracy_score(y[valid], pred[valid]))
    j = jaccard_score(y[valid], pred[valid], labels=[0, 1, 2], average=None)
    np.testing.assert_allclose([s["iou_0"], s["iou_1"], s["iou_2"]], j)
    assert np.isnan(s["iou_3"]) and s["mean_iou"] == pytest.approx(j.mean())
    y_bad = y.copy()
    y_bad[valid] = 4
    with pytest.raises(ValueError, match="outside"):
        importance.scores(pred, y_bad, valid, 4)


def test_summarise_pools_folds_and_repeats():
    x, y, valid = _channel0_problem(n=10)
    feats = {"c0": [0], "c1": [1], "g01": [0, 1]}

    def predict(a):
        return (a[:, 0] + 0.2 * a[:, 1] > 0).astype(np.int64)

    df = pd.concat([importance.permutation_importance(predict, x, y, valid, feats, 2, n_repeats=3, seed=k).assign(fold=k)
                    for k in (0, 1)], ignore_index=True)
    s = importance.summarise(df, ["background", "glacier"])
    assert list(s.columns) == ["feature", "kind", "n_samples",
                               "drop_overall_accuracy_mean", "drop_overall_accuracy_std", "drop_mean_iou_mean",
                               "drop_mean_iou_std", "drop_iou_background_mean", "drop_iou_background_std",
                               "drop_iou_glacier_mean", "drop_iou_glacier_std", "rank", "rank_in_kind"]
    assert (s["n_samples"] == 6).all()
    assert s["drop_mean_iou_mean"].is_monotonic_decreasing and list(s["rank"]) == [1, 2, 3]
    assert s.iloc[-1]["feature"] == "c1"
    v = df.loc[df["feature"] == "g01", "drop_iou_1"].to_numpy()
    r = s.set_index("feature").loc["g01"]
    assert r["drop_iou_glacier_mean"] == pytest.approx(v.mean()) and r["drop_iou_glacier_std"] == pytest.approx(v.std())
    assert dict(zip(s["feature"], s["rank_in_kind"])) == {"g01": 1, "c0": 1, "c1": 2}


# ---------------------------------------------------------------------------------------------------- prediction


def test_ensemble_predict_averages_calibrated_members():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(7, 3, 8, 8)).astype(np.float32)
    torch.manual_seed(0)
    bin_members = [torch.nn.Conv2d(3, 1, 1).eval() for _ in range(2)]
    k_members = [torch.nn.Conv2d(3, 3, 1).eval() for _ in range(2)]
    xt = torch.from_numpy(x)
    with torch.no_grad():
        pb = [torch.sigmoid(m(xt))[:, 0].numpy() for m in bin_members]
        pk = [torch.softmax(m(xt), 1).numpy() for m in k_members]
    T = [2.0, 0.5]
    mu = (calibrate.apply_temperature(pb[0], T[0]) + calibrate.apply_temperature(pb[1], T[1])) / 2
    np.testing.assert_array_equal(importance.ensemble_predict(bin_members, x, 3, temperatures=T), (mu > 0.5))
    np.testing.assert_array_equal(importance.ensemble_predict(bin_members, x, 3), ((pb[0] + pb[1]) / 2 > 0.5))
    mk = (calibrate.apply_temperature_classes(pk[0], T[0], 1) + calibrate.apply_temperature_classes(pk[1], T[1], 1)) / 2
    got = importance.ensemble_predict(k_members, x, 4, temperatures=T)
    assert got.dtype == np.int64 and got.shape == (7, 8, 8)
    np.testing.assert_array_equal(got, mk.argmax(1))
    with pytest.raises(ValueError, match="temperatures"):
        importance.ensemble_predict(k_members, x, temperatures=[1.0])


# ---------------------------------------------------------------------------------------------------- patches


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Three cubes (a cloud patch on T), 3-class label rasters with an unlabelled strip, a skip record."""
    d = tmp_path_factory.mktemp("importance")
    lab = scene_labels()
    cloud = np.zeros(lab.shape, bool)
    cloud[30:36, 36:44] = True
    paths = {g: str(write_cube(d / f"{g}.nc", lab, IDS, g, seed=k, cloud=cloud if g == "T" else None))
             for k, g in enumerate(IDS)}
    target = np.where(lab >= 0, 1, 0).astype(np.uint8)
    target[(lab >= 0) & (np.arange(lab.shape[0])[:, None] > 40)] = 2
    target[:4, :] = IGNORE
    target[cloud] = IGNORE
    labels = {g: str(d / f"{g}.tif") for g in IDS}
    for g in IDS:
        write_label_raster(labels[g], target, paths[g], CLASSES, {"glacier_id": g})
    skip = str(d / "S.nc")
    write_netcdf_atomic(skip, skip_dataset("S", "2015", "no image", "select"))
    skip_tif = str(d / "S.tif")
    write_label_raster(skip_tif, np.full((1, 1), IGNORE), None, CLASSES, {"status": "skipped"})
    stats = patches.fit_normalisation([paths["A"]], DL4GAM_CHANNELS)
    return d, lab, cloud, target, paths, labels, skip, skip_tif, stats


def test_collect_patches_with_labels_masks_and_skip_records(scene):
    d, lab, cloud, target, paths, labels, skip, skip_tif, stats = scene
    cubes = [paths["T"], skip, paths["V"]]
    P, stride = 32, 16
    x, y, valid = importance.collect_patches(cubes, DL4GAM_CHANNELS, stats, P, stride, [labels["T"], skip_tif,
                                                                                         labels["V"]], classes=CLASSES)
    wins = [(p, w) for p in (paths["T"], paths["V"])
            for w in infer.inference_windows(patches.load_cube(p, with_inputs=False).buffer50, P, stride, 0)]
    assert x.shape == (len(wins), 16, P, P) and x.dtype == np.float32
    assert y.shape == valid.shape == (len(wins), P, P) and y.dtype == np.int64 and valid.dtype == bool
    for j, (p, (t, left)) in enumerate(wins):
        cube = patches.load_cube(p)
        np.testing.assert_array_equal(x[j], patches.prepare_patch(patches.extract(cube.x, t, left, P, np.nan),
                                                                  DL4GAM_CHANNELS, stats))
        tw = patches.extract(target, t, left, P, IGNORE)
        mw = patches.extract(cube.masked, t, left, P, True)
        np.testing.assert_array_equal(valid[j], (tw != IGNORE) & ~mw)
        np.testing.assert_array_equal(y[j][valid[j]], tw[valid[j]])
        assert (y[j][~valid[j]] == 0).all()
    n_cloud = sum(int(patches.extract(cloud, t, left, P, False).sum()) for p, (t, left) in wins if p == paths["T"])
    assert n_cloud > 0                                # the cloud patch lies in T's windows, and is not valid
    # binary truth: any inventory glacier; only cloud / no data not valid
    xb, yb, vb = importance.collect_patches(cubes, DL4GAM_CHANNELS, stats, P, stride)
    np.testing.assert_array_equal(xb, x)
    for j, (p, (t, left)) in enumerate(wins):
        cube = patches.load_cube(p, with_inputs=False)
        np.testing.assert_array_equal(vb[j], ~patches.extract(cube.masked, t, left, P, True))
        np.testing.assert_array_equal(yb[j][vb[j]], patches.extract(lab >= 0, t, left, P, False)[vb[j]])
    # within_buffer: only the glacier + 50 m of each cube counts
    xw, yw, vw = importance.collect_patches(cubes, DL4GAM_CHANNELS, stats, P, stride, within_buffer=True)
    for j, (p, (t, left)) in enumerate(wins):
        buf = patches.extract(patches.load_cube(p, with_inputs=False).buffer50, t, left, P, False)
        np.testing.assert_array_equal(vw[j], vb[j] & buf)
    assert vw.sum() < vb.sum()
    # a label set with other classes is refused
    with pytest.raises(ValueError, match="classes"):
        importance.collect_patches([paths["T"]], DL4GAM_CHANNELS, stats, P, stride, [labels["T"]],
                                   classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="parallel"):
        importance.collect_patches(cubes, DL4GAM_CHANNELS, stats, P, stride, [labels["T"]])


def test_collect_patches_outside_the_cube_is_not_valid(scene):
    d, lab, cloud, target, paths, labels, skip, skip_tif, stats = scene
    x, y, valid = importance.collect_patches([paths["A"]], DL4GAM_CHANNELS, stats, 96, 96)
    assert x.shape[0] == 1                            # an 80 x 80 cube: one window, centred, 8 px beyond each edge
    assert not valid[0, :8].any() and not valid[0, :, -8:].any() and valid[0, 8:88, 8:88].all()
    assert np.isfinite(x).all()


def test_max_patches_is_a_seeded_reproducible_subset(scene):
    d, lab, cloud, target, paths, labels, skip, skip_tif, stats = scene
    cubes = [paths["T"], paths["V"]]
    full = importance.collect_patches(cubes, DL4GAM_CHANNELS, stats, 32, 16)
    n = full[0].shape[0]
    assert n > 6
    a = importance.collect_patches(cubes, DL4GAM_CHANNELS, stats, 32, 16, max_patches=5, seed=3)
    b = importance.collect_patches(cubes, DL4GAM_CHANNELS, stats, 32, 16, max_patches=5, seed=3)
    c = importance.collect_patches(cubes, DL4GAM_CHANNELS, stats, 32, 16, max_patches=5, seed=4)
    keep = np.sort(np.random.default_rng(3).choice(n, size=5, replace=False))
    for got, want in zip(a, full):
        np.testing.assert_array_equal(got, want[keep])
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    big = importance.collect_patches(cubes, DL4GAM_CHANNELS, stats, 32, 16, max_patches=n + 10, seed=3)
    np.testing.assert_array_equal(big[0], full[0])


# ---------------------------------------------------------------------------------------------------- rule


KW = {"decoder_channels": (16, 8, 8), "encoder_depth": 3}


def _save_member(path, seed, classes, stats, P=32):
    K = train.n_outputs(classes)
    model = train.build_model("Unet", "resnet18", len(stats["channels"]), None, seed, K, **KW)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": train.MODEL_FORMAT, "model": model.state_dict(), "arch": "Unet", "encoder": "resnet18",
                "in_channels": len(stats["channels"]), "model_kwargs": KW, "channels": list(stats["channels"]),
                "stats": stats, "patch_size": P, "seed": seed, "epoch": 1, "score": 0.5, "fingerprint": "x",
                "out_channels": K, "classes": list(classes)}, path)
    write_json_atomic(path.parent / "done.json", {"complete": True})
    return path.parent / "done.json"


@pytest.fixture
def torch_threads():
    """cfg ``threads`` sets torch's CPU threads for the process: restored afterwards for the other tests."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("classes", [["glacier"], CLASSES])
def test_run_importance_end_to_end(scene, tmp_path, classes, caplog, torch_threads):
    d, lab, cloud, target, paths, labels, skip, skip_tif, stats = scene
    binary = len(classes) == 1
    test_of = {0: [paths["T"]], 1: [paths["V"], skip]}
    label_of = {0: [labels["T"]], 1: [labels["V"], skip_tif]}
    ens, norms, cals = [], [], []
    temps = {0: [1.5, 0.7], 1: [1.0, 2.0]}
    for k in (0, 1):
        fd = tmp_path / "models" / "m" / f"fold{k}"
        dones = [str(_save_member(fd / f"member{m}" / "best.pt", 10 * k + m, classes, stats)) for m in range(2)]
        write_json_atomic(fd / "ensemble.json", {"members": dones, "n_members": 2})
        patches.save_normalisation(stats, fd / "normalisation.json")
        write_json_atomic(fd / "calibration.json", {"fold": k, "temperatures": temps[k]})
        ens.append(fd / "ensemble.json"), norms.append(fd / "normalisation.json"), cals.append(fd / "calibration.json")
    groups = {"optical": ["B04", "B03", "B02", "B08", "B11"], "terrain": ["dem", "slope", "aspect_sin", "aspect_cos"],
              "elevation_change": ["dhdt"], "radar": ["vv", "vh"], "ice_cues": ["ndsi", "vv"]}
    cfg = {"patch_size": 32, "stride": 32, "max_patches": 3, "n_repeats": 2, "seed": 0, "batch_size": 4,
           "device": "cpu", "threads": 1}
    out = {"csv": tmp_path / "imp.csv", "summary": tmp_path / "summary.csv", "json": tmp_path / "imp.json",
           "figure": tmp_path / "imp.png"}
    with caplog.at_level("INFO", logger="glaciermap.segmentation.importance"):
        info = importance.run_importance(ens[::-1], norms, cals, test_of, None if binary else label_of, groups,
                                         classes, cfg, out)
    assert "group radar skipped" in caplog.text
    names = ["background", "glacier"] if binary else CLASSES
    rows = pd.read_csv(out["csv"])
    K = len(names)
    assert list(rows.columns) == ["fold", "feature", "kind", "repeat", "overall_accuracy", "mean_iou",
                                  *[f"iou_{k}" for k in range(K)], "drop_overall_accuracy", "drop_mean_iou",
                                  *[f"drop_iou_{k}" for k in range(K)]]
    n_feat = len(DL4GAM_CHANNELS) + 4
    assert len(rows) == 2 * n_feat * 2 and set(rows["fold"]) == {0, 1}
    assert set(rows.loc[rows["kind"] == "group", "feature"]) == {"optical", "terrain", "elevation_change", "ice_cues"}
    # a group is the channels of it the model has: ice_cues (ndsi + a radar band the model lacks) is kept, as ndsi
    assert rows.loc[rows["feature"] == "ice_cues", "drop_mean_iou"].notna().all()
    summ = pd.read_csv(out["summary"])
    assert len(summ) == n_feat and (summ["n_samples"] == 4).all()
    assert {f"drop_iou_{n}_mean" for n in names} <= set(summ.columns) and list(summ["rank"]) == list(range(1, n_feat + 1))
    js = json.loads(out["json"].read_text())
    assert js == info and js["classes"] == names and js["folds"] == [0, 1] and js["n_repeats"] == 2
    assert js["n_patches"] == 6 and js["skipped_groups"] == {"radar": ["vv", "vh"]}
    assert len(js["top_layers"]) == 3 and set(js["top_layers"]) <= set(DL4GAM_CHANNELS)
    assert len(js["top_groups"]) == 3 and set(js["top_groups"]) <= {"optical", "terrain", "elevation_change", "ice_cues"}
    assert js["top_layers"] == summ.loc[summ["kind"] == "layer", "feature"].head(3).tolist()
    assert js["forward_passes"] == 2 * (1 + 2 * n_feat)
    # the figure: every group and the top layers by mean-IoU drop, and the per-class drops of the same features
    assert out["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = importance.plot_importance(summ, tmp_path / "again.png", top=5)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    n_groups = int((summ["kind"] == "group").sum())
    assert len(fig.axes) == 2 and len(labels) == n_groups + 5
    assert labels[-1] in {f"{g} (group)" for g in summ.loc[summ["kind"] == "group", "feature"]}
    assert len(fig.axes[1].get_legend().get_texts()) == len(names)
    # the numbers are those of the fold's members, temperatures and test patches (fold 0, recomputed here)
    models = [train.load_member(tmp_path / "models" / "m" / "fold0" / f"member{m}" / "best.pt", "cpu")[0] for m in (0, 1)]
    x, y, valid = importance.collect_patches(test_of[0], DL4GAM_CHANNELS, stats, 32, 32,
                                             None if binary else label_of[0], 3, 0)
    feats = {c: [i] for i, c in enumerate(DL4GAM_CHANNELS)}
    feats.update({g: [DL4GAM_CHANNELS.index(c) for c in groups[g]] for g in ("optical", "terrain", "elevation_change")})
    feats["ice_cues"] = [DL4GAM_CHANNELS.index("ndsi")]      # the group's channels the model has
    want = importance.permutation_importance(lambda a: importance.ensemble_predict(models, a, 4, "cpu", temps[0]),
                                             x, y, valid, feats, K, 2, 0,
                                             kinds={"elevation_change": "group", "ice_cues": "group"})
    got = rows[rows["fold"] == 0].drop(columns="fold").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, atol=1e-12)
    b0 = want.attrs["baseline"]["overall_accuracy"]
    b1 = (rows[rows["fold"] == 1]["overall_accuracy"] + rows[rows["fold"] == 1]["drop_overall_accuracy"]).iloc[0]
    assert js["baseline"]["overall_accuracy"] == pytest.approx((b0 + b1) / 2)


def test_run_importance_refuses_mismatched_classes_and_group_names(scene, tmp_path):
    d, lab, cloud, target, paths, labels, skip, skip_tif, stats = scene
    fd = tmp_path / "fold0"
    done = _save_member(fd / "member0" / "best.pt", 0, ["glacier"], stats)
    write_json_atomic(fd / "ensemble.json", {"members": [str(done)]})
    patches.save_normalisation(stats, fd / "normalisation.json")
    out = {"csv": tmp_path / "a.csv", "summary": tmp_path / "b.csv", "json": tmp_path / "c.json"}
    cfg = {"patch_size": 32, "stride": 32, "max_patches": 1, "n_repeats": 1}
    with pytest.raises(ValueError, match="predicts"):
        importance.run_importance([fd / "ensemble.json"], [fd / "normalisation.json"], None, {0: [paths["T"]]},
                                  {0: [labels["T"]]}, {}, CLASSES, cfg, out)
    with pytest.raises(ValueError, match="name of a channel"):
        importance.run_importance([fd / "ensemble.json"], [fd / "normalisation.json"], None, {0: [paths["T"]]}, None,
                                  {"dem": ["dem"]}, ["glacier"], cfg, out)
