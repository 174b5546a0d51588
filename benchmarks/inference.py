"""Inference schemes on a finished run's trained models: the reference's against cross-glacier batching.

Usage: python benchmarks/inference.py [--results results/demo] [--model dl4gam] [--epoch inventory]
                                      [--folds 0 1 ...] [--members N] [--threads 1] [--variants NAME ...]
                                      [--boot 1000] [--csv out.csv]

Needs a finished `make run` (or any run): each fold's `models/<model>/fold<k>/ensemble.json`, its members'
`best.pt`, `normalisation.json`, the frozen split and the test glaciers' cubes. Every variant predicts the test
glaciers of every fold with that fold's ensemble, exactly as the `infer` rule does (glaciermap.segmentation.infer,
same windows, blending and masked-pixel fill), and is scored against the inventory outline at the cube's epoch
(pixels of the 50 m buffer, cloud-free; test IoU of the paper: ensemble mean >= 0.5, TP/FP/FN pooled).

Strides are given as fractions of the patch (P): the reference's stride 32 on 256 px patches is P/8; the
paper-unit strides 32, 64, 128 are P/8, P/4, P/2 at any patch size. Variants:

  reference     one model call per glacier, stride P/8, mean blending (5 % border dropped), the reference's
                grid plus its 4 extreme and centroid windows (METHODS.md, "Inference")
  mean-8 ...    cross-glacier batches (batch 32), mean or hann blending, stride P/8, P/4, P/2 (hann-2 = P/2, the
                configured demo scheme at 64 px patches is hann, stride 32 = P/2)
  *-bf16        the same in bfloat16 autocast (infer.precision); *-flip2 / *-flip4 with flip averaging (infer.flips)
  mean-wN-...   an inference window of N training patches (stride as a fraction of the window)
  mean-...-bNN  NN % of the window border dropped by the mean blending (the reference: 5 %)

Prints one table: windows, model patches/s (windows x members x flips per second of the whole pass), glaciers/s,
speed-up over the reference, pooled test IoU and its difference to the reference in percentage points with a
bootstrap 95 % range over glaciers, and the regional glacier area difference to the reference in %.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np


class Variant(NamedTuple):
    denom: float                  # stride = window / denom
    blend: str                    # mean or hann
    reference: bool = False       # one model call per glacier, plus the reference's extreme and centroid windows
    flips: int = 1                # infer.flips
    precision: str = "float32"    # infer.precision
    window: int = 1               # inference window, in training patches
    border: float = 0.05          # dropped border of the mean blending, as a window fraction (the reference's)


VARIANTS = {
    "reference": Variant(8, "mean", reference=True),
    "mean-8": Variant(8, "mean"),
    "hann-8": Variant(8, "hann"),
    "mean-4": Variant(4, "mean"),
    "hann-4": Variant(4, "hann"),
    "mean-2": Variant(2, "mean"),
    "hann-2": Variant(2, "hann"),
    "mean-2.67": Variant(8 / 3, "mean"),
    "hann-2.67": Variant(8 / 3, "hann"),
    "mean-4-bf16": Variant(4, "mean", precision="bfloat16"),
    "hann-4-bf16": Variant(4, "hann", precision="bfloat16"),
    "mean-2.67-bf16": Variant(8 / 3, "mean", precision="bfloat16"),
    "hann-2.67-bf16": Variant(8 / 3, "hann", precision="bfloat16"),
    "mean-2-bf16": Variant(2, "mean", precision="bfloat16"),
    "hann-2-bf16": Variant(2, "hann", precision="bfloat16"),
    "hann-2-flip2": Variant(2, "hann", flips=2),
    "hann-2-flip2-bf16": Variant(2, "hann", flips=2, precision="bfloat16"),
    # larger inference windows than the training patches (the U-Net is fully convolutional): more context per
    # pixel and a smaller share of window border at the same number of views per pixel ((window / stride)^2)
    "mean-w2-2": Variant(2, "mean", window=2),
    "mean-w2-2.67": Variant(8 / 3, "mean", window=2),
    "mean-w2-4": Variant(4, "mean", window=2),
    "mean-w4-2": Variant(2, "mean", window=4),
    "mean-w4-4": Variant(4, "mean", window=4),
    "mean-w2-2-bf16": Variant(2, "mean", precision="bfloat16", window=2),
    "mean-w2-2.67-bf16": Variant(8 / 3, "mean", precision="bfloat16", window=2),
    "mean-w4-2-bf16": Variant(2, "mean", precision="bfloat16", window=4),
    # a wider dropped border: each pixel counted only from windows where it has more context
    "mean-2.67-b10-bf16": Variant(8 / 3, "mean", precision="bfloat16", border=0.10),
    "mean-2.67-b15-bf16": Variant(8 / 3, "mean", precision="bfloat16", border=0.15),
    "mean-2-b10-bf16": Variant(2, "mean", precision="bfloat16", border=0.10),
    "mean-2-b15-bf16": Variant(2, "mean", precision="bfloat16", border=0.15),
    "mean-2-b20-bf16": Variant(2, "mean", precision="bfloat16", border=0.20),
    "mean-2-flip2-bf16": Variant(2, "mean", flips=2, precision="bfloat16"),
    "mean-2-flip2": Variant(2, "mean", flips=2),
    "mean-2-flip4-bf16": Variant(2, "mean", flips=4, precision="bfloat16"),
    "mean-2.67-flip2-bf16": Variant(8 / 3, "mean", flips=2, precision="bfloat16"),
}
DEFAULT = ["reference", "mean-8", "hann-8", "mean-4", "hann-4", "mean-2", "hann-2", "mean-2.67", "hann-2.67",
           "mean-4-bf16", "mean-2.67-bf16", "hann-2.67-bf16", "mean-2-bf16", "hann-2-bf16", "hann-2-flip2-bf16",
           "mean-2-flip2", "mean-2-flip2-bf16"]


def fold_jobs(results: Path, model: str, epoch: str, folds, n_members):
    """[(fold, member best.pt paths, normalisation.json, test cube paths)] of a finished run."""
    from glaciermap.segmentation.split import read_split

    split = read_split(results / "split" / "split.csv")
    n_folds = sum(1 for c in split.columns if c.startswith("role_"))
    out = []
    for k in (folds if folds else range(n_folds)):
        fold_dir = results / "models" / model / f"fold{k}"
        ens = json.loads((fold_dir / "ensemble.json").read_text())["members"]
        best = [Path(d).parent / "best.pt" for d in ens][: n_members or None]
        best = [p if p.is_absolute() else results.parents[1] / p for p in best]
        test = sorted(split.loc[split[f"role_{k}"] == "test", "glac_id"].astype(str))
        cubes = [results / "cubes" / g / f"{epoch}.nc" for g in test]
        cubes = [c for c in cubes if c.exists()]
        out.append((k, best, fold_dir / "normalisation.json", cubes))
    return out


def run_variant(name: str, jobs, patch: int, batch: int) -> dict:
    """Predict every fold's test cubes with one variant: per-glacier counts and the timings."""
    from glaciermap.segmentation.infer import iter_predictions

    v = VARIANTS[name]
    window = patch * v.window
    stride = max(int(round(window / v.denom)), 1)
    per = {}
    t = {"seconds": 0.0, "windows": 0, "model_patches": 0}
    for _k, models, stats, cubes in jobs:
        timings: dict = {}
        t0 = time.perf_counter()
        for path, probs, cube in iter_predictions(models, cubes, stats, patch_size=window, stride=stride, blend=v.blend,
                                                  batch_size=batch, device="cpu",
                                                  batch_across_glaciers=not v.reference, reference_extras=v.reference,
                                                  flips=v.flips, precision=v.precision, border_frac=v.border,
                                                  timings=timings):
            if probs is None:
                continue
            mu = probs.mean(0)
            scored = cube.buffer50 & ~cube.masked
            pred, truth = (mu >= 0.5) & scored, cube.glacier & scored
            per[cube.glacier_id] = {"tp": int((pred & truth).sum()), "fp": int((pred & ~truth).sum()),
                                    "fn": int((~pred & truth).sum()),
                                    "area_km2": float(((mu >= 0.5) & cube.buffer50).sum()) * cube.resolution ** 2 / 1e6}
        t["seconds"] += time.perf_counter() - t0
        t["windows"] += int(timings.get("n_patches", 0))
        t["model_patches"] += int(timings.get("n_patches", 0)) * len(models) * v.flips
    return {"name": name, "window": window, "stride": stride, "blend": v.blend,
            "border": v.border if v.blend == "mean" else None,
            "per": per, **t}


def pooled_iou(per: dict, ids) -> float:
    tp = sum(per[g]["tp"] for g in ids)
    fp = sum(per[g]["fp"] for g in ids)
    fn = sum(per[g]["fn"] for g in ids)
    return tp / (tp + fp + fn) if tp + fp + fn else float("nan")


def table(runs: list[dict], boot: int, seed: int = 0) -> list[dict]:
    ref = next(r for r in runs if r["name"] == "reference")
    ids = sorted(ref["per"])
    rng = np.random.default_rng(seed)
    draws = [rng.choice(len(ids), len(ids), replace=True) for _ in range(boot)]
    ref_area = sum(ref["per"][g]["area_km2"] for g in ids)
    rows = []
    for r in runs:
        iou = pooled_iou(r["per"], ids)
        d = [100 * (pooled_iou(r["per"], [ids[i] for i in s]) - pooled_iou(ref["per"], [ids[i] for i in s]))
             for s in draws]
        area = sum(r["per"][g]["area_km2"] for g in ids)
        rows.append({"variant": r["name"], "window_px": r["window"], "stride_px": r["stride"], "blend": r["blend"],
                     "border_px": None if r["border"] is None else int(round(r["window"] * r["border"])), "windows": r["windows"],
                     "model_patches_per_s": r["model_patches"] / r["seconds"], "glaciers_per_s": len(ids) / r["seconds"],
                     "seconds": r["seconds"], "speedup": ref["seconds"] / r["seconds"], "test_iou": iou,
                     "d_iou_pp": 100 * (iou - pooled_iou(ref["per"], ids)),
                     "d_iou_lo": float(np.percentile(d, 2.5)), "d_iou_hi": float(np.percentile(d, 97.5)),
                     "d_area_pct": 100 * (area - ref_area) / ref_area})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Variants: " + ", ".join(VARIANTS) + f". Default: {' '.join(DEFAULT)}.")
    ap.add_argument("--results", default="results/demo", help="a finished run's results/<region> folder")
    ap.add_argument("--model", default="dl4gam", help="a binary model variant of the run (default dl4gam)")
    ap.add_argument("--epoch", default="inventory", help="the cubes' epoch (default inventory: the labelled one)")
    ap.add_argument("--folds", type=int, nargs="*", default=None, help="folds (default: all)")
    ap.add_argument("--members", type=int, default=0, help="members per fold (default: all of the ensemble)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as one infer job per core)")
    ap.add_argument("--batch", type=int, default=32, help="batch size of the batched variants (default 32)")
    ap.add_argument("--variants", nargs="*", default=DEFAULT, choices=sorted(VARIANTS), metavar="NAME")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap draws over glaciers (default 1000)")
    ap.add_argument("--csv", default=None, help="also write the table here")
    a = ap.parse_args(argv)

    import pandas as pd
    import torch

    from glaciermap.segmentation.patches import load_normalisation
    from glaciermap.segmentation.train import load_member

    torch.set_num_threads(a.threads)
    results = Path(a.results).resolve()
    jobs, patch = [], None
    for k, best, norm, cubes in fold_jobs(results, a.model, a.epoch, a.folds, a.members):
        models = []
        for p in best:
            m, meta = load_member(p, "cpu")
            if meta.get("out_channels", 1) != 1:
                raise SystemExit(f"{p}: a {meta['out_channels']}-class model; this benchmark scores binary models")
            patch = int(meta["patch_size"])
            models.append(m)
        jobs.append((k, models, load_normalisation(norm), [str(c) for c in cubes]))
    variants = ["reference"] + [v for v in a.variants if v != "reference"]
    runs = []
    for v in variants:
        r = run_variant(v, jobs, patch, a.batch)
        runs.append(r)
        print(f"# {v}: {r['windows']} windows in {r['seconds']:.1f} s", flush=True)
    rows = table(runs, a.boot)
    df = pd.DataFrame(rows)
    n_gl = len(runs[0]["per"])
    print(f"\n{a.model}: {len(jobs)} folds, {sum(len(m) for _, m, _, _ in jobs) // len(jobs)} members per fold, "
          f"{n_gl} test glaciers, patch {patch} px, {a.threads} thread(s), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}")
    fmt = {"model_patches_per_s": "{:.1f}".format, "glaciers_per_s": "{:.2f}".format, "seconds": "{:.1f}".format,
           "speedup": "{:.2f}".format, "test_iou": "{:.4f}".format, "d_iou_pp": "{:+.2f}".format,
           "d_iou_lo": "{:+.2f}".format, "d_iou_hi": "{:+.2f}".format, "d_area_pct": "{:+.2f}".format}
    print(df.to_string(index=False, formatters=fmt))
    if a.csv:
        df.to_csv(a.csv, index=False)
    return df


if __name__ == "__main__":
    main()
