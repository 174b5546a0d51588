"""Confident learning on the out-of-fold facies probabilities (rule ``label_issues``; Maslov et al., seed 002).

The paper runs cleanlab's confident learning (Northcutt et al. 2021) on the out-of-sample predictions of its
nested glacier-fold cross-validation and prunes every point that falls in an off-diagonal cell of the confident
joint, except points labelled *shadow*, *water* or *cloud* (assumed correct and not glacier facies). Here:

- ``flagged``: :func:`cleanlab.filter.find_label_issues` (``filter_by`` as configured, default
  ``"confident_learning"``: exactly the off-diagonal cells of the confident joint);
- ``pruned``: flagged and the given class is one of ``prunable`` (config ``facies.prunable``).

Inputs are the fold probability CSVs of the training rule (:func:`read_fold_probas`): columns ``point_id``,
``fold``, ``role`` (``val`` / ``test``), ``label`` (given class name) and ``p_<class>`` for every class in class
order. The ``test`` rows of all folds are the out-of-fold (OOF) predictions; every point must be a test point
exactly once.

Classes that no point is labelled with (e.g. no *cloud* labels in a region) are fine: cleanlab (2.9) sets their
confident threshold to 2, out of reach of any probability, so no point is ever counted as confidently of that class
(its row and column of the confident joint hold nothing off the diagonal; cleanlab sets every diagonal cell to at
least 1) and the remaining classes are handled as usual; the probability columns are kept as they are (not dropped
and renormalised). A point whose probability mass sits on such a class is therefore never flagged by
``confident_learning``. Tests pin this behaviour.

Outputs (all written atomically): the per-point table, the confident joint (rows: given class, columns: suggested
= latent true class, counts), and a JSON summary (shares per class; with the demo's planted truth also precision and
recall of the flags).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from glaciermap.io import write_csv_atomic, write_text_atomic

log = logging.getLogger("glaciermap.facies.label_issues")

ROLES = ("val", "test")
BASE_COLUMNS = ("point_id", "fold", "role", "label")
PROB_SUM_TOL = 1e-3  # a row of p_<class> must sum to 1 within this (CSV rounding); rows are then renormalised


# --------------------------------------------------------------------------- JSON helpers


def json_safe(obj):
    """JSON-safe copy: NaN / inf -> None, numpy scalars and arrays -> Python numbers and lists."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_safe(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


def write_json(path, obj) -> None:
    """``obj`` made JSON-safe, written atomically; ``allow_nan=False`` guarantees no bare NaN reaches the file."""
    import json

    write_text_atomic(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


# --------------------------------------------------------------------------- fold probability CSVs


def prob_columns(classes) -> list[str]:
    return [f"p_{c}" for c in classes]


def read_fold_probas(paths, classes) -> pd.DataFrame:
    """The fold probability CSVs, concatenated and checked.

    Returns columns ``point_id`` (str), ``fold`` (int), ``role``, ``label`` (name), ``label_idx`` (int), ``source``
    (the file) and ``p_<class>`` (float, rows renormalised to sum 1). Raises ValueError naming the file and the
    problem: missing columns, ``p_`` columns of classes not in ``classes``, unknown roles or labels, non-numeric,
    NaN or out-of-range probabilities, rows that do not sum to 1, an empty file.
    """
    classes = list(classes)
    if len(classes) < 2:
        raise ValueError(f"facies classes: need at least 2 classes, got {classes}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"facies classes: duplicate names in {classes}")
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("no fold probability CSVs given")
    pcols = prob_columns(classes)
    frames = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise ValueError(f"fold probabilities {path}: file does not exist")
        try:
            df = pd.read_csv(path, dtype={"point_id": str, "role": str, "label": str})
        except pd.errors.EmptyDataError as e:
            raise ValueError(f"fold probabilities {path}: the file is empty") from e
        missing = [c for c in (*BASE_COLUMNS, *pcols) if c not in df.columns]
        if missing:
            raise ValueError(f"fold probabilities {path}: missing columns {missing} (columns: {list(df.columns)})")
        extra = [c for c in df.columns if c.startswith("p_") and c not in pcols]
        if extra:
            raise ValueError(f"fold probabilities {path}: probability columns {extra} are not of the classes {classes}")
        if df.empty:
            raise ValueError(f"fold probabilities {path}: no rows")
        if df["point_id"].isna().any():
            raise ValueError(f"fold probabilities {path}: {int(df['point_id'].isna().sum())} rows without point_id")
        fold = pd.to_numeric(df["fold"], errors="coerce")
        if fold.isna().any() or (fold != np.round(fold)).any():
            bad = df.loc[fold.isna() | (fold != np.round(fold)), "fold"].unique()[:5]
            raise ValueError(f"fold probabilities {path}: fold must be an integer, found {list(bad)}")
        df["fold"] = fold.astype(int)
        bad_roles = sorted(set(df["role"].dropna()) - set(ROLES)) + (["<empty>"] if df["role"].isna().any() else [])
        if bad_roles:
            raise ValueError(f"fold probabilities {path}: role must be one of {list(ROLES)}, found {bad_roles}")
        unknown = sorted(set(df["label"].fillna("<empty>")) - set(classes))
        if unknown:
            raise ValueError(f"fold probabilities {path}: labels {unknown} are not among the classes {classes}")
        probs = df[pcols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(probs).all(axis=1)
        if bad.any():
            raise ValueError(f"fold probabilities {path}: {int(bad.sum())} rows with missing or non-numeric "
                             f"probabilities (first point ids: {list(df.loc[bad, 'point_id'][:5])})")
        if (probs < 0).any() or (probs > 1 + PROB_SUM_TOL).any():
            rows = np.flatnonzero(((probs < 0) | (probs > 1 + PROB_SUM_TOL)).any(axis=1))
            raise ValueError(f"fold probabilities {path}: {len(rows)} rows with probabilities outside [0, 1] "
                             f"(first point ids: {list(df['point_id'].iloc[rows[:5]])})")
        sums = probs.sum(axis=1)
        off = np.abs(sums - 1.0) > PROB_SUM_TOL
        if off.any():
            raise ValueError(f"fold probabilities {path}: {int(off.sum())} rows whose p_<class> do not sum to 1 "
                             f"(e.g. point {df['point_id'].iloc[np.flatnonzero(off)[0]]}: sum "
                             f"{sums[off][0]:.4f})")
        df[pcols] = probs / sums[:, None]
        df["label_idx"] = df["label"].map({c: i for i, c in enumerate(classes)}).astype(int)
        df["source"] = str(path)
        frames.append(df[["point_id", "fold", "role", "label", "label_idx", "source", *pcols]])
    return pd.concat(frames, ignore_index=True)


def oof_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The ``test`` rows (out-of-fold predictions); ValueError naming duplicated point ids and their files."""
    test = df[df["role"] == "test"].reset_index(drop=True)
    if test.empty:
        raise ValueError(f"fold probabilities {sorted(df['source'].unique())}: no 'test' rows "
                         "(out-of-fold predictions)")
    dup = test["point_id"].duplicated(keep=False)
    if dup.any():
        ids = test.loc[dup, "point_id"].unique()
        where = test[dup].groupby("point_id")["source"].apply(lambda s: sorted(set(s)))
        shown = "; ".join(f"{i} in {where[i]}" for i in ids[:10])
        raise ValueError(f"fold probabilities: {len(ids)} points are test points more than once (each must be "
                         f"out-of-fold exactly once): {shown}{' ...' if len(ids) > 10 else ''}")
    return test


# --------------------------------------------------------------------------- confident learning


def _check_inputs(labels, pred_probs, classes=None):
    labels = np.asarray(labels)
    pred_probs = np.asarray(pred_probs, dtype=float)
    if pred_probs.ndim != 2 or labels.ndim != 1 or len(labels) != len(pred_probs):
        raise ValueError(f"labels {labels.shape} and pred_probs {pred_probs.shape} must be (N,) and (N, K)")
    if len(labels) == 0:
        raise ValueError("no points: labels is empty")
    K = pred_probs.shape[1]
    if classes is not None and len(classes) != K:
        raise ValueError(f"{len(classes)} classes {list(classes)} but pred_probs has {K} columns")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= K:
        raise ValueError(f"labels must lie in [0, {K - 1}], found {labels.min()} .. {labels.max()}")
    return labels.astype(np.int64), pred_probs


def find_issues(labels, pred_probs, classes, prunable, filter_by: str = "confident_learning",
                n_jobs: int = 1) -> pd.DataFrame:
    """Per-point label issues by cleanlab: columns ``label`` (int), ``given`` (name), ``suggested`` (argmax name),
    ``self_confidence`` (probability of the given label), ``flagged`` (cleanlab.filter.find_label_issues) and
    ``pruned`` (flagged and the given class in ``prunable``).

    ``n_jobs`` is passed to cleanlab (it changes run time only, never the result; 1 avoids forking inside a job).
    """
    from cleanlab.filter import find_label_issues

    classes = list(classes)
    labels, pred_probs = _check_inputs(labels, pred_probs, classes)
    unknown = sorted(set(prunable) - set(classes))
    if unknown:
        raise ValueError(f"facies prunable classes {unknown} are not among the classes {classes}")
    absent = [c for i, c in enumerate(classes) if not (labels == i).any()]
    if absent:
        log.info("classes without any given label (cleanlab never counts a point as confidently of these): %s", absent)
    flagged = np.asarray(find_label_issues(labels, pred_probs, filter_by=filter_by, n_jobs=n_jobs), dtype=bool)
    names = np.asarray(classes, dtype=object)
    prunable_mask = np.isin(labels, [classes.index(c) for c in prunable])
    return pd.DataFrame({
        "label": labels,
        "given": names[labels],
        "suggested": names[pred_probs.argmax(axis=1)],
        "self_confidence": pred_probs[np.arange(len(labels)), labels],
        "flagged": flagged,
        "pruned": flagged & prunable_mask,
    })


def confident_joint(labels, pred_probs, K: int | None = None, calibrate: bool = False) -> np.ndarray:
    """The (K, K) confident joint of cleanlab.count.compute_confident_joint: rows the given class, columns the
    suggested (latent true) class, integer counts.

    ``calibrate=False`` (default) keeps the raw counts, so that the off-diagonal cells hold exactly the points that
    ``filter_by="confident_learning"`` flags (the paper's pruned cells); ``calibrate=True`` is cleanlab's calibrated
    estimate (rows rescaled to the given-label counts). cleanlab raises every diagonal cell to at least 1 (so a
    class without labels has a 1 on the diagonal).
    """
    from cleanlab.count import compute_confident_joint

    labels, pred_probs = _check_inputs(labels, pred_probs)
    if K is not None and K != pred_probs.shape[1]:
        raise ValueError(f"K = {K} but pred_probs has {pred_probs.shape[1]} columns")
    cj = compute_confident_joint(labels, pred_probs, calibrate=calibrate)
    return np.asarray(np.rint(cj), dtype=np.int64)


def _share(num, den):
    return float(num) / float(den) if den else None


def summarise(df: pd.DataFrame, classes) -> dict:
    """Counts and shares of a :func:`find_issues` table; per-class shares are of that class's given labels
    (None where the class has no labels)."""
    n = len(df)
    out = {
        "n_points": n,
        "n_flagged": int(df["flagged"].sum()),
        "n_pruned": int(df["pruned"].sum()),
        "flagged_share": _share(df["flagged"].sum(), n),
        "pruned_share": _share(df["pruned"].sum(), n),
        "n_per_class": {},
        "pruned_share_per_class": {},
        "flagged_share_per_class": {},
    }
    for c in classes:
        sel = df["given"] == c
        k = int(sel.sum())
        out["n_per_class"][c] = k
        out["pruned_share_per_class"][c] = _share(df.loc[sel, "pruned"].sum(), k)
        out["flagged_share_per_class"][c] = _share(df.loc[sel, "flagged"].sum(), k)
    return out


# --------------------------------------------------------------------------- planted truth (demo)


def _parse_bool(series: pd.Series, path) -> np.ndarray:
    if series.dtype == bool:
        return series.to_numpy()
    mapping = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
    s = series.astype(str).str.strip().str.lower()
    bad = ~s.isin(list(mapping))
    if bad.any():
        raise ValueError(f"truth {path}: column 'noisy' must be true/false, found {sorted(set(s[bad]))[:5]}")
    return s.map(mapping).to_numpy(dtype=bool)


def read_truth(path, point_ids) -> pd.DataFrame:
    """The demo truth (point_id, true_class, noisy) of ``point_ids`` in their order; ValueError naming the file when
    a column or a point is missing or a point is listed twice."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"truth {path}: file does not exist")
    t = pd.read_csv(path, dtype={"point_id": str, "true_class": str})
    missing = [c for c in ("point_id", "true_class", "noisy") if c not in t.columns]
    if missing:
        raise ValueError(f"truth {path}: missing columns {missing} (columns: {list(t.columns)})")
    dup = t["point_id"].duplicated()
    if dup.any():
        raise ValueError(f"truth {path}: point ids listed more than once: {list(t.loc[dup, 'point_id'].unique()[:10])}")
    t["noisy"] = _parse_bool(t["noisy"], path)
    t = t.set_index("point_id")
    ids = pd.Index(point_ids)
    absent = ids[~ids.isin(t.index)]
    if len(absent):
        raise ValueError(f"truth {path}: {len(absent)} of {len(ids)} points have no truth row "
                         f"(first: {list(absent[:10])})")
    return t.loc[ids, ["true_class", "noisy"]].reset_index()


def flag_scores(df: pd.DataFrame, noisy, prunable) -> dict:
    """Precision and recall of ``pruned`` and ``flagged`` against planted noise (bool per row of ``df``).

    flag_precision: share of pruned points that are truly noisy; flag_recall: share of the noisy points whose given
    class is prunable that were pruned; flagged_precision / flagged_recall: the same for every flag and every noisy
    point. noisy_share (and noisy_share_prunable) is the precision a random flagger would reach.
    """
    noisy = np.asarray(noisy, dtype=bool)
    pruned = df["pruned"].to_numpy(dtype=bool)
    flagged = df["flagged"].to_numpy(dtype=bool)
    prunable_given = df["given"].isin(list(prunable)).to_numpy()
    return {
        "n_noisy": int(noisy.sum()),
        "noisy_share": _share(noisy.sum(), len(noisy)),
        "noisy_share_prunable": _share((noisy & prunable_given).sum(), prunable_given.sum()),
        "flag_precision": _share((pruned & noisy).sum(), pruned.sum()),
        "flag_recall": _share((pruned & noisy & prunable_given).sum(), (noisy & prunable_given).sum()),
        "flagged_precision": _share((flagged & noisy).sum(), flagged.sum()),
        "flagged_recall": _share((flagged & noisy).sum(), noisy.sum()),
    }


# --------------------------------------------------------------------------- rule


def run_label_issues(proba_csvs, classes, prunable, out_csv, out_joint_csv, out_json,
                     filter_by: str = "confident_learning", truth_csv=None, n_jobs: int = 1) -> dict:
    """Rule ``label_issues``: confident learning on the OOF (``test``) rows of the fold probability CSVs.

    Writes ``out_csv`` (point_id, fold, given, suggested, self_confidence, flagged, pruned), ``out_joint_csv`` (the
    raw confident joint: column ``given`` then one column per suggested class) and ``out_json`` (:func:`summarise`,
    plus :func:`flag_scores` with ``truth_csv``). Returns the JSON content.
    """
    classes = list(classes)
    prunable = list(prunable)
    df = read_fold_probas(proba_csvs, classes)
    test = oof_rows(df)
    probs = test[prob_columns(classes)].to_numpy(dtype=float)
    labels = test["label_idx"].to_numpy(dtype=np.int64)
    issues = find_issues(labels, probs, classes, prunable, filter_by=filter_by, n_jobs=n_jobs)
    table = pd.concat([test[["point_id", "fold"]].reset_index(drop=True),
                       issues[["given", "suggested", "self_confidence", "flagged", "pruned"]]], axis=1)
    cj = confident_joint(labels, probs, len(classes))
    joint = pd.DataFrame(cj, columns=classes)
    joint.insert(0, "given", classes)

    summary = summarise(issues, classes)
    summary.update({
        "filter_by": filter_by,
        "classes": classes,
        "prunable": prunable,
        "folds": sorted(int(f) for f in test["fold"].unique()),
        "n_confident_off_diagonal": int(cj.sum() - np.trace(cj)),
    })
    if truth_csv:
        truth = read_truth(truth_csv, test["point_id"])
        summary.update(flag_scores(issues, truth["noisy"].to_numpy(), prunable))
        summary["truth"] = str(truth_csv)
    log.info("label issues: %d points, %d flagged, %d pruned (%s)", summary["n_points"], summary["n_flagged"],
             summary["n_pruned"], filter_by)
    write_csv_atomic(out_csv, table)
    write_csv_atomic(out_joint_csv, joint)
    write_json(out_json, summary)
    return json_safe(summary)
