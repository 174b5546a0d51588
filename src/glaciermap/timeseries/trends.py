"""Log-linear area trends per glacier and for the region (rule ``ts_trends``), from the annual areas.

Per glacier: OLS (statsmodels) of log(area) on the decimal year; beta1 x 100 is the relative change in % per year,
with its standard error and the number of years; a glacier with fewer than ``min_years`` years (or a zero area in
one: no logarithm) gets no trend and says why.

Region, both as GlacierView's Table II asks:

(a) ``mean_of_slopes``: the mean of the per-glacier slopes weighted by their numbers of years n_i,
    b = sum n_i b_i / sum n_i, SE = sqrt(sum n_i^2 SE_i^2) / sum n_i (independent glaciers);
(b) ``geometric_mean``: per year the pointwise geometric mean of the observed glaciers' areas, exp(mean log A) (the
    public code averages the areas arithmetically and calls it geometric), then WLS of its logarithm on the
    decimal year with weights = the number of glaciers observed that year.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from glaciermap.io import write_csv_atomic, write_json_atomic

log = logging.getLogger("glaciermap.timeseries.trends")

TREND_COLUMNS = ["glacier_id", "n_years", "first_year", "last_year", "trend_pct_per_year", "trend_se_pct_per_year",
                 "intercept", "reason"]


def glacier_trend(years, areas, min_years: int) -> dict:
    """OLS of log(area) on time: slope and SE in % per year, or the reason there is none."""
    import statsmodels.api as sm

    t = np.asarray(years, dtype=np.float64)
    a = np.asarray(areas, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(a)
    t, a = t[ok], a[ok]
    base = {"n_years": int(len(t)), "first_year": float(t.min()) if len(t) else np.nan,
            "last_year": float(t.max()) if len(t) else np.nan}
    if len(t) < max(int(min_years), 3):
        return {**base, "trend_pct_per_year": np.nan, "trend_se_pct_per_year": np.nan, "intercept": np.nan,
                "reason": f"{len(t)} year(s) with an area, fewer than min_years {min_years}"}
    if (a <= 0).any():
        return {**base, "trend_pct_per_year": np.nan, "trend_se_pct_per_year": np.nan, "intercept": np.nan,
                "reason": f"zero area in {int((a <= 0).sum())} year(s): no log-linear trend"}
    t0 = t.mean()
    fit = sm.OLS(np.log(a), sm.add_constant(t - t0)).fit()
    return {**base, "trend_pct_per_year": 100.0 * float(fit.params[1]), "trend_se_pct_per_year": 100.0 * float(fit.bse[1]),
            "intercept": float(fit.params[0] - fit.params[1] * t0), "reason": ""}


def glacier_trends(annual: pd.DataFrame, min_years: int, area_col: str = "area_km2") -> pd.DataFrame:
    rows = []
    for g, sub in annual.groupby("glacier_id", sort=True):
        rows.append({"glacier_id": g, **glacier_trend(sub["decimal_year"], sub[area_col], min_years)})
    return pd.DataFrame(rows, columns=TREND_COLUMNS)


def mean_of_slopes(trends: pd.DataFrame) -> dict:
    ok = trends["trend_pct_per_year"].notna()
    n = trends.loc[ok, "n_years"].to_numpy(float)
    b = trends.loc[ok, "trend_pct_per_year"].to_numpy(float)
    se = trends.loc[ok, "trend_se_pct_per_year"].to_numpy(float)
    if not n.size:
        return {"trend_pct_per_year": None, "se": None, "n_glaciers": 0}
    return {"trend_pct_per_year": float((n * b).sum() / n.sum()), "se": float(np.sqrt((n**2 * se**2).sum()) / n.sum()),
            "n_glaciers": int(n.size)}


def geometric_mean_trend(annual: pd.DataFrame, area_col: str = "area_km2") -> dict:
    import statsmodels.api as sm

    a = annual[annual[area_col] > 0]
    per = a.assign(log_a=np.log(a[area_col].astype(float))).groupby("year").agg(
        log_gm=("log_a", "mean"), t=("decimal_year", "mean"), n=("glacier_id", "nunique")).reset_index()
    if len(per) < 3:
        return {"trend_pct_per_year": None, "se": None, "n_years": int(len(per))}
    t0 = per["t"].mean()
    fit = sm.WLS(per["log_gm"].to_numpy(), sm.add_constant(per["t"].to_numpy() - t0), weights=per["n"].to_numpy()).fit()
    return {"trend_pct_per_year": 100.0 * float(fit.params[1]), "se": 100.0 * float(fit.bse[1]), "n_years": int(len(per)),
            "years": per["year"].astype(int).tolist(), "n_glaciers_per_year": per["n"].astype(int).tolist()}


def regional(trends: pd.DataFrame, annual: pd.DataFrame, area_col: str = "area_km2") -> dict:
    return {"mean_of_slopes": mean_of_slopes(trends), "geometric_mean": geometric_mean_trend(annual, area_col)}


def run_ts_trends(annual_csvs, series_csvs, outline_gpkgs, settings: dict, out_annual, out_series, out_outlines,
                  out_trends, out_json) -> dict:
    import geopandas as gpd

    from glaciermap.io import write_gpkg_atomic

    ann = pd.concat([pd.read_csv(p, dtype={"glacier_id": str}) for p in annual_csvs], ignore_index=True)
    ser = pd.concat([pd.read_csv(p, dtype={"glacier_id": str}) for p in series_csvs], ignore_index=True)
    ann = ann.sort_values(["glacier_id", "year"]).reset_index(drop=True)
    ser = ser.sort_values(["glacier_id", "date", "acquisition"]).reset_index(drop=True)
    parts = [gpd.read_file(p) for p in outline_gpkgs]
    parts = [p for p in parts if len(p)]
    if parts:
        gdf = pd.concat(parts, ignore_index=True).sort_values(["glacier_id", "year"]).reset_index(drop=True)
        gdf = gpd.GeoDataFrame(gdf, geometry="geometry", crs=parts[0].crs)
    else:
        gdf = gpd.GeoDataFrame({"glacier_id": pd.Series(dtype=str), "year": pd.Series(dtype=int)},
                               geometry=gpd.GeoSeries([]))
    tr = glacier_trends(ann, int(settings["min_years"]))
    reg = regional(tr, ann)
    write_csv_atomic(out_annual, ann)
    write_csv_atomic(out_series, ser)
    write_gpkg_atomic(out_outlines, gdf, "annual_outlines")
    write_csv_atomic(out_trends, tr)
    out = {"n_glaciers": int(ann["glacier_id"].nunique()), "n_glacier_years": int(len(ann)),
           "n_acquisitions_used": int(len(ser)), "n_glaciers_with_trend": int(tr["trend_pct_per_year"].notna().sum()),
           "no_trend": tr.loc[tr["reason"].fillna("") != "", ["glacier_id", "reason"]].to_dict("records"),
           "regional": reg}
    write_json_atomic(out_json, out)
    log.info("time series: %d glaciers, %d trends; regional %s", out["n_glaciers"], out["n_glaciers_with_trend"], reg)
    return out
