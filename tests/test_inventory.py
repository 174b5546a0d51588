import datetime as dt

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import Polygon, box

from glaciermap.data.inventory import (MANIFEST_COLUMNS, InventoryError, check_inventory, parse_inventory_date,
                                  read_inventory, shoelace_area, write_inventory)

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


# ---------------------------------------------------------------------------------------------- dates

NORTH, SOUTH = 46.8, -50.5


@pytest.mark.parametrize("value, lat, date, precision", [
    ("20030812", NORTH, "2003-08-12", "day"),           # RGI/GLIMS YYYYMMDD
    (20030812, NORTH, "2003-08-12", "day"),             # the same as a numeric field
    (20030812.0, NORTH, "2003-08-12", "day"),
    ("20030799", NORTH, "2003-07-15", "month"),         # 99 = unknown day -> the 15th
    ("20039999", NORTH, "2003-08-15", "year"),          # unknown month: northern melt season
    ("20039999", SOUTH, "2003-02-15", "year"),          # ... southern melt season
    ("2015-08-20", NORTH, "2015-08-20", "day"),         # ISO
    (" 2015-08-20 ", NORTH, "2015-08-20", "day"),
    ("2015-08-20T10:20:31", NORTH, "2015-08-20", "day"),
    ("2015-08-20 10:20", NORTH, "2015-08-20", "day"),
    ("2015-08-20T23:59:59Z", NORTH, "2015-08-20", "day"),
    ("2015-08", SOUTH, "2015-08-15", "month"),
    ("2015", NORTH, "2015-08-15", "year"),
    ("2015", SOUTH, "2015-02-15", "year"),
    (dt.date(2016, 9, 1), NORTH, "2016-09-01", "day"),  # date / datetime values (GeoPackage fields)
    (dt.datetime(2016, 9, 1, 23, 30), NORTH, "2016-09-01", "day"),
    (pd.Timestamp("2016-09-01 10:00"), SOUTH, "2016-09-01", "day"),
    (np.datetime64("2016-09-01T10:00"), NORTH, "2016-09-01", "day"),
])
def test_date_forms(value, lat, date, precision):
    p = parse_inventory_date(value, lat)
    assert (p.date, p.precision, p.reason) == (date, precision, "")


@pytest.mark.parametrize("value", ["-9999999", -9999999, "-999", -999.0, "", "  ", None, np.nan, pd.NaT])
def test_unknown_dates_are_no_date(value):
    p = parse_inventory_date(value, NORTH)
    assert p.date is None and p.precision == "" and p.reason.startswith("no date")


@pytest.mark.parametrize("value, why", [
    ("03/04/2015", "unparsable"),      # 3 April or 4 March: never guessed
    ("2015/08/20", "unparsable"),
    ("20 Aug 2015", "unparsable"),
    ("201508", "unparsable"),
    ("20150230", "invalid date"),      # no 30 February
    ("20151399", "invalid date"),      # month 13
    ("2015-00-10", "invalid date"),
    ("15082003", "invalid date"),      # DDMMYYYY: month 20 does not exist
    ("2015-08-20T25:00", "invalid date"),
])
def test_ambiguous_or_impossible_dates_are_rejected(value, why):
    p = parse_inventory_date(value, NORTH)
    assert p.date is None and p.reason.startswith(why)
    if why == "unparsable":  # the reason names the accepted forms and the way out
        for form in ("YYYYMMDD", "YYYY-MM-DD", "YYYY-MM", "YYYY", "inventory.date_format"):
            assert form in p.reason


def test_configured_date_format():
    assert parse_inventory_date("03/04/2015", NORTH, "%d/%m/%Y")[:2] == ("2015-04-03", "day")
    assert parse_inventory_date("03/04/2015", NORTH, "%m/%d/%Y")[:2] == ("2015-03-04", "day")
    assert parse_inventory_date("04/2015", SOUTH, "%m/%Y")[:2] == ("2015-04-15", "month")
    assert parse_inventory_date("2015", SOUTH, "%Y")[:2] == ("2015-02-15", "year")
    p = parse_inventory_date("2015-04-03", NORTH, "%d/%m/%Y")  # an explicit format is used alone
    assert p.date is None and "does not match inventory.date_format '%d/%m/%Y'" in p.reason
    assert parse_inventory_date(dt.date(2015, 4, 3), NORTH, "%d/%m/%Y").date == "2015-04-03"
    assert parse_inventory_date("-9999999", NORTH, "%d/%m/%Y").reason.startswith("no date")


def _dated(dates, crs="EPSG:32632", y0=Y0):
    geoms = [box(X0 + 2000 * i, y0, X0 + 2000 * i + 1000, y0 + 1000) for i in range(len(dates))]
    return gpd.GeoDataFrame({"glac_id": [f"D{i}" for i in range(len(dates))], "src_date": dates},
                            geometry=geoms, crs=crs)


def test_manifest_dates_precision_and_skips(caplog):
    # '03/04/2015' first: pandas would infer month-first from it; here it is rejected, the others parse
    dates = ["03/04/2015", "20030799", "-9999999", "2015-08-20T10:20:31", "2016", "20169999", "2017-09"]
    out = check_inventory(_dated(dates), "inv.shp", "glac_id", "src_date", 0.1)
    assert list(out.columns[:13]) == MANIFEST_COLUMNS[:13]  # new columns appended after the old ones
    assert list(out.columns[13:]) == ["date_precision", "repaired", "geometry"]
    out = out.set_index("glac_id")
    assert list(out["qc_status"]) == ["skipped", "ok", "skipped", "ok", "ok", "ok", "ok"]
    assert list(out["date"]) == ["03/04/2015", "2003-07-15", "-9999999", "2015-08-20", "2016-08-15", "2016-08-15",
                                 "2017-09-15"]
    assert list(out["date_precision"]) == ["", "month", "", "day", "year", "year", "month"]
    assert "unparsable date '03/04/2015'" in out.loc["D0", "qc_reason"] and "YYYYMMDD" in out.loc["D0", "qc_reason"]
    assert out.loc["D0", "qc_reason"].endswith("(column 'src_date', row 1)")
    assert out.loc["D2", "qc_reason"].startswith("no date ('-9999999'")
    assert any("glacier D2" in r.message and "inv.shp" in r.message for r in caplog.records)


def test_unknown_month_uses_the_glaciers_hemisphere():
    # the same outline in the Alps and in Patagonia (UTM 18S), year-only dates
    north = check_inventory(_dated(["2015", "20159999"]), "f", "glac_id", "src_date", 0.1)
    south = check_inventory(_dated(["2015", "20159999"], crs="EPSG:32718", y0=4400000), "f", "glac_id", "src_date", 0.1)
    assert (north["cenlat"] > 0).all() and (south["cenlat"] < 0).all()
    assert list(north["date"]) == ["2015-08-15"] * 2 and list(south["date"]) == ["2015-02-15"] * 2
    assert (south["qc_status"] == "ok").all() and (south["date_precision"] == "year").all()


def test_date_fields_of_a_geopackage(tmp_path):
    gdf = _dated(["x", "y", "z"]).drop(columns="src_date")
    gdf["d"] = [dt.date(2015, 8, 20), dt.date(2016, 9, 1), None]             # DATE field
    gdf["t"] = pd.to_datetime(["2015-08-20 10:00", "2016-09-01 23:30", None])  # DATETIME field
    gdf.to_file(tmp_path / "d.gpkg", engine="pyogrio")
    back = read_inventory(tmp_path / "d.gpkg")
    for col in ("d", "t"):
        out = check_inventory(back, "d.gpkg", "glac_id", col, 0.1)
        assert list(out["date"][:2]) == ["2015-08-20", "2016-09-01"] and list(out["date_precision"][:2]) == ["day"] * 2
        assert out["qc_status"].iat[2] == "skipped" and out["qc_reason"].iat[2].startswith("no date")


# ---------------------------------------------------------------------------------------------- repairs


def _twisted(d):
    """A 1 km square whose closing edge crosses its first edge: a reversed triangular lobe of ~d*d/2 m2."""
    return Polygon([(X0, Y0), (X0 + 1000, Y0), (X0 + 1000, Y0 + 1000), (X0, Y0 + 1000), (X0 + d, Y0 - d)])


def _self_touching():
    """RGI's 'Ring Self-intersection': the shell visits (X0+500, Y0+1000) twice, enclosing a notch (0.1 km2)."""
    return Polygon([(X0, Y0), (X0 + 1000, Y0), (X0 + 1000, Y0 + 1000), (X0 + 500, Y0 + 1000), (X0 + 700, Y0 + 500),
                    (X0 + 300, Y0 + 500), (X0 + 500, Y0 + 1000), (X0, Y0 + 1000)])


def _geoms(geoms, crs="EPSG:32632"):
    return gpd.GeoDataFrame({"glac_id": [f"R{i}" for i in range(len(geoms))], "src_date": "2015-08-20"},
                            geometry=geoms, crs="EPSG:32632").to_crs(crs)


def test_shoelace_area_of_invalid_rings():
    assert shoelace_area(box(0, 0, 2, 3)) == pytest.approx(6.0)
    assert shoelace_area(Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])) == pytest.approx(0.0)  # bow-tie lobes cancel
    assert shoelace_area(_self_touching()) == pytest.approx(0.9e6)
    assert shoelace_area(_twisted(10)) == pytest.approx(1e6 - 5000)  # the square less the sliver cut off by the closing edge and the reversed lobe
    holed = Polygon(box(0, 0, 10, 10).exterior.coords, [box(1, 1, 2, 2).exterior.coords])
    assert shoelace_area(holed) == pytest.approx(99.0)


@pytest.mark.parametrize("crs", ["EPSG:32632", "EPSG:4326"])
def test_repair_within_tolerance(crs, caplog):
    caplog.set_level("WARNING")
    geoms = [_self_touching(), _twisted(10), _twisted(60), box(X0 + 3000, Y0, X0 + 4000, Y0 + 1000)]
    assert not any(g.is_valid for g in geoms[:3])
    out = check_inventory(_geoms(geoms, crs), "inv.shp", "glac_id", "src_date", 0.1).set_index("glac_id")
    assert (out["qc_status"] == "ok").all() and list(out["repaired"]) == [True, True, True, False]
    assert out.geometry.is_valid.all()
    assert out.loc["R0", "area_km2"] == pytest.approx(0.9, rel=1e-3)  # the notch stays out
    # make_valid keeps the reversed lobe as ice: +2 lobes on the shoelace area (~0.01 % and ~0.35 %)
    assert out.loc["R1", "area_km2"] == pytest.approx(0.995099, rel=1e-3)
    assert out.loc["R2", "area_km2"] == pytest.approx(0.973396, rel=1e-3)
    warned = [r.message for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 3 and all("inv.shp" in m and "make_valid" in m for m in warned)
    assert any("glacier R2" in m and "+0.35" in m for m in warned)


def test_repair_beyond_tolerance_is_skipped_with_both_areas():
    bowtie = Polygon([(X0, Y0), (X0 + 1000, Y0 + 1000), (X0 + 1000, Y0), (X0, Y0 + 1000)])
    out = check_inventory(_geoms([_twisted(200), bowtie]), "f", "glac_id", "src_date", 0.1)
    out = out.set_index("glac_id")
    assert (out["qc_status"] == "skipped").all() and not out["repaired"].any()
    r0, r1 = out.loc["R0", "qc_reason"], out.loc["R1", "qc_reason"]
    assert r0.startswith("invalid geometry in row 1: Self-intersection")
    a0, a1 = shoelace_area(_twisted(200)) / 1e6, shapely.make_valid(_twisted(200)).area / 1e6
    assert f"from {a0:.6f} km2 to {a1:.6f} km2" in r0 and "inventory.repair_max_area_change (1 %)" in r0
    assert "from 0.000000 km2 to 0.500000 km2 (infinite relative change)" in r1
    # R2 (0.35 %) is repaired at the default 1 % but not at 0.1 %, nor with repair turned off
    for tol in (0.001, 0.0):
        strict = check_inventory(_geoms([_twisted(60)]), "f", "glac_id", "src_date", 0.1, repair_max_area_change=tol)
        assert strict["qc_status"].iat[0] == "skipped" and "+0.35 %" in strict["qc_reason"].iat[0]


def test_fingerprint_is_of_the_repaired_outline():
    fixed = shapely.make_valid(_self_touching())
    a = check_inventory(_geoms([_self_touching()]), "f", "glac_id", "src_date", 0.1)
    b = check_inventory(_geoms([fixed]), "f", "glac_id", "src_date", 0.1)
    assert a["repaired"].iat[0] and not b["repaired"].iat[0]
    assert a["fingerprint"].iat[0] == b["fingerprint"].iat[0]
    assert a.geometry.iat[0].equals(b.geometry.iat[0])


def test_new_manifest_columns_round_trip(tmp_path):
    out = check_inventory(_geoms([_self_touching(), box(X0 + 3000, Y0, X0 + 4000, Y0 + 1000)]), "f", "glac_id",
                          "src_date", 0.1)
    write_inventory(out, tmp_path / "g.gpkg", tmp_path / "m.csv")
    man = pd.read_csv(tmp_path / "m.csv")
    assert list(man.columns) == MANIFEST_COLUMNS
    assert list(man["repaired"]) == [True, False] and list(man["date_precision"]) == ["day", "day"]
    back = gpd.read_file(tmp_path / "g.gpkg", layer="glaciers")
    assert back.geometry.is_valid.all() and list(back["repaired"]) == [True, False]


def test_schema_documents_the_new_keys_with_the_functions_defaults():
    import inspect

    from glaciermap.config import load_schema

    props = load_schema()["properties"]["inventory"]["properties"]
    defaults = inspect.signature(check_inventory).parameters
    for key in ("date_format", "repair_max_area_change"):
        assert props[key]["default"] == defaults[key].default and props[key]["description"]
