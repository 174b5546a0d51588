"""Sentinel-1 C-band SAR backscatter (``sentinel1``): calibrated VV / VH (and HH / HV) assets.

The user states the scale of the assets (``input_scale``: ``linear`` power or ``db``) and the scale wanted
(``scale``: ``db`` or ``linear``). Values are brought to linear power on the file's grid, resampled there
(averaging dB values would be biased), then converted to the output scale. Linear values <= 0 and the
file's nodata are no data. SAR has no cloud cover and no cloud mask, ever: ``has_cloud_cover`` is False, items
without ``eo:cloud_cover`` are accepted, and ``mask`` / ``stac.max_cloud_cover`` are config errors.

Raw GRD digital numbers (amplitude, uncalibrated) are not backscatter: point this kind at calibrated,
terrain-corrected products (e.g. Planetary Computer ``sentinel-1-rtc``: gamma0, linear power, float32).
"""

from __future__ import annotations

import numpy as np

from glaciermap.data.sources.base import BandSpec, ItemSource, Native, SourceConfigError, apply_band_overrides, as_choice

SCALES = ("linear", "db")
_POLS = ("VV", "VH", "HH", "HV")


def db_to_linear(db: np.ndarray) -> np.ndarray:
    return np.power(10.0, np.asarray(db, np.float64) / 10.0)


def linear_to_db(lin: np.ndarray) -> np.ndarray:
    lin = np.asarray(lin, np.float64)
    out = np.full(lin.shape, np.nan)
    pos = np.isfinite(lin) & (lin > 0)
    out[pos] = 10.0 * np.log10(lin[pos])
    return out


class Sentinel1(ItemSource):
    """Sentinel-1 backscatter; default bands VV and VH (HH and HV available for polar acquisitions)."""

    kind = "sentinel1"
    has_cloud_cover = False
    DEFAULT_COLLECTION = "sentinel-1-rtc"
    STAC_KEYS = ("source", "collection")
    KEYS = {
        "stac": "where the items are: {source, collection} (no max_cloud_cover: SAR has none)",
        "input_scale": "scale of the assets: linear (power) or db; default linear",
        "scale": "output scale: db or linear; default db",
        "assets": "asset key per polarisation; default vv, vh, hh, hv (Planetary Computer / Earth Search keys)",
        "nodata": "fill value of the assets (in input_scale units), or null = the file's nodata (default)",
        "resampling": "resampling per band (done in linear power); default bilinear",
        "resolution": "native pixel size in metres (informational); default 10",
        "bands": "default polarisations read when none are asked for; default [VV, VH]",
    }

    REFUSED = {"mask": "Sentinel-1 (SAR) has no cloud mask, ever",
               "max_cloud_cover": "Sentinel-1 (SAR) items carry no eo:cloud_cover"}

    def _parse(self, cfg: dict) -> None:
        if "max_cloud_cover" in (cfg.get("stac") or {}):
            raise SourceConfigError(self.name, "stac.max_cloud_cover", "Sentinel-1 (SAR) items carry no eo:cloud_cover")
        self._parse_stac(cfg)
        self.input_scale = as_choice(self.name, "input_scale", cfg.get("input_scale", "linear"), SCALES)
        self.output_scale = as_choice(self.name, "scale", cfg.get("scale", "db"), SCALES)
        bands = {p: BandSpec(name=p, asset=p.lower(), common_name=p.lower(), scale=1.0, offset=0.0, nodata=None,
                             resampling="bilinear", resolution=10.0, units="dB" if self.output_scale == "db" else "1",
                             quantity=f"backscatter ({self.output_scale})")
                 for p in _POLS}
        aliases = {p.lower(): p for p in _POLS}
        self._bands = apply_band_overrides(self.name, cfg, bands, aliases,
                                           keys=("assets", "nodata", "resampling", "resolution"))
        default = cfg.get("bands", ["VV", "VH"])
        if not isinstance(default, list) or not default:
            raise SourceConfigError(self.name, "bands", f"must be a non-empty list of polarisations, got {default!r}")
        self._default = []
        for p in default:
            if str(p).upper() not in _POLS:
                raise SourceConfigError(self.name, f"bands.{p}", f"'{p}' is not a polarisation; one of {', '.join(_POLS)}")
            self._default.append(str(p).upper())
        self.mask = None

    def common_names(self, item=None) -> dict[str, str]:
        return {}

    def band(self, name: str, item=None) -> BandSpec:
        return super().band(name.upper() if name.lower() in ("vv", "vh", "hh", "hv") else name, item)

    @property
    def provides(self) -> set[str]:
        return set(self._bands) | {p.lower() for p in self._bands}

    @property
    def default_bands(self) -> list[str]:
        return list(self._default)

    def _decode_native(self, native: Native, band: BandSpec, item) -> np.ndarray:
        raw = native.data.astype(np.float64)
        nodata = band.nodata if band.nodata is not None else native.nodata
        bad = ~np.isfinite(raw)
        if nodata is not None and np.isfinite(nodata):
            bad |= raw == nodata
        lin = db_to_linear(raw) if self.input_scale == "db" else raw
        bad |= ~(lin > 0)
        lin[bad] = np.nan
        return lin.astype(np.float32)

    def _post_warp(self, values: np.ndarray, band: BandSpec) -> np.ndarray:
        return linear_to_db(values).astype(np.float32) if self.output_scale == "db" else values

    def _check_item(self, item, ctx) -> dict:
        return {"input_scale": self.input_scale, "scale": self.output_scale}
