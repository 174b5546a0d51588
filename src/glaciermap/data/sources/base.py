"""The common ground of every source kind: config parsing, band specs, mask decoding and reading onto a grid.

A source kind is a subclass of :class:`Source` (scenes from STAC items: :class:`ItemSource`). It declares
its default bands (:class:`BandSpec`), its mask layer (:class:`MaskSpec`) and the config keys it accepts;
this module parses and checks a user's config against those declarations (:class:`SourceConfigError`
before any job runs) and reads bands onto a :class:`~glaciermap.data.grid.CubeGrid` with rasterio.

Reading is done in two steps for every file: the part of the file that covers the grid is read on the
file's own grid and *decoded there* (digital numbers to physical values, fill to NaN, QA bits or scene
classes to booleans), then it is warped onto the target grid with ``rasterio.warp.reproject`` using the
band's resampling (bilinear for continuous values, nearest for masks). Decoding before resampling keeps
fill values and bit fields out of any interpolation.
"""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import date, datetime
from typing import Any, ClassVar

import numpy as np

from glaciermap.data.grid import CubeGrid
from glaciermap.io import GlacierInputError

#: Resampling names accepted in configs (rasterio.enums.Resampling members that make sense here).
RESAMPLING = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode", "min", "max", "med")
#: Mask names every read returns.
MASK_NAMES = ("valid", "fill", "cloud", "shadow", "snow")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

# bits of the per-pixel mask code that is warped with nearest resampling
_FILL, _CLOUD, _SHADOW, _SNOW = 1, 2, 4, 8
_OUTSIDE = 255


class SourceConfigError(ValueError):
    """A source's config is wrong. ``str()`` is ``sources.<source>.<key>: <problem>``."""

    def __init__(self, source: str, key: str | None, problem: str):
        self.source = str(source)
        self.key = "" if key is None else str(key)
        self.problem = problem
        where = f"sources.{self.source}" + (f".{self.key}" if self.key else "")
        super().__init__(f"{where}: {problem}")


# --------------------------------------------------------------------------------------------------
# declarations
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BandSpec:
    """One band of a source, with everything needed to turn its digital numbers into physical values.

    ``physical = DN * scale + offset`` (``offset`` may be ``"auto"`` for Sentinel-2: see
    :func:`glaciermap.data.sources.sentinel2.s2_offset`); DN equal to ``nodata`` (and non-finite DN) become NaN;
    ``clip`` (lo, hi) clips the physical values. ``resolution`` is the native pixel size in metres
    (informational: the target grid decides the output resolution).
    """

    name: str
    asset: str
    common_name: str | None = None
    scale: float = 1.0
    offset: float | str = 0.0
    nodata: float | None = None
    resampling: str = "bilinear"
    resolution: float | None = None
    units: str = ""
    clip: tuple[float, float] | None = None
    quantity: str = "value"


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """A per-pixel mask layer: scene classes (``type='classes'``, e.g. Sentinel-2 SCL) or bit flags
    (``type='bits'``, e.g. Landsat QA_PIXEL). ``fill``/``cloud``/``shadow``/``snow`` list the classes or the
    bit numbers (0 = least significant) that mean each. Always read with nearest resampling."""

    asset: str
    type: str = "classes"
    fill: tuple[int, ...] = ()
    cloud: tuple[int, ...] = ()
    shadow: tuple[int, ...] = ()
    snow: tuple[int, ...] = ()

    def decode(self, raw: np.ndarray, ignore_bits: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
        """Booleans fill/cloud/shadow/snow of a raw mask layer (integers)."""
        raw = np.asarray(raw)
        if not np.issubdtype(raw.dtype, np.integer):
            finite = np.isfinite(raw)
            raw = np.where(finite, raw, 0).astype(np.int64)
        out = {}
        for what in ("fill", "cloud", "shadow", "snow"):
            values = [v for v in getattr(self, what) if not (self.type == "bits" and v in ignore_bits)]
            if not values:
                out[what] = np.zeros(raw.shape, bool)
            elif self.type == "bits":
                bits = np.uint64(sum(1 << int(b) for b in values))
                out[what] = (raw.astype(np.uint64) & bits) != 0
            else:
                out[what] = np.isin(raw, values)
        return out


@dataclasses.dataclass
class Masks:
    """Boolean masks on the target grid. ``valid`` = observed, not fill, not cloud, not cloud shadow and every
    requested band finite (snow is a valid observation of the surface)."""

    valid: np.ndarray
    fill: np.ndarray
    cloud: np.ndarray
    shadow: np.ndarray
    snow: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in MASK_NAMES}


@dataclasses.dataclass
class ReadResult:
    """What one read gives: ``bands`` (name as requested -> float32 physical values, NaN for fill/no data),
    ``masks`` (:class:`Masks`), ``has_cloud_mask`` (False: the source has no per-pixel cloud/shadow/snow mask,
    so those arrays are all False because nothing is *known*, not because the sky was clear) and ``attrs``
    (source, kind, item id, files read, year used, offsets, platform, ...)."""

    bands: dict[str, np.ndarray]
    masks: Masks
    has_cloud_mask: bool
    attrs: dict[str, Any]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.bands[name]


@dataclasses.dataclass(frozen=True)
class SunAngles:
    azimuth: float | None
    elevation: float | None


# --------------------------------------------------------------------------------------------------
# config parsing helpers (all raise SourceConfigError naming source and key)
# --------------------------------------------------------------------------------------------------

def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def check_keys(source: str, mapping: dict, allowed, prefix: str = "") -> None:
    for key in mapping:
        if key not in allowed:
            raise SourceConfigError(source, f"{prefix}{key}",
                                    f"unknown key; known keys: {', '.join(sorted(allowed))}")


def as_mapping(source: str, key: str, value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SourceConfigError(source, key, f"must be a mapping, got {type(value).__name__} {value!r}")
    return value


def as_number(source: str, key: str, value, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if not _is_number(value):
        raise SourceConfigError(source, key, f"must be a number, got {value!r}")
    return float(value)


def as_resampling(source: str, key: str, value) -> str:
    if value not in RESAMPLING:
        raise SourceConfigError(source, key, f"unknown resampling {value!r}; one of {', '.join(RESAMPLING)}")
    return value


def as_int_list(source: str, key: str, value, bits: bool = False) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise SourceConfigError(source, key, f"must be a list of integers, got {value!r}")
    if bits and any(not 0 <= v < 64 for v in value):
        raise SourceConfigError(source, key, f"bit numbers must be 0..63, got {value!r}")
    return tuple(value)


def as_clip(source: str, key: str, value) -> tuple[float, float] | None:
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2 or not all(_is_number(v) for v in value)
            or value[0] >= value[1]):
        raise SourceConfigError(source, key, f"must be [low, high] with low < high, or null; got {value!r}")
    return (float(value[0]), float(value[1]))


def as_choice(source: str, key: str, value, choices) -> str:
    if value not in choices:
        raise SourceConfigError(source, key, f"must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def as_bool(source: str, key: str, value) -> bool:
    if not isinstance(value, bool):
        raise SourceConfigError(source, key, f"must be true or false, got {value!r}")
    return value


def as_str(source: str, key: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise SourceConfigError(source, key, f"must be a non-empty string, got {value!r}")
    return value


def per_band(source: str, key: str, value, bands: dict[str, BandSpec], aliases: dict[str, str], parse) -> dict[str, Any]:
    """A setting given once for all bands (a scalar) or per band (a mapping band-or-common-name -> value):
    the {sensor band name: parsed value} it sets. A name that is no band of the source is an error."""
    if isinstance(value, dict):
        out = {}
        for name, v in value.items():
            band = resolve_name(source, f"{key}.{name}", name, bands, aliases)
            out[band] = parse(source, f"{key}.{name}", v)
        return out
    parsed = parse(source, key, value)
    return {b: parsed for b in bands}


def resolve_name(source: str, key: str, name, bands: dict[str, BandSpec], aliases: dict[str, str]) -> str:
    if name in bands:
        return name
    if name in aliases and aliases[name] in bands:
        return aliases[name]
    known = sorted(bands) + sorted(a for a in aliases if aliases[a] in bands)
    raise SourceConfigError(source, key, f"'{name}' is not a band of this source; bands: {', '.join(known)}")


def apply_band_overrides(source: str, cfg: dict, bands: dict[str, BandSpec], aliases: dict[str, str],
                         keys=("assets", "scale", "offset", "nodata", "resampling", "resolution", "clip"),
                         offset_parse=None) -> dict[str, BandSpec]:
    """Bands with the user's overrides of asset keys, scale, offset, nodata, resampling, resolution and clip."""
    parsers = {
        "assets": ("asset", as_str),
        "scale": ("scale", as_number),
        "offset": ("offset", offset_parse or as_number),
        "nodata": ("nodata", lambda s, k, v: as_number(s, k, v, allow_none=True)),
        "resampling": ("resampling", as_resampling),
        "resolution": ("resolution", as_number),
        "clip": ("clip", as_clip),
    }
    bands = dict(bands)
    for key in keys:
        if key not in cfg:
            continue
        field, parse = parsers[key]
        value = cfg[key]
        if key == "assets":
            value = as_mapping(source, key, value)
        for band, v in per_band(source, key, value, bands, aliases, parse).items():
            bands[band] = dataclasses.replace(bands[band], **{field: v})
    return bands


def parse_mask(source: str, value, default: MaskSpec | None) -> MaskSpec | None:
    """``mask`` config: null/false = no per-pixel mask; a mapping overrides the kind's default mask."""
    if value is None or value is False:
        return None
    if not isinstance(value, dict):
        raise SourceConfigError(source, "mask", f"must be a mapping or null, got {value!r}")
    check_keys(source, value, ("asset", "type", "fill", "cloud", "shadow", "snow"), prefix="mask.")
    base = default or MaskSpec(asset="", type="classes")
    kw = {}
    if "asset" in value:
        kw["asset"] = as_str(source, "mask.asset", value["asset"])
    if "type" in value:
        kw["type"] = as_choice(source, "mask.type", value["type"], ("classes", "bits"))
    mtype = kw.get("type", base.type)
    for what in ("fill", "cloud", "shadow", "snow"):
        if what in value:
            kw[what] = as_int_list(source, f"mask.{what}", value[what], bits=(mtype == "bits"))
    spec = dataclasses.replace(base, **kw)
    if not spec.asset:
        raise SourceConfigError(source, "mask.asset", "a mask needs the asset key of its layer")
    return spec


@dataclasses.dataclass(frozen=True)
class NearDate:
    """How a scene source is read as a near-date composite (``sources.<name>.near_date``): the ``n_dates``
    acquisition dates nearest to the mapped image's date within +-``window_days`` days, averaged pixel-wise
    (:func:`glaciermap.data.sources.neardate.near_date_composite`). ``required``: no usable scene in the window
    skips the glacier (GlacierInputError) instead of giving an all-NaN layer."""

    window_days: int = 30
    n_dates: int = 2
    required: bool = False


NEAR_DATE_KEYS = {
    "window_days": "search +-this many days (calendar days) around the date of the mapped image; default 30",
    "n_dates": "number of acquisition dates averaged (the nearest usable ones); default 2",
    "required": "true: no usable scene in the window skips the glacier; false (default): the layer is NaN there and "
                "the channel's fill rule decides",
}


def parse_near_date(source: str, value) -> NearDate:
    """``near_date`` config: null or a mapping of :data:`NEAR_DATE_KEYS` (each optional)."""
    value = as_mapping(source, "near_date", value)
    check_keys(source, value, NEAR_DATE_KEYS, prefix="near_date.")
    out = NearDate()
    for key in ("window_days", "n_dates"):
        if key in value:
            v = value[key]
            low = 0 if key == "window_days" else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise SourceConfigError(source, f"near_date.{key}", f"must be an integer >= {low}, got {v!r}")
            out = dataclasses.replace(out, **{key: int(v)})
    if "required" in value:
        out = dataclasses.replace(out, required=as_bool(source, "near_date.required", value["required"]))
    return out


def parse_year(when) -> int:
    """Year of a date-like value: int, 'YYYY', 'YYYY-MM-DD...', date/datetime, pandas Timestamp or STAC item."""
    if hasattr(when, "datetime") and hasattr(when, "properties"):  # a pystac Item
        dt = when.datetime
        if dt is None:
            s = when.properties.get("start_datetime")
            if s is None:
                raise ValueError(f"item {when.id} has no datetime")
            return int(str(s)[:4])
        return dt.year
    if isinstance(when, bool):
        raise ValueError(f"not a date: {when!r}")
    if isinstance(when, (int, np.integer)):
        return int(when)
    if isinstance(when, (date, datetime)) or hasattr(when, "year"):
        return int(when.year)
    s = str(when)
    if re.match(r"^\d{4}($|[-T ])", s):
        return int(s[:4])
    raise ValueError(f"not a year or date: {when!r}")


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Native:
    """A window of one band of one file on the file's own grid."""

    data: np.ndarray
    transform: Any
    crs: Any
    nodata: float | None
    href: str


class _Context:
    """Who is reading (glacier and source), to build GlacierInputError messages."""

    def __init__(self, glacier_id: str, source: "Source"):
        self.glacier_id = str(glacier_id)
        self.source = source

    def error(self, path, problem: str) -> GlacierInputError:
        return GlacierInputError(self.glacier_id, path, f"source '{self.source.name}' ({self.source.kind}): {problem}")


def _grid_ring(grid: CubeGrid, centres: bool, n: int = 33) -> tuple[np.ndarray, np.ndarray]:
    """Points along the border of the grid: its outer edges, or the centres of its border pixels."""
    if centres:
        x, y = grid.coords()
        x0, x1, y0, y1 = x[0], x[-1], y[-1], y[0]
    else:
        x0, y0, x1, y1 = grid.bounds
    t = np.linspace(0.0, 1.0, n)
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full(n, x1), x1 - (x1 - x0) * t, np.full(n, x0)])
    ys = np.concatenate([np.full(n, y1), y1 - (y1 - y0) * t, np.full(n, y0), y0 + (y1 - y0) * t])
    return xs, ys


def _to_src_pixels(grid: CubeGrid, src, centres: bool) -> tuple[np.ndarray, np.ndarray]:
    from rasterio.warp import transform as warp_transform

    xs, ys = _grid_ring(grid, centres)
    sx, sy = warp_transform(grid.crs, src.crs, xs, ys)
    cols, rows = ~src.transform @ (np.asarray(sx, float), np.asarray(sy, float))
    return np.asarray(cols, float), np.asarray(rows, float)


def read_native(href: str, grid: CubeGrid, ctx: _Context, *, what: str, band_index: int = 1,
                coverage: str = "any", pad: int = 3) -> Native:
    """The window of band ``band_index`` of ``href`` that covers ``grid`` (plus ``pad`` source pixels for the
    resampling kernel), on the file's own grid.

    ``coverage='full'``: every pixel centre of the grid must fall inside the raster, else GlacierInputError;
    ``'any'``: the raster must intersect the grid. A raster without CRS, an unreadable file and a missing band
    raise GlacierInputError naming the file.
    """
    import rasterio
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import CRSError, RasterioError
    from rasterio.windows import Window

    try:
        with rasterio.open(href) as src:
            if src.crs is None:
                raise ctx.error(href, f"{what}: the raster has no CRS")
            if not 1 <= band_index <= src.count:
                raise ctx.error(href, f"{what}: the raster has {src.count} band(s), band {band_index} was asked for")
            cols, rows = _to_src_pixels(grid, src, centres=True)
            tol = 1e-6
            finite = np.isfinite(cols) & np.isfinite(rows)
            inside = finite & (cols >= -tol) & (cols <= src.width + tol) & (rows >= -tol) & (rows <= src.height + tol)
            if coverage == "full" and not inside.all():
                b = src.bounds
                raise ctx.error(href, f"{what}: the raster does not cover the grid (raster bounds {tuple(round(v, 3) for v in b)} "
                                      f"in {src.crs}; grid bounds {grid.bounds} in {grid.crs}; "
                                      f"{int((~inside).sum())} of {inside.size} grid border points outside)")
            ecols, erows = _to_src_pixels(grid, src, centres=False)
            ok = np.isfinite(ecols) & np.isfinite(erows)
            if not ok.any():
                raise ctx.error(href, f"{what}: the grid cannot be transformed into the raster's CRS {src.crs}")
            c0 = max(int(math.floor(ecols[ok].min())) - pad, 0)
            c1 = min(int(math.ceil(ecols[ok].max())) + pad, src.width)
            r0 = max(int(math.floor(erows[ok].min())) - pad, 0)
            r1 = min(int(math.ceil(erows[ok].max())) + pad, src.height)
            if c1 <= c0 or r1 <= r0:
                raise ctx.error(href, f"{what}: the raster does not intersect the grid (raster bounds "
                                      f"{tuple(round(v, 3) for v in src.bounds)} in {src.crs}; grid bounds {grid.bounds} in {grid.crs})")
            win = Window(c0, r0, c1 - c0, r1 - r0)
            data = src.read(band_index, window=win)
            return Native(data, src.window_transform(win), src.crs, src.nodatavals[band_index - 1], str(href))
    except GlacierInputError:
        raise
    except (RasterioError, CPLE_BaseError, CRSError, OSError) as e:
        raise ctx.error(href, f"{what}: cannot read the raster: {type(e).__name__}: {e}") from e


def decode_band(native: Native, band: BandSpec, offset: float) -> np.ndarray:
    """Physical float32 values of raw DN: nodata / non-finite -> NaN, ``DN * scale + offset``, clip."""
    raw = native.data
    nodata = band.nodata if band.nodata is not None else native.nodata
    out = raw.astype(np.float64) * band.scale + offset
    bad = ~np.isfinite(raw) if np.issubdtype(raw.dtype, np.floating) else np.zeros(raw.shape, bool)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        bad |= raw == nodata
    out[bad] = np.nan
    if band.clip is not None:
        out = np.where(np.isnan(out), np.nan, np.clip(out, *band.clip))
    return out.astype(np.float32)


def warp_values(values: np.ndarray, transform, crs, grid: CubeGrid, resampling: str) -> np.ndarray:
    """Float values (NaN = no data) on their grid -> float32 on ``grid``; NaN where nothing maps."""
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    dst = np.full(grid.shape, np.nan, dtype=np.float32)
    reproject(source=np.ascontiguousarray(values, dtype=np.float32), destination=dst, src_transform=transform,
              src_crs=crs, src_nodata=np.nan, dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=np.nan,
              resampling=Resampling[resampling])
    return dst


def warp_mask_code(code: np.ndarray, transform, crs, grid: CubeGrid) -> np.ndarray:
    """A uint8 mask code (bits fill/cloud/shadow/snow) warped with nearest; pixels outside the raster -> 255."""
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    dst = np.full(grid.shape, _OUTSIDE, dtype=np.uint8)
    reproject(source=np.ascontiguousarray(code, dtype=np.uint8), destination=dst, src_transform=transform, src_crs=crs,
              src_nodata=None, dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=_OUTSIDE,
              resampling=Resampling.nearest)
    return dst


def encode_masks(m: dict[str, np.ndarray]) -> np.ndarray:
    return (m["fill"] * _FILL | m["cloud"] * _CLOUD | m["shadow"] * _SHADOW | m["snow"] * _SNOW).astype(np.uint8)


def decode_mask_code(code: np.ndarray) -> dict[str, np.ndarray]:
    outside = code == _OUTSIDE
    return {"fill": outside | ((code & _FILL) != 0), "cloud": ~outside & ((code & _CLOUD) != 0),
            "shadow": ~outside & ((code & _SHADOW) != 0), "snow": ~outside & ((code & _SNOW) != 0)}


def combine(bands: dict[str, np.ndarray], shape, mask: dict[str, np.ndarray] | None) -> Masks:
    """Final masks; sets fill pixels of every band to NaN (in place)."""
    arrays = list(bands.values())
    any_finite = np.zeros(shape, bool)
    all_finite = np.ones(shape, bool)
    for a in arrays:
        f = np.isfinite(a)
        any_finite |= f
        all_finite &= f
    fill = ~any_finite if arrays else np.zeros(shape, bool)
    cloud = shadow = snow = np.zeros(shape, bool)
    if mask is not None:
        fill = fill | mask["fill"]
        cloud, shadow, snow = mask["cloud"], mask["shadow"], mask["snow"]
    for a in arrays:
        a[fill] = np.nan
    valid = ~fill & ~cloud & ~shadow & all_finite
    return Masks(valid=valid, fill=fill, cloud=cloud & ~fill, shadow=shadow & ~fill, snow=snow & ~fill)


# --------------------------------------------------------------------------------------------------
# the source base classes
# --------------------------------------------------------------------------------------------------

class Source:
    """A configured source. Subclasses set ``kind``, ``KEYS`` (config key -> one-line description, used for the
    unknown-key check and docs), ``has_cloud_cover`` and implement ``_parse`` and ``read``."""

    kind: ClassVar[str] = ""
    KEYS: ClassVar[dict[str, str]] = {}
    has_cloud_cover: ClassVar[bool] = False
    #: True for kinds read from STAC items (scenes), False for static / per-year rasters.
    item_based: ClassVar[bool] = False
    #: Keys this kind refuses with a reason (checked before the unknown-key check).
    REFUSED: ClassVar[dict[str, str]] = {}

    def __init__(self, name: str, cfg: dict):
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise SourceConfigError(str(name), None, "source names may only use letters, digits, '.', '_' and '-'")
        self.name = name
        cfg = as_mapping(name, "", cfg)
        for key, why in self.REFUSED.items():
            if key in cfg:
                raise SourceConfigError(name, key, why)
        check_keys(name, cfg, {"kind", *self.KEYS})
        self.config = dict(cfg)
        self._parse(cfg)

    def _parse(self, cfg: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- band naming ---------------------------------------------------------------------------------
    def bands(self, item=None) -> dict[str, BandSpec]:
        """Sensor band name -> BandSpec (for Landsat: of the item's platform; without item: every platform's)."""
        raise NotImplementedError

    def common_names(self, item=None) -> dict[str, str]:
        """Common band name (blue, green, red, nir, swir1, swir2, thermal, ...) -> sensor band name."""
        return {b.common_name: n for n, b in self.bands(item).items() if b.common_name}

    @property
    def provides(self) -> set[str]:
        """Every band name a read accepts (sensor band names and common names, over all platforms)."""
        return set(self.bands()) | set(self.common_names())

    def band(self, name: str, item=None) -> BandSpec:
        """The BandSpec of a sensor band name or a common name; KeyError if the source has no such band."""
        bands = self.bands(item)
        if name in bands:
            return bands[name]
        common = self.common_names(item)
        if name in common:
            return bands[common[name]]
        raise KeyError(f"source '{self.name}' ({self.kind}) has no band '{name}'; bands: "
                       f"{', '.join(sorted(bands) + sorted(common))}")

    @property
    def default_bands(self) -> list[str]:
        return list(self.bands())

    def _names(self, bands) -> list[str]:
        """The band names of a read: one name, a list, or None (the default set)."""
        if bands is None:
            return list(self.default_bands)
        return [bands] if isinstance(bands, str) else list(bands)

    def require(self, names, key: str = "bands") -> None:
        """SourceConfigError ``sources.<name>.<key>.<band>`` for the first of ``names`` this source does not
        provide (for config checks of channels defined over common names, before any job runs)."""
        provided = self.provides
        for n in names:
            if n not in provided:
                raise SourceConfigError(self.name, f"{key}.{n}", f"source '{self.name}' ({self.kind}) does not provide "
                                                                 f"band '{n}'; it provides: {', '.join(sorted(provided))}")

    # -- item metadata -------------------------------------------------------------------------------
    def cloud_cover(self, item) -> float | None:
        """``eo:cloud_cover`` of an item (None for kinds without cloud cover or items without it)."""
        if not self.has_cloud_cover:
            return None
        cc = item.properties.get("eo:cloud_cover")
        return None if cc is None else float(cc)

    def sun_angles(self, item) -> SunAngles:
        """Sun azimuth / elevation (degrees) from ``view:sun_azimuth`` / ``view:sun_elevation`` (None if absent)."""
        p = item.properties if item is not None else {}
        az, el = p.get("view:sun_azimuth"), p.get("view:sun_elevation")
        return SunAngles(None if az is None else float(az), None if el is None else float(el))

    def read(self, grid: CubeGrid, bands=None, *, item=None, when=None, glacier_id: str = "") -> ReadResult:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} kind={self.kind}>"


class ItemSource(Source):
    """A scene source: each read takes one STAC item. Subclasses fill ``self._bands``, ``self.mask`` and may
    override ``band_offset``, ``ignore_bits``, ``_post_warp`` and ``_check_item``."""

    item_based = True
    #: Near-date composite settings (``near_date``; kinds that accept the key parse it with parse_near_date).
    near_date: NearDate = NearDate()
    STAC_KEYS: ClassVar[tuple[str, ...]] = ("source", "collection", "max_cloud_cover", "missing_cloud_cover")
    DEFAULT_COLLECTION: ClassVar[str | None] = None

    def _parse_stac(self, cfg: dict) -> None:
        stac_cfg = as_mapping(self.name, "stac", cfg.get("stac"))
        check_keys(self.name, stac_cfg, self.STAC_KEYS, prefix="stac.")
        self.stac_source = stac_cfg.get("source")
        if self.stac_source is not None:
            as_str(self.name, "stac.source", self.stac_source)
        collection = stac_cfg.get("collection", self.DEFAULT_COLLECTION)
        self.collection = None if collection is None else as_str(self.name, "stac.collection", collection)
        mcc = stac_cfg.get("max_cloud_cover")
        if mcc is not None:
            mcc = as_number(self.name, "stac.max_cloud_cover", mcc)
            if not 0 <= mcc <= 100:
                raise SourceConfigError(self.name, "stac.max_cloud_cover", f"must be 0..100, got {mcc}")
        self.max_cloud_cover = mcc
        self.missing_cloud_cover = as_choice(self.name, "stac.missing_cloud_cover",
                                             stac_cfg.get("missing_cloud_cover", "keep"), ("keep", "drop"))

    def bands(self, item=None) -> dict[str, BandSpec]:
        return dict(self._bands)

    def search(self, bbox_lonlat, start: str, end: str) -> list:
        """Items of this source's ``stac.source`` / ``stac.collection`` over ``bbox_lonlat`` in [start, end], with
        ``eo:cloud_cover < stac.max_cloud_cover`` when that is set (items without it: ``stac.missing_cloud_cover``),
        through :func:`glaciermap.data.stac.search_scenes`."""
        from glaciermap.data import stac

        if not self.stac_source:
            raise SourceConfigError(self.name, "stac.source", "missing: where are the items (STAC API URL or catalog.json)?")
        return stac.search_scenes(self.stac_source, self.collection, bbox_lonlat, start, end, self.max_cloud_cover,
                                  self.missing_cloud_cover)

    def band_offset(self, band: BandSpec, item) -> float:
        return float(band.offset)

    def ignore_bits(self, item) -> tuple[int, ...]:
        return ()

    def _check_item(self, item, ctx: _Context) -> dict:
        """Kind-specific checks of an item; returns extra attrs."""
        return {}

    def _decode_native(self, native: Native, band: BandSpec, item) -> np.ndarray:
        return decode_band(native, band, self.band_offset(band, item))

    def _post_warp(self, values: np.ndarray, band: BandSpec) -> np.ndarray:
        return values

    def _fill_problem(self) -> str:
        if self.mask is not None:
            return f"every pixel of the grid is fill/no data (mask layer '{self.mask.asset}' and the bands)"
        return "every pixel of the grid is no data"

    def read(self, grid: CubeGrid, bands=None, *, item=None, when=None, glacier_id: str = "",
             allow_all_fill: bool = False) -> ReadResult:
        """Bands ``bands`` (sensor or common names; None = the kind's default set) of STAC ``item`` on ``grid``.
        A scene whose every grid pixel is fill raises GlacierInputError unless ``allow_all_fill`` (then every
        band is NaN and ``masks.fill`` all True: the caller decides, e.g. a near-date composite moves on)."""
        ctx = _Context(glacier_id, self)
        if item is None:
            raise TypeError(f"source '{self.name}' ({self.kind}) reads STAC items: pass item=")
        where = item.get_self_href() or item.id
        extra = self._check_item(item, ctx)
        names = self._names(bands)
        specs = {}
        for name in names:
            try:
                specs[name] = self.band(name, item)
            except KeyError as e:
                raise ctx.error(where, f"item {item.id}: {e.args[0]}") from None
        wanted = {s.asset for s in specs.values()} | ({self.mask.asset} if self.mask else set())
        missing = sorted(a for a in wanted if a not in item.assets)
        if missing:
            raise ctx.error(where, f"item {item.id} lacks asset(s) {', '.join(missing)} "
                                   f"(assets: {', '.join(item.assets) or 'none'})")
        files, out, cache = {}, {}, {}
        for name, spec in specs.items():
            if spec.name not in cache:
                href = item.assets[spec.asset].get_absolute_href()
                native = read_native(href, grid, ctx, what=f"item {item.id} asset '{spec.asset}' ({spec.name})")
                values = self._decode_native(native, spec, item)
                warped = warp_values(values, native.transform, native.crs, grid, spec.resampling)
                cache[spec.name] = self._post_warp(warped, spec)
                files[spec.name] = href
            out[name] = cache[spec.name].copy()
        mask = None
        if self.mask is not None:
            href = item.assets[self.mask.asset].get_absolute_href()
            native = read_native(href, grid, ctx, what=f"item {item.id} mask asset '{self.mask.asset}'")
            code = encode_masks(self.mask.decode(native.data, self.ignore_bits(item)))
            mask = decode_mask_code(warp_mask_code(code, native.transform, native.crs, grid))
            files[self.mask.asset] = href
        masks = combine(out, grid.shape, mask)
        if masks.fill.all() and not allow_all_fill:
            raise ctx.error(files.get(self.mask.asset) if self.mask else where, f"item {item.id}: {self._fill_problem()}")
        sun = self.sun_angles(item)
        attrs = {"source": self.name, "kind": self.kind, "item_id": item.id, "files": files,
                 "datetime": item.datetime.isoformat() if item.datetime else None,
                 "cloud_cover": self.cloud_cover(item), "sun_azimuth": sun.azimuth, "sun_elevation": sun.elevation,
                 "offsets": {s.name: self.band_offset(s, item) for s in specs.values()},
                 "bands": {n: s.name for n, s in specs.items()}, **extra}
        return ReadResult(bands=out, masks=masks, has_cloud_mask=self.mask is not None, attrs=attrs)
