"""Debris cover per glacier (glaciermap.debris.cover): areas, member spread, change, truth, skips and the GeoPackage,
on small synthetic cubes and K-class predictions written by the inference writer."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from scipy.ndimage import distance_transform_edt
from shapely.geometry import box

from glaciermap.data.features import cube_dataset, cube_encoding
from glaciermap.debris import cover
from glaciermap.io import skip_dataset, write_netcdf_atomic
from glaciermap.segmentation.infer import write_predictions

CRS = "EPSG:32632"
RES = 10.0
LEFT, TOP = 400000.0, 5100000.0
H, W = 30, 50
IDS = ["G1", "G2", "G3"]
COLS = {"G1": (5, 13), "G2": (21, 29), "G3": (37, 45)}
ROWS = (5, 22)
CLASSES = ["background", "clean_ice", "debris", "water"]
BG, CLEAN, DEBRIS = 0, 1, 2
T0, T1 = "inventory", "2023"
DATES = {T0: "2015-08-20", T1: "2023-08-25"}
TEMPS = {0: [1.0, 1.0, 1.0], 1: [2.0, 2.0, 2.0]}      # fold 0: G1, G3; fold 1: G2
FOLD = {"G1": 0, "G2": 1, "G3": 0}
A_KM2 = RES * RES / 1e6
CLOUD = np.zeros((H, W), bool)
CLOUD[19:24, 3:9] = True                               # over G1's tongue and its buffer, at t0 only
NAN_COL = 14                                           # a column of G1's buffer outside the predicted region


def labels():
    lab = np.full((H, W), -1, np.int32)
    for k, g in enumerate(IDS):
        lab[ROWS[0]:ROWS[1], COLS[g][0]:COLS[g][1]] = k
    return lab


def write_cube(path, g, epoch, cloud=None):
    lab = labels()
    own = lab == IDS.index(g)
    others = (lab >= 0) & ~own
    dist = distance_transform_edt(~own) * RES
    masks = {"mask_glacier_id": lab, "mask_glacier": own.astype(np.uint8),
             "mask_buffer_20m": ((dist <= 20) & ~others).astype(np.uint8),
             "mask_buffer_50m": ((dist <= 50) & ~others).astype(np.uint8),
             "mask_cloud": (np.zeros((H, W), bool) if cloud is None else cloud).astype(np.uint8),
             "mask_nodata": np.zeros((H, W), np.uint8)}
    x = LEFT + RES / 2 + RES * np.arange(W)
    y = TOP - RES / 2 - RES * np.arange(H)
    ds = cube_dataset({"dem": np.full((H, W), 3000.0, np.float32)}, masks, x, y, IDS, CRS,
                      Affine(RES, 0.0, LEFT, 0.0, -RES, TOP),
                      attrs={"glacier_id": g, "epoch": epoch, "status": "ok", "reason": "", "date": DATES[epoch]})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_netcdf_atomic(path, ds, cube_encoding(ds))
    return masks


def member_maps(g, epoch):
    """Each member's class per pixel [3, H, W]: clean ice above a debris tongue, background around; members
    disagree on where the tongue starts (and the tongue grows by t1)."""
    c0, c1 = COLS[g]
    start = {T0: 16, T1: 13}[epoch] + (1 if g == "G2" else 0)
    maps = np.full((3, H, W), BG, np.int64)
    for m, shift in enumerate((0, -1, -3)):          # member 1 a row more debris, member 2 three rows more
        maps[m, ROWS[0]:ROWS[1], c0:c1] = CLEAN
        maps[m, start + shift:ROWS[1], c0:c1] = DEBRIS
    maps[2, 0:3, c0:c1] = DEBRIS                     # member 2 also sees debris outside the glacier
    return maps


def member_probs(maps):
    """0.7 for the member's class, 0.1 for each other class."""
    p = np.full((3, len(CLASSES), H, W), 0.1, np.float32)
    for k in range(len(CLASSES)):
        p[:, k][maps == k] = 0.7
    return p


def tif(path, data, res, left, top):
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
                       dtype="uint8", crs=CRS, transform=Affine(res, 0, left, 0, -res, top)) as dst:
        dst.write(data.astype(np.uint8), 1)


def truth_debris(epoch):
    """Planted debris on the 10 m region grid: rows from 17 (t0) / 14 (t1) to the glacier end, every glacier."""
    t = np.zeros((H, W), bool)
    for g in IDS:
        t[{T0: 17, T1: 14}[epoch]:ROWS[1], COLS[g][0]:COLS[g][1]] = True
    return t


T1_OUTLINE_ROWS = (5, 20)      # the glaciers shrink by two rows by t1 (truth outlines)


@pytest.fixture
def region(tmp_path):
    R = tmp_path / "results" / "demo"
    cubes, masks = [], {}
    for g in IDS:
        for e in (T0, T1):
            p = R / "cubes" / g / f"{e}.nc"
            masks[(g, e)] = write_cube(p, g, e, CLOUD if e == T0 else None)
            cubes.append(str(p))
    pred_dirs, maps = [], {}
    for k in (0, 1):
        d = R / "models" / "debrisnet" / f"fold{k}"
        d.mkdir(parents=True)
        (d / "calibration.json").write_text(json.dumps({"fold": k, "temperatures": TEMPS[k], "classes": CLASSES}))
        for e in (T0, T1):
            pred_dirs.append(str(R / "predictions" / "debrisnet" / f"fold{k}" / e))
    for g in IDS:
        for e in (T0, T1):
            out = R / "predictions" / "debrisnet" / f"fold{FOLD[g]}" / e / f"{g}.nc"
            out.parent.mkdir(parents=True, exist_ok=True)
            cube = R / "cubes" / g / f"{e}.nc"
            if g == "G3" and e == T1:            # G3 could not be mapped at t1
                write_netcdf_atomic(out, skip_dataset(g, e, "no clear scene in the window", "select"))
                continue
            maps[(g, e)] = member_maps(g, e)
            p = member_probs(maps[(g, e)])
            if g == "G1":
                p[:, :, :, NAN_COL] = np.nan
            write_predictions(out, p, cube, classes=CLASSES)
    inv = gpd.GeoDataFrame({"glac_id": IDS}, geometry=[
        box(LEFT + RES * COLS[g][0], TOP - RES * ROWS[1], LEFT + RES * COLS[g][1], TOP - RES * ROWS[0]) for g in IDS],
        crs=CRS)
    inv_path = R / "inventory" / "glaciers.gpkg"
    inv_path.parent.mkdir(parents=True)
    inv.to_file(inv_path, layer="glaciers", driver="GPKG", engine="pyogrio")
    # planted truth at 2 m on an extent 20 m larger than the cubes' (reprojected by nearest onto each cube grid)
    truth = tmp_path / "truth"
    truth.mkdir()
    for name, e in (("debris_t0.tif", T0), ("debris_2023.tif", T1)):
        t10 = np.pad(truth_debris(e), 2)
        tif(truth / name, np.kron(t10, np.ones((5, 5), np.uint8)), 2.0, LEFT - 2 * RES, TOP + 2 * RES)
    out1 = gpd.GeoDataFrame({"glac_id": ["G1", "G2"]}, geometry=[  # G3's t1 outline is absent from the truth
        box(LEFT + RES * COLS[g][0], TOP - RES * T1_OUTLINE_ROWS[1], LEFT + RES * COLS[g][1],
            TOP - RES * T1_OUTLINE_ROWS[0]) for g in ("G1", "G2")], crs=CRS).to_crs("EPSG:4326")
    out1.to_file(truth / "outlines_2023.gpkg", layer="outlines", driver="GPKG", engine="pyogrio")
    calib = [str(R / "models" / "debrisnet" / f"fold{k}" / "calibration.json") for k in (0, 1)]
    outs = {k: str(R / "debris" / "debrisnet" / f) for k, f in
            (("csv", "cover.csv"), ("change", "cover_change.csv"), ("gpkg", "cover.gpkg"), ("json", "cover.json"))}
    return {"R": R, "cubes": cubes, "pred_dirs": pred_dirs, "calib": calib, "inv": str(inv_path), "truth": truth,
            "outs": outs, "maps": maps, "masks": masks}


def run(region, truth=True, **kw):
    return cover.run_cover_files(region["pred_dirs"], region["cubes"], region["calib"], region["inv"], CLASSES,
                                 "debris", "clean_ice", T0, T1, region["outs"],
                                 str(region["truth"]) if truth else "", "debrisnet", **kw)


def hand_region(region, g, e):
    m = region["masks"][(g, e)]
    sel = m["mask_buffer_50m"].astype(bool)            # cloud pixels count (their prediction), as the glacier areas
    if g == "G1":
        sel[:, NAN_COL] = False
    return sel


def scaled_p(T):
    """The calibrated probabilities of 0.7 / 0.1 at temperature T (softmax(log p / T))."""
    a, b = 0.7 ** (1 / T), 0.1 ** (1 / T)
    return a / (a + 3 * b), b / (a + 3 * b)


def test_areas_are_hand_counted_pixels_with_member_spread(region):
    tot = run(region, truth=False)
    df = pd.read_csv(region["outs"]["csv"], dtype={"epoch": str})
    assert not any(c.startswith("truth_") for c in df.columns)          # no truth dir: no truth columns
    for g, e in (("G1", T0), ("G1", T1), ("G2", T0), ("G2", T1), ("G3", T0)):
        row = df[(df["glac_id"] == g) & (df["epoch"] == e)].iloc[0]
        sel = hand_region(region, g, e)
        maps = region["maps"][(g, e)]
        votes = {c: (maps == c).sum(0) for c in (DEBRIS, CLEAN)}
        for kind, c in (("debris", DEBRIS), ("clean", CLEAN)):
            n = int(((votes[c] >= 2) & sel).sum())                          # majority of 3 = argmax of the mean
            assert row["status"] == "ok" and row[f"{kind}_km2"] == pytest.approx(n * A_KM2)
            member_n = [int(((maps[m] == c) & sel).sum()) for m in range(3)]
            assert len(set(member_n)) > 1 or kind == "clean"
            assert row[f"{kind}_sigma_km2"] == pytest.approx(np.std(member_n, ddof=1) * A_KM2)
            assert row[f"{kind}_member_min_km2"] == pytest.approx(min(member_n) * A_KM2)
            assert row[f"{kind}_member_max_km2"] == pytest.approx(max(member_n) * A_KM2)
            # expected area: sum of the calibrated mean probability (fold 1 at T = 2)
            hi, lo = scaled_p(TEMPS[FOLD[g]][0])
            pc = (votes[c] * hi + (3 - votes[c]) * lo) / 3
            assert row[f"{kind}_expected_km2"] == pytest.approx(pc[sel].sum() * A_KM2)
            sd = np.sqrt((pc[sel] * (1 - pc[sel])).sum()) * A_KM2
            assert row[f"{kind}_pb_sd_km2"] == pytest.approx(sd)
            assert row[f"{kind}_hi90_km2"] == pytest.approx(pc[sel].sum() * A_KM2 + 1.6448536 * sd)
        assert row["debris_fraction"] == pytest.approx(row["debris_km2"] / (row["debris_km2"] + row["clean_km2"]))
        buf = region["masks"][(g, e)]["mask_buffer_50m"].astype(bool)
        cloud = CLOUD if e == T0 else np.zeros_like(CLOUD)
        assert row["cloud_fraction"] == pytest.approx(cloud[buf].mean())
        assert row["date"] == DATES[e] and row["n_members"] == 3
    g1 = df[(df["glac_id"] == "G1") & (df["epoch"] == T0)].iloc[0]
    assert g1["cloud_fraction"] > 0 and g1["unpredicted_fraction"] > 0
    # member 2's debris outside the glacier (rows 0-2) is counted only where it lies in the buffer
    assert tot["n_glaciers"] == 2 and tot["debris_area_t0_km2"] == pytest.approx(
        df[(df["epoch"] == T0) & df["glac_id"].isin(["G1", "G2"])]["debris_km2"].sum())


def test_change_and_its_quadrature_sigma(region):
    tot = run(region, truth=False)
    cov = pd.read_csv(region["outs"]["csv"], dtype={"epoch": str}).set_index(["glac_id", "epoch"])
    ch = pd.read_csv(region["outs"]["change"]).set_index("glac_id")
    years = (pd.Timestamp(DATES[T1]) - pd.Timestamp(DATES[T0])).days / 365.25
    for g in ("G1", "G2"):
        a, b = cov.loc[(g, T0)], cov.loc[(g, T1)]
        r = ch.loc[g]
        assert r["status"] == "ok" and r["years"] == pytest.approx(years)
        assert r["d_debris_km2"] == pytest.approx(b["debris_km2"] - a["debris_km2"]) and r["d_debris_km2"] > 0
        assert r["d_clean_km2"] == pytest.approx(b["clean_km2"] - a["clean_km2"])
        assert r["d_debris_sigma_km2"] == pytest.approx(np.hypot(a["debris_sigma_km2"], b["debris_sigma_km2"]))
        assert r["d_debris_sigma_km2"] > max(a["debris_sigma_km2"], b["debris_sigma_km2"])
        assert r["d_debris_fraction_pct_points"] == pytest.approx(100 * (b["debris_fraction"] - a["debris_fraction"]))
        assert r["d_debris_fraction_sigma_pct_points"] == pytest.approx(
            100 * np.hypot(a["debris_fraction_sigma"], b["debris_fraction_sigma"]))
        assert r["d_debris_km2_per_year"] == pytest.approx(r["d_debris_km2"] / years)
        assert r["d_debris_sigma_km2_per_year"] == pytest.approx(r["d_debris_sigma_km2"] / years)
    ok = ch.loc[["G1", "G2"]]
    assert tot["d_debris_km2"] == pytest.approx(ok["d_debris_km2"].sum())
    assert tot["d_debris_sigma_quadrature_km2"] == pytest.approx(np.sqrt((ok["d_debris_sigma_km2"] ** 2).sum()))
    assert tot["d_debris_sigma_linear_km2"] == pytest.approx(ok["d_debris_sigma_km2"].sum())


def test_skipped_glacier_has_a_named_reason_and_the_others_carry_on(region):
    tot = run(region, truth=False)
    cov = pd.read_csv(region["outs"]["csv"], dtype={"epoch": str}, keep_default_na=False)
    g3 = cov[(cov["glac_id"] == "G3") & (cov["epoch"] == T1)].iloc[0]
    assert g3["status"] == "skipped" and "no clear scene in the window" in g3["reason"] and "select" in g3["reason"]
    assert g3["debris_km2"] == ""                                       # no zero: empty
    ch = pd.read_csv(region["outs"]["change"]).set_index("glac_id")
    assert ch.loc["G3", "status"] == "skipped" and "no clear scene" in ch.loc["G3", "reason"]
    assert np.isnan(ch.loc["G3", "d_debris_km2"]) and ch.loc["G3", "debris_km2_t0"] > 0
    assert (ch.loc[["G1", "G2"], "status"] == "ok").all()
    assert tot["n_glaciers"] == 2 and tot["n_skipped"] == 1
    assert tot["skipped"] == [{"glac_id": "G3", "epoch": T1, "reason": g3["reason"]}]
    # G3's t0 debris is not in the region totals (it has no t1): the totals compare the same glaciers
    assert tot["debris_area_t0_km2"] == pytest.approx(ch.loc[["G1", "G2"], "debris_km2_t0"].sum())


def test_truth_areas_on_a_planted_raster(region):
    tot = run(region)
    cov = pd.read_csv(region["outs"]["csv"], dtype={"epoch": str}).set_index(["glac_id", "epoch"])
    for g, e in (("G1", T0), ("G1", T1), ("G2", T0), ("G2", T1), ("G3", T0)):
        sel = hand_region(region, g, e)
        want = int((truth_debris(e) & sel).sum())
        assert want > 0 and cov.loc[(g, e), "truth_debris_km2"] == pytest.approx(want * A_KM2)
        pred = ((region["maps"][(g, e)] == DEBRIS).sum(0) >= 2) & sel          # the ensemble's debris (majority)
        tru = truth_debris(e) & sel
        assert cov.loc[(g, e), "truth_debris_inter_km2"] == pytest.approx((pred & tru).sum() * A_KM2)
        assert cov.loc[(g, e), "truth_debris_union_km2"] == pytest.approx((pred | tru).sum() * A_KM2)
        assert 0 < (pred & tru).sum() < (pred | tru).sum()
    # truth ice: the outline at t0, the (rasterised, reprojected) truth outline at t1
    sel = hand_region(region, "G1", T0)
    ice0 = region["masks"][("G1", T0)]["mask_glacier"].astype(bool) & sel
    assert cov.loc[("G1", T0), "truth_debris_fraction"] == pytest.approx((truth_debris(T0) & ice0).sum() / ice0.sum())
    ice1 = np.zeros((H, W), bool)
    ice1[T1_OUTLINE_ROWS[0]:T1_OUTLINE_ROWS[1], COLS["G2"][0]:COLS["G2"][1]] = True
    ice1 &= hand_region(region, "G2", T1)
    assert cov.loc[("G2", T1), "truth_debris_fraction"] == pytest.approx((truth_debris(T1) & ice1).sum() / ice1.sum())
    ch = pd.read_csv(region["outs"]["change"]).set_index("glac_id").loc[["G1", "G2"]]
    assert tot["truth_debris_area_t0_km2"] == pytest.approx(ch["truth_debris_km2_t0"].sum())
    assert tot["truth_debris_area_t1_km2"] == pytest.approx(ch["truth_debris_km2_t1"].sum())
    rows0 = cov.loc[[("G1", T0), ("G2", T0)]]
    assert tot["debris_iou_truth_t0"] == pytest.approx(rows0["truth_debris_inter_km2"].sum()
                                                       / rows0["truth_debris_union_km2"].sum())
    assert 0 < tot["debris_iou_truth_t0"] < 1
    ev = tot["truth_evaluation"]
    err = ch["debris_km2_t0"] - ch["truth_debris_km2_t0"]
    assert ev["t0"]["sum_error_km2"] == pytest.approx(err.sum())
    assert ev["t0"]["mae_km2"] == pytest.approx(err.abs().mean())
    assert ev["t0"]["n"] == 2 and ev["t0"]["spearman_debris_fraction"] is None     # fewer than 3 glaciers
    d_truth = (ch["truth_debris_km2_t1"] - ch["truth_debris_km2_t0"]).to_numpy()
    assert (d_truth > 0).all() and ch["truth_d_debris_km2"].to_numpy() == pytest.approx(d_truth)
    assert json.loads(open(region["outs"]["json"]).read())["truth"][T1].endswith("debris_2023.tif")


def test_geopackage_opens_with_the_inventory_polygons_and_cover_columns(region):
    run(region)
    gdf = gpd.read_file(region["outs"]["gpkg"], layer=cover.LAYER)
    assert sorted(gdf["glac_id"]) == IDS and gdf.crs.to_epsg() == 32632
    for c in ("status", "reason", "debris_km2_t0", "debris_km2_t1", "clean_km2_t0", "clean_km2_t1", "d_debris_km2",
              "d_debris_sigma_km2", "d_debris_fraction_pct_points", "truth_debris_km2_t0", "date_t1"):
        assert c in gdf.columns, c
    g1 = gdf.set_index("glac_id").loc["G1"]
    assert g1.geometry.area == pytest.approx((COLS["G1"][1] - COLS["G1"][0]) * (ROWS[1] - ROWS[0]) * RES * RES)
    ch = pd.read_csv(region["outs"]["change"]).set_index("glac_id")
    assert g1["d_debris_km2"] == pytest.approx(ch.loc["G1", "d_debris_km2"])
    assert gdf.set_index("glac_id").loc["G3", "status"] == "skipped"


def test_settings_and_predictions_are_checked(region, tmp_path):
    with pytest.raises(ValueError, match="'rubble' is not among"):
        cover.run_cover_files(region["pred_dirs"], region["cubes"], region["calib"], region["inv"], CLASSES,
                              "rubble", "clean_ice", T0, T1, region["outs"], "", "debrisnet")
    with pytest.raises(ValueError, match="has classes"):
        cover.run_cover_files(region["pred_dirs"], region["cubes"], region["calib"], region["inv"],
                              ["background", "clean_ice", "debris", "lake"], "debris", "clean_ice", T0, T1,
                              region["outs"], "", "debrisnet")
    with pytest.raises(FileNotFoundError, match="debris truth"):
        cover.run_cover_files(region["pred_dirs"], region["cubes"], region["calib"], region["inv"], CLASSES,
                              "debris", "clean_ice", T0, T1, region["outs"], str(tmp_path / "nowhere"), "debrisnet")
    assert not (region["R"] / "debris").exists()                       # nothing half-written


def test_one_epoch_region_has_no_change(region):
    tot = cover.run_cover_files(region["pred_dirs"], [c for c in region["cubes"] if c.endswith(f"{T0}.nc")],
                                region["calib"], region["inv"], CLASSES, "debris", "clean_ice", T0, T0,
                                region["outs"], "", "debrisnet")
    ch = pd.read_csv(region["outs"]["change"])
    assert (ch["status"] == "ok").all() and ch["d_debris_km2"].isna().all() and "change" in tot
    assert tot["n_glaciers"] == 3 and tot["debris_area_t0_km2"] == tot["debris_area_t1_km2"] > 0
