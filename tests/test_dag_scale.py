"""benchmarks/dag_scale.py: the synthetic region of --methods all configures every method of the demo config on files
of its own folder (a valid config, no demo or truth path); --methods default only the schema defaults."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pystac
import pytest
import yaml

from conftest import load_benchmark
from glaciermap.config import validate_config



@pytest.fixture(scope="module")
def dag_scale():
    return load_benchmark("dag_scale")


def _paths(node, parent=""):
    """Every file path of a config: path, vx / vy and stac.source values (not facies.source, a source name)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, str) and (k in ("path", "vx", "vy") or (k, parent) == ("source", "stac")):
                yield v
            else:
                yield from _paths(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _paths(v)


def test_all_methods_on_own_files(dag_scale, tmp_path):
    root = dag_scale.make_region(tmp_path, 12, "all")
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    for key in dag_scale.METHOD_SECTIONS:
        assert key in cfg
    full = validate_config(cfg)
    assert set(full["models"]) == {"dl4gam", "dl4gam_no_dhdt", "debris"}
    assert full["facies"]["truth"] is None and full["timeseries"]["truth"] is None
    paths = list(_paths(cfg)) + list(cfg["sources"]["coherence"]["paths"].values())
    assert len(paths) >= 15
    for p in paths:
        assert Path(p).is_relative_to(tmp_path) and Path(p).exists(), p
    pts = gpd.read_file(cfg["facies"]["points"]["path"], layer="points")
    assert {"point_id", "class", "scene_id", "glacier_id"} <= set(pts.columns) and pts.crs.to_epsg() == 4326
    cat = pystac.Catalog.from_file(cfg["stac"]["source"])
    landsat = {it.id: it for it in cat.get_child("landsat-c2-l2").get_items()}
    assert set(pts["scene_id"]) <= set(landsat)
    years = {it.datetime.year for it in landsat.values()}
    assert years == {int(y) for y in cfg["facies"]["maps"]["years"]}
    assert all(it.properties["platform"].startswith("landsat-") and "QA_PIXEL" in it.assets for it in landsat.values())
    smb = pd.read_csv(cfg["facies"]["smb"]["path"])
    assert list(smb.columns) == ["glacier_id", "year", "annual_balance"]


def test_default_methods_only_defaults(dag_scale, tmp_path):
    root = dag_scale.make_region(tmp_path, 12, "default")
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    assert set(cfg) == {"region", "inventory", "stac", "dem", "dhdt", "epochs"}
    assert not (tmp_path / "inputs").exists()
    validate_config(cfg)


def test_first_job_stops_the_run_at_the_first_announced_job(dag_scale, tmp_path):
    import sys
    import time

    # a stand-in for Snakemake: a job announcement after some planning output, then a long "job" with a child
    marker = tmp_path / "still_running"
    child = tmp_path / "child.py"
    child.write_text(f"import time\ntime.sleep(1.5)\nopen({str(marker)!r}, 'w').close()\n")
    fake = tmp_path / "fake_snakemake.py"
    fake.write_text(
        "import subprocess, sys, time\n"
        "print('Building DAG of jobs...'); print('rule_stats 3'); sys.stdout.flush()\n"
        "time.sleep(0.3)\n"
        "print('localrule points:', flush=True)\n"
        f"subprocess.Popen([sys.executable, {str(child)!r}])\n"
        "time.sleep(30)\n"
    )
    t = time.perf_counter()
    first_s, peak_mb, rule = dag_scale._first_job([sys.executable, str(fake)])
    assert rule == "points"
    assert 0.3 <= first_s < 10
    assert peak_mb > 1
    assert time.perf_counter() - t < 10  # it did not wait for the 30 s "job"
    time.sleep(2.5)
    assert not marker.exists()  # the job's own child was stopped with it


def test_first_job_names_what_the_run_said_when_no_job_starts(dag_scale):
    import sys

    with pytest.raises(RuntimeError, match="MissingInputException in rule acquire"):
        dag_scale._first_job([sys.executable, "-c",
                              "print('MissingInputException in rule acquire'); raise SystemExit(1)"])


def test_first_job_kills_a_run_that_ignores_sigterm(dag_scale, tmp_path):
    import sys
    import time

    fake = tmp_path / "stubborn.py"
    fake.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                    "print('rule acquire:', flush=True)\ntime.sleep(60)\n")
    t = time.perf_counter()
    first_s, _, rule = dag_scale._first_job([sys.executable, str(fake)], grace_s=1.0)
    assert rule == "acquire" and first_s < 10
    assert time.perf_counter() - t < 15
