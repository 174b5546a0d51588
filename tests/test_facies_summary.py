"""The facies summary gathers the method's headline numbers under the names the issue fixes."""

from __future__ import annotations

import json

from glaciermap.facies.summary import build_summary, run_facies_summary

KEYS = ("macro_f1_before", "macro_f1_after", "f1_per_class", "pruned_share", "pruned_share_per_class",
        "flag_precision", "flag_recall", "ece_before", "ece_after", "smb_r_global", "smb_rmse_global",
        "smb_r_per_glacier", "smb_rmse_per_glacier")


def test_summary_prefers_scores_on_correct_labels_and_embeds_outline_issues(tmp_path):
    raw = {"macro_f1": 0.6, "macro_f1_true_labels": 0.7, "ece_before": 0.2, "ece_after": 0.05}
    clean = {"macro_f1": 0.65, "macro_f1_true_labels": 0.8, "f1_per_class_true_labels": {"ice": 0.9},
             "f1_per_class": {"ice": 0.85}, "ece_before": 0.12, "ece_after": 0.03}
    issues = {"pruned_share": 0.16, "pruned_share_per_class": {"ice": 0.14}, "flag_precision": 0.7, "flag_recall": 0.5}
    smb = {"smb_r_global": 0.65, "smb_rmse_global": 0.4, "smb_r_per_glacier": 0.79, "smb_rmse_per_glacier": 0.3}
    outline = {"n_glaciers": 40, "n_glaciers_flagged": 4, "precision": 0.75, "recall": 1.0}
    files = {}
    for name, obj in (("p", {"n_points": 100}), ("i", issues), ("r", raw), ("c", clean), ("s", smb), ("o", outline)):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(obj))
    s = run_facies_summary(files["p"], files["i"], files["r"], files["c"], tmp_path / "out.json", files["s"], files["o"])
    assert all(k in s for k in KEYS)
    assert (s["macro_f1_before"], s["macro_f1_after"]) == (0.7, 0.8) and s["f1_per_class"] == {"ice": 0.9}
    assert s["scored_on"] == "points whose planted label is correct"
    assert (s["ece_before"], s["ece_after"]) == (0.12, 0.03)   # the final (clean) model's calibration
    assert s["outline_issues"]["precision"] == 0.75 and s["outline_issues"]["n_glaciers_flagged"] == 4
    assert json.loads((tmp_path / "out.json").read_text()) == s
    # without a truth the given labels are scored, and no SMB / outline block is invented
    s2 = build_summary({}, issues, {"macro_f1": 0.6}, {"macro_f1": 0.65, "f1_per_class": {"ice": 0.85}})
    assert (s2["macro_f1_before"], s2["macro_f1_after"]) == (0.6, 0.65) and s2["scored_on"] == "given labels"
    assert s2["smb_r_global"] is None and "outline_issues" not in s2
