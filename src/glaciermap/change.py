"""Glacier area change rates, quality filters and regional extrapolation (DL4GAM, paper 3.5.3 to 3.5.5, 4.3).

Per glacier: rate = (A1 - A0) / years between the actual image dates, with the two epochs' area
uncertainties (half-widths of the calibrated bounds) added in quadrature, as the paper does. A rate
is kept for glacier-level results when SNR >= 1 and the t0 recall >= 0.9. Regionally, a size-dependent
quadratic in log10(area) fitted on the kept rates fills in every other glacier of the inventory.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm

from .areas import SIZE_LABELS, size_class

DAYS_PER_YEAR = 365.25
KEPT = "kept"
REASONS = (KEPT, "invalid", "low_snr", "low_recall")
RATE_INPUTS = ("area_t0", "lb_t0", "ub_t0", "date_t0", "area_t1", "lb_t1", "ub_t1", "date_t1", "recall_t0")


def change_rates(df: pd.DataFrame, snr_min: float = 1.0, recall_min: float = 0.9) -> pd.DataFrame:
    """Per-glacier change rate, its uncertainty, SNR and the filter outcome.

    Input columns (areas in km2): area_t0, lb_t0, ub_t0, date_t0, area_t1, lb_t1, ub_t1, date_t1,
    recall_t0 (0..1). Added: years, sigma_t0, sigma_t1 (= (ub - lb)/2), rate_km2_yr,
    sigma_rate_km2_yr (= sqrt(sigma_t0^2 + sigma_t1^2) / years: epochs independent, conservative),
    rate_pct_yr and sigma_pct_yr (relative to area_t0), snr (= |rate| / sigma_rate), kept and
    filter_reason: the first failing step in the order of paper Table 6 ("invalid": non-finite
    input, non-positive interval or area_t0 <= 0; then "low_snr"; then "low_recall"), "kept" otherwise.
    """
    missing = [c for c in RATE_INPUTS if c not in df.columns]
    if missing:
        raise ValueError(f"change_rates: missing column(s) {missing}")
    out = df.copy()
    t0, t1 = pd.to_datetime(out["date_t0"]), pd.to_datetime(out["date_t1"])
    out["years"] = (t1 - t0).dt.total_seconds() / 86400.0 / DAYS_PER_YEAR
    a0, a1 = out["area_t0"].astype(float), out["area_t1"].astype(float)
    out["sigma_t0"] = (out["ub_t0"].astype(float) - out["lb_t0"].astype(float)) / 2.0
    out["sigma_t1"] = (out["ub_t1"].astype(float) - out["lb_t1"].astype(float)) / 2.0
    yrs = out["years"].where(out["years"] > 0)
    out["rate_km2_yr"] = (a1 - a0) / yrs
    out["sigma_rate_km2_yr"] = np.sqrt(out["sigma_t0"] ** 2 + out["sigma_t1"] ** 2) / yrs
    a0_pos = a0.where(a0 > 0)
    out["rate_pct_yr"] = 100.0 * out["rate_km2_yr"] / a0_pos
    out["sigma_pct_yr"] = 100.0 * out["sigma_rate_km2_yr"] / a0_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        out["snr"] = out["rate_km2_yr"].abs() / out["sigma_rate_km2_yr"]
    out.loc[(out["rate_km2_yr"] == 0) & (out["sigma_rate_km2_yr"] == 0), "snr"] = 0.0  # no change, no signal
    valid = np.isfinite(out[["rate_km2_yr", "sigma_rate_km2_yr", "rate_pct_yr"]]).all(axis=1)
    recall = out["recall_t0"].astype(float)
    reason = np.where(~valid, "invalid",
                      np.where(~(out["snr"] >= snr_min), "low_snr",
                               np.where(~(recall >= recall_min), "low_recall", KEPT)))
    out["filter_reason"] = reason
    out["kept"] = out["filter_reason"] == KEPT
    return out


def coverage_table(df: pd.DataFrame, inventory: pd.DataFrame, min_area_km2: float = 0.1) -> pd.DataFrame:
    """Paper Table 6: count and inventory area left after each step, and their % of the inventory.

    ``df``: output of change_rates (one row per processed glacier, with glac_id); ``inventory``: every
    inventory glacier with glac_id and area_km2. Areas are inventory areas throughout, so the rows
    are comparable; a processed glacier absent from the inventory is an error.
    """
    inv = inventory[["glac_id", "area_km2"]].copy()
    inv["glac_id"] = inv["glac_id"].astype(str)
    area = inv.set_index("glac_id")["area_km2"].astype(float)
    ids = df["glac_id"].astype(str)
    unknown = sorted(set(ids) - set(area.index))
    if unknown:
        raise ValueError(f"coverage_table: processed glacier(s) not in the inventory: {unknown[:10]}")
    reason = df["filter_reason"].to_numpy()
    steps = [
        ("inventory", area.index.to_numpy()),
        (f"area >= {min_area_km2:g} km2", area.index[area >= min_area_km2].to_numpy()),
        ("processed", ids.to_numpy()),
        ("after SNR filter", ids[~np.isin(reason, ["invalid", "low_snr"])].to_numpy()),
        ("after recall filter", ids[reason == KEPT].to_numpy()),
    ]
    n_all, a_all = len(area), float(area.sum())
    rows = []
    for name, sel in steps:
        a = float(area.loc[sel].sum())
        rows.append({"step": name, "n": int(len(sel)), "n_pct": 100.0 * len(sel) / n_all if n_all else np.nan,
                     "area_km2": a, "area_pct": 100.0 * a / a_all if a_all else np.nan})
    return pd.DataFrame(rows)


def fit_rate_model(area_km2, rate_pct, sigma_pct) -> dict:
    """WLS of rate (%/yr) on 1, log10 A, (log10 A)^2 with weights 1/sigma^2 (statsmodels).

    Sigmas of zero would get infinite weight; they are floored at the smallest positive sigma.
    Returns coef (3), bse, n and the log10 A range fitted.
    """
    x = np.log10(np.asarray(area_km2, dtype=np.float64))
    y = np.asarray(rate_pct, dtype=np.float64)
    s = np.asarray(sigma_pct, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(s) & (s >= 0)
    x, y, s = x[ok], y[ok], s[ok]
    if x.size < 3:
        raise ValueError(f"fit_rate_model: {x.size} usable glacier(s); the quadratic needs at least 3")
    pos = s[s > 0]
    s = np.maximum(s, pos.min() if pos.size else 1.0)
    X = np.column_stack([np.ones_like(x), x, x**2])
    with np.errstate(divide="ignore", invalid="ignore"):  # n == 3: no residual dof, bse becomes inf/nan
        res = sm.WLS(y, X, weights=1.0 / s**2).fit()
        bse = [float(b) for b in res.bse]
    return {"coef": [float(c) for c in res.params], "bse": bse, "n": int(x.size),
            "log10_area_range": [float(x.min()), float(x.max())]}


def predict_rate(model: dict, area_km2) -> np.ndarray:
    x = np.log10(np.asarray(area_km2, dtype=np.float64))
    c = model["coef"]
    return c[0] + c[1] * x + c[2] * x**2


def _rms(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.sqrt(np.mean(v**2))) if v.size else float("nan")


def regional_extrapolation(df_all: pd.DataFrame, kept_mask=None, area_col: str = "area_km2",
                           sigma_fallback: str = "overall") -> pd.DataFrame:
    """Rates for every inventory glacier: measured where kept, from the size model elsewhere.

    ``df_all``: one row per inventory glacier (small ones included) with ``area_col`` (inventory
    area, km2) and, for processed glaciers, the change_rates columns. ``kept_mask``: boolean per row,
    by position (default: the ``kept`` column; missing = False).

    The model is fitted on the KEPT glaciers only. The DL4GAM reference code fitted it on every
    glacier with a finite rate, including those its own SNR and recall filters rejected, which lets
    exactly the rates judged unreliable steer the extrapolation; we do not. x = log10 of the
    inventory area, for fitting and applying alike (the same variable on both sides).

    Extrapolated glaciers (every glacier without a kept rate, including processed-but-rejected and
    < 0.1 km2 ones) get rate = model(A_inv) and sigma = RMS of the kept glaciers' sigma_pct_yr in
    their size class; when a class has no kept glacier (always the case for "<0.1") the fallback is
    the RMS over all kept glaciers (``sigma_fallback="overall"``) or that of the nearest size class
    with kept glaciers (``"nearest"``). Their area uncertainty at t0 is treated alike with the kept
    glaciers' relative sigma_t0 / area_t0.

    Added columns: size_class, rate_source ("measured"/"extrapolated"), reg_area_t0_km2 (measured:
    area_t0; extrapolated: inventory area), reg_sigma_area_t0_km2, reg_rate_pct_yr,
    reg_sigma_pct_yr, reg_rate_km2_yr, reg_sigma_rate_km2_yr, reg_years (extrapolated: mean years of
    the measured glaciers), reg_area_t1_km2 (= A0 + rate * years), reg_sigma_area_t1_km2. The fitted
    model and the per-class RMS sigmas are in ``.attrs["rate_model"]`` and ``.attrs["class_sigma"]``.
    """
    if sigma_fallback not in ("overall", "nearest"):
        raise ValueError(f"sigma_fallback must be 'overall' or 'nearest', got {sigma_fallback!r}")
    out = df_all.copy()
    if kept_mask is None:
        kept_mask = out["kept"] if "kept" in out.columns else np.zeros(len(out), bool)
    raw = np.asarray(kept_mask, dtype=object)
    kept = np.where(pd.isna(raw), False, raw).astype(bool)
    if kept.shape != (len(out),):
        raise ValueError(f"regional_extrapolation: kept_mask has {kept.size} values for {len(out)} glaciers")
    if kept.sum() < 3:
        raise ValueError(f"regional_extrapolation: {int(kept.sum())} kept glacier(s); the quadratic needs at least 3")
    a_inv = out[area_col].astype(float).to_numpy()
    if (~np.isfinite(a_inv) | (a_inv <= 0)).any():
        bad = out.loc[~np.isfinite(a_inv) | (a_inv <= 0)]
        ids = bad.get("glac_id", bad.index).tolist()[:10]
        raise ValueError(f"regional_extrapolation: non-positive or missing {area_col} for {ids}")
    k = out[kept]
    need = ("rate_pct_yr", "sigma_pct_yr", "rate_km2_yr", "sigma_rate_km2_yr", "area_t0", "area_t1",
            "sigma_t0", "sigma_t1", "years")
    missing = [c for c in need if c not in out.columns]
    if missing:
        raise ValueError(f"regional_extrapolation: kept glaciers need column(s) {missing}")
    if not np.isfinite(k[list(need)].to_numpy(float)).all():
        raise ValueError("regional_extrapolation: a kept glacier has a non-finite rate, sigma, area or years")
    model = fit_rate_model(a_inv[kept], k["rate_pct_yr"], k["sigma_pct_yr"])

    out["size_class"] = size_class(a_inv)
    rel_a0 = (k["sigma_t0"] / k["area_t0"]).to_numpy(float)
    overall = {"sigma_pct_yr": _rms(k["sigma_pct_yr"]), "rel_sigma_area_t0": _rms(rel_a0)}
    by_class = {}
    for lab in SIZE_LABELS:
        sel = (out.loc[kept, "size_class"] == lab).to_numpy()
        if sel.any():
            by_class[lab] = {"sigma_pct_yr": _rms(k["sigma_pct_yr"].to_numpy(float)[sel]),
                             "rel_sigma_area_t0": _rms(rel_a0[sel]), "n_kept": int(sel.sum())}
    class_sigma = {}
    for i, lab in enumerate(SIZE_LABELS):
        if lab in by_class:
            class_sigma[lab] = {**by_class[lab], "source": lab}
        elif sigma_fallback == "nearest" and by_class:
            j = min((abs(SIZE_LABELS.index(c) - i), SIZE_LABELS.index(c)) for c in by_class)[1]
            class_sigma[lab] = {**by_class[SIZE_LABELS[j]], "n_kept": 0, "source": SIZE_LABELS[j]}
        else:
            class_sigma[lab] = {**overall, "n_kept": 0, "source": "overall"}

    years_mean = float(k["years"].mean())
    ext = ~kept
    cls = out["size_class"].to_numpy()
    s_pct = np.array([class_sigma[c]["sigma_pct_yr"] for c in cls[ext]], dtype=np.float64)
    s_rel = np.array([class_sigma[c]["rel_sigma_area_t0"] for c in cls[ext]], dtype=np.float64)
    a0_ext = a_inv[ext]
    r_pct = predict_rate(model, a0_ext)

    out["rate_source"] = np.where(kept, "measured", "extrapolated")
    cols = {c: np.full(len(out), np.nan) for c in
            ("reg_area_t0_km2", "reg_sigma_area_t0_km2", "reg_rate_pct_yr", "reg_sigma_pct_yr",
             "reg_rate_km2_yr", "reg_sigma_rate_km2_yr", "reg_years", "reg_area_t1_km2", "reg_sigma_area_t1_km2")}
    cols["reg_area_t0_km2"][kept] = k["area_t0"]
    cols["reg_sigma_area_t0_km2"][kept] = k["sigma_t0"]
    cols["reg_rate_pct_yr"][kept] = k["rate_pct_yr"]
    cols["reg_sigma_pct_yr"][kept] = k["sigma_pct_yr"]
    cols["reg_rate_km2_yr"][kept] = k["rate_km2_yr"]
    cols["reg_sigma_rate_km2_yr"][kept] = k["sigma_rate_km2_yr"]
    cols["reg_years"][kept] = k["years"]
    cols["reg_area_t1_km2"][kept] = k["area_t1"]
    cols["reg_sigma_area_t1_km2"][kept] = k["sigma_t1"]
    cols["reg_area_t0_km2"][ext] = a0_ext
    cols["reg_sigma_area_t0_km2"][ext] = s_rel * a0_ext
    cols["reg_rate_pct_yr"][ext] = r_pct
    cols["reg_sigma_pct_yr"][ext] = s_pct
    cols["reg_rate_km2_yr"][ext] = r_pct / 100.0 * a0_ext
    cols["reg_sigma_rate_km2_yr"][ext] = s_pct / 100.0 * a0_ext
    cols["reg_years"][ext] = years_mean
    cols["reg_area_t1_km2"][ext] = a0_ext + cols["reg_rate_km2_yr"][ext] * years_mean
    # t1 of an extrapolated glacier: its t0 error and its rate error (over the years) independent
    cols["reg_sigma_area_t1_km2"][ext] = np.hypot(s_rel * a0_ext, s_pct / 100.0 * a0_ext * years_mean)
    for c, v in cols.items():
        out[c] = v
    out.attrs["rate_model"] = model
    out.attrs["class_sigma"] = class_sigma
    out.attrs["years_mean"] = years_mean
    return out


def _combined_sigma(df: pd.DataFrame, col: str) -> float:
    """Measured glaciers independent (quadrature); extrapolated ones fully correlated within a size
    class (linear sum), classes independent of each other and of the measured glaciers."""
    meas = df["rate_source"] == "measured"
    var = float(np.sum(df.loc[meas, col].to_numpy(float) ** 2))
    class_sums = df.loc[~meas].groupby("size_class", sort=False)[col].sum()
    return float(np.sqrt(var + np.sum(class_sums.to_numpy(float) ** 2)))


def regional_totals(df: pd.DataFrame) -> dict:
    """Regional area at t0 and t1 and the regional change rate with uncertainties (paper 4.3).

    Input: output of regional_extrapolation. The regional rate is the sum of the per-glacier annual
    rates (each over its own period), so glaciers with different image dates are combined correctly;
    %/yr is relative to the t0 total. Uncertainty propagation (a choice, see _combined_sigma):
    measured glaciers' sigmas are treated as independent (quadrature), extrapolated glaciers' as fully
    correlated within a size class (they share one class RMS and one fitted curve, so their errors
    do not average out), the class sums then in quadrature. The sigma of the %/yr rate ignores the
    uncertainty of the t0 total in the denominator.
    """
    meas = df["rate_source"] == "measured"
    a0 = float(df["reg_area_t0_km2"].sum())
    a1 = float(df["reg_area_t1_km2"].sum())
    rate = float(df["reg_rate_km2_yr"].sum())
    s_rate = _combined_sigma(df, "reg_sigma_rate_km2_yr")
    return {
        "n_glaciers": int(len(df)), "n_measured": int(meas.sum()), "n_extrapolated": int((~meas).sum()),
        "area_t0_km2": a0, "sigma_area_t0_km2": _combined_sigma(df, "reg_sigma_area_t0_km2"),
        "area_t1_km2": a1, "sigma_area_t1_km2": _combined_sigma(df, "reg_sigma_area_t1_km2"),
        "measured_area_t0_pct": 100.0 * float(df.loc[meas, "reg_area_t0_km2"].sum()) / a0 if a0 else np.nan,
        "years_mean": float(df.loc[meas, "reg_years"].mean()) if meas.any() else np.nan,
        "rate_km2_yr": rate, "sigma_rate_km2_yr": s_rate,
        "rate_pct_yr": 100.0 * rate / a0 if a0 else np.nan,
        "sigma_rate_pct_yr": 100.0 * s_rate / a0 if a0 else np.nan,
    }
