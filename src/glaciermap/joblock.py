"""Per-job lock: one running copy of an expensive job (training, packed training, inference) at a time.

Why: Snakemake 9.27 deletes the whole ``.snakemake/locks`` directory when any non-dry-run invocation exits,
so a further ``snakemake`` in the same working directory can start a job that another invocation is still
running (its "twin"). Snakemake itself deletes a job's declared outputs and logs *before* the job starts and
its declared outputs again when the job *fails* -- the same paths the first job writes. So the twin must
neither run the work a second time nor fail while the first job runs; see docs/concurrency.md.

What: :func:`job_lock` takes an exclusive ``fcntl.flock`` on a small lock file beside the job's outputs and
holds it for the job's lifetime. The kernel releases it when the process ends in any way (SIGKILL, OOM,
Slurm time limit), so a killed job never leaves a stale lock; the file itself stays (it is not a "lock
exists" marker, deleting it while held would let a third process lock a new file). The holder writes who it
is (job, PID, host, start time, Slurm job id) into the file. A twin that finds the lock taken logs that
holder and **waits** for it (polling, without a time limit unless ``GLACIERMAP_JOBLOCK_TIMEOUT_S`` or
``timeout_s`` sets one); once it has the lock, ``JobLock.waited`` tells the caller to check whether the
other job's outputs are complete and, if so, return without redoing (and without touching) them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("glaciermap")

TIMEOUT_ENV = "GLACIERMAP_JOBLOCK_TIMEOUT_S"


class JobLockTimeout(RuntimeError):
    """The lock stayed taken by another process for longer than the time limit."""


@dataclasses.dataclass
class JobLock:
    path: Path
    job: str
    waited: bool = False            # another process held the lock when this one asked for it
    waited_s: float = 0.0
    holder: dict | None = None      # what the other process wrote into the lock file (when waited)
    locked: bool = True             # False: the file system does not support flock (the job runs unguarded)


def holder_info(job: str) -> dict:
    return {"job": job, "pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID", "")}


def read_holder(path) -> dict | None:
    """The holder record of a lock file (None when empty or unreadable, e.g. while it is being written)."""
    try:
        text = Path(path).read_text()
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def describe_holder(holder: dict | None) -> str:
    if not holder:
        return "an unknown process (no holder record yet)"
    slurm = f", Slurm job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return (f"'{holder.get('job', '?')}', PID {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
            f"started {holder.get('started', '?')}{slurm}")


def _timeout_from_env() -> float | None:
    v = os.environ.get(TIMEOUT_ENV, "").strip()
    return float(v) if v else None


@contextlib.contextmanager
def job_lock(lock_path, job: str, timeout_s: float | None = None, poll_s: float = 1.0, log_every_s: float = 600.0):
    """Hold an exclusive lock on ``lock_path`` for the ``with`` block; wait while another process holds it.

    ``timeout_s`` (default: ``$GLACIERMAP_JOBLOCK_TIMEOUT_S``, else no limit): raise :class:`JobLockTimeout`
    naming the job, the lock file and the holder after waiting that long. Yields a :class:`JobLock`.
    """
    path = Path(lock_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    timeout_s = _timeout_from_env() if timeout_s is None else timeout_s
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    state, acquired = JobLock(path, job), False
    try:
        t0 = last_log = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                acquired = True
                break
            except BlockingIOError:
                now = time.monotonic()
                for _ in range(1 if state.waited or state.holder else 20):
                    state.holder = state.holder or read_holder(path)  # empty for an instant after a new holder
                    if state.holder:                                  # takes the lock, until it has written it
                        break
                    time.sleep(0.025)
                if not state.waited or now - last_log >= log_every_s:
                    log.warning("job '%s' is already running: %s (lock file %s). Waiting for it to finish instead "
                                "of running it twice; its outputs are used if it completes.",
                                job, describe_holder(state.holder), path)
                    last_log = now
                state.waited = True
                if timeout_s is not None and now - t0 >= timeout_s:
                    raise JobLockTimeout(
                        f"job '{job}' is already running: {describe_holder(state.holder or read_holder(path))} "
                        f"holds the lock file {path}; gave up after waiting {now - t0:.0f} s. Nothing was written; "
                        f"let the other run finish (or stop it) and run again") from None
                time.sleep(max(0.01, min(poll_s, (timeout_s - (now - t0)) if timeout_s is not None else poll_s)))
            except OSError as e:
                if e.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    log.warning("job '%s': cannot lock %s on this file system (%s): running without the guard "
                                "against a concurrent copy of this job", job, path, e)
                    state.locked = False
                    break
                raise
        state.waited_s = time.monotonic() - t0
        if state.waited:
            log.info("job '%s': got the lock %s after waiting %.1f s", job, path, state.waited_s)
        if state.locked:
            record = (json.dumps(holder_info(job)) + "\n").encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        yield state
    finally:
        # LOCK_UN releases the lock even if forked children (DataLoader workers) still share the descriptor;
        # a process that ends in any way releases it too
        with contextlib.suppress(OSError):
            if acquired:
                os.ftruncate(fd, 0)  # no stale holder record (only the holder writes the file)
                fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def outputs_complete(outputs, inputs=()) -> bool:
    """Every output exists and none is older than the newest existing input (as Snakemake judges it)."""
    outputs = [Path(p) for p in outputs]
    if not all(p.exists() for p in outputs):
        return False
    newest_input = max((Path(p).stat().st_mtime for p in inputs if Path(p).exists()), default=float("-inf"))
    return all(p.stat().st_mtime >= newest_input for p in outputs)
