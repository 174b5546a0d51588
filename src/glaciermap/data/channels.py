"""Channel registry: every layer a feature cube can hold and a model can take as input.

Each :class:`Channel` declares what it is computed from (a raw band of a source, an index or ratio over
common band names, a terrain attribute of the DEM, a texture of a band, a raster source), the sources it
needs, its fill rule for missing pixels, its normalisation for the model, units and a description. The
computations reuse :mod:`glaciermap.data.indices` and :mod:`glaciermap.data.terrain`; ``CHANNEL_SETS["dl4gam"]`` is
the 16 DL4GAM input channels, in model order, its curvatures with the definitions of the published method
(xdem 0.1.0: ``curv_planform_ref``, ``curv_profile_ref``; ``curv_planform``/``curv_profile`` are xdem 0.2.3's).

Two entry points for the rest of the pipeline:

- :func:`validate_channels` raises :class:`ChannelError` naming unknown channels (and the known ones), so a
  configuration check can stop a run before any job;
- :func:`cube_layers` gives, for a list of model channels, the layers a cube must hold and the sources they
  need (only those are built).

Fill rules (``fill``, applied when the cube is built): ``nan`` keeps missing pixels as NaN, ``zero`` sets
them to 0, ``nearest`` fills them with the nearest valid value (the DEM, after its gap check), ``fail``
skips the glacier (GlacierInputError) when the layer has a missing pixel. What training does with the NaN
left in a patch is ``patch_fill``: ``mean`` (the patch mean of the channel, the training mean if the whole
patch is NaN) or ``zero``.

Normalisation (``normalisation``): ``standardise`` ((v - mean) / std over the training cubes), ``divide``
(v / ``scale``, e.g. slope / 90 as DL4GAM) or ``none`` (already on a unit scale).

Parametrised names: ``ratio_<a>_<b>`` (a / b over common band names, e.g. ``ratio_red_swir1``) and
``glcm_dissimilarity_<band>_w<window>`` (e.g. ``glcm_dissimilarity_B08_w7``) are channels too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

#: Sentinel-2 L2A bands in file order, and their common names (STAC eo:common_name, "swir1" for swir16 ...).
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
COMMON_BANDS = {"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
                "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "swir1": "B11", "swir2": "B12"}
_COMMON_OF = {b: c for c, b in COMMON_BANDS.items()}
_BAND_INFO = {
    "B01": ("coastal aerosol", 443, 60), "B02": ("blue", 490, 10), "B03": ("green", 560, 10),
    "B04": ("red", 665, 10), "B05": ("red edge 1", 705, 20), "B06": ("red edge 2", 740, 20),
    "B07": ("red edge 3", 783, 20), "B08": ("near infrared", 842, 10), "B8A": ("narrow near infrared", 865, 20),
    "B09": ("water vapour", 945, 60), "B11": ("shortwave infrared 1", 1610, 20), "B12": ("shortwave infrared 2", 2190, 20),
}

#: Sources a channel can need; build_cube reads only the sources of the layers it builds.
SOURCES = {
    "sentinel2": "the chosen Sentinel-2 L2A scene (acquire + select), all 12 bands and SCL",
    "sun": "sun position at the scene's acquisition time over the cube centre (params sun_azimuth_deg / "
           "sun_elevation_deg override it)",
    "dem": "the DEM (config dem), bilinear onto the cube grid",
    "dhdt": "the epoch's dh/dt map (config dhdt), bilinear onto the cube grid",
    "velocity": "a surface velocity raster: band 1 vx, band 2 vy (m year-1), bilinear onto the cube grid",
    "coherence": "an InSAR coherence raster (band 1, 0..1), bilinear onto the cube grid",
    "temperature": "a surface temperature raster (band 1, K), bilinear onto the cube grid",
}
#: The SOURCES that are rasters named in the config's ``channel_sources`` (velocity: band 1 vx, band 2 vy).
RASTER_SOURCES = ("velocity", "coherence", "temperature")
FILL_RULES = ("nan", "zero", "nearest", "fail")
PATCH_FILLS = ("mean", "zero")
NORMALISATIONS = ("standardise", "divide", "none")
REFLECTANCE_SCALE = 1e-4
_CURV_UNITS = "hm-1"  # 1/(100 m): xdem's "m-1 x 100"


class MissingInputError(KeyError):
    """A channel computation lacks an input (a band the scene does not have, a source not given)."""

    def __str__(self):
        return str(self.args[0]) if self.args else "missing input"


class ChannelError(ValueError):
    """Unknown (or repeated) channel names; ``unknown`` lists them, the message names the known ones."""

    def __init__(self, unknown, known, what: str = "channel(s)", duplicates=()):
        self.unknown, self.known, self.duplicates = list(unknown), list(known), list(duplicates)
        parts = []
        if self.unknown:
            parts.append(f"unknown {what} {', '.join(self.unknown)}")
        if self.duplicates:
            parts.append(f"repeated {what} {', '.join(self.duplicates)}")
        super().__init__("; ".join(parts) + f". Known channels: {', '.join(self.known)} (and the patterns "
                         "ratio_<a>_<b> over " + ", ".join(COMMON_BANDS) + ", glcm_dissimilarity_<band>_w<odd window>)")


@dataclass(frozen=True)
class Channel:
    """One named channel: how it is computed, what it needs, how it is filled and normalised."""

    name: str
    kind: str                  # band | index | ratio | terrain | texture | raster
    inputs: tuple              # what it is computed from: band names, common band names, terrain quantities
    sources: tuple             # keys of SOURCES it needs
    units: str
    long_name: str
    description: str
    fill: str = "nan"          # FILL_RULES, applied when the cube is built
    normalisation: str = "standardise"
    scale: float | None = None  # the constant of normalisation "divide"
    patch_fill: str = "mean"   # PATCH_FILLS: what training does with NaN left in a patch
    quantise: bool = False     # stored as the value of its uint16 digital number (x 1e-4): reflectance bands
    stored: bool = True        # False: not a cube layer, computed from its ``inputs`` (stored layers) when a cube
                               # is loaded for a model, with parameters fitted per fold (the PCA components)
    compute: Callable | None = field(default=None, compare=False, repr=False)  # (LayerContext) -> 2-D array

    def __post_init__(self):
        if self.fill not in FILL_RULES:
            raise ValueError(f"channel {self.name}: fill must be one of {FILL_RULES}, got {self.fill!r}")
        if self.patch_fill not in PATCH_FILLS:
            raise ValueError(f"channel {self.name}: patch_fill must be one of {PATCH_FILLS}, got {self.patch_fill!r}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"channel {self.name}: normalisation must be one of {NORMALISATIONS}")
        if (self.normalisation == "divide") != (self.scale is not None):
            raise ValueError(f"channel {self.name}: a scale goes with (and only with) normalisation 'divide'")
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown:
            raise ValueError(f"channel {self.name}: unknown source(s) {unknown}")


# ---------------------------------------------------------------------------------------------------- context


class LayerContext:
    """What the channel computations draw on, each piece computed at most once.

    ``bands``: S2 band name -> reflectance (float32, NaN = no data); ``dem``: the gap-filled DEM on the
    grid; ``dhdt``: the dh/dt map; ``rasters``: source -> loader ``(n_bands) -> [n, H, W]`` (read on first
    use); ``sun``: (azimuth, elevation) in degrees or a callable giving them; ``params``: the features
    parameters (dem_smoothing_sigma, curvature_clip, planform_flat_slope_deg).
    """

    def __init__(self, resolution: float, bands=None, dem=None, dhdt=None, rasters=None, sun=None, params=None):
        self.resolution = float(resolution)
        self.bands = bands or {}
        self._dem, self._dhdt = dem, dhdt
        self._rasters = rasters or {}
        self._raster_cache: dict = {}
        self._sun = sun
        self.params = dict(params or {})
        self._terrain = None

    def band(self, name: str) -> np.ndarray:
        """A band by common name (``red``) or Sentinel-2 name (``B04``); ``bands`` may be keyed either way."""
        if name in self.bands:
            return self.bands[name]
        common = _COMMON_OF.get(name, name)
        s2 = COMMON_BANDS.get(name, name)
        for k in (common, s2):
            if k in self.bands:
                return self.bands[k]
        raise MissingInputError(f"the scene has no band {name} ({common}); it has {', '.join(self.bands)}")

    @property
    def dem(self) -> np.ndarray:
        if self._dem is None:
            raise MissingInputError("no DEM is available to the channel computation")
        return self._dem

    @property
    def dhdt(self) -> np.ndarray:
        if self._dhdt is None:
            raise MissingInputError("no dh/dt map is available to the channel computation")
        return self._dhdt

    @property
    def terrain(self) -> dict:
        """:func:`glaciermap.data.terrain.terrain_attributes` of the DEM with the features parameters (once)."""
        if self._terrain is None:
            from glaciermap.data import terrain

            p = self.params
            self._terrain = terrain.terrain_attributes(self.dem, self.resolution, sigma=p.get("dem_smoothing_sigma", 1.0),
                                                       curvature_clip=p.get("curvature_clip", 50.0),
                                                       flat_slope_deg=p.get("planform_flat_slope_deg", 1.0))
        return self._terrain

    @property
    def sun(self) -> tuple[float, float]:
        if callable(self._sun):
            self._sun = self._sun()
        if self._sun is None:
            raise MissingInputError("no sun position is available to the channel computation")
        return tuple(float(v) for v in self._sun)

    def raster(self, source: str) -> np.ndarray:
        if source not in self._raster_cache:
            if source not in self._rasters:
                raise MissingInputError(f"no '{source}' raster is available to the channel computation")
            self._raster_cache[source] = np.asarray(self._rasters[source]())
        return self._raster_cache[source]


# ---------------------------------------------------------------------------------------------------- registry

REGISTRY: dict[str, Channel] = {}


def register(channel: Channel) -> Channel:
    """Add (or replace) a channel of the registry."""
    REGISTRY[channel.name] = channel
    return channel


def _band_channel(b: str) -> Channel:
    name, wl, res = _BAND_INFO[b]
    return Channel(b, "band", (b,), ("sentinel2",), "1", f"Sentinel-2 {b} ({name}) surface reflectance",
                   f"L2A bottom-of-atmosphere reflectance of the chosen scene, {wl} nm, native {res} m, bilinear onto "
                   "the 10 m grid; the value of its uint16 digital number x 1e-4 (as the scene file stores it), NaN = no data; "
                   f"from another optical source (imagery: landsat, ...) its {_COMMON_OF[b]} band",
                   quantise=True, compute=lambda ctx, b=b: ctx.band(b))


for _b in S2_BANDS:
    register(_band_channel(_b))

#: Bands by common name, for any optical imagery source (Sentinel-2, Landsat, a user's sensor): the
#: acquisition stores every band under its common name, so a model over these names runs on any sensor.
COMMON_BAND_CHANNELS = {"coastal": "coastal aerosol", "blue": "blue", "green": "green", "red": "red",
                        "nir": "near infrared", "swir1": "shortwave infrared 1 (~1.6 um)",
                        "swir2": "shortwave infrared 2 (~2.2 um)"}


def _common_band_channel(c: str, what: str) -> Channel:
    return Channel(c, "band", (c,), ("sentinel2",), "1", f"{what} reflectance of the imagery source",
                   f"the imagery source's {c} band (Sentinel-2 {COMMON_BANDS[c]}, Landsat TM/ETM+/OLI {c}, ...) as "
                   "physical reflectance, bilinear onto the cube grid, float32 as decoded (not quantised to "
                   "Sentinel-2's 1e-4), NaN = no data", compute=lambda ctx, c=c: ctx.band(c))


for _c, _what in COMMON_BAND_CHANNELS.items():
    register(_common_band_channel(_c, _what))
register(Channel("thermal", "band", ("thermal",), ("sentinel2",), "K", "surface temperature of the imagery source",
                 "the imagery source's thermal band as surface temperature (Landsat C2 L2 ST_B6 / ST_B10: "
                 "DN x 0.00341802 + 149 K), bilinear onto the cube grid, NaN = no data",
                 compute=lambda ctx: ctx.band("thermal")))


def _nd(name, a, b, long_name, fn_name):
    def compute(ctx):
        from glaciermap.data import indices

        return getattr(indices, fn_name)(ctx.band(a), ctx.band(b))

    ba, bb = COMMON_BANDS[a], COMMON_BANDS[b]
    return register(Channel(name, "index", (a, b), ("sentinel2",), "1", long_name,
                            f"({a} - {b}) / ({a} + {b}) = ({ba} - {bb}) / ({ba} + {bb}), NaN where the sum is 0 or a "
                            "band has no data, clipped to [-1, 1]", normalisation="none", compute=compute))


# argument order of the indices functions: ndsi(green, swir), ndwi(green, nir), ndvi(nir, red), ndgi(green, red)
_nd("ndsi", "green", "swir1", "normalised difference snow index", "ndsi")
_nd("ndwi", "green", "nir", "normalised difference water index (McFeeters)", "ndwi")
_nd("ndvi", "nir", "red", "normalised difference vegetation index", "ndvi")
_nd("ndgi", "green", "red", "normalised difference glacier index", "ndgi")


def _ratio_channel(a: str, b: str) -> Channel:
    def compute(ctx):
        from glaciermap.data import indices

        return indices.band_ratio(ctx.band(a), ctx.band(b))

    return Channel(f"ratio_{a}_{b}", "ratio", (a, b), ("sentinel2",), "1", f"band ratio {a} / {b}",
                   f"{a} / {b} = {COMMON_BANDS[a]} / {COMMON_BANDS[b]} reflectance, NaN where {b} is 0 or a band has "
                   "no data", compute=compute)


register(_ratio_channel("red", "swir1"))

_TERRAIN = {
    "slope": ("degree", "terrain slope",
              "Horn (1981) slope of the DEM smoothed with a 3x3 Gaussian (sigma dem_smoothing_sigma px); "
              "DL4GAM divides it by 90 instead of standardising", dict(normalisation="divide", scale=90.0)),
    "aspect_sin": ("1", "sine of terrain aspect",
                   "sin(aspect), aspect = downslope direction clockwise from north (Horn 1981, smoothed DEM; flat "
                   "cells have aspect 180 deg); +1 = facing east", dict(normalisation="none")),
    "aspect_cos": ("1", "cosine of terrain aspect", "cos(aspect), as aspect_sin; +1 = facing north",
                   dict(normalisation="none")),
    "tri": ("m", "terrain ruggedness index",
            "Riley et al. (1999): sqrt of the summed squared elevation differences to the 8 neighbours, smoothed DEM", {}),
    "curv_planform": (_CURV_UNITS, "planform curvature",
                      "contour curvature (Zevenbergen & Thorne 1987 fit, xdem 0.2.3 formula, 1/(100 m), positive "
                      "convex) of the smoothed DEM; set to 0 where slope < planform_flat_slope_deg and clipped to "
                      "+-curvature_clip (dataset attributes)", {}),
    "curv_profile": (_CURV_UNITS, "profile curvature",
                     "geometric slope-line curvature (Zevenbergen & Thorne 1987 fit, xdem 0.2.3 formula, 1/(100 m), "
                     "positive convex) of the smoothed DEM; clipped to +-curvature_clip", {}),
    # DL4GAM's reference implementation (xdem 0.1.0 definitions): the DL4GAM channel set uses these
    "curv_planform_ref": (_CURV_UNITS, "planform curvature (xdem 0.1.0, DL4GAM reference)",
                          "minus the second derivative of elevation along the contour, -(r q^2 - 2 s p q + t p^2) / "
                          "(p^2 + q^2) (Zevenbergen & Thorne 1987 fit, xdem 0.1.0 formula, 1/(100 m), positive "
                          "convex) of the smoothed DEM: curv_planform x |grad z|, bounded on flat ground (0 only where "
                          "the gradient is exactly 0; no flat-slope rule); clipped to +-curvature_clip", {}),
    "curv_profile_ref": (_CURV_UNITS, "profile curvature (xdem 0.1.0, DL4GAM reference)",
                         "the second derivative of elevation along the slope line, (r p^2 + 2 s p q + t q^2) / "
                         "(p^2 + q^2) (Zevenbergen & Thorne 1987 fit, xdem 0.1.0 formula, 1/(100 m), positive "
                         "CONCAVE: opposite sign to curv_profile, = -curv_profile x (1 + p^2 + q^2)^1.5 before "
                         "clipping) of the smoothed DEM; 0 where the gradient is exactly 0; clipped to "
                         "+-curvature_clip", {}),
}

register(Channel("dem", "terrain", ("elevation",), ("dem",), "m", "surface elevation",
                 "DEM bilinearly reprojected onto the cube grid (not smoothed); gaps filled with the nearest valid "
                 "value (count in the dem_nan_filled attribute)", fill="nearest", compute=lambda ctx: ctx.dem))
for _k, (_u, _ln, _d, _kw) in _TERRAIN.items():
    register(Channel(_k, "terrain", ("elevation",), ("dem",), _u, _ln, _d, **_kw,
                     compute=lambda ctx, k=_k: ctx.terrain[k]))


def _hillshade(ctx):
    from glaciermap.data import terrain

    az, el = ctx.sun
    return terrain.hillshade(ctx.terrain["dem_smoothed"], ctx.resolution, az, el)


def _cast_shadow(ctx):
    from glaciermap.data import terrain

    az, el = ctx.sun
    return terrain.cast_shadow(ctx.dem, ctx.resolution, az, el).astype(np.float32)


register(Channel("hillshade", "terrain", ("elevation", "sun azimuth", "sun elevation"), ("dem", "sun"), "1",
                 "hillshade", "cosine of the angle between the sun direction and the surface normal of the smoothed "
                 "DEM (Horn 1981 gradient), clipped to [0, 1]; sun at the scene's acquisition time",
                 normalisation="none", compute=_hillshade))
register(Channel("cast_shadow", "terrain", ("elevation", "sun azimuth", "sun elevation"), ("dem", "sun"), "1",
                 "cast shadow", "1 = the terrain between the pixel and the sun rises above the sun ray (ray marching "
                 "on the DEM at 1/2 pixel steps, bilinear), 0 = sunlit; sun at the scene's acquisition time",
                 normalisation="none", compute=_cast_shadow))
register(Channel("dhdt", "raster", ("dh/dt",), ("dhdt",), "m year-1", "surface elevation change rate",
                 "dh/dt map of the epoch bilinearly reprojected onto the cube grid; NaN where the map has no data "
                 "(training fills it with 0)", patch_fill="zero", compute=lambda ctx: ctx.dhdt))
register(Channel("velocity", "raster", ("vx", "vy"), ("velocity",), "m year-1", "surface velocity magnitude",
                 "sqrt(vx^2 + vy^2) of the velocity raster (bands 1 and 2) reprojected bilinearly onto the cube grid; "
                 "NaN where it has no data (training fills it with 0)", patch_fill="zero",
                 compute=lambda ctx: np.hypot(ctx.raster("velocity")[0], ctx.raster("velocity")[1])))
register(Channel("coherence", "raster", ("coherence",), ("coherence",), "1", "InSAR coherence",
                 "interferometric coherence (band 1) reprojected bilinearly onto the cube grid; NaN where it has no data",
                 compute=lambda ctx: ctx.raster("coherence")[0]))
register(Channel("surface_temperature", "raster", ("temperature",), ("temperature",), "K", "surface temperature",
                 "land surface temperature: a raster source's band 1 reprojected bilinearly onto the cube grid, or, from a "
                 "landsat_c2l2 source, the ST band (K) of the usable dates nearest to the image date averaged per pixel "
                 "with cloud/shadow/fill masked (items and dates in the cube's temperature_* attributes); NaN where it "
                 "has no data",
                 compute=lambda ctx: ctx.raster("temperature")[0]))

#: Tasseled Cap transformation of Sentinel-2 MSI: Nedkov (2017), "Orthogonal transformation of segmented images
#: from the satellite Sentinel-2", Comptes rendus de l'Academie bulgare des Sciences 70(5), 687-692, Table 1.
#: CryoNet (seed 003) uses brightness, greenness and wetness without stating coefficients. Nedkov's coefficients are
#: for 13 L1C top-of-atmosphere bands; the cubes hold the 12 L2A surface-reflectance bands (no B10, whose
#: coefficients are 0.0009, -0.0009, 0.0003: left out), so these are the TOA coefficients applied to surface
#: reflectance, an approximation any L2A user of them makes.
TASSELED_CAP = {
    "brightness": {"B01": 0.0356, "B02": 0.0822, "B03": 0.1360, "B04": 0.2611, "B05": 0.2964, "B06": 0.3338,
                   "B07": 0.3877, "B08": 0.3895, "B8A": 0.4750, "B09": 0.0949, "B11": 0.3882, "B12": 0.1366},
    "greenness": {"B01": -0.0635, "B02": -0.1128, "B03": -0.1680, "B04": -0.3480, "B05": -0.3303, "B06": 0.0852,
                  "B07": 0.3302, "B08": 0.3165, "B8A": 0.3625, "B09": 0.0467, "B11": -0.4578, "B12": -0.4064},
    "wetness": {"B01": 0.0649, "B02": 0.1363, "B03": 0.2802, "B04": 0.3072, "B05": 0.5288, "B06": 0.1379,
                "B07": -0.0001, "B08": -0.0807, "B8A": -0.1389, "B09": -0.0302, "B11": -0.4064, "B12": -0.5602},
}


def _tasseled_cap_channel(component: str) -> Channel:
    coef = TASSELED_CAP[component]

    def compute(ctx):
        out = None
        for b, c in coef.items():
            v = np.asarray(ctx.band(b), np.float32) * np.float32(c)
            out = v if out is None else out + v
        return out

    return register(Channel(f"tc_{component}", "tasseled_cap", tuple(coef), ("sentinel2",), "1",
                            f"Tasseled Cap {component}",
                            f"sum of the 12 Sentinel-2 reflectance bands x Nedkov (2017) {component} coefficients "
                            "(TOA coefficients applied to L2A surface reflectance; B10 left out); NaN where a band has "
                            "no data", compute=compute))


for _tc in TASSELED_CAP:
    _tasseled_cap_channel(_tc)

#: Principal components of the 12 Sentinel-2 bands, fitted per fold on the training cubes only (not stored in
#: the cubes: computed from the stored bands when a cube is loaded for a model, with the fold's components).
PCA_INPUTS = list(S2_BANDS)
N_PCA = 3
for _k in range(1, N_PCA + 1):
    register(Channel(f"pca{_k}", "pca", tuple(PCA_INPUTS), ("sentinel2",), "1",
                     f"principal component {_k} of the Sentinel-2 bands",
                     f"projection of the 12 reflectance bands (centred, not scaled) on the fold's principal component {_k} "
                     "(scikit-learn PCA fitted on the fold's training cubes only, a pixel subsample; the components and "
                     "explained variance are in the fold's normalisation.json); NaN where a band has no data",
                     stored=False))


def projection_channels(channels) -> list[str]:
    """The channels of ``channels`` computed from fold-fitted components (not stored in the cubes)."""
    return [c for c in channels if not get_channel(c).stored]


def stored_layers(channels) -> list[str]:
    """The cube layers ``channels`` need: stored channels as they are, a projection channel's inputs after them."""
    out = [c for c in channels if get_channel(c).stored]
    for c in channels:
        if not get_channel(c).stored:
            out += [i for i in get_channel(c).inputs if i not in out]
    return out


#: Texture defaults: GLCM of the band quantised to ``levels`` grey levels over [0, ``vmax``] reflectance.
GLCM_LEVELS = 32
GLCM_VMAX = 1.0


def _glcm_channel(band: str, window: int) -> Channel:
    b = COMMON_BANDS.get(band, band)
    if b not in S2_BANDS:
        raise KeyError(band)
    if window < 3 or window % 2 == 0:
        raise KeyError(f"window {window}")

    def compute(ctx):
        from glaciermap.data.indices import glcm_dissimilarity

        return glcm_dissimilarity(ctx.band(b), window=window, levels=GLCM_LEVELS, vmax=GLCM_VMAX)

    return Channel(f"glcm_dissimilarity_{b}_w{window}", "texture", (b,), ("sentinel2",), "1",
                   f"GLCM dissimilarity of {b}",
                   f"grey-level co-occurrence dissimilarity sum P(i, j) |i - j| (scikit-image graycomatrix/graycoprops "
                   f"definition, symmetric, normed, distance 1, mean over 0/45/90/135 deg) in the {window} x {window} "
                   f"window around the pixel, {b} quantised to {GLCM_LEVELS} levels over [0, {GLCM_VMAX:g}]; NaN where "
                   "the window reaches no data or the cube edge", compute=compute)


register(_glcm_channel("B08", 7))

_PATTERNS = [(re.compile(r"ratio_([a-z0-9]+)_([a-z0-9]+)"), lambda m: _ratio_from_names(m.group(1), m.group(2))),
             (re.compile(r"glcm_dissimilarity_(\w+?)_w(\d+)"), lambda m: _glcm_channel(m.group(1), int(m.group(2))))]


def _ratio_from_names(a, b):
    if a not in COMMON_BANDS or b not in COMMON_BANDS:
        raise KeyError(a if a not in COMMON_BANDS else b)
    return _ratio_channel(a, b)


#: Named channel lists. "dl4gam": the 16 DL4GAM input channels in model order, with the curvatures as the
#: published method computed them (xdem 0.1.0: ``curv_planform_ref``, ``curv_profile_ref``; docs/terrain.md).
CHANNEL_SETS = {
    "dl4gam": ["B04", "B03", "B02", "B08", "B11", "ndsi", "ndwi", "ndvi", "dem", "slope", "aspect_sin", "aspect_cos",
               "tri", "curv_planform_ref", "curv_profile_ref", "dhdt"],
}
CHANNEL_SETS["dl4gam_no_dhdt"] = [c for c in CHANNEL_SETS["dl4gam"] if c != "dhdt"]
#: "cryonet": the 30 layers of the debris-covered glacier method (CryoNet, seed 003, which says 30 without listing
#: them): 12 Sentinel-2 bands, 4 indices, land surface temperature, elevation, slope, aspect (as sin and cos),
#: GLCM dissimilarity, velocity magnitude, InSAR coherence, 3 principal components (fitted per fold) and the
#: Tasseled Cap brightness, greenness and wetness.
CHANNEL_SETS["cryonet"] = (S2_BANDS + ["ndvi", "ndsi", "ndwi", "ndgi", "surface_temperature", "dem", "slope",
                                       "aspect_sin", "aspect_cos", "glcm_dissimilarity_B08_w7", "velocity",
                                       "coherence", "pca1", "pca2", "pca3", "tc_brightness", "tc_greenness",
                                       "tc_wetness"])
#: The layers a cube holds by default: all 12 bands, the 3 indices, the DEM and terrain (both curvature
#: definitions, so a default cube holds the DL4GAM set), dh/dt.
DEFAULT_LAYERS = S2_BANDS + ["ndsi", "ndwi", "ndvi", "dem", "slope", "aspect_sin", "aspect_cos", "tri",
                             "curv_planform", "curv_profile", "curv_planform_ref", "curv_profile_ref", "dhdt"]


def known_channels() -> list[str]:
    return list(REGISTRY)


def get_channel(name: str) -> Channel:
    """The registry entry of ``name`` (fixed names, then the ratio_/glcm_ patterns); ChannelError if unknown."""
    name = str(name)
    if name in REGISTRY:
        return REGISTRY[name]
    for pat, make in _PATTERNS:
        m = pat.fullmatch(name)
        if m:
            try:
                return make(m)
            except KeyError:
                break
    raise ChannelError([name], known_channels())


def validate_channels(names) -> list[str]:
    """``names`` as a list when every one is a known channel and none is repeated; ChannelError otherwise.

    A name of a channel set (``CHANNEL_SETS``) is not a channel: use :func:`resolve_channels` for those.
    """
    names = [str(n) for n in names]
    unknown = []
    for n in names:
        try:
            get_channel(n)
        except ChannelError:
            unknown.append(n)
    seen, dup = set(), []
    for n in names:
        if n in seen and n not in dup:
            dup.append(n)
        seen.add(n)
    if unknown or dup:
        raise ChannelError(unknown, known_channels(), duplicates=dup)
    if not names:
        raise ChannelError([], known_channels(), what="channel(s): the list is empty;")
    return names


def resolve_channels(spec) -> list[str]:
    """A channel list from a set name (``"dl4gam"``), None (the DL4GAM set) or a list of names; validated."""
    if spec is None:
        return list(CHANNEL_SETS["dl4gam"])
    if isinstance(spec, str):
        if spec in CHANNEL_SETS:
            return list(CHANNEL_SETS[spec])
        spec = [spec]
    return validate_channels(spec)


#: Layers the other steps read from every cube, whatever the model's channels: the band-ratio baseline and
#: the method comparison (B04, B11, B02) and the glacier panels (B04, B03, B02, B11, B08).
READER_LAYERS = ["B04", "B03", "B02", "B08", "B11"]


def cube_layers(channels, extra=()) -> tuple[list[str], list[str]]:
    """(layers a cube must hold, sources they need) for the model channels ``channels`` (validated).

    Every model channel is a stored layer (a fold-fitted projection channel, ``pca1``: the layers it is computed
    from instead) (computed once when the cube is built, read as it is in
    training and inference), in channel order, then those of ``extra`` not among them (the workflow passes
    :data:`READER_LAYERS`); sources in SOURCES order.
    """
    layers = stored_layers(validate_channels(channels))
    layers += [c for c in stored_layers(validate_channels(extra)) if c not in layers] if len(extra) else []
    need = {s for c in layers for s in get_channel(c).sources}
    return layers, [s for s in SOURCES if s in need]


def sources_of(layers) -> list[str]:
    """Sources the layers need, in SOURCES order."""
    return cube_layers(layers)[1]


def compute_layer(name: str, ctx: LayerContext) -> np.ndarray:
    """One layer as float32 (before the fill rule and the reflectance quantisation)."""
    ch = get_channel(name)
    if ch.compute is None:
        raise ValueError(f"channel {name} is not a cube layer: it is computed per fold from {', '.join(ch.inputs)}")
    return np.asarray(ch.compute(ctx), dtype=np.float32)


def quantise_reflectance(v) -> np.ndarray:
    """Reflectance as the value of its uint16 digital number, float32, NaN = no data (DN 0).

    Exactly the value a cube that stored the band as uint16 x 1e-4 (``_FillValue`` 0) gave back when read,
    so the float32 layer stack holds the numbers the former uint16 variables did. xarray's encoder divided
    by the scale in the array's own float type (float32 for the cube's bands), rounded half to even and
    cast; the reader multiplied the DN by 1e-4 in float64 and training cast that to float32.
    """
    v = np.asarray(v)
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(np.float64)
    with np.errstate(invalid="ignore"):
        scaled = v / REFLECTANCE_SCALE          # in v's float type, as xarray's CFScaleOffsetCoder
        dn = np.around(np.where(np.isnan(scaled), 0, scaled)).astype(np.uint16)
    out = (dn.astype(np.float64) * REFLECTANCE_SCALE).astype(np.float32)
    out[dn == 0] = np.nan
    return out


def apply_fill(name: str, arr: np.ndarray) -> tuple[np.ndarray, int]:
    """The channel's fill rule on ``arr``: (filled array, number of pixels filled); ``fail`` raises ValueError."""
    rule = get_channel(name).fill
    bad = ~np.isfinite(arr)
    n = int(bad.sum())
    if n == 0 or rule == "nan":
        return arr, 0
    if rule == "zero":
        return np.where(bad, np.float32(0), arr).astype(arr.dtype), n
    if rule == "fail":
        raise ValueError(f"layer {name} has {n} missing pixel(s) and its fill rule is 'fail'")
    from scipy.ndimage import distance_transform_edt

    if n == arr.size:
        raise ValueError(f"layer {name}: nothing to fill from, every value is missing")
    idx = distance_transform_edt(bad, return_distances=False, return_indices=True)
    return arr[tuple(idx)], n


def layer_attrs(name: str) -> dict:
    """long_name, units and description of a layer (per-band coordinates of the cube)."""
    ch = get_channel(name)
    return {"long_name": ch.long_name, "units": ch.units, "description": ch.description}


def describe(names=None) -> list[tuple]:
    """(name, kind, units, sources, fill, normalisation, description) rows of channels (all fixed ones by default)."""
    names = list(REGISTRY) if names is None else list(names)
    rows = []
    for n in names:
        c = get_channel(n)
        norm = f"divide by {c.scale:g}" if c.normalisation == "divide" else c.normalisation
        rows.append((n, c.kind, c.units, " ".join(c.sources), c.fill, norm, f"{c.long_name}: {c.description}"))
    return rows


def channels_markdown(names=None) -> str:
    """:func:`describe` as a Markdown table (README)."""
    rows = ["| channel | kind | units | sources | fill | normalisation | description |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    rows += ["| `" + r[0] + "` | " + " | ".join(r[1:]) + " |" for r in describe(names)]
    return "\n".join(rows)
