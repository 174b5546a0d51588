"""The surface_temperature channel from a Landsat scene source (``channel_sources.temperature: <landsat_c2l2>``):
the usable acquisition dates nearest to the image date within +-near_date.window_days, ST band in K with the
QA_PIXEL fill / cloud / shadow masked, averaged per pixel (glaciermap.data.sources.neardate).

Synthetic Landsat-like items (ST_B10 and QA_PIXEL GeoTIFFs, a static STAC catalog) give exact hand values; the
demo's catalog (resources/demo, else the tiny demo region of the session fixture) checks the real items."""

import math
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.transform import from_origin

from conftest import REPO
from glaciermap.config import ConfigError, validate_config
from glaciermap.data import features
from glaciermap.data.grid import CubeGrid
from glaciermap.data.sources import SourceConfigError, build_source, near_date_composite
from glaciermap.io import GlacierInputError
from test_features import CRS, LEFT, TOP, _args, make_inputs

ST_SCALE, ST_OFFSET = 0.00341802, 149.0
CLEAR, CLOUD, SHADOW, FILL = 21824, 21824 - 64 + 8 + 2, 21824 - 64 + 16, 1   # QA_PIXEL: bit 6 / bits 1+3 / 4 / 0
NAT = 30.0
N0, NR, NC = 20, 80, 80          # native raster: 20 pixels of margin around the cube origin, 80 x 80 pixels
D = date(2023, 8, 25)            # the chosen scene of test_features.make_inputs


def kelvin(dn):
    return np.asarray(dn, np.float64) * ST_SCALE + ST_OFFSET


def dn_field(base: int) -> np.ndarray:
    """A DN field varying in x and y (a misplaced pixel gives another value)."""
    r, c = np.mgrid[0:NR, 0:NC]
    return (base + 7 * r + 3 * c).astype(np.uint16)


def _tif(path, arr):
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1, dtype="uint16",
                       crs=CRS, transform=from_origin(LEFT - N0 * NAT, TOP + N0 * NAT, NAT, NAT), nodata=0) as dst:
        dst.write(arr, 1)


def make_catalog(root: Path, scenes: list[dict]) -> Path:
    """A static catalog of Landsat-like items: scenes = [{id, date, dn, qa, cloud, platform}] (ST_B10, QA_PIXEL)."""
    from pyproj import Transformer

    t = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    x0, y1 = LEFT - N0 * NAT, TOP + N0 * NAT
    lon0, lat0, lon1, lat1 = t.transform_bounds(x0, y1 - NR * NAT, x0 + NC * NAT, y1)
    geom = {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]]}
    cat = pystac.Catalog("synthetic", "Landsat-like items")
    for sc in scenes:
        d = root / "files" / sc["id"]
        d.mkdir(parents=True)
        _tif(d / "ST_B10.tif", sc["dn"])
        _tif(d / "QA_PIXEL.tif", sc["qa"])
        props = {"platform": sc.get("platform", "landsat-8"), "eo:cloud_cover": sc.get("cloud", 10.0)}
        it = pystac.Item(sc["id"], geom, [lon0, lat0, lon1, lat1],
                         datetime.combine(sc["date"], datetime.min.time(), timezone.utc) + timedelta(hours=10),
                         props, collection="landsat-c2-l2")
        for a in ("ST_B10", "QA_PIXEL"):
            it.add_asset(a, pystac.Asset(str(d / f"{a}.tif"), media_type=pystac.MediaType.COG))
        cat.add_item(it)
    cat.normalize_hrefs(str(root / "catalog"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog" / "catalog.json"


def landsat_cfg(catalog, **near):
    # nearest resampling: a 10 m pixel takes the 30 m pixel under its centre, so hand values are exact
    cfg = {"kind": "landsat_c2l2", "stac": {"source": str(catalog), "collection": "landsat-c2-l2"},
           "resampling": "nearest"}
    if near:
        cfg["near_date"] = near
    return cfg


def cube_grid(h=120, w=100) -> CubeGrid:
    return CubeGrid(CRS, LEFT, TOP - 10 * h, LEFT + 10 * w, TOP, 10.0)


def native(r, c):
    """The native (30 m) pixel under cube pixel (r, c)."""
    return N0 + r // 3, N0 + c // 3


def clear_qa():
    return np.full((NR, NC), CLEAR, np.uint16)


@pytest.fixture(scope="module")
def scenes():
    """A at D-5 (cloud block and a shadow block over the cube), B at D+8, C at D-16, E at D-40 (outside +-30)."""
    qa_a = clear_qa()
    qa_a[N0:N0 + 5, N0:N0 + 5] = CLOUD          # cube rows/cols 0..14
    qa_a[N0 + 10:N0 + 12, N0:N0 + 4] = SHADOW   # cube rows 30..35, cols 0..11
    return [
        {"id": "A_m5", "date": D - timedelta(5), "dn": dn_field(38000), "qa": qa_a, "cloud": 40.0},
        {"id": "B_p8", "date": D + timedelta(8), "dn": dn_field(40000), "qa": clear_qa(), "cloud": 5.0,
         "platform": "landsat-9"},
        {"id": "C_m16", "date": D - timedelta(16), "dn": dn_field(30000), "qa": clear_qa(), "cloud": 0.0},
        {"id": "E_m40", "date": D - timedelta(40), "dn": dn_field(20000), "qa": clear_qa(), "cloud": 0.0},
    ]


@pytest.fixture(scope="module")
def catalog(scenes, tmp_path_factory):
    return make_catalog(tmp_path_factory.mktemp("landsat_st"), scenes)


def test_the_two_nearest_dates_are_averaged_per_pixel_with_clouds_left_out(scenes, catalog):
    src = build_source("landsat", landsat_cfg(catalog))
    assert (src.near_date.window_days, src.near_date.n_dates, src.near_date.required) == (30, 2, False)
    comp = near_date_composite(src, cube_grid(), "thermal", "2023-08-25T10:20:31", glacier_id="G1")
    # E (40 days off) is outside the window; of A (5), B (8), C (16) the two nearest are used, C is not
    assert comp.attrs["n_candidates"] == 3
    assert comp.attrs["items"] == "A_m5 B_p8" and comp.attrs["dates"] == "2023-08-20 2023-09-02"
    assert comp.attrs["days_from_center"] == "-5 8" and comp.attrs["n_dates_used"] == 2
    dn = {s["id"]: s["dn"] for s in scenes}
    # a pixel clear in both: the hand average of the two scenes' K values
    r, c = 60, 47
    expect = (kelvin(dn["A_m5"][native(r, c)]) + kelvin(dn["B_p8"][native(r, c)])) / 2
    assert comp.values[r, c] == pytest.approx(expect, abs=1e-3)
    assert comp.values[r, c] != pytest.approx(kelvin(dn["C_m16"][native(r, c)]), abs=1)
    # cloud (rows/cols 0..14) and shadow (rows 30..35, cols 0..11) of A: only B's value, not the mean with A's
    for r, c in ((3, 4), (14, 14), (31, 2)):
        assert comp.values[r, c] == pytest.approx(kelvin(dn["B_p8"][native(r, c)]), abs=1e-3), (r, c)
        assert comp.n_obs[r, c] == 1
    assert comp.n_obs[60, 47] == 2 and comp.values.dtype == np.float32
    assert np.isfinite(comp.values).all()       # B is clear everywhere: no pixel is left without a value
    # hand average over the whole grid (K of A masked where QA says cloud or shadow)
    rr, cc = np.mgrid[0:120, 0:100]
    ka, kb = kelvin(dn["A_m5"][native(rr, cc)]), kelvin(dn["B_p8"][native(rr, cc)])
    qa = scenes[0]["qa"][native(rr, cc)]
    ka[qa != CLEAR] = np.nan
    np.testing.assert_allclose(comp.values, np.nanmean(np.stack([ka, kb]), axis=0), atol=1e-3)


def test_n_dates_window_and_the_cloud_tie_break(scenes, catalog, tmp_path):
    one = near_date_composite(build_source("l", landsat_cfg(catalog, n_dates=1)), cube_grid(), "thermal", D)
    assert one.attrs["items"] == "A_m5"
    np.testing.assert_allclose(one.values[60, 47], kelvin(scenes[0]["dn"][native(60, 47)]), atol=1e-3)
    assert np.isnan(one.values[3, 4])           # A's cloud, and no second date asked for
    three = near_date_composite(build_source("l", landsat_cfg(catalog, n_dates=3)), cube_grid(), "thermal", D)
    assert three.attrs["items"] == "A_m5 B_p8 C_m16"
    narrow = near_date_composite(build_source("l", landsat_cfg(catalog, window_days=6)), cube_grid(), "thermal", D)
    assert narrow.attrs["items"] == "A_m5" and narrow.attrs["n_dates_used"] == 1
    # two dates equally far (8 days before and after): the less cloudy one wins
    tie = make_catalog(tmp_path, [
        {"id": "early_cloudy", "date": D - timedelta(8), "dn": dn_field(35000), "qa": clear_qa(), "cloud": 60.0},
        {"id": "late_clear", "date": D + timedelta(8), "dn": dn_field(36000), "qa": clear_qa(), "cloud": 10.0}])
    won = near_date_composite(build_source("l", landsat_cfg(tie, n_dates=1)), cube_grid(), "thermal", D)
    assert won.attrs["items"] == "late_clear"


def test_a_date_without_a_clear_pixel_is_passed_over(tmp_path):
    cloudy = np.full((NR, NC), CLOUD, np.uint16)
    cat = make_catalog(tmp_path, [
        {"id": "near_cloudy", "date": D + timedelta(1), "dn": dn_field(39000), "qa": cloudy, "cloud": 100.0},
        {"id": "mid", "date": D - timedelta(10), "dn": dn_field(37000), "qa": clear_qa()},
        {"id": "far", "date": D + timedelta(20), "dn": dn_field(33000), "qa": clear_qa()}])
    comp = near_date_composite(build_source("l", landsat_cfg(cat)), cube_grid(), "thermal", D, glacier_id="G1")
    assert comp.attrs["items"] == "mid far"
    assert "near_cloudy (no clear pixel on the grid" in comp.attrs["skipped"]
    assert comp.values[0, 0] == pytest.approx((kelvin(37000 + 7 * N0 + 3 * N0) + kelvin(33000 + 7 * N0 + 3 * N0)) / 2,
                                              abs=1e-3)


def test_no_scene_in_the_window_gives_nan_or_the_named_error(catalog):
    grid = cube_grid()
    far = date(2020, 7, 1)
    comp = near_date_composite(build_source("landsat", landsat_cfg(catalog)), grid, "thermal", far, glacier_id="G1")
    assert np.isnan(comp.values).all() and not (comp.values == 0).any()
    assert comp.attrs["n_dates_used"] == 0 and comp.attrs["items"] == "none" and comp.attrs["valid_fraction"] == 0
    src = build_source("landsat", landsat_cfg(catalog, required=True))
    with pytest.raises(GlacierInputError) as e:
        near_date_composite(src, grid, "thermal", far, glacier_id="G1")
    msg = str(e.value)
    assert e.value.glacier_id == "G1" and e.value.path == str(catalog)
    assert "source 'landsat' (landsat_c2l2)" in msg and "no item within 30 days of 2020-07-01" in msg
    assert "near_date.required" in msg


def test_every_candidate_without_the_thermal_asset_is_an_error_naming_the_asset(catalog):
    src = build_source("landsat", {**landsat_cfg(catalog), "assets": {"oli": {"thermal": "lwir11"}}})
    with pytest.raises(GlacierInputError, match=r"lacks asset\(s\) lwir11.*sources.landsat.assets"):
        near_date_composite(src, cube_grid(), "thermal", D, glacier_id="G1")


def test_near_date_settings_are_checked_naming_the_key():
    for bad, key in (({"window_days": -1}, "near_date.window_days"), ({"n_dates": 0}, "near_date.n_dates"),
                     ({"n_dates": 1.5}, "near_date.n_dates"), ({"required": "yes"}, "near_date.required"),
                     ({"n_scenes": 2}, "near_date.n_scenes")):
        with pytest.raises(SourceConfigError) as e:
            build_source("lst", {"kind": "landsat_c2l2", "near_date": bad})
        assert str(e.value).startswith(f"sources.lst.{key}:"), str(e.value)
    with pytest.raises(SourceConfigError, match=r"sources.s2x.near_date: unknown key"):
        build_source("s2x", {"kind": "sentinel2_l2a", "near_date": {}})


def _cfg(**over):
    import copy

    from test_config import MINIMAL

    base = {**copy.deepcopy(MINIMAL), "model": {"channels": ["B04", "surface_temperature"]}, "models": {"dl4gam": {}}}
    base.update(over)
    return base


def test_config_check_accepts_a_landsat_source_for_temperature_only():
    lst = {"kind": "landsat_c2l2", "stac": {"source": "catalog.json"}, "near_date": {"window_days": 16}}
    ok = validate_config(_cfg(sources={"lst": lst}, channel_sources={"temperature": "lst"}))
    assert ok["channel_sources"]["temperature"] == "lst"
    with pytest.raises(ConfigError, match=r"channel_sources.temperature: source 's2' is of kind sentinel2_l2a, which has no "
                                          r"band 'thermal'; a raster or raster_per_year source, or a scene source"):
        validate_config(_cfg(channel_sources={"temperature": "s2"}))
    with pytest.raises(ConfigError, match=r"channel_sources.temperature: sources.lst.stac.source is missing"):
        validate_config(_cfg(sources={"lst": {"kind": "landsat_c2l2"}}, channel_sources={"temperature": "lst"}))
    with pytest.raises(ConfigError, match=r"sources.lst.near_date.n_dates: must be an integer"):
        validate_config(_cfg(sources={"lst": {**lst, "near_date": {"n_dates": 0}}}, channel_sources={"temperature": "lst"}))
    with pytest.raises(ConfigError, match=r"channel_sources.velocity: source 'lst' is of kind landsat_c2l2; a raster or "
                                          r"raster_per_year source is needed"):
        validate_config(_cfg(model={"channels": ["B04", "velocity"]}, sources={"lst": lst},
                             channel_sources={"velocity": "lst"}))


# ---------------------------------------------------------------------------------------------------- the cube


def _temperature(catalog, **near):
    return {"temperature": {"name": "landsat", "config": landsat_cfg(catalog, **near)}}


def test_the_cube_layer_is_the_composite_and_records_items_and_dates(scenes, catalog, tmp_path):
    inp = make_inputs(tmp_path, height=120, width=100)
    ds, _ = features.build_cube(*_args(inp), layers=["B04", "surface_temperature"], sources=_temperature(catalog))
    lst = ds["layers"].sel(band="surface_temperature").values
    dn = {s["id"]: s["dn"] for s in scenes}
    assert lst[60, 47] == pytest.approx((kelvin(dn["A_m5"][native(60, 47)]) + kelvin(dn["B_p8"][native(60, 47)])) / 2,
                                        abs=1e-3)
    assert lst[3, 4] == pytest.approx(kelvin(dn["B_p8"][native(3, 4)]), abs=1e-3)
    a = ds.attrs
    assert a["temperature_source"] == "landsat" and a["temperature_kind"] == "landsat_c2l2"
    assert a["temperature_items"] == "A_m5 B_p8" and a["temperature_dates"] == "2023-08-20 2023-09-02"
    assert a["temperature_center_date"] == "2023-08-25" and a["temperature_window_days"] == 30
    assert "A_m5/ST_B10.tif" in a["temperature_file"] and "B_p8/QA_PIXEL.tif" in a["temperature_file"]
    # the attributes survive NetCDF
    nc = tmp_path / "cube.nc"
    st = features.write_cube(*_args(inp), nc, layers=["B04", "surface_temperature"], sources=_temperature(catalog))
    assert st["status"] == "ok", st
    import xarray as xr

    with xr.open_dataset(nc) as back:
        assert back.attrs["temperature_items"] == "A_m5 B_p8"


def test_a_glacier_without_a_scene_nan_layer_or_skipped_when_required(tmp_path):
    cat = make_catalog(tmp_path / "far", [
        {"id": "too_far", "date": D + timedelta(45), "dn": dn_field(39000), "qa": clear_qa()}])
    inp = make_inputs(tmp_path, height=120, width=100)
    ds, _ = features.build_cube(*_args(inp), layers=["B04", "surface_temperature"], sources=_temperature(cat))
    lst = ds["layers"].sel(band="surface_temperature").values
    assert np.isnan(lst).all()                      # NaN (training fills), never zeros
    assert ds.attrs["temperature_n_dates_used"] == 0 and ds.attrs["temperature_items"] == "none"
    nc = tmp_path / "req.nc"
    st = features.write_cube(*_args(inp), nc, layers=["B04", "surface_temperature"],
                             sources=_temperature(cat, required=True))
    assert st["status"] == "skipped"
    assert "glacier G1" in st["reason"] and "source 'landsat'" in st["reason"]
    assert "no item within 30 days of 2023-08-25" in st["reason"] and str(cat) in st["reason"]


# ---------------------------------------------------------------------------------------------------- demo catalog


@pytest.fixture(scope="module")
def demo_catalog(request):
    demo = REPO / "resources" / "demo" / "inputs" / "catalog" / "catalog.json"
    if demo.exists():
        return demo
    return request.getfixturevalue("tiny_region") / "inputs" / "catalog" / "catalog.json"


def _hand_kelvin(item, r0, c0, transform):
    """K of an item's thermal band at the native pixel under each of the 150 x 150 cube pixels, NaN where QA_PIXEL
    says fill, cloud (dilated, cirrus on OLI, cloud) or shadow, or DN is 0: read by hand with rasterio."""
    from glaciermap.data.sources.landsat import family_of, platform_number

    oli = family_of(platform_number(item)) == "oli"
    rr, cc = np.mgrid[0:150, 0:150]
    with rasterio.open(item.assets["ST_B10" if oli else "ST_B6"].get_absolute_href()) as f:
        assert f.transform == transform
        dn = f.read(1)[r0 + rr // 3, c0 + cc // 3].astype(np.float64)
    with rasterio.open(item.assets["QA_PIXEL"].get_absolute_href()) as f:
        qa = f.read(1)[r0 + rr // 3, c0 + cc // 3].astype(np.int64)
    bits = 0b11011 | (0b100 if oli else 0)
    k = dn * ST_SCALE + ST_OFFSET
    k[((qa & bits) != 0) | (dn == 0)] = np.nan
    return k


def test_demo_catalog_nearest_usable_dates_and_hand_kelvin(demo_catalog):
    import warnings

    from glaciermap.data.stac import _key, _static_items

    items = [it for it in _static_items(*_key(demo_catalog)) if it.collection_id == "landsat-c2-l2"]
    assert items, "the demo catalog has Landsat items"
    days = sorted({it.datetime.date() for it in items})
    pairs = [(a, b) for a, b in zip(days, days[1:]) if (b - a).days <= 50]
    # between the last two dates less than 50 days apart (the demo: 2023-08-14 and 2023-09-20), else 3 days after
    # the last date (the tiny region has one Landsat date a year)
    center = pairs[-1][0] + (pairs[-1][1] - pairs[-1][0]) / 2 if pairs else days[-1] + timedelta(3)
    ref = next(it for it in items if it.datetime.date() == (pairs[-1][0] if pairs else days[-1]))
    with rasterio.open(ref.assets["QA_PIXEL"].get_absolute_href()) as f:
        t, crs, (H, W) = f.transform, f.crs.to_string(), f.shape
    # a 1.5 x 1.5 km grid aligned to the 30 m pixels, in the middle of the scenes
    c0, r0 = W // 2 - 25, H // 2 - 25
    left, top = t.c + c0 * t.a, t.f + r0 * t.e
    grid = CubeGrid(crs, left, top - 1500, left + 1500, top, 10.0)
    cfg = {"kind": "landsat_c2l2", "stac": {"source": str(demo_catalog)}, "resampling": "nearest"}
    comp = near_date_composite(build_source("landsat", cfg), grid, "thermal", center, glacier_id="demo")

    # by hand: the dates within 30 days, nearest first (then the lowest cloud cover), the first two with a clear pixel
    def rank(d):
        cc = min(it.properties.get("eo:cloud_cover", math.inf) for it in items if it.datetime.date() == d)
        return (abs((d - center).days), cc, d)

    hand, used = [], []
    for d in sorted((d for d in days if abs((d - center).days) <= 30), key=rank):
        ks = [_hand_kelvin(it, r0, c0, t) for it in items if it.datetime.date() == d]
        ks = [k for k in ks if np.isfinite(k).any()]
        if ks and len(used) < 2:
            used.append(d.isoformat())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                hand.append(np.nanmean(np.stack(ks), axis=0))
    assert used, "a usable Landsat date near the centre date"
    assert comp.attrs["dates"].split() == used
    if pairs:
        assert comp.attrs["n_candidates"] >= 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expect = np.nanmean(np.stack(hand), axis=0)
    np.testing.assert_allclose(comp.values, expect, atol=2e-3, equal_nan=True)
    assert np.isfinite(comp.values).any() and 200 < np.nanmedian(comp.values) < 330   # plausible K
