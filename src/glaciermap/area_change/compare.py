"""Method comparison (DL4GAM paper Table 7): any list of model variants (by default the U-Net ensemble and the
ensemble without dh/dt) and the band ratio.

For every test glacier (each glacier is a test glacier of exactly one fold, so every method is applied
to glaciers it never saw in training or threshold fitting) and both change epochs, each method gives a
binary glacier mask on the cube grid:

* every model of ``area_change.compare`` (e.g. ``dl4gam`` and its ablation ``dl4gam_no_dhdt``: same folds,
  split, patches and seeds, its own channels and normalisation): calibrated ensemble mean mu >= 0.5
  (the temperatures of that model in the glacier's fold, as in ``areas``);
* ``band_ratio_regional``: R / max(SWIR, 1) >= t1 and B >= t2 with the thresholds fitted on the
  fold's train + validation glaciers (``baseline/band_ratio.json``);
* ``band_ratio_oracle``: the glacier-wise thresholds tuned on each glacier's own t0 labels (an oracle).

Metrics, pooled over the glaciers (pixel counts summed first, as in the paper's Table 7):

* ``area_t0_km2``, ``area_t1_km2``: mask within the glacier + 20 m buffer, other glaciers' pixels
  excluded (the area definition of ``areas.glacier_area``);
* ``recall``: mask strictly within the inventory outline at t0 / inventory pixels (Table 7 note a);
* ``debris_recall``: the same on the debris-covered pixels of the outline, from a debris map
  (``evaluation.debris_map``), over glaciers with more than ``evaluation.debris_min_fraction`` of
  debris (Table 7 note b; null without a debris map);
* ``fpr_ring``: share of the pixels 20 to 50 m outside the outline (other glaciers excluded) that the
  mask calls glacier (Table 7 note c);
* ``rate_pct_per_year``: 100 * sum_i (A1_i - A0_i) / dt_i / sum_i A0_i, dt_i from the image dates of
  glacier i, over the same glaciers for every method (no filtering, no extrapolation);
* ``lost_ice_mapped``: share of the ice the glaciers lost between t0 and t1 (the true t0 outline minus the true t1
  outline, ``lost_ice_km2``) that the method still calls glacier at t1: the retreat a method hides. Only with
  planted truth outlines (``outlines_t0.gpkg`` and ``outlines_<t1>.gpkg`` of ``evaluation.truth_dir``, the demo
  generator's names); null otherwise. It measures what the DL4GAM paper (section 4.4.2) warns of: a dh/dt map
  of an earlier period still shows the ice lost since then as thinning glacier.

Only glaciers with a usable cube and prediction for every method at both epochs enter (the same set
for all methods); ``n_glaciers`` says how many. The debris map is evaluation data (truth): only this
module and ``evaluate`` read such files; the truth outlines too.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from glaciermap.area_change.areas import M2_PER_KM2
from glaciermap.io import GlacierInputError, read_record, write_csv_atomic, write_json_atomic

log = logging.getLogger("glaciermap.area_change.compare")

#: labels of the methods (a model not listed here is labelled by its name)
METHODS = {
    "dl4gam": "DL4GAM (U-Net ensemble)",
    "dl4gam_no_dhdt": "DL4GAM without dh/dt",
    "band_ratio_regional": "band ratio: regional thresholds per fold",
    "band_ratio_oracle": "band ratio: glacier-wise thresholds (oracle)",
}
COUNT_KEYS = ("n_area", "n_ref", "n_tp", "n_debris", "n_debris_tp", "n_ring", "n_ring_fp")
COLUMNS = ["method", "label", "n_glaciers", "area_t0_km2", "area_t1_km2", "recall", "debris_recall",
           "n_debris_glaciers", "debris_area_km2", "fpr_ring", "ring_area_km2", "rate_km2_per_year",
           "rate_pct_per_year", "lost_ice_mapped", "lost_ice_km2"]


# ---------------------------------------------------------------------------------------------------- pure metrics


def glacier_counts(pred, mask_glacier, buffer20, buffer50, debris=None) -> dict:
    """Pixel counts of one glacier and epoch for the Table 7 metrics.

    ``pred``: boolean glacier mask of a method (not restricted to any buffer); ``mask_glacier``: the
    inventory outline; ``buffer20``/``buffer50``: outline + 20/50 m without other glaciers' pixels;
    ``debris``: debris-covered pixels (any extent; only those inside the outline count) or None.
    """
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(mask_glacier, dtype=bool)
    b20, b50 = np.asarray(buffer20, dtype=bool), np.asarray(buffer50, dtype=bool)
    if not (pred.shape == ref.shape == b20.shape == b50.shape):
        raise ValueError(f"pred {pred.shape}, outline {ref.shape}, buffers {b20.shape}/{b50.shape} differ in shape")
    ring = b50 & ~b20 & ~ref
    out = {"n_area": int(np.count_nonzero(pred & b20)), "n_ref": int(np.count_nonzero(ref)),
           "n_tp": int(np.count_nonzero(pred & ref)), "n_ring": int(np.count_nonzero(ring)),
           "n_ring_fp": int(np.count_nonzero(pred & ring)), "n_debris": 0, "n_debris_tp": 0}
    if debris is not None:
        d = np.asarray(debris, dtype=bool)
        if d.shape != ref.shape:
            raise ValueError(f"debris {d.shape} and outline {ref.shape} differ in shape")
        d = d & ref
        out["n_debris"] = int(np.count_nonzero(d))
        out["n_debris_tp"] = int(np.count_nonzero(pred & d))
    return out


def _div(a, b):
    return float(a) / float(b) if b > 0 else None


def lost_ice_counts(pred_t1, truth_t0, truth_t1) -> dict:
    """Pixel counts of the ice lost between t0 and t1 (true t0 outline minus true t1 outline, on the t1 cube grid):
    ``n_lost``, and ``n_lost_mapped`` of them that the method's t1 mask calls glacier."""
    pred, a0, a1 = (np.asarray(a, dtype=bool) for a in (pred_t1, truth_t0, truth_t1))
    if not (pred.shape == a0.shape == a1.shape):
        raise ValueError(f"pred {pred.shape}, truth t0 {a0.shape} and truth t1 {a1.shape} differ in shape")
    lost = a0 & ~a1
    return {"n_lost": int(np.count_nonzero(lost)), "n_lost_mapped": int(np.count_nonzero(pred & lost))}


def aggregate(rows: pd.DataFrame, debris_min_fraction: float = 0.01, has_debris: bool = True) -> dict:
    """Table 7 numbers of one method from its per-glacier rows.

    ``rows``: one row per glacier with the counts of ``glacier_counts`` at t0 (columns as named) plus
    ``a_px`` (pixel area, m2), ``n_area_t1`` (area pixels at t1) and ``years`` (t1 - t0 image dates); with
    truth outlines also ``n_lost``, ``n_lost_mapped`` (:func:`lost_ice_counts`) and ``a_px_t1``.
    """
    if rows.empty:
        return {c: None for c in COLUMNS if c not in ("method", "label")} | {"n_glaciers": 0, "n_debris_glaciers": 0}
    k = rows["a_px"].to_numpy(float) / M2_PER_KM2
    a0 = rows["n_area"].to_numpy(float) * k
    a1 = rows["n_area_t1"].to_numpy(float) * k
    years = rows["years"].to_numpy(float)
    if not (np.isfinite(years).all() and (years > 0).all()):
        bad = rows.loc[~(np.isfinite(years) & (years > 0)), "glac_id"].tolist()
        raise ValueError(f"method comparison: t1 image not after t0 image for glacier(s) {bad}")
    rate_km2 = float(np.sum((a1 - a0) / years))
    frac = rows["n_debris"].to_numpy(float) / np.maximum(rows["n_ref"].to_numpy(float), 1.0)
    deb = rows[frac > debris_min_fraction] if has_debris else rows.iloc[:0]
    kd = deb["a_px"].to_numpy(float) / M2_PER_KM2
    has_lost = "n_lost" in rows and rows["n_lost"].notna().all()
    lost = {"lost_ice_mapped": _div(rows["n_lost_mapped"].sum(), rows["n_lost"].sum()) if has_lost else None,
            "lost_ice_km2": float((rows["n_lost"].to_numpy(float) * rows["a_px_t1"].to_numpy(float)).sum()
                                  / M2_PER_KM2) if has_lost else None}
    return lost | {
        "n_glaciers": int(len(rows)),
        "area_t0_km2": float(a0.sum()), "area_t1_km2": float(a1.sum()),
        "recall": _div(rows["n_tp"].sum(), rows["n_ref"].sum()),
        "debris_recall": _div(deb["n_debris_tp"].sum(), deb["n_debris"].sum()) if has_debris else None,
        "n_debris_glaciers": int(len(deb)) if has_debris else None,
        "debris_area_km2": float((deb["n_debris"].to_numpy(float) * kd).sum()) if has_debris else None,
        "fpr_ring": _div(rows["n_ring_fp"].sum(), rows["n_ring"].sum()),
        "ring_area_km2": float((rows["n_ring"].to_numpy(float) * k).sum()),
        "rate_km2_per_year": rate_km2,
        "rate_pct_per_year": 100.0 * rate_km2 / a0.sum() if a0.sum() > 0 else None,
    }


# ---------------------------------------------------------------------------------------------------- readers


def cube_band_ratio_mask(cube_path, t1: float, t2: float) -> np.ndarray | None:
    """Band-ratio glacier mask of a cube (R / max(SWIR, 1) >= t1 and B >= t2, DN); None for a skip record."""
    from glaciermap.area_change.baseline import band_ratio_mask

    rec = read_record(cube_path, ["B04", "B11", "B02"])
    if rec is None:
        return None
    red, swir, blue = (rec[0][b].astype(np.float64) * 1e4 for b in ("B04", "B11", "B02"))
    return band_ratio_mask(red, swir, blue, t1, t2)


def cube_grid(cube_path, glacier_id: str):
    """(affine transform, (rows, cols), CRS) of a cube's grid, for placing maps and outlines on it."""
    import rasterio
    from affine import Affine

    from glaciermap.data.georef import read_crs
    from glaciermap.data.netcdf import read_variables

    v, attrs = read_variables(cube_path, ["x", "y"])
    xs, ys = v["x"], v["y"]
    if attrs.get("crs"):  # features writes the grid's CRS as a global attribute too: no dataset set-up needed
        crs = rasterio.crs.CRS.from_user_input(attrs["crs"])
    else:
        from glaciermap.segmentation.patches import open_cube

        with open_cube(cube_path) as ds:
            crs = read_crs(ds)
    if crs is None:
        raise GlacierInputError(glacier_id, cube_path, "cube has no CRS (spatial_ref); cannot place a map on it")
    if xs.size < 2 or ys.size < 2:
        raise GlacierInputError(glacier_id, cube_path, "cube grid has fewer than 2 pixels along an axis")
    rx, ry = float(xs[1] - xs[0]), float(ys[0] - ys[1])
    return Affine(rx, 0.0, float(xs[0]) - rx / 2, 0.0, -ry, float(ys[0]) + ry / 2), (ys.size, xs.size), crs


def debris_on_cube(debris_path, cube_path, glacier_id: str) -> np.ndarray:
    """The debris map reprojected (nearest) onto a cube's 10 m grid: True = debris-covered; outside the map False."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    transform, shape, crs = cube_grid(cube_path, glacier_id)
    dst = np.zeros(shape, np.uint8)
    try:
        with rasterio.open(debris_path) as src:
            if src.crs is None:
                raise GlacierInputError(glacier_id, debris_path, "debris map has no CRS")
            band = src.read(1, masked=True)
            data = np.where(np.ma.getmaskarray(band), 0, np.asarray(band.filled(0)) > 0).astype(np.uint8)
            reproject(data, dst, src_transform=src.transform, src_crs=src.crs,
                      dst_transform=transform, dst_crs=crs, resampling=Resampling.nearest, src_nodata=None,
                      dst_nodata=None)
    except rasterio.errors.RasterioIOError as e:
        raise GlacierInputError(glacier_id, debris_path, f"cannot read the debris map: {e}") from e
    return dst.astype(bool)


# ---------------------------------------------------------------------------------------------------- file level


def truth_outline_file(truth_dir, epoch: str) -> Path:
    """The planted truth outlines of one epoch in ``truth_dir``: ``outlines_<epoch>.gpkg`` (the demo generator's
    names; the inventory epoch is ``t0``). Also read by ``glaciermap.debris.cover``."""
    return Path(truth_dir) / f"outlines_{epoch}.gpkg"


def truth_outline_files(truth_dir, t1: str) -> list[str]:
    """[t0, t1] planted truth outlines of ``truth_dir`` (:func:`truth_outline_file`) when both exist, else [] (a
    real region: no lost-ice column)."""
    if not truth_dir:
        return []
    files = [truth_outline_file(truth_dir, "t0"), truth_outline_file(truth_dir, t1)]
    return [str(f) for f in files] if all(f.exists() for f in files) else []


def read_truth_outlines(path) -> dict:
    """glac_id -> (geometry, CRS) of a truth outline file (one row per glacier, column ``glac_id``)."""
    import geopandas as gpd

    df = gpd.read_file(path)
    if "glac_id" not in df.columns or df.crs is None:
        raise ValueError(f"{path}: truth outlines need a glac_id column and a CRS")
    return {str(g): (geom, df.crs) for g, geom in zip(df["glac_id"], df.geometry)}


def outline_on_cube(outline, transform, shape, crs) -> np.ndarray:
    """A truth outline ((geometry, CRS) or None: no ice) rasterized onto a cube grid: True inside."""
    if outline is None or outline[0] is None or outline[0].is_empty:
        return np.zeros(shape, bool)
    import geopandas as gpd
    from rasterio.features import rasterize

    geom = gpd.GeoSeries([outline[0]], crs=outline[1]).to_crs(crs).iloc[0]
    return rasterize([(geom, 1)], out_shape=shape, transform=transform, fill=0, dtype="uint8").astype(bool)


def _mu(path, temperatures) -> np.ndarray | None:
    from glaciermap.results import calibrated_stats, read_probs

    probs = read_probs(path)
    if probs is None:
        return None
    return calibrated_stats(probs, temperatures)[0]


def _years(d0: str, d1: str) -> float:
    return (pd.Timestamp(d1) - pd.Timestamp(d0)).days / 365.25


def run_compare(glaciers, fold_of: dict, t0: str, t1: str, cubes: dict, preds: dict, calib_jsons: dict, *,
                baseline_json=None, baseline_areas_csv=None,
                debris_map=None, debris_min_fraction: float = 0.01, truth_outlines=None, outputs: dict) -> dict:
    """Table 7 over the test glaciers; writes ``outputs['csv']``, ``['json']`` and ``['glaciers']`` (per glacier).

    ``preds``: model name -> {(glacier, epoch): prediction file}; ``calib_jsons``: model name -> its fold
    calibrations; ``cubes``: (glacier, epoch) -> file; ``fold_of``: glacier -> test fold. The baseline is left
    out when its inputs are not given, and ``notes`` says so.
    ``truth_outlines``: [t0, t1] planted truth outline files (:func:`truth_outline_files`) or None: no lost-ice
    column.
    """
    from glaciermap.results import fold_temperatures

    models = list(preds)
    temps = {m: fold_temperatures(calib_jsons[m]) for m in models}
    methods = list(models)
    notes = []
    regional, oracle = {}, {}
    if baseline_json:
        chosen = json.loads(Path(baseline_json).read_text())["thresholds"]  # per fold, written by `baseline`
        regional = {int(k): (float(v["t1"]), float(v["t2"])) for k, v in chosen.items()}
        methods.append("band_ratio_regional")
        if baseline_areas_csv:
            ba = pd.read_csv(baseline_areas_csv, dtype={"glac_id": str, "epoch": str})
            ba = ba[(ba["variant"] == "oracle") & (ba["epoch"] == t0) & (ba["status"] == "ok")]
            oracle = {g: (float(a), float(b)) for g, a, b in zip(ba["glac_id"], ba["t1"], ba["t2"])}
            methods.append("band_ratio_oracle")
    else:
        notes.append("band-ratio baseline disabled (baseline.enabled: false)")
    if not debris_map:
        notes.append("debris_recall: no debris map (evaluation.debris_map: null)")
    truth = [read_truth_outlines(f) for f in truth_outlines] if truth_outlines else None
    if truth is None:
        notes.append("lost_ice_mapped: no planted truth outlines (outlines_t0.gpkg and outlines_<t1>.gpkg of "
                     "evaluation.truth_dir)")

    from glaciermap.results import read_cube_masks

    rows, dropped = [], []
    for g in glaciers:
        k = int(fold_of[g])
        m = {e: read_cube_masks(cubes[(g, e)]) for e in (t0, t1)}
        if m[t0] is None or m[t1] is None:
            dropped.append((g, "skipped cube"))
            continue
        masks = {}
        for meth in methods:
            for e in (t0, t1):
                if meth in preds:
                    path = preds[meth].get((g, e))
                    mu = None if path is None else _mu(path, temps[meth].get(k, []))
                    masks[(meth, e)] = None if mu is None else mu >= 0.5
                else:
                    th = regional.get(k) if meth == "band_ratio_regional" else oracle.get(g)
                    masks[(meth, e)] = None if th is None else cube_band_ratio_mask(cubes[(g, e)], *th)
        missing = [f"{meth}@{e}" for (meth, e), v in masks.items() if v is None]
        if missing:
            dropped.append((g, "no prediction: " + ", ".join(missing)))
            continue
        debris = debris_on_cube(debris_map, cubes[(g, t0)], g) if debris_map else None
        years = _years(m[t0]["date"], m[t1]["date"])
        if truth is not None:
            transform, shape, crs = cube_grid(cubes[(g, t1)], g)
            true0, true1 = (outline_on_cube(t.get(g), transform, shape, crs) for t in truth)
            a_px_t1 = abs(transform.a * transform.e)
        for meth in methods:
            c0 = glacier_counts(masks[(meth, t0)], m[t0]["glacier"], m[t0]["buffer20"], m[t0]["buffer50"], debris)
            n1 = int(np.count_nonzero(masks[(meth, t1)] & m[t1]["buffer20"]))
            rows.append({"method": meth, "glac_id": g, "fold": k, "date_t0": m[t0]["date"], "date_t1": m[t1]["date"],
                         "years": years, "a_px": m[t0]["resolution"] ** 2, **c0, "n_area_t1": n1,
                         "area_t0_km2": c0["n_area"] * m[t0]["resolution"] ** 2 / M2_PER_KM2,
                         "area_t1_km2": n1 * m[t1]["resolution"] ** 2 / M2_PER_KM2,
                         **(lost_ice_counts(masks[(meth, t1)], true0, true1) | {"a_px_t1": a_px_t1}
                            if truth is not None else {})})
    per = pd.DataFrame(rows, columns=["method", "glac_id", "fold", "date_t0", "date_t1", "years", "a_px",
                                      *COUNT_KEYS, "n_area_t1", "area_t0_km2", "area_t1_km2",
                                      *(("n_lost", "n_lost_mapped", "a_px_t1") if truth is not None else ())])
    if dropped:
        notes.append(f"{len(dropped)} test glacier(s) left out (not usable for every method at both epochs): "
                     + "; ".join(f"{g}: {r}" for g, r in dropped))
        for g, r in dropped:
            log.warning("method comparison: glacier %s left out: %s", g, r)
    table = pd.DataFrame([{"method": meth, "label": METHODS.get(meth, f"model {meth}"),
                           **aggregate(per[per["method"] == meth], debris_min_fraction, bool(debris_map))}
                          for meth in methods], columns=COLUMNS)
    write_csv_atomic(outputs["glaciers"], per)
    write_csv_atomic(outputs["csv"], table)
    from glaciermap.results import _clean

    out = {"t0": t0, "t1": t1, "debris_map": str(debris_map) if debris_map else None,
           "truth_outlines": [str(f) for f in truth_outlines] if truth_outlines else None,
           "debris_min_fraction": float(debris_min_fraction),
           "methods": {r["method"]: {k: v for k, v in r.items() if k != "method"} for r in table.to_dict("records")},
           "n_left_out": len(dropped), "notes": notes}
    write_json_atomic(outputs["json"], _clean(out))
    return out
