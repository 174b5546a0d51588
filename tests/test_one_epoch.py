"""A one-epoch region (a single entry in `epochs`): mapping, calibration, areas, outlines and figures run, and
summary.json has the change keys null with a note. The real Snakefile on the tiny demo region, one model."""

import json

import pandas as pd
import pytest
import yaml

from conftest import planned_jobs, run_snakemake, tiny_workdir, with_models


@pytest.fixture(scope="module")
def one_epoch_run(tiny_region, tmp_path_factory):
    work = tmp_path_factory.mktemp("one_epoch")
    cfg = with_models(tiny_workdir(tiny_region, work), {"dl4gam": {}})
    cfg["epochs"] = {"inventory": cfg["epochs"]["inventory"]}
    cfg["change"] = {}  # from and to left out: both resolve to the only epoch
    cfg.update({
        "split": {"n_folds": 2, "val_fraction": 0.3},
        "train": {"members": 1, "epochs": 1, "patch_size": 32, "stride": 16, "val_stride": 32, "batch_size": 8},
        "infer": {"stride": 16, "batch_size": 32},
        "evaluation": {"truth_dir": str(tiny_region / "truth"), "debris_map": None},
    })
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    plan = planned_jobs(run_snakemake(work, "-n"))
    return work, plan, run_snakemake(work)


@pytest.mark.slow
def test_one_epoch_region_maps_and_writes_a_summary_without_change(one_epoch_run):
    work, plan, proc = one_epoch_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rules = {r for r, _ in plan}
    assert {"train", "infer", "calibrate", "areas", "outlines", "figures", "summary", "baseline"} <= rules
    assert not rules & {"change", "compare", "evaluate"}  # nothing that needs a second epoch
    assert {w for r, w in plan if r == "infer"} == {"model=dl4gam, fold=0, epoch=inventory",
                                                    "model=dl4gam, fold=1, epoch=inventory"}
    a = work / "results/tiny/area_change/dl4gam"
    s = json.loads((a / "summary.json").read_text())
    for key in ("area_t1_km2", "regional_rate_pct_per_year", "regional_rate_sigma_pct_per_year", "n_rates_kept",
                "band_ratio_regional_rate_pct_per_year"):
        assert s[key] is None, key
    assert s["epochs"] == {"t0": "inventory", "t1": None}
    assert any("one-epoch region" in n for n in s["notes"])
    # mapping, calibration and areas are real: finite skill numbers and a mapped area equal to the areas table's
    assert 0 < s["test_iou_mean"] <= 1 and s["ece_after"] is not None and s["band_ratio_test_iou_mean"] > 0
    areas = pd.read_csv(a / "areas/glacier_areas.csv", dtype={"epoch": str})
    ok = areas[(areas["status"] == "ok") & (areas["epoch"] == "inventory")]
    assert set(areas["epoch"]) == {"inventory"} and s["n_glaciers_processed"] == len(ok) > 0
    assert s["area_t0_km2"] == pytest.approx(ok["area_pred_km2"].sum())
    assert (a / "figures/reliability.png").stat().st_size > 0 and not (a / "figures/rate_map.png").exists()
    assert not (a / "rates").exists()


def test_two_epochs_with_the_same_change_epoch_stop_before_any_job():
    from conftest import REPO
    from glaciermap.config import ConfigError, validate_config

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["change"] = {"from": "inventory", "to": "inventory"}
    with pytest.raises(ConfigError, match="change.to: 'inventory' is the same epoch as change.from; with several"):
        validate_config(cfg)
