"""Calibrated confidence of the facies classifier (rule ``facies_calibrate``; Maslov et al., seed 002).

The paper (after Maslov et al. 2025) maps the raw confidence, the maximum softmax score s = max_i p_i, to the
observed accuracy Pr(argmax p == given label | s) with a kernel ridge regression (Laplacian kernel), fitted per fold
on that fold's validation points and clipped to [0, 1]; its quality is the expected calibration error over 100
equal-width bins of [0, 1] (ECE_100).

The regression is fitted on the reliability curve of the validation points: x = mean score of each non-empty bin,
y = accuracy of the bin, **sample_weight** = the bin's point count. The public code passes the counts as ``alpha``
(METHODS.md): scikit-learn reads an ``alpha`` array as one penalty per target, so for a 1-D target it applies only
the first bin's count as the single ridge penalty and weights no bin (tested); here the counts are weights.
A weighted fit on bin means is the point-wise least-squares fit with every point moved to its bin mean, so ``alpha``
acts as a prior of fixed strength: the more validation points, the closer the curve follows the observed bins.

Defaults (config ``facies.calibration``): ``alpha = 1.0``, ``gamma = 10`` (Laplacian kernel exp(-gamma |s - s'|),
a correlation length of 0.1 in score). With bins of a few points or more, alpha = 1 is small against the weights and
the curve reproduces the reliability curve almost exactly, as the paper asks ("reconstructed the shapes of the curves
almost identically"), while sparse bins (a few points) are pulled towards their neighbours; gamma = 10 smooths over
~10 bins of 0.01, so that one noisy bin does not make a spike. Note that a Laplacian kernel ridge has no intercept:
far (> ~0.2) from any validation score the curve decays towards 0; scores below 1/K cannot occur, so in practice only
empty stretches inside the score range are affected, and they are pulled down (conservative).

The fitted curve is stored as a table on a 1001-point grid of [0, 1] (:func:`curve`); the calibrated confidence of
any score is ``np.interp(score, grid, curve)`` (:func:`apply_curve`), so later steps (maps) need the table, not a
pickle.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from glaciermap.facies.label_issues import json_safe, oof_rows, prob_columns, read_fold_probas, read_truth, write_json
from glaciermap.io import write_csv_atomic

log = logging.getLogger("glaciermap.facies.calibrate")

DEFAULT_ALPHA = 1.0
DEFAULT_GAMMA = 10.0
DEFAULT_N_BINS = 100
GRID = np.linspace(0.0, 1.0, 1001)


# --------------------------------------------------------------------------- reliability and ECE


def _check_conf(conf, correct):
    conf = np.asarray(conf, dtype=float).ravel()
    correct = np.asarray(correct).ravel()
    if conf.shape != correct.shape:
        raise ValueError(f"conf {conf.shape} and correct {correct.shape} differ in length")
    if conf.size and (not np.isfinite(conf).all() or conf.min() < 0 or conf.max() > 1):
        raise ValueError(f"confidences must be finite and in [0, 1], found {np.nanmin(conf)} .. {np.nanmax(conf)}")
    return conf, correct.astype(float)


def _bin_index(conf, n_bins: int):
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)  # [k/n, (k+1)/n), the last bin closed


def reliability_bins(conf, correct, n_bins: int = DEFAULT_N_BINS) -> pd.DataFrame:
    """Equal-width bins of [0, 1] (the last one closed): ``lower``, ``upper``, ``conf_mean``, ``accuracy``,
    ``count`` of the non-empty bins, in bin order."""
    conf, correct = _check_conf(conf, correct)
    idx = _bin_index(conf, n_bins)
    count = np.bincount(idx, minlength=n_bins)
    csum = np.bincount(idx, weights=conf, minlength=n_bins)
    asum = np.bincount(idx, weights=correct, minlength=n_bins)
    k = np.flatnonzero(count)
    return pd.DataFrame({
        "lower": k / n_bins,
        "upper": (k + 1) / n_bins,
        "conf_mean": csum[k] / count[k],
        "accuracy": asum[k] / count[k],
        "count": count[k].astype(np.int64),
    })


def ece(conf, correct, n_bins: int = DEFAULT_N_BINS) -> float:
    """Expected calibration error: sum over bins of count / N * |accuracy - mean confidence| (NaN if no points)."""
    b = reliability_bins(conf, correct, n_bins)
    n = b["count"].sum()
    if n == 0:
        return float("nan")
    return float((b["count"] / n * (b["accuracy"] - b["conf_mean"]).abs()).sum())


def ece_per_class(conf, correct, pred_class, classes, n_bins: int = DEFAULT_N_BINS) -> dict:
    """ECE of the points predicted as each class (``pred_class``: indices or names); None for a class never
    predicted."""
    conf, correct = _check_conf(conf, correct)
    pred_class = np.asarray(pred_class).ravel()
    if pred_class.shape != conf.shape:
        raise ValueError(f"pred_class {pred_class.shape} and conf {conf.shape} differ in length")
    out = {}
    for i, c in enumerate(classes):
        sel = (pred_class == c) if pred_class.dtype.kind in "OUS" else (pred_class == i)
        out[c] = ece(conf[sel], correct[sel], n_bins) if sel.any() else None
    return out


# --------------------------------------------------------------------------- kernel ridge regression


def fit_krr(conf_val, correct_val, n_bins: int = DEFAULT_N_BINS, alpha: float = DEFAULT_ALPHA,
            gamma: float = DEFAULT_GAMMA):
    """A fitted ``sklearn.kernel_ridge.KernelRidge`` (Laplacian kernel) of accuracy on confidence, fitted on the
    reliability bins of the validation points with the bin counts as ``sample_weight``."""
    from sklearn.kernel_ridge import KernelRidge

    if not alpha > 0 or not gamma > 0:
        raise ValueError(f"KernelRidge alpha and gamma must be > 0, got alpha={alpha}, gamma={gamma}")
    b = reliability_bins(conf_val, correct_val, n_bins)
    if b.empty:
        raise ValueError("no validation points to fit the calibration on")
    model = KernelRidge(alpha=alpha, kernel="laplacian", gamma=gamma)
    model.fit(b[["conf_mean"]].to_numpy(), b["accuracy"].to_numpy(), sample_weight=b["count"].to_numpy(dtype=float))
    return model


def curve(model, grid=GRID) -> np.ndarray:
    """The model's calibrated confidence on ``grid`` (default 1001 points of [0, 1]), clipped to [0, 1]."""
    grid = np.asarray(grid, dtype=float)
    return np.clip(model.predict(grid.reshape(-1, 1)), 0.0, 1.0)


def apply_curve(score, grid, values) -> np.ndarray:
    """Calibrated confidence of raw scores: linear interpolation in a stored curve table."""
    return np.interp(np.asarray(score, dtype=float), np.asarray(grid, dtype=float), np.asarray(values, dtype=float))


# --------------------------------------------------------------------------- rule


def _f1(y_true, y_pred, classes) -> tuple[float | None, dict]:
    """sklearn macro F1 (over the classes present in either array, sklearn's default) and F1 per class (None for
    a class absent from both)."""
    from sklearn.metrics import f1_score

    if len(y_true) == 0:
        return None, {c: None for c in classes}
    macro = float(f1_score(y_true, y_pred, average="macro", zero_division=0))
    present = sorted(set(np.asarray(y_true).tolist()) | set(np.asarray(y_pred).tolist()))
    per = f1_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    by_idx = dict(zip(present, per))
    return macro, {c: (float(by_idx[i]) if i in by_idx else None) for i, c in enumerate(classes)}


def run_facies_calibrate(proba_csvs, classes, out_curves_csv, out_points_csv, out_json, n_bins: int = DEFAULT_N_BINS,
                         alpha: float = DEFAULT_ALPHA, gamma: float = DEFAULT_GAMMA, truth_csv=None) -> dict:
    """Rule ``facies_calibrate``: per fold, fit the curve on the fold's ``val`` rows (max softmax score vs argmax ==
    given label) and apply it to the fold's ``test`` rows.

    Writes ``out_curves_csv`` (fold, score, calibrated: 1001 rows per fold), ``out_points_csv`` (point_id, fold, label,
    pred, conf_raw, conf_cal, correct) and ``out_json`` (ECE before / after over all OOF test points and per predicted
    class, per fold counts and ECEs, macro F1 and accuracy of pred vs the given label; with ``truth_csv`` the macro F1
    on the points whose given label is correct, the demo's headline metric). Returns the JSON content.
    """
    classes = list(classes)
    df = read_fold_probas(proba_csvs, classes)
    oof_rows(df)  # every point a test point exactly once (ValueError naming duplicates)
    pcols = prob_columns(classes)
    probs = df[pcols].to_numpy(dtype=float)
    df["pred_idx"] = probs.argmax(axis=1)
    df["conf_raw"] = probs.max(axis=1)
    df["correct"] = df["pred_idx"] == df["label_idx"]

    curves, points, per_fold = [], [], {}
    for fold in sorted(df["fold"].unique()):
        fd = df[df["fold"] == fold]
        val, test = fd[fd["role"] == "val"], fd[fd["role"] == "test"]
        if val.empty:
            raise ValueError(f"fold probabilities {sorted(fd['source'].unique())}: fold {fold} has no 'val' rows "
                             "to fit its calibration on")
        if test.empty:
            log.warning("fold %s has no 'test' rows: its curve is fitted but applied to nothing", fold)
        model = fit_krr(val["conf_raw"], val["correct"], n_bins=n_bins, alpha=alpha, gamma=gamma)
        values = curve(model, GRID)
        curves.append(pd.DataFrame({"fold": int(fold), "score": GRID, "calibrated": values}))
        cal = apply_curve(test["conf_raw"], GRID, values)
        points.append(pd.DataFrame({
            "point_id": test["point_id"].to_numpy(),
            "fold": int(fold),
            "label": test["label"].to_numpy(),
            "pred": np.asarray(classes, dtype=object)[test["pred_idx"].to_numpy()],
            "conf_raw": test["conf_raw"].to_numpy(),
            "conf_cal": cal,
            "correct": test["correct"].to_numpy(dtype=bool),
        }))
        per_fold[int(fold)] = {
            "n_val": int(len(val)),
            "n_test": int(len(test)),
            "ece_val_before": ece(val["conf_raw"], val["correct"], n_bins),
            "ece_val_after": ece(apply_curve(val["conf_raw"], GRID, values), val["correct"], n_bins),
            "ece_before": ece(test["conf_raw"], test["correct"], n_bins) if len(test) else None,
            "ece_after": ece(cal, test["correct"], n_bins) if len(test) else None,
        }
        log.info("fold %s: %d val, %d test points, test ECE %.4f -> %.4f", fold, len(val), len(test),
                 per_fold[int(fold)]["ece_before"] or float("nan"), per_fold[int(fold)]["ece_after"] or float("nan"))
    pts = pd.concat(points, ignore_index=True)
    cls_idx = {c: i for i, c in enumerate(classes)}
    y_true = pts["label"].map(cls_idx).to_numpy()
    y_pred = pts["pred"].map(cls_idx).to_numpy()
    macro, per_class = _f1(y_true, y_pred, classes)
    out = {
        "n_bins": int(n_bins),
        "alpha": float(alpha),
        "gamma": float(gamma),
        "kernel": "laplacian",
        "n_points": int(len(pts)),
        "ece_before": ece(pts["conf_raw"], pts["correct"], n_bins),
        "ece_after": ece(pts["conf_cal"], pts["correct"], n_bins),
        "ece_before_per_class": ece_per_class(pts["conf_raw"], pts["correct"], y_pred, classes, n_bins),
        "ece_after_per_class": ece_per_class(pts["conf_cal"], pts["correct"], y_pred, classes, n_bins),
        "per_fold": per_fold,
        "accuracy": float(np.mean(y_true == y_pred)) if len(pts) else None,
        "macro_f1": macro,
        "f1_per_class": per_class,
    }
    if truth_csv:
        truth = read_truth(truth_csv, pts["point_id"])
        clean = ~truth["noisy"].to_numpy(dtype=bool)
        macro_t, per_t = _f1(y_true[clean], y_pred[clean], classes)
        out.update({
            "truth": str(truth_csv),
            "n_points_true_labels": int(clean.sum()),
            "macro_f1_true_labels": macro_t,
            "f1_per_class_true_labels": per_t,
            "accuracy_true_labels": float(np.mean(y_true[clean] == y_pred[clean])) if clean.any() else None,
        })
    log.info("calibration: ECE %.4f -> %.4f over %d OOF points; macro F1 %.4f", out["ece_before"], out["ece_after"],
             out["n_points"], macro if macro is not None else float("nan"))
    write_csv_atomic(out_curves_csv, pd.concat(curves, ignore_index=True))
    write_csv_atomic(out_points_csv, pts)
    write_json(out_json, out)
    return json_safe(out)
