"""Data sources: one module per kind of input (Sentinel-2 L2A / L1C, Landsat C2 L2, Sentinel-1, static and
per-year rasters), one registry (``registry.KINDS``), one config format (``sources:`` in the config, see
docs/sources.md).

    sources = build_sources(cfg)                      # {name: Source}; SourceConfigError before any job runs
    res = read(sources["s2"], grid, ["red", "nir"], item=item, glacier_id="G1")
    res.bands["red"], res.masks.valid, res.masks.cloud  # float32 physical values (NaN = fill), booleans

Read errors (missing asset, unreadable file, raster without CRS or not covering the grid, all-fill scene,
per-year source without that year) raise :class:`glaciermap.io.GlacierInputError` naming the glacier, the
file and the source.
"""

from __future__ import annotations

from glaciermap.data.sources.base import (MASK_NAMES, BandSpec, Masks, MaskSpec, NearDate, ReadResult, Source, SourceConfigError,
                                          SunAngles)
from glaciermap.data.sources.landsat import LandsatC2L2
from glaciermap.data.sources.neardate import SCENE_CHANNEL_BANDS, Composite, near_date_composite
from glaciermap.data.sources.raster import PerYearRasterSource, RasterSource, rotate_to
from glaciermap.data.sources.registry import (KINDS, build_source, build_sources, cached_source, check_sources, register_kind,
                                             warm_catalogs)
from .sentinel1 import Sentinel1, db_to_linear, linear_to_db
from .sentinel2 import Sentinel2L1C, Sentinel2L2A, s2_offset


def read(source: Source, grid, bands=None, *, item=None, when=None, glacier_id: str = "") -> ReadResult:
    """Bands ``bands`` (sensor or common names; None = the source's default set) of one STAC ``item`` (scene
    kinds) or of the raster (``raster``; ``raster_per_year`` with ``when`` = year / date, or the item's date)
    on ``grid`` (a :class:`glaciermap.data.grid.CubeGrid`)."""
    return source.read(grid, bands, item=item, when=when, glacier_id=glacier_id)


__all__ = [
    "KINDS", "MASK_NAMES", "SCENE_CHANNEL_BANDS", "BandSpec", "Composite", "LandsatC2L2", "MaskSpec", "Masks", "NearDate",
    "PerYearRasterSource", "RasterSource", "near_date_composite",
    "ReadResult", "Sentinel1", "Sentinel2L1C", "Sentinel2L2A", "Source", "SourceConfigError", "SunAngles",
    "build_source", "build_sources", "check_sources", "db_to_linear", "linear_to_db", "read", "register_kind",
    "rotate_to", "s2_offset", "warm_catalogs",
]
