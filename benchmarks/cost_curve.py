"""Cost curves from real runs: the data half and the DL4GAM modelling half on synthetic regions of N glaciers.

Usage: python benchmarks/cost_curve.py [--half data|model|both] [--cores C] [--work DIR] [--keep] [N ...]
       (default: both halves, 2 cores, N = 50 200 500)

For each N the demo generator's "scale" preset (``python -m glaciermap.demo --preset scale --glaciers N``: the
demo's densities of glaciers, debris and lakes on a domain sized for ~N glaciers, made of demo-sized landscapes
side by side, Sentinel-2 L2A only) writes a
region under ``<work>/regions/<N>`` (kept between calls: the generator skips a complete region). The workflow then
runs from empty results in ``<work>/run-<N>`` with the repository's Snakefile and workflow profile, first the data
half (target ``qc``: acquire and cube per glacier and epoch), then the rest of the default target with one model
variant, ``dl4gam`` with the schema defaults (the CPU demo preset: 3 members x 5 folds, 4 epochs, ResNet18 U-Net on
64 px patches); the config is the demo's (config.yaml) without the other methods. Printed per N and half:

  glaciers   inventory glaciers (the generator aims at N, +-20 %; seed 0: 184 at N = 200, 440 at N = 500);
             split = those in the cross-validation split (>= 0.1 km2 and covered by a scene), once the modelling
             half ran
  jobs       jobs run (their benchmark files), and per glacier
  wall s     the half's wall time (snakemake start to exit)
  job s      the sum of the jobs' own wall times (benchmark files); busy % = job s / (wall s x cores)
  peak MB    the largest single process (a job, a worker child or Snakemake itself)
  disk MB    results/<region> after the half, and per glacier; files = the number of files written

then least-squares lines (a + b N) of wall time, job time, disk and jobs over the N measured, and what they give for
the Alps (4,400 glaciers) and the world (275,000) at the same cores (an extrapolation, assuming the demo's glacier
sizes, 6 candidate scenes per epoch and the same model preset). The generation time is printed apart.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
#: the demo config's sections a scale region keeps (their paths re-pointed); the other methods are left out
KEEP = ("inventory", "stac", "dem", "dhdt", "epochs", "change", "grid", "train")
EXTRAPOLATE = {"Alps": 4400, "world": 275_000}


def region_config(region_dir: Path, n: int) -> dict:
    """The demo config (config.yaml) for the scale region: its inputs re-pointed, one model, no other method."""
    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg = {"region": f"scale{n}", "results_dir": "results", **{k: demo[k] for k in KEEP}}
    cfg["inventory"] = {**cfg["inventory"], "path": str(region_dir / "inputs" / "inventory.gpkg")}
    cfg["stac"] = {**cfg["stac"], "source": str(region_dir / "inputs" / "catalog" / "catalog.json")}
    cfg["evaluation"] = {"truth_dir": str(region_dir / "truth")}
    cfg["models"] = {"dl4gam": {}}
    cfg["importance"] = {"models": []}
    return cfg


def _snakemake(run_dir: Path, cores: int, target: str | None, log: Path) -> tuple[float, float]:
    """Run Snakemake in ``run_dir``; (wall seconds, peak RSS MB of Snakemake and the jobs it waited for)."""
    from glaciermap.job_benchmarks import timed_run

    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(run_dir),
           "--configfile", str(run_dir / "config.yaml"), "--workflow-profile", str(REPO / "workflow/profiles/default"),
           "--cores", str(cores), *([target] if target else [])]
    with open(log, "a") as fh:
        rc, wall, peak_mb, _ = timed_run(cmd, stderr=fh, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if rc != 0:
        raise RuntimeError(f"snakemake {target or 'all'} in {run_dir} failed (exit {rc}); see {log}")
    return wall, peak_mb


def job_table(results: Path) -> pd.DataFrame:
    """One row per job that ran: rule, wall seconds, benchmark file (glaciermap.job_benchmarks)."""
    from glaciermap.job_benchmarks import read_benchmarks

    return read_benchmarks(results / "benchmarks")[["rule", "s", "path"]]


def worker_peak_mb(results: Path) -> float:
    """The largest peak RSS a per-glacier worker child reported at the end of a job's log (0 without one)."""
    from glaciermap.job_benchmarks import read_benchmarks

    peak = read_benchmarks(results / "benchmarks", logs_dir=results / "logs")["worker_rss"].max()
    return float(peak) if peak == peak else 0.0


def disk(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``."""
    size = files = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            size += p.stat().st_size
            files += 1
    return size, files


def measure(n: int, work: Path, cores: int, halves: list[str], keep: bool) -> list[dict]:
    from glaciermap import demo
    from glaciermap.segmentation.split import read_split

    region_dir = work / "regions" / str(n)
    t = time.perf_counter()
    summary = demo.generate(region_dir, seed=0, preset="scale", glaciers=n)
    gen_s = time.perf_counter() - t
    print(f"# region {n}: {summary['n_glaciers']} glaciers, {summary['area_total_km2']:.0f} km2 of ice, "
          f"{summary['n_scenes']} Sentinel-2 scenes; generated in "
          f"{'(already there)' if summary.get('skipped') else f'{gen_s:.0f} s'}", flush=True)
    run_dir = work / f"run-{n}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(region_config(region_dir, n), sort_keys=False))
    results = run_dir / "results" / f"scale{n}"
    rows, seen = [], set()
    for half in halves:
        wall, peak = _snakemake(run_dir, cores, "qc" if half == "data" else None, run_dir / f"{half}.log")
        jobs = job_table(results)
        new = jobs[~jobs["path"].isin(seen)]
        seen |= set(new["path"])
        size, files = disk(results)
        split = results / "split" / "split.csv"
        mapped = len(read_split(split)) if split.exists() else None
        rows.append({"glaciers": summary["n_glaciers"], "mapped": mapped, "half": half, "jobs": len(new),
                     "wall_s": wall, "job_s": float(new["s"].sum()), "peak_mb": max(peak, worker_peak_mb(results)),
                     "disk_mb": size / 1e6, "files": files,
                     "by_rule": new.groupby("rule")["s"].agg(["count", "sum"]).round(1).to_dict("index")})
        r = rows[-1]
        print(f"{r['glaciers']:>8} {half:>5} {r['jobs']:>6} {r['jobs'] / r['glaciers']:>6.1f} {wall:>8.0f} "
              f"{r['job_s']:>8.0f} {100 * r['job_s'] / (wall * cores):>6.0f} {r['peak_mb']:>8.0f} {r['disk_mb']:>8.0f} "
              f"{r['disk_mb'] / r['glaciers']:>7.1f} {files:>7} {mapped if mapped is not None else '':>6}", flush=True)
    (work / f"cost-{n}.json").write_text(json.dumps({"generate_s": gen_s, "summary": summary, "rows": rows},
                                                    indent=1, default=str))
    if not keep:
        shutil.rmtree(run_dir)
    return rows


def fit(rows: list[dict], cores: int) -> None:
    """Least-squares lines a + b N per half, and the extrapolation to the Alps and the world."""
    df = pd.DataFrame(rows)
    print(f"\nfits (least squares over N = {', '.join(str(g) for g in sorted(df['glaciers'].unique()))}) and "
          f"extrapolations at {cores} cores (assumption: the lines hold; demo-sized glaciers)")
    print(f"{'half':>5} {'quantity':>9} {'a':>10} {'b per glacier':>14} "
          + " ".join(f"{k + f' ({v:,})':>22}" for k, v in EXTRAPOLATE.items()))
    for half, g in df.groupby("half", sort=False):
        if g["glaciers"].nunique() < 2:
            continue
        for q, unit in (("wall_s", "h"), ("job_s", "h"), ("disk_mb", "GB"), ("jobs", "jobs")):
            b, a = np.polyfit(g["glaciers"], g[q], 1)
            scale = {"h": 3600, "GB": 1000, "jobs": 1}[unit]
            ext = " ".join(f"{(a + b * v) / scale:>19.1f} {unit:<2}" for v in EXTRAPOLATE.values())
            print(f"{half:>5} {q:>9} {a:>10.1f} {b:>14.3f} {ext}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="Prints one row per N and half, then linear fits and extrapolations.")
    ap.add_argument("sizes", nargs="*", type=int, default=[50, 200, 500], metavar="N",
                    help="glaciers of each synthetic region (default: 50 200 500)")
    ap.add_argument("--half", choices=("data", "model", "both"), default="both",
                    help="data: target qc only; model: the data half then the modelling half, both timed (= both)")
    ap.add_argument("--cores", type=int, default=2, help="snakemake --cores (default 2)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/glaciermap-cost"),
                    help="folder for the regions (kept) and the runs (default /tmp/glaciermap-cost)")
    ap.add_argument("--keep", action="store_true", help="keep each run's results (default: deleted after measuring)")
    a = ap.parse_args(argv)
    halves = ["data"] if a.half == "data" else ["data", "model"]
    a.work.mkdir(parents=True, exist_ok=True)
    print(f"{'glaciers':>8} {'half':>5} {'jobs':>6} {'/glac':>6} {'wall s':>8} {'job s':>8} {'busy%':>6} "
          f"{'peak MB':>8} {'disk MB':>8} {'MB/glac':>7} {'files':>7} {'split':>6}", flush=True)
    rows = []
    for n in a.sizes:
        rows += measure(n, a.work, a.cores, halves, a.keep)
    fit(rows, a.cores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
