"""Calibrated confidence of the facies classifier (glaciermap.facies.calibrate)."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics import f1_score

from glaciermap.facies.calibrate import (
    GRID,
    apply_curve,
    curve,
    ece,
    ece_per_class,
    fit_krr,
    reliability_bins,
    run_facies_calibrate,
)

CLASSES = ["ice", "snow", "debris", "firn"]


def overconfident(n, seed, lo=0.3):
    """Scores s in [lo, 1] whose true accuracy is s**2 (over-confident)."""
    rng = np.random.default_rng(seed)
    conf = lo + (1 - lo) * rng.beta(3, 1.2, n)
    correct = rng.random(n) < conf**2
    return conf, correct


def strict_json(path):
    def bad(c):
        raise AssertionError(f"non-standard JSON constant {c} in {path}")
    return json.loads(path.read_text(), parse_constant=bad)


# --------------------------------------------------------------------------- bins and ECE


def test_reliability_bins_by_hand():
    conf = np.array([0.0, 0.05, 0.15, 0.15, 0.85, 0.85, 1.0])
    correct = np.array([0, 1, 1, 0, 1, 1, 1])
    b = reliability_bins(conf, correct, n_bins=10)
    assert list(b["lower"]) == pytest.approx([0.0, 0.1, 0.8, 0.9])
    assert list(b["upper"]) == pytest.approx([0.1, 0.2, 0.9, 1.0])
    assert list(b["count"]) == [2, 2, 2, 1]  # 1.0 falls in the last (closed) bin
    assert list(b["conf_mean"]) == pytest.approx([0.025, 0.15, 0.85, 1.0])
    assert list(b["accuracy"]) == pytest.approx([0.5, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability_bins([0.5, 1.2], [1, 0])


def test_ece_by_hand_and_against_a_loop():
    conf = np.array([0.15, 0.15, 0.85, 0.85])
    correct = np.array([1, 0, 1, 1])
    # bin 0.1-0.2: |0.5 - 0.15| * 2/4; bin 0.8-0.9: |1 - 0.85| * 2/4
    assert ece(conf, correct, n_bins=10) == pytest.approx(0.35 * 0.5 + 0.15 * 0.5)
    c, y = overconfident(3000, 0)
    loop = 0.0
    for k in range(100):
        sel = (c >= k / 100) & ((c < (k + 1) / 100) if k < 99 else (c <= 1))
        if sel.any():
            loop += sel.sum() / len(c) * abs(y[sel].mean() - c[sel].mean())
    assert ece(c, y) == pytest.approx(loop)
    assert np.isnan(ece([], []))


def test_ece_per_class_is_the_ece_of_each_predicted_class():
    c, y = overconfident(2000, 1)
    pred = np.random.default_rng(1).integers(0, 3, len(c))  # class 3 never predicted
    per = ece_per_class(c, y, pred, CLASSES)
    for i in range(3):
        assert per[CLASSES[i]] == pytest.approx(ece(c[pred == i], y[pred == i]))
    assert per["firn"] is None
    names = np.array(CLASSES, dtype=object)[pred]
    assert ece_per_class(c, y, names, CLASSES) == per


# --------------------------------------------------------------------------- kernel ridge regression


def test_fit_krr_is_sklearn_kernel_ridge_on_weighted_bins():
    c, y = overconfident(4000, 2)
    m = fit_krr(c, y, alpha=0.5, gamma=7.0)
    b = reliability_bins(c, y)
    ref = KernelRidge(alpha=0.5, kernel="laplacian", gamma=7.0)
    ref.fit(b[["conf_mean"]].to_numpy(), b["accuracy"].to_numpy(), sample_weight=b["count"].to_numpy(float))
    x = GRID.reshape(-1, 1)
    np.testing.assert_allclose(m.predict(x), ref.predict(x))
    assert m.kernel == "laplacian" and m.alpha == 0.5 and m.gamma == 7.0


def test_sample_weight_matters_and_tracks_the_heavy_bins():
    """Bins of 2000 points at 60 % and 80 % accuracy around a bin of 3 points at 0 %. Weighted by the counts the
    fit goes through the heavy bins; unweighted it treats the 3 points like 2000 and shrinks everything."""
    conf = np.r_[np.full(2000, 0.605), np.full(3, 0.705), np.full(2000, 0.805)]
    correct = np.r_[np.arange(2000) % 5 < 3, np.zeros(3, bool), np.arange(2000) % 5 < 4]
    b = reliability_bins(conf, correct)
    assert list(b["count"]) == [2000, 3, 2000]
    assert list(b["accuracy"]) == pytest.approx([0.6, 0.0, 0.8])
    x = b[["conf_mean"]].to_numpy()
    for alpha in (1.0, 10.0):
        w = fit_krr(conf, correct, alpha=alpha, gamma=10.0).predict(x)
        u = KernelRidge(alpha=alpha, kernel="laplacian", gamma=10.0).fit(x, b["accuracy"]).predict(x)
        np.testing.assert_allclose(w[[0, 2]], [0.6, 0.8], atol=0.01)  # the heavy bins are followed
        assert (np.abs(u[[0, 2]] - [0.6, 0.8]) > 0.2).all()  # the unweighted fit misses them
    # a stronger prior pulls the light bin towards its heavy neighbours, never the heavy bins towards it
    w10 = fit_krr(conf, correct, alpha=10.0, gamma=10.0).predict(x)
    assert w10[1] > 0.3


def test_counts_passed_as_alpha_are_not_weights():
    """Why sample_weight (METHODS.md): with a 1-D target sklearn applies only the first entry of an ``alpha`` array
    (the first bin's count) as the one ridge penalty, the per-bin counts weight nothing and the curve collapses."""
    conf = np.r_[np.full(2000, 0.605), np.full(3, 0.705), np.full(2000, 0.805)]
    correct = np.r_[np.arange(2000) % 5 < 3, np.zeros(3, bool), np.arange(2000) % 5 < 4]
    b = reliability_bins(conf, correct)
    x, y, counts = b[["conf_mean"]].to_numpy(), b["accuracy"].to_numpy(), b["count"].to_numpy(float)
    as_alpha = KernelRidge(alpha=counts, kernel="laplacian", gamma=10.0).fit(x, y).predict(x)
    first_only = KernelRidge(alpha=counts[0], kernel="laplacian", gamma=10.0).fit(x, y).predict(x)
    np.testing.assert_allclose(as_alpha, first_only)
    assert as_alpha.max() < 0.01  # alpha = 2000: everything shrunk to ~0
    np.testing.assert_allclose(fit_krr(conf, correct).predict(x)[[0, 2]], [0.6, 0.8], atol=0.01)


def test_calibration_reduces_ece_of_overconfident_scores():
    cv, yv = overconfident(5000, 3)
    ct, yt = overconfident(20000, 4)
    values = curve(fit_krr(cv, yv))
    cal = apply_curve(ct, GRID, values)
    before, after = ece(ct, yt), ece(cal, yt)
    assert before > 0.1
    assert after < 0.04 and after < before / 3
    # the curve follows the planted accuracy s**2 where there are scores
    g = np.linspace(0.5, 0.98, 25)
    dev = apply_curve(g, GRID, values) - g**2
    assert np.sqrt(np.mean(dev**2)) < 0.05 and np.abs(dev).max() < 0.15


def test_curve_is_clipped_to_the_unit_interval():
    class Line:
        def predict(self, x):
            return 2.0 * x.ravel() - 0.5

    values = curve(Line())
    assert values.min() == 0.0 and values.max() == 1.0
    inside = (GRID >= 0.25) & (GRID <= 0.75)
    np.testing.assert_allclose(values[inside], 2 * GRID[inside] - 0.5)
    assert (values[GRID < 0.25] == 0).all() and (values[GRID > 0.75] == 1).all()


def test_apply_curve_is_linear_interpolation():
    values = np.clip(np.sin(GRID * 3), 0, 1)
    s = np.array([0.0, 0.1234, 0.5, 0.99999, 1.0])
    np.testing.assert_allclose(apply_curve(s, GRID, values), np.interp(s, GRID, values))


def test_fit_krr_rejects_bad_settings():
    c, y = overconfident(100, 5)
    with pytest.raises(ValueError, match="alpha"):
        fit_krr(c, y, alpha=0.0)
    with pytest.raises(ValueError, match="no validation points"):
        fit_krr([], [])


# --------------------------------------------------------------------------- rule


def synthetic_probs(n, seed, k=4):
    """Probabilities with top score s (over-confident: correct with probability s**2); the given label is the
    predicted class when correct, another class otherwise."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.35, 1.0, n)
    pred = rng.integers(0, k, n)
    p = np.repeat(((1 - s) / (k - 1))[:, None], k, axis=1)
    p[np.arange(n), pred] = s
    correct = rng.random(n) < s**2
    label = pred.copy()
    wrong = np.flatnonzero(~correct)
    label[wrong] = (pred[wrong] + rng.integers(1, k, len(wrong))) % k
    return p, label, pred


def write_folds(tmp_path, n_folds=3, n_per_fold=1500, seed=0):
    """Per fold: test rows = that fold's points; val rows = the points of the fold before (other predictions)."""
    paths, noisy_rows = [], []
    rng = np.random.default_rng(seed)
    for f in range(n_folds):
        rows = []
        for role in ("test", "val"):
            pf = f if role == "test" else (f - 1) % n_folds
            p, label, _ = synthetic_probs(n_per_fold, seed * 100 + f * 10 + (role == "val"))
            d = pd.DataFrame({"point_id": [f"F{pf}_{i}" for i in range(n_per_fold)], "fold": f, "role": role,
                              "label": np.array(CLASSES)[label]})
            for j, c in enumerate(CLASSES):
                d[f"p_{c}"] = p[:, j]
            rows.append(d)
            if role == "test":
                noisy_rows.append(pd.DataFrame({"point_id": d["point_id"], "true_class": d["label"],
                                                "noisy": rng.random(n_per_fold) < 0.2}))
        path = tmp_path / f"fold{f}.csv"
        pd.concat(rows).to_csv(path, index=False)
        paths.append(path)
    truth = tmp_path / "truth.csv"
    pd.concat(noisy_rows).to_csv(truth, index=False)
    return paths, truth


def test_run_facies_calibrate_end_to_end(tmp_path):
    paths, truth = write_folds(tmp_path)
    out = tmp_path / "out"
    res = run_facies_calibrate(paths, CLASSES, out / "curves.csv", out / "points.csv", out / "calibration.json",
                               truth_csv=truth)
    assert sorted(x.name for x in out.iterdir()) == ["calibration.json", "curves.csv", "points.csv"]

    curves = pd.read_csv(out / "curves.csv")
    assert list(curves.columns) == ["fold", "score", "calibrated"]
    assert curves.groupby("fold").size().to_dict() == {0: 1001, 1: 1001, 2: 1001}
    assert curves["calibrated"].between(0, 1).all()

    pts = pd.read_csv(out / "points.csv")
    assert list(pts.columns) == ["point_id", "fold", "label", "pred", "conf_raw", "conf_cal", "correct"]
    assert len(pts) == 4500 and pts["point_id"].is_unique
    assert (pts["correct"] == (pts["label"] == pts["pred"])).all()

    # each fold's curve is the one fitted on that fold's val rows alone, applied to that fold's test rows
    for f, path in enumerate(paths):
        d = pd.read_csv(path)
        val = d[d["role"] == "val"]
        probs = val[[f"p_{c}" for c in CLASSES]].to_numpy()
        ok = np.array(CLASSES)[probs.argmax(axis=1)] == val["label"].to_numpy()
        expected = curve(fit_krr(probs.max(axis=1), ok))
        got = curves.loc[curves["fold"] == f, "calibrated"].to_numpy()
        np.testing.assert_allclose(got, expected, atol=1e-12)
        pf = pts[pts["fold"] == f]
        np.testing.assert_allclose(pf["conf_cal"], np.interp(pf["conf_raw"], GRID, expected), atol=1e-12)

    s = strict_json(out / "calibration.json")
    assert s == res
    assert s["n_bins"] == 100 and s["alpha"] == 1.0 and s["gamma"] == 10.0
    assert s["ece_before"] == pytest.approx(ece(pts["conf_raw"], pts["correct"]))
    assert s["ece_after"] == pytest.approx(ece(pts["conf_cal"], pts["correct"]))
    assert s["ece_before"] > 0.1 and s["ece_after"] < s["ece_before"] / 2
    assert set(s["per_fold"]) == {"0", "1", "2"}
    assert all(v["n_val"] == 1500 and v["n_test"] == 1500 for v in s["per_fold"].values())
    assert all(v["ece_after"] < v["ece_before"] for v in s["per_fold"].values())
    assert set(s["ece_after_per_class"]) == set(CLASSES)
    assert s["macro_f1"] == pytest.approx(f1_score(pts["label"], pts["pred"], average="macro"))
    per = f1_score(pts["label"], pts["pred"], labels=CLASSES, average=None)
    assert [s["f1_per_class"][c] for c in CLASSES] == pytest.approx(list(per))
    assert s["accuracy"] == pytest.approx((pts["label"] == pts["pred"]).mean())
    t = pd.read_csv(truth).set_index("point_id").loc[pts["point_id"]]
    clean = ~t["noisy"].to_numpy()
    assert s["n_points_true_labels"] == clean.sum()
    assert s["macro_f1_true_labels"] == pytest.approx(
        f1_score(pts["label"][clean], pts["pred"][clean], average="macro"))
    assert s["macro_f1_true_labels"] != pytest.approx(s["macro_f1"], abs=1e-9)


def test_class_never_given_nor_predicted_is_null(tmp_path):
    paths, _ = write_folds(tmp_path, n_per_fold=400)
    classes = CLASSES + ["cloud"]
    for path in paths:
        pd.read_csv(path).assign(p_cloud=0.0).to_csv(path, index=False)
    s = run_facies_calibrate(paths, classes, tmp_path / "c.csv", tmp_path / "p.csv", tmp_path / "s.json")
    assert s["f1_per_class"]["cloud"] is None
    assert s["ece_before_per_class"]["cloud"] is None
    pts = pd.read_csv(tmp_path / "p.csv")
    assert s["macro_f1"] == pytest.approx(f1_score(pts["label"], pts["pred"], average="macro"))
    assert strict_json(tmp_path / "s.json")["f1_per_class"]["cloud"] is None


def test_fold_without_val_rows_is_an_error_naming_the_file(tmp_path):
    paths, _ = write_folds(tmp_path, n_per_fold=200)
    d = pd.read_csv(paths[1])
    d[d["role"] == "test"].to_csv(paths[1], index=False)
    with pytest.raises(ValueError, match=r"fold1\.csv.*fold 1 has no 'val' rows"):
        run_facies_calibrate(paths, CLASSES, tmp_path / "c.csv", tmp_path / "p.csv", tmp_path / "s.json")
    assert not (tmp_path / "c.csv").exists()


def test_duplicate_test_points_are_an_error(tmp_path):
    paths, _ = write_folds(tmp_path, n_per_fold=200)
    d0 = pd.read_csv(paths[0])
    dup = d0[d0["role"] == "test"].head(1).assign(fold=2)
    pd.concat([pd.read_csv(paths[2]), dup]).to_csv(paths[2], index=False)
    with pytest.raises(ValueError, match=f"{dup['point_id'].iloc[0]} in"):
        run_facies_calibrate(paths, CLASSES, tmp_path / "c.csv", tmp_path / "p.csv", tmp_path / "s.json")
