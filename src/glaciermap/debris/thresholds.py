"""A fixed-threshold baseline of the multi-class debris mapping, scored exactly as the models' rule ``confusion``.

CryoNet (seed 003) asks for "the same metrics for a fixed-threshold baseline (NDSI and NDWI/NDVI thresholds)" so
that the gain of the deep-learning model is visible. The baseline paints every pixel of a cube from cube layers
only (never the inventory outline nor the debris map: those make the labels), with an ordered list of class
rules; the first rule whose conditions all hold paints the pixel, a pixel no rule paints is ``background``:

=========== ====================================== ==========================================================
class       conditions (all must hold)             source
=========== ====================================== ==========================================================
clean_ice   ndsi > 0.4                             Hall et al. (1995) snow threshold, used for clean glacier
                                                   ice (e.g. Racoviteanu et al. 2008)
water       ndwi > 0.17 (and not clean ice)        no literature source: a project default (McFeeters 1996
                                                   defines NDWI; open water > 0 there)
vegetation  ndvi > 0.3 (and neither of the above)  no literature source: a common cut for vegetated land
debris      slope < 24 deg and velocity > 1 m/yr   slope: Paul, Huggel & Kaab (2004) debris-cover slope
            (and none of the above)                threshold; velocity: no literature source (debris-covered
                                                   ice moves, moraines and rock do not)
=========== ====================================== ==========================================================

Settings (config ``debris.thresholds``): a list of ``{class, conditions: [{channel, above|below, source?}]}``;
``above`` and ``below`` are strict (a value equal to the threshold does not pass) and compared in the layer's
precision (float32), as the label sets' channel rules (glaciermap.segmentation.labels); a condition may give both
(a range). A class may have several rules (OR). ``source`` is free text that documents the threshold.

Scoring (the same as :mod:`glaciermap.segmentation.confusion`, whose functions it reuses): every test glacier
once, its t0 cube, its fold the one it is a test glacier of; pixels of the glacier's 50 m buffer
(``mask_buffer_50m``), not cloud or no data, labelled in the label raster (255 = no label) and, instead of the
model's "finite prediction", where every layer the rules read is finite. metrics.json reports both pixel sets:
``pixels_in_scope`` (buffer, clear, labelled), ``pixels`` (scored here) and, per compared model, the model's
scored pixels; ``identical_pixel_sets`` is true where all three counts are equal (both scored sets are subsets
of the scope, so equal sizes mean equal sets).

Rule ``thresholds`` (workflow/rules/debris/thresholds.smk) runs :func:`run_thresholds_files`, writing
``debris/thresholds/confusion.csv``, ``metrics.csv``, ``metrics.json`` (the columns and keys of rule ``confusion``
without the ECE, which a threshold classifier has no probabilities for) and, per compared model, the figure
``debris/thresholds/vs_<model>.png`` (:func:`plot_confusion`).
"""

from __future__ import annotations

import copy
import json
import logging
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd

from glaciermap.io import atomic_path, write_csv_atomic, write_json_atomic
from glaciermap.results import _clean, read_cube_masks
from glaciermap.segmentation.confusion import class_metrics, confusion_matrix, confusion_tables, overall

log = logging.getLogger("glaciermap.debris.thresholds")

REST = "background"

SOURCE_NDSI = ("Hall, Riggs & Salomonson (1995) NDSI snow threshold, used for clean glacier ice "
               "(e.g. Racoviteanu, Williams & Barry 2008)")
SOURCE_NDWI = "no literature source: project default (McFeeters 1996 defines NDWI; open water > 0 there)"
SOURCE_NDVI = "no literature source: a common NDVI cut for vegetated land"
SOURCE_SLOPE = "Paul, Huggel & Kaab (2004, Remote Sens. Environ. 89): debris-covered ice on slopes < 24 degrees"
SOURCE_VELOCITY = "no literature source: debris-covered ice moves, moraines and rock do not (project default)"

#: The default class rules, first match wins (config ``debris.thresholds``: null = these).
DEFAULT_RULES = [
    {"class": "clean_ice", "conditions": [{"channel": "ndsi", "above": 0.4, "source": SOURCE_NDSI}]},
    {"class": "water", "conditions": [{"channel": "ndwi", "above": 0.17, "source": SOURCE_NDWI}]},
    {"class": "vegetation", "conditions": [{"channel": "ndvi", "above": 0.3, "source": SOURCE_NDVI}]},
    {"class": "debris", "conditions": [{"channel": "slope", "below": 24.0, "source": SOURCE_SLOPE},
                                       {"channel": "velocity", "above": 1.0, "source": SOURCE_VELOCITY}]},
]

_RULE_KEYS = {"class", "conditions"}
_COND_KEYS = {"channel", "above", "below", "source"}


class MissingLayerError(ValueError):
    """A cube lacks layers that the threshold rules read; names the glacier, the file and the layers."""

    def __init__(self, glacier, path, layers):
        self.glacier, self.path, self.layers = str(glacier), str(path), list(layers)
        super().__init__(f"glacier {glacier}: the cube {path} lacks the layer(s) {', '.join(self.layers)} that the "
                         f"threshold rules read (add them to the cube layers: threshold_channels)")


def default_rules(rules=None) -> list[dict]:
    """``rules`` as a list of dicts, or a copy of :data:`DEFAULT_RULES` when None (config ``debris.thresholds``)."""
    return copy.deepcopy(DEFAULT_RULES if rules is None else list(rules))


def _number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and np.isfinite(v)


def check_rules(rules, classes, rest: str = REST) -> list[dict]:
    """The rules, checked: every problem raises ValueError naming its key (``thresholds[1].conditions[0].above``).

    ``classes``: the label set's classes (the rules' classes must be among them, ``rest`` too); channels must be
    known to the channel registry (glaciermap.data.channels)."""
    from glaciermap.data.channels import ChannelError, get_channel

    classes = list(classes)
    rules = default_rules(rules)
    problems = []
    if rest not in classes:
        problems.append(f"the rest class {rest!r} is no class of {classes}")
    for i, r in enumerate(rules):
        key = f"thresholds[{i}]"
        if not isinstance(r, dict):
            problems.append(f"{key}: a rule is a mapping {{class, conditions}}, got {r!r}")
            continue
        if set(r) - _RULE_KEYS:
            problems.append(f"{key}: unknown key(s) {', '.join(sorted(map(str, set(r) - _RULE_KEYS)))}")
        if r.get("class") not in classes:
            problems.append(f"{key}.class: {r.get('class')!r} is no class of {classes}")
        conds = r.get("conditions")
        if not isinstance(conds, list) or not conds:
            problems.append(f"{key}.conditions: a non-empty list of {{channel, above|below}} is needed")
            continue
        for j, c in enumerate(conds):
            ck = f"{key}.conditions[{j}]"
            if not isinstance(c, dict):
                problems.append(f"{ck}: a condition is a mapping {{channel, above|below}}, got {c!r}")
                continue
            if set(c) - _COND_KEYS:
                problems.append(f"{ck}: unknown key(s) {', '.join(sorted(map(str, set(c) - _COND_KEYS)))}")
            try:
                if not get_channel(c.get("channel")).stored:
                    problems.append(f"{ck}.channel: {c.get('channel')!r} is fitted per fold, not a cube layer")
            except ChannelError:
                problems.append(f"{ck}.channel: {c.get('channel')!r} is no known channel")
            if c.get("above") is None and c.get("below") is None:
                problems.append(f"{ck}: needs 'above' or 'below' (or both)")
            for side in ("above", "below"):
                if c.get(side) is not None and not _number(c[side]):
                    problems.append(f"{ck}.{side}: {c[side]!r} is not a finite number")
            if _number(c.get("above")) and _number(c.get("below")) and c["above"] >= c["below"]:
                problems.append(f"{ck}: above {c['above']} >= below {c['below']}: no value can pass")
    if problems:
        raise ValueError("debris threshold rules: " + "; ".join(problems))
    return rules


def threshold_channels(rules=None) -> list[str]:
    """The cube layers the rules read (unique, first-use order); None = the default rules."""
    return list(dict.fromkeys(str(c["channel"]) for r in default_rules(rules) for c in r["conditions"]))


def condition_mask(layer: np.ndarray, cond: dict) -> np.ndarray:
    """Where one condition holds: strict comparisons in the layer's precision; NaN never passes."""
    layer = np.asarray(layer)
    t = layer.dtype.type if layer.dtype.kind == "f" else np.float64
    m = np.ones(layer.shape, bool)
    if cond.get("above") is not None:
        m &= layer > t(cond["above"])
    if cond.get("below") is not None:
        m &= layer < t(cond["below"])
    return m


def paint(layers: dict, rules, classes, rest: str = REST) -> np.ndarray:
    """Class indices [H, W] (uint8) from the layers (name -> [H, W]): the first rule whose conditions all hold
    paints a pixel; the pixels no rule paints are ``rest``. ``rules`` must be checked (:func:`check_rules`)."""
    classes = list(classes)
    shape = np.shape(next(iter(layers.values())))
    out = np.full(shape, classes.index(rest), np.uint8)
    free = np.ones(shape, bool)
    for r in rules:
        m = free.copy()
        for c in r["conditions"]:
            m &= condition_mask(layers[c["channel"]], c)
        out[m] = classes.index(r["class"])
        free &= ~m
    return out


def read_threshold_layers(cube_file, channels, glacier) -> dict:
    """name -> [H, W] layer of a cube; a missing layer raises :class:`MissingLayerError`."""
    from glaciermap.data.netcdf import MissingVariablesError, read_layers

    try:
        stack, _, _ = read_layers(cube_file, channels)
    except MissingVariablesError as e:
        raise MissingLayerError(glacier, cube_file, e.names) from e
    return dict(zip(channels, stack))


def glacier_pixels(cube_file, label_file, rules, classes, glacier, rest: str = REST) -> dict | None:
    """The scored pixels of one test glacier: {"truth" [n], "pred" [n], "in_scope", "nonfinite"}; None for a
    skip-record cube (the model's rule skips it too).

    Scope as rule ``confusion``: the glacier's 50 m buffer, not cloud or no data (the same masks, read by
    :func:`glaciermap.results.read_cube_masks`), labelled; scored: in scope and every rule layer finite."""
    from glaciermap.segmentation.labels import IGNORE, read_label_raster

    masks = read_cube_masks(cube_file)
    if masks is None:
        return None
    chans = threshold_channels(rules)
    layers = read_threshold_layers(cube_file, chans, glacier)
    lab, names, _ = read_label_raster(label_file)
    if names != list(classes):
        raise ValueError(f"label raster {label_file} has classes {names}, the baseline {list(classes)}")
    shape = masks["buffer50"].shape
    if lab.shape != shape or any(v.shape != shape for v in layers.values()):
        raise ValueError(f"glacier {glacier}: the label raster {label_file} is {lab.shape} px, the cube {cube_file} "
                         f"{shape}")
    pred = paint(layers, rules, classes, rest)
    scope = (lab != IGNORE) & masks["buffer50"] & ~masks["masked"]
    finite = np.ones(shape, bool)
    for v in layers.values():
        finite &= np.isfinite(v)
    # every in-scope pixel is scored, as the model's: a NaN layer fails its condition (paint), so such a pixel falls
    # to a later rule or to the rest class (a sensor gap is the baseline's handicap, not a smaller test set)
    sel = scope
    return {"truth": lab[sel].astype(np.int64), "pred": pred[sel].astype(np.int64), "in_scope": int(scope.sum()),
            "nonfinite": int((scope & ~finite).sum())}


def _model_comparison(metrics_json, classes, total: int, in_scope: int, fold_px: dict, fold_scope: dict) -> dict:
    """Pixel counts of a model's rule ``confusion`` beside the baseline's (same scope: equal counts = same pixels)."""
    d = json.loads(Path(metrics_json).read_text())
    if list(d.get("classes", [])) != list(classes):
        raise ValueError(f"{metrics_json}: the model's classes {d.get('classes')} are not the baseline's {classes}")
    mpx = d.get("pixels")
    per_fold = {}
    for f in sorted(set(fold_px) | {k for k in d.get("per_fold", {})}, key=str):
        m = (d.get("per_fold", {}).get(str(f)) or {}).get("pixels")
        b, sc = fold_px.get(str(f)), fold_scope.get(str(f))
        per_fold[str(f)] = {"model": m, "thresholds": b, "in_scope": sc,
                            "identical_pixel_sets": m is not None and m == b == sc}
    return {"metrics": str(metrics_json), "pixels": mpx, "thresholds_pixels": total,
            "difference": None if mpx is None else total - mpx,
            "identical_pixel_sets": mpx is not None and mpx == total == in_scope,
            "glaciers": d.get("glaciers"), "overall_accuracy": d.get("overall_accuracy"), "mean_iou": d.get("mean_iou"),
            "macro_f1": d.get("macro_f1"), "per_fold": per_fold}


def run_thresholds(cube_files: dict, label_files: dict, fold_of: dict, rules, classes, out: dict,
                   model_metrics: dict | None = None, figures: dict | None = None, rest: str = REST) -> dict:
    """Confusion matrices and per-class metrics of the threshold baseline over the test glaciers.

    ``cube_files``/``label_files``: glacier -> its t0 cube / label raster; ``fold_of``: glacier -> the fold it is
    a test glacier of; ``rules``: the class rules (None = :data:`DEFAULT_RULES`); ``classes``: the label set's;
    ``out``: paths ``confusion``, ``metrics`` (CSV) and ``json``. ``model_metrics``: model -> its rule-confusion
    metrics.json (pixel counts compared, the confusion.csv beside it drawn); ``figures``: model -> PNG path.
    """
    classes = list(classes)
    rules = check_rules(rules, classes, rest)
    K = len(classes)
    missing = sorted(set(cube_files) - set(label_files))
    if missing:
        raise FileNotFoundError(f"no label raster for the test glacier(s) {', '.join(missing[:10])}")
    no_fold = sorted(set(cube_files) - set(fold_of))
    if no_fold:
        raise ValueError(f"no fold for the test glacier(s) {', '.join(no_fold[:10])} (not a test glacier of any fold)")
    cms, scope, nonfinite, skipped = {}, {}, {}, []
    for g in sorted(cube_files):
        fold = fold_of[g]
        px = glacier_pixels(cube_files[g], label_files[g], rules, classes, g, rest)
        if px is None:
            skipped.append(g)
            continue
        cms[fold] = cms.get(fold, np.zeros((K, K), np.int64)) + confusion_matrix(px["truth"], px["pred"], K)
        scope[fold] = scope.get(fold, 0) + px["in_scope"]
        nonfinite[fold] = nonfinite.get(fold, 0) + px["nonfinite"]
    total, conf_table, metrics = confusion_tables(cms, classes)
    in_scope = int(sum(scope.values()))
    fold_px = {str(f): int(cm.sum()) for f, cm in cms.items()}
    fold_scope = {str(f): int(n) for f, n in scope.items()}
    per_fold = {str(f): {**overall(cm, class_metrics(cm, classes)), "pixels_in_scope": int(scope[f]),
                         "pixels_nonfinite_layers": int(nonfinite[f])} for f, cm in sorted(cms.items())}
    summary = {"classes": classes, "glaciers": len(cube_files) - len(skipped), "skipped": skipped,
               **overall(total, class_metrics(total, classes)),
               "pixels_in_scope": in_scope, "pixels_nonfinite_layers": int(sum(nonfinite.values())),
               "pixels_note": ("scope = the test glaciers' 50 m buffers, not cloud or no data, labelled (rule "
                               "confusion's); every in-scope pixel is scored, a missing layer value failing its "
                               "condition (the model's rule also requires a finite prediction)"),
               "per_fold": per_fold,
               "per_class": class_metrics(total, classes).set_index("class").to_dict("index"),
               "method": "fixed thresholds on cube layers, first matching rule wins, the rest background",
               "rest_class": rest, "rules": rules, "channels": threshold_channels(rules)}
    models = {}
    for m, path in (model_metrics or {}).items():
        models[m] = _model_comparison(path, classes, int(total.sum()), in_scope, fold_px, fold_scope)
    summary["models"] = models
    write_csv_atomic(out["confusion"], conf_table)
    write_csv_atomic(out["metrics"], metrics)
    write_json_atomic(out["json"], _clean(summary))
    for m, png in (figures or {}).items():
        plot_confusion({m: model_metrics[m], "thresholds": out["json"]}, png)
    log.info("%d glaciers, %d px (%d in scope): overall accuracy %s, mean IoU %s", summary["glaciers"],
             total.sum(), in_scope, summary["overall_accuracy"], summary["mean_iou"])
    for m, c in models.items():
        log.info("model %s: %s px scored, the baseline %d (identical sets: %s)", m, c["pixels"], total.sum(),
                 c["identical_pixel_sets"])
    return summary


def run_thresholds_files(cube_paths, label_paths, fold_of: dict, rules, classes, out: dict, model_metrics=(),
                         figures=(), rest: str = REST) -> dict:
    """What rule ``thresholds`` runs: pairs the cubes (``.../cubes/<glacier>/<epoch>.nc``) with the label rasters
    (``.../labels/<set>/<epoch>/<glacier>.tif``), the models' metrics.json (``.../segmentation/<model>/...``) with
    the figures (same order), then :func:`run_thresholds`."""
    cubes = {Path(c).parent.name: str(c) for c in cube_paths}
    labels = {Path(t).stem: str(t) for t in label_paths}
    model_metrics, figures = list(model_metrics), list(figures)
    if figures and len(figures) != len(model_metrics):
        raise ValueError(f"{len(figures)} figure(s) for {len(model_metrics)} model(s)")
    metrics = {Path(p).parent.name: str(p) for p in model_metrics}
    figs = {Path(p).parent.name: str(f) for p, f in zip(model_metrics, figures)}
    return run_thresholds(cubes, labels, fold_of, rules, classes, out, metrics, figs, rest)


# ------------------------------------------------------------------------------------------------------------ figure
def read_confusion(path) -> tuple[list[str], np.ndarray]:
    """(classes, K x K pixel counts of fold ``all``) from a confusion.csv, or from the metrics.json beside one
    (its ``classes`` give the order; the counts come from the confusion.csv in the same folder)."""
    path = Path(path)
    classes = None
    if path.suffix == ".json":
        classes = list(json.loads(path.read_text())["classes"])
        path = path.with_name("confusion.csv")
    df = pd.read_csv(path, dtype={"fold": str, "truth": str, "predicted": str})
    df = df[df["fold"] == "all"]
    if df.empty:
        raise ValueError(f"{path} has no rows of fold 'all'")
    if classes is None:
        classes = list(dict.fromkeys(df["truth"]))
    idx = {c: i for i, c in enumerate(classes)}
    unknown = sorted((set(df["truth"]) | set(df["predicted"])) - set(idx))
    if unknown:
        raise ValueError(f"{path}: class(es) {', '.join(unknown)} are not among {classes}")
    cm = np.zeros((len(classes), len(classes)), np.int64)
    for t, p, n in zip(df["truth"], df["predicted"], df["pixels"]):
        cm[idx[t], idx[p]] += int(n)
    return classes, cm


def plot_confusion(sources, out_png, title: str | None = None, dpi: int = 120):
    """Row-normalised confusion matrices (cells: pixel count and percent of the true class) of one or more
    methods side by side, plus a panel of per-class IoU bars of every method; written atomically as PNG.

    ``sources``: a path (metrics.json or confusion.csv; the method named after its folder) or a mapping
    name -> path, e.g. ``{"debris": ".../segmentation/debris/metrics.json", "thresholds": ".../metrics.json"}``.
    Panels: one heat map per method, then the IoU bars. Returns the (closed) figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(sources, (str, Path)):
        sources = {Path(sources).parent.name: sources}
    data = {name: read_confusion(p) for name, p in sources.items()}
    classes = next(iter(data.values()))[0]
    for name, (cls, _) in data.items():
        if cls != classes:
            raise ValueError(f"{name} has classes {cls}, {next(iter(data))} {classes}: not comparable")
    n, K = len(data), len(classes)
    fig, axes = plt.subplots(1, n + 1, figsize=(4.2 * (n + 1) + 0.5, 4.6), squeeze=False)
    axes = axes[0]
    for ax, (name, (_, cm)) in zip(axes, data.items()):
        rows = cm.sum(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(rows > 0, cm / np.maximum(rows, 1), np.nan)
        ax.imshow(np.ma.masked_invalid(frac), cmap="Blues", vmin=0.0, vmax=1.0)
        for i in range(K):
            for j in range(K):
                f = frac[i, j]
                txt = f"{cm[i, j]:,}" + ("" if not np.isfinite(f) else f"\n{100 * f:.1f}%")
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="white" if np.isfinite(f) and f > 0.55 else "black")
        acc = np.trace(cm) / cm.sum() if cm.sum() else float("nan")
        ax.set_title(f"{name}: accuracy {acc:.3f}, {cm.sum():,} px", fontsize=9)
        ax.set_xticks(range(K), classes, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(K), classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("truth (row-normalised)")
    ax = axes[-1]
    width = 0.8 / n
    for k, (name, (_, cm)) in enumerate(data.items()):
        iou = class_metrics(cm, classes)["iou"].to_numpy(np.float64)
        mean = np.nanmean(iou) if np.isfinite(iou).any() else float("nan")
        ax.bar(np.arange(K) + (k - (n - 1) / 2) * width, np.nan_to_num(iou), width,
               label=f"{name} (mean {mean:.3f})")
    ax.set_xticks(range(K), classes, rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("IoU")
    ax.set_title("per-class IoU", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return fig
