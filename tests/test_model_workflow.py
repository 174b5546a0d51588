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
import yaml

from conftest import run_snakemake

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(model_run):
    return model_run


def test_run_reaches_summary(run):
    work, proc = run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (work / "results/tiny/summary.json").exists()


def _finite(v):
    return v is not None and math.isfinite(v)


def test_summary_values_are_sane(run):
    work, _ = run
    s = json.loads((work / "results/tiny/summary.json").read_text())
    for key in ("n_glaciers_inventory", "n_glaciers_processed", "n_glaciers_skipped", "folds", "members", "test_iou_mean",
                "test_f1_mean", "test_recall_mean", "ece_before", "ece_after", "interval_coverage", "area_t0_km2",
                "area_t1_km2", "regional_rate_pct_per_year", "regional_rate_sigma_pct_per_year", "n_rates_kept",
                "band_ratio_regional_rate_pct_per_year", "band_ratio_test_iou_mean", "debris_recall_dl",
                "debris_recall_band_ratio", "debris_recall_no_dhdt", "notes"):
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
    # null where not computed, and said so
    assert s["debris_recall_dl"] is None and any("debris" in n for n in s["notes"])


def test_truth_comparison_present(run):
    work, _ = run
    s = json.loads((work / "results/tiny/summary.json").read_text())
    truth = pd.read_csv(Path(s["truth_dir"]) / "areas.csv")
    assert _finite(s["truth_regional_rate_pct_per_year"]) and s["truth_regional_rate_pct_per_year"] < 0
    assert math.isclose(s["truth_regional_rate_pct_per_year"],
                        100 * truth["rate_km2_per_year"].sum() / truth["area_t0_km2"].sum())
    assert s["rate_spearman"] is None or -1 <= s["rate_spearman"] <= 1
    assert _finite(s["rate_mae_pct_per_year"]) and s["rate_mae_pct_per_year"] >= 0
    assert 0 <= s["share_within_1sigma"] <= 1


def test_outputs_and_naming(run):
    work, _ = run
    r = work / "results/tiny"
    rates = pd.read_csv(r / "rates/glacier_rates.csv")
    assert {"glac_id", "rate_pct_yr", "sigma_pct_yr", "snr", "kept", "filter_reason", "rate_source"} <= set(rates.columns)
    assert (r / "rates/glacier_rates.gpkg").exists() and (r / "rates/coverage.csv").exists()
    split = pd.read_csv(r / "split/split.csv", comment="#")
    # every mapped glacier has a test prediction at both epochs; validation predictions are named apart
    for g in split["glac_id"]:
        assert (r / f"predictions/{g}/inventory.nc").exists() and (r / f"predictions/{g}/2023.nc").exists()
    for k in (0, 1):
        val = split.loc[split[f"role_{k}"] == "val", "glac_id"]
        assert all((r / f"predictions/val/fold{k}/{g}/inventory.nc").exists() for g in val)
        cal = json.loads((r / f"models/fold{k}/calibration.json").read_text())
        assert len(cal["temperatures"]) == 2 and all(0.5 <= t <= 5 for t in cal["temperatures"])
        assert all((r / f"models/fold{k}/member{m}/{f}").exists() for m in (0, 1) for f in ("done.json", "best.pt"))
    for name in ("segmentation_by_fold", "area_by_size_class", "area_by_fold"):
        assert len(pd.read_csv(r / f"areas/{name}.csv"))


def test_rerun_is_a_no_op_and_only_evaluate_reads_the_truth(run):
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
    assert readers == {"evaluate"}
