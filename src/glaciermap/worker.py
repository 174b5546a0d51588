"""A long-lived, forking worker for the per-glacier jobs (issue 16, item 3).

Each per-glacier job (``acquire``, ``cube``, ``labels``, ``ts_acquisitions``) is a Snakemake job of its own, so
that a new scene or a new glacier re-runs exactly the jobs it concerns. A job's own work takes ~0.5-1 s; a
fresh Python process spends ~1 s more importing what that work needs (xarray, rasterio, pandas, geopandas;
measured in ``docs/scale.md``). With ``execution.worker: true`` the job's script stays a Snakemake job with its
own inputs, outputs, log and benchmark, but hands its call to a worker that imported those modules once:

- the first job of a run starts the worker (``python -m glaciermap.worker serve``: imports :data:`PRELOAD`,
  listens on a Unix socket, exits after ``execution.worker_idle_s`` without a request); later jobs connect;
- for every request the worker runs the module's ``worker_warm`` hook, if any (it reads what every job reads
  again, a static STAC catalog, into the worker's memory, re-read when a file of it changes), then **forks** a
  child, which takes the job's working directory and environment, writes the job's log (stdout, stderr and the
  ``logging`` records, as the script would), runs the one function, and exits: jobs stay isolated (memory is
  returned, a crash kills only that child), and two jobs run in parallel as before;
- the job (the client) waits for the child's answer and fails with its error, or with a message if the child
  died; a job that is killed (Snakemake's Ctrl-C, a Slurm time limit) kills its child first, and a child whose
  job is gone without a word (SIGKILL) stops as soon as the connection closes, so no output is written after
  its job has ended.

Under Slurm a worker serves one allocation: a group job (the profile groups ``acquire``, ``cube`` and ``labels``)
shares one, a lone job starts its own and gains nothing; it exits :data:`SLURM_IDLE_S` after its last job.

The socket's name holds a key of the interpreter, the glaciermap sources (size and mtime of every module) and the
Slurm allocation (``SLURM_JOB_ID``): code that changed, another environment, or another Slurm job never reaches
an old worker (a job never runs inside another job's allocation). Where no worker can be started (no Unix
sockets, a start that fails), the job runs in its own process as without the worker, and says so in its log.

Not measured by the job's ``benchmark:`` file with the worker: the child's CPU time and memory (the file then
holds the client's; the child writes its own peak RSS and CPU time as the last line of the job's log); the wall
time is right. Resource fits (``docs/measurements``) come from runs without it.
This module imports only the standard library, so a job's client starts in ~0.1 s.
"""

from __future__ import annotations

import argparse
import fcntl
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


def socket_path(key: str | None = None) -> Path:
    """The worker's socket: in ``GLACIERMAP_WORKER_DIR``, else the temporary directory (per-job under Slurm)."""
    base = os.environ.get("GLACIERMAP_WORKER_DIR") or tempfile.gettempdir()
    return Path(base) / f"glaciermap-worker-{os.getuid()}-{key or code_key()}.sock"


def _connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except OSError:
        s.close()
        raise
    return s


def connect(idle_s: float = 120.0, path: Path | None = None) -> socket.socket:
    """A connection to the worker for this code, starting one when none listens (one starter at a time)."""
    path = Path(path or socket_path())
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
                                         str(idle_s)], stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                        start_new_session=True, close_fds=True)
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


def call(module: str, func: str, *args, log: str | None = None, worker: bool = True, idle_s: float = 120.0,
         **kwargs) -> None:
    """Run ``module.func(*args, **kwargs)`` for a job whose log is ``log``: in the worker (``worker``), else here.

    A failure raises ``SystemExit`` with the error (the traceback is in the log), so the job fails as before.
    """
    conn = None
    if worker:
        try:
            conn = connect(idle_s)
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
    """In the forked child: take the job's directory, environment and log, run its function, answer."""
    _send(conn, {"pid": os.getpid()})

    def watch():  # the job sends nothing more: an end of stream means it is gone (even by SIGKILL), so stop
        try:
            gone = not conn.recv(1)
        except OSError:
            gone = True
        if gone:
            os._exit(1)

    import threading

    threading.Thread(target=watch, daemon=True).start()
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
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    from glaciermap.io import setup_logging

    setup_logging(None)  # the jobs' format, to stderr, which is now the job's log
    try:
        getattr(importlib.import_module(req["module"]), req["func"])(*req["args"], **req["kwargs"])
        reply, code = {"ok": True}, 0
    except BaseException as e:  # noqa: BLE001 - every failure goes back to the job
        traceback.print_exc()
        reply, code = {"ok": False, "error": f"{type(e).__name__}: {e}"}, 1
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)  # this child's own (the benchmark file holds the client's)
    logging.getLogger("glaciermap.worker").info("worker child %d: peak RSS %.0f MB, CPU %.2f s, %d page faults",
                                                os.getpid(), ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime,
                                                ru.ru_minflt + ru.ru_majflt)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        _send(conn, reply)
    except OSError:
        pass
    return code


def serve(path: str | os.PathLike, idle_s: float = 120.0, preload=PRELOAD) -> None:
    """Import ``preload``, listen on ``path`` and fork a child per request; exit after ``idle_s`` without one."""
    for m in preload:
        importlib.import_module(m)
    path = Path(path)
    tmp = path.with_name(path.name + f".{os.getpid()}")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(tmp))
    srv.listen(128)
    os.replace(tmp, path)  # atomic: a client never connects to a half-made socket
    ino = os.stat(path).st_ino
    srv.settimeout(0.5)
    children: set[int] = set()
    last = time.monotonic()
    try:
        while True:
            for pid in list(children):
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        children.discard(pid)
                except ChildProcessError:
                    children.discard(pid)
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                if not children and time.monotonic() - last > idle_s:
                    break
                if not path.exists():  # removed (a new worker took the name, or a clean-up): stop taking jobs
                    break
                continue
            last = time.monotonic()
            try:
                conn.settimeout(30.0)
                req = _recv(conn)  # the job sends it at once
            except (OSError, EOFError, pickle.UnpicklingError):
                conn.close()  # a job gone before its request: nothing to run
                continue
            _warm(req)
            pid = os.fork()
            if pid == 0:
                srv.close()
                for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(s, signal.SIG_DFL)
                code = 1
                try:
                    conn.settimeout(None)
                    code = _run_child(conn, req)
                finally:
                    os._exit(code)
            conn.close()
            children.add(pid)
    finally:
        srv.close()
        try:
            if os.stat(path).st_ino == ino:  # still ours (not a successor's)
                path.unlink()
        except OSError:
            pass


def selftest(out: str, text: str = "ok", sleep_s: float = 0.0, fail: bool = False) -> None:
    """A job function for the tests: logs, optionally waits or fails, then writes ``text`` with its pid."""
    import logging

    logging.getLogger("glaciermap.worker").info("selftest in process %d", os.getpid())
    print("selftest on stdout", flush=True)
    if sleep_s:
        time.sleep(sleep_s)
    if fail:
        raise ValueError(f"selftest failure for {out}")
    from glaciermap.io import write_text_atomic

    write_text_atomic(out, f"{text} {os.getpid()}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="The per-glacier job worker (started by the jobs themselves).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="listen on a Unix socket and run job functions in forked children")
    s.add_argument("socket")
    s.add_argument("--idle-s", type=float, default=120.0, help="exit after this many seconds without a request")
    sub.add_parser("key", help="print the socket this code's jobs use")
    a = ap.parse_args(argv)
    if a.cmd == "serve":
        serve(a.socket, a.idle_s)
    else:
        print(socket_path())


if __name__ == "__main__":
    main()
