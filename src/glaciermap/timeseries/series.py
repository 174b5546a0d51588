"""Temporal smoothing, per-acquisition and annual areas with bounds, and annual outlines of a fold's test glaciers
(rule ``ts_series``).

Smoothing (per pixel, over the glacier's acquisitions): mu_s(t_i) = sum_j w_ij v_j mu_j / sum_j w_ij v_j with
w_ij = exp(-(t_j - t_i)^2 / (2 s^2)), s = ``sigma_days`` **in days** (the public code smooths over image counts, so
its kernel spans weeks in the Landsat 8 era and years in the 1980s) and cut at ``truncate`` s; v_j = 1 where
acquisition j observed the pixel, 0 where it was masked (masked pixels are skipped, never read as ice or not ice).
sigma the same way. A pixel no acquisition within the kernel observed takes its nearest observation in time
(``gap_fill: nearest``); one never observed stays unknown and its share is reported (``unobserved_share``).

``area_own_km2``: each acquisition's own map, unsmoothed (its masked pixels from the nearest observation in time),
to compare sensors, which the smoothing blends.

Areas: pixel count x pixel area (the acquisition grid is projected: metres) of mu_s >= 0.5 in the glacier's domain
(``ts_acquisitions``). Bounds per acquisition: DL4GAM's glacier-specific tau of that acquisition applied to
(mu_s, sigma_s) (``glaciermap.area_change.areas.glacier_area``). Annual: the pixel-wise mean of mu_s and sigma_s
over the year's acquisitions, thresholded at 0.5 (area and outline), with the bounds of the year's mean tau; the
number of acquisitions used; decimal year = the mean date of those acquisitions.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from glaciermap.io import write_csv_atomic, write_gpkg_atomic

log = logging.getLogger("glaciermap.timeseries.series")

SERIES_COLUMNS = ["glacier_id", "acquisition", "source", "date", "year", "decimal_year", "area_km2", "area_lb_km2",
                  "area_ub_km2", "tau", "observed_share", "unobserved_share", "area_own_km2"]
ANNUAL_COLUMNS = ["glacier_id", "year", "decimal_year", "n_acquisitions", "area_km2", "area_lb_km2", "area_ub_km2",
                  "tau", "unobserved_share"]


def decimal_year(times) -> np.ndarray:
    t = pd.DatetimeIndex(times)
    start = pd.to_datetime([f"{y}-01-01" for y in t.year])
    end = pd.to_datetime([f"{y + 1}-01-01" for y in t.year])
    return np.asarray(t.year + (t - start) / (end - start), dtype=np.float64)


def smooth(values: np.ndarray, observed: np.ndarray, days: np.ndarray, sigma_days: float, truncate: float = 3.0,
           gap_fill: str = "nearest") -> np.ndarray:
    """Gaussian smoothing in time of (T, H, W) ``values`` where ``observed``; kernel width ``sigma_days`` days.

    ``sigma_days`` 0 keeps each acquisition's own values. Returns float32 (T, H, W), NaN where nothing is known.
    """
    v = np.where(observed, values, 0.0).astype(np.float64)
    o = observed.astype(np.float64)
    d = np.asarray(days, dtype=np.float64)
    dt = d[:, None] - d[None, :]
    if sigma_days > 0:
        w = np.exp(-0.5 * (dt / sigma_days) ** 2)
        w[np.abs(dt) > truncate * sigma_days] = 0.0
    else:
        w = (dt == 0).astype(np.float64)
    num = np.tensordot(w, v, axes=(1, 0))
    den = np.tensordot(w, o, axes=(1, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / den, np.nan)
    if gap_fill == "nearest" and np.isnan(out).any() and observed.any():
        ever = observed.any(axis=0)
        for i in range(out.shape[0]):
            hole = np.isnan(out[i]) & ever
            if not hole.any():
                continue
            order = np.argsort(np.abs(dt[i]), kind="stable")
            for j in order:
                fill = hole & observed[j]
                out[i][fill] = values[j][fill]
                hole &= ~fill
                if not hole.any():
                    break
    return out.astype(np.float32)


def glacier_series(path, settings: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(per-acquisition rows, annual rows, {year: boolean ice mask}) of one glacier's map file."""
    import xarray as xr

    from glaciermap.area_change.areas import glacier_area

    with xr.open_dataset(path, engine="h5netcdf") as ds:
        g = ds.attrs["glacier_id"]
        mu, sigma, tau = ds["mu"].values, ds["sigma"].values, ds["tau"].values
        domain = ds["domain"].values.astype(bool)
        times = pd.DatetimeIndex(ds["time"].values)
        acq = [str(a) for a in ds["acquisition"].values]
        srcs = [str(a) for a in ds["source"].values] if "source" in ds.coords else [a.split(":", 1)[0] for a in acq]
        a_px = float(ds.attrs["resolution"]) ** 2
        meta = {"crs": ds.attrs["crs"], "transform": json.loads(ds.attrs["transform"]), "shape": domain.shape}
    if not len(times):
        return pd.DataFrame(columns=SERIES_COLUMNS), pd.DataFrame(columns=ANNUAL_COLUMNS), {}
    obs = np.isfinite(mu)
    days = ((times - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy()
    kw = {"sigma_days": float(settings["sigma_days"]), "truncate": float(settings["truncate"]),
          "gap_fill": settings["gap_fill"]}
    mus, sigs = smooth(mu, obs, days, **kw), smooth(sigma, obs, days, **kw)
    # each acquisition's own map (no smoothing; its masked pixels from the nearest observation in time): for comparing
    # sensors, which the smoothing would blend
    own = smooth(mu, obs, days, 0.0, gap_fill="nearest")
    dec = decimal_year(times)
    n_dom = max(int(domain.sum()), 1)
    rows = []
    for i in range(len(times)):
        known = np.isfinite(mus[i])
        est = glacier_area(np.nan_to_num(mus[i]), np.nan_to_num(sigs[i]), domain & known, a_px, float(tau[i]))
        rows.append({"glacier_id": g, "acquisition": acq[i], "source": srcs[i], "date": times[i].date().isoformat(), "year": times[i].year,
                     "decimal_year": round(float(dec[i]), 5), "area_km2": est.area_km2, "area_lb_km2": est.lb_km2,
                     "area_ub_km2": est.ub_km2, "tau": float(tau[i]),
                     "observed_share": float((obs[i] & domain).sum() / n_dom),
                     "unobserved_share": float((~known & domain).sum() / n_dom),
                     "area_own_km2": float(((np.nan_to_num(own[i]) >= 0.5) & domain).sum() * a_px / 1e6)})
    ser = pd.DataFrame(rows, columns=SERIES_COLUMNS)
    annual, masks = [], {}
    for y, idx in ser.groupby("year").indices.items():
        with np.errstate(invalid="ignore"):
            m_y = np.nanmean(mus[idx], axis=0) if len(idx) > 1 else mus[idx[0]]
            s_y = np.nanmean(sigs[idx], axis=0) if len(idx) > 1 else sigs[idx[0]]
        known = np.isfinite(m_y)
        t_y = float(np.mean(tau[idx]))
        est = glacier_area(np.nan_to_num(m_y), np.nan_to_num(s_y), domain & known, a_px, t_y)
        annual.append({"glacier_id": g, "year": int(y), "decimal_year": round(float(np.mean(dec[idx])), 5),
                       "n_acquisitions": int(len(idx)), "area_km2": est.area_km2, "area_lb_km2": est.lb_km2,
                       "area_ub_km2": est.ub_km2, "tau": t_y,
                       "unobserved_share": float((~known & domain).sum() / n_dom)})
        masks[int(y)] = (np.nan_to_num(m_y) >= 0.5) & domain & known
    return ser, pd.DataFrame(annual, columns=ANNUAL_COLUMNS), {"masks": masks, **meta}


def outline_rows(glacier_id: str, masks: dict, meta: dict) -> list[dict]:
    """One (multi)polygon per year of a glacier's annual ice mask."""
    from affine import Affine
    from rasterio.features import shapes
    from shapely.geometry import shape
    from shapely.ops import unary_union

    t = Affine(*meta["transform"])
    out = []
    for y, m in sorted(masks.items()):
        geoms = [shape(s) for s, v in shapes(m.astype(np.uint8), mask=m, transform=t) if v == 1]
        out.append({"glacier_id": glacier_id, "year": int(y), "geometry": unary_union(geoms) if geoms else None})
    return out


def run_ts_series(map_dir, glaciers, settings: dict, out_series, out_annual, out_outlines) -> dict:
    import geopandas as gpd

    from pathlib import Path

    sers, anns, outl, crs = [], [], [], None
    for g in glaciers:
        path = Path(map_dir) / f"{g}.nc"
        ser, ann, meta = glacier_series(path, settings)
        sers.append(ser)
        anns.append(ann)
        if meta:
            crs = crs or meta["crs"]
            outl += outline_rows(g, meta["masks"], meta)
        if ann.empty:
            log.warning("glacier %s: no usable acquisition, no series", g)
    ser = pd.concat(sers, ignore_index=True) if sers else pd.DataFrame(columns=SERIES_COLUMNS)
    ann = pd.concat(anns, ignore_index=True) if anns else pd.DataFrame(columns=ANNUAL_COLUMNS)
    write_csv_atomic(out_series, ser[SERIES_COLUMNS] if len(ser) else pd.DataFrame(columns=SERIES_COLUMNS))
    write_csv_atomic(out_annual, ann[ANNUAL_COLUMNS] if len(ann) else pd.DataFrame(columns=ANNUAL_COLUMNS))
    gdf = gpd.GeoDataFrame(outl or {"glacier_id": [], "year": []}, geometry="geometry" if outl else None,
                           crs=crs) if outl else gpd.GeoDataFrame({"glacier_id": pd.Series(dtype=str),
                                                                   "year": pd.Series(dtype=int)},
                                                                  geometry=gpd.GeoSeries([], crs=crs))
    if outl:
        gdf = gdf.merge(ann[["glacier_id", "year", "area_km2", "area_lb_km2", "area_ub_km2", "n_acquisitions"]],
                        on=["glacier_id", "year"], how="left")
    write_gpkg_atomic(out_outlines, gdf, "annual_outlines")
    return {"glaciers": len(glaciers), "acquisitions": int(len(ser)), "glacier_years": int(len(ann))}
