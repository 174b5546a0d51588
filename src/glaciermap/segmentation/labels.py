"""Class-label rasters ("label sets") of K-class segmentation models, one per label set, glacier and epoch.

A label set (config ``labels.<set>.classes``) lists classes in index order, each with a rule: ``rest`` (every
pixel no other rule paints; exactly one class), ``outline`` (pixels of any inventory glacier in the cube,
``mask_glacier_id >= 0``), ``map`` (a raster, value > 0 and not nodata, or a vector file of polygons, any CRS,
placed on the cube's grid) and ``channel`` (a cube layer strictly ``above`` and/or ``below`` a threshold; NaN
never matches). Any non-rest rule may be restricted ``within: outline`` or ``outside: outline``. Rules paint in
list order over the rest class (a later class wins); cloud and no-data pixels get :data:`IGNORE` (255) at the end.

The result is a GeoTIFF on the cube's grid (uint8, nodata 255, tags ``classes`` = "0=background;1=clean_ice;...",
``ignore_value``, glacier_id, epoch, labelset, status, reason) that a user can open and correct in QGIS;
:func:`read_label_raster` reads it back and rejects values that are no class. Rule ``labels``
(workflow/rules/segmentation/labels.smk) runs :func:`run_labels`: a skipped cube, or a bad map for one glacier
(:class:`~glaciermap.io.GlacierInputError`), gives an all-255 raster with status ``skipped`` and the reason.
A skip-record cube has no grid: its label raster is a 1 x 1 pixel without georeferencing.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from pathlib import Path

import numpy as np

from glaciermap.io import STATUS_OK, STATUS_SKIPPED, GlacierInputError, UpstreamSkipped, atomic_path, check_upstream

log = logging.getLogger("glaciermap")

IGNORE = 255
RULES = ("rest", "outline", "map", "channel")
RASTER_EXT = (".tif", ".tiff", ".vrt")
VECTOR_EXT = (".gpkg", ".shp", ".geojson", ".json", ".fgb")
_KEYS = {"rest": set(), "outline": set(), "map": {"path"}, "channel": {"channel", "above", "below"}}
_PALETTE = [(200, 200, 200), (31, 120, 180), (166, 86, 40), (51, 160, 44), (227, 26, 28), (255, 127, 0),
            (106, 61, 154), (255, 255, 51), (166, 206, 227), (251, 154, 153)]


def check_labelset(name: str, spec: dict, check_files: bool = True) -> list[str]:
    """Problems of one label set's config, each naming its dotted key (empty: fine). Channels are not looked up;
    ``check_files=False`` leaves out the existence of map files (a fresh clone before its inputs exist: the maps
    are inputs of rule label_set, so a run still stops before any job, naming the file)."""
    key = f"labels.{name}"
    if name == "glacier":
        return [f"{key}: 'glacier' is the built-in binary target; give the label set another name"]
    classes = spec.get("classes") if isinstance(spec, dict) else None
    if not isinstance(classes, list):
        return [f"{key}.classes: missing or not a list"]
    out = []
    if not 2 <= len(classes) <= 254:
        out.append(f"{key}.classes: {len(classes)} classes; a label set needs 2 to 254")
    seen, rests = set(), []
    for i, c in enumerate(classes):
        k = f"{key}.classes[{i}]"
        if not isinstance(c, dict):
            out.append(f"{k}: not a mapping")
            continue
        cname, rule = c.get("name"), c.get("rule")
        if not isinstance(cname, str) or not cname or any(ch in cname for ch in ";="):
            out.append(f"{k}.name: {cname!r} is not a non-empty name without ';' or '='")
        elif cname in seen:
            out.append(f"{k}.name: duplicate class name '{cname}'")
        seen.add(cname)
        if rule not in RULES:
            out.append(f"{k}.rule: unknown rule {rule!r} (one of {', '.join(RULES)})")
            continue
        rests += [i] if rule == "rest" else []
        for extra in sorted(set(c) - {"name", "rule", "within", "outside"} - _KEYS[rule]):
            out.append(f"{k}.{extra}: rule {rule} does not take '{extra}'")
        for where in ("within", "outside"):
            if where in c and rule == "rest":
                out.append(f"{k}.{where}: rule rest paints what is left; it takes no '{where}'")
            elif where in c and c[where] != "outline":
                out.append(f"{k}.{where}: must be 'outline', got {c[where]!r}")
        if "within" in c and "outside" in c and rule != "rest":
            out.append(f"{k}: both 'within' and 'outside' given; at most one")
        if rule == "map":
            path = c.get("path")
            if not isinstance(path, str) or not path:
                out.append(f"{k}.path: missing (rule map needs the raster or vector file)")
            elif check_files and not Path(path).exists():
                out.append(f"{k}.path: file '{path}' does not exist")
        if rule == "channel":
            if not isinstance(c.get("channel"), str) or not c.get("channel"):
                out.append(f"{k}.channel: missing (rule channel needs the layer to threshold)")
            bounds = {b: c[b] for b in ("above", "below") if b in c}
            if not bounds:
                out.append(f"{k}: rule channel needs 'above' and/or 'below'")
            bad = [b for b, v in bounds.items() if isinstance(v, bool) or not isinstance(v, numbers.Real)]
            out += [f"{k}.{b}: must be a number, got {bounds[b]!r}" for b in bad]
            if not bad and len(bounds) == 2 and bounds["above"] >= bounds["below"]:
                out.append(f"{k}: above ({bounds['above']}) >= below ({bounds['below']}): no value can match")
    if len(rests) != 1:
        out.append(f"{key}.classes: exactly one class needs rule rest, found {len(rests)}")
    return out


def labelset_classes(spec) -> list[str]:
    """Class names in index order."""
    return [str(c["name"]) for c in spec["classes"]]


def label_channels(spec) -> list[str]:
    """The cube layers the ``channel`` rules read (unique, first-use order)."""
    return list(dict.fromkeys(c["channel"] for c in spec["classes"] if c.get("rule") == "channel"))


def _bounds_in(grid, shape, crs) -> tuple:
    """(left, bottom, right, top) of a grid of ``shape`` in ``crs``."""
    from rasterio.warp import transform_bounds

    (x0, y0), (x1, y1) = grid.transform @ (0, 0), grid.transform @ (shape[1], shape[0])
    return transform_bounds(grid.crs, crs, min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), densify_pts=21)


def _raster_on_grid(path, grid, shape, glacier_id) -> np.ndarray:
    import rasterio
    from affine import Affine
    from rasterio.warp import Resampling, reproject
    from rasterio.windows import Window, from_bounds

    dst = np.zeros(shape, np.uint8)
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise GlacierInputError(glacier_id, path, "the map raster has no CRS")
            # read only the part of the map over the cube (plus 2 pixels), not a whole regional map
            f = from_bounds(*_bounds_in(grid, shape, src.crs), transform=src.transform)
            r0, c0 = max(int(np.floor(f.row_off)) - 2, 0), max(int(np.floor(f.col_off)) - 2, 0)
            r1 = min(int(np.ceil(f.row_off + f.height)) + 2, src.height)
            c1 = min(int(np.ceil(f.col_off + f.width)) + 2, src.width)
            if r1 <= r0 or c1 <= c0:  # the map does not reach the cube
                return dst.astype(bool)
            win = Window(c0, r0, c1 - c0, r1 - r0)
            band = src.read(1, window=win, masked=True)
            data = (~np.ma.getmaskarray(band) & (np.asarray(band.filled(0)) > 0)).astype(np.uint8)
            reproject(data, dst, src_transform=src.transform @ Affine.translation(c0, r0), src_crs=src.crs,
                      dst_transform=grid.transform, dst_crs=grid.crs, resampling=Resampling.nearest,
                      src_nodata=None, dst_nodata=None)
    except rasterio.errors.RasterioError as e:
        raise GlacierInputError(glacier_id, path, f"cannot read the map raster: {e}") from e
    return dst.astype(bool)


def _vector_on_grid(path, grid, shape, glacier_id) -> np.ndarray:
    import geopandas as gpd
    import pyogrio
    from rasterio.features import rasterize

    try:
        info = pyogrio.read_info(path)
        if info["crs"] is None:
            raise GlacierInputError(glacier_id, path, "the map vector file has no CRS")
        gtype = str(info["geometry_type"] or "")
        if info["features"] == 0 or not ("Polygon" in gtype or gtype in ("Unknown", "GeometryCollection")):
            raise GlacierInputError(glacier_id, path, f"the map vector file has no polygon geometry "
                                    f"({info['features']} feature(s) of type {gtype or 'none'})")
        bbox = _bounds_in(grid, shape, info["crs"])
        gdf = gpd.read_file(path, bbox=bbox, engine="pyogrio")
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError, ValueError) as e:
        raise GlacierInputError(glacier_id, path, f"cannot read the map vector file: {e}") from e
    geoms = gdf.geometry[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    geoms = geoms[geoms.geom_type.isin(["Polygon", "MultiPolygon"])].to_crs(grid.crs)
    if geoms.empty:
        return np.zeros(shape, bool)
    return rasterize(((g, 1) for g in geoms), out_shape=shape, transform=grid.transform, fill=0,
                     all_touched=False, dtype="uint8").astype(bool)


def map_on_grid(path, grid, glacier_id) -> np.ndarray:
    """A raster or vector map on a cube's grid (:func:`glaciermap.data.georef.read_grid`): bool [H, W], True = the class.

    Raster (.tif/.tiff/.vrt): value > 0 and not nodata, reprojected nearest; vector (.gpkg/.shp/.geojson/
    .json/.fgb): polygons reprojected to the grid's CRS, burnt at pixel centres; other extensions are tried
    as raster, then vector. Outside the map: False. Bad maps raise GlacierInputError naming file and problem.
    """
    shape = (len(grid.y), len(grid.x))
    if grid.crs is None:
        raise GlacierInputError(glacier_id, path, "the cube has no CRS (spatial_ref); cannot place the map on it")
    if not Path(path).exists():
        raise GlacierInputError(glacier_id, path, "the map file does not exist")
    ext = Path(path).suffix.lower()
    if ext in RASTER_EXT:
        return _raster_on_grid(path, grid, shape, glacier_id)
    if ext in VECTOR_EXT:
        return _vector_on_grid(path, grid, shape, glacier_id)
    try:
        return _raster_on_grid(path, grid, shape, glacier_id)
    except GlacierInputError as e:
        if "cannot read" not in e.problem:
            raise
        return _vector_on_grid(path, grid, shape, glacier_id)


def build_labels(cube_path, spec, glacier_id) -> tuple[np.ndarray, dict]:
    """(uint8 [H, W] class indices, 255 = ignore; {"pixels": {class: count}, "ignored": n}) of one cube.

    A skip-record cube raises :class:`~glaciermap.io.UpstreamSkipped` (a GlacierInputError); a cube lacking a
    layer a channel rule reads raises :class:`~glaciermap.data.netcdf.MissingVariablesError` (a workflow error).
    """
    from glaciermap.data.georef import read_grid
    from glaciermap.data.netcdf import read_layers

    check_upstream(cube_path, glacier_id)
    chans = label_channels(spec)
    stack, v, _ = read_layers(cube_path, chans, names=["mask_glacier_id"], optional=["mask_cloud", "mask_nodata"])
    outline = v["mask_glacier_id"] >= 0
    grid = read_grid(cube_path) if any(c["rule"] == "map" for c in spec["classes"]) else None
    classes = spec["classes"]
    labels = np.full(outline.shape, next(i for i, c in enumerate(classes) if c["rule"] == "rest"), np.uint8)
    for i, c in enumerate(classes):
        if c["rule"] == "outline":
            m = outline.copy()
        elif c["rule"] == "map":
            m = map_on_grid(c["path"], grid, glacier_id)
        elif c["rule"] == "channel":
            layer = stack[chans.index(c["channel"])]
            m = np.ones(outline.shape, bool)  # thresholds in the layer's precision: 0.2 is not above 0.2
            if c.get("above") is not None:
                m &= layer > layer.dtype.type(c["above"])
            if c.get("below") is not None:
                m &= layer < layer.dtype.type(c["below"])
        else:
            continue
        if c.get("within") == "outline":
            m &= outline
        elif c.get("outside") == "outline":
            m &= ~outline
        labels[m] = i
    masked = np.zeros(outline.shape, bool)
    for k in ("mask_cloud", "mask_nodata"):
        if k in v:
            masked |= v[k].astype(bool)
    labels[masked] = IGNORE
    return labels, _info(labels, labelset_classes(spec))


def _info(labels, classes) -> dict:
    return {"pixels": {n: int((labels == i).sum()) for i, n in enumerate(classes)},
            "ignored": int((labels == IGNORE).sum())}


def write_label_raster(path, labels, cube_path, classes, attrs: dict) -> None:
    """A label raster as GeoTIFF on the cube's grid and CRS (uint8, nodata 255, DEFLATE, tiled), written atomically.

    ``cube_path`` None: no georeferencing (the 1 x 1 raster of a skip-record cube).
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from glaciermap.data.georef import read_grid

    labels = np.asarray(labels, np.uint8)
    geo = {}
    if cube_path is not None:
        g = read_grid(cube_path)
        if labels.shape != (len(g.y), len(g.x)):
            raise ValueError(f"labels {labels.shape} do not match the grid {(len(g.y), len(g.x))} of {cube_path}")
        geo = {"crs": g.crs, "transform": g.transform}
    tags = {"classes": ";".join(f"{i}={n}" for i, n in enumerate(classes)), "ignore_value": str(IGNORE),
            **{k: "" if v is None else str(v) for k, v in attrs.items()}}
    cmap = {i: _PALETTE[i % len(_PALETTE)] + (255,) for i in range(len(classes))}
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", driver="GTiff", width=labels.shape[1], height=labels.shape[0], count=1,
                           dtype="uint8", nodata=IGNORE, compress="deflate", tiled=True, blockxsize=256,
                           blockysize=256, photometric="palette", **geo) as dst:
            dst.write_colormap(1, {**cmap, IGNORE: (0, 0, 0, 0)})   # before the pixels: a palette TIFF's colour map
            dst.write(labels, 1)
            dst.update_tags(**tags)
            dst.set_band_description(1, "class")


def read_label_raster(path) -> tuple[np.ndarray, list[str], dict]:
    """(labels uint8 [H, W], class names, tags) of a label raster; a value that is no class and not 255
    (e.g. painted by hand) raises ValueError naming the file and the values."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            tags, labels = src.tags(), src.read(1)
    tags = {"status": "", "reason": "", **tags}  # GDAL drops empty tags
    if "classes" not in tags:
        raise ValueError(f"{path} is not a label raster: it has no 'classes' tag")
    pairs = sorted((int(i), n) for i, n in (p.split("=", 1) for p in tags["classes"].split(";") if p))
    classes = [n for _, n in pairs]
    bad = np.setdiff1d(np.unique(labels), [*range(len(classes)), IGNORE])
    if bad.size:
        raise ValueError(f"{path}: value(s) {', '.join(str(b) for b in bad[:10])} are no class of "
                         f"{len(classes)} ({tags['classes']}) and not {IGNORE} (ignore)")
    return labels.astype(np.uint8), classes, tags


def run_labels(cube_path, spec, out_tif, labelset: str, glacier_id: str, epoch: str) -> dict:
    """Build and write one label raster; a skipped cube or a bad map skips the glacier visibly (all 255)."""
    from glaciermap.data.georef import read_grid

    classes = labelset_classes(spec)
    attrs = {"glacier_id": str(glacier_id), "epoch": str(epoch), "labelset": labelset, "status": STATUS_OK,
             "reason": ""}
    grid_of = cube_path
    try:
        labels, info = build_labels(cube_path, spec, glacier_id)
    except GlacierInputError as e:
        log.warning("labels %s: %s", labelset, e)
        attrs.update(status=STATUS_SKIPPED, reason=e.problem if isinstance(e, UpstreamSkipped) else str(e))
        if isinstance(e, UpstreamSkipped):
            grid_of, shape = None, (1, 1)
        else:
            g = read_grid(cube_path)
            shape = (len(g.y), len(g.x))
        labels = np.full(shape, IGNORE, np.uint8)
        info = _info(labels, classes)
    write_label_raster(out_tif, labels, grid_of, classes, attrs)
    return {**{k: attrs[k] for k in ("glacier_id", "epoch", "status", "reason")}, "pixels": info["pixels"]}


def run_label_set(name: str, spec: dict, map_paths, out_json) -> dict:
    """What rule ``label_set`` runs: the label set's definition record (classes, rules, sha256 of each map).

    The training jobs take this small file as a regular input and the label rasters as ``ancient()`` ones,
    so that a changed definition or map retrains (Snakemake 9 does not re-check the params of a job it
    reaches only through re-made ancient inputs, snakemake/snakemake#4166) while a new scene, which
    re-makes the rasters only, does not.
    """
    import hashlib

    from glaciermap.io import write_json_atomic

    problems = check_labelset(name, spec)
    if problems:
        raise ValueError("; ".join(problems))
    maps = {}
    for p in map_paths:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        maps[str(p)] = h.hexdigest()
    out = {"label_set": name, "classes": labelset_classes(spec), "rules": spec["classes"], "maps_sha256": maps,
           "ignore_value": IGNORE}
    write_json_atomic(out_json, out)
    return out
