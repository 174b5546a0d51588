"""Cost of the CryoNet paper preset (seed 003) on this machine: model, feature stack, Alps extrapolation.

Usage: python benchmarks/debris_cost.py [--threads 2] [--train-steps 2] [--infer-steps 3] [--batches 2 4] [--device cpu|cuda]
                                       [--gpu-train-rate R --gpu-infer-rate R] [--csv PATH] [--quick]

1. Models, each in a fresh process (so that its peak resident memory, ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
   of that process, belongs to it alone; it includes the ~0.3-0.5 GB of importing torch and smp):
   - CryoNet: ``smp.UnetPlusPlus(encoder_name="resnet101", encoder_weights=None, in_channels=30, classes=5,
     decoder_attention_type="scse")`` at 256 px. Training = forward + class-weighted cross-entropy + backward +
     Adam step (lr 3e-4, weight decay 1e-4, the paper's settings) at batch 2 and 4 (the paper's batch 16 is too
     slow for this 2-core machine); inference = eval mode, ``torch.no_grad``, softmax, batch 4.
   - the CPU demo presets for comparison: the same UNet++ with a ResNet18 encoder (30 channels, 64 px, batch 16)
     and the DL4GAM demo model, a plain ``smp.Unet`` ResNet18 (the demo's 16 layers, one logit, focal loss, 64 px,
     batch 16, Adam 1e-4).
   One untimed warm-up step each; the per-batch times are means over the timed steps, reported with their count.
2. Building the stack's derived layers per glacier (numpy / scikit-learn, one process): GLCM dissimilarity of one
   band (``glaciermap.data.indices.glcm_dissimilarity``, 7 x 7 window, 32 levels), a 3-component PCA of 12 bands
   (``sklearn.decomposition.PCA`` fitted on a 200,000-pixel subsample, then transforming every pixel), the Tasseled
   Cap as a 6 x 12 matrix product, and the five indices of ``glaciermap.data.indices`` (NDSI, NDWI, NDVI, NDGI,
   red/SWIR ratio), on random reflectance cubes of 600 x 600 px and of the demo's mean cube (153,000 px,
   ~390 x 390, docs/scale.md "Storage per glacier"). Median of ``--stack-repeats`` after one warm-up.
3. Extrapolation to the Alps (:func:`extrapolate`): CPU hours on this machine from the measured rates; GPU hours
   are printed as "not measured" with their formula unless ``--gpu-train-rate`` / ``--gpu-infer-rate`` (patches/s
   measured on a GPU, e.g. with ``--device cuda`` of this script) are given.

Prints Markdown tables and writes every number to a CSV (default docs/measurements/debris_cost_<date>.csv).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO_OUTLINES = ROOT / "resources" / "demo" / "truth" / "outlines_t0.gpkg"

#: the configurations of section 1 (name, architecture, encoder, channels, classes, patch px, training batches,
#: inference batch, loss, Adam lr, weight decay)
CRYONET = dict(name="CryoNet (UNet++ R101 scSE)", arch="UnetPlusPlus", encoder="resnet101", in_channels=30, classes=5,
               attention="scse", patch=256, train_batches=(2, 4), infer_batch=4, loss="ce", lr=3e-4, wd=1e-4)
DEMO_UNETPP = dict(name="demo UNet++ R18 scSE", arch="UnetPlusPlus", encoder="resnet18", in_channels=30, classes=5,
                   attention="scse", patch=64, train_batches=(16,), infer_batch=16, loss="ce", lr=3e-4, wd=1e-4)
DEMO_UNET = dict(name="DL4GAM demo U-Net R18", arch="Unet", encoder="resnet18", in_channels=16, classes=1,
                 attention=None, patch=64, train_batches=(16,), infer_batch=16, loss="focal", lr=1e-4, wd=0.0)
#: --quick: a tiny configuration that runs in seconds
TINY = dict(name="tiny UNet++ R18 scSE", arch="UnetPlusPlus", encoder="resnet18", in_channels=30, classes=5,
            attention="scse", patch=32, train_batches=(2,), infer_batch=2, loss="ce", lr=3e-4, wd=1e-4)

#: Alps (assumptions, stated in the output): glaciers (README, docs/scale.md) and ice area, the Sentinel-2 inventory
#: of Paul et al. (2020, ESSD 12, 1805-1821) that DL4GAM uses: 4,394 glaciers, 1,806 km2
ALPS_GLACIERS = 4400
ALPS_AREA_KM2 = 1806.0


# ----------------------------------------------------------------------------------------------- 1. models

def _peak_rss_mb() -> float:
    """Peak resident set of this process in MB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def count_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def build(spec: dict, seed: int = 0):
    import torch

    from glaciermap.compat import import_smp

    smp = import_smp()
    torch.manual_seed(seed)
    cls = getattr(smp, spec["arch"])
    kw = {"decoder_attention_type": spec["attention"]} if spec.get("attention") else {}
    return cls(encoder_name=spec["encoder"], encoder_weights=None, in_channels=spec["in_channels"],
               classes=spec["classes"], **kw)


def measure_model(spec: dict, threads: int | None = 2, train_steps: int = 2, infer_steps: int = 3,
                  device: str = "cpu") -> dict:
    """Parameters, training and inference seconds per batch, peak RSS of ``spec`` (run it in a fresh process)."""
    import torch

    from glaciermap.allocator import keep_freed_memory
    from glaciermap.segmentation.train import focal_loss

    keep_freed_memory()                     # as the train and infer jobs do (docs/performance.md)
    if threads:
        torch.set_num_threads(int(threads))
    dev = torch.device(device)
    rss_import = _peak_rss_mb()
    model = build(spec).to(dev)
    out = {"name": spec["name"], "params": count_parameters(model), "threads": torch.get_num_threads(),
           "device": str(dev), "rss_after_import_mb": rss_import, "train": []}
    opt = torch.optim.Adam(model.parameters(), lr=spec["lr"], weight_decay=spec["wd"])
    g = torch.Generator().manual_seed(0)
    c, k, p = spec["in_channels"], spec["classes"], spec["patch"]
    weight = torch.linspace(0.5, 2.0, k).to(dev)     # class-frequency weights (values do not change the cost)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for b in spec["train_batches"]:
        x = torch.randn(b, c, p, p, generator=g).to(dev)
        if spec["loss"] == "ce":
            y = torch.randint(0, k, (b, p, p), generator=g).to(dev)

            def loss_fn(logits):
                return torch.nn.functional.cross_entropy(logits, y, weight=weight)
        else:
            y = (torch.rand(b, 1, p, p, generator=g) > 0.5).float().to(dev)
            m = torch.ones_like(y)

            def loss_fn(logits):
                return focal_loss(logits, y, m)

        def step():
            loss = loss_fn(model(x))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        model.train()
        t0 = time.perf_counter()
        step()                                          # warm-up, not counted
        sync()
        warm = time.perf_counter() - t0
        times, cpu = [], []
        for _ in range(int(train_steps)):
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            sync()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        s = statistics.fmean(times)
        out["train"].append({"batch": b, "steps": len(times), "s_per_batch": s, "min_s": min(times),
                             "max_s": max(times), "warmup_s": warm, "cpu_s_per_batch": statistics.fmean(cpu),
                             "patches_per_s": b / s})
        del x, y

    model.eval()
    bi = spec["infer_batch"]
    xi = torch.randn(bi, c, p, p, generator=g).to(dev)
    act = torch.sigmoid if k == 1 else (lambda t: torch.softmax(t, dim=1))
    times, cpu = [], []
    with torch.no_grad():
        act(model(xi))                                  # warm-up
        sync()
        for _ in range(int(infer_steps)):
            t0, c0 = time.perf_counter(), time.process_time()
            act(model(xi))
            sync()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    s = statistics.fmean(times)
    out["infer"] = {"batch": bi, "steps": len(times), "s_per_batch": s, "min_s": min(times), "max_s": max(times),
                    "cpu_s_per_batch": statistics.fmean(cpu), "patches_per_s": bi / s}
    out["peak_rss_mb"] = _peak_rss_mb()
    if dev.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


def measure_isolated(spec: dict, **kw) -> dict:
    """:func:`measure_model` in a fresh spawned process (clean peak RSS, no state shared between models)."""
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(measure_model, spec, **kw).result()


# ----------------------------------------------------------------------------------------------- 2. stack

def tasseled_cap_matrix(seed: int = 0) -> np.ndarray:
    """A 6 x 12 coefficient matrix (random: only its shape matters for the cost)."""
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (6, 12)).astype(np.float32)


def stack_cost(h: int, w: int, repeats: int = 3, pca_sample: int = 200_000, seed: int = 0) -> dict:
    """Median seconds of each derived-layer step on a random 12-band reflectance cube of h x w px."""
    from sklearn.decomposition import PCA

    from glaciermap.data import indices

    rng = np.random.default_rng(seed)
    bands = rng.uniform(0.0, 1.0, (12, h, w)).astype(np.float32)
    tc = tasseled_cap_matrix(seed)
    b02, b03, b04, b08, b11 = bands[1], bands[2], bands[3], bands[7], bands[10]

    def glcm():
        return indices.glcm_dissimilarity(b08, window=7, levels=32, vmax=1.0)

    def pca():
        flat = bands.reshape(12, -1).T                  # (pixels, 12)
        n = flat.shape[0]
        idx = np.random.default_rng(seed).choice(n, size=min(pca_sample, n), replace=False)
        model = PCA(n_components=3, random_state=seed).fit(flat[idx])
        return model.transform(flat).T.reshape(3, h, w).astype(np.float32)

    def tasseled():
        return (tc @ bands.reshape(12, -1)).reshape(6, h, w)

    def idx():
        return [indices.ndsi(b03, b11), indices.ndwi(b03, b08), indices.ndvi(b08, b04), indices.ndgi(b03, b04),
                indices.band_ratio(b04, b11)]

    out = {"h": h, "w": w, "pixels": h * w, "repeats": int(repeats)}
    for name, fn in (("glcm_s", glcm), ("pca_s", pca), ("tasseled_cap_s", tasseled), ("indices_s", idx)):
        fn()                                            # warm-up
        times = []
        for _ in range(int(repeats)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    out["total_s"] = out["glcm_s"] + out["pca_s"] + out["tasseled_cap_s"] + out["indices_s"]
    return out


# ----------------------------------------------------------------------------------------------- 3. extrapolation

def centres_per_glacier(area_km2, buffered_km2, stride_px: int = 32, res_m: float = 10.0):
    """Expected patch centres per glacier: the centroid plus the stride-grid points inside the 50 m buffer.

    ``patches.patch_centres`` keeps the grid points (i s, j s) inside the buffer plus the centroid, so the expected
    count is 1 + buffered area / (s x res)^2. The inference windows (``infer.inference_windows``) sit on the same
    grid, plus coverage windows; the centroid term stands in for those.
    """
    cell_km2 = (stride_px * res_m / 1000.0) ** 2
    return 1.0 + np.asarray(buffered_km2, dtype=float) / cell_km2


def demo_centres(gpkg=DEMO_OUTLINES, stride_px: int = 32, res_m: float = 10.0, buffer_m: float = 50.0) -> dict | None:
    """Centres per glacier of the demo's planted t0 outlines (None without the demo region)."""
    if not Path(gpkg).exists():
        return None
    import geopandas as gpd

    g = gpd.read_file(gpkg)
    area = g.geometry.area.to_numpy() / 1e6
    buf = g.geometry.buffer(buffer_m).area.to_numpy() / 1e6
    n = centres_per_glacier(area, buf, stride_px, res_m)
    return {"glaciers": len(g), "area_km2": float(area.sum()), "buffered_km2": float(buf.sum()),
            "buffer_ratio": float(buf.sum() / area.sum()), "centres_mean": float(n.mean()),
            "centres_total": float(n.sum()), "stride_px": stride_px}


def extrapolate(glaciers: int, centres_total: float, train_rate: float, infer_rate: float, *, epochs: int = 100,
                folds: int = 5, members: int = 1, val_fraction: float = 0.1, val_stride_factor: float = 0.25,
                change_epochs: int = 2, val_pred_factor: float = 1.25, threads: int = 2) -> dict:
    """Hours of training and inference of a region from patches/s (the arithmetic, no measuring).

    Per fold and member and training epoch: training patches = centres x (1 - 1/folds - val_fraction) (the fold's
    test glaciers and its validation share are not trained on), validation patches = centres x val_fraction x
    val_stride_factor (validation centres on a coarser grid: (32/64)^2 = 0.25), forward only.
    Training seconds = folds x members x epochs x (train patches / train_rate + val patches / infer_rate).
    Inference: every glacier is predicted by each member of its test fold at each change epoch, one forward pass
    per window (windows ~ centres), validation glaciers also at t0: passes = centres x change_epochs x members x
    val_pred_factor (docs/scale.md: 1.25 with two epochs). Seconds = passes / infer_rate.
    Hours are wall hours at the measured rate; core-hours = hours x threads.
    """
    train_p = centres_total * (1.0 - 1.0 / folds - val_fraction)
    val_p = centres_total * val_fraction * val_stride_factor
    train_s = folds * members * epochs * (train_p / train_rate + val_p / infer_rate)
    passes = centres_total * change_epochs * members * val_pred_factor
    infer_s = passes / infer_rate
    return {"glaciers": glaciers, "centres_total": centres_total, "train_patches_per_epoch": train_p,
            "val_patches_per_epoch": val_p, "epochs": epochs, "folds": folds, "members": members,
            "member_trainings": folds * members, "train_h": train_s / 3600.0, "infer_passes": passes,
            "infer_h": infer_s / 3600.0, "total_h": (train_s + infer_s) / 3600.0,
            "train_core_h": train_s / 3600.0 * threads, "infer_core_h": infer_s / 3600.0 * threads,
            "total_core_h": (train_s + infer_s) / 3600.0 * threads, "threads": threads}


GPU_FORMULA = ("GPU h = [F x M x N x (P_train / R_train + P_val / R_infer) + passes / R_infer] / 3600, "
               "R_* = patches/s measured on the GPU")


# ----------------------------------------------------------------------------------------------- output

def fmt(v, nd=2) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, int) or (isinstance(v, float) and abs(v) >= 1000):
        return f"{v:,.0f}"
    return f"{v:.{nd}f}"


def markdown_table(rows, headers, nd: int = 2) -> str:
    lines = ["| " + " | ".join(headers) + " |",
             "| --- | " + " | ".join("---:" for _ in headers[1:]) + " |"]
    lines += ["| " + " | ".join(fmt(c, nd) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), torch {torch.__version__}, {platform.python_version()}"


def _loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads per model process")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-steps", type=int, default=2, help="timed training steps per batch size (after a warm-up)")
    ap.add_argument("--infer-steps", type=int, default=3, help="timed inference batches (after a warm-up)")
    ap.add_argument("--stack-repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=100, help="training epochs (CryoNet: 100)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--members", type=int, nargs="+", default=[1, 10],
                    help="ensemble members per fold to extrapolate (CryoNet: 1; DL4GAM: 10)")
    ap.add_argument("--batches", type=int, nargs="+", default=list(CRYONET["train_batches"]),
                    help="CryoNet training batch sizes (the paper: 16; too slow on 2 CPU cores)")
    ap.add_argument("--infer-batch", type=int, default=CRYONET["infer_batch"], help="CryoNet inference batch")
    ap.add_argument("--glaciers", type=int, default=ALPS_GLACIERS)
    ap.add_argument("--area-km2", type=float, default=ALPS_AREA_KM2, help="region's ice area (assumption)")
    ap.add_argument("--stride", type=int, default=32, help="training-centre and inference-window stride (px)")
    ap.add_argument("--gpu-train-rate", type=float, default=None, help="training patches/s MEASURED on a GPU")
    ap.add_argument("--gpu-infer-rate", type=float, default=None, help="inference patches/s MEASURED on a GPU")
    ap.add_argument("--csv", default=None, help="CSV path (default docs/measurements/debris_cost_<date>.csv)")
    ap.add_argument("--date", default=time.strftime("%Y-%m-%d"))
    ap.add_argument("--quick", action="store_true", help="tiny model and cube only (seconds; for the tests)")
    a = ap.parse_args(argv)

    t_start = time.perf_counter()
    if a.quick:
        specs, cubes = [TINY], [(64, 64)]
        a.train_steps, a.infer_steps, a.stack_repeats = 1, 1, 1
    else:
        cry = dict(CRYONET, train_batches=tuple(a.batches), infer_batch=a.infer_batch)
        specs, cubes = [cry, DEMO_UNETPP, DEMO_UNET], [(600, 600), (390, 390)]
    records = []                                  # (section, item, value, unit, note) for the CSV

    print(f"# {platform.node()}: {machine()}, device {a.device}, {a.threads} torch threads, date {a.date}, "
          f"load average at start {_loadavg()}")
    print("\n## Models (each in a fresh process; one untimed warm-up step; mean of the timed steps)\n")
    results = [measure_isolated(s, threads=a.threads, train_steps=a.train_steps, infer_steps=a.infer_steps,
                                device=a.device) for s in specs]
    rows = []
    for s, r in zip(specs, results):
        shape = f"{s['in_channels']} ch, {s['classes']} cl, {s['patch']} px"
        for t in r["train"]:
            rows.append([f"{r['name']} ({shape})", r["params"] / 1e6, f"train b{t['batch']} x {t['steps']}",
                         t["s_per_batch"], t["cpu_s_per_batch"], t["patches_per_s"], round(r["peak_rss_mb"])])
            records.append(("model", f"{r['name']}|train|batch{t['batch']}", t["patches_per_s"], "patches/s",
                            f"{shape}; {t['steps']} timed steps, {t['s_per_batch']:.3f} s/batch "
                            f"(min {t['min_s']:.3f}, max {t['max_s']:.3f}; warm-up {t['warmup_s']:.3f}), "
                            f"CPU {t['cpu_s_per_batch']:.3f} s/batch"))
        i = r["infer"]
        rows.append([f"{r['name']} ({shape})", r["params"] / 1e6, f"infer b{i['batch']} x {i['steps']}",
                     i["s_per_batch"], i["cpu_s_per_batch"], i["patches_per_s"], round(r["peak_rss_mb"])])
        records.append(("model", f"{r['name']}|infer|batch{i['batch']}", i["patches_per_s"], "patches/s",
                        f"{shape}; no_grad; {i['steps']} timed batches, {i['s_per_batch']:.3f} s/batch "
                        f"(min {i['min_s']:.3f}, max {i['max_s']:.3f}), CPU {i['cpu_s_per_batch']:.3f} s/batch"))
        records.append(("model", f"{r['name']}|params", r["params"], "parameters", shape))
        if "peak_cuda_mb" in r:
            records.append(("model", f"{r['name']}|peak_cuda", r["peak_cuda_mb"], "MB", "torch.cuda.max_memory_allocated"))
        records.append(("model", f"{r['name']}|peak_rss", r["peak_rss_mb"], "MB",
                        f"ru_maxrss of its own process, {r['rss_after_import_mb']:.0f} MB after imports"))
    print(markdown_table(rows, ["model", "params (M)", "step (batch x timed steps)", "wall s per batch",
                                "CPU s per batch", "patches/s (wall)", "peak RSS (MB)"], nd=3))
    print("\nPeak RSS: resource.getrusage(RUSAGE_SELF).ru_maxrss of the model's own process (whole run of that "
          "model, all batch sizes; includes " + ", ".join(f"{r['rss_after_import_mb']:.0f}" for r in results)
          + " MB after importing torch/smp).")

    print(f"\n## Derived layers per glacier (median of {a.stack_repeats} after a warm-up, one process)\n")
    srows = []
    for h, w in cubes:
        c = stack_cost(h, w, repeats=a.stack_repeats)
        srows.append([f"{h} x {w} px ({h * w / 1e6:.2f} Mpx)", c["glcm_s"], c["pca_s"], c["tasseled_cap_s"],
                      c["indices_s"], c["total_s"]])
        for k in ("glcm_s", "pca_s", "tasseled_cap_s", "indices_s", "total_s"):
            records.append(("stack", f"{h}x{w}|{k[:-2]}", c[k], "s per glacier", f"median of {c['repeats']}"))
    print(markdown_table(srows, ["cube", "GLCM dissimilarity 7x7, 32 levels (1 band)",
                                 "PCA 3 of 12 (fit 200k px + transform)", "Tasseled Cap 6x12", "5 indices",
                                 "total (s)"], nd=3))

    print("\n## Extrapolation\n")
    demo = demo_centres(stride_px=a.stride)
    ratio = demo["buffer_ratio"] if demo else 1.2
    centres = a.glaciers + ratio * a.area_km2 / ((a.stride * 10 / 1000.0) ** 2)
    if demo:
        print(f"Demo outlines (t0, {demo['glaciers']} glaciers, {demo['area_km2']:.1f} km2): 50 m buffer = "
              f"{demo['buffer_ratio']:.2f} x the ice area, {demo['centres_mean']:.1f} centres per glacier at "
              f"stride {a.stride} (centroid + grid points in the buffer).")
    print(f"Region: {a.glaciers:,} glaciers, {a.area_km2:,.0f} km2 of ice (assumption), buffered x{ratio:.2f}, "
          f"stride {a.stride} px at 10 m -> {centres:,.0f} centres ({centres / a.glaciers:.1f} per glacier); "
          f"inference windows ~ centres per glacier, epoch and member.")
    cry = results[0]
    best = max(cry["train"], key=lambda t: t["patches_per_s"])
    r_train, r_infer = best["patches_per_s"], cry["infer"]["patches_per_s"]
    # the same rates per CPU-second (process_time of all threads): less sensitive to other load on the machine
    c_train, c_infer = best["batch"] / best["cpu_s_per_batch"], cry["infer"]["batch"] / cry["infer"]["cpu_s_per_batch"]
    print(f"Rates of {cry['name']}: training {r_train:.3f} patches/s (batch {best['batch']}, the fastest measured), "
          f"inference {r_infer:.3f} patches/s (batch {cry['infer']['batch']}); {a.threads} threads. Per CPU-second: "
          f"training {c_train:.3f}, inference {c_infer:.3f} patches.")
    erows = []
    for m in a.members:
        e = extrapolate(a.glaciers, centres, r_train, r_infer, epochs=a.epochs, folds=a.folds, members=m,
                        threads=a.threads)
        ec = extrapolate(a.glaciers, centres, c_train, c_infer, epochs=a.epochs, folds=a.folds, members=m, threads=1)
        if a.gpu_train_rate and a.gpu_infer_rate:
            g = extrapolate(a.glaciers, centres, a.gpu_train_rate, a.gpu_infer_rate, epochs=a.epochs, folds=a.folds,
                            members=m, threads=1)
            gpu = f"{g['total_h']:,.1f}"
        else:
            gpu = "not measured"
        erows.append([f"{a.folds} folds x {m} member(s), {a.epochs} epochs", e["train_patches_per_epoch"],
                      e["train_h"], e["infer_passes"], e["infer_h"], e["total_core_h"], ec["total_core_h"], gpu])
        for k in ("train_h", "infer_h", "total_h", "total_core_h", "infer_passes", "train_patches_per_epoch"):
            records.append(("alps", f"members{m}|{k}", e[k], "h" if k.endswith("_h") else "count",
                            f"{a.glaciers} glaciers, {centres:.0f} centres, {a.threads} threads, wall rates"))
        records.append(("alps", f"members{m}|total_core_h_cpu_time", ec["total_core_h"], "h",
                        "from CPU seconds per patch (process_time of all threads)"))
        records.append(("alps", f"members{m}|gpu_h", gpu, "h", GPU_FORMULA))
    where = "this CPU" if a.device == "cpu" else a.device
    print(markdown_table(erows, ["setting", "train patches / epoch", f"training (h, {where})", "inference passes",
                                 f"inference (h, {where})", "core-h (wall x threads)", "core-h (CPU time)",
                                 "GPU h"]))
    print(f"\n{GPU_FORMULA}; F folds, M members, N epochs; P_train, P_val patches per epoch; passes as above.")
    wall = time.perf_counter() - t_start
    print(f"\nBenchmark wall time {wall:.0f} s; load average at the end {_loadavg()}.")

    path = Path(a.csv) if a.csv else ROOT / "docs" / "measurements" / f"debris_cost_{a.date}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["section", "item", "value", "unit", "note"])
        wr.writerow(["machine", "description", machine(), "", f"{a.threads} torch threads, device {a.device}"])
        wr.writerow(["machine", "wall_s", f"{wall:.1f}", "s", f"whole benchmark; load average at the end {_loadavg()}"])
        for rec in records:
            v = rec[2]
            wr.writerow([rec[0], rec[1], f"{v:.6g}" if isinstance(v, float) else v, rec[3], rec[4]])
    print(f"CSV: {path}")
    return {"models": results, "stack": srows, "extrapolation": erows, "csv": str(path), "wall_s": wall}


if __name__ == "__main__":
    main()
