"""Profiles (root `slurm`, `local`, `profiles` -> workflow/profiles), the GPU switch and train.pack_members.

Dry runs only (no jobs): what Snakemake plans under each setting, read from its job table and job info.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import tiny_workdir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workdir(tiny_region, tmp_path_factory):
    work = tmp_path_factory.mktemp("profiles")
    cfg = tiny_workdir(tiny_region, work)
    cfg["evaluation"] = {"truth_dir": None}
    cfg["split"] = {"n_folds": 2, "val_fraction": 0.3}
    cfg["train"] = {"members": 3, "epochs": 1, "patch_size": 32, "stride": 16, "val_stride": 32, "batch_size": 8}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    return work


def _dry(work, *args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLACIERMAP_SLURM_")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "snakemake", "--profile", "local", "-s", str(REPO / "Snakefile"), "-d", str(work),
           "--configfile", str(work / "config.yaml"), "-n", *args]
    p = subprocess.run(["timeout", "-k", "10", "240", *cmd], capture_output=True, text=True, cwd=REPO, env=env,
                       timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    return p.stdout + p.stderr


def _counts(out):
    table = out[out.rindex("Job stats:"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_root_profiles_resolve_and_load_the_workflow_profile(workdir):
    for name in ("slurm", "local", "profiles"):
        assert (REPO / name).is_symlink() and (REPO / name).resolve().is_dir(), name
    out = _dry(workdir, "--until", "train")
    assert "Using profiles local and workflow specific profile profiles/default" in out
    # the model jobs' resources come from the workflow profile (train: 8000 MB, 240 min) ...
    train = out[out.index("rule train:"):]
    assert "runtime=240" in train[:train.index("\n\n")] and "mem_mb=8000" in train[:train.index("\n\n")]


def test_default_profile_rate_limit_keeps_the_scheduler_loop_quiet():
    """The workflow profile's job rate limit has a timespan of at least 10 s: Snakemake 9 re-arms one timer per
    scheduling round over that timespan and adds a timer chain per job event, so a 1 s timespan made the main
    process loop hundreds of times a second (97 s of CPU against 28 s on the demo's data half)."""
    from snakemake.settings.types import MaxJobsPerTimespan

    prof = yaml.safe_load((REPO / "workflow" / "profiles" / "default" / "config.yaml").read_text())
    limit = MaxJobsPerTimespan.parse_choice(prof["max-jobs-per-timespan"])
    assert limit.timespan >= 10 and limit.max_jobs / limit.timespan >= 100, (limit.max_jobs, limit.timespan)
    # the Slurm profile does not override it (the workflow profile applies to both)
    assert "max-jobs-per-timespan" not in yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())


def _job_resources(out, rule):
    """wildcards -> resources dict of every planned job of ``rule``."""
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        if re.match(rf"(?:local)?rule {rule}:", block.strip()):
            w = re.search(r"\n\s+wildcards: (.*)", block)
            res = re.search(r"\n\s+resources: (.*)", block).group(1)
            jobs[w.group(1).strip() if w else ""] = {k: int(v) for k, v in re.findall(r"(mem_mb|runtime)=(\d+)", res)}
    return jobs


def test_per_glacier_and_region_jobs_are_sized_from_glacier_and_region_size(workdir):
    from glaciermap.config import load_config
    from glaciermap.data.grid import cube_margin_m
    from glaciermap.data.inventory import glacier_list
    from glaciermap.resources import cube_megapixels, glacier_job, region_job

    out = _dry(workdir, "qc")
    cfg = load_config(workdir / "config.yaml")
    gl = glacier_list(cfg)
    gl = gl[gl["qc_status"] == "ok"].set_index("glac_id")
    margin = cube_margin_m(cfg["grid"]["patch_size"], cfg["grid"]["resolution"])
    mpx = {g: cube_megapixels(r.xmin, r.ymin, r.xmax, r.ymax, margin, cfg["grid"]["resolution"]) for g, r in gl.iterrows()}
    from glaciermap.data.acquire import candidate_ids

    feats = _job_resources(out, "cube")
    assert len(feats) == 2 * len(gl)
    for wc, res in feats.items():
        g, e = re.search(r"glacier=([^,]+), epoch=(\S+)", wc).groups()
        n = len(candidate_ids(gl.loc[g], cfg, e))
        assert res == glacier_job("cube", mpx[g], n), (wc, res)
    # a bigger cube asks for at least as much memory as a smaller one
    by_size = sorted(feats.items(), key=lambda kv: mpx[re.search(r"glacier=([^,]+)", kv[0]).group(1)])
    assert [r["mem_mb"] for _, r in by_size] == sorted(r["mem_mb"] for _, r in by_size)
    assert _job_resources(out, "qc")[""] == region_job("qc", len(gl))


def test_pack_members_switch_changes_job_counts_not_outputs(workdir, tmp_path):
    per_member = _counts(_dry(workdir))
    packed_cfg = tmp_path / "packed.yaml"
    packed_cfg.write_text(yaml.safe_dump({"train": {"pack_members": True}}))
    packed = _counts(_dry(workdir, "--configfile", str(workdir / "config.yaml"), str(packed_cfg)))
    # three model variants (config.yaml: dl4gam with 3 members here, dl4gam_no_dhdt with 1, debris with 2) on 2 folds
    model_folds = per_member["normalise"]
    assert model_folds == 3 * 2
    assert per_member["train"] == 2 * (3 + 1 + 2) and per_member["ensemble"] == model_folds
    assert "train_fold" not in per_member
    assert packed["train_fold"] == model_folds and "train" not in packed and "ensemble" not in packed
    # everything else is planned identically (same per-member done.json feed inference)
    rest = lambda c: {k: v for k, v in c.items() if k not in ("train", "ensemble", "train_fold", "total")}  # noqa: E731
    assert rest(per_member) == rest(packed)
    assert per_member["total"] - packed["total"] == per_member["train"]


def test_gpu_switch_reaches_training_and_inference_only(workdir):
    out = _dry(workdir, env_extra={"GLACIERMAP_SLURM_GPUS": "a100:1", "GLACIERMAP_SLURM_GPU_PARTITION": "gpu"})
    blocks = {}
    for m in re.finditer(r"^rule (\w+):\n(.*?)(?=\n\n|\Z)", out, re.M | re.S):
        blocks.setdefault(m.group(1), m.group(2))
    for rule in ("train", "infer", "importance"):
        res = re.search(r"resources: (.*)", blocks[rule]).group(1)
        assert "gpu=1" in res and "gpu_model=a100" in res and "slurm_partition=gpu" in res, (rule, res)
    for rule in ("acquire", "normalise", "calibrate"):
        assert "gpu" not in re.search(r"resources: (.*)", blocks[rule]).group(1), rule
    plain = _dry(workdir, "--until", "train")
    assert "gpu=" not in plain
