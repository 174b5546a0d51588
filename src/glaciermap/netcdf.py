"""Fast reads of glaciermap's own NetCDF4 files (cubes, scenes, predictions) straight through h5py.

Why: opening a cube with ``xarray.open_dataset(engine="h5netcdf")`` costs ~0.2-0.3 s of metadata work
(h5netcdf resolves every dimension scale of ~35 variables) before a byte of data is read, while the 16
input channels themselves decompress in ~0.05 s. Training, normalisation, patch tables and inference open
every cube of a region, so that overhead was most of their data time. These helpers read only the named
variables and attributes and apply the CF decoding xarray applies to our files (``_FillValue`` -> NaN,
``scale_factor``/``add_offset``); ``tests/test_netcdf.py`` checks them against xarray on real cubes.
Everything else (writing, coordinates, CRS) stays with xarray/rioxarray.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

#: HDF5/netCDF-4 bookkeeping attributes, not user attributes.
_INTERNAL_ATTRS = {"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Coordinates", "_Netcdf4Dimid",
                   "_NCProperties", "_nc3_strict"}


def _attr_value(v):
    """An attribute as xarray presents it: str for strings, Python/NumPy scalars for 1-element arrays."""
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "SO":
            v = np.array([x.decode("utf-8") if isinstance(x, bytes) else x for x in v.ravel()], dtype=object)
        return v[0] if v.size == 1 else v
    if isinstance(v, np.bytes_):
        return v.decode("utf-8")
    return v


#: Global attributes xarray's CF decoding consumes (it moves the listed variables to coordinates).
_DECODED_GLOBAL_ATTRS = {"coordinates"}


def _global_attrs(f: h5py.File) -> dict:
    return {k: _attr_value(f.attrs[k]) for k in f.attrs if k not in _INTERNAL_ATTRS | _DECODED_GLOBAL_ATTRS}


def read_attrs(path: str | os.PathLike) -> dict:
    """Global attributes of a NetCDF4 file as xarray presents them (no data read)."""
    with h5py.File(path, "r") as f:
        return _global_attrs(f)


def _decode(ds: h5py.Dataset):
    """One variable's values with CF decoding as xarray does it for glaciermap files."""
    raw = ds[()]
    if raw.dtype.kind == "O" or raw.dtype.kind == "S":  # variable-length strings (e.g. glacier_ids)
        return np.array([x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in np.ravel(raw)],
                        dtype=object).reshape(np.shape(raw))
    attrs = ds.attrs
    fill = attrs.get("_FillValue")
    scale, offset = attrs.get("scale_factor"), attrs.get("add_offset")
    if scale is None and offset is None:
        if fill is None or raw.dtype.kind not in "iuf":
            return raw
        fill = np.asarray(fill).ravel()[0]
        if raw.dtype.kind == "f":
            return raw if np.isnan(fill) else np.where(raw == fill, np.nan, raw).astype(raw.dtype)
        out = raw.astype(np.float32 if raw.dtype.itemsize <= 2 else np.float64)
        out[raw == fill] = np.nan
        return out
    scale = 1.0 if scale is None else np.asarray(scale).ravel()[0]
    offset = 0.0 if offset is None else np.asarray(offset).ravel()[0]
    # xarray's choice: float32 for <= 2-byte integers unless a float64 scale/offset asks for float64
    wide = raw.dtype.itemsize > 2 or np.asarray(scale).dtype == np.float64 or np.asarray(offset).dtype == np.float64
    out = raw.astype(np.float64 if wide else np.float32)
    if fill is not None:
        bad = raw == np.asarray(fill).ravel()[0]
    out = out * scale + offset if offset != 0 else out * scale
    if fill is not None:
        out[bad] = np.nan
    return out


def read_variables(path: str | os.PathLike, names, optional=()) -> tuple[dict, dict]:
    """(name -> decoded array, global attributes) in one read of the file.

    Every name in ``names`` must be there (KeyError names the missing ones); those in ``optional`` are
    read when present and left out of the result otherwise.
    """
    with h5py.File(path, "r") as f:
        missing = [n for n in names if n not in f]
        if missing:
            raise KeyError(f"{path} lacks variable(s) {', '.join(missing)}")
        wanted = list(names) + [n for n in optional if n in f and n not in names]
        return {n: _decode(f[n]) for n in wanted}, _global_attrs(f)

