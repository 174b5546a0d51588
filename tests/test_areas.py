import numpy as np
import pandas as pd
import pytest

from glaciermap.area_change import areas

A_PX = 100.0  # m2 (10 m pixels)
K = A_PX / 1e6


def test_point_estimate_and_sigma_zero_bounds_collapse():
    rng = np.random.default_rng(0)
    mu = rng.uniform(0, 1, (40, 40))
    sigma = np.zeros_like(mu)
    buf = np.zeros(mu.shape, bool)
    buf[5:35, 5:35] = True
    mu[0, 0] = 1.0  # outside the buffer: never counted
    est = areas.glacier_area(mu, sigma, buf, A_PX, tau=0.5)
    n = np.count_nonzero((mu >= 0.5) & buf)
    assert est.area_km2 == pytest.approx(n * K)
    assert est.lb_km2 == est.ub_km2 == est.area_km2
    est0 = areas.glacier_area(mu, sigma, np.ones_like(buf), A_PX)
    assert est0.area_km2 > est.area_km2


def test_bounds_bracket_point_estimate_for_every_tau():
    rng = np.random.default_rng(1)
    mu = rng.beta(0.5, 0.5, (30, 30))
    sigma = rng.uniform(0, 0.3, mu.shape)
    buf = np.ones(mu.shape, bool)
    prev = None
    for tau in (0.0, 0.01, 0.1, 0.25, 0.4, 0.5):
        e = areas.glacier_area(mu, sigma, buf, A_PX, tau)
        assert e.lb_km2 <= e.area_km2 <= e.ub_km2
        if prev is not None:  # intervals shrink as tau grows
            assert e.lb_km2 >= prev.lb_km2 and e.ub_km2 <= prev.ub_km2
        prev = e
    assert areas.glacier_area(mu, sigma, buf, A_PX, 0.0).ub_km2 == pytest.approx(mu.size * K)
    with pytest.raises(ValueError):
        areas.glacier_area(mu, sigma, buf, A_PX, tau=0.6)


def test_nan_pixels_never_count():
    mu = np.array([1.0, np.nan, 0.9])
    sigma = np.array([0.0, 0.1, np.nan])
    e = areas.glacier_area(mu, sigma, np.ones(3, bool), A_PX, tau=0.2)
    assert e.area_km2 == pytest.approx(2 * K)
    assert e.lb_km2 == pytest.approx(1 * K) and e.ub_km2 == pytest.approx(1 * K)


def hand_case():
    # lo = mu - sigma, hi = mu + sigma (all exact binary fractions)
    #   p1: lo 1, hi 1 | p2: lo 0.625, hi 0.875 | p3: lo 0.25, hi 0.5 | p4: lo 0.0625, hi 0.1875
    # A_lb = 1 px for tau < 0.375, 2 px from 0.375;  A_ub = 4 px for tau <= 0.1875, 3 px above
    mu = np.array([1.0, 0.75, 0.375, 0.125, 1.0])
    sigma = np.array([0.0, 0.125, 0.125, 0.0625, 0.0])
    buf = np.array([True, True, True, True, False])  # the last pixel is another glacier's
    return mu, sigma, buf


@pytest.mark.parametrize("ref_px,expected", [(4, 0.187), (3, 0.5), (2, 0.5), (1, 0.374), (1.5, 0.374),
                                             (5, np.nan), (0.5, np.nan)])
def test_tau_star_hand_case(ref_px, expected):
    mu, sigma, buf = hand_case()
    got = areas.tau_star(mu, sigma, buf, A_PX, ref_px * K)
    if np.isnan(expected):
        assert np.isnan(got)
    else:
        assert got == expected


def test_tau_star_matches_brute_force():
    rng = np.random.default_rng(7)
    for trial in range(20):
        mu = rng.beta(0.7, 0.7, (15, 15))
        sigma = rng.uniform(0, 0.25, mu.shape)
        buf = rng.uniform(size=mu.shape) < 0.8
        ref = rng.integers(0, buf.sum() + 1) * K
        brute = [t for t in areas.TAU_GRID
                 if (lambda e: e.lb_km2 <= ref + 1e-12 and ref - 1e-12 <= e.ub_km2)(
                     areas.glacier_area(mu, sigma, buf, A_PX, t))]
        got = areas.tau_star(mu, sigma, buf, A_PX, ref)
        assert (np.isnan(got) and not brute) or got == pytest.approx(max(brute))
    assert len(areas.TAU_GRID) == 501 and areas.TAU_GRID[-1] == 0.5 and areas.TAU_GRID[3] == 0.003


def test_pixel_metrics_ignore_false_positives_outside_buffer50():
    ref = np.zeros((9, 9), bool)
    ref[3:6, 3:6] = True                       # 9 reference pixels
    buf = np.zeros_like(ref)
    buf[2:7, 2:7] = True                       # 25 evaluated pixels
    pred = ref.copy()
    pred[4, 4] = False                         # 1 FN
    pred[2, 2] = pred[2, 3] = True             # 2 FP inside the buffer
    m = areas.pixel_metrics(pred, ref, buf)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (8, 2, 1, 14)
    assert m["accuracy"] == pytest.approx(22 / 25)
    assert m["iou"] == pytest.approx(8 / 11)
    assert m["precision"] == pytest.approx(8 / 10)
    assert m["recall"] == pytest.approx(8 / 9)
    assert m["f1"] == pytest.approx(16 / 19)
    assert m["fpr"] == pytest.approx(2 / 16)
    far = pred.copy()
    far[0, :] = True                           # 9 more predicted pixels, all outside the buffer
    assert areas.pixel_metrics(far, ref, buf) == m
    # without the buffer rule those would count: the metric really depends on it
    assert areas.pixel_metrics(far, ref, np.ones_like(buf))["fp"] == 11


def test_pixel_metrics_empty_prediction():
    ref = np.zeros((4, 4), bool)
    ref[1:3, 1:3] = True
    m = areas.pixel_metrics(np.zeros_like(ref), ref, np.ones_like(ref))
    assert m["recall"] == 0 and m["iou"] == 0 and np.isnan(m["precision"])


@pytest.mark.parametrize("a,label", [(0.0999, "<0.1"), (0.1, "0.1-0.2"), (0.1999, "0.1-0.2"), (0.2, "0.2-0.5"),
                                     (0.5, "0.5-1"), (0.99, "0.5-1"), (1.0, "1-2"), (2.0, "2-5"), (5.0, "5-10"),
                                     (10.0, "10-20"), (19.99, "10-20"), (20.0, ">=20"), (300.0, ">=20")])
def test_size_class_edges(a, label):
    assert areas.size_class(a) == label


def test_size_class_array_and_nan():
    out = areas.size_class([0.05, 0.3, np.nan, 25])
    assert list(out) == ["<0.1", "0.2-0.5", None, ">=20"]


def test_bounds_coverage():
    ref = [1.0, 2.0, 3.0, 4.0, np.nan]
    lb = [0.5, 2.1, 2.0, 4.0, 0.0]
    ub = [1.5, 3.0, 3.0, 5.0, 9.0]
    assert areas.bounds_coverage(ref, lb, ub) == pytest.approx(0.75)   # edges inclusive, NaN row ignored


def test_glacier_record_on_constructed_grid():
    ref = np.zeros((10, 10), bool)
    ref[3:7, 3:7] = True                       # 16 px
    b20 = np.zeros_like(ref)
    b20[2:8, 2:8] = True                       # 36 px
    b50 = np.zeros_like(ref)
    b50[1:9, 1:9] = True                       # 64 px
    mu = np.where(ref, 0.9, 0.1)
    mu[3, 3] = 0.3                             # one missed reference pixel
    mu[2, 2] = 0.8                             # one false positive inside the 20 m buffer
    mu[0, 0] = 0.99                            # outside the 20 m buffer: not predicted at all
    sigma = np.full(mu.shape, 0.05)
    rec = areas.glacier_record(mu, sigma, ref, b20, b50, A_PX, tau=0.5)
    assert rec["area_ref_km2"] == pytest.approx(16 * K)
    assert rec["area_pred_km2"] == pytest.approx(16 * K)
    assert rec["tp_km2"] == pytest.approx(15 * K) and rec["fp_km2"] == pytest.approx(K)
    assert rec["fn_km2"] == pytest.approx(K) and rec["tn_km2"] == pytest.approx((64 - 17) * K)
    assert rec["recall"] == pytest.approx(15 / 16)


def records():
    return pd.DataFrame({
        "fold": [0, 0, 1, 1],
        "area_ref_km2": [0.15, 1.0, 1.0, 30.0],
        "area_pred_km2": [0.12, 1.04, 1.2, 29.0],
        "area_lb_km2": [0.10, 0.98, 1.1, 28.0],
        "area_ub_km2": [0.16, 1.10, 1.3, 31.0],
        "accuracy": [0.8, 0.9, 0.95, 0.99], "iou": [0.5, 0.7, 0.8, 0.9],
        "precision": [0.9, 0.9, 0.85, 0.97], "recall": [0.6, 0.8, 0.9, 0.92], "f1": [0.7, 0.85, 0.87, 0.94],
        "tp_km2": [0.1, 0.95, 0.98, 28.5], "fp_km2": [0.02, 0.09, 0.22, 0.5],
        "fn_km2": [0.05, 0.05, 0.02, 1.5], "tn_km2": [0.2, 0.5, 0.4, 5.0],
    })


def test_summarise_metrics():
    r = areas.summarise_metrics(records(), by="fold")
    seg = r["segmentation"].set_index("fold")
    assert list(seg.index) == ["0", "1", "All"]
    assert seg.loc["0", "iou_mean"] == pytest.approx(0.6)
    assert seg.loc["0", "iou_sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert seg.loc["All", "n"] == 4 and seg.loc["All", "f1_mean"] == pytest.approx(np.mean([0.7, 0.85, 0.87, 0.94]))

    sc = r["size_classes"].set_index("size_class")
    assert list(sc.index) == ["0.1-0.2", "1-2", ">=20", "All"]
    one = sc.loc["1-2"]
    assert one["n"] == 2 and one["area_ref_km2"] == pytest.approx(2.0) and one["area_pred_km2"] == pytest.approx(2.24)
    assert one["mean_abs_error_km2"] == pytest.approx(0.12)
    assert one["mape_pct"] == pytest.approx(12.0)
    assert one["mean_rel_error_pct"] == pytest.approx(12.0)
    assert one["within_gcos_pct"] == pytest.approx(50.0)   # 4 % passes, 20 % does not
    assert one["coverage_pct"] == pytest.approx(50.0)      # 1.0 in [0.98, 1.10]; 1.0 not in [1.1, 1.3]
    assert one["TPR_pct"] == pytest.approx(100 * 1.93 / 2.0)
    assert one["FPR_pct"] == pytest.approx(100 * 0.31 / (0.31 + 0.9))
    allr = sc.loc["All"]
    assert allr["n"] == 4 and allr["coverage_pct"] == pytest.approx(75.0)
    small = sc.loc["0.1-0.2"]
    assert small["mean_rel_error_pct"] == pytest.approx(-20.0)
    g = r["groups"].set_index("fold")
    assert g.loc["1", "within_gcos_pct"] == pytest.approx(50.0)  # 20 % fails, 3.3 % passes
