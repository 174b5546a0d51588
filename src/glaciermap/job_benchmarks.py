"""The `benchmark:` files of a finished run, read into one table: one row per job.

Every rule writes ``results/<region>/benchmarks/<rule>/<wildcards...>.tsv`` (a region-level job:
``benchmarks/<rule>.tsv``; ``train_fold``, the packed training of a fold's members, writes
``benchmarks/train/<model>/fold<k>/members.tsv`` beside its log). Snakemake's columns: ``s`` (wall seconds),
``h:m:s``, ``max_rss``, ``max_vms``, ``max_uss``, ``max_pss`` (MB), ``io_in``, ``io_out``, ``mean_load``,
``cpu_time`` (seconds of the job's process tree); ``-`` or ``NA`` where it could not measure (a process too short
to sample). Read by the benchmark scripts (``benchmarks/job_resources.py``, ``cost_curve.py``,
``job_overhead.py``, ``timeseries_scale.py``), not by the workflow; :func:`timed_run` times a whole command for
``dag_scale.py`` and ``cost_curve.py``.

A job run through the per-glacier worker (``glaciermap.worker``) has the client's memory and CPU in its benchmark
file; the worker's child writes its own as the last line of the job's log (``logs/`` mirrors ``benchmarks/``, with
``.log`` for ``.tsv``): :func:`worker_measures` reads that line, and :func:`read_benchmarks` adds it when given the
logs folder.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

#: the measures kept per job (a file with several rows, Snakemake's ``repeat()``, gives the median of each)
MEASURES = ("s", "max_rss", "cpu_time")
COLUMNS = ("rule", "key", *MEASURES, "path")
#: the worker child's own measures of a job (its log's last such line): wall and CPU seconds, peak RSS (MB) of the
#: child process (a child that served earlier jobs reports its peak over all of them: an upper bound)
WORKER_MEASURES = ("worker_s", "worker_rss", "worker_cpu")
_WORKER_LINE = re.compile(r"worker child \d+ \(job \d+ of this process\): wall ([0-9.]+) s, "
                          r"peak RSS ([0-9.]+) MB, CPU ([0-9.]+) s")


def rule_of(bench_dir: Path, tsv: Path) -> str:
    """The rule of a benchmark file below ``bench_dir``: <rule>.tsv or <rule>/<wildcards...>.tsv."""
    parts = Path(tsv).relative_to(bench_dir).parts
    if parts[0] == "train" and parts[-1] == "members.tsv":  # train.pack_members: one job per model and fold
        return "train_fold"
    return parts[0].removesuffix(".tsv") if len(parts) == 1 else parts[0]


def key_of(bench_dir: Path, tsv: Path) -> str:
    """The job's wildcard values as its file names them ("<glacier>/<epoch>"; "" for a region-level job)."""
    parts = Path(tsv).relative_to(bench_dir).parts
    if len(parts) == 1:
        return ""
    rest = list(parts[1:])
    if parts[0] == "train" and rest[-1] == "members.tsv":
        rest = rest[:-1]
    else:
        rest[-1] = rest[-1].removesuffix(".tsv")
    return "/".join(rest)


def read_benchmark(tsv: Path) -> dict | None:
    """One job's measures (:data:`MEASURES`; NaN where Snakemake wrote ``-`` or ``NA``), or None for a file that
    holds only the header (a job still running). A file without Snakemake's columns is an error naming it."""
    try:
        df = pd.read_csv(tsv, sep="\t", na_values=["-", "NA"])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{tsv}: not a Snakemake benchmark file ({e})") from e
    missing = [m for m in MEASURES if m not in df.columns]
    if missing:
        raise ValueError(f"{tsv}: not a Snakemake benchmark file (no column {', '.join(missing)})")
    if df.empty:
        return None
    out = {}
    for m in MEASURES:
        v = pd.to_numeric(df[m], errors="coerce").dropna()
        out[m] = float(v.median()) if len(v) else float("nan")
    return out


def worker_measures(log: Path) -> dict | None:
    """The worker child's own measures of a job (:data:`WORKER_MEASURES`) from the last such line of its log, or
    None (no log, or a job that ran in its own process)."""
    try:
        text = Path(log).read_text(errors="replace")
    except FileNotFoundError:
        return None
    found = _WORKER_LINE.findall(text)
    if not found:
        return None
    return dict(zip(WORKER_MEASURES, (float(v) for v in found[-1])))


def read_benchmarks(bench_dir: Path, rule: str | None = None, logs_dir: Path | None = None) -> pd.DataFrame:
    """Every job's measures under ``bench_dir`` (or only ``rule``'s): columns :data:`COLUMNS`, sorted by path;
    with ``logs_dir`` (the run's ``logs/``) also :data:`WORKER_MEASURES` (NaN for a job without the worker)."""
    bench_dir = Path(bench_dir)
    rows = []
    for tsv in sorted(bench_dir.rglob("*.tsv")):
        r = rule_of(bench_dir, tsv)
        if rule is not None and r != rule:
            continue
        m = read_benchmark(tsv)
        if m is None:
            continue
        row = {"rule": r, "key": key_of(bench_dir, tsv), **m, "path": str(tsv)}
        if logs_dir is not None:
            w = worker_measures(Path(logs_dir) / tsv.relative_to(bench_dir).with_suffix(".log"))
            row.update(w or dict.fromkeys(WORKER_MEASURES, float("nan")))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS) + (list(WORKER_MEASURES) if logs_dir is not None else []))


#: run by a fresh interpreter: the command, then its wall time and the peak RSS of its process tree (this child's
#: RUSAGE_CHILDREN: only the command's processes, not the caller's other children)
_TIMER = """
import resource, subprocess, sys, time
t0 = time.perf_counter()
rc = subprocess.run(sys.argv[1:]).returncode
wall = time.perf_counter() - t0
print(f"@@ {rc} {wall} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", flush=True)
"""


def timed_run(cmd: list[str], stderr=subprocess.STDOUT, env: dict | None = None) -> tuple[int, float, float, str]:
    """Run ``cmd``; (exit code, wall seconds, peak RSS MB of its largest process, its standard output).
    ``stderr``: where its standard error goes (default: into the returned output; or an open file)."""
    out = subprocess.run([sys.executable, "-c", _TIMER, *cmd], stdout=subprocess.PIPE, stderr=stderr, text=True,
                         env=env).stdout
    m = re.search(r"^@@ (-?\d+) (\S+) (\d+)\n?\Z", out, re.M)
    if m is None:
        raise RuntimeError(f"timed_run: no timing line from {cmd[:3]} ...; output ends: {out[-500:]}")
    return int(m.group(1)), float(m.group(2)), int(m.group(3)) / 1024, out[:m.start()]
