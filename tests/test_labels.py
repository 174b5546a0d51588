"""Label sets: painting rules, maps in other CRSs (raster and vector), config checks, the GeoTIFF and skips."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
import shapely
from shapely.geometry import MultiPoint, Point, box

from glaciermap.segmentation import labels as L
from glaciermap.data.features import cube_dataset, cube_encoding
from glaciermap.data.georef import read_grid
from glaciermap.io import GlacierInputError, skip_dataset, write_netcdf_atomic

CRS, RES, LEFT, TOP = "EPSG:32632", 10.0, 400000.0, 5100000.0
H, W = 10, 12


def outline_mask():
    m = np.zeros((H, W), bool)
    m[2:8, 2:8] = True
    return m


def write_cube(path, ndwi=None, ndvi=None, cloud=None, nodata=None, crs=CRS):
    """A cube in the features.py format: glacier 0 at rows 2-7, cols 2-7; layers ndwi, ndvi, B04."""
    ids = np.where(outline_mask(), 0, -1).astype(np.int32)
    zeros = np.zeros((H, W), np.float32)
    layers = {"ndwi": zeros if ndwi is None else ndwi.astype(np.float32),
              "ndvi": zeros if ndvi is None else ndvi.astype(np.float32), "B04": zeros + 0.1}
    no = np.zeros((H, W), np.uint8)
    masks = {"mask_glacier_id": ids, "mask_glacier": (ids == 0).astype(np.uint8), "mask_buffer_20m": no,
             "mask_buffer_50m": no, "mask_cloud": no if cloud is None else cloud.astype(np.uint8),
             "mask_nodata": no if nodata is None else nodata.astype(np.uint8)}
    x = LEFT + RES / 2 + RES * np.arange(W)
    y = TOP - RES / 2 - RES * np.arange(H)
    ds = cube_dataset(layers, masks, x, y, ["G1"], crs, Affine(RES, 0, LEFT, 0, -RES, TOP),
                      attrs={"glacier_id": "G1", "epoch": "2015", "status": "ok", "reason": ""})
    write_netcdf_atomic(path, ds, cube_encoding(ds))
    return path


def write_tif(path, data, transform, crs, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(data, 1)
    return path


def pixel_box(r0, r1, c0, c1):
    """UTM box covering cube rows r0..r1-1, cols c0..c1-1 (edges on pixel boundaries)."""
    return box(LEFT + c0 * RES, TOP - r1 * RES, LEFT + c1 * RES, TOP - r0 * RES)


def test_painting_order_within_outside_and_rest_position(tmp_path):
    ndwi = np.zeros((H, W))
    ndwi[:, 0:4] = 0.5        # water left: cols 0, 1 outside the outline; 2, 3 inside
    ndvi = np.zeros((H, W))
    ndvi[0, :] = 0.9          # vegetation on row 0 (outside), overlaps water at (0, 0..1): the later class wins
    cube = write_cube(tmp_path / "c.nc", ndwi, ndvi)
    debris = np.zeros((H, W), np.uint8)
    debris[:, 5:] = 1          # a same-grid map: only its part within the outline (rows 2-7, cols 5-7) paints
    dm = write_tif(tmp_path / "debris.tif", debris, Affine(RES, 0, LEFT, 0, -RES, TOP), CRS)
    spec = {"classes": [
        {"name": "clean_ice", "rule": "outline"},
        {"name": "water", "rule": "channel", "channel": "ndwi", "above": 0.17, "outside": "outline"},
        {"name": "background", "rule": "rest"},      # rest need not be first: it is the base under all rules
        {"name": "debris", "rule": "map", "path": str(dm), "within": "outline"},
        {"name": "vegetation", "rule": "channel", "channel": "ndvi", "above": 0.3, "outside": "outline"}]}
    lab, info = L.build_labels(cube, spec, "G1")
    exp = np.full((H, W), 2, np.uint8)
    exp[outline_mask()] = 0
    exp[(np.arange(W) < 4) & ~outline_mask()] = 1
    exp[2:8, 5:8] = 3
    exp[0, :] = 4
    assert lab.dtype == np.uint8
    np.testing.assert_array_equal(lab, exp, err_msg=str(lab))
    assert info["pixels"] == {n: int((exp == i).sum()) for i, n in enumerate(L.labelset_classes(spec))}
    assert info["ignored"] == 0 and sum(info["pixels"].values()) == H * W


def test_channel_thresholds_strict_and_nan(tmp_path):
    ndwi = np.full((H, W), 0.5)
    ndwi[0, 0] = np.nan        # NaN matches neither above nor below
    ndwi[0, 1] = 0.2           # == above: not mid (strictly above), but low
    ndwi[0, 2] = 0.8           # == below: not strictly below
    ndwi[0, 3] = 0.9           # beyond below, == the above of high: nothing
    cube = write_cube(tmp_path / "c.nc", ndwi)
    spec = {"classes": [{"name": "bg", "rule": "rest"},
                        {"name": "mid", "rule": "channel", "channel": "ndwi", "above": 0.2, "below": 0.8},
                        {"name": "low", "rule": "channel", "channel": "ndwi", "below": 0.3},
                        {"name": "high", "rule": "channel", "channel": "ndwi", "above": 0.9}]}
    lab, _ = L.build_labels(cube, spec, "G1")
    assert list(lab[0, :4]) == [0, 2, 0, 0]
    assert (lab.ravel()[4:] == 1).all()
    # a NaN is also never "below": only the 0.2 pixel is low
    ndwi[0, 4] = np.nan
    bg, _, low, _ = spec["classes"]
    lab, _ = L.build_labels(write_cube(tmp_path / "d.nc", ndwi), {"classes": [bg, low]}, "G1")
    assert lab[0, 1] == 1 and lab.sum() == 1


def test_cloud_and_nodata_are_ignored_whatever_painted_them(tmp_path):
    cloud = np.zeros((H, W), bool)
    cloud[3, 3] = cloud[0, 0] = True            # one on the outline, one on the rest
    nodata = np.zeros((H, W), bool)
    nodata[9, :] = True
    cube = write_cube(tmp_path / "c.nc", cloud=cloud, nodata=nodata)
    spec = {"classes": [{"name": "bg", "rule": "rest"}, {"name": "ice", "rule": "outline"}]}
    lab, info = L.build_labels(cube, spec, "G1")
    assert lab[3, 3] == L.IGNORE and lab[0, 0] == L.IGNORE and (lab[9] == L.IGNORE).all()
    assert info["ignored"] == 2 + W
    assert lab[4, 4] == 1 and lab[1, 1] == 0
    assert info["pixels"] == {"ice": 36 - 1, "bg": H * W - 36 - 1 - W}


def test_raster_map_in_geographic_crs_lands_on_the_right_pixels(tmp_path):
    cube = write_cube(tmp_path / "c.nc")
    to_ll = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    to_utm = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    # a ~1 m lon/lat raster over the west part of the cube only (cols 0..8): the rest lies outside the map
    lon0, lat1 = to_ll.transform(LEFT - 5, TOP + 5)
    lon1, lat0 = to_ll.transform(LEFT + 90, TOP - H * RES - 5)
    dx, dy = 1.5e-5, 1e-5
    nx, ny = int(np.ceil((lon1 - lon0) / dx)), int(np.ceil((lat1 - lat0) / dy))
    lon = lon0 + dx * (np.arange(nx) + 0.5)
    lat = lat1 - dy * (np.arange(ny) + 0.5)
    ex, ny_ = to_utm.transform(*np.meshgrid(lon, lat))
    col, row = np.floor((ex - LEFT) / RES).astype(int), np.floor((TOP - ny_) / RES).astype(int)
    want = np.zeros((H, W), bool)
    want[3:6, 4:11] = True      # cols 9, 10 are beyond the map: they stay False
    want[4, 5] = False           # painted as nodata in the map: not the class
    inside = (row >= 0) & (row < H) & (col >= 0) & (col < W)
    data = np.zeros((ny, nx), np.uint8)
    data[inside] = np.where(want[row[inside], col[inside]], 1, 0)
    data[inside & (row == 4) & (col == 5)] = 99
    data[inside & (row == 8) & (col == 1)] = 7   # an ordinary positive value: the class too
    tif = write_tif(tmp_path / "ll.tif", data, Affine(dx, 0, lon0, 0, -dy, lat1), "EPSG:4326", nodata=99)
    got = L.map_on_grid(tif, read_grid(cube), "G1")
    want[8, 1] = True
    want[:, 9:] = False
    assert got.dtype == bool and got.shape == (H, W)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("ext", ["gpkg", "geojson", "shp"])
def test_vector_map_reprojected_and_burnt_at_pixel_centres(tmp_path, ext):
    cube = write_cube(tmp_path / "c.nc")
    tr = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)

    def to_ll(xy):
        return np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))

    # rows 1-3, cols 6-9, plus a sliver 3 m wide over col 0 that reaches no pixel centre
    polys = [pixel_box(1, 4, 6, 10), box(LEFT, TOP - 50, LEFT + 3, TOP)]
    gdf = gpd.GeoDataFrame({"k": [1, 2]}, geometry=[shapely.transform(p.segmentize(1.0), to_ll) for p in polys],
                           crs="EPSG:4326")
    path = tmp_path / f"map.{ext}"
    gdf.to_file(path)
    got = L.map_on_grid(path, read_grid(cube), "G1")
    want = np.zeros((H, W), bool)
    want[1:4, 6:10] = True
    np.testing.assert_array_equal(got, want)
    # polygons far from the cube: nothing
    far = gpd.GeoDataFrame(geometry=[box(LEFT + 1e5, TOP, LEFT + 1e5 + 50, TOP + 50)], crs=CRS)
    far.to_file(tmp_path / f"far.{ext}")
    assert not L.map_on_grid(tmp_path / f"far.{ext}", read_grid(cube), "G1").any()


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
def test_bad_maps_raise_glacier_input_errors(tmp_path):
    grid = read_grid(write_cube(tmp_path / "c.nc"))
    gpd.GeoDataFrame(geometry=[Point(LEFT, TOP), MultiPoint([(LEFT, TOP - 5)])], crs=CRS).to_file(tmp_path / "p.gpkg")
    with pytest.raises(GlacierInputError, match=r"G7.*no polygon geometry.*p\.gpkg"):
        L.map_on_grid(tmp_path / "p.gpkg", grid, "G7")
    write_tif(tmp_path / "nocrs.tif", np.ones((4, 4), np.uint8), Affine(RES, 0, LEFT, 0, -RES, TOP), None)
    with pytest.raises(GlacierInputError, match=r"no CRS.*nocrs\.tif"):
        L.map_on_grid(tmp_path / "nocrs.tif", grid, "G7")
    gpd.GeoDataFrame(geometry=[pixel_box(0, 2, 0, 2)]).to_file(tmp_path / "nocrs.gpkg")
    with pytest.raises(GlacierInputError, match=r"no CRS.*nocrs\.gpkg"):
        L.map_on_grid(tmp_path / "nocrs.gpkg", grid, "G7")
    (tmp_path / "junk.tif").write_text("not a raster")
    with pytest.raises(GlacierInputError, match=r"cannot read.*junk\.tif"):
        L.map_on_grid(tmp_path / "junk.tif", grid, "G7")
    with pytest.raises(GlacierInputError, match="does not exist"):
        L.map_on_grid(tmp_path / "gone.gpkg", grid, "G7")
    # an unknown extension is tried as raster, then as vector
    gpd.GeoDataFrame(geometry=[pixel_box(0, 2, 0, 2)], crs=CRS).to_file(tmp_path / "m.data", driver="GPKG")
    assert L.map_on_grid(tmp_path / "m.data", grid, "G7").sum() == 4


def test_check_labelset_names_each_problem_by_key(tmp_path):
    (tmp_path / "ok.tif").write_bytes(b"")
    good = {"classes": [{"name": "bg", "rule": "rest"}, {"name": "ice", "rule": "outline"},
                        {"name": "debris", "rule": "map", "path": str(tmp_path / "ok.tif"), "within": "outline"},
                        {"name": "water", "rule": "channel", "channel": "ndwi", "above": 0.17, "outside": "outline"}]}
    assert L.check_labelset("ice_debris", good) == []
    bad = {"classes": [
        {"name": "bg", "rule": "rest", "within": "outline"},
        {"name": "bg", "rule": "outline"},
        {"name": "d", "rule": "map", "path": "x.tif"},
        {"name": "e", "rule": "map"},
        {"name": "w", "rule": "channel", "channel": "ndwi"},
        {"name": "v", "rule": "channel", "above": "high"},
        {"name": "z", "rule": "channel", "channel": "ndvi", "above": 0.5, "below": 0.1},
        {"name": "q", "rule": "outline", "within": "outline", "outside": "outline"},
        {"name": "r", "rule": "outline", "within": "glacier"},
        {"name": "s", "rule": "blob"},
        {"name": "t", "rule": "rest", "channel": "ndwi"}]}
    p = L.check_labelset("ice_debris", bad)
    k = "labels.ice_debris.classes"
    for want in [f"{k}[0].within:", f"{k}[1].name: duplicate class name 'bg'",
                 f"{k}[2].path: file 'x.tif' does not exist", f"{k}[3].path: missing",
                 f"{k}[4]: rule channel needs 'above' and/or 'below'", f"{k}[5].channel: missing",
                 f"{k}[5].above: must be a number", f"{k}[6]: above (0.5) >= below (0.1)",
                 f"{k}[7]: both 'within' and 'outside'", f"{k}[8].within: must be 'outline', got 'glacier'",
                 f"{k}[9].rule: unknown rule 'blob'", f"{k}[10].channel: rule rest does not take",
                 f"{k}: exactly one class needs rule rest, found 2"]:
        assert any(x.startswith(want) for x in p), (want, p)
    assert len(p) == 13, p
    assert L.check_labelset("s", {"classes": [{"name": "a", "rule": "rest"}]}) == [
        "labels.s.classes: 1 classes; a label set needs 2 to 254"]
    many = {"classes": [{"name": "a", "rule": "rest"}] + [{"name": f"c{i}", "rule": "outline"} for i in range(254)]}
    assert L.check_labelset("s", many) == ["labels.s.classes: 255 classes; a label set needs 2 to 254"]
    assert L.check_labelset("s", {}) == ["labels.s.classes: missing or not a list"]
    assert L.check_labelset("glacier", good)[0].startswith("labels.glacier:")


def test_classes_and_channels_in_order():
    spec = {"classes": [{"name": "bg", "rule": "rest"},
                        {"name": "w", "rule": "channel", "channel": "ndwi", "above": 0},
                        {"name": "v", "rule": "channel", "channel": "ndvi", "above": 0},
                        {"name": "w2", "rule": "channel", "channel": "ndwi", "below": -1}]}
    assert L.labelset_classes(spec) == ["bg", "w", "v", "w2"]
    assert L.label_channels(spec) == ["ndwi", "ndvi"]


def test_write_read_round_trip_on_the_cube_grid(tmp_path):
    cube = write_cube(tmp_path / "c.nc")
    lab = (np.arange(H * W) % 3).astype(np.uint8).reshape(H, W)
    lab[0, 0] = L.IGNORE
    out = tmp_path / "labels" / "set" / "2015" / "G1.tif"
    attrs = {"glacier_id": "G1", "epoch": "2015", "labelset": "set", "status": "ok", "reason": ""}
    L.write_label_raster(out, lab, cube, ["bg", "ice", "debris"], attrs)
    assert [p.name for p in out.parent.iterdir()] == ["G1.tif"]    # no temporary file left
    got, classes, tags = L.read_label_raster(out)
    np.testing.assert_array_equal(got, lab)
    assert got.dtype == np.uint8 and classes == ["bg", "ice", "debris"]
    assert tags["classes"] == "0=bg;1=ice;2=debris" and tags["ignore_value"] == "255"
    assert {k: tags[k] for k in attrs} == attrs
    g = read_grid(cube)
    with rasterio.open(out) as src:
        assert src.crs == g.crs and src.crs.to_epsg() == 32632
        assert src.transform.almost_equals(g.transform) and src.transform.c == LEFT and src.transform.f == TOP
        assert src.nodata == 255 and src.dtypes == ("uint8",) and src.descriptions == ("class",)
        assert src.profile["compress"].lower() == "deflate" and src.profile["tiled"]
    with pytest.raises(ValueError, match="do not match the grid"):
        L.write_label_raster(tmp_path / "x.tif", lab[1:], cube, ["bg", "ice", "debris"], attrs)


def test_read_label_raster_rejects_values_painted_by_hand_that_are_no_class(tmp_path):
    cube = write_cube(tmp_path / "c.nc")
    out = tmp_path / "G1.tif"
    L.write_label_raster(out, np.zeros((H, W), np.uint8), cube, ["bg", "ice"], {"status": "ok"})
    with rasterio.open(out, "r+") as dst:             # a user paints value 7 in QGIS
        d = dst.read(1)
        d[2, 2] = 7
        dst.write(d, 1)
    with pytest.raises(ValueError, match=r"G1\.tif: value\(s\) 7 are no class"):
        L.read_label_raster(out)


SPEC = {"classes": [{"name": "bg", "rule": "rest"}, {"name": "ice", "rule": "outline"}]}


def test_run_labels_ok(tmp_path):
    cube = write_cube(tmp_path / "c.nc")
    res = L.run_labels(cube, SPEC, tmp_path / "o.tif", "s", "G1", "2015")
    assert res == {"glacier_id": "G1", "epoch": "2015", "status": "ok", "reason": "",
                   "pixels": {"bg": H * W - 36, "ice": 36}}
    lab, _, tags = L.read_label_raster(tmp_path / "o.tif")
    np.testing.assert_array_equal(lab, outline_mask().astype(np.uint8))
    assert tags["status"] == "ok" and tags["labelset"] == "s"


def test_run_labels_skip_record_cube_gives_a_skipped_raster(tmp_path):
    cube = tmp_path / "c.nc"
    write_netcdf_atomic(cube, skip_dataset("G1", "2015", "no cloud-free scene", "select"))
    res = L.run_labels(cube, SPEC, tmp_path / "o.tif", "s", "G1", "2015")
    assert res["status"] == "skipped" and res["reason"] == "no cloud-free scene"
    lab, classes, tags = L.read_label_raster(tmp_path / "o.tif")
    assert (lab == L.IGNORE).all() and classes == ["bg", "ice"]
    assert tags["status"] == "skipped" and tags["reason"] == "no cloud-free scene"


def test_run_labels_map_without_crs_skips_the_glacier_on_its_grid(tmp_path):
    cube = write_cube(tmp_path / "c.nc")
    nocrs = write_tif(tmp_path / "nocrs.tif", np.ones((H, W), np.uint8), Affine(RES, 0, LEFT, 0, -RES, TOP), None)
    spec = {"classes": [*SPEC["classes"], {"name": "d", "rule": "map", "path": str(nocrs)}]}
    res = L.run_labels(cube, spec, tmp_path / "o.tif", "s", "G1", "2015")
    assert res["status"] == "skipped" and "no CRS" in res["reason"] and "nocrs.tif" in res["reason"]
    assert res["pixels"] == {"bg": 0, "ice": 0, "d": 0}
    lab, _, tags = L.read_label_raster(tmp_path / "o.tif")
    assert lab.shape == (H, W) and (lab == L.IGNORE).all()
    assert tags["status"] == "skipped" and "G1" in tags["reason"] and "no CRS" in tags["reason"]
    with rasterio.open(tmp_path / "o.tif") as src:
        assert src.crs == read_grid(cube).crs
