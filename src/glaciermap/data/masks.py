"""Raster masks of the glacier, its neighbours and its buffers on a cube grid."""

from __future__ import annotations

import numpy as np
from rasterio import features as rio_features

from glaciermap.data.grid import CubeGrid


def glacier_id_raster(glaciers, grid: CubeGrid, id_column: str = "glac_id"):
    """Label raster of every glacier on the grid.

    Returns ``(labels, ids)``: ``labels`` is int32 with -1 where there is no glacier and ``k`` where
    glacier ``ids[k]`` is; ``ids`` is sorted so the same glaciers always give the same codes.
    Where outlines overlap (shared ice divides drawn twice) the glacier drawn last wins.
    """
    glaciers = glaciers.to_crs(grid.crs)
    ids = sorted(str(i) for i in glaciers[id_column])
    code = {g: k for k, g in enumerate(ids)}
    labels = np.full(grid.shape, -1, dtype=np.int32)
    shapes = [(geom, code[str(g)]) for g, geom in zip(glaciers[id_column], glaciers.geometry) if geom is not None and not geom.is_empty]
    if shapes:
        labels = rio_features.rasterize(shapes, out_shape=grid.shape, transform=grid.transform, fill=-1, dtype="int32")
    return labels, ids


def buffer_mask(glaciers, glacier_id: str, grid: CubeGrid, buffer_m: float, labels=None, ids=None, id_column: str = "glac_id"):
    """Glacier plus ``buffer_m``, excluding pixels that belong to other glaciers."""
    glaciers = glaciers.to_crs(grid.crs)
    geom = glaciers.loc[glaciers[id_column].astype(str) == str(glacier_id)].geometry.union_all()
    if labels is None:
        labels, ids = glacier_id_raster(glaciers, grid, id_column)
    if buffer_m > 0:
        geom = geom.buffer(buffer_m)
    inside = rio_features.rasterize([(geom, 1)], out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8").astype(bool)
    own = ids.index(str(glacier_id))
    return inside & ((labels == -1) | (labels == own))


def glacier_masks(glaciers, glacier_id: str, grid: CubeGrid, buffers=(20.0, 50.0), id_column: str = "glac_id"):
    """All masks a cube needs: labels, ids, the glacier itself and each buffer (excluding other glaciers)."""
    labels, ids = glacier_id_raster(glaciers, grid, id_column)
    own = ids.index(str(glacier_id))
    out = {"labels": labels, "ids": ids, "glacier": labels == own}
    for b in buffers:
        out[f"buffer_{int(b)}m"] = buffer_mask(glaciers, glacier_id, grid, b, labels, ids, id_column)
    return out
