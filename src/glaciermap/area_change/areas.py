"""Glacier areas, calibrated area bounds and per-glacier metrics from ensemble predictions.

Works on one glacier's cube grid (DL4GAM, paper sections 3.5.1 to 3.5.3): ``mu`` and ``sigma`` are the
ensemble mean and standard deviation, ``buffer20``/``buffer50`` the glacier plus a 20 m / 50 m buffer
without the pixels of other glaciers (so neighbours keep their ice divides), ``a_px`` the pixel
area in m2. Areas come back in km2. Pure numpy/pandas so it is tested without any raster library.

NaN in ``mu``/``sigma`` (pixels inference could not fill) never counts as glacier: NaN >= x is False.

Rule ``areas`` (workflow/rules/area_change/areas.smk) runs :func:`run_areas`: reads the test predictions, cubes and
the folds' calibration.json files, writes the per-glacier table and the segmentation, size-class and
fold tables. Everything above it needs no file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from glaciermap.io import write_csv_atomic
from glaciermap.results import calibrated_stats, read_cube_masks, read_manifest, read_probs

M2_PER_KM2 = 1e6
# 0:0.001:0.5 without the float drift of np.arange (0.003 must be exactly the literal 0.003)
TAU_GRID = np.round(np.arange(501) * 0.001, 3)
SIZE_EDGES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)
SIZE_LABELS = ("<0.1", "0.1-0.2", "0.2-0.5", "0.5-1", "1-2", "2-5", "5-10", "10-20", ">=20")
METRICS = ("accuracy", "iou", "precision", "recall", "f1")
GCOS_THRESHOLD = 0.05  # GCOS target: area error within 5 %


class AreaEstimate(NamedTuple):
    area_km2: float  # a_px * #(mu >= 0.5)
    lb_km2: float    # a_px * #(mu - sigma >= 1 - tau)
    ub_km2: float    # a_px * #(mu + sigma >= tau)


def _inside(mu, sigma, buffer20):
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    inside = np.asarray(buffer20, dtype=bool)
    if not (mu.shape == sigma.shape == inside.shape):
        raise ValueError(f"mu {mu.shape}, sigma {sigma.shape} and buffer {inside.shape} differ in shape")
    return mu[inside], sigma[inside]


def glacier_area(mu, sigma, buffer20, a_px: float, tau: float = 0.5) -> AreaEstimate:
    """Predicted area (mu >= 0.5) and its bounds for threshold ``tau`` within the 20 m buffer, in km2.

    For tau in [0, 0.5] and sigma >= 0 the bounds always bracket the point estimate
    (mu - sigma >= 1 - tau implies mu >= 0.5, which implies mu + sigma >= tau); tau = 0.5 is the
    uncalibrated mu +- sigma heuristic.
    """
    if not 0.0 <= float(tau) <= 0.5:
        raise ValueError(f"tau must lie in [0, 0.5], got {tau}")
    m, s = _inside(mu, sigma, buffer20)
    k = float(a_px) / M2_PER_KM2
    return AreaEstimate(k * np.count_nonzero(m >= 0.5),
                        k * np.count_nonzero(m - s >= 1.0 - float(tau)),
                        k * np.count_nonzero(m + s >= float(tau)))


def bounds_curve(mu, sigma, buffer20, a_px: float, taus=TAU_GRID) -> tuple[np.ndarray, np.ndarray]:
    """(A_lb, A_ub) in km2 for every tau of ``taus`` at once: two sorts and two searchsorted calls."""
    m, s = _inside(mu, sigma, buffer20)
    lo, hi = np.sort(m - s), np.sort(m + s)
    lo, hi = lo[np.isfinite(lo)], hi[np.isfinite(hi)]  # NaN would sort last and never satisfy >=
    taus = np.asarray(taus, dtype=np.float64)
    n_lb = lo.size - np.searchsorted(lo, 1.0 - taus, side="left")  # #(lo >= 1 - tau)
    n_ub = hi.size - np.searchsorted(hi, taus, side="left")        # #(hi >= tau)
    k = float(a_px) / M2_PER_KM2
    return k * n_lb, k * n_ub


def tau_star(mu, sigma, buffer20, a_px: float, reference_area: float, taus=TAU_GRID) -> float:
    """Largest tau on the grid whose [A_lb, A_ub] still contains ``reference_area`` (km2); NaN if none.

    The intervals are nested (A_lb grows and A_ub shrinks with tau), so the covering taus form a
    prefix of the grid. The comparison is done in pixel counts with a tiny tolerance so that a
    reference area computed as a pixel count is not lost to km2 rounding.
    """
    lb, ub = bounds_curve(mu, sigma, buffer20, a_px, taus)
    k = float(a_px) / M2_PER_KM2
    ref = float(reference_area) / k
    tol = 1e-9 * max(1.0, abs(ref))
    ok = (lb / k <= ref + tol) & (ref - tol <= ub / k)
    taus = np.asarray(taus, dtype=np.float64)
    return float(taus[ok].max()) if ok.any() else float("nan")


def pixel_metrics(pred_mask, ref_mask, buffer50) -> dict:
    """Segmentation metrics of one glacier, counting false positives only within the 50 m buffer.

    Evaluated pixels: ``buffer50 | ref_mask`` (reference pixels are inside the buffer by
    construction; the union only guards against a buffer that misses some). Returns the pixel counts
    tp, fp, fn, tn and accuracy, iou, precision, recall, f1, fpr (NaN where a denominator is 0).
    """
    pred = np.asarray(pred_mask, dtype=bool)
    ref = np.asarray(ref_mask, dtype=bool)
    region = np.asarray(buffer50, dtype=bool) | ref
    if not (pred.shape == ref.shape == region.shape):
        raise ValueError(f"pred {pred.shape}, ref {ref.shape} and buffer {region.shape} differ in shape")
    pred = pred & region
    tp = int(np.count_nonzero(pred & ref))
    fp = int(np.count_nonzero(pred & ~ref))
    fn = int(np.count_nonzero(~pred & ref))
    tn = int(np.count_nonzero(region & ~pred & ~ref))

    def div(a, b):
        return a / b if b > 0 else float("nan")

    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "accuracy": div(tp + tn, tp + fp + fn + tn), "iou": div(tp, tp + fp + fn),
            "precision": div(tp, tp + fp), "recall": div(tp, tp + fn),
            "f1": div(2 * tp, 2 * tp + fp + fn), "fpr": div(fp, fp + tn)}


def glacier_record(mu, sigma, mask_glacier, buffer20, buffer50, a_px: float, tau: float = 0.5,
                   reference_area: float | None = None) -> dict:
    """Everything one glacier contributes to the evaluation tables, areas in km2.

    The prediction evaluated is the area prediction itself (mu >= 0.5 within the 20 m buffer).
    ``reference_area`` defaults to the rasterised reference mask (a_px * #mask_glacier), which is
    what the pixel metrics compare against; pass the inventory area to use the vector area instead.
    """
    mu = np.asarray(mu, dtype=np.float64)
    b20 = np.asarray(buffer20, dtype=bool)
    est = glacier_area(mu, sigma, b20, a_px, tau)
    k = float(a_px) / M2_PER_KM2
    ref_mask = np.asarray(mask_glacier, dtype=bool)
    ref_area = k * np.count_nonzero(ref_mask) if reference_area is None else float(reference_area)
    pm = pixel_metrics((mu >= 0.5) & b20, ref_mask, buffer50)
    rec = {"area_ref_km2": ref_area, "area_pred_km2": est.area_km2, "area_lb_km2": est.lb_km2,
           "area_ub_km2": est.ub_km2, "tau": float(tau)}
    rec.update({m: pm[m] for m in METRICS + ("fpr",)})
    rec.update({f"{c}_km2": k * pm[c] for c in ("tp", "fp", "fn", "tn")})
    return rec


def size_class(area_km2):
    """Size class label(s) of METHODS.md ([0.1, 0.2) ... >= 20 km2; "<0.1" below); None for NaN.

    A scalar gives a string, an array-like an object array of strings.
    """
    a = np.asarray(area_km2, dtype=np.float64)
    idx = np.searchsorted(np.asarray(SIZE_EDGES), a, side="right")  # left-closed classes
    labels = np.asarray(SIZE_LABELS, dtype=object)[np.minimum(idx, len(SIZE_LABELS) - 1)]
    labels = np.where(np.isnan(a), None, labels)
    return labels.item() if a.ndim == 0 else labels


def bounds_coverage(reference, lb, ub) -> float:
    """Share of glaciers whose reference area lies within [lb, ub] (nominal 0.68); NaN rows ignored."""
    r, lo, hi = (np.asarray(x, dtype=np.float64) for x in (reference, lb, ub))
    ok = np.isfinite(r) & np.isfinite(lo) & np.isfinite(hi)
    if not ok.any():
        return float("nan")
    return float(np.mean((lo[ok] <= r[ok]) & (r[ok] <= hi[ok])))


def _area_stats(g: pd.DataFrame, gcos: float) -> dict:
    ref, pred = g["area_ref_km2"].to_numpy(float), g["area_pred_km2"].to_numpy(float)
    err = pred - ref
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(ref > 0, err / ref, np.nan)
    r = rel[np.isfinite(rel)]
    row = {"n": int(len(g)), "area_ref_km2": float(np.nansum(ref)), "area_pred_km2": float(np.nansum(pred)),
           "mean_abs_error_km2": float(np.nanmean(np.abs(err))) if len(g) else np.nan,
           "mean_rel_error_pct": float(100 * r.mean()) if r.size else np.nan,
           "mape_pct": float(100 * np.abs(r).mean()) if r.size else np.nan,
           "within_gcos_pct": float(100 * np.mean(np.abs(r) <= gcos)) if r.size else np.nan}
    if {"area_lb_km2", "area_ub_km2"} <= set(g.columns):
        row["coverage_pct"] = 100 * bounds_coverage(ref, g["area_lb_km2"], g["area_ub_km2"])
    if {"tp_km2", "fp_km2", "fn_km2", "tn_km2"} <= set(g.columns):  # paper Table 5: sums of areas
        tp, fp, fn, tn = (float(g[f"{c}_km2"].sum()) for c in ("tp", "fp", "fn", "tn"))
        p, n = tp + fn, fp + tn
        row.update({"P_km2": p, "TP_km2": tp, "TPR_pct": 100 * tp / p if p else np.nan, "FN_km2": fn,
                    "FNR_pct": 100 * fn / p if p else np.nan, "N_km2": n, "FP_km2": fp,
                    "FPR_pct": 100 * fp / n if n else np.nan, "rel_error_pct": 100 * (fn + fp) / p if p else np.nan})
    return row


def summarise_metrics(df: pd.DataFrame, by: str = "fold", gcos_threshold: float = GCOS_THRESHOLD) -> dict:
    """Region tables from per-glacier records (one row per glacier, columns of ``glacier_record``).

    Returns a dict of DataFrames:
      - ``segmentation`` (paper Table 4): per value of ``by`` and "All", n and mean/sd over glaciers
        of accuracy, iou, precision, recall, f1 (fractions, sample sd with ddof=1);
      - ``size_classes`` (paper Table 5 and Figure 4): per size class of the reference area and "All",
        n, total reference/predicted area, mean absolute and signed relative error, MAPE, share within
        the GCOS 5 % threshold, empirical coverage of [lb, ub] (nominal 68 %), and the summed
        TP/FN/FP/TN areas with TPR/FNR/FPR when the ``*_km2`` count columns are present;
      - ``groups``: the same area statistics per value of ``by`` and "All".
    """
    d = df.copy()
    seg_rows = []
    groups = [(str(k), g) for k, g in d.groupby(by, sort=True)] if by in d.columns else []
    for name, g in groups + [("All", d)]:
        row = {by: name, "n": int(len(g))}
        for m in METRICS:
            if m in g.columns:
                row[f"{m}_mean"] = float(g[m].mean())
                row[f"{m}_sd"] = float(g[m].std(ddof=1))
        seg_rows.append(row)
    d["size_class"] = size_class(d["area_ref_km2"].to_numpy(float))
    size_rows = []
    for label in SIZE_LABELS:
        g = d[d["size_class"] == label]
        if len(g):
            size_rows.append({"size_class": label, **_area_stats(g, gcos_threshold)})
    size_rows.append({"size_class": "All", **_area_stats(d, gcos_threshold)})
    group_rows = [{by: name, **_area_stats(g, gcos_threshold)} for name, g in groups + [("All", d)]]
    return {"segmentation": pd.DataFrame(seg_rows), "size_classes": pd.DataFrame(size_rows),
            "groups": pd.DataFrame(group_rows)}


# ---------------------------------------------------------------------------------------------------- rule areas


def run_areas(keys, pred_paths, cube_paths, calib_jsons, split_csv, manifest_csv, ref_epoch: str, outputs: dict) -> pd.DataFrame:
    """Per glacier and epoch: calibrated area, bounds with tau_hat (from that epoch's own predictors), metrics at ref_epoch.

    ``keys``: (glacier, epoch) pairs parallel to pred_paths/cube_paths (test predictions).
    ``outputs``: paths for ``glaciers`` (every glacier and epoch), ``segmentation`` (Table 4),
    ``size_classes`` (Table 5) and ``folds`` (area statistics per fold).
    """
    from glaciermap.segmentation.calibrate import predict_tau, tau_features, tau_model_from_dict
    from glaciermap.segmentation.split import read_split

    calib = {}
    for p in calib_jsons:
        d = json.loads(Path(p).read_text())
        calib[int(d["fold"])] = d
    fold_of = read_split(split_csv).set_index("glac_id")["test_fold"].astype(int)
    area_of = read_manifest(manifest_csv).set_index("glac_id")["area_km2"].astype(float)
    rows = []
    for (g, e), pp, cp in zip(keys, pred_paths, cube_paths, strict=True):
        k = int(fold_of[g])
        base = {"glac_id": g, "epoch": e, "fold": k}
        probs, m = read_probs(pp), read_cube_masks(cp)
        if probs is None or m is None:
            rows.append({**base, "status": "skipped"})
            continue
        c = calib[k]
        mu, sigma = calibrated_stats(probs, c["temperatures"])
        a_px = m["resolution"] ** 2
        est = glacier_area(mu, sigma, m["buffer20"], a_px)
        feats = tau_features(est.area_km2, mu, sigma, m["buffer20"])
        tau = float(predict_tau(tau_model_from_dict(c["tau_model"]), pd.DataFrame([feats]))[0])
        tau_ok = np.isfinite(tau)
        rec = glacier_record(mu, sigma, m["glacier"], m["buffer20"], m["buffer50"], a_px, tau if tau_ok else 0.5,
                             reference_area=float(area_of[g]))
        if e != ref_epoch:  # the inventory outline is the reference only at its own epoch
            for col in list(METRICS) + ["fpr", "area_ref_km2", "tp_km2", "fp_km2", "fn_km2", "tn_km2"]:
                rec[col] = np.nan
        rows.append({**base, "status": "ok", "date": m["date"], **rec, "tau_hat": tau if tau_ok else np.nan,
                     "cloud_fraction": float(m["masked"][m["buffer50"]].mean()) if m["buffer50"].any() else np.nan,
                     **{f"x_{f}": v for f, v in feats.items()}})
    df = pd.DataFrame(rows)
    write_csv_atomic(outputs["glaciers"], df)
    ref = df[(df["epoch"] == ref_epoch) & (df["status"] == "ok")]
    tables = summarise_metrics(ref, by="fold")
    write_csv_atomic(outputs["segmentation"], tables["segmentation"])
    write_csv_atomic(outputs["size_classes"], tables["size_classes"])
    write_csv_atomic(outputs["folds"], tables["groups"])
    return df
