"""The time series' segmentation model: a U-Net on the paper's 10 Landsat channels, one ensemble per geographic
fold of the shared split (rule ``ts_train``, one job per fold training its members one after the other).

Channels (GlacierView): blue, green, red, nir, swir1, swir2 (surface reflectance, the collection's scale and offset
applied when read), thermal (surface temperature, K), dem, NDSI = (green - swir1) / (green + swir1) and
NDWI = (green - nir) / (green + nir), the indices computed from the physical reflectances *before* any normalisation
(the public code normalises each band of each image first, which changes the indices from image to image). Then each
channel is standardised with the mean and standard deviation of the fold's training pixels (one set for every image,
so that brightness differences between dates stay visible); unobserved pixels are 0 after standardisation.

Training examples: the usable acquisitions of a training glacier within ``train_window_days`` of its inventory date
(the ``max_examples_per_glacier`` nearest in time, of any source), labelled with the inventory outline; the loss counts only the pixels nearest to that glacier (its ``owner`` pixels)
that were observed, so a test glacier's ice is never a label (no leak) and a neighbour's is learnt from its own
window. Each epoch draws ``patches_per_example`` random ``patch_size`` crops of each example with flips and 90-degree
rotations. The network is the shared segmentation core's (``glaciermap.segmentation.train.build_model``, any
segmentation-models-pytorch architecture and encoder, no pretrained weights) with its focal loss; the best epoch by
validation IoU of the fold's validation glaciers is kept. Member m of fold k is seeded as the core's members.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from glaciermap.io import write_csv_atomic, write_json_atomic

log = logging.getLogger("glaciermap.timeseries.train")

INDICES = {"ndsi": ("green", "swir1"), "ndwi": ("green", "nir")}


def read_stack(path) -> dict:
    """One glacier's acquisitions (``ts_acquisitions`` output) as numpy arrays."""
    import xarray as xr

    with xr.open_dataset(path, engine="h5netcdf") as ds:
        bands = json.loads(ds.attrs["bands"])
        out = {"bands": {b: ds[b].values for b in bands}, "valid": ds["valid"].values.astype(bool),
               "dem": ds["dem"].values, "domain": ds["domain"].values.astype(bool),
               "outline": ds["outline"].values.astype(bool), "owner": ds["owner"].values,
               "times": pd.DatetimeIndex(ds["time"].values), "acquisitions": [str(a) for a in ds["acquisition"].values],
               "sources": [str(a) for a in ds["source"].values] if "source" in ds.coords
               else [str(a).split(":", 1)[0] for a in ds["acquisition"].values],
               "glacier_id": ds.attrs["glacier_id"], "resolution": float(ds.attrs["resolution"]),
               "crs": ds.attrs["crs"], "transform": json.loads(ds.attrs["transform"]),
               "owner_ids": json.loads(ds.attrs["owner_ids"]), "x": ds["x"].values, "y": ds["y"].values}
    out["self_index"] = out["owner_ids"].index(out["glacier_id"])
    return out


def channel_stack(st: dict, channels, idx=None) -> np.ndarray:
    """(T, C, H, W) float32 physical channel values (NaN where not observed) of acquisitions ``idx`` (all: None)."""
    T = len(st["times"])
    idx = np.arange(T) if idx is None else np.asarray(idx, dtype=int)
    b = {k: v[idx].astype(np.float32) for k, v in st["bands"].items()}
    out = []
    for c in channels:
        if c in b:
            out.append(b[c])
        elif c == "dem":
            out.append(np.broadcast_to(st["dem"], (len(idx), *st["dem"].shape)).astype(np.float32))
        elif c in INDICES:
            p, q = INDICES[c]
            with np.errstate(divide="ignore", invalid="ignore"):
                out.append(((b[p] - b[q]) / (b[p] + b[q])).astype(np.float32))
        else:
            raise KeyError(f"time-series channel '{c}': not a band of the acquisitions ({', '.join(b)}), dem, "
                           f"{', '.join(INDICES)}")
    x = np.stack(out, axis=1)
    x[~st["valid"][idx][:, None].repeat(len(channels), axis=1)] = np.nan
    return x


def normalise(x: np.ndarray, stats: dict) -> np.ndarray:
    m = np.asarray(stats["mean"], np.float32)[None, :, None, None]
    s = np.asarray(stats["std"], np.float32)[None, :, None, None]
    return np.nan_to_num((x - m) / s, nan=0.0).astype(np.float32)


def fit_stats(stacks, channels) -> dict:
    """Per-channel mean and standard deviation over every observed pixel of the given (T, C, H, W) stacks."""
    s1 = np.zeros(len(channels))
    s2 = np.zeros(len(channels))
    n = np.zeros(len(channels))
    for x in stacks:
        v = np.moveaxis(x, 1, 0).reshape(len(channels), -1).astype(np.float64)
        ok = np.isfinite(v)
        s1 += np.where(ok, v, 0).sum(1)
        s2 += np.where(ok, v * v, 0).sum(1)
        n += ok.sum(1)
    if (n == 0).any():
        raise ValueError(f"no observed training pixel for channel(s) {[c for c, k in zip(channels, n) if k == 0]}")
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 1e-12))
    return {"channels": list(channels), "mean": mean.tolist(), "std": np.maximum(std, 1e-6).tolist()}


def inventory_dates(inventory_gpkg) -> dict:
    """glacier id -> inventory date (Timestamp; NaT without one) of the workflow's inventory (rule inventory, whose
    ``date`` column holds each outline's date from the configured ``inventory.date_column``)."""
    from glaciermap.facies.points import read_glaciers

    g = read_glaciers(inventory_gpkg)
    if "date" not in g.columns:
        return {str(i): pd.NaT for i in g["glac_id"]}
    return {str(i): pd.to_datetime(d, errors="coerce") for i, d in zip(g["glac_id"], g["date"])}


def inventory_examples(paths: dict, glaciers, dates: dict, channels, window_days: float,
                       max_per_glacier: int | None = None) -> list[dict]:
    """Per glacier in ``glaciers``: its usable acquisitions within ``window_days`` of its inventory date (the
    ``max_per_glacier`` nearest in time), as physical (C, H, W) stacks with the label (inventory outline) and the loss
    mask (own observed pixels)."""
    out = []
    for g in glaciers:
        st = read_stack(paths[g])
        d = dates.get(g, pd.NaT)
        if pd.isna(d) or not len(st["times"]):
            continue
        dt = np.abs((st["times"].tz_localize(None) - pd.Timestamp(d).tz_localize(None)).days)
        idx = np.flatnonzero(dt <= window_days)
        if max_per_glacier:
            idx = idx[np.argsort(dt[idx], kind="stable")[:int(max_per_glacier)]]
        if not idx.size:
            continue
        x = channel_stack(st, channels, idx)
        own = st["owner"] == st["self_index"]
        for j, i in enumerate(idx):
            out.append({"glacier_id": g, "acquisition": st["acquisitions"][i], "x": x[j], "y": st["outline"],
                        "mask": own & st["valid"][i], "domain": st["domain"], "resolution": st["resolution"],
                        "date": st["times"][i]})
    return out


def random_patches(examples, stats, p: int, per_example: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``per_example`` random p x p crops (with a random flip and 90-degree rotation) of every example."""
    from glaciermap.segmentation.patches import extract

    X, Y, M = [], [], []
    for e in examples:
        x = normalise(e["x"][None], stats)[0]
        H, W = x.shape[-2:]
        for _ in range(per_example):
            r = int(rng.integers(min(0, H - p), max(H - p, 0) + 1))
            c = int(rng.integers(min(0, W - p), max(W - p, 0) + 1))
            xs, ys, ms = (extract(a, r, c, p, 0) for a in (x, e["y"], e["mask"]))
            k, f = int(rng.integers(4)), bool(rng.integers(2))
            xs, ys, ms = (np.rot90(a, k, axes=(-2, -1)) for a in (xs, ys, ms))
            if f:
                xs, ys, ms = (a[..., ::-1] for a in (xs, ys, ms))
            X.append(np.ascontiguousarray(xs))
            Y.append(np.ascontiguousarray(ys))
            M.append(np.ascontiguousarray(ms))
    return np.stack(X).astype(np.float32), np.stack(Y).astype(np.float32), np.stack(M).astype(np.float32)


def pad_to(x: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    H, W = x.shape[-2:]
    ph, pw = (-H) % multiple, (-W) % multiple
    if ph or pw:
        x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)])
    return x, (H, W)


def predict_logits(model, x: np.ndarray, multiple: int, batch: int = 8) -> np.ndarray:
    """Logits (T, H, W) of a normalised (T, C, H, W) stack, the whole glacier window at once (a fully convolutional
    network: no tiling, no blending), padded to a multiple of the network's down-sampling."""
    import torch

    xp, (H, W) = pad_to(x, multiple)
    out = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(xp), batch):
            out.append(model(torch.from_numpy(np.ascontiguousarray(xp[i:i + batch]))).numpy()[:, 0, :H, :W])
    return np.concatenate(out) if out else np.zeros((0, H, W), np.float32)


def down_factor(settings: dict) -> int:
    return 2 ** int(settings.get("model_kwargs", {}).get("encoder_depth", 5))


def build(settings: dict, n_channels: int, seed: int):
    from glaciermap.segmentation.train import build_model

    kw = dict(settings.get("model_kwargs") or {})
    if "decoder_channels" in kw:
        kw["decoder_channels"] = tuple(kw["decoder_channels"])
    return build_model(settings["arch"], settings["encoder"], in_channels=n_channels, seed=seed, classes=1, **kw)


def _iou(logits: np.ndarray, y: np.ndarray, m: np.ndarray) -> tuple[int, int]:
    p = logits >= 0
    return int((p & y & m).sum()), int(((p | y) & m).sum())


def train_member(train_ex, val_ex, stats, settings: dict, seed: int, log_prefix: str = "") -> tuple[dict, list]:
    """Train one member; return its best state dict and the per-epoch metrics."""
    import torch

    from glaciermap.segmentation.train import focal_loss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build(settings, len(stats["channels"]), seed)
    opt = torch.optim.Adam(model.parameters(), lr=float(settings["lr"]))
    epochs = int(settings["epochs"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    mult = down_factor(settings)
    vx = [normalise(e["x"][None], stats) for e in val_ex]
    best, best_iou, rows = None, -1.0, []
    bs = int(settings["batch_size"])
    for ep in range(epochs):
        t0 = time.time()
        X, Y, M = random_patches(train_ex, stats, int(settings["patch_size"]), int(settings["patches_per_example"]), rng)
        order = rng.permutation(len(X))
        model.train()
        tot, nb = 0.0, 0
        for i in range(0, len(order), bs):
            j = order[i:i + bs]
            logits = model(torch.from_numpy(X[j]))[:, 0]
            loss = focal_loss(logits, torch.from_numpy(Y[j]), torch.from_numpy(M[j]), gamma=float(settings["gamma"]),
                              alpha=float(settings["alpha"]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item()
            nb += 1
        sched.step()
        inter = union = 0
        for x, e in zip(vx, val_ex):
            a, b = _iou(predict_logits(model, x, mult)[0], e["y"], e["mask"])
            inter, union = inter + a, union + b
        iou = inter / union if union else float("nan")
        rows.append({"epoch": ep, "loss": tot / max(nb, 1), "val_iou": iou, "n_patches": len(X),
                     "seconds": round(time.time() - t0, 2)})
        log.info("%sepoch %d: loss %.4f, validation IoU %.4f (%d patches, %.1f s)", log_prefix, ep, rows[-1]["loss"],
                 iou, len(X), rows[-1]["seconds"])
        if best is None or (np.isfinite(iou) and iou > best_iou):
            best_iou = iou if np.isfinite(iou) else best_iou
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return best, rows


def run_ts_train(fold: int, stack_paths: dict, split_csv, inventory_gpkg, settings: dict, out_dir) -> dict:
    """Train every member of fold ``fold``; write member<m>.pt (state dict, normalisation, channels, settings),
    metrics.csv and train.json."""
    import torch

    from glaciermap.io import save_torch_atomic
    from glaciermap.segmentation.train import member_seed

    torch.set_num_threads(int(settings.get("threads", 1)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from glaciermap.segmentation.split import read_split

    split = read_split(split_csv)
    roles = dict(zip(split["glac_id"], split[f"role_{fold}"]))
    channels = list(settings["channels"])
    dates = inventory_dates(inventory_gpkg)
    train_g = [g for g in stack_paths if roles.get(g) == "train"]
    val_g = [g for g in stack_paths if roles.get(g) == "val"]
    window = float(settings["train_window_days"])
    cap = settings.get("max_examples_per_glacier")
    train_ex = inventory_examples(stack_paths, train_g, dates, channels, window, cap)
    val_ex = inventory_examples(stack_paths, val_g, dates, channels, window, cap)
    if not train_ex:
        raise ValueError(f"time-series fold {fold}: no usable acquisition within {window:g} days of the inventory date "
                         f"of any of its {len(train_g)} training glaciers: nothing to train on (timeseries.sources, "
                         "train_window_days, min_valid_share)")
    stats = fit_stats([e["x"][None] for e in train_ex], channels)
    log.info("fold %d: %d training examples (%d glaciers), %d validation examples", fold, len(train_ex),
             len({e["glacier_id"] for e in train_ex}), len(val_ex))
    metrics = []
    for m in range(int(settings["members"])):
        seed = member_seed(fold, m, int(settings["seed"]))
        state, rows = train_member(train_ex, val_ex, stats, settings, seed, f"fold {fold} member {m}: ")
        save_torch_atomic(out_dir / f"member{m}.pt", {"state_dict": state, "stats": stats, "channels": channels,
                                                      "settings": settings, "fold": fold, "member": m, "seed": seed})
        metrics += [{"member": m, **r} for r in rows]
    dfm = pd.DataFrame(metrics)
    write_csv_atomic(out_dir / "metrics.csv", dfm)
    best = dfm.groupby("member")["val_iou"].max()
    out = {"fold": fold, "members": int(settings["members"]), "n_train_examples": len(train_ex),
           "n_val_examples": len(val_ex), "train_glaciers": sorted({e["glacier_id"] for e in train_ex}),
           "val_glaciers": sorted({e["glacier_id"] for e in val_ex}),
           "best_val_iou": [None if not np.isfinite(v) else float(v) for v in best.tolist()]}
    write_json_atomic(out_dir / "train.json", out)
    return out


def load_members(paths, device="cpu") -> tuple[list, dict, dict]:
    """The fold's members (eval mode), their normalisation and settings."""
    import torch

    models, stats, settings = [], None, None
    for p in sorted(paths):
        ck = torch.load(p, map_location=device, weights_only=False)
        model = build(ck["settings"], len(ck["channels"]), 0)
        model.load_state_dict(ck["state_dict"])
        model.eval()
        models.append(model)
        stats, settings = ck["stats"], ck["settings"]
    return models, stats, settings
