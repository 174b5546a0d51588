"""benchmarks/cost_curve.py: the config of a scale region is valid and reads only the region's own files with one
model; the fits recover a known line; the job table reads rule names from benchmark paths."""

from __future__ import annotations

import pytest

from conftest import load_benchmark
from glaciermap.config import validate_config



@pytest.fixture(scope="module")
def cc():
    return load_benchmark("cost_curve")


def test_region_config_is_valid_and_reads_the_regions_files(cc, tmp_path):
    cfg = cc.region_config(tmp_path / "regions" / "200", 200)
    full = validate_config(cfg)
    assert full["region"] == "scale200" and list(full["models"]) == ["dl4gam"]
    assert full["inventory"]["path"] == str(tmp_path / "regions" / "200" / "inputs" / "inventory.gpkg")
    assert full["stac"]["source"] == str(tmp_path / "regions" / "200" / "inputs" / "catalog" / "catalog.json")
    assert full["evaluation"]["truth_dir"] == str(tmp_path / "regions" / "200" / "truth")
    assert "resources/demo" not in str(cfg)  # nothing of the demo region's files
    assert full["importance"]["models"] == [] and full["facies"]["points"] is None


def test_fit_recovers_a_line(cc, capsys):
    rows = [{"glaciers": n, "half": "data", "wall_s": 30 + 2.0 * n, "job_s": 4.0 * n, "disk_mb": 30.0 * n,
             "jobs": 4 * n + 2} for n in (50, 200, 500)]
    cc.fit(rows, cores=2)
    out = capsys.readouterr().out
    wall = next(line for line in out.splitlines() if line.split()[:2] == ["data", "wall_s"]).split()
    assert float(wall[2]) == pytest.approx(30.0) and float(wall[3]) == pytest.approx(2.0)
    assert float(wall[4]) == pytest.approx((30 + 2.0 * 4400) / 3600, abs=0.05)  # the Alps, in hours


def test_job_table_names_rules(cc, tmp_path):
    b = tmp_path / "benchmarks"
    (b / "acquire" / "G1").mkdir(parents=True)
    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (b / "acquire" / "G1" / "2023.tsv").write_text(head + "1.5\t0:00:01\t-\t-\t-\t-\t-\t-\t-\t-\n")
    (b / "qc.tsv").write_text(head + "2.0\t0:00:02\t80\t90\t70\t75\t0\t0\t50\t1.0\n")
    (b / "train" / "dl4gam" / "fold0").mkdir(parents=True)  # train.pack_members: the fold's one job
    (b / "train" / "dl4gam" / "fold0" / "members.tsv").write_text(head + "60\t0:01:00\t9\t9\t9\t9\t0\t0\t90\t55\n")
    t = cc.job_table(tmp_path)
    assert sorted(zip(t["rule"], t["s"])) == [("acquire", 1.5), ("qc", 2.0), ("train_fold", 60.0)]
