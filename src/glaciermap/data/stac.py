"""STAC search with one interface for a STAC API and a local static catalog."""

from __future__ import annotations

import functools
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pystac
from shapely.geometry import box, shape

log = logging.getLogger("glaciermap.data.stac")


class StacSourceError(ValueError):
    """A static catalog that cannot be read (not JSON, not STAC, a broken link); the message names the file."""


def is_api(source: str) -> bool:
    return str(source).startswith(("http://", "https://"))


#: The files each cached static catalog was read from, with their state then (see :func:`warm_static`).
_READ_FROM: dict[tuple, tuple] = {}


def _states(paths) -> tuple:
    """``(path, mtime_ns, size, inode)`` of each file; a missing file gives ``(path, None, None, None)``."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((p, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((p, None, None, None))
    return tuple(out)


def _key(source) -> tuple[str, str]:
    """The cache key of a local catalog: its path as given (for messages) and resolved against the working
    directory (a relative path read by processes in different directories, the job worker's, is not one file)."""
    return str(source), os.path.abspath(str(source))


@functools.lru_cache(maxsize=4)
def _static_items(source: str, where: str) -> tuple:
    """All items of a local static catalog, read once per process; called as ``_static_items(*_key(source))``
    (``where``: its absolute path, so the cache never answers for a relative path read from another directory)."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"STAC catalog {source} does not exist")
    items = []
    began = time.time_ns()
    try:
        cat = pystac.read_file(str(path))
        for item in cat.get_items(recursive=True):
            item.make_asset_hrefs_absolute()
            items.append(item)
        files = [c.get_self_href() for c, _, _ in cat.walk()] + [it.get_self_href() for it in items]
        # a file changed in the last 2 s before the read began may have changed during it after its state was taken
        # (timestamps are coarse): recorded as unknown, so the next warm-up reads the catalog again (as git does)
        _READ_FROM[_key(source)] = tuple((f, -1, -1, -1) if m is not None and m >= began - 2_000_000_000
                                         else (f, m, n, i) for f, m, n, i in
                                         _states(sorted({str(f).removeprefix("file://") for f in files if f})))
        log.info("read STAC catalog %s: %d items from %d files", source, len(items), len(_READ_FROM[_key(source)]))
    except FileNotFoundError as e:  # a child catalog or item the catalog links to
        raise StacSourceError(f"STAC catalog {source}: a linked file does not exist: {e.filename or e}") from e
    except (ValueError, KeyError, TypeError, pystac.STACError, pystac.STACTypeError) as e:
        # json.JSONDecodeError is a ValueError; pystac raises STACTypeError/KeyError for JSON that is not STAC
        where = f" ({e.doc and 'line %d column %d' % (e.lineno, e.colno)})" if hasattr(e, "lineno") else ""
        raise StacSourceError(f"STAC catalog {source} (or a file it links to) cannot be read{where}: "
                              f"{type(e).__name__}: {e}") from e
    return tuple(items)


def footprint(item: pystac.Item):
    """The item's footprint in longitude/latitude: its geometry, else its bbox."""
    return shape(item.geometry) if item.geometry else box(*item.bbox)


@functools.lru_cache(maxsize=4)
def _static_index(source: str, where: str):
    """(items, R-tree of their footprints) of a local static catalog, built once per process: a search tests only
    the items whose footprint meets its box (planning a region searches once per glacier and epoch)."""
    from shapely import STRtree

    items = _static_items(source, where)
    return items, STRtree([footprint(it) for it in items])


# A job worker's child keeps these between jobs (glaciermap.worker empties every other cache): warm_static checks
# them against the catalog's files before each job.
_static_items.worker_keep = _static_index.worker_keep = True


def warm_static(source: str) -> bool:
    """Read a local static catalog into this process's cache, dropping what is cached when any file it was read
    from (the root, every child catalog, every item) changed, appeared or went since; False for a STAC API.

    For the long-lived job worker (:mod:`glaciermap.worker`): it calls this before forking a job's child, and a
    child that runs several jobs calls it before each of them; the child then finds the catalog read (~0.4 s a job
    on the demo), while a new scene (a new item and the link to it in its catalog) or an edited item is read afresh
    by the next job. A one-job process reads the catalog once anyway.
    A catalog that cannot be read raises as :func:`search_scenes` would, with nothing cached.
    """
    if is_api(source):
        return False
    key = _key(source)
    if key in _READ_FROM and _states(p for p, *_ in _READ_FROM[key]) != _READ_FROM[key]:
        log.info("STAC catalog %s changed since it was read: reading it again", source)
        _READ_FROM.pop(key, None)
        _static_items.cache_clear()
        _static_index.cache_clear()
    _static_index(*key)
    return True


def _parse_day(s: str, end: bool) -> datetime:
    d = datetime.fromisoformat(s)
    if end and len(s) == 10:  # an end date is inclusive: the whole day
        d = d.replace(hour=23, minute=59, second=59)
    return d.replace(tzinfo=timezone.utc) if d.tzinfo is None else d


def _matches(item: pystac.Item, collection: str | None, aoi, start: datetime, end: datetime, max_cloud: float | None,
             keep_missing_cloud: bool = True) -> bool:
    if collection and item.collection_id != collection:
        return False
    dt = item.datetime or _parse_day(item.properties.get("start_datetime"), False)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    if not (start <= dt <= end):
        return False
    if max_cloud is not None:
        cc = item.properties.get("eo:cloud_cover")
        if cc is None:
            if not keep_missing_cloud:
                return False
        elif not cc < max_cloud:
            return False
    return aoi is None or footprint(item).intersects(aoi)


def search_scenes(source: str, collection: str, bbox_lonlat, start: str, end: str, max_cloud: float | None,
                  missing_cloud_cover: str = "keep") -> list[pystac.Item]:
    """Items of ``collection`` intersecting ``bbox_lonlat`` in [start, end] with ``eo:cloud_cover < max_cloud``.

    ``max_cloud`` None: no cloud filter (SAR). An item without ``eo:cloud_cover`` is kept
    (``missing_cloud_cover="keep"``: the per-pixel mask decides; logged by id) or dropped (``"drop"``; the count
    is logged), never silently. A STAC API is asked with item search (the cloud filter is sent to the server
    only with ``"drop"``, where the server's answer is the same); a static catalog is filtered here with the
    same predicate, so both sources give the same answer. Sorted by datetime, then id.
    """
    if missing_cloud_cover not in ("keep", "drop"):
        raise ValueError(f"missing_cloud_cover must be 'keep' or 'drop', not {missing_cloud_cover!r}")
    keep = missing_cloud_cover == "keep"
    t0, t1 = _parse_day(start, False), _parse_day(end, True)
    aoi = box(*bbox_lonlat)
    if is_api(source):
        from pystac_client import Client

        client = Client.open(source)
        query = {"eo:cloud_cover": {"lt": max_cloud}} if (max_cloud is not None and not keep) else None
        search = client.search(collections=[collection], bbox=bbox_lonlat, datetime=[t0, t1], query=query)
        items = list(search.items())
    else:
        everything, tree = _static_index(*_key(source))
        # the footprints the tree finds meet the box (the same shapely predicate): not tested again below
        items = [everything[i] for i in sorted(tree.query(aoi, predicate="intersects"))]
        aoi = None
    found = [it for it in items if _matches(it, collection, aoi, t0, t1, max_cloud, keep)]
    if max_cloud is not None:
        in_window = [it for it in items if _matches(it, collection, aoi, t0, t1, None)]
        no_cc = [it.id for it in in_window if it.properties.get("eo:cloud_cover") is None]
        if no_cc and keep:
            log.info("%d item(s) of %s without eo:cloud_cover kept (the per-pixel mask decides): %s",
                     len(no_cc), collection, ", ".join(no_cc))
        elif no_cc:
            log.warning("%d item(s) of %s without eo:cloud_cover dropped (stac.missing_cloud_cover: drop): %s",
                        len(no_cc), collection, ", ".join(no_cc))
    return sorted(found, key=lambda it: (it.datetime or t0, it.id))


@functools.lru_cache(maxsize=None)
def _file_state(href: str) -> str:
    """``<size>`` of a local file, ``missing`` when it is absent, ``remote`` for a URL (not looked at)."""
    import os

    if "://" in href and not href.startswith("file://"):
        return "remote"
    try:
        return str(os.stat(href.removeprefix("file://")).st_size)
    except OSError:
        return "missing"


def _absolute_href(asset: pystac.Asset) -> str:
    """The asset's href; resolved against its item only when relative (a static catalog's hrefs are made absolute
    when it is read, so planning a region does not parse every href of every item once per glacier)."""
    h = asset.href
    return h if h.startswith("/") or "://" in h else asset.get_absolute_href()


def item_token(item: pystac.Item, keys) -> str:
    """``<id>`` or ``<id>@<hash>`` of an item: the hash changes when one of its local asset files ``keys``
    appears, disappears or changes size, so a scene file that was missing or truncated and comes back re-runs
    the acquisitions that use it (a Snakemake param). One stat per asset file, cached per process."""
    import hashlib

    states = [f"{k}={_file_state(_absolute_href(item.assets[k]))}" if k in item.assets else f"{k}=absent"
              for k in keys]
    if all(st.endswith("=remote") for st in states):
        return item.id
    return f"{item.id}@{hashlib.sha1(';'.join(states).encode()).hexdigest()[:8]}"


def find_item(source: str, item_id: str, collection: str | None = None) -> pystac.Item:
    if is_api(source):
        from pystac_client import Client

        client = Client.open(source)
        items = list(client.search(ids=[item_id], collections=[collection] if collection else None).items())
    else:
        items = [it for it in _static_items(*_key(source)) if it.id == item_id and (collection is None or it.collection_id == collection)]
    if len(items) != 1:
        raise KeyError(f"STAC item '{item_id}' found {len(items)} times in {source}")
    return items[0]


def resolve_raster(spec: dict, source: str) -> str:
    """Path or URL of a raster given as ``{path}`` or ``{stac_item, asset}`` (see the config schema)."""
    if spec.get("path"):
        return spec["path"]
    item = find_item(source, spec["stac_item"], spec.get("collection"))
    if spec["asset"] not in item.assets:
        raise KeyError(f"STAC item '{item.id}' has no asset '{spec['asset']}' (assets: {', '.join(item.assets)})")
    return item.assets[spec["asset"]].get_absolute_href()
