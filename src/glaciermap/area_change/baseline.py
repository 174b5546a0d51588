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

Rule ``baseline`` (workflow/rules/area_change/baseline.smk) runs :func:`run_baseline`: the regional thresholds of
every fold and the oracle, applied to the test glaciers' cubes (:func:`band_sample`), their areas,
metrics and change rates (the ``change`` rule's filters and extrapolation), written as CSV and JSON.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from glaciermap.io import read_record, write_csv_atomic, write_json_atomic
from glaciermap.results import _clean, _finite_mean, read_cube_masks, read_manifest

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


# ---------------------------------------------------------------------------------------------------- rule baseline


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
    from glaciermap.area_change.areas import M2_PER_KM2, pixel_metrics

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
    from glaciermap.area_change.change import change_rates, rate_inputs, regional_rates
    from glaciermap.segmentation.split import read_split

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
