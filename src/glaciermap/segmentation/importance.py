"""Permutation importance of a segmentation model's input layers, one layer at a time and in named groups.

What it measures. Per model and fold, on the fold's TEST glaciers (never seen in training; their cubes'
inference windows, :func:`glaciermap.segmentation.infer.inference_windows` around each glacier's 50 m buffer), the
fold's ensemble (members averaged after each member's temperature scaling from the fold's calibration.json)
predicts every pixel; the scores are the overall accuracy, the mean IoU over the classes and each class's IoU,
pixels pooled over the fold's patches (a binary model is scored as classes background/glacier, truth = any
inventory glacier, as :mod:`glaciermap.segmentation.confusion` does). Then the values of one input layer are
shuffled across all pixels of all patches (one permutation of the flattened N x P x P pixels) and the scores
drop: the drop (baseline - permuted) is that layer's importance, repeated ``n_repeats`` times with independent
permutations (mean and spread reported).

Grouped permutation (where CryoNet's analysis falls short). CryoNet ranks ~30 layers (raw bands, PCA
components, Tasseled Cap, indices, terrain) by permuting one layer at a time. When layers are correlated, the
network can read the information of a permuted layer from its correlated siblings, so each of them looks
unimportant although together they may carry most of the signal: one-at-a-time importance understates
correlated layers (and is not additive). Here a named GROUP of layers (config, e.g. all optical bands) is also
permuted JOINTLY: the same pixel permutation for every layer of the group, which keeps the group's internal
correlation (the pixel's bands stay together, so the permuted inputs stay realistic for the group) and breaks
only its link to the labels and to every layer outside the group. A group's drop is the importance of the
information the group holds as a whole. Layers and groups are both reported (``kind`` = layer / group); a group
of one layer is still reported as a group.

Caveats. Pixels are permuted across patches and positions, so a convolutional model also loses the layer's
spatial texture (the layer becomes noise with the right histogram), the CryoNet set-up. Every pixel of the
patches is permuted (also cloud, no data or outside-the-cube pixels, whose NaN-filled values are the model's
inputs too); only valid pixels are scored. Overlapping windows (stride < patch size) count a pixel once per
window (each time with its own context); stride = patch size makes the windows disjoint. A test cube's windows
may reach a neighbouring glacier of another role (and its surroundings), pixels the fold's training may have seen
in that glacier's cube, as in :mod:`glaciermap.segmentation.confusion`; ``within_buffer`` scores only each test
glacier + 50 m.

Cost: forward passes of the ensemble over a fold's patches = folds x (1 + n_repeats x (layers + groups)), each
pass running every member; ``max_patches`` bounds the patches per fold (a seeded random subset). Memory: the
patches [N, C, P, P] float32 twice (inputs and a working copy) plus one permutation index of N P^2 int64.

Rule ``importance`` (workflow/rules/segmentation/importance.smk, written by someone else), one job per model,
runs :func:`run_importance`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from glaciermap.io import STATUS_SKIPPED, write_csv_atomic, write_json_atomic

log = logging.getLogger("glaciermap.segmentation.importance")

SCORES = ("overall_accuracy", "mean_iou")
KINDS = ("layer", "group")


# ---------------------------------------------------------------------------------------------------- patches


def collect_patches(cube_paths, channels, stats: dict, patch_size: int, stride: int, label_paths=None,
                    max_patches: int | None = None, seed: int = 0, classes=None,
                    within_buffer: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x float32 [N, C, P, P] normalised model inputs, y int64 [N, P, P] class index, valid bool [N, P, P]).

    Windows: ``infer.inference_windows(cube.buffer50, P, stride, 0)`` of each cube, cubes in the given order,
    windows in their order; skip-record cubes are left out. Truth: the label raster (``label_paths`` parallel
    to ``cube_paths``; 255 = not valid; ``classes`` given: its class names must equal them) or, without label
    rasters, 0 = background / 1 = any inventory glacier (``cube.labels >= 0``). Not valid: cloud / no data
    (``cube.masked``), outside the cube and, with ``within_buffer``, outside the cube's glacier + 50 m (the
    pixels a model of this fold surely never trained on; by default the whole window counts, as in
    :mod:`glaciermap.segmentation.confusion`). y is 0 where not valid.

    ``max_patches``: when there are more windows, a random subset of that many (``np.random.default_rng(seed)``,
    kept in window order). The masks are read first (cheap), the inputs only of cubes with a kept window.
    """
    from glaciermap.segmentation.infer import inference_windows
    from glaciermap.segmentation.labels import IGNORE, read_label_raster
    from glaciermap.segmentation.patches import cube_status, extract, load_cube, prepare_patch

    channels = list(channels)
    P, stride = int(patch_size), int(stride)
    paths = [str(p) for p in cube_paths]
    if label_paths is not None:
        label_paths = [str(p) for p in label_paths]
        if len(label_paths) != len(paths):
            raise ValueError(f"{len(label_paths)} label rasters for {len(paths)} cubes (they must be parallel)")
    wins = []                                            # (cube index, top, left)
    for i, p in enumerate(paths):
        if cube_status(p)[1] == STATUS_SKIPPED:
            log.info("%s is a skip record: left out", p)
            continue
        m = load_cube(p, channels, with_inputs=False)
        wins += [(i, int(t), int(left)) for t, left in inference_windows(m.buffer50, P, stride, 0)]
    if max_patches is not None and len(wins) > int(max_patches):
        keep = np.sort(np.random.default_rng(seed).choice(len(wins), size=int(max_patches), replace=False))
        wins = [wins[k] for k in keep]
    n = len(wins)
    x = np.empty((n, len(channels), P, P), np.float32)
    y = np.zeros((n, P, P), np.int64)
    valid = np.zeros((n, P, P), bool)
    j = 0
    for i in sorted({w[0] for w in wins}):
        cube = load_cube(paths[i], channels, projection=stats.get("projection"))
        if label_paths is not None:
            lab, names, _ = read_label_raster(label_paths[i])
            if lab.shape != cube.shape:
                raise ValueError(f"label raster {label_paths[i]} is {lab.shape[0]} x {lab.shape[1]} px but its cube "
                                 f"{paths[i]} is {cube.shape[0]} x {cube.shape[1]}")
            if classes is not None and list(names) != list(classes):
                raise ValueError(f"label raster {label_paths[i]} has classes {names}, the model {list(classes)}")
            truth, labelled = lab, lab != IGNORE
        else:
            truth, labelled = (cube.labels >= 0).astype(np.uint8), np.ones(cube.shape, bool)
        ok = labelled & ~cube.masked
        if within_buffer:
            ok &= cube.buffer50
        for _, t, left in (w for w in wins if w[0] == i):
            x[j] = prepare_patch(extract(cube.x, t, left, P, np.nan), channels, stats)
            v = extract(ok, t, left, P, False)           # outside the cube: False
            valid[j] = v
            y[j] = np.where(v, extract(truth, t, left, P, 0), 0)
            j += 1
    # cubes were visited in index order, windows in order within a cube: the same order as ``wins``
    return x, y, valid


# ---------------------------------------------------------------------------------------------------- prediction


def ensemble_predict(models, x: np.ndarray, batch_size: int = 32, device="cpu", temperatures=None) -> np.ndarray:
    """Predicted class int64 [N, P, P] of the ensemble for inputs x [N, C, P, P].

    Each member's probabilities (one output channel: sigmoid p -> classes [1 - p, p]; K channels: softmax), scaled
    with that member's temperature when ``temperatures`` is given (:func:`calibrate.apply_temperature` /
    :func:`calibrate.apply_temperature_classes`, as the confusion scores), averaged over the members; argmax
    (ties -> the lower class, so a binary mean of exactly 0.5 is background, as in confusion.py).
    """
    import torch

    from glaciermap.segmentation.calibrate import apply_temperature, apply_temperature_classes

    models = list(models)
    if not models:
        raise ValueError("ensemble_predict: no model")
    temps = list(temperatures) if temperatures is not None and len(temperatures) else None
    if temps is not None and len(temps) != len(models):
        raise ValueError(f"{len(temps)} temperatures for {len(models)} members")
    device = torch.device(device) if device is not None else torch.device("cpu")
    x = np.asarray(x, np.float32)
    out = np.empty((x.shape[0],) + x.shape[2:], np.int64)
    bs = max(int(batch_size), 1)
    with torch.inference_mode():
        for s in range(0, x.shape[0], bs):
            xb = torch.from_numpy(np.ascontiguousarray(x[s:s + bs])).to(device)
            acc = None
            for m, model in enumerate(models):
                logits = model(xb)
                if logits.shape[1] == 1:
                    p = torch.sigmoid(logits[:, 0]).float().cpu().numpy()
                    if temps is not None:
                        p = apply_temperature(p, temps[m])
                    p = np.stack([1.0 - p, p], axis=1)
                else:
                    p = torch.softmax(logits.float(), dim=1).cpu().numpy()
                    if temps is not None:
                        p = apply_temperature_classes(p, temps[m], axis=1)
                acc = p.astype(np.float64) if acc is None else acc + p
            out[s:s + bs] = np.argmax(acc / len(models), axis=1)
    return out


# ---------------------------------------------------------------------------------------------------- scores


def scores(pred: np.ndarray, y: np.ndarray, valid: np.ndarray, n_classes: int) -> dict:
    """``overall_accuracy``, ``mean_iou`` (over the classes with a defined IoU) and ``iou_<k>`` per class index,
    pixels pooled over the valid pixels (NaN where undefined: no valid pixel, or a class neither true nor
    predicted)."""
    from glaciermap.segmentation.train import ConfusionCounter

    K = int(n_classes)
    pred, y, valid = np.asarray(pred), np.asarray(y), np.asarray(valid, bool)
    if not (pred.shape == y.shape == valid.shape):
        raise ValueError(f"pred {pred.shape}, y {y.shape} and valid {valid.shape} differ in shape")
    for name, a in (("truth", y), ("prediction", pred)):
        v = a[valid]
        if v.size and (v.min() < 0 or v.max() >= K):
            raise ValueError(f"{name} has class indices outside [0, {K - 1}]")
    cc = ConfusionCounter(K)
    cc.update(pred, y, valid)
    n = int(cc.m.sum())
    out = {"overall_accuracy": float(np.trace(cc.m) / n) if n else float("nan"), "mean_iou": cc.mean_iou()}
    out.update({f"iou_{k}": float(v) for k, v in enumerate(cc.iou())})
    return out


# ---------------------------------------------------------------------------------------------------- permutation


def feature_rng(seed: int, feature_index: int, repeat: int) -> np.random.Generator:
    """The generator of (seed, feature index, repeat) that :func:`permutation_importance` uses."""
    return np.random.default_rng([int(seed), int(feature_index), int(repeat)])


def _check_channels(channel_idx, n_channels: int) -> list[int]:
    idx = [int(c) for c in channel_idx]
    if not idx:
        raise ValueError("no channel to permute")
    if len(set(idx)) != len(idx):
        raise ValueError(f"channel indices {idx} repeat a channel")
    bad = [c for c in idx if not 0 <= c < n_channels]
    if bad:
        raise ValueError(f"channel indices {bad} outside [0, {n_channels - 1}]")
    return idx


def _permute_into(dst: np.ndarray, src: np.ndarray, idx, rng: np.random.Generator) -> None:
    """dst[:, c] = src[:, c] with its N x P x P pixels reordered by ONE permutation shared by the channels idx."""
    n = src.shape[0] * int(np.prod(src.shape[2:], dtype=np.int64))
    perm = rng.permutation(n)
    for c in idx:
        dst[:, c] = src[:, c].reshape(-1)[perm].reshape(dst[:, c].shape)


def permute_jointly(x: np.ndarray, channel_idx, rng: np.random.Generator) -> np.ndarray:
    """A copy of x [N, C, ...] whose channels ``channel_idx`` are permuted with ONE permutation of all their
    N x P x P pixel values (flattened over patches and positions), the same for every listed channel; the other
    channels are unchanged."""
    idx = _check_channels(channel_idx, x.shape[1])
    out = np.array(x, copy=True)
    _permute_into(out, np.asarray(x), idx, rng)
    return out


def _drop_columns(n_classes: int) -> tuple[list[str], list[str]]:
    score_cols = [*SCORES, *(f"iou_{k}" for k in range(int(n_classes)))]
    return score_cols, [f"drop_{c}" for c in score_cols]


def permutation_importance(predict, x: np.ndarray, y: np.ndarray, valid: np.ndarray, features: dict,
                           n_classes: int, n_repeats: int = 3, seed: int = 0,
                           kinds: dict | None = None) -> pd.DataFrame:
    """Scores and their drops when each feature (a layer or a group of layers) is permuted jointly.

    ``predict(x) -> pred`` [N, P, P] class indices (it must not modify x). ``features``: name -> channel
    indices; ``kinds``: name -> "layer" / "group" (default: "layer" for one channel, else "group"). The baseline
    is predicted once (also in ``df.attrs["baseline"]``); repeat r of feature i (its position in ``features``)
    permutes with :func:`feature_rng` (seed, i, r), i.e. exactly ``permute_jointly(x, features[name],
    feature_rng(seed, i, r))``. Rows: feature, kind, repeat, overall_accuracy, mean_iou, iou_<k>...,
    drop_overall_accuracy, drop_mean_iou, drop_iou_<k>... (drop = baseline - permuted).
    """
    K = int(n_classes)
    score_cols, drop_cols = _drop_columns(K)
    x = np.asarray(x)
    feats = {str(k): _check_channels(v, x.shape[1]) for k, v in features.items()}
    kinds = {name: (kinds or {}).get(name) or ("layer" if len(idx) == 1 else "group") for name, idx in feats.items()}
    bad = {k: v for k, v in kinds.items() if v not in KINDS}
    if bad:
        raise ValueError(f"kinds must be 'layer' or 'group', got {bad}")
    base = scores(predict(x), y, valid, K)
    rows = []
    work = np.array(x, copy=True)                       # one working copy; x itself is never modified
    for i, (name, idx) in enumerate(feats.items()):
        for r in range(int(n_repeats)):
            _permute_into(work, x, idx, feature_rng(seed, i, r))
            try:
                s = scores(predict(work), y, valid, K)
            finally:
                work[:, idx] = x[:, idx]
            rows.append({"feature": name, "kind": kinds[name], "repeat": r, **{c: s[c] for c in score_cols},
                         **{f"drop_{c}": base[c] - s[c] for c in score_cols}})
    df = pd.DataFrame(rows, columns=["feature", "kind", "repeat", *score_cols, *drop_cols])
    df.attrs["baseline"] = base
    return df


def summarise(df: pd.DataFrame, class_names) -> pd.DataFrame:
    """One row per feature: kind, n_samples, mean and std (ddof 0, as scikit-learn's ``importances_std``) of every
    drop over its rows (repeats; with a ``fold`` column each fold-repeat is one sample), class indices replaced by
    the class names (``drop_iou_<name>_mean``); sorted by ``drop_mean_iou_mean`` descending (NaN last, ties in
    first-seen order), with ``rank`` (1 = most important) and ``rank_in_kind`` (among the layers / the groups)."""
    names = [str(c) for c in class_names]
    drops = [c for c in df.columns if c.startswith("drop_")]
    rename = {f"drop_iou_{k}": f"drop_iou_{n}" for k, n in enumerate(names)}
    stray = [c for c in drops if c.startswith("drop_iou_") and c not in rename]
    if stray:
        raise ValueError(f"columns {stray} have no class name among {names}")
    cols = ["feature", "kind", "n_samples"] + [f"{rename.get(c, c)}_{s}" for c in drops for s in ("mean", "std")]
    if df.empty:
        return pd.DataFrame(columns=cols + ["rank", "rank_in_kind"])
    g = df.groupby("feature", sort=False)
    kinds = g["kind"].agg(lambda k: k.iloc[0] if k.nunique() == 1 else "mixed")
    out = pd.DataFrame({"feature": kinds.index, "kind": kinds.to_numpy(), "n_samples": g.size().to_numpy()})
    for c in drops:
        out[f"{rename.get(c, c)}_mean"] = g[c].mean().to_numpy()
        out[f"{rename.get(c, c)}_std"] = g[c].std(ddof=0).to_numpy()
    out = out[cols].sort_values("drop_mean_iou_mean", ascending=False, kind="mergesort", na_position="last")
    out = out.reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    out["rank_in_kind"] = out.groupby("kind").cumcount() + 1
    return out


def plot_importance(summary, out_png, top: int = 20, classes=None, title: str | None = None):
    """The importance figure: the ``top`` layers and every group by mean-IoU drop (bars: mean over folds and
    repeats, whiskers: their std), and, per class of ``classes`` (default: all), the drop of that class's IoU for
    the same features. ``summary``: :func:`summarise`'s table or its CSV. Saved atomically; returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from glaciermap.io import atomic_path

    df = pd.read_csv(summary) if not isinstance(summary, pd.DataFrame) else summary
    layers = df[df["kind"] == "layer"].head(int(top))
    groups = df[df["kind"] == "group"]
    sel = pd.concat([groups, layers]).iloc[::-1]
    cls = [c[len("drop_iou_"):-len("_mean")] for c in df.columns if c.startswith("drop_iou_") and c.endswith("_mean")]
    if classes is not None:
        cls = [c for c in cls if c in set(classes)]
    h = max(3.0, 0.28 * len(sel) + 1.2)
    fig, axes = plt.subplots(1, 2, figsize=(12, h), sharey=True, gridspec_kw={"width_ratios": [1, 1.4]})
    y = np.arange(len(sel))
    colours = np.where(sel["kind"] == "group", "tab:orange", "tab:blue")
    axes[0].barh(y, sel["drop_mean_iou_mean"], xerr=sel["drop_mean_iou_std"], color=colours, alpha=0.85)
    axes[0].set_yticks(y, [f"{f} (group)" if k == "group" else f for f, k in zip(sel["feature"], sel["kind"])],
                       fontsize=8)
    axes[0].axvline(0, color="k", lw=0.6)
    axes[0].set_xlabel("drop of mean IoU (mean +- std over folds and repeats)")
    axes[0].set_title(title or "permutation importance")
    width = 0.8 / max(len(cls), 1)
    for i, c in enumerate(cls):
        axes[1].barh(y + (i - (len(cls) - 1) / 2) * width, sel[f"drop_iou_{c}_mean"], height=width, label=c)
    axes[1].axvline(0, color="k", lw=0.6)
    axes[1].set_xlabel("drop of the class's IoU")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return fig


# ---------------------------------------------------------------------------------------------------- rule importance


def _by_fold(paths, folds, what: str, fold_in_file: bool = False) -> dict:
    """fold -> path from a dict, or a list whose paths name their fold (``.../fold<k>/...``, or the file's ``fold``
    key with ``fold_in_file``), or else a list parallel to the sorted folds."""
    if paths is None:
        return {}
    if isinstance(paths, dict):
        return {int(k): v for k, v in paths.items()}
    paths = list(paths)
    got = {}
    for p in paths:
        k = None
        if fold_in_file:
            k = json.loads(Path(p).read_text()).get("fold")
        if k is None:
            k = next((part[4:] for part in reversed(Path(p).parts) if part.startswith("fold") and part[4:].isdigit()),
                     None)
        if k is None:
            break
        got[int(k)] = p
    if len(got) == len(paths):
        return got
    if len(paths) != len(folds):
        raise ValueError(f"{len(paths)} {what} for {len(folds)} folds, and their paths do not name the fold")
    return dict(zip(sorted(folds), paths))


def run_importance(ensemble_jsons, norm_jsons, calib_jsons, test_cubes_by_fold: dict, label_paths_by_fold: dict | None,
                   groups: dict, classes: list, cfg: dict, out: dict) -> dict:
    """What rule ``importance`` runs (one job per model): layer and group permutation importance on every fold's
    test glaciers.

    ``ensemble_jsons`` / ``norm_jsons`` / ``calib_jsons``: the folds' ensemble.json, normalisation.json and
    calibration.json (lists whose paths contain ``fold<k>``, the calibration's ``fold`` key, dicts fold -> path,
    or lists in sorted fold order; ``calib_jsons`` None: T = 1). ``test_cubes_by_fold``: fold -> test cubes
    (t0); ``label_paths_by_fold``: fold -> label rasters parallel to them (K-class model), None for a binary model.
    ``groups``: name -> channel names (a group is the channels of it the model has; one with none is skipped,
    logged; a name may not be a channel name). ``classes``: the model's classes (``["glacier"]``: scored as background/glacier).
    ``cfg``: ``n_repeats`` (3), ``seed`` (0), ``batch_size`` (16), ``patch_size`` (default: the members'),
    ``stride`` (default: the patch size, disjoint windows), ``max_patches`` (None: all), ``device``,
    ``within_buffer`` (False), ``threads`` (torch CPU threads of the process; default: torch's). ``out``: paths
    ``csv`` (every row, with ``fold``), ``summary`` (over folds and repeats pooled) and ``json``. Returns the JSON
    summary (also ``n_patches_by_fold``, ``baseline_by_fold``, ``skipped_groups``, ``forward_passes``, ``seconds``).
    """
    import torch

    from glaciermap.segmentation.confusion import BINARY_CLASSES
    from glaciermap.segmentation.patches import load_normalisation
    from glaciermap.segmentation.train import load_member, resolve_device

    t_start = time.perf_counter()
    model_classes = list(classes)
    binary = len(model_classes) == 1
    class_names = list(BINARY_CLASSES) if binary else model_classes
    K = len(class_names)
    folds = sorted(int(k) for k in test_cubes_by_fold)
    ens = _by_fold(ensemble_jsons, folds, "ensemble files")
    norms = _by_fold(norm_jsons, folds, "normalisation files")
    calibs = _by_fold(calib_jsons, folds, "calibration files", fold_in_file=True)
    cubes = {int(k): list(v) for k, v in test_cubes_by_fold.items()}
    labels = {int(k): list(v) for k, v in (label_paths_by_fold or {}).items()}
    if not binary and label_paths_by_fold is None:
        raise ValueError(f"a {K}-class model ({', '.join(class_names)}) needs its test label rasters")
    n_repeats, seed = int(cfg.get("n_repeats", 3)), int(cfg.get("seed", 0))
    bs = int(cfg.get("batch_size", 16))
    device = resolve_device(cfg.get("device"))
    if cfg.get("threads"):
        torch.set_num_threads(max(int(cfg["threads"]), 1))
    score_cols, drop_cols = _drop_columns(K)

    frames, baselines, n_patches, n_pixels, passes, skipped_groups, run_folds = [], {}, {}, {}, 0, {}, []
    for k in folds:
        for what, d in (("ensemble.json", ens), ("normalisation.json", norms)):
            if k not in d:
                raise ValueError(f"fold {k}: no {what}")
        stats = load_normalisation(norms[k])
        channels = list(stats["channels"])
        members = json.loads(Path(ens[k]).read_text())["members"]
        temps = []
        if k in calibs:
            temps = json.loads(Path(calibs[k]).read_text()).get("temperatures") or []
        else:
            log.info("fold %d: no calibration.json: temperatures T = 1", k)
        models, patch_sizes = [], set()
        for done in members:
            model, meta = load_member(Path(done).parent / "best.pt", device)
            mc = list(meta.get("classes", ["glacier"]))
            if mc != model_classes:
                raise ValueError(f"member {done} predicts {mc}, the model's classes are {model_classes}")
            if "channels" in meta and list(meta["channels"]) != channels:
                raise ValueError(f"member {done} was trained on channels {meta['channels']}, the normalisation "
                                 f"{norms[k]} lists {channels}")
            models.append(model)
            patch_sizes.add(int(meta.get("patch_size", 0)))
        if temps and len(temps) != len(models):
            raise ValueError(f"fold {k}: {len(temps)} temperatures in {calibs[k]} for {len(models)} members")
        P = int(cfg.get("patch_size") or max(patch_sizes))
        stride = int(cfg.get("stride") or P)
        # features: every channel as a layer, then each group restricted to the model's channels
        features, kinds = {c: [i] for i, c in enumerate(channels)}, {c: "layer" for c in channels}
        for name, members_of in (groups or {}).items():
            name = str(name)
            members_of = [members_of] if isinstance(members_of, str) else [str(c) for c in members_of]
            if name in kinds:
                raise ValueError(f"importance group '{name}' has the name of a channel; give it another name")
            have = [c for c in members_of if c in channels]
            if not have:   # a group applies with the channels the model has; none: skipped
                if name not in skipped_groups:
                    log.info("group %s skipped: the model has none of its channels %s", name, ", ".join(members_of))
                skipped_groups[name] = members_of
                continue
            features[name] = [channels.index(c) for c in have]
            kinds[name] = "group"
        lp = labels.get(k) if not binary else None
        if not binary and lp is None:
            raise ValueError(f"fold {k}: no label rasters for the test cubes")
        t0 = time.perf_counter()
        x, y, valid = collect_patches(cubes[k], channels, stats, P, stride, lp, cfg.get("max_patches"), seed,
                                      classes=None if binary else model_classes,
                                      within_buffer=bool(cfg.get("within_buffer", False)))
        t_data = time.perf_counter() - t0
        if x.shape[0] == 0 or not valid.any():
            log.info("fold %d: no test patch with a valid pixel: left out", k)
            continue

        def predict(a, models=models, temps=temps):
            return ensemble_predict(models, a, bs, device, temps or None)

        t0 = time.perf_counter()
        df = permutation_importance(predict, x, y, valid, features, K, n_repeats, seed, kinds)
        n_pass = 1 + n_repeats * len(features)
        log.info("fold %d: %d patches (%d valid px), %d members, %d layers + %d groups x %d repeats: %d passes in "
                 "%.1f s (patches %.1f s); baseline %s", k, x.shape[0], int(valid.sum()), len(models), len(channels),
                 len(features) - len(channels), n_repeats, n_pass, time.perf_counter() - t0, t_data,
                 {c: round(v, 4) for c, v in df.attrs["baseline"].items()})
        baselines[k] = df.attrs["baseline"]
        n_patches[k], n_pixels[k] = int(x.shape[0]), int(valid.sum())
        passes += n_pass
        run_folds.append(k)
        frames.append(df.assign(fold=k))
        del models, x, y, valid
        if device.type == "cuda":
            torch.cuda.empty_cache()

    cols = ["fold", "feature", "kind", "repeat", *score_cols, *drop_cols]
    rows = pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
    summary = summarise(rows, class_names)
    write_csv_atomic(out["csv"], rows)
    write_csv_atomic(out["summary"], summary)
    if out.get("figure"):
        plot_importance(summary, out["figure"], classes=class_names)
    pooled = {}
    for c in score_cols:     # mean over the folds (those where the score is defined)
        v = np.array([b[c] for b in baselines.values()], np.float64)
        pooled[c] = float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float("nan")
    top = {kind: summary.loc[summary["kind"] == kind, "feature"].head(3).tolist() for kind in KINDS}
    named = {f"iou_{k}": f"iou_{n}" for k, n in enumerate(class_names)}   # per-class scores by class name
    pooled = {named.get(c, c): v for c, v in pooled.items()}
    baselines = {f: {named.get(c, c): v for c, v in b.items()} for f, b in baselines.items()}
    info = {"classes": class_names, "folds": run_folds, "n_patches": int(sum(n_patches.values())),
            "n_patches_by_fold": n_patches, "n_valid_pixels_by_fold": n_pixels,
            "baseline": pooled, "baseline_by_fold": baselines, "top_layers": top["layer"], "top_groups": top["group"],
            "n_repeats": n_repeats, "seed": seed, "skipped_groups": skipped_groups, "forward_passes": passes,
            "seconds": time.perf_counter() - t_start}
    from glaciermap.results import _clean

    info = _clean(info)
    write_json_atomic(out["json"], info)
    return info


def run_importance_files(ensemble_jsons, norm_jsons, calib_jsons, test_cubes, label_paths, fold_of: dict,
                         groups: dict, classes: list, cfg: dict, out: dict) -> dict:
    """What rule ``importance`` runs: the test cubes ``.../cubes/<glacier>/<epoch>.nc`` (and, for a K-class model, the
    label rasters ``.../labels/<set>/<epoch>/<glacier>.tif``) grouped by their glacier's test fold (``fold_of``),
    then :func:`run_importance`."""
    cubes_by_fold: dict = {}
    for c in test_cubes:
        cubes_by_fold.setdefault(int(fold_of[Path(c).parent.name]), []).append(str(c))
    labels_by_fold = None
    if label_paths:
        by_glacier = {Path(p).stem: str(p) for p in label_paths}
        labels_by_fold = {k: [by_glacier[Path(c).parent.name] for c in cs] for k, cs in cubes_by_fold.items()}
    return run_importance(list(ensemble_jsons), list(norm_jsons), list(calib_jsons), cubes_by_fold, labels_by_fold,
                          groups, classes, cfg, out)
