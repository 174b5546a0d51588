"""Read side of the acquisition files (``scenes/<glacier>/<epoch>.nc``) that ``acquire`` writes.

``select`` scores every candidate of a file and ``features`` takes one of them. Both run once per glacier
and epoch, so they read through h5py (:mod:`glaciermap.data.netcdf`): opening the file with xarray costs
~0.2 s of metadata work and its time decoding imports dask (~0.3 s), more than the read itself.
``tests/test_scenes.py`` checks these reads against xarray + rioxarray on real acquisition files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from affine import Affine
from rasterio.crs import CRS as RioCRS

from glaciermap.data.georef import read_grid
from glaciermap.data.grid import CubeGrid
from glaciermap.data.netcdf import read_slices, read_times, read_variables


@dataclass
class Scenes:
    """Candidate scenes of one glacier and epoch on its cube grid.

    ``bands``: name -> reflectance (decoded as xarray decodes it, NaN = no data) and ``SCL`` -> scene
    classes, each (time, y, x), or (y, x) when one scene was read; ``item_ids`` and ``times`` per scene.
    """

    bands: dict
    item_ids: list
    times: pd.DatetimeIndex
    x: np.ndarray
    y: np.ndarray
    crs: RioCRS | None
    transform: Affine
    attrs: dict = field(default_factory=dict)

    @property
    def grid(self) -> CubeGrid:
        return CubeGrid.from_coords(self.x, self.y, self.crs.to_string())


def read_scenes(path: str | os.PathLike, variables, item_id: str | None = None) -> Scenes:
    """The named variables of an acquisition file: every scene, or only the one with ``item_id``.

    Missing variables raise :class:`glaciermap.data.netcdf.MissingVariablesError` (a KeyError) naming them;
    an ``item_id`` not in the file raises LookupError listing the file's items.
    """
    meta, _ = read_variables(path, ["item_id"])
    items = [str(i) for i in np.atleast_1d(meta["item_id"])]
    times = read_times(path)
    x, y, crs, transform, attrs = read_grid(path)[:5]
    if item_id is None:
        values, _ = read_variables(path, list(variables))
    else:
        if item_id not in items:
            raise LookupError(f"item {item_id} is not among the acquired scenes ({', '.join(items)})")
        t = items.index(item_id)
        values = read_slices(path, list(variables), t)
        items, times = [item_id], times[[t]]
    return Scenes(values, items, times, x, y, crs, transform, attrs)
