"""Debris cover per glacier and its change, from the calibrated ensemble predictions of a K-class debris model.

Why: a mapped debris-covered tongue that is missed (or mistaken for rock) biases the glacier's area and its area
change (review seed 001, section 4.1.2; CryoNet, seed 003, maps clean ice, debris-covered ice and lakes as
separate classes). This module turns a K-class model's test predictions into debris-covered and clean-ice areas
per glacier and epoch, their change between the change epochs t0 -> t1, and region totals.

Region counted, per glacier and epoch: the cube's ``mask_buffer_50m`` (the glacier + 50 m, other glaciers
excluded; the DL4GAM evaluation buffer), where the prediction is finite (inside the predicted region), cloud
pixels included as in the glacier areas of :mod:`glaciermap.area_change.areas` (without them a cloudier epoch would
read as lost debris; ``cloud_fraction`` reports their share). On it, with each fold's per-member temperatures
(``calibration.json``, one per class or shared; none: T = 1):

* ``<c>_km2`` (c = debris, clean): pixels whose class of largest *calibrated ensemble mean* probability is c,
  times the pixel area;
* ``<c>_expected_km2``: the sum of the calibrated mean probabilities of c, times the pixel area;
* ``<c>_sigma_km2``: the standard deviation (ddof 1; NaN with one member) over the members of each member's own
  area (the argmax of its calibrated probabilities) - the uncertainty carried into the change;
* ``<c>_member_min_km2`` / ``<c>_member_max_km2``: the members' range (with M members it covers the central
  ~(M-1)/(M+1) of their spread, not 90 %);
* ``<c>_pb_sd_km2`` = a_px sqrt(sum p (1 - p)), the sd of the Poisson-binomial pixel count with the calibrated
  probabilities p, and the **90 % interval** ``<c>_lo90_km2``/``<c>_hi90_km2`` = expected -+ 1.645 pb_sd
  (clipped at 0). It treats pixels as independent given p, so it holds the pixel-level noise only and is
  narrower than the member spread whenever the members disagree systematically;
* ``debris_fraction`` = debris / (debris + clean) (argmax areas; NaN when both are 0), its member spread
  ``debris_fraction_sigma`` (std of the members' own fractions), ``cloud_fraction`` (cloud or no data share of
  the buffer) and ``unpredicted_fraction`` (buffer pixels without a finite prediction).

Change (``cover_change``), per glacier with both epochs mapped: d = t1 - t0 of the debris and clean areas and of
the debris fraction (in percentage points), sigma = the two epochs' member sigmas in quadrature, per year through
the image dates (cube attribute ``date``; the prediction's when the cube has none). A skipped epoch gives the
glacier's change row the status ``skipped`` and both epochs' reasons, never zeros.

Truth (optional, synthetic regions): ``debris_t0.tif`` and ``debris_<t1>.tif`` of ``evaluation.truth_dir`` (>0 =
debris, any grid and CRS) are reprojected (nearest) onto each cube grid and counted on the same region:
``truth_debris_km2``; ``truth_debris_fraction`` = truth debris / truth ice pixels of the region, truth ice being
the cube's outline at t0 (the inventory outline is the t0 truth in the demo) and the rasterised
``outlines_<t1>.gpkg`` at t1 (left NaN without that file).

Rule ``cover`` (workflow/rules/debris/cover.smk) runs :func:`run_cover_files`, one job per model, writing
``debris/<model>/cover.csv`` (:data:`COVER_COLUMNS`, one row per glacier and epoch), ``cover_change.csv``
(:data:`CHANGE_COLUMNS`, one row per glacier), ``cover.gpkg`` (layer ``debris_cover``: the inventory polygons
with the change table) and ``cover.json`` (region totals). No rasters are written.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from glaciermap.io import (STATUS_OK, STATUS_SKIPPED, GlacierInputError, read_record, write_csv_atomic,
                           write_gpkg_atomic, write_json_atomic)
from glaciermap.results import _clean

log = logging.getLogger("glaciermap.debris.cover")

M2_PER_KM2 = 1e6
Z90 = 1.6448536269514722  # two-sided 90 %: the 95th percentile of the standard normal
LAYER = "debris_cover"
KINDS = ("debris", "clean")
_AREA_STATS = ("km2", "expected_km2", "sigma_km2", "member_min_km2", "member_max_km2", "pb_sd_km2", "lo90_km2",
               "hi90_km2")
COVER_COLUMNS = (["glac_id", "epoch", "fold", "status", "reason", "date", "pixel_area_m2", "n_members",
                  "buffer_km2", "region_km2", "cloud_fraction", "unpredicted_fraction"]
                 + [f"{k}_{s}" for k in KINDS for s in _AREA_STATS]
                 + ["debris_fraction", "debris_fraction_expected", "debris_fraction_sigma"])
TRUTH_COLUMNS = ["truth_debris_km2", "truth_ice_km2", "truth_debris_fraction", "truth_debris_inter_km2",
                 "truth_debris_union_km2"]
_EPOCH_COLS = ["status", "reason", "date", "debris_km2", "debris_sigma_km2", "clean_km2", "clean_sigma_km2",
               "debris_fraction", "debris_fraction_sigma", "cloud_fraction"]
CHANGE_COLUMNS = (["glac_id", "fold", "status", "reason", "t0", "t1", "years"]
                  + [f"{c}_t{i}" for i in (0, 1) for c in _EPOCH_COLS]
                  + ["d_debris_km2", "d_debris_sigma_km2", "d_clean_km2", "d_clean_sigma_km2",
                     "d_debris_fraction_pct_points", "d_debris_fraction_sigma_pct_points",
                     "d_debris_km2_per_year", "d_debris_sigma_km2_per_year", "d_clean_km2_per_year",
                     "d_clean_sigma_km2_per_year", "d_debris_fraction_pct_points_per_year",
                     "d_debris_fraction_sigma_pct_points_per_year"])
TRUTH_CHANGE_COLUMNS = ["truth_debris_km2_t0", "truth_debris_km2_t1", "truth_debris_fraction_t0",
                        "truth_debris_fraction_t1", "truth_d_debris_km2"]


# ---------------------------------------------------------------------------------------------------- arrays


def member_probs(probs, temperatures) -> np.ndarray:
    """Temperature-scaled member probabilities [M, K, H, W] (each member's classes scaled together; [] -> T = 1),
    as :func:`glaciermap.results.calibrated_stats` scales them; NaN stays NaN."""
    from glaciermap.segmentation.calibrate import apply_temperature_classes

    probs = np.asarray(probs, np.float64)
    if probs.ndim != 4:
        raise ValueError(f"a K-class prediction [member, class, y, x] is needed, got shape {probs.shape}")
    temperatures = list(temperatures) or [1.0] * len(probs)
    if len(temperatures) != len(probs):
        raise ValueError(f"{len(temperatures)} temperature(s) for {len(probs)} member(s)")
    return np.stack([apply_temperature_classes(p, t, axis=0) for p, t in zip(probs, temperatures, strict=True)])


def _std(v) -> float:
    v = np.asarray(v, np.float64)
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1)) if v.size > 1 else float("nan")


def _frac(a, b) -> float:
    return float(a / (a + b)) if (a + b) > 0 else float("nan")


def cover_areas(scaled, buffer50, masked, a_px: float, classes, debris_class: str, clean_class: str) -> dict:
    """Debris and clean-ice areas of one glacier and epoch (see the module docstring); ``scaled`` [M, K, H, W] the
    calibrated member probabilities, ``buffer50``/``masked`` the cube's 50 m buffer and cloud-or-no-data masks.

    Also returns ``region`` (the counted pixels, bool [H, W]) for the truth comparison."""
    classes = [str(c) for c in classes]
    for name in (debris_class, clean_class):
        if name not in classes:
            raise ValueError(f"class {name!r} is not among the model's classes {classes}")
    scaled = np.asarray(scaled, np.float64)
    buf, masked = np.asarray(buffer50, bool), np.asarray(masked, bool)
    if scaled.shape[-2:] != buf.shape or buf.shape != masked.shape:
        raise ValueError(f"prediction grid {scaled.shape[-2:]} differs from the cube grid {buf.shape}")
    if scaled.shape[1] != len(classes):
        raise ValueError(f"prediction has {scaled.shape[1]} classes, the model {len(classes)}: {classes}")
    M = scaled.shape[0]
    finite = np.isfinite(scaled).all(axis=(0, 1))
    # cloud pixels count (their prediction, as the glacier areas of area_change.areas): leaving them out would turn
    # a cloudier epoch into lost debris or clean ice; cloud_fraction says how much of the buffer they are
    region = buf & finite
    k = float(a_px) / M2_PER_KM2
    p = scaled[:, :, region]                    # [M, K, n]
    mu = p.mean(0)                              # [K, n]
    top = mu.argmax(0) if mu.size else np.zeros(0, np.int64)
    member_top = p.argmax(1) if p.size else np.zeros((M, 0), np.int64)  # [M, n]
    n_buf = int(buf.sum())
    out = {"n_members": M, "pixel_area_m2": float(a_px), "buffer_km2": k * n_buf, "region_km2": k * int(region.sum()),
           "cloud_fraction": float(masked[buf].mean()) if n_buf else float("nan"),
           "unpredicted_fraction": float((buf & ~finite).sum() / n_buf) if n_buf else float("nan")}
    member_px = {}
    for kind, name in zip(KINDS, (debris_class, clean_class)):
        c = classes.index(name)
        pc = mu[c]
        member_px[kind] = (member_top == c).sum(1).astype(np.float64)   # [M]
        expected = k * float(pc.sum())
        pb_sd = k * float(np.sqrt((pc * (1.0 - pc)).sum()))
        out.update({f"{kind}_km2": k * int((top == c).sum()), f"{kind}_expected_km2": expected,
                    f"{kind}_sigma_km2": k * _std(member_px[kind]),
                    f"{kind}_member_min_km2": k * float(member_px[kind].min()),
                    f"{kind}_member_max_km2": k * float(member_px[kind].max()),
                    f"{kind}_pb_sd_km2": pb_sd, f"{kind}_lo90_km2": max(0.0, expected - Z90 * pb_sd),
                    f"{kind}_hi90_km2": expected + Z90 * pb_sd})
    member_frac = [_frac(d, c) for d, c in zip(member_px["debris"], member_px["clean"])]
    out.update({"debris_fraction": _frac(out["debris_km2"], out["clean_km2"]),
                "debris_fraction_expected": _frac(out["debris_expected_km2"], out["clean_expected_km2"]),
                "debris_fraction_sigma": _std(member_frac), "region": region})
    debris_map = np.zeros(buf.shape, bool)
    debris_map[region] = top == classes.index(debris_class)
    out["debris_map"] = debris_map
    return out


# ---------------------------------------------------------------------------------------------------- files


def truth_files(truth_dir, t0: str, t1: str) -> dict:
    """epoch -> the planted debris raster of ``truth_dir`` (``debris_t0.tif`` at t0, ``debris_<t1>.tif`` at t1;
    the demo generator's names) and ``outlines`` -> ``outlines_<t1>.gpkg``; {} without a truth dir."""
    if not truth_dir:
        return {}
    d = Path(truth_dir)
    from glaciermap.area_change.compare import truth_outline_file

    return {t0: str(d / "debris_t0.tif"), t1: str(d / f"debris_{t1}.tif"), "outlines": str(truth_outline_file(d, t1))}


def _read_prediction(pred_path, glacier: str, classes):
    """(member probabilities [M, K, H, W], date) of a prediction; (None, reason) for a skip record."""
    from glaciermap.io import read_status

    try:
        rec = read_record(pred_path, ["prob"], optional=["class"])
    except KeyError as e:
        raise GlacierInputError(glacier, pred_path, "prediction file has no 'prob' variable") from e
    except (OSError, ValueError) as e:
        raise GlacierInputError(glacier, pred_path, f"cannot read the prediction file: {e}") from e
    if rec is None:
        st = read_status(pred_path)
        return None, f"prediction skipped at {st['skipped_at_step'] or 'infer'}: {st['reason'] or 'no reason given'}"
    values, attrs = rec
    probs = values["prob"].astype(np.float64)
    if probs.ndim != 4:
        raise ValueError(f"{pred_path} is a binary prediction {probs.shape}; debris cover needs a K-class model")
    if "class" in values:
        names = [c.decode() if isinstance(c, bytes) else str(c) for c in np.ravel(values["class"])]
        if names != [str(c) for c in classes]:
            raise ValueError(f"prediction {pred_path} has classes {names}, the model {list(classes)}")
    return probs, str(attrs.get("date", ""))[:10]


def _cube_reason(cube_path) -> str:
    from glaciermap.io import read_status

    st = read_status(cube_path)
    return f"cube skipped at {st['skipped_at_step'] or 'features'}: {st['reason'] or 'no reason given'}"


def _truth_ice_t1(outlines, glacier: str, cube_path):
    """The glacier's truth outline at t1 rasterised on the cube grid (None when it is not in the file)."""
    from rasterio.features import rasterize

    from glaciermap.data.georef import read_grid

    sub = outlines[outlines["glac_id"].astype(str) == glacier]
    grid = read_grid(cube_path)
    if grid.crs is None:
        raise GlacierInputError(glacier, cube_path, "cube has no CRS (spatial_ref); cannot place the truth outline")
    if sub.empty:
        return np.zeros((grid.y.size, grid.x.size), bool)   # the glacier is gone by t1
    sub = sub.to_crs(grid.crs)
    return rasterize([(g, 1) for g in sub.geometry if g is not None and not g.is_empty],
                     out_shape=(grid.y.size, grid.x.size), transform=grid.transform, fill=0, dtype="uint8").astype(bool)


def glacier_cover(glacier: str, epoch: str, pred_path, cube_path, temperatures, classes, debris_class: str,
                  clean_class: str, truth_raster=None, truth_ice=None) -> dict:
    """One row of ``cover.csv``: status ``ok`` with the areas, or ``skipped`` with the reason (a skip record of the
    prediction or cube, or a :class:`GlacierInputError` of this glacier), never zeros.

    ``truth_raster``: the planted debris raster of this epoch (or None); ``truth_ice``: "outline" (the cube's
    glacier mask), a GeoDataFrame of truth outlines (rasterised) or None."""
    from glaciermap.area_change.compare import debris_on_cube
    from glaciermap.results import read_cube_masks

    row = {"glac_id": glacier, "epoch": epoch}
    try:
        probs, date = _read_prediction(pred_path, glacier, classes)
        if probs is None:
            return {**row, "status": STATUS_SKIPPED, "reason": date}
        try:
            masks = read_cube_masks(cube_path)
        except KeyError as e:
            raise GlacierInputError(glacier, cube_path, f"cube lacks a mask: {e}") from e
        if masks is None:
            return {**row, "status": STATUS_SKIPPED, "reason": _cube_reason(cube_path)}
        if probs.shape[-2:] != masks["buffer50"].shape:
            raise GlacierInputError(glacier, pred_path, f"prediction grid {probs.shape[-2:]} differs from the cube "
                                                        f"grid {masks['buffer50'].shape} of {cube_path}")
        try:
            scaled = member_probs(probs, temperatures)
        except ValueError as e:
            raise GlacierInputError(glacier, pred_path, str(e)) from e
        rec = cover_areas(scaled, masks["buffer50"], masks["masked"], masks["resolution"] ** 2, classes,
                          debris_class, clean_class)
        region, debris_map = rec.pop("region"), rec.pop("debris_map")
        out = {**row, "status": STATUS_OK, "reason": "", "date": masks["date"] or date, **rec}
        if truth_raster is not None:
            k = masks["resolution"] ** 2 / M2_PER_KM2
            deb = debris_on_cube(truth_raster, cube_path, glacier)
            out["truth_debris_km2"] = k * int((deb & region).sum())
            # pixel agreement with the planted debris (the region's pixels): IoU = sum inter / sum union
            out["truth_debris_inter_km2"] = k * int((deb & region & debris_map).sum())
            out["truth_debris_union_km2"] = k * int(((deb & region) | debris_map).sum())
            ice = None
            if isinstance(truth_ice, str) and truth_ice == "outline":
                ice = masks["glacier"]
            elif truth_ice is not None:
                ice = _truth_ice_t1(truth_ice, glacier, cube_path)
            if ice is not None:
                n_ice = int((ice & region).sum())
                out["truth_ice_km2"] = k * n_ice
                out["truth_debris_fraction"] = int((deb & ice & region).sum()) / n_ice if n_ice else float("nan")
        return out
    except GlacierInputError as e:
        log.error("cover: %s", e)
        return {**row, "status": STATUS_SKIPPED, "reason": str(e)}


def _years(d0, d1) -> float:
    try:
        return (pd.Timestamp(d1) - pd.Timestamp(d0)).days / 365.25
    except (ValueError, TypeError):
        return float("nan")


def cover_change(cover: pd.DataFrame, t0: str, t1: str) -> pd.DataFrame:
    """One row per glacier of ``cover``: both epochs' cover and the change t0 -> t1 (module docstring).

    A glacier with an epoch skipped or missing is ``skipped`` with the reasons; t0 == t1 (one epoch) leaves the
    change columns NaN."""
    truth = "truth_debris_km2" in cover.columns
    rows = []
    by = {(r["glac_id"], str(r["epoch"])): r for r in cover.to_dict("records")}
    for g in dict.fromkeys(cover["glac_id"]):
        e = [by.get((g, t0)), by.get((g, t1))]
        row = {"glac_id": g, "t0": t0, "t1": t1}
        fold = next((r.get("fold") for r in e if r is not None and pd.notna(r.get("fold"))), np.nan)
        row["fold"] = fold
        for i, r in enumerate(e):
            for c in _EPOCH_COLS + (["truth_debris_km2", "truth_debris_fraction"] if truth else []):
                row[f"{c}_t{i}"] = np.nan if r is None else r.get(c, np.nan)
            if r is None:
                row[f"status_t{i}"] = STATUS_SKIPPED
                row[f"reason_t{i}"] = f"no cover row at epoch {(t0, t1)[i]}"
        ok = all(r is not None and r["status"] == STATUS_OK for r in e)
        reasons = [f"t{i} ({(t0, t1)[i]}): {row[f'reason_t{i}']}" for i in (0, 1) if row[f"status_t{i}"] != STATUS_OK]
        row["status"] = STATUS_OK if ok else STATUS_SKIPPED
        row["reason"] = "" if ok else "; ".join(dict.fromkeys(reasons))
        if ok and t0 != t1:
            yrs = _years(row["date_t0"], row["date_t1"])
            row["years"] = yrs
            for kind in KINDS:
                row[f"d_{kind}_km2"] = row[f"{kind}_km2_t1"] - row[f"{kind}_km2_t0"]
                row[f"d_{kind}_sigma_km2"] = float(np.hypot(row[f"{kind}_sigma_km2_t0"], row[f"{kind}_sigma_km2_t1"]))
            row["d_debris_fraction_pct_points"] = 100.0 * (row["debris_fraction_t1"] - row["debris_fraction_t0"])
            row["d_debris_fraction_sigma_pct_points"] = 100.0 * float(np.hypot(row["debris_fraction_sigma_t0"],
                                                                                row["debris_fraction_sigma_t1"]))
            per = yrs if np.isfinite(yrs) and yrs > 0 else np.nan
            for c in ("d_debris_km2", "d_debris_sigma_km2", "d_clean_km2", "d_clean_sigma_km2",
                      "d_debris_fraction_pct_points", "d_debris_fraction_sigma_pct_points"):
                name = c.replace("_km2", "_km2_per_year") if c.endswith("_km2") else f"{c}_per_year"
                row[name] = row[c] / per
            if truth:
                row["truth_d_debris_km2"] = row["truth_debris_km2_t1"] - row["truth_debris_km2_t0"]
        rows.append(row)
    cols = CHANGE_COLUMNS + (TRUTH_CHANGE_COLUMNS if truth else [])
    return pd.DataFrame(rows).reindex(columns=cols)


def _spearman(a, b) -> float | None:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return None
    return float(spearmanr(a[ok], b[ok]).statistic)


def region_totals(cover: pd.DataFrame, change: pd.DataFrame, t0: str, t1: str) -> dict:
    """cover.json: region totals over the glaciers mapped at both epochs, the skipped ones with their reasons, and
    the truth comparison when ``cover`` has truth columns.

    Region sigmas: ``_sigma_quadrature_km2`` (glaciers independent) and ``_sigma_linear_km2`` (fully correlated, the
    DL4GAM regional aggregation): the per-glacier member spreads aggregated both ways."""
    ok = change[change["status"] == STATUS_OK]
    skipped = cover[cover["status"] != STATUS_OK]
    out = {"t0": t0, "t1": t1, "n_glaciers": int(len(ok)), "n_skipped": int((change["status"] != STATUS_OK).sum()),
           "skipped": [{"glac_id": r["glac_id"], "epoch": str(r["epoch"]), "reason": r["reason"]}
                       for r in skipped.to_dict("records")],
           "uncertainty": "member spread: std (ddof 1) over the members of each member's own argmax area; "
                          "region: per-glacier sigmas in quadrature and linearly summed"}
    for i, t in enumerate((t0, t1)):
        for kind in KINDS:
            out[f"{kind}_area_t{i}_km2"] = float(ok[f"{kind}_km2_t{i}"].sum())
            s = ok[f"{kind}_sigma_km2_t{i}"].to_numpy(float)
            out[f"{kind}_sigma_t{i}_quadrature_km2"] = float(np.sqrt(np.nansum(s ** 2)))
            out[f"{kind}_sigma_t{i}_linear_km2"] = float(np.nansum(s))
        out[f"debris_fraction_t{i}"] = _frac(out[f"debris_area_t{i}_km2"], out[f"clean_area_t{i}_km2"])
    if t0 != t1:
        for kind in KINDS:
            out[f"d_{kind}_km2"] = out[f"{kind}_area_t1_km2"] - out[f"{kind}_area_t0_km2"]
            s = ok[f"d_{kind}_sigma_km2"].to_numpy(float)
            out[f"d_{kind}_sigma_quadrature_km2"] = float(np.sqrt(np.nansum(s ** 2)))
            out[f"d_{kind}_sigma_linear_km2"] = float(np.nansum(s))
        out["d_debris_fraction_pct_points"] = 100.0 * (out["debris_fraction_t1"] - out["debris_fraction_t0"])
    else:
        out["change"] = "one epoch (t0 = t1): no change"
    if "truth_debris_km2_t0" in change.columns:
        ev = {}
        for i in (0, 1):
            pred, tru = ok[f"debris_km2_t{i}"].to_numpy(float), ok[f"truth_debris_km2_t{i}"].to_numpy(float)
            good = np.isfinite(pred) & np.isfinite(tru)
            out[f"truth_debris_area_t{i}_km2"] = float(tru[good].sum())
            rows = cover[(cover["status"] == STATUS_OK) & (cover["epoch"].astype(str) == str((t0, t1)[i]))
                         & cover["glac_id"].isin(ok["glac_id"])]
            if "truth_debris_union_km2" in rows.columns and rows["truth_debris_union_km2"].sum() > 0:
                # pixel IoU of the predicted and the planted debris over the counted regions of these glaciers
                out[f"debris_iou_truth_t{i}"] = float(rows["truth_debris_inter_km2"].sum()
                                                      / rows["truth_debris_union_km2"].sum())
            ev[f"t{i}"] = {"n": int(good.sum()), "sum_error_km2": float((pred[good] - tru[good]).sum()),
                           "mae_km2": float(np.abs(pred[good] - tru[good]).mean()) if good.any() else None,
                           "spearman_debris_fraction": _spearman(ok[f"debris_fraction_t{i}"],
                                                                 ok[f"truth_debris_fraction_t{i}"])}
        if t0 != t1:
            pred, tru = ok["d_debris_km2"].to_numpy(float), ok["truth_d_debris_km2"].to_numpy(float)
            good = np.isfinite(pred) & np.isfinite(tru)
            out["truth_d_debris_km2"] = float(tru[good].sum())
            sig = ok["d_debris_sigma_km2"].to_numpy(float)[good]
            ev["change"] = {"n": int(good.sum()), "sum_error_km2": float((pred[good] - tru[good]).sum()),
                            "mae_km2": float(np.abs(pred[good] - tru[good]).mean()) if good.any() else None,
                            "within_1_sigma": float(np.mean(np.abs(pred[good] - tru[good]) <= sig))
                            if good.any() else None}
        out["truth_evaluation"] = ev
    return out


def cover_gpkg(change: pd.DataFrame, inventory_gpkg):
    """The inventory polygons (layer ``glaciers``) with the change table's columns (t0/t1 cover and change)."""
    import geopandas as gpd

    inv = gpd.read_file(inventory_gpkg, layer="glaciers", engine="pyogrio")[["glac_id", "geometry"]]
    inv["glac_id"] = inv["glac_id"].astype(str)
    missing = sorted(set(change["glac_id"].astype(str)) - set(inv["glac_id"]))
    if missing:
        log.warning("%d glacier(s) of the cover table not in the inventory %s: %s", len(missing), inventory_gpkg,
                    ", ".join(missing[:10]))
    g = inv.merge(change.assign(glac_id=change["glac_id"].astype(str)), on="glac_id", how="inner")
    for col in g.columns:
        if g[col].dtype == object and col != "geometry":
            g[col] = g[col].fillna("").astype(str)
    return gpd.GeoDataFrame(g, geometry="geometry", crs=inv.crs)


def _fold_of(pred_file) -> int:
    """The fold of a prediction ``predictions/<model>/fold<k>/<epoch>/<glacier>.nc``."""
    return int(Path(pred_file).parent.parent.name.replace("fold", ""))


def run_cover(keys, pred_paths, cube_paths, calib_jsons, classes, debris_class: str, clean_class: str, t0: str,
              t1: str, inventory_gpkg, outputs: dict, truth: dict | None = None, model: str = "") -> dict:
    """Debris cover of every (glacier, epoch) of ``keys`` (parallel to ``pred_paths``/``cube_paths``), its change
    t0 -> t1 and region totals; writes ``outputs`` ``csv``, ``change``, ``gpkg`` and ``json``.

    ``truth``: :func:`truth_files` (epoch -> debris raster, ``outlines`` -> truth outlines at t1) or None/{}."""
    from glaciermap.results import fold_temperatures

    classes = [str(c) for c in classes]
    for name in (debris_class, clean_class):
        if name not in classes:
            raise ValueError(f"debris settings: class {name!r} is not among the model's classes {classes}")
    temps = fold_temperatures(calib_jsons)
    truth = dict(truth or {})
    outlines_t1 = None
    if truth:
        missing = [truth[e] for e in dict.fromkeys((t0, t1)) if not Path(truth[e]).exists()]
        if missing:
            raise FileNotFoundError(f"debris truth raster(s) missing: {', '.join(missing)}")
        if t1 != t0 and truth.get("outlines") and Path(truth["outlines"]).exists():
            import geopandas as gpd

            outlines_t1 = gpd.read_file(truth["outlines"], engine="pyogrio")
        elif t1 != t0:
            log.warning("no truth outlines %s: no truth debris fraction at t1", truth.get("outlines"))
    rows = []
    for (g, e), pp, cp in zip(keys, pred_paths, cube_paths, strict=True):
        e = str(e)
        if e not in (t0, t1):
            continue
        fold = _fold_of(pp)
        if fold not in temps:
            raise FileNotFoundError(f"fold {fold} (prediction {pp}) has no calibration.json among the inputs")
        ice = None if not truth else ("outline" if e == t0 else outlines_t1)
        row = glacier_cover(g, e, pp, cp, temps[fold], classes, debris_class, clean_class,
                            truth_raster=truth.get(e), truth_ice=ice)
        rows.append({**row, "fold": fold})
    cols = COVER_COLUMNS + (TRUTH_COLUMNS if truth else [])
    cover = pd.DataFrame(rows).reindex(columns=cols)
    cover = cover.sort_values(["glac_id", "epoch"], key=lambda s: s.map({t0: 0, t1: 1}) if s.name == "epoch" else s,
                              kind="stable").reset_index(drop=True)
    change = cover_change(cover, t0, t1)
    totals = {"model": model, "classes": classes, "debris_class": debris_class, "clean_class": clean_class,
              **region_totals(cover, change, t0, t1),
              "truth": ({k: str(v) for k, v in truth.items()} if truth else None)}
    write_csv_atomic(outputs["csv"], cover)
    write_csv_atomic(outputs["change"], change)
    write_gpkg_atomic(outputs["gpkg"], cover_gpkg(change, inventory_gpkg), LAYER)
    write_json_atomic(outputs["json"], _clean(totals))
    log.info("%d glacier(s) mapped at both epochs, %d skipped: debris %.3f -> %.3f km2, clean %.3f -> %.3f km2",
             totals["n_glaciers"], totals["n_skipped"], totals["debris_area_t0_km2"], totals["debris_area_t1_km2"],
             totals["clean_area_t0_km2"], totals["clean_area_t1_km2"])
    return totals


def run_cover_files(pred_dirs, cube_paths, calib_jsons, inventory_gpkg, classes, debris_class: str, clean_class: str,
                    t0: str, t1: str, outputs: dict, truth_dir=None, model: str = "") -> dict:
    """What rule ``cover`` runs: pairs the cubes ``.../cubes/<glacier>/<epoch>.nc`` with the test predictions of the
    ``infer`` folders (every cube must have one), then :func:`run_cover`. ``truth_dir``: the planted truth
    (``evaluation.truth_dir``) or empty: no truth columns."""
    from glaciermap.io import paired_predictions

    keys, preds, cubes = paired_predictions(pred_dirs, cube_paths)
    return run_cover(keys, preds, cubes, calib_jsons, classes, debris_class, clean_class, str(t0), str(t1),
                     inventory_gpkg, outputs, truth_files(truth_dir, str(t0), str(t1)), model)
