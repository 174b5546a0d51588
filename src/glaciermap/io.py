"""Shared I/O helpers: atomic writes, skip records and the per-glacier input error."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("glaciermap")

STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"


class GlacierInputError(Exception):
    """Bad input for one glacier: the glacier is skipped, the rest of the region carries on.

    The message always names the glacier, the file and what is wrong.
    """

    def __init__(self, glacier_id: str, path: str | os.PathLike | None, problem: str):
        self.glacier_id = str(glacier_id)
        self.path = "" if path is None else str(path)
        self.problem = problem
        where = f" (file: {self.path})" if self.path else ""
        super().__init__(f"glacier {self.glacier_id}: {problem}{where}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    An interrupted or failing writer therefore never leaves a file that looks complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # writers (GDAL, netCDF) want to create the file themselves
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def write_csv_atomic(path: str | os.PathLike, df) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_netcdf_atomic(path: str | os.PathLike, ds, encoding: dict | None = None) -> None:
    """``ds`` as NetCDF4 (h5netcdf), built in memory and then written under a temporary name.

    Why in memory: when the disk fills (or a file-size limit hits) while HDF5 writes straight to a file, h5py
    raises an OSError but the half-open HDF5 file then crashes the interpreter when it is closed (exit 139,
    seen with h5py 3 / HDF5 1.14). Serialising to bytes first leaves the file I/O to Python, which raises a
    plain OSError naming the file; the temporary file is removed and nothing that looks valid is left.
    """
    data = ds.to_netcdf(None, engine="h5netcdf", encoding=encoding or {})
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as f:
                f.write(data)
        except OSError as e:
            raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from e


def write_gpkg_atomic(path: str | os.PathLike, gdf, layer: str) -> None:
    """A GeoDataFrame as a one-layer GeoPackage (pyogrio), written under a temporary name."""
    with atomic_path(path) as tmp:
        gdf.to_file(tmp, layer=layer, driver="GPKG", engine="pyogrio")


def save_torch_atomic(path: str | os.PathLike, obj) -> None:
    """``torch.save`` under a temporary name: a job killed while saving a checkpoint keeps the previous one."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def skip_dataset(glacier_id: str, epoch: str, reason: str, step: str):
    """An empty NetCDF dataset standing for a skipped (glacier, epoch); downstream steps propagate it."""
    import xarray as xr

    return xr.Dataset(
        attrs={
            "glacier_id": str(glacier_id),
            "epoch": str(epoch),
            "status": STATUS_SKIPPED,
            "reason": reason,
            "skipped_at_step": step,
        }
    )


def read_status(path: str | os.PathLike) -> dict:
    """Status attributes of a per-glacier NetCDF without loading its data."""
    from glaciermap.data.netcdf import read_attrs  # h5py: attributes only, no xarray dataset set-up per upstream file

    attrs = read_attrs(path)
    return {k: attrs.get(k, "") for k in ("glacier_id", "epoch", "status", "reason", "skipped_at_step")}


def read_record(path: str | os.PathLike, names, optional=()):
    """(values, global attributes) of the named variables of a per-glacier NetCDF, in one read; None for a
    skip record. A non-skipped file without one of ``names`` raises MissingVariablesError (a KeyError)
    naming file and variables."""
    from glaciermap.data.netcdf import MissingVariablesError, read_variables

    values, attrs = read_variables(path, [], optional=[*names, *optional])
    if attrs.get("status") == STATUS_SKIPPED:
        return None
    missing = [n for n in names if n not in values]
    if missing:
        raise MissingVariablesError(path, missing)
    return values, attrs


def setup_logging(log_path: str | os.PathLike | None = None, level=logging.INFO) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True)
    log_job_context()


def log_job_context() -> dict:
    """Log where this job runs: under Slurm, its ``SLURM_JOB_ID`` (and step, node, partition).

    Every rule script calls :func:`setup_logging`, so every rule log of a cluster run names the Slurm
    job that wrote it (``SLURM_JOB_ID=1234``). The Slurm executor's job step strips the ``SLURM_*``
    variables before its inner ``srun``, which sets them again for the step: the rule sees them.
    """
    keys = ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURMD_NODENAME", "SLURM_JOB_PARTITION", "SLURM_CPUS_PER_TASK")
    ctx = {k: os.environ[k] for k in keys if os.environ.get(k)}
    if "SLURM_JOB_ID" in ctx:
        log.info("slurm job: %s", " ".join(f"{k}={v}" for k, v in ctx.items()))
    return ctx


class UpstreamSkipped(GlacierInputError):
    """An earlier step already skipped this (glacier, epoch); the reason is carried forward."""

    def __init__(self, glacier_id, path, problem, step: str = ""):
        super().__init__(glacier_id, path, problem)
        self.step = step


def check_upstream(path: str | os.PathLike, glacier_id: str) -> None:
    """Raise :class:`UpstreamSkipped` if the per-glacier NetCDF at ``path`` is a skip record."""
    st = read_status(path)
    if st["status"] == STATUS_SKIPPED:
        raise UpstreamSkipped(glacier_id, path, st["reason"], st["skipped_at_step"])


def run_glacier_step(step: str, glacier_id: str, epoch: str, out_path: str | os.PathLike, build) -> dict:
    """Run ``build() -> (dataset, encoding)`` and write its result atomically to ``out_path``.

    A :class:`GlacierInputError` becomes a skip record in ``out_path`` (the glacier is skipped, visibly,
    and the run goes on); any other exception is a bug and propagates, failing the job.
    """
    try:
        ds, encoding = build()
        ds.attrs.update({"glacier_id": str(glacier_id), "epoch": str(epoch), "status": STATUS_OK, "reason": ""})
    except UpstreamSkipped as e:
        log.warning("%s: skipped upstream: %s", step, e)
        ds, encoding = skip_dataset(glacier_id, epoch, e.problem, step), None
        ds.attrs["skipped_at_step"] = e.step or step
    except GlacierInputError as e:
        log.error("%s: %s", step, e)
        ds, encoding = skip_dataset(glacier_id, epoch, str(e), step), None
    write_netcdf_atomic(out_path, ds, encoding)
    return {k: ds.attrs.get(k) for k in ("glacier_id", "epoch", "status", "reason")}


def prediction_path(folder, glacier_id: str, val: bool = False) -> Path:
    """The file of one glacier in an ``infer`` folder ``.../predictions/<model>/fold<k>/<epoch>``: ``<glacier>.nc``
    for a test glacier, ``val/<glacier>.nc`` for a validation glacier (t0 only). The one place of that layout."""
    return Path(folder) / "val" / f"{glacier_id}.nc" if val else Path(folder) / f"{glacier_id}.nc"


def prediction_files(dirs) -> dict:
    """(glacier, epoch) -> test prediction file of the ``infer`` folders ``.../predictions/<model>/fold<k>/<epoch>``
    (their ``<glacier>.nc`` files; the validation predictions in ``val/`` are read by ``calibrate`` by name).

    A glacier found in two folders (a corrupted layout) is an error naming both.
    """
    out = {}
    for d in map(Path, dirs):
        for f in sorted(d.glob("*.nc")) if d.is_dir() else []:
            if f.name.startswith("."):
                continue
            key = (f.stem, d.name)
            if key in out:
                raise ValueError(f"prediction of glacier {f.stem} at epoch {d.name} found twice: {out[key]} and {f}")
            out[key] = str(f)
    return out


def paired_predictions(pred_dirs, cube_paths) -> tuple[list, list, list]:
    """(keys, prediction files, cube files) for every cube ``.../cubes/<glacier>/<epoch>.nc``, its test prediction
    taken from the ``infer`` folders. Every such cube must have one (a skip record when the glacier could not be
    mapped): a missing prediction is an error naming the glaciers, never a glacier silently left out."""
    preds = prediction_files(pred_dirs)
    cubes = {(Path(c).parent.name, Path(c).stem): str(c) for c in cube_paths}
    missing = [f"{g} at {e}" for g, e in cubes if (g, e) not in preds]
    if missing:
        raise FileNotFoundError(f"{len(missing)} prediction(s) missing from the folders {sorted(map(str, pred_dirs))}: "
                                + ", ".join(missing[:10]))
    keys = list(cubes)
    return keys, [preds[k] for k in keys], [cubes[k] for k in keys]
