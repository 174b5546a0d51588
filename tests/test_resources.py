"""Job resource requests (glaciermap.resources) against the job resources measured on the full demo run."""

from pathlib import Path

import pandas as pd
import pytest

from glaciermap.resources import PER_GLACIER, REGION, cube_megapixels, glacier_job, region_job

MEASURED = Path(__file__).resolve().parents[1] / "docs" / "measurements"


def test_every_measured_per_glacier_job_fits_in_its_request_with_headroom():
    jobs = pd.read_csv(MEASURED / "demo_glacier_jobs.csv")
    assert set(jobs["rule"]) == set(PER_GLACIER) and len(jobs) == 288
    for r in jobs.itertuples():
        req = glacier_job(r.rule, r.cube_mpx, r.n_candidates)
        assert req["mem_mb"] >= 1.3 * r.max_rss_mb, r
        assert req["runtime"] * 60 >= 2 * r.wall_s, r


def test_every_measured_region_job_fits_in_its_request():
    peaks = pd.read_csv(MEASURED / "demo_rule_peaks.csv").set_index("rule")
    for rule in REGION:
        p = peaks.loc[rule]
        req = region_job(rule, int(p["n_glaciers"]))
        assert req["mem_mb"] >= 1.3 * p["max_rss_mb"], rule
        assert req["runtime"] * 60 >= p["wall_s_max"], rule


def test_requests_grow_with_cube_size_scenes_region_and_attempt():
    small, big = glacier_job("acquire", 0.1, 4), glacier_job("acquire", 2.2, 10)
    assert big["mem_mb"] > small["mem_mb"] and big["runtime"] >= small["runtime"]
    assert glacier_job("select", 1.0, 8)["mem_mb"] > glacier_job("select", 1.0, 2)["mem_mb"]
    assert glacier_job("features", 1.0, 8) == glacier_job("features", 1.0, 2)  # one scene whatever the candidates
    assert glacier_job("features", 1.0, 1, attempt=2) == {k: 2 * v for k, v in glacier_job("features", 1.0, 1).items()}
    assert region_job("compare", 4400)["runtime"] > region_job("compare", 48)["runtime"]
    assert glacier_job("select", 0.01, 1) == {"mem_mb": 500, "runtime": 5}  # floors
    # cube runs select then features in one process: the larger peak, the summed time
    for mpx, n in ((0.1, 4), (2.2, 10)):
        sel, feat, both = (glacier_job(r, mpx, n) for r in ("select", "features", "cube"))
        assert both["mem_mb"] == max(sel["mem_mb"], feat["mem_mb"]), (mpx, n)
        assert max(sel["runtime"], feat["runtime"]) <= both["runtime"] <= sel["runtime"] + feat["runtime"], (mpx, n)
    assert glacier_job("cube", 1.0, 8)["mem_mb"] >= glacier_job("cube", 1.0, 2)["mem_mb"]
    with pytest.raises(KeyError):
        glacier_job("train", 1.0, 1)


def test_cube_megapixels():
    # 1 km x 0.5 km glacier, 1330 m margin, 10 m pixels: 366 x 316 px
    assert cube_megapixels(0, 0, 1000, 500, 1330, 10) == pytest.approx(366 * 316 / 1e6)


def test_every_measured_fixed_size_job_fits_in_its_request():
    from glaciermap.resources import FIXED, fixed_job

    peaks = pd.read_csv(MEASURED / "demo_rule_peaks.csv").set_index("rule")
    for rule in FIXED:
        p = peaks.loc[rule]
        req = fixed_job(rule)
        assert req["mem_mb"] >= 1.3 * p["max_rss_mb"], rule
        assert req["runtime"] * 60 >= 2 * p["wall_s_max"], rule
        assert fixed_job(rule, attempt=2) == {k: 2 * v for k, v in req.items()}
