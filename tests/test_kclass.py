"""The K-class segmentation core: loss, class weights, patches with label rasters, training, inference with a class
dimension, K-class temperature scaling and the per-class metrics, each checked against a library or by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import jaccard_score, log_loss, precision_recall_fscore_support
from sklearn.utils.class_weight import compute_class_weight

from glaciermap.segmentation import calibrate, confusion, infer, patches, train
from glaciermap.data.features import DL4GAM_CHANNELS
from glaciermap.results import read_cube_masks
from glaciermap.segmentation.labels import IGNORE, read_label_raster, write_label_raster
from test_patches import IDS, scene_labels, write_cube

CLASSES = ["background", "clean_ice", "debris"]


# ---------------------------------------------------------------------------------------------------- loss, weights


def test_class_loss_is_weighted_cross_entropy_over_valid_pixels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 5, generator=g, requires_grad=True)
    y = torch.randint(0, 3, (2, 5, 5), generator=g)
    m = (torch.rand(2, 1, 5, 5, generator=g) > 0.3).float()
    w = torch.tensor([0.5, 1.0, 4.0])
    got = train.class_loss(logits, y, m, w, "ce")
    terms = torch.nn.functional.cross_entropy(logits, y, weight=w, reduction="none")   # w[y] * CE per pixel
    want = (terms * m[:, 0]).sum() / m.sum()
    assert torch.allclose(got, want, atol=1e-6)
    got.backward()
    assert (logits.grad[:, :, m[0, 0] == 0][0] == 0).all()            # masked pixels get no gradient
    # softmax focal: (1 - p_t)^2 CE; equals CE when gamma = 0; smaller than CE otherwise
    f0 = train.class_loss(logits, y, m, None, "focal", gamma=0.0)
    assert torch.allclose(f0, train.class_loss(logits, y, m, None, "ce"), atol=1e-6)
    assert train.class_loss(logits, y, m, None, "focal", gamma=2.0) < f0
    # a NaN logit on a masked pixel cannot leak
    bad = logits.detach().clone()
    bad[0, :, m[0, 0] == 0] = float("nan")
    assert torch.isfinite(train.class_loss(bad, y, m, w, "ce"))
    with pytest.raises(ValueError, match="'ce' or 'focal'"):
        train.class_loss(logits, y, m, None, "dice")


def test_balanced_weights_equal_scikit_learn():
    y = np.repeat([0, 1, 2], [500, 120, 7])
    counts = np.bincount(y, minlength=3)
    np.testing.assert_allclose(train.balanced_weights(counts), compute_class_weight("balanced", classes=np.arange(3), y=y))
    assert train.balanced_weights([10, 0, 30])[1] == 0 and train.balanced_weights([10, 0, 30])[0] == pytest.approx(2.0)


def test_confusion_counter_and_class_metrics_equal_scikit_learn():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, 3000)
    pred = np.where(rng.random(3000) < 0.6, truth, rng.integers(0, 4, 3000))
    pred[pred == 3] = 0                                   # class 3 never predicted
    cc = train.ConfusionCounter(4)
    cc.update(pred, truth, np.ones(3000, bool))
    np.testing.assert_array_equal(cc.m, sk_confusion(truth, pred, labels=range(4)))
    np.testing.assert_allclose(cc.iou(), jaccard_score(truth, pred, average=None, labels=range(4), zero_division=0))
    tab = confusion.class_metrics(cc.m, list("abcd"))
    p, r, f, s = precision_recall_fscore_support(truth, pred, labels=range(4), zero_division=np.nan)
    np.testing.assert_allclose(tab["recall"], r)
    np.testing.assert_allclose(tab["f1"], f)
    np.testing.assert_allclose(tab["precision"][:3], p[:3])
    assert np.isnan(tab["precision"][3])                  # never predicted: undefined, not 0
    np.testing.assert_array_equal(tab["support_px"], s)


# ---------------------------------------------------------------------------------------------------- patches, training


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Three cubes and their 3-class label rasters: background off glacier, debris on the glaciers' lower rows."""
    d = tmp_path_factory.mktemp("kclass")
    lab = scene_labels()
    paths = {g: write_cube(d / f"{g}.nc", lab, IDS, g, seed=k) for k, g in enumerate(IDS)}
    target = np.where(lab >= 0, 1, 0).astype(np.uint8)
    rows = np.arange(lab.shape[0])[:, None] * np.ones(lab.shape[1], int)
    target[(lab >= 0) & (rows > np.median(np.nonzero(lab >= 0)[0]))] = 2
    target[:2, :] = IGNORE                                 # an unlabelled strip
    labels = {g: d / f"{g}.tif" for g in IDS}
    for g in IDS:
        write_label_raster(labels[g], target, paths[g], CLASSES, {"glacier_id": g})
    stats = patches.fit_normalisation([paths[IDS[0]]], DL4GAM_CHANNELS)
    return paths, labels, target, stats


def test_patch_dataset_reads_class_labels_and_ignores_unlabelled(labelled):
    paths, labels, target, stats = labelled
    p = str(paths[IDS[0]])
    items = [(p, 1, 10), (p, 20, 20)]
    ds = patches.PatchDataset(items, DL4GAM_CHANNELS, stats, 16, label_paths={p: str(labels[IDS[0]])})
    x, y, m = ds.arrays(0)
    assert y.dtype == np.int64 and y.shape == (16, 16) and m.shape == (1, 16, 16)
    want = patches.extract(target, 1 - 8, 10 - 8, 16, IGNORE)
    assert (m[0][want == IGNORE] == 0).all() and (y[want == IGNORE] == 0).all()    # unlabelled / outside: no loss
    lm = patches.extract(ds.cube(p)[1], 1 - 8, 10 - 8, 16, False)
    np.testing.assert_array_equal(y[(want != IGNORE) & lm], want[(want != IGNORE) & lm])
    # binary datasets are unchanged: float target of the glacier mask
    xb, yb, mb = patches.PatchDataset(items, DL4GAM_CHANNELS, stats, 16).arrays(1)
    assert yb.dtype == np.float32 and yb.shape == (1, 16, 16)
    np.testing.assert_array_equal(xb, ds.arrays(1)[0])
    counts = ds.class_counts(3)
    lm_full = ds.cube(p)[1]
    np.testing.assert_array_equal(counts, np.bincount(target[lm_full & (target != IGNORE)], minlength=3))
    with pytest.raises(ValueError, match="no label raster"):
        patches.PatchDataset(items, DL4GAM_CHANNELS, stats, 16, label_paths={})


def test_label_raster_on_another_grid_is_refused(labelled, tmp_path):
    paths, labels, target, stats = labelled
    bad = tmp_path / "bad.tif"
    write_label_raster(bad, target[:-3], None, CLASSES, {})
    p = str(paths[IDS[0]])
    ds = patches.PatchDataset([(p, 20, 20)], DL4GAM_CHANNELS, stats, 16, label_paths={p: str(bad)})
    with pytest.raises(ValueError, match="re-make the labels"):
        ds.arrays(0)


def test_three_class_member_trains_predicts_and_resumes(labelled, tmp_path):
    paths, labels, target, stats = labelled
    a, b, c = (str(paths[g]) for g in IDS)
    train_items = [(a, r, col) for r in (12, 24, 36) for col in (12, 24, 36)]
    val_items = [(b, 24, 24), (b, 12, 30)]
    cfg = {"arch": "Unet", "encoder": "resnet18", "patch_size": 32, "batch_size": 4, "epochs": 2, "lr": 1e-3,
           "classes": CLASSES, "cache_size": 8, "keep_last_checkpoint": True}
    lp = {p: str(labels[g]) for g, p in zip(IDS, (a, b, c))}
    s = train.train_member(train_items, val_items, stats, cfg, tmp_path / "m", "cpu", test_glaciers=[IDS[2]],
                           label_paths=lp)
    assert s["complete"] and s["classes"] == CLASSES and s["loss"] == "ce" and len(s["class_weights"]) == 3
    assert s["class_weights"][2] > s["class_weights"][0]                 # the rare class weighs more
    met = pd.read_csv(tmp_path / "m" / "metrics.csv")
    assert list(met.columns)[3] == "val_miou" and met["val_miou"].between(0, 1).all()
    model, meta = train.load_member(tmp_path / "m" / "best.pt", "cpu")
    assert meta["out_channels"] == 3 and meta["classes"] == CLASSES
    # resume: one epoch, then the second, gives the same weights as the uninterrupted run
    train.train_member(train_items, val_items, stats, cfg, tmp_path / "r", "cpu", test_glaciers=[IDS[2]],
                       label_paths=lp, max_epochs_this_run=1)
    train.train_member(train_items, val_items, stats, cfg, tmp_path / "r", "cpu", test_glaciers=[IDS[2]],
                       label_paths=lp)
    w1 = torch.load(tmp_path / "m" / "last.pt", weights_only=False)["model"]
    w2 = torch.load(tmp_path / "r" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    # a K-class model without labels is refused; the binary fingerprint does not see the K-class keys
    with pytest.raises(ValueError, match="needs label rasters"):
        train.train_member(train_items, val_items, stats, cfg, tmp_path / "x", "cpu", test_glaciers=[IDS[2]])
    assert not set(train.CLASS_FINGERPRINT_KEYS) & set(train.FINGERPRINT_KEYS)
    # inference: prob(member, class, y, x) sums to one per member; label = argmax of mu
    out = tmp_path / "pred.nc"
    infer.predict_to_files([model, model], [c], [out], stats, members=[0, 1], classes=CLASSES, patch_size=32,
                           stride=16, device="cpu")
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds["prob"].dims == ("member", "class", "y", "x") and list(ds["class"].values) == CLASSES
        p = ds["prob"].values
        ok = np.isfinite(p).all((0, 1))
        assert ok.any() and not ok.all()
        np.testing.assert_allclose(p[:, :, ok].sum(1), 1.0, atol=1e-5)
        assert ds["mu"].dims == ("class", "y", "x")
        np.testing.assert_array_equal(ds["label"].values[ok], ds["mu"].values[:, ok].argmax(0))
        assert np.isnan(ds["label"].values[~ok]).all()          # the fill value 255 (no data), decoded
        mu = ds["mu"].values[:, ok].astype(np.float64)
        want = -(mu * np.log(np.clip(mu, 1e-30, None))).sum(0) / np.log(len(CLASSES))
        np.testing.assert_allclose(ds["entropy"].values[ok], want, atol=1e-5)
        assert np.isnan(ds["entropy"].values[~ok]).all() and 0 <= np.nanmin(ds["entropy"].values) < np.nanmax(
            ds["entropy"].values) <= 1
    with xr.open_dataset(out, engine="h5netcdf", mask_and_scale=False) as ds:
        assert ds["label"].dtype == np.uint8 and (ds["label"].values[~ok] == 255).all()


# ---------------------------------------------------------------------------------------------------- calibration


def _overconfident(n=20000, K=3, T=2.5, seed=0):
    """Labels drawn from softmax(z) and probabilities softmax(T z): over-confident by a factor T."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, K))
    pt = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(K, p=q) for q in pt])
    p = np.exp(T * z) / np.exp(T * z).sum(1, keepdims=True)
    return p, y


def test_k_class_temperature_recovers_the_planted_temperature_and_lowers_ece():
    p, y = _overconfident()
    T = calibrate.fit_temperature_classes(p, y, subsample=1)
    assert T == pytest.approx(2.5, rel=0.08)
    q = calibrate.apply_temperature_classes(p, T, axis=1)
    np.testing.assert_allclose(q.sum(1), 1.0)
    assert log_loss(y, q) < log_loss(y, p)
    assert calibrate.top_label_ece(q, y) < 0.3 * calibrate.top_label_ece(p, y)
    np.testing.assert_allclose(calibrate.apply_temperature_classes(p, 1.0, axis=1), p, atol=1e-5)  # up to the clip


def test_per_class_temperatures_fit_at_least_as_well_and_scale_each_class():
    """One temperature per class: never a worse log-loss than the shared one (the fit starts there), different
    temperatures where the classes are over-confident to different degrees, applied along the class axis."""
    from scipy.special import log_softmax

    rng = np.random.default_rng(1)
    n, K = 20000, 3
    z = rng.normal(0, 1.5, (n, K))
    pt = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(K, p=q) for q in pt])
    sharp = np.array([3.0, 1.0, 1.0])                      # class 0 far more over-confident than the others
    p = np.exp(sharp * z) / np.exp(sharp * z).sum(1, keepdims=True)
    shared = calibrate.fit_temperature_classes(p, y, subsample=1)
    per = calibrate.fit_temperature_classes(p, y, subsample=1, per_class=True)
    assert isinstance(per, list) and len(per) == K and per[0] == max(per) and max(abs(t - shared) for t in per) > 0.01
    lp = np.log(np.clip(p, 1e-6, 1))
    nll = lambda T: -np.mean(log_softmax(lp / np.asarray(T, float), axis=1)[np.arange(n), y])   # noqa: E731
    assert nll(per) < nll(shared)
    q = calibrate.apply_temperature_classes(p, per, axis=1)
    np.testing.assert_allclose(q, np.exp(log_softmax(lp / np.asarray(per), axis=1)), atol=1e-12)
    # along axis 0 of a [K, H, W] map, as the predictions are scaled (results.calibrated_stats)
    m = p[:12].T.reshape(K, 3, 4)
    np.testing.assert_allclose(calibrate.apply_temperature_classes(m, per, axis=0).reshape(K, 12).T,
                               calibrate.apply_temperature_classes(p[:12], per, axis=1), atol=1e-12)
    with pytest.raises(ValueError, match="2 class temperatures for 3 classes"):
        calibrate.apply_temperature_classes(p, [1.0, 2.0], axis=1)


def test_top_label_ece_of_two_classes_is_the_binary_ece():
    rng = np.random.default_rng(3)
    q = rng.random(5000)
    y = (rng.random(5000) < q ** 1.5).astype(int)
    q = q[q != 0.5]
    y = y[: q.size]
    two = np.stack([1 - q, q], axis=1)
    assert calibrate.top_label_ece(two, y) == pytest.approx(calibrate.ece(q, y), abs=1e-12)


def test_calibrated_stats_scale_each_members_classes():
    from glaciermap.results import calibrated_stats

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), (2, 4, 5)).transpose(0, 3, 1, 2)      # [M=2, K=3, 4, 5]
    mu, sd = calibrated_stats(probs, [1.0, 2.0])
    m1 = calibrate.apply_temperature_classes(probs[1], 2.0, axis=0)
    np.testing.assert_allclose(mu, (probs[0] + m1) / 2, atol=1e-6)
    np.testing.assert_allclose(mu.sum(0), 1.0, atol=1e-9)
    np.testing.assert_allclose(sd, np.abs(probs[0] - m1) / 2, atol=1e-6)


def test_run_calibrate_classes_and_confusion(labelled, tmp_path):
    paths, labels, target, stats = labelled
    g = IDS[0]
    rng = np.random.default_rng(0)
    H, W = target.shape
    # two members, over-confident: the true class gets most mass, 10 % of pixels wrong
    truth = np.where(target == IGNORE, 0, target)
    wrong = rng.random((H, W)) < 0.1
    cls = np.where(wrong, (truth + 1) % 3, truth)
    probs = np.full((2, 3, H, W), 0.005, np.float32)
    for mbr in range(2):
        probs[mbr, cls, np.arange(H)[:, None], np.arange(W)] = 0.99
    probs[:, :, :, :3] = np.nan                               # outside the predicted region
    pred = tmp_path / "fold0" / "inventory" / f"{g}.nc"
    pred.parent.mkdir(parents=True)
    infer.write_predictions(pred, probs, paths[g], classes=CLASSES)
    out = calibrate.run_calibrate(0, [g], [pred], [paths[g]], None, {"subsample": 1, "ece_bins": 10},
                                  tmp_path / "calibration.json", label_paths=[labels[g]])
    assert out["tau_model"] is None and out["classes"] == CLASSES and len(out["temperatures"]) == 2
    n = int(((target != IGNORE) & (np.arange(W) >= 3)).sum())
    assert out["n_pixels"] == n
    # over-confident -> every class's T > 1 (per class, the default), and a lower ECE
    assert len(out["temperatures"][0]) == 3 and min(out["temperatures"][0]) > 1.2
    assert out["ece_after"] < out["ece_before"] and out["temperature_kind"] == "per class"
    shared = calibrate.run_calibrate(0, [g], [pred], [paths[g]], None,
                                     {"subsample": 1, "ece_bins": 10, "class_temperatures": "shared"},
                                     tmp_path / "shared.json", label_paths=[labels[g]])
    assert shared["temperatures"][0] > 1.2 and shared["temperature_kind"] == "shared by the classes"
    assert json.loads((tmp_path / "calibration.json").read_text())["tau_model"] is None
    o = {k: tmp_path / f"{k}.out" for k in ("confusion", "metrics", "json")}
    s = confusion.run_confusion({g: str(pred)}, {g: str(paths[g])}, {g: str(labels[g])},
                                [tmp_path / "calibration.json"], CLASSES, o)
    # scored: the glacier + 50 m (other glaciers, maybe training glaciers, never), predicted, labelled, clear
    m = read_cube_masks(paths[g])
    sel = (target != IGNORE) & (np.arange(W) >= 3) & m["buffer50"] & ~m["masked"]
    others = (scene_labels() >= 0) & ~m["glacier"]
    assert others.any() and not (sel & others).any() and 0 < sel.sum() < n
    assert s["pixels"] == sel.sum() and s["overall_accuracy"] == pytest.approx((cls[sel] == truth[sel]).mean())
    conf = pd.read_csv(o["confusion"])
    cm = conf[conf["fold"] == "all"].pivot(index="truth", columns="predicted", values="pixels").loc[CLASSES, CLASSES]
    np.testing.assert_array_equal(cm.to_numpy(), sk_confusion(truth[sel], cls[sel], labels=range(3)))
    assert s["ece_after"] < s["ece_before"]
    # member 0 alone (uncalibrated argmax): the single-model reference of rule random_split
    first = probs[0][:, sel].argmax(0)
    assert s["single_member"]["overall_accuracy"] == pytest.approx((first == truth[sel]).mean())
    assert s["single_member"]["pixels"] == s["pixels"]
    # per class (one-vs-rest): the binary ECE of p(class) against truth == class, before (raw ensemble mean)
    raw = probs.mean(0)[:, sel].T
    for i, c in enumerate(CLASSES):
        assert s["ece_per_class"][c]["ece_before"] == pytest.approx(calibrate.ece(raw[:, i], truth[sel] == i, 10))
        assert s["ece_per_class"][c]["ece_after"] < s["ece_per_class"][c]["ece_before"]
    # the labels' class names must be the model's
    with pytest.raises(ValueError, match="has classes"):
        confusion.run_confusion({g: str(pred)}, {g: str(paths[g])}, {g: str(labels[g])},
                                [tmp_path / "calibration.json"], ["a", "b", "c"], o)
    assert read_label_raster(labels[g])[1] == CLASSES
    # a binary model: background/glacier from the outline, glacier where the calibrated mean >= 0.5
    pb = np.where(np.arange(W) >= 3, np.where(m["glacier"], 0.8, 0.3), np.nan)[None].repeat(2, 0).astype(np.float32)
    pb[:, 5:8] = 1 - pb[:, 5:8]                               # a band of errors
    bpred = tmp_path / "fold0" / "inventory" / "bin.nc"
    infer.write_predictions(bpred, pb, paths[g])
    sb = confusion.run_confusion({g: str(bpred)}, {g: str(paths[g])}, None, [], ["glacier"], o)
    selb = (np.arange(W) >= 3) & m["buffer50"] & ~m["masked"]
    want = sk_confusion(m["glacier"][selb].astype(int), (pb[0] >= 0.5)[selb].astype(int), labels=[0, 1])
    conf = pd.read_csv(o["confusion"])
    got = conf[conf["fold"] == "all"].pivot(index="truth", columns="predicted", values="pixels")
    np.testing.assert_array_equal(got.loc[["background", "glacier"], ["background", "glacier"]].to_numpy(), want)
    assert sb["classes"] == ["background", "glacier"] and sb["pixels"] == selb.sum()
