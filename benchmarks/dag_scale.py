"""DAG-build benchmark: `snakemake -n` on synthetic inventories of N glaciers (metadata only).

Usage: python benchmarks/dag_scale.py [--target T] [N ...]   (default 500 2000 5000; T a rule or file,
       e.g. `qc` for the data half only; default: the workflow's default target, the whole workflow)
Prints a table: glaciers, jobs planned, wall seconds, peak memory (MB) of the snakemake process, then the
jobs per rule of the largest inventory.
Each glacier is a small square on a regular grid in UTM 32N; a static STAC catalog with a few
region-wide items (no image files: a dry run never opens them) stands in for the scenes. The dry run
plans the whole workflow with the schema defaults: the data half (acquire, select, features per glacier
and epoch, 2 epochs) and the modelling half, whose cross-validation split (5 folds) is computed for the
synthetic glaciers while the DAG is built (split, patches, normalise and train per fold and member,
infer per fold and epoch, calibrate, areas, change, baseline, summary).
Each measurement runs in its own process, so the peak memory is that of one `snakemake -n`.
"""

from __future__ import annotations

import re
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

REPO = Path(__file__).resolve().parents[1]


def make_region(root: Path, n: int) -> Path:
    side = int(n**0.5) + 1
    x0, y0, step = 400000.0, 5000000.0, 1500.0
    geoms = [box(x0 + (i % side) * step, y0 + (i // side) * step, x0 + (i % side) * step + 600,
                 y0 + (i // side) * step + 600) for i in range(n)]
    inv = gpd.GeoDataFrame({"glac_id": [f"G{i:06d}" for i in range(n)], "src_date": ["2015-08-20"] * n},
                           geometry=geoms, crs="EPSG:32632")
    inv.to_file(root / "inventory.gpkg", layer="glaciers")
    t = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    bbox = t.transform_bounds(x0 - 5000, y0 - 5000, x0 + side * step + 5000, y0 + side * step + 5000)
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
    cat.normalize_hrefs(str(root / "catalog"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    # a region config states its own inputs (the demo's config.yaml is not merged in): the demo's layers and epochs
    cfg = {"region": f"bench{n}", "inventory": {"path": str(root / "inventory.gpkg")},
           "stac": {"source": str(root / "catalog" / "catalog.json")},
           **{k: demo[k] for k in ("dem", "dhdt", "epochs")}}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    return root


_TIMED = """
import resource, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t0
sys.stdout.write(p.stdout + p.stderr)
print(f"@@ {p.returncode} {wall} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
"""


def measure(n: int, target: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as d:
        root = make_region(Path(d), n)
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(root),
               "--configfile", str(root / "config.yaml"), "-n", "--quiet", "rules", "--cores", "1",
               *([target] if target else [])]
        out = subprocess.run([sys.executable, "-c", _TIMED, *cmd], capture_output=True, text=True).stdout
        rc, wall, peak_kb = re.search(r"^@@ (-?\d+) (\S+) (\d+)$", out, re.M).groups()
        if int(rc) != 0:
            raise RuntimeError(out[-2000:])
        m = re.search(r"^total\s+(\d+)", out, re.M)
        stats = out[out.find("Job stats:"):]
        per_rule = {r: int(c) for r, c in re.findall(r"^(\w+)\s+(\d+)$", stats[: stats.find("total")], re.M)}
        return {"glaciers": n, "jobs": int(m.group(1)) if m else -1, "wall_s": float(wall),
                "peak_mb": int(peak_kb) / 1024, "per_rule": per_rule}


def main(argv):
    import argparse

    ap = argparse.ArgumentParser(description="Time `snakemake -n` (DAG build) on synthetic regions of N glaciers and "
                                             "print glaciers, jobs, wall seconds and peak memory.")
    ap.add_argument("sizes", nargs="*", type=int, default=[500, 2000, 5000], metavar="N",
                    help="numbers of glaciers (default: 500 2000 5000)")
    ap.add_argument("--target", default=None, help="a rule or file to plan (e.g. qc for the data half); "
                                                   "default: the workflow's default target")
    args = ap.parse_args(argv)
    target, sizes = args.target, args.sizes
    print(f"{'glaciers':>9} {'jobs':>7} {'wall s':>8} {'peak MB':>8}")
    r = None
    for n in sizes:
        r = measure(n, target)
        print(f"{r['glaciers']:>9} {r['jobs']:>7} {r['wall_s']:>8.1f} {r['peak_mb']:>8.0f}", flush=True)
    if r is not None:
        print(f"jobs per rule ({r['glaciers']} glaciers): " + ", ".join(f"{k} {v}" for k, v in r["per_rule"].items()))


if __name__ == "__main__":
    main(sys.argv[1:])
