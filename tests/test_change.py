import numpy as np
import pandas as pd
import pytest

from glaciermap import change

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
    assert m["n"] == len(d)


def test_extrapolation_ignores_rejected_absurd_rate():
    d = planted()
    absurd = {"glac_id": "bad", "area_km2": 15.0, "area_t0": 15.0, "area_t1": 75.0, "sigma_t0": 0.01,
              "sigma_t1": 0.01, "years": 8.0, "rate_pct_yr": 500.0, "sigma_pct_yr": 0.05,
              "rate_km2_yr": 75.0, "sigma_rate_km2_yr": 0.0075, "kept": False}
    small = {"glac_id": "tiny", "area_km2": 0.05, "kept": np.nan}      # never processed (< 0.1 km2)
    df = pd.concat([d, pd.DataFrame([absurd, small])], ignore_index=True)

    ref_style = change.fit_rate_model(df.area_km2, df.rate_pct_yr, df.sigma_pct_yr)  # every finite rate
    clean = change.fit_rate_model(d.area_km2, d.rate_pct_yr, d.sigma_pct_yr)
    assert abs(ref_style["coef"][0] - clean["coef"][0]) > 1.0          # including it would move the fit

    out = change.regional_extrapolation(df)
    assert out.attrs["rate_model"]["coef"] == pytest.approx(clean["coef"], rel=1e-12, abs=1e-12)
    assert out.attrs["rate_model"]["n"] == len(d)
    o = out.set_index("glac_id")
    assert o.loc["bad", "rate_source"] == "extrapolated" and o.loc["k0", "rate_source"] == "measured"
    assert o.loc["bad", "reg_rate_pct_yr"] == pytest.approx(change.predict_rate(clean, 15.0))
    assert abs(o.loc["bad", "reg_rate_pct_yr"]) < 10
    assert o.loc["bad", "reg_area_t0_km2"] == 15.0                       # inventory area, not its predicted one
    assert o.loc["tiny", "size_class"] == "<0.1"
    assert o.loc["tiny", "reg_rate_pct_yr"] == pytest.approx(change.predict_rate(clean, 0.05))
    # "<0.1" has no kept glacier: overall RMS of the kept sigmas
    assert o.loc["tiny", "reg_sigma_pct_yr"] == pytest.approx(np.sqrt(np.mean(d.sigma_pct_yr**2)))
    # ">=20" class sigma: RMS of the kept glaciers in that class only
    big = d[d.area_km2 >= 20]
    assert len(big) > 0
    assert o.loc["k0", "reg_rate_pct_yr"] == d.loc[0, "rate_pct_yr"]     # measured rates pass through
    assert out.attrs["class_sigma"][">=20"]["sigma_pct_yr"] == pytest.approx(np.sqrt(np.mean(big.sigma_pct_yr**2)))
    near = change.regional_extrapolation(df, sigma_fallback="nearest").set_index("glac_id")
    cls = d[(d.area_km2 >= 0.1) & (d.area_km2 < 0.2)]
    assert near.loc["tiny", "reg_sigma_pct_yr"] == pytest.approx(np.sqrt(np.mean(cls.sigma_pct_yr**2)))
    # an explicit mask overrides the column
    mask = (df["kept"] == True).to_numpy().copy()  # noqa: E712 (NaN -> False)
    mask[0] = False
    o2 = change.regional_extrapolation(df, kept_mask=mask)
    assert o2.attrs["rate_model"]["n"] == len(d) - 1 and o2.rate_source.iat[0] == "extrapolated"


def test_extrapolation_needs_three_kept():
    d = planted(n=2)
    with pytest.raises(ValueError, match="at least 3"):
        change.regional_extrapolation(d)


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
    c = out.attrs["rate_model"]["coef"]
    assert c == pytest.approx([-2.0, 0.0, 0.0], abs=1e-9)               # every kept rate is exactly -2 %/yr
    tot = change.regional_totals(out)

    s_pct = 100 * 0.03 * np.sqrt(2) / 8 / 1.5                            # same for all three measured
    assert meas.sigma_pct_yr.to_numpy() == pytest.approx([s_pct, s_pct, 100 * 0.006 * np.sqrt(2) / y3 / 0.3])
    s1 = s_pct / 100                                                     # class "1-2" holds m1 only
    s_all = np.sqrt(np.mean(meas.sigma_pct_yr**2)) / 100                 # e3 ("<0.1") falls back to overall RMS
    ym = np.mean([8.0, 8.0, y3])
    a0 = 1.5 + 4.0 + 0.3 + 1.2 + 1.8 + 0.05
    assert tot["area_t0_km2"] == pytest.approx(a0)
    assert tot["rate_km2_yr"] == pytest.approx(-0.02 * a0)
    assert tot["rate_pct_yr"] == pytest.approx(-2.0)
    assert tot["years_mean"] == pytest.approx(ym)
    a1 = 1.5 * 0.84 + 4.0 * 0.84 + 0.3 * (1 - 0.02 * y3) + (1.2 + 1.8 + 0.05) * (1 - 0.02 * ym)
    assert tot["area_t1_km2"] == pytest.approx(a1)
    sr_meas = meas.sigma_rate_km2_yr.to_numpy()
    sigma_rate = np.sqrt(np.sum(sr_meas**2) + (s1 * 1.2 + s1 * 1.8) ** 2 + (s_all * 0.05) ** 2)
    assert tot["sigma_rate_km2_yr"] == pytest.approx(sigma_rate)
    assert tot["sigma_rate_pct_yr"] == pytest.approx(100 * sigma_rate / a0)
    # the within-class correlation matters: all-independent quadrature would be smaller
    indep = np.sqrt(np.sum(sr_meas**2) + (s1 * 1.2) ** 2 + (s1 * 1.8) ** 2 + (s_all * 0.05) ** 2)
    assert tot["sigma_rate_km2_yr"] > indep * 1.05
    rel = 0.02                                                           # sigma_t0 / area_t0 of every measured glacier
    sa0 = np.sqrt(0.03**2 + 0.08**2 + 0.006**2 + (rel * 3.0) ** 2 + (rel * 0.05) ** 2)
    assert tot["sigma_area_t0_km2"] == pytest.approx(sa0)
    ext_t1 = {a: np.hypot(rel * a, s1 * a * ym) for a in (1.2, 1.8)}
    sa1 = np.sqrt(0.03**2 + 0.08**2 + 0.006**2 + (ext_t1[1.2] + ext_t1[1.8]) ** 2
                  + np.hypot(rel * 0.05, s_all * 0.05 * ym) ** 2)
    assert tot["sigma_area_t1_km2"] == pytest.approx(sa1)
    assert (tot["n_measured"], tot["n_extrapolated"]) == (3, 3)
    assert tot["measured_area_t0_pct"] == pytest.approx(100 * 5.8 / a0)
