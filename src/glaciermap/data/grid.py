"""The per-glacier cube grid: glacier bounding box plus a margin derived from the patch size."""

from __future__ import annotations

import math

import numpy as np
from affine import Affine


def cube_margin_m(patch_size_px: int, resolution_m: float, extra_buffer_m: float = 50.0) -> float:
    """Margin around the glacier bounding box so that a patch centred anywhere in the 50 m buffer fits.

    DL4GAM: patch_size/2 x GSD + 50 m, i.e. 1330 m for 256 px at 10 m.
    """
    return patch_size_px / 2 * resolution_m + extra_buffer_m


def utm_crs_for(lon: float, lat: float) -> str:
    zone = int(math.floor((lon + 180) / 6)) + 1
    zone = min(max(zone, 1), 60)
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


class CubeGrid:
    """A north-up raster grid snapped to multiples of the resolution."""

    def __init__(self, crs: str, left: float, bottom: float, right: float, top: float, resolution: float):
        r = resolution
        self.crs = str(crs)
        self.resolution = float(r)
        self.left = math.floor(left / r) * r
        self.bottom = math.floor(bottom / r) * r
        self.right = math.ceil(right / r) * r
        self.top = math.ceil(top / r) * r
        self.width = int(round((self.right - self.left) / r))
        self.height = int(round((self.top - self.bottom) / r))

    @classmethod
    def around(cls, bounds, crs: str, resolution: float, margin_m: float) -> "CubeGrid":
        left, bottom, right, top = bounds
        return cls(crs, left - margin_m, bottom - margin_m, right + margin_m, top + margin_m, resolution)

    @property
    def bounds(self):
        return (self.left, self.bottom, self.right, self.top)

    @property
    def shape(self):
        return (self.height, self.width)

    @property
    def transform(self) -> Affine:
        return Affine(self.resolution, 0.0, self.left, 0.0, -self.resolution, self.top)

    def coords(self):
        """Pixel-centre coordinates (x, y)."""
        r = self.resolution
        x = self.left + r / 2 + r * np.arange(self.width)
        y = self.top - r / 2 - r * np.arange(self.height)
        return x, y

    def to_geobox(self):
        from odc.geo.geobox import GeoBox

        return GeoBox((self.height, self.width), self.transform, self.crs)

    @classmethod
    def from_coords(cls, x, y, crs) -> "CubeGrid":
        """The grid of pixel-centre coordinates ``x`` (ascending) and ``y`` (descending) in ``crs``."""
        r = float(abs(x[1] - x[0]))
        return cls(str(crs), x[0] - r / 2, y[-1] - r / 2, x[-1] + r / 2, y[0] + r / 2, r)

    @classmethod
    def from_dataset(cls, ds) -> "CubeGrid":
        from glaciermap.data.georef import read_crs

        return cls.from_coords(ds["x"].values, ds["y"].values, read_crs(ds).to_string())
