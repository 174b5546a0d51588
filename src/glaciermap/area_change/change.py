"""Glacier area change rates, quality filters and regional extrapolation (DL4GAM, paper 3.5.3 to 3.5.5, 4.3).

Per glacier: rate = (A1 - A0) / years between the actual image dates, with the two epochs' area
uncertainties (half-widths of the calibrated bounds) added in quadrature, as the paper does. A rate
is kept for glacier-level results when SNR >= 1 and the t0 recall >= 0.9. Regionally, a size-dependent
model of rate (%/yr) in log10(area), weighted by 1/sigma^2 and fitted on every glacier with a finite
rate (kept or not, as the paper), fills in every glacier without a kept rate: a quadratic, or linear /
the weighted mean when the quadratic is poorly determined, never evaluated outside the fitted
log-area range, with its own standard error added to the extrapolated glaciers' sigma. Regional
sigmas are the linear sum of the per-glacier sigmas (the paper) or, as an option, their quadrature sum.

Rule ``change`` (workflow/rules/area_change/change.smk) runs :func:`run_change`: the rate inputs from the areas table
(:func:`rate_inputs`), the filters, the regional extrapolation and totals (:func:`regional_rates`, also
used by the band-ratio baseline), written as CSV, GeoPackage and JSON.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm

from glaciermap.area_change.areas import SIZE_LABELS, size_class
from glaciermap.io import write_csv_atomic, write_json_atomic
from glaciermap.results import _clean, read_manifest

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


MODEL_NAMES = {2: "quadratic", 1: "linear", 0: "weighted mean"}
AGGREGATIONS = ("linear", "quadrature")


class NoRatesError(ValueError):
    """No glacier has a finite rate with a usable sigma: there is nothing to fit the size model on."""


def _fit_selection(rate_pct, sigma_pct) -> tuple[np.ndarray, str]:
    """Which rates enter the size model, and how they are weighted.

    Every glacier with a finite rate and a finite positive sigma, weighted 1/sigma^2 (a zero sigma
    would get infinite weight: such glaciers are left out of the fit, not floored). Only when no
    finite rate has a positive sigma (areas without uncertainty, e.g. the band-ratio baseline) are
    the finite rates with sigma == 0 fitted with equal weights.
    """
    y = np.asarray(rate_pct, dtype=np.float64)
    s = np.asarray(sigma_pct, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(s)
    pos = ok & (s > 0)
    if pos.any():
        return pos, "1/sigma^2"
    return ok & (s == 0), "equal (no rate has a positive sigma)"


def _design(x, order: int) -> np.ndarray:
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    return np.column_stack([x**k for k in range(order + 1)])


def fit_rate_model(area_km2, rate_pct, sigma_pct, order: int = 2) -> dict:
    """WLS of rate (%/yr) on 1, log10 A[, (log10 A)^2] (``order`` 2, 1 or 0 = weighted mean), weights 1/sigma^2.

    Fitted on every glacier with finite log10 A and rate and a finite positive sigma (see
    _fit_selection). Coefficient covariance: (X^T W X)^-1 times max(1, chi2 / dof), i.e. the sigmas
    taken at face value unless the rates scatter more than they allow (natural glacier-to-glacier
    variability), in which case the covariance is inflated by the reduced chi2; never shrunk below
    what the sigmas give. Without residual degrees of freedom (n = order + 1) the sigmas alone are
    used. With equal weights (no positive sigma) it is the ordinary residual-variance covariance.

    Returns order, model (name), n, coef (increasing powers, order + 1 values), bse, cov, p_values
    (two-sided t test of each coefficient against 0, dof = n - order - 1), dof, chi2_reduced,
    cov_scale, weights, n_zero_sigma_excluded and log10_area_range [min, max] of the fitted glaciers,
    the range predict_rate clamps to.
    """
    from scipy import stats

    if order not in MODEL_NAMES:
        raise ValueError(f"fit_rate_model: order must be 0, 1 or 2, got {order!r}")
    x = np.log10(np.asarray(area_km2, dtype=np.float64))
    y = np.asarray(rate_pct, dtype=np.float64)
    s = np.asarray(sigma_pct, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        sel, weighting = _fit_selection(np.where(np.isfinite(x), y, np.nan), s)
    n_zero = int((np.isfinite(x) & np.isfinite(y) & (s == 0) & ~sel).sum())
    x, y, s = x[sel], y[sel], s[sel]
    p = order + 1
    if x.size < p:
        raise ValueError(f"fit_rate_model: {x.size} usable glacier(s); the {MODEL_NAMES[order]} needs at least {p}")
    w = 1.0 / s**2 if weighting == "1/sigma^2" else np.ones_like(y)
    X = _design(x, order)
    if np.linalg.matrix_rank(X * np.sqrt(w)[:, None]) < p:
        raise ValueError(f"fit_rate_model: the {MODEL_NAMES[order]} is not determined by these glaciers' areas")
    res = sm.WLS(y, X, weights=w).fit()
    coef = np.asarray(res.params, dtype=np.float64)
    resid = y - X @ coef
    dof = int(x.size - p)
    chi2_red = float(np.sum(w * resid**2) / dof) if dof > 0 else float("nan")
    if weighting == "1/sigma^2":
        scale = max(1.0, chi2_red) if dof > 0 else 1.0
    else:
        scale = chi2_red
    cov = np.linalg.inv(X.T @ (X * w[:, None])) * scale
    bse = np.sqrt(np.diag(cov))
    with np.errstate(divide="ignore", invalid="ignore"):
        tval = np.abs(coef) / bse
    pval = 2.0 * stats.t.sf(tval, dof) if dof > 0 else np.full(p, np.nan)
    return {"order": int(order), "model": MODEL_NAMES[order], "n": int(x.size),
            "coef": [float(c) for c in coef], "bse": [float(b) for b in bse],
            "cov": [[float(v) for v in r] for r in cov], "p_values": [float(v) for v in pval],
            "dof": dof, "chi2_reduced": chi2_red, "cov_scale": float(scale), "weights": weighting,
            "n_zero_sigma_excluded": n_zero, "log10_area_range": [float(x.min()), float(x.max())]}


def select_rate_model(area_km2, rate_pct, sigma_pct, max_order: int = 2, min_points_per_coef: int = 5,
                      min_log_area_span: float = 0.5, max_coef_p_value: float | None = None) -> dict:
    """The highest well-determined order of the size model: quadratic -> linear -> weighted mean.

    An order k >= 1 is rejected (and the next lower one tried) when
      - fewer than ``min_points_per_coef`` * (k + 1) glaciers are fitted,
      - the fitted log10-area range spans less than ``min_log_area_span`` decades,
      - the design is rank deficient, or
      - ``max_coef_p_value`` is set and the order-k coefficient's two-sided p value exceeds it
        (off by default: the paper always uses the quadratic, and the fit's own uncertainty is
        propagated anyway, so an insignificant term widens the bounds rather than biasing them;
        a test on the same data would also make the reported standard errors optimistic).
    The weighted mean (order 0) is the last resort and is used with any n >= 1; with fewer than
    ``min_points_per_coef`` glaciers that is noted in ``note``. The returned fit_rate_model dict
    also holds ``fallback`` (one {order, model, reason} per rejected order), ``fallback_reason``
    (the reasons joined, None without fallback) and the settings used.
    """
    if max_order not in MODEL_NAMES:
        raise ValueError(f"select_rate_model: max_order must be 0, 1 or 2, got {max_order!r}")
    x = np.log10(np.asarray(area_km2, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        sel, _ = _fit_selection(np.where(np.isfinite(x), np.asarray(rate_pct, dtype=np.float64), np.nan), sigma_pct)
    n = int(sel.sum())
    if n == 0:
        raise ValueError("select_rate_model: no glacier with a finite rate and a usable sigma; nothing to fit")
    span = float(x[sel].max() - x[sel].min())
    fallback = []
    model = None
    for order in range(max_order, -1, -1):
        p = order + 1
        reason = None
        if order > 0 and n < min_points_per_coef * p:
            reason = (f"{n} fitted glacier(s) < {min_points_per_coef} per coefficient x {p} coefficients "
                      f"= {min_points_per_coef * p}")
        elif order > 0 and span < min_log_area_span:
            reason = f"fitted log10-area span {span:.3g} decades < min_log_area_span {min_log_area_span:g}"
        else:
            try:
                m = fit_rate_model(area_km2, rate_pct, sigma_pct, order=order)
            except ValueError as err:
                if order == 0:
                    raise
                reason = str(err)
            else:
                pv = m["p_values"][-1]
                if order > 0 and max_coef_p_value is not None and not (pv <= max_coef_p_value):
                    reason = (f"order-{order} coefficient not significant: p = {pv:.3g} > max_coef_p_value "
                              f"{max_coef_p_value:g}")
                else:
                    model = m
        if model is not None:
            break
        fallback.append({"order": order, "model": MODEL_NAMES[order], "reason": reason})
    model["fallback"] = fallback
    model["fallback_reason"] = "; ".join(f"{f['model']}: {f['reason']}" for f in fallback) or None
    model["note"] = (f"only {n} fitted glacier(s) (< min_points_per_coef {min_points_per_coef}) for the weighted mean"
                     if model["order"] == 0 and n < min_points_per_coef else None)
    model["settings"] = {"max_order": int(max_order), "min_points_per_coef": int(min_points_per_coef),
                         "min_log_area_span": float(min_log_area_span),
                         "max_coef_p_value": None if max_coef_p_value is None else float(max_coef_p_value)}
    return model


def _clamped_x(model: dict, area_km2, clamp: bool) -> np.ndarray:
    x = np.log10(np.asarray(area_km2, dtype=np.float64))
    if clamp:
        lo, hi = model["log10_area_range"]
        x = np.clip(x, lo, hi)
    return x


def predict_rate(model: dict, area_km2, clamp: bool = True) -> np.ndarray:
    """Model rate (%/yr) at these areas. log10 A is clamped to the fitted range ``log10_area_range``
    (a glacier larger / smaller than every fitted one gets the value at the upper / lower end); the
    polynomial is never evaluated outside it unless ``clamp=False`` (diagnostics only)."""
    x = _clamped_x(model, area_km2, clamp)
    return (_design(x, len(model["coef"]) - 1) @ np.asarray(model["coef"], dtype=np.float64)).reshape(np.shape(x))


def predict_rate_se(model: dict, area_km2, clamp: bool = True) -> np.ndarray:
    """Standard error (%/yr) of the model rate from the coefficient covariance: sqrt(x^T Cov x), x clamped alike."""
    x = _clamped_x(model, area_km2, clamp)
    X = _design(x, len(model["coef"]) - 1)
    cov = np.asarray(model["cov"], dtype=np.float64)
    return np.sqrt(np.einsum("ij,jk,ik->i", X, cov, X)).reshape(np.shape(x))


def _rms(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.sqrt(np.mean(v**2))) if v.size else float("nan")


def regional_extrapolation(df_all: pd.DataFrame, kept_mask=None, area_col: str = "area_km2",
                           sigma_fallback: str = "overall", max_order: int = 2, min_points_per_coef: int = 5,
                           min_log_area_span: float = 0.5, max_coef_p_value: float | None = None) -> pd.DataFrame:
    """Rates for every inventory glacier: measured where kept, from the size model elsewhere (paper 3.5.5, 4.3).

    ``df_all``: one row per inventory glacier (small ones included) with ``area_col`` (inventory
    area, km2) and, for processed glaciers, the change_rates columns. ``kept_mask``: boolean per row,
    by position (default: the ``kept`` column; missing = False): the glaciers whose own rate is used.

    Size model (select_rate_model): fitted on EVERY glacier with a finite rate and a finite positive
    sigma, kept or not, weighted 1/sigma^2, as the paper (4.3: "rather than throwing away the
    borderline cases, we instead weighted the predicted area change rates by the estimated
    uncertainties") and its reference code do; quadratic in log10 A, falling back to linear and then
    to the weighted mean when the fit is poorly determined. x = log10 of the inventory area, for
    fitting and applying alike. The model is evaluated with log10 A clamped to the fitted range.

    Extrapolated glaciers (every glacier without a kept rate: filter-rejected ones and never
    processed ones, e.g. < 0.1 km2) get rate = model(clamped A_inv) and
    sigma = sqrt(sigma_class^2 + se_fit^2) (in quadrature: independent), with sigma_class the RMS
    sigma_pct_yr of the FITTED glaciers of their size class (the per-glacier scatter) and se_fit =
    sqrt(x^T Cov x) the standard error of the fitted curve there, so a poorly determined model widens
    the bounds. A class without fitted glaciers (e.g. "<0.1") uses the RMS over all fitted glaciers
    (``sigma_fallback="overall"``) or that of the nearest size class with fitted glaciers
    (``"nearest"``). Their t0 area uncertainty uses the fitted glaciers' RMS relative sigma_t0 / area_t0
    alike.

    Added columns: size_class, in_rate_fit, rate_source ("measured"/"extrapolated"), reg_area_t0_km2
    (measured: area_t0; extrapolated: inventory area), reg_sigma_area_t0_km2, reg_rate_pct_yr,
    reg_sigma_pct_yr, reg_sigma_class_pct_yr and reg_sigma_fit_pct_yr (the two parts; extrapolated
    only), reg_rate_km2_yr, reg_sigma_rate_km2_yr, reg_years (extrapolated: mean years of the fitted
    glaciers), reg_area_t1_km2 (= A0 + rate * years), reg_sigma_area_t1_km2. The model (with counts of
    extrapolated glaciers clamped below / above the fitted range) and the per-class RMS sigmas are in
    ``.attrs["rate_model"]`` and ``.attrs["class_sigma"]``.
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
    a_inv = out[area_col].astype(float).to_numpy()
    if (~np.isfinite(a_inv) | (a_inv <= 0)).any():
        bad = out.loc[~np.isfinite(a_inv) | (a_inv <= 0)]
        ids = bad.get("glac_id", bad.index).tolist()[:10]
        raise ValueError(f"regional_extrapolation: non-positive or missing {area_col} for {ids}")
    need = ("rate_pct_yr", "sigma_pct_yr", "rate_km2_yr", "sigma_rate_km2_yr", "area_t0", "area_t1",
            "sigma_t0", "sigma_t1", "years")
    missing = [c for c in need if c not in out.columns]
    if missing:
        raise ValueError(f"regional_extrapolation: the rates need column(s) {missing}")
    k = out[kept]
    if not np.isfinite(k[list(need)].to_numpy(float)).all():
        raise ValueError("regional_extrapolation: a kept glacier has a non-finite rate, sigma, area or years")
    rate = out["rate_pct_yr"].astype(float).to_numpy()
    sig = out["sigma_pct_yr"].astype(float).to_numpy()
    fit, _ = _fit_selection(rate, sig)
    if not fit.any():
        raise NoRatesError("regional_extrapolation: no glacier with a finite rate and sigma; at least 1 is needed")
    model = select_rate_model(a_inv, rate, sig, max_order=max_order,
                              min_points_per_coef=min_points_per_coef, min_log_area_span=min_log_area_span,
                              max_coef_p_value=max_coef_p_value)
    if "filter_reason" in out.columns:
        model["fit_filter_reasons"] = {str(r): int(c) for r, c in
                                       out.loc[fit, "filter_reason"].astype(str).value_counts().sort_index().items()}

    out["size_class"] = size_class(a_inv)
    out["in_rate_fit"] = fit
    f = out[fit]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_a0 = (f["sigma_t0"].astype(float) / f["area_t0"].astype(float).where(f["area_t0"] > 0)).to_numpy(float)
    s_fit = f["sigma_pct_yr"].to_numpy(float)
    overall = {"sigma_pct_yr": _rms(s_fit), "rel_sigma_area_t0": _rms(rel_a0)}
    by_class = {}
    fit_cls = f["size_class"].to_numpy()
    for lab in SIZE_LABELS:
        sel = fit_cls == lab
        if sel.any():
            by_class[lab] = {"sigma_pct_yr": _rms(s_fit[sel]), "rel_sigma_area_t0": _rms(rel_a0[sel]), "n": int(sel.sum())}
    class_sigma = {}
    for i, lab in enumerate(SIZE_LABELS):
        if lab in by_class:
            class_sigma[lab] = {**by_class[lab], "source": lab}
        elif sigma_fallback == "nearest" and by_class:
            j = min((abs(SIZE_LABELS.index(c) - i), SIZE_LABELS.index(c)) for c in by_class)[1]
            class_sigma[lab] = {**by_class[SIZE_LABELS[j]], "n": 0, "source": SIZE_LABELS[j]}
        else:
            class_sigma[lab] = {**overall, "n": 0, "source": "overall"}

    yrs_fit = f["years"].astype(float).to_numpy()
    years_mean = float(np.nanmean(yrs_fit)) if np.isfinite(yrs_fit).any() else float(k["years"].mean())
    ext = ~kept
    cls = out["size_class"].to_numpy()
    s_cls = np.array([class_sigma[c]["sigma_pct_yr"] for c in cls[ext]], dtype=np.float64)
    s_rel = np.array([class_sigma[c]["rel_sigma_area_t0"] for c in cls[ext]], dtype=np.float64)
    a0_ext = a_inv[ext]
    r_pct = predict_rate(model, a0_ext)
    s_curve = predict_rate_se(model, a0_ext)
    s_pct = np.hypot(s_cls, s_curve)
    x_ext = np.log10(a0_ext)
    lo, hi = model["log10_area_range"]
    a_tot = float(a_inv.sum())
    model["clamp"] = "log10 A clamped to log10_area_range"
    model["area_range_km2"] = [float(10**lo), float(10**hi)]
    model["n_extrapolated"] = int(ext.sum())
    model["n_extrapolated_below_range"] = int((x_ext < lo).sum())
    model["n_extrapolated_above_range"] = int((x_ext > hi).sum())
    model["area_pct_extrapolated_outside_range"] = (100.0 * float(a0_ext[(x_ext < lo) | (x_ext > hi)].sum()) / a_tot
                                                    if a_tot else float("nan"))

    out["rate_source"] = np.where(kept, "measured", "extrapolated")
    cols = {c: np.full(len(out), np.nan) for c in
            ("reg_area_t0_km2", "reg_sigma_area_t0_km2", "reg_rate_pct_yr", "reg_sigma_pct_yr", "reg_sigma_class_pct_yr",
             "reg_sigma_fit_pct_yr", "reg_rate_km2_yr", "reg_sigma_rate_km2_yr", "reg_years", "reg_area_t1_km2",
             "reg_sigma_area_t1_km2")}
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
    cols["reg_sigma_class_pct_yr"][ext] = s_cls
    cols["reg_sigma_fit_pct_yr"][ext] = s_curve
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


def aggregate_sigma(sigmas, how: str = "linear") -> float:
    """Regional sigma from per-glacier sigmas: ``linear`` = their sum (the paper's +-22.68 km2/yr: errors
    treated as fully correlated, an upper bound), ``quadrature`` = sqrt of the sum of squares (errors
    treated as independent, including the shared size model's, a lower bound). NaNs are ignored."""
    v = np.asarray(sigmas, dtype=np.float64)
    v = v[np.isfinite(v)]
    if how == "linear":
        return float(np.sum(v))
    if how == "quadrature":
        return float(np.sqrt(np.sum(v**2)))
    raise ValueError(f"sigma aggregation must be one of {AGGREGATIONS}, got {how!r}")


def regional_totals(df: pd.DataFrame, aggregation: str = "linear") -> dict:
    """Regional area at t0 and t1 and the regional change rate with uncertainties (paper 4.3).

    Input: output of regional_extrapolation. The regional rate is the sum of the per-glacier annual
    rates (each over its own period), so glaciers with different image dates are combined correctly;
    %/yr is relative to the t0 total. Per-glacier sigmas are aggregated both ways (aggregate_sigma):
    ``*_linear`` (sum, as the paper) and ``*_quadrature``; the unsuffixed sigma_* keys hold the one
    named by ``aggregation`` (also recorded as ``sigma_aggregation``). The sigma of the %/yr rate
    ignores the uncertainty of the t0 total in the denominator.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"sigma aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    meas = df["rate_source"] == "measured"
    a0 = float(df["reg_area_t0_km2"].sum())
    a1 = float(df["reg_area_t1_km2"].sum())
    rate = float(df["reg_rate_km2_yr"].sum())
    out = {
        "n_glaciers": int(len(df)), "n_measured": int(meas.sum()), "n_extrapolated": int((~meas).sum()),
        "area_t0_km2": a0, "area_t1_km2": a1,
        "measured_area_t0_pct": 100.0 * float(df.loc[meas, "reg_area_t0_km2"].sum()) / a0 if a0 else np.nan,
        "years_mean": float(df.loc[meas, "reg_years"].mean()) if meas.any() else np.nan,
        "rate_km2_yr": rate, "rate_pct_yr": 100.0 * rate / a0 if a0 else np.nan,
        "sigma_aggregation": aggregation,
    }
    for how in AGGREGATIONS:
        s_rate = aggregate_sigma(df["reg_sigma_rate_km2_yr"], how)
        out[f"sigma_area_t0_km2_{how}"] = aggregate_sigma(df["reg_sigma_area_t0_km2"], how)
        out[f"sigma_area_t1_km2_{how}"] = aggregate_sigma(df["reg_sigma_area_t1_km2"], how)
        out[f"sigma_rate_km2_yr_{how}"] = s_rate
        out[f"sigma_rate_pct_yr_{how}"] = 100.0 * s_rate / a0 if a0 else np.nan
    for key in ("sigma_area_t0_km2", "sigma_area_t1_km2", "sigma_rate_km2_yr", "sigma_rate_pct_yr"):
        out[key] = out[f"{key}_{aggregation}"]
    return out


# ---------------------------------------------------------------------------------------------------- rule change


def rate_inputs(areas: pd.DataFrame, t0: str, t1: str, area="area_pred_km2", lb="area_lb_km2", ub="area_ub_km2") -> pd.DataFrame:
    """One row per glacier with the change_rates inputs from a long (glacier, epoch) area table."""
    ok = areas[areas["status"] == "ok"]
    a = ok[ok["epoch"] == t0].set_index("glac_id")
    b = ok[ok["epoch"] == t1].set_index("glac_id")
    ids = sorted(set(a.index) & set(b.index))
    out = pd.DataFrame({"glac_id": ids})
    out["fold"] = a.loc[ids, "fold"].to_numpy() if "fold" in a.columns else np.nan
    for suffix, t in (("t0", a), ("t1", b)):
        out[f"area_{suffix}"] = t.loc[ids, area].to_numpy(float)
        out[f"lb_{suffix}"] = t.loc[ids, lb].to_numpy(float)
        out[f"ub_{suffix}"] = t.loc[ids, ub].to_numpy(float)
        out[f"date_{suffix}"] = t.loc[ids, "date"].to_numpy()
    out["recall_t0"] = a.loc[ids, "recall"].to_numpy(float)
    return out


def regional_rates(rates: pd.DataFrame, manifest: pd.DataFrame, min_area_km2: float, min_points_per_coef: int = 5,
                   min_log_area_span: float = 0.5, max_coef_p_value: float | None = None,
                   sigma_aggregation: str = "linear") -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """(every inventory glacier with measured or extrapolated rate, regional totals, Table 6 coverage).

    Glaciers that pass the SNR and recall filters keep their own rate; the size model is fitted on every
    glacier with a finite rate and positive sigma (change.regional_extrapolation) and fills in the rest.
    The keyword options are the config's change.* keys of the same names.
    """
    inv = manifest[manifest["qc_status"].isin(["ok", "small", "skipped"]) & np.isfinite(manifest["area_km2"].astype(float))
                   & (manifest["area_km2"].astype(float) > 0)][["glac_id", "area_km2"]]
    cov = coverage_table(rates, inv, min_area_km2)
    df_all = inv.merge(rates, on="glac_id", how="left")
    kept = df_all["kept"].eq(True).to_numpy()
    notes = []
    try:
        ext = regional_extrapolation(df_all, kept_mask=kept, area_col="area_km2", sigma_fallback="nearest",
                                     min_points_per_coef=min_points_per_coef, min_log_area_span=min_log_area_span,
                                     max_coef_p_value=max_coef_p_value)
    except NoRatesError:
        totals = {"notes": [f"no glacier with a finite rate and sigma ({int(kept.sum())} kept): no regional extrapolation"]}
        df_all["rate_source"] = np.where(kept, "measured", "none")
        return df_all, totals, cov
    model = ext.attrs["rate_model"]
    if model["fallback_reason"]:
        notes.append(f"size model: {model['model']} on {model['n']} glaciers (fallback: {model['fallback_reason']})")
    if model.get("note"):
        notes.append(f"size model: {model['note']}")
    n_out = model["n_extrapolated_below_range"] + model["n_extrapolated_above_range"]
    if n_out:
        notes.append(f"size model: {n_out} extrapolated glacier(s) ({model['area_pct_extrapolated_outside_range']:.1f} % "
                     "of the area) outside the fitted log10-area range get the value at its nearer end")
    totals = regional_totals(ext, aggregation=sigma_aggregation)
    totals["rate_model"] = model
    totals["class_sigma"] = ext.attrs["class_sigma"]
    totals["n_kept_filters"] = int(kept.sum())
    totals["notes"] = notes
    return ext, totals, cov


def run_change(areas_csv, manifest_csv, inventory_gpkg, cfg: dict, min_area_km2: float, outputs: dict) -> dict:
    """Per-glacier rates (Table 6 filters), regional extrapolation and totals; CSV, GeoPackage and JSON."""
    c = cfg["change"]
    defaults = {"min_points_per_coef": 5, "min_log_area_span": 0.5, "max_coef_p_value": None, "sigma_aggregation": "linear"}
    opts = {key: c.get(key, default) for key, default in defaults.items()}
    areas = pd.read_csv(areas_csv, dtype={"glac_id": str, "epoch": str})
    rates = change_rates(rate_inputs(areas, c["from"], c["to"]), snr_min=c["snr_min"], recall_min=c["recall_min"])
    manifest = read_manifest(manifest_csv)
    ext, totals, cov = regional_rates(rates, manifest, min_area_km2, **opts)
    totals.update({"t0": c["from"], "t1": c["to"], "n_rates": int(len(rates)), "n_kept": int(rates["kept"].sum())})
    write_csv_atomic(outputs["csv"], ext)
    write_csv_atomic(outputs["coverage"], cov)
    write_json_atomic(outputs["totals"], _clean(totals))
    _write_gpkg(ext, inventory_gpkg, outputs["gpkg"])
    return totals


def _write_gpkg(df: pd.DataFrame, inventory_gpkg, out_path) -> None:
    import geopandas as gpd

    from glaciermap.io import write_gpkg_atomic

    inv = gpd.read_file(inventory_gpkg, layer="glaciers", engine="pyogrio")[["glac_id", "geometry"]]
    inv["glac_id"] = inv["glac_id"].astype(str)
    g = inv.merge(df, on="glac_id", how="inner")
    for col in g.columns:
        if g[col].dtype == object and col != "geometry":
            g[col] = g[col].astype(str)
    write_gpkg_atomic(out_path, gpd.GeoDataFrame(g, geometry="geometry", crs=inv.crs), "rates")
