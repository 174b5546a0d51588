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


def ndgi(green, red):
    """Normalised Difference Glacier Index (Keshri et al. 2009): (green - red) / (green + red); S2 B03, B04."""
    return normalized_difference(green, red)


def band_ratio(a, b):
    """``a / b`` (e.g. red / SWIR-1), NaN where ``b == 0`` or either input is NaN; not clipped."""
    a, b = _as_float(a), _as_float(b)
    if hasattr(b, "where"):  # xarray
        return a / b.where(b != 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1), np.nan)


#: GLCM offsets (row, col) of scikit-image's angles 0, pi/4, pi/2, 3 pi/4 at distance 1
#: (``round(sin(angle) d), round(cos(angle) d)``).
GLCM_OFFSETS = ((0, 1), (1, 1), (1, 0), (1, -1))


def _box_sum(a: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Per pixel (i, j): sum of ``a[i + r0 : i + r1 + 1, j + c0 : j + c1 + 1]``; NaN where that reaches outside."""
    h, w = a.shape
    s = np.zeros((h + 1, w + 1), np.float64)
    s[1:, 1:] = a.cumsum(0).cumsum(1)
    out = np.full((h, w), np.nan)
    i0, i1 = max(0, -r0), min(h, h - r1)
    j0, j1 = max(0, -c0), min(w, w - c1)
    if i0 >= i1 or j0 >= j1:
        return out
    ii, jj = np.arange(i0, i1)[:, None], np.arange(j0, j1)[None, :]
    out[i0:i1, j0:j1] = (s[ii + r1 + 1, jj + c1 + 1] - s[ii + r0, jj + c1 + 1] - s[ii + r1 + 1, jj + c0]
                         + s[ii + r0, jj + c0])
    return out


def quantise_levels(v, levels: int = 32, vmax: float = 1.0) -> np.ndarray:
    """Grey levels ``floor(v / vmax * levels)`` clipped to [0, levels - 1] as int; -1 where v is NaN."""
    v = np.asarray(v, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        q = np.clip(np.floor(v / vmax * levels), 0, levels - 1)
    return np.where(np.isfinite(v), q, -1).astype(np.int64)


def glcm_dissimilarity(v, window: int = 7, levels: int = 32, vmax: float = 1.0) -> np.ndarray:
    """Per-pixel GLCM dissimilarity of ``v`` in a ``window`` x ``window`` moving window (float32).

    The value scikit-image gives for the window, ``graycoprops(graycomatrix(q_win, [1], [0, pi/4, pi/2,
    3 pi/4], levels, symmetric=True, normed=True), "dissimilarity").mean()`` with ``q`` the band quantised
    by :func:`quantise_levels`, computed for every pixel at once: with a normed GLCM, dissimilarity
    ``sum P(i, j) |i - j|`` is the mean of ``|q(p) - q(p + offset)|`` over the window's pixel pairs, so it is
    a box sum of absolute differences (integral images) instead of one GLCM per pixel (tests check the two
    agree). NaN where the window reaches outside the array or holds a NaN of ``v``.
    """
    window = int(window)
    if window < 2:
        raise ValueError(f"window must be >= 2, got {window}")
    q = quantise_levels(v, levels, vmax)
    bad = (q < 0).astype(np.float64)
    h, w = q.shape
    lo, hi = -(window // 2), window - 1 - window // 2    # window rows/cols relative to the pixel
    acc = np.zeros((h, w))
    for dr, dc in GLCM_OFFSETS:
        d = np.zeros((h, w))
        rs, cs = slice(0, h - dr), slice(max(0, -dc), w - max(0, dc))
        rt, ct = slice(dr, h), slice(max(0, dc), w - max(0, -dc))
        d[rs, cs] = np.abs(q[rs, cs] - q[rt, ct])
        # starting pixels p of pairs (p, p + offset) with both in the window
        r0, r1 = lo, hi - dr
        c0, c1 = lo + max(0, -dc), hi - max(0, dc)
        n_pairs = (r1 - r0 + 1) * (c1 - c0 + 1)
        acc += _box_sum(d, r0, r1, c0, c1) / n_pairs
    out = acc / len(GLCM_OFFSETS)
    out[~(_box_sum(bad, lo, hi, lo, hi) == 0)] = np.nan
    return out.astype(np.float32)
