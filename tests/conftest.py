import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def oggm_sample() -> Path:
    """The real OGGM sample data (RGI outlines, SRTM DEMs, ITS_LIVE velocity) in ../shared beside the checkout."""
    candidates = [os.environ.get("GLACIERMAP_OGGM_SAMPLE", ""), str(REPO.parent / "shared" / "data" / "oggm-sample")]
    for c in candidates:
        if c and (Path(c) / "rgi_oetztal.shp").exists():
            return Path(c)
    raise FileNotFoundError(f"OGGM sample data not found in {[c for c in candidates if c]}: the tests need "
                            "../shared/data/oggm-sample beside the checkout (or GLACIERMAP_OGGM_SAMPLE)")
# Subprocesses (snakemake jobs) must find the venv's python and tools first.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

# The fast tier (`make test-fast` = `pytest -m "not slow"`, README "Quick start") leaves out, beside the tests marked
# slow by hand, every test that needs the tiny modelling run (a session fixture of several minutes) and the modules
# that run whole Snakemake workflows (incremental re-runs, Slurm, the data half end to end).
SLOW_FIXTURES = {"model_run"}
SLOW_MODULES = {"test_workflow", "test_incremental", "test_slurm", "test_resume_kill", "test_facies_workflow"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = getattr(item, "module", None)
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or (module and module.__name__ in SLOW_MODULES):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def slurm_answers_if_installed():
    """The local Slurm cluster up for the session where Slurm is installed but down (root only).

    Snakemake loads its executor plugins at start, and the Slurm plugin probes `sacct`, `squeue` and `scontrol` while
    its settings class is built; with Slurm installed (tests/test_slurm.py installs it) and no controller, each probe
    waits for its timeout: every `snakemake` start then takes ~11 s instead of ~1.5 s (measured 2026-12-03), about
    ten minutes over this suite. Without Slurm the probes fail at once and nothing is started. A cluster started here
    is stopped at the end of the session; one that was already running is left alone.
    """
    cluster = REPO / "tools" / "slurm-cluster.sh"
    if os.geteuid() != 0 or not (shutil.which("slurmctld") and shutil.which("sinfo")):
        yield
        return
    down = subprocess.run(["bash", str(cluster), "status"], capture_output=True, text=True, timeout=60).returncode == 3
    started = down and subprocess.run(["bash", str(cluster), "start"], capture_output=True, text=True,
                                      timeout=180).returncode == 0
    if down and not started:
        print("tests/conftest.py: the local Slurm cluster did not start; Snakemake starts wait for its probes",
              file=sys.stderr)
    try:
        yield
    finally:
        if started:
            subprocess.run(["bash", str(cluster), "stop"], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def tiny_region(tmp_path_factory):
    """The tiny demo preset, generated once per test session (read-only for tests)."""
    from glaciermap.demo import generate

    out = tmp_path_factory.mktemp("tiny") / "demo"
    generate(out, seed=0, preset="tiny")
    return out


def _repoint(obj, old: str, new: str):
    """Every string of a config that starts with ``old`` starts with ``new`` instead (paths of the demo's inputs)."""
    if isinstance(obj, dict):
        return {k: _repoint(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_repoint(v, old, new) for v in obj]
    return new + obj[len(old):] if isinstance(obj, str) and obj.startswith(old) else obj


def with_models(cfg: dict, models: dict) -> dict:
    """``cfg`` with these model entries; the lists naming models (importance, random_split, debris) keep those left."""
    cfg["models"] = models
    for section in ("importance", "random_split", "debris"):
        if isinstance(cfg.get(section), dict) and "models" in cfg[section]:
            cfg[section]["models"] = [m for m in cfg[section]["models"] if m in models]
    imp = cfg.get("importance") or {}
    if imp.get("overrides"):
        imp["overrides"] = {m: v for m, v in imp["overrides"].items() if m in models}
    if isinstance(cfg.get("debris"), dict) and not cfg["debris"].get("models"):
        cfg["debris"]["label_set"] = None      # no debris model: no baseline of its label set
    return cfg


def tiny_workdir(tiny_region, work):
    """Copy the tiny region's inputs into ``work``; return the repository config pointed at them (region "tiny"):
    every path into the demo's inputs (inventory, catalog, velocity, coherence, debris map) leads to the copy."""
    shutil.copytree(tiny_region / "inputs", work / "inputs")
    cfg = _repoint(yaml.safe_load((REPO / "config.yaml").read_text()), "resources/demo/inputs/", f"{work}/inputs/")
    cfg["region"] = "tiny"
    # the facies method and the outline issues only where a test asks for them (model_run): the others stay fast
    cfg["facies"]["points"] = None
    cfg["outline_issues"]["models"] = []
    cfg["timeseries"]["sources"] = []
    assert cfg["inventory"]["path"] == str(work / "inputs" / "inventory.gpkg")
    assert cfg["stac"]["source"] == str(work / "inputs" / "catalog" / "catalog.json")
    cfg["grid"]["patch_size"] = 32
    return cfg


def planned_jobs(proc) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run plans ("" when the rule has no wildcards)."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    if "Nothing to be done" in out:
        return set()
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        if m:
            w = re.search(r"\n\s+wildcards: (.*)", block)
            jobs.add((m.group(1), w.group(1).strip() if w else ""))
    m = re.search(r"^total\s+(\d+)", out, re.M)
    assert m and int(m.group(1)) == len(jobs), "every planned job must be parsed: " + out[-2000:]
    return jobs


def run_snakemake(workdir, *args, timeout=900):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def model_run(tiny_region, tmp_path_factory):
    """The real Snakefile on the tiny region through the modelling half, run once per session: (workdir, process)."""
    work = tmp_path_factory.mktemp("model_wf")
    cfg = tiny_workdir(tiny_region, work)
    cfg.update({
        "split": {"n_folds": 2, "val_fraction": 0.3},
        "model": {"arch": "Unet", "encoder": "resnet18", "encoder_weights": None},
        "train": {"members": 2, "epochs": 1, "patch_size": 32, "stride": 16, "val_stride": 32, "batch_size": 8},
        "infer": {"stride": 16, "batch_size": 32},
        # the DL4GAM ensemble, its no-dh/dt ablation and a third variant given only here (other channels, one
        # member): every model-level rule runs per model through the {model} wildcard
        "models": {"dl4gam": {}, "dl4gam_no_dhdt": {"drop_channels": ["dhdt"], "members": 1},
                   "rgb_dem": {"channels": ["B04", "B03", "B02", "dem"], "members": 1},
                   # a 3-class toy variant (the K-class core): background, clean ice and debris from the region's
                   # debris map (an input, not the truth), softmax and class-weighted cross-entropy
                   # ... on a small CryoNet stack: per-fold PCA, Tasseled Cap, coherence, velocity and Landsat
                   # surface temperature (the region's own sensors), and the whole debris method on it
                   "ice_debris": {"labels": "ice_debris", "members": 2,
                                  "channels": ["B04", "B03", "B02", "B08", "B11", "dem", "pca1", "tc_wetness",
                                               "coherence", "velocity", "surface_temperature"],
                                  "model_kwargs": {"decoder_attention_type": "scse"}}},
        "importance": {"models": ["ice_debris"], "n_repeats": 2, "max_patches": 8},
        "random_split": {"models": ["ice_debris"]},
        "debris": {"models": ["ice_debris"], "label_set": "ice_debris", "thresholds": [
            {"class": "clean_ice", "conditions": [{"channel": "ndsi", "above": 0.4}]},
            {"class": "debris", "conditions": [{"channel": "slope", "below": 24}, {"channel": "velocity", "above": 1}]}]},
        "labels": {"ice_debris": {"classes": [
            {"name": "background", "rule": "rest"}, {"name": "clean_ice", "rule": "outline"},
            {"name": "debris", "rule": "map", "path": str(work / "inputs" / "debris" / "debris_map.gpkg"),
             "within": "outline"}]}},
        "area_change": {"models": ["dl4gam", "rgb_dem"]},
        "evaluation": {"truth_dir": str(tiny_region / "truth"), "debris_map": str(tiny_region / "truth" / "debris_t0.tif")},
        # the facies method on the tiny region's own points and Landsat scenes (3 glacier folds: it has 4-6
        # glaciers), a small CNN and two map years; the outline issues of the DL4GAM model
        "facies": {**cfg["facies"], "points": {"path": str(work / "inputs" / "facies" / "points.gpkg")}, "folds": 3,
                   "model": {"filters": 8, "epochs": 3}, "maps": {"years": [2015, 2023]},
                   "smb": {"path": str(work / "inputs" / "facies" / "smb.csv")},
                   "truth": str(tiny_region / "truth" / "facies_points.csv")},
        "outline_issues": {"models": ["dl4gam"]},
    })
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(work, timeout=1800)   # ~8 min alone on 2 cores (4 models, the debris method)
    return work, proc


@pytest.fixture
def one_torch_thread():
    """One torch thread for a test (the CPUs are shared; results are then also the same on every machine)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def load_benchmark(name: str):
    """A script of benchmarks/ imported as a module (they are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
