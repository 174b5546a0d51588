"""Near-date composites of a scene source: one band of the acquisitions nearest to a date, averaged per pixel.

Used for the raster channels fed by a scene source (``channel_sources.temperature: <a landsat_c2l2 source>``: the
surface temperature of the Landsat scenes taken near the date of the image being mapped). For one glacier and
the date D of its chosen image:

1. search the source (``stac``: catalog or API, collection, ``max_cloud_cover``) over the cube extent (lon/lat
   bounds of the cube grid) in [D - window_days, D + window_days];
2. group the items by acquisition date (UTC calendar day: the scenes of adjacent WRS rows of one overpass are one
   date) and rank the dates by |date - D| in days, then by the lowest ``eo:cloud_cover`` of their items (unknown
   cloud cover last), then earlier first;
3. read the band of each item of the best dates onto the grid with the source's mask (Landsat QA_PIXEL): fill,
   cloud and cloud shadow become NaN (snow stays: it is the surface); a date none of whose items has a clear
   pixel on the grid is passed over (recorded) and the next one is taken, until ``n_dates`` dates are used;
4. the items of one date are averaged per pixel (their overlap is the same overpass), then the dates
   (``nanmean``: a pixel clear on one date only takes that date's value).

No usable date: the layer is all NaN (the channel's fill rule decides) or, with ``near_date.required: true``,
GlacierInputError naming the glacier, the source, the window and why each item was passed over. Items lacking
the band's asset or the mask's are passed over too, unless none of the candidates has them (then the asset
keys are most likely wrong for this catalog: GlacierInputError, whatever ``required`` says).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from datetime import date, datetime, timedelta, timezone

import numpy as np

from glaciermap.data.grid import CubeGrid
from glaciermap.data.sources.base import ItemSource, NearDate, _Context

log = logging.getLogger("glaciermap.data.sources.neardate")

#: Raster channel role -> the band a scene source gives it (the roles a scene source may feed).
SCENE_CHANNEL_BANDS = {"temperature": "thermal"}


@dataclasses.dataclass
class Composite:
    """``values``: float32 (y, x), NaN where no used date has a clear pixel; ``n_obs``: uint8, dates averaged per
    pixel; ``attrs``: what was searched, used and passed over (strings and numbers, ready for NetCDF attrs)."""

    values: np.ndarray
    n_obs: np.ndarray
    attrs: dict


def _as_date(when) -> date:
    """A calendar date (UTC) of a date-like value: date, datetime, pandas Timestamp, ISO string or STAC item."""
    if hasattr(when, "datetime") and hasattr(when, "properties"):
        when = when.datetime or when.properties.get("start_datetime")
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    if isinstance(when, datetime) or hasattr(when, "to_pydatetime"):
        dt = when.to_pydatetime() if hasattr(when, "to_pydatetime") else when
        if dt.tzinfo is not None:
            dt = dt.astimezone(timezone.utc)
        return dt.date()
    if isinstance(when, date):
        return when
    raise ValueError(f"not a date: {when!r}")


def grid_bbox_lonlat(grid: CubeGrid) -> tuple[float, float, float, float]:
    """(west, south, east, north) of the grid's extent in EPSG:4326 (the border densified)."""
    from pyproj import Transformer

    t = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    return tuple(float(v) for v in t.transform_bounds(*grid.bounds, densify_pts=21))


def rank_dates(source: ItemSource, items, center: date) -> list[tuple[date, list]]:
    """``[(date, [items of that date])]`` best first: |date - center| days, then the lowest cloud cover of the
    date's items (None last), then the earlier date; the items of a date by cloud cover, then id."""
    by_date: dict[date, list] = {}
    for it in items:
        by_date.setdefault(_as_date(it), []).append(it)

    def cloud(it) -> float:
        cc = source.cloud_cover(it)
        return math.inf if cc is None else cc

    ranked = []
    for d, its in by_date.items():
        its = sorted(its, key=lambda it: (cloud(it), it.id))
        ranked.append(((abs((d - center).days), cloud(its[0]), d), d, its))
    return [(d, its) for _, d, its in sorted(ranked, key=lambda r: r[0])]


def _lacks(source: ItemSource, band: str, item) -> str | None:
    """Why ``item`` cannot give ``band`` (unknown platform, missing asset), or None."""
    try:
        spec = source.band(band, item)
    except KeyError as e:
        return str(e.args[0])
    need = [spec.asset] + ([source.mask.asset] if source.mask is not None else [])
    missing = [a for a in need if a not in item.assets]
    return f"lacks asset(s) {', '.join(missing)}" if missing else None


def near_date_composite(source: ItemSource, grid: CubeGrid, band: str, when, glacier_id: str = "",
                        settings: NearDate | None = None, items=None) -> Composite:
    """The ``settings.n_dates`` usable acquisition dates of ``source`` nearest to ``when`` (within
    +-``settings.window_days``), band ``band`` with fill / cloud / shadow as NaN, averaged per pixel, on ``grid``.

    ``settings``: default the source's ``near_date``. ``items``: the candidate items (default: searched over the
    grid's extent in the window; given ones are filtered to the window). Raises GlacierInputError (glacier,
    source, file or item, problem) for unreadable files, when no candidate has the band's or mask's asset, and,
    with ``required``, when no date is usable; never returns zeros for missing data.
    """
    s = settings or source.near_date
    ctx = _Context(glacier_id, source)
    center = _as_date(when)
    start, end = center - timedelta(days=s.window_days), center + timedelta(days=s.window_days)
    if items is None:
        items = source.search(grid_bbox_lonlat(grid), start.isoformat(), end.isoformat())
    else:
        items = [it for it in items if start <= _as_date(it) <= end]
    where = str(source.stac_source or "")
    attrs = {"source": source.name, "kind": source.kind, "band": band, "center_date": center.isoformat(),
             "window_days": int(s.window_days), "n_dates": int(s.n_dates), "required": int(s.required),
             "window": f"{start.isoformat()}/{end.isoformat()}", "n_candidates": len(items)}

    ranked = rank_dates(source, items, center)
    lacking = {it.id: why for _, its in ranked for it in its if (why := _lacks(source, band, it))}
    if items and len(lacking) == len(items):
        raise ctx.error(where, f"none of the {len(items)} item(s) within {s.window_days} days of {center} can give "
                               f"band '{band}': " + "; ".join(f"{i}: {w}" for i, w in lacking.items())
                        + f" (check sources.{source.name}.assets / mask.asset against this catalog)")

    used, skipped, files, per_date = [], [], [], []
    for d, its in ranked:
        if len(per_date) == s.n_dates:
            break
        stack = []
        for it in its:
            if it.id in lacking:
                skipped.append(f"{it.id} ({lacking[it.id]})")
                continue
            res = source.read(grid, [band], item=it, glacier_id=glacier_id, allow_all_fill=True)
            v = np.where(res.masks.valid, res.bands[band], np.nan).astype(np.float32)
            if not np.isfinite(v).any():
                m = res.masks
                skipped.append(f"{it.id} (no clear pixel on the grid: fill {100 * m.fill.mean():.0f} %, cloud "
                               f"{100 * (m.cloud & ~m.fill).mean():.0f} %, shadow {100 * (m.shadow & ~m.fill & ~m.cloud).mean():.0f} %)")
                continue
            stack.append(v)
            cc = source.cloud_cover(it)
            used.append({"item": it.id, "date": d.isoformat(), "days": (d - center).days,
                         "cloud_cover": "nan" if cc is None else f"{cc:g}",
                         "clear_fraction": float(np.isfinite(v).mean())})
            files += [res.attrs["files"][k] for k in sorted(res.attrs["files"])]
        if stack:
            per_date.append(_nanmean(stack))

    n_obs = (np.sum([np.isfinite(a) for a in per_date], axis=0) if per_date
             else np.zeros(grid.shape, int)).astype(np.uint8)
    values = _nanmean(per_date) if per_date else np.full(grid.shape, np.nan, np.float32)
    attrs.update({
        "n_dates_used": len(per_date),
        "items": " ".join(u["item"] for u in used) or "none",
        "dates": " ".join(u["date"] for u in used) or "none",
        "days_from_center": " ".join(str(u["days"]) for u in used) or "none",
        "cloud_cover": " ".join(u["cloud_cover"] for u in used) or "none",
        "clear_fraction": " ".join(f"{u['clear_fraction']:.3f}" for u in used) or "none",
        "skipped": "; ".join(skipped) or "none",
        "files": " ".join(files) or "none",
        "valid_fraction": float((n_obs > 0).mean()),
    })
    if not per_date:
        why = (f"no item within {s.window_days} days of {center} over the cube (search {attrs['window']}, "
               f"stac.source {where or '?'}, collection {source.collection})" if not items
               else f"none of the {len(items)} item(s) within {s.window_days} days of {center} has a clear '{band}' "
                    f"pixel on the grid: {attrs['skipped']}")
        if s.required:
            raise ctx.error(where, why + f" (sources.{source.name}.near_date.required is true)")
        log.warning("glacier %s: source '%s' (%s): %s; the layer is NaN (the channel's fill rule decides)",
                    glacier_id, source.name, source.kind, why)
    elif len(per_date) < s.n_dates:
        log.info("glacier %s: source '%s': %d of %d date(s) usable within %d days of %s (%s)", glacier_id,
                 source.name, len(per_date), s.n_dates, s.window_days, center, attrs["dates"])
    return Composite(values, n_obs, attrs)


def _nanmean(arrays) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        return np.nanmean(np.stack(arrays), axis=0).astype(np.float32)


__all__ = ["Composite", "SCENE_CHANNEL_BANDS", "grid_bbox_lonlat", "near_date_composite", "rank_dates"]
