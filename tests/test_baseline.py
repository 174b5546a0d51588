import numpy as np
import pytest

from glaciermap.area_change.baseline import (
    T1_VALUES,
    T2_VALUES,
    band_ratio_mask,
    confusion_grid,
    fit_glacierwise,
    fit_regional,
    glacierwise_table,
    grid_search,
    iou,
)


def _scene(rng, n_ice=2000, n_debris=300, n_rock=3000, ice_ratio=(2.5, 3.5), ice_blue=(2500, 3500),
           rock_ratio=(0.8, 1.2), rock_blue=(500, 3500), area=1.0):
    """Clean ice (ratio ~3, blue ~3000), rock (ratio ~1; some of it as bright in blue as ice) and
    debris (ratio ~1.1, labelled glacier)."""
    def part(n, ratio, blue):
        swir = rng.uniform(500, 1500, n)
        return rng.uniform(*ratio, n) * swir, swir, rng.uniform(*blue, n)

    parts = [part(n_ice, ice_ratio, ice_blue), part(n_debris, (1.0, 1.2), (500, 1500)), part(n_rock, rock_ratio, rock_blue)]
    red, swir, blue = (np.concatenate(x) for x in zip(*parts))
    label = np.r_[np.ones(n_ice + n_debris), np.zeros(n_rock)].astype(np.uint8)
    kind = np.r_[np.full(n_ice, "ice"), np.full(n_debris, "debris"), np.full(n_rock, "rock")]
    return {"red": red, "swir": swir, "blue": blue, "label": label, "kind": kind, "area": area}


def test_band_ratio_mask_rule():
    red = np.array([3000, 3000, 1000, 100, 3000, np.nan])
    swir = np.array([1000, 1000, 1000, 0, 1000, 1000])
    blue = np.array([3000, 100, 3000, 3000, 3000, 3000])
    m = band_ratio_mask(red, swir, blue, 2.0, 500)
    # ratio 3 & blue ok; blue too low; ratio 1; swir 0 -> divided by 1 (ratio 100); NaN -> never glacier
    assert list(m) == [True, False, False, True, True, False]
    assert band_ratio_mask(np.array([2000.0]), np.array([1000.0]), np.array([500.0]), 2.0, 500)[0]  # '>=' on both


def test_grid_search_separates_clean_ice():
    rng = np.random.default_rng(0)
    s = _scene(rng)
    g = grid_search([s])
    assert g.shape == (1, len(T1_VALUES), len(T2_VALUES)) == (1, 51, 61)
    t1, t2, best = fit_glacierwise(s)
    m = band_ratio_mask(s["red"], s["swir"], s["blue"], t1, t2)
    assert m[s["kind"] == "ice"].all() and not m[s["kind"] == "rock"].any()
    assert 1.2 <= t1 <= 2.5 and t2 <= 2500   # rock and debris ratios are < 1.2, ice >= 2.5
    # debris (label 1, ratio like rock) is missed: the best IoU is ice / (ice + debris)
    assert best == pytest.approx(2000 / 2300)
    assert iou(s, t1, t2) == pytest.approx(best)
    # and the thresholds are a clear optimum, not a flat landscape
    assert g[0].min() < 0.7 * best


def test_cumulative_histogram_counts_equal_brute_force_masks():
    rng = np.random.default_rng(1)
    n = 4000
    swir = rng.integers(0, 3000, n).astype(np.float64)
    red = rng.integers(0, 6000, n).astype(np.float64)
    blue = rng.integers(0, 1600, n).astype(np.float64)
    # values exactly on thresholds: ratio = 2.0, 0.5, 5.5, blue multiple of 25, swir = 0
    red[:200], swir[:200] = 2 * swir[:200], swir[:200]
    red[200:300] = 0.5 * swir[200:300]
    red[300:400] = 5.5 * swir[300:400]
    blue[:400] = 25 * rng.integers(0, 61, 400)
    swir[400:450] = 0
    red[450:470] = np.nan
    blue[470:490] = np.nan
    label = rng.random(n) < 0.4
    s = {"red": red, "swir": swir, "blue": blue, "label": label}
    tp, fp, fn = confusion_grid(s)
    for j in range(len(T1_VALUES)):
        for k in range(len(T2_VALUES)):
            m = band_ratio_mask(red, swir, blue, T1_VALUES[j], T2_VALUES[k])
            assert (tp[j, k], fp[j, k], fn[j, k]) == (
                np.count_nonzero(m & label), np.count_nonzero(m & ~label), np.count_nonzero(~m & label)), (j, k)
    # IoU from the grid equals IoU of the mask at random thresholds
    g = grid_search([s])[0]
    for j, k in zip(rng.integers(0, 51, 10), rng.integers(0, 61, 10)):
        assert g[j, k] == iou(s, T1_VALUES[j], T2_VALUES[k])


def test_custom_unsorted_grid_is_rejected_and_custom_grid_works():
    s = _scene(np.random.default_rng(2), 100, 10, 100)
    with pytest.raises(ValueError):
        confusion_grid(s, [2.0, 1.0], [0, 25])
    g = grid_search([s], [0.5, 2.0], [0.0, 2000.0, 4000.0])
    assert g.shape == (1, 2, 3)
    assert g[0, 1, 2] == 0.0                                 # blue >= 4000: nothing predicted


def test_regional_vs_glacierwise():
    rng = np.random.default_rng(3)
    # three glaciers under different scene conditions: no single pair suits all of them
    samples = [
        _scene(rng, ice_ratio=(2.5, 3.5), rock_ratio=(0.8, 1.2), area=5.0),
        _scene(rng, ice_ratio=(1.4, 1.8), ice_blue=(300, 600), rock_ratio=(0.8, 1.2), area=1.0),
        _scene(rng, ice_ratio=(3.8, 4.5), ice_blue=(1000, 2000), rock_ratio=(1.5, 2.4), area=0.5),
    ]
    t1, t2 = fit_regional(samples, [s["area"] for s in samples])
    t1b, t2b, score = fit_regional(samples, return_score=True)   # areas taken from the samples
    assert (t1, t2) == (t1b, t2b)
    regional = np.array([iou(s, t1, t2) for s in samples])
    assert score == pytest.approx(np.average(regional, weights=[5.0, 1.0, 0.5]))
    oracle = glacierwise_table({f"G{i}": s for i, s in enumerate(samples)})
    assert list(oracle.columns) == ["glac_id", "t1_oracle", "t2_oracle", "iou_oracle"]
    assert list(oracle["glac_id"]) == ["G0", "G1", "G2"]
    assert np.all(oracle["iou_oracle"].to_numpy() >= regional - 1e-12)
    assert np.any(oracle["iou_oracle"].to_numpy() > regional + 0.05)


def test_regional_weighting_by_area():
    rng = np.random.default_rng(4)
    # glacier A is only separable by blue (ice >= 1600, rock <= 1500), B only by the ratio (dark ice)
    a = _scene(rng, n_debris=0, ice_ratio=(1.05, 1.15), ice_blue=(1600, 2500), rock_blue=(500, 1500))
    b = _scene(rng, n_debris=0, ice_ratio=(2.5, 3.0), ice_blue=(300, 600))
    big_a = fit_regional({"A": a, "B": b}, {"A": 100.0, "B": 1.0})
    big_b = fit_regional({"A": a, "B": b}, {"A": 1.0, "B": 100.0})
    assert big_a != big_b
    assert iou(a, *big_a) > iou(a, *big_b) and iou(b, *big_b) > iou(b, *big_a)
    assert iou(a, *big_a) == pytest.approx(fit_glacierwise(a)[2])
    with pytest.raises(ValueError):
        fit_regional([a, b], [1.0])


def test_grid_search_is_fast_on_many_pixels():
    import time

    rng = np.random.default_rng(5)
    samples = [_scene(rng, 20_000, 2_000, 30_000) for _ in range(20)]   # ~1M pixels
    t0 = time.perf_counter()
    g = grid_search(samples)
    assert g.shape == (20, 51, 61)
    assert time.perf_counter() - t0 < 10.0   # 3111 masks per glacier would take minutes
