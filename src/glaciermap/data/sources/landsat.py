"""Landsat 4/5/7/8/9 Collection 2 Level-2 (``landsat_c2l2``): surface reflectance, surface temperature, QA_PIXEL.

USGS Landsat Collection 2 Level-2 Science Product Guide (LSDS-1619 / LSDS-1618 / LSDS-1328):

- surface reflectance = DN x 2.75e-5 - 0.2 (valid DN 7273-43636), surface temperature (K) = DN x 0.00341802 + 149.0;
  fill DN 0 in every band;
- QA_PIXEL bits: 0 fill, 1 dilated cloud, 2 cirrus (OLI only; unused on TM/ETM+), 3 cloud, 4 cloud shadow,
  5 snow, 6 clear, 7 water; 8-15 confidence pairs (not used here);
- band numbers differ by instrument: TM/ETM+ (Landsat 4, 5, 7) blue=SR_B1, green=SR_B2, red=SR_B3, nir=SR_B4,
  swir1=SR_B5, swir2=SR_B7, thermal=ST_B6; OLI/TIRS (Landsat 8, 9) coastal=SR_B1, blue=SR_B2, green=SR_B3,
  red=SR_B4, nir=SR_B5, swir1=SR_B6, swir2=SR_B7, thermal=ST_B10;
- Landsat 7 scenes after the Scan Line Corrector failure (2003-05-31) have wedge-shaped gaps; in Collection 2
  they are fill (DN 0, QA_PIXEL bit 0), so they come out as NaN / ``fill`` like any other fill.

The instrument family is chosen per item from its ``platform`` property (``landsat-8``, ``LANDSAT_8``, ...).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from glaciermap.data.sources.base import (BandSpec, ItemSource, MaskSpec, SourceConfigError, apply_band_overrides, as_mapping, as_str,
                   parse_mask, parse_near_date, resolve_name)

SR_SCALE, SR_OFFSET = 2.75e-5, -0.2
ST_SCALE, ST_OFFSET = 0.00341802, 149.0
FILL_DN = 0.0
SLC_FAILURE = datetime(2003, 5, 31, tzinfo=timezone.utc)

FAMILIES = {"tm_etm": (4, 5, 7), "oli": (8, 9)}
_TABLE = {
    "tm_etm": {"SR_B1": "blue", "SR_B2": "green", "SR_B3": "red", "SR_B4": "nir", "SR_B5": "swir1", "SR_B7": "swir2",
               "ST_B6": "thermal"},
    "oli": {"SR_B1": "coastal", "SR_B2": "blue", "SR_B3": "green", "SR_B4": "red", "SR_B5": "nir", "SR_B6": "swir1",
            "SR_B7": "swir2", "ST_B10": "thermal"},
}
QA_MASK = MaskSpec(asset="QA_PIXEL", type="bits", fill=(0,), cloud=(1, 2, 3), shadow=(4,), snow=(5,))
CIRRUS_BIT = 2


def platform_number(item) -> int | None:
    """4..9 from an item's ``platform`` (``landsat-8``, ``LANDSAT_8``, ``Landsat 8``), else None."""
    p = item.properties.get("platform")
    m = re.fullmatch(r"landsat[-_ ]?0?(\d)", str(p or "").strip().lower())
    return int(m.group(1)) if m else None


def family_of(number: int | None) -> str | None:
    for fam, numbers in FAMILIES.items():
        if number in numbers:
            return fam
    return None


def _default_bands(family: str) -> dict[str, BandSpec]:
    out = {}
    for band, common in _TABLE[family].items():
        if band.startswith("ST_"):
            out[band] = BandSpec(name=band, asset=band, common_name=common, scale=ST_SCALE, offset=ST_OFFSET,
                                 nodata=FILL_DN, resolution=30.0, units="K", quantity="surface temperature")
        else:
            out[band] = BandSpec(name=band, asset=band, common_name=common, scale=SR_SCALE, offset=SR_OFFSET,
                                 nodata=FILL_DN, resolution=30.0, units="1", quantity="surface reflectance")
    return out


class LandsatC2L2(ItemSource):
    """Landsat Collection 2 Level-2 scenes of any of Landsat 4, 5, 7, 8, 9 (one family of band tables per item)."""

    kind = "landsat_c2l2"
    has_cloud_cover = True
    DEFAULT_COLLECTION = "landsat-c2-l2"
    KEYS = {
        "stac": "where the items are: {source, collection, max_cloud_cover, missing_cloud_cover}",
        "assets": "asset key per band (sensor or common name -> key), flat for every family or nested under "
                  "tm_etm / oli; default: the band name (SR_B4, ST_B10, ...)",
        "scale": "DN -> physical factor per band; default 2.75e-5 (SR), 0.00341802 (ST)",
        "offset": "physical offset per band; default -0.2 (SR), 149.0 K (ST)",
        "nodata": "fill DN per band; default 0",
        "resampling": "resampling per band; default bilinear",
        "resolution": "native resolution per band in metres (informational); default 30",
        "clip": "[low, high] clip of the physical values per band, or null (default)",
        "mask": "QA layer {asset, type, fill, cloud, shadow, snow}; default QA_PIXEL bits fill [0], cloud [1, 2, 3], "
                "shadow [4], snow [5] (bit 2 ignored on TM/ETM+)",
        "near_date": "as a raster channel's source (channel_sources.temperature: thermal band): {window_days: 30, "
                     "n_dates: 2, required: false}; the n_dates usable dates nearest the image date within "
                     "+-window_days, cloud/shadow/fill masked, averaged pixel-wise",
    }

    def _parse(self, cfg: dict) -> None:
        self._parse_stac(cfg)
        fam_bands = {fam: _default_bands(fam) for fam in FAMILIES}
        assets = as_mapping(self.name, "assets", cfg.get("assets"))
        nested = {fam: as_mapping(self.name, f"assets.{fam}", assets[fam]) for fam in FAMILIES if fam in assets}
        flat = {k: v for k, v in assets.items() if k not in FAMILIES}
        known = sorted({n for f in FAMILIES for n in (*_TABLE[f], *_TABLE[f].values())})
        other = {k: v for k, v in cfg.items() if k in ("scale", "offset", "nodata", "resampling", "resolution", "clip")}
        # a flat per-band name must be a band (or common name) of at least one family
        for key, value in [("assets", flat), *other.items()]:
            for name in (value if isinstance(value, dict) else ()):
                if name not in known:
                    raise SourceConfigError(self.name, f"{key}.{name}", f"'{name}' is not a band of any Landsat "
                                                                        f"family; bands: {', '.join(known)}")
        self._fam_bands = {}
        for fam, bands in fam_bands.items():
            aliases = {c: b for b, c in _TABLE[fam].items()}
            ok = lambda names: {n: v for n, v in names.items() if n in bands or n in aliases}  # noqa: E731
            fam_cfg = {k: (ok(v) if isinstance(v, dict) else v) for k, v in other.items()}
            fam_assets = {**ok(flat), **nested.get(fam, {})}
            for name in nested.get(fam, {}):
                resolve_name(self.name, f"assets.{fam}.{name}", name, bands, aliases)
            fam_cfg["assets"] = fam_assets
            self._fam_bands[fam] = apply_band_overrides(self.name, fam_cfg, bands, aliases)
        self.near_date = parse_near_date(self.name, cfg.get("near_date"))
        self.mask = parse_mask(self.name, cfg["mask"], QA_MASK) if "mask" in cfg else QA_MASK
        if self.mask is not None:
            as_str(self.name, "mask.asset", self.mask.asset)

    def family(self, item) -> str | None:
        return family_of(platform_number(item))

    def bands(self, item=None) -> dict[str, BandSpec]:
        if item is None:  # every family's bands (names shared by both families show the OLI spec)
            return {**self._fam_bands["tm_etm"], **self._fam_bands["oli"]}
        fam = self.family(item)
        if fam is None:
            raise KeyError(f"item {item.id}: platform {item.properties.get('platform')!r} is not Landsat 4, 5, 7, 8 or 9")
        return dict(self._fam_bands[fam])

    def common_names(self, item=None) -> dict[str, str]:
        if item is None:
            return {c: b for fam in ("tm_etm", "oli") for b, c in ((n, s.common_name) for n, s in self._fam_bands[fam].items())}
        return super().common_names(item)

    @property
    def default_bands(self) -> list[str]:
        return ["blue", "green", "red", "nir", "swir1", "swir2", "thermal"]

    def ignore_bits(self, item) -> tuple[int, ...]:
        """QA_PIXEL bit 2 (cirrus) exists on OLI only; on TM/ETM+ it is unused and ignored."""
        bits_mask = self.mask is not None and self.mask.type == "bits"
        return (CIRRUS_BIT,) if bits_mask and self.family(item) == "tm_etm" else ()

    @staticmethod
    def slc_off(item) -> bool:
        """A Landsat 7 scene after the Scan Line Corrector failure (its gaps are fill)."""
        dt = item.datetime
        if dt is not None and dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return platform_number(item) == 7 and dt is not None and dt >= SLC_FAILURE

    def _check_item(self, item, ctx) -> dict:
        n = platform_number(item)
        if family_of(n) is None:
            raise ctx.error(item.get_self_href() or item.id,
                            f"item {item.id}: platform {item.properties.get('platform')!r} is not Landsat 4, 5, 7, 8 or 9")
        return {"platform": f"landsat-{n}", "family": family_of(n), "slc_off": self.slc_off(item)}

    def _fill_problem(self) -> str:
        return f"{self.mask.asset} marks every pixel of the grid as fill" if self.mask else super()._fill_problem()


__all__ = ["LandsatC2L2", "platform_number", "family_of", "QA_MASK"]
