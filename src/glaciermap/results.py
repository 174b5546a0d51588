"""Readers and small helpers shared by the modelling rules' modules; serves no rule of its own.

Readers of the modelling half's files: the inventory manifest (:func:`read_manifest`), a cube's masks,
resolution and date (:func:`read_cube_masks`), a prediction's member probabilities (:func:`read_probs`),
the folds' temperatures from their calibration.json files (:func:`fold_temperatures`) and the calibrated
ensemble mean and std of a prediction (:func:`calibrated_stats`). Helpers: :func:`_finite_mean` (mean of
the finite values, None if none) and :func:`_clean` (JSON-safe values). Used by calibrate, areas, change,
baseline, split, compare, outlines, figures and summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from glaciermap.io import read_record


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
    """Ensemble mean and std of the temperature-scaled member probabilities (no temperatures: T = 1).

    ``probs`` [M, H, W] (binary) or [M, K, H, W] (K classes: each member's classes scaled together).
    """
    from glaciermap.segmentation.calibrate import apply_temperature, apply_temperature_classes, ensemble_stats

    temperatures = list(temperatures) or [1.0] * len(probs)
    if np.ndim(probs) == 4:
        scaled = np.stack([apply_temperature_classes(p, t, axis=0) for p, t in zip(probs, temperatures, strict=True)])
    else:
        scaled = np.stack([apply_temperature(p, t) for p, t in zip(probs, temperatures, strict=True)])
    return ensemble_stats(scaled)


def _finite_mean(v) -> float | None:
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


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
