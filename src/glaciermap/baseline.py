"""Band-ratio thresholding baseline (paper section 3.6, METHODS.md "Band ratio").

Glacier where R / max(SWIR, 1) >= t1 and B >= t2, on reflectance x 10000 (DN). The two thresholds
come from a grid search maximising IoU against the reference outlines:

* regional: one pair per fold, best area-weighted mean IoU over its train + validation glaciers;
* glacier-wise: one pair per glacier against its own labels. This is an ORACLE (it looks at the
  labels it is scored on), an upper bound for the method, not a usable predictor; its outputs are
  named ``*_oracle``.

The grid search does not evaluate 51 x 61 masks. Each pixel is placed once into the threshold grid
(the number of t1 values <= its ratio, the number of t2 values <= its blue), and a reversed 2-D
cumulative sum of that histogram gives, for every (t1, t2) at once, how many pixels (and how many
reference-glacier pixels) pass both thresholds. The counts are exactly those of the masks.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

# Rounded so the returned thresholds are clean numbers and re-applying them gives the same masks.
T1_VALUES = np.round(np.arange(0.5, 5.55, 0.1), 1)   # paper: 0.1..5.5; METHODS.md: 0.5..5.5
T2_VALUES = np.arange(0, 1501, 25).astype(np.float64)


def band_ratio(red, swir):
    """R / max(SWIR, 1) in float64 (the floor avoids division by zero on dark SWIR)."""
    return np.asarray(red, dtype=np.float64) / np.maximum(np.asarray(swir, dtype=np.float64), 1.0)


def band_ratio_mask(red, swir, blue, t1: float, t2: float):
    """Boolean glacier mask: ratio >= t1 and blue >= t2. NaN in any band gives False."""
    return (band_ratio(red, swir) >= t1) & (np.asarray(blue, dtype=np.float64) >= t2)


def _arrays(sample: Mapping):
    red, swir, blue = (np.asarray(sample[k], dtype=np.float64).ravel() for k in ("red", "swir", "blue"))
    label = np.asarray(sample["label"]).ravel().astype(bool)
    if not (red.size == swir.size == blue.size == label.size):
        raise ValueError(f"sample {sample.get('glac_id', '?')}: red/swir/blue/label differ in length")
    return red, swir, blue, label


def confusion_grid(sample: Mapping, t1_values=T1_VALUES, t2_values=T2_VALUES):
    """TP, FP, FN (int64, shape (len(t1_values), len(t2_values))) for every threshold pair.

    ``sample`` holds 1-D ``red``, ``swir``, ``blue`` (DN) and ``label`` (reference glacier, 0/1)
    for the valid pixels of the evaluation region (glacier + 50 m, other glaciers excluded).
    Threshold values must be sorted ascending.
    """
    t1 = np.asarray(t1_values, dtype=np.float64)
    t2 = np.asarray(t2_values, dtype=np.float64)
    if np.any(np.diff(t1) <= 0) or np.any(np.diff(t2) <= 0):
        raise ValueError("threshold values must be strictly increasing")
    red, swir, blue, label = _arrays(sample)
    ratio = band_ratio(red, swir)
    # i passes threshold j  <=>  value >= t[j]  <=>  j < (number of t <= value) = searchsorted(right)
    i1 = np.searchsorted(t1, ratio, side="right")
    i2 = np.searchsorted(t2, blue, side="right")
    i1[~np.isfinite(ratio)] = 0  # NaN compares False in the mask: never passes
    i2[~np.isfinite(blue)] = 0
    n1, n2 = t1.size + 1, t2.size + 1
    flat = i1 * n2 + i2
    h_all = np.bincount(flat, minlength=n1 * n2).reshape(n1, n2)
    h_pos = np.bincount(flat[label], minlength=n1 * n2).reshape(n1, n2)
    # passing(j, k) = sum over i1 > j, i2 > k  -> reversed cumulative sum, shifted by one
    c_all = h_all[::-1, ::-1].cumsum(0).cumsum(1)[::-1, ::-1][1:, 1:]
    tp = h_pos[::-1, ::-1].cumsum(0).cumsum(1)[::-1, ::-1][1:, 1:]
    fp = c_all - tp
    fn = int(label.sum()) - tp
    return tp.astype(np.int64), fp.astype(np.int64), fn.astype(np.int64)


def _iou(tp, fp, fn):
    union = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), 1.0)  # both empty: perfect agreement


def iou_grid(sample: Mapping, t1_values=T1_VALUES, t2_values=T2_VALUES) -> np.ndarray:
    """IoU for every (t1, t2) of one glacier, shape (len(t1_values), len(t2_values))."""
    return _iou(*confusion_grid(sample, t1_values, t2_values))


def grid_search(samples, t1_values=T1_VALUES, t2_values=T2_VALUES) -> np.ndarray:
    """IoU for every glacier and threshold pair, shape (n_glaciers, len(t1_values), len(t2_values))."""
    samples = list(samples.values()) if isinstance(samples, Mapping) else list(samples)
    if not samples:
        return np.zeros((0, len(t1_values), len(t2_values)))
    return np.stack([iou_grid(s, t1_values, t2_values) for s in samples])


def iou(sample: Mapping, t1: float, t2: float) -> float:
    """IoU of the band-ratio mask for one pair, by direct mask evaluation (for applying fitted thresholds)."""
    red, swir, blue, label = _arrays(sample)
    pred = band_ratio_mask(red, swir, blue, t1, t2)
    tp = int(np.count_nonzero(pred & label))
    return float(_iou(tp, int(np.count_nonzero(pred & ~label)), int(np.count_nonzero(~pred & label))))


def _weights(samples, areas):
    if areas is None:
        key = next((k for k in ("area", "weight") if all(k in s for s in samples)), None)
        if key is None:
            raise ValueError("fit_regional: pass areas or give every sample an 'area' or 'weight'")
        return np.asarray([float(s[key]) for s in samples])
    return np.asarray(areas, dtype=np.float64)


def fit_regional(samples_by_glacier, areas=None, t1_values=T1_VALUES, t2_values=T2_VALUES, return_score: bool = False):
    """(t1, t2) with the best area-weighted mean IoU over the given (train + validation) glaciers.

    ``samples_by_glacier``: list of samples, or a mapping glacier id -> sample (then ``areas`` may be
    a mapping with the same keys). Ties go to the smallest t1, then the smallest t2.
    With ``return_score`` the weighted mean IoU at the optimum comes back as a third value.
    """
    if isinstance(samples_by_glacier, Mapping):
        keys = list(samples_by_glacier)
        samples = [samples_by_glacier[k] for k in keys]
        if isinstance(areas, Mapping):
            areas = [areas[k] for k in keys]
    else:
        samples = list(samples_by_glacier)
    if not samples:
        raise ValueError("fit_regional: no glaciers")
    w = _weights(samples, areas)
    if w.shape != (len(samples),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("fit_regional: areas must be one finite, non-negative weight per glacier with a positive sum")
    score = np.tensordot(w / w.sum(), grid_search(samples, t1_values, t2_values), axes=1)
    j, k = np.unravel_index(int(np.argmax(score)), score.shape)
    out = (float(np.asarray(t1_values)[j]), float(np.asarray(t2_values)[k]))
    return (*out, float(score[j, k])) if return_score else out


def fit_glacierwise(sample: Mapping, t1_values=T1_VALUES, t2_values=T2_VALUES):
    """ORACLE: (t1, t2, IoU) maximising this glacier's IoU against its own labels.

    Tuned on the very labels it is scored on, so it is an upper bound for band-ratio thresholding,
    not a method that can map an unlabelled glacier. Ties go to the smallest t1, then t2.
    """
    g = iou_grid(sample, t1_values, t2_values)
    j, k = np.unravel_index(int(np.argmax(g)), g.shape)
    return float(np.asarray(t1_values)[j]), float(np.asarray(t2_values)[k]), float(g[j, k])


def glacierwise_table(samples_by_glacier, t1_values=T1_VALUES, t2_values=T2_VALUES) -> pd.DataFrame:
    """One row per glacier: ``glac_id``, ``t1_oracle``, ``t2_oracle``, ``iou_oracle`` (see fit_glacierwise)."""
    if isinstance(samples_by_glacier, Mapping):
        items = list(samples_by_glacier.items())
    else:
        items = [(s.get("glac_id", i), s) for i, s in enumerate(samples_by_glacier)]
    rows = []
    for gid, s in items:
        t1, t2, v = fit_glacierwise(s, t1_values, t2_values)
        rows.append({"glac_id": gid, "t1_oracle": t1, "t2_oracle": t2, "iou_oracle": v})
    return pd.DataFrame(rows, columns=["glac_id", "t1_oracle", "t2_oracle", "iou_oracle"])
