"""The real RGI 5 inventory of 20 Ötztal glaciers (OGGM sample data, BSD-3-Clause, see its README).

The file is not part of the repository: it lies in ``../shared/data/oggm-sample`` beside the checkout (as
on the development machines and in CI), or in ``$GLACIERMAP_OGGM_SAMPLE``; without it these tests fail,
saying where they looked. Its ``BgnDate`` is ``20030799`` for every glacier (day unknown) and
three outlines have self-touching rings ("Ring Self-intersection"): before the explicit date parsing
and the repair, 0 of the 20 glaciers were mapped.
"""


import numpy as np
import pandas as pd
import pytest

from glaciermap.data.inventory import check_inventory, prepare_inventory, read_glacier, read_inventory, write_inventory

from conftest import oggm_sample

SAMPLE = oggm_sample()
REPAIRED = {"RGI50-11.00648", "RGI50-11.00887", "RGI50-11.00958"}  # the three 'Ring Self-intersection' outlines

# Areas: RGI 5 gives `Area` in km2 rounded to 0.001 (0.15 % of the smallest glacier, 0.340 km2), computed
# in an equal-area projection; we compute in UTM 32N, whose scale factor ~145 km east of the central
# meridian (9 E) shrinks areas by ~0.03 %. Measured (2026-11-30): max |relative difference| 0.107 %
# (RGI50-11.00684, 0.340 km2 in RGI, 0.33964 km2 here), all others within 0.075 %; the tolerance is 0.2 %.
AREA_RTOL = 0.002


@pytest.fixture(scope="module")
def rgi():
    return read_inventory(SAMPLE / "rgi_oetztal.shp")


@pytest.fixture(scope="module")
def checked(rgi):
    return check_inventory(rgi, SAMPLE / "rgi_oetztal.shp", "RGIId", "BgnDate", 0.1)


def test_all_20_glaciers_are_mapped(checked):
    assert len(checked) == 20
    bad = checked.loc[checked["qc_status"] != "ok", ["glac_id", "qc_status", "qc_reason"]]
    assert bad.empty, f"not ok:\n{bad.to_string()}"
    assert checked.geometry.is_valid.all()
    assert set(checked["crs"]) == {"EPSG:32632"}


def test_areas_agree_with_rgi(rgi, checked):
    rel = checked["area_km2"].to_numpy() / rgi["Area"].to_numpy() - 1
    worst = int(np.argmax(np.abs(rel)))
    assert np.abs(rel).max() < AREA_RTOL, f"{checked['glac_id'].iat[worst]}: {100 * rel[worst]:+.3f} %"
    assert checked["area_km2"].sum() == pytest.approx(rgi["Area"].sum(), rel=5e-4)  # 87.7 km2 in all; measured -0.025 %


def test_day_unknown_dates(rgi, checked):
    assert (rgi["BgnDate"] == "20030799").all()
    assert (checked["date"] == "2003-07-15").all() and (checked["date_precision"] == "month").all()


def test_the_three_self_touching_outlines_are_repaired(rgi, checked, caplog):
    assert set(checked.loc[checked["repaired"], "glac_id"]) == REPAIRED
    assert not rgi.loc[rgi["RGIId"].isin(REPAIRED)].geometry.is_valid.any()
    # a self-touching ring only needs re-noding: the repaired areas equal the originals' shoelace areas
    utm = checked.to_crs("EPSG:32632").set_index("glac_id")
    orig = rgi.to_crs("EPSG:32632").set_index("RGIId")
    for g in REPAIRED:
        assert utm.geometry[g].area == pytest.approx(orig.geometry[g].area, rel=1e-9)
    caplog.set_level("WARNING")
    check_inventory(rgi, SAMPLE / "rgi_oetztal.shp", "RGIId", "BgnDate", 0.1)
    warned = [r.message for r in caplog.records if r.levelname == "WARNING" and "repaired" in r.message]
    assert len(warned) == 3 and all("rgi_oetztal.shp" in m for m in warned)


def test_from_config_to_manifest(tmp_path):
    cfg = {"inventory": {"path": str(SAMPLE / "rgi_oetztal.shp"), "layer": None, "id_column": "RGIId",
                         "date_column": "BgnDate", "min_area_km2": 0.5, "date_format": None,
                         "repair_max_area_change": 0.01},
           "grid": {"crs": "auto"}}
    out = prepare_inventory(cfg)
    assert (out["qc_status"] == "small").sum() == 1  # RGI50-11.00684, 0.34 km2
    write_inventory(out, tmp_path / "g.gpkg", tmp_path / "m.csv")
    man = pd.read_csv(tmp_path / "m.csv")
    assert man["repaired"].sum() == 3 and (man["date_precision"] == "month").all()
    one = read_glacier(tmp_path / "g.gpkg", "RGI50-11.00887")
    assert one.geometry.iat[0].is_valid and bool(one["repaired"].iat[0])
    cfg["inventory"]["repair_max_area_change"] = 0.0  # repair off: the three are skipped, saying why
    off = prepare_inventory(cfg).set_index("glac_id")
    assert set(off.index[off["qc_status"] == "skipped"]) == REPAIRED
    assert off.loc["RGI50-11.00648", "qc_reason"].startswith("invalid geometry in row 1: Ring Self-intersection")
