"""benchmarks/debris_cost.py: the extrapolation arithmetic, the centre count, the stack timing and a tiny run."""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dc():
    # imported by name from benchmarks/ (not from a file spec): the model runs in a spawned process, which
    # unpickles debris_cost.measure_model by module name and inherits this sys.path
    bench = str(ROOT / "benchmarks")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module("debris_cost")


def test_extrapolate_arithmetic(dc):
    # 1,000 centres, 5 folds, 10 % validation: 700 training and 1000 x 0.1 x 0.25 = 25 validation patches per epoch
    e = dc.extrapolate(100, 1000.0, train_rate=2.0, infer_rate=5.0, epochs=10, folds=5, members=2,
                       val_fraction=0.1, val_stride_factor=0.25, change_epochs=2, val_pred_factor=1.25, threads=2)
    assert e["train_patches_per_epoch"] == pytest.approx(700.0)
    assert e["val_patches_per_epoch"] == pytest.approx(25.0)
    train_s = 5 * 2 * 10 * (700 / 2.0 + 25 / 5.0)          # 35,500 s
    assert e["train_h"] == pytest.approx(train_s / 3600)
    assert e["infer_passes"] == pytest.approx(1000 * 2 * 2 * 1.25)
    assert e["infer_h"] == pytest.approx(5000 / 5.0 / 3600)
    assert e["total_h"] == pytest.approx(e["train_h"] + e["infer_h"])
    assert e["total_core_h"] == pytest.approx(2 * e["total_h"])
    assert e["member_trainings"] == 10


def test_extrapolate_scales_linearly(dc):
    a = dc.extrapolate(10, 500.0, 1.0, 4.0, members=1)
    b = dc.extrapolate(10, 500.0, 1.0, 4.0, members=10)
    c = dc.extrapolate(10, 500.0, 2.0, 8.0, members=1)
    assert b["total_h"] == pytest.approx(10 * a["total_h"])
    assert c["total_h"] == pytest.approx(a["total_h"] / 2)       # twice the rates, half the hours


def test_centres_per_glacier(dc):
    # stride 32 px at 10 m: one centre per 0.1024 km2 of buffer, plus the centroid
    n = dc.centres_per_glacier([0.5, 0.0], [1.024, 0.0], stride_px=32, res_m=10.0)
    assert np.allclose(n, [11.0, 1.0])


def test_demo_centres_missing(dc, tmp_path):
    assert dc.demo_centres(tmp_path / "none.gpkg") is None


def test_stack_cost_small(dc):
    c = dc.stack_cost(40, 48, repeats=1, pca_sample=500)
    assert c["pixels"] == 40 * 48
    for k in ("glcm_s", "pca_s", "tasseled_cap_s", "indices_s"):
        assert c[k] >= 0
    assert c["total_s"] == pytest.approx(c["glcm_s"] + c["pca_s"] + c["tasseled_cap_s"] + c["indices_s"])
    assert dc.tasseled_cap_matrix().shape == (6, 12)


def test_markdown_table(dc):
    t = dc.markdown_table([["a", 1.234, 12345.6, "not measured"]], ["x", "y", "z", "w"]).splitlines()
    assert t[0] == "| x | y | z | w |"
    assert t[2] == "| a | 1.23 | 12,346 | not measured |"


def test_quick_run(dc, tmp_path, capsys):
    out = tmp_path / "cost.csv"
    r = dc.main(["--quick", "--threads", "1", "--csv", str(out)])
    text = capsys.readouterr().out
    assert "not measured" in text and "| model |" in text
    (m,) = r["models"]
    assert m["params"] > 0 and m["peak_rss_mb"] > 0
    assert m["train"][0]["steps"] == 1 and m["train"][0]["patches_per_s"] > 0
    assert m["infer"]["patches_per_s"] > 0
    rows = list(csv.DictReader(out.open()))
    items = {row["item"] for row in rows}
    assert any(i.endswith("|params") for i in items)
    assert "members1|gpu_h" in items
    assert next(row for row in rows if row["item"] == "members1|gpu_h")["value"] == "not measured"
