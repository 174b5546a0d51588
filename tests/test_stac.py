from datetime import datetime

import pystac
import pytest
from shapely.geometry import box, mapping

from glaciermap.data import stac


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


def test_items_without_cloud_cover_are_kept_or_dropped_never_silently(catalog, caplog):
    import logging

    cat = pystac.read_file(catalog)
    col = cat.get_child("sentinel-2-l2a")
    sar = pystac.Item("no-cc", mapping(box(7.5, 45.9, 7.9, 46.1)), [7.5, 45.9, 7.9, 46.1],
                      datetime.fromisoformat("2023-09-01T10:30:00"), {})
    col.add_item(sar)
    cat.normalize_hrefs(str(__import__("pathlib").Path(catalog).parent))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    stac._static_items.cache_clear()
    args = (catalog, "sentinel-2-l2a", (7.6, 45.95, 7.7, 46.0), "2023-08-01", "2023-10-15")
    with caplog.at_level(logging.INFO, logger="glaciermap.data.stac"):
        kept = [i.id for i in stac.search_scenes(*args, 75)]
    assert kept == ["good", "no-cc", "last-day"]
    assert "without eo:cloud_cover kept" in caplog.text and "no-cc" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="glaciermap.data.stac"):
        dropped = [i.id for i in stac.search_scenes(*args, 75, missing_cloud_cover="drop")]
    assert dropped == ["good", "last-day"]
    assert "1 item(s) of sentinel-2-l2a without eo:cloud_cover dropped" in caplog.text
    # no cloud filter at all (SAR): the cloudy item is found too
    assert [i.id for i in stac.search_scenes(*args, None)] == ["good", "cloudy", "no-cc", "last-day"]
    stac._static_items.cache_clear()


def test_catalog_that_is_not_json_names_the_file(tmp_path):
    bad = tmp_path / "catalog.json"
    bad.write_text('{"type": "Catalog", "id": "x",')
    stac._static_items.cache_clear()
    with pytest.raises(stac.StacSourceError, match=rf"STAC catalog {bad} .*cannot be read.*JSONDecodeError"):
        stac.search_scenes(str(bad), "x", (0, 0, 1, 1), "2023-01-01", "2023-02-01", 75)
    notstac = tmp_path / "other.json"
    notstac.write_text('{"hello": 1}')
    with pytest.raises(stac.StacSourceError, match=str(notstac)):
        stac.search_scenes(str(notstac), "x", (0, 0, 1, 1), "2023-01-01", "2023-02-01", 75)


def test_indexed_search_equals_a_scan_of_every_item(tmp_path):
    """The R-tree over a static catalog's footprints only narrows the items tested: the answer equals testing every
    item (touching footprints, polygons that are not boxes, boxes far apart)."""
    import numpy as np
    from shapely.geometry import Polygon

    rng = np.random.default_rng(5)
    cat = pystac.Catalog("c", "many items")
    col = pystac.Collection("landsat-c2-l2", "l", pystac.Extent(pystac.SpatialExtent([[5, 44, 11, 48]]),
                                                                 pystac.TemporalExtent([[None, None]])))
    cat.add_child(col)
    for k in range(400):
        x, y = rng.uniform(5, 10.5), rng.uniform(44, 47.5)
        w, h = rng.uniform(0.01, 0.5, 2)
        poly = Polygon([(x, y), (x + w, y + h / 3), (x + w / 2, y + h)])   # a triangle: its bbox over-covers
        it = pystac.Item(f"i{k:03d}", mapping(poly), list(poly.bounds),
                         datetime(2000 + k % 20, 7, 1 + k % 28, 10), {"eo:cloud_cover": float(k % 100)})
        col.add_item(it)
    cat.normalize_hrefs(str(tmp_path / "cat"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    src = str(tmp_path / "cat" / "catalog.json")
    every = stac._static_items(*stac._key(src))
    n_found = 0
    for _ in range(60):
        x, y = rng.uniform(5, 10.8), rng.uniform(44, 47.8)
        bb = (x, y, x + rng.uniform(0.001, 0.3), y + rng.uniform(0.001, 0.3))
        got = [i.id for i in stac.search_scenes(src, "landsat-c2-l2", bb, "2003-01-01", "2016-12-31", 60)]
        t0, t1 = stac._parse_day("2003-01-01", False), stac._parse_day("2016-12-31", True)
        scan = sorted((it for it in every if stac._matches(it, "landsat-c2-l2", box(*bb), t0, t1, 60)),
                      key=lambda it: (it.datetime, it.id))
        assert got == [i.id for i in scan]
        n_found += len(got)
    assert n_found > 20     # the boxes did find items (the equality is not between empty lists)


def test_warm_static_reads_a_catalog_once_and_again_when_a_file_of_it_changes(catalog, tmp_path, monkeypatch):
    """The job worker's catalog cache (glaciermap.worker): read once, kept while no file changes, re-read when an
    item is edited or added (the new scene of an incremental run), keyed by the path resolved in the job's
    directory (the same relative path in two directories is two catalogs)."""
    import json
    import os
    import shutil

    import time

    def age(files):  # written an hour ago: a read now can take their state for what it read
        for f in files:
            os.utime(f, (time.time() - 3600, time.time() - 3600))

    args = ("sentinel-2-l2a", (7.6, 45.95, 7.7, 46.0), "2023-08-01", "2023-10-15", 75)
    age((tmp_path / "cat").rglob("*.json"))
    assert stac.warm_static(catalog) is True and stac.warm_static("https://example.org/stac") is False
    first = stac._static_index(*stac._key(catalog))
    stac.warm_static(catalog)
    assert stac._static_index(*stac._key(catalog)) is first                      # nothing changed: not read again
    assert [i.id for i in stac.search_scenes(catalog, *args)] == ["good", "last-day"]
    # an edited item (its cloud cover rises above the filter): the next warm-up reads the catalog again
    good = next(p for p in (tmp_path / "cat").rglob("good.json"))
    d = json.loads(good.read_text())
    d["properties"]["eo:cloud_cover"] = 90
    good.write_text(json.dumps(d))
    stac.warm_static(catalog)
    assert stac._static_index(*stac._key(catalog)) is not first
    assert [i.id for i in stac.search_scenes(catalog, *args)] == ["last-day"]
    # a new scene: a new item and the link to it in its collection
    cat = pystac.read_file(catalog)
    _item("new", (7.5, 45.9, 7.9, 46.1), "2023-09-01T10:30:00", 5, cat.get_child("sentinel-2-l2a"))
    cat.normalize_hrefs(str(tmp_path / "cat"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    assert [i.id for i in stac.search_scenes(catalog, *args)] == ["last-day"]   # no warm-up: the cache as it was
    stac.warm_static(catalog)
    assert [i.id for i in stac.search_scenes(catalog, *args)] == ["new", "last-day"]
    # a file written within 2 s of the read may have changed during it: read again at the next warm-up, until old
    age((tmp_path / "cat").rglob("*.json"))
    good.write_text(good.read_text())                                           # same content, a new mtime
    stac.warm_static(catalog)
    racy = stac._static_index(*stac._key(catalog))
    stac.warm_static(catalog)
    assert stac._static_index(*stac._key(catalog)) is not racy
    age([good])
    stac.warm_static(catalog)
    settled = stac._static_index(*stac._key(catalog))
    stac.warm_static(catalog)
    assert stac._static_index(*stac._key(catalog)) is settled
    # the same relative path in two directories
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "cat", other / "cat")
    o = json.loads((other / "cat" / "sentinel-2-l2a" / "new" / "new.json").read_text())
    o["properties"]["eo:cloud_cover"] = 95
    (other / "cat" / "sentinel-2-l2a" / "new" / "new.json").write_text(json.dumps(o))
    seen = {}
    for where in (tmp_path, other):
        monkeypatch.chdir(where)
        stac.warm_static("cat/catalog.json")
        seen[where.name] = [i.id for i in stac.search_scenes("cat/catalog.json", *args)]
    assert seen == {tmp_path.name: ["new", "last-day"], "other": ["last-day"]}
    assert os.path.isabs(stac._key("cat/catalog.json")[1])
