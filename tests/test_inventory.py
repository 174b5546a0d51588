import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import Polygon, box

from glaciermap.inventory import InventoryError, check_inventory, read_inventory, write_inventory

X0, Y0 = 410000, 5100000


def _inv(crs="EPSG:32632"):
    geoms = [
        box(X0, Y0, X0 + 1000, Y0 + 1000),                       # G1 ok, 1 km2
        box(X0 + 1000, Y0, X0 + 1500, Y0 + 1000),                # G2 ok, shares an ice divide with G1
        Polygon([(X0, Y0 + 2000), (X0 + 1000, Y0 + 3000), (X0 + 1000, Y0 + 2000), (X0, Y0 + 3000)]),  # bow-tie
        Polygon(),                                               # empty
        box(X0 + 3000, Y0, X0 + 3200, Y0 + 200),                 # 0.04 km2: small
        box(X0 + 4000, Y0, X0 + 5000, Y0 + 1000),                # duplicate id
        box(X0 + 6000, Y0, X0 + 7000, Y0 + 1000),                # duplicate id
    ]
    ids = ["G1", "G2", "G3", "G4", "G5", "DUP", "DUP"]
    gdf = gpd.GeoDataFrame({"glac_id": ids, "src_date": ["2015-08-20"] * 7}, geometry=geoms, crs="EPSG:32632")
    return gdf.to_crs(crs)


@pytest.mark.parametrize("crs", ["EPSG:32632", "EPSG:4326", "EPSG:3035"])
def test_statuses_and_areas_in_any_crs(crs, caplog):
    out = check_inventory(_inv(crs), "inv.gpkg", "glac_id", "src_date", 0.1).set_index("glac_id", append=True)
    st = out.reset_index(level=0, drop=True)
    assert st.loc["G1", "qc_status"] == "ok" and st.loc["G2", "qc_status"] == "ok"
    assert abs(st.loc["G1", "area_km2"] - 1.0) < 1e-3  # areas from a metric CRS whatever the file's CRS
    assert st.loc["G1", "crs"] == "EPSG:32632"
    assert st.loc["G3", "qc_status"] == "skipped" and "invalid geometry" in st.loc["G3", "qc_reason"]
    assert st.loc["G4", "qc_status"] == "skipped" and "empty geometry" in st.loc["G4", "qc_reason"]
    assert st.loc["G5", "qc_status"] == "small"
    dup = st.loc[["DUP"]]
    assert (dup["qc_status"] == "skipped").all() and dup["qc_reason"].str.contains("rows 6, 7").all()
    # one message per bad glacier naming it and the file
    assert any("glacier G3" in r.message and "inv.gpkg" in r.message for r in caplog.records)


def test_fingerprint_changes_only_for_the_edited_glacier():
    a = check_inventory(_inv(), "f", "glac_id", "src_date", 0.1).set_index("glac_id")
    inv = _inv()
    inv.loc[1, "geometry"] = box(X0 + 1000, Y0, X0 + 1600, Y0 + 1000)
    b = check_inventory(inv, "f", "glac_id", "src_date", 0.1).set_index("glac_id")
    assert a.loc["G1", "fingerprint"] == b.loc["G1", "fingerprint"]
    assert a.loc["G2", "fingerprint"] != b.loc["G2", "fingerprint"]


def test_missing_column_and_file_fail_clearly(tmp_path):
    with pytest.raises(InventoryError, match="no column 'rgi_id'"):
        check_inventory(_inv(), "inv.gpkg", "rgi_id", "src_date", 0.1)
    with pytest.raises(InventoryError, match="does not exist"):
        read_inventory(tmp_path / "nope.gpkg")


def test_written_inventory_round_trips(tmp_path):
    out = check_inventory(_inv(), "f", "glac_id", "src_date", 0.1)
    write_inventory(out, tmp_path / "g.gpkg", tmp_path / "m.csv")
    back = gpd.read_file(tmp_path / "g.gpkg", layer="glaciers")
    man = pd.read_csv(tmp_path / "m.csv")
    assert list(back["glac_id"]) == list(man["glac_id"]) == list(out["glac_id"])
    assert back.crs.to_epsg() == 4326
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary file left behind
