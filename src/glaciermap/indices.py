"""Normalised-difference spectral indices on reflectance (numpy arrays or xarray objects).

Each index is ``(a - b) / (a + b)``; where the denominator is 0 (or either input is NaN) the result is
NaN, and the result is clipped to [-1, 1] (negative reflectances from atmospheric correction would
otherwise push it outside). Sentinel-2 bands: green B03, red B04, NIR B08, SWIR-1 B11.
"""

from __future__ import annotations

import numpy as np


def normalized_difference(a, b):
    """``(a - b) / (a + b)``, NaN where ``a + b == 0``, clipped to [-1, 1]; keeps xarray coords.

    Integer inputs (e.g. uint16 digital numbers) are converted to float first so ``a - b`` cannot wrap.
    """
    a, b = _as_float(a), _as_float(b)
    num, den = a - b, a + b
    if hasattr(den, "where"):  # xarray
        return (num / den.where(den != 0)).clip(-1.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den != 0, num / np.where(den != 0, den, 1), np.nan)
    return np.clip(out, -1.0, 1.0)


def _as_float(a):
    if hasattr(a, "dtype") and hasattr(a, "astype"):
        return a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float32)
    return np.asarray(a, dtype=np.float64)


def ndsi(green, swir):
    """Normalised Difference Snow Index (Hall et al. 1995): (green - SWIR) / (green + SWIR); S2 B03, B11."""
    return normalized_difference(green, swir)


def ndwi(green, nir):
    """Normalised Difference Water Index (McFeeters 1996): (green - NIR) / (green + NIR); S2 B03, B08."""
    return normalized_difference(green, nir)


def ndvi(nir, red):
    """Normalised Difference Vegetation Index: (NIR - red) / (NIR + red); S2 B08, B04."""
    return normalized_difference(nir, red)
