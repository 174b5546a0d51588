"""File-level steps of the modelling half: read the per-glacier files, call the pure modules, write tables.

Each public ``run_*`` function is what one Snakemake rule's script calls (split, patches, normalise,
train, infer, calibrate, areas, change, baseline). The method itself lives in split.py, patches.py,
train.py, infer.py, calibrate.py, areas.py, change.py and baseline.py; this module only moves data
between files and those functions, and decides nothing of the method except the documented fallbacks
for regions too small for a fit (tau model, regional extrapolation), which are recorded in the outputs.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .allocator import keep_freed_memory
from .io import read_record, write_csv_atomic, write_json_atomic

log = logging.getLogger("glaciermap.steps")


# ---------------------------------------------------------------------------------------------------- small readers


def read_manifest(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"glac_id": str})


def read_cube_masks(path) -> dict | None:
    """Masks, resolution and image date of one cube (None for a skip record)."""
    rec = read_record(path, ["x", "mask_nodata", "mask_cloud", "mask_glacier", "mask_buffer_20m", "mask_buffer_50m"])
    if rec is None:
        return None
    v, attrs = rec
    xs = v["x"]
    res = float(abs(xs[1] - xs[0])) if xs.size > 1 else float(attrs.get("resolution_m", 10.0))
    masked = v["mask_nodata"].astype(bool) | v["mask_cloud"].astype(bool)
    return {"glacier": v["mask_glacier"].astype(bool), "buffer20": v["mask_buffer_20m"].astype(bool),
            "buffer50": v["mask_buffer_50m"].astype(bool), "masked": masked, "resolution": res,
            "date": str(attrs.get("date", ""))[:10]}


def read_probs(path) -> np.ndarray | None:
    """Member probabilities [M, H, W] of a prediction file (None for a skip record)."""
    rec = read_record(path, ["prob"])
    return None if rec is None else rec[0]["prob"].astype(np.float64)


def fold_temperatures(calib_jsons) -> dict[int, list]:
    """Per-member temperatures of every fold, from the folds' calibration.json files ([] means T = 1)."""
    temps = {}
    for p in calib_jsons:
        d = json.loads(Path(p).read_text())
        temps[int(d["fold"])] = d.get("temperatures") or []
    return temps


def calibrated_stats(probs: np.ndarray, temperatures) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble mean and std of the temperature-scaled member probabilities (no temperatures: T = 1)."""
    from .calibrate import apply_temperature, ensemble_stats

    temperatures = list(temperatures) or [1.0] * len(probs)

    scaled = np.stack([apply_temperature(p, t) for p, t in zip(probs, temperatures, strict=True)])
    return ensemble_stats(scaled)


def _finite_mean(v) -> float | None:
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


# ---------------------------------------------------------------------------------------------------- split, patches


def run_split(manifest_csv, split_csv, folds_csv, n_folds: int, val_fraction: float, expected_hash: str = "",
              added: str = "longitude", min_val_glaciers: int = 0, drop_missing: bool = False) -> None:
    """Write or extend the frozen split (never reshuffles an existing glacier) and the fold table."""
    from .split import fold_table, split_for

    split = split_for(read_manifest(manifest_csv), split_csv, n_folds=n_folds, val_fraction=val_fraction, added=added,
                      min_val_glaciers=min_val_glaciers, drop_missing=drop_missing)
    if expected_hash and split_hash(split) != expected_hash:
        raise RuntimeError(f"split {split_csv} differs from the one the DAG was built with; re-run snakemake")
    write_csv_atomic(folds_csv, fold_table(split))


def split_hash(split: pd.DataFrame) -> str:
    """Hash of the glacier -> (test fold, roles) assignment (what the DAG depends on)."""
    import hashlib

    cols = [c for c in split.columns if c == "glac_id" or c == "test_fold" or c.startswith("role_")]
    return hashlib.sha1(split[cols].sort_values("glac_id").to_csv(index=False).encode()).hexdigest()[:16]


def run_centres(cube_paths, stride: int, out_csv) -> None:
    from .patches import centre_table

    write_csv_atomic(out_csv, centre_table(cube_paths, stride))


def run_normalisation(cube_paths, split_csv, fold: int, channels, out_json) -> None:
    from .patches import fit_fold_normalisation, save_normalisation
    from .split import read_split

    by_glacier = {Path(p).parent.name: str(p) for p in cube_paths}
    save_normalisation(fit_fold_normalisation(by_glacier, read_split(split_csv), fold, channels), out_json)


def run_train(centres_train_csv, centres_val_csv, split_csv, norm_json, fold: int, member: int, cfg: dict,
              done_json, threads: int = 1, cube_cache=None) -> dict:
    """One (fold, member): run_member writes last.pt/best.pt/metrics.csv and finally done.json beside it.

    Holds ``models/fold<k>/.member<m>.train.lock`` while it runs (glaciermap.joblock, docs/concurrency.md): a
    twin of this job (a second Snakemake invocation) waits for it, then returns its done.json without training.
    """
    import torch

    from .joblock import job_lock
    from .patches import load_normalisation
    from .split import read_split
    from .train import run_member

    done_json = Path(done_json)
    with job_lock(done_json.parent.parent / f".{done_json.parent.name}.train.lock",
                  f"train fold {fold} member {member}") as lock:
        if lock.waited and done_json.exists():
            log.info("fold %d member %d: trained by the concurrent job, done.json is there: nothing to do",
                     fold, member)
            return json.loads(done_json.read_text())
        keep_freed_memory()
        torch.set_num_threads(max(int(threads), 1))
        read = lambda p: pd.read_csv(p, dtype={"glac_id": str})  # noqa: E731
        cfg = dict(cfg)
        device = cfg.pop("device", None)
        summary = run_member(read(centres_train_csv), read(centres_val_csv), read_split(split_csv), fold, member,
                             load_normalisation(norm_json), cfg, done_json.parent, device,
                             restart_on_mismatch=True, cube_cache=cube_cache)
        if not done_json.exists():
            raise RuntimeError(f"training fold {fold} member {member} stopped before its last epoch: {summary}")
        return summary


def run_train_fold(centres_train_csv, centres_val_csv, split_csv, norm_json, fold: int, members, cfg: dict,
                   done_jsons, threads: int = 1) -> dict:
    """Every member of one fold in one process (train.pack_members), one after the other.

    Each member is exactly :func:`run_train` (same seed, files and done.json), so packing changes no result;
    a member whose done.json is already there is left alone, the others resume from their own last.pt.
    """
    from .patches import CubeCache, load_training_cube

    members, done_jsons = [int(m) for m in members], [Path(p) for p in done_jsons]
    # the members share the fold's training and validation cubes: read each once (bounded by bytes only)
    cache = CubeCache(load_training_cube, max_items=1_000_000, max_bytes=4e9)
    if len(members) != len(done_jsons):
        raise ValueError(f"fold {fold}: {len(members)} members but {len(done_jsons)} done.json outputs")
    out = {}
    for member, done in zip(members, done_jsons):
        if done.parent.name != f"member{member}":
            raise ValueError(f"fold {fold}: output {done} does not belong to member {member}")
        if done.exists():
            log.info("fold %d member %d: already trained (%s)", fold, member, done)
            out[member] = "done"
            continue
        log.info("fold %d member %d: training (%d of %d in this job)", fold, member, len(out) + 1, len(members))
        out[member] = run_train(centres_train_csv, centres_val_csv, split_csv, norm_json, fold, member, cfg, done,
                                threads, cube_cache=cache)
    log.info("fold %d: cube cache %d hits, %d misses", fold, cache.hits, cache.misses)
    return out


def write_ensemble(done_jsons, out_json) -> dict:
    """The ensemble of one model and fold: its members' done.json files (the list inference reads)."""
    done = [Path(p) for p in done_jsons]
    missing = [str(p) for p in done if not p.exists()]
    if missing:
        raise FileNotFoundError(f"ensemble {out_json}: member(s) not trained: {', '.join(missing)}")
    out = {"members": [str(p) for p in done], "n_members": len(done)}
    write_json_atomic(out_json, out)
    return out


def run_infer(done_jsons, norm_json, cube_paths, out_paths, cfg: dict, patch_size: int, threads: int = 1) -> dict:
    """Ensemble prediction of one fold for the given cubes (all members in one pass, batched across glaciers).

    Holds a lock per (fold, epoch) in the fold's model folder and writes every prediction under a hidden
    staging name first, moving all into place only at the very end (docs/concurrency.md): a twin of this job
    waits, then returns without redoing complete outputs, and while it runs no final output exists that a
    failing twin's Snakemake could delete.
    """
    import os

    import torch

    from .joblock import job_lock, outputs_complete
    from .patches import load_normalisation
    from .train import load_member, resolve_device

    out_paths = [Path(p) for p in out_paths]
    inputs = [*map(Path, done_jsons), Path(norm_json), *map(Path, cube_paths)]
    with job_lock(_infer_lock_path(done_jsons, out_paths), f"infer {_infer_job_name(done_jsons, out_paths)}") as lock:
        if lock.waited and outputs_complete(out_paths, inputs):
            log.info("inference: all %d outputs were written by the concurrent job: nothing to do", len(out_paths))
            return {"skipped": "outputs written by a concurrent job"}
        keep_freed_memory()
        torch.set_num_threads(max(int(threads), 1))
        device = resolve_device(cfg.get("device"))
        models, members = [], []
        for done in done_jsons:
            model, meta = load_member(Path(done).parent / "best.pt", device)
            models.append(model)
            members.append(int(Path(done).parent.name.replace("member", "")))
        staged, staging_root = _staged_paths(out_paths)
        try:
            timings = predict_files(models, cube_paths, staged, load_normalisation(norm_json), members, cfg,
                                    patch_size, device)
            for tmp, final in zip(staged, out_paths):
                final.parent.mkdir(parents=True, exist_ok=True)  # a twin's Snakemake may have removed the folder
                os.replace(tmp, final)
        finally:
            for tmp in staged:
                tmp.unlink(missing_ok=True)
            if staging_root is not None:  # only this job stages there while it holds the lock
                shutil.rmtree(staging_root, ignore_errors=True)
        log.info("inference: %s", timings)
        return timings


def _infer_epoch(out_paths) -> str | None:
    """The epoch of an inference job's outputs: their common stem (``<glacier>/<epoch>.nc``) or, in the layout of
    the ``infer`` rule (``predictions/<model>/fold<k>/<epoch>/<glacier>.nc``), their common folder's name."""
    import os

    stems = {Path(p).stem for p in out_paths}
    if len(stems) == 1:
        return stems.pop()
    if out_paths:
        return Path(os.path.commonpath([str(p) for p in out_paths])).name or None
    return None


def _staged_paths(out_paths) -> tuple[list[Path], Path | None]:
    """(staged paths, staging folder): each output is written first under a hidden sibling of the outputs' common
    folder (``.<epoch>.staging/``), outside a ``directory()`` output that Snakemake may remove, on the same
    filesystem, and moved into place at the end."""
    import os

    if not out_paths:
        return [], None
    common = Path(os.path.commonpath([str(Path(p).parent) for p in out_paths]))
    root = common.parent / f".{common.name}.staging"
    return [root / Path(p).relative_to(common) for p in out_paths], root


def _infer_lock_path(done_jsons, out_paths) -> Path:
    """``models/<model>/fold<k>/.infer_<epoch>.lock`` (epoch: :func:`_infer_epoch`; else a hash of the outputs)."""
    import hashlib

    fold_dir = Path(done_jsons[0]).parent.parent if len(done_jsons) else Path(out_paths[0] if out_paths else ".").parent
    epoch = _infer_epoch(out_paths)
    if epoch:
        return fold_dir / f".infer_{epoch}.lock"
    key = hashlib.sha1("\n".join(sorted(map(str, out_paths))).encode()).hexdigest()[:12]
    return fold_dir / f".infer_{key}.lock"


def _infer_job_name(done_jsons, out_paths) -> str:
    fold = Path(done_jsons[0]).parent.parent.name if len(done_jsons) else "?"
    epoch = _infer_epoch(out_paths)
    return f"{fold} epoch {epoch}" if epoch else f"{fold} ({len(out_paths)} outputs)"


def predict_files(models, cube_paths, out_paths, stats, members, cfg, patch_size, device):
    from .infer import predict_to_files

    return predict_to_files(models, list(map(str, cube_paths)), list(map(str, out_paths)), stats, members=members,
                            patch_size=int(patch_size), stride=int(cfg["stride"]), blend=cfg["blend"],
                            batch_size=int(cfg["batch_size"]), device=device)


# ---------------------------------------------------------------------------------------------------- calibrate


def _constant_tau_model(tau_star, n_fit: int, kind: str):
    """Intercept-only quantile model (the q-quantile of logit(2 tau*)): used when too few glaciers for 4 predictors."""
    from .calibrate import TAU_FEATURES, TAU_QUANTILE, TauModel, _z_target

    t = np.asarray(tau_star, dtype=np.float64)
    t = t[np.isfinite(t)]
    z = float(np.quantile(_z_target(t), TAU_QUANTILE)) if t.size else float(_z_target(0.5))
    return TauModel(coef=[0.0] * len(TAU_FEATURES), intercept=z, n_fit=n_fit, extra={"kind": kind})


def run_calibrate(fold: int, glaciers, pred_paths, cube_paths, manifest_csv, cfg: dict, out_json) -> dict:
    """Per-member temperatures, ECE before/after and the tau model of one fold, from its validation glaciers."""
    from .areas import glacier_area, tau_star
    from .calibrate import (apply_temperature, ece, fit_tau_model, fit_temperature, reliability_curve, tau_features,
                            tau_model_to_dict)

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
    num = tab[["tau_star", "log_area", "mean_mu", "rms_sigma", "rms_bernoulli"]].astype(float)
    n_ok = int(np.isfinite(num).all(axis=1).sum())
    if n_ok >= max(int(cfg["min_tau_glaciers"]), 6):
        model = fit_tau_model(tab, tab["tau_star"])
        model.extra["kind"] = "quantile_regression"
    else:
        model = _constant_tau_model(tab["tau_star"], n_ok, "constant" if n_ok else "default")
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


def _clean(obj):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


# ---------------------------------------------------------------------------------------------------- areas


def run_areas(keys, pred_paths, cube_paths, calib_jsons, split_csv, manifest_csv, ref_epoch: str, outputs: dict) -> pd.DataFrame:
    """Per glacier and epoch: calibrated area, bounds with tau_hat (from that epoch's own predictors), metrics at ref_epoch.

    ``keys``: (glacier, epoch) pairs parallel to pred_paths/cube_paths (test predictions).
    ``outputs``: paths for ``glaciers`` (every glacier and epoch), ``segmentation`` (Table 4),
    ``size_classes`` (Table 5) and ``folds`` (area statistics per fold).
    """
    from .areas import METRICS, glacier_area, glacier_record, summarise_metrics
    from .calibrate import predict_tau, tau_features, tau_model_from_dict
    from .split import read_split

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


# ---------------------------------------------------------------------------------------------------- change


def rate_inputs(areas: pd.DataFrame, t0: str, t1: str, area="area_pred_km2", lb="area_lb_km2", ub="area_ub_km2") -> pd.DataFrame:
    """One row per glacier with the change_rates inputs from a long (glacier, epoch) area table."""
    ok = areas[areas["status"] == "ok"]
    a = ok[ok["epoch"] == t0].set_index("glac_id")
    b = ok[ok["epoch"] == t1].set_index("glac_id")
    ids = sorted(set(a.index) & set(b.index))
    out = pd.DataFrame({"glac_id": ids})
    out["fold"] = a.loc[ids, "fold"].to_numpy() if "fold" in a.columns else np.nan
    for suffix, t in (("t0", a), ("t1", b)):
        out[f"area_{suffix}"] = t.loc[ids, area].to_numpy(float)
        out[f"lb_{suffix}"] = t.loc[ids, lb].to_numpy(float)
        out[f"ub_{suffix}"] = t.loc[ids, ub].to_numpy(float)
        out[f"date_{suffix}"] = t.loc[ids, "date"].to_numpy()
    out["recall_t0"] = a.loc[ids, "recall"].to_numpy(float)
    return out


def regional_rates(rates: pd.DataFrame, manifest: pd.DataFrame, min_area_km2: float, min_points_per_coef: int = 5,
                   min_log_area_span: float = 0.5, max_coef_p_value: float | None = None,
                   sigma_aggregation: str = "linear") -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """(every inventory glacier with measured or extrapolated rate, regional totals, Table 6 coverage).

    Glaciers that pass the SNR and recall filters keep their own rate; the size model is fitted on every
    glacier with a finite rate and positive sigma (change.regional_extrapolation) and fills in the rest.
    The keyword options are the config's change.* keys of the same names.
    """
    from .change import NoRatesError, coverage_table, regional_extrapolation, regional_totals

    inv = manifest[manifest["qc_status"].isin(["ok", "small", "skipped"]) & np.isfinite(manifest["area_km2"].astype(float))
                   & (manifest["area_km2"].astype(float) > 0)][["glac_id", "area_km2"]]
    cov = coverage_table(rates, inv, min_area_km2)
    df_all = inv.merge(rates, on="glac_id", how="left")
    kept = df_all["kept"].eq(True).to_numpy()
    notes = []
    try:
        ext = regional_extrapolation(df_all, kept_mask=kept, area_col="area_km2", sigma_fallback="nearest",
                                     min_points_per_coef=min_points_per_coef, min_log_area_span=min_log_area_span,
                                     max_coef_p_value=max_coef_p_value)
    except NoRatesError:
        totals = {"notes": [f"no glacier with a finite rate and sigma ({int(kept.sum())} kept): no regional extrapolation"]}
        df_all["rate_source"] = np.where(kept, "measured", "none")
        return df_all, totals, cov
    model = ext.attrs["rate_model"]
    if model["fallback_reason"]:
        notes.append(f"size model: {model['model']} on {model['n']} glaciers (fallback: {model['fallback_reason']})")
    if model.get("note"):
        notes.append(f"size model: {model['note']}")
    n_out = model["n_extrapolated_below_range"] + model["n_extrapolated_above_range"]
    if n_out:
        notes.append(f"size model: {n_out} extrapolated glacier(s) ({model['area_pct_extrapolated_outside_range']:.1f} % "
                     "of the area) outside the fitted log10-area range get the value at its nearer end")
    totals = regional_totals(ext, aggregation=sigma_aggregation)
    totals["rate_model"] = model
    totals["class_sigma"] = ext.attrs["class_sigma"]
    totals["n_kept_filters"] = int(kept.sum())
    totals["notes"] = notes
    return ext, totals, cov


def run_change(areas_csv, manifest_csv, inventory_gpkg, cfg: dict, min_area_km2: float, outputs: dict) -> dict:
    """Per-glacier rates (Table 6 filters), regional extrapolation and totals; CSV, GeoPackage and JSON."""
    from .change import change_rates

    c = cfg["change"]
    defaults = {"min_points_per_coef": 5, "min_log_area_span": 0.5, "max_coef_p_value": None, "sigma_aggregation": "linear"}
    opts = {key: c.get(key, default) for key, default in defaults.items()}
    areas = pd.read_csv(areas_csv, dtype={"glac_id": str, "epoch": str})
    rates = change_rates(rate_inputs(areas, c["from"], c["to"]), snr_min=c["snr_min"], recall_min=c["recall_min"])
    manifest = read_manifest(manifest_csv)
    ext, totals, cov = regional_rates(rates, manifest, min_area_km2, **opts)
    totals.update({"t0": c["from"], "t1": c["to"], "n_rates": int(len(rates)), "n_kept": int(rates["kept"].sum())})
    write_csv_atomic(outputs["csv"], ext)
    write_csv_atomic(outputs["coverage"], cov)
    write_json_atomic(outputs["totals"], _clean(totals))
    _write_gpkg(ext, inventory_gpkg, outputs["gpkg"])
    return totals


def _write_gpkg(df: pd.DataFrame, inventory_gpkg, out_path) -> None:
    import geopandas as gpd

    from .io import write_gpkg_atomic

    inv = gpd.read_file(inventory_gpkg, layer="glaciers", engine="pyogrio")[["glac_id", "geometry"]]
    inv["glac_id"] = inv["glac_id"].astype(str)
    g = inv.merge(df, on="glac_id", how="inner")
    for col in g.columns:
        if g[col].dtype == object and col != "geometry":
            g[col] = g[col].astype(str)
    write_gpkg_atomic(out_path, gpd.GeoDataFrame(g, geometry="geometry", crs=inv.crs), "rates")


# ---------------------------------------------------------------------------------------------------- baseline


def band_sample(cube_path) -> dict | None:
    """Band-ratio sample of one cube: DN bands and labels over glacier + 50 m (valid pixels), plus full arrays."""
    rec = read_record(cube_path, ["B04", "B11", "B02"])
    if rec is None:
        return None
    bands = {k: rec[0][b].astype(np.float64) * 1e4 for k, b in (("red", "B04"), ("swir", "B11"), ("blue", "B02"))}
    m = read_cube_masks(cube_path)
    region = (m["buffer50"] | m["glacier"]) & ~m["masked"]
    sample = {k: v[region] for k, v in bands.items()}
    sample["label"] = m["glacier"][region]
    return {"sample": sample, "bands": bands, "masks": m}


def _br_record(item: dict, t1: float, t2: float, ref_area: float | None) -> dict:
    from .areas import M2_PER_KM2, pixel_metrics
    from .baseline import band_ratio_mask

    b, m = item["bands"], item["masks"]
    pred = band_ratio_mask(b["red"], b["swir"], b["blue"], t1, t2) & m["buffer20"]
    a = float(pred.sum()) * m["resolution"] ** 2 / M2_PER_KM2
    rec = {"date": m["date"], "area_pred_km2": a, "area_lb_km2": a, "area_ub_km2": a, "t1": t1, "t2": t2}
    if ref_area is not None:
        pm = pixel_metrics(pred, m["glacier"], m["buffer50"])
        rec.update({k: pm[k] for k in ("accuracy", "iou", "precision", "recall", "f1", "fpr")})
        rec["area_ref_km2"] = ref_area
    return rec


def run_baseline(keys, cube_paths, split_csv, manifest_csv, cfg: dict, min_area_km2: float, outputs: dict) -> dict:
    """Band ratio regional per fold (fit on train + val glaciers at t0, applied to test glaciers) and the oracle."""
    from .baseline import fit_glacierwise, fit_regional
    from .change import change_rates
    from .split import read_split

    t0, t1 = cfg["change"]["from"], cfg["change"]["to"]
    epochs = [t0] if t1 == t0 else [t0, t1]  # a one-epoch region: t0 only, no rates
    split = read_split(split_csv)
    manifest = read_manifest(manifest_csv)
    area_of = manifest.set_index("glac_id")["area_km2"].astype(float)
    cube_of = dict(zip(keys, cube_paths))
    ref = {g: band_sample(cube_of[(g, t0)]) for g, e in keys if e == t0}
    ref = {g: v for g, v in ref.items() if v is not None and v["sample"]["label"].size}
    n_folds = int(split.attrs["meta"]["n_folds"])
    thresholds, rows = {}, []
    oracle = {g: fit_glacierwise(v["sample"]) for g, v in ref.items()}
    for k in range(n_folds):
        role = split.set_index("glac_id")[f"role_{k}"]
        fit_ids = [g for g in ref if role.get(g) in ("train", "val")]
        test_ids = [g for g in role.index if role[g] == "test"]
        if not test_ids:
            continue
        if not fit_ids:
            raise ValueError(f"band ratio: fold {k} has no train or validation glacier with a usable cube")
        t1k, t2k, score = fit_regional({g: ref[g]["sample"] for g in fit_ids}, {g: area_of[g] for g in fit_ids},
                                       return_score=True)
        thresholds[k] = {"t1": t1k, "t2": t2k, "fit_iou_weighted": score, "n_fit": len(fit_ids)}
        for g in test_ids:
            for e in epochs:
                item = ref[g] if e == t0 and g in ref else band_sample(cube_of[(g, e)])
                for variant, th in (("regional", (t1k, t2k)), ("oracle", oracle.get(g))):
                    if item is None or th is None:
                        rows.append({"glac_id": g, "epoch": e, "fold": k, "variant": variant, "status": "skipped"})
                        continue
                    rec = _br_record(item, th[0], th[1], float(area_of[g]) if e == t0 else None)
                    rows.append({"glac_id": g, "epoch": e, "fold": k, "variant": variant, "status": "ok", **rec})
    df = pd.DataFrame(rows)
    write_csv_atomic(outputs["areas"], df)
    out = {"thresholds": thresholds, "variants": {}}
    all_rates = []
    for variant in ("regional", "oracle"):
        sub = df[df["variant"] == variant]
        okt0 = sub[(sub["epoch"] == t0) & (sub["status"] == "ok")]
        if t1 == t0:
            out["variants"][variant] = {"test_iou_mean": _finite_mean(okt0["iou"]),
                                        "test_recall_mean": _finite_mean(okt0["recall"]),
                                        "test_f1_mean": _finite_mean(okt0["f1"]), "area_t0_km2": None,
                                        "area_t1_km2": None, "regional_rate_pct_per_year": None, "totals": None}
            continue
        rates = change_rates(rate_inputs(sub, t0, t1), snr_min=cfg["change"]["snr_min"],
                             recall_min=cfg["change"]["recall_min"])
        ext, totals, _ = regional_rates(rates, manifest, min_area_km2)
        out["variants"][variant] = {"test_iou_mean": _finite_mean(okt0["iou"]),
                                    "test_recall_mean": _finite_mean(okt0["recall"]),
                                    "test_f1_mean": _finite_mean(okt0["f1"]),
                                    "area_t0_km2": totals.get("area_t0_km2"), "area_t1_km2": totals.get("area_t1_km2"),
                                    "regional_rate_pct_per_year": totals.get("rate_pct_yr"), "totals": totals}
        all_rates.append(ext.assign(variant=variant))
    write_csv_atomic(outputs["rates"], pd.concat(all_rates, ignore_index=True) if all_rates
                     else pd.DataFrame(columns=["glac_id", "variant"]))
    out["note"] = ("oracle = glacier-wise thresholds tuned on each glacier's own t0 labels (an upper bound, not a "
                   "usable predictor); band-ratio areas have no uncertainty, so their SNR filter is void"
                   + ("; one-epoch region: no rates" if t1 == t0 else ""))
    write_json_atomic(outputs["summary"], _clean(out))
    return out
