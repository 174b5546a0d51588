"""Training of the facies point CNN on one cross-validation fold, and its predictions (Maslov et al., seed 002).

Paper and its public code (docs: /work/shared/METHODS.md "Facies"): folds of glacier groups, each test fold
validated on the fold before it, the others for training; focal loss (gamma 2) with label smoothing 0.1 and
per-sample weights (N / N_class) x (N / N_scene) computed on the training samples; Adam with cosine decay from
1e-3; batch 512; augmentation by flips, 90 degree rotations, brightness +-0.01 and contrast x(1 +- 0.05) of the
reflectance channels; the checkpoint kept is the epoch of best validation Jaccard averaged over classes.

Samples file (``samples.nc``, read with xarray): dims ``point, channel, row, col``; ``x`` float32 (point, channel,
row, col) used as stored (NaN read as 0); ``label`` int (point), an index into the classes; ``fold`` int (point);
``scene_id`` str (point); ``glacier_id`` str (point); coordinates ``point`` (point ids) and ``channel`` (names);
attributes ``classes`` and ``reflectance_channels``, JSON lists of names.

Determinism: on CPU, a given seed (and thread count) gives bitwise the same weights and probabilities: the model
initialisation and dropout draw from torch's generator seeded with ``seed`` (inside ``torch.random.fork_rng``, so
the caller's global state is left alone), the batch order and augmentation from generators seeded with ``seed``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from glaciermap.facies.network import FaciesNet
from glaciermap.io import save_torch_atomic, write_csv_atomic

log = logging.getLogger("glaciermap.facies.train")

DEFAULTS = {
    "filters": 64,
    "dense_units": 32,
    "dropout": 0.5,
    "epochs": 30,
    "batch_size": 512,
    "lr": 1e-3,
    "gamma": 2.0,
    "label_smoothing": 0.1,
    "brightness": 0.01,
    "contrast": 0.05,
    "threads": 1,
    "padding_mode": "replicate",
    "activation": "relu",
    "val_batch_size": 2048,
    # power of the class x scene weights: 1 = the paper's (N / N_c) (N / N_s); 0.5 = their square root (gentler on
    # small data sets: the demo's 5 water points would otherwise weigh ~200 ice points); 0 = unweighted
    "weight_power": 1.0,
}

REQUIRED_VARIABLES = ("x", "label", "fold", "scene_id")


def resolve_params(params: dict | None) -> dict:
    """``DEFAULTS`` updated with ``params``; unknown keys are logged and ignored (a config section may hold more)."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        log.warning("facies training: ignoring unknown parameters %s", unknown)
    out = dict(DEFAULTS)
    out.update({k: v for k, v in params.items() if k in DEFAULTS})
    for k in ("filters", "dense_units", "epochs", "batch_size", "threads", "val_batch_size"):
        out[k] = int(out[k])
    for k in ("dropout", "lr", "gamma", "label_smoothing", "brightness", "contrast", "weight_power"):
        out[k] = float(out[k])
    if out["epochs"] < 1 or out["batch_size"] < 1:
        raise ValueError(f"facies training: epochs and batch_size must be >= 1 (got {out['epochs']}, "
                         f"{out['batch_size']})")
    return out


# ----------------------------------------------------------------------------------------------------- weights, loss

def class_scene_weights(y, scene) -> np.ndarray:
    """Per-sample weight (N / N_class(y_i)) x (N / N_scene(s_i)), normalised to mean 1 (float64, shape (N,))."""
    y = np.asarray(y)
    scene = np.asarray(scene)
    if y.shape != scene.shape or y.ndim != 1:
        raise ValueError(f"class_scene_weights: y and scene must be 1-D of equal length, got {y.shape}, {scene.shape}")
    n = y.size
    if n == 0:
        return np.zeros(0)
    _, yi, yc = np.unique(y, return_inverse=True, return_counts=True)
    _, si, sc = np.unique(scene, return_inverse=True, return_counts=True)
    w = (n / yc[yi]) * (n / sc[si])
    return w / w.mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, label_smoothing: float = 0.1,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-class focal loss with label smoothing, weighted mean over the samples.

    L_i = -sum_k q_ik (1 - p_ik)^gamma log p_ik with q_i = (1 - eps) onehot(t_i) + eps / K and p_i = softmax;
    result = sum_i w_i L_i / sum_i w_i (plain mean without ``weight``). gamma = 0 gives the cross-entropy with
    torch's label smoothing.
    """
    k = logits.shape[-1]
    logp = F.log_softmax(logits, dim=-1)
    q = F.one_hot(target.long(), k).to(logp.dtype) * (1.0 - label_smoothing) + label_smoothing / k
    mod = (1.0 - logp.exp()).clamp_min(0.0).pow(gamma) if gamma else 1.0
    per = -(q * mod * logp).sum(dim=-1)
    if weight is None:
        return per.mean()
    weight = weight.to(per.dtype)
    return (per * weight).sum() / weight.sum().clamp_min(torch.finfo(per.dtype).tiny)


# ------------------------------------------------------------------------------------------------------ augmentation

def _draws(rng, b: int):
    """(rotations 0..3, flip bool, brightness u in [-1, 1], contrast u in [-1, 1]) per sample."""
    if isinstance(rng, torch.Generator):
        k = torch.randint(0, 4, (b,), generator=rng)
        flip = torch.randint(0, 2, (b,), generator=rng).bool()
        u = torch.rand((2, b), generator=rng, dtype=torch.float64) * 2 - 1
        return k.numpy(), flip.numpy(), u[0].numpy(), u[1].numpy()
    if rng is None or isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(rng)
    return (rng.integers(0, 4, b), rng.integers(0, 2, b).astype(bool), rng.uniform(-1, 1, b), rng.uniform(-1, 1, b))


def augment(x, reflectance_idx, rng=None, brightness: float = 0.01, contrast: float = 0.05):
    """Randomly augmented copy of patches ``x`` ``(B, C, P, P)`` (or one patch ``(C, P, P)``; tensor or array).

    Per sample: one of the 8 flips / 90 degree rotations of the whole patch (all channels alike); then, on the
    channels ``reflectance_idx`` only, contrast (x - m) * c + m with c uniform in 1 +- ``contrast`` and m the
    channel's patch mean, and a brightness shift uniform in +- ``brightness`` (one c and one shift per sample,
    shared by its reflectance channels). Other channels (masks, distances, elevation...) are only moved.
    ``rng``: numpy Generator, torch Generator, an int seed or None.
    """
    as_numpy = isinstance(x, np.ndarray)
    t = torch.from_numpy(np.ascontiguousarray(x)) if as_numpy else x
    single = t.ndim == 3
    if single:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[-1] != t.shape[-2]:
        raise ValueError(f"augment expects square patches (B, C, P, P), got shape {tuple(t.shape)}")
    b = t.shape[0]
    k, flip, ub, uc = _draws(rng, b)
    out = torch.empty_like(t)
    for kk in range(4):
        for ff in (False, True):
            sel = np.flatnonzero((k == kk) & (flip == ff))
            if sel.size == 0:
                continue
            idx = torch.from_numpy(sel)
            v = t.index_select(0, idx)
            if ff:
                v = v.flip(-1)
            if kk:
                v = torch.rot90(v, kk, dims=(-2, -1))
            out[idx] = v
    refl = [int(i) for i in (reflectance_idx or [])]
    if refl and (brightness or contrast):
        r = out[:, refl]
        c = torch.from_numpy(1.0 + contrast * uc).to(r.dtype).view(b, 1, 1, 1)
        s = torch.from_numpy(brightness * ub).to(r.dtype).view(b, 1, 1, 1)
        m = r.mean(dim=(-2, -1), keepdim=True)
        out[:, refl] = (r - m) * c + m + s
    if single:
        out = out[0]
    return out.numpy() if as_numpy else out


# --------------------------------------------------------------------------------------------------------- metrics

def confusion(pred, truth, k: int) -> np.ndarray:
    """K x K counts, rows = truth, columns = prediction."""
    return np.bincount(np.asarray(truth, int) * k + np.asarray(pred, int), minlength=k * k).reshape(k, k)


def mean_jaccard(cm: np.ndarray) -> float:
    """Macro IoU over the classes present in the truth (rows with counts) of confusion matrix ``cm``."""
    tp = np.diag(cm).astype(float)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    present = cm.sum(axis=1) > 0
    if not present.any():
        return float("nan")
    return float(np.mean(tp[present] / (tp + fn + fp)[present]))


# -------------------------------------------------------------------------------------------------------- training

def _batch(x: np.ndarray, idx: np.ndarray) -> torch.Tensor:
    b = np.asarray(x[idx], dtype=np.float32)
    return torch.nan_to_num(torch.from_numpy(b), nan=0.0, posinf=0.0, neginf=0.0)


@torch.no_grad()
def _logits(model, x: np.ndarray, idx: np.ndarray, batch_size: int) -> torch.Tensor:
    out = [model(_batch(x, idx[i:i + batch_size])) for i in range(0, len(idx), batch_size)]
    return torch.cat(out) if out else torch.zeros((0, model.n_classes))


def build_model(in_channels: int, n_classes: int, params: dict) -> FaciesNet:
    p = resolve_params(params)
    return FaciesNet(in_channels, n_classes, filters=p["filters"], dense_units=p["dense_units"],
                     dropout=p["dropout"], padding_mode=p["padding_mode"], activation=p["activation"])


def train_fold(x, y, weights_scene, train_idx, val_idx, *, n_classes: int, reflectance_idx, params: dict,
               seed: int, sample_weight=None) -> dict:
    """Train a :class:`FaciesNet` on ``x[train_idx]`` and keep the epoch of best validation mean Jaccard.

    x: ``(N, C, P, P)`` array (NaN read as 0, batch by batch; no copy of the whole array); y: ``(N,)`` class
    indices; weights_scene: ``(N,)`` scene id of each sample, from which the class x scene weights are computed
    on the training samples (:func:`class_scene_weights`) unless ``sample_weight`` (``(N,)``) is given.
    The validation loss is the unweighted focal loss. Returns {"state_dict" (best epoch, deep copy),
    "best_epoch" (1-based), "best_val_mean_jaccard", "history" (list of dicts: epoch, lr, train_loss, val_loss,
    val_mean_jaccard, seconds), "params" (resolved)}.
    """
    p = resolve_params(params)
    y = np.asarray(y).astype(np.int64)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    val_idx = np.asarray(val_idx, dtype=np.int64)
    if train_idx.size == 0 or val_idx.size == 0:
        raise ValueError(f"train_fold: need training and validation samples (got {train_idx.size}, {val_idx.size})")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"train_fold: labels must lie in 0..{n_classes - 1}, got {y.min()}..{y.max()}")
    if sample_weight is None:
        w_train = class_scene_weights(y[train_idx], np.asarray(weights_scene)[train_idx]) ** p["weight_power"]
        w_train = w_train / w_train.mean()
    else:
        w_train = np.asarray(sample_weight, dtype=np.float64)[train_idx]
    w_train_t = torch.from_numpy(w_train.astype(np.float32))
    y_t = torch.from_numpy(y)
    refl = [int(i) for i in (reflectance_idx or [])]

    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(p["threads"], 1))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(x.shape[1], n_classes, p)
            opt = torch.optim.Adam(model.parameters(), lr=p["lr"])
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=p["epochs"])
            order_rng = np.random.default_rng([seed, 1])
            aug_rng = np.random.default_rng([seed, 2])
            bs = p["batch_size"]
            n = train_idx.size
            starts = list(range(0, n, bs))
            if len(starts) > 1 and n - starts[-1] == 1:
                starts.pop()              # no batch of one sample (BatchNorm): it joins the one before
            ends = starts[1:] + [n]
            best = {"score": -math.inf, "epoch": 0, "state": None}
            history = []
            for epoch in range(1, p["epochs"] + 1):
                t0 = time.perf_counter()
                lr = opt.param_groups[0]["lr"]
                model.train()
                perm = order_rng.permutation(n)
                tot, cnt = 0.0, 0
                for a, b in zip(starts, ends):
                    pos = perm[a:b]
                    ids = train_idx[pos]
                    xb = augment(_batch(x, ids), refl, aug_rng, p["brightness"], p["contrast"])
                    loss = focal_loss(model(xb), y_t[ids], p["gamma"], p["label_smoothing"], w_train_t[pos])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    tot += float(loss.detach()) * len(ids)
                    cnt += len(ids)
                sched.step()
                model.eval()
                lv = _logits(model, x, val_idx, p["val_batch_size"])
                val_loss = float(focal_loss(lv, y_t[val_idx], p["gamma"], p["label_smoothing"]))
                score = mean_jaccard(confusion(lv.argmax(1).numpy(), y[val_idx], n_classes))
                if score > best["score"]:
                    best = {"score": score, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
                history.append({"epoch": epoch, "lr": lr, "train_loss": tot / max(cnt, 1), "val_loss": val_loss,
                                "val_mean_jaccard": score, "seconds": time.perf_counter() - t0})
                log.info("epoch %d/%d train loss %.4f val loss %.4f val mean Jaccard %.4f (%.1f s)", epoch,
                         p["epochs"], history[-1]["train_loss"], val_loss, score, history[-1]["seconds"])
            if best["state"] is None:      # every validation score NaN: keep the last epoch
                best = {"score": float("nan"), "epoch": p["epochs"], "state": copy.deepcopy(model.state_dict())}
    finally:
        torch.set_num_threads(old_threads)
    return {"state_dict": best["state"], "best_epoch": best["epoch"], "best_val_mean_jaccard": best["score"],
            "history": history, "params": p}


@torch.no_grad()
def predict_proba(model: FaciesNet, x, batch_size: int = 2048) -> np.ndarray:
    """Softmax probabilities ``(N, K)`` float32 of patches ``x`` ``(N, C, P, P)`` in eval mode (NaN read as 0);
    the model is left in the mode it had."""
    was = model.training
    model.eval()
    try:
        idx = np.arange(len(x))
        z = _logits(model, x, idx, int(batch_size))
        return torch.softmax(z, dim=1).numpy().astype(np.float32)
    finally:
        model.train(was)


# ------------------------------------------------------------------------------------------------- files, one fold

def _json_list(attrs: dict, name: str, path) -> list[str]:
    if name not in attrs:
        raise ValueError(f"{path}: samples file lacks the attribute {name!r} (a JSON list of names)")
    try:
        val = json.loads(attrs[name]) if isinstance(attrs[name], str) else list(attrs[name])
    except (json.JSONDecodeError, TypeError) as e:
        raise ValueError(f"{path}: attribute {name!r} is not a JSON list of names: {attrs[name]!r}") from e
    if not isinstance(val, list):
        raise ValueError(f"{path}: attribute {name!r} is not a JSON list of names: {attrs[name]!r}")
    return [str(v) for v in val]


def read_samples(samples_nc) -> dict:
    """Arrays of a samples file: x (float32, NaN kept), label, fold, scene_id, glacier_id (or None), point_id,
    channels, classes, reflectance_channels. Raises ValueError naming the file on any missing piece."""
    import xarray as xr

    path = str(samples_nc)
    if not Path(path).exists():
        raise FileNotFoundError(f"samples file not found: {path}")
    with xr.open_dataset(path) as ds:
        missing = [v for v in REQUIRED_VARIABLES if v not in ds.variables]
        if missing:
            raise ValueError(f"{path}: samples file lacks the variable(s) {missing}")
        if ds["x"].dims != ("point", "channel", "row", "col"):
            raise ValueError(f"{path}: variable 'x' must have dims (point, channel, row, col), has {ds['x'].dims}")
        for v in ("label", "fold", "scene_id"):
            if ds[v].dims != ("point",):
                raise ValueError(f"{path}: variable {v!r} must have dims (point,), has {ds[v].dims}")
        classes = _json_list(ds.attrs, "classes", path)
        refl = _json_list(ds.attrs, "reflectance_channels", path)
        channels = [str(c) for c in ds["channel"].values] if "channel" in ds.coords else None
        if channels is None:
            raise ValueError(f"{path}: samples file lacks the coordinate 'channel' (channel names)")
        point = [str(p) for p in ds["point"].values] if "point" in ds.coords else None
        if point is None:
            raise ValueError(f"{path}: samples file lacks the coordinate 'point' (point ids)")
        out = {
            "x": np.asarray(ds["x"].values, dtype=np.float32),
            "label": np.asarray(ds["label"].values),
            "fold": np.asarray(ds["fold"].values),
            "scene_id": np.asarray(ds["scene_id"].values).astype(str),
            "glacier_id": np.asarray(ds["glacier_id"].values).astype(str) if "glacier_id" in ds.variables else None,
            "point_id": np.asarray(point, dtype=object),
            "channels": channels, "classes": classes, "reflectance_channels": refl,
        }
    unknown = [c for c in refl if c not in channels]
    if unknown:
        raise ValueError(f"{path}: reflectance_channels {unknown} are not among the channels {channels}")
    lab = out["label"]
    if lab.size and (not np.all(np.isfinite(lab)) or lab.min() < 0 or lab.max() >= len(classes)):
        raise ValueError(f"{path}: variable 'label' must hold class indices 0..{len(classes) - 1}")
    if len(set(out["point_id"])) != len(out["point_id"]):
        raise ValueError(f"{path}: point ids are not unique")
    out["label"] = lab.astype(np.int64)
    out["fold"] = out["fold"].astype(np.int64)
    return out


def read_excluded(exclude_csv) -> set[str]:
    """Point ids marked pruned in a CSV with columns point_id, pruned (bool, or true/false / 1/0 text)."""
    path = str(exclude_csv)
    df = pd.read_csv(path, dtype={"point_id": str})
    missing = [c for c in ("point_id", "pruned") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: exclusion table lacks the column(s) {missing}")
    pr = df["pruned"]
    if pr.dtype != bool:
        txt = pr.astype(str).str.strip().str.lower()
        bad = ~txt.isin(["true", "false", "1", "0", "1.0", "0.0"])
        if bad.any():
            raise ValueError(f"{path}: column 'pruned' must be boolean, found {sorted(set(pr[bad].astype(str)))[:5]}")
        pr = txt.isin(["true", "1", "1.0"])
    return set(df.loc[pr.to_numpy(bool), "point_id"].astype(str))


def split_fold(folds: np.ndarray, fold: int, n_folds: int):
    """(train, val, test) boolean masks: test = ``fold``, validation = (fold - 1) mod n_folds, training = the rest."""
    val_fold = (fold - 1) % n_folds
    test = folds == fold
    val = folds == val_fold
    return ~(test | val), val, test


def _proba_frame(point_id, fold, role, label, proba, classes) -> pd.DataFrame:
    df = pd.DataFrame({"point_id": point_id, "fold": fold, "role": role, "label": [classes[i] for i in label]})
    for j, c in enumerate(classes):
        df[f"p_{c}"] = proba[:, j]
    return df


def run_facies_train(samples_nc, fold: int, n_folds: int, out_model, out_proba, out_history, params: dict | None = None,
                     exclude_csv=None, seed: int = 0) -> dict:
    """Train the fold-``fold`` model of the facies cross-validation and write its outputs (each atomically).

    Test = points of fold ``fold``; validation = fold (fold - 1) mod n_folds; training = the other folds. Points
    marked pruned in ``exclude_csv`` leave training and validation, never the test predictions.
    Writes ``out_model`` (torch.save of state_dict, in_channels, n_classes, channels, classes, params, best_epoch,
    fold, n_folds, seed, patch_size, reflectance_channels), ``out_proba`` (CSV: point_id, fold, role "val"/"test",
    label (class name), p_<class>...; the validation points used and every test point) and ``out_history`` (CSV,
    one row per epoch). Returns n_train, n_val, n_test, n_pruned_train, n_pruned_val, best_epoch,
    best_val_mean_jaccard, test_mean_jaccard, seconds_per_epoch, seconds.
    """
    t0 = time.perf_counter()
    path = str(samples_nc)
    fold, n_folds = int(fold), int(n_folds)
    if n_folds < 3:
        raise ValueError(f"{path}: need n_folds >= 3 (test, validation and training folds), got {n_folds}")
    if not 0 <= fold < n_folds:
        raise ValueError(f"{path}: fold must lie in 0..{n_folds - 1}, got {fold}")
    s = read_samples(path)
    folds = s["fold"]
    bad = np.unique(folds[(folds < 0) | (folds >= n_folds)])
    if bad.size:
        raise ValueError(f"{path}: variable 'fold' holds {bad.tolist()} outside 0..{n_folds - 1} (n_folds={n_folds})")
    p = resolve_params(params)
    train_m, val_m, test_m = split_fold(folds, fold, n_folds)
    n_pruned_train = n_pruned_val = 0
    if exclude_csv is not None:
        pruned = read_excluded(exclude_csv)
        known = set(s["point_id"])
        unknown = pruned - known
        if unknown:
            log.warning("%s: %d pruned point ids are not in %s (ignored)", exclude_csv, len(unknown), path)
        is_pruned = np.array([pid in pruned for pid in s["point_id"]], dtype=bool)
        n_pruned_train = int((train_m & is_pruned).sum())
        n_pruned_val = int((val_m & is_pruned).sum())
        train_m &= ~is_pruned
        val_m &= ~is_pruned
    val_fold = (fold - 1) % n_folds
    if not train_m.any():
        raise ValueError(f"{path}: fold {fold} has no training points (folds other than {fold} and {val_fold}, "
                         f"after removing {n_pruned_train} pruned points)")
    if not val_m.any():
        raise ValueError(f"{path}: fold {fold} has no validation points (fold {val_fold}, after removing "
                         f"{n_pruned_val} pruned points)")
    train_idx, val_idx, test_idx = (np.flatnonzero(m) for m in (train_m, val_m, test_m))
    classes, channels = s["classes"], s["channels"]
    refl_idx = [channels.index(c) for c in s["reflectance_channels"]]
    x, y = s["x"], s["label"]
    log.info("%s fold %d/%d: %d training, %d validation, %d test points", path, fold, n_folds, train_idx.size,
             val_idx.size, test_idx.size)
    res = train_fold(x, y, s["scene_id"], train_idx, val_idx, n_classes=len(classes), reflectance_idx=refl_idx,
                     params=p, seed=seed)
    model = build_model(x.shape[1], len(classes), p)
    model.load_state_dict(res["state_dict"])
    model.eval()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(p["threads"], 1))
    try:
        pv = predict_proba(model, x[val_idx], p["val_batch_size"])
        pt = predict_proba(model, x[test_idx], p["val_batch_size"]) if test_idx.size else np.zeros((0, len(classes)),
                                                                                                   np.float32)
    finally:
        torch.set_num_threads(old_threads)
    proba = pd.concat([
        _proba_frame(s["point_id"][val_idx], folds[val_idx], "val", y[val_idx], pv, classes),
        _proba_frame(s["point_id"][test_idx], folds[test_idx], "test", y[test_idx], pt, classes),
    ], ignore_index=True)
    hist = pd.DataFrame(res["history"])
    hist.insert(0, "fold", fold)
    test_score = mean_jaccard(confusion(pt.argmax(1), y[test_idx], len(classes))) if test_idx.size else float("nan")
    meta = {
        "state_dict": res["state_dict"], "in_channels": int(x.shape[1]), "n_classes": len(classes),
        "channels": list(channels), "classes": list(classes), "params": res["params"],
        "best_epoch": int(res["best_epoch"]), "fold": fold, "n_folds": n_folds, "seed": int(seed),
        "patch_size": int(x.shape[-1]), "reflectance_channels": list(s["reflectance_channels"]),
    }
    write_csv_atomic(out_proba, proba)
    write_csv_atomic(out_history, hist)
    save_torch_atomic(out_model, meta)
    secs = [h["seconds"] for h in res["history"]]
    return {"n_train": int(train_idx.size), "n_val": int(val_idx.size), "n_test": int(test_idx.size),
            "n_pruned_train": n_pruned_train, "n_pruned_val": n_pruned_val, "best_epoch": int(res["best_epoch"]),
            "best_val_mean_jaccard": float(res["best_val_mean_jaccard"]), "test_mean_jaccard": float(test_score),
            "seconds_per_epoch": float(np.mean(secs)) if secs else float("nan"),
            "seconds": time.perf_counter() - t0}


def load_model(path, device: str | torch.device = "cpu"):
    """(FaciesNet in eval mode with the saved weights, meta dict without the state_dict) of a saved fold model."""
    meta = torch.load(str(path), map_location=device, weights_only=True)
    try:
        state = meta.pop("state_dict")
        model = build_model(meta["in_channels"], meta["n_classes"], meta.get("params") or {})
    except KeyError as e:
        raise ValueError(f"{path}: not a facies model file (missing {e})") from e
    model.load_state_dict(state)
    model.to(device).eval()
    return model, meta


__all__ = ["DEFAULTS", "augment", "class_scene_weights", "confusion", "focal_loss", "load_model", "mean_jaccard",
           "predict_proba", "read_excluded", "read_samples", "resolve_params", "run_facies_train", "split_fold",
           "train_fold"]
