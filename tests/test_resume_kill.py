"""A training job killed with SIGKILL mid-epoch resumes from last.pt and ends bit-identical to an uninterrupted run.

The job is run the way the `train` rule runs it (glaciermap.segmentation.train.run_train on centre tables, a frozen split
file and a normalisation file), in a separate process, on CPU. The killed process gets no chance to clean up,
exactly like a Slurm preemption or an out-of-memory kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from glaciermap.segmentation import patches, split as sp
from test_patches import IDS, scene_labels, write_cube

SETTINGS = {"arch": "Unet", "encoder": "resnet18", "patch_size": 32, "batch_size": 2, "epochs": 3,
            "model_kwargs": {"decoder_channels": (32, 16, 16, 8, 8)}, "progress": False, "patch_fraction": 1.0,
            "keep_last_checkpoint": True}   # the full last state, to compare weights and Adam moments

RUNNER = textwrap.dedent("""
    import json, sys
    import torch
    from glaciermap.io import setup_logging
    from glaciermap.segmentation.train import run_train
    a = json.loads(sys.argv[1])
    setup_logging(a["log"])
    run_train(a["train"], a["val"], a["split"], a["norm"], 0, 1, a["settings"], a["done"], 1)
""")


@pytest.fixture(scope="module")
def job_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("killjob")
    lab = scene_labels()
    paths = {g: write_cube(d / "cubes" / g / "inventory.nc", lab, IDS, g, seed=k) for k, g in enumerate(IDS)}
    split = pd.DataFrame({"glac_id": IDS, "cenlon": [7.0, 7.1, 7.2], "area_km2": [0.08, 0.06, 0.06],
                          "test_fold": [1, 0, 1], "role_0": ["train", "test", "val"], "role_1": ["test", "train", "test"]})
    split.attrs["meta"] = {"format": sp.FORMAT, "version": sp.VERSION, "revision": 0, "n_folds": 2,
                           "val_fraction": 0.3, "folds": [], "history": []}
    sp.write_split(split, d / "split.csv")
    patches.centre_table(paths.values(), 8).to_csv(d / "train.csv", index=False)
    patches.centre_table(paths.values(), 24).to_csv(d / "val.csv", index=False)
    stats = patches.fit_fold_normalisation({g: str(p) for g, p in paths.items()}, sp.read_split(d / "split.csv"), 0)
    patches.save_normalisation(stats, d / "norm.json")
    return d


def _start(d: Path, out: Path) -> subprocess.Popen:
    args = {"train": str(d / "train.csv"), "val": str(d / "val.csv"), "split": str(d / "split.csv"),
            "norm": str(d / "norm.json"), "settings": SETTINGS, "done": str(out / "done.json"),
            "log": str(out.parent / f"{out.name}.log")}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, timeout=600):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]


def _epochs_on_disk(out: Path) -> int:
    try:
        return len(pd.read_csv(out / "metrics.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def test_sigkill_mid_epoch_then_rerun_equals_uninterrupted_run(tmp_path, job_inputs):
    full, part = tmp_path / "full" / "member1", tmp_path / "part" / "member1"
    _finish(_start(job_inputs, full))
    assert (full / "done.json").exists()
    n_train = json.loads((full / "done.json").read_text())["n_train"]
    assert n_train >= 20  # several batches per epoch, so the kill lands inside an epoch

    proc = _start(job_inputs, part)
    deadline = time.monotonic() + 600
    while _epochs_on_disk(part) < 1:                 # epoch 1 checkpointed: last.pt and metrics.csv on disk
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    epoch1_seconds = float(pd.read_csv(part / "metrics.csv")["seconds"].iat[0])
    time.sleep(min(0.4 * epoch1_seconds, 2.0))       # well inside epoch 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # killed in epoch 2: one epoch on disk, no completion marker, no temporary file that could pass as output
    assert _epochs_on_disk(part) == 1
    assert torch.load(part / "last.pt", weights_only=False)["epoch"] == 1
    assert not (part / "done.json").exists()
    assert sorted(p.name for p in part.iterdir()) == ["best.pt", "last.pt", "metrics.csv"]

    _finish(_start(job_inputs, part))                # the re-run (Slurm requeue, or snakemake again)
    assert "resuming" in (part.parent / "member1.log").read_text()
    for name in ("last.pt", "best.pt"):
        a = torch.load(full / name, weights_only=False)
        b = torch.load(part / name, weights_only=False)
        assert a["epoch"] == b["epoch"]
        assert a["model"].keys() == b["model"].keys()
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), name
    opt_a = torch.load(full / "last.pt", weights_only=False)["optimizer"]["state"]
    opt_b = torch.load(part / "last.pt", weights_only=False)["optimizer"]["state"]
    assert all(torch.equal(opt_a[i]["exp_avg_sq"], opt_b[i]["exp_avg_sq"]) for i in opt_a)
    timing = ["time_data_s", "time_model_s", "seconds"]
    ma, mb = pd.read_csv(full / "metrics.csv"), pd.read_csv(part / "metrics.csv")
    assert list(ma["epoch"]) == [1, 2, 3]
    pd.testing.assert_frame_equal(ma.drop(columns=timing), mb.drop(columns=timing), check_exact=True)
    da, db = (json.loads((p / "done.json").read_text()) for p in (full, part))
    assert {k: v for k, v in da.items() if not k.startswith("time_")} == \
        {k: v for k, v in db.items() if not k.startswith("time_")}
