"""DAG-build benchmark: `snakemake -n` on synthetic inventories of N glaciers (metadata only).

Usage: python benchmarks/dag_scale.py [N ...]   (default 500 2000 5000)
Prints a table: glaciers, jobs planned, wall seconds, peak memory (MB) of the snakemake process.
Each glacier is a small square on a regular grid in UTM 32N; a static STAC catalog with a few
region-wide items (no image files: a dry run never opens them) stands in for the scenes.
"""

from __future__ import annotations

import re
import resource
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
    cfg = {"region": f"bench{n}", "inventory": {"path": str(root / "inventory.gpkg")},
           "stac": {"source": str(root / "catalog" / "catalog.json")}}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    return root


def measure(n: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        root = make_region(Path(d), n)
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(root),
               "--configfile", str(root / "config.yaml"), "-n", "--quiet", "rules", "--cores", "1"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        m = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.M)
        return {"glaciers": n, "jobs": int(m.group(1)) if m else -1, "wall_s": wall,
                "peak_mb": max(peak, before) / 1024}


def main(argv):
    sizes = [int(a) for a in argv] or [500, 2000, 5000]
    print(f"{'glaciers':>9} {'jobs':>7} {'wall s':>8} {'peak MB':>8}")
    for n in sizes:
        r = measure(n)
        print(f"{r['glaciers']:>9} {r['jobs']:>7} {r['wall_s']:>8.1f} {r['peak_mb']:>8.0f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
