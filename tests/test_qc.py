"""QC aggregation: a region where every glacier is skipped stops with the reasons, dropped candidates are listed."""

import json

import pandas as pd
import pytest
import xarray as xr

from glaciermap.io import skip_dataset, write_netcdf_atomic
from glaciermap.data.qc import AllSkippedError, collect_qc


def _manifest(tmp_path, ids):
    p = tmp_path / "manifest.csv"
    pd.DataFrame({"glac_id": ids, "qc_status": ["ok"] * len(ids), "qc_reason": [""] * len(ids)}).to_csv(p, index=False)
    return p


def _selection(tmp_path, gid):
    p = tmp_path / f"sel_{gid}.csv"
    pd.DataFrame({"glacier_id": [gid], "item_id": [None], "chosen": [False], "passes": [False], "datetime": [""],
                  "cloud_fraction": [float("nan")], "ndsi": [float("nan")]}).to_csv(p, index=False)
    return p


def test_every_glacier_skipped_stops_with_the_common_reason(tmp_path):
    ids = ["G1", "G2", "G3"]
    cubes, sels = {}, {}
    for g in ids:
        cubes[(g, "2023")] = tmp_path / f"{g}.nc"
        write_netcdf_atomic(cubes[(g, "2023")], skip_dataset(g, "2023", "item S2_X lacks asset(s) SCL (no cloud mask)",
                                                             "acquire"))
        sels[(g, "2023")] = _selection(tmp_path, g)
    out = {k: tmp_path / f"{k}.out" for k in ("skipped", "selected", "summary")}
    with pytest.raises(AllSkippedError, match=r"all 3 glacier\(s\) to map were skipped.*acquire 3") as e:
        collect_qc(_manifest(tmp_path, ids), cubes, sels, out["skipped"], out["selected"], out["summary"])
    assert "3 x item S2_X lacks asset(s) SCL" in str(e.value)
    assert not any(p.exists() for p in out.values())  # nothing that looks like a finished QC


def test_dropped_candidates_are_tabled(tmp_path):
    ids = ["G1", "G2"]
    cubes, sels, scenes = {}, {}, {}
    for g in ids:
        cubes[(g, "2023")] = tmp_path / f"{g}.nc"
        scenes[(g, "2023")] = tmp_path / f"{g}_scenes.nc"
        sels[(g, "2023")] = _selection(tmp_path, g)
    write_netcdf_atomic(cubes[("G1", "2023")], skip_dataset("G1", "2023", "no clear scene", "select"))
    xr.Dataset(attrs={"status": "ok"}).to_netcdf(cubes[("G2", "2023")], engine="h5netcdf")
    drop = [{"item_id": "S2_A", "file": "/x/B11.tif", "reason": "item S2_A: cannot read /x/B11.tif: IOError"}]
    xr.Dataset(attrs={"status": "ok", "dropped_items": json.dumps(drop)}).to_netcdf(scenes[("G1", "2023")], engine="h5netcdf")
    xr.Dataset(attrs={"status": "ok", "dropped_items": "[]"}).to_netcdf(scenes[("G2", "2023")], engine="h5netcdf")
    out = {k: tmp_path / f"{k}.out" for k in ("skipped", "selected", "summary", "dropped")}
    s = collect_qc(_manifest(tmp_path, ids), cubes, sels, out["skipped"], out["selected"], out["summary"],
                   scenes=scenes, out_dropped=out["dropped"])
    table = pd.read_csv(out["dropped"])
    assert table.to_dict("records") == [{"glacier_id": "G1", "epoch": 2023, "item_id": "S2_A", "file": "/x/B11.tif",
                                         "reason": drop[0]["reason"]}]
    assert s["n_candidates_dropped"] == 1 and s["n_glaciers_skipped"] == 1
