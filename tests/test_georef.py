"""glaciermap.data.georef against rioxarray: the same grid mapping written, the same CRS read back."""

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine

from glaciermap.data.georef import read_crs, read_grid, transform_from_coords, write_georef


def _ds():
    y, x = 5100000.0 - 5 - 10 * np.arange(4), 400000.0 + 5 + 10 * np.arange(5)
    return xr.Dataset({"a": (("y", "x"), np.arange(20.0).reshape(4, 5)), "n": ("k", np.arange(3))},
                      coords={"y": y, "x": x})


@pytest.mark.parametrize("crs", ["EPSG:32632", "EPSG:32645", "EPSG:3035", "EPSG:4326"])
def test_write_georef_equals_rioxarray(crs, tmp_path):
    t = Affine(10.0, 0.0, 400000.0, 0.0, -10.0, 5100000.0)
    ours = write_georef(_ds(), crs, t)
    theirs = _ds().rio.write_crs(crs).rio.write_transform(t).rio.write_coordinate_system()
    xr.testing.assert_identical(ours, theirs)
    assert ours["a"].encoding.get("grid_mapping") == theirs["a"].encoding.get("grid_mapping") == "spatial_ref"
    assert "grid_mapping" not in ours["n"].encoding  # not a raster: no grid mapping, as rioxarray
    # on disk and back: rioxarray and our reader agree on CRS and transform
    ours.to_netcdf(tmp_path / "o.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "o.nc", engine="h5netcdf", decode_coords="all") as back:
        assert read_crs(back) == back.rio.crs
        assert read_crs(back).to_string() == back.rio.crs.to_string()
        assert back.rio.transform() == t


def test_read_crs_without_grid_mapping_is_none_and_data_variable_spatial_ref_is_read(tmp_path):
    assert read_crs(_ds()) is None
    t = Affine(10.0, 0.0, 400000.0, 0.0, -10.0, 5100000.0)
    ds = write_georef(_ds(), "EPSG:32632", t)
    ds.to_netcdf(tmp_path / "f.nc", engine="h5netcdf", encoding={"a": {"zlib": True}})  # encoding drops grid_mapping
    with xr.open_dataset(tmp_path / "f.nc", engine="h5netcdf") as back:
        assert "spatial_ref" in back.data_vars and back.rio.crs is None  # rioxarray no longer sees it ...
        assert read_crs(back).to_epsg() == 32632                           # ... we still read the CRS it holds


@pytest.mark.parametrize("crs", ["EPSG:32632", "EPSG:4326"])
def test_read_grid_equals_rioxarray(crs, tmp_path):
    t = Affine(10.0, 0.0, 400000.0, 0.0, -10.0, 5100000.0)
    ds = write_georef(_ds(), crs, t)
    ds["x"].attrs["description"] = "easting"
    ds.attrs.update(title="t", n=3)
    ds.to_netcdf(tmp_path / "g.nc", engine="h5netcdf")
    g = read_grid(tmp_path / "g.nc")
    with xr.open_dataset(tmp_path / "g.nc", engine="h5netcdf", decode_coords="all") as back:
        assert g.crs == back.rio.crs and g.transform == back.rio.transform() == t
        np.testing.assert_array_equal(g.x, back["x"].values)
        np.testing.assert_array_equal(g.y, back["y"].values)
        assert g.x_attrs == back["x"].attrs and g.y_attrs == back["y"].attrs
        assert g.attrs == back.attrs
    _ds().to_netcdf(tmp_path / "n.nc", engine="h5netcdf")
    assert read_grid(tmp_path / "n.nc").crs is None                # no grid mapping: no CRS


def test_transform_from_coords_needs_two_pixels_per_axis():
    assert transform_from_coords([5.0, 15.0], [95.0, 85.0]) == Affine(10.0, 0.0, 0.0, 0.0, -10.0, 100.0)
    with pytest.raises(ValueError, match="at least 2"):
        transform_from_coords([5.0], [95.0, 85.0])
