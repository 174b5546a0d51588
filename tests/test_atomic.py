"""Every output is written atomically: the helpers leave nothing at the target when interrupted, and no
code in the package or the rule scripts writes a file any other way."""

from __future__ import annotations

import ast
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from shapely.geometry import box

from glaciermap import io

REPO = Path(__file__).resolve().parents[1]


class Interrupted(Exception):
    pass


def _boom_after_writing(monkeypatch, target_module, name):
    """Make ``target_module.name`` write its file, then fail (a kill half-way through a job)."""
    real = getattr(target_module, name)

    def writer(self_or_obj, path, *a, **kw):
        real(self_or_obj, path, *a, **kw)
        assert Path(path).exists() and Path(path).stat().st_size > 0   # the writer did produce bytes
        raise Interrupted

    monkeypatch.setattr(target_module, name, writer)


WRITERS = {
    "csv": (lambda p: io.write_csv_atomic(p, pd.DataFrame({"a": [1, 2]})), pd.DataFrame, "to_csv"),
    "json": (lambda p: io.write_json_atomic(p, {"a": 1}), None, None),
    "netcdf": (lambda p: io.write_netcdf_atomic(p, xr.Dataset({"v": ("x", np.arange(3.0))})), None, None),
    "gpkg": (lambda p: io.write_gpkg_atomic(p, gpd.GeoDataFrame({"g": ["A"]}, geometry=[box(0, 0, 1, 1)], crs=4326),
                                            "glaciers"), gpd.GeoDataFrame, "to_file"),
    "torch": (lambda p: io.save_torch_atomic(p, {"w": torch.ones(3)}), None, None),
}
SUFFIX = {"csv": ".csv", "json": ".json", "netcdf": ".nc", "gpkg": ".gpkg", "torch": ".pt"}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_interrupted_writer_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch, kind):
    write, cls, method = WRITERS[kind]
    target = tmp_path / "out" / f"result{SUFFIX[kind]}"
    write(target)                                      # a complete write works and leaves only the target
    assert target.exists() and sorted(p.name for p in target.parent.iterdir()) == [target.name]
    good = target.read_bytes()

    fresh = tmp_path / "fresh" / f"result{SUFFIX[kind]}"
    if cls is not None:
        _boom_after_writing(monkeypatch, cls, method)
    elif kind == "netcdf":  # built in memory, then written with open(): half the bytes, then the kill
        real_open = open

        class HalfWrite:
            def __init__(self, p, mode):
                self.f = real_open(p, mode)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                self.f.write(bytes(data)[: len(data) // 2])
                self.f.flush()
                raise Interrupted
        monkeypatch.setattr(io, "open", HalfWrite, raising=False)
    elif kind == "torch":
        real = torch.save

        def bad_save(obj, f, *a, **kw):
            real(obj, f, *a, **kw)
            raise Interrupted
        monkeypatch.setattr(torch, "save", bad_save)
    else:
        monkeypatch.setattr(Path, "write_text", lambda self, text, *a, **kw: (_ for _ in ()).throw(Interrupted()))
    with pytest.raises(Interrupted):
        write(fresh)
    assert not fresh.exists() and list(fresh.parent.iterdir()) == []   # no target, no temporary left
    with pytest.raises(Interrupted):
        write(target)
    assert target.read_bytes() == good                                 # the previous output is untouched
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


# ---------------------------------------------------------------------------------------------------- static audit
#: Calls that write a file. A call is allowed only inside ``with atomic_path(...) as tmp`` writing to ``tmp``
#: (or, for the to_csv/json.dumps family, when it writes no file at all, i.e. has no path argument).
WRITE_METHODS = {"to_csv", "to_file", "to_netcdf", "to_zarr", "savefig", "write_text", "write_bytes", "to_parquet",
                 "to_json", "save"}
#: Writers outside the workflow's outputs: the demo generator stages everything in a temporary folder and
#: renames the whole folder when complete (glaciermap.demo.generate).
EXEMPT = ("src/glaciermap/demo/",)


def _writes(tree: ast.AST):
    """(line, description) of every file-writing call not going through an atomic temporary path."""
    safe_names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            for item in node.items:
                call = item.context_expr
                if (isinstance(call, ast.Call) and getattr(call.func, "id", getattr(call.func, "attr", "")) == "atomic_path"
                        and isinstance(item.optional_vars, ast.Name)):
                    safe_names.add(item.optional_vars.id)

    def target_is_safe(arg):
        return isinstance(arg, ast.Name) and arg.id in safe_names or (
            isinstance(arg, ast.Call) and getattr(arg.func, "id", "") in ("Path", "str")
            and arg.args and target_is_safe(arg.args[0]))

    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = getattr(f, "attr", getattr(f, "id", ""))
        if name == "open":
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
            if isinstance(mode, ast.Constant) and isinstance(mode.value, str) and ("w" in mode.value or "a" in mode.value):
                if not (node.args and target_is_safe(node.args[0])):
                    bad.append((node.lineno, f"open(..., {mode.value!r})"))
            continue
        if name == "dump" and getattr(f.value, "id", "") == "json":
            bad.append((node.lineno, "json.dump"))
            continue
        if name not in WRITE_METHODS:
            continue
        if name == "save" and getattr(f.value, "id", "") != "torch":
            continue
        if name in ("write_text", "write_bytes"):
            if not target_is_safe(f.value):
                bad.append((node.lineno, f"{ast.unparse(f)}"))
            continue
        path_arg = node.args[1] if name == "save" and len(node.args) > 1 else (node.args[0] if node.args else None)
        if path_arg is None and name in ("to_csv", "to_json"):
            continue                       # returns a string, writes nothing
        if name == "to_netcdf" and isinstance(path_arg, ast.Constant) and path_arg.value is None:
            continue                       # to_netcdf(None, ...) returns the bytes, writes nothing
        if path_arg is None or not target_is_safe(path_arg):
            bad.append((node.lineno, ast.unparse(f)))
    return bad


def test_audit_finds_a_bypassing_writer():
    code = ("import json, torch\nfrom glaciermap.io import atomic_path\n"
            "def ok(df, p):\n    with atomic_path(p) as tmp:\n        df.to_csv(tmp)\n    return df.to_csv(index=False)\n"
            "def bad(df, ds, fig, p):\n    df.to_csv(p)\n    ds.to_netcdf(p)\n    fig.savefig(p)\n    torch.save({}, p)\n"
            "    json.dump({}, open(p, 'w'))\n    p.write_text('x')\n")
    found = sorted(d for _, d in _writes(ast.parse(code)))
    assert found == sorted(["df.to_csv", "ds.to_netcdf", "fig.savefig", "torch.save", "json.dump", "open(..., 'w')",
                            "p.write_text"])


def test_no_writer_bypasses_atomic_paths():
    files = sorted((REPO / "src" / "glaciermap").rglob("*.py")) + sorted((REPO / "workflow" / "scripts").glob("*.py"))
    assert len(files) > 20
    offenders = []
    for f in files:
        rel = str(f.relative_to(REPO))
        if rel.startswith(EXEMPT):
            continue
        offenders += [f"{rel}:{line}: {what}" for line, what in _writes(ast.parse(f.read_text()))]
    assert offenders == [], "write through glaciermap.io (atomic_path / write_*_atomic):\n" + "\n".join(offenders)


_FULL_DISK = r"""
import resource, signal, sys
from pathlib import Path
import numpy as np, pandas as pd, xarray as xr
from glaciermap import io
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG, as a full disk fails with ENOSPC
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
out = Path(sys.argv[1])
big = np.random.default_rng(0).random((600, 600)).astype("float32")
writers = {
    "cube.nc": lambda p: io.write_netcdf_atomic(p, xr.Dataset({"a": (("y", "x"), big)})),
    "table.csv": lambda p: io.write_csv_atomic(p, pd.DataFrame({"a": big.ravel()[:200_000]})),
    "record.json": lambda p: io.write_json_atomic(p, {"a": big.ravel()[:50_000].tolist()}),
}
for name, write in writers.items():
    try:
        write(out / name)
        print(name, "WROTE")
    except OSError as e:
        print(name, "OSError", e)
"""


def test_writers_raise_cleanly_when_the_disk_fills(tmp_path):
    """A write that runs out of space raises an OSError naming the file; no crash (exit 139), no partial file."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    lines = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    assert set(lines) == {"cube.nc", "table.csv", "record.json"}
    for name, what in lines.items():
        assert what.startswith("OSError"), (name, what)
    assert f"cannot write {tmp_path / 'cube.nc'}" in lines["cube.nc"]
    assert list(tmp_path.iterdir()) == []  # neither the outputs nor their temporary files are left


def test_prediction_folders_are_read_by_glacier_and_epoch_and_a_missing_one_is_named(tmp_path):
    import pytest

    from glaciermap.io import paired_predictions, prediction_files

    for k, e, g in [(0, "inventory", "A"), (1, "inventory", "B"), (0, "2023", "A")]:
        d = tmp_path / f"fold{k}" / e
        (d / "val").mkdir(parents=True, exist_ok=True)
        (d / f"{g}.nc").write_text("x")
        (d / "val" / "V.nc").write_text("x")       # validation predictions are not test predictions
        (d / f".{g}.nc.staged.nc").write_text("x")  # hidden files are never taken for outputs
    dirs = [tmp_path / "fold0/inventory", tmp_path / "fold1/inventory", tmp_path / "fold0/2023"]
    assert sorted(prediction_files(dirs)) == [("A", "2023"), ("A", "inventory"), ("B", "inventory")]
    cubes = [tmp_path / f"cubes/{g}/inventory.nc" for g in "AB"]
    keys, preds, cube_paths = paired_predictions(dirs, cubes)
    assert keys == [("A", "inventory"), ("B", "inventory")] and preds[1].endswith("fold1/inventory/B.nc")
    with pytest.raises(FileNotFoundError, match=r"1 prediction\(s\) missing .*: B at inventory"):
        paired_predictions(dirs[:1], cubes)
    (tmp_path / "fold1/inventory/A.nc").write_text("x")  # the same glacier in two folds' folders
    with pytest.raises(ValueError, match="prediction of glacier A at epoch inventory found twice"):
        prediction_files(dirs)
