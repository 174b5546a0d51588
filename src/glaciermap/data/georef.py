"""CF grid mapping (CRS + transform) of per-glacier cubes, written and read the way rioxarray does it.

Why not ``ds.rio`` here: importing rioxarray pulls in dask.array (~0.8 s), and the per-glacier steps
(select, features) run as hundreds of short processes that need nothing else of it. The attributes come
from the libraries (pyproj's ``CRS.to_cf``, affine's GDAL order, rasterio's CRS parsing); the layout is
rioxarray's, and ``tests/test_georef.py`` checks that both give identical datasets and CRSs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import xarray as xr
from affine import Affine
from pyproj import CRS
from rasterio.crs import CRS as RioCRS

from glaciermap.data.netcdf import GRID_MAPPING


def write_georef(ds: xr.Dataset, crs, transform: Affine) -> xr.Dataset:
    """``ds`` with a ``spatial_ref`` grid-mapping coordinate, each (y, x) variable pointing to it, and CF x/y attributes.

    Equal to ``ds.rio.write_crs(crs).rio.write_transform(transform).rio.write_coordinate_system()``.
    """
    rcrs = RioCRS.from_user_input(crs)        # GDAL's WKT, as rioxarray stores it
    pcrs = CRS.from_user_input(rcrs)
    attrs = pcrs.to_cf()
    attrs["spatial_ref"] = attrs["crs_wkt"] = rcrs.to_wkt()
    attrs["GeoTransform"] = " ".join(str(v) for v in transform.to_gdal())
    out = ds.assign_coords({GRID_MAPPING: xr.Variable((), np.int64(0), attrs)})
    for name, var in out.data_vars.items():
        if "x" in var.dims and "y" in var.dims:
            var.encoding["grid_mapping"] = GRID_MAPPING
    if rcrs.is_projected:
        factor = rcrs.linear_units_factor[-1]
        unit = "metre" if factor == 1 else f"{factor} metre"
        coords = {"x": ("x coordinate of projection", "projection_x_coordinate", unit),
                  "y": ("y coordinate of projection", "projection_y_coordinate", unit)}
    else:
        coords = {"x": ("longitude", "longitude", "degrees_east"), "y": ("latitude", "latitude", "degrees_north")}
    for dim, (long_name, standard_name, units) in coords.items():
        if dim in out.coords:
            out[dim].attrs.update(axis=dim.upper(), long_name=long_name, standard_name=standard_name, units=units)
    return out


def crs_from_grid_mapping(attrs: dict) -> RioCRS | None:
    """The CRS that a CF grid-mapping variable's attributes describe (WKT first, as rioxarray), or None."""
    wkt = attrs.get("spatial_ref") or attrs.get("crs_wkt")
    if wkt:
        return RioCRS.from_wkt(wkt)
    if "grid_mapping_name" in attrs:
        return RioCRS.from_wkt(CRS.from_cf(attrs).to_wkt())
    return None


def read_crs(ds: xr.Dataset) -> RioCRS | None:
    """The CRS of a dataset's CF grid mapping (as ``ds.rio.crs`` reads it), or None when it has none."""
    names = {var.encoding.get("grid_mapping") or var.attrs.get("grid_mapping") for var in ds.data_vars.values()}
    names = [n for n in [GRID_MAPPING, *sorted(n for n in names if n)] if n in ds.variables]
    for name in names:
        crs = crs_from_grid_mapping(ds[name].attrs)
        if crs is not None:
            return crs
    return None


def transform_from_coords(x, y) -> Affine:
    """Affine transform of a regular grid from its pixel-centre coordinates (at least 2 along each axis)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 2 or y.size < 2:
        raise ValueError(f"a grid needs at least 2 pixels along each axis, got {y.size} x {x.size}")
    dx, dy = (x[-1] - x[0]) / (x.size - 1), (y[-1] - y[0]) / (y.size - 1)
    return Affine(dx, 0.0, float(x[0]) - dx / 2, 0.0, dy, float(y[0]) - dy / 2)


class GridInfo(NamedTuple):
    """Grid of a gridded NetCDF file as :func:`read_grid` returns it."""

    x: np.ndarray
    y: np.ndarray
    crs: RioCRS | None
    transform: Affine
    attrs: dict     # global attributes
    x_attrs: dict
    y_attrs: dict


def read_grid(path) -> GridInfo:
    """x, y, CRS, transform and attributes of one of glaciermap's gridded NetCDF files.

    Read through h5py (:func:`glaciermap.data.netcdf.read_grid`): no xarray dataset set-up, which costs
    ~0.2 s per cube. CRS as :func:`read_crs` reads it, transform from the pixel-centre coordinates;
    ``tests/test_georef.py`` checks both against rioxarray.
    """
    from glaciermap.data.netcdf import read_grid as _read

    g = _read(path)
    return GridInfo(g["x"], g["y"], crs_from_grid_mapping(g["grid_mapping"]), transform_from_coords(g["x"], g["y"]),
                    g["attrs"], g["x_attrs"], g["y_attrs"])
