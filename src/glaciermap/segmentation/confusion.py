"""Per-class metrics and confusion matrices of a segmentation model on its test glaciers (the shared core's scores).

For every test glacier at t0, the calibrated ensemble mean of its fold (the fold's temperatures) is compared
with the truth pixel by pixel, over the glacier's 50 m buffer (the glacier + 50 m, other glaciers excluded, so
that no pixel of a neighbour, which may be a training glacier of the fold, is scored), where it is predicted,
not cloud or no data, and labelled:

* a K-class model: the glacier's label raster (glaciermap.segmentation.labels; 255 = no label, left out);
* a binary model: classes ``background`` and ``glacier`` from the cube (the glacier's outline), the prediction
  being ``glacier`` where the calibrated mean is >= 0.5.

The predicted class is the one of largest calibrated mean probability. Pixels are pooled over the glaciers
(of a fold, and of all folds). Per class: IoU, precision, recall, F1 and support; overall: accuracy, mean IoU
and macro F1 over the classes with support or predictions, and the top-label ECE of the ensemble mean before
and after the temperature scaling (glaciermap.segmentation.calibrate).

Rule ``confusion`` (workflow/rules/segmentation/confusion.smk) runs :func:`run_confusion`, one job per model, writing
``segmentation/<model>/confusion.csv`` (fold, truth, predicted, pixels), ``metrics.csv`` (fold, class, ...)
and ``metrics.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from glaciermap.io import write_csv_atomic, write_json_atomic
from glaciermap.results import _clean, calibrated_stats, read_cube_masks, read_probs

log = logging.getLogger("glaciermap.segmentation.confusion")

BINARY_CLASSES = ["background", "glacier"]


def confusion_matrix(truth, pred, k: int) -> np.ndarray:
    """K x K pixel counts, rows the true class, columns the predicted class."""
    from sklearn.metrics import confusion_matrix as sk_confusion

    return sk_confusion(np.asarray(truth).ravel(), np.asarray(pred).ravel(), labels=np.arange(k)).astype(np.int64)


def class_metrics(cm: np.ndarray, classes) -> pd.DataFrame:
    """Per class IoU, precision, recall, F1 and support (true pixels) from a confusion matrix; NaN where undefined."""
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return pd.DataFrame({"class": list(classes), "iou": iou, "precision": precision, "recall": recall, "f1": f1,
                         "support_px": cm.sum(1).astype(np.int64), "predicted_px": cm.sum(0).astype(np.int64)})


def overall(cm: np.ndarray, per_class: pd.DataFrame) -> dict:
    n = int(cm.sum())
    return {"pixels": n, "overall_accuracy": float(np.trace(cm) / n) if n else None,
            "mean_iou": float(np.nanmean(per_class["iou"])) if per_class["iou"].notna().any() else None,
            "macro_f1": float(np.nanmean(per_class["f1"])) if per_class["f1"].notna().any() else None}


def confusion_tables(cms: dict, classes) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """(total matrix, confusion table, metrics table) of per-fold confusion matrices ``cms`` (fold -> [K, K]):
    the rows of ``confusion.csv`` (fold, truth, predicted, pixels) and ``metrics.csv`` (per fold and class), each
    with fold ``all`` for the pooled matrix."""
    K = len(classes)
    total = sum(cms.values(), np.zeros((K, K), np.int64))
    conf_rows, metric_rows = [], []
    for fold, cm in [*sorted(cms.items()), ("all", total)]:
        for i, t in enumerate(classes):
            for j, p in enumerate(classes):
                conf_rows.append({"fold": fold, "truth": t, "predicted": p, "pixels": int(cm[i, j])})
        metric_rows.append(class_metrics(cm, classes).assign(fold=fold))
    metrics = pd.concat(metric_rows, ignore_index=True)[["fold", "class", "iou", "precision", "recall", "f1",
                                                         "support_px", "predicted_px"]]
    return total, pd.DataFrame(conf_rows, columns=["fold", "truth", "predicted", "pixels"]), metrics


def _fold_of(pred_file) -> int:
    """The fold of a prediction ``predictions/<model>/fold<k>/<epoch>/<glacier>.nc``."""
    return int(Path(pred_file).parent.parent.name.replace("fold", ""))


def glacier_pixels(pred_file, cube_file, label_file, temperatures, classes):
    """(truth [n], calibrated probs [n, K], uncalibrated probs [n, K], member 0's class [n]) of one test glacier's
    scored pixels (member 0 alone: the single model a random-split comparison trains; a temperature does not change
    one member's argmax): its
    50 m buffer (the glacier + 50 m, other glaciers excluded: pixels of a neighbour, maybe a training glacier,
    are never scored), predicted, not cloud or no data, and labelled; None for a skip record.

    ``label_file``: the glacier's label raster (a K-class model) or None (binary: truth = the outline)."""
    probs = read_probs(pred_file)
    masks = read_cube_masks(cube_file)
    if probs is None or masks is None:
        return None
    if label_file is None:                # binary model: [M, H, W] glacier probabilities
        if probs.ndim != 3:
            raise ValueError(f"{pred_file} is a K-class prediction; the model's label rasters are needed")
        truth = masks["glacier"].astype(np.int64)
        labelled = np.ones_like(masks["glacier"])
        mu_cal = calibrated_stats(probs, temperatures)[0]
        mu_raw = probs.mean(0)
        cal, raw = np.stack([1 - mu_cal, mu_cal]), np.stack([1 - mu_raw, mu_raw])
        first = (probs[0] >= 0.5).astype(np.int64)
    else:
        from glaciermap.segmentation.labels import IGNORE, read_label_raster

        lab, names, _ = read_label_raster(label_file)
        if names != list(classes):
            raise ValueError(f"label raster {label_file} has classes {names}, the model {list(classes)}")
        truth, labelled = lab.astype(np.int64), lab != IGNORE
        cal = calibrated_stats(probs, temperatures)[0]
        raw = probs.mean(0)
        first = np.nan_to_num(probs[0], nan=-1.0).argmax(0)
    if truth.shape != cal.shape[-2:] or masks["buffer50"].shape != cal.shape[-2:]:
        raise ValueError(f"{label_file or cube_file} is {truth.shape} px but the prediction {pred_file} is "
                         f"{cal.shape[-2:]}")
    sel = labelled & masks["buffer50"] & ~masks["masked"] & np.isfinite(cal).all(0)
    return truth[sel], cal[:, sel].T, raw[:, sel].T, first[sel]


def run_confusion(pred_files: dict, cube_files: dict, label_files: dict | None, calib_jsons, classes, out: dict,
                  ece_bins: int = 10) -> dict:
    """Confusion matrices and per-class metrics of one model over its test glaciers.

    ``pred_files``/``cube_files``/``label_files``: glacier -> test prediction at t0 / its cube / its label raster
    (a K-class model; None for a binary one); ``calib_jsons``: the folds' calibration.json; ``classes``: the model's classes
    (``["glacier"]`` for a binary model: scored as background/glacier). ``out``: paths ``confusion``,
    ``metrics`` (CSV) and ``json``.
    """
    from glaciermap.segmentation.calibrate import ece as calibrate_ece
    from glaciermap.segmentation.calibrate import ece_from_curve, top_label_reliability
    from glaciermap.results import fold_temperatures

    classes = BINARY_CLASSES if len(classes) == 1 else list(classes)
    K = len(classes)
    temps = fold_temperatures(calib_jsons)
    missing = set(pred_files) - set(cube_files)
    if label_files is not None:
        missing |= set(pred_files) - set(label_files)
    missing = sorted(missing)
    if missing:
        raise FileNotFoundError(f"no cube or label raster for the test glacier(s) {', '.join(missing[:10])}")
    cms, raw_all, cal_all, y_all, skipped = {}, [], [], [], []
    cm_first = np.zeros((K, K), np.int64)
    for g in sorted(pred_files):
        fold = _fold_of(pred_files[g])
        px = glacier_pixels(pred_files[g], cube_files[g], None if label_files is None else label_files[g],
                            temps.get(fold, []), classes)
        if px is None:
            skipped.append(g)
            continue
        y, cal, raw, first = px
        pred = cal.argmax(1)
        cms[fold] = cms.get(fold, np.zeros((K, K), np.int64)) + confusion_matrix(y, pred, K)
        cm_first += confusion_matrix(y, first, K)
        y_all.append(y), cal_all.append(cal), raw_all.append(raw)
    total, conf_table, metrics = confusion_tables(cms, classes)
    y = np.concatenate(y_all) if y_all else np.zeros(0, np.int64)
    ece, per_class_ece = {}, {c: {} for c in classes}
    for name, ps in (("ece_before", raw_all), ("ece_after", cal_all)):
        pp = np.concatenate(ps) if y.size else None
        ece[name] = ece_from_curve(top_label_reliability(pp, y, ece_bins)) if y.size else None
        for i, c in enumerate(classes):   # one-vs-rest: the binary ECE of p(class) against (truth == class)
            per_class_ece[c][name] = calibrate_ece(pp[:, i], (y == i).astype(np.float64), ece_bins) if y.size else None
    summary = {"classes": classes, "glaciers": len(pred_files) - len(skipped), "skipped": skipped,
               **overall(total, class_metrics(total, classes)), **ece, "ece": "top-label, test pixels",
               "ece_per_class": per_class_ece, "ece_per_class_kind": "one-vs-rest: binary ECE of p(class) against "
               "(truth == class), |p - 0.5| confidence bins as DL4GAM",
               "per_fold": {str(f): overall(cm, class_metrics(cm, classes)) for f, cm in sorted(cms.items())},
               "per_class": class_metrics(total, classes).set_index("class").to_dict("index"),
               # member 0 of each fold alone, uncalibrated: the like-for-like reference of a single-model score
               # (rule random_split trains one member)
               "single_member": {**overall(cm_first, class_metrics(cm_first, classes)),
                                 "per_class": class_metrics(cm_first, classes).set_index("class").to_dict("index")}}
    write_csv_atomic(out["confusion"], conf_table)
    write_csv_atomic(out["metrics"], metrics)
    write_json_atomic(out["json"], _clean(summary))
    log.info("%d glaciers, %d px: overall accuracy %s, mean IoU %s, ECE %s -> %s", summary["glaciers"], total.sum(),
             summary["overall_accuracy"], summary["mean_iou"], ece["ece_before"], ece["ece_after"])
    return summary


def run_confusion_files(pred_dirs, cube_paths, label_paths, calib_jsons, classes, out: dict,
                        ece_bins: int = 10) -> dict:
    """What rule ``confusion`` runs: pairs the test predictions of the ``infer`` folders with the cubes
    (``.../cubes/<glacier>/<epoch>.nc``) and, for a K-class model, the label rasters
    (``.../labels/<set>/<epoch>/<glacier>.tif``), then :func:`run_confusion`."""
    from glaciermap.io import prediction_files

    preds = {g: f for (g, _), f in prediction_files(pred_dirs).items()}
    cubes = {Path(c).parent.name: str(c) for c in cube_paths}
    labels = {Path(t).stem: str(t) for t in label_paths} if label_paths else None
    return run_confusion(preds, cubes, labels, calib_jsons, classes, out, ece_bins)
