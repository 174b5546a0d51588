from datetime import datetime

import pystac
import pytest
from shapely.geometry import box, mapping

from glaciermap import stac


def _item(iid, bbox, when, cloud, collection):
    it = pystac.Item(iid, mapping(box(*bbox)), list(bbox), datetime.fromisoformat(when), {"eo:cloud_cover": cloud})
    it.add_asset("B02", pystac.Asset(f"./{iid}_B02.tif"))
    collection.add_item(it)
    return it


@pytest.fixture()
def catalog(tmp_path):
    cat = pystac.Catalog("c", "test catalog")
    col = pystac.Collection("sentinel-2-l2a", "s2", pystac.Extent(pystac.SpatialExtent([[7, 45, 9, 47]]),
                                                                  pystac.TemporalExtent([[None, None]])))
    aux = pystac.Collection("auxiliary", "aux", col.extent)
    cat.add_child(col)
    cat.add_child(aux)
    _item("good", (7.5, 45.9, 7.9, 46.1), "2023-08-20T10:30:00", 10, col)
    _item("late", (7.5, 45.9, 7.9, 46.1), "2023-10-16T10:30:00", 10, col)
    _item("last-day", (7.5, 45.9, 7.9, 46.1), "2023-10-15T10:30:00", 10, col)
    _item("cloudy", (7.5, 45.9, 7.9, 46.1), "2023-08-25T10:30:00", 80, col)
    _item("far", (8.5, 46.5, 8.9, 46.9), "2023-08-20T10:30:00", 10, col)
    dem = _item("dem-glo30", (7, 45, 9, 47), "2015-01-01T00:00:00", 0, aux)
    dem.add_asset("dem", pystac.Asset("./dem.tif"))
    cat.normalize_hrefs(str(tmp_path / "cat"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    return str(tmp_path / "cat" / "catalog.json")


def test_static_search_filters_bbox_window_and_cloud(catalog):
    items = stac.search_scenes(catalog, "sentinel-2-l2a", (7.6, 45.95, 7.7, 46.0), "2023-08-01", "2023-10-15", 75)
    assert [i.id for i in items] == ["good", "last-day"]  # end date inclusive; late, cloudy and far excluded


def test_resolve_raster_by_item_and_path(catalog):
    href = stac.resolve_raster({"stac_item": "dem-glo30", "asset": "dem"}, catalog)
    assert href.endswith("dem.tif") and href.startswith("/")
    assert stac.resolve_raster({"path": "/data/x.tif"}, catalog) == "/data/x.tif"
    with pytest.raises(KeyError, match="no asset 'dhdt'"):
        stac.resolve_raster({"stac_item": "dem-glo30", "asset": "dhdt"}, catalog)


def test_missing_catalog_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        stac.search_scenes(str(tmp_path / "none.json"), "x", (0, 0, 1, 1), "2023-01-01", "2023-02-01", 75)
