"""The reader of a run's `benchmark:` files (glaciermap.job_benchmarks) and the scripts that use it
(benchmarks/job_resources.py, job_overhead.py, cost_curve.py)."""

import math
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO, load_benchmark
from glaciermap.job_benchmarks import COLUMNS, key_of, read_benchmark, read_benchmarks, rule_of

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _write(path, *rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join("\t".join(str(v) for v in r) + "\n" for r in rows))
    return path


def _row(s, rss, cpu):
    return (s, "0:00:01", rss, 1, 1, 1, 0, 0, 0, cpu)


@pytest.fixture(scope="module")
def snakemake_run(tmp_path_factory):
    """A real Snakemake run with per-wildcard and region-level benchmark files."""
    d = tmp_path_factory.mktemp("bench_run")
    (d / "Snakefile").write_text(
        'G = ["A", "B", "C"]\n'
        'rule all:\n    input: "region.txt"\n'
        'rule per:\n    output: "out/{g}/{e}.txt"\n    benchmark: "benchmarks/per/{g}/{e}.tsv"\n'
        '    shell: "echo {wildcards.g} > {output}"\n'
        'rule region:\n    input: expand("out/{g}/2023.txt", g=G)\n    output: "region.txt"\n'
        '    benchmark: "benchmarks/region.tsv"\n    shell: "cat {input} > {output}"\n')
    p = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "-d", str(d), "-s", str(d / "Snakefile")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    return d


def test_reads_every_job_of_a_real_run(snakemake_run):
    bench = snakemake_run / "benchmarks"
    t = read_benchmarks(bench)
    assert list(t.columns) == list(COLUMNS)
    assert sorted(zip(t["rule"], t["key"])) == [("per", "A/2023"), ("per", "B/2023"), ("per", "C/2023"),
                                                ("region", "")]
    for _, r in t.iterrows():  # each row holds its own file's wall seconds
        assert r["s"] == pytest.approx(float(pd.read_csv(r["path"], sep="\t")["s"].iloc[0]))
        assert r["s"] >= 0 and not math.isnan(r["s"])
    only = read_benchmarks(bench, "per")
    assert set(only["rule"]) == {"per"} and len(only) == 3


def test_unmeasured_values_are_nan_and_a_running_job_is_left_out(tmp_path):
    b = tmp_path / "benchmarks"
    _write(b / "cube" / "G1" / "2023.tsv", ("2.5", "0:00:02", "-", "-", "-", "-", "-", "-", "-", "NA"))
    _write(b / "cube" / "G2" / "2023.tsv")  # the header only: Snakemake has not finished the job
    t = read_benchmarks(b)
    assert len(t) == 1 and t["key"].iloc[0] == "G1/2023"
    assert t["s"].iloc[0] == 2.5 and math.isnan(t["max_rss"].iloc[0]) and math.isnan(t["cpu_time"].iloc[0])
    assert read_benchmark(b / "cube" / "G2" / "2023.tsv") is None


def test_packed_training_is_train_fold_and_repeats_give_the_median(tmp_path):
    b = tmp_path / "benchmarks"
    tsv = _write(b / "train" / "dl4gam" / "fold3" / "members.tsv", _row(10, 500, 9), _row(30, 700, 20),
                 _row(20, 900, 40))
    member = _write(b / "train" / "dl4gam" / "fold3" / "member1.tsv", _row(5, 100, 4))
    assert (rule_of(b, tsv), key_of(b, tsv)) == ("train_fold", "dl4gam/fold3")
    assert (rule_of(b, member), key_of(b, member)) == ("train", "dl4gam/fold3/member1")
    assert read_benchmark(tsv) == {"s": 20.0, "max_rss": 700.0, "cpu_time": 20.0}


def test_a_file_that_is_not_a_benchmark_is_named(tmp_path):
    b = tmp_path / "benchmarks"
    bad = b / "qc" / "table.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("glacier\tarea\nG1\t1.0\n")
    with pytest.raises(ValueError, match=r"qc/table.tsv.*no column s, max_rss, cpu_time"):
        read_benchmarks(b)


def test_job_resources_reads_the_profile_as_snakemake_does(tmp_path):
    jr = load_benchmark("job_resources")
    profile = tmp_path / "config.yaml"
    profile.write_text(
        "__use_yte__: true\n__definitions__:\n  - |\n    def twice(**res):\n        return res\n"
        "set-resources:\n  a:\n    mem_mb: \"100 * attempt\"\n    runtime: 5\n"
        "  b: ?twice(mem_mb=\"7 * attempt\")\n")
    assert jr.profile_requests(profile) == {"a": (100.0, 5.0), "b": (7.0, pytest.approx(float("nan"), nan_ok=True))}
    profile.write_text("set-resources:\n  c:\n    mem_mb: lots\n")
    with pytest.raises(ValueError, match=r"set-resources c.mem_mb = 'lots'"):
        jr.profile_requests(profile)
    # the project's profile: every rule it sizes gets its memory (train_fold too, whose runtime its rule sets)
    real = jr.profile_requests(REPO / "workflow/profiles/default/config.yaml")
    assert {"train", "train_fold", "infer", "importance"} <= set(real)
    assert all(mem > 0 for mem, _ in real.values())
    assert math.isnan(real["train_fold"][1]) and real["infer"][1] > 0


def test_job_resources_flags_a_request_below_the_measured_peak():
    jr = load_benchmark("job_resources")
    bench = pd.DataFrame({"rule": ["infer", "infer", "train"], "s": [10.0, 30.0, 60.0],
                          "max_rss": [900.0, 1200.0, 500.0], "cpu_time": [9.0, 25.0, 50.0]})
    t = jr.table(bench, {"infer": (1000.0, 1.0), "train": (8000.0, 240.0)})
    assert t.loc["infer", "flag"] == "UNDER" and t.loc["train", "flag"] == ""
    assert t.loc["infer", "jobs"] == 2 and t.loc["infer", "mem_headroom"] == pytest.approx(1000 / 1200)
    assert t.loc["infer", "time_headroom"] == pytest.approx(60 / 30)


def test_job_overhead_keys_jobs_by_glacier_and_epoch(tmp_path):
    jo = load_benchmark("job_overhead")
    _write(tmp_path / "benchmarks" / "acquire" / "RGI-1" / "2015.tsv", _row(1.25, 10, 1))
    _write(tmp_path / "benchmarks" / "acquire" / "RGI-1" / "2023.tsv", _row(0.75, 10, 1))
    _write(tmp_path / "benchmarks" / "cube" / "RGI-1" / "2023.tsv", _row(9.0, 10, 1))
    assert jo.job_walls(tmp_path, "acquire") == {("RGI-1", "2015"): 1.25, ("RGI-1", "2023"): 0.75}


def test_the_worker_childs_own_measures_come_from_the_jobs_log(tmp_path):
    from glaciermap.job_benchmarks import worker_measures
    from glaciermap.worker import CHILD_LINE

    b, logs = tmp_path / "benchmarks", tmp_path / "logs"
    _write(b / "cube" / "G1" / "2023.tsv", _row(1.5, 60, 0.1))  # the client's memory and CPU
    _write(b / "cube" / "G2" / "2023.tsv", _row(3.0, 400, 2.9))  # ran in its own process: no child line
    log = logs / "cube" / "G1" / "2023.log"
    log.parent.mkdir(parents=True)
    stamp = "2026-12-02 15:46:57,619 INFO glaciermap.worker: "
    log.write_text(stamp + CHILD_LINE % (12329, 1, 0.5, 100, 0.4, 1) + "\n"  # an earlier attempt of the job
                   + "2026-12-02 15:47:00,000 INFO glaciermap.data.cube: cube written\n"
                   + stamp + CHILD_LINE % (12329, 11, 1.234, 340, 1.1, 7) + "\n")
    assert worker_measures(log) == {"worker_s": 1.234, "worker_rss": 340.0, "worker_cpu": 1.1}
    assert worker_measures(logs / "nope.log") is None
    t = read_benchmarks(b, logs_dir=logs).set_index("key")
    assert t.loc["G1/2023", "worker_rss"] == 340.0 and math.isnan(t.loc["G2/2023", "worker_rss"])
    # job_resources takes the child's peak where it is larger and adds the two CPU times
    jr = load_benchmark("job_resources")
    tab = jr.table(t.reset_index(), {})
    assert tab.loc["cube", "rss_mb_max"] == 400.0 and tab.loc["cube", "rss_mb_median"] == pytest.approx(370.0)
    assert tab.loc["cube", "cpu_s_max"] == pytest.approx(2.9)
    assert sorted(jr.table(t.reset_index().iloc[[0]], {})[["rss_mb_max", "cpu_s_max"]].iloc[0]) == \
        pytest.approx(sorted([340.0, 1.2]))
    jo = load_benchmark("job_overhead")
    assert jo.child_walls(tmp_path, "cube") == {("G1", "2023"): 1.234}


def test_timed_run_reports_exit_wall_peak_and_output(tmp_path):
    from glaciermap.job_benchmarks import timed_run

    # a command that holds ~60 MB and prints on both streams
    code = "import sys, time; b = bytearray(60 * 2**20); time.sleep(0.2); print('out'); print('err', file=sys.stderr)"
    rc, wall, peak, out = timed_run([sys.executable, "-c", code])
    assert rc == 0 and wall >= 0.2 and peak >= 60 and out.splitlines() == ["out", "err"]
    with open(tmp_path / "err.log", "w") as fh:  # standard error into a file: the output keeps stdout only
        rc, _, _, out = timed_run([sys.executable, "-c", code + "; sys.exit(3)"], stderr=fh)
    assert rc == 3 and out == "out\n" and (tmp_path / "err.log").read_text() == "err\n"
