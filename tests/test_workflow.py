"""End to end: the real Snakefile on the tiny demo region, with broken inputs planted beside good ones."""

import json
import re
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
import yaml
from shapely.geometry import Polygon, box

from conftest import planned_jobs
from conftest import run_snakemake as _snakemake

REPO = Path(__file__).resolve().parents[1]


def _plant_faults(inputs: Path) -> dict:
    """Break the copied inputs in the ways real data breaks; return what was broken."""
    inv = gpd.read_file(inputs / "inventory.gpkg")
    inv = inv.sort_values("area_km2", ascending=False).reset_index(drop=True)
    biggest = inv.loc[0]
    x0, y0, x1, y1 = inv.total_bounds
    extra = gpd.GeoDataFrame(
        {"glac_id": ["BOWTIE", "TWIN", "TWIN", "FARAWAY"], "src_date": ["2015-08-20"] * 4,
         "area_km2": [1.0, 1.0, 1.0, 1.0]},
        geometry=[Polygon([(x0, y0), (x0 + 800, y0 + 800), (x0 + 800, y0), (x0, y0 + 800)]),
                  box(x0, y0, x0 + 600, y0 + 600), box(x0, y0 + 700, x0 + 600, y0 + 1300),
                  box(x1 + 60000, y0, x1 + 61000, y0 + 1000)],
        crs=inv.crs)
    allinv = pd.concat([inv, extra], ignore_index=True)
    # a different CRS than the imagery: must be reprojected, not rejected
    gpd.GeoDataFrame(allinv, crs=inv.crs).to_crs("EPSG:4326").to_file(inputs / "inventory.gpkg", layer="glaciers")

    # a corrupt (truncated) band file in the cloudiest 2023 scene, and a band missing from the
    # cloudiest inventory-year scene: both candidates are dropped, the clear scenes still win
    items = sorted((inputs / "catalog").rglob("*.json"))
    scenes = [(p, json.loads(p.read_text())) for p in items if "sentinel-2-l2a" in str(p) and p.name != "collection.json"]
    cloudiest = lambda year: max((s for s in scenes if s[1]["properties"]["datetime"].startswith(year)),
                                 key=lambda s: s[1]["properties"]["eo:cloud_cover"])
    p0, item0 = cloudiest("2023")
    b04 = (p0.parent / item0["assets"]["B04"]["href"]).resolve()
    data = b04.read_bytes()
    b04.write_bytes(data[: len(data) // 3])
    p1, item1 = cloudiest("2015")
    del item1["assets"]["B11"]
    p1.write_text(json.dumps(item1))

    # a large NaN hole in the DEM over the biggest glacier
    dem_path = next((inputs / "dem").glob("*.tif"))
    cen = biggest.geometry.representative_point()
    with rasterio.open(dem_path, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dem:
        r, c = dem.index(cen.x, cen.y)
        arr = dem.read(1)
        arr[max(r - 8, 0): r + 8, max(c - 8, 0): c + 8] = dem.nodata
        dem.write(arr, 1)
    return {"corrupt_file": str(b04), "corrupt_item": item0["id"], "no_b11_item": item1["id"],
            "dem_hole_glacier": biggest["glac_id"]}


@pytest.fixture(scope="module")
def run(tiny_region, tmp_path_factory):
    work = tmp_path_factory.mktemp("wf")
    shutil.copytree(tiny_region / "inputs", work / "inputs")
    faults = _plant_faults(work / "inputs")
    from conftest import _repoint

    # every demo input path (inventory, catalog, velocity, coherence, debris map) leads to the copy
    cfg = _repoint(yaml.safe_load((REPO / "config.yaml").read_text()), "resources/demo/inputs/", f"{work}/inputs/")
    cfg["region"] = "tiny"
    cfg["inventory"]["path"] = str(work / "inputs" / "inventory.gpkg")
    cfg["stac"]["source"] = str(work / "inputs" / "catalog" / "catalog.json")
    cfg["grid"]["patch_size"] = 64
    cfg["epochs"]["inventory"] = {"inventory_year": True, "start": "08-01", "end": "10-15", "dhdt": "2010-2014"}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = _snakemake(work, "--keep-going", "qc")  # the data half (tests/test_model_workflow.py runs the rest)
    return work, faults, proc


def test_run_succeeds_despite_broken_inputs(run):
    work, faults, proc = run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_qc_lists_every_skipped_glacier_with_reason(run):
    work, faults, _ = run
    skipped = pd.read_csv(work / "results/tiny/qc/skipped.csv")
    by = {(g, s) for g, s in zip(skipped["glacier_id"], skipped["step"])}
    assert ("BOWTIE", "inventory") in by and ("TWIN", "inventory") in by
    assert ("FARAWAY", "acquire") in by
    assert (faults["dem_hole_glacier"], "features") in by
    reasons = " ".join(skipped["reason"])
    assert "invalid geometry" in reasons and "duplicate glacier id 'TWIN'" in reasons
    assert "no scene" in reasons and "DEM has" in reasons
    summary = json.loads((work / "results/tiny/qc/summary.json").read_text())
    assert summary["n_glaciers_skipped"] == len(set(skipped["glacier_id"]))
    assert summary["n_glaciers_inventory"] == len(gpd.read_file(work / "inputs/inventory.gpkg"))


def test_good_glaciers_have_complete_cubes(run):
    work, faults, _ = run
    sel = pd.read_csv(work / "results/tiny/qc/selected_images.csv")
    skipped = pd.read_csv(work / "results/tiny/qc/skipped.csv")
    ok = sel[sel["status"] == "ok"]
    assert len(ok) >= 2
    # everything not listed as skipped is complete: no silent drops
    listed = set(zip(skipped["glacier_id"], skipped["epoch"]))
    assert set(zip(ok["glacier_id"], ok["epoch"])) == set(zip(sel["glacier_id"], sel["epoch"])) - listed
    for gid, epoch in zip(ok["glacier_id"], ok["epoch"]):
        with xr.open_dataset(work / f"results/tiny/cubes/{gid}/{epoch}.nc", engine="h5netcdf", decode_coords="all") as ds:
            assert ds.rio.crs.to_epsg() == 32632
            assert int(ds["mask_glacier"].sum()) > 0
            b = ds["layers"].sel(band="B04").values[ds["mask_glacier"].values.astype(bool)]
            assert np.nanmin(b) > 0 and np.nanmax(b) < 1.5
            assert ds.attrs["item_id"] == ok[(ok.glacier_id == gid) & (ok.epoch == epoch)]["item_id"].iat[0]


def test_broken_scene_files_are_dropped_and_named(run):
    work, faults, _ = run
    scenes = sorted((work / "results/tiny/scenes").glob("*/2023.nc")) + sorted((work / "results/tiny/scenes").glob("*/inventory.nc"))
    dropped = []
    for p in scenes:
        with xr.open_dataset(p, engine="h5netcdf") as ds:
            if ds.attrs.get("status") == "ok":
                dropped += json.loads(ds.attrs["dropped_items"])
                assert faults["corrupt_item"] not in list(ds["item_id"].values)
    reasons = " ".join(d["reason"] for d in dropped)
    assert faults["corrupt_file"] in reasons
    assert f"item {faults['no_b11_item']} lacks asset(s) B11" in reasons
    logs = " ".join(p.read_text() for p in (work / "results/tiny/logs/acquire").rglob("*.log"))
    assert faults["corrupt_file"] in logs and "glacier " in logs
    # the QC table and summary surface every dropped candidate, not only a NetCDF attribute
    table = pd.read_csv(work / "results/tiny/qc/dropped_candidates.csv", dtype=str)
    assert len(table) == len(dropped) and set(table["item_id"]) == {d["item_id"] for d in dropped}
    assert faults["corrupt_item"] in set(table["item_id"]) and faults["no_b11_item"] in set(table["item_id"])
    assert any(faults["corrupt_file"] in r for r in table["reason"])
    summary = json.loads((work / "results/tiny/qc/summary.json").read_text())
    assert summary["n_candidates_dropped"] == len(dropped)


def test_no_partial_files_and_rerun_is_a_no_op(run):
    work, _, _ = run
    assert not list((work / "results").rglob(".*.part*"))
    proc = _snakemake(work, "-n", "qc")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_workflow_is_lint_clean(run):
    work, _, _ = run
    proc = _snakemake(work, "--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_adding_a_glacier_plans_only_that_glacier(run, tmp_path):
    work, _, _ = run
    inv_path = work / "inputs" / "inventory.gpkg"
    inv = gpd.read_file(inv_path)
    backup = tmp_path / "inventory.gpkg"
    shutil.copy(inv_path, backup)
    try:
        ok = inv[inv["glac_id"].str.startswith("DEMO")].to_crs("EPSG:32632")
        x0, y0, x1, y1 = ok.total_bounds
        # a new glacier inside the imagery, in a corner of the region away from the others
        new = gpd.GeoDataFrame({"glac_id": ["NEW-1"], "src_date": ["2015-08-20"], "area_km2": [0.25]},
                               geometry=[box(x0 - 900, y0 - 900, x0 - 400, y0 - 400)], crs="EPSG:32632")
        pd.concat([inv, new.to_crs(inv.crs)], ignore_index=True).pipe(gpd.GeoDataFrame, crs=inv.crs).to_file(
            inv_path, layer="glaciers")
        proc = _snakemake(work, "-n", "qc")
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        jobs = planned_jobs(proc)
        per_glacier = {(r, w) for r, w in jobs if w and r != "file_list"}
        assert per_glacier == {(r, f"glacier=NEW-1, epoch={e}") for r in ("acquire", "cube")
                               for e in ("inventory", "2023")}
        # the region's lists that qc reads (scenes, selection tables and cubes of every glacier and epoch) gain it
        lists = {w.rsplit(", digest=", 1)[0] for r, w in jobs if r == "file_list"}
        assert lists == {f"kind={k}, epochs=2023+inventory, group=region, role=all, track=content"
                         for k in ("scenes", "selection", "cubes")}
        assert {r for r, w in jobs if not w} == {"inventory", "qc"}
    finally:
        shutil.copy(backup, inv_path)


def test_area_change_reads_only_the_split_glaciers(run):
    """FARAWAY (no scene covers its cube) is left out of the cross-validation split, so no fold predicts it: the rules
    that pair each cube with its test prediction (areas, outlines, compare) read the list of the split's glaciers,
    not the region's. With the region's, `areas` failed on FARAWAY's missing prediction and `compare` on its fold."""
    work, _, _ = run
    cfg_path = work / "config.yaml"
    saved = cfg_path.read_text()
    cfg = yaml.safe_load(saved)
    cfg["evaluation"].update(truth_dir=None, debris_map=None)  # the demo region's truth: not needed here
    cfg_path.write_text(yaml.safe_dump(cfg))
    try:
        _check_split_lists(work)
    finally:
        cfg_path.write_text(saved)


def _check_split_lists(work):
    proc = _snakemake(work, "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    uncovered = re.search(r"glaciermap: \d+ glacier\(s\) left out of the cross-validation split: .*\((.*)\)", out)
    assert uncovered and "FARAWAY" in uncovered.group(1).split(", ")
    lists, rules = set(), set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (areas|outlines|compare):", block.strip())
        if m:
            inputs = re.search(r"^\s+input: (.*)$", block, re.M).group(1).split(", ")
            cubes = [p for p in inputs if "/lists/cubes/" in p]
            assert len(cubes) == 1 and "/region_test.content." in cubes[0], (m.group(1), cubes)
            lists.add(cubes[0])
            rules.add(m.group(1))
    assert rules == {"areas", "outlines", "compare"}
    # areas and outlines take every epoch, compare t0 and t1: the same two epochs here, listed in two orders
    assert 1 <= len(lists) <= 2
    from glaciermap.data.file_list import read_file_lists

    made = _snakemake(work, *sorted(lists))
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    cubes = {d.name for d in (work / "results" / "tiny" / "cubes").iterdir() if d.is_dir()}
    assert "FARAWAY" in cubes
    for path in lists:
        listed = {Path(p).parent.name for p in read_file_lists([work / path])}
        assert listed == cubes - set(uncovered.group(1).split(", ")), path
