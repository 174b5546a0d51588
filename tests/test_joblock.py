"""Per-job lock (glaciermap.joblock): a concurrent twin of a job neither redoes the work nor removes its outputs.

Snakemake 9.27 deletes ``.snakemake/locks`` when any invocation exits, so two invocations can run the same job
at once. The twin waits for the running job's lock and then uses its outputs; a killed holder leaves no stale
lock. Tested with real processes: the lock helper alone, the real training job (glaciermap.segmentation.train.run_train), the
inference job's lock-and-stage pattern (run_infer with a stand-in model), and two real `snakemake` invocations.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from glaciermap.joblock import JobLockTimeout, job_lock, read_holder
from test_resume_kill import SETTINGS, job_inputs  # noqa: F401  (module fixture: a tiny training set)

HOLD = textwrap.dedent("""
    import sys, time
    from glaciermap.joblock import job_lock
    with job_lock(sys.argv[1], "holder job"):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _env(**kw):
    return dict(os.environ, OMP_NUM_THREADS="1", **kw)


def _hold(lock: Path, seconds: float) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), str(seconds)], env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def _wait_for(cond, timeout=300, proc=None, what=""):
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process ended early:\n{proc.communicate()[0][-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_lock_records_holder_and_twin_times_out_with_clear_message(tmp_path):
    lock = tmp_path / "out" / ".job.lock"
    holder = _hold(lock, 30)
    try:
        rec = read_holder(lock)
        assert rec["pid"] == holder.pid and rec["host"] == socket.gethostname() and rec["job"] == "holder job"
        assert rec["started"].endswith("+00:00")
        t0 = time.monotonic()
        with pytest.raises(JobLockTimeout) as e:
            with job_lock(lock, "twin job", timeout_s=0.5, poll_s=0.05):
                raise AssertionError("got a lock that another process holds")
        assert 0.4 < time.monotonic() - t0 < 10
        msg = str(e.value)
        for part in ("twin job", str(lock), f"PID {holder.pid}", socket.gethostname(), rec["started"], "holder job"):
            assert part in msg, (part, msg)
        assert read_holder(lock)["pid"] == holder.pid   # the twin did not touch the holder record
    finally:
        holder.kill()
        holder.wait()


def test_sigkilled_holder_leaves_no_stale_lock(tmp_path):
    lock = tmp_path / ".job.lock"
    holder = _hold(lock, 300)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    assert lock.exists()                              # the file stays, the lock does not
    t0 = time.monotonic()
    with job_lock(lock, "next job", timeout_s=0) as got:
        assert not got.waited and got.locked
        assert read_holder(lock)["pid"] == os.getpid()
    assert time.monotonic() - t0 < 2


def test_twin_waits_and_uses_the_first_jobs_outputs(tmp_path):
    lock = tmp_path / ".job.lock"
    holder = _hold(lock, 1.5)
    with job_lock(lock, "twin", poll_s=0.05) as got:
        assert got.waited and got.holder["pid"] == holder.pid and got.waited_s > 0.5
    assert holder.wait(timeout=30) == 0


# ------------------------------------------------------------------------------------- the real training job

TRAIN = textwrap.dedent("""
    import json, sys
    from glaciermap.io import setup_logging
    from glaciermap.segmentation.train import run_train
    a = json.loads(sys.argv[1])
    setup_logging(a["log"])
    print(json.dumps(run_train(a["train"], a["val"], a["split"], a["norm"], 0, 1, a["settings"], a["done"], 1)))
""")


def _train(d: Path, done: Path, log: Path) -> subprocess.Popen:
    args = {"train": str(d / "train.csv"), "val": str(d / "val.csv"), "split": str(d / "split.csv"),
            "norm": str(d / "norm.json"), "settings": {**SETTINGS, "keep_last_checkpoint": False},  # the default
            "done": str(done), "log": str(log)}
    return subprocess.Popen([sys.executable, "-c", TRAIN, json.dumps(args)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_concurrent_training_twin_neither_retrains_nor_removes_outputs(tmp_path, job_inputs):  # noqa: F811
    member = tmp_path / "models" / "fold0" / "member1"
    done, lock = member / "done.json", member.parent / ".member1.train.lock"
    first = _train(job_inputs, done, tmp_path / "first.log")
    _wait_for(lambda: (read_holder(lock) or {}).get("pid") == first.pid, proc=first, what="first job's lock")
    twin = _train(job_inputs, done, tmp_path / "twin.log")
    out_first, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out_first[-3000:]
    snapshot = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in member.iterdir()}
    assert set(snapshot) == {"done.json", "last.pt", "best.pt", "metrics.csv"}
    out_twin, _ = twin.communicate(timeout=300)
    assert twin.returncode == 0, out_twin[-3000:]

    twin_log = (tmp_path / "twin.log").read_text()
    assert "job 'train fold 0 member 1' is already running" in twin_log
    assert f"PID {first.pid}" in twin_log and str(lock) in twin_log
    assert "nothing to do" in twin_log
    assert "epoch 1:" not in twin_log and "resuming" not in twin_log          # no training at all
    assert "epoch 3:" in (tmp_path / "first.log").read_text()
    # the first job's files are untouched (same bytes, same mtimes) and the twin reports the same result
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in member.iterdir()} == snapshot
    assert json.loads(out_twin.strip().splitlines()[-1]) == json.loads(done.read_text())

    # a twin whose Snakemake deleted done.json before it started (the first job finished in between): the lock
    # is free, and done.json comes back from last.pt (the finished member's record, the default) without training
    assert torch.load(member / "last.pt", weights_only=False)["final"]
    summary = json.loads(done.read_text())
    done.unlink()
    late = _train(job_inputs, done, tmp_path / "late.log")
    out_late, _ = late.communicate(timeout=300)
    assert late.returncode == 0, out_late[-3000:]
    late_log = (tmp_path / "late.log").read_text()
    assert "resuming" in late_log and "epoch 1:" not in late_log and "already running" not in late_log
    assert json.loads(done.read_text()) == summary
    for name in ("last.pt", "best.pt"):
        assert snapshot[name] == ((member / name).stat().st_mtime_ns, (member / name).read_bytes())

    # the real inference job with this model: staged writes end on the final paths, nothing else is left
    from glaciermap.io import read_status
    from glaciermap.segmentation.infer import run_infer

    cubes = sorted((job_inputs / "cubes").glob("*/inventory.nc"))
    outs = [tmp_path / "predictions" / c.parent.name / "inventory.nc" for c in cubes]
    run_infer([done], job_inputs / "norm.json", cubes, outs, {"stride": 32, "blend": "hann", "batch_size": 8}, 32)
    assert all(read_status(o)["status"] == "ok" for o in outs)
    assert sorted(p.name for p in (tmp_path / "predictions").rglob("*")) == sorted([c.parent.name for c in cubes]
                                                                                  + ["inventory.nc"] * len(cubes))
    assert (tmp_path / "models" / "fold0" / ".infer_inventory.lock").read_text() == ""   # released, record cleared


# ------------------------------------------------------------- the inference job's lock and staged outputs

INFER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import glaciermap.segmentation.infer as infer, glaciermap.segmentation.train as train
    a = json.loads(sys.argv[1])

    def fake_predict(models, cubes, outs, stats, members, cfg, patch_size, device, classes=None):
        for o in outs:                              # what predict_to_files does: one file per cube, atomically
            Path(o).parent.mkdir(parents=True, exist_ok=True)
            Path(o).write_text(f"written by {a['name']}\\n")
            print("wrote", o, flush=True)
        time.sleep(a["sleep"])
        return {"wrote": len(outs)}

    infer.predict_files = fake_predict
    train.load_member = lambda path, device=None: (None, {})
    import glaciermap.segmentation.patches as patches
    patches.load_normalisation = lambda p: {}
    from glaciermap.io import setup_logging
    setup_logging(a["log"])
    print("result", json.dumps(infer.run_infer(a["done"], a["norm"], a["cubes"], a["outs"], {}, 32)), flush=True)
""")


def _infer_setup(root: Path):
    done = []
    for m in (0, 1):
        (root / "models" / "fold0" / f"member{m}").mkdir(parents=True)
        done.append(root / "models" / "fold0" / f"member{m}" / "done.json")
        done[-1].write_text("{}")
    norm = root / "models" / "fold0" / "normalisation.json"
    norm.write_text("{}")
    cubes = [root / "cubes" / g / "2023.nc" for g in ("A", "B")]
    for c in cubes:
        c.parent.mkdir(parents=True)
        c.write_text("cube")
    # the infer rule's layout: one folder per (model, fold, epoch), a test glacier and a validation glacier
    outs = [root / "predictions" / "m" / "fold0" / "2023" / "A.nc", root / "predictions" / "m" / "fold0" / "2023" / "val" / "B.nc"]
    return done, norm, cubes, outs


def _infer(root, name, sleep, **env):
    done, norm, cubes, outs = _infer_setup.cache
    args = {"done": list(map(str, done)), "norm": str(norm), "cubes": list(map(str, cubes)),
            "outs": list(map(str, outs)), "name": name, "sleep": sleep, "log": str(root / f"{name}.log")}
    return subprocess.Popen([sys.executable, "-c", INFER, json.dumps(args)], env=_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_concurrent_inference_twin_neither_redoes_nor_removes_outputs(tmp_path):
    _infer_setup.cache = done, norm, cubes, outs = _infer_setup(tmp_path)
    lock = tmp_path / "models" / "fold0" / ".infer_2023.lock"
    first = _infer(tmp_path, "first", sleep=15)
    _wait_for(lambda: (read_holder(lock) or {}).get("pid") == first.pid, proc=first, what="first job's lock")
    staging = tmp_path / "predictions" / "m" / "fold0" / ".2023.staging"  # beside the declared folder, not in it
    _wait_for(lambda: len(list(staging.rglob("*.nc"))) == 2, proc=first, what="first job's staged files")
    impatient = _infer(tmp_path, "impatient", sleep=0, GLACIERMAP_JOBLOCK_TIMEOUT_S="0.5")
    twin = _infer(tmp_path, "twin", sleep=0)
    out_imp, _ = impatient.communicate(timeout=60)
    # the impatient twin failed while the first job runs: its Snakemake would now delete the final paths ...
    assert impatient.returncode != 0 and "JobLockTimeout" in out_imp
    assert "job 'infer fold0 epoch 2023' is already running" in out_imp and f"PID {first.pid}" in out_imp
    assert str(lock) in out_imp
    # ... which do not exist yet: the first job writes into a staging folder outside the declared output folder
    # (which Snakemake removes as a whole) and moves the files at its very end
    assert first.poll() is None and not any(o.exists() for o in outs)
    shutil.rmtree(outs[0].parent, ignore_errors=True)  # what the failed twin's Snakemake does to a directory output
    out_first, _ = first.communicate(timeout=60)
    assert first.returncode == 0, out_first[-3000:]
    snapshot = {o: (o.stat().st_mtime_ns, o.read_text()) for o in outs}
    assert all(text == "written by first\n" for _, text in snapshot.values())
    out_twin, _ = twin.communicate(timeout=60)
    assert twin.returncode == 0, out_twin[-3000:]
    assert "already running" in out_twin and "nothing to do" in out_twin and "wrote" not in out_twin
    assert {o: (o.stat().st_mtime_ns, o.read_text()) for o in outs} == snapshot
    assert not [p for p in tmp_path.rglob("*") if "stag" in p.name]     # no staging leftovers


def test_inference_twin_redoes_after_a_killed_first_job(tmp_path):
    _infer_setup.cache = done, norm, cubes, outs = _infer_setup(tmp_path)
    lock = tmp_path / "models" / "fold0" / ".infer_2023.lock"
    first = _infer(tmp_path, "first", sleep=60)
    _wait_for(lambda: (read_holder(lock) or {}).get("pid") == first.pid, proc=first, what="first job's lock")
    twin = _infer(tmp_path, "twin", sleep=0)
    twin_log = tmp_path / "twin.log"
    _wait_for(lambda: twin_log.exists() and "already running" in twin_log.read_text(), proc=twin, what="twin waiting")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    out_twin, _ = twin.communicate(timeout=60)
    assert twin.returncode == 0, out_twin[-3000:]
    assert all(o.read_text() == "written by twin\n" for o in outs)     # incomplete outputs: the twin ran the job


# ----------------------------------------------------------------------------- two real snakemake invocations

SNAKEFILE = """
rule work:
    output: "out/result.txt"
    log: "logs/work.log"
    script: "work.py"
"""

WORK = """
import os, time
from pathlib import Path
from glaciermap.io import setup_logging, write_text_atomic
from glaciermap.joblock import job_lock

setup_logging(snakemake.log[0])
out = Path(snakemake.output[0])
with job_lock(out.parent / ".work.lock", "work") as lock:
    if lock.waited and out.exists():
        print("outputs of the concurrent job are complete: nothing to do")
    else:
        time.sleep(float(os.environ["WORK_SECONDS"]))
        write_text_atomic(out, f"written by pid {os.getpid()}\\n")
"""


@pytest.mark.slow
def test_two_snakemake_invocations_keep_the_first_jobs_outputs(tmp_path):
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent))
    assert snakemake, "snakemake not installed in the venv"
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "work.py").write_text(WORK)
    lock = tmp_path / "out" / ".work.lock"

    def invoke(seconds, **env):
        # --nolock: what every invocation gets once another one has deleted .snakemake/locks
        return subprocess.Popen([snakemake, "--cores", "1", "--nolock", "--latency-wait", "1"], cwd=tmp_path,
                                env=_env(WORK_SECONDS=str(seconds), **env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    first = invoke(20)
    _wait_for(lambda: read_holder(lock) is not None, timeout=120, proc=first, what="first job's lock")
    holder = read_holder(lock)
    impatient = invoke(0, GLACIERMAP_JOBLOCK_TIMEOUT_S="1")
    twin = invoke(0)
    out_imp, _ = impatient.communicate(timeout=120)
    assert impatient.returncode != 0
    assert f"job 'work' is already running: 'work', PID {holder['pid']} on host {holder['host']}" in out_imp
    assert "out/.work.lock" in out_imp and "gave up after waiting" in out_imp
    assert "Removing output files of failed job" not in out_imp     # nothing of the first job's existed yet
    assert first.poll() is None, "the first job should still be running"
    out_first, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out_first[-3000:]
    result = tmp_path / "out" / "result.txt"
    assert result.read_text() == f"written by pid {holder['pid']}\n"
    inode = result.stat().st_ino
    out_twin, _ = twin.communicate(timeout=120)
    assert twin.returncode == 0, out_twin[-3000:]
    assert "nothing to do" in out_twin and "already running" in out_twin
    # the same file (the twin's Snakemake only touches its mtime, as for any finished job): not rewritten, not removed
    assert result.read_text() == f"written by pid {holder['pid']}\n" and result.stat().st_ino == inode
