"""Sentinel-2 MSI: Level-2A surface reflectance (``sentinel2_l2a``) and Level-1C top-of-atmosphere
reflectance (``sentinel2_l1c``).

Reflectance = (DN + offset_DN) x 1e-4. Since processing baseline 04.00 (products from 25 January 2022) both
levels carry a radiometric offset of -1000 DN (L2A ``BOA_ADD_OFFSET``, L1C ``RADIO_ADD_OFFSET``);
``offset: auto`` applies it to items whose ``s2:processing_baseline`` is >= 04.00 (in reflectance: -1000 x 1e-4
= -0.1), the rule the acquisition applied before the source registry.
DN 0 is no data. L2A's scene classification (SCL) gives the per-pixel mask; L1C has none unless the user
names a cloud-mask asset.
"""

from __future__ import annotations

from glaciermap.data.sources.base import (BandSpec, ItemSource, MaskSpec, SourceConfigError, SunAngles, apply_band_overrides,
                   parse_mask)

SCALE = 1e-4
#: DN offset of processing baseline >= 04.00 products.
BASELINE4_OFFSET_DN = -1000.0
#: acquire.py clips reflectance to this range (a valid DN of 1 is the smallest reflectance kept).
DEFAULT_CLIP = (1e-4, 6.5)

# band -> (common name, native resolution m)
_BANDS = {
    "B01": ("coastal", 60), "B02": ("blue", 10), "B03": ("green", 10), "B04": ("red", 10),
    "B05": ("rededge1", 20), "B06": ("rededge2", 20), "B07": ("rededge3", 20), "B08": ("nir", 10),
    "B8A": ("nir08", 20), "B09": ("nir09", 60), "B10": ("cirrus", 60), "B11": ("swir1", 20),
    "B12": ("swir2", 20),
}
L2A_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
L1C_BANDS = L2A_BANDS[:10] + ["B10"] + L2A_BANDS[10:]

#: ESA Sentinel-2 L2A scene classification: 0 no data, 1 saturated/defective, 2 dark area / topographic
#: shadow (casting shadows since baseline 02.09), 3 cloud shadow, 4 vegetation, 5 not vegetated, 6 water,
#: 7 unclassified, 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus, 11 snow / ice.
SCL_MASK = MaskSpec(asset="SCL", type="classes", fill=(0,), cloud=(8, 9, 10), shadow=(3,), snow=(11,))


def s2_offset(item, setting) -> float:
    """Reflectance offset of an item (physical units). ``setting`` is ``"auto"`` (-0.1 = -1000 DN x 1e-4 for
    ``s2:processing_baseline`` >= 04.00, 0 otherwise, unparseable or absent) or a number used as is."""
    if setting != "auto":
        return float(setting)
    baseline = item.properties.get("s2:processing_baseline")
    try:
        return BASELINE4_OFFSET_DN * SCALE if baseline is not None and float(baseline) >= 4.0 else 0.0
    except (TypeError, ValueError):
        return 0.0


def _offset_parse(source, key, value):
    if value == "auto":
        return "auto"
    from glaciermap.data.sources.base import as_number

    return as_number(source, key, value)


class _Sentinel2(ItemSource):
    has_cloud_cover = True
    BAND_LIST: list[str] = []
    DEFAULT_MASK: MaskSpec | None = None
    LEVEL = ""
    KEYS = {
        "stac": "where the items are: {source: STAC API URL or static catalog.json, collection, max_cloud_cover, "
                "missing_cloud_cover}",
        "assets": "asset key per band (band name or common name -> asset key); default: the band name (B04, ...)",
        "scale": "DN -> reflectance factor, one number or per band; default 1e-4",
        "offset": "reflectance offset added after scaling, 'auto' (baseline >= 04.00: -0.1) or a number, or per band",
        "nodata": "fill DN, one number or per band; default 0",
        "resampling": "resampling per band (or one for all); default bilinear",
        "resolution": "native resolution per band in metres (informational); default 10/20/60",
        "clip": "[low, high] clip of reflectance, or null; default [0.0001, 6.5] (as acquire.py)",
        "mask": "per-pixel mask layer {asset, type: classes|bits, fill, cloud, shadow, snow}, or null",
    }

    def _parse(self, cfg: dict) -> None:
        self._parse_stac(cfg)
        bands = {b: BandSpec(name=b, asset=b, common_name=_BANDS[b][0], scale=SCALE, offset="auto", nodata=0.0,
                             resampling="bilinear", resolution=float(_BANDS[b][1]), units="1", clip=DEFAULT_CLIP,
                             quantity=f"{self.LEVEL} reflectance")
                 for b in self.BAND_LIST}
        aliases = {v[0]: k for k, v in _BANDS.items() if k in bands}
        self._bands = apply_band_overrides(self.name, cfg, bands, aliases, offset_parse=_offset_parse)
        self.mask = parse_mask(self.name, cfg["mask"], self.DEFAULT_MASK) if "mask" in cfg else self.DEFAULT_MASK

    def band_offset(self, band: BandSpec, item) -> float:
        return s2_offset(item, band.offset)

    def sun_angles(self, item) -> SunAngles:
        """``view:sun_*``; else the Planetary Computer's ``s2:mean_solar_azimuth`` / ``s2:mean_solar_zenith``."""
        sun = super().sun_angles(item)
        p = item.properties
        az, el = sun.azimuth, sun.elevation
        if az is None and p.get("s2:mean_solar_azimuth") is not None:
            az = float(p["s2:mean_solar_azimuth"])
        if el is None and p.get("s2:mean_solar_zenith") is not None:
            el = 90.0 - float(p["s2:mean_solar_zenith"])
        return SunAngles(az, el)

    def _check_item(self, item, ctx) -> dict:
        return {"processing_baseline": item.properties.get("s2:processing_baseline")}


class Sentinel2L2A(_Sentinel2):
    """Sentinel-2 Level-2A: 12 surface-reflectance bands (no B10) and the SCL mask."""

    kind = "sentinel2_l2a"
    BAND_LIST = L2A_BANDS
    DEFAULT_MASK = SCL_MASK
    DEFAULT_COLLECTION = "sentinel-2-l2a"
    LEVEL = "surface"


class Sentinel2L1C(_Sentinel2):
    """Sentinel-2 Level-1C: 13 top-of-atmosphere bands; no per-pixel mask unless ``mask`` names one."""

    kind = "sentinel2_l1c"
    BAND_LIST = L1C_BANDS
    DEFAULT_MASK = None
    DEFAULT_COLLECTION = "sentinel-2-l1c"
    LEVEL = "top-of-atmosphere"

    def _parse(self, cfg: dict) -> None:
        if isinstance(cfg.get("mask"), dict) and "asset" not in cfg["mask"]:
            raise SourceConfigError(self.name, "mask.asset", "Level-1C has no mask layer of its own: name the "
                                                             "cloud-mask asset (e.g. {asset: CLM, type: classes, cloud: [1]})")
        super()._parse(cfg)


__all__ = ["Sentinel2L2A", "Sentinel2L1C", "s2_offset", "SCL_MASK", "L2A_BANDS", "L1C_BANDS"]
