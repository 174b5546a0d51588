"""Figures: the data helpers on hand-built cases, and the PNGs of a tiny workflow run."""

import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from glaciermap.area_change import figures


def test_grid_rates_hand_built():
    # cell 2000 m; three glaciers in cell (0, 0), one in (1, 2), one with a NaN rate (ignored)
    x = [100.0, 1900.0, 1500.0, 4100.0, 300.0]
    y = [100.0, 1999.0, 50.0, 2500.0, 300.0]
    rate = [-0.01, -0.02, -0.03, -0.5, np.nan]
    area = [1.0, 1.0, 4.0, 10.0, 3.0]
    xe, ye, pct, count = figures.grid_rates(x, y, rate, area, 2000.0)
    assert xe.tolist() == [0.0, 2000.0, 4000.0, 6000.0] and ye.tolist() == [0.0, 2000.0, 4000.0]
    assert count.tolist() == [[3, 0, 0], [0, 0, 1]]
    assert pct[0, 0] == pytest.approx(100 * -0.06 / 6.0)
    assert pct[1, 2] == pytest.approx(100 * -0.5 / 10.0)
    assert np.isnan(pct[0, 1]) and np.isnan(pct[1, 0])
    # cells align to multiples of the cell size, also for negative coordinates
    xe2, ye2, _, _ = figures.grid_rates([-10.0], [4001.0], [-1.0], [1.0], 2000.0)
    assert xe2.tolist() == [-2000.0, 0.0] and ye2.tolist() == [4000.0, 6000.0]
    with pytest.raises(ValueError):
        figures.grid_rates(x, y, rate, area, 0)


def test_pool_reliability_is_count_weighted():
    recs = [
        {"calibration": "before", "bin_lo": 0.5, "bin_hi": 0.75, "confidence": 0.6, "accuracy": 0.5, "count": 10},
        {"calibration": "before", "bin_lo": 0.5, "bin_hi": 0.75, "confidence": 0.7, "accuracy": 1.0, "count": 30},
        {"calibration": "before", "bin_lo": 0.75, "bin_hi": 1.0, "confidence": None, "accuracy": None, "count": 0},
        {"calibration": "after", "bin_lo": 0.75, "bin_hi": 1.0, "confidence": 0.9, "accuracy": 0.9, "count": 5},
    ]
    p = figures.pool_reliability(recs).set_index(["calibration", "bin_lo"])
    assert p.loc[("before", 0.5), "count"] == 40
    assert p.loc[("before", 0.5), "confidence"] == pytest.approx((0.6 * 10 + 0.7 * 30) / 40)
    assert p.loc[("before", 0.5), "accuracy"] == pytest.approx((0.5 * 10 + 1.0 * 30) / 40)
    assert p.loc[("before", 0.75), "count"] == 0 and np.isnan(p.loc[("before", 0.75), "accuracy"])
    pooled = p.reset_index()
    assert figures.ece_from_bins(pooled, "before") == pytest.approx(abs(0.875 - 0.675))
    assert figures.ece_from_bins(pooled, "after") == pytest.approx(0.0)


def test_rates_by_size_class_and_stretch():
    rates = pd.DataFrame({"glac_id": list("abcde"), "area_km2": [0.15, 0.18, 3.0, 0.05, 1.5],
                          "rate_pct_yr": [-1.0, -2.0, -0.5, -3.0, np.nan], "kept": [True, False, True, False, True]})
    d = figures.rates_by_size_class(rates)
    assert list(d) == ["<0.1", "0.1-0.2", "2-5"]
    assert sorted(d["0.1-0.2"][0].tolist()) == [-2.0, -1.0] and d["0.1-0.2"][1].tolist() == [-1.0]
    assert d["2-5"][1].tolist() == [-0.5] and d["<0.1"][1].size == 0
    s = figures.stretch(np.dstack([np.linspace(0, 1, 100).reshape(10, 10)] * 3))
    assert s.min() == 0.0 and s.max() == 1.0 and s.shape == (10, 10, 3)
    assert figures.stretch(np.full((2, 2, 3), np.nan)).sum() == 0


def test_largest_glaciers():
    m = pd.DataFrame({"glac_id": ["a", "b", "c", "d"], "area_km2": [1.0, 5.0, 3.0, 5.0]})
    assert figures.largest_glaciers(m, ["a", "b", "c", "d"], 3) == ["b", "d", "c"]
    assert figures.largest_glaciers(m, ["a", "c"], 5) == ["c", "a"]


def test_reliability_figure_from_calibration_files(tmp_path):
    recs = [{"calibration": c, "bin_lo": lo, "bin_hi": lo + 0.1, "confidence": lo + 0.05, "accuracy": acc, "count": 100}
            for c, acc0 in (("before", 0.6), ("after", 0.0)) for lo, acc in zip(np.arange(0.5, 1.0, 0.1),
                                                                                np.arange(0.55, 1.0, 0.1) + acc0 * 0)]
    for k in (0, 1):
        (tmp_path / f"c{k}.json").write_text(json.dumps({"fold": k, "reliability": recs}))
    out = tmp_path / "rel.png"
    pooled = figures.reliability_figure([tmp_path / "c0.json", tmp_path / "c1.json"], out, dpi=50)
    assert (pooled["count"] == 200).all()
    img = mpimg.imread(out)
    assert img.shape[:2] == (250, 350)
    (tmp_path / "old.json").write_text(json.dumps({"fold": 0}))
    with pytest.raises(ValueError, match="reliability"):
        figures.reliability_figure([tmp_path / "old.json"], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


@pytest.fixture(scope="module")
def figure_dir(model_run):
    work, proc = model_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work


def test_workflow_figures_decode_with_expected_size(figure_dir):
    import yaml

    work = figure_dir
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    r = work / "results/tiny/area_change/dl4gam/figures"
    for name in ("reliability", "rates_by_size_class", "rate_map"):
        img = mpimg.imread(r / f"{name}.png")
        assert img.shape[:2] == (500, 700), name
        assert img[..., :3].std() > 0.01, name  # not a blank canvas
    panels = sorted((r / "glaciers").glob("*.png"))
    n_epochs = len(cfg["epochs"])
    manifest = pd.read_csv(work / "results/tiny/inventory/manifest.csv", dtype={"glac_id": str})
    mapped = manifest[manifest["qc_status"] == "ok"]
    expected = figures.largest_glaciers(mapped, mapped["glac_id"], 6)
    assert sorted(p.stem for p in panels) == sorted(expected)
    for p in panels:
        img = mpimg.imread(p)
        assert img.shape[:2] == (300 * n_epochs, 1280), p.name
        # the predicted outline is drawn in pure red somewhere
        rgb = img[..., :3]
        assert ((rgb[..., 0] > 0.9) & (rgb[..., 1] < 0.1) & (rgb[..., 2] < 0.1)).any(), p.name


def test_workflow_rate_map_values(figure_dir):
    import geopandas as gpd

    r = figure_dir / "results/tiny/area_change/dl4gam/rates"
    g = gpd.read_file(r / "glacier_rates.gpkg")
    g = g.to_crs(g.estimate_utm_crs())
    cen = g.geometry.centroid
    xe, ye, pct, count = figures.grid_rates(cen.x, cen.y, g["reg_rate_km2_yr"].astype(float),
                                            g["reg_area_t0_km2"].astype(float), 2000.0)
    ok = np.isfinite(g["reg_rate_km2_yr"].astype(float)) & np.isfinite(g["reg_area_t0_km2"].astype(float))
    assert count.sum() == ok.sum() > 0
    # the area-weighted mean of the cells equals the regional rate of the glaciers gridded
    tot = 100 * g.loc[ok, "reg_rate_km2_yr"].astype(float).sum() / g.loc[ok, "reg_area_t0_km2"].astype(float).sum()
    s_area = np.zeros_like(pct)
    ix = np.floor((cen.x[ok] - xe[0]) / 2000).astype(int)
    iy = np.floor((cen.y[ok] - ye[0]) / 2000).astype(int)
    np.add.at(s_area, (iy, ix), g.loc[ok, "reg_area_t0_km2"].astype(float))
    assert np.nansum(pct * s_area) / s_area.sum() == pytest.approx(tot)


def test_panel_of_a_skipped_glacier_says_why(figure_dir, tmp_path):
    import geopandas as gpd

    from glaciermap.io import skip_dataset, write_netcdf_atomic

    r = figure_dir / "results/tiny"
    g = sorted(p.stem for p in r.glob("predictions/dl4gam/fold*/inventory/*.nc"))[0]
    skip = tmp_path / "skip.nc"
    write_netcdf_atomic(skip, skip_dataset(g, "2023", f"glacier {g}: all candidates clouded", "select"))
    o = gpd.read_file(r / "area_change/dl4gam/outlines/predicted_outlines.gpkg")
    out = tmp_path / "panel.png"
    figures.glacier_panel(g, ["inventory", "2023"], [r / f"cubes/{g}/inventory.nc", skip],
                          [next(r.glob(f"predictions/dl4gam/fold*/inventory/{g}.nc")), skip], [1.0, 1.0], o, out, dpi=50)
    img = mpimg.imread(out)
    assert img.shape[:2] == (300, 640)
