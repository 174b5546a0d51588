"""DEM attributes for the feature cubes: vectorised numpy re-implementations of what xdem 0.2.3 computes.

All functions take a 2-D float DEM (rows north to south, columns west to east, square pixels of ``res`` m)
and return float64 arrays of the same shape.

- ``slope``/``aspect``: Horn (1981) 3x3 gradient, as ``xdem ... surface_fit="Horn"``. Slope in degrees,
  aspect in degrees clockwise from north giving the direction the slope faces (downhill), 0 = N, 90 = E;
  perfectly flat cells get 180 (xdem/GDAL convention).
- ``terrain_ruggedness_index``: Riley et al. (1999), sqrt of the summed squared differences between the
  centre and its 8 neighbours (xdem default ``tri_method="Riley"``, 3x3), in metres.
- ``planform_curvature``/``profile_curvature``: Zevenbergen & Thorne (1987) 3x3 quadric
  (``surface_fit="ZevenbergThorne"``) with xdem 0.2.3's formulas (Minar et al. 2020), in m-1 x 100
  (i.e. per 100 m), positive = convex. Planform curvature is contour curvature
  ``-(r q^2 - 2 s p q + t p^2) / (p^2 + q^2)^1.5``: it grows like 1/gradient on flat ground, so xdem sets it
  to 0 where ``p^2 + q^2 < 1e-14`` and :func:`terrain_attributes` additionally zeroes it below
  ``flat_slope_deg`` and clips it. Profile curvature defaults to xdem's ``curv_method="geometric"``.

Borders (``edge``): ``"extrapolate"`` (default) pads with a linear extrapolation (odd reflection,
``2 z_0 - z_1``), so planes stay exact to the border and curvature is 0 across the border;
``"replicate"`` repeats the edge value (halves the gradient on the border row); ``"nan"`` gives NaN on the
border, exactly like xdem. Interior values never depend on the choice. Like xdem, a NaN in the DEM makes
the attribute NaN in its whole 3x3 neighbourhood.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

EDGE_MODES = ("extrapolate", "replicate", "nan")
#: xdem's threshold on p^2 + q^2 below which planform curvature is set to 0
_XDEM_FLAT = 1e-14


def _pad(dem, edge: str) -> np.ndarray:
    a = np.asarray(dem, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"DEM must be 2-D, got shape {a.shape}")
    if edge == "extrapolate":
        if min(a.shape) < 2:
            return np.pad(a, 1, mode="edge")
        return np.pad(a, 1, mode="reflect", reflect_type="odd")
    if edge == "replicate":
        return np.pad(a, 1, mode="edge")
    if edge == "nan":
        return np.pad(a, 1, mode="constant", constant_values=np.nan)
    raise ValueError(f"edge must be one of {EDGE_MODES}, got {edge!r}")


def _neighbours(dem, edge):
    """The 3x3 neighbourhood as nine shifted views: z[0] NW, z[1] N, z[2] NE, z[3] W, z[4] centre, ... z[8] SE."""
    p = _pad(dem, edge)
    h, w = p.shape[0] - 2, p.shape[1] - 2
    return [p[i:i + h, j:j + w] for i in range(3) for j in range(3)]


def _nan_spread(dem, out):
    """Set NaN wherever the 3x3 window touches a NaN of the DEM (xdem does the same)."""
    bad = ~np.isfinite(np.asarray(dem, dtype=np.float64))
    if bad.any():
        out[ndimage.binary_dilation(bad, structure=np.ones((3, 3), bool))] = np.nan
    return out


def horn_gradient(dem, res: float, edge: str = "extrapolate"):
    """Horn (1981) gradient ``(dz/dx_east, dz/dy_north)`` in m/m."""
    z1, z2, z3, z4, _, z6, z7, z8, z9 = _neighbours(dem, edge)
    p = ((z3 + 2 * z6 + z9) - (z1 + 2 * z4 + z7)) / (8.0 * res)
    q = ((z1 + 2 * z2 + z3) - (z7 + 2 * z8 + z9)) / (8.0 * res)
    return p, q


def zt_derivatives(dem, res: float, edge: str = "extrapolate"):
    """Zevenbergen & Thorne (1987) partial derivatives ``p, q, r, s, t`` (x east, y north, metres)."""
    z1, z2, z3, z4, z5, z6, z7, z8, z9 = _neighbours(dem, edge)
    p = (z6 - z4) / (2.0 * res)
    q = (z2 - z8) / (2.0 * res)
    r = (z4 - 2 * z5 + z6) / res**2
    t = (z2 - 2 * z5 + z8) / res**2
    s = (z3 - z1 - z9 + z7) / (4.0 * res**2)
    return p, q, r, s, t


def _slope_from(p, q):
    return np.degrees(np.arctan(np.hypot(p, q)))


def _aspect_from(p, q):
    asp = np.degrees(np.arctan2(-p, -q)) % 360.0
    asp[(p == 0) & (q == 0)] = 180.0  # flat: xdem/GDAL convention
    return asp


def slope(dem, res: float, edge: str = "extrapolate") -> np.ndarray:
    """Slope in degrees (Horn 1981)."""
    p, q = horn_gradient(dem, res, edge)
    return _nan_spread(dem, _slope_from(p, q))


def aspect(dem, res: float = 1.0, edge: str = "extrapolate") -> np.ndarray:
    """Aspect in degrees clockwise from north, direction of steepest descent (Horn 1981); 180 where flat."""
    p, q = horn_gradient(dem, res, edge)
    return _nan_spread(dem, _aspect_from(p, q))


def terrain_ruggedness_index(dem, edge: str = "extrapolate") -> np.ndarray:
    """Riley et al. (1999) TRI: sqrt of the sum of squared differences to the 8 neighbours (m)."""
    z = _neighbours(dem, edge)
    c = z[4]
    acc = np.zeros_like(c)
    for k, zk in enumerate(z):
        if k != 4:
            acc += (zk - c) ** 2
    return _nan_spread(dem, np.sqrt(acc))


def _planform(p, q, r, s, t):
    g2 = p * p + q * q
    with np.errstate(divide="ignore", invalid="ignore"):
        c = -(r * q * q - 2 * s * p * q + t * p * p) / g2**1.5 * 100.0
    return np.where(g2 < _XDEM_FLAT, 0.0, c)


def _profile(p, q, r, s, t, method):
    g2 = p * p + q * q
    num = -(r * p * p + 2 * s * p * q + t * q * q)
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "geometric":
            c = num / (g2 * np.sqrt((1 + g2) ** 3))
        elif method == "directional":
            c = num / g2
        else:
            raise ValueError(f"method must be 'geometric' or 'directional', got {method!r}")
    return np.where(g2 == 0, 0.0, c * 100.0)


def planform_curvature(dem, res: float, edge: str = "extrapolate") -> np.ndarray:
    """Planform (contour) curvature in m-1 x 100, as xdem 0.2.3 with ``surface_fit="ZevenbergThorne"``.

    Identical for xdem's geometric and directional methods. Explodes like 1/gradient on flat ground.
    """
    return _nan_spread(dem, _planform(*zt_derivatives(dem, res, edge)))


def profile_curvature(dem, res: float, method: str = "geometric", edge: str = "extrapolate") -> np.ndarray:
    """Profile (slope-line) curvature in m-1 x 100, as xdem 0.2.3 with ``surface_fit="ZevenbergThorne"``.

    ``method`` is xdem's ``curv_method``: "geometric" (Evans 1979, xdem default) or "directional" (Krcho 1973).
    """
    return _nan_spread(dem, _profile(*zt_derivatives(dem, res, edge), method))


def gaussian_kernel3(sigma: float = 1.0) -> np.ndarray:
    """Normalised 3x3 Gaussian kernel."""
    d = np.arange(-1, 2)
    k = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2.0 * sigma**2))
    return k / k.sum()


def smooth_dem(dem, sigma: float | None = 1.0) -> np.ndarray:
    """NaN-aware 3x3 Gaussian smoothing (normalised convolution).

    NaN cells and cells beyond the border are left out and the kernel weights renormalised over the rest;
    NaN cells stay NaN. ``sigma`` 0 or None returns an unsmoothed float64 copy.
    """
    a = np.array(dem, dtype=np.float64)
    if not sigma:
        return a
    k = gaussian_kernel3(sigma)
    valid = np.isfinite(a)
    filled = np.where(valid, a, 0.0)
    num = ndimage.correlate(filled, k, mode="constant", cval=0.0)
    den = ndimage.correlate(valid.astype(np.float64), k, mode="constant", cval=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~valid] = np.nan
    return out


def terrain_attributes(dem, res: float, sigma: float | None = 1.0, curvature_clip: float | None = 50.0,
                       flat_slope_deg: float | None = 1.0, profile_method: str = "geometric",
                       edge: str = "extrapolate") -> dict:
    """Smooth the DEM (DL4GAM: 3x3 Gaussian, sigma 1), then derive every terrain channel of the cube.

    Returns a dict of float64 arrays: ``dem_smoothed``, ``slope`` (deg), ``aspect`` (deg),
    ``aspect_sin``, ``aspect_cos``, ``tri`` (m), ``curv_planform``, ``curv_profile`` (m-1 x 100).

    Planform curvature is unbounded where the slope tends to 0, so:
    - where the (Horn) slope is below ``flat_slope_deg`` degrees it is set to 0 (no contour direction;
      None disables this and keeps xdem's own rule, 0 only where p^2 + q^2 < 1e-14);
    - both curvatures are then clipped to +-``curvature_clip`` (None: no clipping).
    """
    z = smooth_dem(dem, sigma)
    p, q = horn_gradient(z, res, edge)
    slp = _nan_spread(z, _slope_from(p, q))
    asp = _nan_spread(z, _aspect_from(p, q))
    zp, zq, r, s, t = zt_derivatives(z, res, edge)
    plan = _nan_spread(z, _planform(zp, zq, r, s, t))
    prof = _nan_spread(z, _profile(zp, zq, r, s, t, profile_method))
    if flat_slope_deg is not None and flat_slope_deg > 0:
        plan[slp < flat_slope_deg] = 0.0
    if curvature_clip is not None:
        np.clip(plan, -curvature_clip, curvature_clip, out=plan)
        np.clip(prof, -curvature_clip, curvature_clip, out=prof)
    rad = np.radians(asp)
    return {
        "dem_smoothed": z,
        "slope": slp,
        "aspect": asp,
        "aspect_sin": np.sin(rad),
        "aspect_cos": np.cos(rad),
        "tri": terrain_ruggedness_index(z, edge),
        "curv_planform": plan,
        "curv_profile": prof,
    }
