"""The facies method and the outline issues through the real Snakefile on the tiny region (the session's model run):
every step is a rule, its outputs hold what the next step and a user need. Numbers are checked for consistency, not
for skill (3 folds, 3 epochs, 8 filters on ~200 points)."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr

pytestmark = pytest.mark.slow

F = "results/tiny/facies"
CLASSES = ["ice", "snow", "debris", "firn", "refrozen", "shadow", "water", "cloud"]


@pytest.fixture(scope="module")
def run(model_run):
    work, proc = model_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work


def test_points_reject_the_planted_bad_rows_by_name(run, tiny_region):
    truth = pd.read_csv(tiny_region / "truth" / "facies_points.csv", keep_default_na=False)
    bad = truth[truth["bad_row_reason"] != ""]
    rej = pd.read_csv(run / F / "points_rejected.csv")
    # the planted duplicate and its original are identical rows: the later one in the file is the one dropped
    dup = bad[bad["bad_row_reason"].str.contains("duplicate")].iloc[0]
    pair = set(truth.loc[(truth["scene_id"] == dup["scene_id"]) & (truth["x_32632"] == dup["x_32632"])
                         & (truth["y_32632"] == dup["y_32632"]), "point_id"])
    assert len(bad) == 5 and len(pair) == 2 and len(rej) == 5
    assert set(rej["point_id"]) - pair == set(bad["point_id"]) - pair and len(set(rej["point_id"]) & pair) == 1
    reasons = " | ".join(rej["reason"])
    for what in ("unknown class 'slush'", "no class", "is not in the catalog", "outside every glacier", "duplicate of point"):
        assert what in reasons, what
    pts = gpd.read_file(run / F / "points.gpkg", layer="points")
    assert len(pts) == (truth["bad_row_reason"] == "").sum()
    assert pts.crs.is_projected and pts.groupby("glacier_id")["fold"].nunique().max() == 1
    assert set(pts["fold"]) == {0, 1, 2}


def test_samples_hold_the_feature_set_around_every_point(run):
    ds = xr.open_dataset(run / F / "samples.nc")
    chans = list(ds["channel"].values)
    assert chans == ["blue", "green", "red", "nir", "swir1", "swir2", "elevation_norm", "slope", "cast_shadow",
                     "hillshade", "outline_distance"]
    x = ds["x"].values
    assert x.shape[1:] == (11, 21, 21) and np.isfinite(x[:, :, 10, 10]).all()
    h = x[:, chans.index("outline_distance"), 10, 10]
    assert (h > 0).all() and (h <= 1).all()                # every point lies inside its glacier
    assert set(np.unique(x[:, chans.index("cast_shadow")])) <= {0.0, 1.0}
    assert json.loads(ds.attrs["classes"]) == CLASSES


def test_out_of_fold_probabilities_cover_every_point_once_per_round(run):
    ds = xr.open_dataset(run / F / "samples.nc")
    for rnd in ("raw", "clean"):
        probs = pd.concat([pd.read_csv(run / F / rnd / f"fold{k}" / "proba.csv") for k in range(3)])
        test = probs[probs["role"] == "test"]
        assert sorted(test["point_id"]) == sorted(ds["point"].values)
        p = test[[f"p_{c}" for c in CLASSES]].to_numpy()
        assert np.allclose(p.sum(axis=1), 1, atol=1e-4)
        # validation rows come from the fold before the test fold
        for k in range(3):
            f = pd.read_csv(run / F / rnd / f"fold{k}" / "proba.csv")
            val_ids = set(f.loc[f["role"] == "val", "point_id"])
            fold_of = dict(zip(ds["point"].values, ds["fold"].values))
            assert {fold_of[i] for i in val_ids} == {(k - 1) % 3}


def test_label_issues_prune_only_prunable_classes_and_clean_round_drops_them(run):
    iss = pd.read_csv(run / F / "raw" / "label_issues.csv")
    assert not iss.loc[iss["given"].isin(["shadow", "water", "cloud"]), "pruned"].any()
    pruned = set(iss.loc[iss["pruned"], "point_id"])
    js = json.loads((run / F / "raw" / "label_issues.json").read_text())
    assert js["n_pruned"] == len(pruned) and "flag_precision" not in js    # the truth is scored by facies_summary
    for k in range(3):
        val = pd.read_csv(run / F / "clean" / f"fold{k}" / "proba.csv").query("role == 'val'")
        assert not (set(val["point_id"]) & pruned)
    joint = pd.read_csv(run / F / "raw" / "confident_joint.csv", index_col=0)
    assert joint.shape == (8, 8)


def test_calibration_curves_and_ece(run):
    cal = json.loads((run / F / "clean" / "calibration.json").read_text())
    assert 0 <= cal["ece_before"] <= 1 and 0 <= cal["ece_after"] <= 1
    curves = pd.read_csv(run / F / "clean" / "calibration_curves.csv")
    assert set(curves["fold"]) == {0, 1, 2} and curves["calibrated"].between(0, 1).all()


def test_maps_and_statistics_per_glacier_and_scene(run):
    inv = gpd.read_file(run / "results/tiny/inventory/glaciers.gpkg")
    n_ok = int((inv["qc_status"] == "ok").sum())
    n_tifs = 0
    for year in (2015, 2023):
        st = pd.read_csv(run / F / "maps" / f"{year}.csv")
        tifs = sorted((run / F / "maps" / str(year)).glob("*_facies.tif"))
        n_tifs += len(tifs)
        assert st["scene_id"].nunique() == len(tifs)      # a year without a scene in its window has neither
        if len(st):
            assert st.groupby("scene_id")["glacier_id"].nunique().max() == n_ok
        for tif in tifs:
            with rasterio.open(tif) as src:
                a = src.read(1)
                assert json.loads(src.tags()["classes"]) == CLASSES and src.nodata == 255
                assert src.crs.is_projected
            assert set(np.unique(a)) <= set(range(8)) | {255} and (a < 8).any()
            with rasterio.open(str(tif).replace("_facies", "_confidence")) as src:
                c = src.read(1)
            assert np.array_equal(np.isfinite(c), a < 8) and np.nanmax(c) <= 1 and np.nanmin(c) >= 0
        ok = st.dropna(subset=["snow_aar"])
        assert ok["snow_aar"].between(0, 1).all() and ok["valid_share"].between(0, 1).all()
        share = st[[f"share_{c}" for c in CLASSES]].sum(axis=1)
        assert (share <= 1 + 1e-9).all()
    assert n_tifs >= 1


def test_smb_and_summaries(run):
    smb = json.loads((run / F / "smb.json").read_text())
    assert {"smb_r_global", "smb_rmse_global", "smb_r_per_glacier", "smb_rmse_per_glacier"} <= set(smb)
    s = json.loads((run / F / "summary.json").read_text())
    for k in ("macro_f1_before", "macro_f1_after", "f1_per_class", "pruned_share", "pruned_share_per_class",
              "flag_precision", "flag_recall", "ece_before", "ece_after", "outline_issues"):
        assert k in s, k
    assert s["n_rejected_rows"] == 5 and s["scored_on"] == "points whose planted label is correct"
    assert s["flag_precision"] is not None and 0 <= s["flag_recall"] <= 1
    area = json.loads((run / "results/tiny/area_change/dl4gam/summary.json").read_text())
    assert area["facies"] == s


def test_outline_issues_table_and_suspect_areas(run):
    tab = pd.read_csv(run / "results/tiny/segmentation/dl4gam/outline_issues.csv")
    cubes = {p.parent.name for p in (run / "results/tiny/cubes").glob("*/inventory.nc")}
    assert set(tab["glacier_id"]) <= cubes and len(tab) >= 1
    assert tab["score"].dropna().between(0, 1).all()
    assert (tab["missing_ice_km2"].fillna(0) >= 0).all() and (tab["false_ice_km2"].fillna(0) >= 0).all()
    gdf = gpd.read_file(run / "results/tiny/segmentation/dl4gam/outline_issues.gpkg", layer="suspect_areas")
    assert {"glacier_id", "kind", "area_km2"} <= set(gdf.columns)
    assert set(gdf["kind"]) <= {"missing_ice", "false_ice"}
    js = json.loads((run / "results/tiny/segmentation/dl4gam/outline_issues.json").read_text())
    assert js["n_glaciers_flagged"] == int(tab["flagged"].fillna(False).astype(bool).sum())
