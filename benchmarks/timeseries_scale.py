"""Per-acquisition costs of the glacier area time series, measured on a finished run, and their extrapolation to the
Alps and the world (docs/scale.md, "Time series").

    python benchmarks/timeseries_scale.py [--results results/demo] [--model landsat_unet]

Reads the run's benchmark files (``benchmarks/ts_acquisitions/<glacier>.tsv``, ``benchmarks/ts_maps/<model>/
fold<k>.tsv``), the acquisition tables and stacks, and the maps' logs; takes the acquisition job's wall time per
scene read and the maps job's per acquisition mapped (start-up included: upper bounds); prints the measured
table and an extrapolation table whose assumptions are printed with it.
"""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

import numpy as np
import pandas as pd

# Assumptions of the extrapolation (printed with the table)
ALPS_GLACIERS = 4400
ALPS_AREA_KM2 = 1806.0            # Paul et al. 2020, Sentinel-2 inventory of the Alps
WORLD_GLACIERS = 275000
WORLD_AREA_KM2 = 706000.0         # RGI 7.0
IMAGES_PER_GLACIER = 505835 / 1083  # GlacierView: images per glacier, 1984-2023 (before its filters)
FILES_PER_READ = 8                # 6 reflectance bands, surface temperature, QA_PIXEL
TILE_PX = 512                     # COG block side assumed for a Landsat C2 file (a read touches one block)


def _tsv(path) -> dict:
    from glaciermap.job_benchmarks import read_benchmark

    return read_benchmark(path)


def measure(results: Path, model: str) -> dict:
    acq = []
    for p in sorted(glob.glob(str(results / "timeseries/acquisitions/*.csv"))):
        t = pd.read_csv(p)
        g = Path(p).stem
        b = _tsv(results / "benchmarks/ts_acquisitions" / f"{g}.tsv")
        import xarray as xr

        with xr.open_dataset(str(p)[:-4] + ".nc", engine="h5netcdf") as ds:
            h, w = ds.sizes["y"], ds.sizes["x"]
            dom = float(ds["domain"].sum()) * float(ds.attrs["resolution"]) ** 2 / 1e6
        read = int((t["reason"].fillna("").isin(["", "valid_share", "unreadable"])).sum())
        acq.append({"glacier": g, "candidates": len(t), "read": read, "used": int((t.status == "used").sum()),
                    "s": float(b["s"]), "rss": float(b["max_rss"]), "window_px": h * w, "domain_km2": dom,
                    "nc_bytes": os.path.getsize(str(p)[:-4] + ".nc")})
    acq = pd.DataFrame(acq)
    maps = []
    for p in sorted(glob.glob(str(results / "benchmarks/ts_maps" / model / "fold*.tsv"))):
        k = Path(p).stem
        log = (results / "logs/ts_maps" / model / f"{k}.log").read_text()
        # per glacier "<n> acquisition(s), <m> mapped now" (or, before the cache, "<n> acquisition(s) mapped")
        n = 0
        for line in log.splitlines():
            if ": glacier " in line and " acquisition(s)" in line:
                tail = line.split(" acquisition(s)")[1]
                n += int(tail.split(", ")[1].split(" mapped now")[0]) if "mapped now" in tail else int(
                    line.split(" acquisition(s)")[0].rsplit(" ", 1)[1])
        maps.append({"fold": k, "s": float(_tsv(p)["s"]), "mapped": n})
    maps = pd.DataFrame(maps)
    # per-unit costs as upper bounds: the job's whole wall time (start-up included) over what it did
    a_fit = (float((acq["s"] / acq["read"].clip(lower=1)).median()), 0.0)
    m_fit = (float(maps["s"].sum() / max(maps["mapped"].sum(), 1)), 0.0)
    return {"acq": acq, "maps": maps, "acq_fit": a_fit, "maps_fit": m_fit}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results/demo", help="a finished run's results/<region> folder")
    ap.add_argument("--model", default="landsat_unet", help="the time-series model name (timeseries.model.name)")
    a = ap.parse_args(argv)
    m = measure(Path(a.results), a.model)
    acq, maps = m["acq"], m["maps"]
    used_share = acq["used"].sum() / acq["candidates"].sum()
    read_s, job0 = m["acq_fit"][0], m["acq_fit"][1]
    map_s, maps0 = m["maps_fit"][0], m["maps_fit"][1]
    print("## Measured (this run)\n")
    print("| quantity | value |\n| --- | ---: |")
    rows = [("glaciers", len(acq)), ("candidate acquisitions per glacier (mean)", acq["candidates"].mean()),
            ("read per glacier (mean)", acq["read"].mean()), ("used share of the candidates", used_share),
            ("acquisition job: wall s (mean)", acq["s"].mean()),
            ("acquisition job: s per scene read (median; start-up included: upper bound)", read_s),
            ("acquisition job: peak RSS MB (max)", acq["rss"].max()),
            ("window px (mean; 30 m)", acq["window_px"].mean()), ("domain km2 (mean)", acq["domain_km2"].mean()),
            ("stack bytes per used acquisition", acq["nc_bytes"].sum() / max(acq["used"].sum(), 1)),
            ("maps jobs: acquisitions mapped", maps["mapped"].sum()),
            ("maps job: s per acquisition, all members (start-up included: upper bound)", map_s)]
    for k, v in rows:
        print(f"| {k} | {v:,.3f} |")
    # window pixels grow with the glacier's extent: px ~ (sqrt(area) + 2 reach)^2 / res^2, calibrated on the demo
    reach_px = 2 * (600 + 60) / 30.0
    print("\n## Extrapolation\n")
    print(f"Assumptions: {IMAGES_PER_GLACIER:.0f} candidate Landsat images per glacier over 1984-2023 (GlacierView, "
          f"505,835 / 1,083); the demo's used share {used_share:.2f}; every candidate read once (the metadata filters "
          f"drop some before any read: an upper bound); {FILES_PER_READ} files per read, each read touching one "
          f"{TILE_PX} x {TILE_PX} px uint16 COG block (uncompressed: an upper bound on bytes); the demo's per-scene "
          "and per-acquisition CPU seconds (one thread); mean glacier windows from the mean area; GPU hours not "
          "measured (no GPU in this session).\n")
    print("| region | glaciers | acquisition jobs | scenes read | used acquisitions | bytes read (TB, upper) | "
          "acquisition CPU h | maps CPU h | stacks on disk (TB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, n, area in (("Alps", ALPS_GLACIERS, ALPS_AREA_KM2), ("world", WORLD_GLACIERS, WORLD_AREA_KM2)):
        reads = n * IMAGES_PER_GLACIER
        used = reads * used_share
        side = np.sqrt(area / n * 1e6) / 30.0 + reach_px
        demo_side = np.sqrt(acq["window_px"].mean())
        scale = (side / demo_side) ** 2
        tb = reads * FILES_PER_READ * TILE_PX * TILE_PX * 2 / 1e12
        acq_h = reads * read_s / 3600   # a read is mostly file opens: not scaled by the window
        map_h = used * map_s * scale / 3600
        disk = used * acq["nc_bytes"].sum() / max(acq["used"].sum(), 1) * scale / 1e12
        print(f"| {name} | {n:,} | {n:,} | {reads:,.0f} | {used:,.0f} | {tb:,.1f} | {acq_h:,.0f} | {map_h:,.0f} | "
              f"{disk:,.2f} |")


if __name__ == "__main__":
    main()
