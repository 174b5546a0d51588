import numpy as np
import pandas as pd
import pytest

from glaciermap.area_change import change

D0, D1 = pd.Timestamp("2015-08-01"), pd.Timestamp("2023-08-01")  # 2922 days = 8.0 years


def row(a0, s0, a1, s1, recall=0.95, d0=D0, d1=D1, gid="g"):
    return {"glac_id": gid, "area_t0": a0, "lb_t0": a0 - s0, "ub_t0": a0 + s0, "date_t0": d0,
            "area_t1": a1, "lb_t1": a1 - s1, "ub_t1": a1 + s1, "date_t1": d1, "recall_t0": recall}


def test_rate_and_sigma_on_hand_numbers():
    r = change.change_rates(pd.DataFrame([row(2.0, 0.1, 1.6, 0.1)])).iloc[0]
    assert r.years == pytest.approx(8.0)
    assert r.sigma_t0 == pytest.approx(0.1) and r.sigma_t1 == pytest.approx(0.1)
    assert r.rate_km2_yr == pytest.approx(-0.05)
    assert r.sigma_rate_km2_yr == pytest.approx(np.sqrt(0.02) / 8)
    assert r.rate_pct_yr == pytest.approx(-2.5)
    assert r.sigma_pct_yr == pytest.approx(100 * np.sqrt(0.02) / 8 / 2.0)
    assert r.snr == pytest.approx(0.05 / (np.sqrt(0.02) / 8))
    assert r.kept and r.filter_reason == "kept"


def test_years_from_actual_dates():
    r = change.change_rates(pd.DataFrame([row(1.0, 0.01, 0.9, 0.01, d0="2016-09-15", d1="2023-08-20")])).iloc[0]
    days = (pd.Timestamp("2023-08-20") - pd.Timestamp("2016-09-15")).days
    assert r.years == pytest.approx(days / 365.25)
    assert r.rate_km2_yr == pytest.approx(-0.1 / (days / 365.25))


def test_filter_reasons_and_thresholds():
    df = pd.DataFrame([
        row(2.0, 0.1, 1.6, 0.1, gid="kept"),
        row(2.0, 0.5, 1.9, 0.5, gid="snr"),                 # SNR 0.14
        row(2.0, 0.1, 1.6, 0.1, recall=0.8, gid="recall"),
        row(2.0, 0.5, 1.9, 0.5, recall=0.5, gid="both"),    # fails SNR first (Table 6 order)
        row(np.nan, 0.1, 1.6, 0.1, gid="nan"),
        row(2.0, 0.1, 1.6, 0.1, d0=D1, d1=D1, gid="zero_years"),
        row(2.0, 0.0, 2.0, 0.0, gid="flat"),                # 0/0: no signal
    ])
    out = change.change_rates(df).set_index("glac_id")
    assert out.filter_reason.to_dict() == {"kept": "kept", "snr": "low_snr", "recall": "low_recall",
                                           "both": "low_snr", "nan": "invalid", "zero_years": "invalid",
                                           "flat": "low_snr"}
    assert out.kept.sum() == 1
    strict = change.change_rates(df, snr_min=3.0).set_index("glac_id")
    assert strict.loc["kept", "filter_reason"] == "low_snr"          # SNR 2.83 < 3
    lax = change.change_rates(df, recall_min=0.75).set_index("glac_id")
    assert lax.loc["recall", "filter_reason"] == "kept"


def test_coverage_table():
    inv = pd.DataFrame({"glac_id": ["a", "b", "c", "d", "e", "f"], "area_km2": [5.0, 2.0, 1.0, 0.5, 0.08, 0.02]})
    proc = pd.DataFrame({"glac_id": ["a", "b", "c", "d"],
                         "filter_reason": ["kept", "low_recall", "kept", "low_snr"]})
    t = change.coverage_table(proc, inv).set_index("step")
    total = 8.6
    assert t["n"].tolist() == [6, 4, 4, 3, 2]
    assert t["area_km2"].tolist() == pytest.approx([total, 8.5, 8.5, 8.0, 6.0])
    assert t["area_pct"].iloc[-1] == pytest.approx(100 * 6.0 / total)
    assert t["n_pct"].iloc[-1] == pytest.approx(100 * 2 / 6)
    with pytest.raises(ValueError, match="zz"):
        change.coverage_table(pd.DataFrame({"glac_id": ["zz"], "filter_reason": ["kept"]}), inv)


TRUE = (-3.0, 1.2, -0.4)


def planted(n=300, seed=0):
    """Kept glaciers with rates from a known quadratic in log10 A plus noise of known sigma."""
    rng = np.random.default_rng(seed)
    a = 10 ** rng.uniform(-1, 1.5, n)
    x = np.log10(a)
    sig = rng.uniform(0.1, 2.0, n)
    rate = TRUE[0] + TRUE[1] * x + TRUE[2] * x**2 + rng.normal(0, sig)
    years = 8.0
    return pd.DataFrame({"glac_id": [f"k{i}" for i in range(n)], "area_km2": a, "area_t0": a,
                         "area_t1": a * (1 + rate / 100 * years), "sigma_t0": sig / 100 * a * years / np.sqrt(2),
                         "sigma_t1": sig / 100 * a * years / np.sqrt(2), "years": years, "rate_pct_yr": rate,
                         "sigma_pct_yr": sig, "rate_km2_yr": rate / 100 * a, "sigma_rate_km2_yr": sig / 100 * a,
                         "kept": True})


def test_fit_recovers_planted_quadratic():
    d = planted()
    m = change.fit_rate_model(d.area_km2, d.rate_pct_yr, d.sigma_pct_yr)
    for c, t, se in zip(m["coef"], TRUE, m["bse"]):
        assert abs(c - t) < 4 * se and se < 0.3
    assert m["n"] == len(d) and m["order"] == 2 and m["dof"] == len(d) - 3
    assert np.sqrt(np.diag(m["cov"])) == pytest.approx(m["bse"])
    assert m["p_values"][2] < 1e-6                                      # the planted curvature is significant
    assert m["cov_scale"] >= 1.0                                        # never shrunk below the sigmas


def region(area, rate, sigma, kept, years=8.0, reason=None, prefix="g"):
    """Processed glaciers with given rate and sigma (%/yr); inventory area = area_t0."""
    a, r, s = (np.asarray(v, dtype=float) for v in (area, rate, sigma))
    kept = np.broadcast_to(np.asarray(kept, dtype=bool), a.shape)
    return pd.DataFrame({"glac_id": [f"{prefix}{i}" for i in range(a.size)], "area_km2": a, "area_t0": a,
                         "area_t1": a * (1 + r / 100 * years), "sigma_t0": s / 100 * a * years / np.sqrt(2),
                         "sigma_t1": s / 100 * a * years / np.sqrt(2), "years": years, "rate_pct_yr": r,
                         "sigma_pct_yr": s, "rate_km2_yr": r / 100 * a, "sigma_rate_km2_yr": s / 100 * a,
                         "kept": kept, "filter_reason": np.where(kept, "kept", reason or "low_snr")})


def unprocessed(area, prefix="u"):
    return pd.DataFrame({"glac_id": [f"{prefix}{i}" for i in range(len(area))], "area_km2": np.asarray(area, float)})


def poly_range(model, n=2001):
    """min and max of the model over its fitted log10-area range."""
    lo, hi = model["log10_area_range"]
    v = change.predict_rate(model, 10 ** np.linspace(lo, hi, n))
    return v.min(), v.max()


def test_extrapolation_fits_every_finite_rate():
    d = planted()
    border = {"glac_id": "bad", "area_km2": 15.0, "area_t0": 15.0, "area_t1": 14.0, "sigma_t0": 1.2,
              "sigma_t1": 1.2, "years": 8.0, "rate_pct_yr": -0.8333, "sigma_pct_yr": 1.414,
              "rate_km2_yr": -0.125, "sigma_rate_km2_yr": 0.2121, "kept": False, "filter_reason": "low_snr"}
    zero = {**border, "glac_id": "zero", "area_km2": 3.0, "sigma_pct_yr": 0.0, "kept": False,
            "filter_reason": "low_recall"}
    small = {"glac_id": "tiny", "area_km2": 0.05, "kept": np.nan}      # never processed (< 0.1 km2)
    df = pd.concat([d, pd.DataFrame([border, zero, small])], ignore_index=True)

    fitted = pd.concat([d, pd.DataFrame([border])], ignore_index=True)
    every = change.fit_rate_model(fitted.area_km2, fitted.rate_pct_yr, fitted.sigma_pct_yr)
    kept_only = change.fit_rate_model(d.area_km2, d.rate_pct_yr, d.sigma_pct_yr)
    assert every["coef"] != pytest.approx(kept_only["coef"], rel=1e-9, abs=1e-9)

    out = change.regional_extrapolation(df)
    m = out.attrs["rate_model"]
    assert m["coef"] == pytest.approx(every["coef"], rel=1e-12, abs=1e-12)   # the rejected rate is in the fit
    assert m["n"] == len(d) + 1 and m["n_zero_sigma_excluded"] == 1         # a zero sigma is not an infinite weight
    assert m["order"] == 2 and m["fallback"] == [] and m["fallback_reason"] is None
    o = out.set_index("glac_id")
    assert bool(o.loc["bad", "in_rate_fit"]) and not bool(o.loc["zero", "in_rate_fit"])
    assert o.loc["bad", "rate_source"] == "extrapolated" and o.loc["k0", "rate_source"] == "measured"
    assert o.loc["bad", "reg_rate_pct_yr"] == pytest.approx(change.predict_rate(m, 15.0))
    assert o.loc["bad", "reg_area_t0_km2"] == 15.0                       # inventory area, not its predicted one
    assert o.loc["k0", "reg_rate_pct_yr"] == d.loc[0, "rate_pct_yr"]     # measured rates pass through
    # "tiny" lies below every fitted area: the model at the lower end of the fitted range
    assert o.loc["tiny", "size_class"] == "<0.1"
    amin = fitted.area_km2.min()
    assert np.log10(amin) == pytest.approx(m["log10_area_range"][0])
    assert o.loc["tiny", "reg_rate_pct_yr"] == pytest.approx(change.predict_rate(m, amin))
    assert o.loc["tiny", "reg_rate_pct_yr"] != pytest.approx(change.predict_rate(m, 0.05, clamp=False), abs=1e-3)
    assert m["n_extrapolated_below_range"] == 1 and m["n_extrapolated_above_range"] == 0
    # sigma: class RMS of the FITTED glaciers ("<0.1" has none: overall RMS) and the curve's SE, in quadrature
    s_all = np.sqrt(np.mean(fitted.sigma_pct_yr**2))
    se = change.predict_rate_se(m, amin)
    assert o.loc["tiny", "reg_sigma_class_pct_yr"] == pytest.approx(s_all)
    assert o.loc["tiny", "reg_sigma_fit_pct_yr"] == pytest.approx(se)
    assert o.loc["tiny", "reg_sigma_pct_yr"] == pytest.approx(np.hypot(s_all, se))
    big = fitted[fitted.area_km2 >= 20]
    assert len(big) > 0
    assert out.attrs["class_sigma"][">=20"]["sigma_pct_yr"] == pytest.approx(np.sqrt(np.mean(big.sigma_pct_yr**2)))
    near = change.regional_extrapolation(df, sigma_fallback="nearest").set_index("glac_id")
    cls = fitted[(fitted.area_km2 >= 0.1) & (fitted.area_km2 < 0.2)]
    assert near.loc["tiny", "reg_sigma_class_pct_yr"] == pytest.approx(np.sqrt(np.mean(cls.sigma_pct_yr**2)))
    # an explicit mask decides which rates are used as measured, not which are fitted
    mask = (df["kept"] == True).to_numpy().copy()  # noqa: E712 (NaN -> False)
    mask[0] = False
    o2 = change.regional_extrapolation(df, kept_mask=mask)
    assert o2.attrs["rate_model"]["n"] == len(d) + 1 and o2.rate_source.iat[0] == "extrapolated"
    assert o2.reg_rate_pct_yr.iat[0] == pytest.approx(change.predict_rate(m, d.area_km2.iat[0]))


def test_extrapolation_needs_a_finite_rate():
    with pytest.raises(change.NoRatesError):
        change.regional_extrapolation(pd.concat([region([1.0], [np.nan], [np.nan], False), unprocessed([0.05])],
                                                ignore_index=True))
    two = pd.concat([region([0.5, 2.0], [-1.0, -3.0], [1.0, 1.0], True), unprocessed([0.05])], ignore_index=True)
    out = change.regional_extrapolation(two)
    m = out.attrs["rate_model"]
    assert m["order"] == 0 and m["coef"] == pytest.approx([-2.0]) and "only 2" in m["note"]
    assert out.reg_rate_pct_yr.iat[2] == pytest.approx(-2.0)


def test_regional_totals_constructed_case():
    d6 = pd.Timestamp("2016-08-01")
    y3 = (D1 - d6).days / 365.25
    rows = [row(1.5, 0.03, 1.5 * (1 - 0.16), 0.03, gid="m1"),
            row(4.0, 0.08, 4.0 * (1 - 0.16), 0.08, gid="m2"),
            row(0.3, 0.006, 0.3 * (1 - 0.02 * y3), 0.006, d0=d6, gid="m3")]
    meas = change.change_rates(pd.DataFrame(rows))
    assert meas.rate_pct_yr.to_numpy() == pytest.approx([-2.0] * 3)
    assert meas.kept.all()
    meas["area_km2"] = [1.5, 4.0, 0.3]
    ext = pd.DataFrame({"glac_id": ["e1", "e2", "e3"], "area_km2": [1.2, 1.8, 0.05]})
    df = pd.concat([meas, ext], ignore_index=True)
    out = change.regional_extrapolation(df)
    m = out.attrs["rate_model"]
    assert m["order"] == 0 and m["coef"] == pytest.approx([-2.0], abs=1e-9)   # 3 glaciers: the weighted mean
    assert [f["order"] for f in m["fallback"]] == [2, 1]
    tot = change.regional_totals(out)

    s_pct = 100 * 0.03 * np.sqrt(2) / 8 / 1.5                            # same for m1 and m2
    sig = np.array([s_pct, s_pct, 100 * 0.006 * np.sqrt(2) / y3 / 0.3])
    assert meas.sigma_pct_yr.to_numpy() == pytest.approx(sig)
    se = 1 / np.sqrt(np.sum(1 / sig**2))        # weighted mean; chi2 = 0, so the sigmas alone (scale 1)
    s1 = np.hypot(s_pct, se) / 100                                       # class "1-2" holds m1 only
    s_all = np.hypot(np.sqrt(np.mean(sig**2)), se) / 100                 # e3 ("<0.1") falls back to overall RMS
    ym = np.mean([8.0, 8.0, y3])
    a0 = 1.5 + 4.0 + 0.3 + 1.2 + 1.8 + 0.05
    assert tot["area_t0_km2"] == pytest.approx(a0)
    assert tot["rate_km2_yr"] == pytest.approx(-0.02 * a0)
    assert tot["rate_pct_yr"] == pytest.approx(-2.0)
    assert tot["years_mean"] == pytest.approx(ym)
    a1 = 1.5 * 0.84 + 4.0 * 0.84 + 0.3 * (1 - 0.02 * y3) + (1.2 + 1.8 + 0.05) * (1 - 0.02 * ym)
    assert tot["area_t1_km2"] == pytest.approx(a1)
    per = np.r_[meas.sigma_rate_km2_yr.to_numpy(), s1 * 1.2, s1 * 1.8, s_all * 0.05]
    assert tot["sigma_aggregation"] == "linear"
    assert tot["sigma_rate_km2_yr"] == pytest.approx(per.sum()) == tot["sigma_rate_km2_yr_linear"]
    assert tot["sigma_rate_km2_yr_quadrature"] == pytest.approx(np.sqrt(np.sum(per**2)))
    assert tot["sigma_rate_pct_yr"] == pytest.approx(100 * per.sum() / a0)
    rel = 0.02                                                           # sigma_t0 / area_t0 of every measured glacier
    sa0 = [0.03, 0.08, 0.006, rel * 1.2, rel * 1.8, rel * 0.05]
    assert tot["sigma_area_t0_km2"] == pytest.approx(np.sum(sa0))
    assert tot["sigma_area_t0_km2_quadrature"] == pytest.approx(np.sqrt(np.sum(np.square(sa0))))
    sa1 = [0.03, 0.08, 0.006] + [np.hypot(rel * a, s * a * ym) for a, s in ((1.2, s1), (1.8, s1), (0.05, s_all))]
    assert tot["sigma_area_t1_km2"] == pytest.approx(np.sum(sa1))
    assert (tot["n_measured"], tot["n_extrapolated"]) == (3, 3)
    assert tot["measured_area_t0_pct"] == pytest.approx(100 * 5.8 / a0)


def test_a_few_small_kept_many_large_rejected_covers_truth():
    """(a) 6 kept rates of 0.12-0.5 km2, 60 larger glaciers with a planted -1.3 %/yr measured too noisily
    to be kept, 20 unprocessed small ones: the fit uses all 66, the interval covers the truth and no
    extrapolated rate leaves the polynomial's range over the fitted areas."""
    rng = np.random.default_rng(7)
    a_s = np.geomspace(0.12, 0.5, 6)
    small = region(a_s, -1.8 + rng.normal(0, 0.2, 6), np.full(6, 0.4), True, prefix="s")
    a_l = 10 ** rng.uniform(0, 1.6, 60)
    s_l = 2.0 / np.sqrt(a_l) + 0.3
    large = region(a_l, -1.3 + rng.normal(0, s_l), s_l, False, reason="low_recall", prefix="l")
    a_u = rng.uniform(0.02, 0.099, 20)
    df = pd.concat([small, large, unprocessed(a_u)], ignore_index=True)
    truth = np.r_[np.full(6, -1.8), np.full(60, -1.3), np.full(20, -1.8)]
    a = df.area_km2.to_numpy()
    truth_pct = 100 * np.sum(truth / 100 * a) / a.sum()

    out = change.regional_extrapolation(df)
    m = out.attrs["rate_model"]
    assert m["n"] == 66 and m["order"] == 2 and m["fit_filter_reasons"] == {"kept": 6, "low_recall": 60}
    assert m["n_extrapolated_below_range"] == 20
    tot = change.regional_totals(out)
    assert abs(tot["rate_pct_yr"] - truth_pct) <= tot["sigma_rate_pct_yr"]
    assert abs(tot["rate_pct_yr"] - truth_pct) < 0.5
    lo, hi = poly_range(m)
    e = out[out.rate_source == "extrapolated"].reg_rate_pct_yr
    assert e.min() >= lo - 1e-9 and e.max() <= hi + 1e-9
    # each filter-rejected large glacier gets the model at its own (in-range) size, not its noisy rate
    o = out.set_index("glac_id")
    assert o.loc["l0", "reg_rate_pct_yr"] == pytest.approx(change.predict_rate(m, a_l[0]))


def test_b_clamping_two_decades_above_the_fitted_range():
    rng = np.random.default_rng(3)
    a = 10 ** rng.uniform(-1, 0.5, 40)
    x = np.log10(a)
    r = -1.0 - 2.0 * x + 1.5 * x**2 + rng.normal(0, 0.2, 40)
    huge, speck = 10 ** (x.max() + 2), 10 ** (x.min() - 1)
    df = pd.concat([region(a, r, np.full(40, 0.2), True), unprocessed([huge, speck])], ignore_index=True)
    out = change.regional_extrapolation(df)
    m = out.attrs["rate_model"]
    assert m["order"] == 2 and m["log10_area_range"] == pytest.approx([x.min(), x.max()])
    o = out.set_index("glac_id")
    c = m["coef"]
    at_top = c[0] + c[1] * x.max() + c[2] * x.max() ** 2
    assert o.loc["u0", "reg_rate_pct_yr"] == pytest.approx(at_top)
    assert o.loc["u0", "reg_rate_pct_yr"] == pytest.approx(change.predict_rate(m, a.max()))
    assert abs(change.predict_rate(m, huge, clamp=False) - at_top) > 5   # unclamped would be far away
    assert o.loc["u0", "reg_sigma_fit_pct_yr"] == pytest.approx(change.predict_rate_se(m, a.max()))
    assert o.loc["u1", "reg_rate_pct_yr"] == pytest.approx(change.predict_rate(m, a.min()))
    assert (m["n_extrapolated_below_range"], m["n_extrapolated_above_range"]) == (1, 1)


def _case(n, lo=-1.0, hi=1.0, seed=0, curv=0.0, noise=0.3):
    rng = np.random.default_rng(seed)
    x = np.linspace(lo, hi, n)
    s = np.full(n, noise)
    r = -1.5 + 0.8 * x + curv * x**2 + rng.normal(0, noise, n)
    return 10**x, r, s


def test_c_fallback_order_and_reasons():
    m = change.select_rate_model(*_case(20))
    assert m["order"] == 2 and m["model"] == "quadratic" and m["fallback"] == []
    m = change.select_rate_model(*_case(12))
    assert m["order"] == 1 and len(m["coef"]) == 2
    assert [f["order"] for f in m["fallback"]] == [2]
    assert "12 fitted glacier(s) < 5 per coefficient x 3 coefficients = 15" in m["fallback"][0]["reason"]
    assert m["fallback_reason"].startswith("quadratic: 12 fitted")
    m = change.select_rate_model(*_case(12), min_points_per_coef=4)          # 12 >= 4 x 3
    assert m["order"] == 2
    m = change.select_rate_model(*_case(8))
    assert m["order"] == 0 and [f["order"] for f in m["fallback"]] == [2, 1]
    assert "= 15" in m["fallback"][0]["reason"] and "= 10" in m["fallback"][1]["reason"]
    # narrow log-area range: straight to the weighted mean, whose value and SE are exact
    a, r, s = _case(40, lo=-0.2, hi=0.1)
    m = change.select_rate_model(a, r, s)
    assert m["order"] == 0 and all("span 0.3 decades < min_log_area_span 0.5" in f["reason"] for f in m["fallback"])
    w = 1 / s**2
    assert m["coef"][0] == pytest.approx(np.sum(w * r) / np.sum(w))
    chi2 = np.sum(w * (r - m["coef"][0]) ** 2) / 39
    assert m["bse"][0] == pytest.approx(np.sqrt(max(1.0, chi2) / np.sum(w)))
    assert change.select_rate_model(a, r, s, min_log_area_span=0.25)["order"] == 2
    # optional significance rule: planted straight line -> the quadratic term is dropped only when asked
    a, r, s = _case(60, seed=4)
    full = change.select_rate_model(a, r, s)
    assert full["order"] == 2 and full["p_values"][2] > 0.05
    m = change.select_rate_model(a, r, s, max_coef_p_value=0.05)
    assert m["order"] == 1 and "not significant" in m["fallback"][0]["reason"]
    assert m["settings"]["max_coef_p_value"] == 0.05
    curved = change.select_rate_model(*_case(60, seed=4, curv=1.0), max_coef_p_value=0.05)
    assert curved["order"] == 2


def test_d_extrapolated_sigma_grows_when_fit_poorly_determined():
    a, r_good, s = _case(40, lo=-1.0, hi=1.3, seed=1, noise=0.5)
    rng = np.random.default_rng(2)
    r_bad = r_good + rng.normal(0, 3.0, 40)                  # same sigmas, rates scattered far beyond them
    targets = unprocessed([0.03, 1.0, 80.0])                 # below, inside and above the fitted range
    outs = {}
    for name, r in (("good", r_good), ("bad", r_bad)):
        outs[name] = change.regional_extrapolation(
            pd.concat([region(a, r, s, True), targets], ignore_index=True)).set_index("glac_id")
        m = outs[name].attrs["rate_model"]
        t = outs[name].loc[["u0", "u1", "u2"]]
        assert t.reg_sigma_pct_yr.to_numpy() == pytest.approx(np.hypot(t.reg_sigma_class_pct_yr, t.reg_sigma_fit_pct_yr))
        assert t.reg_sigma_fit_pct_yr.to_numpy() == pytest.approx(change.predict_rate_se(m, [0.03, 1.0, 80.0]))
    g, b = outs["good"].loc[["u0", "u1", "u2"]], outs["bad"].loc[["u0", "u1", "u2"]]
    assert outs["bad"].attrs["rate_model"]["cov_scale"] > 10 and outs["good"].attrs["rate_model"]["cov_scale"] < 2
    assert g.reg_sigma_class_pct_yr.to_numpy() == pytest.approx(b.reg_sigma_class_pct_yr.to_numpy())
    assert (b.reg_sigma_fit_pct_yr > 3 * g.reg_sigma_fit_pct_yr).all()
    assert (b.reg_sigma_pct_yr > g.reg_sigma_pct_yr * 1.2).all()
    # fewer glaciers over the same range, same sigmas: a wider curve SE as well
    few = change.regional_extrapolation(pd.concat([region(a[::2][:16], r_good[::2][:16], s[:16], True), targets],
                                                  ignore_index=True)).set_index("glac_id")
    assert (few.loc[["u0", "u1", "u2"]].reg_sigma_fit_pct_yr > g.reg_sigma_fit_pct_yr).all()


def test_e_linear_vs_quadrature_aggregation_400():
    rng = np.random.default_rng(11)
    a = 10 ** rng.uniform(-1, 1.3, 400)
    s = rng.uniform(0.3, 3.0, 400)
    kept = rng.random(400) < 0.5
    d = region(a, -1.5 + rng.normal(0, s), s, kept)
    out = change.regional_extrapolation(d)
    sig = out.reg_sigma_rate_km2_yr.to_numpy()
    lin, quad = change.regional_totals(out), change.regional_totals(out, aggregation="quadrature")
    a0 = out.reg_area_t0_km2.sum()
    for t in (lin, quad):
        assert t["sigma_rate_km2_yr_linear"] == pytest.approx(np.sum(sig), rel=1e-12)
        assert t["sigma_rate_km2_yr_quadrature"] == pytest.approx(np.sqrt(np.sum(sig**2)), rel=1e-12)
        assert t["sigma_rate_pct_yr_linear"] == pytest.approx(100 * np.sum(sig) / a0, rel=1e-12)
        assert t["sigma_area_t1_km2_quadrature"] == pytest.approx(np.sqrt(np.sum(out.reg_sigma_area_t1_km2**2)))
    assert lin["sigma_aggregation"] == "linear" and lin["sigma_rate_km2_yr"] == lin["sigma_rate_km2_yr_linear"]
    assert quad["sigma_aggregation"] == "quadrature" and quad["sigma_rate_km2_yr"] == quad["sigma_rate_km2_yr_quadrature"]
    assert quad["sigma_rate_pct_yr"] == quad["sigma_rate_pct_yr_quadrature"]
    assert lin["sigma_rate_km2_yr"] / quad["sigma_rate_km2_yr"] > 8
    assert lin["rate_km2_yr"] == quad["rate_km2_yr"]
    with pytest.raises(ValueError, match="quadrature"):
        change.regional_totals(out, aggregation="sum")


def test_f_demo_defect_shape_no_sign_flip():
    """(f) The demo's shape: 5 kept rates of 0.12-0.5 km2 with some curvature, 43 larger glaciers (one
    much larger than the rest) whose rates fail the filters, 4 unprocessed < 0.1 km2. Planted truth:
    -1.3 %/yr for the larger ones, -1.5 for the small. The old code (quadratic on the 5 kept, evaluated
    unclamped) flips the sign; the new estimate lies within the truth's interval."""
    rng = np.random.default_rng(1)
    xs = np.log10([0.12, 0.18, 0.25, 0.35, 0.5])
    small = region(10**xs, -1.5 + 8 * (xs + 0.6) ** 2, np.full(5, 0.4), True, prefix="s")
    a_l = np.append(10 ** rng.uniform(-0.3, 1.3, 42), 60.0)
    s_l = np.clip(3.0 / np.sqrt(a_l), 0.5, None)
    large = region(a_l, -1.3 + rng.normal(0, s_l), s_l, False, prefix="l")
    df = pd.concat([small, large, unprocessed([0.03, 0.05, 0.07, 0.09])], ignore_index=True)
    a = df.area_km2.to_numpy()
    truth = np.r_[np.full(5, -1.5), np.full(43, -1.3), np.full(4, -1.5)]
    truth_pct = 100 * np.sum(truth / 100 * a) / a.sum()

    old_model = change.fit_rate_model(10**xs, small.rate_pct_yr, small.sigma_pct_yr)
    kept = df.kept.eq(True).to_numpy()
    old_rate = np.where(kept, df.rate_pct_yr, change.predict_rate(old_model, a, clamp=False))
    old_pct = 100 * np.sum(old_rate / 100 * a) / a.sum()
    assert truth_pct < 0 < old_pct                                          # the defect: a sign flip

    out = change.regional_extrapolation(df)
    tot = change.regional_totals(out)
    assert tot["rate_pct_yr"] < 0
    assert abs(tot["rate_pct_yr"] - truth_pct) <= tot["sigma_rate_pct_yr"]
    m = out.attrs["rate_model"]
    assert m["n"] == 48 and m["log10_area_range"][1] == pytest.approx(np.log10(60.0))
    biggest = out.set_index("glac_id").loc["l42"]
    assert abs(biggest.reg_rate_pct_yr + 1.3) <= biggest.reg_sigma_pct_yr
    assert old_rate[a == 60.0][0] > 10


def test_regional_rates_writes_model_record():
    from glaciermap.config import load_schema
    from glaciermap.area_change.change import regional_rates

    rng = np.random.default_rng(5)
    areas = np.r_[np.geomspace(0.12, 0.5, 5), 10 ** rng.uniform(0, 1.5, 20)]
    rows = []
    for i, a0 in enumerate(areas):
        small = i < 5
        s0 = 0.005 * a0 if small else 0.08 * a0
        rows.append(row(a0, s0, a0 * (1 - 0.12), s0, recall=0.95 if small else 0.5, gid=f"g{i}"))
    rates = change.change_rates(pd.DataFrame(rows))
    assert rates.kept.sum() == 5
    manifest = pd.DataFrame({"glac_id": [f"g{i}" for i in range(25)] + ["t0", "t1"],
                             "area_km2": np.r_[areas, 0.05, 0.08], "qc_status": ["ok"] * 25 + ["small"] * 2})
    ext, tot, cov = regional_rates(rates, manifest, 0.1)
    m = tot["rate_model"]
    assert m["n"] == 25 and m["order"] == 2 and tot["n_kept_filters"] == 5
    for key in ("order", "model", "n", "log10_area_range", "coef", "bse", "cov", "fallback", "fallback_reason",
                "n_extrapolated_below_range", "n_extrapolated_above_range"):
        assert key in m
    assert tot["sigma_aggregation"] == "linear" and tot["sigma_rate_km2_yr"] == tot["sigma_rate_km2_yr_linear"]
    assert any("outside the fitted log10-area range" in n for n in tot["notes"])
    assert tot["rate_pct_yr"] == pytest.approx(-1.5, abs=0.05)
    _, tot_q, _ = regional_rates(rates, manifest, 0.1, min_points_per_coef=10, sigma_aggregation="quadrature")
    assert tot_q["rate_model"]["order"] == 1 and any("fallback" in n for n in tot_q["notes"])
    assert tot_q["sigma_rate_km2_yr"] == tot_q["sigma_rate_km2_yr_quadrature"] < tot["sigma_rate_km2_yr"]
    props = load_schema()["properties"]["change"]["properties"]
    assert {k: props[k]["default"] for k in ("min_points_per_coef", "min_log_area_span", "max_coef_p_value",
                                              "sigma_aggregation")} == {"min_points_per_coef": 5, "min_log_area_span": 0.5,
                                                                        "max_coef_p_value": None,
                                                                        "sigma_aggregation": "linear"}


def test_rates_without_uncertainty_fit_unweighted():
    """Band-ratio areas have no bounds (sigma 0): the model is then fitted with equal weights, and its
    residual-variance SE is the extrapolated glaciers' only sigma."""
    a, r, _ = _case(30, seed=6)
    df = pd.concat([region(a, r, np.zeros(30), True), unprocessed([0.05, 500.0])], ignore_index=True)
    out = change.regional_extrapolation(df)
    m = out.attrs["rate_model"]
    assert m["weights"].startswith("equal") and m["n"] == 30 and m["order"] == 2
    X = np.column_stack([np.ones(30), np.log10(a), np.log10(a) ** 2])
    coef, rss = np.linalg.lstsq(X, r, rcond=None)[:2]
    assert m["coef"] == pytest.approx(coef)
    assert np.asarray(m["cov"]) == pytest.approx(np.linalg.inv(X.T @ X) * rss[0] / 27)
    e = out[out.rate_source == "extrapolated"]
    assert (e.reg_sigma_class_pct_yr == 0).all() and (e.reg_sigma_pct_yr > 0).all()
    assert np.isfinite(change.regional_totals(out)["sigma_rate_km2_yr"])
