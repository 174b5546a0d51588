"""Glacier inventory: read any vector file, check every outline, and write the manifest.

Every glacier gets a ``qc_status``: ``ok`` (mapped), ``small`` (below ``min_area_km2``: not mapped,
enters regional totals by extrapolation) or ``skipped`` (bad outline or date; ``qc_reason`` says why).
Only ``ok`` glaciers get per-glacier jobs.

Dates are parsed explicitly, never by letting pandas guess the order of day and month from the data.
Accepted forms (``parse_inventory_date``):

- ``YYYYMMDD``, the RGI/GLIMS form, where ``99`` marks an unknown month or day (``20030799``);
- ISO ``YYYY-MM-DD``, also with a time (``2015-08-20T10:20:31``, ``2015-08-20 10:20``; the time is dropped);
- ``YYYY-MM`` and ``YYYY``;
- date and datetime values of the column itself (GeoPackage DATE/DATETIME fields, timestamps).

``-9999999``, ``-999`` (RGI's no-data values) and empty values mean that the date is unknown: the
glacier is skipped with that reason. Any other form is rejected with a reason naming the accepted
forms (``03/04/2015`` is 3 April or 4 March depending on the convention), unless ``inventory.date_format``
gives an explicit ``strptime`` format, which is then used for every text value. An unknown day becomes
the 15th of the month; an unknown month becomes the middle of the melt season of the glacier's
hemisphere, 15 August in the north and 15 February in the south (by the sign of ``cenlat``). The
manifest column ``date_precision`` (``day``, ``month`` or ``year``) says which dates were imputed
(``month``: day imputed; ``year``: month and day imputed); ``date`` is always ``YYYY-MM-DD``.

Invalid outlines (self-intersecting or self-touching rings, as in many RGI files) are repaired with
shapely's ``make_valid``, keeping only its polygonal parts, when that changes the area by less than
``inventory.repair_max_area_change`` (relative, default 1 %; 0 turns repair off). The area of the
invalid original is measured as the absolute shoelace area of each exterior ring minus the absolute
shoelace areas of its holes, summed over the polygons (``shoelace_area``; for a valid outline it equals
the usual area, for a bow-tie the two lobes cancel), both in the glacier's metric working CRS. A
repaired outline has ``repaired`` True in the manifest and a WARNING in the log naming the glacier, the
file and the area change; its fingerprint and the written outline are those of the repaired geometry.
Beyond the tolerance the glacier is skipped with a reason stating both areas.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from pathlib import Path
from typing import NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from shapely import wkb as shapely_wkb
from shapely.geometry import MultiPolygon, Polygon

from glaciermap.data.grid import utm_crs_for
from glaciermap.io import write_csv_atomic, write_gpkg_atomic

log = logging.getLogger("glaciermap.data.inventory")

SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
MANIFEST_COLUMNS = ["glac_id", "qc_status", "qc_reason", "area_km2", "date", "cenlon", "cenlat", "crs",
                    "xmin", "ymin", "xmax", "ymax", "fingerprint", "date_precision", "repaired"]

DATE_FORMS = ("YYYYMMDD (RGI/GLIMS, 99 = unknown month or day), YYYY-MM-DD (optionally with a time), "
              "YYYY-MM, YYYY, or a date/datetime field")
_UNKNOWN_DATE = re.compile(r"^(|-9{3,}|nan|nat|none|null)$", re.IGNORECASE)
_YYYYMMDD = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_ISO_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")
_ISO_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")
MID_SEASON = {"north": (8, 15), "south": (2, 15)}  # unknown month: middle of the hemisphere's melt season
MID_MONTH_DAY = 15                                   # unknown day


class InventoryError(ValueError):
    """The inventory as a whole cannot be used (missing file, missing column)."""


class ParsedDate(NamedTuple):
    """``date`` (YYYY-MM-DD, None when not parsed), ``precision`` (day/month/year, '' when not parsed), ``reason``."""

    date: str | None
    precision: str
    reason: str


def _is_missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _complete(year: int, month: int | None, day: int | None, lat: float) -> tuple[dt.date, str]:
    """Fill an unknown day (15th) or month (mid-season of the hemisphere of latitude ``lat``)."""
    if month is None:
        m, d = MID_SEASON["south" if lat < 0 else "north"]
        return dt.date(year, m, d), "year"
    if day is None:
        return dt.date(year, month, MID_MONTH_DAY), "month"
    return dt.date(year, month, day), "day"


def _format_precision(fmt: str) -> str:
    if any(d in fmt for d in ("%d", "%j", "%x", "%c")):
        return "day"
    if any(d in fmt for d in ("%m", "%b", "%B")):
        return "month"
    return "year"


def parse_inventory_date(value, lat: float = 0.0, date_format: str | None = None) -> ParsedDate:
    """Parse one inventory date (forms in the module docstring); ``lat`` decides an unknown month's season.

    Never guesses: a value in none of the forms gives ``date=None`` and a reason naming the accepted forms.
    With ``date_format`` (a ``strptime`` format) every text value must match that format instead.
    """
    if isinstance(value, (dt.date, np.datetime64)) and not _is_missing(value):  # datetime, Timestamp, date
        return ParsedDate(pd.Timestamp(value).strftime("%Y-%m-%d"), "day", "")
    if _is_missing(value):
        return ParsedDate(None, "", "no date (empty value)")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)  # a numeric YYYYMMDD field read as float
    s = str(value).strip()
    if _UNKNOWN_DATE.match(s):
        return ParsedDate(None, "", f"no date ('{s}' marks an unknown date)")
    try:
        if date_format:
            try:
                t = dt.datetime.strptime(s, date_format)
            except ValueError:
                return ParsedDate(None, "", f"date '{s}' does not match inventory.date_format '{date_format}'")
            prec = _format_precision(date_format)
            d, prec = _complete(t.year, t.month if prec != "year" else None, t.day if prec == "day" else None, lat)
            return ParsedDate(d.isoformat(), prec, "")
        if m := _YYYYMMDD.match(s):
            y, mo, da = map(int, m.groups())
            d, prec = _complete(y, None if mo == 99 else mo, None if da == 99 else da, lat)
        elif m := _ISO_DAY.match(s):
            dt.datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)  # validates the time too
            d, prec = _complete(*map(int, m.groups()[:3]), lat)
        elif m := _ISO_MONTH.match(s):
            d, prec = _complete(int(m[1]), int(m[2]), None, lat)
        elif m := _YEAR.match(s):
            d, prec = _complete(int(m[1]), None, None, lat)
        else:
            return ParsedDate(None, "", f"unparsable date '{s}': accepted forms are {DATE_FORMS}; "
                                        "set inventory.date_format (e.g. '%d/%m/%Y') for another form")
    except ValueError as e:
        return ParsedDate(None, "", f"invalid date '{s}' ({e})")
    return ParsedDate(d.isoformat(), prec, "")


def _ring_area(coords) -> float:
    """Signed shoelace area of a ring (coordinates centred first for precision with large UTM values)."""
    xy = np.asarray(coords, dtype=float)[:, :2]
    if len(xy) < 3:
        return 0.0
    x = xy[:, 0] - xy[:, 0].mean()
    y = xy[:, 1] - xy[:, 1].mean()
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def shoelace_area(geom) -> float:
    """Sum over polygons of |shoelace(exterior)| - sum |shoelace(hole)|: defined for invalid rings too.

    For a valid (multi)polygon this is its area; a bow-tie's two lobes have opposite signs and cancel.
    """
    if geom is None or geom.is_empty:
        return 0.0
    polys = list(geom.geoms) if geom.geom_type == "MultiPolygon" else [geom]
    return sum(abs(_ring_area(p.exterior.coords)) - sum(abs(_ring_area(r.coords)) for r in p.interiors)
               for p in polys)


def _polygonal(geom):
    """The polygonal parts of ``make_valid``'s result as one (multi)polygon (lines and points dropped)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon") and not g.is_empty]
    if not parts:
        return Polygon()
    out = shapely.union_all(parts)
    return out if out.geom_type in ("Polygon", "MultiPolygon") else MultiPolygon()


def repair_outline(geom, crs, area_crs: str | None, max_area_change: float) -> tuple[object, float, float, bool]:
    """Repair an invalid outline: (repaired geometry, original area km2, repaired area km2, accepted).

    Areas by ``shoelace_area`` in ``area_crs`` (a metric CRS; None = in ``crs`` itself, assumed metric);
    ``accepted`` when the relative change is below ``max_area_change`` and the result is a valid polygon.
    """
    fixed = _polygonal(shapely.make_valid(geom))
    pair = gpd.GeoSeries([geom, fixed], crs=crs)
    if area_crs:
        pair = pair.to_crs(area_crs)
    a0, a1 = shoelace_area(pair.iat[0]) / 1e6, shoelace_area(pair.iat[1]) / 1e6
    change = abs(a1 - a0) / a0 if a0 > 0 else np.inf
    ok = (not fixed.is_empty) and fixed.is_valid and change < max_area_change
    return fixed, a0, a1, ok


def missing_inventory_message(path) -> str:
    """What to say about an inventory file that does not exist (the demo's: how to generate it)."""
    hint = " (the demo region is generated by `make demo`)" if "resources/demo" in str(path) else ""
    return f"inventory file {path} does not exist{hint}"


def read_inventory(path: str | Path, layer: str | None = None) -> gpd.GeoDataFrame:
    path = Path(path)
    if not path.exists():
        raise InventoryError(missing_inventory_message(path))
    try:
        gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
    except Exception as e:  # GDAL says precisely what is wrong; keep its words
        raise InventoryError(f"cannot read inventory {path}: {e}") from e
    if gdf.crs is None:
        raise InventoryError(f"inventory {path} has no CRS; set one (e.g. with ogr2ogr -a_srs)")
    return gdf


def check_inventory(gdf: gpd.GeoDataFrame, path: str | Path, id_column: str, date_column: str,
                    min_area_km2: float, crs: str = "auto", date_format: str | None = None,
                    repair_max_area_change: float = 0.01) -> gpd.GeoDataFrame:
    """Return the inventory in EPSG:4326 with manifest columns; problems become per-glacier skips."""
    for col in (id_column, date_column):
        if col not in gdf.columns:
            raise InventoryError(f"inventory {path} has no column '{col}' (columns: {', '.join(map(str, gdf.columns))})")
    out = gpd.GeoDataFrame(
        {"glac_id": gdf[id_column].astype(str).str.strip()},
        geometry=gdf.geometry.values, crs=gdf.crs,
    )
    raw_dates = list(gdf[date_column].astype(object))
    out["row"] = np.arange(len(out)) + 1
    status = np.array(["ok"] * len(out), dtype=object)
    reason = np.array([""] * len(out), dtype=object)
    repaired = np.zeros(len(out), dtype=bool)

    def skip(mask, why):
        for i in np.flatnonzero(mask & (status == "ok")):
            status[i] = "skipped"
            reason[i] = why(i)
            log.error("glacier %s: %s (file: %s)", out["glac_id"].iat[i], reason[i], path)

    geoms = out.geometry
    skip(np.asarray(geoms.isna() | geoms.is_empty), lambda i: f"empty geometry in row {out['row'].iat[i]}")
    poly = np.asarray(geoms.geom_type.isin(["Polygon", "MultiPolygon"]))
    skip(~poly, lambda i: f"geometry in row {out['row'].iat[i]} is {geoms.iat[i].geom_type}, not a polygon")
    invalid = np.flatnonzero(~np.asarray(geoms.is_valid) & (status == "ok"))
    if len(invalid):
        # areas of the invalid outlines in the metric CRS of their bounding-box centre (or the configured CRS)
        ll_box = gpd.GeoSeries(geoms.iloc[invalid].envelope.values, crs=out.crs).to_crs("EPSG:4326").bounds
        new_geoms = list(geoms.values)
        for i, (_, b) in zip(invalid, ll_box.iterrows()):
            g, row, gid = geoms.iat[i], out["row"].iat[i], out["glac_id"].iat[i]
            area_crs = utm_crs_for((b.minx + b.maxx) / 2, (b.miny + b.maxy) / 2) if crs == "auto" else crs
            why = _invalid_reason(g)
            fixed, a0, a1, ok = repair_outline(g, out.crs, area_crs, repair_max_area_change)
            change = (a1 - a0) / a0 if a0 > 0 else np.inf
            if ok:
                new_geoms[i] = fixed
                repaired[i] = True
                log.warning("glacier %s: invalid outline in row %d (%s) repaired with make_valid; area %.6f -> %.6f km2 "
                            "(%+.4f %%) (file: %s)", gid, row, why, a0, a1, round(100 * change, 4) + 0.0, path)
            else:
                what = (f"make_valid gives no valid polygon (original area {a0:.6f} km2)" if not fixed.is_valid else
                        f"make_valid changes the area from {a0:.6f} km2 to {a1:.6f} km2 ("
                        + (f"{100 * change:+.2f} %" if np.isfinite(change) else "infinite relative")
                        + f" change), not below inventory.repair_max_area_change ({100 * repair_max_area_change:g} %)")
                msg = f"invalid geometry in row {row}: {why}; not repaired: {what}"
                skip(np.arange(len(out)) == i, lambda _, msg=msg: msg)
        out["geometry"] = gpd.GeoSeries(new_geoms, index=out.index, crs=out.crs)
        geoms = out.geometry
    ids = out["glac_id"]
    bad_id = ~ids.map(lambda s: bool(SAFE_ID.match(s))).to_numpy()
    skip(bad_id, lambda i: f"glacier id '{ids.iat[i]}' in row {out['row'].iat[i]} has characters other than letters, digits, '._-'")
    dup = ids.duplicated(keep=False).to_numpy()
    rows_of = out.groupby("glac_id")["row"].apply(lambda r: ", ".join(map(str, r)))
    skip(dup, lambda i: f"duplicate glacier id '{ids.iat[i]}' in rows {rows_of[ids.iat[i]]}; ids must be unique")

    # Areas and centroids in a metric CRS, whatever CRS the file is in.
    ll = out.to_crs("EPSG:4326")
    ok_geom = ~(np.asarray(geoms.isna() | geoms.is_empty))
    cen = ll.geometry.where(ok_geom).representative_point()
    out["cenlon"] = cen.x.to_numpy()
    out["cenlat"] = cen.y.to_numpy()

    # Dates: explicit forms only; an unknown month takes the season of the glacier's hemisphere.
    parsed = [parse_inventory_date(v, lat, date_format) for v, lat in zip(raw_dates, out["cenlat"])]
    skip(np.array([p.date is None for p in parsed], dtype=bool),
         lambda i: f"{parsed[i].reason} (column '{date_column}', row {out['row'].iat[i]})")
    out["date"] = [p.date if p.date is not None else ("" if _is_missing(v) else str(v).strip())
                   for p, v in zip(parsed, raw_dates)]
    out["date_precision"] = [p.precision for p in parsed]
    n_month, n_year = (sum(p.precision == k for p in parsed) for k in ("month", "year"))
    if n_month or n_year:
        log.info("inventory %s: %d date(s) without a day set to the 15th of the month, %d without a month set to "
                 "mid-season (15 Aug north, 15 Feb south); see the manifest's date_precision", path, n_month, n_year)

    if crs == "auto":
        out["crs"] = [utm_crs_for(x, y) if np.isfinite(x) else "" for x, y in zip(out["cenlon"], out["cenlat"])]
    else:
        out["crs"] = crs
    area = np.full(len(out), np.nan)
    bounds = np.full((len(out), 4), np.nan)  # bounding box in the glacier's working CRS
    for c in set(out["crs"]) - {""}:
        sel = np.asarray(out["crs"] == c) & ok_geom
        proj = out[sel].to_crs(c)
        area[sel] = proj.area.to_numpy() / 1e6
        bounds[sel] = proj.bounds.to_numpy()
    out["area_km2"] = area
    out["xmin"], out["ymin"], out["xmax"], out["ymax"] = bounds.T
    small = (status == "ok") & (area < min_area_km2)
    status[small] = "small"
    reason[small] = [f"area {a:.4f} km2 below min_area_km2 {min_area_km2}" for a in area[small]]
    out["qc_status"] = status
    out["qc_reason"] = reason
    out["repaired"] = repaired
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
    return check_inventory(gdf, inv["path"], inv["id_column"], inv["date_column"], inv["min_area_km2"], cfg["grid"]["crs"],
                           date_format=inv.get("date_format"),
                           repair_max_area_change=inv.get("repair_max_area_change", 0.01))


def write_inventory(checked: gpd.GeoDataFrame, gpkg_path: str | Path, manifest_path: str | Path) -> None:
    write_gpkg_atomic(gpkg_path, checked, "glaciers")
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


#: columns of :func:`glacier_list` (also of the empty list used before the inventory file exists)
GLACIER_LIST_COLUMNS = ["glac_id", "qc_status", "qc_reason", "area_km2", "date", "cenlon", "cenlat", "crs", "xmin",
                        "ymin", "xmax", "ymax", "fingerprint", "date_precision", "repaired"]


def glacier_list(cfg: dict) -> pd.DataFrame:
    """Parse-time list of glaciers (id, status, fingerprint, date), read without building geometries twice."""
    return pd.DataFrame(prepare_inventory(cfg).drop(columns="geometry"))
