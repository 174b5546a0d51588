"""A live single-node Slurm (tools/slurm-cluster.sh) running the workflow through `--profile slurm`.

Not a mock: the session fixture installs Debian's Slurm when missing (root, apt), starts munged,
slurmctld and slurmd, and always stops them. The tests assert that the jobs ran as Slurm jobs (every
rule log names its SLURM_JOB_ID, which is one Snakemake submitted; the per-glacier chains went as one
group job), that a failing job is reported with its log and that its retry got twice the memory, and
that the results equal a local run's. Every subprocess is bounded (`timeout -k` and a Python timeout).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import xarray as xr
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tools" / "slurm-cluster.sh"
SUBMITTED = re.compile(r"Job \S+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


def _bounded(cmd, limit, **kw):
    """Run ``cmd`` under ``timeout -k`` (SIGINT first: Snakemake then cancels its Slurm jobs)."""
    return subprocess.run(["timeout", "-s", "INT", "-k", "30", str(limit), *map(str, cmd)], capture_output=True,
                          text=True, timeout=limit + 60, **kw)


def _env():
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    for k in [k for k in env if k.startswith("GLACIERMAP_SLURM_")]:  # the profile's defaults, not the caller's site
        del env[k]
    env["GLACIERMAP_SLURM_PARTITION"] = "main"
    return env


@pytest.fixture(scope="session")
def slurm_cluster():
    """The local cluster: installed if missing, started, and stopped at the end whatever happens."""
    if os.geteuid() != 0:
        pytest.fail("the live Slurm test needs root (it installs and starts slurmctld/slurmd/munged); run `make test` as root")
    env = _env()
    inst = _bounded(["bash", CLUSTER, "install"], 900, env=env)
    assert inst.returncode == 0, f"tools/slurm-cluster.sh install failed:\n{inst.stderr[-3000:]}"
    try:
        start = _bounded(["bash", CLUSTER, "start"], 180, env=env)
        assert start.returncode == 0, f"tools/slurm-cluster.sh start failed:\n{start.stderr[-3000:]}"
        yield env
    finally:
        stop = _bounded(["bash", CLUSTER, "stop"], 120, env=env)
        print(stop.stderr[-2000:], file=sys.stderr)


def _snakemake(work, profile, *args, env, limit=420, snakefile=REPO / "Snakefile", configfile=True):
    cmd = [sys.executable, "-m", "snakemake", "--profile", profile, "-s", snakefile, "-d", work]
    if configfile:
        cmd += ["--configfile", Path(work) / "config.yaml"]
    # cwd = repository root: `--profile slurm` / `--profile local` are the root-level profile folders
    return _bounded([*cmd, *args], limit, cwd=REPO, env=env)


@pytest.fixture(scope="module")
def two_runs(tiny_region, tmp_path_factory, slurm_cluster):
    """Two chains (glacier, epoch) of the data half, once through Slurm and once locally, on the same inputs."""
    base = tmp_path_factory.mktemp("slurm_wf")
    inputs = base / "inputs"
    shutil.copytree(tiny_region / "inputs", inputs)
    from conftest import _repoint

    # every demo input path (inventory, catalog, velocity, coherence, debris map) leads to the copy
    cfg = _repoint(yaml.safe_load((REPO / "config.yaml").read_text()), "resources/demo/inputs/", f"{inputs}/")
    cfg["region"] = "tiny"
    cfg["inventory"]["path"] = str(inputs / "inventory.gpkg")
    cfg["stac"]["source"] = str(inputs / "catalog" / "catalog.json")
    cfg["grid"]["patch_size"] = 32
    cfg["evaluation"] = {"truth_dir": None}
    cfg["split"] = {"n_folds": 2, "val_fraction": 0.3}  # as tests/conftest.py model_run
    cfg["train"] = {"members": 2, "epochs": 1, "patch_size": 32, "stride": 16, "val_stride": 32, "batch_size": 8}
    inv = gpd.read_file(inputs / "inventory.gpkg").sort_values("area_km2", ascending=False)
    g1, g2 = list(inv["glac_id"][:2])  # the two largest: mapped (>= 0.1 km2)
    chains = [(g1, "inventory"), (g2, "2023")]
    targets = [f"results/tiny/{kind}/{g}/{e}.{ext}" for g, e in chains for kind, ext in (("cubes", "nc"), ("selection", "csv"))]
    works = {}
    for name in ("slurm", "local"):
        works[name] = base / name
        works[name].mkdir()
        (works[name] / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = slurm_cluster
    # what each job will ask for (rules size themselves from cube size and scene count): read from a dry run
    plan = _snakemake(works["slurm"], "slurm", "-n", *targets, env=env, limit=300)
    assert plan.returncode == 0, (plan.stdout + plan.stderr)[-4000:]
    local = subprocess.Popen(  # the local run goes alongside the Slurm one (bounded below)
        ["timeout", "-s", "INT", "-k", "30", "420", sys.executable, "-m", "snakemake", "--profile", "local",
         "-s", REPO / "Snakefile", "-d", works["local"], "--configfile", works["local"] / "config.yaml",
         "--cores", "1", *targets],  # targets not right after --configfile (it takes several values)
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    slurm = _snakemake(works["slurm"], "slurm", "--verbose", *targets, env=env)
    local_out, _ = local.communicate(timeout=500)
    (base / "slurm.out").write_text(slurm.stdout + slurm.stderr)  # kept for a look after a failure
    (base / "local.out").write_text(local_out)
    return {"works": works, "chains": chains, "slurm": slurm, "local_rc": local.returncode, "local_out": local_out,
            "planned": _planned_resources(plan.stdout + plan.stderr)}


def _planned_resources(out: str) -> dict:
    """(rule, wildcards) -> {mem_mb, runtime} of every job in a dry run's job descriptions."""
    jobs = {}
    for block in re.split(r"\n\s*(?=(?:local)?rule \w+:)", out):  # group members are indented
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        res = re.search(r"\n\s+resources: (.*)", block)
        if m and res:
            w = re.search(r"\n\s+wildcards: (.*)", block)
            vals = dict(kv.split("=", 1) for kv in res.group(1).split(", ") if "=" in kv)
            jobs[(m.group(1), w.group(1).strip() if w else "")] = {k: int(vals[k]) for k in ("mem_mb", "runtime")}
    return jobs


def _job_id(log: Path):
    m = re.search(r"SLURM_JOB_ID=(\d+)", log.read_text())
    return m.group(1) if m else None


def test_slurm_run_succeeds_and_jobs_ran_as_slurm_jobs(two_runs):
    p, work = two_runs["slurm"], two_runs["works"]["slurm"]
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-6000:]
    assert "Using profiles slurm and workflow specific profile profiles/default" in out  # both profiles apply
    submitted = dict(SUBMITTED.findall(out))
    # inventory + ONE group job for both acquire -> cube chains (4 rule jobs)
    assert len(submitted) == 2, submitted
    assert sum("group_glacier" in log for log in submitted.values()) == 1, submitted
    logs = work / "results" / "tiny" / "logs"
    assert _job_id(logs / "inventory.log") in submitted
    group_ids = set()
    for g, e in two_runs["chains"]:
        for rule in ("acquire", "cube"):
            jid = _job_id(logs / rule / g / f"{e}.log")
            assert jid in submitted, f"{rule} {g} {e}: log carries no submitted SLURM_JOB_ID ({jid})"
            group_ids.add(jid)
    assert len(group_ids) == 1 and group_ids != {_job_id(logs / "inventory.log")}
    # the group job is sized by the profile's `cores: 1` (its jobs run one at a time): 1 CPU, the largest
    # job's memory and the summed runtime of its 4 jobs, each sized from its glacier (glaciermap.resources)
    planned = two_runs["planned"]
    chain_jobs = [v for (rule, _), v in planned.items() if rule in ("acquire", "cube")]
    assert len(chain_jobs) == 4, planned
    mem, runtime = max(j["mem_mb"] for j in chain_jobs), sum(j["runtime"] for j in chain_jobs)
    group_call = [l for l in out.splitlines() if l.startswith("sbatch call:") and "group_glacier" in l]
    assert len(group_call) == 1, group_call
    assert all(f in group_call[0] for f in ("--cpus-per-task=1 ", f"--mem {mem} ", f" -t {runtime} ")), \
        (group_call, mem, runtime)
    # region-level rules size themselves too (inventory: from the number of glaciers)
    from glaciermap.resources import region_job

    inv = planned[("inventory", "")]
    n_mapped = int((pd.read_csv(work / "results" / "tiny" / "inventory" / "manifest.csv")["qc_status"] == "ok").sum())
    assert inv == {k: region_job("inventory", n_mapped)[k] for k in ("mem_mb", "runtime")}, inv
    inv_call = [l for l in out.splitlines() if l.startswith("sbatch call:") and "rule_inventory" in l]
    assert f" -t {inv['runtime']} " in inv_call[0] and f"--mem {inv['mem_mb']} " in inv_call[0], inv_call


def test_slurm_results_equal_a_local_run(two_runs):
    assert two_runs["slurm"].returncode == 0
    assert two_runs["local_rc"] == 0, two_runs["local_out"][-4000:]
    a, b = (two_runs["works"][k] / "results" / "tiny" for k in ("slurm", "local"))
    for g, e in two_runs["chains"]:
        pd.testing.assert_frame_equal(pd.read_csv(a / "selection" / g / f"{e}.csv"),
                                      pd.read_csv(b / "selection" / g / f"{e}.csv"))
        with xr.open_dataset(a / "cubes" / g / f"{e}.nc", decode_coords="all") as ca, \
                xr.open_dataset(b / "cubes" / g / f"{e}.nc", decode_coords="all") as cb:
            assert ca.attrs["status"] == "ok"
            assert ca.sizes["band"] >= 16
            xr.testing.assert_identical(ca.load(), cb.load())
    if "SLURM_JOB_ID" not in os.environ:  # the marker is Slurm's, not something every run writes
        local_logs = two_runs["works"]["local"] / "results" / "tiny" / "logs"
        assert _job_id(local_logs / "inventory.log") is None


FAILING = '''
rule all:
    input: "ok.txt", "boom.txt"

rule ok:
    output: "ok.txt"
    log: "logs/ok.log"
    shell: "echo fine > {output} 2> {log}"

rule boom:
    output: "boom.txt"
    log: "logs/boom.log"
    resources: mem_mb=lambda wc, attempt: 100 * attempt, runtime=5
    shell: "echo 'glaciermap-test: deliberate failure' > {log}; exit 3"
'''


def test_failing_job_is_reported_with_its_log_and_retried_with_more_memory(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(FAILING)
    p = _snakemake(tmp_path, "slurm", "--retries", "1", "--verbose", env=slurm_cluster, limit=300,
                   snakefile=tmp_path / "Snakefile", configfile=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-4000:]
    assert (tmp_path / "ok.txt").read_text().strip() == "fine"  # keep-going: the other job still ran
    assert not (tmp_path / "boom.txt").exists()
    assert "Error in rule boom" in out
    assert "logs/boom.log" in out  # the rule log is named ...
    assert "glaciermap-test: deliberate failure" in out  # ... and shown (show-failed-logs)
    assert re.search(r"SLURM-job '\d+' failed, SLURM status is: 'FAILED'", out), out[-4000:]
    boom = [(jid, log) for jid, log in SUBMITTED.findall(out) if "rule_boom" in log]
    assert len(boom) == 2, boom  # first attempt and one retry
    for (jid, slurm_log), mem in zip(boom, ("100M", "200M")):  # memory scales with attempt in the real job
        show = _bounded(["scontrol", "show", "job", jid], 30, env=slurm_cluster).stdout
        assert f"MinMemoryNode={mem}" in show, show
        assert "JobState=FAILED" in show, show
        assert slurm_log in out  # the Slurm log of each failed job is named as well


def _profile_resources(rule: str) -> tuple[int, int]:
    """(mem_mb, runtime) at attempt 1 that the workflow profile declares for ``rule``."""
    text = (REPO / "workflow" / "profiles" / "default" / "config.yaml").read_text()
    m = re.search(rf"^  {rule}: \?gpu\(mem_mb=\"(\d+) \* attempt\", runtime=\"(\d+) \* attempt\"\)", text, re.M)
    assert m, f"no resources for {rule} in the workflow profile"
    return int(m.group(1)), int(m.group(2))


def test_packed_training_job_runs_through_slurm_and_equals_the_local_members(model_run, slurm_cluster, tmp_path):
    """Fold 0 of the finished tiny modelling run, retrained as ONE packed Slurm job (train_fold, 2 members)."""
    import torch

    src, proc = model_run
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    work = tmp_path / "wf"
    shutil.copytree(src, work, symlinks=True)  # results, inputs, config and .snakemake (mtimes and metadata kept)
    members = work / "results" / "tiny" / "models" / "dl4gam" / "fold0"
    local = {}
    for m in (0, 1):
        d = members / f"member{m}"
        local[m] = torch.load(d / "best.pt", map_location="cpu", weights_only=False)["model"]
        for f in ("done.json", "best.pt", "last.pt", "metrics.csv"):
            (d / f).unlink()
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["train"]["pack_members"] = True
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    # packed, the fold's ensemble.json is the job's output (the members' files are its own, like last.pt)
    (members / "ensemble.json").unlink()
    targets = ["results/tiny/models/dl4gam/fold0/ensemble.json"]

    plan = _snakemake(work, "slurm", "-n", *targets, env=slurm_cluster, limit=300)
    assert plan.returncode == 0, (plan.stdout + plan.stderr)[-4000:]
    assert re.search(r"^train_fold\s+1$", plan.stdout, re.M) and re.search(r"^total\s+1$", plan.stdout, re.M), \
        plan.stdout[-3000:]  # nothing upstream re-runs: only the packed training job

    p = _snakemake(work, "slurm", "--verbose", *targets, env=slurm_cluster, limit=600)
    out = p.stdout + p.stderr
    (tmp_path / "slurm.out").write_text(out)
    assert p.returncode == 0, out[-6000:]
    submitted = dict(SUBMITTED.findall(out))
    assert len(submitted) == 1 and "rule_train_fold" in next(iter(submitted.values())), submitted
    jid = next(iter(submitted))
    log = work / "results" / "tiny" / "logs" / "train" / "dl4gam" / "fold0" / "members.log"
    assert _job_id(log) == jid, log.read_text()[-2000:]
    # memory from the workflow profile, runtime from the rule: the profile's per-member train runtime x 2 members
    mem = int(re.search(r'^  train_fold: \?gpu\(mem_mb="(\d+) \* attempt"\)', (REPO / "workflow/profiles/default/config.yaml")
                        .read_text(), re.M).group(1))
    runtime = 2 * _profile_resources("train")[1]
    call = [l for l in out.splitlines() if l.startswith("sbatch call:") and "rule_train_fold" in l]
    assert len(call) == 1 and f"--mem {mem} " in call[0] and f" -t {runtime} " in call[0], call
    # GPU request only when GLACIERMAP_SLURM_GPUS/_GPU_GRES are set (they are not here)
    assert "--gpus" not in call[0] and "--gres" not in call[0], call
    acct = _bounded(["scontrol", "show", "job", jid], 30, env=slurm_cluster).stdout
    assert "JobState=COMPLETED" in acct, acct
    for m in (0, 1):
        d = members / f"member{m}"
        done = yaml.safe_load((d / "done.json").read_text())
        assert done["complete"] and done["epochs_done"] == cfg["train"]["epochs"], done
        slurm_model = torch.load(d / "best.pt", map_location="cpu", weights_only=False)["model"]
        assert slurm_model.keys() == local[m].keys()
        # same seed, data and thread count: the Slurm job reproduces the local training bit for bit
        diff = [k for k in local[m] if not torch.equal(local[m][k], slurm_model[k])]
        assert not diff, f"member {m}: {len(diff)} tensors differ from the local run, e.g. {diff[:3]}"
