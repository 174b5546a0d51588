"""Select: DL4GAM's best-image ranking of one glacier's candidate scenes in one epoch.

Scores per candidate (reflectance 0..1):
- ``valid_fraction``: share of the cube extent with data (excludes scenes cut by a tile edge);
- ``cloud_fraction``: cloud + cloud shadow + no data over the glacier + 50 m buffer (a source without a
  per-pixel cloud mask, e.g. Sentinel-2 L1C: no data only, and the table's ``note`` says so);
- ``ndsi``: mean NDSI of clean pixels in the 50 m buffer but outside every glacier (seasonal snow); NaN with
  a note when the source has no green or SWIR1 band (e.g. a 4-band RGB + NIR scene);
- ``albedo``: mean 0.5621 B + 0.1479 G + 0.2512 R + 0.0015 of clean glacier + 50 m pixels.
Bands are read by common name (``blue``, ``green``, ``red``, ``swir1``) from the acquisition, masks from the
source's decoded ``mask_*`` layers: the same code ranks Sentinel-2, Landsat or any optical source.
A score from fewer than ``min_clean_pixels`` clean pixels is NaN. Candidates need
``valid_fraction >= 0.9`` and ``cloud_fraction <= 0.3``; the rest are ranked by cloud and by NDSI
(each rounded to whole percents, ties share the lowest rank), the two ranks averaged, and the lowest
mean rank wins, lowest albedo breaking ties. A NaN NDSI ranks last.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from glaciermap.data.inventory import read_glaciers_in
from glaciermap.io import STATUS_OK, STATUS_SKIPPED, read_status, write_csv_atomic
from glaciermap.data.masks import glacier_masks
from glaciermap.data.scenes import Scenes, read_scenes

log = logging.getLogger("glaciermap.data.select")

COLUMNS = ["glacier_id", "epoch", "item_id", "datetime", "valid_fraction", "cloud_fraction", "ndsi", "albedo",
           "passes", "reject_reason", "rank_cloud", "rank_ndsi", "mean_rank", "rank", "chosen",
           "glacier_status", "glacier_reason", "note"]


def albedo(blue, green, red):
    """Broadband albedo from RGB reflectance (Wang et al. 2016), as used by DL4GAM."""
    return 0.5621 * blue + 0.1479 * green + 0.2512 * red + 0.0015


#: Bands (common names) and masks of an acquisition file that the scores use.
SCORED_BANDS = ["blue", "green", "red", "swir1"]
SCORED_MASKS = ["mask_fill", "mask_cloud", "mask_shadow"]


def score_candidates(scenes: Scenes, masks: dict, params: dict) -> pd.DataFrame:
    """Scores of every candidate scene of an acquisition (:func:`glaciermap.data.scenes.read_scenes`)."""
    buf = masks[f"buffer_{int(params['buffer_m'])}m"]
    outside = buf & (masks["labels"] == -1)
    min_px = params["min_clean_pixels"]
    rows = []
    for t in range(len(scenes.item_ids)):
        band = {k: scenes.bands[k][t] for k in SCORED_BANDS if k in scenes.bands}
        nodata = scenes.bands["mask_fill"][t].astype(bool)
        for v in band.values():
            nodata = nodata | np.isnan(v)
        cloud = scenes.bands["mask_cloud"][t].astype(bool) | scenes.bands["mask_shadow"][t].astype(bool)
        bad = nodata | cloud
        clean = ~bad
        if "green" in band and "swir1" in band:
            g, s = band["green"], band["swir1"]
            with np.errstate(invalid="ignore", divide="ignore"):
                ndsi_px = (g - s) / (g + s)
        else:
            ndsi_px = np.full(bad.shape, np.nan)
        sel_ndsi = outside & clean & np.isfinite(ndsi_px)
        sel_alb = buf & clean
        has_rgb = all(k in band for k in ("blue", "green", "red"))
        rows.append({
            "item_id": scenes.item_ids[t],
            "datetime": scenes.times[t].isoformat(),
            "valid_fraction": float(1 - nodata.mean()),
            "cloud_fraction": float(bad[buf].mean()) if buf.any() else np.nan,
            "ndsi": float(ndsi_px[sel_ndsi].mean()) if sel_ndsi.sum() >= min_px else np.nan,
            "albedo": (float(albedo(band["blue"], band["green"], band["red"])[sel_alb].mean())
                       if has_rgb and sel_alb.sum() >= min_px else np.nan),
        })
    return pd.DataFrame(rows)


def rank_candidates(scores: pd.DataFrame, min_valid_fraction: float = 0.9, max_cloud_fraction: float = 0.3) -> pd.DataFrame:
    """Add pass/reject, the two ranks, their mean, the final rank and ``chosen`` (exactly one if any passes)."""
    df = scores.copy()
    reasons = []
    for v, c in zip(df["valid_fraction"], df["cloud_fraction"]):
        why = []
        if not v >= min_valid_fraction:
            why.append(f"valid fraction {v:.3f} < {min_valid_fraction}")
        if not c <= max_cloud_fraction:
            why.append(f"cloud fraction {c:.3f} > {max_cloud_fraction}")
        reasons.append("; ".join(why))
    df["reject_reason"] = reasons
    df["passes"] = df["reject_reason"] == ""
    for col in ("rank_cloud", "rank_ndsi", "mean_rank", "rank"):
        df[col] = np.nan
    df["chosen"] = False
    ok = df[df["passes"]]
    if len(ok):
        cloud_pct = np.round(ok["cloud_fraction"] * 100)
        ndsi_pct = np.round(ok["ndsi"] * 100)
        rc = cloud_pct.rank(method="min")
        rn = ndsi_pct.rank(method="min", na_option="bottom")
        df.loc[ok.index, "rank_cloud"] = rc
        df.loc[ok.index, "rank_ndsi"] = rn
        df.loc[ok.index, "mean_rank"] = (rc + rn) / 2
        order = df.loc[ok.index].assign(_alb=df.loc[ok.index, "albedo"].fillna(np.inf)).sort_values(["mean_rank", "_alb"], kind="stable").index
        df.loc[order, "rank"] = np.arange(1, len(order) + 1)
        df.loc[order[0], "chosen"] = True
    return df


def _skip_table(glacier_id: str, epoch: str, reason: str) -> pd.DataFrame:
    row = {c: np.nan for c in COLUMNS}
    row.update(glacier_id=glacier_id, epoch=epoch, item_id="", passes=False, chosen=False,
               glacier_status=STATUS_SKIPPED, glacier_reason=reason, note="")
    return pd.DataFrame([row], columns=COLUMNS)


def _notes(attrs: dict) -> str:
    """What the scores of this acquisition cannot say, from its source's bands and mask."""
    bands = set(str(attrs.get("bands", "")).split())
    notes = []
    if not int(attrs.get("has_cloud_mask", 1)):
        notes.append(f"source '{attrs.get('source', '?')}' has no per-pixel cloud mask: cloud_fraction counts "
                     "no data only")
    if not {"green", "swir1"} <= bands:
        notes.append("no green or SWIR1 band: no NDSI, candidates ranked by cloud fraction only")
    if not {"blue", "green", "red"} <= bands:
        notes.append("no blue, green and red bands: no albedo tie-break")
    return "; ".join(notes)


def select_image(glacier_id: str, epoch: str, acquisition_nc: str, inventory_gpkg: str, params: dict,
                 out_csv: str) -> pd.DataFrame:
    """Rank the candidates of one glacier and epoch and write the table of all of them."""
    from glaciermap.data.netcdf import read_attrs

    status = read_status(acquisition_nc)
    if status["status"] != STATUS_OK:
        log.warning("select: glacier %s epoch %s skipped upstream: %s", glacier_id, epoch, status["reason"])
        table = _skip_table(glacier_id, epoch, status["reason"])
    else:
        attrs = read_attrs(acquisition_nc)
        present = set(str(attrs.get("bands", "")).split())
        scenes = read_scenes(acquisition_nc, [b for b in SCORED_BANDS if b in present] + SCORED_MASKS)
        grid = scenes.grid
        neighbours = read_glaciers_in(inventory_gpkg, grid.bounds, grid.crs)
        masks = glacier_masks(neighbours, glacier_id, grid, buffers=(params["buffer_m"],))
        scores = score_candidates(scenes, masks, params)
        note = _notes(attrs)
        if note:
            log.warning("select: glacier %s epoch %s: %s", glacier_id, epoch, note)
        table = rank_candidates(scores, params["min_valid_fraction"], params["max_cloud_fraction"])
        table.insert(0, "epoch", epoch)
        table.insert(0, "glacier_id", glacier_id)
        if table["chosen"].any():
            table["glacier_status"], table["glacier_reason"] = STATUS_OK, ""
        else:
            why = (f"no candidate passes the pre-filter (valid >= {params['min_valid_fraction']}, "
                   f"cloud <= {params['max_cloud_fraction']}): " +
                   "; ".join(f"{i}: {r}" for i, r in zip(table["item_id"], table["reject_reason"])))
            reason = f"glacier {glacier_id}, epoch {epoch}: {why} (file: {acquisition_nc})"
            log.error("select: %s", reason)
            table["glacier_status"], table["glacier_reason"] = STATUS_SKIPPED, reason
        table["note"] = note
        table = table[COLUMNS]
    write_csv_atomic(out_csv, table)
    return table
