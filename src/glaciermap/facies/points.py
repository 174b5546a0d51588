"""Labelled facies points: read, validate, assign glaciers and folds (rule ``points``).

The input (config ``facies.points``) is a GeoPackage of points in any CRS or a CSV with x / y columns in a stated
CRS, with one class name per point and the scene it was labelled on (a STAC item id of the facies source, or a date
that resolves to the one scene of that day). Every row that cannot be used is reported by name in
``points_rejected.csv`` (row number, point id, reason) and in the log, and dropped; nothing is dropped silently:

- missing or unknown class name;
- point outside every glacier outline of the inventory (or inside another glacier than its stated ``glacier_id``);
- scene id not in the catalog, or a date with no scene (or with several: the row names them);
- point outside its scene's footprint;
- duplicate (same scene and the same pixel of the facies grid as an earlier row; a conflicting class is named).

A table that carries a value for every channel of the feature set (pixel features, e.g. exported from Google Earth
Engine) needs no scenes: its rows are checked for classes, glaciers and duplicates only, and ``samples`` turns them
into single-pixel samples.

Folds: the glaciers with points are dealt to ``folds`` groups, largest point count first, each to the group with the
fewest points so far (seeded tie-break): every fold holds whole glaciers (the paper's glacier folds), and the folds'
point counts stay close. Each test fold is validated on the fold before it (``train.fold_roles``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from glaciermap.io import write_csv_atomic, write_gpkg_atomic, write_json_atomic

log = logging.getLogger("glaciermap.facies.points")

FEATURE_SETS = {
    "optical": [],
    "optical_terrain": ["elevation_norm", "slope"],
    "optical_terrain_illumination": ["elevation_norm", "slope", "cast_shadow", "hillshade"],
    "full": ["elevation_norm", "slope", "cast_shadow", "hillshade", "outline_distance"],
}


def feature_channels(bands, feature_set: str) -> list[str]:
    """The channel names of one of the paper's 4 feature sets: the reflectance bands, then the terrain layers."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"facies.feature_set: unknown '{feature_set}' (choose from {', '.join(FEATURE_SETS)})")
    return list(bands) + FEATURE_SETS[feature_set]


class PointsInputError(ValueError):
    """The points file as a whole cannot be used (unreadable, no class column, nothing left)."""


def read_points_table(spec: dict) -> gpd.GeoDataFrame:
    """The points file as a GeoDataFrame with its own CRS (CSV: x / y columns in ``spec['crs']``)."""
    path = Path(spec["path"])
    if not path.exists():
        raise PointsInputError(f"facies points {path}: file does not exist")
    try:
        if path.suffix.lower() == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
            for c in (spec["x_column"], spec["y_column"]):
                if c not in df.columns:
                    raise PointsInputError(f"facies points {path}: no column '{c}' (columns: {', '.join(df.columns)})")
            xy = df[[spec["x_column"], spec["y_column"]]].apply(pd.to_numeric, errors="coerce")
            bad = xy.isna().any(axis=1)
            gdf = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(xy.iloc[:, 0], xy.iloc[:, 1]), crs=spec["crs"])
            gdf.loc[bad, "geometry"] = None
        else:
            gdf = gpd.read_file(path, layer=spec.get("layer"))
    except PointsInputError:
        raise
    except Exception as e:  # noqa: BLE001 - fiona/pyogrio/pandas raise many types; the message names the file
        raise PointsInputError(f"facies points {path}: cannot be read ({type(e).__name__}: {e})") from e
    if gdf.crs is None:
        raise PointsInputError(f"facies points {path}: the layer has no CRS")
    if spec["class_column"] not in gdf.columns:
        raise PointsInputError(f"facies points {path}: no class column '{spec['class_column']}' "
                               f"(columns: {', '.join(c for c in gdf.columns if c != 'geometry')})")
    return gdf.reset_index(drop=True)


def _text(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    return str(v).strip()


def working_crs(glaciers: gpd.GeoDataFrame) -> str:
    """The projected CRS the facies steps work in: the inventory's per-glacier ``crs`` column (the cube grids' CRS,
    most common value), else the UTM zone of the glaciers."""
    if "crs" in glaciers.columns and glaciers["crs"].notna().any():
        return str(glaciers["crs"].mode().iloc[0])
    if glaciers.crs is not None and glaciers.crs.is_projected:
        return str(glaciers.crs)
    return str(glaciers.estimate_utm_crs())


def read_glaciers(inventory_gpkg) -> gpd.GeoDataFrame:
    """The inventory outlines in the facies working CRS (:func:`working_crs`)."""
    g = gpd.read_file(inventory_gpkg)
    if "qc_status" in g.columns:
        g = g[g["qc_status"] == "ok"]
    return g.to_crs(working_crs(g)).reset_index(drop=True)


def assign_folds(counts: pd.Series, n_folds: int, seed: int = 0) -> dict:
    """{glacier: fold} dealing glaciers (largest point count first) to the fold with the fewest points."""
    if len(counts) < n_folds:
        raise PointsInputError(f"facies.folds: {n_folds} glacier folds need at least {n_folds} glaciers with points; "
                               f"the points lie on {len(counts)} ({', '.join(map(str, counts.index))})")
    rng = np.random.default_rng(seed)
    order = sorted(counts.index, key=lambda g: (-int(counts[g]), rng.random()))
    load = np.zeros(n_folds, int)
    out = {}
    for g in order:
        k = int(np.argmin(load + rng.random(n_folds) * 1e-3))
        out[g] = k
        load[k] += int(counts[g])
    return out


def validate_points(gdf: gpd.GeoDataFrame, spec: dict, classes, glaciers: gpd.GeoDataFrame, scenes: dict | None,
                    resolution: float) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """(accepted points in the glaciers' CRS, rejected rows with reasons).

    ``glaciers``: the inventory (``glac_id``, polygons); ``scenes``: {item id: (date 'YYYY-MM-DD', footprint
    polygon in lon/lat)} of the catalog (None = pixel-feature table, no scenes).
    """
    rejected = []
    n = len(gdf)
    ids = [(_text(v) or f"P{i:06d}") for i, v in enumerate(gdf[spec["id_column"]] if spec["id_column"] in gdf.columns
                                                            else [None] * n)]
    cls = [_text(v) for v in gdf[spec["class_column"]]]
    keep = np.ones(n, bool)

    def reject(i, reason):
        if keep[i]:
            keep[i] = False
            rejected.append({"row": i + 1, "point_id": ids[i], "reason": reason})

    dup_ids = pd.Series(ids)[pd.Series(ids).duplicated()]
    for i in dup_ids.index:
        reject(int(i), f"point id '{ids[i]}' used by an earlier row")
    known = set(classes)
    for i, c in enumerate(cls):
        if not c:
            reject(i, "no class")
        elif c not in known:
            reject(i, f"unknown class '{c}' (classes: {', '.join(classes)})")
    geom = gdf.geometry
    for i in np.flatnonzero(geom.isna().to_numpy() | geom.is_empty.to_numpy()):
        reject(int(i), "no coordinates")
    pts = gdf.to_crs(glaciers.crs)
    xy = np.array([(p.x, p.y) if p is not None and not p.is_empty else (np.nan, np.nan) for p in pts.geometry])
    # scenes
    scene_ids = [""] * n
    dates = [""] * n
    if scenes is not None:
        by_date = {}
        for sid, (d, _) in scenes.items():
            by_date.setdefault(d, []).append(sid)
        sc_col = spec["scene_column"] if spec["scene_column"] in gdf.columns else None
        dt_col = spec["date_column"] if spec["date_column"] in gdf.columns else None
        lonlat = gdf.to_crs("EPSG:4326").geometry
        for i in range(n):
            if not keep[i]:
                continue
            sid = _text(gdf[sc_col].iloc[i]) if sc_col else ""
            if sid:
                if sid not in scenes:
                    reject(i, f"scene '{sid}' is not in the catalog of the facies source")
                    continue
            else:
                d = _text(gdf[dt_col].iloc[i])[:10] if dt_col else ""
                if not d:
                    reject(i, "neither a scene id nor a date")
                    continue
                hits = by_date.get(d, [])
                hits = [s for s in hits if scenes[s][1] is None or scenes[s][1].contains(lonlat.iloc[i])]
                if len(hits) != 1:
                    reject(i, f"date {d}: {'no scene' if not hits else 'several scenes (' + ', '.join(sorted(hits)) + ')'}"
                              " of the facies source covers the point")
                    continue
                sid = hits[0]
            fp = scenes[sid][1]
            if fp is not None and not fp.contains(lonlat.iloc[i]):
                reject(i, f"outside the footprint of scene '{sid}'")
                continue
            scene_ids[i], dates[i] = sid, scenes[sid][0]
    # glaciers
    ok = np.flatnonzero(keep)
    sub = gpd.GeoDataFrame({"i": ok}, geometry=pts.geometry.iloc[ok].to_numpy(), crs=glaciers.crs)
    joined = gpd.sjoin(sub, glaciers[["glac_id", "geometry"]], how="left", predicate="within")
    inside = joined.groupby("i")["glac_id"].agg(lambda s: [v for v in s if isinstance(v, str)])
    gl_col = spec["glacier_column"] if spec["glacier_column"] in gdf.columns else None
    glacier_of = [""] * n
    for i in ok:
        hits = inside.get(i, [])
        stated = _text(gdf[gl_col].iloc[i]) if gl_col else ""
        if not hits:
            reject(int(i), f"outside every glacier outline of the inventory (stated glacier: {stated or 'none'})")
        elif stated and stated not in hits:
            reject(int(i), f"stated glacier '{stated}' but the point lies in {', '.join(hits)}")
        else:
            glacier_of[i] = stated or hits[0]
    # duplicates: same scene and facies-grid pixel
    px = np.floor(xy / resolution)
    seen = {}
    for i in np.flatnonzero(keep):
        key = (scene_ids[i], int(px[i, 0]), int(px[i, 1]))
        if key in seen:
            j = seen[key]
            what = "duplicate of" if cls[i] == cls[j] else f"conflicting class '{cls[i]}' vs '{cls[j]}' of"
            reject(int(i), f"{what} point '{ids[j]}' (same scene and {resolution:g} m pixel)")
        else:
            seen[key] = i
    ok = np.flatnonzero(keep)
    out = gpd.GeoDataFrame({
        "point_id": [ids[i] for i in ok], "class": [cls[i] for i in ok], "scene_id": [scene_ids[i] for i in ok],
        "date": [dates[i] for i in ok], "glacier_id": [glacier_of[i] for i in ok],
        "x": xy[ok, 0], "y": xy[ok, 1]}, geometry=pts.geometry.iloc[ok].to_numpy(), crs=glaciers.crs)
    extra = [c for c in gdf.columns if c not in ("geometry",)]
    for c in extra:
        if c not in out.columns and c not in (spec["class_column"], spec["id_column"]):
            out[c] = gdf[c].iloc[ok].to_numpy()
    rej = pd.DataFrame(rejected, columns=["row", "point_id", "reason"]).sort_values("row")
    return out, rej


def catalog_scenes(source, glaciers: gpd.GeoDataFrame, dates) -> dict:
    """{item id: (date, footprint)} of the facies source's items over the glaciers, on the points' dates (+-1 day)."""
    from shapely.geometry import shape

    b = glaciers.to_crs("EPSG:4326").total_bounds
    days = sorted({str(d)[:10] for d in dates if str(d)[:4].isdigit()})
    out = {}
    start, end = (days[0], days[-1]) if days else ("1970-01-01", "2100-12-31")
    for it in source.search(tuple(float(v) for v in b), start, end):
        out[it.id] = (it.datetime.date().isoformat() if it.datetime else "",
                      shape(it.geometry) if it.geometry else None)
    return out


def run_points(spec: dict, inventory_gpkg, source_cfg: dict | None, source_name: str, classes, channels,
               n_folds: int, seed: int, resolution: float, out_gpkg, out_rejected, out_json) -> dict:
    """Validate the points file and write the accepted points (with glacier and fold), the rejected rows, counts."""
    gdf = read_points_table(spec)
    glaciers = read_glaciers(inventory_gpkg)
    pixel_mode = all(c in gdf.columns for c in channels)
    if pixel_mode:
        scenes = None
        log.info("facies points %s: a value for every channel (%s): pixel features, no scenes read",
                 spec["path"], ", ".join(channels))
    else:
        from glaciermap.data.sources import build_source

        source = build_source(source_name, source_cfg)
        # every item of the source over the glaciers (one search: ids and dates are then looked up locally)
        scenes = catalog_scenes(source, glaciers, [])
    out, rej = validate_points(gdf, spec, classes, glaciers, scenes, resolution)
    for r in rej.itertuples():
        log.warning("facies points %s row %d (point %s) dropped: %s", spec["path"], r.row, r.point_id, r.reason)
    if out.empty:
        raise PointsInputError(f"facies points {spec['path']}: no usable point ({len(rej)} rejected, "
                               f"see {out_rejected})")
    counts = out.groupby("glacier_id").size()
    folds = assign_folds(counts, n_folds, seed)
    out["fold"] = out["glacier_id"].map(folds).astype(int)
    write_csv_atomic(out_rejected, rej)
    write_gpkg_atomic(out_gpkg, out, layer="points")
    summary = {
        "path": str(spec["path"]), "mode": "pixels" if pixel_mode else "scenes", "n_rows": int(len(gdf)),
        "n_points": int(len(out)), "n_rejected": int(len(rej)),
        "rejected_by_reason": {k: int(v) for k, v in rej["reason"].str.split(r"[:(']", regex=True).str[0]
                               .str.strip().value_counts().items()},
        "per_class": {c: int((out["class"] == c).sum()) for c in classes},
        "n_glaciers": int(out["glacier_id"].nunique()), "n_scenes": int(out["scene_id"].nunique()),
        "per_fold": {int(k): int(v) for k, v in out.groupby("fold").size().items()},
        "glaciers_per_fold": {int(k): int(v) for k, v in out.groupby("fold")["glacier_id"].nunique().items()},
    }
    write_json_atomic(out_json, summary)
    log.info("facies points: %d of %d rows kept on %d glaciers, %d scenes", summary["n_points"], summary["n_rows"],
             summary["n_glaciers"], summary["n_scenes"])
    return summary


def read_points(path) -> gpd.GeoDataFrame:
    return gpd.read_file(path, layer="points")
