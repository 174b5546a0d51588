"""Memory and runtime requests of the per-glacier and region-level jobs, from measured job resources.

The coefficients are least-squares fits to the Snakemake `benchmark:` files of a full demo run
(benchmarks/job_resources.py; the numbers and fits are in docs/performance.md, "Job resources"):

- per glacier and epoch (acquire, and the two steps of ``cube``: select, features), peak RSS and wall time grow with the cube size
  (megapixels of the cube grid: bounding box + margin at the grid resolution) and, for acquire and select,
  with the number of candidate scenes held at once. Demo sizes measured: 0.09 - 0.73 Mpx, 1 - 6 scenes;
  a large Alpine glacier (Aletsch, ~2.2 Mpx, 10 scenes) lies well beyond, hence the linear model.
- region-level rules read one glacier after the other: their memory is roughly constant (measured peak)
  and their runtime grows with the number of glaciers.

Requests = measured model x HEADROOM (+ a floor), x attempt (a retried job asks for more); runtimes in
minutes, memory in MB, as the Slurm executor takes them.
"""

from __future__ import annotations

import math

HEADROOM = 1.5          # request / predicted peak (the fits' worst residuals were <= 25 % of the prediction)
MIN_MEM_MB = 500
MIN_RUNTIME_MIN = 5

#: rule -> (RSS MB intercept, MB per size unit, seconds intercept, seconds per size unit); size = Mpx x scenes
#: for acquire and select (all candidates in memory), Mpx for features (one chosen scene).
PER_GLACIER = {
    "acquire": (220.0, 186.0, 2.3, 2.2),
    "select": (216.0, 99.0, 2.2, 0.5),
    "features": (224.0, 578.0, 2.7, 4.1),
}

#: rule -> (peak RSS MB on the demo, seconds intercept, seconds per glacier) for region-level rules: the
#: measured peak and the measured maximum wall time spread over the demo's 48 glaciers
#: (docs/measurements/demo_rule_peaks.csv).
REGION = {
    "inventory": (169.0, 0.0, 0.03),
    "qc": (131.0, 0.0, 0.41),
    "split": (80.0, 0.0, 0.01),
    "patches": (356.0, 0.0, 0.45),
    # one cube at a time into the HDF5 store (models.<name>.training_data: store); not part of the demo run
    "training_store": (400.0, 0.0, 0.2),
    "normalise": (475.0, 0.0, 0.61),
    "calibrate": (449.0, 0.0, 0.16),
    "areas": (414.0, 0.0, 0.52),
    "change": (235.0, 0.0, 0.07),
    "baseline": (643.0, 0.0, 1.14),
    "evaluate": (139.0, 0.0, 0.04),
    "summary": (63.0, 0.0, 0.02),
    "compare": (452.0, 0.0, 1.41),
    "outlines": (261.0, 0.0, 0.55),
    "figures": (861.0, 0.0, 0.28),
    "confusion": (438.0, 0.0, 0.2),
    # grows with folds x (layers + groups) x repeats x max_patches rather than with the glaciers: the demo's
    # (5 folds, 20 features, 2 repeats, 48 patches; 2 threads) spread over its glaciers
    "importance": (978.0, 0.0, 3.8),
    # one member trained on every glacier's tiles and a pass over the test tiles (demo 2026-12-01: 2,379 MB, 126 s)
    "random_split": (2379.0, 0.0, 2.7),
    # debris cover: each test glacier's predictions at t0 and t1 (demo: 447 MB, 18 s)
    "cover": (447.0, 0.0, 0.4),
    "debris_summary": (76.0, 0.0, 0.02),
    # the threshold baseline: the test glaciers' t0 cubes and labels (demo: 250 MB, 7 s)
    "thresholds": (250.0, 0.0, 0.15),
    # the facies method (demo 2026-12-01, 2,640 points, 48 glaciers, 24 Landsat scenes; 2 scenes per map year)
    "points": (139.0, 0.0, 0.02),
    "samples": (352.0, 0.0, 1.6),
    "facies_train": (642.0, 0.0, 0.95),
    "label_issues": (169.0, 0.0, 0.06),
    "facies_calibrate": (164.0, 0.0, 0.05),
    "facies_maps": (536.0, 0.0, 0.27),
    "smb": (161.0, 0.0, 0.04),
    "facies_summary": (80.0, 0.0, 0.01),
    # cleanlab on the t0 out-of-fold predictions of every test glacier (demo 2026-12-01: 385 MB, 7 s)
    "outline_issues": (385.0, 0.0, 0.2),
    # the time series (demo runs of 2026-12-01, the largest of each: 48 glaciers, 28 Landsat and 24 Sentinel-2 scenes,
    # 5 folds x 2 members; partly measured beside a test run)
    "ts_train": (876.0, 0.0, 2.46),
    "ts_calibrate": (707.0, 0.0, 0.28),
    "ts_maps": (1036.0, 0.0, 0.68),
    "ts_series": (233.0, 0.0, 0.1),
    "ts_trends": (241.0, 0.0, 0.19),
    "ts_summary": (183.0, 0.0, 0.06),
}

#: rule -> (peak RSS MB, seconds) of per-glacier jobs whose size the DAG does not know (the time series'
#: acquisitions: one glacier's window over every candidate scene; demo 2026-12-01)
FIXED = {
    "ts_acquisitions": (335.0, 8.8),
}


def _mb(x: float) -> int:
    return int(max(MIN_MEM_MB, math.ceil(x * HEADROOM / 100.0) * 100))


def _minutes(seconds: float) -> int:
    return int(max(MIN_RUNTIME_MIN, math.ceil(seconds * HEADROOM * 2 / 60.0)))  # x2 more: shared file systems


def cube_megapixels(xmin: float, ymin: float, xmax: float, ymax: float, margin_m: float, resolution_m: float) -> float:
    """Pixels (millions) of a glacier's cube grid: its bounding box plus the margin on each side."""
    w = (xmax - xmin + 2 * margin_m) / resolution_m
    h = (ymax - ymin + 2 * margin_m) / resolution_m
    return max(w, 1.0) * max(h, 1.0) / 1e6


#: rules whose job runs several fitted steps one after the other in one process (rule ``cube``: the image
#: selection, then the features): the largest step's memory and the sum of the steps' times
COMBINED = {"cube": ("select", "features")}


def _peak_and_seconds(rule: str, megapixels: float, n_scenes: int) -> tuple[float, float]:
    if rule in COMBINED:
        parts = [_peak_and_seconds(r, megapixels, n_scenes) for r in COMBINED[rule]]
        return max(p for p, _ in parts), sum(s for _, s in parts)
    a, b, c, d = PER_GLACIER[rule]
    size = megapixels * max(int(n_scenes), 1) if rule in ("acquire", "select") else megapixels
    return a + b * size, c + d * size


def glacier_job(rule: str, megapixels: float, n_scenes: int, attempt: int = 1) -> dict:
    """{"mem_mb", "runtime"} of one per-glacier job (acquire, cube, or the fitted steps select and features)."""
    peak, seconds = _peak_and_seconds(rule, megapixels, n_scenes)
    return {"mem_mb": _mb(peak) * attempt, "runtime": _minutes(seconds) * attempt}


def fixed_job(rule: str, attempt: int = 1) -> dict:
    """{"mem_mb", "runtime"} of one per-glacier job of ``FIXED``."""
    peak, sec = FIXED[rule]
    return {"mem_mb": _mb(peak) * attempt, "runtime": _minutes(sec) * attempt}


def region_job(rule: str, n_glaciers: int, attempt: int = 1) -> dict:
    """{"mem_mb", "runtime"} of one region-level job over ``n_glaciers`` glaciers."""
    peak, c, d = REGION[rule]
    return {"mem_mb": _mb(peak) * attempt, "runtime": _minutes(c + d * max(int(n_glaciers), 1)) * attempt}
