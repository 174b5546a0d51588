"""glaciermap.data.sources: the source registry, config checks and reading every kind onto a CubeGrid.

Generated data: small GeoTIFFs written with rasterio into tmp_path and pystac items pointing at them (one
static catalog for the search path). Real data: the ITS_LIVE velocity crop of the OGGM sample data.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from conftest import oggm_sample
from glaciermap.data.grid import CubeGrid, utm_crs_for
from glaciermap.io import GlacierInputError
from glaciermap.data.sources import (KINDS, LandsatC2L2, PerYearRasterSource, RasterSource, Sentinel1, Sentinel2L1C,
                                Sentinel2L2A, SourceConfigError, build_sources, cached_source, check_sources, read,
                                register_kind,
                                s2_offset)

UTC = timezone.utc
CRS = "EPSG:32632"
X0, Y0 = 600000.0, 5100000.0  # top-left corner of the generated scenes (a multiple of 10, 20, 30 and 60 m)
GRID10 = CubeGrid(CRS, X0, Y0 - 80, X0 + 80, Y0, 10)  # 8 x 8 pixels
GRID30 = CubeGrid(CRS, X0, Y0 - 240, X0 + 240, Y0, 30)  # 8 x 8 pixels
OGGM = oggm_sample()  # ../shared/data/oggm-sample beside the checkout (conftest); missing = a failure, not a skip


def write_tif(path, arr, *, res=10.0, crs=CRS, x0=X0, y0=Y0, nodata=None, transform=None) -> str:
    arr = np.asarray(arr)
    with rasterio.open(path, "w", driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=1, dtype=arr.dtype,
                       crs=crs, transform=transform or from_origin(x0, y0, res, res), nodata=nodata) as dst:
        dst.write(arr, 1)
    return str(path)


def lonlat_box(grid: CubeGrid):
    return Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform_bounds(*grid.bounds)


def make_item(item_id, assets: dict, props: dict, dt=datetime(2023, 8, 15, 10, 30, tzinfo=UTC), grid=GRID10,
              collection=None) -> pystac.Item:
    w, s, e, n = lonlat_box(grid)
    geom = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    item = pystac.Item(item_id, geom, [w, s, e, n], dt, dict(props), collection=collection)
    for key, href in assets.items():
        item.add_asset(key, pystac.Asset(str(href), media_type=pystac.MediaType.GEOTIFF))
    return item


def f32(x):
    return np.asarray(x, dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# config: registry, defaults, overrides, errors
# --------------------------------------------------------------------------------------------------

FULL = {"sources": {
    "s2": {"kind": "sentinel2_l2a", "stac": {"source": "https://example.org/stac", "collection": "sentinel-2-l2a"}},
    "s2toa": {"kind": "sentinel2_l1c"},
    "landsat": {"kind": "landsat_c2l2", "stac": {"source": "cat.json", "collection": "landsat-c2-l2", "max_cloud_cover": 70}},
    "s1": {"kind": "sentinel1", "scale": "db"},
    "dem": {"kind": "raster", "path": "dem.tif"},
    "velocity": {"kind": "raster_per_year", "paths": {"2023": {"vx": "vx.tif", "vy": "vy.tif"}}},
}}


def test_build_sources_kinds_and_defaults():
    src = build_sources(FULL)
    assert list(src) == list(FULL["sources"])
    assert [type(s) for s in src.values()] == [Sentinel2L2A, Sentinel2L1C, LandsatC2L2, Sentinel1, RasterSource,
                                               PerYearRasterSource]
    assert build_sources(FULL["sources"]).keys() == src.keys()  # the bare mapping works too
    s2 = src["s2"]
    assert len(s2.bands()) == 12 and "B10" not in s2.bands() and len(src["s2toa"].bands()) == 13
    assert s2.band("red").name == "B04" and s2.band("B04").asset == "B04" and s2.band("nir").name == "B08"
    assert {"blue", "green", "red", "nir", "swir1", "swir2"} <= s2.provides
    assert s2.band("B04").scale == 1e-4 and s2.band("B11").resolution == 20.0 and s2.mask.asset == "SCL"
    assert (s2.mask.fill, s2.mask.cloud, s2.mask.shadow, s2.mask.snow) == ((0,), (8, 9, 10), (3,), (11,))
    assert src["s2toa"].mask is None
    assert s2.stac_source == "https://example.org/stac" and s2.collection == "sentinel-2-l2a"
    assert src["landsat"].max_cloud_cover == 70
    assert {"blue", "green", "red", "nir", "swir1", "swir2", "thermal", "SR_B4", "ST_B10", "ST_B6"} <= src["landsat"].provides
    assert src["s1"].output_scale == "db" and src["s1"].input_scale == "linear"
    assert (s2.has_cloud_cover, src["landsat"].has_cloud_cover, src["s1"].has_cloud_cover) == (True, True, False)
    assert src["velocity"].default_bands == ["magnitude"] and src["velocity"].years == [2023]


def test_cached_source_is_one_object_per_name_and_config():
    cfg = FULL["sources"]["landsat"]
    a = cached_source("landsat", cfg)
    assert isinstance(a, LandsatC2L2) and a.max_cloud_cover == 70
    # the same config, written in another key order: the same object; another value or name: another one
    assert cached_source("landsat", dict(reversed(list(cfg.items())))) is a
    other = cached_source("landsat", dict(cfg, stac=dict(cfg["stac"], max_cloud_cover=20)))
    assert other is not a and other.max_cloud_cover == 20
    assert cached_source("landsat2", cfg) is not a
    with pytest.raises(SourceConfigError):
        cached_source("bad", {"kind": "nope"})


def test_overrides_per_band():
    src = build_sources({"es": {
        "kind": "sentinel2_l2a", "assets": {"red": "red", "B08": "nir", "nir08": "nir08"}, "offset": 0,
        "resampling": {"B04": "cubic"}, "scale": {"swir1": 2e-4}, "mask": {"asset": "scl", "snow": []},
        "clip": None}})["es"]
    assert src.band("B04").asset == "red" and src.band("nir").asset == "nir" and src.band("B8A").asset == "nir08"
    assert src.band("B04").resampling == "cubic" and src.band("B03").resampling == "bilinear"
    assert src.band("B11").scale == 2e-4 and src.band("B12").scale == 1e-4
    assert src.band("B04").offset == 0.0 and src.band("B04").clip is None
    assert src.mask.asset == "scl" and src.mask.snow == () and src.mask.cloud == (8, 9, 10)
    ls = build_sources({"ls": {"kind": "landsat_c2l2", "assets": {"nir": "nir08", "oli": {"thermal": "lwir11"},
                                                                  "tm_etm": {"thermal": "lwir"}}}})["ls"]
    l8 = make_item("l8", {}, {"platform": "landsat-8"})
    l5 = make_item("l5", {}, {"platform": "LANDSAT_5"})
    assert ls.band("thermal", l8).asset == "lwir11" and ls.band("thermal", l5).asset == "lwir"
    assert ls.band("nir", l8).name == "SR_B5" and ls.band("nir", l5).name == "SR_B4"
    assert ls.band("nir", l8).asset == ls.band("nir", l5).asset == "nir08"
    assert ls.band("red", l5).asset == "SR_B3" and ls.band("red", l8).asset == "SR_B4"


@pytest.mark.parametrize("cfg, key, words", [
    ({"x": {"kind": "modis"}}, "sources.x.kind", "unknown kind 'modis'"),
    ({"x": {"path": "a.tif"}}, "sources.x.kind", "missing"),
    ({"x": {"kind": "raster", "path": "a.tif", "colour": "red"}}, "sources.x.colour", "unknown key"),
    ({"x": {"kind": "sentinel2_l2a", "stac": {"source": "c.json", "colection": "s2"}}}, "sources.x.stac.colection", "unknown key"),
    ({"x": {"kind": "sentinel2_l2a", "mask": {"asset": "SCL", "clouds": [8]}}}, "sources.x.mask.clouds", "unknown key"),
    ({"x": {"kind": "sentinel2_l2a", "assets": {"B99": "b99"}}}, "sources.x.assets.B99", "not a band"),
    ({"x": {"kind": "sentinel2_l2a", "assets": {"B10": "cirrus"}}}, "sources.x.assets.B10", "not a band"),  # L2A has no B10
    ({"x": {"kind": "landsat_c2l2", "assets": {"SR_B9": "b9"}}}, "sources.x.assets.SR_B9", "not a band"),
    ({"x": {"kind": "landsat_c2l2", "assets": {"oli": {"ST_B6": "lwir"}}}}, "sources.x.assets.oli.ST_B6", "not a band"),
    ({"x": {"kind": "sentinel2_l2a", "resampling": "bilinar"}}, "sources.x.resampling", "unknown resampling"),
    ({"x": {"kind": "sentinel2_l2a", "resampling": {"B02": "nearest", "B13": "nearest"}}}, "sources.x.resampling.B13", "not a band"),
    ({"x": {"kind": "sentinel2_l2a", "offset": "sometimes"}}, "sources.x.offset", "number"),
    ({"x": {"kind": "sentinel2_l1c", "mask": {"cloud": [1]}}}, "sources.x.mask.asset", "Level-1C has no mask"),
    ({"x": {"kind": "sentinel1", "mask": {"asset": "ls_map"}}}, "sources.x.mask", "no cloud mask"),
    ({"x": {"kind": "sentinel1", "stac": {"source": "c.json", "max_cloud_cover": 20}}}, "sources.x.stac.max_cloud_cover", "eo:cloud_cover"),
    ({"x": {"kind": "sentinel1", "input_scale": "amplitude"}}, "sources.x.input_scale", "linear, db"),
    ({"x": {"kind": "raster"}}, "sources.x.path", "either path or stac"),
    ({"x": {"kind": "raster_per_year", "paths": {"23": "a.tif"}}}, "sources.x.paths.23", "years"),
    ({"x": {"kind": "raster_per_year", "paths": {2023: {"vx": "a", "vy": "b"}, 2019: "c"}}}, "sources.x.paths.2019", "components"),
    ({"x": {"kind": "raster_per_year", "paths": {2023: {"u": "a", "v": "b"}}, "vector": ["vx", "vy"]}}, "sources.x.vector", "components"),
    ({"x": {"kind": "raster_per_year", "paths": {2023: "a"}, "nearest_year": "yes"}}, "sources.x.nearest_year", "true or false"),
])
def test_config_errors_name_source_and_key(cfg, key, words):
    with pytest.raises(SourceConfigError) as e:
        build_sources({"sources": cfg})
    assert str(e.value).startswith(key + ":"), str(e.value)
    assert words in str(e.value)
    assert e.value.source == "x"


def test_require_names_missing_channel_bands():
    src = build_sources(FULL)
    src["landsat"].require(["red", "nir", "thermal", "SR_B4"], key="channels")
    with pytest.raises(SourceConfigError, match=r"^sources.s2.channels.thermal: .*does not provide band 'thermal'"):
        src["s2"].require(["red", "thermal"], key="channels")
    src["s1"].require(["VV", "vh"])


def test_check_sources_collects_every_problem():
    problems = check_sources({"sources": {"a": {"kind": "modis"}, "b": {"kind": "raster", "path": "x", "bogus": 1},
                                          "ok": {"kind": "sentinel1"}}})
    assert len(problems) == 2 and problems[0].startswith("sources.a.kind") and problems[1].startswith("sources.b.bogus")
    assert check_sources(FULL) == []


def test_docs_describe_every_kind_and_key():
    text = (Path(__file__).resolve().parents[1] / "docs" / "sources.md").read_text()
    sections = {}
    for block in text.split("\n### ")[1:]:
        sections[block.split("`")[1]] = block
    for kind, cls in KINDS.items():
        section = sections[kind] + (sections["sentinel2_l2a"] if kind == "sentinel2_l1c" else "")
        for key in cls.KEYS:
            assert f"`{key}`" in section, f"docs/sources.md: kind {kind} lacks key {key}"


def test_register_kind_one_class_one_entry(tmp_path):
    class Doubled(RasterSource):
        """A toy sensor: a raster whose values are doubled (scale 2 by default)."""

        kind = "doubled"

        def _parse(self, cfg):
            super()._parse({"scale": 2.0, **cfg})

    try:
        register_kind("doubled", Doubled)
        path = write_tif(tmp_path / "a.tif", np.full((8, 8), 21.0, np.float32))
        src = build_sources({"sources": {"toy": {"kind": "doubled", "path": path}}})["toy"]
        assert np.all(read(src, GRID10).bands["toy"] == 42.0)
        with pytest.raises(ValueError):
            register_kind("raster", Doubled)
    finally:
        KINDS.pop("doubled", None)


# --------------------------------------------------------------------------------------------------
# Sentinel-2
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("baseline, expected", [(None, 0.0), ("02.14", 0.0), ("03.01", 0.0), ("04.00", -0.1),
                                                ("05.09", -0.1), ("N/A", 0.0), (4.0, -0.1)])
def test_s2_offset_follows_the_processing_baseline(baseline, expected):
    """-1000 DN (x 1e-4 = -0.1) from processing baseline 04.00 on (ESA, in operations since 25 January 2022);
    absent or unparseable baselines get none."""
    item = make_item("i", {}, {} if baseline is None else {"s2:processing_baseline": baseline})
    assert s2_offset(item, "auto") == pytest.approx(expected)
    assert s2_offset(item, 0.0) == 0.0 and s2_offset(item, -0.1) == -0.1


DN = np.array([0, 500, 1000, 1500, 2000, 10000, 3000, 65535], np.uint16)
# SCL at 20 m (4 x 4): 0 no data, 3 shadow, 8/9/10 cloud, 11 snow, others clear
SCL = np.array([[4, 0, 3, 8], [9, 10, 11, 5], [4, 4, 4, 4], [6, 7, 2, 1]], np.uint8)


def _s2_item(tmp_path, baseline, name="s2"):
    d = tmp_path / name
    d.mkdir()
    b04 = np.tile(DN, (8, 1))
    assets = {"B04": write_tif(d / "B04.tif", b04, nodata=0),
              "B11": write_tif(d / "B11.tif", np.full((4, 4), 2500, np.uint16), res=20, nodata=0),
              "SCL": write_tif(d / "SCL.tif", SCL, res=20, nodata=0)}
    props = {"eo:cloud_cover": 12.5, "view:sun_azimuth": 150.0, "view:sun_elevation": 40.0}
    if baseline:
        props["s2:processing_baseline"] = baseline
    return make_item(name, assets, props)


def test_s2_l2a_reflectance_offset_scl_masks(tmp_path):
    src = build_sources({"s2": {"kind": "sentinel2_l2a"}})["s2"]
    new, old = _s2_item(tmp_path, "04.00", "new"), _s2_item(tmp_path, "03.01", "old")
    r_new = read(src, GRID10, ["red", "B04", "swir1"], item=new, glacier_id="G1")
    r_old = read(src, GRID10, ["B04"], item=old, glacier_id="G1")
    fill = np.kron(SCL == 0, np.ones((2, 2), bool))
    # baseline 04.00: (DN - 1000) x 1e-4, clipped to [1e-4, 6.5] as acquire.py does; DN 0 -> NaN
    exp_new = f32([np.nan, 1e-4, 1e-4, 0.05, 0.1, 0.9, 0.2, 6.4535])
    exp_old = f32([np.nan, 0.05, 0.1, 0.15, 0.2, 1.0, 0.3, 6.5])  # 6.5535 clipped
    for r, exp in ((r_new, exp_new), (r_old, exp_old)):
        want = np.where(fill, np.nan, np.tile(exp, (8, 1)))
        np.testing.assert_allclose(r.bands["red" if "red" in r.bands else "B04"], want, rtol=1e-6, equal_nan=True)
        assert r.bands["B04"].dtype == np.float32
    np.testing.assert_array_equal(r_new.bands["red"], r_new.bands["B04"], strict=True)
    np.testing.assert_allclose(r_new.bands["swir1"][~fill], 0.15, rtol=1e-6)  # 2500 - 1000 DN at 20 m
    assert r_new.attrs["offsets"]["B04"] == pytest.approx(-0.1) and r_old.attrs["offsets"]["B04"] == 0.0
    m = r_new.masks
    k = lambda a: np.kron(a, np.ones((2, 2), bool))  # noqa: E731 - 20 m classes on the 10 m grid (nearest)
    # fill: SCL no data (or every band NaN); a pixel that only some bands lack is not fill, but not valid
    np.testing.assert_array_equal(m.fill, fill)
    np.testing.assert_array_equal(m.cloud, k(np.isin(SCL, [8, 9, 10])))
    np.testing.assert_array_equal(m.shadow, k(SCL == 3))
    np.testing.assert_array_equal(m.snow, k(SCL == 11))
    np.testing.assert_array_equal(m.valid, ~m.fill & ~m.cloud & ~m.shadow & np.tile(DN != 0, (8, 1)))
    assert r_new.has_cloud_mask and r_new.attrs["cloud_cover"] == 12.5
    assert (r_new.attrs["sun_azimuth"], r_new.attrs["sun_elevation"]) == (150.0, 40.0)


def test_s2_configurable_classes_and_sun_fallback(tmp_path):
    src = build_sources({"s2": {"kind": "sentinel2_l2a", "mask": {"cloud": [9], "snow": [], "shadow": [2, 3]}}})["s2"]
    item = _s2_item(tmp_path, "04.00")
    m = read(src, GRID10, ["B11"], item=item).masks
    k = lambda a: np.kron(a, np.ones((2, 2), bool))  # noqa: E731
    np.testing.assert_array_equal(m.cloud, k(SCL == 9))
    np.testing.assert_array_equal(m.shadow, k(np.isin(SCL, [2, 3])))
    assert not m.snow.any()
    pc = make_item("pc", {}, {"s2:mean_solar_azimuth": 160.0, "s2:mean_solar_zenith": 35.0})
    sun = src.sun_angles(pc)
    assert (sun.azimuth, sun.elevation) == (160.0, 55.0)
    none = make_item("none", {}, {})
    assert src.sun_angles(none).azimuth is None and src.sun_angles(none).elevation is None
    assert src.cloud_cover(none) is None


def test_s2_l1c_no_mask_unless_named(tmp_path):
    d = tmp_path / "l1c"
    d.mkdir()
    clm = np.zeros((8, 8), np.uint8)
    clm[:4] = 1
    assets = {"B10": write_tif(d / "B10.tif", np.full((2, 2), 1200, np.uint16), res=60, x0=X0, y0=Y0, nodata=0),
              "B04": write_tif(d / "B04.tif", np.full((8, 8), 1800, np.uint16), nodata=0),
              "CLM": write_tif(d / "CLM.tif", clm)}
    item = make_item("l1c", assets, {"s2:processing_baseline": "05.10", "eo:cloud_cover": 50})
    plain = build_sources({"t": {"kind": "sentinel2_l1c"}})["t"]
    r = read(plain, GRID10, ["cirrus", "red"], item=item)
    assert not r.has_cloud_mask and not (r.masks.cloud.any() or r.masks.shadow.any() or r.masks.snow.any())
    assert r.masks.valid.all()
    np.testing.assert_allclose(r.bands["red"], 0.08, rtol=1e-6)
    np.testing.assert_allclose(r.bands["cirrus"], 0.02, rtol=1e-6)
    masked = build_sources({"t": {"kind": "sentinel2_l1c", "mask": {"asset": "CLM", "cloud": [1], "fill": [255]}}})["t"]
    r = read(masked, GRID10, ["red"], item=item)
    assert r.has_cloud_mask
    np.testing.assert_array_equal(r.masks.cloud, clm == 1)
    np.testing.assert_array_equal(r.masks.valid, clm == 0)


def test_scene_partly_over_the_grid(tmp_path):
    """A swath edge: the files cover the left half of the grid; the right half is fill (NaN), not an error."""
    d = tmp_path / "edge"
    d.mkdir()
    item = make_item("edge", {"B04": write_tif(d / "B04.tif", np.full((8, 4), 1500, np.uint16), nodata=0),
                              "SCL": write_tif(d / "SCL.tif", np.full((4, 2), 4, np.uint8), res=20, nodata=0)},
                     {"s2:processing_baseline": "04.00"})
    src = build_sources({"s2": {"kind": "sentinel2_l2a"}})["s2"]
    r = read(src, GRID10, ["red"], item=item, glacier_id="G")
    left = np.zeros((8, 8), bool)
    left[:, :4] = True
    np.testing.assert_array_equal(r.masks.fill, ~left)
    np.testing.assert_array_equal(r.masks.valid, left)
    np.testing.assert_allclose(r.bands["red"][left], 0.05, rtol=1e-6)
    assert np.isnan(r.bands["red"][~left]).all()


def test_item_missing_asset_and_unreadable_file(tmp_path):
    src = build_sources({"s2": {"kind": "sentinel2_l2a"}})["s2"]
    item = _s2_item(tmp_path, "04.00")
    with pytest.raises(GlacierInputError) as e:
        read(src, GRID10, ["B04", "B08"], item=item, glacier_id="RGI60-11.00897")
    msg = str(e.value)
    assert "RGI60-11.00897" in msg and "source 's2'" in msg and "lacks asset(s) B08" in msg and e.value.glacier_id == "RGI60-11.00897"
    with pytest.raises(GlacierInputError, match="no band 'B13'"):
        read(src, GRID10, ["B13"], item=item, glacier_id="G")
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"this is not a GeoTIFF")
    item.assets["B04"] = pystac.Asset(str(broken))
    with pytest.raises(GlacierInputError) as e:
        read(src, GRID10, ["B04"], item=item, glacier_id="G7")
    assert e.value.path == str(broken) and "cannot read" in str(e.value) and "source 's2'" in str(e.value)


# --------------------------------------------------------------------------------------------------
# Landsat Collection 2 Level 2
# --------------------------------------------------------------------------------------------------

# QA_PIXEL patterns: fill, dilated cloud, cirrus, cloud, shadow, snow, clear, typical clear L8 (bit 6 + low
# confidences = 21824), cloud + shadow, high-confidence cloud (bits 3, 8, 9: 776)
QA = np.array([1, 2, 4, 8, 16, 32, 64, 21824, 24, 776], np.uint16)
SR_DN = np.array([43636, 7273, 10000, 20000, 0, 30000, 8000, 12345, 15000, 25000], np.uint16)


def _landsat_item(tmp_path, name, platform, qa, sr, st=None, dt=datetime(2021, 8, 1, tzinfo=UTC)):
    d = tmp_path / name
    d.mkdir()
    fam = "oli" if platform in ("landsat-8", "landsat-9") else "tm"
    red, thermal = ("SR_B4", "ST_B10") if fam == "oli" else ("SR_B3", "ST_B6")
    st = np.full(qa.shape, 42000, np.uint16) if st is None else st
    assets = {red: write_tif(d / f"{red}.tif", sr, res=30, nodata=0),
              thermal: write_tif(d / f"{thermal}.tif", st, res=30, nodata=0),
              "QA_PIXEL": write_tif(d / "QA_PIXEL.tif", qa, res=30, nodata=1)}
    return make_item(name, assets, {"platform": platform, "eo:cloud_cover": 30.0, "view:sun_elevation": 45.5}, dt=dt,
                     grid=GRID30)


def _tile(v):
    out = np.zeros((8, 8), v.dtype)
    out.ravel()[:] = np.resize(v, 64)
    return out


def test_landsat_scale_offset_and_qa_bits_oli(tmp_path):
    qa, sr = _tile(QA), _tile(SR_DN)
    item = _landsat_item(tmp_path, "l8", "landsat-8", qa, sr)
    src = build_sources({"ls": {"kind": "landsat_c2l2"}})["ls"]
    r = read(src, GRID30, ["red", "thermal", "SR_B4"], item=item, glacier_id="G")
    fill = (qa & 1) != 0
    exp_sr = np.where(fill | (sr == 0), np.nan, sr.astype(np.float64) * 2.75e-5 - 0.2)
    np.testing.assert_allclose(r.bands["red"], exp_sr, rtol=1e-5, atol=1e-7, equal_nan=True)
    np.testing.assert_allclose(r.bands["SR_B4"], r.bands["red"], equal_nan=True)
    assert r.bands["red"][0, 0] != r.bands["red"][0, 0]  # fill -> NaN
    np.testing.assert_allclose(r.bands["red"][0, 1], 7273 * 2.75e-5 - 0.2, rtol=1e-4)  # 0.0000075
    np.testing.assert_allclose(r.bands["red"][0, 2], 0.0750, rtol=1e-6)  # 10000 DN (QA cirrus pixel)
    np.testing.assert_allclose(r.bands["thermal"][~fill], 42000 * 0.00341802 + 149.0, rtol=1e-7)  # 292.557 K
    m = r.masks
    np.testing.assert_array_equal(m.fill, fill)  # SR DN 0 under a non-fill QA: not fill (thermal has data), not valid
    np.testing.assert_array_equal(m.cloud, np.isin(qa, [2, 4, 8, 24, 776]))  # dilated, cirrus (OLI), cloud
    np.testing.assert_array_equal(m.shadow, np.isin(qa, [16, 24]))
    np.testing.assert_array_equal(m.snow, qa == 32)
    np.testing.assert_array_equal(m.valid, np.isin(qa, [32, 64, 21824]) & (sr != 0))
    assert r.attrs["platform"] == "landsat-8" and r.attrs["family"] == "oli" and not r.attrs["slc_off"]
    assert r.attrs["files"]["SR_B4"].endswith("SR_B4.tif") and r.attrs["sun_elevation"] == 45.5


def test_landsat_tm_bands_and_cirrus_bit_ignored(tmp_path):
    qa, sr = _tile(QA), _tile(SR_DN)
    item = _landsat_item(tmp_path, "l5", "LANDSAT_5", qa, sr, dt=datetime(1999, 8, 1, tzinfo=UTC))
    src = build_sources({"ls": {"kind": "landsat_c2l2"}})["ls"]
    r = read(src, GRID30, ["red", "thermal"], item=item, glacier_id="G")
    assert r.attrs["files"]["SR_B3"].endswith("SR_B3.tif") and r.attrs["files"]["ST_B6"].endswith("ST_B6.tif")
    np.testing.assert_array_equal(r.masks.cloud, np.isin(qa, [2, 8, 24, 776]))  # bit 2 is unused on TM
    assert r.masks.valid[qa == 4].all()
    with pytest.raises(GlacierInputError, match="has no band 'coastal'"):
        read(src, GRID30, ["coastal"], item=item, glacier_id="G")
    mss = make_item("l1", {}, {"platform": "landsat-1"}, grid=GRID30)
    with pytest.raises(GlacierInputError, match="not Landsat 4, 5, 7, 8 or 9"):
        read(src, GRID30, ["red"], item=mss, glacier_id="G")


def test_landsat7_slc_off_gaps_are_fill(tmp_path):
    rows, cols = np.indices((8, 8))
    gap = (cols - rows) % 4 == 0  # diagonal wedges as in SLC-off scenes
    qa = np.where(gap, 1, 21824).astype(np.uint16)
    sr = np.where(gap, 0, 20000).astype(np.uint16)
    item = _landsat_item(tmp_path, "l7", "landsat-7", qa, sr, st=np.where(gap, 0, 40000).astype(np.uint16),
                         dt=datetime(2010, 7, 1, tzinfo=UTC))
    src = build_sources({"ls": {"kind": "landsat_c2l2"}})["ls"]
    r = read(src, GRID30, ["red", "thermal"], item=item, glacier_id="G")
    np.testing.assert_array_equal(r.masks.fill, gap)
    assert np.isnan(r.bands["red"][gap]).all() and np.isnan(r.bands["thermal"][gap]).all()
    np.testing.assert_allclose(r.bands["red"][~gap], 0.35, rtol=1e-6)
    np.testing.assert_array_equal(r.masks.valid, ~gap)
    assert r.attrs["slc_off"] is True
    early = make_item("l7old", {}, {"platform": "landsat-7"}, dt=datetime(2002, 7, 1, tzinfo=UTC))
    assert not LandsatC2L2.slc_off(early)


def test_landsat_all_fill_scene_is_an_error(tmp_path):
    qa = np.ones((8, 8), np.uint16)
    item = _landsat_item(tmp_path, "fill", "landsat-9", qa, np.zeros((8, 8), np.uint16))
    src = build_sources({"ls9": {"kind": "landsat_c2l2"}})["ls9"]
    with pytest.raises(GlacierInputError) as e:
        read(src, GRID30, ["red"], item=item, glacier_id="G0042")
    msg = str(e.value)
    assert "G0042" in msg and "source 'ls9'" in msg and "QA_PIXEL marks every pixel of the grid as fill" in msg
    assert e.value.path.endswith("QA_PIXEL.tif")


# --------------------------------------------------------------------------------------------------
# Sentinel-1
# --------------------------------------------------------------------------------------------------

def test_sentinel1_db_linear_and_no_cloud_cover(tmp_path):
    from glaciermap.data import stac

    d = tmp_path / "s1"
    d.mkdir()
    lin = np.tile(np.array([0.01, 0.1, 1.0, 0.0, -32768.0, 0.5, 2.0, 0.001], np.float32), (8, 1))
    db = np.tile(np.array([-20.0, -10.0, 0.0, np.nan, -32768.0, 3.0, -3.0, -30.0], np.float32), (8, 1))
    # a static catalog with one S1 item without eo:cloud_cover, found through the project's STAC search
    cat = pystac.Catalog("s1cat", "test")
    col = pystac.Collection("sentinel-1-rtc", "S1", pystac.Extent(pystac.SpatialExtent([list(lonlat_box(GRID10))]),
                                                                  pystac.TemporalExtent([[None, None]])))
    cat.add_child(col)
    item = make_item("S1A_IW_GRDH_20230815", {"vv": write_tif(d / "vv.tif", lin, nodata=-32768.0),
                                              "vh": write_tif(d / "vh.tif", lin / 10, nodata=-32768.0),
                                              "vv_db": write_tif(d / "vv_db.tif", db, nodata=-32768.0)},
                     {"platform": "sentinel-1a", "sar:polarizations": ["VV", "VH"]}, collection=col)
    col.add_item(item)
    cat.normalize_hrefs(str(tmp_path / "catalog"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    cat_json = str(tmp_path / "catalog" / "catalog.json")
    found = stac.search_scenes(cat_json, "sentinel-1-rtc", lonlat_box(GRID10), "2023-08-01", "2023-08-31", None)
    assert [it.id for it in found] == ["S1A_IW_GRDH_20230815"] and "eo:cloud_cover" not in found[0].properties
    s1 = build_sources({"sources": {"s1": {"kind": "sentinel1", "scale": "db", "stac": {"source": cat_json}}}})["s1"]
    assert [it.id for it in s1.search(lonlat_box(GRID10), "2023-08-01", "2023-08-31")] == ["S1A_IW_GRDH_20230815"]
    # an optical source with a scene cloud-cover limit and missing_cloud_cover: drop would drop it
    s2 = build_sources({"s2": {"kind": "sentinel2_l2a", "stac": {"source": cat_json, "collection": "sentinel-1-rtc",
                                                                 "max_cloud_cover": 75, "missing_cloud_cover": "drop"}}})["s2"]
    assert s2.search(lonlat_box(GRID10), "2023-08-01", "2023-08-31") == []
    r = read(s1, GRID10, None, item=found[0], glacier_id="G")
    assert list(r.bands) == ["VV", "VH"] and not r.has_cloud_mask and r.attrs["cloud_cover"] is None
    exp_db = np.tile(f32([-20, -10, 0, np.nan, np.nan, 10 * math.log10(0.5), 10 * math.log10(2.0), -30]), (8, 1))
    np.testing.assert_allclose(r.bands["VV"], exp_db, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(r.bands["VH"], exp_db - 10, atol=1e-5, equal_nan=True)
    assert not (r.masks.cloud.any() or r.masks.shadow.any() or r.masks.snow.any())
    np.testing.assert_array_equal(r.masks.fill, np.isnan(exp_db))
    assert s1.cloud_cover(found[0]) is None and not s1.has_cloud_cover
    # assets in dB, output linear
    s1b = build_sources({"s1": {"kind": "sentinel1", "input_scale": "db", "scale": "linear", "assets": {"VV": "vv_db"},
                                "bands": ["VV"]}})["s1"]
    r = read(s1b, GRID10, item=found[0])
    exp_lin = np.tile(f32([0.01, 0.1, 1.0, np.nan, np.nan, 10 ** 0.3, 10 ** -0.3, 0.001]), (8, 1))
    np.testing.assert_allclose(r.bands["VV"], exp_lin, rtol=1e-5, equal_nan=True)
    # dB in, dB out: the values come back unchanged
    s1c = build_sources({"s1": {"kind": "sentinel1", "input_scale": "db", "assets": {"vv": "vv_db"}}})["s1"]
    np.testing.assert_allclose(read(s1c, GRID10, ["vv"], item=found[0]).bands["vv"], np.where(db == -32768, np.nan, db),
                               atol=1e-5, equal_nan=True)


# --------------------------------------------------------------------------------------------------
# static rasters
# --------------------------------------------------------------------------------------------------

def _utm_grid_near(lon=7.5, lat=46.0, res=10.0, w=400.0, h=300.0):
    t = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    x, y = t.transform(lon, lat)
    return CubeGrid(CRS, x, y, x + w, y + h, res)


def test_raster_other_crs_and_resolution(tmp_path):
    grid = _utm_grid_near()
    w, s, e, n = lonlat_box(grid)
    res = 0.0005  # ~ 39 x 56 m at 46 N
    lon0, lat0 = math.floor(w / res) * res - 5 * res, math.ceil(n / res) * res + 5 * res
    width, height = int((e - lon0) / res) + 6, int((lat0 - s) / res) + 6
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    lon, lat = lon0 + cols * res, lat0 - rows * res
    # a linear field in lon/lat: bilinear resampling reproduces it exactly at every target pixel
    field = (1000.0 * (lon - 7.5) + 2000.0 * (lat - 46.0)).astype(np.float32)
    path = write_tif(tmp_path / "ll.tif", field, crs="EPSG:4326", transform=from_origin(lon0, lat0, res, res))
    src = build_sources({"f": {"kind": "raster", "path": path, "units": "m"}})["f"]
    r = read(src, grid, glacier_id="G")
    x, y = grid.coords()
    X, Y = np.meshgrid(x, y)
    glon, glat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(X, Y)
    np.testing.assert_allclose(r.bands["f"], 1000.0 * (glon - 7.5) + 2000.0 * (glat - 46.0), atol=2e-3)
    assert r.masks.valid.all() and not r.has_cloud_mask
    # a known location: one spike, nearest resampling puts it where its lon/lat falls on the grid
    spike = np.zeros_like(field)
    i, j = height // 2, width // 2
    spike[i, j] = 99.0
    path2 = write_tif(tmp_path / "spike.tif", spike, crs="EPSG:4326", transform=from_origin(lon0, lat0, res, res))
    r = read(build_sources({"s": {"kind": "raster", "path": path2, "resampling": "nearest"}})["s"], grid)
    sx, sy = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(lon0 + (j + 0.5) * res, lat0 - (i + 0.5) * res)
    col, row = int((sx - grid.left) // grid.resolution), int((grid.top - sy) // grid.resolution)
    assert r.bands["s"][row, col] == 99.0
    n_spike = int((r.bands["s"] == 99.0).sum())
    assert 10 <= n_spike <= 30  # one ~39 x 56 m pixel covers ~22 pixels of 10 m


def test_raster_scale_offset_nodata_and_errors(tmp_path):
    dem = np.full((8, 8), 1234, np.int16)
    dem[0, 0] = -9999
    path = write_tif(tmp_path / "dem.tif", dem, nodata=-9999)
    r = read(build_sources({"d": {"kind": "raster", "path": path, "scale": 0.5, "offset": 10}})["d"], GRID10)
    assert np.isnan(r.bands["d"][0, 0]) and np.all(r.bands["d"].ravel()[1:] == 627.0)
    assert not r.masks.valid[0, 0] and r.masks.fill[0, 0]
    # not covering the grid (half of it outside)
    half = write_tif(tmp_path / "half.tif", np.ones((8, 4), np.float32))
    src = build_sources({"h": {"kind": "raster", "path": half}})["h"]
    with pytest.raises(GlacierInputError) as e:
        read(src, GRID10, glacier_id="G9")
    assert "does not cover the grid" in str(e.value) and "source 'h'" in str(e.value) and e.value.path == half
    r = read(build_sources({"h": {"kind": "raster", "path": half, "coverage": "any"}})["h"], GRID10)
    assert np.isnan(r.bands["h"][:, 4:]).all() and (r.bands["h"][:, :4] == 1).all()
    far = write_tif(tmp_path / "far.tif", np.ones((8, 8), np.float32), x0=X0 + 10000)
    with pytest.raises(GlacierInputError, match="does not intersect the grid"):
        read(build_sources({"h": {"kind": "raster", "path": far, "coverage": "any"}})["h"], GRID10)
    # no CRS
    nocrs = write_tif(tmp_path / "nocrs.tif", np.ones((8, 8), np.float32), crs=None)
    with pytest.raises(GlacierInputError, match="has no CRS"):
        read(build_sources({"n": {"kind": "raster", "path": nocrs}})["n"], GRID10, glacier_id="G")
    # missing / unreadable
    with pytest.raises(GlacierInputError, match="cannot read the raster"):
        read(build_sources({"m": {"kind": "raster", "path": str(tmp_path / "missing.tif")}})["m"], GRID10)
    # all no data
    empty = write_tif(tmp_path / "empty.tif", np.full((8, 8), -9999, np.int16), nodata=-9999)
    with pytest.raises(GlacierInputError, match="no data over the grid"):
        read(build_sources({"e": {"kind": "raster", "path": empty}})["e"], GRID10)


def test_raster_from_stac_item(tmp_path):
    dem = write_tif(tmp_path / "dem.tif", np.full((8, 8), 2000.0, np.float32))
    cat = pystac.Catalog("aux", "aux")
    cat.add_item(make_item("dem-glo30", {"dem": dem}, {}))
    cat.normalize_hrefs(str(tmp_path / "cat"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    cj = str(tmp_path / "cat" / "catalog.json")
    src = build_sources({"dem": {"kind": "raster", "stac": {"source": cj, "item": "dem-glo30", "asset": "dem"}}})["dem"]
    assert np.all(read(src, GRID10).bands["dem"] == 2000.0)
    bad = build_sources({"dem": {"kind": "raster", "stac": {"source": cj, "item": "dem-glo30", "asset": "dsm"}}})["dem"]
    with pytest.raises(GlacierInputError, match="asset 'dsm'"):
        read(bad, GRID10, glacier_id="G")


# --------------------------------------------------------------------------------------------------
# per-year rasters
# --------------------------------------------------------------------------------------------------

def test_raster_per_year_selection_and_missing_year(tmp_path):
    paths = {}
    for year, (vx, vy) in {2019: (6.0, 8.0), 2023: (3.0, 4.0)}.items():
        paths[str(year)] = {c: write_tif(tmp_path / f"{c}_{year}.tif", np.full((8, 8), v, np.float32))
                            for c, v in (("vx", vx), ("vy", vy))}
    cfg = {"velocity": {"kind": "raster_per_year", "paths": paths, "units": "m/yr"}}
    src = build_sources(cfg)["velocity"]
    r = read(src, GRID10, when="2023-09-01", glacier_id="G")
    assert list(r.bands) == ["magnitude"] and np.all(r.bands["magnitude"] == 5.0) and r.attrs["year"] == 2023
    assert list(read(src, GRID10, "vx", when=2023).bands) == ["vx"]  # one name as a string
    item = make_item("S2_2023", {}, {}, dt=datetime(2023, 8, 15, tzinfo=UTC))
    assert np.all(read(src, GRID10, item=item).bands["magnitude"] == 5.0)
    r = read(src, GRID10, ["vx", "vy", "magnitude"], when=2019)
    assert np.all(r.bands["vx"] == 6.0) and np.all(r.bands["vy"] == 8.0) and np.all(r.bands["magnitude"] == 10.0)
    with pytest.raises(GlacierInputError) as e:
        read(src, GRID10, when=datetime(2021, 8, 1), glacier_id="G5")
    msg = str(e.value)
    assert "G5" in msg and "source 'velocity'" in msg and "no mosaic for year 2021" in msg and "2019, 2023" in msg
    near = build_sources({"velocity": {**cfg["velocity"], "nearest_year": True}})["velocity"]
    r = read(near, GRID10, when=2021)  # tie: the earlier year
    assert r.attrs["year"] == 2019 and r.attrs["year_requested"] == 2021 and np.all(r.bands["magnitude"] == 10.0)
    assert read(near, GRID10, when=2030).attrs["year"] == 2023
    # one path per year (e.g. dh/dt per year): the band is named after the source
    dh = build_sources({"dhdt": {"kind": "raster_per_year", "paths": {2023: paths["2023"]["vx"]}}})["dhdt"]
    assert np.all(read(dh, GRID10, when=2023).bands["dhdt"] == 3.0)


def test_its_live_velocity_real_data():
    vx_p, vy_p = str(OGGM / "crop_ALA_G0120_0000_vx.tif"), str(OGGM / "crop_ALA_G0120_0000_vy.tif")
    with rasterio.open(vx_p) as s:
        vx, ntr, ncrs, nodata = s.read(1).astype(np.float64), s.transform, s.crs, s.nodata
        b = s.bounds
    with rasterio.open(vy_p) as s:
        vy = s.read(1).astype(np.float64)
    bad = (vx == nodata) | (vy == nodata)
    mag = np.where(bad, np.nan, np.hypot(vx, vy))  # magnitude on the native EPSG:3413 grid
    cx, cy = (b.left + b.right) / 2, (b.bottom + b.top) / 2
    lon, lat = Transformer.from_crs(ncrs, "EPSG:4326", always_xy=True).transform(cx, cy)
    utm = utm_crs_for(lon, lat)
    assert utm == "EPSG:32606"  # 146.9 W, 61.3 N
    X, Y = Transformer.from_crs(ncrs, utm, always_xy=True).transform(cx, cy)
    grid = CubeGrid(utm, X - 12000, Y - 10000, X + 12000, Y + 10000, 100.0)  # well inside the 46 x 45 km crop
    cfg = {"velocity": {"kind": "raster_per_year", "paths": {2018: {"vx": vx_p, "vy": vy_p}}, "units": "m/yr"}}
    src = build_sources(cfg)["velocity"]
    nearest = build_sources({"v": {**cfg["velocity"], "resampling": "nearest"}})["v"]
    r_bil = read(src, grid, when="2018-08-01", glacier_id="RGI60-01.00570")
    r_nn = read(nearest, grid, ["magnitude", "vx", "vy"], when=2018)
    # target pixel centres -> native pixel positions
    xs, ys = grid.coords()
    rows_t, cols_t = np.meshgrid(np.arange(grid.height), np.arange(grid.width), indexing="ij")
    sel = (rows_t % 23 == 11) & (cols_t % 29 == 14)  # a few pixels away from the edges
    tx, ty = xs[cols_t[sel]], ys[rows_t[sel]]
    nx, ny = Transformer.from_crs(utm, ncrs, always_xy=True).transform(tx, ty)
    fc, fr = ~ntr @ (np.asarray(nx), np.asarray(ny))
    fc, fr = np.asarray(fc), np.asarray(fr)
    checked = 0
    for k, (c, rr) in enumerate(zip(fc, fr)):
        ic, ir = int(c), int(rr)
        if not (0.1 < c - ic < 0.9 and 0.1 < rr - ir < 0.9):  # not on a native pixel boundary
            continue
        i, j = rows_t[sel][k], cols_t[sel][k]
        nat = mag[ir, ic]
        if np.isnan(nat):
            assert np.isnan(r_nn.bands["magnitude"][i, j])
            continue
        assert r_nn.bands["magnitude"][i, j] == pytest.approx(nat, rel=1e-6)  # nearest: the native pixel's value
        # bilinear: between the native values of the 2 x 2 neighbourhood around the point
        c0, r0 = int(math.floor(c - 0.5)), int(math.floor(rr - 0.5))
        block = mag[r0:r0 + 2, c0:c0 + 2]
        if not np.isnan(block).any():
            assert block.min() - 1e-3 <= r_bil.bands["magnitude"][i, j] <= block.max() + 1e-3
        # components are rotated into the UTM axes: the magnitude is kept, the direction is that of the
        # displacement (a point moved by v x 0.01 yr, transformed to UTM)
        rvx, rvy = r_nn.bands["vx"][i, j], r_nn.bands["vy"][i, j]
        assert math.hypot(rvx, rvy) == pytest.approx(nat, rel=1e-5)
        px, py = ntr @ (ic + 0.5, ir + 0.5)
        t = Transformer.from_crs(ncrs, utm, always_xy=True)
        (ax, bx), (ay, by) = t.transform([px, px + vx[ir, ic] * 0.01], [py, py + vy[ir, ic] * 0.01])
        if nat > 1.0:
            want = math.degrees(math.atan2(by - ay, bx - ax))
            got = math.degrees(math.atan2(rvy, rvx))
            assert abs((got - want + 180) % 360 - 180) < 0.05
            native_dir = math.degrees(math.atan2(vy[ir, ic], vx[ir, ic]))
            assert abs((got - native_dir + 180) % 360 - 180) > 20  # the axes differ a lot here: rotation matters
        checked += 1
    assert checked >= 20
    lo, hi = r_nn.attrs["rotation_deg_range"]
    assert hi - lo < 1.0  # nearly uniform rotation over 24 km
    assert np.nanmax(r_bil.bands["magnitude"]) > 50 and r_bil.attrs["year"] == 2018
