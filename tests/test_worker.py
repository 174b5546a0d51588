"""The per-glacier job worker (glaciermap.worker): forked children run the jobs' functions with the jobs' logs,
failures and kills reach the job, code or allocation changes never reach an old worker, and a job run through
the worker writes the same files as one in its own process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import xarray as xr
import yaml

from conftest import run_snakemake, tiny_workdir
from glaciermap import worker


@pytest.fixture
def wdir(monkeypatch):
    d = tempfile.mkdtemp(prefix="gw", dir="/tmp")  # short: a Unix socket path has at most 107 characters
    monkeypatch.setenv("GLACIERMAP_WORKER_DIR", d)
    yield Path(d)
    for sock in Path(d).glob("*.sock"):  # ask nothing of a lingering worker: removing its socket stops it
        sock.unlink()
    time.sleep(0.6)
    shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("per_child", [1, 20])
def test_jobs_run_in_forked_children_of_one_worker_with_their_own_logs(wdir, tmp_path, per_child):
    for i in range(3):
        worker.call("glaciermap.worker", "selftest", str(tmp_path / f"out{i}"), text=f"job{i}",
                    log=str(tmp_path / f"log{i}"), idle_s=30, jobs_per_child=per_child)
        time.sleep(1.0)  # as between two Snakemake jobs: the child that ran this one is ready for the next
    pids = [int((tmp_path / f"out{i}").read_text().split()[1]) for i in range(3)]
    assert [(tmp_path / f"out{i}").read_text().split()[0] for i in range(3)] == ["job0", "job1", "job2"]
    assert os.getpid() not in pids                                    # none of them in this process
    # one fresh child per job, or one child for all three (ready again before the next job came)
    assert len(set(pids)) == (3 if per_child == 1 else 1), pids
    socks = list(wdir.glob("*.sock"))
    assert len(socks) == 1 and socks[0].name == worker.socket_path(jobs_per_child=per_child).name  # one worker, all three
    for i in range(3):
        log = (tmp_path / f"log{i}").read_text()
        assert f"selftest in process {pids[i]}" in log and "selftest on stdout" in log   # logging and stdout
        assert log.count("selftest in process") == 1                    # the log was the job's own, truncated
        nth = 1 if per_child == 1 else i + 1
        assert f"worker child {pids[i]} (job {nth} of this process): wall " in log.splitlines()[-1]
    # what the worker writes between jobs goes to its own log, never into a job's
    assert "selftest" not in Path(f"{worker.socket_path(jobs_per_child=per_child)}.log").read_text()


def test_a_reused_child_forgets_what_a_job_left_behind(wdir, tmp_path):
    """A child that runs several jobs starts each as a fresh fork would: a cached read of a file that changed
    since is read again, numpy's global generator is where the worker left it, a warning shown in the last job
    is shown again, and a warnings filter the last job added is gone; a child whose job was killed is replaced."""
    src = tmp_path / "input.txt"
    src.write_text("first")
    outs = []
    for i, content in enumerate(["first", "second", "third"]):
        src.write_text(content)
        out = tmp_path / f"out{i}"
        worker.call("glaciermap.worker", "selftest", str(out), read=str(src), warn=True, log=str(tmp_path / f"l{i}"),
                    idle_s=30, jobs_per_child=20)
        outs.append(out.read_text().split())
        time.sleep(1.0)
    assert len({o[1] for o in outs}) == 1                            # one child ran all three
    assert [o[2] for o in outs] == ["first", "second", "third"]       # the cache was emptied between jobs
    assert len({o[3] for o in outs}) == 1                            # the same draw: the generator's state restored
    assert len({o[4] for o in outs}) == 1                            # the job's own filter did not stay
    for i in range(3):
        assert "UserWarning: selftest warning" in (tmp_path / f"l{i}").read_text()  # shown in every job's log
    child = int(outs[0][1])
    code = ("from glaciermap import worker\n"
            f"worker.call('glaciermap.worker', 'selftest', {str(tmp_path / 'late')!r}, sleep_s=30, "
            f"log={str(tmp_path / 'late.log')!r}, jobs_per_child=20)\n")
    job = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
    t0 = time.monotonic()
    while not ((tmp_path / "late.log").exists() and "selftest in process" in (tmp_path / "late.log").read_text()):
        assert time.monotonic() - t0 < 30, "the job never started"
        time.sleep(0.05)
    assert f"selftest in process {child}" in (tmp_path / "late.log").read_text()   # the idle child took it
    job.send_signal(signal.SIGKILL)
    job.wait(10)
    t0 = time.monotonic()
    while _alive(child) and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    assert not _alive(child)
    worker.call("glaciermap.worker", "selftest", str(tmp_path / "after"), log=str(tmp_path / "after.log"),
                jobs_per_child=20)
    assert int((tmp_path / "after").read_text().split()[1]) not in (child, os.getpid())  # a new child


def test_a_failure_reaches_the_job_with_its_traceback_in_the_log_and_the_worker_carries_on(wdir, tmp_path):
    with pytest.raises(SystemExit, match=r"ValueError: selftest failure for .*bad"):
        worker.call("glaciermap.worker", "selftest", str(tmp_path / "bad"), fail=True, log=str(tmp_path / "log"))
    log = (tmp_path / "log").read_text()
    assert "Traceback" in log and "raise ValueError" in log
    assert not (tmp_path / "bad").exists()
    time.sleep(1.0)
    worker.call("glaciermap.worker", "selftest", str(tmp_path / "good"), log=str(tmp_path / "log2"))
    assert (tmp_path / "good").read_text().startswith("ok ")
    failed = int(log.split("selftest in process ")[1].split()[0])
    assert int((tmp_path / "good").read_text().split()[1]) != failed  # the failed job's child is not reused


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_job_kills_its_child_before_it_writes(wdir, tmp_path, how):
    worker.call("glaciermap.worker", "selftest", str(tmp_path / "warm"), log=str(tmp_path / "warm.log"))  # started
    code = ("from glaciermap import worker\n"
            f"worker.call('glaciermap.worker', 'selftest', {str(tmp_path / 'late')!r}, sleep_s=5, "
            f"log={str(tmp_path / 'late.log')!r})\n")
    job = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
    log = tmp_path / "late.log"
    t0 = time.monotonic()
    while not (log.exists() and "selftest in process" in log.read_text()):
        assert time.monotonic() - t0 < 30, "the child never started"
        time.sleep(0.05)
    child = int(log.read_text().split("selftest in process ")[1].split()[0])
    assert _alive(child)
    job.send_signal(how)  # TERM: the job kills its child; KILL: the child sees its job's connection close
    assert job.wait(10) == (128 + signal.SIGTERM if how == signal.SIGTERM else -signal.SIGKILL)
    t0 = time.monotonic()
    while _alive(child) and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    assert not _alive(child)
    time.sleep(5.5)
    assert not (tmp_path / "late").exists()                          # nothing written after its job ended


def test_without_the_worker_or_when_none_can_start_the_job_runs_in_its_own_process(wdir, tmp_path, monkeypatch):
    worker.call("glaciermap.worker", "selftest", str(tmp_path / "a"), log=str(tmp_path / "a.log"), worker=False)
    assert int((tmp_path / "a").read_text().split()[1]) == os.getpid()
    assert not list(wdir.glob("*.sock"))
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    monkeypatch.setenv("GLACIERMAP_WORKER_DIR", str(blocked))          # no socket can be made under a file
    worker.call("glaciermap.worker", "selftest", str(tmp_path / "b"), log=str(tmp_path / "b.log"))
    assert int((tmp_path / "b").read_text().split()[1]) == os.getpid()
    assert "glaciermap worker not used" in (tmp_path / "b.log").read_text()


def test_changed_code_or_another_slurm_job_never_reaches_an_old_worker(monkeypatch, tmp_path):
    key = worker.code_key()
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert worker.code_key() != key
    monkeypatch.delenv("SLURM_JOB_ID")
    assert worker.code_key() == key
    # a module's size or mtime is in the key: touching a source file of the package changes it
    src = Path(worker.__file__)
    st = src.stat()
    try:
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        assert worker.code_key() != key
    finally:
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert worker.code_key() == key


def test_an_idle_worker_exits_and_removes_its_socket(wdir, tmp_path):
    worker.call("glaciermap.worker", "selftest", str(tmp_path / "a"), log=str(tmp_path / "a.log"), idle_s=1)
    sock = worker.socket_path()
    assert sock.exists()
    t0 = time.monotonic()
    while sock.exists() and time.monotonic() - t0 < 15:
        time.sleep(0.1)
    assert not sock.exists()
    worker.call("glaciermap.worker", "selftest", str(tmp_path / "b"), log=str(tmp_path / "b.log"), idle_s=1)
    assert (tmp_path / "b").exists()                                    # the next job starts a new one


@pytest.mark.slow
def test_a_glacier_through_the_worker_gives_the_same_files_as_in_its_own_process(tiny_region, tmp_path, wdir):
    """acquire, cube and labels of one glacier, run by Snakemake through the worker and without it."""
    out = {}
    for mode in (True, False):
        work = tmp_path / f"worker_{mode}"
        work.mkdir()
        cfg = tiny_workdir(tiny_region, work)
        cfg["execution"] = {"worker": mode}
        cfg["split"] = {"n_folds": 2, "val_fraction": 0.3}
        cfg["train"] = {"members": 1, "epochs": 1, "patch_size": 32, "stride": 16, "val_stride": 32, "batch_size": 8}
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))
        gid = __import__("geopandas").read_file(work / "inputs/inventory.gpkg").sort_values("glac_id").glac_id.iloc[0]
        target = f"results/tiny/labels/debris/inventory/{gid}.tif"
        proc = run_snakemake(work, target, f"results/tiny/cubes/{gid}/2023.nc")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        log = (work / f"results/tiny/logs/cube/{gid}/inventory.log").read_text()
        assert ("glaciermap.data" in log) and ("glaciermap worker not used" not in log)
        out[mode] = work, gid
    (a, gid), (b, _) = out[True], out[False]
    for rel in (f"results/tiny/cubes/{gid}/inventory.nc", f"results/tiny/cubes/{gid}/2023.nc",
                f"results/tiny/scenes/{gid}/inventory.nc"):
        with xr.open_dataset(a / rel) as x, xr.open_dataset(b / rel) as y:
            xr.testing.assert_identical(x.drop_attrs(), y.drop_attrs())
    label = f"results/tiny/labels/debris/inventory/{gid}.tif"
    import rasterio

    with rasterio.open(a / label) as x, rasterio.open(b / label) as y:
        assert (x.read() == y.read()).all() and x.transform == y.transform
    assert (a / f"results/tiny/selection/{gid}/2023.csv").read_text() == (b / f"results/tiny/selection/{gid}/2023.csv").read_text()


def test_the_worker_reads_the_catalog_once_and_a_new_scene_reaches_the_next_job(tiny_region, tmp_path, wdir,
                                                                                 monkeypatch):
    """The worker reads the static catalog before it forks (the child's log has no "read STAC catalog"), and an
    item added to the catalog between two jobs is a candidate of the second (the catalog is read again)."""
    from datetime import timedelta

    import geopandas as gpd
    import pystac

    from glaciermap.config import load_config, source_configs

    work = tmp_path / "w"
    work.mkdir()
    cfg = tiny_workdir(tiny_region, work)
    cfg["train"] = {"members": 1, "epochs": 1, "patch_size": 32, "stride": 16, "val_stride": 32, "batch_size": 8}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(work, "results/tiny/inventory/glaciers.gpkg")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    monkeypatch.chdir(work)
    full = load_config("config.yaml")
    epoch = "2023"
    acfg = {"imagery": full["imagery"], "sources": {full["imagery"]: source_configs(full)[full["imagery"]]},
            "grid": full["grid"], "epochs": {epoch: full["epochs"][epoch]}}
    inv = "results/tiny/inventory/glaciers.gpkg"
    gid = gpd.read_file(inv).sort_values("glac_id").glac_id.iloc[0]

    def job(name, use_worker=True):
        worker.call("glaciermap.data.acquire", "acquire", gid, epoch, acfg, inv, f"{name}.nc", log=f"{name}.log",
                    worker=use_worker, idle_s=30)
        with xr.open_dataset(f"{name}.nc") as ds:
            return int(ds.attrs["n_candidates"]), Path(f"{name}.log").read_text()

    n_own, log_own = job("own", use_worker=False)
    assert "read STAC catalog" in log_own and n_own >= 1
    n1, log1 = job("first")
    assert n1 == n_own and "glaciermap worker not used" not in log1 and "worker child" in log1
    assert "read STAC catalog" not in log1                      # the worker read it, the child inherited it
    # a new scene of the window: a copy of the first candidate, a day later, under a new id
    catalog = acfg["sources"][full["imagery"]]["stac"]["source"]
    cat = pystac.read_file(catalog)
    with xr.open_dataset("first.nc") as ds:
        first_id = str(ds["item_id"].values[0]) if "item_id" in ds else None
    item = next(it for it in cat.get_items(recursive=True) if first_id is None or it.id == first_id)
    item.make_asset_hrefs_absolute()
    new = item.clone()
    new.id, new.datetime = f"{item.id}-again", item.datetime + timedelta(days=1)
    item.get_parent().add_item(new)
    cat.normalize_hrefs(str(Path(catalog).parent))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    n2, log2 = job("second")
    assert n2 == n1 + 1, (n1, n2)
    assert "read STAC catalog" not in log2                      # read again by the worker, not by the child


def test_a_failing_warm_up_is_left_to_the_job_and_the_worker_carries_on(wdir, tmp_path):
    """A catalog that cannot be read fails the warm-up in the worker (logged there, naming the file); the job runs
    and fails on its own (here its missing inventory, read first); the worker takes the next job."""
    missing = tmp_path / "nowhere" / "catalog.json"
    cfg = {"imagery": "s2", "sources": {"s2": {"kind": "sentinel2_l2a", "stac": {"source": str(missing)}}},
           "grid": {}, "epochs": {"2023": {}}}
    with pytest.raises(SystemExit, match=r"inv.gpkg: No such file"):
        worker.call("glaciermap.data.acquire", "acquire", "G1", "2023", cfg, str(tmp_path / "inv.gpkg"),
                    str(tmp_path / "out.nc"), log=str(tmp_path / "job.log"), idle_s=30)
    assert not (tmp_path / "out.nc").exists()
    wlog = Path(f"{worker.socket_path()}.log").read_text()
    assert "warm-up for glaciermap.data.acquire.acquire failed" in wlog and "nowhere/catalog.json" in wlog
    worker.call("glaciermap.worker", "selftest", str(tmp_path / "next"), log=str(tmp_path / "next.log"), idle_s=30)
    assert (tmp_path / "next").read_text().startswith("ok ")
