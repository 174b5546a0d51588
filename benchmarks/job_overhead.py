"""Per-glacier job overhead: what a Snakemake job of the data half costs beyond its work.

    python benchmarks/job_overhead.py --results results/demo [--config config.yaml] [-n 24]

For ``acquire`` and ``cube`` (one job per glacier and epoch) it reads the wall time of every job of a finished run
(its ``benchmark:`` files), then redoes the work of ``-n`` of those jobs in this one process, through the same
functions and settings the rules pass (``glaciermap.data.acquire.acquire``, ``glaciermap.data.cube.cube``; outputs
into a temporary folder, compared with the run's; the ``-n`` are spread over the run's sorted glacier-epochs), and
prints per rule: the jobs' median wall time, the first call in this process (imports included; that glacier-epoch
is then redone with the others), the median of the calls after it (the work itself), and the overhead share
sum(job wall - work) / sum(job wall) over the same glacier-epochs. For a run through the worker it also splits the
job wall into what the client spends outside the worker's child and the function's own wall in the child (the
last line of the job's log), against the same function in one process. The job wall includes the interpreter start, Snakemake's script preamble and the
imports; the run's machine load is not controlled (run it on an idle machine, as the run itself should be).
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd


def _jobs(results: Path, rule: str) -> dict:
    """(glacier, epoch) -> the run's job of ``rule`` (benchmarks/<rule>/<glacier>/<epoch>.tsv and its log)."""
    from glaciermap.job_benchmarks import read_benchmarks

    jobs = read_benchmarks(results / "benchmarks", rule, logs_dir=results / "logs")
    return {tuple(r.key.split("/")): r for r in jobs.itertuples() if r.key.count("/") == 1}


def job_walls(results: Path, rule: str) -> dict:
    """(glacier, epoch) -> wall seconds of the run's jobs of ``rule``."""
    return {k: r.s for k, r in _jobs(results, rule).items()}


def child_walls(results: Path, rule: str) -> dict:
    """(glacier, epoch) -> wall seconds of the job's function in the worker's child (the last line of its log;
    runs through the worker only): the rest of the job's wall is the client's (Snakemake's script start, the
    connection, a new fork's warm-up)."""
    return {k: r.worker_s for k, r in _jobs(results, rule).items() if r.worker_s == r.worker_s}


def acquire_cfg(cfg: dict, epoch: str) -> dict:
    """The config the ``acquire`` job builds from its params (workflow/scripts/data/acquire.py)."""
    from glaciermap.config import source_configs

    return {"imagery": cfg["imagery"], "sources": {cfg["imagery"]: source_configs(cfg)[cfg["imagery"]]},
            "grid": cfg["grid"], "epochs": {epoch: cfg["epochs"][epoch]}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--results", default="results/demo", help="a finished run's results/<region>")
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("-n", type=int, default=24, help="glacier-epochs redone in this process")
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    from glaciermap.config import cube_plan, load_config, raster_path

    results = Path(a.results)
    cfg = load_config(a.config)
    walls = {r: job_walls(results, r) for r in ("acquire", "cube")}
    if not walls["acquire"] or not walls["cube"]:
        raise SystemExit(f"no benchmark files of acquire/cube under {results}/benchmarks: a finished run is needed")
    every = sorted(set(walls["acquire"]) & set(walls["cube"]))
    keys = every[:: max(1, len(every) // a.n)][: a.n]  # spread over the run (glaciers of every size, both epochs)
    inventory = results / "inventory" / "glaciers.gpkg"
    times = {"acquire": [], "cube": []}
    first = {}
    same = 0
    with tempfile.TemporaryDirectory() as d:
        # the first key twice: once for the imports and first-call costs (not counted), then with the others
        for k, (g, e) in enumerate([keys[0], *keys]):
            t = time.perf_counter()
            from glaciermap.data.acquire import acquire

            if k == 0:
                layers, channel_sources = cube_plan(cfg)   # the cube rule's params (workflow/rules/common.smk)
            scenes = Path(d) / f"{k}_{g}_{e}.nc"
            acquire(g, e, acquire_cfg(cfg, e), str(inventory), str(scenes))
            times["acquire"].append(time.perf_counter() - t)
            t = time.perf_counter()
            from glaciermap.data.cube import cube

            dem, dhdt = raster_path(cfg, "dem"), raster_path(cfg, "dhdt", e)
            sel = Path(d) / f"{k}_{g}_{e}.csv"
            cube(g, e, str(scenes), str(inventory), cfg["selection"], dem, dhdt, dict(cfg["features"], id_column="glac_id"),
                 str(sel), str(Path(d) / f"{k}_{g}_{e}_cube.nc"), layers=layers, sources=channel_sources)
            times["cube"].append(time.perf_counter() - t)
            run_sel = results / "selection" / g / f"{e}.csv"
            if k and run_sel.exists() and pd.read_csv(sel).equals(pd.read_csv(run_sel)):
                same += 1
    for r in times:
        first[r], times[r] = times[r][0], times[r][1:]
    print(f"{len(keys)} of the run's {len(every)} glacier-epochs redone in one process ({time.perf_counter() - t_start:.1f} s "
          f"with the config and imports); selection tables equal to the run's: {same} of {len(keys)}; the run's jobs "
          f"{'went through the worker' if cfg['execution']['worker'] else 'ran in their own processes'} "
          f"(execution.worker: {str(cfg['execution']['worker']).lower()} in {a.config})\n")
    print("| rule | jobs in the run | job wall median s | first call here s | work median s | overhead share |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    tot_wall = tot_work = 0.0
    split = []
    for r in ("acquire", "cube"):
        wall = [walls[r][k] for k in keys]
        tot_wall, tot_work = tot_wall + sum(wall), tot_work + sum(times[r])
        print(f"| `{r}` | {len(walls[r])} | {statistics.median(wall):.2f} | {first[r]:.2f} | "
              f"{statistics.median(times[r]):.2f} | {(sum(wall) - sum(times[r])) / sum(wall):.0%} |")
        child = child_walls(results, r)
        if all(k in child for k in keys):
            inside = [child[k] for k in keys]
            split.append(f"| `{r}` | {(sum(wall) - sum(inside)) / len(keys):.3f} | {sum(inside) / len(keys):.3f} | "
                         f"{sum(times[r]) / len(keys):.3f} | {(sum(inside) - sum(times[r])) / sum(wall):+.0%} |")
    if split:
        print("\nwhere it goes, mean s a job over the same glacier-epochs (the child's wall from the job's log):\n")
        print("| rule | outside the child (start, connect) | the function in the worker's child | "
              "the function in one process | child - one process, share of job wall |")
        print("| --- | ---: | ---: | ---: | ---: |")
        print("\n".join(split))
    print(f"\nthe {len(keys)} glacier-epochs' {2 * len(keys)} jobs: {tot_wall:.1f} s of job wall, {tot_work:.1f} s of the same "
          f"work in one process: overhead {(tot_wall - tot_work) / tot_wall:.0%} (goal of issue 16: < 10 %)")

if __name__ == "__main__":
    main()
