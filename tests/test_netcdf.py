"""glaciermap.data.netcdf (h5py reads) against xarray's decoding, on real workflow files and on hand-made ones."""

import numpy as np
import pytest
import xarray as xr

from glaciermap.data.netcdf import decode_times, read_attrs, read_slices, read_times, read_variables
from glaciermap.segmentation.patches import DL4GAM_CHANNELS, load_cube, open_cube


def _same(a, b, name):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, name
    if a.dtype.kind == "O" or b.dtype.kind == "O":
        assert [str(x) for x in a.ravel()] == [str(x) for x in b.ravel()], name
    else:
        assert a.dtype == b.dtype, f"{name}: {a.dtype} != {b.dtype}"
        np.testing.assert_array_equal(a, b, err_msg=name)


def _workflow_files(work):
    res = work / "results" / "tiny"
    cubes = sorted(p for p in (res / "cubes").glob("*/*.nc") if read_attrs(p).get("status") == "ok")
    scenes = sorted((res / "scenes").glob("*/*.nc"))
    preds = sorted((res / "predictions").glob("*/fold*/*/*.nc"))  # <model>/fold<k>/<epoch>/<glacier>.nc
    return cubes, scenes, preds


def test_every_variable_of_real_workflow_files_decodes_as_xarray_does(model_run):
    work, proc = model_run
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    cubes, scenes, preds = _workflow_files(work)
    assert len(cubes) >= 4 and scenes and preds
    for path in cubes[:4] + scenes[:2] + preds[:2]:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            # time is decoded by read_times (tested below), not read_variables
            candidates = [n for n in list(ds.data_vars) + list(ds.coords) if n != "time"]
            values, attrs = read_variables(path, [], optional=candidates)
            assert set(ds.data_vars) <= set(values), path
            for n in values:
                _same(values[n], ds[n].values, f"{path.name}:{n}")
            assert attrs.keys() == ds.attrs.keys(), path
            for k, v in ds.attrs.items():
                assert str(attrs[k]) == str(v), f"{path.name}: attribute {k}"
            assert read_attrs(path) == attrs


def test_load_cube_equals_the_xarray_read(model_run):
    cubes, _, _ = _workflow_files(model_run[0])
    for path in cubes[:3]:
        c = load_cube(path)
        with open_cube(path) as ds:
            _same(c.x, ds["layers"].sel(band=DL4GAM_CHANNELS).values, "layers")
            _same(c.labels, ds["mask_glacier_id"].values.astype(np.int32), "labels")
            _same(c.masked, ds["mask_nodata"].values.astype(bool) | ds["mask_cloud"].values.astype(bool), "masked")
            _same(c.buffer50, ds["mask_buffer_50m"].values.astype(bool), "buffer50")
            _same(c.glacier, ds["mask_glacier"].values.astype(bool), "glacier")
            assert c.glacier_ids == [str(g) for g in ds["glacier_ids"].values]
            assert c.glacier_id == ds.attrs["glacier_id"]
            assert c.resolution == pytest.approx(float(abs(ds["x"].values[1] - ds["x"].values[0])))


def _stack_file(path, enc_layers=None):
    rng = np.random.default_rng(3)
    names = ["B04", "ndsi", "dem", "dhdt"]
    a = rng.uniform(0, 1, (4, 6, 5)).astype(np.float32)
    a[1, 2, 2] = a[3, :2] = np.nan
    a[0] = np.round(a[0] * 1e4) * np.float32(1e-4)
    ds = xr.Dataset({"layers": (("band", "y", "x"), a), "mask_glacier": (("y", "x"), np.ones((6, 5), np.uint8))},
                    coords={"band": ("band", np.array(names, dtype=object)),
                            "band_dn_scale": ("band", np.array([1e-4, 0, 0, 0]))}, attrs={"status": "ok"})
    enc = {"layers": {"dtype": "float32", "_FillValue": np.float32(np.nan), "chunksizes": (1, 6, 5), "zlib": True,
                      **(enc_layers or {})}}
    ds.to_netcdf(path, engine="h5netcdf", encoding=enc)
    return names


@pytest.mark.parametrize("enc", [None, {"dtype": "int16", "scale_factor": 0.001, "_FillValue": -32768}])
def test_read_layers_equals_the_xarray_selection(tmp_path, enc):
    from glaciermap.data.netcdf import MissingVariablesError, read_layers

    p = tmp_path / "s.nc"
    names = _stack_file(p, enc)
    for sel in (["ndsi", "B04"], ["dhdt"], names, []):
        x, v, attrs = read_layers(p, sel, names=["mask_glacier"], optional=["x", "nope"])
        with xr.open_dataset(p) as ds:
            if sel:
                _same(x, ds["layers"].sel(band=sel).values, str(sel))
            _same(v["mask_glacier"], ds["mask_glacier"].values, "mask")
        assert "mask_glacier" in v and "nope" not in v and attrs == {"status": "ok"}
    with pytest.raises(MissingVariablesError, match="layer.*nope"):
        read_layers(p, ["B04", "nope"])


def test_read_variables_reads_layers_by_name(tmp_path):
    """io.read_record on a cube (baseline, comparison): a layer by name; reflectance as the former uint16 gave it."""
    p = tmp_path / "s.nc"
    _stack_file(p)
    v, _ = read_variables(p, ["ndsi", "mask_glacier", "B04"], optional=["dem", "nope"])
    assert list(v) == ["ndsi", "mask_glacier", "B04", "dem"]
    with xr.open_dataset(p) as ds:
        _same(v["ndsi"], ds["layers"].sel(band="ndsi").values, "ndsi")
        b04 = ds["layers"].sel(band="B04").values
    assert v["B04"].dtype == np.float64
    np.testing.assert_array_equal(v["B04"], np.round(b04.astype(np.float64) * 1e4) * 1e-4)
    with pytest.raises(KeyError, match="B99"):
        read_variables(p, ["B04", "B99"])


def test_fill_values_scales_and_offsets_follow_cf(tmp_path):
    """Encodings glaciermap does not write today, decoded like xarray: int16 with offset, float with a non-NaN fill."""
    rng = np.random.default_rng(0)
    a = rng.uniform(-5, 5, (7, 9))
    a[2, 3] = np.nan
    b = rng.uniform(0, 100, (7, 9)).astype(np.float32)
    b[0, 0] = np.nan
    m = rng.integers(0, 3, (7, 9)).astype(np.uint8)
    ds = xr.Dataset({"a": (("y", "x"), a), "b": (("y", "x"), b), "m": (("y", "x"), m),
                     "ids": ("g", np.array(["RGI-1", "RGI-22"], dtype=object))}, attrs={"note": "x", "n": 3})
    enc = {"a": {"dtype": "int16", "scale_factor": 0.001, "add_offset": 1.5, "_FillValue": -32768},
           "b": {"dtype": "float32", "_FillValue": -9999.0}, "m": {"dtype": "uint8", "_FillValue": None}}
    p = tmp_path / "f.nc"
    ds.to_netcdf(p, engine="h5netcdf", encoding=enc)
    values, attrs = read_variables(p, ["a", "b", "m", "ids"])
    with xr.open_dataset(p, engine="h5netcdf") as back:
        for n in ("a", "b", "m", "ids"):
            _same(values[n], back[n].values, n)
        assert np.isnan(values["a"][2, 3]) and np.isnan(values["b"][0, 0])
    assert attrs == {"note": "x", "n": 3}
    with pytest.raises(KeyError, match="lacks variable"):
        read_variables(p, ["a", "nope"])
    only, _ = read_variables(p, ["a"], optional=["nope", "m"])
    assert set(only) == {"a", "m"}


def test_a_truncated_file_is_an_error_not_empty_arrays(tmp_path):
    p = tmp_path / "f.nc"
    xr.Dataset({"a": (("y",), np.arange(1000.0))}).to_netcdf(p, engine="h5netcdf")
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(OSError):
        read_attrs(p)


def test_times_and_slices_of_real_acquisitions_equal_xarray(model_run):
    _, scenes, _ = _workflow_files(model_run[0])
    assert scenes
    for path in scenes[:3]:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            times = read_times(path)
            np.testing.assert_array_equal(times.values, ds["time"].values)
            assert times.dtype == ds["time"].dtype
            # two per-scene layers, whatever the acquisition format names them (B02/SCL or blue/mask_fill)
            pair = [v for v in ds.data_vars if ds[v].dims == ("time", "y", "x")][:2]
            assert len(pair) == 2
            for t in range(ds.sizes["time"]):
                one = read_slices(path, pair, t)
                for n in pair:
                    _same(one[n], ds[n].isel(time=t).values, f"{path.name}:{n}[{t}]")
    with pytest.raises(KeyError, match="B99"):
        read_slices(scenes[0], [pair[0], "B99"], 0)


@pytest.mark.parametrize("units,values", [("hours since 2023-08-01", [0, 36, 1000]),
                                          ("seconds since 2023-08-06 10:37:29", [0, 2160000, 2332212]),
                                          ("days since 2016-01-01T00:00:00+01:00", [0.5, 200.25, 731]),
                                          ("minutes since 1970-01-01", [0, 27_000_000])])
def test_decode_times_follows_cf_as_xarray(tmp_path, units, values):
    path = tmp_path / "t.nc"
    xr.Dataset(coords={"time": ("time", np.asarray(values), {"units": units, "calendar": "standard"})}).to_netcdf(
        path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        np.testing.assert_array_equal(read_times(path).values, ds["time"].values)


def test_decode_times_refuses_what_it_cannot_decode():
    with pytest.raises(ValueError, match="calendar"):
        decode_times([0], "days since 2000-01-01", "360_day")
    with pytest.raises(ValueError, match="since"):
        decode_times([0], "fortnights since 2000-01-01")
