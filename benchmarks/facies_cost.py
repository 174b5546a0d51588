"""Cost of the glacier facies method (Maslov et al., seed 002) on this CPU, with synthetic data.

Usage: python benchmarks/facies_cost.py [--filters 64 16] [--threads 1 2] [--patch 33] [--channels 10]
                                        [--batch 512] [--steps 1] [--n-points 137592] [--image 600]
                                        [--demo-epochs 15] [--skip-demo] [--skip-cleanlab] [--quick] [--out CSV]

Each measurement runs in a fresh process (spawn), so that its peak resident memory (``resource.getrusage
(RUSAGE_SELF).ru_maxrss``, which includes the ~0.3 GB of importing torch) belongs to it alone.

1. Training throughput of :class:`glaciermap.facies.network.FaciesNet` (paper: filters 64; light: 16) on
   ``--patch`` px patches of ``--channels`` channels at batch ``--batch``, for each ``--threads``: augmentation
   (flips / rotations, brightness and contrast of 6 reflectance channels) + weighted focal loss + backward + Adam
   step, as in :func:`glaciermap.facies.train.train_fold`. One untimed warm-up step at batch 16, then ``--steps``
   timed steps (mean). Projected: seconds per epoch for ``--n-points`` (the paper's 137,592 labels) and days for
   the paper's 1000 epochs x 6 folds. Reading the patches from disk is not included.
2. Inference: :func:`glaciermap.facies.network.predict_dense` on a ``--image`` x ``--image`` image (window =
   patch, tile 512) in pixels/s, vs patch-wise :func:`glaciermap.facies.train.predict_proba` on patches cut one
   per pixel (patches/s): the speed-up of running the point CNN densely.
3. Demo presets: :func:`train_fold` end to end (1 thread, 2 epochs, the faster one reported) on 2,000 training
   + 500 validation points, and the projected total of 6 folds x 2 rounds (before / after label pruning) at
   ``--demo-epochs`` epochs each.
4. Label cleaning and calibration: ``cleanlab.filter.find_label_issues(filter_by="confident_learning")`` on
   137,592 x 8 random probabilities (Dirichlet 0.5; given labels drawn from them); ``sklearn.kernel_ridge.KernelRidge(kernel="laplacian")`` fitted on 100
   binned (max score, accuracy) points with the bin counts as ``sample_weight``, then applied to every score.

Prints Markdown tables; writes a CSV of every number only with ``--out``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

PAPER_POINTS = 137_592
PAPER_EPOCHS = 1000
PAPER_FOLDS = 6
N_CLASSES = 8


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _in_fresh_process(fn, *args, **kwargs):
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(fn, *args, **kwargs).result()


# ------------------------------------------------------------------------------------------------------- jobs

def train_job(filters: int, threads: int, patch: int, channels: int, batch: int, steps: int) -> dict:
    import torch

    from glaciermap.facies.network import FaciesNet, n_parameters
    from glaciermap.facies.train import augment, focal_loss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = FaciesNet(channels, N_CLASSES, filters=filters).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    refl = list(range(min(6, channels)))
    x = torch.from_numpy(rng.normal(size=(batch, channels, patch, patch)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, N_CLASSES, batch))
    w = torch.from_numpy(rng.uniform(0.2, 3, batch).astype(np.float32))

    def step(xb, yb, wb):
        loss = focal_loss(model(augment(xb, refl, rng)), yb, 2.0, 0.1, wb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(x[:16], y[:16], w[:16])
    t0 = time.perf_counter()
    for _ in range(steps):
        step(x, y, w)
    dt = (time.perf_counter() - t0) / steps
    return {"filters": filters, "threads": threads, "parameters": n_parameters(model), "s_per_batch": dt,
            "samples_per_s": batch / dt, "peak_rss_mb": _rss_mb()}


def infer_job(filters: int, threads: int, patch: int, channels: int, image: int, n_patches: int) -> dict:
    import torch
    from scipy import ndimage

    from glaciermap.facies.network import FaciesNet, predict_dense
    from glaciermap.facies.train import predict_proba

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = FaciesNet(channels, N_CLASSES, filters=filters).eval()
    rng = np.random.default_rng(0)
    img = ndimage.gaussian_filter(rng.normal(size=(channels, image, image)), (0, 2, 2)).astype(np.float32)
    predict_dense(model, img[:, :64, :64], patch, tile=512)                       # warm-up
    t0 = time.perf_counter()
    predict_dense(model, img, patch, tile=512)
    dense_s = time.perf_counter() - t0
    half = patch // 2
    ii = rng.integers(half, image - half, n_patches)
    jj = rng.integers(half, image - half, n_patches)
    patches = np.stack([img[:, i - half:i + half + 1, j - half:j + half + 1] for i, j in zip(ii, jj)])
    predict_proba(model, patches[:16], batch_size=256)                            # warm-up
    t0 = time.perf_counter()
    predict_proba(model, patches, batch_size=256)
    patch_s = time.perf_counter() - t0
    return {"filters": filters, "threads": threads, "dense_s": dense_s, "dense_px_per_s": image * image / dense_s,
            "patch_per_s": n_patches / patch_s, "peak_rss_mb": _rss_mb()}


def demo_job(filters: int, patch: int, batch: int, lr: float, channels: int, n_train: int, n_val: int) -> dict:
    from glaciermap.facies.train import train_fold

    rng = np.random.default_rng(0)
    n = n_train + n_val
    x = rng.normal(size=(n, channels, patch, patch)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, n)
    scene = rng.integers(0, 20, n)
    params = {"filters": filters, "dense_units": 32, "epochs": 2, "batch_size": batch, "lr": lr, "threads": 1}
    t0 = time.perf_counter()
    res = train_fold(x, y, scene, np.arange(n_train), np.arange(n_train, n), n_classes=N_CLASSES,
                     reflectance_idx=list(range(min(6, channels))), params=params, seed=0)
    total = time.perf_counter() - t0
    return {"filters": filters, "patch": patch, "batch": batch,
            "s_per_epoch": min(h["seconds"] for h in res["history"]), "total_2_epochs_s": total,
            "peak_rss_mb": _rss_mb()}


def clean_calib_job(n: int, k: int) -> dict:
    import cleanlab
    import sklearn
    from cleanlab.filter import find_label_issues
    from sklearn.kernel_ridge import KernelRidge

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(k) * 0.5, size=n)
    # given labels drawn from the probabilities themselves (a calibrated model): a realistic share is flagged
    labels = (probs.cumsum(1) < rng.random((n, 1))).sum(1).clip(0, k - 1)
    t0 = time.perf_counter()
    issues = find_label_issues(labels, probs, filter_by="confident_learning", n_jobs=1)
    cl_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    issues_par = find_label_issues(labels, probs, filter_by="confident_learning")
    cl_par_s = time.perf_counter() - t0
    assert np.array_equal(issues, issues_par)
    # calibration: max score -> accuracy, 100 bins, per-bin counts as sample weights
    score = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, 101)
    b = np.clip(np.digitize(score, edges) - 1, 0, 99)
    cnt = np.bincount(b, minlength=100)
    acc = np.bincount(b, weights=correct, minlength=100) / np.maximum(cnt, 1)
    keep = cnt > 0
    centres = ((edges[:-1] + edges[1:]) / 2)[keep][:, None]
    t0 = time.perf_counter()
    krr = KernelRidge(kernel="laplacian", alpha=1e-2, gamma=10.0).fit(centres, acc[keep], sample_weight=cnt[keep])
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cal = np.clip(krr.predict(score[:, None]), 0, 1)
    pred_s = time.perf_counter() - t0
    return {"cleanlab_version": cleanlab.__version__, "sklearn_version": sklearn.__version__, "n": n, "k": k,
            "cleanlab_s_1job": cl_s, "cleanlab_s_default_jobs": cl_par_s, "n_issues": int(issues.sum()),
            "krr_bins": int(keep.sum()), "krr_fit_s": fit_s, "krr_predict_all_s": pred_s,
            "calibrated_mean": float(cal.mean()), "observed_accuracy": float(correct.mean()),
            "peak_rss_mb": _rss_mb()}


# ------------------------------------------------------------------------------------------------------- main

def _table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    head = "| " + " | ".join(c[1] for c in cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    body = ["| " + " | ".join(format(r[c[0]], c[2]) if c[2] else str(r[c[0]]) for c in cols) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--filters", type=int, nargs="+", default=[64, 16])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--patch", type=int, default=33)
    ap.add_argument("--channels", type=int, default=10)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=1, help="timed training steps per configuration")
    ap.add_argument("--n-points", type=int, default=PAPER_POINTS)
    ap.add_argument("--image", type=int, default=600)
    ap.add_argument("--n-patches", type=int, default=512, help="patches for the patch-wise inference rate")
    ap.add_argument("--infer-threads", type=int, default=None, help="threads of the inference runs (default: max)")
    ap.add_argument("--demo-epochs", type=int, default=15)
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--skip-cleanlab", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke run: filters 16, 1 thread, batch 64, image 128")
    ap.add_argument("--out", type=Path, default=None, help="CSV of every number (nothing is written without it)")
    a = ap.parse_args(argv)
    if a.quick:
        a.filters, a.threads, a.batch, a.image, a.n_patches, a.skip_demo = [16], [1], 64, 128, 64, True
    infer_threads = a.infer_threads or max(a.threads)
    t_start = time.perf_counter()
    import torch

    print(f"# Facies cost on {platform.node()}: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f} at start")
    records = []

    rows = []
    for f in a.filters:
        for th in a.threads:
            r = _in_fresh_process(train_job, f, th, a.patch, a.channels, a.batch, a.steps)
            r["s_per_epoch_n"] = a.n_points / r["samples_per_s"]
            r["paper_days"] = r["s_per_epoch_n"] * PAPER_EPOCHS * PAPER_FOLDS / 86400
            rows.append(r)
            records += [dict(section="train", **r)]
    print(f"\n## Training: patch {a.patch}, {a.channels} channels, batch {a.batch}, {a.steps} timed step(s) each")
    print(_table(rows, [("filters", "filters", ""), ("threads", "threads", ""), ("parameters", "parameters", ","),
                        ("s_per_batch", "s / batch", ".2f"), ("samples_per_s", "samples / s", ".0f"),
                        ("s_per_epoch_n", f"s / epoch ({a.n_points:,} pts)", ",.0f"),
                        ("paper_days", f"days: {PAPER_EPOCHS} ep x {PAPER_FOLDS} folds", ",.1f"),
                        ("peak_rss_mb", "peak RSS MB", ".0f")]))

    rows = []
    for f in a.filters:
        r = _in_fresh_process(infer_job, f, infer_threads, a.patch, a.channels, a.image, a.n_patches)
        r["speedup"] = r["dense_px_per_s"] / r["patch_per_s"]
        rows.append(r)
        records += [dict(section="inference", **r)]
    print(f"\n## Inference: predict_dense on {a.image} x {a.image} px (window {a.patch}, tile 512) vs patch-wise "
          f"({a.n_patches} patches), {infer_threads} thread(s)")
    print(_table(rows, [("filters", "filters", ""), ("dense_s", "dense s", ".2f"),
                        ("dense_px_per_s", "dense px / s", ",.0f"), ("patch_per_s", "patch-wise patches / s", ",.0f"),
                        ("speedup", "dense speed-up", ",.0f"), ("peak_rss_mb", "peak RSS MB", ".0f")]))

    if not a.skip_demo:
        rows = []
        for f, p, b, lr in [(8, 21, 64, 3e-3), (8, 33, 64, 3e-3), (16, 21, 64, 3e-3)]:
            r = _in_fresh_process(demo_job, f, p, b, lr, a.channels, 2000, 500)
            r["total_12_s"] = 12 * a.demo_epochs * r["s_per_epoch"]
            rows.append(r)
            records += [dict(section="demo", **r)]
        print(f"\n## Demo presets: train_fold, 1 thread, 2,000 training + 500 validation points, {a.channels} channels; "
              f"projected 6 folds x 2 rounds x {a.demo_epochs} epochs")
        print(_table(rows, [("filters", "filters", ""), ("patch", "patch", ""), ("batch", "batch", ""),
                            ("s_per_epoch", "s / epoch (incl. val)", ".2f"),
                            ("total_12_s", f"12 trainings x {a.demo_epochs} ep, s", ",.0f"),
                            ("peak_rss_mb", "peak RSS MB", ".0f")]))

    if not a.skip_cleanlab:
        r = _in_fresh_process(clean_calib_job, PAPER_POINTS, N_CLASSES)
        records += [dict(section="clean_calib", **r)]
        print(f"\n## Label cleaning and calibration ({r['n']:,} x {r['k']} random probabilities; cleanlab "
              f"{r['cleanlab_version']}, scikit-learn {r['sklearn_version']})")
        print(_table([r], [("cleanlab_s_1job", "find_label_issues s (n_jobs=1)", ".2f"),
                           ("cleanlab_s_default_jobs", "s (default n_jobs)", ".2f"),
                           ("n_issues", "issues flagged", ","), ("krr_bins", "KRR bins", ""),
                           ("krr_fit_s", "KernelRidge fit s", ".4f"),
                           ("krr_predict_all_s", f"predict {r['n']:,} s", ".3f"),
                           ("peak_rss_mb", "peak RSS MB", ".0f")]))

    print(f"\nTotal {time.perf_counter() - t_start:.0f} s; load average {os.getloadavg()[0]:.2f} at the end "
          "(other processes on these CPUs slow every number down).")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted({k for r in records for k in r})
        with open(a.out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(records)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
