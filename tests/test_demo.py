"""Invariants of the synthetic demo region (glaciermap.demo), checked on the "tiny" preset."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import pytest
import rasterio
from rasterio import features

from glaciermap import demo

SCENE_ASSETS = demo.BANDS + ["SCL"]


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "tiny"
    summary = demo.generate(out, seed=0, preset="tiny")
    return out, summary


@pytest.fixture(scope="module")
def region_same_seed(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_again") / "tiny"
    demo.generate(out, seed=0, preset="tiny", workers=2)  # through the process pool this time
    return out


@pytest.fixture(scope="module")
def region_other_seed(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_seed1") / "tiny"
    demo.generate(out, seed=1, preset="tiny")
    return out


def _scene_dirs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "inputs" / "scenes").iterdir() if p.is_dir())


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.profile, ds.transform


def _scenes_csv(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "truth" / "scenes.csv", dtype={"date": str})


def _rasterize(gdf: gpd.GeoDataFrame, like: Path) -> np.ndarray:
    with rasterio.open(like) as ds:
        shape, transform = ds.shape, ds.transform
    shapes = [(g, i + 1) for i, g in enumerate(gdf.geometry) if not g.is_empty]
    return features.rasterize(shapes, out_shape=shape, transform=transform, fill=0, dtype="int32")


# ---------------------------------------------------------------------------------------------- layout


def test_layout_and_summary(region):
    root, summary = region
    spec = demo.PRESETS["tiny"]
    for rel in ["inputs/inventory.gpkg", "inputs/dem/dem_glo30.tif", "inputs/dhdt/dhdt_2010-2014.tif",
                "inputs/dhdt/dhdt_2015-2019.tif", "inputs/catalog/catalog.json", "truth/outlines_t0.gpkg",
                "truth/outlines_2023.gpkg", "truth/areas.csv", "truth/debris_t0.tif", "truth/debris_2023.tif",
                ".complete"]:
        assert (root / rel).is_file(), rel
    lo, hi = spec["n_glaciers"]
    assert lo <= summary["n_glaciers"] <= hi
    assert summary["n_scenes"] == sum(spec["years"].values()) == len(_scene_dirs(root))
    for d in _scene_dirs(root):
        assert sorted(p.stem for p in d.glob("*.tif")) == sorted(SCENE_ASSETS)
    stamp = json.loads((root / ".complete").read_text())
    assert stamp["seed"] == 0 and stamp["preset"] == "tiny"
    assert not list(root.parent.glob(".tiny.tmp-*")), "temporary folder left behind"


def test_inventory_schema_and_dates(region):
    root, _ = region
    inv = gpd.read_file(root / "inputs" / "inventory.gpkg", layer="glaciers")
    assert inv.crs.to_epsg() == 32632
    assert list(inv.columns) == ["glac_id", "area_km2", "src_date", "cenlon", "cenlat", "geometry"]
    assert inv["glac_id"].str.fullmatch(r"DEMO-\d{5}").all() and inv["glac_id"].is_unique
    assert set(inv.geom_type) <= {"Polygon", "MultiPolygon"} and inv.is_valid.all()
    # Alpine longitudes / latitudes around 7.7-8 E, 46 N
    assert inv["cenlon"].between(7.5, 8.2).all() and inv["cenlat"].between(45.8, 46.3).all()
    # inventory dates are the clear dates of their year, all in 2015 for the tiny preset
    sc = _scenes_csv(root)
    clear = set(sc.loc[sc["quality"].isin(["best", "good"]), "date"])
    assert set(inv["src_date"]) <= clear
    assert inv["src_date"].str.startswith("2015-").all()
    # a handful under 0.1 km2 allowed, the rest mapped
    assert (inv["area_km2"] >= 0.1).sum() >= 3


# ---------------------------------------------------------------------------------------------- truth


def test_truth_areas_equal_outline_areas(region):
    root, _ = region
    inv = gpd.read_file(root / "inputs" / "inventory.gpkg", layer="glaciers").set_index("glac_id")
    t0 = gpd.read_file(root / "truth" / "outlines_t0.gpkg").set_index("glac_id")
    t1 = gpd.read_file(root / "truth" / "outlines_2023.gpkg").set_index("glac_id")
    areas = pd.read_csv(root / "truth" / "areas.csv").set_index("glac_id")
    assert list(areas.columns[:9]) == ["date_t0", "area_t0_km2", "date_t1", "area_t1_km2", "rate_km2_per_year",
                                       "rate_pct_per_year", "debris_frac_t0", "debris_frac_t1", "size_class"]
    assert set(inv.index) == set(t0.index) == set(t1.index) == set(areas.index)
    for gdf, col in ((t0, "area_t0_km2"), (t1, "area_t1_km2")):
        assert gdf.is_valid.all()
        poly_km2 = gdf.geometry.area / 1e6
        np.testing.assert_allclose(poly_km2, gdf["area_km2"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(poly_km2, areas.loc[gdf.index, col], rtol=0, atol=1e-9)
        # whole 10 m pixels
        px = gdf.geometry.area / 100.0
        np.testing.assert_allclose(px, np.round(px), atol=1e-6)
    # the inventory is the t0 truth (the tiny preset plants no inventory errors; the demo's: test_demo_inventory_errors)
    errors = pd.read_csv(root / "truth" / "inventory_errors.csv")
    assert list(errors.columns) == ["glac_id", "kind", "error_km2", "inventory_km2", "true_km2"] and errors.empty
    np.testing.assert_allclose(inv["area_km2"], t0.loc[inv.index, "area_km2"], atol=1e-12)
    assert inv.geometry.geom_equals_exact(t0.loc[inv.index].geometry, tolerance=1e-6).all()
    assert (inv["src_date"] == areas.loc[inv.index, "date_t0"]).all()
    # 2023 outlines lie inside the t0 outlines (glaciers never grow)
    for gid in t1.index:
        assert t1.geometry[gid].difference(t0.geometry[gid]).area < 1e-6


def test_planted_change_shrinks_within_bounds(region):
    root, summary = region
    areas = pd.read_csv(root / "truth" / "areas.csv")
    assert (areas["area_t1_km2"] < areas["area_t0_km2"]).all()
    assert areas["rate_pct_per_year"].between(-4.5, -0.3).all(), areas["rate_pct_per_year"].describe()
    sc = _scenes_csv(root)
    best2023 = sc.loc[(sc["year"] == 2023) & (sc["quality"] == "best"), "date"].item()
    assert (areas["date_t1"] == best2023).all() and summary["truth_date_2023"] == best2023
    years = (pd.to_datetime(areas["date_t1"]) - pd.to_datetime(areas["date_t0"])).dt.days / 365.25
    rate = 100 * (areas["area_t1_km2"] - areas["area_t0_km2"]) / areas["area_t0_km2"] / years
    np.testing.assert_allclose(rate, areas["rate_pct_per_year"], atol=1e-5)
    d_area = areas["area_t1_km2"] - areas["area_t0_km2"]
    np.testing.assert_allclose(d_area / years, areas["rate_km2_per_year"], atol=1e-7)


def test_debris_only_on_glaciers_and_growing(region):
    root, _ = region
    d0, _, _ = _read(root / "truth" / "debris_t0.tif")
    d1, _, _ = _read(root / "truth" / "debris_2023.tif")
    g0 = _rasterize(gpd.read_file(root / "truth" / "outlines_t0.gpkg"), root / "truth" / "debris_t0.tif") > 0
    g1 = _rasterize(gpd.read_file(root / "truth" / "outlines_2023.gpkg"), root / "truth" / "debris_t0.tif") > 0
    assert set(np.unique(d0)) <= {0, 1} and d0.any()
    assert not (d0.astype(bool) & ~g0).any(), "debris outside the t0 glaciers"
    assert not (d1.astype(bool) & ~g1).any(), "debris outside the 2023 glaciers"
    assert not (d0.astype(bool) & g1 & ~d1.astype(bool)).any(), "debris disappeared from remaining ice"
    areas = pd.read_csv(root / "truth" / "areas.csv")
    assert (areas["debris_frac_t0"] > 0.6).sum() == demo.PRESETS["tiny"]["n_debris_dominated"][0]
    assert (areas["debris_frac_t1"] >= areas["debris_frac_t0"] - 1e-9).all()


# ---------------------------------------------------------------------------------------------- scenes


def test_reflectance_ranges_and_nodata(region):
    root, _ = region
    saw_partial = False
    for d in _scene_dirs(root):
        scl, prof, _ = _read(d / "SCL.tif")
        assert prof["dtype"] == "uint8" and prof["nodata"] == 0
        assert set(np.unique(scl)) <= {0, 2, 3, 4, 5, 6, 8, 9, 10, 11}
        nodata20 = scl == 0
        saw_partial |= bool(nodata20.any())
        for band in demo.BANDS:
            a, prof, t = _read(d / f"{band}.tif")
            res = demo.BAND_RES[band]
            assert prof["dtype"] == "uint16" and prof["nodata"] == 0 and abs(t.a - res) < 1e-9
            if res == 10:
                nod = np.repeat(np.repeat(nodata20, 2, 0), 2, 1)
            elif res == 20:
                nod = nodata20
            else:
                nod = nodata20[::3, ::3]
            assert a.shape == nod.shape
            assert np.array_equal(a == 0, nod), f"{d.name}/{band}: zeros do not match SCL nodata"
            valid = a[~nod]
            assert valid.min() >= 1 and valid.max() <= 12000
            assert 200 < np.median(valid) < 9000
    assert saw_partial, "no partial (swath-edge) scene"


def test_spectra_snow_cloud_debris(region):
    root, _ = region
    sc = _scenes_csv(root)
    best = sc.loc[(sc["year"] == 2015) & (sc["quality"] == "best"), "item_id"].item()
    d = root / "inputs" / "scenes" / best
    g, _, _ = _read(d / "B03.tif")
    r, _, _ = _read(d / "B04.tif")
    sw, _, _ = _read(d / "B11.tif")
    scl, _, _ = _read(d / "SCL.tif")
    sw10 = np.repeat(np.repeat(sw, 2, 0), 2, 1).astype(float)
    inv = gpd.read_file(root / "inputs" / "inventory.gpkg", layer="glaciers")
    glac = _rasterize(inv, d / "B03.tif") > 0
    debris, _, _ = _read(root / "truth" / "debris_t0.tif")
    clean = glac & (debris == 0)
    ratio = r / np.maximum(sw10, 1)
    # band ratio finds clean ice (the inventory date is this scene), but debris looks like rock
    assert np.median(ratio[clean]) > 2.5
    assert np.median(ratio[debris == 1]) < 1.5
    rock = ~glac & (np.repeat(np.repeat(scl, 2, 0), 2, 1) == 5)
    assert abs(np.median(ratio[debris == 1]) - np.median(ratio[rock])) < 0.5
    # SCL snow is white in the visible and dark in the SWIR
    snow20 = scl == 11
    assert snow20.sum() > 100
    g20 = g.reshape(g.shape[0] // 2, 2, g.shape[1] // 2, 2).mean(axis=(1, 3))
    assert np.median(g20[snow20]) > 2 * np.median(sw[snow20])
    # a cloudy scene: clouds bright in the SWIR too (unlike snow)
    cloudy = sc.loc[sc["quality"] == "cloudy", "item_id"].iloc[0]
    scl_c, _, _ = _read(root / "inputs" / "scenes" / cloudy / "SCL.tif")
    sw_c, _, _ = _read(root / "inputs" / "scenes" / cloudy / "B11.tif")
    assert (scl_c == 9).sum() > 100 and np.median(sw_c[scl_c == 9]) > 3000


def test_some_dates_are_bad_and_one_per_year_is_good(region):
    root, _ = region
    sc = _scenes_csv(root)
    for year, grp in sc.groupby("year"):
        assert (grp["quality"] == "best").sum() == 1
        best = grp[grp["quality"] == "best"].iloc[0]
        assert best["cloud_cover"] < 5 and best["nodata_pct"] == 0
        others = grp[grp["quality"] != "best"]
        assert len(others) >= 1
        # the others are cloudier, partial, or snowier (lower transient snow line)
        worse = (others["cloud_cover"] > best["cloud_cover"] + 3) | (others["nodata_pct"] > 0) | (
            others["snowline_m"] < best["snowline_m"] - 100)
        assert worse.all()


# ---------------------------------------------------------------------------------------------- STAC


def test_stac_catalog_items_and_cloud_cover(region):
    root, summary = region
    cat_path = root / "inputs" / "catalog" / "catalog.json"
    cat = pystac.Catalog.from_file(str(cat_path))
    items = list(cat.get_items(recursive=True))
    s2 = [it for it in items if it.collection_id == "sentinel-2-l2a"]
    aux = {it.id: it for it in items if it.collection_id == "auxiliary"}
    assert len(s2) == summary["n_scenes"]
    assert set(aux) == {"dem-glo30", "dhdt-2010-2014", "dhdt-2015-2019"}
    assert "dem" in aux["dem-glo30"].assets and "dhdt" in aux["dhdt-2015-2019"].assets
    for it in s2:
        p = it.properties
        assert p["proj:code"] == "EPSG:32632"  # (pystac migrates the proj:epsg of the file into proj:code)
        assert p["s2:mgrs_tile"] == "32TMS" and p["platform"] in ("sentinel-2a", "sentinel-2b")
        assert (8, 1) <= (it.datetime.month, it.datetime.day) <= (10, 15)
        assert set(it.assets) == set(SCENE_ASSETS)
        scl, _, t = _read(it.assets["SCL"].get_absolute_href())
        valid = scl != 0
        share = 100 * np.isin(scl, (8, 9, 10))[valid].mean()
        assert abs(p["eo:cloud_cover"] - share) < 0.01
        for key in ("B02", "B05", "B09"):
            a = it.assets[key]
            with rasterio.open(a.get_absolute_href()) as ds:
                assert list(ds.shape) == a.extra_fields["proj:shape"]
                assert np.allclose(list(ds.transform)[:6], a.extra_fields["proj:transform"][:6])
                assert np.allclose(list(ds.bounds), a.extra_fields["proj:bbox"])
    # hrefs are relative, so the folder can move
    raw = json.loads(next((root / "inputs" / "catalog" / "sentinel-2-l2a").glob("*/*.json")).read_text())
    assert raw["properties"]["proj:epsg"] == 32632 and raw["properties"]["proj:code"] == "EPSG:32632"
    assert all(not a["href"].startswith("/") for a in raw["assets"].values())
    assert all(not link["href"].startswith("/") for link in raw["links"])
    assert any(it.properties["eo:cloud_cover"] > 10 for it in s2)


def test_odc_stac_loads_items(region):
    odc_stac = pytest.importorskip("odc.stac")
    root, _ = region
    cat = pystac.Catalog.from_file(str(root / "inputs" / "catalog" / "catalog.json"))
    items = sorted((it for it in cat.get_items(recursive=True) if it.collection_id == "sentinel-2-l2a"),
                   key=lambda it: it.datetime)
    it = items[0]
    b02, _, t = _read(it.assets["B02"].get_absolute_href())
    x0, y0 = t.c, t.f
    bbox = (x0 + 1000, y0 - 3000, x0 + 3000, y0 - 1000)
    from odc.geo.geobox import GeoBox

    gbox = GeoBox.from_bbox(bbox, crs="EPSG:32632", resolution=10)
    ds = odc_stac.load([it], bands=["B02", "B11", "SCL"], geobox=gbox, chunks=None)
    assert ds["B02"].shape == (1, 200, 200) and ds["B02"].dtype == np.uint16
    np.testing.assert_array_equal(ds["B02"].values[0], b02[100:300, 100:300])
    scl, _, _ = _read(it.assets["SCL"].get_absolute_href())
    np.testing.assert_array_equal(ds["SCL"].values[0], np.repeat(np.repeat(scl[50:150, 50:150], 2, 0), 2, 1))
    # every scene, by lon/lat bbox, crs and resolution
    inv = gpd.read_file(root / "inputs" / "inventory.gpkg", layer="glaciers")
    lon, lat = inv["cenlon"].iloc[0], inv["cenlat"].iloc[0]
    ds2 = odc_stac.load(items, bands=["B04", "B8A", "SCL"], crs="EPSG:32632", resolution=10,
                        bbox=(lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01), chunks=None, groupby="id")
    assert ds2.sizes["time"] == len(items) and ds2.sizes["x"] > 100
    assert (ds2["B04"].values > 0).any(axis=(1, 2)).sum() >= len(items) - 1
    dem = odc_stac.load([next(i for i in cat.get_items(recursive=True) if i.id == "dem-glo30")], bands=["dem"],
                        crs="EPSG:32632", resolution=30, chunks=None)
    z = dem["dem"].values
    assert 1000 < np.nanmin(z) < np.nanmax(z) < 4200


def test_workflow_stac_search_finds_the_scenes(region):
    from glaciermap.data import stac

    root, _ = region
    inv = gpd.read_file(root / "inputs" / "inventory.gpkg", layer="glaciers")
    lon, lat = inv["cenlon"].iloc[0], inv["cenlat"].iloc[0]
    found = stac.search_scenes(str(root / "inputs" / "catalog" / "catalog.json"), "sentinel-2-l2a",
                               (lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01), "2015-08-01", "2015-10-15", 75)
    sc = _scenes_csv(root)
    expected = sc[(sc["year"] == 2015) & (sc["cloud_cover"] < 75)]
    assert 1 <= len(found) <= len(expected)
    assert {it.id for it in found} <= set(expected["item_id"])


# ---------------------------------------------------------------------------------------------- DEM / dhdt


def test_dem_and_dhdt(region):
    root, _ = region
    z, prof, t = _read(root / "inputs" / "dem" / "dem_glo30.tif")
    assert prof["dtype"] == "float32" and prof["nodata"] == -9999 and t.a == 30
    lo, hi = demo.PRESETS["tiny"]["relief_m"]
    assert lo - 200 <= z.min() and z.max() <= hi + 200 and z.max() - z.min() > 800
    inv = gpd.read_file(root / "inputs" / "inventory.gpkg", layer="glaciers")
    means = {}
    for period in ("2010-2014", "2015-2019"):
        dh, prof, t = _read(root / "inputs" / "dhdt" / f"dhdt_{period}.tif")
        assert prof["dtype"] == "float32" and prof["nodata"] == -9999 and t.a == 100
        valid = dh != -9999
        glac = features.rasterize(list(inv.geometry), out_shape=dh.shape, transform=t, all_touched=False) > 0
        means[period] = dh[glac & valid].mean()
        assert means[period] < -0.25
        assert abs(dh[~glac & valid].mean()) < 0.2
    assert means["2015-2019"] < means["2010-2014"]


def test_dhdt_periods_follow_their_own_glacier_extents():
    """Each dh/dt period is drawn on the glacier extents of its years: 2010-2014 thins beyond the inventory (t0)
    outlines where the glaciers were larger, ice lost during 2015-2019 thins for part of that period only, ice
    kept to 2023 for all of it; nothing thins where there was never ice."""
    from glaciermap.demo import inventory_errors
    from glaciermap.demo.glaciers import dhdt_signal10, ice_share, make_dhdt
    from glaciermap.demo.history import labels_at, prepare_history

    spec = demo.preset_spec("tiny", None)
    W = demo.build_world(0, spec)
    demo.plant(W, demo.make_schedule(0, spec, W.ela0))
    inventory_errors.apply(W)
    prepare_history(W)
    t0, kept = W.lab10 > 0, W.kept1
    early, _ = labels_at(W, "2010-07-01")
    ring = (early > 0) & ~t0  # ice in 2010, gone by the inventory dates
    assert ring.sum() > 0.03 * t0.sum()
    share, owner = ice_share(W, "2010-2014")
    assert (share[ring] > 0).all() and (owner[ring] == early[ring]).all()
    assert (share[t0] == 1).all()
    share, _ = ice_share(W, "2015-2019")
    lost = t0 & ~kept
    assert (share[kept] == 1).all() and 0.3 < share[lost].mean() < 0.95 and (share[lost] < 1).any()
    never = share == 0
    assert not (never & (W.lab10 > 0)).any()
    # the noise-free signal: thinning (at least the 0.4 m/yr floor x the ice share) wherever there was ice, none elsewhere
    ones = np.ones(W.n + 1)
    for period in demo.DHDT_PERIODS:
        sig, share = dhdt_signal10(W, period, ones)
        k = demo.DHDT_PERIODS[period][2]
        ice = share > 0
        assert (sig[ice] <= -0.4 * k * share[ice] + 1e-6).all() and (sig[~ice] == 0).all()
    sig, _ = dhdt_signal10(W, "2010-2014", ones)
    assert sig[ring].mean() < -0.25  # (the ring is ice for part of 2010-2014; the inventory extent alone gives 0)
    # and the written map (100 m, with its noise) thins on the ring's cells, unlike the cells never near ice
    dh = make_dhdt(W, "2010-2014")
    valid = dh != -9999
    ring_cells = (demo.block_mean(ring.astype(np.float32), 10) > 0.3) & valid
    far = (demo.block_mean((ice_share(W, "2010-2014")[0] > 0).astype(np.float32), 10) == 0) & valid
    assert ring_cells.sum() >= 3 and dh[ring_cells].mean() < dh[far].mean() - 0.15


# ---------------------------------------------------------------------------------------------- determinism


def test_same_seed_same_region(region, region_same_seed):
    root, _ = region
    a = gpd.read_file(root / "inputs" / "inventory.gpkg", layer="glaciers")
    b = gpd.read_file(region_same_seed / "inputs" / "inventory.gpkg", layer="glaciers")
    pd.testing.assert_frame_equal(pd.DataFrame(a.drop(columns="geometry")), pd.DataFrame(b.drop(columns="geometry")))
    assert a.geometry.geom_equals_exact(b.geometry, tolerance=0).all()
    for d in _scene_dirs(root)[:2]:
        other = region_same_seed / "inputs" / "scenes" / d.name
        assert (d / "B02.tif").read_bytes() == (other / "B02.tif").read_bytes()
        np.testing.assert_array_equal(_read(d / "SCL.tif")[0], _read(other / "SCL.tif")[0])
    for rel in ("truth/areas.csv", "inputs/inventory.gpkg", "truth/outlines_2023.gpkg", "inputs/dhdt/dhdt_2015-2019.tif"):
        assert (root / rel).read_bytes() == (region_same_seed / rel).read_bytes(), rel


def test_other_seed_other_region(region, region_other_seed):
    root, _ = region
    z0 = _read(root / "inputs" / "dem" / "dem_glo30.tif")[0]
    z1 = _read(region_other_seed / "inputs" / "dem" / "dem_glo30.tif")[0]
    assert not np.array_equal(z0, z1)
    a = gpd.read_file(root / "inputs" / "inventory.gpkg", layer="glaciers")
    b = gpd.read_file(region_other_seed / "inputs" / "inventory.gpkg", layer="glaciers")
    assert len(a) != len(b) or not np.allclose(a["area_km2"], b["area_km2"])


def test_generate_is_idempotent(region):
    root, _ = region
    cat = root / "inputs" / "catalog" / "catalog.json"
    before = cat.stat().st_mtime_ns
    again = demo.generate(root, seed=0, preset="tiny")
    assert again["skipped"] is True and again["n_glaciers"] >= 4
    assert cat.stat().st_mtime_ns == before


def test_failed_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(demo, "build_catalog", boom)
    out = tmp_path / "tiny"
    with pytest.raises(RuntimeError, match="disk full"):
        demo.generate(out, seed=3, preset="tiny")
    assert not out.exists()
    assert not list(tmp_path.glob(".tiny.tmp-*"))


def _stop_at_build_world(monkeypatch) -> list:
    """Make generation stop at its first step; the list receives the arguments of each attempt."""
    calls = []

    def stop(*a, **k):
        calls.append(a)
        raise RuntimeError("stop")

    monkeypatch.setattr(demo, "build_world", stop)
    return calls


def test_stamp_for_another_seed_regenerates(tmp_path, monkeypatch):
    out = tmp_path / "r"
    (out / "inputs" / "catalog").mkdir(parents=True)
    (out / "inputs" / "catalog" / "catalog.json").write_text("{}")
    (out / ".complete").write_text(json.dumps({"seed": 5, "preset": "tiny", "version": demo.VERSION}))
    calls = _stop_at_build_world(monkeypatch)
    with pytest.raises(RuntimeError, match="stop"):
        demo.generate(out, seed=0, preset="tiny")
    assert calls, "a stamp for another seed must not count as complete"
    assert (out / ".complete").exists()  # the old region is untouched by the failed attempt


# ---------------------------------------------------------------------------------------------- building blocks


def test_flow_tree_accumulation_matches_naive_loop():
    rng = np.random.default_rng(4)
    n = 500
    recv = np.full(n, -1)
    for i in range(1, n):
        recv[i] = rng.integers(0, i)  # a random tree rooted at 0 (parents have smaller ids)
    w = rng.normal(size=n)
    tree = demo.FlowTree(recv)
    naive = w.copy()
    pos = w.copy()
    for i in range(n - 1, 0, -1):
        naive[recv[i]] += naive[i]
        pos[recv[i]] += max(pos[i], 0.0)
    np.testing.assert_allclose(tree.accumulate(w), naive)
    np.testing.assert_allclose(tree.accumulate(w, positive=True), pos)


def test_planted_rate_is_size_dependent_and_bounded():
    rng = np.random.default_rng(0)
    small = [demo.planted_rate_pct(0.05, rng, False) for _ in range(300)]
    large = [demo.planted_rate_pct(8.0, rng, False) for _ in range(300)]
    assert np.mean(small) < np.mean(large) < 0
    assert min(small + large) >= -4.0 and max(small + large) <= -0.4


def test_presets_are_plain_dicts():
    assert set(demo.PRESETS) >= {"demo", "tiny"}
    assert json.loads(json.dumps(demo.PRESETS["demo"], default=str))
    assert demo.PRESETS["tiny"]["years"] == {2015: 3, 2023: 3}
    assert all(6 <= n <= 10 for n in demo.PRESETS["demo"]["years"].values())


def test_scale_preset_keeps_the_demos_densities():
    base = demo.PRESETS["demo"]
    for n in (50, 200, 500):
        spec = demo.scale_spec(n)
        area = spec["size_m"][0] * spec["size_m"][1]
        # the domain grows with the glaciers (to the 300 m rounding of each side), so ice per km2 stays the demo's
        assert area / (base["size_m"][0] * base["size_m"][1]) == pytest.approx(n / 50, rel=0.03)
        assert all(s % 300 == 0 for s in spec["size_m"])
        assert spec["n_glaciers"] == (round(0.8 * n), round(1.2 * n))
        assert spec["n_lakes"] == round(base["n_lakes"] * n / 50)
        assert spec["sensors"] == {} and "facies" not in spec and "inventory_errors" not in spec
        assert spec["years"] == base["years"] and spec["relief_m"] == base["relief_m"]
        assert spec["tile_m"] == tuple(base["size_m"])  # terrain: demo-sized landscapes side by side
    assert demo.scale_spec(50)["size_m"] == tuple(base["size_m"])


def test_preset_spec_names_what_is_wrong():
    assert demo.preset_spec("scale")["glaciers"] == 200
    assert demo.preset_spec("scale", 80)["n_glaciers"] == (64, 96)
    with pytest.raises(ValueError, match="fixed size.*scale"):
        demo.preset_spec("demo", 80)
    with pytest.raises(ValueError, match="unknown preset 'alps'.*scale"):
        demo.preset_spec("alps")
    with pytest.raises(ValueError, match="at least 5"):
        demo.preset_spec("scale", 2)


def test_stamp_for_another_size_regenerates(tmp_path, monkeypatch):
    out = tmp_path / "r"
    (out / "inputs" / "catalog").mkdir(parents=True)
    (out / "inputs" / "catalog" / "catalog.json").write_text("{}")
    stamp = {"seed": 0, "preset": "scale", "version": demo.VERSION, "glaciers": 100,
             "scale_version": demo.SCALE_VERSION, "summary": {"n_glaciers": 97}}
    (out / ".complete").write_text(json.dumps(stamp))
    assert demo.generate(out, seed=0, preset="scale", glaciers=100)["skipped"] is True
    calls = _stop_at_build_world(monkeypatch)
    with pytest.raises(RuntimeError, match="stop"):
        demo.generate(out, seed=0, preset="scale", glaciers=200)
    assert calls and calls[0][1]["n_glaciers"] == (160, 240), "a region of another size must be regenerated"
    # a region of the same size made by the scale preset's earlier recipe (no tiles) is regenerated too
    (out / ".complete").write_text(json.dumps({k: v for k, v in stamp.items() if k != "scale_version"}))
    with pytest.raises(RuntimeError, match="stop"):
        demo.generate(out, seed=0, preset="scale", glaciers=100)
    assert len(calls) == 2 and calls[1][1]["tile_m"] == tuple(demo.PRESETS["demo"]["size_m"])


def test_fractal_noise_largest_scale_caps_the_large_scales():
    rng = np.random.default_rng(3)
    big = 512
    plain = demo.fractal_noise(np.random.default_rng(3), (big, big), 4.0)
    capped = demo.fractal_noise(rng, (big, big), 4.0, largest=64)
    # variance left in 64 px block means (scales beyond one 64 px field): almost all of a plain k^-4 field's, a
    # fifth of the capped one's, whose 64 px windows vary almost as much as the whole field (unit variance)
    blocks = lambda f: f.reshape(8, 64, 8, 64).mean(axis=(1, 3)).var()  # noqa: E731
    inner = lambda f: np.mean([f[i:i + 64, j:j + 64].std()  # noqa: E731
                               for i in range(0, big, 64) for j in range(0, big, 64)])
    assert blocks(plain) > 0.8 and inner(plain) < 0.4
    assert blocks(capped) < 0.3 and inner(capped) > 0.8
    assert capped.std() == pytest.approx(1.0, abs=1e-4)


def test_tiled_terrain_has_a_chain_per_tile_and_valleys_between():
    relief = (1500.0, 3950.0)
    th, tw = 60, 80
    z, tree, _ = demo.make_terrain(np.random.default_rng(1), 2 * th, 2 * tw, relief, 900.0, 30.0, tile=(th, tw))
    assert z.shape == (2 * th, 2 * tw) and tree.recv.size == z.size
    tops = [z[i * th:(i + 1) * th, j * tw:(j + 1) * tw].max() for i in (0, 1) for j in (0, 1)]
    # each of the four landscapes has its own high chain...
    assert min(tops) > relief[0] + 0.6 * (relief[1] - relief[0]), tops
    # ...and the borders between them are main valleys at base level
    lines = np.r_[z[th, :], z[:, tw]]
    assert np.median(lines) < np.percentile(z, 15)
    # the drainage of the crop ends at its border or on a main valley
    ends = np.flatnonzero(tree.recv < 0)
    ey, ex = np.divmod(ends, 2 * tw)
    on_edge = (ey == 0) | (ey == 2 * th - 1) | (ex == 0) | (ex == 2 * tw - 1)
    assert np.all(on_edge | (np.abs(ey - th) <= 1) | (np.abs(ex - tw) <= 1))
