"""Facies samples: a patch_size x patch_size stack around every labelled point (rule ``samples``).

Channels (``facies.feature_set``, the paper's 4 sets; :data:`glaciermap.facies.points.FEATURE_SETS`):

- the reflectance bands of the point's scene (common names of the facies source; the paper's top-of-atmosphere
  B, G, R, NIR, SWIR1, SWIR2), physical values, NaN where the scene has fill; clouds are *not* masked (cloud is a
  class);
- ``elevation_norm``: DEM elevation normalised per glacier, (z - z_min) / (z_max - z_min) over the glacier's outline;
- ``slope`` (degrees / 90), ``hillshade`` (cosine of the sun incidence, 0-1) and ``cast_shadow`` (0/1, terrain
  shadows traced on the DEM toward the scene's sun: ``view:sun_azimuth`` / ``view:sun_elevation``), on a DEM read
  with ``SHADOW_MARGIN_M`` around the grid so that far ridges cast their shadows;
- ``outline_distance``: distance to the glacier's outline, normalised per glacier (inside: distance / the largest
  inside distance of that glacier, 0-1; outside: minus the same ratio, down to -1).

Each scene is read once for all its points (one grid around the outlines of the glaciers it has points on, plus
the patch half-width), and each glacier's normalisation comes from its whole outline (:func:`glacier_stats`). A
scene that cannot be read loses its points (reported by name in ``samples_rejected.csv``), the others carry on;
a point whose centre pixel is fill is rejected too.

Output ``samples.nc`` (xarray; dims point, channel, row, col): ``x`` float32, ``label`` int16 (index into
classes), ``fold`` int8, ``scene_id``, ``glacier_id``, ``date``; attrs ``classes``, ``channels``,
``reflectance_channels`` (JSON lists). :func:`feature_stack` builds the same layers for the facies maps.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import xarray as xr

from glaciermap.io import GlacierInputError, write_csv_atomic, write_netcdf_atomic

log = logging.getLogger("glaciermap.facies.samples")

SHADOW_MARGIN_M = 3000.0
TERRAIN = ("elevation_norm", "slope", "cast_shadow", "hillshade", "outline_distance")


def glacier_grid(bounds, crs: str, resolution: float, halo_px: int):
    from glaciermap.data.grid import CubeGrid

    return CubeGrid.around(bounds, crs, resolution, halo_px * resolution)


def read_dem(dem_path: str, grid, margin_m: float = 0.0) -> tuple[np.ndarray, object]:
    """DEM (float32 m, NaN = no data) on ``grid`` grown by ``margin_m`` (bilinear), and that larger grid."""
    from glaciermap.data.grid import CubeGrid
    from glaciermap.data.sources.raster import RasterSource

    big = CubeGrid(grid.crs, grid.left - margin_m, grid.bottom - margin_m, grid.right + margin_m, grid.top + margin_m,
                   grid.resolution)
    src = RasterSource("dem", {"kind": "raster", "path": dem_path, "coverage": "any"})
    z = src.read(big).bands["dem"].astype(np.float32)
    return z, big


def _crop(arr, big, grid):
    r0 = int(round((big.top - grid.top) / grid.resolution))
    c0 = int(round((grid.left - big.left) / grid.resolution))
    return arr[r0:r0 + grid.height, c0:c0 + grid.width]


def rasterize_outline(geom, grid) -> np.ndarray:
    from rasterio.features import rasterize

    return rasterize([(geom, 1)], out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8").astype(bool)


def glacier_stats(glaciers, dem_path: str, resolution: float) -> pd.DataFrame:
    """Per glacier: z_min, z_max, z_mean (DEM over the outline) and the largest inside distance to the outline (m)."""
    from scipy.ndimage import distance_transform_edt

    rows = []
    for g in glaciers.itertuples():
        grid = glacier_grid(g.geometry.bounds, str(glaciers.crs), resolution, 2)
        z, _ = read_dem(dem_path, grid)
        inside = rasterize_outline(g.geometry, grid)
        if not inside.any():  # a sliver under one pixel: its centre pixel stands for it
            inside[grid.height // 2, grid.width // 2] = True
        zi = z[inside & np.isfinite(z)]
        d = distance_transform_edt(inside) * resolution
        rows.append({"glacier_id": g.glac_id, "z_min": float(np.min(zi)) if zi.size else np.nan,
                     "z_max": float(np.max(zi)) if zi.size else np.nan,
                     "z_mean": float(np.mean(zi)) if zi.size else np.nan,
                     "max_inside_m": float(max(d.max(), resolution)), "area_km2": float(g.geometry.area / 1e6)})
    return pd.DataFrame(rows, columns=["glacier_id", "z_min", "z_max", "z_mean", "max_inside_m", "area_km2"])


def terrain_layers(dem_path: str, grid, sun_azimuth, sun_elevation, want, dem=None) -> dict:
    """slope / hillshade / cast_shadow on ``grid`` (only those in ``want``) and the DEM itself (key ``z``).

    ``dem``: a (DEM, its grid) pair read before with :func:`read_dem` around ``grid`` (at least
    ``SHADOW_MARGIN_M`` when cast_shadow is wanted), to read the DEM once for several scenes."""
    from glaciermap.data.terrain import cast_shadow, hillshade, slope

    need_sun = any(k in want for k in ("hillshade", "cast_shadow"))
    if need_sun and (sun_azimuth is None or sun_elevation is None):
        raise ValueError("the scene has no sun angles (view:sun_azimuth / view:sun_elevation): hillshade and "
                         "cast_shadow cannot be computed; choose facies.feature_set optical_terrain or optical")
    margin = SHADOW_MARGIN_M if "cast_shadow" in want else 2 * grid.resolution
    zb, big = dem if dem is not None else read_dem(dem_path, grid, margin)
    out = {"z": _crop(zb, big, grid)}
    res = grid.resolution
    if "slope" in want:
        out["slope"] = _crop(slope(zb, res), big, grid) / 90.0
    if "hillshade" in want:
        out["hillshade"] = _crop(hillshade(zb, res, sun_azimuth, sun_elevation), big, grid)
    if "cast_shadow" in want:
        out["cast_shadow"] = _crop(cast_shadow(zb, res, sun_azimuth, sun_elevation), big, grid).astype(np.float32)
    return out


def crop(arr: np.ndarray, big, grid) -> np.ndarray:
    """The part of ``arr`` (on grid ``big``) under ``grid`` (same resolution, inside ``big``)."""
    return _crop(arr, big, grid)


def glacier_layers(geom, grid, z: np.ndarray, stats: dict, want) -> dict:
    """elevation_norm and outline_distance of one glacier on ``grid`` (its own normalisation)."""
    from scipy.ndimage import distance_transform_edt

    out = {}
    if "elevation_norm" in want:
        span = max(stats["z_max"] - stats["z_min"], 1.0)
        out["elevation_norm"] = ((z - stats["z_min"]) / span).astype(np.float32)
    if "outline_distance" in want:
        inside = rasterize_outline(geom, grid)
        d_in = distance_transform_edt(inside) * grid.resolution
        d_out = distance_transform_edt(~inside) * grid.resolution
        out["outline_distance"] = np.clip(np.where(inside, d_in, -d_out) / stats["max_inside_m"], -1.0, 1.0).astype(np.float32)
    return out


def feature_stack(channels, bands: dict, terrain: dict, glacier: dict) -> np.ndarray:
    """(C, H, W) float32 in channel order from the band, terrain and glacier layers."""
    layers = {**bands, **terrain, **glacier}
    missing = [c for c in channels if c not in layers]
    if missing:
        raise KeyError(f"no layer for channel(s) {', '.join(missing)}")
    return np.stack([np.asarray(layers[c], np.float32) for c in channels])


def _windows(stack: np.ndarray, rows: np.ndarray, cols: np.ndarray, p: int) -> np.ndarray:
    h = p // 2
    pad = np.pad(stack, ((0, 0), (h, h), (h, h)), constant_values=np.nan)
    out = np.empty((len(rows), stack.shape[0], p, p), np.float32)
    for j, (r, c) in enumerate(zip(rows, cols)):
        out[j] = pad[:, r:r + p, c:c + p]
    return out


def scene_samples(item, source, points: pd.DataFrame, glaciers, gstats: pd.DataFrame, dem_path: str, bands,
                  channels, patch_size: int, resolution: float, dem=None) -> tuple[np.ndarray, np.ndarray]:
    """(x (n, C, P, P), centre-valid flags) for the points of one scene, in the order of ``points``."""
    crs = str(glaciers.crs)
    gl = glaciers.set_index("glac_id").loc[sorted(points["glacier_id"].unique())]
    grid = glacier_grid(tuple(gl.total_bounds), crs, resolution, patch_size // 2 + 2)
    res = source.read(grid, list(bands), item=item, glacier_id=",".join(gl.index))
    band_layers = {b: res.bands[b] for b in bands}
    terrain = terrain_layers(dem_path, grid, res.attrs.get("sun_azimuth"), res.attrs.get("sun_elevation"),
                             [c for c in channels if c in TERRAIN], dem=dem)
    cols = np.floor((points["x"].to_numpy() - grid.left) / resolution).astype(int)
    rows = np.floor((grid.top - points["y"].to_numpy()) / resolution).astype(int)
    x = np.empty((len(points), len(channels), patch_size, patch_size), np.float32)
    st = gstats.set_index("glacier_id")
    for gid, idx in points.groupby("glacier_id").indices.items():
        glayers = glacier_layers(gl.loc[gid, "geometry"], grid, terrain["z"], st.loc[gid].to_dict(), channels)
        stack = feature_stack(channels, band_layers, terrain, glayers)
        x[idx] = _windows(stack, rows[idx], cols[idx], patch_size)
    h = patch_size // 2
    centre_ok = np.isfinite(x[:, : len(bands), h, h]).all(axis=1)
    return x, centre_ok


def run_samples(points_gpkg, inventory_gpkg, dem_path, source_name: str, source_cfg: dict | None, classes, bands,
                channels, patch_size: int, resolution: float, out_nc, out_rejected, out_stats) -> dict:
    """Build samples.nc for every accepted point (scenes read once each), the rejected points and glacier stats."""

    from glaciermap.data import stac
    from glaciermap.facies.points import read_glaciers, read_points

    pts = read_points(points_gpkg)
    glaciers = read_glaciers(inventory_gpkg)
    if patch_size % 2 != 1:
        raise ValueError(f"facies.patch_size: must be odd (a centre pixel), got {patch_size}")
    pixel_mode = all(c in pts.columns for c in channels)
    keep_gl = glaciers[glaciers["glac_id"].isin(pts["glacier_id"])]
    gstats = glacier_stats(keep_gl, dem_path, resolution) if (dem_path and not pixel_mode) else pd.DataFrame(
        {"glacier_id": keep_gl["glac_id"]})
    rejected = []
    if pixel_mode:
        x = pts[channels].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)[:, :, None, None]
        ok = np.isfinite(x[:, :, 0, 0]).all(axis=1)
        for pid in pts.loc[~ok, "point_id"]:
            rejected.append({"point_id": pid, "scene_id": "", "reason": "a channel value is missing or not a number"})
        size = 1
    else:
        from glaciermap.data.sources import build_source

        source = build_source(source_name, source_cfg)
        size = patch_size
        # the DEM once for every scene: around all the points' glaciers (+ the cast-shadow margin)
        region = glacier_grid(tuple(keep_gl.total_bounds), str(glaciers.crs), resolution, patch_size // 2 + 2)
        dem = read_dem(dem_path, region, SHADOW_MARGIN_M if "cast_shadow" in channels else 2 * resolution)
        x = np.full((len(pts), len(channels), size, size), np.nan, np.float32)
        ok = np.zeros(len(pts), bool)
        for sid, idx in pts.groupby("scene_id").indices.items():
            sub = pts.iloc[idx]
            try:
                item = stac.find_item(source.stac_source, sid, source.collection)
                xs, centre = scene_samples(item, source, sub, glaciers, gstats, dem_path, bands, channels, size,
                                           resolution, dem=dem)
            except (GlacierInputError, KeyError, ValueError, OSError) as e:
                log.error("facies samples: scene %s (%d points on %s) skipped: %s", sid, len(idx),
                          ", ".join(sorted(sub["glacier_id"].unique())), e)
                rejected += [{"point_id": p, "scene_id": sid, "reason": f"scene unreadable: {e}"} for p in sub["point_id"]]
                continue
            x[idx] = xs
            ok[idx] = centre
            for p in sub.loc[~centre, "point_id"]:
                rejected.append({"point_id": p, "scene_id": sid, "reason": "the scene has no data at the point (fill)"})
            log.info("facies samples: scene %s: %d points", sid, int(centre.sum()))
    keep = np.flatnonzero(ok)
    if keep.size == 0:
        raise ValueError(f"facies samples: no point of {points_gpkg} has data ({len(rejected)} rejected)")
    sub = pts.iloc[keep]
    cls_index = {c: i for i, c in enumerate(classes)}
    ds = xr.Dataset(
        {"x": (("point", "channel", "row", "col"), x[keep]),
         "label": (("point",), sub["class"].map(cls_index).to_numpy().astype(np.int16)),
         "fold": (("point",), sub["fold"].to_numpy().astype(np.int8)),
         "scene_id": (("point",), sub["scene_id"].astype(str).to_numpy()),
         "glacier_id": (("point",), sub["glacier_id"].astype(str).to_numpy()),
         "date": (("point",), sub["date"].astype(str).to_numpy())},
        coords={"point": sub["point_id"].astype(str).to_numpy(), "channel": list(channels)},
        attrs={"classes": json.dumps(list(classes)), "channels": json.dumps(list(channels)),
               "reflectance_channels": json.dumps(list(bands)), "patch_size": size, "resolution_m": resolution,
               "source": source_name, "mode": "pixels" if pixel_mode else "scenes"})
    write_netcdf_atomic(out_nc, ds, encoding={"x": {"zlib": True, "complevel": 1}})
    write_csv_atomic(out_rejected, pd.DataFrame(rejected, columns=["point_id", "scene_id", "reason"]))
    write_csv_atomic(out_stats, gstats)
    return {"n_samples": int(keep.size), "n_rejected": len(rejected), "channels": list(channels), "patch_size": size}
