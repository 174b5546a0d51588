"""Figures of a run (matplotlib, Agg backend, no network): per-glacier panels, reliability diagram,
rate by size class and a gridded map of rates.

Every figure has a fixed size in pixels (``figsize`` x ``dpi``, saved without tight bounding boxes) so
that the report and the tests can rely on it. The data behind each plot comes from small helpers
(:func:`pool_reliability`, :func:`rates_by_size_class`, :func:`grid_rates`, :func:`stretch`) that
are tested on hand-built inputs.

- **Glacier panels** (``figures/glaciers/<glacier>.png``): one row per epoch with the true-colour
  composite (B04, B03, B02), the false-colour composite (B11, B08, B04), the calibrated ensemble mean
  and the ensemble standard deviation (temperature-scaled members, as in ``areas``); the inventory
  outline (white/black) and the predicted outline (red) are drawn on every image.
- **Reliability diagram** (``figures/reliability.png``): accuracy against confidence per bin, before
  and after temperature scaling, pooled over the folds from the bins stored in each
  ``models/fold<k>/calibration.json`` (count-weighted), with the pixel count per bin below.
- **Rate by size class** (``figures/rates_by_size_class.png``): boxplot of the measured per-glacier
  rates (%/yr) per inventory size class, with the kept rates (SNR and recall filters) as dots.
- **Rate map** (``figures/rate_map.png``): the region cut into square cells of ``grid_km``; each cell
  shows the regional rate of the glaciers whose centroid lies in it, 100 x sum(rate km2/yr) /
  sum(area t0 km2), measured or extrapolated (``reg_*`` columns of ``rates/glacier_rates.csv``);
  glacier outlines drawn on top.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from glaciermap.area_change.areas import SIZE_LABELS, size_class  # noqa: E402
from glaciermap.io import STATUS_SKIPPED, GlacierInputError, atomic_path  # noqa: E402

log = logging.getLogger("glaciermap.area_change.figures")

PANEL_SIZE_IN = (4 * 3.2, 3.0)  # width, height per epoch row (inches)
SMALL_SIZE_IN = (7.0, 5.0)


# ---------------------------------------------------------------------------------------------------- data helpers


def stretch(rgb, lo_pct: float = 2.0, hi_pct: float = 98.0) -> np.ndarray:
    """[H, W, 3] array scaled to 0..1 by the joint lo/hi percentiles of its finite values (NaN -> 0)."""
    a = np.asarray(rgb, dtype=np.float64)
    fin = a[np.isfinite(a)]
    if fin.size == 0:
        return np.zeros_like(a)
    lo, hi = np.percentile(fin, [lo_pct, hi_pct])
    out = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)


def pool_reliability(records) -> pd.DataFrame:
    """Count-weighted pooling of reliability bins over folds.

    ``records``: rows with calibration ("before"/"after"), bin_lo, bin_hi, confidence, accuracy, count
    (as stored under ``reliability`` in calibration.json). Returns one row per (calibration, bin) with
    the pooled mean confidence and accuracy (NaN for empty bins) and the total count.
    """
    df = pd.DataFrame(list(records))
    cols = ["calibration", "bin_lo", "bin_hi", "confidence", "accuracy", "count"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"reliability records lack column(s) {missing}")
    df = df.copy()
    df["count"] = df["count"].fillna(0).astype(float)
    for c in ("confidence", "accuracy"):
        df[c] = df[c].astype(float)
        df[f"w_{c}"] = np.where(df["count"] > 0, df[c].fillna(0) * df["count"], 0.0)
    g = df.groupby(["calibration", "bin_lo", "bin_hi"], sort=True)
    out = g[["count", "w_confidence", "w_accuracy"]].sum().reset_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["confidence"] = np.where(out["count"] > 0, out["w_confidence"] / out["count"], np.nan)
        out["accuracy"] = np.where(out["count"] > 0, out["w_accuracy"] / out["count"], np.nan)
    out["count"] = out["count"].astype(int)
    return out[cols]


def ece_from_bins(pooled: pd.DataFrame, calibration: str) -> float:
    """Expected calibration error of pooled bins: count-weighted mean |accuracy - confidence|."""
    d = pooled[(pooled["calibration"] == calibration) & (pooled["count"] > 0)]
    n = d["count"].sum()
    return float((d["count"] * (d["accuracy"] - d["confidence"]).abs()).sum() / n) if n else float("nan")


def rates_by_size_class(rates: pd.DataFrame) -> dict:
    """Size class label -> (all measured finite rates %/yr, kept rates %/yr), in size-class order.

    Measured = glaciers with a finite ``rate_pct_yr`` from their own maps (the change_rates output);
    size classes from the inventory area ``area_km2``. Classes without a rate are left out.
    """
    r = rates.copy()
    r["rate_pct_yr"] = pd.to_numeric(r.get("rate_pct_yr"), errors="coerce")
    r = r[np.isfinite(r["rate_pct_yr"])]
    cls = size_class(r["area_km2"].astype(float).to_numpy()) if len(r) else np.array([], dtype=object)
    kept = r["kept"].astype(str).str.lower().isin(["true", "1"]).to_numpy() if "kept" in r.columns else np.zeros(len(r), bool)
    out = {}
    for lab in SIZE_LABELS:
        sel = cls == lab
        if sel.any():
            vals = r["rate_pct_yr"].to_numpy(float)
            out[lab] = (vals[sel], vals[sel & kept])
    return out


def grid_rates(x, y, rate_km2_yr, area_km2, cell_m: float):
    """Gridded regional rate from glacier centroids.

    Cells are squares of ``cell_m`` aligned to multiples of ``cell_m``, covering every finite centroid.
    Returns (x_edges, y_edges, rate_pct [ny, nx], count [ny, nx]) with row 0 the southernmost cell;
    rate_pct = 100 x sum(rate_km2_yr) / sum(area_km2) over the glaciers in the cell (NaN if none or if
    their area sums to 0). Glaciers with a non-finite rate or area are ignored.
    """
    x, y, r, a = (np.asarray(v, dtype=np.float64).ravel() for v in (x, y, rate_km2_yr, area_km2))
    if cell_m <= 0:
        raise ValueError(f"cell size must be positive, got {cell_m}")
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(r) & np.isfinite(a)
    x, y, r, a = x[ok], y[ok], r[ok], a[ok]
    if x.size == 0:
        return np.array([0.0, cell_m]), np.array([0.0, cell_m]), np.full((1, 1), np.nan), np.zeros((1, 1), int)
    x0, y0 = np.floor(x.min() / cell_m) * cell_m, np.floor(y.min() / cell_m) * cell_m
    ix = np.floor((x - x0) / cell_m).astype(int)
    iy = np.floor((y - y0) / cell_m).astype(int)
    nx, ny = ix.max() + 1, iy.max() + 1
    s_rate = np.zeros((ny, nx))
    s_area = np.zeros((ny, nx))
    count = np.zeros((ny, nx), int)
    np.add.at(s_rate, (iy, ix), r)
    np.add.at(s_area, (iy, ix), a)
    np.add.at(count, (iy, ix), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = np.where((count > 0) & (s_area > 0), 100.0 * s_rate / s_area, np.nan)
    return x0 + cell_m * np.arange(nx + 1), y0 + cell_m * np.arange(ny + 1), pct, count


def largest_glaciers(manifest: pd.DataFrame, candidates, n: int) -> list[str]:
    """Ids of the ``n`` largest glaciers (inventory area) among ``candidates``; ties by id."""
    m = manifest[manifest["glac_id"].astype(str).isin(set(map(str, candidates)))].copy()
    m["area_km2"] = m["area_km2"].astype(float)
    m = m.sort_values(["area_km2", "glac_id"], ascending=[False, True])
    return list(m["glac_id"].astype(str).head(max(int(n), 0)))


# ---------------------------------------------------------------------------------------------------- plotting


def _save(fig, path, dpi: int) -> None:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def _read_panel_epoch(glacier: str, cube_path, pred_path, temperatures):
    """Images and masks of one glacier and epoch for the panel; None for a skip record."""
    import rioxarray  # noqa: F401
    import xarray as xr

    from glaciermap.results import calibrated_stats, read_probs

    # xarray directly, not patches.open_cube: that module imports torch (seconds per job)
    with xr.open_dataset(cube_path, engine="h5netcdf", decode_coords="all") as ds:
        if ds.attrs.get("status") == STATUS_SKIPPED:
            return {"skipped": str(ds.attrs.get("reason", "skipped"))}
        bands = ["B04", "B03", "B02", "B11", "B08"]
        have = [str(b) for b in ds["band"].values] if "layers" in ds and "band" in ds.coords else []
        missing = [b for b in bands if b not in have] + [v for v in ["mask_glacier"] if v not in ds]
        if missing:
            raise GlacierInputError(glacier, cube_path, f"cube lacks layer(s)/variable(s) {missing} needed for the panel")
        stack = ds["layers"].sel(band=bands).values.astype(np.float64)
        d = dict(zip(bands, stack))
        d["mask_glacier"] = ds["mask_glacier"].values.astype(np.float64)
        d["x"], d["y"] = ds["x"].values, ds["y"].values
        d["crs"] = ds.rio.crs
        d["date"] = str(ds.attrs.get("date", ""))[:10]
    probs = read_probs(pred_path)
    if probs is None:
        return {"skipped": "no prediction (skip record)"}
    d["mu"], d["sigma"] = calibrated_stats(probs, temperatures)
    return d


def glacier_panel(glacier: str, epochs, cube_paths, pred_paths, temperatures, outlines, out_png, dpi: int = 100,
                  title_extra: dict | None = None) -> None:
    """Panel PNG of one glacier: one row per epoch (RGB, SWIR-NIR-R, mean, std) with both outlines.

    ``outlines``: GeoDataFrame of predicted outlines (rows of this glacier; any CRS).
    """
    n = len(epochs)
    fig, axes = plt.subplots(n, 4, figsize=(PANEL_SIZE_IN[0], PANEL_SIZE_IN[1] * n), squeeze=False)
    for row, (e, cp, pp) in enumerate(zip(epochs, cube_paths, pred_paths, strict=True)):
        d = _read_panel_epoch(glacier, cp, pp, temperatures)
        ax = axes[row]
        if "skipped" in d:
            for a in ax:
                a.set_axis_off()
            ax[0].text(0.0, 0.5, f"{glacier} {e}: {d['skipped']}", transform=ax[0].transAxes, fontsize=8, wrap=True)
            continue
        x, y = d["x"], d["y"]
        res = abs(float(x[1] - x[0])) if x.size > 1 else 10.0
        extent = (x.min() - res / 2, x.max() + res / 2, y.min() - res / 2, y.max() + res / 2)
        origin = "upper" if y[0] > y[-1] else "lower"
        rgb = stretch(np.dstack([d["B04"], d["B03"], d["B02"]]))
        swir = stretch(np.dstack([d["B11"], d["B08"], d["B04"]]))
        ims = [(rgb, None, "RGB (B4 B3 B2)"), (swir, None, "SWIR-NIR-R (B11 B8 B4)"),
               (d["mu"], "viridis", "ensemble mean"), (d["sigma"], "magma", "ensemble std")]
        pred = outlines[(outlines["glac_id"] == glacier) & (outlines["epoch"] == e)]
        if d["crs"] is not None and len(pred) and pred.crs is not None:
            pred = pred.to_crs(d["crs"])
        info = (title_extra or {}).get(e, "")
        for a, (img, cmap, label) in zip(ax, ims):
            if cmap is None:
                a.imshow(img, extent=extent, origin=origin, interpolation="nearest")
            else:
                vmax = 1.0 if label == "ensemble mean" else max(0.05, float(np.nanmax(img)) if np.isfinite(img).any() else 0.5)
                im = a.imshow(img, extent=extent, origin=origin, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
                fig.colorbar(im, ax=a, fraction=0.046, pad=0.02)
            a.contour(x, y, d["mask_glacier"], levels=[0.5], colors="white" if cmap is None else "black",
                      linewidths=0.8)
            for geom in pred.geometry:
                if geom is None or geom.is_empty:
                    continue
                for poly in geom.geoms:
                    for ring in [poly.exterior, *poly.interiors]:
                        xs, ys = ring.xy
                        a.plot(xs, ys, color="red", linewidth=0.8)
            a.set_xlim(extent[0], extent[1])
            a.set_ylim(extent[2], extent[3])
            a.set_xticks([])
            a.set_yticks([])
            a.set_title(label, fontsize=8)
        ax[0].set_ylabel(f"{e} ({d['date']})\n{info}", fontsize=8)
    fig.suptitle(f"{glacier}: inventory outline (white/black), predicted outline (red)", fontsize=9)
    fig.subplots_adjust(left=0.06, right=0.97, bottom=0.03, top=0.9, wspace=0.25, hspace=0.25)
    _save(fig, out_png, dpi)


def reliability_figure(calib_jsons, out_png, dpi: int = 100) -> pd.DataFrame:
    """Reliability diagram before/after temperature scaling, pooled over folds; returns the pooled bins."""
    records = []
    for p in calib_jsons:
        d = json.loads(Path(p).read_text())
        if "reliability" not in d:
            raise ValueError(f"{p}: calibration file has no 'reliability' bins (re-run the calibrate rule)")
        records.extend(d["reliability"])
    pooled = pool_reliability(records)
    fig, (ax, axc) = plt.subplots(2, 1, figsize=SMALL_SIZE_IN, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0.5, 1.0], [0.5, 1.0], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    colours = {"before": "tab:orange", "after": "tab:blue"}
    for cal in ("before", "after"):
        d = pooled[pooled["calibration"] == cal]
        if d.empty:
            continue
        ax.plot(d["confidence"], d["accuracy"], marker="o", color=colours[cal],
                label=f"{cal} temperature scaling (ECE {ece_from_bins(pooled, cal):.3f})")
        width = float((d["bin_hi"] - d["bin_lo"]).iloc[0])
        off = -width / 4 if cal == "before" else width / 4
        axc.bar((d["bin_lo"] + d["bin_hi"]) / 2 + off, d["count"], width=width / 2, color=colours[cal])
    ax.set_ylabel("accuracy")
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"Reliability of the ensemble mean ({len(calib_jsons)} fold(s), validation pixels)", fontsize=9)
    axc.set_xlabel("confidence max(p, 1 - p)")
    axc.set_ylabel("pixels")
    axc.set_yscale("symlog")
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.1, top=0.93, hspace=0.08)
    _save(fig, out_png, dpi)
    return pooled


def rates_boxplot(rates: pd.DataFrame, out_png, dpi: int = 100) -> dict:
    """Boxplot of measured rates (%/yr) per size class, kept rates as dots; returns the plotted data."""
    data = rates_by_size_class(rates)
    fig, ax = plt.subplots(figsize=SMALL_SIZE_IN)
    labels = list(data)
    if labels:
        ax.boxplot([data[k][0] for k in labels], tick_labels=labels, showfliers=True)
        for i, k in enumerate(labels, start=1):
            kept = data[k][1]
            ax.scatter(np.full(kept.size, i) + 0.15, kept, s=12, color="tab:blue", zorder=3,
                       label="kept (SNR and recall filters)" if i == 1 else None)
            ax.text(i, 1.0, f"n={data[k][0].size}", transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=7)
        if any(data[k][1].size for k in labels):
            ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no measured rates", transform=ax.transAxes, ha="center")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("inventory size class (km2)")
    ax.set_ylabel("area change rate (%/yr)")
    ax.set_title("Per-glacier area change rate by size class (measured)", fontsize=9, pad=14)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.9)
    _save(fig, out_png, dpi)
    return data


def rate_map(rates_gpkg, out_png, cell_km: float = 2.0, dpi: int = 100):
    """Gridded regional rate map (see module docstring); returns (x_edges, y_edges, rate_pct, count) in metres."""
    import geopandas as gpd

    g = gpd.read_file(rates_gpkg, engine="pyogrio")
    if g.crs is None:
        raise ValueError(f"{rates_gpkg}: rates GeoPackage has no CRS")
    if g.crs.is_geographic:
        g = g.to_crs(g.estimate_utm_crs() if len(g) else "EPSG:3857")
    for c in ("reg_rate_km2_yr", "reg_area_t0_km2"):
        if c not in g.columns:
            g[c] = np.nan
        g[c] = pd.to_numeric(g[c], errors="coerce")
    cen = g.geometry.centroid
    xe, ye, pct, count = grid_rates(cen.x, cen.y, g["reg_rate_km2_yr"], g["reg_area_t0_km2"], cell_km * 1000.0)
    fig, ax = plt.subplots(figsize=SMALL_SIZE_IN)
    lim = np.nanmax(np.abs(pct)) if np.isfinite(pct).any() else 1.0
    mesh = ax.pcolormesh(xe / 1000, ye / 1000, np.ma.masked_invalid(pct), cmap="RdBu", vmin=-lim, vmax=lim, alpha=0.85)
    fig.colorbar(mesh, ax=ax, label="regional rate in cell (%/yr)")
    for geom in g.geometry:
        if geom is None or geom.is_empty:
            continue
        for poly in getattr(geom, "geoms", [geom]):
            xs, ys = poly.exterior.xy
            ax.plot(np.asarray(xs) / 1000, np.asarray(ys) / 1000, color="black", linewidth=0.4)
    for j in range(count.shape[0]):
        for i in range(count.shape[1]):
            if count[j, i]:
                ax.text((xe[i] + xe[i + 1]) / 2000, (ye[j] + ye[j + 1]) / 2000, str(count[j, i]), ha="center",
                        va="center", fontsize=6, color="dimgrey")
    ax.set_aspect("equal")
    ax.set_xlabel(f"easting (km, {g.crs.to_string()})")
    ax.set_ylabel("northing (km)")
    ax.set_title(f"Area change rate per {cell_km:g} km cell (glacier centroids; numbers = glaciers)", fontsize=9)
    fig.subplots_adjust(left=0.1, right=0.95, bottom=0.1, top=0.93)
    _save(fig, out_png, dpi)
    return xe, ye, pct, count


# ---------------------------------------------------------------------------------------------------- rule entry point


def run_figures(panel_glaciers, epochs, cube_paths: dict, pred_paths: dict, calib_jsons, areas_csv, rates_csv,
                rates_gpkg, outlines_gpkg, split_csv, cfg: dict, outputs: dict) -> None:
    """What the ``figures`` rule runs.

    ``cube_paths``/``pred_paths``: (glacier, epoch) -> path for the panel glaciers; ``outputs``: paths for
    ``reliability``, ``boxplot``, ``rate_map`` and ``panels`` (list parallel to ``panel_glaciers``).
    """
    import geopandas as gpd

    from glaciermap.segmentation.split import read_split

    f = cfg["figures"]
    dpi = int(f["dpi"])
    from glaciermap.results import fold_temperatures

    temps = fold_temperatures(calib_jsons)
    fold_of = read_split(split_csv).set_index("glac_id")["test_fold"].astype(int)
    outlines = gpd.read_file(outlines_gpkg, engine="pyogrio")
    outlines["glac_id"] = outlines["glac_id"].astype(str)
    outlines["epoch"] = outlines["epoch"].astype(str)
    areas = pd.read_csv(areas_csv, dtype={"glac_id": str, "epoch": str})
    for g, out_png in zip(panel_glaciers, outputs["panels"], strict=True):
        a = areas[(areas["glac_id"] == g) & (areas["status"] == "ok")].set_index("epoch")
        extra = {e: f"A = {a.loc[e, 'area_pred_km2']:.2f} [{a.loc[e, 'area_lb_km2']:.2f}, {a.loc[e, 'area_ub_km2']:.2f}] km2"
                 for e in a.index}
        k = int(fold_of[g])
        glacier_panel(g, epochs, [cube_paths[(g, e)] for e in epochs], [pred_paths[(g, e)] for e in epochs],
                      temps.get(k, []), outlines, out_png, dpi, extra)
    reliability_figure(calib_jsons, outputs["reliability"], dpi)
    if rates_csv is None:  # a one-epoch region: no rates, no change figures
        log.info("%d glacier panel(s) and the reliability diagram written (one epoch: no rate figures)",
                 len(panel_glaciers))
        return
    rates = pd.read_csv(rates_csv, dtype={"glac_id": str})
    rates_boxplot(rates, outputs["boxplot"], dpi)
    rate_map(rates_gpkg, outputs["rate_map"], float(f["grid_km"]), dpi)
    log.info("%d glacier panel(s) and 3 regional figures written", len(panel_glaciers))
