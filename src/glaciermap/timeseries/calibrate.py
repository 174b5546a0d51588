"""Calibration of one fold's time-series ensemble (rule ``ts_calibrate``), as DL4GAM's: per-member temperature
scaling fitted on the fold's validation glaciers (their inventory-date acquisitions, the pixels nearest to each
glacier that were observed; ``glaciermap.segmentation.calibrate.fit_temperature``), ECE before and after, and the
glacier-specific tau model: tau* of every validation acquisition (the narrowest bound that still holds the
inventory area, ``glaciermap.area_change.areas.tau_star`` over the glacier's domain) regressed on the four predictors
of DL4GAM (quantile regression; an intercept-only model below ``min_tau_glaciers`` usable rows).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from glaciermap.io import write_json_atomic

log = logging.getLogger("glaciermap.timeseries.calibrate")


def member_probs(models, x: np.ndarray, mult: int) -> np.ndarray:
    """(M, T, H, W) sigmoid probabilities of every member on a normalised (T, C, H, W) stack."""
    from scipy.special import expit

    from glaciermap.timeseries.train import predict_logits

    return np.stack([expit(predict_logits(m, x, mult)) for m in models]) if len(x) else np.zeros((len(models), 0))


def run_ts_calibrate(fold: int, model_paths, stack_paths: dict, split_csv, inventory_gpkg, cfg: dict,
                     out_json) -> dict:
    import torch

    from glaciermap.area_change.areas import glacier_area, tau_star
    from glaciermap.segmentation.calibrate import (apply_temperature, ece, ensemble_stats, fit_tau_table,
                                                   fit_temperature, tau_features, tau_model_to_dict)
    from glaciermap.timeseries.train import down_factor, inventory_dates, inventory_examples, load_members, normalise

    torch.set_num_threads(int(cfg.get("threads", 1)))
    models, stats, settings = load_members(model_paths)
    from glaciermap.segmentation.split import read_split

    split = read_split(split_csv)
    roles = dict(zip(split["glac_id"], split[f"role_{fold}"]))
    val_g = [g for g in stack_paths if roles.get(g) == "val"]
    dates = inventory_dates(inventory_gpkg)
    ex = inventory_examples(stack_paths, val_g, dates, stats["channels"], float(settings["train_window_days"]),
                            settings.get("max_examples_per_glacier"))
    mult = down_factor(settings)
    probs = [member_probs(models, normalise(e["x"][None], stats), mult)[:, 0] for e in ex]  # (M, H, W) each
    M = len(models)
    ys = np.concatenate([e["y"][e["mask"]] for e in ex]).astype(np.float64) if ex else np.zeros(0)
    ps = [np.concatenate([p[i][e["mask"]] for p, e in zip(probs, ex)]) if ex else np.zeros(0) for i in range(M)]
    sub = int(cfg["subsample"])
    temps = [fit_temperature(p, ys, subsample=sub) if ys.size else 1.0 for p in ps]
    bins = int(cfg["ece_bins"])
    if ys.size:
        ece_b = ece(np.mean(ps, axis=0), ys, bins)
        ece_a = ece(np.mean([apply_temperature(p, t) for p, t in zip(ps, temps)], axis=0), ys, bins)
    else:
        ece_b = ece_a = float("nan")
    rows = []
    for p, e in zip(probs, ex):
        cal = np.stack([apply_temperature(p[i], temps[i]) for i in range(M)])
        mu, sigma = ensemble_stats(cal)
        a_px = e["resolution"] ** 2
        ref = float(e["y"].sum()) * a_px / 1e6
        est = glacier_area(mu, sigma, e["domain"], a_px)
        rows.append({"glac_id": e["glacier_id"], "acquisition": e["acquisition"], "area_ref_km2": ref,
                     "area_pred_km2": est.area_km2, "tau_star": tau_star(mu, sigma, e["domain"], a_px, ref),
                     **tau_features(est.area_km2, mu, sigma, e["domain"])})
    tab = pd.DataFrame(rows, columns=["glac_id", "acquisition", "area_ref_km2", "area_pred_km2", "tau_star",
                                      "log_area", "mean_mu", "rms_sigma", "rms_bernoulli"])
    model, n_ok = fit_tau_table(tab, cfg["min_tau_glaciers"])
    if model.extra["kind"] != "quantile_regression":
        log.warning("time-series fold %d: %d validation acquisition(s) with a finite tau*: %s tau model", fold, n_ok,
                    model.extra["kind"])
    out = {"fold": int(fold), "members": M, "temperatures": [float(t) for t in temps], "n_pixels": int(ys.size),
           "ece_before": ece_b, "ece_after": ece_a, "tau_model": tau_model_to_dict(model),
           "validation": tab.replace({np.nan: None}).to_dict("records")}
    write_json_atomic(out_json, out)
    log.info("time-series fold %d: T = %s, ECE %.4f -> %.4f, tau model %s (%d rows)", fold,
             [round(t, 3) for t in temps], ece_b, ece_a, model.extra.get("kind"), n_ok)
    return out
