"""End to end through the modelling half: the real Snakefile on the tiny demo region, down to summary.json.

Small settings (2 folds, 2 members, 1 epoch, 32 px patches, ResNet18) keep it to a few minutes on 2 cores;
the numbers are checked for sanity (finite, in range), not for skill.
"""

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import run_snakemake

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(model_run):
    return model_run


A = "results/tiny/area_change/dl4gam"  # the area-change products of the DL4GAM model


def test_run_reaches_summary(run):
    work, proc = run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((work / A / "summary.json").read_text())["model"] == "dl4gam"


def _finite(v):
    return v is not None and math.isfinite(v)


def test_summary_values_are_sane(run):
    work, _ = run
    s = json.loads((work / A / "summary.json").read_text())
    for key in ("n_glaciers_inventory", "n_glaciers_processed", "n_glaciers_skipped", "folds", "members", "test_iou_mean",
                "test_f1_mean", "test_recall_mean", "ece_before", "ece_after", "interval_coverage", "area_t0_km2",
                "area_t1_km2", "regional_rate_pct_per_year", "regional_rate_sigma_pct_per_year", "n_rates_kept",
                "band_ratio_regional_rate_pct_per_year", "band_ratio_test_iou_mean", "debris_recall_dl",
                "debris_recall_band_ratio", "debris_recall_by_method", "notes"):
        assert key in s, key
    assert s["folds"] == 2 and s["members"] == 2
    assert 2 <= s["n_glaciers_processed"] <= s["n_glaciers_inventory"]
    for key in ("test_iou_mean", "test_f1_mean", "test_recall_mean", "ece_before", "ece_after", "interval_coverage",
                "band_ratio_test_iou_mean"):
        assert _finite(s[key]) and 0 <= s[key] <= 1, (key, s[key])
    assert _finite(s["area_t0_km2"]) and s["area_t0_km2"] > 0
    assert _finite(s["area_t1_km2"]) and s["area_t1_km2"] > 0
    for key in ("regional_rate_pct_per_year", "band_ratio_regional_rate_pct_per_year"):
        assert _finite(s[key]) and -50 < s[key] < 50, (key, s[key])
    assert _finite(s["regional_rate_sigma_pct_per_year"]) and s["regional_rate_sigma_pct_per_year"] >= 0
    # debris recall from the method comparison (the tiny region has debris-covered test glaciers)
    for key in ("debris_recall_dl", "debris_recall_band_ratio"):
        assert _finite(s[key]) and 0 <= s[key] <= 1, (key, s[key])
    comp = json.loads((work / "results/tiny/area_change/method_comparison.json").read_text())
    assert s["debris_recall_dl"] == comp["methods"]["dl4gam"]["debris_recall"]
    assert s["lost_ice_mapped_by_method"] == {m: v["lost_ice_mapped"] for m, v in comp["methods"].items()}
    assert all(0 <= v <= 1 for v in s["lost_ice_mapped_by_method"].values())
    assert s["debris_recall_by_method"] == {m: v["debris_recall"] for m, v in comp["methods"].items()}
    assert s["debris_recall_band_ratio"] == comp["methods"]["band_ratio_regional"]["debris_recall"]


def test_method_comparison_table(run):
    work, _ = run
    r = work / "results/tiny"
    t = pd.read_csv(r / "area_change/method_comparison.csv").set_index("method")
    # area_change.compare is null: every model of the config, then the band ratios
    assert list(t.index) == ["dl4gam", "dl4gam_no_dhdt", "rgb_dem", "band_ratio_regional", "band_ratio_oracle"]
    assert t.loc["rgb_dem", "label"] == "model rgb_dem"
    split = pd.read_csv(r / "split/split.csv", comment="#")
    for m, row in t.iterrows():
        assert row["n_glaciers"] == len(split), m  # every glacier is a test glacier of one fold
        for col in ("recall", "debris_recall", "fpr_ring"):
            assert 0 <= row[col] <= 1, (m, col, row[col])
        assert row["area_t0_km2"] > 0 and row["area_t1_km2"] > 0 and row["n_debris_glaciers"] >= 1
        assert math.isclose(row["rate_pct_per_year"], 100 * row["rate_km2_per_year"] / row["area_t0_km2"])
        assert 0 <= row["lost_ice_mapped"] <= 1, (m, row["lost_ice_mapped"])  # the tiny truth has t0 and t1 outlines
    # the ice lost between the truth outlines is the same for every method, and the tiny glaciers lose some
    assert t["lost_ice_km2"].nunique() == 1 and t["lost_ice_km2"].iloc[0] > 0
    # the DL4GAM total area is the areas rule's (same definition: mu >= 0.5 within outline + 20 m)
    for m in ("dl4gam", "rgb_dem"):  # the models of area_change.models
        areas = pd.read_csv(r / f"area_change/{m}/areas/glacier_areas.csv", dtype={"epoch": str})
        ok = areas[(areas["status"] == "ok") & (areas["epoch"] == "inventory")]
        assert math.isclose(t.loc[m, "area_t0_km2"], ok["area_pred_km2"].sum(), rel_tol=1e-9)
    # band-ratio rows use the thresholds the baseline chose per fold
    per = pd.read_csv(r / "area_change/method_comparison_glaciers.csv", dtype={"glac_id": str})
    br = pd.read_csv(r / "area_change/baseline/band_ratio_areas.csv", dtype={"glac_id": str, "epoch": str})
    br = br[(br["variant"] == "regional") & (br["epoch"] == "inventory")].set_index("glac_id")
    mine = per[per["method"] == "band_ratio_regional"].set_index("glac_id")
    for g in mine.index:
        assert math.isclose(mine.loc[g, "area_t0_km2"], br.loc[g, "area_pred_km2"], rel_tol=1e-9), g


def test_model_variants_from_the_config_alone(run):
    """The no-dh/dt ablation and a third variant are config entries: their own channels, normalisation, members and
    predictions under their names, the same folds, patches and member seeds as DL4GAM."""
    work, _ = run
    r = work / "results/tiny"
    for k in (0, 1):
        main = json.loads((r / f"models/dl4gam/fold{k}/normalisation.json").read_text())
        for name, channels in (("dl4gam_no_dhdt", [c for c in main["channels"] if c != "dhdt"]),
                               ("rgb_dem", ["B04", "B03", "B02", "dem"])):
            m = r / f"models/{name}/fold{k}"
            norm = json.loads((m / "normalisation.json").read_text())
            assert "dhdt" in main["channels"] and norm["channels"] == channels
            # same training glaciers: the shared channels get the same statistics
            for c in channels:
                i, j = main["channels"].index(c), norm["channels"].index(c)
                assert math.isclose(main["offset"][i], norm["offset"][j]) and math.isclose(main["scale"][i], norm["scale"][j])
            done = json.loads((m / "member0/done.json").read_text())
            main_done = json.loads((r / f"models/dl4gam/fold{k}/member0/done.json").read_text())
            assert done["complete"] and done["seed"] == main_done["seed"]  # same member seed as the main member 0
            assert done["n_train"] == main_done["n_train"]                  # same patches
            assert not (m / "member1").exists()  # 1 member
            assert json.loads((m / "ensemble.json").read_text())["members"] == [
                f"results/tiny/models/{name}/fold{k}/member0/done.json"]
            ck = torch.load(m / "member0/best.pt", map_location="cpu", weights_only=False)
            assert ck["channels"] == channels and ck["in_channels"] == len(channels)
    split = pd.read_csv(r / "split/split.csv", comment="#", dtype={"glac_id": str})
    for name in ("dl4gam_no_dhdt", "rgb_dem"):
        for g, k in zip(split["glac_id"], split["test_fold"]):
            for e in ("inventory", "2023"):
                assert (r / f"predictions/{name}/fold{k}/{e}/{g}.nc").exists()
    # the third variant is in area_change.models: its own area-change products
    s = json.loads((r / "area_change/rgb_dem/summary.json").read_text())
    assert s["model"] == "rgb_dem" and s["members"] == 1 and 0 <= s["test_iou_mean"] <= 1
    assert not (r / "area_change/dl4gam_no_dhdt").exists()  # not in area_change.models: compared only


def test_three_class_variant_end_to_end(run):
    """The K-class core on the tiny region: label rasters from the outlines and the debris map, a softmax ensemble
    with class weights, prob(member, class, y, x), K-class temperatures and per-class metrics; no area products."""
    import numpy as np
    import rasterio
    import xarray as xr

    from glaciermap.segmentation.labels import read_label_raster

    work, _ = run
    r = work / "results/tiny"
    classes = ["background", "clean_ice", "debris"]
    split = pd.read_csv(r / "split/split.csv", comment="#", dtype={"glac_id": str})
    debris_px = 0
    for g in split["glac_id"]:
        lab, names, tags = read_label_raster(r / f"labels/ice_debris/inventory/{g}.tif")
        assert names == classes and tags["status"] == "ok" and tags["glacier_id"] == g
        with xr.open_dataset(r / f"cubes/{g}/inventory.nc", engine="h5netcdf") as cube:
            ids, masked = cube["mask_glacier_id"].values, cube["mask_cloud"].values.astype(bool) | cube[
                "mask_nodata"].values.astype(bool)
        with rasterio.open(r / f"labels/ice_debris/inventory/{g}.tif") as src:
            assert src.nodata == 255 and src.shape == ids.shape and src.crs is not None
        ok = ~masked
        assert ((lab[ok] >= 1) == (ids[ok] >= 0)).all()      # ice classes exactly on the outlines
        assert (lab[masked] == 255).all()
        debris_px += int((lab == 2).sum())
    assert debris_px > 0                                       # the debris map reaches the labels
    for k in (0, 1):
        m = r / f"models/ice_debris/fold{k}"
        done = json.loads((m / "member0/done.json").read_text())
        assert done["classes"] == classes and done["loss"] == "ce" and done["class_weights"][2] > done["class_weights"][0]
        assert pd.read_csv(m / "member0/metrics.csv").columns[3] == "val_miou"
        cal = json.loads((m / "calibration.json").read_text())
        assert cal["tau_model"] is None and cal["classes"] == classes and len(cal["temperatures"]) == 2
        assert cal["n_pixels"] > 0 and 0 <= cal["ece_before"] <= 1
    g, k = split["glac_id"].iloc[0], split["test_fold"].iloc[0]
    with xr.open_dataset(r / f"predictions/ice_debris/fold{k}/inventory/{g}.nc", engine="h5netcdf") as ds:
        assert ds["prob"].dims == ("member", "class", "y", "x") and list(ds["class"].values) == classes
        p = ds["prob"].values
        ok = np.isfinite(p).all((0, 1))
        assert ok.sum() > 100 and np.allclose(p[:, :, ok].sum(1), 1, atol=1e-4)
    met = json.loads((r / "segmentation/ice_debris/metrics.json").read_text())
    assert met["classes"] == classes and met["glaciers"] == len(split) and 0 <= met["mean_iou"] <= 1
    conf = pd.read_csv(r / "segmentation/ice_debris/confusion.csv")
    assert conf.loc[conf["fold"] == "all", "pixels"].sum() == met["pixels"] > 0
    per = pd.read_csv(r / "segmentation/ice_debris/metrics.csv")
    assert set(per["class"]) == set(classes) and set(per["fold"].astype(str)) == {"0", "1", "all"}
    # permutation importance (importance.models): every layer and the default groups the model has channels of
    imp = json.loads((r / "segmentation/ice_debris/importance.json").read_text())
    channels = ["B04", "B03", "B02", "B08", "B11", "dem", "pca1", "tc_wetness", "coherence", "velocity",
                "surface_temperature"]
    assert imp["classes"] == classes and imp["folds"] == [0, 1] and imp["n_repeats"] == 2
    assert set(imp["top_layers"]) <= set(channels) and len(imp["top_layers"]) == 3
    summ = pd.read_csv(r / "segmentation/ice_debris/importance_summary.csv")
    assert set(summ.loc[summ["kind"] == "layer", "feature"]) == set(channels)
    assert set(summ.loc[summ["kind"] == "group", "feature"]) == {"optical", "terrain", "pca_tasseled_cap",
                                                                   "sar_coherence", "surface_velocity",
                                                                   "thermal_infrared"}
    assert (summ["n_samples"] == 4).all() and {"drop_iou_debris_mean", "drop_mean_iou_std"} <= set(summ.columns)
    assert set(imp["baseline"]) == {"overall_accuracy", "mean_iou", *(f"iou_{c}" for c in classes)}
    assert (r / "segmentation/ice_debris/importance.png").stat().st_size > 10_000
    # binary models get the same table as background/glacier
    assert json.loads((r / "segmentation/dl4gam/metrics.json").read_text())["classes"] == ["background", "glacier"]
    # the stack: PCA fitted per fold on the training cubes (in the fold's normalisation), the other sensors' layers
    # in the cubes with their sources recorded
    for k in (0, 1):
        norm = json.loads((r / f"models/ice_debris/fold{k}/normalisation.json").read_text())
        assert norm["projection"]["channels"] == ["pca1"] and len(norm["projection"]["components"][0]) == 12
        assert norm["projection"]["explained_variance_ratio"][0] > 0.3
    with xr.open_dataset(r / f"cubes/{g}/inventory.nc", engine="h5netcdf") as cube:
        layers = list(cube["band"].values)
        assert {"tc_wetness", "coherence", "velocity", "surface_temperature", "B12"} <= set(layers)
        assert "pca1" not in layers and str(cube.attrs["temperature_kind"]) == "landsat_c2l2"
        t = cube["layers"].sel(band="surface_temperature").values
        assert np.isfinite(t).any() and 230 < np.nanmedian(t) < 320            # kelvin
    # the debris method: cover per glacier and epoch with member spread, change, the random split, the summary
    cov = pd.read_csv(r / "debris/ice_debris/cover.csv", dtype={"epoch": str})
    assert set(cov["epoch"]) == {"inventory", "2023"} and set(cov["glac_id"]) == set(split["glac_id"])
    ok = cov[cov["status"] == "ok"]
    assert len(ok) > 0 and (ok["debris_km2"] >= 0).all() and (ok["clean_km2"] > 0).any()
    assert {"truth_debris_km2", "truth_debris_inter_km2"} <= set(cov.columns)
    rs = json.loads((r / "segmentation/ice_debris/random_split.json").read_text())
    assert rs["n_test_tiles"] > 0 and 0 <= rs["mean_iou"] <= 1
    # like for like: one random-split member against the geographic folds' member 0 (rule confusion's single_member)
    assert rs["inflation"]["mean_iou"] == pytest.approx(rs["mean_iou"] - met["single_member"]["mean_iou"])
    assert rs["geographic"]["ensemble_mean_iou"] == pytest.approx(met["mean_iou"])
    ds = json.loads((r / "debris/ice_debris/summary.json").read_text())
    assert ds["mean_iou"] == met["mean_iou"] and ds["random_split_mean_iou"] == rs["mean_iou"]
    assert ds["top_layers"] == imp["top_layers"] and ds["debris_area_t0_km2"] >= 0
    assert ds["truth_debris_area_t0_km2"] > 0
    assert json.loads((r / "area_change/dl4gam/summary.json").read_text())["debris"] == ds
    thr = json.loads((r / "debris/thresholds/metrics.json").read_text())
    assert thr["classes"] == classes and ds["thresholds_mean_iou"] == thr["mean_iou"]
    assert abs(thr["pixels"] - met["pixels"]) <= 0.01 * met["pixels"]       # the same scored pixels, up to NaN layers
    assert (r / "debris/thresholds/vs_ice_debris.png").stat().st_size > 10_000
    # not an area-change model: no area products, not in Table 7
    assert not (r / "area_change/ice_debris").exists()
    assert "ice_debris" not in set(pd.read_csv(r / "area_change/method_comparison.csv")["method"])


def test_truth_comparison_present(run):
    work, _ = run
    s = json.loads((work / A / "summary.json").read_text())
    truth = pd.read_csv(Path(s["truth_dir"]) / "areas.csv")
    assert _finite(s["truth_regional_rate_pct_per_year"]) and s["truth_regional_rate_pct_per_year"] < 0
    assert math.isclose(s["truth_regional_rate_pct_per_year"],
                        100 * truth["rate_km2_per_year"].sum() / truth["area_t0_km2"].sum())
    assert s["rate_spearman"] is None or -1 <= s["rate_spearman"] <= 1
    assert _finite(s["rate_mae_pct_per_year"]) and s["rate_mae_pct_per_year"] >= 0
    assert 0 <= s["share_within_1sigma"] <= 1


def test_outputs_and_naming(run):
    work, _ = run
    r, a = work / "results/tiny", work / A
    rates = pd.read_csv(a / "rates/glacier_rates.csv")
    assert {"glac_id", "rate_pct_yr", "sigma_pct_yr", "snr", "kept", "filter_reason", "rate_source"} <= set(rates.columns)
    assert (a / "rates/glacier_rates.gpkg").exists() and (a / "rates/coverage.csv").exists()
    split = pd.read_csv(r / "split/split.csv", comment="#", dtype={"glac_id": str})
    # every mapped glacier has a test prediction at both epochs in its test fold's folder; validation
    # predictions (t0 only) are in val/
    for g, k in zip(split["glac_id"], split["test_fold"]):
        assert all((r / f"predictions/dl4gam/fold{k}/{e}/{g}.nc").exists() for e in ("inventory", "2023"))
    for k in (0, 1):
        val = split.loc[split[f"role_{k}"] == "val", "glac_id"]
        assert len(val) and all((r / f"predictions/dl4gam/fold{k}/inventory/val/{g}.nc").exists() for g in val)
        assert not (r / f"predictions/dl4gam/fold{k}/2023/val").exists()
        cal = json.loads((r / f"models/dl4gam/fold{k}/calibration.json").read_text())
        assert len(cal["temperatures"]) == 2 and all(0.5 <= t <= 5 for t in cal["temperatures"])
        assert all((r / f"models/dl4gam/fold{k}/member{m}/{f}").exists() for m in (0, 1) for f in ("done.json", "best.pt"))
    for name in ("segmentation_by_fold", "area_by_size_class", "area_by_fold"):
        assert len(pd.read_csv(a / f"areas/{name}.csv"))


def test_rerun_is_a_no_op_and_only_evaluation_rules_read_the_truth(run):
    work, _ = run
    proc = run_snakemake(work, "-n")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr
    proc = run_snakemake(work, "-n", "--forceall")
    truth_dir = yaml.safe_load((work / "config.yaml").read_text())["evaluation"]["truth_dir"]
    readers = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout + proc.stderr):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        inp = re.search(r"\n\s+input: (.*)", block)
        if m and inp and truth_dir in inp.group(1):
            readers.add(m.group(1))
    # evaluation rules: evaluate (planted areas), compare (the debris map), cover (its truth columns: the planted
    # debris next to the mapped one) and facies_summary (the points' planted noise); no modelling rule
    assert readers == {"evaluate", "compare", "cover", "facies_summary"}


def test_comparison_without_debris_map_or_ablation(run, tmp_path):
    """One model, no debris map: debris columns null, and the summary says why."""
    from glaciermap.area_change.compare import run_compare
    from glaciermap.io import prediction_files
    from glaciermap.area_change.summary import build_summary, summary_settings

    work, _ = run
    r, a = work / "results/tiny", work / A
    split = pd.read_csv(r / "split/split.csv", comment="#", dtype={"glac_id": str})
    ids = list(split["glac_id"])
    cubes = {(g, e): str(r / f"cubes/{g}/{e}.nc") for g in ids for e in ("inventory", "2023")}
    out = {k: tmp_path / f"{k}.out" for k in ("csv", "json", "glaciers")}
    calib = sorted(map(str, r.glob("models/dl4gam/fold*/calibration.json")))
    res = run_compare(ids, dict(zip(ids, split["test_fold"])), "inventory", "2023", cubes,
                      {"dl4gam": prediction_files(r.glob("predictions/dl4gam/fold*/*"))}, {"dl4gam": calib},
                      outputs=out)
    assert list(res["methods"]) == ["dl4gam"]
    t = pd.read_csv(out["csv"])
    assert t["debris_recall"].isna().all() and 0 <= t.loc[0, "recall"] <= 1
    # the same DL4GAM numbers as the full comparison of the run
    full = pd.read_csv(r / "area_change/method_comparison.csv").set_index("method").loc["dl4gam"]
    assert math.isclose(t.loc[0, "area_t1_km2"], full["area_t1_km2"]) and math.isclose(t.loc[0, "fpr_ring"], full["fpr_ring"])
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    from glaciermap.config import validate_config

    s = build_summary(r / "qc/summary.json", calib, a / "areas/glacier_areas.csv", a / "rates/regional.json", None, None,
                      summary_settings(validate_config(cfg), "dl4gam"), comparison_json=out["json"])
    assert s["debris_recall_dl"] is None and s["debris_recall_band_ratio"] is None
    assert s["debris_recall_by_method"] == {"dl4gam": None}
    assert any("no debris map" in n for n in s["notes"]) and any("band-ratio baseline disabled" in n for n in s["notes"])


def test_summary_states_skipped_glaciers_and_why(run, tmp_path):
    """Glaciers excluded by QC are counted by step in summary.json and explained in its notes (no silent drops)."""
    from glaciermap.area_change.summary import build_summary, summary_settings
    from glaciermap.config import validate_config

    work, _ = run
    r = work / "results/tiny"
    qc = json.loads((r / "qc/summary.json").read_text())
    assert qc["n_glaciers_skipped"] == 0
    qc.update(n_glaciers_skipped=2, skipped_by_step={"select": 1, "acquire": 1})
    (tmp_path / "qc.json").write_text(json.dumps(qc))
    cfg = validate_config(yaml.safe_load((work / "config.yaml").read_text()))
    a = work / A
    args = (sorted(r.glob("models/dl4gam/fold*/calibration.json")), a / "areas/glacier_areas.csv",
            a / "rates/regional.json", None, None, summary_settings(cfg, "dl4gam"))
    clean = build_summary(r / "qc/summary.json", *args)
    assert clean["skipped_by_step"] == {} and not any("skipped by QC" in n for n in clean["notes"])
    assert clean["n_glaciers_small"] == qc["n_glaciers_small"]
    s = build_summary(tmp_path / "qc.json", *args)
    assert s["n_glaciers_skipped"] == 2 and s["skipped_by_step"] == {"select": 1, "acquire": 1}
    assert any("2 glacier(s) skipped by QC" in n and "qc/skipped.csv" in n for n in s["notes"])


@pytest.mark.slow
def test_inference_benchmark_on_the_run(run):
    """benchmarks/inference.py on the run's models: the reference row is the reference, the variants run the windows,
    strides, borders and flips their names say, and every bootstrap range brackets its point estimate."""
    import importlib.util

    work, _ = run
    spec = importlib.util.spec_from_file_location("bench_inference", REPO / "benchmarks" / "inference.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    df = bench.main(["--results", str(work / "results/tiny"), "--variants", "mean-2", "mean-2-flip2-bf16", "mean-w2-2",
                     "mean-2-b10-bf16", "--boot", "50"]).set_index("variant")
    assert list(df.index) == ["reference", "mean-2", "mean-2-flip2-bf16", "mean-w2-2", "mean-2-b10-bf16"]
    ref = df.loc["reference"]
    assert ref["speedup"] == 1 and ref["d_iou_pp"] == 0 and ref["d_area_pct"] == 0 and 0 < ref["test_iou"] <= 1
    assert (df["window_px"] == [32, 32, 32, 64, 32]).all() and (df["stride_px"] == [4, 16, 16, 32, 16]).all()
    assert (df["border_px"] == [2, 2, 2, 3, 3]).all()
    assert df.loc["mean-2-flip2-bf16", "windows"] == df.loc["mean-2", "windows"]    # flips: the same windows
    assert df.loc["mean-w2-2", "windows"] < df.loc["mean-2", "windows"]             # 2x windows at 2x stride
    assert df.loc["mean-2-b10-bf16", "windows"] >= df.loc["mean-2", "windows"]      # less counted per window
    assert df.loc["reference", "windows"] > 4 * df.loc["mean-2", "windows"]
    assert (df["d_iou_lo"] <= df["d_iou_pp"] + 1e-9).all() and (df["d_iou_pp"] <= df["d_iou_hi"] + 1e-9).all()
