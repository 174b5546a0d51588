"""The facies method's headline numbers (rule ``facies_summary``): results/<region>/facies/summary.json, embedded as
``facies`` in the area-change summary.json.

- ``macro_f1_before`` / ``macro_f1_after``: macro F1 of the out-of-fold predictions of round raw (every label) and
  round clean (retrained without the pruned labels), scored on the points whose label is correct when the planted
  truth is known (demo), else on the given labels (``scored_on`` says which); ``f1_per_class`` of round clean;
- ``pruned_share`` / ``pruned_share_per_class``: labels confident learning pruned (rule label_issues), with
  ``flag_precision`` / ``flag_recall`` against the planted noise (demo);
- ``ece_before`` / ``ece_after``: expected calibration error (100 bins) of round clean before and after the kernel
  ridge calibration (rule facies_calibrate), with ``ece_per_class_before`` / ``_after``;
- ``smb_r_global`` / ``smb_rmse_global`` / ``smb_r_per_glacier`` / ``smb_rmse_per_glacier`` (rule smb; null without
  an SMB table);
- ``outline_issues``: glaciers whose inventory outline confident learning flags (rule outline_issues), with
  precision and recall against planted inventory errors (demo).
"""

from __future__ import annotations

import json
from pathlib import Path

from glaciermap.io import write_json_atomic


def _load(path) -> dict:
    return json.loads(Path(path).read_text()) if path else {}


def _f1(cal: dict, truth: bool):
    if truth and cal.get("macro_f1_true_labels") is not None:
        return cal["macro_f1_true_labels"], cal.get("f1_per_class_true_labels")
    return cal.get("macro_f1"), cal.get("f1_per_class")


def build_summary(points: dict, issues: dict, cal_raw: dict, cal_clean: dict, smb: dict | None = None,
                  outline: dict | None = None) -> dict:
    truth = cal_clean.get("macro_f1_true_labels") is not None
    before, _ = _f1(cal_raw, truth)
    after, per_class = _f1(cal_clean, truth)
    smb = smb or {}
    out = {
        "n_points": points.get("n_points"), "n_rejected_rows": points.get("n_rejected"),
        "n_glaciers": points.get("n_glaciers"), "n_scenes": points.get("n_scenes"),
        "scored_on": "points whose planted label is correct" if truth else "given labels",
        "macro_f1_before": before, "macro_f1_after": after, "f1_per_class": per_class,
        "macro_f1_given_labels_before": cal_raw.get("macro_f1"), "macro_f1_given_labels_after": cal_clean.get("macro_f1"),
        "pruned_share": issues.get("pruned_share"), "pruned_share_per_class": issues.get("pruned_share_per_class"),
        "flag_precision": issues.get("flag_precision"), "flag_recall": issues.get("flag_recall"),
        "ece_before": cal_clean.get("ece_before"), "ece_after": cal_clean.get("ece_after"),
        "ece_per_class_before": cal_clean.get("ece_before_per_class"),
        "ece_per_class_after": cal_clean.get("ece_after_per_class"),
        "ece_raw_round_before": cal_raw.get("ece_before"), "ece_raw_round_after": cal_raw.get("ece_after"),
    }
    for k in ("smb_r_global", "smb_rmse_global", "smb_r_per_glacier", "smb_rmse_per_glacier", "n_glacier_years"):
        out[k] = smb.get(k)
    if smb.get("reason"):
        out["smb_note"] = smb["reason"]
    if outline is not None:
        out["outline_issues"] = {k: outline.get(k) for k in ("n_glaciers", "n_glaciers_flagged", "precision", "recall",
                                                              "missing_ice_km2_total", "false_ice_km2_total")}
    return out


def truth_scores(truth_csv, issues_csv, points_csvs: dict, classes, prunable) -> tuple[dict, dict]:
    """Scores against the planted truth of the points (demo): the flags' precision and recall (added to the label
    issues) and, per round, macro F1 on the points whose planted label is correct (added to its calibration).

    Only this evaluation rule reads the truth: the modelling rules (label_issues, facies_train, facies_calibrate)
    never do, so the truth cannot leak into the pruning or the training."""
    import numpy as np
    import pandas as pd

    from glaciermap.facies.calibrate import _f1
    from glaciermap.facies.label_issues import flag_scores, read_truth

    iss = pd.read_csv(issues_csv, dtype={"point_id": str})
    t = read_truth(truth_csv, iss["point_id"])
    issues = flag_scores(iss, t["noisy"].to_numpy(dtype=bool), prunable)
    cal = {}
    idx = {c: i for i, c in enumerate(classes)}
    for rnd, path in points_csvs.items():
        pts = pd.read_csv(path, dtype={"point_id": str})
        tr = read_truth(truth_csv, pts["point_id"])
        ok = ~tr["noisy"].to_numpy(dtype=bool)
        y, p = pts["label"].map(idx).to_numpy()[ok], pts["pred"].map(idx).to_numpy()[ok]
        macro, per_class = _f1(y, p, classes)
        cal[rnd] = {"n_points_true_labels": int(ok.sum()), "macro_f1_true_labels": macro,
                    "f1_per_class_true_labels": per_class,
                    "accuracy_true_labels": float(np.mean(y == p)) if ok.any() else None}
    return issues, cal


def run_facies_summary(points_json, issues_json, cal_raw_json, cal_clean_json, out_json, smb_json=None,
                       outline_json=None, truth_csv=None, issues_csv=None, points_csvs=None, classes=None,
                       prunable=None) -> dict:
    issues, raw, clean = _load(issues_json), _load(cal_raw_json), _load(cal_clean_json)
    if truth_csv:
        extra, cal = truth_scores(truth_csv, issues_csv, points_csvs, classes, prunable)
        issues.update(extra)
        raw.update(cal.get("raw", {}))
        clean.update(cal.get("clean", {}))
    s = build_summary(_load(points_json), issues, raw, clean, _load(smb_json) if smb_json else None,
                      _load(outline_json) if outline_json else None)
    if truth_csv:
        s["flagged_precision"], s["flagged_recall"] = issues.get("flagged_precision"), issues.get("flagged_recall")
        s["noisy_share"] = issues.get("noisy_share")
        s["accuracy_true_labels_before"] = raw.get("accuracy_true_labels")
        s["accuracy_true_labels_after"] = clean.get("accuracy_true_labels")
    write_json_atomic(out_json, s)
    return s
