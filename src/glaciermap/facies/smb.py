"""Surface mass balance from facies features (rule ``smb``; Maslov et al., seed 002, eqs. 2 and 3).

Per glacier and year the facies maps of the scenes within ``window_days`` of the reference day (paper: +-20 days of
20 August, the end of the ablation season) give three features, averaged over the year's scenes
(:func:`annual_features`):

- ``snow_aar``: snow-covered area / glacier area (an accumulation-area-ratio proxy);
- ``snowline_norm``: (snowline altitude - mean glacier elevation) / (max - min elevation);
- ``albedo``: glacier-wide broadband albedo.

These are regressed on annual SMB (m w.e., e.g. WGMS; :func:`read_smb_table`) with ridge regression (a
StandardScaler + Ridge pipeline):

- global model (eq. 2), one model for all glaciers, cross-validated by glacier (leave one glacier out: no SMB of a
  test glacier is used to predict it; the paper uses its 6 glacier folds, of which leave-one-glacier-out is the
  finest) -> :func:`fit_global`;
- per-glacier models (eq. 3), leave one year out, for glaciers with at least ``min_years`` years; the paper's eq. 3
  uses the snow-covered area ratio only (``features_per_glacier``, default ``["snow_aar"]``), since 4-5 years cannot
  carry three slopes and an intercept -> :func:`fit_per_glacier`.

Pearson r and RMSE are over the pooled held-out predictions.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from glaciermap.facies.label_issues import json_safe as _json_safe  # the facies rules' JSON helpers
from glaciermap.facies.label_issues import write_json as _write_json
from glaciermap.io import write_csv_atomic

log = logging.getLogger("glaciermap.facies.smb")

FEATURES = ("snow_aar", "snowline_norm", "albedo")
STATS_COLUMNS = ("glacier_id", "scene_id", "date", *FEATURES, "valid_share")
UNITS = {"m w.e.": 1.0, "mm w.e.": 1e-3}
DEFAULT_PARAMS = {
    "window_days": 20,
    "reference": "08-20",
    "min_valid_share": 0.7,
    "alpha": 1.0,
    "min_years": 4,
    "min_rows": 5,
    "features": list(FEATURES),
    "features_per_glacier": ["snow_aar"],
    "id_column": "glacier_id",
    "year_column": "year",
    "value_column": "annual_balance",
    "units": "m w.e.",
}
IGNORED_PARAMS = {"path"}  # config facies.smb.path: the SMB table, passed as smb_csv


# --------------------------------------------------------------------------- features


def _reference(reference: str):
    try:
        month, day = (int(x) for x in str(reference).split("-"))
        pd.Timestamp(2001, month, day)
    except (ValueError, TypeError) as e:
        raise ValueError(f"reference day must be MM-DD (e.g. 08-20), got {reference!r}") from e
    return month, day


def annual_features(stats: pd.DataFrame, window_days: int = 20, reference: str = "08-20",
                    min_valid_share: float = 0.7, features=FEATURES, source: str = "stats") -> pd.DataFrame:
    """Per (glacier_id, year): the mean of ``features`` over the scenes within ``window_days`` of the reference day
    of their year and with ``valid_share >= min_valid_share``, and ``n_scenes``.

    Scene rows with a NaN feature are dropped first (their count is logged), so one scene without a snowline does
    not void the year. ``source`` names the input in error messages.
    """
    features = list(features)
    missing = [c for c in ("glacier_id", "scene_id", "date", "valid_share", *features) if c not in stats.columns]
    if missing:
        raise ValueError(f"{source}: missing columns {missing} (columns: {list(stats.columns)})")
    month, day = _reference(reference)
    df = stats.copy()
    df["glacier_id"] = df["glacier_id"].astype(str)
    # ISO 8601 dates or date-times (a scene's acquisition time), with or without a time zone: as UTC, then naive
    dates = pd.to_datetime(df["date"].astype(str), format="ISO8601", errors="coerce", utc=True)
    if dates.isna().any():
        bad = df.loc[dates.isna(), "date"].astype(str).unique()[:5]
        raise ValueError(f"{source}: dates that cannot be read (ISO 8601 expected): {list(bad)}")
    dates = dates.dt.tz_localize(None)
    df["year"] = dates.dt.year.astype(int)
    ref = pd.to_datetime(pd.DataFrame({"year": df["year"], "month": month, "day": day}, index=df.index))
    offset = (dates.dt.normalize() - ref).dt.days.abs()
    for c in (*features, "valid_share"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    keep = (offset <= window_days) & (df["valid_share"] >= min_valid_share)
    n_window = int((offset <= window_days).sum())
    df = df[keep]
    nan_rows = df[features].isna().any(axis=1)
    if nan_rows.any():
        log.info("%s: %d scene rows with a NaN feature dropped", source, int(nan_rows.sum()))
    df = df[~nan_rows]
    log.info("%s: %d of %d scene rows within +-%d days of %s, %d of them with valid_share >= %.2f and all features",
             source, n_window, len(stats), window_days, reference, len(df), min_valid_share)
    if df.empty:
        return pd.DataFrame(columns=["glacier_id", "year", "n_scenes", *features])
    g = df.groupby(["glacier_id", "year"], sort=True)
    out = g[features].mean()
    out.insert(0, "n_scenes", g.size())
    return out.reset_index()


def read_smb_table(path, id_column: str = "glacier_id", year_column: str = "year",
                   value_column: str = "annual_balance", units: str = "m w.e.") -> pd.DataFrame:
    """The SMB table as columns ``glacier_id`` (str), ``year`` (int), ``smb`` (m w.e.).

    ``units`` "mm w.e." divides by 1000. Rows without a value are dropped (logged). ValueError naming the file for a
    missing column, unknown units, a non-numeric year or value, or (glacier, year) pairs listed more than once.
    """
    path = Path(path)
    if units not in UNITS:
        raise ValueError(f"SMB table {path}: units must be one of {list(UNITS)}, got {units!r}")
    if not path.exists():
        raise ValueError(f"SMB table {path}: file does not exist")
    try:
        df = pd.read_csv(path, dtype={id_column: str})
    except pd.errors.EmptyDataError as e:
        raise ValueError(f"SMB table {path}: the file is empty") from e
    missing = [c for c in (id_column, year_column, value_column) if c not in df.columns]
    if missing:
        raise ValueError(f"SMB table {path}: missing columns {missing} (columns: {list(df.columns)})")
    year = pd.to_numeric(df[year_column], errors="coerce")
    if year.isna().any() or (year != np.round(year)).any():
        bad = df.loc[year.isna() | (year != np.round(year)), year_column].astype(str).unique()[:5]
        raise ValueError(f"SMB table {path}: column '{year_column}' must hold whole years, found {list(bad)}")
    value = pd.to_numeric(df[value_column], errors="coerce")
    text = df[value_column].astype(str).str.strip()
    not_numeric = value.isna() & df[value_column].notna() & (text != "")
    if not_numeric.any():
        raise ValueError(f"SMB table {path}: column '{value_column}' has non-numeric values "
                         f"{list(text[not_numeric].unique()[:5])}")
    out = pd.DataFrame({"glacier_id": df[id_column].astype(str).str.strip(), "year": year.astype(int),
                        "smb": value * UNITS[units]})
    if df[id_column].isna().any():
        raise ValueError(f"SMB table {path}: {int(df[id_column].isna().sum())} rows without '{id_column}'")
    empty = out["smb"].isna()
    if empty.any():
        log.info("SMB table %s: %d rows without a value dropped", path, int(empty.sum()))
        out = out[~empty]
    dup = out.duplicated(["glacier_id", "year"], keep=False)
    if dup.any():
        pairs = sorted(set(zip(out.loc[dup, "glacier_id"], out.loc[dup, "year"])))
        shown = ", ".join(f"({g}, {y})" for g, y in pairs[:10])
        raise ValueError(f"SMB table {path}: {len(pairs)} (glacier, year) pairs listed more than once: {shown}"
                         f"{' ...' if len(pairs) > 10 else ''}")
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- regression


def _model(alpha: float):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(alpha=alpha))


def pearson_r(y, yhat) -> float:
    """Pearson correlation; NaN for fewer than 3 points or a constant series."""
    y, yhat = np.asarray(y, dtype=float), np.asarray(yhat, dtype=float)
    if len(y) < 3 or np.std(y) == 0 or np.std(yhat) == 0:
        return float("nan")
    return float(np.corrcoef(y, yhat)[0, 1])


def rmse(y, yhat) -> float:
    y, yhat = np.asarray(y, dtype=float), np.asarray(yhat, dtype=float)
    return float(np.sqrt(np.mean((y - yhat) ** 2))) if len(y) else float("nan")


def _check_frame(df, features):
    missing = [c for c in ("glacier_id", "year", "smb", *features) if c not in df.columns]
    if missing:
        raise ValueError(f"SMB regression: missing columns {missing} (columns: {list(df.columns)})")
    if df[list(features) + ["smb"]].isna().any().any():
        raise ValueError("SMB regression: NaN in the features or the SMB")


def fit_global(df: pd.DataFrame, features=FEATURES, alpha: float = 1.0) -> dict:
    """One ridge model for all glaciers, leave-one-glacier-out: r, rmse, n, n_glaciers and the held-out
    ``predictions`` (glacier_id, year, smb, smb_pred). With fewer than 2 glaciers the metrics are NaN and
    ``reason`` says why."""
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict

    features = list(features)
    _check_frame(df, features)
    d = df.reset_index(drop=True)
    n_gl = int(d["glacier_id"].nunique())
    out = {"n": int(len(d)), "n_glaciers": n_gl, "r": float("nan"), "rmse": float("nan"), "reason": None}
    pred = np.full(len(d), np.nan)
    if n_gl < 2:
        out["reason"] = f"{n_gl} glacier(s): leave-one-glacier-out needs at least 2"
    else:
        pred = cross_val_predict(_model(alpha), d[features].to_numpy(dtype=float), d["smb"].to_numpy(dtype=float),
                                 groups=d["glacier_id"].to_numpy(), cv=LeaveOneGroupOut())
        out["r"], out["rmse"] = pearson_r(d["smb"], pred), rmse(d["smb"], pred)
    out["predictions"] = pd.DataFrame({"glacier_id": d["glacier_id"], "year": d["year"], "smb": d["smb"],
                                       "smb_pred": pred})
    return out


def fit_per_glacier(df: pd.DataFrame, features=("snow_aar",), alpha: float = 1.0, min_years: int = 4) -> dict:
    """A ridge model per glacier, leave one year out, for glaciers with at least ``min_years`` years.

    Returns pooled r and rmse over all held-out predictions, ``median_r`` (the median of the per-glacier r),
    ``r_per_glacier``, n, n_glaciers (fitted), n_skipped and skipped_glaciers (too few years), and ``predictions``
    (glacier_id, year, smb, smb_pred; NaN for skipped glaciers).
    """
    from sklearn.model_selection import LeaveOneOut, cross_val_predict

    features = list(features)
    _check_frame(df, features)
    if min_years < 2:
        raise ValueError(f"min_years must be >= 2 (leave one year out), got {min_years}")
    d = df.reset_index(drop=True)
    pred = np.full(len(d), np.nan)
    r_per, skipped = {}, []
    for gid, idx in d.groupby("glacier_id").groups.items():
        idx = np.asarray(idx)
        if len(idx) < min_years:
            skipped.append(str(gid))
            continue
        sub = d.loc[idx]
        pred[idx] = cross_val_predict(_model(alpha), sub[features].to_numpy(dtype=float),
                                      sub["smb"].to_numpy(dtype=float), cv=LeaveOneOut())
        r_per[str(gid)] = pearson_r(sub["smb"], pred[idx])
    done = np.isfinite(pred)
    finite_r = [v for v in r_per.values() if np.isfinite(v)]
    if skipped:
        log.info("per-glacier SMB: %d glaciers with fewer than %d years skipped: %s", len(skipped), min_years,
                 skipped[:20])
    return {
        "r": pearson_r(d.loc[done, "smb"], pred[done]),
        "rmse": rmse(d.loc[done, "smb"], pred[done]),
        "median_r": float(np.median(finite_r)) if finite_r else float("nan"),
        "r_per_glacier": r_per,
        "n": int(done.sum()),
        "n_glaciers": len(r_per),
        "n_skipped": len(skipped),
        "skipped_glaciers": skipped,
        "reason": None if r_per else f"no glacier has {min_years} or more years",
        "predictions": pd.DataFrame({"glacier_id": d["glacier_id"], "year": d["year"], "smb": d["smb"],
                                     "smb_pred": pred}),
    }


# --------------------------------------------------------------------------- rule


def _params(params: dict | None) -> dict:
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS) - IGNORED_PARAMS)
    if unknown:
        log.warning("smb: parameters %s are not used (known: %s)", unknown, sorted(DEFAULT_PARAMS))
    p = {**DEFAULT_PARAMS, **{k: v for k, v in params.items() if k in DEFAULT_PARAMS and v is not None}}
    for key in ("features", "features_per_glacier"):
        bad = [f for f in p[key] if f not in FEATURES]
        if bad or not p[key]:
            raise ValueError(f"smb: {key} must be a non-empty subset of {list(FEATURES)}, got {p[key]}")
    return p


def read_stats(paths) -> pd.DataFrame:
    """The per-scene facies statistics CSVs, concatenated; ValueError naming a file that lacks a column."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    frames = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise ValueError(f"facies statistics {path}: file does not exist")
        try:
            df = pd.read_csv(path, dtype={"glacier_id": str, "scene_id": str})
        except pd.errors.EmptyDataError:
            log.warning("facies statistics %s: empty file, skipped", path)
            continue
        missing = [c for c in STATS_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"facies statistics {path}: missing columns {missing} (columns: {list(df.columns)})")
        if len(df):
            frames.append(df)
    if not frames:
        return pd.DataFrame(columns=list(STATS_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def run_smb(stats_csvs, smb_csv, out_csv, out_json, params: dict | None = None) -> dict:
    """Rule ``smb``: annual facies features joined with the SMB table on (glacier_id, year), global and
    per-glacier ridge regressions.

    ``params`` (config ``facies.smb`` with ``window_days`` / ``reference`` of ``facies.maps``): see
    ``DEFAULT_PARAMS``. Writes ``out_csv`` (glacier_id, year, n_scenes, snow_aar, snowline_norm, albedo, smb,
    smb_pred_global, smb_pred_per_glacier) and ``out_json``. With fewer than ``min_rows`` glacier-years the metrics
    are null and ``reason`` says why (no error). Returns the JSON content.
    """
    p = _params(params)
    stats = read_stats(stats_csvs)
    feats = annual_features(stats, window_days=p["window_days"], reference=p["reference"],
                            min_valid_share=p["min_valid_share"], features=FEATURES, source="facies statistics")
    smb = read_smb_table(smb_csv, p["id_column"], p["year_column"], p["value_column"], p["units"])
    used = sorted(set(p["features"]) | set(p["features_per_glacier"]))
    joined = feats.merge(smb, on=["glacier_id", "year"], how="inner")
    n_nan = int(joined[used].isna().any(axis=1).sum())
    if n_nan:
        log.info("smb: %d glacier-years with a NaN feature dropped", n_nan)
        joined = joined[~joined[used].isna().any(axis=1)]
    joined = joined.sort_values(["glacier_id", "year"]).reset_index(drop=True)
    log.info("smb: %d glacier-years with features, %d SMB records, %d matched", len(feats), len(smb), len(joined))

    out = {
        "smb_r_global": None, "smb_rmse_global": None,
        "smb_r_per_glacier": None, "smb_rmse_per_glacier": None, "smb_median_r_per_glacier": None,
        "n_glacier_years": int(len(joined)),
        "n_glaciers": int(joined["glacier_id"].nunique()),
        "n_glaciers_per_glacier_model": 0,
        "n_skipped_glaciers": 0,
        "skipped_glaciers": [],
        "n_feature_glacier_years": int(len(feats)),
        "n_smb_records": int(len(smb)),
        "features": list(p["features"]),
        "features_per_glacier": list(p["features_per_glacier"]),
        "alpha": float(p["alpha"]),
        "min_years": int(p["min_years"]),
        "window_days": int(p["window_days"]),
        "reference": str(p["reference"]),
        "min_valid_share": float(p["min_valid_share"]),
        "cv_global": "leave one glacier out",
        "cv_per_glacier": "leave one year out",
        "reason": None,
    }
    table = joined[["glacier_id", "year", "n_scenes", *FEATURES, "smb"]].copy()
    table["smb_pred_global"] = np.nan
    table["smb_pred_per_glacier"] = np.nan
    if len(joined) < p["min_rows"]:
        out["reason"] = (f"{len(joined)} glacier-years with both facies features and SMB (need {p['min_rows']}): "
                         "no regression")
        log.warning("smb: %s", out["reason"])
    else:
        g = fit_global(joined, p["features"], alpha=p["alpha"])
        table["smb_pred_global"] = g["predictions"]["smb_pred"].to_numpy()
        out.update({"smb_r_global": g["r"], "smb_rmse_global": g["rmse"], "reason_global": g["reason"]})
        pg = fit_per_glacier(joined, p["features_per_glacier"], alpha=p["alpha"], min_years=p["min_years"])
        table["smb_pred_per_glacier"] = pg["predictions"]["smb_pred"].to_numpy()
        out.update({"smb_r_per_glacier": pg["r"], "smb_rmse_per_glacier": pg["rmse"],
                    "smb_median_r_per_glacier": pg["median_r"], "smb_r_by_glacier": pg["r_per_glacier"],
                    "n_glaciers_per_glacier_model": pg["n_glaciers"], "n_skipped_glaciers": pg["n_skipped"],
                    "skipped_glaciers": pg["skipped_glaciers"], "reason_per_glacier": pg["reason"]})
        log.info("smb: global r %.3f RMSE %.3f m w.e.; per glacier r %.3f RMSE %.3f m w.e. (%d glaciers, %d skipped)",
                 g["r"], g["rmse"], pg["r"], pg["rmse"], pg["n_glaciers"], pg["n_skipped"])
    write_csv_atomic(out_csv, table)
    _write_json(out_json, out)
    return _json_safe(out)
