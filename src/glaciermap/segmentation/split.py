"""Geographic cross-validation split (DL4GAM, paper section 3.3), frozen in a file and extendable.

Glaciers (manifest rows with ``qc_status == "ok"``) are sorted by longitude and cut into ``n_folds``
test folds of equal cumulative area; a glacier belongs to the fold in which the midpoint of its
cumulative-area interval falls. For each fold the validation set is the adjacent ~``val_fraction`` of
the total area (on the one inner side for the two end folds, half on each side for middle folds) and
the training set is the rest, so validation glaciers buffer the test region from the training region.

Why longitude boundaries are stored: the cuts found in cumulative-area space are turned into
longitudes (half-way between the two glaciers on either side of a cut) and every role is then a pure
function of longitude. The frozen file keeps those longitudes, so a glacier added later gets its fold
and roles from its longitude alone and no existing glacier ever moves (retraining a fold is never
forced by an inventory update). Longitude is assumed not to wrap around +-180 degrees.

Intervals are closed on the west and open on the east: fold k holds ``west_k <= lon < east_k``. Two
glaciers with exactly equal longitude on either side of a cut therefore land on the same (eastern)
side, a deliberate small deviation from the pure cumulative-area rule that keeps the rule a function
of longitude.

File format: a CSV whose leading ``#`` lines hold the JSON metadata (format ``version``, revision,
fold boundaries as longitudes, creation and extension history), followed by one row per glacier
with ``glac_id, cenlon, area_km2, test_fold, role_0 .. role_{n-1}``.

Rule ``split`` (workflow/rules/segmentation/split.smk) runs :func:`run_split`: writes or extends the frozen file and
the fold table. :func:`split_hash` is the hash of the assignment the DAG is built with (common.smk).
"""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from glaciermap.io import write_csv_atomic, write_text_atomic
from glaciermap.results import read_manifest

log = logging.getLogger("glaciermap.segmentation.split")

FORMAT = "glaciermap-split"
VERSION = 1
ROLES = ("train", "val", "test", "none")
#: How glaciers added after the split was frozen get their roles (config ``split.added_glaciers``).
ADDED_MODES = ("test_only", "longitude")
SPLIT_COLUMNS = ["glac_id", "cenlon", "area_km2", "test_fold"]


class SplitError(ValueError):
    """The split file or the manifest cannot give a consistent split (the message says why)."""


def role_columns(n_folds: int) -> list[str]:
    return [f"role_{k}" for k in range(int(n_folds))]


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _ok_glaciers(manifest: pd.DataFrame) -> pd.DataFrame:
    """The splittable glaciers (qc_status ok) with string ids; fails loudly on unusable rows."""
    missing = [c for c in ("glac_id", "qc_status", "area_km2", "cenlon") if c not in manifest.columns]
    if missing:
        raise SplitError(f"manifest lacks column(s) {missing}")
    g = manifest.loc[manifest["qc_status"] == "ok", ["glac_id", "cenlon", "area_km2"]].copy()
    g["glac_id"] = g["glac_id"].astype(str)
    g["cenlon"] = pd.to_numeric(g["cenlon"], errors="coerce").astype(np.float64)
    g["area_km2"] = pd.to_numeric(g["area_km2"], errors="coerce").astype(np.float64)
    dup = g["glac_id"][g["glac_id"].duplicated()].unique()
    if len(dup):
        raise SplitError(f"manifest has duplicate glac_id(s) among ok glaciers: {sorted(dup)[:10]}")
    bad = g[~np.isfinite(g["cenlon"]) | ~np.isfinite(g["area_km2"]) | (g["area_km2"] <= 0)]
    if len(bad):
        raise SplitError(f"ok glacier(s) without finite longitude or positive area: {bad['glac_id'].tolist()[:10]}")
    return g.reset_index(drop=True)


def _lon_or_none(x: float):
    return None if not np.isfinite(x) else float(x)


def _none_to_inf(x, sign: float) -> float:
    return sign * np.inf if x is None else float(x)


def _cut_longitude(lon_sorted: np.ndarray, i: int) -> float:
    """Longitude boundary before sorted glacier i: half-way to its western neighbour (+-inf at the ends)."""
    if i <= 0:
        return -np.inf
    if i >= len(lon_sorted):
        return np.inf
    return 0.5 * (lon_sorted[i - 1] + lon_sorted[i])


def _boundaries(lon_sorted: np.ndarray, area_sorted: np.ndarray, n_folds: int, val_fraction: float,
                min_val: int = 0) -> list[dict]:
    """Per fold: test and validation longitude ranges from the equal-area cuts.

    Positions p in [0, 1] of cumulative area are mapped to "first glacier whose cumulative-area
    midpoint is >= p", and that index to a longitude between it and its western neighbour.
    A validation range holding fewer than ``min_val`` glaciers is widened one glacier at a time on its
    sides (alternately for a middle fold), never taking the fold's last training glacier: a fold without
    validation glaciers has no checkpoint selection and no calibration.
    """
    c = np.cumsum(area_sorted)
    mid = (c - 0.5 * area_sorted) / c[-1]

    def lon_at(p: float) -> float:
        if p <= 0.0:
            return -np.inf
        if p >= 1.0:
            return np.inf
        return _cut_longitude(lon_sorted, int(np.searchsorted(mid, p, side="left")))

    folds = []
    for k in range(n_folds):
        lo, hi = k / n_folds, (k + 1) / n_folds
        if n_folds == 1:
            v_lo, v_hi = lo, hi
        elif k == 0:
            v_lo, v_hi = lo, hi + val_fraction
        elif k == n_folds - 1:
            v_lo, v_hi = lo - val_fraction, hi
        else:
            v_lo, v_hi = lo - val_fraction / 2, hi + val_fraction / 2
        val_lon = [lon_at(max(v_lo, 0.0)), lon_at(min(v_hi, 1.0))]
        if n_folds > 1 and min_val > 0:
            val_lon = _widen_validation(lon_sorted, lon_at(lo), lon_at(hi), val_lon, int(min_val))
        folds.append({"fold": k,
                      "test_lon": [_lon_or_none(lon_at(lo)), _lon_or_none(lon_at(hi))],
                      "val_lon": [_lon_or_none(val_lon[0]), _lon_or_none(val_lon[1])]})
    return folds


def _widen_validation(lon_sorted: np.ndarray, tw: float, te: float, val_lon: list, min_val: int) -> list:
    """Validation longitudes [vw, ve) around the test range [tw, te) widened until they hold ``min_val`` glaciers."""
    n = len(lon_sorted)
    # index ranges: test [i_tw, i_te), validation [i_vw, i_tw) + [i_te, i_ve) (fold k holds west <= lon < east)
    i_tw, i_te = int(np.searchsorted(lon_sorted, tw, "left")), int(np.searchsorted(lon_sorted, te, "left"))
    i_vw, i_ve = int(np.searchsorted(lon_sorted, val_lon[0], "left")), int(np.searchsorted(lon_sorted, val_lon[1], "left"))
    west = i_tw > 0          # an end fold has validation on its inner side only
    east = i_te < n
    side = "east" if east else "west"
    while (i_tw - i_vw) + (i_ve - i_te) < min_val:
        n_train = n - (i_ve - i_vw)
        if n_train <= 1:
            break
        grow_west, grow_east = west and i_vw > 0, east and i_ve < n
        if not (grow_west or grow_east):
            break
        if grow_west and (side == "west" or not grow_east):
            i_vw -= 1
        else:
            i_ve += 1
        side = "east" if side == "west" else "west"
    vw = val_lon[0] if i_vw == int(np.searchsorted(lon_sorted, val_lon[0], "left")) else _cut_longitude(lon_sorted, i_vw)
    ve = val_lon[1] if i_ve == int(np.searchsorted(lon_sorted, val_lon[1], "left")) else _cut_longitude(lon_sorted, i_ve)
    if i_vw == 0:
        vw = -np.inf
    if i_ve >= n:
        ve = np.inf
    return [vw, ve]


def assign_by_longitude(lon, meta: dict) -> tuple[np.ndarray, dict]:
    """Test fold and per-fold roles of glaciers at longitudes ``lon`` under the stored boundaries.

    The only place roles are decided, so a new glacier is treated exactly like an original one.
    Returns (test_fold array, {"role_k": array of role strings}).
    """
    lon = np.asarray(lon, dtype=np.float64)
    test_fold = np.full(lon.shape, -1, dtype=np.int64)
    roles = {}
    for f in meta["folds"]:
        k = int(f["fold"])
        tw, te = _none_to_inf(f["test_lon"][0], -1), _none_to_inf(f["test_lon"][1], 1)
        vw, ve = _none_to_inf(f["val_lon"][0], -1), _none_to_inf(f["val_lon"][1], 1)
        is_test = (lon >= tw) & (lon < te)
        is_val = ((lon >= vw) & (lon < tw)) | ((lon >= te) & (lon < ve))
        test_fold[is_test] = k
        roles[f"role_{k}"] = np.where(is_test, "test", np.where(is_val, "val", "train")).astype(object)
    if (test_fold < 0).any():  # cannot happen with contiguous stored folds; guards a hand-edited file
        raise SplitError(f"longitudes {lon[test_fold < 0][:5].tolist()} fall in no test fold")
    return test_fold, roles


def leave_out(manifest: pd.DataFrame, uncovered=(), keep=()) -> pd.DataFrame:
    """The manifest with the ``uncovered`` glaciers (no scene can map them; see
    :func:`glaciermap.data.acquire.candidates`) marked ``qc_status = "no_imagery"``, except those in ``keep``
    (the glaciers of a frozen split, which never loses one): they are not split, and a fold neither trains,
    validates nor tests on a glacier it has no image of. Their outlines stay in the inventory, so in the cubes
    of their neighbours they are still glacier pixels (masked where the imagery has no data), not background.
    """
    out = set(map(str, uncovered)) - set(map(str, keep))
    if not out:
        return manifest
    m = manifest.copy()
    hit = m["glac_id"].astype(str).isin(out) & (m["qc_status"] == "ok")
    m.loc[hit, "qc_status"] = "no_imagery"
    if hit.any():
        ids = sorted(m.loc[hit, "glac_id"].astype(str))
        log.warning("split: %d glacier(s) left out, no scene covers their cube: %s", len(ids),
                    ", ".join(ids[:20]) + (" ..." if len(ids) > 20 else ""))
    return m


def make_split(manifest: pd.DataFrame, n_folds: int = 5, val_fraction: float = 0.1,
               min_val_glaciers: int = 0, uncovered=()) -> pd.DataFrame:
    """A new split of the manifest's ok glaciers (metadata with the longitude boundaries in ``.attrs["meta"]``),
    without the ``uncovered`` ones (:func:`leave_out`).

    Deterministic: ties in longitude are broken by glac_id, and no randomness is involved.
    """
    manifest = leave_out(manifest, uncovered)
    n_folds = int(n_folds)
    if n_folds < 1:
        raise SplitError(f"n_folds must be >= 1, got {n_folds}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise SplitError(f"val_fraction must be in [0, 1), got {val_fraction}")
    g = _ok_glaciers(manifest).sort_values(["cenlon", "glac_id"], kind="mergesort").reset_index(drop=True)
    if len(g) < n_folds:
        raise SplitError(f"{len(g)} ok glacier(s) cannot fill {n_folds} folds")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "revision": 0,
        "n_folds": n_folds,
        "val_fraction": float(val_fraction),
        "min_val_glaciers": int(min_val_glaciers),
        "rule": "sorted by longitude; equal cumulative-area test folds (cumulative-area midpoint); "
                "validation = adjacent area (one inner side for end folds, half each side otherwise), widened "
                "to min_val_glaciers glaciers; "
                "fold k holds west <= lon < east",
        "folds": _boundaries(g["cenlon"].to_numpy(), g["area_km2"].to_numpy(), n_folds, float(val_fraction),
                             int(min_val_glaciers)),
        "created": {"utc": _now(), "n_glaciers": int(len(g)), "total_area_km2": float(g["area_km2"].sum())},
        "history": [],
    }
    return _finish(g, meta)


def _finish(g: pd.DataFrame, meta: dict) -> pd.DataFrame:
    test_fold, roles = assign_by_longitude(g["cenlon"].to_numpy(), meta)
    out = g[["glac_id", "cenlon", "area_km2"]].copy()
    out["test_fold"] = test_fold
    for col in role_columns(meta["n_folds"]):
        out[col] = roles[col]
    out = out.sort_values(["cenlon", "glac_id"], kind="mergesort").reset_index(drop=True)
    out.attrs["meta"] = meta
    return out


def extend_split(existing: pd.DataFrame, manifest: pd.DataFrame, added: str = "longitude") -> pd.DataFrame:
    """Bring a frozen split up to date with the manifest without moving any existing glacier.

    Glaciers already in the split keep their stored row (fold, roles, longitude, area). New ok
    glaciers get their test fold from their longitude under the stored boundaries; their roles in the
    other folds depend on ``added``:

    - ``"longitude"``: the roles their longitude gives (train or val), as an original glacier would get;
      adding a glacier then changes the training or validation set of every other fold (retraining).
    - ``"test_only"``: role ``"none"`` in every other fold, so no fold's training or validation set
      changes and no model is retrained: the glacier is only mapped (tested) by its own fold's models.

    With ``"longitude"`` the ``"none"`` roles of glaciers added earlier under ``"test_only"`` are
    promoted to their longitude roles (recorded in the history as ``promoted``). Glaciers no longer ok
    in the manifest are dropped and logged. The change is recorded in ``meta["history"]`` (and the
    revision bumped) only when membership or roles changed.
    """
    if added not in ADDED_MODES:
        raise SplitError(f"added glaciers mode must be one of {ADDED_MODES}, got {added!r}")
    meta = existing.attrs.get("meta")
    if not meta:
        raise SplitError("existing split carries no boundary metadata (read it with read_split)")
    meta = json.loads(json.dumps(meta))  # deep copy: never mutate the caller's split
    g = _ok_glaciers(manifest)
    old_ids = set(existing["glac_id"].astype(str))
    new_ids = set(g["glac_id"])
    added_ids = sorted(new_ids - old_ids)
    dropped = sorted(old_ids - new_ids)
    kept = existing[existing["glac_id"].astype(str).isin(new_ids)].copy()
    new = g[g["glac_id"].isin(added_ids)].copy()
    rcols = role_columns(meta["n_folds"])
    if len(new):
        test_fold, roles = assign_by_longitude(new["cenlon"].to_numpy(), meta)
        new["test_fold"] = test_fold
        for col in rcols:
            new[col] = roles[col] if added == "longitude" else np.where(roles[col] == "test", "test", "none")
    promoted = []
    if added == "longitude":
        unused = (kept[rcols] == "none").any(axis=1).to_numpy()
        if unused.any():
            _, roles = assign_by_longitude(kept.loc[unused, "cenlon"].to_numpy(), meta)
            for col in rcols:
                kept.loc[unused, col] = roles[col]
            promoted = sorted(kept.loc[unused, "glac_id"].astype(str))
    cols = SPLIT_COLUMNS + role_columns(meta["n_folds"])
    out = pd.concat([kept[cols], new.reindex(columns=cols)], ignore_index=True)
    out["test_fold"] = out["test_fold"].astype(np.int64)
    out = out.sort_values(["cenlon", "glac_id"], kind="mergesort").reset_index(drop=True)
    if added_ids or dropped or promoted:
        meta["revision"] = int(meta.get("revision", 0)) + 1
        entry = {"utc": _now(), "added": added_ids, "dropped": dropped}
        if added_ids:
            entry["added_roles"] = added
        if promoted:
            entry["promoted"] = promoted
        meta.setdefault("history", []).append(entry)
        if dropped:
            log.warning("split: %d glacier(s) no longer ok in the manifest were dropped: %s",
                        len(dropped), ", ".join(dropped[:20]) + (" ..." if len(dropped) > 20 else ""))
        if added_ids:
            log.info("split: %d new glacier(s) added (%s)", len(added_ids),
                     "roles by longitude" if added == "longitude" else "test in their fold only")
        if promoted:
            log.info("split: %d glacier(s) promoted to their longitude roles", len(promoted))
    out.attrs["meta"] = meta
    out.attrs["added"] = added_ids
    out.attrs["dropped"] = dropped
    out.attrs["promoted"] = promoted
    return out


def write_split(split: pd.DataFrame, path: str | Path) -> None:
    """Write the split atomically: ``#``-prefixed JSON metadata, then the CSV table."""
    meta = split.attrs.get("meta")
    if not meta:
        raise SplitError("split carries no metadata; build it with make_split/extend_split")
    header = "".join(f"# {line}\n" for line in json.dumps(meta, indent=1, sort_keys=True).splitlines())
    cols = SPLIT_COLUMNS + role_columns(meta["n_folds"])
    body = split[cols].to_csv(index=False)
    write_text_atomic(path, header + body)


def read_split(path: str | Path) -> pd.DataFrame:
    """Read and check a split file; the metadata comes back in ``.attrs["meta"]``."""
    path = Path(path)
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    n_head = 0
    while n_head < len(lines) and lines[n_head].startswith("#"):
        n_head += 1
    try:
        meta = json.loads("".join(line[2:] if line.startswith("# ") else line[1:] for line in lines[:n_head]))
    except json.JSONDecodeError as e:
        raise SplitError(f"split file {path}: unreadable metadata header ({e})") from e
    if meta.get("format") != FORMAT:
        raise SplitError(f"split file {path}: not a {FORMAT} file")
    if int(meta.get("version", -1)) > VERSION:
        raise SplitError(f"split file {path}: version {meta.get('version')} is newer than this code ({VERSION})")
    n = int(meta["n_folds"])
    df = pd.read_csv(io.StringIO("".join(lines[n_head:])), dtype={"glac_id": str, **{c: str for c in role_columns(n)}})
    cols = SPLIT_COLUMNS + role_columns(n)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SplitError(f"split file {path}: missing column(s) {missing}")
    df = df[cols]
    problems = []
    if df["glac_id"].duplicated().any():
        problems.append(f"duplicate glac_id {df['glac_id'][df['glac_id'].duplicated()].tolist()[:5]}")
    for k, col in enumerate(role_columns(n)):
        bad = ~df[col].isin(ROLES)
        if bad.any():
            problems.append(f"{col} has unknown role(s) {sorted(df.loc[bad, col].astype(str).unique())}")
        if ((df[col] == "test") != (df["test_fold"] == k)).any():
            problems.append(f"{col} 'test' rows disagree with test_fold == {k}")
    if problems:
        raise SplitError(f"split file {path}: " + "; ".join(problems))
    df.attrs["meta"] = meta
    return df


def split_for(manifest: pd.DataFrame, path: str | Path, n_folds: int = 5, val_fraction: float = 0.1,
              write_back: bool = True, added: str = "longitude", min_val_glaciers: int = 0,
              drop_missing: bool = False, uncovered=()) -> pd.DataFrame:
    """The split to use: the frozen file extended to the manifest, or a new split written to ``path``.

    A frozen file made with other ``n_folds``/``val_fraction`` is an error, not silently replaced.
    With ``write_back`` the file is rewritten only when glaciers were added or dropped. ``uncovered``
    glaciers are not split, nor added to a frozen split (:func:`leave_out`); one the frozen split holds
    keeps its place (it is skipped by the image selection, as before the footprints were checked).
    """
    path = Path(path)
    if not path.exists():
        split = make_split(manifest, n_folds=n_folds, val_fraction=val_fraction, min_val_glaciers=min_val_glaciers,
                           uncovered=uncovered)
        write_split(split, path)
        return split
    existing = read_split(path)
    manifest = leave_out(manifest, uncovered, keep=existing["glac_id"].astype(str))
    meta = existing.attrs["meta"]
    if int(meta["n_folds"]) != int(n_folds) or not np.isclose(float(meta["val_fraction"]), float(val_fraction)):
        raise SplitError(f"split file {path} was made with n_folds={meta['n_folds']}, val_fraction={meta['val_fraction']}"
                         f" but n_folds={n_folds}, val_fraction={val_fraction} were asked; delete it to re-split")
    # a file written before min_val_glaciers existed keeps its (frozen) validation ranges
    if "min_val_glaciers" in meta and int(meta["min_val_glaciers"]) != int(min_val_glaciers):
        raise SplitError(f"split file {path} was made with min_val_glaciers={meta['min_val_glaciers']} but "
                         f"{min_val_glaciers} was asked; delete it to re-split (its folds would change)")
    split = extend_split(existing, manifest, added=added)
    dropped = split.attrs["dropped"]
    if dropped and not drop_missing:
        # a frozen split never loses glaciers by accident (an emptied or truncated inventory would otherwise erase it)
        raise SplitError(f"{len(dropped)} of the {len(existing)} glaciers of the frozen split {path} are no longer ok "
                         f"in the inventory ({', '.join(dropped[:10])}{' ...' if len(dropped) > 10 else ''}); the split "
                         "keeps them: restore them in the inventory, or set split.drop_missing: true to drop them from "
                         "the frozen split (the folds they trained or validated are retrained)")
    if write_back and (split.attrs["added"] or split.attrs["dropped"] or split.attrs["promoted"]):
        write_split(split, path)
    return split


def fold_table(split: pd.DataFrame) -> pd.DataFrame:
    """Per fold: longitude range of its test glaciers and count/area of test, validation and training."""
    n = len([c for c in split.columns if c.startswith("role_")])
    total = float(split["area_km2"].sum())
    rows = []
    for k in range(n):
        role = split[f"role_{k}"]
        test = split[role == "test"]
        row = {"fold": k,
               "lon_min": float(test["cenlon"].min()) if len(test) else np.nan,
               "lon_max": float(test["cenlon"].max()) if len(test) else np.nan}
        for r in ("test", "val", "train"):
            sel = split[role == r]
            row[f"n_{r}"] = int(len(sel))
            row[f"area_{r}_km2"] = float(sel["area_km2"].sum())
            row[f"area_{r}_pct"] = 100.0 * row[f"area_{r}_km2"] / total if total > 0 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------- rule split


def run_split(manifest_csv, split_csv, folds_csv, n_folds: int, val_fraction: float, expected_hash: str = "",
              added: str = "longitude", min_val_glaciers: int = 0, drop_missing: bool = False,
              uncovered=()) -> None:
    """Write or extend the frozen split (never reshuffles an existing glacier) and the fold table; the
    ``uncovered`` glaciers (no scene footprint covers their cube at the training epoch) are left out."""
    split = split_for(read_manifest(manifest_csv), split_csv, n_folds=n_folds, val_fraction=val_fraction, added=added,
                      min_val_glaciers=min_val_glaciers, drop_missing=drop_missing, uncovered=uncovered)
    if expected_hash and split_hash(split) != expected_hash:
        raise RuntimeError(f"split {split_csv} differs from the one the DAG was built with; re-run snakemake")
    write_csv_atomic(folds_csv, fold_table(split))


def split_hash(split: pd.DataFrame) -> str:
    """Hash of the glacier -> (test fold, roles) assignment (what the DAG depends on)."""
    import hashlib

    cols = [c for c in split.columns if c == "glac_id" or c == "test_fold" or c.startswith("role_")]
    return hashlib.sha1(split[cols].sort_values("glac_id").to_csv(index=False).encode()).hexdigest()[:16]
