"""Static STAC catalog of the demo region."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .glaciers import RES_TRUTH
from .sentinel2 import BANDS, BAND_INFO, BAND_RES
from .writers import COG_MEDIA, CRS, _asset_proj, _lonlat


_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
]


def build_catalog(root, W, scenes: list[dict], aux: dict, extra_collections=()) -> None:
    """Static STAC catalog under ``<root>/inputs/catalog`` (relative hrefs, self-contained).

    Collections ``sentinel-2-l2a`` (one item per scene) and ``auxiliary`` (``dem-glo30`` with asset
    ``dem``; ``dhdt-2010-2014`` / ``dhdt-2015-2019`` with asset ``dhdt``), then the ``extra_collections``
    of the other sensors (``pystac.Collection`` objects with absolute asset hrefs, made relative here).
    """
    from datetime import datetime, timezone

    import pystac
    import shapely
    from shapely.geometry import box, mapping

    root = Path(root)
    inputs = root / "inputs"
    x1, y1 = W.x0 + W.w10 * RES_TRUTH, W.y0 - W.h10 * RES_TRUTH
    lon, lat = _lonlat([W.x0, x1, x1, W.x0], [W.y0, W.y0, y1, y1])
    region_ll = shapely.Polygon(np.round(np.c_[lon, lat], 7))
    bbox_ll = [float(v) for v in region_ll.bounds]
    dts = sorted(datetime.strptime(s["datetime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) for s in scenes)
    cat = pystac.Catalog("glaciermap-demo",
                         f"Synthetic glacier region (glaciermap.demo, preset {W.spec['name']}, seed {W.seed})",
                         title="glaciermap demo region")
    s2 = pystac.Collection(
        "sentinel-2-l2a",
        "Synthetic Sentinel-2 L2A-like scenes (surface reflectance x 10000, uint16, nodata 0; SCL 20 m)",
        pystac.Extent(pystac.SpatialExtent([bbox_ll]), pystac.TemporalExtent([[dts[0], dts[-1]]])),
        license="CC-BY-4.0", title="Sentinel-2 L2A (synthetic)")
    auxc = pystac.Collection(
        "auxiliary", "Synthetic DEM (Copernicus GLO-30-like) and elevation-change maps",
        pystac.Extent(pystac.SpatialExtent([bbox_ll]),
                      pystac.TemporalExtent([[datetime(2010, 1, 1, tzinfo=timezone.utc),
                                              datetime(2019, 12, 31, tzinfo=timezone.utc)]])),
        license="CC-BY-4.0", title="auxiliary rasters")
    cat.add_child(s2)
    cat.add_child(auxc)
    for sc in scenes:
        dt = datetime.strptime(sc["datetime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        geom = sc["footprint"]
        props = {
            "platform": sc["platform"], "constellation": "sentinel-2", "instruments": ["msi"],
            "eo:cloud_cover": sc["cloud_cover"], "proj:code": CRS, "proj:epsg": 32632,
            "s2:mgrs_tile": W.spec["mgrs_tile"], "s2:nodata_pixel_percentage": sc["nodata_pct"],
            "s2:snow_ice_percentage": sc["snow_pct"], "sat:relative_orbit": 65 if sc["orbit"] == "A" else 108,
            "view:sun_azimuth": round(sc["sun_azimuth"], 3), "view:sun_elevation": round(sc["sun_elevation"], 3),
        }
        item = pystac.Item(sc["item_id"], mapping(geom), [float(v) for v in geom.bounds], dt, props,
                           stac_extensions=list(_EXTENSIONS), collection=s2)
        for band in BANDS + ["SCL"]:
            res = 20 if band == "SCL" else BAND_RES[band]
            extra = _asset_proj(W, res)
            if band == "SCL":
                extra["raster:bands"] = [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}]
                title, roles = "Scene classification map (SCL)", ["data"]
            else:
                cn, cw, fw = BAND_INFO[band]
                extra["eo:bands"] = [{"name": band, "common_name": cn, "center_wavelength": cw,
                                      "full_width_half_max": fw}]
                extra["raster:bands"] = [{"nodata": 0, "data_type": "uint16", "spatial_resolution": res,
                                          "scale": 0.0001, "offset": 0}]
                extra["gsd"] = res
                title, roles = f"{band} - {cn} ({res} m)", ["data", "reflectance"]
            href = str((inputs / "scenes" / sc["item_id"] / f"{band}.tif").resolve())
            item.add_asset(band, pystac.Asset(href, title=title, media_type=COG_MEDIA, roles=roles, extra_fields=extra))
        s2.add_item(item)
    for item_id, (asset, path, res, title, start, end) in aux.items():
        props = {"proj:code": CRS, "proj:epsg": 32632,
                 "start_datetime": f"{start}T00:00:00Z", "end_datetime": f"{end}T23:59:59Z"}
        item = pystac.Item(item_id, mapping(region_ll), bbox_ll, None, props,
                           stac_extensions=list(_EXTENSIONS[1:3]), collection=auxc)
        extra = _asset_proj(W, res)
        extra["raster:bands"] = [{"nodata": -9999, "data_type": "float32", "spatial_resolution": res,
                                  "unit": "m" if asset == "dem" else "m/yr"}]
        item.add_asset(asset, pystac.Asset(str(Path(path).resolve()), title=title, media_type=COG_MEDIA,
                                           roles=["data"], extra_fields=extra))
        auxc.add_item(item)
    for coll in extra_collections:
        cat.add_child(coll)
    cat_dir = inputs / "catalog"
    cat.normalize_hrefs(str(cat_dir))
    cat.make_all_asset_hrefs_relative()
    cat.save(pystac.CatalogType.SELF_CONTAINED)
