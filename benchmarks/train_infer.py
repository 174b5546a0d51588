"""Training and inference throughput of the paper's model on this machine (model compute only).

Usage: python benchmarks/train_infer.py [--device cpu|cuda] [--threads N] [--steps 3] [--patch 256] [--batch 16]
                                        [--encoder resnet34] [--patches-per-epoch 7488]

The model is the one the `train` rule builds (glaciermap.segmentation.train.build_model: smp U-Net, ResNet34 encoder,
16 input channels, one logit), trained with the same focal loss and Adam 1e-4 on random patches of the
paper's size (256 px, batch 16). One warm-up step is not timed. Data loading is not included: it is
reported per epoch by the training job itself (``time_data_s`` in metrics.csv). Prints one table:
training patches/s, seconds per batch, seconds per epoch of ``--patches-per-epoch`` patches (DL4GAM draws
7488 per member) plus validation, and inference patches/s (eval mode, no gradient, batch ``--infer-batch``).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from glaciermap.segmentation.train import build_model, focal_loss


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device: str = "cpu", threads: int | None = None, steps: int = 3, patch: int = 256, batch: int = 16,
            encoder: str = "resnet34", infer_batch: int = 32, infer_steps: int = 3) -> dict:
    dev = torch.device(device)
    if threads:
        torch.set_num_threads(threads)
    model = build_model("Unet", encoder, 16, None, seed=0).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 16, patch, patch, generator=g).to(dev)
    y = (torch.rand(batch, 1, patch, patch, generator=g) > 0.5).float().to(dev)
    m = torch.ones_like(y)

    def step():
        loss = focal_loss(model(x), y, m)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    step()                                     # warm-up (allocations, cuDNN autotune)
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(dev)
    train_s = (time.perf_counter() - t0) / steps

    model.eval()
    xi = torch.randn(infer_batch, 16, patch, patch, generator=g).to(dev)
    with torch.inference_mode():
        torch.sigmoid(model(xi))
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(infer_steps):
            torch.sigmoid(model(xi))
        _sync(dev)
    infer_s = (time.perf_counter() - t0) / infer_steps
    return {"device": str(dev), "threads": torch.get_num_threads(), "encoder": encoder, "patch": patch,
            "batch": batch, "train_s_per_batch": train_s, "train_patches_per_s": batch / train_s,
            "infer_batch": infer_batch, "infer_patches_per_s": infer_batch / infer_s}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--steps", type=int, default=3, help="timed training steps (after one warm-up step)")
    ap.add_argument("--infer-steps", type=int, default=3)
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--infer-batch", type=int, default=32)
    ap.add_argument("--encoder", default="resnet34")
    ap.add_argument("--patches-per-epoch", type=int, default=7488)
    ap.add_argument("--val-patches", type=int, default=1500, help="validation patches per epoch (forward only)")
    a = ap.parse_args(argv)
    r = measure(a.device, a.threads, a.steps, a.patch, a.batch, a.encoder, a.infer_batch, a.infer_steps)
    epoch_s = a.patches_per_epoch / r["train_patches_per_s"] + a.val_patches / r["infer_patches_per_s"]
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"device {r['device']}, {r['threads']} threads; U-Net {r['encoder']}, 16 channels, {r['patch']} px")
    print("| measure | value |")
    print("| --- | ---: |")
    print(f"| training: s per batch of {r['batch']} | {r['train_s_per_batch']:.2f} |")
    print(f"| training: patches/s | {r['train_patches_per_s']:.2f} |")
    print(f"| training: s per epoch ({a.patches_per_epoch} train + {a.val_patches} val patches) | {epoch_s:.0f} |")
    print(f"| inference: patches/s (batch {r['infer_batch']}) | {r['infer_patches_per_s']:.2f} |")
    return r


if __name__ == "__main__":
    main()
