"""Comparison of the mapped change rates with a planted truth (synthetic regions only).

Reads ``<truth_dir>/areas.csv`` (written by the demo generator: glac_id, area_t0_km2, area_t1_km2,
rate_km2_per_year, rate_pct_per_year, ...). No modelling step reads the truth; only the evaluation
steps do (this one and glaciermap.area_change.compare, which reads the debris map), after everything else has run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from glaciermap.io import write_json_atomic


def compare_rates(rates: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Per-glacier measured rates (rate_source == measured or, without it, finite rates) against the truth."""
    from scipy.stats import spearmanr

    t = truth.copy()
    t["glac_id"] = t["glac_id"].astype(str)
    r = rates.copy()
    r["glac_id"] = r["glac_id"].astype(str)
    truth_rate = 100.0 * t["rate_km2_per_year"].sum() / t["area_t0_km2"].sum()
    out = {"truth_regional_rate_pct_per_year": float(truth_rate),
           "truth_area_t0_km2": float(t["area_t0_km2"].sum()), "truth_area_t1_km2": float(t["area_t1_km2"].sum())}
    m = r.merge(t[["glac_id", "rate_pct_per_year", "rate_km2_per_year", "area_t0_km2"]], on="glac_id", how="inner")
    ok = np.isfinite(m["rate_pct_yr"].astype(float)) & np.isfinite(m["sigma_pct_yr"].astype(float))
    for name, sel in (("", ok), ("_kept", ok & m["kept"].fillna(False).astype(bool))):
        d = m[sel]
        pred, true, sig = (d[c].to_numpy(float) for c in ("rate_pct_yr", "rate_pct_per_year", "sigma_pct_yr"))
        out[f"n_rates_compared{name}"] = int(len(d))
        out[f"rate_spearman{name}"] = float(spearmanr(pred, true).statistic) if len(d) >= 3 else None
        out[f"rate_mae_pct_per_year{name}"] = float(np.mean(np.abs(pred - true))) if len(d) else None
        out[f"rate_bias_pct_per_year{name}"] = float(np.mean(pred - true)) if len(d) else None
        out[f"share_within_1sigma{name}"] = float(np.mean(np.abs(pred - true) <= sig)) if len(d) else None
    if out["rate_spearman"] is not None and not np.isfinite(out["rate_spearman"]):
        out["rate_spearman"] = None  # constant ranks
    return out


def run_evaluate(rates_csv, truth_dir, out_json) -> dict:
    from pathlib import Path

    rates = pd.read_csv(rates_csv, dtype={"glac_id": str})
    truth = pd.read_csv(Path(truth_dir) / "areas.csv", dtype={"glac_id": str})
    out = compare_rates(rates, truth)
    out["truth_dir"] = str(truth_dir)
    write_json_atomic(out_json, out)
    return out
