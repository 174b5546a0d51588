"""Feature cubes from small synthetic inputs: acquisition NetCDF, selection CSV, inventory, DEM and dh/dt."""

from __future__ import annotations

import os

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from rasterio import features as rio_features
from rasterio.transform import from_origin
from shapely.geometry import Polygon, box

from glaciermap.data import features
from glaciermap.data.channels import COMMON_BANDS
from glaciermap.io import GlacierInputError, UpstreamSkipped, read_status, skip_dataset, write_netcdf_atomic

CRS = "EPSG:32632"
RES = 10.0
LEFT, TOP = 400000.0, 5100000.0
ITEMS = ["S2A_20230810", "S2B_20230825"]
CHOSEN = 1  # the second candidate wins, so picking the first by mistake fails
DEM_NODATA = -9999.0

# target glacier G1, a neighbour G2 sharing its east edge, G3 35 m west of it; vertices off pixel centres
G1 = Polygon([(400803, 5098203), (401497, 5098203), (401497, 5099397), (401101, 5099589), (400803, 5099397)])
G2 = box(401497, 5098403, 402103, 5099197)
G3 = box(400403, 5098603, 400768, 5099003)
G_FAR = box(430000, 5098000, 431000, 5099000)      # outside the cube: must not be read
G_BAD = box(400103, 5097203, 400497, 5097597)      # qc_status skipped: must be ignored


def plane(x, y):
    return 3000.0 + 0.2 * (x - LEFT) - 0.3 * (y - TOP)


def hilly(x, y):
    return plane(x, y) + 150.0 * np.exp(-((x - 401200) ** 2 + (y - 5098800) ** 2) / (2 * 400.0**2))


def _write_tif(path, arr, transform, crs, nodata):
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1,
                       dtype="float32", crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(arr.astype(np.float32), 1)


def make_inputs(tmp_path, height=300, width=260, dem_fn=hilly, dem_nan_box=None, seed=0, grid_mapping=True, sun=None):
    """Write every input of one (glacier, epoch); returns a dict of paths and the arrays written.

    ``grid_mapping=False`` writes the acquisition as acquire.py does today: its explicit encoding drops the
    variables' ``grid_mapping`` link, so ``spatial_ref`` reads back as a data variable.
    """
    rng = np.random.default_rng(seed)
    tmp_path = os.fspath(tmp_path)
    x = LEFT + RES / 2 + RES * np.arange(width)
    y = TOP - RES / 2 - RES * np.arange(height)
    nt = len(ITEMS)
    data = {}
    for k, b in enumerate(features.S2_BANDS):
        v = np.round(rng.uniform(0.01, 0.9, (nt, height, width)), 4).astype(np.float32)
        data[b] = v
    data["B11"][CHOSEN, 5:9, 10:20] = np.nan                      # no data in one DL4GAM band
    data["B01"][CHOSEN, 40:44, 40:44] = np.nan                    # no data in a non-DL4GAM band only
    data["B03"][CHOSEN, 0, 0], data["B11"][CHOSEN, 0, 0] = 0.25, 0.25   # NDSI exactly 0
    scl = rng.choice(np.array([4, 5, 6, 11], np.uint8), (nt, height, width))
    scl[CHOSEN, 100:110, 100:120] = 8
    scl[CHOSEN, 120:125, 100:120] = 3
    scl[CHOSEN, 130:132, 30:60] = 10
    scl[CHOSEN, 200:203, 200:210] = 0
    scl[1 - CHOSEN, 50:60, 50:60] = 9  # clouds only in the other scene
    # the acquisition as `acquire` writes it: bands by common name, the source's masks (from SCL classes here)
    common_of = {b: c for c, b in COMMON_BANDS.items()}
    ds = xr.Dataset({common_of[b]: (("time", "y", "x"), v, {"sensor_band": b, "common_name": common_of[b]})
                     for b, v in data.items()},
                    coords={"time": pd.to_datetime(["2023-08-10T10:30:00", "2023-08-25T10:20:31"]), "y": y, "x": x,
                            "item_id": ("time", ITEMS)})
    for m, classes in (("fill", [0]), ("cloud", [8, 9, 10]), ("shadow", [3]), ("snow", [11])):
        ds[f"mask_{m}"] = (("time", "y", "x"), np.isin(scl, classes).astype(np.uint8))
    # acquire writes the sun angles of every scene, NaN where the catalog has none (then the cube computes them)
    sun = (np.nan, np.nan) if sun is None else sun
    ds = ds.assign_coords(sun_azimuth=("time", [140.0, sun[0]]), sun_elevation=("time", [50.0, sun[1]]))
    ds = ds.rio.write_crs(CRS).rio.write_transform(from_origin(LEFT, TOP, RES, RES))
    ds.attrs.update(glacier_id="G1", epoch="2023", status="ok", reason="", source="s2", has_cloud_mask=1,
                    bands=" ".join(common_of[b] for b in features.S2_BANDS))
    enc = {common_of[b]: {"dtype": "uint16", "scale_factor": 1e-4, "_FillValue": 0, "zlib": True}
           for b in features.S2_BANDS}
    enc.update({f"mask_{m}": {"dtype": "uint8"} for m in ("fill", "cloud", "shadow", "snow")})
    if grid_mapping:
        for e in enc.values():
            e["grid_mapping"] = "spatial_ref"
    acq = os.path.join(tmp_path, "acq.nc")
    ds.to_netcdf(acq, engine="h5netcdf", encoding=enc)

    sel = pd.DataFrame({"glacier_id": "G1", "epoch": "2023", "item_id": ITEMS, "chosen": [i == CHOSEN for i in range(nt)],
                        "glacier_status": "ok", "glacier_reason": ""})
    sel_csv = os.path.join(tmp_path, "sel.csv")
    sel.to_csv(sel_csv, index=False)

    inv = gpd.GeoDataFrame({"glac_id": ["G1", "G2", "G3", "GFAR", "GBAD"],
                            "qc_status": ["ok", "ok", "small", "ok", "skipped"]},
                           geometry=[G1, G2, G3, G_FAR, G_BAD], crs=CRS).to_crs("EPSG:4326")
    inv_gpkg = os.path.join(tmp_path, "inventory.gpkg")
    inv.to_file(inv_gpkg, layer="glaciers", driver="GPKG")

    # DEM: 30 m, EPSG:32632, larger than the cube
    dl, dt = LEFT - 600, TOP + 600
    dnx, dny = int((width * RES + 1200) / 30) + 1, int((height * RES + 1200) / 30) + 1
    dx = dl + 15 + 30 * np.arange(dnx)
    dy = dt - 15 - 30 * np.arange(dny)
    dem = dem_fn(dx[None, :], dy[:, None]).astype(np.float32)
    if dem_nan_box is not None:
        x0, y0, x1, y1 = dem_nan_box
        dem[(dy[:, None] > y0) & (dy[:, None] < y1) & (dx[None, :] > x0) & (dx[None, :] < x1)] = DEM_NODATA
    dem_tif = os.path.join(tmp_path, "dem.tif")
    _write_tif(dem_tif, dem, from_origin(dl, dt, 30, 30), CRS, DEM_NODATA)

    # dh/dt: ~100 m pixels in EPSG:4326, with a nodata hole over the glacier's south part
    lon0, lat0, lon1, lat1 = gpd.GeoSeries([box(LEFT - 500, TOP - height * RES - 500, LEFT + width * RES + 500, TOP + 500)],
                                           crs=CRS).to_crs("EPSG:4326").total_bounds
    d = 0.001
    nx, ny = int((lon1 - lon0) / d) + 1, int((lat1 - lat0) / d) + 1
    lat = lat1 - d / 2 - d * np.arange(ny)
    dh = np.tile((-1.0 + (lat - lat.mean()) * 100)[:, None], (1, nx)).astype(np.float32)
    hole = gpd.GeoSeries([box(400900, 5098250, 401300, 5098400)], crs=CRS).to_crs("EPSG:4326").total_bounds
    lon = lon0 + d / 2 + d * np.arange(nx)
    dh[(lat[:, None] > hole[1]) & (lat[:, None] < hole[3]) & (lon[None, :] > hole[0]) & (lon[None, :] < hole[2])] = DEM_NODATA
    dhdt_tif = os.path.join(tmp_path, "dhdt.tif")
    _write_tif(dhdt_tif, dh, from_origin(lon0, lat1, d, d), "EPSG:4326", DEM_NODATA)
    return {"acq": acq, "sel": sel_csv, "inv": inv_gpkg, "dem": dem_tif, "dhdt": dhdt_tif, "bands": data, "scl": scl,
            "x": x, "y": y}


def _args(inp, **over):
    a = [inp["acq"], inp["sel"], inp["inv"], "G1", "2023", inp["dem"], inp["dhdt"], dict(features.DEFAULT_PARAMS)]
    names = ["acq", "sel", "inv", "gid", "epoch", "dem", "dhdt", "params"]
    for k, v in over.items():
        a[names.index(k)] = v
    return a


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cube")
    inp = make_inputs(tmp)
    out = tmp / "out" / "G1" / "2023.nc"
    status = features.write_cube(*_args(inp), out)
    return inp, out, status


def _rasterize(geom, shape):
    return rio_features.rasterize([(geom, 1)], out_shape=shape, transform=from_origin(LEFT, TOP, RES, RES),
                                  fill=0, dtype="uint8").astype(bool)


def _layer(ds, name):
    return ds["layers"].sel(band=name)


def test_cube_variables_dims_dtypes_and_crs(built):
    inp, out, status = built
    assert status["status"] == "ok"
    with xr.open_dataset(out, engine="h5netcdf", decode_coords="all") as ds:
        assert ds.rio.crs.to_epsg() == 32632
        assert ds["layers"].rio.crs.to_epsg() == 32632
        assert ds.rio.transform() == from_origin(LEFT, TOP, RES, RES)
        assert ds["layers"].dims == ("band", "y", "x") and ds["layers"].dtype == np.float32
        assert list(ds["band"].values) == features.DEFAULT_LAYERS
        assert set(features.DL4GAM_CHANNELS) <= set(ds["band"].values)
        for c in ("band_long_name", "band_units", "band_description", "band_dn_scale"):
            assert ds[c].dims == ("band",), c
        units = dict(zip(ds["band"].values, ds["band_units"].values))
        assert units["B04"] == "1" and units["dem"] == "m" and units["slope"] == "degree" and units["dhdt"] == "m year-1"
        assert all(ds["band_description"].values) and all(ds["band_long_name"].values)
        scale = dict(zip(ds["band"].values, ds["band_dn_scale"].values))
        assert all(scale[b] == 1e-4 for b in features.S2_BANDS) and scale["ndsi"] == 0 and scale["dem"] == 0
        masks = ["mask_glacier_id", "mask_glacier", "mask_buffer_20m", "mask_buffer_50m", "mask_cloud", "mask_nodata"]
        assert set(ds.data_vars) == {"layers", *masks}
        for v in ["layers", *masks]:
            assert ds[v].dims[-2:] == ("y", "x"), v
            for a in ("long_name", "description"):
                assert ds[v].attrs.get(a), (v, a)
            assert ds[v].encoding.get("grid_mapping") == "spatial_ref", v
        assert ds.sizes == {"band": len(features.DEFAULT_LAYERS), "y": 300, "x": 260, "glacier": 3}
        np.testing.assert_array_equal(ds["x"].values, inp["x"])
        assert ds["mask_glacier_id"].dtype == np.int32
        for v in masks[1:]:
            assert ds[v].dtype == np.uint8, v
        assert ds.attrs["item_id"] == ITEMS[CHOSEN]
        assert ds.attrs["date"] == "2023-08-25T10:20:31"
        assert ds.attrs["glacier_id"] == "G1" and ds.attrs["epoch"] == "2023"
        assert ds.attrs["conventions"] == "CF-1.8"
        assert ds.attrs["dem_file"] == inp["dem"] and ds.attrs["dhdt_file"] == inp["dhdt"]
    import h5py

    with h5py.File(out, "r") as f:   # one layer per chunk, zlib + shuffle
        lay = f["layers"]
        assert lay.chunks == (1, 300, 260) and lay.compression == "gzip" and lay.shuffle
        assert lay.attrs["grid_mapping"] in (b"spatial_ref", "spatial_ref")
    assert not [f for f in os.listdir(out.parent) if f != out.name]


def test_the_user_recipe_selects_layers_by_name(built):
    """``xr.open_dataset(path)["layers"].sel(band=[...])`` is all a user needs."""
    inp, out, _ = built
    sub = xr.open_dataset(out)["layers"].sel(band=["B04", "ndsi"])
    assert sub.dims == ("band", "y", "x") and list(sub["band"].values) == ["B04", "ndsi"]
    assert list(sub["band_units"].values) == ["1", "1"]
    g, s = inp["bands"]["B03"][CHOSEN], inp["bands"]["B11"][CHOSEN]
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(sub.sel(band="ndsi").values, (g - s) / (g + s), atol=1e-5)
    ref = inp["bands"]["B04"][CHOSEN]
    np.testing.assert_allclose(sub.sel(band="B04").values, ref, atol=1e-4, rtol=0)
    sub.close()


def test_reflectance_round_trips_from_chosen_scene(built):
    inp, out, _ = built
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        for b in features.S2_BANDS:
            ref = inp["bands"][b][CHOSEN]
            got = _layer(ds, b).values
            np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=b)
            np.testing.assert_allclose(got[~np.isnan(ref)], ref[~np.isnan(ref)], atol=1e-4, rtol=0, err_msg=b)
            # and it is not the other candidate
            assert np.nanmax(np.abs(got - inp["bands"][b][1 - CHOSEN])) > 0.1
        g, s = inp["bands"]["B03"][CHOSEN], inp["bands"]["B11"][CHOSEN]
        with np.errstate(invalid="ignore"):
            np.testing.assert_allclose(_layer(ds, "ndsi").values, (g - s) / (g + s), atol=1e-5)
        assert _layer(ds, "ndsi").values[0, 0] == 0.0


def test_masks(built):
    inp, out, _ = built
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        ids = list(ds["glacier_ids"].values)
        assert ids == ["G1", "G2", "G3"]  # GFAR outside the cube, GBAD not usable
        lab = ds["mask_glacier_id"].values
        shape = lab.shape
        own = _rasterize(G1, shape)
        glacier = ds["mask_glacier"].values.astype(bool)
        np.testing.assert_array_equal(glacier, own)
        assert glacier.sum() * RES**2 == pytest.approx(G1.area, rel=0.02)
        np.testing.assert_array_equal(lab == ids.index("G2"), _rasterize(G2, shape))
        assert (lab == -1).sum() > 0
        b20 = ds["mask_buffer_20m"].values.astype(bool)
        b50 = ds["mask_buffer_50m"].values.astype(bool)
        g2 = lab == ids.index("G2")
        g3 = lab == ids.index("G3")
        # the geometric buffers do reach the neighbours, and the masks exclude their pixels
        assert (_rasterize(G1.buffer(20), shape) & g2).any() and (_rasterize(G1.buffer(50), shape) & g3).any()
        assert not (b20 & g2).any() and not (b50 & g2).any() and not (b50 & g3).any()
        assert (glacier <= b20).all() and (b20 <= b50).all() and b20.sum() > glacier.sum() and b50.sum() > b20.sum()
        np.testing.assert_array_equal(b20, _rasterize(G1.buffer(20), shape) & ~g2 & ~g3)
        scl = inp["scl"][CHOSEN]
        np.testing.assert_array_equal(ds["mask_cloud"].values.astype(bool), np.isin(scl, [3, 8, 9, 10]))
        nod = ds["mask_nodata"].values.astype(bool)
        assert nod[5:9, 10:20].all() and nod[200:203, 200:210].all()
        assert not nod[40:44, 40:44].any()  # B01 is not a DL4GAM band
        assert nod.sum() == 40 + 30


def test_terrain_and_dhdt(built):
    _, out, _ = built
    with xr.open_dataset(out, engine="h5netcdf", decode_coords="all") as ds:
        assert ds.attrs["dem_nan_filled"] == 0
        x, y = np.meshgrid(ds["x"].values, ds["y"].values)
        np.testing.assert_allclose(_layer(ds, "dem").values, hilly(x, y), atol=3.0)  # bilinear from 30 m
        sl = _layer(ds, "slope").values
        assert 5 < np.nanmedian(sl) < 40 and np.isfinite(sl).all()
        np.testing.assert_allclose(_layer(ds, "aspect_sin") ** 2 + _layer(ds, "aspect_cos") ** 2, 1.0, atol=1e-5)
        assert np.abs(_layer(ds, "curv_planform")).max() <= 50 and np.abs(_layer(ds, "curv_profile")).max() <= 50
        dh = _layer(ds, "dhdt").values
        frac = ds.attrs["dhdt_nan_fraction"]
        assert 0.005 < frac < 0.5
        b50 = ds["mask_buffer_50m"].values.astype(bool)
        assert np.isnan(dh[b50]).mean() == pytest.approx(frac)
        assert np.isfinite(dh).mean() > 0.9
        assert np.nanmax(np.abs(dh + 1)) < 2


def test_acquisition_without_grid_mapping_link_still_reads(tmp_path):
    inp = make_inputs(tmp_path, height=80, width=90, grid_mapping=False)
    with xr.open_dataset(inp["acq"], engine="h5netcdf", decode_coords="all") as raw:
        assert raw.rio.crs is None and "spatial_ref" in raw.data_vars  # the case being handled
    inv = gpd.GeoDataFrame({"glac_id": ["G1"], "qc_status": ["ok"]}, geometry=[box(400203, 5099503, 400597, 5099797)],
                           crs=CRS)
    inv.to_file(inp["inv"], layer="glaciers", driver="GPKG", mode="w")
    ds, _ = features.build_cube(*_args(inp))
    assert ds.rio.crs.to_epsg() == 32632 and int(ds["mask_glacier"].sum()) > 0


def test_plane_dem_gives_analytic_slope_aspect_and_zero_curvature(tmp_path):
    inp = make_inputs(tmp_path, height=120, width=100, dem_fn=plane)
    # a smaller cube around the same glacier is not needed: masks only need G1 inside the grid
    inv = gpd.GeoDataFrame({"glac_id": ["G1"], "qc_status": ["ok"]}, geometry=[box(400203, 5099203, 400597, 5099597)],
                           crs=CRS)
    inv.to_file(inp["inv"], layer="glaciers", driver="GPKG", mode="w")
    cube, enc = features.build_cube(*_args(inp))
    ds = {n: _layer(cube, n) for n in features.DEFAULT_LAYERS}
    ds.update(x=cube["x"], y=cube["y"])
    i = (slice(2, -2), slice(2, -2))
    assert float(ds["slope"][i].min()) == pytest.approx(np.degrees(np.arctan(np.hypot(0.2, 0.3))), abs=0.01)
    assert float(ds["slope"][i].max()) == pytest.approx(np.degrees(np.arctan(np.hypot(0.2, 0.3))), abs=0.01)
    asp = np.degrees(np.arctan2(ds["aspect_sin"][i], ds["aspect_cos"][i])) % 360
    np.testing.assert_allclose(asp, np.degrees(np.arctan2(-0.2, 0.3)) % 360, atol=0.01)
    assert float(np.abs(ds["curv_planform"][i]).max()) < 0.05
    assert float(np.abs(ds["curv_profile"][i]).max()) < 0.05
    x, y = np.meshgrid(ds["x"].values, ds["y"].values)
    np.testing.assert_allclose(ds["dem"].values, plane(x, y), atol=0.01)
    assert enc["layers"]["chunksizes"] == (1, 120, 100) and enc["layers"]["dtype"] == "float32"
    assert all(e.get("zlib") for e in enc.values())


def test_small_dem_gap_is_filled_and_recorded(tmp_path, caplog):
    inp = make_inputs(tmp_path, dem_nan_box=(401000, 5098800, 401100, 5098900))  # ~100 m square inside G1
    with caplog.at_level("WARNING", logger="glaciermap.data.features"):
        ds, _ = features.build_cube(*_args(inp))
    n = ds.attrs["dem_nan_filled"]
    assert 50 <= n <= 250
    assert 0 < ds.attrs["dem_nan_fraction"] < 0.05
    assert np.isfinite(_layer(ds, "dem").values).all()
    assert np.isfinite(_layer(ds, "slope").values).all() and np.isfinite(_layer(ds, "curv_planform").values).all()
    # filled values come from the surrounding terrain, not from the nodata value
    patch = _layer(ds, "dem").sel(x=slice(401000, 401100), y=slice(5098900, 5098800)).values
    x, y = np.meshgrid(ds["x"].sel(x=slice(401000, 401100)), ds["y"].sel(y=slice(5098900, 5098800)))
    assert np.abs(patch - hilly(x, y)).max() < 60
    msgs = [r.getMessage() for r in caplog.records]
    assert any("G1" in m and inp["dem"] in m and str(n) in m for m in msgs), msgs


def test_large_dem_gap_raises_naming_glacier_and_file(tmp_path):
    inp = make_inputs(tmp_path, dem_nan_box=(400800, 5098200, 401500, 5098900))  # half the glacier
    with pytest.raises(GlacierInputError) as e:
        features.build_cube(*_args(inp))
    msg = str(e.value)
    assert "G1" in msg and inp["dem"] in msg and "% NaN over the glacier + 50 m buffer" in msg
    assert e.value.path == inp["dem"]
    # a looser threshold accepts it
    ds, _ = features.build_cube(*_args(inp, params={**features.DEFAULT_PARAMS, "max_dem_nan_fraction": 0.9}))
    assert ds.attrs["dem_nan_filled"] > 1000


def test_dem_not_covering_the_cube_raises(tmp_path):
    inp = make_inputs(tmp_path)
    far = os.path.join(tmp_path, "far_dem.tif")
    _write_tif(far, np.ones((10, 10)), from_origin(500000, 5000000, 30, 30), CRS, DEM_NODATA)
    with pytest.raises(GlacierInputError, match="G1") as e:
        features.build_cube(*_args(inp, dem=far))
    assert far in str(e.value)


@pytest.mark.parametrize("how", ["truncated", "garbage", "missing"])
def test_unreadable_dem_raises_naming_file(tmp_path, how):
    inp = make_inputs(tmp_path)
    bad = os.path.join(tmp_path, f"dem_{how}.tif")
    if how == "truncated":
        raw = open(inp["dem"], "rb").read()
        open(bad, "wb").write(raw[: len(raw) // 2])
    elif how == "garbage":
        open(bad, "wb").write(b"this is not a GeoTIFF" * 10)
    with pytest.raises(GlacierInputError) as e:
        features.build_cube(*_args(inp, dem=bad))
    assert bad in str(e.value) and "G1" in str(e.value) and "DEM" in str(e.value)
    out = tmp_path / "cube.nc"
    status = features.write_cube(*_args(inp, dem=bad), out)
    assert status["status"] == "skipped" and bad in status["reason"]
    assert read_status(out)["skipped_at_step"] == "features"


def test_unreadable_dhdt_raises_naming_file(tmp_path):
    inp = make_inputs(tmp_path)
    bad = os.path.join(tmp_path, "nope.tif")
    with pytest.raises(GlacierInputError, match="dh/dt") as e:
        features.build_cube(*_args(inp, dhdt=bad))
    assert bad in str(e.value)


def test_acquisition_skip_record_is_carried_forward(tmp_path):
    inp = make_inputs(tmp_path)
    acq = tmp_path / "skipped_acq.nc"
    reason = "glacier G1: no scene of collection 'sentinel-2-l2a' intersects the cube extent (file: catalog.json)"
    write_netcdf_atomic(acq, skip_dataset("G1", "2023", reason, "acquire"))
    with pytest.raises(UpstreamSkipped):
        features.build_cube(*_args(inp, acq=str(acq)))
    out = tmp_path / "cube.nc"
    status = features.write_cube(*_args(inp, acq=str(acq)), out)
    assert status["status"] == "skipped" and status["reason"] == reason
    st = read_status(out)
    assert st["reason"] == reason and st["skipped_at_step"] == "acquire"


def test_selection_without_choice_skips_with_its_reason(tmp_path):
    inp = make_inputs(tmp_path)
    why = "glacier G1, epoch 2023: no candidate passes the pre-filter (valid >= 0.9, cloud <= 0.3)"
    pd.DataFrame({"glacier_id": "G1", "epoch": "2023", "item_id": ITEMS, "chosen": [False, False],
                  "glacier_status": "skipped", "glacier_reason": why}).to_csv(inp["sel"], index=False)
    with pytest.raises(GlacierInputError) as e:
        features.build_cube(*_args(inp))
    assert why in str(e.value) and e.value.path == inp["sel"]
    out = tmp_path / "cube.nc"
    assert features.write_cube(*_args(inp), out)["status"] == "skipped"
    assert why in read_status(out)["reason"]
    assert read_status(out)["skipped_at_step"] == "select"


def test_chosen_item_missing_from_acquisition_raises(tmp_path):
    inp = make_inputs(tmp_path)
    pd.DataFrame({"item_id": ["S2X_other"], "chosen": [True], "glacier_status": "ok", "glacier_reason": ""}).to_csv(
        inp["sel"], index=False)
    with pytest.raises(GlacierInputError, match="S2X_other"):
        features.build_cube(*_args(inp))


def test_acquisition_lacking_a_band_or_its_crs_is_a_clear_glacier_error(tmp_path):
    inp = make_inputs(tmp_path)
    with xr.open_dataset(inp["acq"], engine="h5netcdf") as ds:
        full = ds.load()
    full.drop_vars(["swir1", "mask_cloud"]).to_netcdf(tmp_path / "nob11.nc", engine="h5netcdf")
    with pytest.raises(GlacierInputError, match=r"acquisition lacks variable\(s\) swir1, mask_cloud") as e:
        features.build_cube(*_args({**inp, "acq": str(tmp_path / "nob11.nc")}))
    assert e.value.glacier_id == "G1" and e.value.path == str(tmp_path / "nob11.nc")
    full.drop_vars("spatial_ref").to_netcdf(tmp_path / "nocrs.nc", engine="h5netcdf")
    with pytest.raises(GlacierInputError, match="no CRS"):
        features.build_cube(*_args({**inp, "acq": str(tmp_path / "nocrs.nc")}))


def test_other_buffers_and_dem_check_without_a_50m_mask(tmp_path):
    inp = make_inputs(tmp_path, dem_nan_box=(401000, 5098800, 401100, 5098900))
    ds, enc = features.build_cube(*_args(inp, params={**features.DEFAULT_PARAMS, "buffers_m": [30]}))
    assert "mask_buffer_30m" in ds and "mask_buffer_20m" not in ds and "mask_buffer_50m" not in ds
    ref, _ = features.build_cube(*_args(inp))
    assert ds.attrs["dem_nan_fraction"] == ref.attrs["dem_nan_fraction"] > 0  # still over glacier + 50 m
    assert [r[0] for r in features.describe_variables([30], coords=False)] == list(ds.data_vars)
    assert enc["mask_buffer_30m"]["dtype"] == "uint8"


def test_glacier_not_in_inventory_raises(tmp_path):
    inp = make_inputs(tmp_path)
    with pytest.raises(GlacierInputError, match="not found") as e:
        features.build_cube(*_args(inp, gid="G9"))
    assert e.value.path == inp["inv"]


def test_unexpected_error_propagates_and_leaves_no_file(tmp_path, monkeypatch):
    inp = make_inputs(tmp_path)
    out_dir = tmp_path / "cubes"
    out_dir.mkdir()
    out = out_dir / "G1.nc"

    def boom(*a, **k):
        raise RuntimeError("bug in terrain")

    monkeypatch.setattr(features.terrain, "terrain_attributes", boom)
    with pytest.raises(RuntimeError, match="bug in terrain"):
        features.write_cube(*_args(inp), out)
    assert list(out_dir.iterdir()) == []


def test_failure_while_writing_leaves_no_partial_file(tmp_path, monkeypatch):
    inp = make_inputs(tmp_path)
    out_dir = tmp_path / "cubes"
    out_dir.mkdir()
    out = out_dir / "G1.nc"
    real = xr.Dataset.to_netcdf

    def half_write(self, path, *a, **k):
        real(self, path, *a, **k)  # the temporary file exists now
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", half_write)
    with pytest.raises(OSError, match="disk full"):
        features.write_cube(*_args(inp), out)
    assert list(out_dir.iterdir()) == []


def test_describe_variables_covers_every_cube_variable(built):
    _, out, _ = built
    rows = features.describe_variables()
    names = [r[0] for r in rows]
    assert len(names) == len(set(names))
    with xr.open_dataset(out, engine="h5netcdf", decode_coords="all") as ds:
        assert set(names) == set(ds.data_vars) | set(ds.coords)
        for n, u, d in rows:
            assert d, n
            if n not in ("layers", "band", "band_long_name", "band_units", "band_description"):
                assert ds[n].attrs["units"] == u, n
        assert "units" not in ds["layers"].attrs  # per layer: band_units
        layer_rows = features.describe_layers()
        assert [r[0] for r in layer_rows] == list(ds["band"].values)
        assert [r[1] for r in layer_rows] == list(ds["band_units"].values)
    table = features.variables_markdown()
    assert table.count("\n") == len(rows) + 1 + 3 + len(layer_rows) and "`curv_planform`" in table


# ---------------------------------------------------------------------------------------------------- layer stack


def _write_old_format(ds: xr.Dataset, path) -> None:
    """The cube as it was written before the layer stack: one (y, x) variable per layer, the 12 bands as
    uint16 x 1e-4 (fill 0), the rest float32, zlib (the former features.cube_encoding). Test-only."""
    from glaciermap.data.georef import write_georef

    raw = {}
    for n in ds["band"].values:
        v = ds["layers"].sel(band=n).values
        raw[str(n)] = v
    old = xr.Dataset({n: (("y", "x"), v) for n, v in raw.items()},
                     coords={"y": ds["y"].values, "x": ds["x"].values, "glacier_ids": ("glacier", ds["glacier_ids"].values)})
    for m in ds.data_vars:
        if m.startswith("mask_"):
            old[m] = (("y", "x"), ds[m].values)
    old = write_georef(old, CRS, from_origin(LEFT, TOP, RES, RES))
    old.attrs = dict(ds.attrs)
    z = {"zlib": True, "complevel": 4, "shuffle": True, "grid_mapping": "spatial_ref"}
    enc = {}
    for n in old.data_vars:
        if n in features.S2_BANDS:
            enc[n] = {"dtype": "uint16", "scale_factor": 1e-4, "_FillValue": 0, **z}
        elif n == "mask_glacier_id":
            enc[n] = {"dtype": "int32", "_FillValue": None, **z}
        elif n.startswith("mask_"):
            enc[n] = {"dtype": "uint8", "_FillValue": None, **z}
        else:
            enc[n] = {"dtype": "float32", "_FillValue": np.float32(np.nan), **z}
    old.to_netcdf(path, engine="h5netcdf", encoding=enc)


def _unquantised_bands(monkeypatch):
    """Make cube_dataset store reflectance as computed (float32), i.e. what the old writer was handed."""
    from glaciermap.data import channels

    monkeypatch.setattr(channels, "quantise_reflectance", lambda v: np.asarray(v, np.float32))


def test_training_inputs_are_bit_identical_to_the_former_uint16_cube(tmp_path, monkeypatch):
    """load_cube on the float32 stack == what load_cube read from the former per-variable uint16 cube."""
    from glaciermap.data.netcdf import read_variables
    from glaciermap.segmentation.patches import load_cube

    inp = make_inputs(tmp_path)
    new = tmp_path / "new.nc"
    assert features.write_cube(*_args(inp), new)["status"] == "ok"
    with monkeypatch.context() as m:
        _unquantised_bands(m)
        ds, _ = features.build_cube(*_args(inp))
    _write_old_format(ds, tmp_path / "old.nc")
    # the former load_cube: read_variables (uint16 x 1e-4 decoded in float64), then into a float32 array
    v, _ = read_variables(tmp_path / "old.nc", features.DL4GAM_CHANNELS)
    assert v["B04"].dtype == np.float64 and v["dem"].dtype == np.float32
    before = np.stack([v[c].astype(np.float32) for c in features.DL4GAM_CHANNELS])
    after = load_cube(new).x
    assert after.dtype == np.float32 and after.shape == before.shape
    assert np.array_equal(after, before, equal_nan=True)
    assert np.isnan(after[features.DL4GAM_CHANNELS.index("B11")][5:9, 10:20]).all()
    # every stored layer, not only the model's, and the band values read_record gives (baseline, comparison)
    every = features.DEFAULT_LAYERS
    old_all, _ = read_variables(tmp_path / "old.nc", every)
    new_all, _ = read_variables(new, every)
    for n in every:
        assert new_all[n].dtype == old_all[n].dtype, n
        assert np.array_equal(new_all[n], old_all[n], equal_nan=True), n
    with xr.open_dataset(tmp_path / "old.nc") as o, xr.open_dataset(new) as n:
        for m in ("mask_glacier_id", "mask_glacier", "mask_buffer_20m", "mask_buffer_50m", "mask_cloud", "mask_nodata"):
            np.testing.assert_array_equal(o[m].values, n[m].values)


def test_without_dhdt_the_cube_has_no_dhdt_layer(tmp_path):
    inp = make_inputs(tmp_path, height=120, width=100)
    ds, _ = features.build_cube(*_args(inp, dhdt=None))
    assert "dhdt" not in list(ds["band"].values)
    assert list(ds["band"].values) == [c for c in features.DEFAULT_LAYERS if c != "dhdt"]
    assert ds.attrs["dhdt_file"] == "none" and ds.attrs["dhdt_nan_fraction"] == "none"
    with pytest.raises(ValueError, match="dhdt"):
        features.build_cube(*_args(inp, dhdt=None), layers=["B04", "dhdt"])


def test_only_the_needed_layers_and_sources_are_built(tmp_path, monkeypatch):
    from glaciermap.data.channels import ChannelError

    inp = make_inputs(tmp_path, height=120, width=100)
    read = []
    real = features.warp_to_grid
    monkeypatch.setattr(features, "warp_to_grid", lambda href, *a, **k: read.append(href) or real(href, *a, **k))
    ds, enc = features.build_cube(*_args(inp, dem=os.path.join(tmp_path, "no_such_dem.tif")), layers=["B04", "ndsi"])
    assert list(ds["band"].values) == ["B04", "ndsi"] and read == []   # neither DEM nor dh/dt read
    assert ds.attrs["dem_file"] == "none" and ds.attrs["dhdt_file"] == "none"
    assert enc["layers"]["chunksizes"] == (1, 120, 100)
    full, _ = features.build_cube(*_args(inp))
    for n in ("B04", "ndsi"):
        np.testing.assert_array_equal(ds["layers"].sel(band=n).values, full["layers"].sel(band=n).values)
    with pytest.raises(ChannelError, match="ndzz"):
        features.build_cube(*_args(inp), layers=["B04", "ndzz"])


def test_other_registry_layers_build(tmp_path):
    from glaciermap.data import indices, terrain

    inp = make_inputs(tmp_path, height=120, width=100)
    vel = os.path.join(tmp_path, "vel.tif")
    with rasterio.open(vel, "w", driver="GTiff", width=60, height=60, count=2, dtype="float32", crs=CRS,
                       transform=from_origin(LEFT - 300, TOP + 300, 40, 40)) as dst:
        dst.write(np.full((60, 60), 3.0, np.float32), 1)
        dst.write(np.full((60, 60), 4.0, np.float32), 2)
    names = ["ndgi", "ratio_red_swir1", "hillshade", "cast_shadow", "glcm_dissimilarity_B08_w5", "velocity"]
    ds, _ = features.build_cube(*_args(inp, params={**features.DEFAULT_PARAMS, "sun_azimuth_deg": 150.0,
                                                    "sun_elevation_deg": 40.0}),
                                layers=names, sources={"velocity": vel})
    L = {n: ds["layers"].sel(band=n).values for n in names}
    b = {k: inp["bands"][k][CHOSEN] for k in ("B03", "B04", "B08", "B11")}
    np.testing.assert_allclose(L["ndgi"], indices.ndgi(b["B03"], b["B04"]), atol=1e-6)
    np.testing.assert_allclose(L["ratio_red_swir1"], b["B04"] / b["B11"], rtol=1e-5)
    assert np.nanmax(L["hillshade"]) <= 1 and np.nanmin(L["hillshade"]) >= 0
    assert set(np.unique(L["cast_shadow"])) <= {0.0, 1.0}
    np.testing.assert_allclose(L["glcm_dissimilarity_B08_w5"], indices.glcm_dissimilarity(b["B08"], 5), equal_nan=True)
    np.testing.assert_allclose(L["velocity"], 5.0, rtol=1e-6)
    assert ds.attrs["sun_azimuth_deg"] == 150.0 and ds.attrs["velocity_file"] == vel
    # the sun at the scene's time (no angles given): a plausible August morning sun over the Alps
    ds2, _ = features.build_cube(*_args(inp), layers=["hillshade"])
    az, el = ds2.attrs["sun_azimuth_deg"], ds2.attrs["sun_elevation_deg"]
    assert (az, el) == pytest.approx(terrain.sun_position("2023-08-25T10:20:31", 7.69, 46.03), abs=0.5)
    with pytest.raises(ValueError, match="velocity"):
        features.build_cube(*_args(inp), layers=["velocity"])


def test_sun_of_the_chosen_scene_and_missing_bands_of_a_source(tmp_path):
    """The sun angles of the chosen scene come from the acquisition; a band the source lacks leaves out the default
    layers that need it and skips the glacier when a named layer needs it."""
    inp = make_inputs(tmp_path, height=120, width=100, sun=(151.5, 48.25))
    acq2 = inp["acq"]
    layers = features.DEFAULT_LAYERS + ["hillshade"]
    b, _ = features.build_cube(*_args(inp), layers=layers)
    assert list(b["band"].values) == layers
    # the sun of the chosen scene comes from the acquisition
    assert (b.attrs["sun_azimuth_deg"], b.attrs["sun_elevation_deg"]) == (151.5, 48.25)
    # a scene without a band: the default layers leave out what needs it, a named layer skips the glacier
    with xr.open_dataset(acq2, engine="h5netcdf", decode_coords="all") as ds:
        ds = ds.load()
    few = ds.drop_vars(["coastal", "nir09"])
    few.attrs["bands"] = " ".join(n for n in ds.attrs["bands"].split() if n not in ("coastal", "nir09"))
    few.to_netcdf(tmp_path / "few.nc", engine="h5netcdf")
    c, _ = features.build_cube(*_args(inp, acq=str(tmp_path / "few.nc")))
    assert "B01" not in list(c["band"].values) and "B09" not in list(c["band"].values) and "ndsi" in list(c["band"].values)
    with pytest.raises(GlacierInputError, match="B01"):
        features.build_cube(*_args(inp, acq=str(tmp_path / "few.nc")), layers=["B04", "B01"])
