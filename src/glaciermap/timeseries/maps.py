"""Ensemble probability maps of every usable acquisition of a fold's test glaciers (rule ``ts_maps``, one job per
fold: each glacier is mapped by the ensemble that never saw it, as DL4GAM's out-of-fold predictions).

Per glacier a NetCDF (time, y, x): ``mu`` and ``sigma`` of the temperature-scaled members (NaN where the pixel was
not observed: masked pixels stay masked, neither ice nor not ice), and per acquisition ``tau`` (the fold's tau model
on that acquisition's own predictors over the glacier's domain), plus the glacier's ``domain`` and ``outline``.

Incremental: each acquisition's (mu, sigma) is also kept in ``cache_dir`` (``<glacier>/<key>.npz``) under a key that
hashes the fold's member files, its calibration, the acquisition id and its input values; a re-run (a new scene made
a glacier's stack change) maps only the acquisitions whose key is new and reads the others back (the values a full
re-map gives, up to the rounding of batched convolutions: tested). Entries no longer used are removed. The cache is not a Snakemake output (the job's folder is removed before
it runs); deleting it only costs time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from glaciermap.io import write_netcdf_atomic

log = logging.getLogger("glaciermap.timeseries.maps")


def _file_hash(paths) -> str:
    h = hashlib.sha1()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def acquisition_key(fold_key: str, acquisition: str, x: np.ndarray) -> str:
    h = hashlib.sha1(fold_key.encode())
    h.update(acquisition.encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()[:20]


def run_ts_maps(glaciers, stack_paths, model_paths, calibration_json, cfg: dict, out_dir, cache_dir=None) -> dict:
    import torch
    import xarray as xr

    from glaciermap.area_change.areas import glacier_area
    from glaciermap.segmentation.calibrate import (apply_temperature, ensemble_stats, predict_tau, tau_features,
                                                   tau_model_from_dict)
    from glaciermap.timeseries.calibrate import member_probs
    from glaciermap.timeseries.train import channel_stack, down_factor, load_members, normalise, read_stack

    torch.set_num_threads(int(cfg.get("threads", 1)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models, stats, settings = load_members(model_paths)
    cal = json.loads(Path(calibration_json).read_text())
    temps, tau_model = cal["temperatures"], tau_model_from_dict(cal["tau_model"])
    mult = down_factor(settings)
    fold_key = _file_hash(sorted(model_paths)) + _file_hash([calibration_json])
    n_acq = n_new = 0
    for g, path in zip(glaciers, stack_paths, strict=True):
        st = read_stack(path)
        x = channel_stack(st, stats["channels"])
        T = x.shape[0]
        a_px = st["resolution"] ** 2
        mu = np.full((T, *st["domain"].shape), np.nan, np.float32)
        sigma = np.full_like(mu, np.nan)
        keys = [acquisition_key(fold_key, st["acquisitions"][t], x[t]) for t in range(T)]
        gdir = Path(cache_dir) / g if cache_dir else None
        todo = []
        for t, k in enumerate(keys):
            f = gdir / f"{k}.npz" if gdir else None
            if f is not None and f.exists():
                with np.load(f) as z:
                    mu[t], sigma[t] = z["mu"], z["sigma"]
            else:
                todo.append(t)
        if todo:
            p = member_probs(models, normalise(x[todo], stats), mult)
            cal_p = np.stack([apply_temperature(p[i], temps[i]) for i in range(len(models))])
            m_, s_ = ensemble_stats(cal_p)
            mu[todo], sigma[todo] = m_.astype(np.float32), s_.astype(np.float32)
        mu[~st["valid"]] = np.nan
        sigma[~st["valid"]] = np.nan
        if gdir is not None:
            gdir.mkdir(parents=True, exist_ok=True)
            for t in todo:
                tmp = gdir / f".{keys[t]}.tmp.npz"
                np.savez(tmp, mu=mu[t], sigma=sigma[t])
                tmp.replace(gdir / f"{keys[t]}.npz")
            for old in gdir.glob("*.npz"):
                if old.stem not in keys:
                    old.unlink()
        n_new += len(todo)
        feats = []
        for t in range(T):
            obs = st["domain"] & st["valid"][t]
            est = glacier_area(np.nan_to_num(mu[t]), np.nan_to_num(sigma[t]), obs, a_px)
            feats.append(tau_features(est.area_km2, mu[t], sigma[t], obs))
        tau = predict_tau(tau_model, pd.DataFrame(feats)) if feats else np.zeros(0)
        tau = np.where(np.isfinite(tau), tau, 0.5)
        ds = xr.Dataset({"mu": (("time", "y", "x"), mu), "sigma": (("time", "y", "x"), sigma),
                         "tau": (("time",), np.asarray(tau, np.float64)),
                         "domain": (("y", "x"), st["domain"].astype(np.uint8)),
                         "outline": (("y", "x"), st["outline"].astype(np.uint8))},
                        coords={"time": st["times"].tz_localize(None) if st["times"].tz is not None else st["times"],
                                "acquisition": ("time", st["acquisitions"]), "source": ("time", st["sources"]),
                                "y": st["y"], "x": st["x"]},
                        attrs={"glacier_id": g, "crs": st["crs"], "resolution": st["resolution"],
                               "transform": json.dumps(st["transform"]), "fold_calibration": str(calibration_json),
                               "members": len(models)})
        enc = {v: {"zlib": True, "complevel": 4} for v in ("mu", "sigma", "domain", "outline")}
        write_netcdf_atomic(out_dir / f"{g}.nc", ds, enc)
        n_acq += T
        log.info("glacier %s: %d acquisition(s), %d mapped now, %d from the cache", g, T, len(todo), T - len(todo))
    log.info("fold maps: %d glaciers, %d acquisitions, %d mapped now", len(glaciers), n_acq, n_new)
    return {"glaciers": len(glaciers), "acquisitions": n_acq, "mapped": n_new}
