"""DAG-build benchmark: `snakemake -n`, and a real run's start, on synthetic inventories of N glaciers (metadata only).

Usage: python benchmarks/dag_scale.py [--methods {all,default}] [--target T] [--no-first-job] [N ...]
       (default N: 500 2000 5000)
  --methods all (default): every method of the demo config (config.yaml) configured, as the mission's Alps run
            (issue: 4,400 glaciers build their DAG in at most 60 s and 1 GB); default: the schema defaults only
  --target T: a rule or file to plan (e.g. `qc` for the data half only); default: the workflow's default target
  --no-first-job: measure the dry run only
Prints a table: glaciers, jobs planned, the dry run's wall seconds and peak memory (MB) of the snakemake process,
then (unless --no-first-job) how long a real run takes to start its first job and its peak memory until then, and
that job's rule; then the jobs per rule of the largest inventory.

The two measure different things. `snakemake -n` builds the DAG and then lists every job, evaluating each job's
resources to print them. A real run builds the same DAG, then sizes only the jobs that are ready and starts the
first: the time a user waits before anything runs. It is measured in the re-run case, the inventory job already
done (it is the only ready job of a first run), so every glacier's `acquire` is ready; the run is stopped (SIGTERM
to its process group) as soon as Snakemake announces the first job, and nothing else is counted.

Each glacier is a small square on a regular grid in UTM 32N; a static STAC catalog with a few
region-wide items (no image files: a dry run never opens them) stands in for the scenes. Everything (inputs,
catalog, config, the results folder and anything the workflow writes while parsing) lives in a temporary folder.

--methods default: the schema defaults (the demo's dem, dhdt and epochs): the data half (acquire, select,
features per glacier and epoch, 2 epochs) and the modelling half of the default models (dl4gam,
dl4gam_no_dhdt), whose cross-validation split (5 folds) is computed for the synthetic glaciers while the DAG
is built (split, patches, normalise and train per fold and member, infer per fold and epoch, calibrate,
areas, change, baseline, summary).

--methods all: also the demo config's sections sources (velocity and coherence per-year rasters: tiny 4 x 4
GeoTIFFs; landsat_st and landsat: Landsat C2 L2 items, collection landsat-c2-l2, two summer scenes in each
facies map year, each over the whole region), channel_sources, models (dl4gam, dl4gam_no_dhdt, debris),
labels (debris label set on a synthetic debris-map GeoPackage), random_split, debris, facies (a points
GeoPackage, 2 points per glacier on the Landsat scenes; an SMB CSV of every 10th glacier), outline_issues,
timeseries (sources landsat and s2) and importance; the truth files (facies.truth, timeseries.truth,
evaluation) are left out.
Each measurement runs in its own process, so the peak memory is that of one `snakemake -n` (or one run's start).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import pystac
import yaml
from pyproj import Transformer
from shapely.geometry import box, mapping

from glaciermap.job_benchmarks import timed_run

REPO = Path(__file__).resolve().parents[1]
#: Snakemake's announcement of a job that starts ("rule acquire:", "localrule points:", "localcheckpoint ...:")
FIRST_JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\s*$")


#: the sections of the demo config (config.yaml) that configure the mission's other methods (--methods all); their
#: input paths are re-pointed at the synthetic files of the region folder (truth files left out: they are optional)
METHOD_SECTIONS = ("sources", "channel_sources", "models", "labels", "random_split", "debris", "facies",
                   "outline_issues", "timeseries", "importance")
#: facies points per glacier (on every glacier, classes in turn; the scenes in turn)
POINTS_PER_GLACIER = 2
#: Landsat platform of a year (the one flying that summer; Landsat 5 TM until 2011, 8 OLI from 2013, 9 from 2022)
LANDSAT_PLATFORMS = ((2011, "landsat-5", ["tm"]), (2021, "landsat-8", ["oli", "tirs"]),
                     (9999, "landsat-9", ["oli", "tirs"]))
TM_ASSETS = ("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B7", "ST_B6", "QA_PIXEL")
OLI_ASSETS = ("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7", "ST_B10", "QA_PIXEL")


def _tiny_tif(path: Path, bounds, value: float = 0.0, count: int = 1) -> str:
    """A 4 x 4 float32 GeoTIFF over ``bounds`` (UTM 32N): a dry run never reads it, a parse may check it exists."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_bounds

    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=count, dtype="float32", crs="EPSG:32632",
                       transform=from_bounds(*bounds, 4, 4), nodata=-9999.0) as ds:
        ds.write(np.full((count, 4, 4), value, np.float32))
    return str(path)


def _landsat_items(bbox, years) -> list:
    """Two summer Landsat C2 L2 scenes a year over the whole region (asset keys and platform as the landsat_c2l2
    source and the demo's generator have them)."""
    items = []
    for year in years:
        plat, instruments = next((p, i) for last, p, i in LANDSAT_PLATFORMS if year <= last)
        code = {"landsat-5": "LT05", "landsat-8": "LC08", "landsat-9": "LC09"}[plat]
        for month, day in ((8, 12), (8, 28)):
            when = datetime(year, month, day, 10, 7)
            iid = f"{code}_L2SP_195028_{when:%Y%m%d}_20200908_02_T1"
            it = pystac.Item(iid, mapping(box(*bbox)), list(bbox), when,
                             {"platform": plat, "instruments": instruments, "eo:cloud_cover": 5.0, "gsd": 30,
                              "landsat:wrs_path": "195", "landsat:wrs_row": "028", "landsat:correction": "L2SP"})
            for a in (TM_ASSETS if plat == "landsat-5" else OLI_ASSETS):
                it.add_asset(a, pystac.Asset(f"./{iid}/{a}.tif"))
            items.append(it)
    return items


def make_region(root: Path, n: int, methods: str = "all") -> Path:
    """Write the synthetic region of ``n`` glaciers into ``root`` and its config (``root/config.yaml``).

    methods: ``default`` = the schema defaults (the data half and the default DL4GAM models); ``all`` = also every
    other method of the demo config (METHOD_SECTIONS), on synthetic rasters, debris map, facies points, SMB table and
    Landsat scenes written here.
    """
    side = int(n**0.5) + 1
    x0, y0, step = 400000.0, 5000000.0, 1500.0
    geoms = [box(x0 + (i % side) * step, y0 + (i // side) * step, x0 + (i % side) * step + 600,
                 y0 + (i // side) * step + 600) for i in range(n)]
    ids = [f"G{i:06d}" for i in range(n)]
    inv = gpd.GeoDataFrame({"glac_id": ids, "src_date": ["2015-08-20"] * n},
                           geometry=geoms, crs="EPSG:32632")
    inv.to_file(root / "inventory.gpkg", layer="glaciers")
    utm_bounds = (x0 - 5000, y0 - 5000, x0 + side * step + 5000, y0 + side * step + 5000)
    t = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    bbox = t.transform_bounds(*utm_bounds)
    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    cat = pystac.Catalog("bench", "benchmark catalog")
    ext = pystac.Extent(pystac.SpatialExtent([list(bbox)]), pystac.TemporalExtent([[None, None]]))
    s2 = pystac.Collection("sentinel-2-l2a", "s2", ext)
    aux = pystac.Collection("auxiliary", "aux", ext)
    cat.add_child(s2)
    cat.add_child(aux)
    for day in ("2015-08-20", "2015-09-10", "2023-08-20", "2023-09-10"):
        it = pystac.Item(f"S2_{day}", mapping(box(*bbox)), list(bbox), datetime.fromisoformat(day + "T10:30:00"),
                         {"eo:cloud_cover": 5.0})
        for a in ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12", "SCL"):
            it.add_asset(a, pystac.Asset(f"./{a}.tif"))
        s2.add_item(it)
    for iid, key in (("dem-glo30", "dem"), ("dhdt-2010-2014", "dhdt"), ("dhdt-2015-2019", "dhdt")):
        it = pystac.Item(iid, mapping(box(*bbox)), list(bbox), datetime(2015, 1, 1), {})
        it.add_asset(key, pystac.Asset(f"./{iid}.tif"))
        aux.add_item(it)
    cat_json = str(root / "catalog" / "catalog.json")
    extra = {}
    if methods == "all":
        import pandas as pd

        years = sorted({int(y) for y in demo["facies"]["maps"]["years"]})
        landsat = pystac.Collection("landsat-c2-l2", "landsat", ext)
        cat.add_child(landsat)
        scenes = _landsat_items(bbox, years)
        for it in scenes:
            landsat.add_item(it)
        # per-year velocity (vx, vy) and coherence mosaics, the years of the demo config
        inp = root / "inputs"
        sources = yaml.safe_load(yaml.safe_dump(demo["sources"]))
        for year, paths in sources["velocity"]["paths"].items():
            paths.update({k: _tiny_tif(inp / "velocity" / f"velocity_{year}_{k}.tif", utm_bounds) for k in paths})
        sources["coherence"]["paths"] = {
            year: _tiny_tif(inp / "coherence" / f"coherence_{year}.tif", utm_bounds, 0.5)
            for year in sources["coherence"]["paths"]}
        for name in ("landsat_st", "landsat"):
            sources[name]["stac"]["source"] = cat_json
        # debris map: a small debris patch on the tongue of every other glacier
        debris_gpkg = inp / "debris" / "debris_map.gpkg"
        debris_gpkg.parent.mkdir(parents=True, exist_ok=True)
        dgeoms = [box(g.bounds[0], g.bounds[1], g.bounds[0] + 300, g.bounds[1] + 150) for g in geoms[::2]]
        gpd.GeoDataFrame({"debris": [1] * len(dgeoms)}, geometry=dgeoms, crs="EPSG:32632").to_file(
            debris_gpkg, layer="debris", driver="GPKG")
        labels = yaml.safe_load(yaml.safe_dump(demo["labels"]))
        for cls in labels["debris"]["classes"]:
            if "path" in cls:
                cls["path"] = str(debris_gpkg)
        # facies points (EPSG:4326, as the demo's): POINTS_PER_GLACIER per glacier inside its outline, classes in turn,
        # each on one of the Landsat scenes; SMB (glacier_id, year, annual_balance) of every 10th glacier and year
        facies = yaml.safe_load(yaml.safe_dump(demo["facies"]))
        facies.pop("truth", None)
        fclasses = ["ice", "snow", "debris", "firn", "refrozen", "water"]
        pts, rows = [], []
        for i, g in enumerate(geoms):
            for j in range(POINTS_PER_GLACIER):
                k = i * POINTS_PER_GLACIER + j
                pts.append((g.bounds[0] + 100 + 200 * j, g.bounds[1] + 300))
                rows.append({"point_id": f"P{k + 1:06d}", "class": fclasses[k % len(fclasses)],
                             "scene_id": scenes[k % len(scenes)].id, "glacier_id": ids[i]})
        lon, lat = t.transform([p[0] for p in pts], [p[1] for p in pts])
        points_gpkg = inp / "facies" / "points.gpkg"
        points_gpkg.parent.mkdir(parents=True, exist_ok=True)
        gpd.GeoDataFrame(rows, geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326").to_file(
            points_gpkg, layer="points", driver="GPKG")
        smb_csv = inp / "facies" / "smb.csv"
        pd.DataFrame([{"glacier_id": gid, "year": y, "annual_balance": -0.8} for gid in ids[::10] for y in years]
                     ).to_csv(smb_csv, index=False)
        facies["points"] = {**facies["points"], "path": str(points_gpkg)}
        facies["smb"] = {**facies["smb"], "path": str(smb_csv)}
        timeseries = {k: v for k, v in demo["timeseries"].items() if k != "truth"}
        extra = {**{k: demo[k] for k in METHOD_SECTIONS}, "sources": sources, "labels": labels, "facies": facies,
                 "timeseries": timeseries}
    elif methods != "default":
        raise ValueError(f"methods: {methods!r} is not 'default' or 'all'")
    cat.normalize_hrefs(str(root / "catalog"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    # a region config states its own inputs (the demo's config.yaml is not merged in): the demo's layers and epochs
    cfg = {"region": f"bench{n}", "inventory": {"path": str(root / "inventory.gpkg")},
           "stac": {"source": cat_json}, **{k: demo[k] for k in ("dem", "dhdt", "epochs")}, **extra}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


def _stop(pid: int, grace_s: float = 30.0):
    """Stop the process group of ``pid`` (SIGTERM, then SIGKILL after ``grace_s``) and reap ``pid``; its rusage."""
    deadline, sig = time.monotonic() + grace_s, signal.SIGTERM
    while True:
        try:
            os.killpg(pid, sig)  # the run, the job it just started and whatever that spawned
        except ProcessLookupError:  # pragma: no cover - the group is gone already
            pass
        while time.monotonic() < deadline:
            try:
                done, _, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:  # pragma: no cover - reaped elsewhere
                return None
            if done:
                return usage
            time.sleep(0.05)
        if sig == signal.SIGKILL:  # pragma: no cover - a process that ignores SIGKILL
            return None
        deadline, sig = time.monotonic() + grace_s, signal.SIGKILL


def _first_job(cmd: list[str], timeout_s: float = 1800.0, grace_s: float = 30.0) -> tuple[float, float, str]:
    """Start a real run and stop it once its first job starts: (seconds until Snakemake announced the first job,
    peak RSS MB of the snakemake process until then, that job's rule). ``grace_s``: how long the run has to stop
    after SIGTERM before it is killed."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    first, rule, tail = None, "", []
    try:
        for line in p.stdout:
            tail = (tail + [line])[-40:]
            m = FIRST_JOB.match(line)
            if m:
                first, rule = time.perf_counter() - t, m.group(1)
                break
            if time.perf_counter() - t > timeout_s:
                break
    finally:
        usage = _stop(p.pid, grace_s)
        p.returncode = -1
    if first is None:
        raise RuntimeError("no job started; the run's output ends:\n" + "".join(tail))
    return first, (usage.ru_maxrss / 1024 if usage is not None else float("nan")), rule


def measure(n: int, target: str | None = None, methods: str = "all", first_job: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as d:
        root = make_region(Path(d), n, methods)
        base = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(root),
                "--configfile", str(root / "config.yaml"), "--cores", "1"]
        rc, wall, peak_mb, out = timed_run([*base, "-n", "--quiet", "rules", *([target] if target else [])])
        if rc != 0:
            raise RuntimeError(out[-2000:])
        m = re.search(r"^total\s+(\d+)", out, re.M)
        stats = out[out.find("Job stats:"):]
        per_rule = {r: int(c) for r, c in re.findall(r"^(\w+)\s+(\d+)$", stats[: stats.find("total")], re.M)}
        row = {"glaciers": n, "jobs": int(m.group(1)) if m else -1, "wall_s": wall, "peak_mb": peak_mb,
               "per_rule": per_rule}
        if first_job:
            # the re-run case: the inventory job has run (a first run's only ready job), so every glacier's
            # acquisition is ready and the scheduler sizes all of them before it starts one
            rc, _, _, out = timed_run([*base, f"results/bench{n}/inventory/glaciers.gpkg"])
            if rc != 0:
                raise RuntimeError(out[-2000:])
            row["first_s"], row["first_peak_mb"], row["first_rule"] = _first_job(
                [*base, *([target] if target else [])])
        return row


def main(argv):
    import argparse

    ap = argparse.ArgumentParser(description="Time `snakemake -n` (DAG build) and a real run's start on synthetic "
                                             "regions of N glaciers; print glaciers, jobs, seconds and peak memory.")
    ap.add_argument("sizes", nargs="*", type=int, default=[500, 2000, 5000], metavar="N",
                    help="numbers of glaciers (default: 500 2000 5000)")
    ap.add_argument("--target", default=None, help="a rule or file to plan (e.g. qc for the data half); "
                                                   "default: the workflow's default target")
    ap.add_argument("--methods", choices=("all", "default"), default="all",
                    help="all (default): every method of the demo config (debris, facies, outline issues, time "
                         "series, ...) on synthetic inputs; default: the schema defaults only (data half and the "
                         "default DL4GAM models)")
    ap.add_argument("--no-first-job", dest="first_job", action="store_false",
                    help="skip the real run's start (the 'first job' columns)")
    args = ap.parse_args(argv)
    target, sizes = args.target, args.sizes
    print(f"{'glaciers':>9} {'jobs':>7} {'dry-run s':>10} {'peak MB':>8}"
          + (f" {'first job s':>12} {'peak MB':>8}  first job" if args.first_job else ""))
    r = None
    for n in sizes:
        r = measure(n, target, args.methods, args.first_job)
        print(f"{r['glaciers']:>9} {r['jobs']:>7} {r['wall_s']:>10.1f} {r['peak_mb']:>8.0f}"
              + (f" {r['first_s']:>12.1f} {r['first_peak_mb']:>8.0f}  {r['first_rule']}" if args.first_job else ""),
              flush=True)
    if r is not None:
        print(f"jobs per rule ({r['glaciers']} glaciers): " + ", ".join(f"{k} {v}" for k, v in r["per_rule"].items()))


if __name__ == "__main__":
    main(sys.argv[1:])
