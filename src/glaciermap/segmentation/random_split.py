"""CryoNet's random patch split (seed paper 003, section III): how much it inflates the scores.

CryoNet cuts its scene into 256 px patches and splits the patch set at random, 80 % training and 20 % test.
Neighbouring patches of the same glacier then fall on both sides of the split, so the test score measures
interpolation between seen patches rather than mapping of unseen glaciers. This project validates by
geographic cross-validation instead (whole glaciers per fold, glaciermap.segmentation.split). This module
reproduces the random split for one model, trains one member on it and scores it, so that the README can
report the inflation: the random-split score minus the geographic one (rule ``confusion``'s metrics.json).

Tiles. Disjoint windows of ``patch_size`` px on a REGION-WIDE grid: a pixel whose centre is (x, y) lies in tile
(floor(x / (P res)), floor(y / (P res))) of the region's CRS. Cubes of neighbouring glaciers overlap and share
that grid, so the same ground tile gets the same index, and therefore the same role, in every cube. Only tiles
that meet some cube's 50 m buffer (``mask_buffer_50m``: a glacier + 50 m) are kept (the patch set of a glacier
map). The kept tiles are permuted with ``np.random.default_rng(seed)``: the first ``round(test_fraction n)``
are test tiles, the next ``round(val_fraction n_rest)`` validation tiles (best-epoch selection), the rest
training tiles.

Training. One patch per training (validation) tile, cut from the cube that has most buffer pixels in it (its
"owner"; ties: most pixels covered, then the path): a window that is exactly the tile (padded outside the cube),
so no training input reaches into a test tile. The member is trained with the model's settings by
:func:`glaciermap.segmentation.train.train_member` (no excluded glacier; the loss mask is cloud/no data and, for a
K-class model, the unlabelled pixels), normalised with :func:`~glaciermap.segmentation.patches.fit_normalisation`
over the cubes owning a training tile. The subsample settings of the geographic training (``n_patches``,
``patch_fraction``, strides) do not apply: every training tile is used once.

Scores. Every cube meeting a test tile with its buffer predicts that tile (one forward pass; K classes: softmax,
argmax; binary: sigmoid above ``threshold``). Scored are the pixels of test tiles in the cube's 50 m buffer, not
cloud or no data and labelled (label raster != 255; binary models: truth = any inventory glacier, classes
background/glacier as in :mod:`glaciermap.segmentation.confusion`). A ground pixel in several cubes' buffers is
scored once (the first cube in path order). The pixels are pooled into one confusion matrix
(:func:`~glaciermap.segmentation.confusion.confusion_matrix`), per-class IoU / precision / recall / F1 and the
mean IoU and overall accuracy (:func:`~glaciermap.segmentation.confusion.class_metrics`, ``overall``).

Rule ``random_split`` (workflow/rules/segmentation/random_split.smk) runs :func:`run_random_split`, one job per
model of ``random_split.models``; the member's checkpoints live in ``segmentation/<model>/random_split/``
(last.pt, best.pt, metrics.csv, done.json, tiles.csv) so that a killed job resumes.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from glaciermap.io import STATUS_SKIPPED, write_csv_atomic, write_json_atomic

log = logging.getLogger("glaciermap.segmentation.random_split")

ROLES = ("train", "val", "test")
TILE_COLUMNS = ["tx", "ty", "path", "glac_id", "row0", "col0", "buffer_px", "cover_px", "owner", "role"]
CSV_COLUMNS = ["class", "iou_random", "iou_geographic", "inflation"]
DEFAULT_SETTINGS = {"test_fraction": 0.2, "val_fraction": 0.1, "seed": 0}


# ---------------------------------------------------------------------------------------------------- tiles


@dataclass
class CubeGridIndex:
    """Global pixel index of a cube's row 0 / col 0 on the region grid: column c is global column ``gx0 + c``,
    row r global row ``gy0 - r`` (rows run south, y decreases); global index = floor(centre / resolution)."""

    path: str
    glacier_id: str
    gx0: int
    gy0: int
    resolution: float
    buffer50: np.ndarray

    @property
    def shape(self):
        return self.buffer50.shape


def _axis_index(coords: np.ndarray, resolution: float, step: int) -> int:
    """Global index of the first pixel of an axis from its pixel-centre coordinates (step +1 or -1 per pixel)."""
    g = np.floor(np.asarray(coords, np.float64) / resolution).astype(np.int64)
    if g.size > 1 and not np.array_equal(np.diff(g), np.full(g.size - 1, step)):
        raise ValueError(f"pixel centres are not on a regular grid of {resolution:g} m")
    return int(g[0])


def cube_grid_index(path) -> CubeGridIndex | None:
    """The cube's place on the region grid and its 50 m buffer (None for a skip record)."""
    from glaciermap.io import read_record

    rec = read_record(path, ["x", "y", "mask_buffer_50m"])
    if rec is None:
        return None
    v, attrs = rec
    xs, ys = np.asarray(v["x"], np.float64), np.asarray(v["y"], np.float64)
    if xs.size > 1:
        res = float(abs(xs[1] - xs[0]))
    else:
        res = float(attrs.get("resolution_m", 10.0))
    if ys.size > 1 and not math.isclose(abs(ys[1] - ys[0]), res, rel_tol=1e-6):
        raise ValueError(f"{path}: pixels are not square ({res:g} x {abs(ys[1] - ys[0]):g} m)")
    if ys.size > 1 and ys[1] > ys[0]:
        raise ValueError(f"{path}: the y coordinates increase (south-up cubes are not supported)")
    return CubeGridIndex(path=str(path), glacier_id=str(attrs.get("glacier_id", "")),
                         gx0=_axis_index(xs, res, 1), gy0=_axis_index(ys, res, -1), resolution=res,
                         buffer50=v["mask_buffer_50m"].astype(bool))


def pixel_tiles(ci: CubeGridIndex, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(ty per row [H], tx per column [W]) of a cube: the global tile index floor(y / (P res)), floor(x / (P res))."""
    P = int(patch_size)
    h, w = ci.shape
    return (ci.gy0 - np.arange(h)) // P, (ci.gx0 + np.arange(w)) // P


def tile_table(cube_paths, patch_size: int) -> pd.DataFrame:
    """One row per (tile, cube) whose cube has buffer pixels in the tile (skip records left out).

    Columns: tx, ty (global tile index), path, glac_id, row0, col0 (the tile's top-left pixel in the cube, may be
    negative or reach past the cube at its edges), buffer_px (the cube's buffer pixels in the tile), cover_px
    (the tile's pixels inside the cube), owner (the cube training cuts the tile from: most buffer pixels, then most
    covered, then the path).
    """
    P = int(patch_size)
    rows, res_seen = [], set()
    for p in sorted(str(p) for p in cube_paths):
        ci = cube_grid_index(p)
        if ci is None:
            log.info("%s is a skip record: left out", p)
            continue
        res_seen.add(round(ci.resolution, 9))
        ty, tx = pixel_tiles(ci, P)
        uy, iy = np.unique(ty, return_inverse=True)
        ux, ix = np.unique(tx, return_inverse=True)
        code = (iy[:, None] * len(ux) + ix[None, :]).ravel()
        buf = np.bincount(code, weights=ci.buffer50.ravel(), minlength=len(uy) * len(ux)).astype(np.int64)
        cover = np.bincount(code, minlength=len(uy) * len(ux)).astype(np.int64)
        for k in np.nonzero(buf)[0]:
            a, b = int(uy[k // len(ux)]), int(ux[k % len(ux)])
            rows.append((b, a, p, ci.glacier_id, ci.gy0 - (a * P + P - 1), b * P - ci.gx0, int(buf[k]),
                         int(cover[k])))
    if len(res_seen) > 1:
        raise ValueError(f"the cubes have different resolutions {sorted(res_seen)}: no common tile grid")
    t = pd.DataFrame(rows, columns=TILE_COLUMNS[:8])
    t["owner"] = False
    if len(t):
        order = t.sort_values(["tx", "ty", "buffer_px", "cover_px", "path"], ascending=[True, True, False, False, True],
                              kind="stable")
        t.loc[order.drop_duplicates(["tx", "ty"]).index, "owner"] = True
    return t.reset_index(drop=True)


def _round(v: float) -> int:
    return int(math.floor(v + 0.5))


def assign_tiles(keys, test_fraction: float = 0.2, val_fraction: float = 0.1, seed: int = 0) -> dict:
    """(tx, ty) -> "train" / "val" / "test": a seeded permutation of the sorted keys, the first
    round(test_fraction n) test, the next round(val_fraction (n - n_test)) validation, the rest training.

    With at least two tiles there is at least one test and one training tile (for a positive test_fraction), and
    with a positive val_fraction at least one validation tile as long as a training tile remains.
    """
    if not 0 <= float(test_fraction) < 1 or not 0 <= float(val_fraction) < 1:
        raise ValueError(f"test_fraction and val_fraction must be in [0, 1), got {test_fraction}, {val_fraction}")
    keys = sorted({(int(a), int(b)) for a, b in keys})
    n = len(keys)
    n_test = _round(float(test_fraction) * n)
    if n >= 2 and test_fraction > 0:
        n_test = min(max(n_test, 1), n - 1)
    rest = n - n_test
    n_val = _round(float(val_fraction) * rest)
    if val_fraction > 0 and rest >= 2:
        n_val = min(max(n_val, 1), rest - 1)
    n_val = min(n_val, max(rest - 1, 0))
    perm = np.random.default_rng(int(seed)).permutation(n)
    roles = {}
    for pos, k in enumerate(perm):
        roles[keys[k]] = "test" if pos < n_test else "val" if pos < n_test + n_val else "train"
    return roles


def split_tiles(cube_paths, patch_size: int, test_fraction: float = 0.2, val_fraction: float = 0.1,
                seed: int = 0) -> pd.DataFrame:
    """:func:`tile_table` with a ``role`` column from :func:`assign_tiles` (one role per ground tile)."""
    t = tile_table(cube_paths, patch_size)
    if t.empty:
        raise ValueError("random split: no tile meets a glacier's 50 m buffer (no usable cube?)")
    roles = assign_tiles(zip(t["tx"], t["ty"]), test_fraction, val_fraction, seed)
    t["role"] = [roles[(int(a), int(b))] for a, b in zip(t["tx"], t["ty"])]
    return t


def tile_items(tiles: pd.DataFrame, role: str, patch_size: int) -> list:
    """(cube path, row, col) patch centres of the owner rows of ``role``: each window is exactly its tile."""
    h = int(patch_size) // 2
    sel = tiles[(tiles["role"] == role) & tiles["owner"]].sort_values(["tx", "ty"])
    return [(str(p), int(r) + h, int(c) + h) for p, r, c in zip(sel["path"], sel["row0"], sel["col0"])]


# ---------------------------------------------------------------------------------------------------- scores


def model_predictor(model, device=None, threshold: float = 0.5):
    """x [N, C, P, P] float32 -> class int64 [N, P, P]: K outputs softmax + argmax; one output: 1 where the
    sigmoid is above ``threshold`` (background 0 / glacier 1)."""
    import torch

    from glaciermap.segmentation.train import resolve_device

    device = resolve_device(device)
    model = model.to(device).eval()

    def predict(x):
        with torch.inference_mode():
            logits = model(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device)).float()
            if logits.shape[1] == 1:
                return (torch.sigmoid(logits[:, 0]) > float(threshold)).long().cpu().numpy()
            return torch.softmax(logits, dim=1).argmax(1).cpu().numpy()

    return predict


def _pixel_key(gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    off = np.int64(1 << 30)
    return (gy.astype(np.int64) + off) * np.int64(1 << 31) + (gx.astype(np.int64) + off)


def scored_pixels(predict, tiles: pd.DataFrame, stats: dict, patch_size: int, label_paths: dict | None = None,
                  batch_size: int = 16, role: str = "test", cube_cache=None) -> pd.DataFrame:
    """Truth and prediction of every scored pixel of the ``role`` tiles (see the module docstring).

    ``predict``: x [N, C, P, P] -> class [N, P, P]; ``label_paths``: cube path -> label raster (K classes) or None
    (binary: truth 1 on any inventory glacier). Returns columns gy, gx (global pixel index: row = floor(y / res),
    col = floor(x / res)), path, truth, pred; one row per ground pixel (the first cube in path order).
    """
    from glaciermap.segmentation.labels import IGNORE
    from glaciermap.segmentation.patches import PatchDataset, extract

    P, bs = int(patch_size), max(int(batch_size), 1)
    sel = tiles[tiles["role"] == role]
    out = []
    for path in sorted(sel["path"].unique()):
        sub = sel[sel["path"] == path].sort_values(["tx", "ty"])
        ci = cube_grid_index(path)
        h = P // 2
        items = [(path, int(r) + h, int(c) + h) for r, c in zip(sub["row0"], sub["col0"])]
        ds = PatchDataset(items, list(stats["channels"]), stats, P, shared_cache=cube_cache,
                          label_paths=None if label_paths is None else {path: label_paths[path]})
        cube, _lm, *target = ds.cube(path)
        if target:
            truth_full, ok = target[0].astype(np.int64), target[0] != IGNORE
        else:
            truth_full, ok = (cube.labels >= 0).astype(np.int64), np.ones(cube.shape, bool)
        ok = ok & cube.buffer50 & ~cube.masked
        rr, cc = np.mgrid[0:P, 0:P]
        for s in range(0, len(items), bs):
            idx = range(s, min(s + bs, len(items)))
            pred = np.asarray(predict(np.stack([ds.arrays(i)[0] for i in idx])))
            for j, i in enumerate(idx):
                top, left = int(sub["row0"].iloc[i]), int(sub["col0"].iloc[i])
                v = extract(ok, top, left, P, False)
                if not v.any():
                    continue
                t = extract(truth_full, top, left, P, 0)
                out.append(pd.DataFrame({"gy": ci.gy0 - (top + rr[v]), "gx": ci.gx0 + left + cc[v], "path": path,
                                         "truth": t[v], "pred": pred[j][v].astype(np.int64)}))
    if not out:
        return pd.DataFrame({"gy": np.zeros(0, np.int64), "gx": np.zeros(0, np.int64), "path": [],
                             "truth": np.zeros(0, np.int64), "pred": np.zeros(0, np.int64)})
    px = pd.concat(out, ignore_index=True)
    _, first = np.unique(_pixel_key(px["gy"].to_numpy(), px["gx"].to_numpy()), return_index=True)
    return px.iloc[np.sort(first)].reset_index(drop=True)


def score_summary(cm: np.ndarray, classes, geographic: dict | None = None) -> dict:
    """Random-split scores of a confusion matrix and, with the geographic metrics.json (rule ``confusion``), the
    geographic scores and the inflation = random - geographic (IoU and accuracy as fractions; x 100 for
    percentage points)."""
    from glaciermap.segmentation.confusion import class_metrics, overall

    pc = class_metrics(cm, classes)
    out = {"classes": list(classes), **overall(cm, pc), "confusion": np.asarray(cm).tolist(),
           "per_class": pc.set_index("class").to_dict("index")}
    if geographic is None:
        out["geographic"] = None
        out["inflation"] = None
        return out
    g_classes = geographic.get("classes")
    if g_classes is not None and list(g_classes) != list(classes):
        raise ValueError(f"the geographic metrics have classes {g_classes}, the random split {list(classes)}")
    # like for like: one member, uncalibrated, against the geographic folds' member 0 alone (rule confusion's
    # single_member); the calibrated ensemble's scores (which add the ensemble's gain) are kept beside it
    ensemble = geographic
    kind = "single member (member 0 of each fold, uncalibrated)"
    if geographic.get("single_member"):
        geographic = {**geographic["single_member"], "classes": g_classes}
    else:
        kind = "calibrated ensemble (no single-member scores in the geographic metrics)"
    g_pc = geographic.get("per_class") or {}

    def num(v):
        return float(v) if v is not None and np.isfinite(float(v)) else float("nan")

    g_iou = {c: num((g_pc.get(c) or {}).get("iou")) for c in classes}
    geo = {"mean_iou": num(geographic.get("mean_iou")), "overall_accuracy": num(geographic.get("overall_accuracy")),
           "per_class_iou": g_iou, "kind": kind, "ensemble_mean_iou": num(ensemble.get("mean_iou")),
           "ensemble_overall_accuracy": num(ensemble.get("overall_accuracy"))}
    r_iou = dict(zip(pc["class"], pc["iou"].astype(float)))
    out["geographic"] = geo
    out["inflation"] = {"mean_iou": num(out["mean_iou"]) - geo["mean_iou"],
                        "overall_accuracy": num(out["overall_accuracy"]) - geo["overall_accuracy"],
                        "per_class_iou": {c: r_iou[c] - g_iou[c] for c in classes},
                        "units": "random - geographic, IoU / accuracy as fractions (x 100: percentage points)"}
    return out


def comparison_table(summary: dict) -> pd.DataFrame:
    """Per class: iou_random, iou_geographic, inflation (NaN without geographic metrics)."""
    classes = summary["classes"]
    geo = summary.get("geographic") or {}
    g = geo.get("per_class_iou") or {}
    r = [summary["per_class"][c]["iou"] for c in classes]
    gi = [g.get(c, float("nan")) for c in classes]
    return pd.DataFrame({"class": classes, "iou_random": np.asarray(r, float), "iou_geographic": np.asarray(gi, float),
                         "inflation": np.asarray(r, float) - np.asarray(gi, float)}, columns=CSV_COLUMNS)


def write_outputs(summary: dict, out: dict) -> None:
    """``out["json"]`` (the summary, NaN -> null) and ``out["csv"]`` (:func:`comparison_table`), atomically."""
    from glaciermap.results import _clean

    write_json_atomic(out["json"], _clean(summary))
    write_csv_atomic(out["csv"], comparison_table(summary))


# ---------------------------------------------------------------------------------------------------- rule


def _label_map(cube_paths, label_paths) -> dict:
    """cube path -> label raster, paired by glacier id (the cube's glacier_id attribute, the raster's file stem)."""
    from glaciermap.segmentation.patches import cube_status

    by_glacier = {Path(p).stem: str(p) for p in label_paths or []}
    out, missing = {}, []
    for p in cube_paths:
        g = cube_status(p)[0] or Path(p).parent.name
        if g in by_glacier:
            out[str(p)] = by_glacier[g]
        else:
            missing.append(g)
    if missing:
        raise FileNotFoundError(f"no label raster for glacier(s) {', '.join(sorted(missing)[:10])}")
    return out


def run_random_split(cube_paths, label_paths, model_cfg: dict, settings: dict, out: dict, geographic_json=None,
                     work_dir=None, threads: int = 1) -> dict:
    """Train one member of a model on CryoNet's random 80/20 tile split and score its test tiles.

    ``cube_paths``: the t0 cubes of the region's glaciers (skip records are left out); ``label_paths``: their label
    rasters (a K-class model; paired by glacier id; ignored for a binary model); ``model_cfg``: the model's entry of
    the registry (glaciermap.config.model_registry: network, training settings, ``channels``, ``classes``);
    ``settings``: ``test_fraction``, ``val_fraction``, ``seed`` (of the tile assignment); ``out``: paths ``json``
    and ``csv``; ``geographic_json``: the model's metrics.json of rule ``confusion`` (None: no comparison);
    ``work_dir``: the member's checkpoints (default ``<json without suffix>/``, e.g. segmentation/<model>/random_split/).
    """
    import torch

    from glaciermap.allocator import keep_freed_memory
    from glaciermap.segmentation.confusion import BINARY_CLASSES, confusion_matrix
    from glaciermap.segmentation.labels import read_label_raster
    from glaciermap.segmentation.patches import CubeCache, cube_status, fit_normalisation, load_training_cube
    from glaciermap.segmentation.train import DEFAULTS, load_member, member_seed, resolve_device, train_member

    keep_freed_memory()
    torch.set_num_threads(max(int(threads), 1))
    st = {**DEFAULT_SETTINGS, **(settings or {})}
    cfg = dict(model_cfg)
    P = int(cfg.get("patch_size", DEFAULTS["patch_size"]))
    model_classes = list(cfg.get("classes") or ["glacier"])
    multi = len(model_classes) > 1
    classes = model_classes if multi else BINARY_CLASSES
    K = len(classes)
    work = Path(work_dir) if work_dir is not None else Path(out["json"]).with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.get("device"))

    cubes = sorted(str(p) for p in cube_paths if cube_status(p)[1] != STATUS_SKIPPED)
    if not cubes:
        raise ValueError("random split: every cube is a skip record")
    lp = None
    if multi:
        lp = _label_map(cubes, label_paths)
        for p, tif in lp.items():
            names = read_label_raster(tif)[1]
            if names != model_classes:
                raise ValueError(f"label raster {tif} has classes {names}, the model {model_classes}")

    tiles = split_tiles(cubes, P, float(st["test_fraction"]), float(st["val_fraction"]), int(st["seed"]))
    write_csv_atomic(work / "tiles.csv", tiles)
    n_roles = tiles.drop_duplicates(["tx", "ty"])["role"].value_counts().to_dict()
    train_items, val_items = tile_items(tiles, "train", P), tile_items(tiles, "val", P)
    log.info("%d tiles of %d px meet a 50 m buffer in %d cubes: %d training, %d validation, %d test (seed %d)",
             sum(n_roles.values()), P, len(cubes), n_roles.get("train", 0), n_roles.get("val", 0),
             n_roles.get("test", 0), int(st["seed"]))
    if not train_items or not n_roles.get("test"):
        raise ValueError(f"random split: too few tiles ({sum(n_roles.values())}) for a training and a test set")

    train_cubes = sorted({p for p, _, _ in train_items})
    stats = fit_normalisation(train_cubes, list(cfg["channels"]))
    write_json_atomic(work / "normalisation.json", stats)

    tcfg = {k: v for k, v in cfg.items() if k in DEFAULTS}
    tcfg["seed"] = member_seed(0, 0, cfg.get("base_seed", 0))
    tcfg["training_data"] = "cubes"  # one member over every glacier's tiles: its cubes, whatever the model's folds read
    cache = CubeCache(load_training_cube, max_items=1_000_000, max_bytes=4e9)
    summary_train = train_member(train_items, val_items, stats, tcfg, work, device, test_glaciers=[],
                                 restart_on_mismatch=True, cube_cache=cache, label_paths=lp)
    if not summary_train["complete"]:
        raise RuntimeError(f"random split: training stopped before its last epoch: {summary_train}")

    model, meta = load_member(work / "best.pt", device)
    predict = model_predictor(model, device, float(cfg.get("threshold", DEFAULTS["threshold"])))
    bs = int(cfg.get("val_batch_size") or cfg.get("batch_size") or DEFAULTS["batch_size"])
    px = scored_pixels(predict, tiles, meta["stats"], P, lp, bs, cube_cache=cache)
    cm = confusion_matrix(px["truth"].to_numpy(), px["pred"].to_numpy(), K)

    geographic = None
    if geographic_json is not None:
        geographic = json.loads(Path(geographic_json).read_text())
    summary = score_summary(cm, classes, geographic)
    summary.update({"split": "random tiles (CryoNet 80/20), region-wide tile grid",
                    "test_fraction": float(st["test_fraction"]), "val_fraction": float(st["val_fraction"]),
                    "seed": int(st["seed"]), "patch_size": P, "tile_size_m": P * float(_resolution(cubes[0])),
                    "n_tiles": int(sum(n_roles.values())), "n_train_tiles": int(n_roles.get("train", 0)),
                    "n_val_tiles": int(n_roles.get("val", 0)), "n_test_tiles": int(n_roles.get("test", 0)),
                    "n_cubes": len(cubes), "n_train_cubes": len(train_cubes),
                    "training": {k: summary_train.get(k) for k in ("best_epoch", "best_score", "epochs_done",
                                                                   "n_train", "n_val", "device")}})
    write_outputs(summary, out)
    inf = summary["inflation"] or {}
    log.info("random split: %d test px, mean IoU %s, overall accuracy %s; inflation over geographic: mean IoU %s",
             summary["pixels"], summary["mean_iou"], summary["overall_accuracy"], inf.get("mean_iou"))
    return summary


def _resolution(path) -> float:
    ci = cube_grid_index(path)
    return ci.resolution if ci is not None else float("nan")
