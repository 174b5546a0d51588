"""Rule ``cube``: selection then features in one job gives what the two steps give one after the other."""

import pandas as pd
import xarray as xr

from glaciermap.data import features
from glaciermap.data.cube import cube
from glaciermap.data.select import select_image
from glaciermap.io import read_status
from test_features import make_inputs

SELECTION = {"min_valid_fraction": 0.9, "max_cloud_fraction": 0.3, "buffer_m": 50, "min_clean_pixels": 30}


def _cube(inp, out, selection=SELECTION):
    return cube("G1", "2023", inp["acq"], inp["inv"], selection, inp["dem"], inp["dhdt"], dict(features.DEFAULT_PARAMS),
                out / "sel.csv", out / "cube.nc")


def test_cube_equals_select_then_features(tmp_path):
    inp = make_inputs(tmp_path)
    one = tmp_path / "one"
    status = _cube(inp, one)
    assert status["status"] == "ok", status
    # the two steps one after the other, as the former select and features rules ran them
    two = tmp_path / "two"
    table = select_image("G1", "2023", inp["acq"], inp["inv"], SELECTION, two / "sel.csv")
    features.write_cube(inp["acq"], two / "sel.csv", inp["inv"], "G1", "2023", inp["dem"], inp["dhdt"],
                        dict(features.DEFAULT_PARAMS), two / "cube.nc")
    assert table["chosen"].sum() == 1
    pd.testing.assert_frame_equal(pd.read_csv(one / "sel.csv"), pd.read_csv(two / "sel.csv"))
    with xr.open_dataset(one / "cube.nc") as a, xr.open_dataset(two / "cube.nc") as b:
        # identical but for the attribute that names the selection file read
        assert a.attrs.pop("source_selection") == str(one / "sel.csv")
        assert b.attrs.pop("source_selection") == str(two / "sel.csv")
        xr.testing.assert_identical(a.load(), b.load())
        # the cube is built from the scene the selection chose
        assert a.attrs["item_id"] == table.loc[table["chosen"], "item_id"].item()


def test_no_usable_scene_gives_a_selection_saying_why_and_a_cube_skip_naming_select(tmp_path):
    inp = make_inputs(tmp_path)
    # every candidate clouded over the whole cube
    with xr.open_dataset(inp["acq"]) as ds:
        ds = ds.load()
    ds["mask_cloud"][:] = 1
    inp["acq"] = str(tmp_path / "clouded.nc")
    ds.to_netcdf(inp["acq"], engine="h5netcdf")
    out = tmp_path / "out"
    status = _cube(inp, out)
    sel = pd.read_csv(out / "sel.csv")
    assert not sel["chosen"].any() and (sel["glacier_status"] == "skipped").all()
    assert "no candidate passes the pre-filter" in sel["glacier_reason"].iloc[0]
    assert status["status"] == "skipped"
    st = read_status(out / "cube.nc")
    assert st["skipped_at_step"] == "select" and "G1" in st["reason"]
