"""``results/<region>/area_change/<model>/summary.json``: the headline numbers of one model's area-change run.

Every key of issue 3 is present; a value that this run does not compute is null and ``notes`` says
why. Keys (fractions in 0..1 unless named _pct):

model (the entry of the config's `models`), n_glaciers_inventory, n_glaciers_processed (glaciers with a
prediction at both change epochs), n_glaciers_skipped (QC), folds, members (of this model),
test_iou_mean / test_f1_mean / test_recall_mean (mean over test glaciers at the inventory epoch),
ece_before / ece_after (mean over folds, validation pixels), interval_coverage (share of test glaciers
whose inventory area lies in [A_lb, A_ub], nominal 0.68), area_t0_km2 / area_t1_km2 /
regional_rate_pct_per_year / regional_rate_sigma_pct_per_year (regional totals with extrapolation),
n_rates_kept (SNR and recall filters), band_ratio_regional_rate_pct_per_year, band_ratio_test_iou_mean
(regional band ratio), debris_recall_dl (this model) / debris_recall_band_ratio / debris_recall_by_method
(every compared model and the band ratios: recall on the debris-covered parts of the t0 outlines, pooled
over test glaciers with > evaluation.debris_min_fraction debris, from area_change/method_comparison.json
(glaciermap.area_change.compare); null without a debris map, and ``notes`` says why), lost_ice_mapped_by_method
(the share of the ice lost between the planted t0 and t1 outlines that each method still maps at t1; null without
them), and with a truth directory the keys of glaciermap.area_change.evaluate.compare_rates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from glaciermap.io import write_json_atomic
from glaciermap.results import _clean, _finite_mean


def _load(p):
    return json.loads(Path(p).read_text()) if p else None


def summary_settings(cfg: dict, model: str) -> dict:
    """The run settings a summary states (rule summary's ``settings`` param): region, change period, folds and the
    model's members."""
    from glaciermap.config import model_registry

    return {"region": cfg["region"], "period": [cfg["change"]["from"], cfg["change"]["to"]],
            "folds": int(cfg["split"]["n_folds"]), "members": int(model_registry(cfg)[model]["members"])}


def build_summary(qc_json, calib_jsons, areas_csv, totals_json, baseline_json, evaluation_json, settings: dict,
                  comparison_json=None, model: str = "dl4gam") -> dict:
    """Headline numbers of the area-change run of ``model`` (an entry of the config's `models`); ``settings``:
    :func:`summary_settings`."""
    qc = _load(qc_json)
    calib = [_load(p) for p in calib_jsons]
    areas = pd.read_csv(areas_csv, dtype={"glac_id": str, "epoch": str})
    totals = _load(totals_json) or {}
    t0, t1 = settings["period"]
    ok = areas[areas["status"] == "ok"]
    ref = ok[ok["epoch"] == t0]
    both = set(ok.loc[ok["epoch"] == t0, "glac_id"]) & set(ok.loc[ok["epoch"] == t1, "glac_id"])
    from glaciermap.area_change.areas import bounds_coverage

    notes = list(totals.get("notes", []))
    one_epoch = t0 == t1
    if one_epoch:
        notes.append(f"one-epoch region (epoch {t0}): mapping, calibration and areas only; the change keys "
                     "(area_t1_km2, regional rates, n_rates_kept, truth comparison) are null and area_t0_km2 is the "
                     "mapped area of the processed glaciers (no extrapolation)")
    if qc["n_glaciers_skipped"]:
        notes.append(f"{qc['n_glaciers_skipped']} glacier(s) skipped by QC and not mapped (by step: "
                     f"{qc.get('skipped_by_step', {})}; each with its reason in qc/skipped.csv); their change is "
                     "extrapolated regionally")
    s = {
        "region": settings["region"],
        "model": model,
        "n_glaciers_inventory": qc["n_glaciers_inventory"],
        "n_glaciers_processed": len(both),
        "n_glaciers_skipped": qc["n_glaciers_skipped"],
        # why glaciers were left out: QC skips by step (qc/skipped.csv has each one) and those under the area limit
        "skipped_by_step": dict(qc.get("skipped_by_step", {})),
        "n_glaciers_small": qc.get("n_glaciers_small"),
        "folds": int(settings["folds"]),
        "members": int(settings["members"]),
        "test_iou_mean": _finite_mean(ref["iou"]),
        "test_f1_mean": _finite_mean(ref["f1"]),
        "test_recall_mean": _finite_mean(ref["recall"]),
        "ece_before": _finite_mean([c["ece_before"] if c["ece_before"] is not None else np.nan for c in calib]),
        "ece_after": _finite_mean([c["ece_after"] if c["ece_after"] is not None else np.nan for c in calib]),
        "interval_coverage": bounds_coverage(ref["area_ref_km2"], ref["area_lb_km2"], ref["area_ub_km2"]) if len(ref) else None,
        "area_t0_km2": (float(ref["area_pred_km2"].sum()) if len(ref) else None) if one_epoch
        else totals.get("area_t0_km2"),
        "area_t1_km2": totals.get("area_t1_km2"),
        "regional_rate_pct_per_year": totals.get("rate_pct_yr"),
        "regional_rate_sigma_pct_per_year": totals.get("sigma_rate_pct_yr"),
        "n_rates_kept": totals.get("n_kept"),
        "band_ratio_regional_rate_pct_per_year": None,
        "band_ratio_test_iou_mean": None,
        "band_ratio_oracle_test_iou_mean": None,
        "debris_recall_dl": None,
        "debris_recall_band_ratio": None,
        "debris_recall_by_method": {},
        "epochs": {"t0": t0, "t1": None if one_epoch else t1},
        "tau_models": {str(c["fold"]): c["tau_model"].get("extra", {}).get("kind", "quantile_regression") for c in calib},
    }
    kinds = set(s["tau_models"].values()) - {"quantile_regression"}
    if kinds:
        notes.append(f"too few validation glaciers in some folds for the tau regression: tau models {s['tau_models']}")
    if baseline_json:
        b = _load(baseline_json)["variants"]
        s["band_ratio_regional_rate_pct_per_year"] = b["regional"]["regional_rate_pct_per_year"]
        s["band_ratio_test_iou_mean"] = b["regional"]["test_iou_mean"]
        s["band_ratio_oracle_test_iou_mean"] = b["oracle"]["test_iou_mean"]
    else:
        notes.append("band-ratio baseline disabled (baseline.enabled: false)")
    if comparison_json:
        c = _load(comparison_json)
        meth = c["methods"]
        for key, m in (("debris_recall_dl", model), ("debris_recall_band_ratio", "band_ratio_regional")):
            s[key] = meth.get(m, {}).get("debris_recall")
        s["debris_recall_by_method"] = {m: v.get("debris_recall") for m, v in meth.items()}
        # share of the truly lost ice each method still maps at t1 (planted truth outlines only; else null)
        s["lost_ice_mapped_by_method"] = {m: v.get("lost_ice_mapped") for m, v in meth.items()}
        notes.extend(f"method comparison: {n}" for n in c.get("notes", []))
        if model not in meth:
            notes.append(f"debris_recall_dl: model {model} is not in the method comparison (area_change.compare)")
        elif c.get("debris_map") and s["debris_recall_dl"] is None:
            notes.append("debris_recall_*: no test glacier with more than "
                         f"{c['debris_min_fraction']:.0%} debris cover in the debris map")
    else:
        notes.append("debris_recall_*: no method comparison (area_change/method_comparison.json) given")
    if evaluation_json:
        s.update(_load(evaluation_json))
    s["notes"] = notes
    return _clean(s)


def write_summary(out_json, debris_json=None, facies_json=None, timeseries_json=None, **kw) -> dict:
    """:func:`build_summary`, plus the debris method's summary (rule debris_summary) as ``debris`` and the facies
    method's (rule facies_summary) as ``facies`` when given."""
    s = build_summary(**kw)
    if debris_json:
        s["debris"] = _load(debris_json)
    if facies_json:
        s["facies"] = _load(facies_json)
    if timeseries_json:
        s["timeseries"] = _load(timeseries_json)
    write_json_atomic(out_json, s)
    return s
