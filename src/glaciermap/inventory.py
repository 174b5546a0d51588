"""Glacier inventory: read any vector file, check every outline, and write the manifest.

Every glacier gets a ``qc_status``: ``ok`` (mapped), ``small`` (below ``min_area_km2``: not mapped,
enters regional totals by extrapolation) or ``skipped`` (bad outline; ``qc_reason`` says why).
Only ``ok`` glaciers get per-glacier jobs.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
from shapely import wkb as shapely_wkb

from .grid import utm_crs_for
from .io import atomic_path, write_csv_atomic

log = logging.getLogger("glaciermap.inventory")

SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
MANIFEST_COLUMNS = ["glac_id", "qc_status", "qc_reason", "area_km2", "date", "cenlon", "cenlat", "crs", "fingerprint"]


class InventoryError(ValueError):
    """The inventory as a whole cannot be used (missing file, missing column)."""


def read_inventory(path: str | Path, layer: str | None = None) -> gpd.GeoDataFrame:
    path = Path(path)
    if not path.exists():
        raise InventoryError(f"inventory file {path} does not exist")
    try:
        gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
    except Exception as e:  # GDAL says precisely what is wrong; keep its words
        raise InventoryError(f"cannot read inventory {path}: {e}") from e
    if gdf.crs is None:
        raise InventoryError(f"inventory {path} has no CRS; set one (e.g. with ogr2ogr -a_srs)")
    return gdf


def check_inventory(gdf: gpd.GeoDataFrame, path: str | Path, id_column: str, date_column: str,
                    min_area_km2: float, crs: str = "auto") -> gpd.GeoDataFrame:
    """Return the inventory in EPSG:4326 with manifest columns; problems become per-glacier skips."""
    for col in (id_column, date_column):
        if col not in gdf.columns:
            raise InventoryError(f"inventory {path} has no column '{col}' (columns: {', '.join(map(str, gdf.columns))})")
    out = gpd.GeoDataFrame(
        {"glac_id": gdf[id_column].astype(str).str.strip(), "date": gdf[date_column].astype(str)},
        geometry=gdf.geometry.values, crs=gdf.crs,
    )
    out["row"] = np.arange(len(out)) + 1
    status = np.array(["ok"] * len(out), dtype=object)
    reason = np.array([""] * len(out), dtype=object)

    def skip(mask, why):
        for i in np.flatnonzero(mask & (status == "ok")):
            status[i] = "skipped"
            reason[i] = why(i)
            log.error("glacier %s: %s (file: %s)", out["glac_id"].iat[i], reason[i], path)

    geoms = out.geometry
    skip(np.asarray(geoms.isna() | geoms.is_empty), lambda i: f"empty geometry in row {out['row'].iat[i]}")
    poly = np.asarray(geoms.geom_type.isin(["Polygon", "MultiPolygon"]))
    skip(~poly, lambda i: f"geometry in row {out['row'].iat[i]} is {geoms.iat[i].geom_type}, not a polygon")
    valid = np.asarray(geoms.is_valid)
    skip(~valid, lambda i: f"invalid geometry in row {out['row'].iat[i]}: {_invalid_reason(geoms.iat[i])}")
    ids = out["glac_id"]
    bad_id = ~ids.map(lambda s: bool(SAFE_ID.match(s))).to_numpy()
    skip(bad_id, lambda i: f"glacier id '{ids.iat[i]}' in row {out['row'].iat[i]} has characters other than letters, digits, '._-'")
    dup = ids.duplicated(keep=False).to_numpy()
    rows_of = out.groupby("glac_id")["row"].apply(lambda r: ", ".join(map(str, r)))
    skip(dup, lambda i: f"duplicate glacier id '{ids.iat[i]}' in rows {rows_of[ids.iat[i]]}; ids must be unique")
    dates = pd.to_datetime(out["date"], errors="coerce")
    skip(np.asarray(dates.isna()), lambda i: f"unparsable date '{out['date'].iat[i]}' in column '{date_column}'")

    # Areas and centroids in a metric CRS, whatever CRS the file is in.
    ll = out.to_crs("EPSG:4326")
    ok_geom = ~(np.asarray(geoms.isna() | geoms.is_empty))
    cen = ll.geometry.where(ok_geom).representative_point()
    out["cenlon"] = cen.x.to_numpy()
    out["cenlat"] = cen.y.to_numpy()
    if crs == "auto":
        out["crs"] = [utm_crs_for(x, y) if np.isfinite(x) else "" for x, y in zip(out["cenlon"], out["cenlat"])]
    else:
        out["crs"] = crs
    area = np.full(len(out), np.nan)
    for c in set(out["crs"]) - {""}:
        sel = np.asarray(out["crs"] == c) & ok_geom
        area[sel] = out[sel].to_crs(c).area.to_numpy() / 1e6
    out["area_km2"] = area
    small = (status == "ok") & (area < min_area_km2)
    status[small] = "small"
    reason[small] = [f"area {a:.4f} km2 below min_area_km2 {min_area_km2}" for a in area[small]]
    out["qc_status"] = status
    out["qc_reason"] = reason
    out["date"] = [d.strftime("%Y-%m-%d") if pd.notna(d) else s for d, s in zip(dates, out["date"])]
    out["fingerprint"] = [_fingerprint(g, d) for g, d in zip(out.geometry, out["date"])]
    out = ll.set_geometry(ll.geometry).assign(**{c: out[c].values for c in MANIFEST_COLUMNS if c != "glac_id"})
    return out[MANIFEST_COLUMNS + ["geometry"]]


def _invalid_reason(geom) -> str:
    from shapely.validation import explain_validity

    return explain_validity(geom)


def _fingerprint(geom, date: str) -> str:
    """Content hash of an outline and its date: a changed outline re-runs that glacier only."""
    h = hashlib.sha1(date.encode())
    if geom is not None:
        h.update(shapely_wkb.dumps(geom, hex=False, output_dimension=2))
    return h.hexdigest()[:16]


def prepare_inventory(cfg: dict) -> gpd.GeoDataFrame:
    inv = cfg["inventory"]
    gdf = read_inventory(inv["path"], inv.get("layer"))
    return check_inventory(gdf, inv["path"], inv["id_column"], inv["date_column"], inv["min_area_km2"], cfg["grid"]["crs"])


def write_inventory(checked: gpd.GeoDataFrame, gpkg_path: str | Path, manifest_path: str | Path) -> None:
    with atomic_path(gpkg_path) as tmp:
        checked.to_file(tmp, layer="glaciers", driver="GPKG", engine="pyogrio")
    write_csv_atomic(manifest_path, pd.DataFrame(checked.drop(columns="geometry")))


def read_glacier(gpkg_path: str | Path, glacier_id: str) -> gpd.GeoDataFrame:
    """One glacier's row of the checked inventory (EPSG:4326)."""
    gdf = gpd.read_file(gpkg_path, layer="glaciers", engine="pyogrio", where=f"glac_id = '{glacier_id}'")
    if len(gdf) != 1:
        raise KeyError(f"glacier {glacier_id} not found exactly once in {gpkg_path} ({len(gdf)} rows)")
    return gdf


def read_glaciers_in(gpkg_path: str | Path, bounds, crs: str) -> gpd.GeoDataFrame:
    """All usable outlines (status ok or small) intersecting ``bounds`` (given in ``crs``)."""
    from pyproj import Transformer

    t = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    left, bottom, right, top = t.transform_bounds(*bounds)
    gdf = gpd.read_file(gpkg_path, layer="glaciers", engine="pyogrio", bbox=(left, bottom, right, top))
    return gdf[gdf["qc_status"].isin(["ok", "small"])]


def glacier_list(cfg: dict) -> pd.DataFrame:
    """Parse-time list of glaciers (id, status, fingerprint, date), read without building geometries twice."""
    return pd.DataFrame(prepare_inventory(cfg).drop(columns="geometry"))
