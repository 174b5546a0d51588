"""A long-lived, forking worker for the per-glacier jobs (issue 16, item 3).

Each per-glacier job (``acquire``, ``cube``, ``labels``, ``ts_acquisitions``) is a Snakemake job of its own, so
that a new scene or a new glacier re-runs exactly the jobs it concerns. A job's own work takes ~0.5-1 s; a
fresh Python process spends ~1 s more importing what that work needs (xarray, rasterio, pandas, geopandas;
measured in ``docs/scale.md``). With ``execution.worker: true`` the job's script stays a Snakemake job with its
own inputs, outputs, log and benchmark, but hands its call to a worker that imported those modules once:

- the first job of a run starts the worker (``python -m glaciermap.worker serve``: imports :data:`PRELOAD`,
  listens on a Unix socket, exits after ``execution.worker_idle_s`` without a request); later jobs connect;
- for a request the worker hands the job to an idle **child** that ran an earlier job, else runs the module's
  ``worker_warm`` hook, if any (it reads what every job reads again, a static STAC catalog, into the worker's
  memory, re-read when a file of it changes), and **forks** a new child. A child takes the job's working
  directory and environment, writes the job's log (stdout, stderr and the ``logging`` records, as the script
  would), runs the one function, answers, and then waits for the next job, up to
  ``execution.worker_jobs_per_child`` (20) jobs, before it exits. Between two jobs it forgets what a job could
  leave behind (:func:`_forget`: every ``functools`` cache of the glaciermap modules except the catalog's, which
  the hook checks against its files before every job; xarray's open files; the warnings already shown; the
  warning filters; the random generators' states), so a job finds the process as a fresh fork would. A child
  that serves many jobs saves the copy-on-write of the worker's memory that a fresh fork pays in each (~50,000
  page faults, ~0.1 s of an ``acquire``; docs/scale.md). A child whose job failed exits instead of taking
  another. Jobs stay isolated from the worker (a crash or a kill ends only that child; the worker forks another),
  and two jobs run in parallel as before;
- the job (the client) waits for the child's answer and fails with its error, or with a message if the child
  died; a job that is killed (Snakemake's Ctrl-C, a Slurm time limit) kills its child first, and a child whose
  job is gone without a word (SIGKILL) stops as soon as the connection closes, so no output is written after
  its job has ended.

Under Slurm a worker serves one allocation: a group job (the profile groups ``acquire``, ``cube`` and ``labels``)
shares one, a lone job starts its own and gains nothing; it exits :data:`SLURM_IDLE_S` after its last job.

The socket's name holds a key of the interpreter, the glaciermap sources (size and mtime of every module) and the
Slurm allocation (``SLURM_JOB_ID``), and the jobs per child: code that changed, another environment, another
Slurm job, or another ``worker_jobs_per_child`` never reaches an old worker (a job never runs inside another job's
allocation). Where no worker can be started (no Unix sockets, a start that fails), the job runs in its own process
as without the worker, and says so in its log.

Not measured by the job's ``benchmark:`` file with the worker: the child's CPU time and memory (the file then
holds the client's; the child writes the function's wall time, its own CPU time and page faults and the
process's peak RSS as the last line of the job's log); the wall time is right. Resource fits
(``docs/measurements``) come from runs without it.
This module imports only the standard library, so a job's client starts in ~0.1 s.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import hashlib
import importlib
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

#: Modules of the per-glacier rules: imported once by the worker, before it takes requests.
PRELOAD = ("glaciermap.data.acquire", "glaciermap.data.cube", "glaciermap.segmentation.labels",
           "glaciermap.timeseries.acquisitions",
           # imported lazily by their first call (measured: the NetCDF engine and the STAC item classes)
           "h5netcdf", "h5py", "pystac")
#: Under Slurm the worker lives in one allocation (``SLURM_JOB_ID`` is in its key), whose end it cannot see when
#: the cluster tracks processes by parentage (a worker runs in its own session): it waits this long at most.
SLURM_IDLE_S = 10.0
START_TIMEOUT_S = 120.0

#: the last line a worker child writes to a job's log: what the job's benchmark file misses (read by
#: glaciermap.job_benchmarks.worker_measures)
CHILD_LINE = "worker child %d (job %d of this process): wall %.3f s, peak RSS %.0f MB, CPU %.2f s, %d page faults"


class WorkerUnavailable(RuntimeError):
    """No worker could be reached or started (the job then runs in its own process)."""


# ---------------------------------------------------------------------------------------------------- framing


def _send(conn: socket.socket, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    conn.sendall(struct.pack("!Q", len(data)) + data)


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)


def _recv(conn: socket.socket):
    (n,) = struct.unpack("!Q", _recv_exact(conn, 8))
    return pickle.loads(_recv_exact(conn, n))


# ---------------------------------------------------------------------------------------------------- addressing


def code_key() -> str:
    """Key of what a worker runs: interpreter, every glaciermap module (path, size, mtime) and the Slurm job."""
    h = hashlib.sha1(sys.executable.encode())
    pkg = Path(__file__).resolve().parent
    for p in sorted(pkg.rglob("*.py")):
        st = p.stat()
        h.update(f"{p.relative_to(pkg)}:{st.st_size}:{st.st_mtime_ns};".encode())
    h.update(os.environ.get("SLURM_JOB_ID", "").encode())
    return h.hexdigest()[:12]


def socket_path(key: str | None = None, jobs_per_child: int = 20) -> Path:
    """The worker's socket: in ``GLACIERMAP_WORKER_DIR``, else the temporary directory (per-job under Slurm). Its
    name holds ``jobs_per_child``, so that changing ``execution.worker_jobs_per_child`` reaches a new worker."""
    base = os.environ.get("GLACIERMAP_WORKER_DIR") or tempfile.gettempdir()
    return Path(base) / f"glaciermap-worker-{os.getuid()}-{key or code_key()}-{int(jobs_per_child)}.sock"


def _connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except OSError:
        s.close()
        raise
    return s


def connect(idle_s: float = 120.0, path: Path | None = None, jobs_per_child: int = 20) -> socket.socket:
    """A connection to the worker for this code, starting one when none listens (one starter at a time)."""
    path = Path(path or socket_path(jobs_per_child=jobs_per_child))
    if os.environ.get("SLURM_JOB_ID"):
        idle_s = min(float(idle_s), SLURM_IDLE_S)
    try:
        return _connect(path)
    except OSError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)  # a lock, not an output: no content
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return _connect(path)
            except OSError:
                pass
            err = os.open(f"{path}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # the worker's own messages
            try:
                proc = subprocess.Popen([sys.executable, "-m", "glaciermap.worker", "serve", str(path), "--idle-s",
                                         str(idle_s), "--jobs-per-child", str(int(jobs_per_child))],
                                        stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True,
                                        close_fds=True)
            finally:
                os.close(err)
            t0 = time.monotonic()
            while time.monotonic() - t0 < START_TIMEOUT_S:
                try:
                    return _connect(path)
                except OSError:
                    if proc.poll() is not None:
                        raise WorkerUnavailable(f"the worker exited with code {proc.returncode} at start "
                                                f"(its messages: {path}.log)")
                    time.sleep(0.05)
            proc.kill()
            raise WorkerUnavailable(f"the worker did not listen on {path} within {START_TIMEOUT_S:.0f} s")
        finally:
            os.close(lock)
    except OSError as e:
        raise WorkerUnavailable(f"cannot start a worker at {path}: {e}") from e


# ---------------------------------------------------------------------------------------------------- client


def options(execution: dict) -> dict:
    """:func:`call`'s keyword arguments from the config's ``execution`` section (not job params: how a job runs
    changes no result, so changing them re-runs nothing)."""
    return {"worker": execution["worker"], "idle_s": execution["worker_idle_s"],
            "jobs_per_child": execution["worker_jobs_per_child"]}


def call(module: str, func: str, *args, log: str | None = None, worker: bool = True, idle_s: float = 120.0,
         jobs_per_child: int = 20, **kwargs) -> None:
    """Run ``module.func(*args, **kwargs)`` for a job whose log is ``log``: in the worker (``worker``), else here.

    A failure raises ``SystemExit`` with the error (the traceback is in the log), so the job fails as before.
    """
    conn = None
    if worker:
        try:
            conn = connect(idle_s, jobs_per_child=jobs_per_child)
        except WorkerUnavailable as e:
            note = f"glaciermap worker not used, the job runs in its own process: {e}"
            print(note, file=sys.stderr)
    if conn is None:
        from glaciermap.io import setup_logging

        setup_logging(log)
        if worker:
            import logging

            logging.getLogger("glaciermap.worker").warning("%s", note)
        getattr(importlib.import_module(module), func)(*args, **kwargs)
        return
    with conn:
        child = None

        def forward(signum, frame):  # the job is being killed: its child must not outlive it
            if child is not None:
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            raise SystemExit(128 + signum)  # (before the child is known: closing the connection stops it)

        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, forward)
        _send(conn, {"module": module, "func": func, "args": args, "kwargs": kwargs, "log": log,
                     "cwd": os.getcwd(), "env": dict(os.environ)})
        child = _recv(conn)["pid"]
        try:
            reply = _recv(conn)
        except EOFError:
            raise SystemExit(f"glaciermap worker: the job's process {child} died without an answer "
                             f"(killed, or a crash in a library); see {log}") from None
    if not reply["ok"]:
        raise SystemExit(f"{reply['error']} (worker process {child}; traceback in {log})")


# ---------------------------------------------------------------------------------------------------- server


def _warm(req: dict) -> None:
    """In the worker, before forking a job's child: the module's ``worker_warm(func, *args, **kwargs)`` hook, if it
    has one, in the job's directory (relative paths), reads what every job of the run reads again (a static STAC
    catalog: ~0.4 s a job on the demo) into the worker's memory, which the children inherit. The hook keeps that
    fresh itself (:func:`glaciermap.data.stac.warm_static`). A failure is logged here and left to the job, which
    meets it again and reports it."""
    try:
        os.chdir(req["cwd"])
        hook = getattr(importlib.import_module(req["module"]), "worker_warm", None)
        if hook is not None:
            hook(req["func"], *req["args"], **req["kwargs"])
    except Exception as e:  # noqa: BLE001 - the job's child meets it again and reports it in the job's log
        print(f"glaciermap worker: warm-up for {req['module']}.{req['func']} failed (the job will report it): "
              f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)


def _run_child(conn: socket.socket, req: dict) -> int:
    """In a child: take the job's directory, environment and log, run its function, answer; then give the
    process's standard streams back (a child may take the next job, :func:`_child_loop`)."""
    _send(conn, {"pid": os.getpid()})
    import threading

    done = threading.Event()

    def watch():  # the job sends nothing more: an end of stream means it is gone (even by SIGKILL), so stop
        try:
            gone = not conn.recv(1)
        except OSError:
            gone = True
        if gone and not done.is_set():
            os._exit(1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    import logging

    if req["log"]:
        Path(req["log"]).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    else:
        fd = os.open(os.devnull, os.O_WRONLY)
    sys.stdout.flush()
    sys.stderr.flush()
    own = os.dup(1), os.dup(2)  # the worker's own streams, given back after the job
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    from glaciermap.io import setup_logging

    setup_logging(None)  # the jobs' format, to stderr, which is now the job's log
    ru0, t0 = _usage(), time.perf_counter()
    try:
        getattr(importlib.import_module(req["module"]), req["func"])(*req["args"], **req["kwargs"])
        reply, code = {"ok": True}, 0
    except BaseException as e:  # noqa: BLE001 - every failure goes back to the job
        traceback.print_exc()
        reply, code = {"ok": False, "error": f"{type(e).__name__}: {e}"}, 1
    ru = _usage()  # this job's own CPU and page faults (the benchmark file holds the client's)
    logging.getLogger("glaciermap.worker").info(
        CHILD_LINE, os.getpid(), req.get("nth", 1), time.perf_counter() - t0, ru[0] / 1024, ru[1] - ru0[1],
        ru[2] - ru0[2])
    sys.stdout.flush()
    sys.stderr.flush()
    done.set()
    try:
        _send(conn, reply)
    except OSError:
        pass
    try:
        conn.shutdown(socket.SHUT_RDWR)  # wakes the watcher, which must not outlive the connection's descriptor
    except OSError:
        pass
    watcher.join()
    conn.close()
    for i, fd in enumerate(own, start=1):
        os.dup2(fd, i)
        os.close(fd)
    return code


def _usage() -> tuple[float, float, int]:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_maxrss, ru.ru_utime + ru.ru_stime, ru.ru_minflt + ru.ru_majflt


def _forget(state: dict) -> None:
    """In a child, between two jobs: leave the process as a freshly forked one would find it, as far as a job can
    see: glaciermap's ``functools`` caches (a file that changed between two jobs is read afresh) except those marked
    ``worker_keep``, whose freshness the modules' ``worker_warm`` hooks check before every job; xarray's open-file
    cache; the warnings already shown (so the next job's log shows them again); the warning filters; and the random
    generators' states."""
    import warnings

    for name, mod in list(sys.modules.items()):
        if name == "glaciermap" or name.startswith("glaciermap."):
            for obj in list(vars(mod).values()):
                try:
                    clear = getattr(obj, "cache_clear", None) if not getattr(obj, "worker_keep", False) else None
                except Exception:  # noqa: BLE001 - an object whose attributes cannot be read holds no cache of ours
                    clear = None
                if callable(clear):
                    clear()
    fm = sys.modules.get("xarray.backends.file_manager")
    if fm is not None:
        for key in list(fm.FILE_CACHE):
            try:
                fm.FILE_CACHE.pop(key).close()
            except Exception:  # noqa: BLE001 - a file the job left open and that cannot close: dropped anyway
                pass
    warnings.resetwarnings()  # bumps the filters' version: every module's registry of warnings shown is void
    warnings.filters[:] = state["warnings"]
    import random

    random.setstate(state["random"])
    if state.get("numpy") is not None:
        sys.modules["numpy"].random.set_state(state["numpy"])


def _child_state() -> dict:
    import random
    import warnings

    np = sys.modules.get("numpy")
    return {"warnings": list(warnings.filters), "random": random.getstate(),
            "numpy": np.random.get_state() if np is not None else None}


def _child_loop(ctrl: socket.socket, conn: socket.socket, req: dict, jobs_per_child: int) -> int:
    """A child's life: the job it was forked for, then (up to ``jobs_per_child`` in all) the jobs the worker hands
    it over ``ctrl``: the connection of each, as a file descriptor, and its request. Reusing a child saves the
    copy-on-write of the worker's memory that a fresh fork pays again in every job (~0.1 s of an ``acquire``)."""
    state = _child_state()
    code = 0
    for nth in range(1, max(1, int(jobs_per_child)) + 1):
        req["nth"] = nth
        code = _run_child(conn, req)
        if nth >= jobs_per_child or code:  # a job that failed may have left the process in any state: no reuse
            break
        _forget(state)
        try:
            ctrl.sendall(b"r")  # ready for another
            got = _recv_job(ctrl)
        except OSError:
            break
        if got is None:  # the worker is gone or stops
            break
        conn, req = got
        _warm(req)  # the warm caches are this child's own: checked against the files before every job
    return code


def _send_job(ctrl: socket.socket, conn: socket.socket, req: dict) -> None:
    socket.send_fds(ctrl, [b"j"], [conn.fileno()])  # the job's connection rides on one byte, then its request
    _send(ctrl, req)


def _recv_job(ctrl: socket.socket):
    """(connection, request) the worker handed over, or None when it closed the channel."""
    msg, fds, _, _ = socket.recv_fds(ctrl, 1, 1)
    if not msg:
        for fd in fds:
            os.close(fd)
        return None
    conn = socket.socket(fileno=fds[0])
    conn.settimeout(None)
    return conn, _recv(ctrl)


def serve(path: str | os.PathLike, idle_s: float = 120.0, preload=PRELOAD, jobs_per_child: int = 20) -> None:
    """Import ``preload``, listen on ``path`` and run each request in a child: an idle one that ran an earlier job
    (:func:`_child_loop`, up to ``jobs_per_child`` jobs each), else a new fork; exit after ``idle_s`` without one."""
    import select

    for m in preload:
        importlib.import_module(m)
    path = Path(path)
    tmp = path.with_name(path.name + f".{os.getpid()}")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(tmp))
    srv.listen(128)
    os.replace(tmp, path)  # atomic: a client never connects to a half-made socket
    ino = os.stat(path).st_ino
    children: dict[int, socket.socket] = {}  # pid -> the channel that hands it jobs
    idle: list[int] = []  # children waiting for a job, the most recent last
    last = time.monotonic()

    def reap(pid):
        children.pop(pid).close()
        if pid in idle:
            idle.remove(pid)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    try:
        while True:
            ready, _, _ = select.select([srv, *children.values()], [], [], 0.5)
            for pid, ctrl in list(children.items()):
                if ctrl in ready:
                    try:
                        word = ctrl.recv(1)
                    except OSError:
                        word = b""
                    if word:
                        idle.append(pid)
                    else:  # it exited: its job limit, a crash, or its job was killed
                        reap(pid)
            if srv not in ready:
                if len(children) == len(idle) and time.monotonic() - last > idle_s:
                    break
                if not path.exists():  # removed (a new worker took the name, or a clean-up): stop taking jobs
                    break
                continue
            conn, _ = srv.accept()
            last = time.monotonic()
            try:
                conn.settimeout(30.0)
                req = _recv(conn)  # the job sends it at once
            except (OSError, EOFError, pickle.UnpicklingError):
                conn.close()  # a job gone before its request: nothing to run
                continue
            while idle:
                pid = idle.pop()
                try:
                    _send_job(children[pid], conn, req)
                    break
                except OSError:  # it died while idle: take another
                    reap(pid)
            else:
                _warm(req)
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                pid = os.fork()
                if pid == 0:
                    srv.close()
                    ours.close()
                    for other in children.values():
                        other.close()
                    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                        signal.signal(s, signal.SIG_DFL)
                    code = 1
                    try:
                        conn.settimeout(None)
                        code = _child_loop(theirs, conn, req, jobs_per_child)
                    finally:
                        os._exit(code)
                theirs.close()
                children[pid] = ours
            conn.close()
    finally:
        srv.close()
        for pid in list(children):  # idle ones exit on the closed channel; busy ones finish their job first
            children.pop(pid).close()
        try:
            if os.stat(path).st_ino == ino:  # still ours (not a successor's)
                path.unlink()
        except OSError:
            pass


def selftest(out: str, text: str = "ok", sleep_s: float = 0.0, fail: bool = False, read: str | None = None,
             warn: bool = False) -> None:
    """A job function for the tests: logs, optionally waits or fails, then writes ``text`` with its pid, and with
    ``read`` the content of that file as a cached read gives it, a draw of numpy's global generator and the
    Python warnings filters' count; ``warn`` issues a warning (shown once per process by the default filter)."""
    import logging
    import warnings

    import numpy as np

    logging.getLogger("glaciermap.worker").info("selftest in process %d", os.getpid())
    print("selftest on stdout", flush=True)
    if warn:
        warnings.warn("selftest warning", UserWarning, stacklevel=1)
        warnings.simplefilter("ignore", DeprecationWarning)  # a filter a job adds must not reach the next
    if sleep_s:
        time.sleep(sleep_s)
    if fail:
        raise ValueError(f"selftest failure for {out}")
    from glaciermap.io import write_text_atomic

    extra = f" {_selftest_read(read)} {np.random.random():.17f} {len(warnings.filters)}" if read else ""
    write_text_atomic(out, f"{text} {os.getpid()}{extra}")


@functools.lru_cache(maxsize=None)
def _selftest_read(path: str) -> str:
    return Path(path).read_text()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="The per-glacier job worker (started by the jobs themselves).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="listen on a Unix socket and run job functions in forked children")
    s.add_argument("socket")
    s.add_argument("--idle-s", type=float, default=120.0, help="exit after this many seconds without a request")
    s.add_argument("--jobs-per-child", type=int, default=20, help="jobs a forked child runs before it exits")
    sub.add_parser("key", help="print the socket this code's jobs use")
    a = ap.parse_args(argv)
    if a.cmd == "serve":
        serve(a.socket, a.idle_s, jobs_per_child=a.jobs_per_child)
    else:
        print(socket_path())


if __name__ == "__main__":
    main()
