"""benchmarks/run_timeline.py reads job starts and finishes from a Snakemake log."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import run_timeline  # noqa: E402

LOG = """Building DAG of jobs...

[Tue Dec  1 16:33:17 2026]
localrule inventory:
    input: a
    jobid: 2
    resources: tmpdir=/tmp

[Tue Dec  1 16:33:19 2026]
Finished jobid: 2 (Rule: inventory)
1 of 3 steps (33%) done

[Tue Dec  1 16:33:19 2026]
rule train:
    jobid: 5
    threads: 2

[Tue Dec  1 16:33:29 2026]
Finished jobid: 5 (Rule: train)

[Tue Dec  1 16:33:29 2026]
rule acquire:
    jobid: 7
    wildcards: glacier=G1

[Tue Dec  1 16:33:29 2026]
rule acquire:
    jobid: 8
    wildcards: glacier=G2

[Tue Dec  1 16:33:33 2026]
Finished jobid: 8 (Rule: acquire)

[Tue Dec  1 16:33:35 2026]
Finished jobid: 7 (Rule: acquire)
"""


def test_jobs_and_occupancy_from_a_log():
    jobs = run_timeline.parse(LOG.splitlines())
    assert {k: (j["rule"], j["start"], j["end"], j["threads"]) for k, j in jobs.items()} == {
        2: ("inventory", 0, 2, 1), 5: ("train", 2, 12, 2), 7: ("acquire", 12, 18, 1), 8: ("acquire", 12, 16, 1)}
    occ, wall = run_timeline.occupancy(jobs, cores=2)
    assert wall == 18
    # 0-2 s one core (inventory), 2-12 both (train, 2 threads), 12-16 both (two acquire), 16-18 one
    assert (occ[0], occ[1], occ[2]) == (0, 4, 14)


def test_a_log_without_jobs_says_so(tmp_path):
    """The log of `snakemake --report` (the last log of `make run`) holds no job: a message, not a division by 0."""
    import pytest

    log = tmp_path / "report.snakemake.log"
    log.write_text("Building DAG of jobs...\nCreating report...\nReport created.\n")
    with pytest.raises(SystemExit, match="no job started and finished"):
        run_timeline.main([str(log)])
