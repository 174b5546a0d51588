"""The time series' summary (rule ``ts_summary``): results/<region>/timeseries/summary.json, embedded as
``timeseries`` in the area-change summary.

Always: glaciers, acquisitions used and rejected (by reason), both regional trends with their standard errors,
glaciers without a trend and why, the annual bound width, and two comparisons with the Sentinel-2 maps of DL4GAM
(``area_change/<model>/areas/glacier_areas.csv``): the same glaciers' Landsat annual area against the DL4GAM area of
every epoch in a year the series has (median relative difference, correlation), and the regional trend over the
change period against DL4GAM's two-epoch regional rate.

With the demo's planted truth (``timeseries.truth``: true area of every glacier at every Landsat date; the only
time-series input that is truth): per-glacier trend error against the true trend (OLS of the log true annual areas
over the same years; median absolute error and the share within 2 standard errors), the regional trend of the true
areas by both methods, and the annual-bound coverage (share of glacier-years whose true area lies in the bounds).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from glaciermap.io import write_json_atomic

log = logging.getLogger("glaciermap.timeseries.summary")


def _f(v):
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else float(v)


def truth_annual(truth_csv, annual: pd.DataFrame) -> pd.DataFrame:
    """True annual area per glacier-year of ``annual``: the mean of the true areas at that year's dates."""
    t = pd.read_csv(truth_csv, dtype={"glac_id": str})
    t["year"] = pd.to_datetime(t["date"]).dt.year
    ta = t.groupby(["glac_id", "year"])["area_km2"].mean().rename("true_area_km2").reset_index()
    return annual.merge(ta.rename(columns={"glac_id": "glacier_id"}), on=["glacier_id", "year"], how="left")


def truth_scores(annual: pd.DataFrame, trends: pd.DataFrame, truth_csv, min_years: int) -> dict:
    from glaciermap.timeseries.trends import glacier_trends, regional

    a = truth_annual(truth_csv, annual)
    have = a["true_area_km2"].notna()
    inb = (a.loc[have, "true_area_km2"] >= a.loc[have, "area_lb_km2"] - 1e-9) & (
        a.loc[have, "true_area_km2"] <= a.loc[have, "area_ub_km2"] + 1e-9)
    rel = (a.loc[have, "area_km2"] - a.loc[have, "true_area_km2"]) / a.loc[have, "true_area_km2"]
    tt = glacier_trends(a[have], min_years, area_col="true_area_km2").rename(
        columns={"trend_pct_per_year": "true_trend_pct_per_year", "trend_se_pct_per_year": "true_se"})
    m = trends.merge(tt[["glacier_id", "true_trend_pct_per_year"]], on="glacier_id", how="inner")
    m = m[m["trend_pct_per_year"].notna() & m["true_trend_pct_per_year"].notna()]
    err = m["trend_pct_per_year"] - m["true_trend_pct_per_year"]
    within = err.abs() <= 2 * m["trend_se_pct_per_year"]
    reg_true = regional(tt.rename(columns={"true_trend_pct_per_year": "trend_pct_per_year",
                                           "true_se": "trend_se_pct_per_year"}), a[have], area_col="true_area_km2")
    return {
        "annual_bound_coverage": _f(inb.mean()) if len(inb) else None,
        "n_glacier_years_scored": int(have.sum()),
        "annual_area_median_abs_rel_error": _f(rel.abs().median()) if len(rel) else None,
        "annual_area_median_rel_error": _f(rel.median()) if len(rel) else None,
        "trend_median_abs_error_pct_per_year": _f(err.abs().median()) if len(err) else None,
        "trend_median_error_pct_per_year": _f(err.median()) if len(err) else None,
        "trend_share_within_2se": _f(within.mean()) if len(within) else None,
        "n_trends_scored": int(len(m)),
        "truth_regional_trend_pct_per_year": {k: _f(v["trend_pct_per_year"]) for k, v in reg_true.items()},
        "per_glacier": m.assign(error=err)[["glacier_id", "trend_pct_per_year", "trend_se_pct_per_year",
                                              "true_trend_pct_per_year", "error"]].round(4).to_dict("records"),
    }


def sentinel2_agreement(annual: pd.DataFrame, s2_areas_csv) -> dict:
    """The Landsat annual area against DL4GAM's Sentinel-2 area of every epoch in a year the series has."""
    s2 = pd.read_csv(s2_areas_csv, dtype={"glac_id": str, "epoch": str})
    ok = s2["area_pred_km2"].notna() & s2["date"].notna()
    if "status" in s2.columns:
        ok &= s2["status"] == "ok"
    s2 = s2[ok].copy()
    s2["year"] = pd.to_datetime(s2["date"]).dt.year
    m = annual.merge(s2.rename(columns={"glac_id": "glacier_id", "area_pred_km2": "s2_area_km2"})[
        ["glacier_id", "year", "epoch", "s2_area_km2"]], on=["glacier_id", "year"], how="inner")
    m = m[m["s2_area_km2"] > 0]
    if m.empty:
        return {"n_pairs": 0}
    rel = (m["area_km2"] - m["s2_area_km2"]) / m["s2_area_km2"]
    r = float(np.corrcoef(m["area_km2"], m["s2_area_km2"])[0, 1]) if len(m) > 2 else None
    return {"n_pairs": int(len(m)), "epochs": sorted(m["epoch"].astype(str).unique().tolist()),
            "median_rel_difference": _f(rel.median()), "median_abs_rel_difference": _f(rel.abs().median()),
            "r": _f(r), "landsat_total_km2": _f(m["area_km2"].sum()), "sentinel2_total_km2": _f(m["s2_area_km2"].sum())}


def sensor_agreement(series: pd.DataFrame) -> dict:
    """Within the series: per glacier-year observed by two sources, the mean of each source's own (unsmoothed)
    acquisition areas; the later sources against the first of ``timeseries.sources`` that has acquisitions."""
    if "source" not in series.columns or series["source"].nunique() < 2:
        return {"n_pairs": 0, "sources": sorted(series.get("source", pd.Series(dtype=str)).dropna().unique().tolist())}
    order = list(dict.fromkeys(series["source"]))
    col = "area_own_km2" if "area_own_km2" in series.columns else "area_km2"
    per = series.groupby(["glacier_id", "year", "source"])[col].mean().unstack("source")
    base = order[0]
    out = {"sources": order, "reference": base}
    for other in order[1:]:
        both = per[[base, other]].dropna()
        both = both[both[base] > 0]
        if both.empty:
            out[other] = {"n_pairs": 0}
            continue
        rel = (both[other] - both[base]) / both[base]
        out[other] = {"n_pairs": int(len(both)), "years": sorted(both.index.get_level_values("year").unique().tolist()),
                      "median_rel_difference": _f(rel.median()), "median_abs_rel_difference": _f(rel.abs().median()),
                      "r": _f(np.corrcoef(both[base], both[other])[0, 1]) if len(both) > 2 else None}
    out["n_pairs"] = int(sum(v.get("n_pairs", 0) for k, v in out.items() if isinstance(v, dict)))
    return out


def period_trend(annual: pd.DataFrame, y0: int, y1: int, min_years: int) -> dict:
    from glaciermap.timeseries.trends import glacier_trends, regional

    sub = annual[(annual["year"] >= y0) & (annual["year"] <= y1)]
    if sub.empty:
        return {"years": [y0, y1], "mean_of_slopes": None, "geometric_mean": None}
    reg = regional(glacier_trends(sub, min_years), sub)
    return {"years": [int(y0), int(y1)], **{k: _f(v["trend_pct_per_year"]) for k, v in reg.items()}}


def run_ts_summary(trends_json, trends_csv, annual_csv, acquisition_csvs, params: dict, out_json, truth_csv=None,
                   s2_areas_csv=None, dl4gam_regional_json=None, series_csv=None) -> dict:
    tr_all = json.loads(open(trends_json).read())
    trends = pd.read_csv(trends_csv, dtype={"glacier_id": str})
    annual = pd.read_csv(annual_csv, dtype={"glacier_id": str})
    acq = pd.concat([pd.read_csv(p, dtype={"glacier_id": str}) for p in acquisition_csvs], ignore_index=True) \
        if acquisition_csvs else pd.DataFrame(columns=["status", "reason"])
    rejected = acq.loc[acq["status"] == "rejected", "reason"].value_counts().to_dict()
    reg = tr_all["regional"]
    width = (annual["area_ub_km2"] - annual["area_lb_km2"]) / annual["area_km2"].where(annual["area_km2"] > 0)
    out = {
        "n_glaciers": int(annual["glacier_id"].nunique()),
        "n_acquisitions_candidates": int(len(acq)),
        "n_acquisitions_used": int((acq["status"] == "used").sum()),
        "n_acquisitions_rejected": {str(k): int(v) for k, v in sorted(rejected.items())},
        "n_glacier_years": int(len(annual)),
        "n_glaciers_with_trend": int(trends["trend_pct_per_year"].notna().sum()),
        "no_trend": tr_all.get("no_trend", []),
        "regional_trend_pct_per_year": {k: _f(v["trend_pct_per_year"]) for k, v in reg.items()},
        "regional_trend_se": {k: _f(v["se"]) for k, v in reg.items()},
        "annual_bound_median_rel_width": _f(width.median()) if width.notna().any() else None,
        "settings": params,
    }
    if series_csv:
        out["sensor_agreement"] = sensor_agreement(pd.read_csv(series_csv, dtype={"glacier_id": str}))
    if s2_areas_csv:
        out["sentinel2_agreement"] = sentinel2_agreement(annual, s2_areas_csv)
    epochs = params.get("change_epochs") or []
    if dl4gam_regional_json and s2_areas_csv and len(epochs) == 2:
        s2 = pd.read_csv(s2_areas_csv, dtype={"glac_id": str, "epoch": str})
        years = pd.to_datetime(s2["date"], errors="coerce").dt.year
        y0, y1 = years[s2["epoch"] == str(epochs[0])].min(), years[s2["epoch"] == str(epochs[1])].max()
        d = json.loads(open(dl4gam_regional_json).read())
        out["dl4gam_comparison"] = {"dl4gam_rate_pct_per_year": _f(d.get("rate_pct_yr")),
                                    "dl4gam_sigma_pct_per_year": _f(d.get("sigma_rate_pct_yr")),
                                    "timeseries": period_trend(annual, int(y0), int(y1), 3)
                                    if pd.notna(y0) and pd.notna(y1) else None}
    if truth_csv:
        out.update(truth_scores(annual, trends, truth_csv, int(params["min_years"])))
        cmp_ = out.get("dl4gam_comparison") or {}
        if cmp_.get("timeseries"):   # the true areas of the same glacier-years over the same period
            ta = truth_annual(truth_csv, annual).dropna(subset=["true_area_km2"])
            y0, y1 = cmp_["timeseries"]["years"]
            cmp_["truth"] = period_trend(ta.assign(area_km2=ta["true_area_km2"]), y0, y1, 3)
    write_json_atomic(out_json, out)
    log.info("time-series summary: %s", {k: v for k, v in out.items() if k not in ("per_glacier", "no_trend")})
    return out
