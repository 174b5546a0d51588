"""The demo region's glacier facies data (glaciermap.demo.facies) on the tiny preset: labelled points, their truth,
planted label noise and bad rows, the planted SMB, and the earlier outputs left byte-for-byte as they were."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import pytest
import rasterio

from glaciermap import demo
from glaciermap.demo import facies as FZ
from glaciermap.demo import landsat as L
from glaciermap.demo.history import prepare_history

NEW_FILES = ("inputs/facies/", "truth/facies/", "truth/facies_points.csv", "truth/smb.csv")


@pytest.fixture(scope="module")
def region(tiny_region):
    summary = json.loads((tiny_region / ".complete").read_text())["summary"]
    return tiny_region, summary


@pytest.fixture(scope="module")
def world():
    """The tiny world rebuilt in memory (as generate builds it), to recompute the truth independently of the files."""
    spec = dict(demo.PRESETS["tiny"], name="tiny")
    W = demo.build_world(0, spec)
    demo.plant(W, demo.make_schedule(0, spec, W.ela0))
    demo.prepare_render(W)
    prepare_history(W)
    scenes = {s["item_id"]: s for s in L.make_landsat_schedule(W, spec["sensors"]["landsat"])}
    return W, scenes


@pytest.fixture(scope="module")
def points(region):
    root, _ = region
    gdf = gpd.read_file(root / "inputs" / "facies" / "points.gpkg", layer="points")
    truth = pd.read_csv(root / "truth" / "facies_points.csv", keep_default_na=False)
    return gdf, truth


@pytest.fixture(scope="module")
def landsat_ids(region):
    root, _ = region
    cat = pystac.Catalog.from_file(str(root / "inputs" / "catalog" / "catalog.json"))
    return {it.id for it in cat.get_items(recursive=True) if it.collection_id == "landsat-c2-l2"}


def _good(truth):
    return truth[truth["bad_row_reason"] == ""]


def _pixel(W, x, y):
    return (np.floor((W.y0 - np.asarray(y)) / 30.0).astype(int), np.floor((np.asarray(x) - W.x0) / 30.0).astype(int))


def test_files_schema_and_summary(region, points, landsat_ids):
    root, summary = region
    gdf, truth = points
    assert json.loads((root / ".complete").read_text())["version"] == demo.VERSION == 6
    for sid in landsat_ids:
        assert (root / "truth" / "facies" / f"{sid}.tif").is_file()
    assert list(gdf.columns) == ["point_id", "class", "scene_id", "glacier_id", "geometry"]
    assert gdf.crs.to_epsg() == 4326 and (gdf.geom_type == "Point").all()
    lon, lat = gdf.geometry.x, gdf.geometry.y
    assert lon.between(7.0, 8.5).all() and lat.between(45.5, 46.5).all()  # lon/lat, not metres
    assert gdf["point_id"].is_unique and gdf["point_id"].str.fullmatch(r"P\d{6}").all()
    assert list(truth.columns[:8]) == ["point_id", "scene_id", "glacier_id", "true_class", "given_class", "noisy",
                                       "transition", "bad_row_reason"]
    assert (truth["point_id"] == gdf["point_id"]).all() and (truth["scene_id"] == gdf["scene_id"]).all()
    assert (truth["given_class"] == gdf["class"].fillna("")).all()
    fz = summary["facies"]
    good = _good(truth)
    assert fz["n_points"] == len(good) and fz["n_bad_rows"] == len(truth) - len(good) == 5
    assert fz["points_true_per_class"] == {c: int((good["true_class"] == c).sum()) for c in FZ.CLASSES}
    smb = pd.read_csv(root / "inputs" / "facies" / "smb.csv")
    assert list(smb.columns) == ["glacier_id", "year", "annual_balance"] and fz["n_smb_rows"] == len(smb) > 0
    # per usable scene (no SLC-off gaps) about points_per_scene points
    per_scene = good.groupby("scene_id").size()
    n = demo.PRESETS["tiny"]["facies"]["points_per_scene"]
    assert per_scene.max() <= n + FZ.MIN_PER_CLASS * len(FZ.CLASSES) and per_scene.median() >= n / 3


def test_good_points_inside_their_glacier_in_catalog_scenes(region, points, landsat_ids):
    root, _ = region
    gdf, truth = points
    inv = gpd.read_file(root / "inputs" / "inventory.gpkg", layer="glaciers")
    good = gdf[(truth["bad_row_reason"] == "").to_numpy()].to_crs(inv.crs)
    j = gpd.sjoin(good, inv[["glac_id", "geometry"]], predicate="within", how="left")
    assert j.index.is_unique and j["glac_id"].notna().all()
    assert (j["glac_id"] == j["glacier_id"]).all()
    assert set(good["scene_id"]) <= landsat_ids
    assert set(good["class"]) <= set(FZ.CLASSES)


def test_true_class_is_the_recomputed_truth(region, points, world):
    root, _ = region
    gdf, truth = points
    W, scenes = world
    lab30 = FZ.glacier_pixels30(W)
    good = _good(truth)
    xy = gdf.loc[good.index].to_crs(demo.CRS)
    rows, cols = _pixel(W, xy.geometry.x, xy.geometry.y)
    for sid, idx in good.groupby("scene_id").groups.items():
        tr = FZ.facies_truth(W, scenes[sid], lab30)
        cls = tr["cls"]
        with rasterio.open(root / "truth" / "facies" / f"{sid}.tif") as ds:
            assert (ds.read(1) == cls).all(), sid
        # the recomputed clouds are the rendered ones (QA_PIXEL: cloud bit = opacity >= 0.4, shadow bit = cloud
        # shadow > 0.35 outside clouds), so the cloud / cloud-shadow draws were reproduced exactly
        with rasterio.open(root / "inputs" / "landsat" / sid / "QA_PIXEL.tif") as ds:
            qa = ds.read(1)
        lab = (cls >= 1) & (cls <= 8)
        assert ((cls == FZ.CODE["cloud"]) == ((qa & L.QA_CLOUD) > 0))[lab].all(), sid
        cloud_shadow = (cls == FZ.CODE["shadow"]) & (tr["lit"] >= 0.5)
        assert ((qa & L.QA_SHADOW) > 0)[cloud_shadow].all(), sid
        pos = good.index.get_indexer(idx)
        got = cls[rows[pos], cols[pos]]
        assert [FZ.CLASSES[c - 1] for c in got] == list(good.loc[idx, "true_class"]), sid


def test_points_windows_inside_the_scene_and_free_of_fill(region, points, world):
    root, _ = region
    gdf, truth = points
    W, _ = world
    good = _good(truth)
    xy = gdf.loc[good.index].to_crs(demo.CRS)
    rows, cols = _pixel(W, xy.geometry.x, xy.geometry.y)
    r = FZ.WINDOW // 2
    for sid, idx in good.groupby("scene_id").groups.items():
        with rasterio.open(root / "inputs" / "landsat" / sid / "QA_PIXEL.tif") as ds:
            fill = (ds.read(1) & L.QA_FILL) > 0
        for p in good.index.get_indexer(idx):
            a, b = rows[p], cols[p]
            assert r <= a < fill.shape[0] - r and r <= b < fill.shape[1] - r
            assert not fill[a - r:a + r + 1, b - r:b + r + 1].any()


def test_class_mix(points, world):
    _, truth = points
    good = _good(truth)
    n = len(good)
    counts = good["true_class"].value_counts()
    W, scenes = world
    lab30 = FZ.glacier_pixels30(W)
    available = set()
    for sc in scenes.values():
        cls = FZ.facies_truth(W, sc, lab30)["cls"]
        ok = FZ.window_ok(cls == FZ.FILL)
        available |= {FZ.CLASSES[c - 1] for c in np.unique(cls[ok & (cls >= 1) & (cls <= 8)])}
    assert set(counts.index) == available  # every class a scene offers is sampled
    assert {"ice", "snow", "debris", "firn", "refrozen", "shadow", "cloud"} <= available
    assert counts["ice"] == counts.max() and counts["ice"] / n < 0.5
    assert counts["refrozen"] / n < 0.1 and counts["cloud"] / n < 0.03 and counts.get("water", 0) / n < 0.03
    # elevation: debris on the tongues below ice, firn above ice
    W, _ = world
    xy = gpd.GeoSeries(gpd.points_from_xy(truth["x_32632"], truth["y_32632"]))
    rows, cols = _pixel(W, xy.x, xy.y)
    z = pd.Series(np.where(truth["bad_row_reason"] == "", W.z30[np.clip(rows, 0, W.h30 - 1),
                                                                 np.clip(cols, 0, W.w30 - 1)], np.nan))
    med = z[good.index].groupby(good["true_class"]).median()
    assert med["debris"] < med["ice"] < med["firn"] and med["ice"] < med["snow"]


def test_label_noise(points, world):
    _, truth = points
    W, scenes = world
    good = _good(truth)
    assert (good["noisy"] == (good["given_class"] != good["true_class"])).all()
    fac = good[good["true_class"].isin(FZ.FACIES)]
    other = good[~good["true_class"].isin(FZ.FACIES)]
    assert 0.10 <= fac["noisy"].mean() <= 0.20
    noisy = fac[fac["noisy"]]
    assert noisy["transition"].mean() > 0.6
    assert noisy["given_class"].isin(FZ.FACIES).all()
    assert not other["noisy"].any() and (other["given_class"] == other["true_class"]).all()
    # transitions are what the truth says: another facies class in the 3 x 3 neighbourhood
    lab30 = FZ.glacier_pixels30(W)
    rows, cols = _pixel(W, fac["x_32632"], fac["y_32632"])
    codes = [FZ.CODE[c] for c in FZ.FACIES]
    for sid, idx in fac.groupby("scene_id").groups.items():
        cls = FZ.facies_truth(W, scenes[sid], lab30)["cls"]
        for p in fac.index.get_indexer(idx):
            win = cls[rows[p] - 1:rows[p] + 2, cols[p] - 1:cols[p] + 2]
            own = cls[rows[p], cols[p]]
            has = bool(np.isin(win, [k for k in codes if k != own]).any())
            assert has == bool(fac["transition"].iloc[p])
            if fac["noisy"].iloc[p] and fac["transition"].iloc[p]:
                assert FZ.CODE[fac["given_class"].iloc[p]] in win  # the neighbouring class


def test_bad_rows_have_their_defect(region, points, landsat_ids):
    root, _ = region
    gdf, truth = points
    bad = truth[truth["bad_row_reason"] != ""]
    assert sorted(bad["bad_row_reason"]) == sorted(FZ.BAD_REASONS)
    by = {r: gdf.loc[i] for i, r in bad["bad_row_reason"].items()}
    known = set(FZ.CLASSES)
    assert by["unknown_class"]["class"] == "slush"
    assert by["missing_class"]["class"] is None or pd.isna(by["missing_class"]["class"])
    assert by["unknown_scene"]["scene_id"] not in landsat_ids
    assert by["unknown_scene"]["scene_id"].startswith(("LT05_L2SP_", "LE07_L2SP_", "LC08_L2SP_", "LC09_L2SP_"))
    inv = gpd.read_file(root / "inputs" / "inventory.gpkg", layer="glaciers")
    out = gpd.GeoSeries([by["outside_glacier"].geometry], crs=4326).to_crs(inv.crs).iloc[0]
    assert not inv.geometry.intersects(out).any() and inv.geometry.distance(out).min() > 100
    dup = by["duplicate"]
    same = gdf[(gdf.geometry.x == dup.geometry.x) & (gdf.geometry.y == dup.geometry.y)
               & (gdf["scene_id"] == dup["scene_id"]) & (gdf["class"] == dup["class"])]
    assert len(same) == 2
    # every other defect is the only one: known class, scene in catalog, inside a glacier
    for reason in ("unknown_class", "missing_class", "duplicate", "outside_glacier"):
        assert by[reason]["scene_id"] in landsat_ids, reason
    for reason in ("unknown_scene", "duplicate", "outside_glacier"):
        assert by[reason]["class"] in known, reason
    for reason in ("unknown_class", "missing_class", "unknown_scene", "duplicate"):
        p = gpd.GeoSeries([by[reason].geometry], crs=4326).to_crs(inv.crs).iloc[0]
        assert inv.geometry.contains(p).sum() == 1, reason
    # without the bad rows no two rows share coordinates, scene and class
    good = gdf[(truth["bad_row_reason"] == "").to_numpy()]
    assert not good.assign(x=good.geometry.x, y=good.geometry.y).duplicated(["x", "y", "scene_id", "class"]).any()


def test_smb_follows_the_planted_snowline(region):
    root, _ = region
    smb = pd.read_csv(root / "inputs" / "facies" / "smb.csv")
    tr = pd.read_csv(root / "truth" / "smb.csv")
    areas = pd.read_csv(root / "truth" / "areas.csv").set_index("glac_id")
    ls = pd.read_csv(root / "truth" / "landsat_scenes.csv")
    assert (smb[["glacier_id", "year"]].to_numpy() == tr[["glacier_id", "year"]].to_numpy()).all()
    assert not smb.duplicated(["glacier_id", "year"]).any()
    # the glaciers large enough, every Landsat year
    big = set(areas.index[areas["area_t0_km2"] >= demo.PRESETS["tiny"]["facies"]["smb_min_area_km2"]])
    assert set(smb["glacier_id"]) == big and set(smb["year"]) == set(ls["year"])
    # the year's snow line: the highest of its scenes within 20 days of 20 August, <= 50 % cloud target and without
    # SLC-off gaps (else with gaps, else of those in the window, else of all)
    ls["near"] = (pd.to_datetime(ls["date"]) - pd.to_datetime(ls["year"].astype(str) + "-08-20")).dt.days.abs() <= 20
    for y, grp in ls.groupby("year"):
        ok = grp["near"] & (grp["cloud_target"] <= 0.5)
        pick = next(g for g in (grp[ok & ~grp["slc_off"]], grp[ok], grp[grp["near"]], grp) if len(g))
        top = pick.loc[pick["snowline_m"].idxmax()]
        ty = tr[tr["year"] == y]
        assert (ty["snowline_scene_id"] == top["item_id"]).all() and np.allclose(
            ty["snowline_regional_m"], top["snowline_m"], atol=0.06), y
    for col in ("zmin_m", "zmax_m"):  # the truth's elevations (both rounded to 0.1 m)
        assert np.allclose(tr[col], areas.loc[tr["glacier_id"], col], atol=0.15), col
    x = -(tr["snowline_glacier_m"] - tr["zmid_m"]) / (tr["zmax_m"] - tr["zmin_m"])
    assert np.corrcoef(x, smb["annual_balance"])[0, 1] > 0.9
    assert smb["annual_balance"].between(-3.6, 1.7).all()
    resid = smb["annual_balance"] - tr["annual_balance_true"]
    assert 0.05 < resid.std() < 0.3 and abs(resid.mean()) < 0.15


def test_earlier_outputs_unchanged(region, tmp_path_factory, monkeypatch):
    """Every file a generation without the facies entry writes is byte-identical here (the facies draws from its
    own RNG stages and nothing else); the only extra files are the facies ones."""
    root, _ = region
    spec = {k: v for k, v in demo.PRESETS["tiny"].items() if k != "facies"}
    monkeypatch.setitem(demo.PRESETS, "tiny", spec)  # same name: the catalog's description names the preset
    ref = tmp_path_factory.mktemp("nofacies") / "r"
    summary = demo.generate(ref, seed=0, preset="tiny")
    assert "facies" not in summary

    def files(d: Path):
        return {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file() and p.name != ".complete"}

    have, before = files(root), files(ref)
    assert before <= have
    assert all(f.startswith(NEW_FILES) for f in have - before) and have - before
    for rel in sorted(before):
        assert hashlib.sha256((root / rel).read_bytes()).digest() == hashlib.sha256(
            (ref / rel).read_bytes()).digest(), rel
