import json

import numpy as np

from glaciermap.area_change.areas import glacier_area, tau_star
import pandas as pd
import pytest
from scipy.special import expit, logit

from glaciermap.segmentation.calibrate import (
    TAU_FEATURES,
    TAU_QUANTILE,
    apply_temperature,
    ece,
    ensemble_stats,
    fit_tau_model,
    fit_temperature,
    predict_tau,
    predict_tau_table,
    reliability_curve,
    tau_features,
    tau_model_from_dict,
    tau_model_to_dict,
)


def _overconfident(n, T0=2.5, seed=0):
    rng = np.random.default_rng(seed)
    q = expit(rng.normal(0.0, 1.5, n))           # true probabilities
    y = (rng.random(n) < q).astype(float)        # labels ~ Bernoulli(q)
    p = expit(T0 * logit(q))                     # over-confident model output
    return p, y


def test_apply_temperature_formula_and_clip():
    p = np.array([0.0, 0.2, 0.5, 0.9, 1.0, np.nan])
    out = apply_temperature(p, 2.0)
    pc = np.clip(p, 1e-6, 1 - 1e-6)
    np.testing.assert_allclose(out[:5], 1 / (1 + np.exp(-np.log(pc[:5] / (1 - pc[:5])) / 2.0)), rtol=1e-12)
    assert out[2] == 0.5 and np.isnan(out[5])
    assert 0 < out[0] < 1e-3 and 1 - 1e-3 < out[4] < 1   # saturated inputs stay finite, softened
    np.testing.assert_allclose(apply_temperature(p[:5], 1.0), pc[:5], rtol=1e-9)


def test_fit_temperature_recovers_known_temperature():
    p, y = _overconfident(100_000)
    T = fit_temperature(p, y, subsample=1)
    assert abs(T - 2.5) < 0.1
    before, after = ece(p, y), ece(apply_temperature(p, T), y)
    assert before > 0.08 and after < 0.02 and after < before / 5


def test_fit_temperature_default_subsample_and_bounds():
    p, y = _overconfident(500_000, seed=1)
    assert abs(fit_temperature(p, y) - 2.5) < 0.1      # every 10th pixel: 50k samples
    # An under-confident model needs T < 1; a model wanting T = 10 is held at the upper bound 5.
    pu, yu = _overconfident(100_000, T0=0.6, seed=2)
    assert abs(fit_temperature(pu, yu, subsample=1) - 0.6) < 0.05
    pe, ye = _overconfident(100_000, T0=10.0, seed=3)
    assert fit_temperature(pe, ye, subsample=1) == pytest.approx(5.0, abs=1e-3)
    # NaN pixels are dropped, not propagated.
    p2 = p.copy()
    p2[::7] = np.nan
    assert np.isfinite(fit_temperature(p2, y))


def test_ece_of_calibrated_data_is_near_zero():
    rng = np.random.default_rng(4)
    p = rng.random(400_000)
    y = (rng.random(p.size) < p).astype(float)
    assert ece(p, y) < 0.005


def test_ece_hand_computed():
    # 10 pixels at p = 0.9 (6 glacier): confidence 0.9, accuracy 0.6 -> gap 0.3, bin [0.9, 0.95)
    # 10 pixels at p = 0.3 (5 non-glacier): predicted 0, confidence 0.7, accuracy 0.5 -> gap 0.2, bin [0.7, 0.75)
    p = np.r_[np.full(10, 0.9), np.full(10, 0.3)]
    y = np.r_[np.ones(6), np.zeros(4), np.zeros(5), np.ones(5)]
    assert ece(p, y) == pytest.approx(0.5 * 0.3 + 0.5 * 0.2, abs=1e-12)
    rc = reliability_curve(p, y, n_bins=10)
    assert list(rc["count"]) == [0, 0, 0, 0, 10, 0, 0, 0, 10, 0]
    assert rc.loc[8, "confidence"] == pytest.approx(0.9) and rc.loc[8, "accuracy"] == pytest.approx(0.6)
    assert rc.loc[4, "confidence"] == pytest.approx(0.7) and rc.loc[4, "accuracy"] == pytest.approx(0.5)
    assert np.isnan(rc.loc[0, "accuracy"])
    # p = 1 and p = 0 fall into the last bin (confidence 1), p = 0.5 is predicted glacier in the first.
    rc2 = reliability_curve(np.array([1.0, 0.0, 0.5]), np.array([1, 0, 0]), n_bins=5)
    assert list(rc2["count"]) == [1, 0, 0, 0, 2]
    assert rc2.loc[0, "accuracy"] == 0.0 and rc2.loc[4, "accuracy"] == 1.0


def test_ensemble_stats():
    probs = np.array([[0.2, 1.0], [0.4, 1.0], [0.6, 1.0]])
    mu, sd = ensemble_stats(probs)
    np.testing.assert_allclose(mu, [0.4, 1.0])
    np.testing.assert_allclose(sd, [np.sqrt(((0.2) ** 2 + 0 + 0.2**2) / 3), 0.0])


def _area_bounds(mu, sigma, inside, tau, a_px_km2):
    e = glacier_area(mu, sigma, inside, a_px_km2 * 1e6, tau)
    return e.lb_km2, e.ub_km2


def _tau_star(mu, sigma, inside, area_ref, a_px_km2):
    return tau_star(mu, sigma, inside, a_px_km2 * 1e6, area_ref)


def test_tau_star_matches_brute_force_sweep():
    rng = np.random.default_rng(5)
    mu = rng.random((60, 60))
    sigma = rng.random((60, 60)) * 0.3
    inside = rng.random((60, 60)) < 0.8
    mu[0, :5] = np.nan                    # NaN pixels never pass a threshold
    a_px = 1e-4
    for area_ref in [0.05, 0.12, 0.2, 0.25, 0.3, 0.5]:
        taus = np.round(np.arange(0, 501) * 0.001, 3)
        ok = [t for t in taus if (lambda b: b[0] <= area_ref <= b[1])(_area_bounds(mu, sigma, inside, t, a_px))]
        expected = max(ok) if ok else np.nan
        got = _tau_star(mu, sigma, inside, area_ref, a_px)
        assert (np.isnan(got) and np.isnan(expected)) or got == expected
    # Larger than the whole buffer: no tau covers it.
    assert np.isnan(_tau_star(mu, sigma, inside, 1.0, a_px))


def test_tau_star_hand_values_on_threshold_edges():
    # sigma 0: A_lb = #(mu >= 1 - tau), A_ub = #(mu >= tau), '>=' on both sides.
    mu = np.array([1.0, 0.8, 0.3, 0.0])
    sigma = np.zeros(4)
    inside = np.ones(4, dtype=bool)
    assert _tau_star(mu, sigma, inside, 3.0, a_px_km2=1.0) == 0.3    # A_ub = 3 up to tau = 0.3 inclusive
    assert _tau_star(mu, sigma, inside, 1.0, a_px_km2=1.0) == 0.199  # at tau = 0.2 the 0.8 pixel joins A_lb
    assert _tau_star(mu, sigma, inside, 2.0, a_px_km2=1.0) == 0.5    # covered by every tau
    assert np.isnan(_tau_star(mu, sigma, inside, 0.5, a_px_km2=1.0))  # below A_lb(0) = 1
    assert _area_bounds(mu, sigma, inside, 0.25, a_px_km2=1.0) == (2.0, 3.0)


def test_tau_features_hand_values():
    mu = np.array([[1.0, 0.5], [0.0, 0.9]])
    sigma = np.array([[0.0, 0.2], [0.1, 0.3]])
    inside = np.array([[True, True], [True, False]])
    f = tau_features(0.002, mu, sigma, inside)
    assert set(f) == set(TAU_FEATURES)
    assert f["log_area"] == pytest.approx(np.log(0.01))                  # floor at 0.01 km2
    assert f["mean_mu"] == pytest.approx(0.5)
    assert f["rms_sigma"] == pytest.approx(np.sqrt((0 + 0.04 + 0.01) / 3))
    assert f["rms_bernoulli"] == pytest.approx(np.sqrt(0.25 / 3))
    assert tau_features(2.0, mu, sigma, inside)["log_area"] == pytest.approx(np.log(2.0))


def _linear_tau_data(n=3000, seed=6):
    rng = np.random.default_rng(seed)
    feats = pd.DataFrame({
        "log_area": rng.normal(0, 1.5, n),
        "mean_mu": rng.random(n),
        "rms_sigma": rng.random(n) * 0.3,
        "rms_bernoulli": rng.random(n) * 0.5,
    })
    beta = np.array([0.5, -1.0, 3.0, -2.0])
    z = -2.0 + feats.to_numpy() @ beta + rng.logistic(0, 0.7, n)
    z = np.clip(z, -6.5, 6.5)                  # stay inside the clip so z is recovered exactly
    tau = 0.5 * expit(z)
    return feats, tau, z, beta


def test_quantile_regression_recovers_0317_quantile():
    assert TAU_QUANTILE == pytest.approx(0.3173, abs=1e-4)
    feats, tau, z, beta = _linear_tau_data()
    tau_nan = tau.copy()
    tau_nan[:100] = np.nan                     # validation glaciers whose area no interval covers
    m = fit_tau_model(feats, tau_nan)
    assert m.n_fit == len(tau) - 100
    z_hat = m.predict_z(feats.iloc[100:])
    below = np.mean(z[100:] < z_hat - 1e-9)
    assert abs(below - TAU_QUANTILE) < 0.01
    np.testing.assert_allclose(m.coef, beta, atol=0.25)  # slopes of a homoscedastic model are the true ones
    # The same fraction of glaciers has its tau* below the predicted tau_hat (i.e. is not covered).
    t_hat = predict_tau(m, feats.iloc[100:])
    assert abs(np.mean(tau[100:] < t_hat * (1 - 1e-9)) - TAU_QUANTILE) < 0.01


def test_tau_predictions_in_open_interval_and_dict_round_trip():
    feats, tau, _, _ = _linear_tau_data(500, seed=7)
    m = fit_tau_model(feats, tau)
    extreme = pd.DataFrame({
        "log_area": [-4.6, 0.0, 5.0, np.nan],
        "mean_mu": [0.0, 0.5, 1.0, 0.5],
        "rms_sigma": [0.0, 0.1, 0.5, 0.1],
        "rms_bernoulli": [0.0, 0.3, 0.5, 0.3],
    })
    t = predict_tau(m, pd.concat([feats, extreme], ignore_index=True))
    finite = t[np.isfinite(t)]
    assert finite.size == len(feats) + 3 and np.isnan(t[-1])
    assert np.all((finite > 0) & (finite < 0.5))
    d = json.loads(json.dumps(tau_model_to_dict(m)))
    m2 = tau_model_from_dict(d)
    np.testing.assert_array_equal(predict_tau(m2, feats), predict_tau(m, feats))
    np.testing.assert_array_equal(predict_tau(d, feats), predict_tau(m, feats))
    assert d["features"] == list(TAU_FEATURES) and d["n_fit"] == 500


def test_predict_tau_table_keeps_ids_not_row_order():
    feats, tau, _, _ = _linear_tau_data(300, seed=8)
    d = tau_model_to_dict(fit_tau_model(feats, tau))
    df = feats.iloc[:20].assign(glac_id=[f"G{i:03d}" for i in range(20)])
    out = predict_tau_table(d, df)
    shuffled = predict_tau_table(d, df.sample(frac=1.0, random_state=0))
    a = out.set_index("glac_id")["tau_hat"]
    b = shuffled.set_index("glac_id")["tau_hat"]
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index())
    assert list(out["glac_id"]) == list(df["glac_id"]) and "tau_hat" not in df.columns
    with pytest.raises(KeyError):
        predict_tau_table(d, feats.iloc[:5])


def test_fit_tau_model_rejects_too_few_glaciers():
    feats, tau, _, _ = _linear_tau_data(50, seed=9)
    with pytest.raises(ValueError):
        fit_tau_model(feats.iloc[:4], tau[:4])
