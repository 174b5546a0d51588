"""Per-glacier job overhead: what a Snakemake job of the data half costs beyond its work.

    python benchmarks/job_overhead.py --results results/demo [--config config.yaml] [-n 12]

For ``acquire`` and ``cube`` (one job per glacier and epoch) it reads the wall time of every job of a finished run
(its ``benchmark:`` files), then redoes the work of ``-n`` of those jobs in this one process, through the same
functions and settings the rules pass (``glaciermap.data.acquire.acquire``, ``glaciermap.data.cube.cube``; outputs
into a temporary folder, compared with the run's), and prints per rule: the jobs' median wall time, the first call in
this process (imports included), the median of the later calls (the work itself), and the overhead share
(job wall - work) / job wall. The job wall includes the interpreter start, Snakemake's script preamble and the
imports; the run's machine load is not controlled (run it on an idle machine, as the run itself should be).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd


def job_walls(results: Path, rule: str) -> dict:
    """(glacier, epoch) -> wall seconds of the run's jobs of ``rule`` (benchmarks/<rule>/<glacier>/<epoch>.tsv)."""
    out = {}
    for tsv in sorted((results / "benchmarks" / rule).glob("*/*.tsv")):
        out[(tsv.parent.name, tsv.stem)] = float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])
    return out


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
    ap.add_argument("-n", type=int, default=12, help="glacier-epochs redone in this process")
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    from glaciermap.config import cube_plan, load_config, raster_path

    results = Path(a.results)
    cfg = load_config(a.config)
    walls = {r: job_walls(results, r) for r in ("acquire", "cube")}
    if not walls["acquire"] or not walls["cube"]:
        raise SystemExit(f"no benchmark files of acquire/cube under {results}/benchmarks: a finished run is needed")
    keys = sorted(set(walls["acquire"]) & set(walls["cube"]))[: a.n]
    inventory = results / "inventory" / "glaciers.gpkg"
    times = {"acquire": [], "cube": []}
    same = 0
    with tempfile.TemporaryDirectory() as d:
        for k, (g, e) in enumerate(keys):
            t = time.perf_counter()
            from glaciermap.data.acquire import acquire

            if k == 0:
                layers, channel_sources = cube_plan(cfg)   # the cube rule's params (workflow/rules/common.smk)
            scenes = Path(d) / f"{g}_{e}.nc"
            acquire(g, e, acquire_cfg(cfg, e), str(inventory), str(scenes))
            times["acquire"].append(time.perf_counter() - t)
            t = time.perf_counter()
            from glaciermap.data.cube import cube

            dem, dhdt = raster_path(cfg, "dem"), raster_path(cfg, "dhdt", e)
            sel = Path(d) / f"{g}_{e}.csv"
            cube(g, e, str(scenes), str(inventory), cfg["selection"], dem, dhdt, dict(cfg["features"], id_column="glac_id"),
                 str(sel), str(Path(d) / f"{g}_{e}_cube.nc"), layers=layers, sources=channel_sources)
            times["cube"].append(time.perf_counter() - t)
            run_sel = results / "selection" / g / f"{e}.csv"
            if run_sel.exists() and pd.read_csv(sel).equals(pd.read_csv(run_sel)):
                same += 1
    print(f"{len(keys)} glacier-epochs redone in one process ({time.perf_counter() - t_start:.1f} s with the config "
          f"and imports); selection tables equal to the run's: {same} of {len(keys)}; the run's jobs "
          f"{'went through the worker' if cfg['execution']['worker'] else 'ran in their own processes'} "
          f"(execution.worker: {str(cfg['execution']['worker']).lower()} in {a.config})\n")
    print("| rule | jobs in the run | job wall median s | first call here s | later calls median s | overhead share |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    tot_wall = tot_work = 0.0
    for r in ("acquire", "cube"):
        w = statistics.median(walls[r][k] for k in keys)
        work = statistics.median(times[r][1:]) if len(times[r]) > 1 else times[r][0]
        tot_wall += sum(walls[r].values())
        tot_work += work * len(walls[r])
        print(f"| `{r}` | {len(walls[r])} | {w:.2f} | {times[r][0]:.2f} | {work:.2f} | {(w - work) / w:.0%} |")
    print(f"\ndata half per-glacier jobs: {tot_wall:.0f} s of job wall, ~{tot_work:.0f} s of work: overhead "
          f"~{(tot_wall - tot_work) / tot_wall:.0%} (goal of issue 16: < 10 %)")


if __name__ == "__main__":
    main()
