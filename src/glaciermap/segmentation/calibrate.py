"""Calibration of ensemble predictions and of glacier area bounds (DL4GAM, paper section 3.5.3).

Two steps:

1. Pixel level: temperature scaling of each ensemble member (one scalar T per member, fitted on
   cloud-free validation pixels), checked with the expected calibration error (ECE).
2. Area level: a glacier-specific threshold tau in (0, 0.5) that widens or narrows the area bounds
   ``A_lb = a_px * #(mu - sigma >= 1 - tau)`` and ``A_ub = a_px * #(mu + sigma >= tau)``. For each
   validation glacier tau* is the largest tau whose interval still contains the reference area; a
   linear quantile regression (q = 0.3173, so ~68 % of glaciers are covered) on four glacier-level
   predictors, through a logit link on 2 tau, gives tau_hat for any glacier of any epoch.

K-class models (prob(member, class, y, x); glaciermap.segmentation.labels): step 1 only, on the classes: one T per member
scales the log-probabilities (softmax(log p / T), Guo et al. 2017), fitted by the multi-class log-loss on the
labelled validation pixels; the ECE is the top-label one (confidence = the largest class probability, bins
over [1/K, 1]; for K = 2 the binary definition). The area bounds of step 2 are for the binary glacier target
only (a K-class calibration.json has ``tau_model: null``).

Pure numpy / scipy / scikit-learn so that it runs (and is tested) without torch or rasterio (the K-class
labels are read with rasterio).

Rule ``calibrate`` (workflow/rules/segmentation/calibrate.smk) runs :func:`run_calibrate`: reads one fold's validation
predictions and cubes, fits the temperatures and the tau model (:func:`_constant_tau_model` when the fold
has too few validation glaciers for the regression) and writes the fold's calibration.json.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit
from scipy.stats import norm

from glaciermap.io import write_json_atomic
from glaciermap.results import _clean, calibrated_stats, read_cube_masks, read_manifest, read_probs

log = logging.getLogger("glaciermap.segmentation.calibrate")

P_CLIP = 1e-6
# 1 - (Phi(1) - Phi(-1)): the fraction of glaciers a 1-sigma interval may miss.
TAU_QUANTILE = float(1.0 - (norm.cdf(1.0) - norm.cdf(-1.0)))
TAU_FEATURES = ("log_area", "mean_mu", "rms_sigma", "rms_bernoulli")

MIN_AREA_KM2 = 0.01
Z_EPS = 1e-3  # clip for tau*/0.5 before the logit; below the 0.002 resolution of the tau grid


# --------------------------------------------------------------------------- temperature scaling


def apply_temperature(p, T: float):
    """Temperature-scaled probabilities sigmoid(logit(p) / T).

    p is clipped to [1e-6, 1 - 1e-6] first so that saturated outputs keep a finite logit.
    NaN stays NaN (masked pixels pass through).
    """
    p = np.asarray(p, dtype=np.float64)
    return expit(logit(np.clip(p, P_CLIP, 1.0 - P_CLIP)) / float(T))


def _log_loss(p, y) -> float:
    p = np.clip(p, P_CLIP, 1.0 - P_CLIP)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def fit_temperature(p, y, bounds=(0.5, 5.0), subsample: int = 10) -> float:
    """Temperature of one ensemble member: bounded minimisation of the binary log-loss.

    ``p`` and ``y`` are that member's probabilities and the labels (0/1) of cloud-free validation
    pixels (the caller does the masking); non-finite pairs are dropped. Only every ``subsample``-th
    pixel is used, which keeps the fit cheap and thins out the strong spatial autocorrelation.
    Log-loss rather than ECE (as METHODS.md states): it is smooth in T, so the bounded optimiser
    converges, and it is minimised by calibrated probabilities as well.
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"p and y differ in size: {p.size} vs {y.size}")
    ok = np.isfinite(p) & np.isfinite(y)
    p, y = p[ok][:: max(int(subsample), 1)], y[ok][:: max(int(subsample), 1)]
    if p.size == 0:
        raise ValueError("fit_temperature: no finite validation pixels")
    z = logit(np.clip(p, P_CLIP, 1.0 - P_CLIP))
    res = minimize_scalar(lambda T: _log_loss(expit(z / T), y), bounds=tuple(bounds), method="bounded",
                          options={"xatol": 1e-4})
    return float(res.x)


# --------------------------------------------------------------------------- K classes


def apply_temperature_classes(p, T, axis: int = 0):
    """Temperature-scaled class probabilities softmax(log p / T) along ``axis`` (p clipped to >= 1e-6 first).

    ``T`` is one temperature for every class or one per class (a sequence of K, along ``axis``: each class's log
    probability divided by its own temperature before the softmax). With T = 1 the (clipped, renormalised)
    probabilities come back; NaN stays NaN.
    """
    from scipy.special import softmax

    z = np.log(np.clip(np.asarray(p, dtype=np.float64), P_CLIP, 1.0))
    T = np.asarray(T, dtype=np.float64)
    if T.ndim:
        if T.size != z.shape[axis]:
            raise ValueError(f"{T.size} class temperatures for {z.shape[axis]} classes")
        shape = [1] * z.ndim
        shape[axis] = T.size
        T = T.reshape(shape)
    return softmax(z / T, axis=axis)


def _nll_classes(logp, y) -> float:
    return float(-np.mean(logp[np.arange(y.size), y]))


def fit_temperature_classes(p, y, bounds=(0.5, 5.0), subsample: int = 10, per_class: bool = False):
    """Temperature of one member of a K-class model: bounded minimisation of the multi-class log-loss; with
    ``per_class`` one temperature per class (a list of K; L-BFGS-B from the shared temperature, same bounds).

    ``p`` [n, K] class probabilities and ``y`` [n] true class indices of labelled validation pixels; rows
    with a non-finite probability are dropped; every ``subsample``-th pixel is used (as :func:`fit_temperature`).
    """
    from scipy.special import log_softmax

    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y).astype(np.int64).ravel()
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"p must be [n, K] with n = {y.size} labels, got {p.shape}")
    ok = np.isfinite(p).all(1)
    step = max(int(subsample), 1)
    p, y = p[ok][::step], y[ok][::step]
    if y.size == 0:
        raise ValueError("fit_temperature_classes: no finite validation pixels")
    z = np.log(np.clip(p, P_CLIP, 1.0))
    res = minimize_scalar(lambda T: _nll_classes(log_softmax(z / T, axis=1), y), bounds=tuple(bounds),
                          method="bounded", options={"xatol": 1e-4})
    if not per_class:
        return float(res.x)
    from scipy.optimize import minimize

    # one temperature per class (the log-probability of class c divided by T_c), from the shared one, bounded alike
    K = z.shape[1]
    fit = minimize(lambda T: _nll_classes(log_softmax(z / T[None, :], axis=1), y), np.full(K, float(res.x)),
                   method="L-BFGS-B", bounds=[tuple(bounds)] * K)
    return [float(t) for t in fit.x]


def top_label_reliability(p, y, n_bins: int = 10) -> pd.DataFrame:
    """Reliability of a K-class prediction: per bin of the top-label confidence (the largest class
    probability, bins of equal width over [1/K, 1]) its mean, the share of pixels whose top class is the
    true class, and the count. For K = 2 the bins and confidences of :func:`reliability_curve`."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y).astype(np.int64).ravel()
    ok = np.isfinite(p).all(1)
    p, y = p[ok], y[ok]
    return _binned(p.max(1), (p.argmax(1) == y).astype(np.float64), 1.0 / p.shape[1], n_bins)


def _binned(conf, correct, lo: float, n_bins: int) -> pd.DataFrame:
    """Reliability table: ``n_bins`` equal-width bins of the confidence over [lo, 1] (the last one closed), each
    with its mean confidence, accuracy (mean of ``correct``) and count; empty bins NaN with count 0."""
    edges = np.linspace(lo, 1.0, n_bins + 1)
    # compare with the edges themselves (not floor((c - lo) * n / (1 - lo))): 0.7 must open bin [0.7, 0.75)
    b = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
        acc = np.bincount(b, weights=correct, minlength=n_bins) / count
    return pd.DataFrame({"bin_lo": edges[:-1], "bin_hi": edges[1:], "confidence": mean_conf,
                         "accuracy": acc, "count": count})


def ece_from_curve(rc: pd.DataFrame) -> float:
    """Count-weighted mean |accuracy - confidence| of a reliability table (NaN when it holds no pixel)."""
    n = rc["count"].sum()
    if n == 0:
        return float("nan")
    used = rc["count"] > 0
    gap = (rc.loc[used, "accuracy"] - rc.loc[used, "confidence"]).abs()
    return float((rc.loc[used, "count"] * gap).sum() / n)


def top_label_ece(p, y, n_bins: int = 10) -> float:
    """Top-label expected calibration error of a K-class prediction (p [n, K], y [n])."""
    return ece_from_curve(top_label_reliability(p, y, n_bins))


# --------------------------------------------------------------------------- ECE


def reliability_curve(p, y, n_bins: int = 10) -> pd.DataFrame:
    """Per-bin mean confidence, accuracy and pixel count, for the reliability diagram.

    Confidence is max(p, 1 - p) of the predicted class (p >= 0.5), so it lies in [0.5, 1]; bins are
    ``n_bins`` equal-width intervals over [0.5, 1] (the last one closed). Empty bins have NaN
    confidence/accuracy and count 0. Non-finite pairs are dropped.
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    ok = np.isfinite(p) & np.isfinite(y)
    p, y = p[ok], y[ok]
    return _binned(np.maximum(p, 1.0 - p), ((p >= 0.5) == (y >= 0.5)).astype(np.float64), 0.5, n_bins)


def ece(p, y, n_bins: int = 10) -> float:
    """Expected calibration error: count-weighted mean |accuracy - confidence| over the bins."""
    return ece_from_curve(reliability_curve(p, y, n_bins))


# --------------------------------------------------------------------------- ensemble


def ensemble_stats(probs):
    """Mean and standard deviation over members (axis 0) of calibrated member probabilities.

    Population std (ddof=0): the ensemble is the whole set of members, not a sample to correct for.
    """
    probs = np.asarray(probs, dtype=np.float64)
    return probs.mean(axis=0), probs.std(axis=0)


# --------------------------------------------------------------------------- glacier-specific tau


def tau_features(area_pred_km2: float, mu, sigma, inside) -> dict:
    """The four predictors of tau for one glacier (one epoch), over ``inside`` (glacier + 20 m buffer).

    log(max(A_pred, 0.01 km2)) (A_pred: the mu >= 0.5 area; the floor keeps missed glaciers finite),
    mean mu, sqrt(mean sigma^2) and sqrt(mean mu (1 - mu)). NaN pixels are ignored.
    """
    inside = np.asarray(inside, dtype=bool)
    m, s = np.asarray(mu, dtype=np.float64)[inside], np.asarray(sigma, dtype=np.float64)[inside]
    nan = float("nan")
    with np.errstate(invalid="ignore"):
        return {
            "log_area": float(np.log(max(float(area_pred_km2), MIN_AREA_KM2))),
            "mean_mu": float(np.nanmean(m)) if np.isfinite(m).any() else nan,
            "rms_sigma": float(np.sqrt(np.nanmean(s**2))) if np.isfinite(s).any() else nan,
            "rms_bernoulli": float(np.sqrt(np.nanmean(m * (1.0 - m)))) if np.isfinite(m).any() else nan,
        }


@dataclass
class TauModel:
    """Linear quantile model z = intercept + coef . features, tau = 0.5 * sigmoid(z); JSON-friendly."""

    coef: list
    intercept: float
    features: tuple = TAU_FEATURES
    quantile: float = TAU_QUANTILE
    n_fit: int = 0
    extra: dict = field(default_factory=dict)

    def predict_z(self, features_df: pd.DataFrame) -> np.ndarray:
        X = np.asarray(features_df[list(self.features)], dtype=np.float64)
        return self.intercept + X @ np.asarray(self.coef, dtype=np.float64)


def _z_target(tau, eps: float = Z_EPS):
    return logit(np.clip(np.asarray(tau, dtype=np.float64) / 0.5, eps, 1.0 - eps))


def fit_tau_model(features_df: pd.DataFrame, tau_star, quantile: float = TAU_QUANTILE, eps: float = Z_EPS) -> TauModel:
    """Quantile regression (q = 0.3173, no penalty, HiGHS) of logit(clip(tau*/0.5)) on the predictors.

    Fitted per fold on its validation glaciers. Glaciers with NaN tau* (reference area outside every
    interval) or non-finite predictors are dropped; the number kept is stored as ``n_fit``.
    """
    from sklearn.linear_model import QuantileRegressor

    X = np.asarray(features_df[list(TAU_FEATURES)], dtype=np.float64)
    t = np.asarray(tau_star, dtype=np.float64).ravel()
    if t.size != X.shape[0]:
        raise ValueError(f"{X.shape[0]} feature rows but {t.size} tau* values")
    ok = np.isfinite(t) & np.isfinite(X).all(axis=1)
    if ok.sum() <= len(TAU_FEATURES):
        raise ValueError(f"fit_tau_model: only {int(ok.sum())} usable glaciers for {len(TAU_FEATURES)} predictors + intercept")
    qr = QuantileRegressor(quantile=quantile, alpha=0.0, solver="highs", fit_intercept=True)
    qr.fit(X[ok], _z_target(t[ok], eps))
    return TauModel(coef=[float(c) for c in qr.coef_], intercept=float(qr.intercept_),
                    quantile=float(quantile), n_fit=int(ok.sum()), extra={"eps": eps})


def _as_model(model) -> TauModel:
    return tau_model_from_dict(model) if isinstance(model, dict) else model


def predict_tau(model, features_df: pd.DataFrame) -> np.ndarray:
    """tau_hat = 0.5 * sigmoid(z_hat), in (0, 0.5); NaN where a predictor is NaN. Accepts a model or its dict."""
    return 0.5 * expit(_as_model(model).predict_z(features_df))


def predict_tau_table(model_dict, df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` (must hold ``glac_id`` and the predictors) with a ``tau_hat`` column.

    Meant for each epoch's test glaciers with that epoch's own predictors; the caller joins on
    ``glac_id``, never on row order.
    """
    if "glac_id" not in df.columns:
        raise KeyError("predict_tau_table needs a 'glac_id' column to join on")
    out = df.copy()
    out["tau_hat"] = predict_tau(model_dict, df)
    return out


def tau_model_to_dict(model: TauModel) -> dict:
    """Plain dict (JSON-serialisable) of a fitted tau model: one small file per fold."""
    return {"features": list(model.features), "coef": [float(c) for c in model.coef],
            "intercept": float(model.intercept), "quantile": float(model.quantile),
            "n_fit": int(model.n_fit), "link": "tau = 0.5 * sigmoid(intercept + coef . features)",
            **({"extra": dict(model.extra)} if model.extra else {})}


def tau_model_from_dict(d: dict) -> TauModel:
    """Inverse of :func:`tau_model_to_dict`."""
    feats = tuple(d["features"])
    if len(feats) != len(d["coef"]):
        raise ValueError("tau model dict: features and coef differ in length")
    return TauModel(coef=[float(c) for c in d["coef"]], intercept=float(d["intercept"]), features=feats,
                    quantile=float(d.get("quantile", TAU_QUANTILE)), n_fit=int(d.get("n_fit", 0)),
                    extra=dict(d.get("extra", {})))


# --------------------------------------------------------------------------- rule calibrate


def _constant_tau_model(tau_star, n_fit: int, kind: str):
    """Intercept-only quantile model (the q-quantile of logit(2 tau*)): used when too few glaciers for 4 predictors."""
    t = np.asarray(tau_star, dtype=np.float64)
    t = t[np.isfinite(t)]
    z = float(np.quantile(_z_target(t), TAU_QUANTILE)) if t.size else float(_z_target(0.5))
    return TauModel(coef=[0.0] * len(TAU_FEATURES), intercept=z, n_fit=n_fit, extra={"kind": kind})


def fit_tau_table(tab: pd.DataFrame, min_rows: int):
    """(tau model, usable rows) from a table of tau* and the four predictors: the quantile regression with at least
    ``max(min_rows, 6)`` rows where all are finite, else an intercept-only model (``constant``; ``default`` without
    any usable row)."""
    num = tab[["tau_star", *TAU_FEATURES]].astype(float)
    n_ok = int(np.isfinite(num).all(axis=1).sum())
    if n_ok >= max(int(min_rows), 6):
        model = fit_tau_model(tab, tab["tau_star"])
        model.extra["kind"] = "quantile_regression"
    else:
        model = _constant_tau_model(tab["tau_star"], n_ok, "constant" if n_ok else "default")
    return model, n_ok


def run_calibrate_classes(fold: int, glaciers, pred_paths, label_paths, cfg: dict, out_json) -> dict:
    """A K-class model's fold: per-member temperatures and the top-label ECE before/after, from the labelled
    pixels of its validation glaciers' predictions (label 255, and pixels outside the predicted region, left
    out). Writes calibration.json (``tau_model: null``: the area bounds are for the binary target)."""
    from glaciermap.segmentation.labels import IGNORE, read_label_raster

    label_of = {Path(p).stem: p for p in label_paths}   # .../labels/<set>/<epoch>/<glacier>.tif
    missing = [g for g in glaciers if g not in label_of]
    if missing:
        raise FileNotFoundError(f"fold {fold}: no label raster for validation glacier(s) {', '.join(missing)}")
    ps, ys, classes, used = None, [], None, []
    for g, pp in zip(glaciers, pred_paths, strict=True):
        lp = label_of[g]
        probs = read_probs(pp)
        if probs is None:
            continue
        if probs.ndim != 4:
            raise ValueError(f"glacier {g}: {pp} is not a K-class prediction (prob has dims {probs.ndim}, not 4)")
        lab, names, _ = read_label_raster(lp)
        if lab.shape != probs.shape[-2:]:
            raise ValueError(f"glacier {g}: label raster {lp} is {lab.shape} px, its prediction {pp} {probs.shape[-2:]}")
        if classes is not None and names != classes:
            raise ValueError(f"glacier {g}: label raster {lp} has classes {names}, others {classes}")
        classes = names
        sel = (lab != IGNORE) & np.isfinite(probs).all((0, 1))
        if ps is None:
            ps = [[] for _ in range(probs.shape[0])]
        for i in range(probs.shape[0]):
            ps[i].append(probs[i][:, sel].T)            # [n, K]
        ys.append(lab[sel].astype(np.int64))
        used.append(g)
    ps = ps or []
    y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    sub, bins = int(cfg["subsample"]), int(cfg["ece_bins"])
    per_class = cfg.get("class_temperatures", "per_class") == "per_class"
    temps = [fit_temperature_classes(np.concatenate(p), y, subsample=sub, per_class=per_class) if y.size else 1.0
             for p in ps]
    if y.size:
        before = np.mean([np.concatenate(p) for p in ps], axis=0)
        after = np.mean([apply_temperature_classes(np.concatenate(p), t, axis=1) for p, t in zip(ps, temps)], axis=0)
        rb, ra = top_label_reliability(before, y, bins), top_label_reliability(after, y, bins)
        ece_b, ece_a = ece_from_curve(rb), ece_from_curve(ra)
        rel = pd.concat([rb.assign(calibration="before"), ra.assign(calibration="after")])
    else:
        log.warning("fold %d: no labelled validation pixels; temperatures T = 1", fold)
        ece_b = ece_a = float("nan")
        rel = pd.DataFrame()
    out = {"fold": int(fold), "members": len(ps), "classes": classes,
           "temperatures": [[float(v) for v in t] if np.ndim(t) else float(t) for t in temps],
           "temperature_kind": "per class" if per_class else "shared by the classes",
           "n_pixels": int(y.size), "ece_before": ece_b, "ece_after": ece_a, "ece": "top-label",
           "tau_model": None, "validation_glaciers": [{"glac_id": g} for g in used],
           "reliability": rel.to_dict("records")}
    write_json_atomic(out_json, _clean(out))
    return out


def run_calibrate(fold: int, glaciers, pred_paths, cube_paths, manifest_csv, cfg: dict, out_json,
                  label_paths=None) -> dict:
    """Per-member temperatures, ECE before/after and the tau model of one fold, from its validation glaciers.

    With ``label_paths`` (the validation glaciers' label rasters) the fold is a K-class model's:
    :func:`run_calibrate_classes`.
    """
    from glaciermap.area_change.areas import glacier_area, tau_star

    if label_paths is not None:
        return run_calibrate_classes(fold, glaciers, pred_paths, label_paths, cfg, out_json)

    area_of = read_manifest(manifest_csv).set_index("glac_id")["area_km2"].astype(float)
    data = []
    for g, pp, cp in zip(glaciers, pred_paths, cube_paths, strict=True):
        probs, masks = read_probs(pp), read_cube_masks(cp)
        if probs is None or masks is None:
            continue
        data.append((g, probs, masks))
    M = next((d[1].shape[0] for d in data), 0)
    ps, ys = [[] for _ in range(M)], []
    for g, probs, m in data:
        sel = m["buffer50"] & ~m["masked"] & np.isfinite(probs).all(0)
        ys.append(m["glacier"][sel].astype(np.float64))
        for i in range(M):
            ps[i].append(probs[i][sel])
    y = np.concatenate(ys) if ys else np.zeros(0)
    sub = int(cfg["subsample"])
    temps = [fit_temperature(np.concatenate(p), y, subsample=sub) if y.size else 1.0 for p in ps]
    if y.size:
        before = np.mean([np.concatenate(p) for p in ps], axis=0)
        after = np.mean([apply_temperature(np.concatenate(p), t) for p, t in zip(ps, temps)], axis=0)
        ece_b, ece_a = ece(before, y, cfg["ece_bins"]), ece(after, y, cfg["ece_bins"])
        rel = pd.concat([reliability_curve(before, y, cfg["ece_bins"]).assign(calibration="before"),
                         reliability_curve(after, y, cfg["ece_bins"]).assign(calibration="after")])
    else:
        ece_b = ece_a = float("nan")
        rel = pd.DataFrame()
    rows = []
    for g, probs, m in data:
        mu, sigma = calibrated_stats(probs, temps)
        a_px = m["resolution"] ** 2
        est = glacier_area(mu, sigma, m["buffer20"], a_px)
        ts = tau_star(mu, sigma, m["buffer20"], a_px, float(area_of[g]))
        rows.append({"glac_id": g, "area_ref_km2": float(area_of[g]), "area_pred_km2": est.area_km2, "tau_star": ts,
                     **tau_features(est.area_km2, mu, sigma, m["buffer20"])})
    tab = pd.DataFrame(rows, columns=["glac_id", "area_ref_km2", "area_pred_km2", "tau_star", "log_area", "mean_mu",
                                      "rms_sigma", "rms_bernoulli"])
    model, n_ok = fit_tau_table(tab, cfg["min_tau_glaciers"])
    if model.extra["kind"] != "quantile_regression":
        log.warning("fold %d: %d validation glacier(s) with a finite tau*: constant tau model (%s)", fold, n_ok,
                    model.extra["kind"])
    if not y.size:
        log.warning("fold %d: no validation pixels; temperatures T = 1 and the default tau", fold)
    out = {"fold": int(fold), "members": M, "temperatures": [float(t) for t in temps],
           "n_pixels": int(y.size), "ece_before": ece_b, "ece_after": ece_a,
           "tau_model": tau_model_to_dict(model), "validation_glaciers": tab.to_dict("records"),
           "reliability": rel.to_dict("records")}
    write_json_atomic(out_json, _clean(out))
    return out
