"""Where the wall time of a finished Snakemake run went: cores busy over time, and the jobs' time per rule.

    python benchmarks/run_timeline.py .snakemake/log/<run>.snakemake.log [--cores 2]

Reads the run's log (each job's start and finish are stamped to the second) and prints one table of the time
with 0, 1, ..., N jobs running (weighted by each job's threads), the busy share of the cores, and the rules
ranked by summed job wall time (start to finish as the scheduler saw it, so including the interpreter's start
and imports). Used for the `make run` budget (README, docs/performance.md).
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from datetime import datetime

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
THREADS = re.compile(r"^\s+threads: (\d+)$")
FINISH = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")


def parse(lines):
    """jobid -> {"rule", "start", "end", "threads"} (seconds from the first stamp)."""
    jobs, now, t0, pending = {}, None, None, None
    for line in lines:
        line = line.rstrip("\n")
        m = STAMP.match(line)
        if m:
            now = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            t0 = t0 or now
            continue
        if now is None:
            continue
        t = (now - t0).total_seconds()
        if m := START.match(line):
            pending = {"rule": m.group(1), "start": t, "threads": 1}
        elif pending is not None and (m := THREADS.match(line)):
            pending["threads"] = int(m.group(1))
        elif pending is not None and (m := JOBID.match(line)):
            jobs[int(m.group(1))] = pending
        if m := FINISH.match(line):
            if int(m.group(1)) in jobs:
                jobs[int(m.group(1))]["end"] = t
    return {k: v for k, v in jobs.items() if "end" in v}


def occupancy(jobs, cores):
    """seconds with k cores busy (k = 0..cores, threads capped at cores), and the wall time."""
    events = sorted([(j["start"], min(j["threads"], cores)) for j in jobs.values()]
                    + [(j["end"], -min(j["threads"], cores)) for j in jobs.values()])
    busy, last, out = 0, 0.0, defaultdict(float)
    for t, d in events:
        out[min(busy, cores)] += t - last
        busy, last = busy + d, t
    return out, last


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", help="a finished run's .snakemake/log/<...>.snakemake.log")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--top", type=int, default=15, help="rules listed (by summed job time)")
    a = ap.parse_args(argv)
    with open(a.log) as f:
        jobs = parse(f)
    if not jobs:  # e.g. the log of `snakemake --report` or of a run with nothing to do
        raise SystemExit(f"{a.log}: no job started and finished in this log (a report or an up-to-date run?); "
                         "pass the log of the run itself")
    occ, wall = occupancy(jobs, a.cores)
    print(f"jobs {len(jobs)}, wall {wall:.0f} s ({wall / 60:.1f} min) from the first to the last job event")
    print("| cores busy | seconds | share |\n| ---: | ---: | ---: |")
    for k in range(a.cores + 1):
        print(f"| {k} | {occ[k]:.0f} | {occ[k] / wall:.1%} |")
    core_s = sum(k * s for k, s in occ.items())
    print(f"busy share of the {a.cores} cores: {core_s / (a.cores * wall):.1%} ({core_s:.0f} core-seconds)\n")
    per = defaultdict(lambda: [0, 0.0, 0.0])
    for j in jobs.values():
        d = j["end"] - j["start"]
        p = per[j["rule"]]
        p[0] += 1
        p[1] += d
        p[2] = max(p[2], d)
    print("| rule | jobs | job seconds (sum) | max |\n| --- | ---: | ---: | ---: |")
    for r, (n, s, mx) in sorted(per.items(), key=lambda kv: -kv[1][1])[:a.top]:
        print(f"| `{r}` | {n} | {s:.0f} | {mx:.0f} |")
    print(f"| all | {len(jobs)} | {sum(p[1] for p in per.values()):.0f} | |")


if __name__ == "__main__":
    main()
