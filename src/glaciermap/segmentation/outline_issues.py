"""Confident learning on inventory outlines: which glaciers' outlines are probably wrong, and where.

Inventories carry wrong outlines: debris-covered tongues left out, seasonal snow patches mapped as glacier
ice. The DL4GAM ensemble of each cross-validation fold never saw its test glaciers, so the calibrated
ensemble mean ``mu`` of a glacier's test prediction is an out-of-fold estimate of P(ice) for every pixel.
Confident learning (Northcutt et al. 2021, the ``cleanlab`` library) compares such out-of-sample
probabilities with the given labels, here the rasterised inventory outline (``mask_glacier`` of the cube),
and names the pixels whose label is likely wrong.

Method
------
Per glacier, the pixels analysed (``valid``) are those with a finite calibrated probability (the prediction
covers the patches meeting the 50 m buffer; NaN elsewhere), not nodata and not cloud, and (when the cube has
``mask_glacier_id``) closer to this glacier's outline than to any other inventory glacier's
(:func:`own_domain`): a neighbour's ice is that neighbour's business, and a pixel shared by two cubes is
judged once (when both cubes know both glaciers, as cubes of neighbours do). Each valid pixel is one example with label 1 (inventory ice) or 0, and
``pred_probs = [1 - mu, mu]``.

1. Label issues: :func:`cleanlab.segmentation.filter.find_label_issues` on **all glaciers of the region
   together** (:func:`region_issues`). Cleanlab's per-class confident thresholds (mean P(class) of the
   pixels given that class) and the estimated number of issues (pixels confidently predicted as the other
   class) are data-set statistics: from a whole region they are stable, from one glacier of a few hundred
   ice pixels they are not (one glacier whose outline is all wrong would set its own thresholds).
   :func:`glacier_issues` runs the same on one glacier alone, for single checks.

   What confident learning cannot see: a pixel labelled not-ice counts as an issue only when its P(ice)
   reaches the mean P(ice) of the pixels labelled ice (and vice versa), so a left-out tongue that the model
   calls ice less surely than it calls the average inventory ice is not flagged at all, whatever its size
   (``tests/test_outline_issues.py`` pins this). Calibrated probabilities (temperature scaling of each fold)
   keep the two sides comparable.

   Glaciers differ in shape, but cleanlab's segmentation functions want images of one shape. Padding to a
   common shape would need "neutral" filler pixels, and there are none: each filler pixel carries a label
   and so enters the mean of that class's confident threshold (and the count of issues). Instead the valid
   pixels of all glaciers are packed into a single image of shape (1, n) (``labels`` (1, 1, n),
   ``pred_probs`` (1, 2, 1, n)). That is exact: cleanlab's segmentation ``find_label_issues`` flattens
   images into pixels (each pixel an example; the layout is used only by its optional ``downsample``,
   which is left at 1 because block means would mix valid with invalid pixels and blur narrow tongues).
   Invalid pixels never enter, so they are never flagged and bias nothing. ``n_jobs=1`` (cleanlab's
   default multiprocessing forks a pool per call), ``verbose=False``. Cost: about 0.5 s per million valid
   pixels and a peak of ~100-250 bytes per valid pixel (cleanlab keeps one Python float per pixel): 50
   glaciers of 300 x 300 pixels (4.5 million) take ~2.5 s and ~0.6 GB.
2. Cleaning: a pixel flagged by cleanlab always disagrees with the model's argmax, so flagged pixels
   outside the inventory are **suspected missing ice** (the model calls them ice) and flagged pixels
   inside are **suspected false ice**. Each kind is opened by reconstruction with a (2 r + 1)-pixel square
   (``open_px`` = r, default 1): a connected region into which no such square fits is dropped (slivers up to
   2 r pixels wide along an outline are co-registration and resolution effects, not outline errors a
   curator can fix), any other region is kept whole (a plain opening would also shave the edges of real
   errors). Then connected regions (4-connectivity) smaller than ``min_region_px`` pixels are dropped
   (:func:`glaciermap.area_change.outlines.remove_specks`). Last (``grow``, default on) each region left is
   grown into the 4-connected valid pixels of its kind where the model's argmax disagrees with the label.
   Why: cleanlab's number of issues is the number of pixels *confidently* in the other class (P above that
   class's mean P over its labelled pixels), so the less confident part of a wrong area (its rim, a debris
   tongue at P 0.6 - 0.9) is left out and the raw flags underestimate the area (by a third on the tests'
   synthetic tongues). Cleanlab decides whether and where; the model's decision boundary says how far. A
   region never grows into the other kind, nor into invalid pixels, nor from nothing.
3. Score: :func:`cleanlab.segmentation.rank.get_label_quality_scores` (``method="softmin"``, ``temperature``)
   of each glacier's valid pixels as one (1, n) image: the softmin of the pixels' self-confidence P(given
   label), in [0, 1], low = suspect. It does not depend on the other glaciers.
4. Flag: a glacier is flagged when ``missing_ice_km2 + false_ice_km2 >= max(min_km2, min_share *
   inventory_km2)`` (after cleaning): the suspect area must matter in absolute terms (``min_km2``, default
   0.01 km2 = 100 pixels at 10 m) and relative to the glacier (``min_share``, default 0.05 of its inventory
   area), so that a large glacier is not flagged for a few boundary pixels and a tiny one not for one
   speck.

Outputs (:func:`run_outline_issues`; :func:`run_outline_issues_files` on the workflow's folder layout)
------------------------------------------------------------------------------------------------------
* CSV, one row per glacier (most suspect first; skip records at the end with ``status`` "skipped"):
  ``glacier_id, fold, status, rank, score, flagged, missing_ice_km2, false_ice_km2, inventory_km2,
  valid_km2, issue_px_raw, flagged_px, n_valid_px, pixel_area_m2`` (+ ``planted_error`` with a truth).
* GeoPackage, layer ``suspect_areas``: one polygon per connected suspect region with ``glacier_id``,
  ``kind`` ("missing_ice" / "false_ice"), ``area_km2`` (in the cube CRS), ``mean_p_ice`` (the calibrated
  ensemble mean over the region), ``score`` and ``flagged`` of its glacier; polygons follow pixel edges
  (``rasterio.features.shapes``). CRS: ``params["crs"]`` when given (not "auto"), else the cubes' CRS when
  they share one, else the first cube's (areas are always measured in the cube's own CRS). The layer exists
  (with its columns) when empty.
* JSON: ``n_glaciers`` (scored), ``n_skipped``, ``n_glaciers_flagged``, ``missing_ice_km2_total``,
  ``false_ice_km2_total``, pixel counts, ``params``; with a truth (``{"glacier_ids_with_errors": [...]}`` or
  a CSV of their ``glacier_id``: the planted errors of a demo) ``precision`` (share of the flagged glaciers with a planted error) and
  ``recall`` (share of the scored glaciers with a planted error that are flagged).

Every file is written under a temporary name and renamed (glaciermap.io). A prediction or cube that cannot
be read, a grid mismatch, a K-class prediction or a glacier without fold or calibration raises
:class:`glaciermap.io.GlacierInputError` naming the glacier and the file; skip records are counted.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from glaciermap.io import (STATUS_OK, STATUS_SKIPPED, GlacierInputError, write_csv_atomic, write_gpkg_atomic,
                           write_json_atomic)

log = logging.getLogger("glaciermap.segmentation.outline_issues")

LAYER = "suspect_areas"
KINDS = ("missing_ice", "false_ice")
DEFAULTS = {"min_region_px": 9, "open_px": 1, "grow": True, "min_km2": 0.01, "min_share": 0.05, "temperature": 0.1,
            "batch_size": None}
ROW_COLUMNS = ("glacier_id", "score", "flagged", "missing_ice_km2", "false_ice_km2", "inventory_km2", "valid_km2",
               "issue_px_raw", "flagged_px", "n_valid_px", "pixel_area_m2")
CSV_COLUMNS = ("glacier_id", "fold", "status", "rank", *ROW_COLUMNS[1:])
GPKG_COLUMNS = ("glacier_id", "kind", "area_km2", "mean_p_ice", "score", "flagged")


def _opts(opts: dict | None) -> dict:
    o = dict(DEFAULTS)
    unknown = sorted(set(opts or {}) - set(DEFAULTS) - {"crs"})
    if unknown:
        raise ValueError(f"outline issues: unknown option(s) {unknown}; known: {sorted(DEFAULTS)} and crs")
    o.update({k: v for k, v in (opts or {}).items() if v is not None})  # None: the default
    if int(o["min_region_px"]) < 0 or int(o["open_px"]) < 0:
        raise ValueError(f"outline issues: min_region_px and open_px must be >= 0, got {o['min_region_px']}, "
                         f"{o['open_px']}")
    if not 0.0 <= float(o["min_share"]) <= 1.0 or float(o["min_km2"]) < 0.0 or float(o["temperature"]) <= 0.0:
        raise ValueError(f"outline issues: need 0 <= min_share <= 1, min_km2 >= 0, temperature > 0; got {o}")
    return o


# --------------------------------------------------------------------------------------------- cleanlab core


def _check_glacier(glacier_id, prob, label, valid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prob float64, label bool, valid bool without the non-finite pixels), checked; ValueError names the glacier."""
    p = np.asarray(prob, dtype=np.float64)
    lab = np.asarray(label).astype(bool)
    v = np.ones(p.shape, bool) if valid is None else np.asarray(valid).astype(bool)
    if p.ndim != 2 or lab.shape != p.shape or v.shape != p.shape:
        raise ValueError(f"glacier {glacier_id}: prob {p.shape}, label {lab.shape} and valid {v.shape} must be "
                         "the same 2-D shape")
    v = v & np.isfinite(p)
    if v.any() and (p[v].min() < 0.0 or p[v].max() > 1.0):
        raise ValueError(f"glacier {glacier_id}: probabilities outside [0, 1] ({p[v].min()} .. {p[v].max()})")
    return p, lab, v


def _pack(p_flat: np.ndarray, lab_flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels as one (1, n) image: labels (1, 1, n) int, pred_probs (1, 2, 1, n) [P(not ice), P(ice)]."""
    p = np.clip(p_flat.astype(np.float64), 0.0, 1.0)
    pred = np.stack([1.0 - p, p])[None, :, None, :]
    return lab_flat.astype(np.int64)[None, None, :], pred


def confident_issues(p_flat, lab_flat, batch_size: int | None = None) -> np.ndarray:
    """Boolean issue flag of each pixel (1-D arrays of P(ice) and 0/1 labels), by cleanlab's segmentation
    ``find_label_issues`` on the pixels packed as one image (see the module docstring)."""
    from cleanlab.segmentation.filter import find_label_issues

    p_flat = np.asarray(p_flat, dtype=np.float64).ravel()
    lab_flat = np.asarray(lab_flat).astype(bool).ravel()
    if p_flat.size == 0:
        return np.zeros(0, bool)
    labels, pred = _pack(p_flat, lab_flat)
    issues = find_label_issues(labels, pred, batch_size=batch_size, n_jobs=1, verbose=False, downsample=1)
    return np.asarray(issues, bool).reshape(-1)


def quality_score(p_flat, lab_flat, temperature: float = 0.1) -> float:
    """cleanlab's softmin label-quality score of one glacier's pixels (NaN when it has none)."""
    from cleanlab.segmentation.rank import get_label_quality_scores

    p_flat = np.asarray(p_flat, dtype=np.float64).ravel()
    if p_flat.size == 0:
        return float("nan")
    labels, pred = _pack(p_flat, np.asarray(lab_flat).astype(bool).ravel())
    scores, _ = get_label_quality_scores(labels, pred, method="softmin", verbose=False, temperature=float(temperature))
    return float(scores[0])


def clean_issues(issues, label, open_px: int = 1, min_region_px: int = 9, prob=None,
                 valid=None) -> tuple[np.ndarray, np.ndarray]:
    """(missing ice, false ice) masks: the flagged pixels outside / inside the inventory, each opened by
    reconstruction with a (2 open_px + 1) square (a region is kept whole when a square fits into it somewhere,
    dropped when none does: slivers along an outline go, blobs keep their area) and without connected regions
    (4-connectivity) of fewer than ``min_region_px`` pixels. With ``prob`` (P(ice)) the regions left are then
    grown into the 4-connected valid pixels where the model disagrees with the label (P(ice) > 0.5 outside the
    inventory, < 0.5 inside): cleanlab decides whether and where, the model's decision boundary how far."""
    from scipy import ndimage

    from glaciermap.area_change.outlines import remove_specks

    issues = np.asarray(issues, bool)
    label = np.asarray(label, bool)
    four = ndimage.generate_binary_structure(2, 1)
    out = []
    for m in (issues & ~label, issues & label):
        if open_px > 0 and m.any():
            core = ndimage.binary_opening(m, structure=np.ones((2 * open_px + 1,) * 2, bool))
            m = ndimage.binary_propagation(core, structure=four, mask=m)  # opening by reconstruction
        m, _, _ = remove_specks(m, int(min_region_px), 0)
        out.append(m)
    if prob is not None:
        p = np.asarray(prob, np.float64)
        v = np.isfinite(p) if valid is None else np.asarray(valid, bool) & np.isfinite(p)
        with np.errstate(invalid="ignore"):
            disagree = (v & ~label & (p > 0.5), v & label & (p < 0.5))
        out = [ndimage.binary_propagation(m, structure=four, mask=m | d) if m.any() else m
               for m, d in zip(out, disagree)]
    return out[0], out[1]


def _row(glacier_id, score, issues_raw, missing, false, label, valid, pixel_area_m2, o) -> dict:
    km2 = float(pixel_area_m2) / 1e6
    miss_km2, false_km2 = float(missing.sum()) * km2, float(false.sum()) * km2
    inv_km2 = float(label.sum()) * km2
    need = max(float(o["min_km2"]), float(o["min_share"]) * inv_km2)
    total = miss_km2 + false_km2
    return {"glacier_id": str(glacier_id), "score": score, "flagged": bool(total > 0 and total >= need - 1e-12),
            "missing_ice_km2": miss_km2, "false_ice_km2": false_km2, "inventory_km2": inv_km2,
            "valid_km2": float(valid.sum()) * km2, "issue_px_raw": int(issues_raw.sum()),
            "flagged_px": int((missing | false).sum()), "n_valid_px": int(valid.sum()),
            "pixel_area_m2": float(pixel_area_m2)}


def glacier_issues(prob_ice, label, valid, pixel_area_m2: float, glacier_id: str = "glacier", **opts):
    """Outline issues of one glacier on its own: (issue mask (H, W) bool, row dict).

    ``prob_ice``: calibrated ensemble mean P(ice) (NaN = not predicted), ``label``: the inventory mask,
    ``valid``: pixels to judge (not nodata / cloud; None = all finite). Cleanlab's thresholds come from this
    glacier alone; for a region use :func:`region_issues`. ``opts``: see ``DEFAULTS``. The row holds
    ``score`` (cleanlab softmin, 0..1, low = suspect), ``flagged``, ``missing_ice_km2``, ``false_ice_km2``,
    ``inventory_km2``, pixel counts. The issue mask is the cleaned one (missing | false ice); it is never
    True on an invalid pixel.
    """
    rows, masks = _region([(glacier_id, prob_ice, label, valid, pixel_area_m2, None, None)], _opts(opts))
    return masks[str(glacier_id)], rows[0]


def region_issues(items, **opts) -> tuple[pd.DataFrame, dict]:
    """Outline issues of many glaciers, cleanlab's thresholds estimated on all of them together.

    ``items``: (glacier_id, prob_ice (H, W), label (H, W) bool, valid (H, W) bool or None, pixel_area_m2,
    transform, crs) per glacier; shapes may differ between glaciers (the valid pixels of all glaciers are
    packed into one image, see the module docstring); transform and crs are not used here (they are for
    :func:`issue_polygons`). Returns (one row per glacier, columns ``ROW_COLUMNS``; {glacier_id: cleaned
    issue mask (H, W) bool}).
    """
    rows, masks = _region(items, _opts(opts))
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS)), masks


def _region(items, o: dict) -> tuple[list[dict], dict]:
    checked, seen = [], set()
    for it in items:
        gid, prob, label, valid, a_px = str(it[0]), it[1], it[2], it[3], it[4]
        if gid in seen:
            raise ValueError(f"glacier {gid} given twice")
        seen.add(gid)
        if not (np.isfinite(float(a_px)) and float(a_px) > 0):
            raise ValueError(f"glacier {gid}: pixel area must be > 0, got {a_px}")
        checked.append((gid, *_check_glacier(gid, prob, label, valid), float(a_px)))
    if not checked:
        return [], {}
    p_all = np.concatenate([p[v] for _, p, _, v, _ in checked])
    l_all = np.concatenate([lab[v] for _, _, lab, v, _ in checked])
    flags = confident_issues(p_all, l_all, o["batch_size"])
    rows, masks, start = [], {}, 0
    for gid, p, lab, v, a_px in checked:
        n = int(v.sum())
        raw = np.zeros(p.shape, bool)
        raw[v] = flags[start:start + n]
        score = quality_score(p[v], lab[v], o["temperature"])
        start += n
        missing, false = clean_issues(raw, lab, int(o["open_px"]), int(o["min_region_px"]),
                                      p if o["grow"] else None, v)
        masks[gid] = missing | false
        rows.append(_row(gid, score, raw, missing, false, lab, v, a_px, o))
    return rows, masks


# --------------------------------------------------------------------------------------------- polygons


def suspect_polygons(mask, kind_mask, transform, crs, glacier_id, prob=None):
    """GeoDataFrame of the suspect areas of one glacier: one polygon per connected region (4-connectivity)
    of ``mask``, with ``glacier_id``, ``kind``, ``area_km2`` (in ``crs``, which must be projected in metres for
    that to mean km2), ``mean_p_ice`` (mean of ``prob`` over the region; NaN without it) and geometry.

    ``kind_mask``: the inventory mask (True = inventory ice): flagged pixels inside it are "false_ice",
    outside "missing_ice".
    """
    import geopandas as gpd
    from rasterio import features
    from scipy import ndimage
    from shapely.geometry import shape

    mask = np.asarray(mask, bool)
    inv = np.asarray(kind_mask, bool)
    if inv.shape != mask.shape:
        raise ValueError(f"glacier {glacier_id}: mask {mask.shape} and kind_mask {inv.shape} differ in shape")
    p = None if prob is None else np.asarray(prob, np.float64)
    rows, geoms = [], []
    for kind, m in (("missing_ice", mask & ~inv), ("false_ice", mask & inv)):
        if not m.any():
            continue
        lab, n = ndimage.label(m)  # 4-connectivity: the regions rasterio's shapes(connectivity=4) gives
        idx = np.arange(1, n + 1)
        if p is not None:
            fin = np.isfinite(p)
            sums = ndimage.sum_labels(np.where(fin, p, 0.0), lab, idx)
            counts = ndimage.sum_labels(fin, lab, idx)
            means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        for g, val in features.shapes(lab.astype(np.int32), mask=m, transform=transform, connectivity=4):
            geom = shape(g)
            mp = float(means[int(val) - 1]) if p is not None else float("nan")
            rows.append({"glacier_id": str(glacier_id), "kind": kind, "area_km2": geom.area / 1e6, "mean_p_ice": mp})
            geoms.append(geom)
    df = pd.DataFrame(rows, columns=["glacier_id", "kind", "area_km2", "mean_p_ice"])
    return gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(geoms, crs=crs), crs=crs)


def issue_polygons(items, masks, rows: pd.DataFrame | None = None, crs=None):
    """Suspect polygons of every glacier of ``items`` (as for :func:`region_issues`) in one GeoDataFrame.

    CRS: ``crs`` when given, else the glaciers' common CRS, else the first glacier's (others reprojected;
    ``area_km2`` stays the area in the glacier's own CRS). ``rows``: the region table, whose ``score`` and
    ``flagged`` are copied to the polygons.
    """
    import geopandas as gpd
    from pyproj import CRS

    crss = [CRS.from_user_input(it[6]) for it in items if it[6] is not None]
    if crs is not None and str(crs).lower() != "auto":
        try:
            target = CRS.from_user_input(crs)
        except Exception as e:  # pyproj.exceptions.CRSError
            raise ValueError(f"outline issues: crs {crs!r} is not a CRS pyproj understands ({e})") from e
    else:
        target = crss[0] if crss else None
    parts = []
    for it in items:
        gid, prob, label, transform, c = str(it[0]), it[1], it[2], it[5], it[6]
        if gid not in masks or not masks[gid].any():
            continue
        if transform is None:
            raise ValueError(f"glacier {gid}: no transform to build its suspect polygons")
        gdf = suspect_polygons(masks[gid], label, transform, c, gid, prob)
        if target is not None and c is not None and CRS.from_user_input(c) != target:
            gdf = gdf.to_crs(target)
        parts.append(gdf)
    cols = ["glacier_id", "kind", "area_km2", "mean_p_ice"]
    if parts:
        out = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs=target)
    else:
        out = gpd.GeoDataFrame(pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                                             zip(cols, (str, str, float, float))}),
                               geometry=gpd.GeoSeries([], crs=target), crs=target)
    if rows is not None and len(rows):
        r = rows.set_index("glacier_id")
        out["score"] = out["glacier_id"].map(r["score"]).astype(float)
        out["flagged"] = out["glacier_id"].map(r["flagged"]).astype(bool)
    else:
        out["score"] = pd.Series(dtype=float)
        out["flagged"] = pd.Series(dtype=bool)
    return out[[*GPKG_COLUMNS, "geometry"]]


# --------------------------------------------------------------------------------------------- the rule


def own_domain(own, glacier_id_mask) -> np.ndarray:
    """Pixels at least as close to this glacier's outline (``own``) as to any other inventory glacier's
    (``glacier_id_mask`` >= 0 outside ``own``), other glaciers' pixels excluded. All pixels without others."""
    from scipy import ndimage

    own = np.asarray(own, bool)
    other = (np.asarray(glacier_id_mask) >= 0) & ~own
    if not other.any():
        return np.ones(own.shape, bool)
    if not own.any():
        return ~other
    return (ndimage.distance_transform_edt(~own) <= ndimage.distance_transform_edt(~other)) & ~other


def _read(path, names, glacier: str, what: str, optional=()):
    from glaciermap.io import read_record

    try:
        return read_record(path, names, optional=optional)
    except KeyError as e:
        raise GlacierInputError(glacier, path, f"{what} lacks {e}") from e
    except (OSError, ValueError) as e:
        raise GlacierInputError(glacier, path, f"cannot read the {what}: {e}") from e


def read_glacier(glacier: str, pred_path, cube_path, temperatures):
    """(calibrated mean P(ice), inventory mask, valid mask, pixel area m2, transform, crs) of one glacier;
    None for a skip record (prediction or cube)."""
    from glaciermap.data.georef import read_grid
    from glaciermap.results import calibrated_stats

    pred = _read(pred_path, ["prob"], glacier, "prediction file")
    cube = _read(cube_path, ["mask_glacier", "mask_nodata", "mask_cloud"], glacier, "cube",
                 optional=["mask_glacier_id"])
    if pred is None or cube is None:
        return None
    probs = pred[0]["prob"].astype(np.float64)
    if probs.ndim != 3:
        raise GlacierInputError(glacier, pred_path, f"expected a binary prediction prob(member, y, x), got shape "
                                                    f"{probs.shape} (a K-class model?)")
    v = cube[0]
    label = v["mask_glacier"].astype(bool)
    if probs.shape[1:] != label.shape:
        raise GlacierInputError(glacier, pred_path, f"prediction grid {probs.shape[1:]} differs from the cube grid "
                                                    f"{label.shape} of {cube_path}")
    try:
        grid = read_grid(cube_path)
    except (OSError, ValueError, KeyError) as e:
        raise GlacierInputError(glacier, cube_path, f"cannot read the cube grid: {e}") from e
    if grid.crs is None:
        raise GlacierInputError(glacier, cube_path, "cube has no CRS (spatial_ref)")
    try:
        mu, _ = calibrated_stats(probs, temperatures)
    except ValueError as e:
        raise GlacierInputError(glacier, pred_path, f"{probs.shape[0]} member(s) but temperatures "
                                                    f"{list(temperatures)}: {e}") from e
    valid = np.isfinite(mu) & ~v["mask_nodata"].astype(bool) & ~v["mask_cloud"].astype(bool)
    if "mask_glacier_id" in v:
        valid &= own_domain(label, v["mask_glacier_id"])
    t = grid.transform
    return mu, label, valid, abs(t.a * t.e - t.b * t.d), t, grid.crs


def _truth_ids(truth) -> set[str] | None:
    """Glacier ids with a planted inventory error: from a dict / JSON file ``{"glacier_ids_with_errors": [...]}``
    or a CSV whose rows are those glaciers (column ``glacier_id`` or ``glac_id``)."""
    if truth is None:
        return None
    if isinstance(truth, (str, Path)):
        path = Path(truth)
        if path.suffix.lower() == ".csv":
            df = pd.read_csv(path, dtype=str)
            col = next((c for c in ("glacier_id", "glac_id") if c in df.columns), None)
            if col is None:
                raise ValueError(f"truth {path}: needs a glacier_id column, has {list(df.columns)}")
            return set(df[col].dropna().astype(str))
        truth = json.loads(path.read_text())
    if "glacier_ids_with_errors" not in truth:
        raise ValueError(f"truth needs 'glacier_ids_with_errors', got keys {sorted(truth)}")
    return {str(g) for g in truth["glacier_ids_with_errors"]}


def run_outline_issues(pred_paths: dict, cube_paths: dict, calib_jsons, fold_of: dict, out_csv, out_gpkg, out_json,
                       params: dict | None = None, truth=None) -> dict:
    """What the rule runs: score every glacier's inventory outline and write the table, the suspect areas and
    the summary (module docstring). ``pred_paths`` / ``cube_paths``: glacier -> its out-of-fold test prediction
    and its cube (same epoch: the inventory's); ``calib_jsons``: the folds' calibration.json; ``fold_of``:
    glacier -> the fold whose test set holds it; ``params``: ``DEFAULTS`` keys and ``crs``; ``truth``: dict
    (or JSON path) ``{"glacier_ids_with_errors": [...]}``. Returns the summary written to ``out_json``.
    """
    from glaciermap.results import _clean, fold_temperatures

    o = _opts(params)
    temps = fold_temperatures(calib_jsons)
    planted = _truth_ids(truth)
    missing_cubes = sorted(set(pred_paths) - set(cube_paths))
    if missing_cubes:
        g = missing_cubes[0]
        raise GlacierInputError(g, pred_paths[g], f"no cube given for the prediction ({len(missing_cubes)} glacier(s) "
                                                  f"without one: {missing_cubes[:10]})")
    items, folds, skipped = [], {}, []
    for g in sorted(pred_paths, key=str):
        gid = str(g)
        if g not in fold_of:
            raise GlacierInputError(gid, pred_paths[g], "no fold given for this glacier")
        fold = int(fold_of[g])
        if fold not in temps:
            raise GlacierInputError(gid, pred_paths[g], f"fold {fold} has no calibration file among "
                                                        f"{[str(p) for p in calib_jsons]}")
        folds[gid] = fold
        rec = read_glacier(gid, pred_paths[g], cube_paths[g], temps[fold])
        if rec is None:
            skipped.append(gid)
            continue
        items.append((gid, *rec))
    rows, masks = region_issues(items, **{k: v for k, v in o.items() if k != "crs"})
    gdf = issue_polygons(items, masks, rows, o.get("crs"))

    table = rows.copy()
    table["fold"] = table["glacier_id"].map(folds)
    table["status"] = STATUS_OK
    table = table.sort_values(["score", "glacier_id"], na_position="last", kind="stable").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    skip_rows = pd.DataFrame({"glacier_id": skipped, "fold": [folds[g] for g in skipped], "status": STATUS_SKIPPED,
                              "flagged": False})
    table = pd.concat([table, skip_rows], ignore_index=True) if skipped else table
    table = table[list(CSV_COLUMNS)]
    summary = {"n_glaciers": len(rows), "n_skipped": len(skipped), "skipped": skipped,
               "n_glaciers_flagged": int(rows["flagged"].sum()) if len(rows) else 0,
               "missing_ice_km2_total": float(rows["missing_ice_km2"].sum()) if len(rows) else 0.0,
               "false_ice_km2_total": float(rows["false_ice_km2"].sum()) if len(rows) else 0.0,
               "n_valid_px": int(rows["n_valid_px"].sum()) if len(rows) else 0,
               "issue_px_raw": int(rows["issue_px_raw"].sum()) if len(rows) else 0,
               "flagged_px": int(rows["flagged_px"].sum()) if len(rows) else 0,
               "n_polygons": len(gdf), "crs": gdf.crs.to_string() if gdf.crs is not None else None,
               "params": o}
    if planted is not None:
        table["planted_error"] = table["glacier_id"].isin(planted)
        scored = set(rows["glacier_id"])
        flagged = set(rows.loc[rows["flagged"].astype(bool), "glacier_id"])
        hit = flagged & planted
        planted_scored = planted & scored
        summary.update({"n_planted": len(planted), "n_planted_scored": len(planted_scored),
                        "n_flagged_planted": len(hit),
                        "precision": len(hit) / len(flagged) if flagged else None,
                        "recall": len(hit) / len(planted_scored) if planted_scored else None,
                        "planted_not_scored": sorted(planted - scored)})
    write_csv_atomic(out_csv, table)
    write_gpkg_atomic(out_gpkg, gdf, LAYER)
    summary = _clean(summary)
    write_json_atomic(out_json, summary)
    log.info("outline issues: %d glacier(s) scored, %d skipped, %d flagged (%.4f km2 missing, %.4f km2 false ice), "
             "%d suspect polygon(s)", summary["n_glaciers"], summary["n_skipped"], summary["n_glaciers_flagged"],
             summary["missing_ice_km2_total"], summary["false_ice_km2_total"], summary["n_polygons"])
    return summary


def run_outline_issues_files(pred_dirs, cube_paths, calib_jsons, fold_of: dict, out_csv, out_gpkg, out_json,
                             params: dict | None = None, truth_csv=None) -> dict:
    """:func:`run_outline_issues` on the workflow's layout: the ``infer`` folders
    ``.../predictions/<model>/fold<k>/<epoch>`` and the cubes ``.../cubes/<glacier>/<epoch>.nc`` (one epoch: the
    inventory's), paired by :func:`glaciermap.io.paired_predictions` (a cube without its prediction is an error).
    ``truth_csv``: the planted errors (CSV of glacier ids, or the JSON form), or None.
    """
    from glaciermap.io import paired_predictions

    keys, preds, cubes = paired_predictions(pred_dirs, cube_paths)
    epochs = sorted({e for _, e in keys})
    if len(epochs) > 1:
        raise ValueError(f"outline issues score one epoch (the inventory's), got cubes of {epochs}")
    return run_outline_issues({g: p for (g, _), p in zip(keys, preds)}, {g: c for (g, _), c in zip(keys, cubes)},
                              calib_jsons, {str(k): v for k, v in fold_of.items()}, out_csv, out_gpkg, out_json,
                              params, truth=truth_csv)
