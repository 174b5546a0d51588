"""Raster channels from sources of the registry: velocity (per-year mosaics, read for the scene's year) and InSAR
coherence on the tiny demo region, through acquire -> select -> features as the workflow runs them."""

import numpy as np
import pytest
import yaml

from conftest import REPO
from glaciermap.data.acquire import acquire
from glaciermap.config import validate_config
from glaciermap.data.features import write_cube
from glaciermap.data.inventory import prepare_inventory, write_inventory
from glaciermap.io import read_status
from glaciermap.data.netcdf import read_layers
from glaciermap.data.select import select_image


@pytest.fixture(scope="module")
def chosen(tiny_region, tmp_path_factory):
    out = tmp_path_factory.mktemp("raster_channels")
    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg = validate_config({"inventory": {"path": str(tiny_region / "inputs/inventory.gpkg")},
                           "stac": {"source": str(tiny_region / "inputs/catalog/catalog.json")},
                           "grid": {"patch_size": 64}, **{k: demo[k] for k in ("dem", "dhdt", "epochs")}})
    checked = prepare_inventory(cfg)
    write_inventory(checked, out / "glaciers.gpkg", out / "manifest.csv")
    gid = checked.sort_values("area_km2").query("qc_status == 'ok'")["glac_id"].iloc[-1]
    acquire(gid, "2023", cfg, str(out / "glaciers.gpkg"), str(out / "scenes.nc"))
    select_image(gid, "2023", str(out / "scenes.nc"), str(out / "glaciers.gpkg"), cfg["selection"], str(out / "sel.csv"))
    return out, gid


def _sources(region, years):
    vel = {"kind": "raster_per_year", "units": "m/yr",
           "paths": {str(y): {"vx": str(region / f"inputs/velocity/velocity_{y}_vx.tif"),
                              "vy": str(region / f"inputs/velocity/velocity_{y}_vy.tif")} for y in years}}
    coh = {"kind": "raster", "path": str(region / "inputs/coherence/coherence_2023.tif"), "coverage": "any"}
    return {"velocity": {"name": "velocity", "config": vel}, "coherence": {"name": "coherence", "config": coh}}


def test_velocity_and_coherence_channels_hold_the_planted_signals(chosen, tiny_region):
    out, gid = chosen
    nc = out / "cube.nc"
    st = write_cube(out / "scenes.nc", out / "sel.csv", out / "glaciers.gpkg", gid, "2023", None, None, {}, nc,
                    layers=["B04", "velocity", "coherence"], sources=_sources(tiny_region, [2015, 2023]))
    assert st["status"] == "ok", st
    stack, v, _ = read_layers(nc, ["velocity", "coherence"], ["mask_glacier", "mask_glacier_id"])
    (vel, coh), ice = stack, v["mask_glacier"].astype(bool)
    off = v["mask_glacier_id"] == -1
    # the layer is the scene year's (2023) mosaic, read through the source registry on the cube grid
    from glaciermap.data.scenes import read_scenes
    from glaciermap.data.sources import build_source

    grid = read_scenes(out / "scenes.nc", ["blue"]).grid
    src = build_source("velocity", _sources(tiny_region, [2015, 2023])["velocity"]["config"])
    by_year = {y: src.read(grid, ["vx", "vy"], when=str(y)) for y in (2015, 2023)}
    v23 = np.hypot(by_year[2023].bands["vx"], by_year[2023].bands["vy"])
    v15 = np.hypot(by_year[2015].bands["vx"], by_year[2015].bands["vy"])
    np.testing.assert_allclose(vel, v23, rtol=1e-6, equal_nan=True)
    assert np.nanmax(np.abs(v23 - v15)) > 0.5  # the two years differ, so the year was chosen
    # the demo plants flow on every glacier (1.5-6 m/yr on debris tongues) and ~0 plus noise off the ice (the 120 m
    # mosaic bilinear onto 10 m smears the margins: measured 3.3 on / 1.9 m/yr off for this glacier, 2026-11-30);
    # coherence low on ice (0.1-0.3 planted at 90 m), high on stable ground: measured 0.38 on / 0.69 off
    assert np.nanmedian(vel[ice]) > np.nanmedian(vel[off]) + 1.0
    assert np.nanmedian(coh[ice]) + 0.2 < np.nanmedian(coh[off])


def test_a_year_without_a_velocity_mosaic_skips_the_glacier_naming_source_and_year(chosen, tiny_region):
    out, gid = chosen
    nc = out / "cube_noyear.nc"
    st = write_cube(out / "scenes.nc", out / "sel.csv", out / "glaciers.gpkg", gid, "2023", None, None, {}, nc,
                    layers=["B04", "velocity"], sources=_sources(tiny_region, [2015]))
    assert st["status"] == "skipped"
    assert read_status(nc)["status"] == "skipped"
    assert f"glacier {gid}" in st["reason"] and "velocity" in st["reason"] and "2023" in st["reason"]
