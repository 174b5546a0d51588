"""Per-rule job resources measured by Snakemake's `benchmark:` files, next to what the workflow profile asks.

Usage: python benchmarks/job_resources.py [results/<region>] [--profile workflow/profiles/default/config.yaml]

Every rule writes results/<region>/benchmarks/<rule>/...tsv (wall seconds, peak RSS, CPU seconds of the
job's process tree). This prints one row per rule: jobs, median and max wall seconds, max CPU seconds,
median and max peak RSS (MB), and the memory and runtime the workflow profile requests at attempt 1, with
the headroom (requested / measured max). Rules whose request is below the measured peak are flagged.
The table in docs/performance.md ("Job resources") is this script's output for the demo region.
With the worker (`execution.worker`, the default), a per-glacier job's benchmark file holds the client's memory and
CPU; its log ends with the worker child's own: the table takes the larger peak RSS of the two and adds the CPU
times (`glaciermap.job_benchmarks`). A child that served several jobs reports its peak over all of them, so with the
worker the peaks are upper bounds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from glaciermap.job_benchmarks import read_benchmarks


def profile_requests(profile: Path) -> dict:
    """rule -> (mem_mb, runtime minutes) at attempt 1 that the workflow profile's set-resources asks (NaN where
    it sets none: e.g. train_fold's runtime is set in its rule), read through yte as Snakemake reads it."""
    import yte

    with open(profile) as fh:
        spec = yte.process_yaml(fh)
    out = {}
    for rule, res in (spec.get("set-resources") or {}).items():
        out[rule] = tuple(_at_attempt(res.get(k), profile, rule, k) for k in ("mem_mb", "runtime"))
    return out


def _at_attempt(value, profile: Path, rule: str, key: str, attempt: int = 1) -> float:
    """A resource of the profile at one attempt: a number, or an expression in ``attempt`` as Snakemake takes it."""
    if value is None:
        return float("nan")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(eval(str(value), {"__builtins__": {}}, {"attempt": attempt}))
    except Exception as e:  # noqa: BLE001 - named in the message
        raise ValueError(f"{profile}: set-resources {rule}.{key} = {value!r} is not a number or an expression "
                         f"in attempt ({e})") from e


def table(bench: pd.DataFrame, requests: dict) -> pd.DataFrame:
    bench = bench.copy()
    if "worker_rss" in bench:  # jobs through the worker: the child's own memory and CPU
        bench["max_rss"] = bench[["max_rss", "worker_rss"]].max(axis=1)
        bench["cpu_time"] = bench["cpu_time"].add(bench["worker_cpu"], fill_value=0)
    g = bench.groupby("rule")
    t = pd.DataFrame({"jobs": g.size(), "s_median": g["s"].median(), "s_max": g["s"].max(),
                      "cpu_s_max": g["cpu_time"].max(), "rss_mb_median": g["max_rss"].median(),
                      "rss_mb_max": g["max_rss"].max()})
    t["mem_mb_req"] = [requests.get(r, (float("nan"), float("nan")))[0] for r in t.index]
    t["runtime_min_req"] = [requests.get(r, (float("nan"), float("nan")))[1] for r in t.index]
    t["mem_headroom"] = t["mem_mb_req"] / t["rss_mb_max"]
    t["time_headroom"] = 60 * t["runtime_min_req"] / t["s_max"]
    t["flag"] = ["UNDER" if (h < 1) else "" for h in t["mem_headroom"]]
    return t.sort_values("s_max", ascending=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="?", default="results/demo")
    ap.add_argument("--profile", default=str(Path(__file__).resolve().parents[1] / "workflow/profiles/default/config.yaml"))
    a = ap.parse_args(argv)
    bench = read_benchmarks(Path(a.results) / "benchmarks", logs_dir=Path(a.results) / "logs")
    if bench.empty:
        raise SystemExit(f"no benchmark files under {a.results}/benchmarks (run the workflow first)")
    t = table(bench, profile_requests(Path(a.profile)))
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(t.round({"s_median": 1, "s_max": 1, "cpu_s_max": 1, "rss_mb_median": 0, "rss_mb_max": 0,
                       "mem_headroom": 1, "time_headroom": 0}).to_string())
    print(f"\n{len(bench)} jobs, {bench['s'].sum():.0f} s of job wall time, {bench['cpu_time'].sum():.0f} s CPU")
    return t


if __name__ == "__main__":
    main()
