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
import re

import h5py
import numpy as np

#: HDF5/netCDF-4 bookkeeping attributes, not user attributes.
_INTERNAL_ATTRS = {"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Coordinates", "_Netcdf4Dimid",
                   "_NCProperties", "_nc3_strict"}


class MissingVariablesError(KeyError):
    """A file lacks variables that a reader needs; ``names`` lists them, the message names the file too."""

    def __init__(self, path, names, what: str = "variable(s)"):
        self.path, self.names = str(path), list(names)
        super().__init__(f"{path} lacks {what} {', '.join(self.names)}")


def _require(f, path, names, what: str = "variable(s)") -> None:
    """Raise MissingVariablesError naming those of ``names`` that the open file ``f`` lacks."""
    missing = [n for n in names if n not in f]
    if missing:
        raise MissingVariablesError(path, missing, what)


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


def _decode(ds: h5py.Dataset, index=()):
    """One variable's values (``ds[index]``, all by default) with CF decoding as xarray does it for glaciermap files."""
    raw = ds[index]
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
        _require(f, path, names)
        wanted = list(names) + [n for n in optional if n in f and n not in names]
        return {n: _decode(f[n]) for n in wanted}, _global_attrs(f)


def read_slices(path: str | os.PathLike, names, index) -> dict:
    """name -> decoded ``variable[index]`` (e.g. one time step of a scene stack) for every name, in one open."""
    with h5py.File(path, "r") as f:
        _require(f, path, names)
        return {n: _decode(f[n], index) for n in names}


#: Name of the CF grid-mapping variable in glaciermap's files (rioxarray's default; georef writes it).
GRID_MAPPING = "spatial_ref"


def _var_attrs(v: h5py.Dataset) -> dict:
    return {k: _attr_value(v.attrs[k]) for k in v.attrs if k not in _INTERNAL_ATTRS}


def read_grid(path: str | os.PathLike) -> dict:
    """x and y (values and attributes), grid-mapping attributes and global attributes of a gridded file.

    Keys: ``x``, ``y``, ``x_attrs``, ``y_attrs``, ``grid_mapping`` (attributes of ``spatial_ref`` or else
    of the variable that a data variable's ``grid_mapping`` attribute names; ``{}`` when the file has
    none, i.e. no CRS) and ``attrs``. One open, no data variable read.
    """
    with h5py.File(path, "r") as f:
        _require(f, path, ("x", "y"), "coordinate(s)")
        named = {_attr_value(v.attrs["grid_mapping"]) for v in f.values()
                 if isinstance(v, h5py.Dataset) and "grid_mapping" in v.attrs}
        gm = next((n for n in [GRID_MAPPING, *sorted(named)] if n in f), None)
        return {"x": _decode(f["x"]), "y": _decode(f["y"]), "x_attrs": _coord_attrs(f["x"]),
                "y_attrs": _coord_attrs(f["y"]), "grid_mapping": {} if gm is None else _var_attrs(f[gm]),
                "attrs": _global_attrs(f)}


def _coord_attrs(v: h5py.Dataset) -> dict:
    """A coordinate's attributes as xarray presents them (encoding attributes such as _FillValue left out)."""
    return {k: a for k, a in _var_attrs(v).items() if k not in ("_FillValue", "scale_factor", "add_offset")}


_TIME_UNITS = {"days": "D", "day": "D", "hours": "h", "hour": "h", "minutes": "min", "minute": "min",
               "seconds": "s", "second": "s", "milliseconds": "ms", "microseconds": "us", "nanoseconds": "ns"}


def decode_times(values, units: str, calendar: str = "proleptic_gregorian"):
    """CF time values ("<unit> since <reference>", Gregorian calendars) as a pandas DatetimeIndex (naive, UTC)."""
    import pandas as pd

    if str(calendar).lower() not in ("standard", "gregorian", "proleptic_gregorian"):
        raise ValueError(f"calendar {calendar!r} is not supported (standard/gregorian/proleptic_gregorian only)")
    m = re.fullmatch(r"\s*(\w+)\s+since\s+(.+?)\s*", str(units))
    if m is None or m.group(1).lower() not in _TIME_UNITS:
        raise ValueError(f"time units {units!r} are not '<days|hours|minutes|seconds|...> since <date>'")
    ref = pd.Timestamp(m.group(2))
    if ref.tzinfo is not None:
        ref = ref.tz_convert("UTC").tz_localize(None)
    return pd.DatetimeIndex(ref + pd.to_timedelta(np.asarray(values).ravel(), unit=_TIME_UNITS[m.group(1).lower()]))


def read_times(path: str | os.PathLike, name: str = "time"):
    """The CF-encoded time coordinate ``name`` of a file as a DatetimeIndex."""
    with h5py.File(path, "r") as f:
        _require(f, path, [name])
        v = f[name]
        return decode_times(v[()], _attr_value(v.attrs.get("units", "")), _attr_value(v.attrs.get("calendar", "standard")))
