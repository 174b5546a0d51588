"""Writers: COGs, GeoPackages with fixed timestamps, polygons from label rasters, footprints, STAC projection fields."""

from __future__ import annotations

import numpy as np

from .glaciers import RES_TRUTH


# --------------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------------

CRS = "EPSG:32632"
COG_MEDIA = "image/tiff; application=geotiff; profile=cloud-optimized"


def _transform(W, res: float):
    from affine import Affine

    return Affine(res, 0.0, W.x0, 0.0, -res, W.y0)


def write_cog(path, arr: np.ndarray, transform, nodata, resampling: str = "average", threads: int = 1) -> None:
    """Cloud-Optimized GeoTIFF (GDAL COG driver): deflate + predictor, 512 px tiles, internal overviews.

    Deflate level 1: on these (noisy) rasters higher levels are 3x slower for < 1 % smaller files.

    Overviews are decimated by 4 and 16 (where the raster is big enough) rather than the driver's
    2/4/8 pyramid: a quarter of the overview bytes for the same coarse reads.
    """
    import rasterio
    from rasterio.enums import Resampling

    kind = np.dtype(arr.dtype).kind
    predictor = 3 if kind == "f" else 2
    h, w = arr.shape
    prof = dict(driver="COG", width=w, height=h, count=1, dtype=arr.dtype.name, crs=CRS, transform=transform,
                nodata=nodata, compress="DEFLATE", level=1, predictor=predictor,
                blocksize=512 if min(h, w) > 512 else 256, overviews="FORCE_USE_EXISTING",
                num_threads=str(threads), bigtiff="NO")
    factors = [f for f in (4, 16) if min(h, w) // f >= 100]
    with rasterio.open(path, "w", **prof) as ds:
        ds.write(arr, 1)
        if factors:
            ds.build_overviews(factors, Resampling[resampling])


def _write_gpkg(gdf, path, layer: str) -> None:
    """GeoPackage with a fixed timestamp (OGR_CURRENT_DATE), so the same region gives the same bytes."""
    import pyogrio

    key = "OGR_CURRENT_DATE"
    before = pyogrio.get_gdal_config_option(key)
    pyogrio.set_gdal_config_options({key: "2000-01-01T00:00:00.000Z"})
    try:
        gdf.to_file(path, layer=layer, driver="GPKG", engine="pyogrio")
    finally:
        pyogrio.set_gdal_config_options({key: before})


def _polygons(lab: np.ndarray, transform, n: int) -> list:
    """One (Multi)Polygon per label 1..n, traced along the 10 m pixel edges (area = pixels x 100 m2)."""
    import shapely
    from rasterio import features
    from shapely.geometry import shape

    parts: list[list] = [[] for _ in range(n + 1)]
    for geom, val in features.shapes(lab.astype(np.int32), mask=lab > 0, connectivity=4, transform=transform):
        parts[int(val)].append(shape(geom))
    out = []
    for g in range(1, n + 1):
        geom = shapely.union_all(parts[g]) if len(parts[g]) > 1 else (parts[g][0] if parts[g] else shapely.Polygon())
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
            if geom.geom_type == "GeometryCollection":
                geom = shapely.union_all([p for p in geom.geoms if p.geom_type in ("Polygon", "MultiPolygon")])
        out.append(geom)
    return out


def _lonlat(xs, ys):
    from pyproj import Transformer

    t = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    return t.transform(np.asarray(xs, float), np.asarray(ys, float))


def _footprint(W, valid60: np.ndarray):
    """Valid-data footprint (lon/lat polygon) of a scene from its 60 m validity mask."""
    import shapely
    from rasterio import features
    from shapely.geometry import shape

    t60 = _transform(W, 60.0)
    polys = [shape(g) for g, _ in features.shapes(valid60.astype(np.uint8), mask=valid60, transform=t60)]
    geom = shapely.union_all(polys).simplify(30.0)
    if geom.geom_type == "MultiPolygon":
        geom = max(geom.geoms, key=lambda p: p.area)
    xs, ys = np.asarray(geom.exterior.coords).T
    lon, lat = _lonlat(xs, ys)
    return shapely.Polygon(np.round(np.c_[lon, lat], 7))


def _asset_proj(W, res: float) -> dict:
    h, w = int(round(W.h10 * RES_TRUTH / res)), int(round(W.w10 * RES_TRUTH / res))
    t = _transform(W, res)
    return {"proj:shape": [h, w], "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "proj:bbox": [W.x0, W.y0 - h * res, W.x0 + w * res, W.y0]}
