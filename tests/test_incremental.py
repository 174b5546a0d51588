"""Incremental reruns: the exact set of jobs a dry run plans after a new scene, a new epoch or a new glacier.

All tests start from the finished tiny modelling run (``model_run``). The planned jobs are parsed from the
dry run's job list (rule name + wildcards of every job), so an extra or a missing job fails the test.
Inputs and config are mutated in place (the absolute paths the jobs recorded must stay the same) and restored
from a pristine copy afterwards; the 900 MB of results are never written by a dry run and are checked to be
untouched; the one test that runs real jobs restores the few result folders it changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import yaml
from shapely.geometry import box, mapping

from conftest import planned_jobs, run_snakemake

DATA_JOBS = ("acquire", "cube")
# the model variants of the tiny run (conftest.model_run), all mapped at both change epochs (the 3-class one for its
# debris cover), the binary ones, those with area-change products; labels from the 3-class model's label set
MODELS = ("dl4gam", "dl4gam_no_dhdt", "rgb_dem", "ice_debris")
AREA_MODELS = ("dl4gam", "rgb_dem")
MEMBERS = {"dl4gam": 2, "dl4gam_no_dhdt": 1, "rgb_dem": 1, "ice_debris": 2}
# region-wide rules that take every glacier: once (qc, the band-ratio baseline, the Table 7 comparison) or once
# per area-change model (areas, rates, truth comparison, outlines, figures, summary)
REGION_JOBS = {(r, "") for r in ("qc", "baseline", "compare", "all")} | {
    (r, f"model={m}") for r in ("areas", "change", "evaluate", "outlines", "figures", "summary") for m in AREA_MODELS}


def infer_jobs(folds, epochs, models=None) -> set:
    """Inference jobs; by default of every model (each maps the change epochs)."""
    return {("infer", f"model={m}, fold={k}, epoch={e}") for e in epochs for m in (models or MODELS) for k in folds}


def confusion_jobs(models=MODELS) -> set:
    return {("confusion", f"model={m}") for m in models}


# the permutation importance of the 3-class model (conftest: importance.models), over its test glaciers at t0
IMPORTANCE_JOBS = {("importance", "model=ice_debris")}
# the debris method on it (conftest: debris): cover per glacier (its predictions at both change epochs) and the
# method summary; the threshold baseline (the test glaciers' t0 cubes and labels, the model's scores); the random
# tile split (every t0 cube as an ancient input, the model's geographic scores)
DEBRIS_JOBS = {("cover", "model=ice_debris"), ("debris_summary", "model=ice_debris")}
THRESHOLD_JOBS = {("thresholds", "")}
RANDOM_SPLIT_JOBS = {("random_split", "model=ice_debris")}
# the outline issues read the DL4GAM t0 predictions and calibrations; the facies summary embeds them
OUTLINE_JOBS = {("outline_issues", "model=dl4gam"), ("facies_summary", "")}
# the whole facies chain of the model run (3 folds, map years 2015 and 2023): the points are validated against the
# inventory, so a changed inventory re-runs it
FACIES_JOBS = ({("points", ""), ("samples", ""), ("label_issues", ""), ("smb", ""), ("facies_summary", "")}
               | {("facies_calibrate", f"round={r}") for r in ("raw", "clean")}
               | {("facies_maps", f"year={y}") for y in (2015, 2023)}
               | {("facies_train", f"round={r}, facies_fold={k}") for r in ("raw", "clean") for k in range(3)})


def label_jobs(glaciers, epochs=("inventory",)) -> set:
    return {("labels", f"labelset=ice_debris, epoch={e}, glacier={g}") for g in glaciers for e in epochs}


def _lists(work) -> dict:
    """The file lists of the finished run (rule file_list): the job's wildcards (digest left out) -> the paths the
    list names."""
    from glaciermap.data.file_list import read_file_lists

    root, out = work / "results/tiny/lists", {}
    for p in root.rglob("*.txt"):
        *kind, epochs, name = p.relative_to(root).parts
        stem, track, _digest = name.removesuffix(".txt").rsplit(".", 2)
        group, role = stem.split("_", 1)
        out[f"kind={'/'.join(kind)}, epochs={epochs}, group={group}, role={role}, track={track}"] = set(
            read_file_lists(p))
    assert out, "the finished run has file lists"
    return out


def glacier_files(glaciers, epochs, labels=False) -> set:
    """The files the data jobs (and, ``labels``, the label jobs) of these glaciers and epochs re-make."""
    out = {f"results/tiny/{d}/{g}/{e}.{x}" for d, x in (("scenes", "nc"), ("selection", "csv"), ("cubes", "nc"))
           for g in glaciers for e in epochs}
    return out | ({f"results/tiny/labels/ice_debris/{e}/{g}.tif" for g in glaciers for e in epochs} if labels else set())


def lists_naming(work, files) -> set:
    """The content lists that name any of ``files``: re-made when those are. (Membership lists, the training
    inputs, never are: their files are ancient inputs.)"""
    files = set(files)
    return {("file_list", w) for w, paths in _lists(work).items() if "track=content" in w and paths & files}


def lists_gaining(work, fold=None) -> set:
    """The lists a new glacier joins (either track: their input sets change): every region list of all glaciers
    and, given its test fold (it is in the split), that fold's test lists and the region's lists of the split's
    glaciers (role test: what areas, outlines and compare read)."""
    return {("file_list", w) for w in _lists(work)
            if "group=region, role=all," in w
            or (fold is not None and (f"group=fold{fold}, role=test," in w or "group=region, role=test," in w))}


def calibrate_jobs(folds, models=MODELS) -> set:
    return {("calibrate", f"model={m}, fold={k}") for m in models for k in folds}


def diff(planned, expected) -> str:
    return f"unexpected: {sorted(planned - expected)}; missing: {sorted(expected - planned)}"


def _no_digest(jobs) -> set:
    """Planned jobs with the file lists' digest wildcard left out (a list of other glaciers has another digest)."""
    return {(r, re.sub(r", digest=[0-9a-f]+$", "", w) if r == "file_list" else w) for r, w in jobs}


def dry_run(work, *args, digests=False):
    jobs = planned_jobs(run_snakemake(work, "-n", *args))
    return jobs if digests else _no_digest(jobs)


def data_jobs(glaciers, epochs) -> set:
    return {(r, f"glacier={g}, epoch={e}") for r in DATA_JOBS for g in glaciers for e in epochs}


def _snapshot(results: Path) -> dict:
    return {str(p.relative_to(results)): p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()}


@contextlib.contextmanager
def mutable(work: Path, tmp: Path, restore_results=()):
    """Mutate ``work``'s inputs/config (and, listed, result folders) inside the block; restore them afterwards."""
    backup = tmp / "pristine"
    keep = ["inputs", "config.yaml", ".snakemake", *restore_results]
    for name in keep:
        src = work / name
        (shutil.copytree(src, backup / name, symlinks=True) if src.is_dir() else shutil.copy2(src, backup / name))
    before = _snapshot(work / "results")
    try:
        yield work
    finally:
        for name in keep:
            dst = work / name
            shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
            os.replace(backup / name, dst)
    after = _snapshot(work / "results")
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert not changed, f"result files changed outside the restored folders: {sorted(changed)[:10]}"


@pytest.fixture(scope="module")
def base(model_run):
    work, proc = model_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert dry_run(work) == set(), "the finished run must be up to date before the incremental tests"
    split = pd.read_csv(work / "results/tiny/split/split.csv", comment="#", dtype={"glac_id": str})
    return work, split


def _roles(split, g):
    return {int(c.split("_")[1]): split.loc[split.glac_id == g, c].item() for c in split.columns if c.startswith("role_")}


def _config(work):
    return yaml.safe_load((work / "config.yaml").read_text())


def _write_config(work, cfg):
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))


# ---------------------------------------------------------------------------------------------------- catalog edits


def _s2_items(catalog: Path) -> dict:
    return {p.stem: p for p in (catalog / "sentinel-2-l2a").glob("*/*.json")}


def add_scene(catalog: Path, template_id: str, new_id: str, when: datetime, bbox_ll=None) -> None:
    """A new STAC item: a copy of ``template_id`` (same COGs) with a new id, datetime and, given, footprint."""
    coll = catalog / "sentinel-2-l2a"
    item = json.loads(_s2_items(catalog)[template_id].read_text())
    item["id"] = new_id
    item["properties"]["datetime"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    if bbox_ll is not None:
        item["bbox"] = list(bbox_ll)
        item["geometry"] = mapping(box(*bbox_ll))
    (coll / new_id).mkdir()
    (coll / new_id / f"{new_id}.json").write_text(json.dumps(item, indent=1))
    c = json.loads((coll / "collection.json").read_text())
    c["links"].append({"rel": "item", "href": f"./{new_id}/{new_id}.json", "type": "application/geo+json"})
    (coll / "collection.json").write_text(json.dumps(c, indent=1))


def _search_boxes(work) -> dict:
    """glacier -> (epoch -> lon/lat search box of its cube), as the acquisition computes it."""
    from glaciermap.data.acquire import search_extent
    from glaciermap.config import validate_config
    from glaciermap.data.inventory import glacier_list

    cfg = validate_config(_config(work))
    g = glacier_list(cfg)
    g = g[g.qc_status == "ok"].set_index("glac_id", drop=False)
    return {gid: search_extent(g.loc[gid], cfg, "2023")[1] for gid in g.index}


def _lonely_box(boxes: dict):
    """(glacier, small lon/lat box) inside one glacier's search box and outside every other's."""
    for gid, (x0, y0, x1, y1) in boxes.items():
        others = [box(*b) for o, b in boxes.items() if o != gid]
        for fx in (0.02, 0.5, 0.98):
            for fy in (0.02, 0.5, 0.98):
                cx, cy = x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)
                cand = box(cx - 1e-4, cy - 1e-4, cx + 1e-4, cy + 1e-4)
                if not any(o.intersects(cand) for o in others):
                    return gid, cand.bounds
    raise AssertionError("no place covered by a single glacier's cube in the tiny region")


# ---------------------------------------------------------------------------------------------------- a. new scene


def test_new_scene_for_one_glacier_reruns_that_glacier_and_its_inference_only(base, tmp_path):
    work, split = base
    gid, bb = _lonely_box(_search_boxes(work))
    roles = _roles(split, gid)
    test_fold = next(k for k, r in roles.items() if r == "test")
    with mutable(work, tmp_path):
        template = next(i for i in sorted(_s2_items(work / "inputs/catalog")) if "_2023" in i)
        add_scene(work / "inputs/catalog", template, "S2A_32TMS_20230901_9_L2A", datetime(2023, 9, 1, 10, 30), bb)
        jobs = dry_run(work)
        # a new scene is only a changed param (the glacier's candidate scene ids): invisible to mtime triggers
        assert dry_run(work, "--rerun-triggers", "mtime") == set()
    # validation glaciers are mapped at t0 only (calibration): a 2023 cube feeds its test fold's inference alone
    lists = lists_naming(work, glacier_files([gid], ["2023"]))
    assert {w for _, w in lists} >= {f"kind=cubes, epochs=2023, group=fold{test_fold}, role=test, track=content",
                                    "kind=cubes, epochs=inventory+2023, group=region, role=test, track=content"}
    expected = (data_jobs([gid], ["2023"]) | lists | infer_jobs([test_fold], ["2023"])
                | REGION_JOBS | DEBRIS_JOBS)
    assert jobs == expected, diff(jobs, expected)


def test_missing_scene_file_and_its_return_rerun_the_glaciers_it_covers(base, tmp_path):
    """A scene file that goes missing (or comes back after a run that dropped it) re-runs the acquisitions that
    consider that scene, and nothing for glaciers that never see it."""
    work, _ = base
    from glaciermap.data.acquire import candidate_ids
    from glaciermap.config import validate_config
    from glaciermap.data.inventory import glacier_list

    cfg = validate_config(_config(work))
    g = glacier_list(cfg)
    g = g[g.qc_status == "ok"].set_index("glac_id", drop=False)
    users = {(gid, e) for gid in g.index for e in cfg["epochs"] for i in candidate_ids(g.loc[gid], cfg, e)}
    by_item = {}
    for gid in g.index:
        for e in cfg["epochs"]:
            for i in candidate_ids(g.loc[gid], cfg, e):
                by_item.setdefault(i, set()).add((gid, e))
    item, covered = min(by_item.items(), key=lambda kv: (len(kv[1]), kv[0]))  # the scene of the fewest glaciers
    assert covered < users
    item_json = _s2_items(work / "inputs/catalog")[item]
    b11 = (item_json.parent / json.loads(item_json.read_text())["assets"]["B11"]["href"]).resolve()
    with mutable(work, tmp_path):
        b11.unlink()
        gone = dry_run(work)
        acquire = {w for r, w in gone if r == "acquire"}
        assert acquire == {f"glacier={gid}, epoch={e}" for gid, e in covered}, sorted(acquire)
    # restored (the file "comes back"): the token is the one the finished run recorded, nothing to do
    assert dry_run(work) == set()


def test_new_scene_in_the_training_epoch_does_not_retrain(base, tmp_path):
    work, split = base
    gid, bb = _lonely_box(_search_boxes(work))
    roles = _roles(split, gid)
    folds = [k for k, r in roles.items() if r in ("test", "val")]
    with mutable(work, tmp_path):
        t0_date = gpd.read_file(work / "inputs/inventory.gpkg").set_index("glac_id").loc[gid, "src_date"]
        year = str(t0_date)[:4]
        template = next(i for i in sorted(_s2_items(work / "inputs/catalog")) if f"_{year}" in i)
        add_scene(work / "inputs/catalog", template, f"S2A_32TMS_{year}0901_9_L2A",
                  datetime(int(year), 9, 1, 10, 30), bb)
        jobs = dry_run(work)
    # ... unless asked, once the new cubes exist: --forcerun patches normalise train retrains every fold.
    # (In the same invocation as the data jobs Snakemake 9 ignores --forcerun for jobs downstream of a
    # re-running job through ancient() inputs, hence two steps; README "Incremental runs".)
    forced = dry_run(work, "--forcerun", "patches", "normalise", "train")
    # one inference job per model, fold and epoch writes the fold's validation predictions too (at t0), so every
    # fold whose t0 inference re-runs re-calibrates (from identical validation predictions unless the glacier is one)
    # the content lists that name its t0 files: its test and validation folds' (cubes, labels) and the region's
    lists = lists_naming(work, glacier_files([gid], ["inventory"], labels=True))
    assert {w for _, w in lists} >= {f"kind={kd}, epochs=inventory, group=fold{k}, role={r}, track=content"
                                    for kd in ("cubes", "labels/ice_debris") for k, r in roles.items()
                                    if r in ("test", "val")}
    expected = (data_jobs([gid], ["inventory"]) | label_jobs([gid]) | lists | infer_jobs(folds, ["inventory"])
                | calibrate_jobs(folds) | confusion_jobs() | IMPORTANCE_JOBS | REGION_JOBS | DEBRIS_JOBS
                | THRESHOLD_JOBS | RANDOM_SPLIT_JOBS | OUTLINE_JOBS)
    assert jobs == expected, diff(jobs, expected)
    assert not {r for r, _ in jobs} & {"patches", "normalise", "train", "split", "inventory"}
    assert not {w for r, w in jobs if r == "file_list" and "track=membership" in w}
    rules = {r for r, _ in forced}
    assert {"patches", "normalise", "train", "calibrate"} <= rules, sorted(forced)
    assert {w for r, w in forced if r == "train"} == {f"model={n}, fold={k}, member={m}" for n in MODELS
                                                      for k in range(2) for m in range(MEMBERS[n])}
    assert {w for r, w in forced if r == "patches"} == {"stride=16", "stride=32"}
    assert not rules & set(DATA_JOBS)


# ---------------------------------------------------------------------------------------------------- b. new epoch


def test_new_epoch_runs_data_and_inference_without_retraining(base, tmp_path):
    work, split = base
    glaciers = list(split.glac_id)
    with mutable(work, tmp_path):
        for name, p in sorted(_s2_items(work / "inputs/catalog").items()):
            if "_2023" in name:
                d = datetime.fromisoformat(json.loads(p.read_text())["properties"]["datetime"].replace("Z", ""))
                add_scene(work / "inputs/catalog", name, name.replace("_2023", "_2024"), d + timedelta(days=366))
        cfg = _config(work)
        cfg["epochs"]["2024"] = {"start": "2024-08-01", "end": "2024-10-15", "dhdt": "2015-2019"}
        _write_config(work, cfg)
        all_epochs = "+".join(_config(work)["epochs"])  # as the workflow reads them
        jobs = dry_run(work)
        # switching the change period to the new epoch re-computes rates (and the aggregates) only
        cfg["change"] = {"to": "2024"}
        _write_config(work, cfg)
        jobs_to_2024 = dry_run(work)
    folds = sorted({int(c.split("_")[1]) for c in split.columns if c.startswith("role_")})
    # the area-change models map every epoch; a model that is only compared maps the change epochs
    # new lists: the folds' test cubes at 2024 (inference) and the region's of every epoch (qc, areas, baseline, ...)
    lists = ({("file_list", f"kind=cubes, epochs=2024, group=fold{k}, role=test, track=content") for k in folds}
             | {("file_list", f"kind={kd}, epochs={all_epochs}, group=region, role=all, track=content")
                for kd in ("cubes", "scenes", "selection")}
             | {("file_list", f"kind=cubes, epochs={all_epochs}, group=region, role=test, track=content")})
    expected = (data_jobs(glaciers, ["2024"]) | lists | infer_jobs(folds, ["2024"], AREA_MODELS) | REGION_JOBS)
    assert jobs == expected, diff(jobs, expected)
    # same jobs, plus the compared-only and the debris model's inference at the new change epoch, and the debris cover
    # (and the lists of the new change epochs: the comparison's, the debris cover's)
    lists_to = ({("file_list", "kind=cubes, epochs=inventory+2024, group=region, role=test, track=content")}
                | {("file_list", f"kind=cubes, epochs=inventory+2024, group=fold{k}, role=test, track=content")
                   for k in folds})
    expected_to = jobs | lists_to | infer_jobs(folds, ["2024"], ["dl4gam_no_dhdt", "ice_debris"]) | DEBRIS_JOBS
    assert jobs_to_2024 == expected_to, diff(jobs_to_2024, expected_to)


def test_switching_change_period_reruns_the_rates_only(base, tmp_path):
    """Same values re-run nothing; a degenerate period (t1 = t0) stops before any job, naming the key. (Switching
    t1 to a new epoch re-runs the rates and aggregates only: test_new_epoch_runs_data_and_inference_without_retraining.)"""
    work, _ = base
    with mutable(work, tmp_path):
        cfg = _config(work)
        cfg["change"] = {"from": "inventory", "to": "2023", "snr_min": 1.0}
        _write_config(work, cfg)
        assert dry_run(work) == set()            # same values: nothing to do
        cfg["change"]["to"] = "inventory"
        _write_config(work, cfg)
        proc = run_snakemake(work, "-n")
    assert proc.returncode != 0
    assert "change.to: 'inventory' is the same epoch as change.from" in proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------------- c. new glacier


def _add_glacier(work, split) -> tuple[str, int]:
    """A new glacier inside the imagery, west of the others (so its test fold is known): (id, test fold)."""
    inv_path = work / "inputs" / "inventory.gpkg"
    inv = gpd.read_file(inv_path)
    ok = inv[inv["glac_id"].isin(split.glac_id)].to_crs("EPSG:32632")
    x0, y0, x1, y1 = ok.total_bounds
    new = gpd.GeoDataFrame({"glac_id": ["NEW-1"], "src_date": ["2015-08-20"], "area_km2": [0.25]},
                           geometry=[box(x0 - 900, y0 - 900, x0 - 400, y0 - 400)], crs="EPSG:32632")
    pd.concat([inv, new.to_crs(inv.crs)], ignore_index=True).pipe(gpd.GeoDataFrame, crs=inv.crs).to_file(
        inv_path, layer="glaciers")
    westmost = split.sort_values("cenlon").iloc[0]
    return "NEW-1", int(westmost.test_fold)


def test_new_glacier_is_mapped_by_its_fold_without_retraining(base, tmp_path):
    work, split = base
    with mutable(work, tmp_path, restore_results=["results/tiny/inventory", "results/tiny/split",
                                                  "results/tiny/logs", "results/tiny/benchmarks"]):
        gid, fold = _add_glacier(work, split)
        jobs = dry_run(work)
        epochs = ["inventory", "2023"]
        # its fold's inference (every epoch) and, since that job re-writes the fold's t0 validation
        # predictions, its fold's calibration; the other fold, patches, normalise and train do not run
        # the test lists of its fold (cubes at both epochs, the label raster at t0) and the region's lists take it
        lists = lists_gaining(work, fold)
        assert ("file_list", f"kind=labels/ice_debris, epochs=inventory, group=fold{fold}, role=test, "
                             "track=content") in lists
        expected = (data_jobs([gid], epochs) | label_jobs([gid]) | lists | infer_jobs([fold], epochs)
                    | calibrate_jobs([fold])
                    | confusion_jobs() | IMPORTANCE_JOBS | {("inventory", ""), ("split", "")} | REGION_JOBS
                    | DEBRIS_JOBS | THRESHOLD_JOBS | RANDOM_SPLIT_JOBS | OUTLINE_JOBS | FACIES_JOBS)
        assert jobs == expected, diff(jobs, expected)
        # the lists it joins are new files (their names' digests change), so their readers miss them and pull them in
        old = {p.name for p in (work / "results/tiny/lists").rglob("*.txt")}
        new = {w.split("digest=")[1] for r, w in dry_run(work, digests=True) if r == "file_list"}
        assert new and not any(d in name for d in new for name in old), sorted(new)
        # with mtime-only triggers the plan is the same: the new glacier's files are missing outputs
        assert dry_run(work, "--rerun-triggers", "mtime") == expected
        # the split job extends the frozen split: the new glacier is test in its fold, unused elsewhere;
        # after it has run (a real run of inventory + split), the next plan still trains nothing
        proc = run_snakemake(work, "results/tiny/split/folds.csv")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        from glaciermap.segmentation.split import read_split

        ext = read_split(work / "results/tiny/split/split.csv")
        row = ext.set_index("glac_id").loc[gid]
        assert row.test_fold == fold
        assert [row[f"role_{k}"] for k in range(2)] == ["test" if k == fold else "none" for k in range(2)]
        old = ext[ext.glac_id != gid].reset_index(drop=True)
        pd.testing.assert_frame_equal(old[list(split.columns)], split, check_dtype=False)   # nobody moved
        assert ext.attrs["meta"]["history"][-1]["added"] == [gid]
        after = dry_run(work)
        assert after == expected - {("inventory", ""), ("split", "")}


def test_new_glacier_outside_the_imagery_is_not_split_and_trains_or_maps_nothing(base, tmp_path):
    """Issue 11: a glacier that no scene footprint covers at the training epoch is left out of the split, so no
    fold trains, validates or tests on it: only its data jobs (which record why it is skipped) and the region-wide
    jobs that read the inventory run; after the split job, the frozen split is unchanged."""
    work, split = base
    with mutable(work, tmp_path, restore_results=["results/tiny/inventory", "results/tiny/split",
                                                  "results/tiny/logs", "results/tiny/benchmarks", "results/tiny/scenes",
                                                  "results/tiny/cubes", "results/tiny/selection", "results/tiny/qc",
                                                  "results/tiny/lists"]):
        inv_path = work / "inputs" / "inventory.gpkg"
        inv = gpd.read_file(inv_path)
        x0, y0, x1, y1 = inv.to_crs("EPSG:32632").total_bounds
        far = gpd.GeoDataFrame({"glac_id": ["FAR-1"], "src_date": ["2015-08-20"], "area_km2": [0.25]},
                               geometry=[box(x1 + 9000, y0, x1 + 9500, y0 + 500)], crs="EPSG:32632")
        pd.concat([inv, far.to_crs(inv.crs)], ignore_index=True).pipe(gpd.GeoDataFrame, crs=inv.crs).to_file(
            inv_path, layer="glaciers")
        proc = run_snakemake(work, "-n")
        assert "1 glacier(s) left out of the cross-validation split" in proc.stderr and "FAR-1" in proc.stderr
        jobs = _no_digest(planned_jobs(proc))
        # the region's lists of every glacier take it (qc, areas, baseline, the random split); no fold's list does
        expected = (data_jobs(["FAR-1"], ["inventory", "2023"]) | label_jobs(["FAR-1"]) | lists_gaining(work)
                    | {("inventory", ""), ("split", "")} | REGION_JOBS | RANDOM_SPLIT_JOBS | FACIES_JOBS
                    | DEBRIS_JOBS)
        # the outline issues and the threshold baseline read split glaciers only: they do not run
        assert not {j for j in jobs if j[0] in ("train", "train_fold", "infer", "calibrate", "patches")}, jobs
        assert jobs == expected, diff(jobs, expected)
        proc = run_snakemake(work, "results/tiny/split/folds.csv", "results/tiny/qc/skipped.csv")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        from glaciermap.segmentation.split import read_split

        after = read_split(work / "results/tiny/split/split.csv")
        pd.testing.assert_frame_equal(after[list(split.columns)], split, check_dtype=False)
        skipped = pd.read_csv(work / "results/tiny/qc/skipped.csv", dtype=str)
        assert "FAR-1" in set(skipped.iloc[:, 0]), skipped


def test_promoting_added_glaciers_retrains_only_the_folds_whose_training_sets_change(base, tmp_path):
    work, split = base
    with mutable(work, tmp_path, restore_results=["results/tiny/inventory", "results/tiny/split",
                                                  "results/tiny/logs", "results/tiny/benchmarks"]):
        gid, fold = _add_glacier(work, split)
        assert run_snakemake(work, "results/tiny/split/folds.csv").returncode == 0
        cfg = _config(work)
        cfg["split"]["added_glaciers"] = "longitude"
        _write_config(work, cfg)
        from glaciermap.segmentation.split import assign_by_longitude, read_split

        meta = read_split(work / "results/tiny/split/split.csv").attrs["meta"]
        inv = gpd.read_file(work / "inputs/inventory.gpkg").set_index("glac_id").loc[[gid]]
        lon = inv.to_crs("EPSG:32632").centroid.to_crs(4326).x
        _, roles = assign_by_longitude(lon.to_numpy(), meta)
        changed = sorted(k for k in range(2) if roles[f"role_{k}"][0] in ("train", "val"))
        assert changed  # with two folds the new glacier trains or validates the other fold
        # the split job re-runs first; Snakemake evaluates the fold jobs' params once it has run
        proc = run_snakemake(work, "results/tiny/split/folds.csv")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        jobs = dry_run(work)
    trained = {w for r, w in jobs if r == "train"}
    assert trained == {f"model={n}, fold={k}, member={m}" for n in MODELS for k in changed for m in range(MEMBERS[n])}
    assert {w for r, w in jobs if r == "normalise"} == {f"model={n}, fold={k}" for n in MODELS for k in changed}
    assert "patches" in {r for r, _ in jobs}
    # the training lists re-made are those of the changed folds (the new glacier's role there)
    # (and the region's lists: of every training glacier, which the patch tables read; of every glacier, which the
    # random split reads)
    membership = {w for r, w in jobs if r == "file_list" and "track=membership" in w}
    assert membership and all(any(f"group=fold{k}," in w for k in changed) or "group=region, role=train+val," in w
                              or "group=region, role=all," in w for w in membership), sorted(membership)


# ---------------------------------------------------------------------------------------------------- d. config edits

MODEL_CHAIN = {"infer", "calibrate", "confusion", "importance", "areas", "change", "evaluate", "outlines", "figures",
               "summary", "compare", "all"}
# what follows every model's scores: the debris method (cover, its summary), the baseline that prints the model's
# pixel counts beside its own, the random split (its inflation over the geographic scores)
DEBRIS_CHAIN = {"cover", "debris_summary", "thresholds", "random_split"}
# the outline issues of the DL4GAM model (its t0 predictions and calibrations) and the facies summary embedding them
OUTLINE_CHAIN = {"outline_issues", "facies_summary"}


def _set(cfg, dotted, value):
    *path, key = dotted.split(".")
    node = cfg
    for p in path:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    node[int(key) if isinstance(node, list) else key] = value


@pytest.mark.parametrize("key, value, rules, only_model", [
    # a value of one section re-runs exactly the rules that use it (through params) and what depends on their outputs
    ("change.snr_min", 0.5, {"change", "baseline", "evaluate", "figures", "summary", "compare", "all"}, None),
    ("outlines.min_patch_px", 5, {"outlines", "figures", "all"}, None),
    ("figures.dpi", 60, {"figures", "all"}, None),
    # how jobs run changes no result: nothing re-runs
    ("execution.worker", False, set(), None),
    ("execution.worker_jobs_per_child", 1, set(), None),
    # (the area-change summary embeds the debris summary, which takes the importance)
    ("importance.n_repeats", 3, {"importance", "debris_summary", "summary", "all"}, None),
    ("evaluation.debris_min_fraction", 0.5, {"compare", "summary", "all"}, None),
    ("area_change.compare", ["dl4gam", "rgb_dem"], {"compare", "summary", "all"}, None),
    ("calibration.ece_bins", 10, MODEL_CHAIN - {"infer"} | DEBRIS_CHAIN | OUTLINE_CHAIN, None),
    ("infer.blend", "hann", MODEL_CHAIN | DEBRIS_CHAIN | OUTLINE_CHAIN, None),
    ("train.lr", 0.0003, MODEL_CHAIN | DEBRIS_CHAIN | OUTLINE_CHAIN | {"train", "ensemble"}, None),
    # one model's entry re-runs that model's chain only (and the comparison and aggregates that take it)
    ("models.rgb_dem.epochs", 2, MODEL_CHAIN - {"importance"} | {"train", "ensemble"}, "rgb_dem"),
    # reading the training store instead of the cubes: the store is made (from the folds' lists of test cubes, new
    # files), and the model retrains (float16 inputs)
    ("models.rgb_dem.training_data", "store", MODEL_CHAIN - {"importance"} | {"file_list", "training_store", "train",
                                                                                "ensemble"},
     "rgb_dem"),
    # a feature setting re-makes every cube and what reads cubes, but retrains nothing (ancient training inputs)
    ("features.curvature_clip", 10.0, {"cube", "qc", "baseline", "labels", "file_list"} | MODEL_CHAIN | DEBRIS_CHAIN
     | OUTLINE_CHAIN, None),
    # a label set's definition re-makes its rasters and retrains the model that learns it, and nothing else
    # (in one invocation: the definition record is a regular training input, the rasters ancient ones)
    # (here: the debris map's path, written another way; the record holds the definition as written)
    ("labels.ice_debris.classes.2.path", lambda work: f"{work}/inputs/debris/./debris_map.gpkg",
     {"label_set", "labels", "file_list", "train", "ensemble", "infer", "calibrate", "confusion", "importance", "summary", "all"}
     | DEBRIS_CHAIN, "ice_debris"),
])
def test_changing_one_config_value_plans_exactly_its_jobs(base, tmp_path, key, value, rules, only_model):
    work, _ = base
    with mutable(work, tmp_path):
        cfg = _config(work)
        _set(cfg, key, value(work) if callable(value) else value)
        _write_config(work, cfg)
        jobs = dry_run(work)
    assert {r for r, _ in jobs} == rules, (key, sorted({r for r, _ in jobs} ^ rules))
    # a re-made cube or label raster never re-makes an existing training list (its files are ancient inputs)
    existing = _lists(work)
    assert not {w for r, w in jobs if r == "file_list" and "track=membership" in w and w in existing}, key
    if only_model:
        # (every model's summary re-runs too: it takes the comparison, which takes the changed model)
        per_model = {w for r, w in jobs if r in ("train", "ensemble", "infer", "calibrate", "areas", "outlines")}
        assert per_model and all(w.startswith(f"model={only_model}") for w in per_model), sorted(per_model)
