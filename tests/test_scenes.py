"""glaciermap.data.scenes (h5py reads of acquisition files) against xarray + rioxarray on real workflow files."""

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

from glaciermap.data.grid import CubeGrid
from glaciermap.data.scenes import read_scenes


def _acquisitions(work):
    paths = sorted((work / "results" / "tiny" / "scenes").glob("*/*.nc"))
    with_scenes = [p for p in paths if "item_id" in xr.open_dataset(p, engine="h5netcdf").variables]
    assert with_scenes, "the tiny run acquired no scene"
    return with_scenes


def test_read_scenes_equals_the_xarray_read(model_run):
    work, proc = model_run
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    names = ["blue", "green", "red", "swir1", "mask_fill", "mask_cloud", "mask_shadow"]
    for path in _acquisitions(work)[:3]:
        s = read_scenes(path, names)
        with xr.open_dataset(path, engine="h5netcdf", decode_coords="all") as ds:
            for n in names:
                np.testing.assert_array_equal(s.bands[n], ds[n].values, err_msg=f"{path}:{n}")
                assert s.bands[n].dtype == ds[n].dtype
            assert s.item_ids == [str(i) for i in ds["item_id"].values]
            np.testing.assert_array_equal(s.times.values, ds["time"].values)
            assert s.crs == ds.rio.crs and s.transform == ds.rio.transform()
            assert vars(s.grid) == vars(CubeGrid.from_dataset(ds))
            # one scene by its item id: that time step only
            t = len(s.item_ids) - 1
            one = read_scenes(path, names, s.item_ids[t])
            assert one.item_ids == [s.item_ids[t]] and list(one.times) == [s.times[t]]
            for n in names:
                np.testing.assert_array_equal(one.bands[n], ds[n].isel(time=t).values)


def test_read_scenes_names_what_is_missing(model_run):
    path = _acquisitions(model_run[0])[0]
    with pytest.raises(KeyError, match="B99") as err:
        read_scenes(path, ["blue", "B99"])
    assert err.value.names == ["B99"] and err.value.path == str(path)
    with pytest.raises(LookupError, match="not among the acquired scenes"):
        read_scenes(path, ["blue"], "S2X_NOT_THERE")
