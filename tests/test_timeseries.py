"""The glacier area time series (glaciermap.timeseries): filters, smoothing in days, areas and bounds, trends, and the
workflow on the tiny region (acquisitions, a small ensemble per fold, maps, series, trends, summary, incremental)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from shapely.geometry import box, mapping

from conftest import planned_jobs, run_snakemake, tiny_workdir
from glaciermap.timeseries.acquisitions import domain_layers, in_season
from glaciermap.timeseries.series import glacier_series, smooth
from glaciermap.timeseries.summary import truth_annual
from glaciermap.timeseries.train import channel_stack, fit_stats, normalise
from glaciermap.timeseries.trends import geometric_mean_trend, glacier_trend, mean_of_slopes

SEASON = {"north": [5, 10], "south": [11, 4]}


# ---------------------------------------------------------------------------------------------------- filters


def test_summer_months_by_hemisphere_wrap_the_year_end_in_the_south():
    assert in_season(7, 46.0, SEASON) and in_season(10, 46.0, SEASON)
    assert not in_season(4, 46.0, SEASON) and not in_season(11, 46.0, SEASON)
    assert in_season(12, -45.0, SEASON) and in_season(1, -45.0, SEASON) and in_season(4, -45.0, SEASON)
    assert not in_season(7, -45.0, SEASON) and not in_season(5, -45.0, SEASON)


def test_domain_is_the_glaciers_voronoi_cell_within_its_reach():
    from glaciermap.data.grid import CubeGrid

    gl = gpd.GeoDataFrame({"glac_id": ["A", "B"]}, geometry=[box(0, 0, 300, 300), box(600, 0, 900, 300)],
                          crs="EPSG:32632")
    grid = CubeGrid("EPSG:32632", -600, -600, 1500, 900, 30.0)
    lay = domain_layers(gl, "A", grid, domain_m=400.0)
    x, y = grid.coords()
    X, Y = np.meshgrid(x, y)
    assert lay["outline"].sum() == 100                        # 300 m x 300 m at 30 m
    assert not (lay["domain"] & (X > 450)).any()              # past the midline between A and B: B's
    assert lay["domain"][(X > 300) & (X < 450) & (Y > 0) & (Y < 300)].all()   # between them, nearer to A
    assert not (lay["domain"] & (X < -400)).any()             # beyond the 400 m reach
    assert lay["domain"][lay["outline"]].all()
    assert lay["owner_ids"][lay["owner"][(Y > 0) & (Y < 300) & (X > 650) & (X < 850)][0]] == "B"


# ---------------------------------------------------------------------------------------------------- channels


def test_indices_come_from_physical_reflectance_and_masked_pixels_stay_unknown():
    T, H, W = 2, 3, 4
    rng = np.random.default_rng(0)
    bands = {b: rng.uniform(0.05, 0.9, (T, H, W)).astype(np.float32) for b in ("green", "nir", "swir1")}
    valid = np.ones((T, H, W), bool)
    valid[1, 0, 0] = False
    st = {"bands": bands, "valid": valid, "dem": np.full((H, W), 2500.0, np.float32), "times": pd.DatetimeIndex(
        ["2000-08-01", "2001-08-01"])}
    x = channel_stack(st, ["green", "dem", "ndsi", "ndwi"])
    g, s, n = bands["green"], bands["swir1"], bands["nir"]
    np.testing.assert_allclose(x[0, 2], ((g - s) / (g + s))[0], rtol=1e-6)
    np.testing.assert_allclose(x[0, 3], ((g - n) / (g + n))[0], rtol=1e-6)
    assert np.isnan(x[1, :, 0, 0]).all() and np.isfinite(x[0, :, 0, 0]).all()
    # one standardisation for every image (fitted on the observed pixels); the unknown pixel becomes the mean
    stats = fit_stats([x], ["green", "dem", "ndsi", "ndwi"])
    z = normalise(x, stats)
    assert (z[1, :, 0, 0] == 0).all()
    assert abs(float(z[:, 0][valid].mean())) < 1e-5
    with pytest.raises(KeyError, match="not a band"):
        channel_stack(st, ["ndvi"])


# ---------------------------------------------------------------------------------------------------- smoothing


def test_smoothing_kernel_is_in_days_and_skips_masked_observations():
    days = np.array([0.0, 10.0, 20.0, 1000.0])
    v = np.array([0.0, 1.0, 0.0, 1.0]).reshape(4, 1, 1)
    obs = np.ones((4, 1, 1), bool)
    s = smooth(v, obs, days, sigma_days=10.0)
    w = np.exp(-0.5 * (np.array([0.0, 10.0, 20.0]) / 10.0) ** 2)
    assert s[0, 0, 0] == pytest.approx((w @ [0.0, 1.0, 0.0]) / w.sum(), rel=1e-6)
    assert s[3, 0, 0] == pytest.approx(1.0)          # 980 days away from the others: beyond 3 sigma
    # a masked observation (its value garbage) has no say
    obs2 = obs.copy()
    obs2[1] = False
    v2 = v.copy()
    v2[1] = 99.0
    assert smooth(v2, obs2, days, sigma_days=10.0)[1, 0, 0] == pytest.approx(0.0)   # its neighbours at +-10 days
    assert smooth(v2, obs, days, sigma_days=10.0)[1, 0, 0] > 10                     # had it counted
    # no smoothing keeps each acquisition's own value; a pixel unobserved within the kernel takes the nearest
    np.testing.assert_array_equal(smooth(v, obs, days, sigma_days=0.0), v.astype(np.float32))
    obs3 = obs.copy()
    obs3[3] = False
    filled = smooth(v, obs3, days, sigma_days=10.0, gap_fill="nearest")[3, 0, 0]
    assert filled == pytest.approx(0.0)              # the 20-day observation is the nearest
    assert np.isnan(smooth(v, obs3, days, sigma_days=10.0, gap_fill="none")[3, 0, 0])


def _write_maps(path, mu, sigma, tau, times, domain, res=30.0):
    ds = xr.Dataset({"mu": (("time", "y", "x"), mu.astype(np.float32)),
                     "sigma": (("time", "y", "x"), sigma.astype(np.float32)),
                     "tau": (("time",), np.asarray(tau, float)), "domain": (("y", "x"), domain.astype(np.uint8)),
                     "outline": (("y", "x"), domain.astype(np.uint8))},
                    coords={"time": pd.DatetimeIndex(times), "acquisition": ("time", [f"a{i}" for i in range(len(times))]),
                            "y": 5e6 - res * np.arange(mu.shape[1]), "x": 4e5 + res * np.arange(mu.shape[2])},
                    attrs={"glacier_id": "G1", "crs": "EPSG:32632", "resolution": res,
                           "transform": json.dumps([res, 0, 4e5 - res / 2, 0, -res, 5e6 + res / 2])})
    ds.to_netcdf(path, engine="h5netcdf")


def test_areas_count_pixels_in_the_domain_and_annual_bounds_bracket_the_area(tmp_path):
    rng = np.random.default_rng(1)
    T, H, W = 4, 10, 10
    mu = rng.uniform(0, 1, (T, H, W))
    sigma = rng.uniform(0, 0.2, (T, H, W))
    mu[2, :5] = np.nan                                # half the glacier clouded on the third date
    domain = np.zeros((H, W), bool)
    domain[1:9, 1:9] = True
    times = ["2000-07-15", "2000-09-01", "2004-08-01", "2008-08-01"]
    _write_maps(tmp_path / "G1.nc", mu, np.where(np.isnan(mu), np.nan, sigma), [0.3, 0.3, 0.4, 0.2], times, domain)
    ser, ann, meta = glacier_series(tmp_path / "G1.nc", {"sigma_days": 0.0, "truncate": 3.0, "gap_fill": "none"})
    a_px = 900 / 1e6
    # no smoothing: each acquisition's own pixels; the clouded half is unknown, not ice and not "no ice"
    assert ser.loc[0, "area_km2"] == pytest.approx(((mu[0] >= 0.5) & domain).sum() * a_px)
    assert ser.loc[2, "unobserved_share"] == pytest.approx((np.isnan(mu[2]) & domain).sum() / domain.sum())
    assert ser.loc[2, "area_km2"] == pytest.approx(((np.nan_to_num(mu[2]) >= 0.5) & domain).sum() * a_px)
    # each acquisition's own map: the same where it saw everything; its clouded half filled from another date
    assert ser.loc[0, "area_own_km2"] == pytest.approx(ser.loc[0, "area_km2"])
    filled = np.where(np.isnan(mu[2]), mu[1], mu[2])     # 2004-08-01: nearest are 2000-09-01 and 2008-08-01 (equal)
    alt = np.where(np.isnan(mu[2]), mu[3], mu[2])
    assert ser.loc[2, "area_own_km2"] in (pytest.approx(((filled >= 0.5) & domain).sum() * a_px),
                                          pytest.approx(((alt >= 0.5) & domain).sum() * a_px))
    # one year, two acquisitions: the pixel-wise mean, the mean tau
    y2000 = ann[ann.year == 2000].iloc[0]
    assert y2000["n_acquisitions"] == 2 and y2000["tau"] == pytest.approx(0.3)
    assert y2000["area_km2"] == pytest.approx(((mu[:2].mean(0) >= 0.5) & domain).sum() * a_px)
    assert (ann["area_lb_km2"] <= ann["area_km2"]).all() and (ann["area_km2"] <= ann["area_ub_km2"]).all()
    assert ann["area_lb_km2"].lt(ann["area_ub_km2"]).all()
    assert set(meta["masks"]) == {2000, 2004, 2008}
    assert meta["masks"][2004].sum() * a_px == pytest.approx(float(ann.loc[ann.year == 2004, "area_km2"].iloc[0]))


# ---------------------------------------------------------------------------------------------------- trends


def test_glacier_trend_recovers_a_log_linear_rate_and_says_why_there_is_none():
    t = np.arange(1985, 2025, 3.0)
    a = 2.0 * np.exp(-0.0123 * (t - 1985)) * np.exp(np.random.default_rng(0).normal(0, 0.01, t.size))
    tr = glacier_trend(t, a, 5)
    assert tr["trend_pct_per_year"] == pytest.approx(-1.23, abs=0.05)
    assert 0 < tr["trend_se_pct_per_year"] < 0.05 and tr["n_years"] == t.size and tr["reason"] == ""
    assert np.isnan(glacier_trend(t[:4], a[:4], 5)["trend_pct_per_year"])
    assert "fewer than min_years" in glacier_trend(t[:4], a[:4], 5)["reason"]
    a0 = a.copy()
    a0[3] = 0.0
    assert "zero area" in glacier_trend(t, a0, 5)["reason"]


def test_regional_trends_weighted_slopes_and_a_true_geometric_mean():
    tr = pd.DataFrame({"trend_pct_per_year": [-1.0, -3.0, np.nan], "trend_se_pct_per_year": [0.2, 0.4, np.nan],
                       "n_years": [10, 30, 2]})
    m = mean_of_slopes(tr)
    assert m["trend_pct_per_year"] == pytest.approx((10 * -1 + 30 * -3) / 40)
    assert m["se"] == pytest.approx(np.sqrt(10**2 * 0.2**2 + 30**2 * 0.4**2) / 40) and m["n_glaciers"] == 2
    # a large glacier at -1 %/yr and a small one at -3 %/yr observed every year: the log of the geometric mean falls
    # by the mean of the two rates, -2 %/yr; the arithmetic mean of the areas would follow the large glacier
    years = np.arange(1990, 2021, 5)
    rows = [{"glacier_id": g, "year": y, "decimal_year": y + 0.6, "area_km2": a0 * np.exp(r * (y - 1990))}
            for g, a0, r in (("big", 10.0, -0.01), ("small", 0.5, -0.03)) for y in years]
    gm = geometric_mean_trend(pd.DataFrame(rows))
    assert gm["trend_pct_per_year"] == pytest.approx(-2.0, abs=1e-9)
    arith = pd.DataFrame(rows).groupby("year")["area_km2"].mean()
    assert np.polyfit(years, np.log(arith.to_numpy()), 1)[0] * 100 > -1.2   # what the public code's mean gives


def test_truth_annual_area_is_the_mean_of_the_years_dates(tmp_path):
    (tmp_path / "t.csv").write_text("glac_id,date,area_km2\nG1,2000-08-01,1.0\nG1,2000-09-01,0.8\nG1,2004-08-01,0.7\n")
    a = pd.DataFrame({"glacier_id": ["G1", "G1", "G1"], "year": [2000, 2004, 2008]})
    t = truth_annual(tmp_path / "t.csv", a)
    assert t["true_area_km2"].iloc[0] == pytest.approx(0.9) and t["true_area_km2"].iloc[1] == pytest.approx(0.7)
    assert np.isnan(t["true_area_km2"].iloc[2])


# ---------------------------------------------------------------------------------------------------- the workflow

TS_TARGET = "results/tiny/timeseries/landsat_unet/summary.json"


@pytest.fixture(scope="module")
def ts_run(tiny_region, tmp_path_factory):
    """The time series alone on the tiny region (2 folds, a 2-member ensemble, 2 epochs): (workdir, process)."""
    work = tmp_path_factory.mktemp("ts_wf")
    cfg = tiny_workdir(tiny_region, work)
    cfg.update({
        "split": {"n_folds": 2, "val_fraction": 0.3},
        "train": {"patch_size": 32, "stride": 16, "val_stride": 32},
        # the tiny region's 5 Landsat scenes (1986-2023, one a year, 3 of them 50-70 % cloudy): every one kept
        # whatever its cloud cover, and a glacier acquisition from 5 % of its domain observed (the rest is filled from
        # the nearest observation in time), so that most glaciers get 3 years or more; trends from 3 years
        # and its Sentinel-2 L2A scenes of 2015 and 2023 (no thermal band: left unobserved)
        "timeseries": {**cfg["timeseries"], "sources": ["landsat", "s2"], "max_scene_cloud": 100, "min_years": 3,
                       "min_valid_share": 0.05,
                       "compare_dl4gam": False,
                       "model": {"members": 2, "epochs": 2, "patch_size": 32},
                       "truth": str(tiny_region / "truth" / "areas_timeseries.csv")},
    })
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(work, TS_TARGET, timeout=1200)
    return work, proc


@pytest.mark.slow
def test_time_series_workflow_products(ts_run):
    work, proc = ts_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    R = work / "results/tiny/timeseries"
    s = json.loads((R / "landsat_unet/summary.json").read_text())
    acq = pd.concat([pd.read_csv(p) for p in sorted((R / "acquisitions").glob("*.csv"))])
    n_glaciers = len(list((R / "acquisitions").glob("*.nc")))
    assert s["n_acquisitions_used"] == int((acq.status == "used").sum()) > 0
    assert sum(s["n_acquisitions_rejected"].values()) == int((acq.status == "rejected").sum())
    assert set(acq.loc[acq.status == "rejected", "reason"]) <= {"season", "scene_cloud", "unreadable", "valid_share"}
    assert (acq.loc[acq.status == "used", "valid_share"] >= 0.05).all()
    assert set(acq.loc[acq.status == "used", "source"]) == {"landsat", "s2"}
    assert (acq.loc[acq.reason == "valid_share", "valid_share"] < 0.05).all()
    for ds_path in sorted((R / "acquisitions").glob("*.nc")):
        with xr.open_dataset(ds_path) as ds:
            assert dict(ds.sizes)["time"] == int(((acq.glacier_id == ds.attrs["glacier_id"]) & (acq.status == "used")).sum())
            assert ds["domain"].values[ds["outline"].values.astype(bool)].all()
            s2 = ds["source"].values == "s2"
            assert np.isnan(ds["thermal"].values[s2]).all() and not np.isnan(ds["thermal"].values[~s2]).all()
            assert np.isfinite(ds["red"].values[s2][ds["valid"].values[s2].astype(bool)]).all()
    ann = pd.read_csv(R / "landsat_unet/annual_areas.csv")
    assert ann["glacier_id"].nunique() == s["n_glaciers"] == n_glaciers
    assert ((ann.area_lb_km2 <= ann.area_km2) & (ann.area_km2 <= ann.area_ub_km2)).all()
    out = gpd.read_file(R / "landsat_unet/annual_outlines.gpkg")
    assert len(out) == len(ann) and out.crs.is_projected
    both = out.merge(ann, on=["glacier_id", "year"], suffixes=("", "_csv"))
    ok = both.geometry.notna()
    np.testing.assert_allclose(both.geometry[ok].area / 1e6, both.loc[ok, "area_km2_csv"], rtol=1e-6, atol=1e-9)
    tr = pd.read_csv(R / "landsat_unet/trends.csv")
    assert s["n_glaciers_with_trend"] == int(tr.trend_pct_per_year.notna().sum())
    assert all(isinstance(s["regional_trend_pct_per_year"][k], float) for k in ("mean_of_slopes", "geometric_mean"))
    assert 0.0 <= s["annual_bound_coverage"] <= 1.0 and s["n_trends_scored"] >= 1
    assert isinstance(s["truth_regional_trend_pct_per_year"]["geometric_mean"], float)
    ser = pd.read_csv(R / "landsat_unet/acquisition_areas.csv")
    assert set(ser["source"]) == {"landsat", "s2"} and s["sensor_agreement"]["reference"] == "landsat"
    per = ser.groupby(["glacier_id", "year", "source"])["area_own_km2"].mean().unstack("source").dropna()
    assert s["sensor_agreement"]["s2"]["n_pairs"] == int((per["landsat"] > 0).sum()) > 0   # relative to Landsat
    for k in range(2):
        cal = json.loads((R / f"landsat_unet/models/fold{k}/calibration.json").read_text())
        assert len(cal["temperatures"]) == 2 and 0 < cal["tau_model"]["quantile"] < 1


def _landsat_items(catalog: Path) -> dict:
    return {p.stem: p for p in (catalog / "landsat-c2-l2").glob("*/*.json")}


def _add_landsat_scene(catalog: Path, template_id: str, new_id: str, when: datetime, bbox_ll) -> None:
    coll = catalog / "landsat-c2-l2"
    item = json.loads(_landsat_items(catalog)[template_id].read_text())
    item["id"] = new_id
    item["properties"]["datetime"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    item["bbox"] = list(bbox_ll)
    item["geometry"] = mapping(box(*bbox_ll))
    for a in item["assets"].values():   # the template's files, from the new item's folder
        if not a["href"].startswith(("/", "http")):
            a["href"] = str((_landsat_items(catalog)[template_id].parent / a["href"]).resolve())
    (coll / new_id).mkdir()
    (coll / new_id / f"{new_id}.json").write_text(json.dumps(item, indent=1))
    c = json.loads((coll / "collection.json").read_text())
    c["links"].append({"rel": "item", "href": f"./{new_id}/{new_id}.json", "type": "application/geo+json"})
    (coll / "collection.json").write_text(json.dumps(c, indent=1))


@pytest.mark.slow
def test_new_landsat_scene_remaps_only_the_glaciers_it_covers_and_retrains_nothing(ts_run, tmp_path):
    from glaciermap.config import validate_config
    from glaciermap.data.inventory import glacier_list
    from glaciermap.timeseries.acquisitions import _bbox_lonlat

    work, proc = ts_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert planned_jobs(run_snakemake(work, TS_TARGET, "-n")) == set()
    cfg = validate_config(yaml.safe_load((work / "config.yaml").read_text()))
    gl = glacier_list(cfg)
    gl = gl[gl.qc_status == "ok"]
    boxes = {r.glac_id: _bbox_lonlat(r._asdict(), r.crs, cfg["timeseries"]) for r in gl.itertuples()}
    gid, bb = None, None
    for g, (x0, y0, x1, y1) in boxes.items():   # a spot in one glacier's window only
        for fx in (0.02, 0.5, 0.98):
            for fy in (0.02, 0.5, 0.98):
                cx, cy = x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)
                cand = box(cx - 1e-4, cy - 1e-4, cx + 1e-4, cy + 1e-4)
                if gid is None and not any(box(*b).intersects(cand) for o, b in boxes.items() if o != g):
                    gid, bb = g, cand.bounds
    assert gid is not None
    split = pd.read_csv(work / "results/tiny/split/split.csv", comment="#", dtype={"glac_id": str})
    fold = next(int(c.split("_")[1]) for c in split.columns
                if c.startswith("role_") and split.loc[split.glac_id == gid, c].item() == "test")
    catalog = work / "inputs/catalog"
    backup = tmp_path / "catalog"
    shutil.copytree(catalog, backup)
    try:
        template = sorted(_landsat_items(catalog))[-1]
        _add_landsat_scene(catalog, template, "LC09_L2SP_195028_20240820_20240821_02_T1", datetime(2024, 8, 20, 10, 7),
                           bb)
        jobs = planned_jobs(run_snakemake(work, TS_TARGET, "-n"))
    finally:
        shutil.rmtree(catalog)
        shutil.copytree(backup, catalog)
    expected = {("ts_acquisitions", f"glacier={gid}"), ("ts_maps", f"fold={fold}"), ("ts_series", f"fold={fold}"),
                ("ts_trends", ""), ("ts_summary", "")}
    assert jobs == expected, (sorted(jobs - expected), sorted(expected - jobs))


# ---------------------------------------------------------------------------------------------------- maps cache


def _write_stack(path, n_times, rng, H=20, W=24):
    """A glacier's acquisitions; the first k of n_times are the same whatever n_times (drawn for 6, then cut)."""
    bands = ["blue", "green", "red", "nir", "swir1", "swir2", "thermal"]
    times = pd.date_range("2000-08-01", periods=6, freq="365D")[:n_times]
    valid = (rng.uniform(size=(6, H, W)) > 0.1)[:n_times]
    data = {b: (("time", "y", "x"), np.where(valid, rng.uniform(0.05, 0.9, (6, H, W))[:n_times], np.nan).astype(np.float32))
            for b in bands}
    data["thermal"] = (("time", "y", "x"), np.where(valid, rng.uniform(265, 285, (6, H, W))[:n_times], np.nan).astype(np.float32))
    dom = np.zeros((H, W), np.uint8)
    dom[3:17, 4:20] = 1
    data.update({"valid": (("time", "y", "x"), valid.astype(np.uint8)), "dem": (("y", "x"), rng.uniform(2000, 3000, (H, W)).astype(np.float32)),
                 "domain": (("y", "x"), dom), "outline": (("y", "x"), dom), "owner": (("y", "x"), np.zeros((H, W), np.int32))})
    ds = xr.Dataset(data, coords={"time": times, "acquisition": ("time", [f"L:{t:%Y%m%d}" for t in times]),
                                  "y": 5e6 - 30 * np.arange(H), "x": 4e5 + 30 * np.arange(W)},
                    attrs={"glacier_id": "G1", "crs": "EPSG:32632", "resolution": 30.0, "latitude": 46.0,
                           "owner_ids": json.dumps(["G1"]), "bands": json.dumps(bands),
                           "transform": json.dumps([30.0, 0, 4e5 - 15, 0, -30.0, 5e6 + 15]), "domain_m": 300.0})
    ds.to_netcdf(path, engine="h5netcdf")


def test_maps_cache_maps_only_new_acquisitions_and_gives_the_same_maps(tmp_path, one_torch_thread, caplog):
    import logging

    import torch

    from glaciermap.segmentation.calibrate import TAU_FEATURES, tau_model_to_dict, TauModel
    from glaciermap.timeseries.maps import run_ts_maps
    from glaciermap.timeseries.train import build, read_stack

    rng = np.random.default_rng(3)
    _write_stack(tmp_path / "G1.nc", 3, rng)
    channels = ["blue", "green", "red", "nir", "swir1", "swir2", "thermal", "dem", "ndsi", "ndwi"]
    settings = {"arch": "Unet", "encoder": "resnet18", "model_kwargs": {"encoder_depth": 3, "decoder_channels": [16, 8, 8]}}
    st = read_stack(tmp_path / "G1.nc")
    stats = fit_stats([channel_stack(st, channels)], channels)
    members = []
    for m in range(2):
        p = tmp_path / f"member{m}.pt"
        torch.save({"state_dict": build(settings, len(channels), m).state_dict(), "stats": stats, "channels": channels,
                    "settings": settings}, p)
        members.append(p)
    cal = tmp_path / "calibration.json"
    cal.write_text(json.dumps({"temperatures": [1.0, 1.3], "tau_model": tau_model_to_dict(
        TauModel(coef=[0.0] * len(TAU_FEATURES), intercept=-0.5))}))
    cache = tmp_path / "cache"

    def run(out, cache_dir):
        with caplog.at_level(logging.INFO, logger="glaciermap.timeseries.maps"):
            r = run_ts_maps(["G1"], [tmp_path / "G1.nc"], members, cal, {}, tmp_path / out, cache_dir=cache_dir)
        with xr.open_dataset(tmp_path / out / "G1.nc") as ds:
            return r, ds.load()

    r1, a = run("m1", cache)
    assert r1["mapped"] == 3 and len(list((cache / "G1").glob("*.npz"))) == 3
    r2, b = run("m2", cache)
    assert r2["mapped"] == 0                                   # nothing new: all read back
    xr.testing.assert_identical(a, b)
    # a new (fourth) acquisition: only it is mapped; the first three are what a fresh full map gives
    _write_stack(tmp_path / "G1.nc", 4, np.random.default_rng(3))
    r3, c = run("m3", cache)
    assert r3["mapped"] == 1 and len(list((cache / "G1").glob("*.npz"))) == 4
    _, full = run("m4", None)
    np.testing.assert_allclose(c["mu"].values, full["mu"].values, atol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(np.isnan(c["mu"].values), ~read_stack(tmp_path / "G1.nc")["valid"])
    # a changed calibration changes every key: all re-mapped, stale entries removed
    cal.write_text(json.dumps({"temperatures": [1.0, 2.0], "tau_model": tau_model_to_dict(
        TauModel(coef=[0.0] * len(TAU_FEATURES), intercept=-0.5))}))
    r5, _ = run("m5", cache)
    assert r5["mapped"] == 4 and len(list((cache / "G1").glob("*.npz"))) == 4


@pytest.mark.slow
def test_unreadable_acquisition_is_skipped_by_name_and_the_glacier_carries_on(tiny_region, tmp_path, caplog):
    import logging

    from glaciermap.timeseries.acquisitions import run_ts_acquisitions

    work = tmp_path / "w"
    cfg = tiny_workdir(tiny_region, work)
    inv = gpd.read_file(work / "inputs/inventory.gpkg")
    gid = str(inv["glac_id"].iloc[0])
    items = sorted((work / "inputs/catalog/landsat-c2-l2").glob("*/*.json"))
    bad_item = json.loads(items[0].read_text())
    href = Path(items[0].parent, bad_item["assets"]["SR_B3"]["href"]).resolve() \
        if not bad_item["assets"]["SR_B3"]["href"].startswith("/") else Path(bad_item["assets"]["SR_B3"]["href"])
    href.write_bytes(href.read_bytes()[:300])              # a truncated download
    src = {"landsat": cfg["sources"]["landsat"]}
    params = {"years": [1984, 2025], "season": SEASON, "max_scene_cloud": 100, "min_valid_share": 0.0,
              "resolution": 30.0, "domain_m": 300.0, "bands": ["blue", "green", "red", "nir", "swir1", "swir2", "thermal"]}
    with caplog.at_level(logging.WARNING, logger="glaciermap.timeseries.acquisitions"):
        out = run_ts_acquisitions(gid, work / "inputs/inventory.gpkg", str(work / "inputs/dem/dem_glo30.tif"), src, params,
                                  tmp_path / "a.nc", tmp_path / "a.csv")
    t = pd.read_csv(tmp_path / "a.csv")
    bad = t[t.item_id == bad_item["id"]]
    assert list(bad.reason) == ["unreadable"] and out["rejected"] == {"unreadable": 1}
    assert out["n_used"] == len(t) - 1 >= 1                  # the others carry on
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert gid in msg and bad_item["id"] in msg and "SR_B3" in msg
    with xr.open_dataset(tmp_path / "a.nc") as ds:
        assert bad_item["id"] not in " ".join(map(str, ds["acquisition"].values)) and ds.sizes["time"] == out["n_used"]
