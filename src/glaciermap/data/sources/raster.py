"""Static rasters (``raster``: DEM, dh/dt, coherence, anything) and per-year mosaics (``raster_per_year``:
e.g. ITS_LIVE velocity as vx / vy per year).

Vector fields: the components of a velocity mosaic are along the axes of *its* CRS (ITS_LIVE: EPSG:3413
polar stereographic). Reprojecting the two component rasters does not turn them into components along the
target grid's axes; the angle between the two sets of axes (grid convergence) is tens of degrees in Alaska.
So this module (1) computes the magnitude on the mosaic's own grid, before any resampling, and resamples the
magnitude (magnitude does not depend on the axes), and (2) when the components themselves are asked for,
rotates them on the mosaic's grid into the target CRS's axes (local angle of the source x axis in the target
CRS, from pyproj) before resampling; the rotation keeps the magnitude. No map-scale correction is applied:
ITS_LIVE velocities are already corrected for map scale (``map_scale_corrected = 1``) and are in m/yr on the
ground.
"""

from __future__ import annotations

import math

import numpy as np

from glaciermap.data.sources.base import (BandSpec, Masks, ReadResult, Source, SourceConfigError, _Context, as_bool, as_choice, as_clip,
                   as_mapping, as_number, as_resampling, as_str, check_keys, combine, decode_band, parse_year,
                   read_native, warp_values)

_COMMON_KEYS = {
    "scale": "DN -> physical factor; default 1",
    "offset": "physical offset added after scaling; default 0",
    "nodata": "fill value of the file, or null = the file's own nodata (default); NaN is always no data",
    "resampling": "resampling onto the grid; default bilinear",
    "resolution": "native pixel size in metres (informational); default null",
    "clip": "[low, high] clip of the physical values, or null (default)",
    "units": "units of the physical values (informational); default ''",
    "coverage": "full (default: every grid pixel centre must lie inside the raster) or any",
    "band": "1-based band index in the file(s); default 1",
}


def _parse_common(src: Source, cfg: dict) -> BandSpec:
    name = src.name
    return BandSpec(
        name=name, asset="", common_name=None,
        scale=as_number(name, "scale", cfg.get("scale", 1.0)),
        offset=as_number(name, "offset", cfg.get("offset", 0.0)),
        nodata=as_number(name, "nodata", cfg.get("nodata"), allow_none=True),
        resampling=as_resampling(name, "resampling", cfg.get("resampling", "bilinear")),
        resolution=as_number(name, "resolution", cfg.get("resolution"), allow_none=True),
        units=str(cfg.get("units", "")),
        clip=as_clip(name, "clip", cfg.get("clip")),
        quantity="value",
    )


def _band_index(name: str, cfg: dict) -> int:
    b = cfg.get("band", 1)
    if not isinstance(b, int) or isinstance(b, bool) or b < 1:
        raise SourceConfigError(name, "band", f"must be a band number >= 1, got {b!r}")
    return b


def _empty_masks(bands: dict[str, np.ndarray], shape) -> Masks:
    return combine(bands, shape, None)


class RasterSource(Source):
    """One static raster file: ``path`` (file or URL) or a STAC item asset (``stac: {source, item, asset}``)."""

    kind = "raster"
    KEYS = {"path": "file or URL of the raster (or give stac)",
            "stac": "{source: catalog or API, item: item id, asset: asset key, collection: optional}",
            **_COMMON_KEYS}

    def _parse(self, cfg: dict) -> None:
        self.path = cfg.get("path")
        stac_cfg = as_mapping(self.name, "stac", cfg.get("stac")) if "stac" in cfg else None
        if (self.path is None) == (stac_cfg is None):
            raise SourceConfigError(self.name, "path", "give either path or stac: {source, item, asset}, not both or neither")
        if self.path is not None:
            self.path = as_str(self.name, "path", str(self.path) if hasattr(self.path, "__fspath__") else self.path)
        self.stac = None
        if stac_cfg is not None:
            check_keys(self.name, stac_cfg, ("source", "item", "asset", "collection"), prefix="stac.")
            for k in ("source", "item", "asset"):
                if k not in stac_cfg:
                    raise SourceConfigError(self.name, f"stac.{k}", "missing (a STAC raster needs source, item and asset)")
                as_str(self.name, f"stac.{k}", stac_cfg[k])
            self.stac = dict(stac_cfg)
        self.spec = _parse_common(self, cfg)
        self.band_index = _band_index(self.name, cfg)
        self.coverage = as_choice(self.name, "coverage", cfg.get("coverage", "full"), ("full", "any"))

    def bands(self, item=None) -> dict[str, BandSpec]:
        return {self.name: self.spec}

    def href(self, glacier_id: str = "") -> str:
        if self.path is not None:
            return self.path
        from glaciermap.data import stac

        ctx = _Context(glacier_id, self)
        spec = {"stac_item": self.stac["item"], "asset": self.stac["asset"], "collection": self.stac.get("collection")}
        try:
            return stac.resolve_raster(spec, self.stac["source"])
        except (KeyError, FileNotFoundError, ValueError) as e:  # ValueError: stac.StacSourceError
            raise ctx.error(self.stac["source"], f"cannot resolve STAC item '{self.stac['item']}' asset "
                                                 f"'{self.stac['asset']}': {e}") from e

    def read(self, grid, bands=None, *, item=None, when=None, glacier_id: str = "") -> ReadResult:
        """The raster on ``grid`` as band ``<source name>``; ``item`` and ``when`` are ignored (static)."""
        ctx = _Context(glacier_id, self)
        for b in ([] if bands is None else self._names(bands)):
            if b != self.name:
                raise ctx.error(None, f"has no band '{b}' (its one band is named '{self.name}')")
        href = self.href(glacier_id)
        native = read_native(href, grid, ctx, what=f"raster band {self.band_index}", band_index=self.band_index,
                             coverage=self.coverage)
        values = warp_values(decode_band(native, self.spec, self.spec.offset), native.transform, native.crs, grid,
                             self.spec.resampling)
        out = {self.name: values}
        masks = _empty_masks(out, grid.shape)
        if masks.fill.all():
            raise ctx.error(href, "the raster has no data over the grid")
        return ReadResult(out, masks, False, {"source": self.name, "kind": self.kind, "files": {self.name: href},
                                               "units": self.spec.units})


class PerYearRasterSource(Source):
    """Per-year mosaics chosen by the year of the image: ``paths: {year: path}`` or ``{year: {component: path}}``.

    With components ``vx`` and ``vy`` (``vector``), bands ``magnitude``, ``vx`` and ``vy`` are available
    (``magnitude`` by default); the components come rotated into the target grid's axes (see module doc).
    """

    kind = "raster_per_year"
    KEYS = {"paths": "{year: path} or {year: {component: path}} (e.g. {'2023': {vx: ..., vy: ...}})",
            "vector": "[x component, y component] of a vector field, or null; default [vx, vy] when both exist",
            "nearest_year": "take the nearest year when the image's year has no mosaic; default false (error)",
            **_COMMON_KEYS}

    def _parse(self, cfg: dict) -> None:
        paths = as_mapping(self.name, "paths", cfg.get("paths"))
        if not paths:
            raise SourceConfigError(self.name, "paths", "missing: give {year: path} or {year: {component: path}}")
        self.paths: dict[int, dict[str, str] | str] = {}
        structure = None
        for year, entry in paths.items():
            if not (isinstance(year, int) and not isinstance(year, bool) or (isinstance(year, str) and year.isdigit())) \
                    or not 1000 <= int(year) <= 9999:
                raise SourceConfigError(self.name, f"paths.{year}", "keys of paths must be years (YYYY)")
            if isinstance(entry, dict):
                if not entry:
                    raise SourceConfigError(self.name, f"paths.{year}", "an empty mapping of components")
                for comp, p in entry.items():
                    as_str(self.name, f"paths.{year}.{comp}", str(p) if hasattr(p, "__fspath__") else p)
                entry = {str(c): str(p) for c, p in entry.items()}
                shape = tuple(sorted(entry))
            else:
                as_str(self.name, f"paths.{year}", str(entry) if hasattr(entry, "__fspath__") else entry)
                entry, shape = str(entry), None
            if structure is not None and shape != structure[1]:
                raise SourceConfigError(self.name, f"paths.{year}", f"has components {shape or 'none (one path)'} but "
                                                                     f"year {structure[0]} has {structure[1] or 'none (one path)'}")
            structure = structure or (int(year), shape)
            if int(year) in self.paths:
                raise SourceConfigError(self.name, f"paths.{year}", "year given twice")
            self.paths[int(year)] = entry
        self.components = list(structure[1]) if structure[1] else []
        default_vec = ["vx", "vy"] if {"vx", "vy"} <= set(self.components) else None
        vec = cfg.get("vector", default_vec)
        if vec is not None:
            if (not isinstance(vec, list) or len(vec) != 2 or not all(v in self.components for v in vec)):
                raise SourceConfigError(self.name, "vector", f"must be [x component, y component] naming two of the "
                                                             f"components {self.components or '(none: one path per year)'}, got {vec!r}")
        self.vector = vec
        self.nearest_year = as_bool(self.name, "nearest_year", cfg.get("nearest_year", False))
        self.spec = _parse_common(self, cfg)
        self.band_index = _band_index(self.name, cfg)
        self.coverage = as_choice(self.name, "coverage", cfg.get("coverage", "full"), ("full", "any"))

    @property
    def years(self) -> list[int]:
        return sorted(self.paths)

    def bands(self, item=None) -> dict[str, BandSpec]:
        if not self.components:
            return {self.name: self.spec}
        names = (["magnitude"] if self.vector else []) + self.components
        return {n: BandSpec(**{**self.spec.__dict__, "name": n}) for n in names}

    @property
    def default_bands(self) -> list[str]:
        return ["magnitude"] if self.vector else list(self.bands())

    def select_year(self, when, glacier_id: str = "") -> int:
        """The mosaic year for an image of date/year ``when`` (nearest only with ``nearest_year``; ties: earlier)."""
        ctx = _Context(glacier_id, self)
        try:
            year = parse_year(when)
        except (TypeError, ValueError) as e:
            raise ctx.error(None, f"cannot tell the year of {when!r}: {e}") from e
        if year in self.paths:
            return year
        avail = ", ".join(map(str, self.years))
        if not self.nearest_year:
            raise ctx.error(None, f"no mosaic for year {year} (years: {avail}); set nearest_year: true to use the nearest year")
        return min(self.years, key=lambda y: (abs(y - year), y))

    def read(self, grid, bands=None, *, item=None, when=None, glacier_id: str = "") -> ReadResult:
        """Bands of the mosaic of the image's year (``when``: a year, a date, or give the STAC ``item``)."""
        ctx = _Context(glacier_id, self)
        if when is None and item is None:
            raise TypeError(f"source '{self.name}' ({self.kind}) is per year: pass when= (year or date) or item=")
        year = self.select_year(when if when is not None else item, glacier_id)
        names = self._names(bands)
        known = self.bands()
        for n in names:
            if n not in known:
                raise ctx.error(None, f"has no band '{n}' (bands: {', '.join(known)})")
        entry = self.paths[year]
        attrs = {"source": self.name, "kind": self.kind, "year": year, "year_requested": parse_year(when if when is not None else item),
                 "units": self.spec.units}
        if isinstance(entry, str):
            native = read_native(entry, grid, ctx, what=f"mosaic {year}", band_index=self.band_index, coverage=self.coverage)
            out = {self.name: warp_values(decode_band(native, self.spec, self.spec.offset), native.transform, native.crs,
                                          grid, self.spec.resampling)}
            files = {self.name: entry}
        else:
            need = set()
            for n in names:
                need |= set(self.vector) if n == "magnitude" or (self.vector and n in self.vector) else {n}
            natives, files = {}, {}
            for comp in sorted(need):
                natives[comp] = read_native(entry[comp], grid, ctx, what=f"mosaic {year} component {comp}",
                                            band_index=self.band_index, coverage=self.coverage)
                files[comp] = entry[comp]
            ref = next(iter(natives.values()))
            for comp, nat in natives.items():
                if nat.crs != ref.crs or nat.transform != ref.transform or nat.data.shape != ref.data.shape:
                    raise ctx.error(nat.href, f"mosaic {year}: component {comp} is not on the same grid as {ref.href}")
            values = {c: decode_band(nat, self.spec, self.spec.offset) for c, nat in natives.items()}
            out = {}
            if self.vector and any(n in self.vector or n == "magnitude" for n in names):
                cx, cy = self.vector
                if "magnitude" in names:
                    mag = np.hypot(values[cx].astype(np.float64), values[cy].astype(np.float64)).astype(np.float32)
                    out["magnitude"] = warp_values(mag, ref.transform, ref.crs, grid, self.spec.resampling)
                if cx in names or cy in names:
                    rx, ry, angle = rotate_to(values[cx], values[cy], ref.transform, ref.crs, grid.crs)
                    attrs["rotation_deg_range"] = (float(np.nanmin(angle)), float(np.nanmax(angle)))
                    for comp, arr in ((cx, rx), (cy, ry)):
                        if comp in names:
                            out[comp] = warp_values(arr, ref.transform, ref.crs, grid, self.spec.resampling)
            for n in names:
                if n not in out:
                    out[n] = warp_values(values[n], ref.transform, ref.crs, grid, self.spec.resampling)
            out = {n: out[n] for n in names}
        masks = _empty_masks(out, grid.shape)
        if masks.fill.all():
            raise ctx.error(next(iter(files.values())), f"mosaic {year} has no data over the grid")
        attrs["files"] = files
        return ReadResult(out, masks, False, attrs)


def rotate_to(vx: np.ndarray, vy: np.ndarray, transform, src_crs, dst_crs):
    """Components (vx, vy) along the axes of ``src_crs`` at the pixel centres of ``transform`` -> components
    along the axes of ``dst_crs`` at the same points, plus the rotation angle (degrees, counter-clockwise).

    The angle is that of the source x axis seen in the target CRS (a step of one pixel along x, transformed with
    pyproj). Both the polar stereographic and UTM projections are conformal, so the y axis turns by the same
    angle and a rotation is exact; the magnitude is kept.
    """
    from rasterio.crs import CRS
    from rasterio.warp import transform as warp_transform

    if CRS.from_user_input(src_crs) == CRS.from_user_input(dst_crs):
        return vx.copy(), vy.copy(), np.zeros(vx.shape)
    h, w = vx.shape
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x0, y0 = transform @ (cols.ravel(), rows.ravel())
    step = math.hypot(transform.a, transform.d)  # one pixel, along the CRS x axis (the axis of vx)
    x0, y0 = np.asarray(x0), np.asarray(y0)
    X0, Y0 = warp_transform(src_crs, dst_crs, x0, y0)
    X1, Y1 = warp_transform(src_crs, dst_crs, x0 + step, y0)
    theta = np.arctan2(np.subtract(Y1, Y0), np.subtract(X1, X0)).reshape(h, w)
    c, s = np.cos(theta), np.sin(theta)
    vx64, vy64 = vx.astype(np.float64), vy.astype(np.float64)
    rx = (c * vx64 - s * vy64).astype(np.float32)
    ry = (s * vx64 + c * vy64).astype(np.float32)
    return rx, ry, np.degrees(theta)


__all__ = ["RasterSource", "PerYearRasterSource", "rotate_to"]
