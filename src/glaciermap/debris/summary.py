"""Rule ``debris_summary``: the headline numbers of the debris-covered glacier method (CryoNet, seed 003) for one
model, gathered from the rules that computed them (nothing is recomputed here):

- ``confusion`` (segmentation/<model>/metrics.json): per-class IoU, mean IoU, overall accuracy, top-label and
  per-class ECE before and after temperature scaling, on the test glaciers of the geographic folds;
- ``random_split`` (segmentation/<model>/random_split.json, optional): the paper's random tile split and its
  inflation over the geographic folds;
- ``importance`` (segmentation/<model>/importance.json, optional): the three most important layers and groups;
- ``cover`` (debris/<model>/cover.json): debris-covered area at t0 and t1, and the planted truth on the demo;
- ``thresholds`` (debris/thresholds/metrics.json, optional): the fixed-threshold baseline's scores, so the
  model's gain is visible.

The area-change summary (area_change/<model>/summary.json) embeds this object as ``debris``.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)


def _read(path):
    if not path:
        return None
    with open(path) as f:
        return json.load(f)


def _iou_by_class(metrics: dict) -> dict:
    return {c: (v or {}).get("iou") for c, v in (metrics.get("per_class") or {}).items()}


def build_debris_summary(metrics_json, cover_json, random_split_json=None, importance_json=None,
                         thresholds_json=None, debris_class: str = "debris", clean_class: str = "clean_ice",
                         model: str = "") -> dict:
    """The ``debris`` object (see the module doc); keys whose source is absent are None."""
    m = _read(metrics_json)
    cover = _read(cover_json) or {}
    rs = _read(random_split_json)
    imp = _read(importance_json)
    thr = _read(thresholds_json)
    classes = list(m["classes"])
    if debris_class not in classes:
        raise ValueError(f"model {model}: the debris class '{debris_class}' is not one of its classes {classes} "
                         "(config debris.debris_class)")
    per_class = m.get("per_class") or {}
    ece_pc = m.get("ece_per_class") or {}
    out = {
        "model": model,
        "classes": classes,
        "mean_iou": m.get("mean_iou"),
        "overall_accuracy": m.get("overall_accuracy"),
        "macro_f1": m.get("macro_f1"),
        "iou_per_class": _iou_by_class(m),
        "debris_iou": (per_class.get(debris_class) or {}).get("iou"),
        "debris_precision": (per_class.get(debris_class) or {}).get("precision"),
        "debris_recall": (per_class.get(debris_class) or {}).get("recall"),
        "clean_ice_iou": (per_class.get(clean_class) or {}).get("iou"),
        "ece_before": m.get("ece_before"),
        "ece_after": m.get("ece_after"),
        "ece_per_class": ece_pc,
        "scored_pixels": m.get("pixels"),
        "test_glaciers": m.get("glaciers"),
        "validation": "geographic cross-validation by glacier (test glaciers' 50 m buffers, t0)",
        "random_split_mean_iou": (rs or {}).get("mean_iou"),
        "random_split_overall_accuracy": (rs or {}).get("overall_accuracy"),
        "random_split_inflation_mean_iou": ((rs or {}).get("inflation") or {}).get("mean_iou"),
        "random_split_iou_per_class": {c: (v or {}).get("iou") for c, v in ((rs or {}).get("per_class") or {}).items()}
        if rs else None,
        "top_layers": (imp or {}).get("top_layers"),
        "top_groups": (imp or {}).get("top_groups"),
        "importance_baseline": (imp or {}).get("baseline"),
        "thresholds_mean_iou": (thr or {}).get("mean_iou"),
        "thresholds_overall_accuracy": (thr or {}).get("overall_accuracy"),
        "thresholds_iou_per_class": _iou_by_class(thr) if thr else None,
    }
    if thr:
        t_iou = _iou_by_class(thr)
        for c, key in ((debris_class, "debris"), (clean_class, "clean_ice")):
            a, b = out["iou_per_class"].get(c), t_iou.get(c)
            out[f"gain_{key}_iou_over_thresholds"] = a - b if a is not None and b is not None else None
        out["thresholds_note"] = ("the label set's own channel rules (e.g. water NDWI > 0.17, vegetation NDVI > 0.3) "
                                  "are thresholds too: where the baseline uses the same ones it agrees with those "
                                  "labels by construction; compare the methods on the debris and clean-ice classes")
    for k in ("debris_area_t0_km2", "debris_area_t1_km2", "clean_area_t0_km2", "clean_area_t1_km2",
              "d_debris_km2", "truth_debris_area_t0_km2", "truth_debris_area_t1_km2", "debris_iou_truth_t0",
              "n_glaciers", "n_skipped"):
        out[k] = cover.get(k)
    out["cover"] = {k: v for k, v in cover.items() if k not in out}
    return out


def run_debris_summary(metrics_json, cover_json, out_json, random_split_json=None, importance_json=None,
                       thresholds_json=None, debris_class: str = "debris", clean_class: str = "clean_ice",
                       model: str = "") -> dict:
    from glaciermap.io import write_json_atomic
    from glaciermap.results import _clean

    s = _clean(build_debris_summary(metrics_json, cover_json, random_split_json, importance_json, thresholds_json,
                                    debris_class, clean_class, model))
    write_json_atomic(out_json, s)
    log.info("debris summary of %s: mean IoU %s, debris IoU %s, random split %s, top layers %s", model,
             s["mean_iou"], s["debris_iou"], s["random_split_mean_iou"], s["top_layers"])
    return s
