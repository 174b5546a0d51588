"""Predicted glacier outlines: the calibrated ensemble-mean prediction of each test glacier, polygonised.

The mask polygonised is exactly the one whose pixel count is the mapped area in ``areas``: calibrated
ensemble mean mu >= 0.5 inside the glacier + 20 m buffer without the pixels of other glaciers
(``mask_buffer_20m`` of the cube). Before polygonising, connected ice patches (4-connected) smaller
than ``min_patch_px`` pixels are removed and enclosed holes smaller than ``min_hole_px`` pixels are
filled; both counts are kept as attributes, so that

    polygon_area_km2 = area_km2 + a_px * (filled_px - removed_px)

holds exactly (the polygons follow pixel edges; ``tests/test_outlines.py`` checks it). Polygons are
built in the cube CRS (``rasterio.features.shapes``, then a shapely union into one MultiPolygon per
glacier and epoch); ``polygon_area_km2`` is measured there. The GeoPackage holds every glacier in one
CRS (``outlines.crs``): ``auto`` keeps the cube CRS when all cubes share it and otherwise uses the first
cube's CRS, any other value (``EPSG:4326`` ...) is used as given. ``polygon_area_km2`` is always the
area in the cube's own (projected) CRS, never in the output CRS.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from glaciermap.io import STATUS_SKIPPED, GlacierInputError, atomic_path, read_record

log = logging.getLogger("glaciermap.area_change.outlines")

LAYER = "outlines"
COLUMNS = ("glac_id", "epoch", "date", "fold", "status", "area_km2", "area_lb_km2", "area_ub_km2", "tau",
           "polygon_area_km2", "n_polygons", "removed_px", "filled_px", "pixel_area_m2", "cube_crs")


def remove_specks(mask, min_patch_px: int, min_hole_px: int = 0) -> tuple[np.ndarray, int, int]:
    """(cleaned mask, pixels removed, pixels filled).

    Ice patches (4-connected) with fewer than ``min_patch_px`` pixels are removed; background patches
    not touching the array border (holes) with fewer than ``min_hole_px`` pixels are filled. Holes are
    judged on the mask after the specks are removed. 0 or 1 disables either step.
    """
    from scipy import ndimage

    m = np.asarray(mask, dtype=bool).copy()
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    removed = filled = 0
    if min_patch_px > 1 and m.any():
        lab, n = ndimage.label(m)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        small = sizes < int(min_patch_px)
        small[0] = False
        drop = small[lab]
        removed = int(drop.sum())
        m[drop] = False
    if min_hole_px > 1 and (~m).any():
        lab, n = ndimage.label(~m)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        small = sizes < int(min_hole_px)
        small[0] = False
        small[border] = False
        fill = small[lab]
        filled = int(fill.sum())
        m[fill] = True
    return m, removed, filled


def polygonise(mask, transform):
    """MultiPolygon (shapely) of the True pixels of ``mask`` on the grid ``transform``; empty when none."""
    from rasterio import features
    from shapely import make_valid, unary_union
    from shapely.geometry import MultiPolygon, Polygon, shape

    m = np.asarray(mask, dtype=np.uint8)
    polys = [shape(g) for g, v in features.shapes(m, mask=m.astype(bool), transform=transform, connectivity=4) if v == 1]
    if not polys:
        return MultiPolygon()
    geom = make_valid(unary_union(polys))
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    if isinstance(geom, MultiPolygon):
        return geom
    # a GeometryCollection after make_valid: keep its polygonal parts
    parts = []
    for g in getattr(geom, "geoms", []):
        if isinstance(g, Polygon):
            parts.append(g)
        elif isinstance(g, MultiPolygon):
            parts.extend(g.geoms)
    return MultiPolygon(parts)


def glacier_outline(mu, buffer20, transform, min_patch_px: int, min_hole_px: int = 0) -> dict:
    """Outline of one glacier and epoch: geometry, raster and polygon counts (areas in pixels)."""
    mu = np.asarray(mu, dtype=np.float64)
    pred = (mu >= 0.5) & np.asarray(buffer20, dtype=bool)  # NaN >= 0.5 is False
    clean, removed, filled = remove_specks(pred, min_patch_px, min_hole_px)
    geom = polygonise(clean, transform)
    return {"geometry": geom, "raster_px": int(pred.sum()), "clean_px": int(clean.sum()), "removed_px": removed,
            "filled_px": filled, "n_polygons": len(geom.geoms)}


def _read_prediction(pred_path, glacier: str):
    """(member probabilities, transform, crs) of a prediction file; None for a skip record (h5py reads)."""
    from glaciermap.data.georef import read_grid

    rec = _read(pred_path, "prob", glacier, "prediction file")
    if rec is None:
        return None
    try:
        grid = read_grid(pred_path)
    except (OSError, ValueError) as e:
        raise GlacierInputError(glacier, pred_path, f"cannot read the prediction file: {e}") from e
    if grid.crs is None:
        raise GlacierInputError(glacier, pred_path, "prediction file has no CRS (spatial_ref)")
    return rec[0]["prob"].astype(np.float64), grid.transform, grid.crs


def _read(path, name: str, glacier: str, what: str):
    """``read_record(path, [name])`` (None for a skip record); a missing variable or an unreadable file is a
    GlacierInputError naming the glacier, the file and what is wrong."""
    try:
        return read_record(path, [name])
    except KeyError as e:
        raise GlacierInputError(glacier, path, f"{what} has no '{name}' variable") from e
    except (OSError, ValueError) as e:
        raise GlacierInputError(glacier, path, f"cannot read the {what}: {e}") from e


def _read_masks(cube_path, glacier: str) -> dict | None:
    """20 m buffer mask and image date of a cube (None for a skip record)."""
    rec = _read(cube_path, "mask_buffer_20m", glacier, "cube")
    if rec is None:
        return None
    values, attrs = rec
    return {"buffer20": values["mask_buffer_20m"].astype(bool), "date": str(attrs.get("date", ""))[:10]}


def outline_table(keys, pred_paths, cube_paths, calib_jsons, areas_csv, min_patch_px: int, min_hole_px: int = 0,
                  crs: str = "auto"):
    """GeoDataFrame of predicted outlines, one row per (glacier, epoch) of ``keys`` (see module docstring)."""
    import geopandas as gpd
    from shapely.geometry import MultiPolygon

    from glaciermap.results import calibrated_stats, fold_temperatures

    temps = fold_temperatures(calib_jsons)
    areas = pd.read_csv(areas_csv, dtype={"glac_id": str, "epoch": str}).set_index(["glac_id", "epoch"])
    rows, geoms, crss = [], [], []
    for (g, e), pp, cp in zip(keys, pred_paths, cube_paths, strict=True):
        if (g, e) not in areas.index:
            raise GlacierInputError(g, areas_csv, f"no row for epoch {e} in the area table")
        a = areas.loc[(g, e)]
        fold = int(a["fold"])
        base = {"glac_id": g, "epoch": e, "fold": fold, "status": str(a.get("status", "ok"))}
        pred = _read_prediction(pp, g)
        masks = _read_masks(cp, g)
        if pred is None or masks is None or base["status"] != "ok":
            rows.append({**base, "status": STATUS_SKIPPED})
            geoms.append(None)
            crss.append(None)
            continue
        probs, transform, cube_crs = pred
        if probs.shape[1:] != masks["buffer20"].shape:
            raise GlacierInputError(g, pp, f"prediction grid {probs.shape[1:]} differs from the cube grid "
                                           f"{masks['buffer20'].shape} of {cp}")
        if fold not in temps:
            raise GlacierInputError(g, areas_csv, f"fold {fold} has no calibration file among the inputs")
        mu, _ = calibrated_stats(probs, temps[fold])
        out = glacier_outline(mu, masks["buffer20"], transform, min_patch_px, min_hole_px)
        a_px = abs(transform.a * transform.e)
        rows.append({**base, "date": masks["date"], "area_km2": float(a["area_pred_km2"]),
                     "area_lb_km2": float(a["area_lb_km2"]), "area_ub_km2": float(a["area_ub_km2"]),
                     "tau": float(a["tau"]), "polygon_area_km2": out["geometry"].area / 1e6,
                     "n_polygons": out["n_polygons"], "removed_px": out["removed_px"], "filled_px": out["filled_px"],
                     "pixel_area_m2": a_px, "cube_crs": cube_crs.to_string()})
        geoms.append(out["geometry"])
        crss.append(cube_crs)
    from pyproj import CRS

    known = [c for c in crss if c is not None]
    if crs == "auto":
        target = CRS.from_user_input(known[0] if known else "EPSG:4326")
    else:
        try:
            target = CRS.from_user_input(crs)
        except Exception as e:  # pyproj.exceptions.CRSError
            raise ValueError(f"outlines.crs: {crs!r} is not a CRS pyproj understands ({e})") from e
    parts = []
    for geom, c in zip(geoms, crss):
        if geom is not None and CRS.from_user_input(c) != target:
            geom = gpd.GeoSeries([geom], crs=c).to_crs(target).iloc[0]
        parts.append(geom)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    gdf = gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(parts, crs=target), crs=target)
    gdf["geometry"] = gdf.geometry.apply(lambda x: x if x is None or isinstance(x, MultiPolygon) else MultiPolygon([x]))
    return gdf


def write_outlines(gdf, out_path) -> None:
    """GeoPackage (layer ``outlines``), written atomically."""
    with atomic_path(out_path) as tmp:
        gdf.to_file(tmp, layer=LAYER, driver="GPKG", engine="pyogrio")


def run_outlines(keys, pred_paths, cube_paths, calib_jsons, areas_csv, o: dict, out_path):
    """What the ``outlines`` rule runs: build the table and write the GeoPackage (``o``: the `outlines` settings)."""
    gdf = outline_table(keys, pred_paths, cube_paths, calib_jsons, areas_csv, int(o["min_patch_px"]),
                        int(o["min_hole_px"]), str(o["crs"]))
    write_outlines(gdf, out_path)
    ok = gdf["status"] == "ok"
    log.info("%d outline(s) written (%d skipped), %d speck pixel(s) removed, %d hole pixel(s) filled, CRS %s",
             int(ok.sum()), int((~ok).sum()), int(gdf.loc[ok, "removed_px"].sum()), int(gdf.loc[ok, "filled_px"].sum()),
             gdf.crs.to_string() if gdf.crs is not None else None)
    return gdf
