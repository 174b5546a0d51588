"""Training of one ensemble member (DL4GAM sections 3.2, 3.4, 3.5.3), resumable epoch by epoch.

Model: smp U-Net (ResNet34 by default), one logit output. Loss: sigmoid focal loss (gamma 2, alpha 0.25)
summed over valid pixels and divided by their count. Adam 1e-4, batch 16, no augmentation.

K-class models (``classes``: K >= 2 names, from a label set; glaciermap.segmentation.labels): K logits, softmax;
cross-entropy (``loss: ce``, the default) or softmax focal loss (``loss: focal``), each weighted per class
(``class_weights: balanced``: N / (K N_c) over the training cubes' labelled loss-mask pixels), averaged over
the labelled valid pixels; best epoch by the validation mean IoU over the classes (pixels pooled). The binary
path is unchanged by this (same settings fingerprint, same numbers).

Resumability: after every epoch the whole state (model, optimizer, epoch, RNG states, best score, metrics
so far, a fingerprint of the inputs) is written atomically to ``out_dir/last.pt``. The training order of
epoch e is a permutation drawn from a generator seeded with ``seed * 1000 + e`` only, so a killed job that
resumes from ``last.pt`` finishes with the same weights and metrics as an uninterrupted run (exactly on
CPU; on CUDA up to cuDNN non-determinism unless ``deterministic: true``). The best model (validation IoU
per glacier, pooled over its patches' valid pixels at threshold 0.5, then averaged weighted by glacier
area) is written to ``out_dir/best.pt``; ``out_dir/done.json`` appears only once all epochs are done, so
it is the file a workflow should declare as output (Snakemake deletes the declared outputs of a failed
job, which must not include the checkpoints a resume needs).

Rule ``train`` (workflow/rules/segmentation/train.smk) runs :func:`run_train`, one member per job. Rule ``train_fold``
(workflow/rules/segmentation/train_fold.smk, ``train.pack_members``) lives here too: :func:`run_train_fold` trains every
member of a fold in one job, each exactly as :func:`run_train`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, SequentialSampler

from glaciermap.allocator import keep_freed_memory
from glaciermap.compat import import_smp
from glaciermap.io import save_torch_atomic, write_csv_atomic, write_json_atomic
from glaciermap.segmentation.patches import PatchDataset, build_fold_items, items_fingerprint

log = logging.getLogger("glaciermap.segmentation.train")

DEFAULTS = {
    "arch": "Unet",
    "encoder": "resnet34",
    "encoder_weights": None,
    "model_kwargs": {},
    "patch_size": 256,
    "batch_size": 16,
    "val_batch_size": None,      # default: batch_size
    "lr": 1e-4,
    "weight_decay": 0.0,         # Adam's L2 penalty (CryoNet 1e-4; DL4GAM none)
    "epochs": 30,
    "seed": 0,
    "num_workers": 0,
    "checkpoint_every_s": 0,     # last.pt (+ best.pt) after every epoch; > 0: once this many seconds passed
    "keep_last_checkpoint": False,  # False: once complete, last.pt keeps only the record (no weights, no optimizer)
    "cache_size": 512,           # cubes kept per dataset (also bounded to 4 GB): a fold's cubes are read once
    "focal_gamma": 2.0,
    "focal_alpha": 0.25,
    "threshold": 0.5,
    "deterministic": False,
    "progress": None,            # None: only when stderr is a terminal
    "classes": None,             # class names; None or one name: the binary glacier target (one sigmoid output)
    "loss": None,                # K classes: "ce" (default) or "focal"; binary: focal (DL4GAM)
    "class_weights": "balanced",  # K classes: "balanced" (N / (K N_c)) or "none"
    "training_data": "cubes",    # "cubes": patches cut from the cubes; "store": from the model's training store
}
#: Settings that change the result: a checkpoint made with other values is refused on resume.
FINGERPRINT_KEYS = ("arch", "encoder", "encoder_weights", "model_kwargs", "patch_size", "batch_size", "lr", "epochs",
                    "seed", "focal_gamma", "focal_alpha", "threshold")
#: ... and for a K-class model also these (so that a binary model's fingerprint stays as it was).
CLASS_FINGERPRINT_KEYS = ("classes", "loss", "class_weights")
METRICS_COLUMNS = ["epoch", "train_loss", "val_loss", "val_iou_weighted", "time_data_s", "time_model_s", "seconds"]
#: a K-class model's score column: mean IoU over the classes (pixels pooled), instead of val_iou_weighted
CLASS_METRICS_COLUMNS = ["epoch", "train_loss", "val_loss", "val_miou", "time_data_s", "time_model_s", "seconds"]
STATE_FORMAT = "glaciermap-train-state-1"
MODEL_FORMAT = "glaciermap-model-1"


def resolve_device(device=None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def n_outputs(classes) -> int:
    """Output channels of a model for ``classes`` (names): 1 for the binary target (None or one name), else K."""
    return 1 if classes is None or len(classes) <= 1 else len(classes)


def build_model(arch: str = "Unet", encoder: str = "resnet34", in_channels: int = 16, encoder_weights=None,
                seed: int = 0, classes: int = 1, **kwargs) -> torch.nn.Module:
    """smp segmentation model with ``classes`` output logits (1: binary); decoder and head initialised from ``seed``.

    Without pretrained weights the whole model is drawn from the seed. With pretrained encoder weights the
    decoder and head are re-initialised explicitly after seeding, so members differ only there (DL4GAM).
    """
    smp = import_smp()
    torch.manual_seed(seed)
    model = smp.create_model(arch, encoder_name=encoder, encoder_weights=encoder_weights, in_channels=in_channels,
                             classes=int(classes), **kwargs)
    if encoder_weights is not None:
        torch.manual_seed(seed)
        model.initialize()
    return model


def focal_terms(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """Per-pixel sigmoid focal loss (Lin et al. 2020): alpha_t (1 - p_t)^gamma BCE."""
    ce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    return a_t * (1 - p_t) ** gamma * ce


def focal_loss(logits, target, mask, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """Focal loss summed over pixels with mask > 0, divided by their count (0 if none).

    Masked pixels get exactly zero gradient (their logits are replaced before the loss, so even a NaN
    logit there cannot leak into the gradient).
    """
    valid = mask > 0
    z = torch.where(valid, logits, torch.zeros_like(logits))
    t = torch.where(valid, target, torch.zeros_like(target))
    terms = torch.where(valid, focal_terms(z, t, gamma, alpha), torch.zeros_like(z))
    n = valid.sum()
    return terms.sum() / n.clamp(min=1)


def class_loss(logits, target, mask, weights=None, loss: str = "ce", gamma: float = 2.0) -> torch.Tensor:
    """K-class loss: per-pixel cross-entropy (``ce``) or softmax focal loss (``focal``: (1 - p_t)^gamma CE),
    each times its true class's weight, summed over pixels with mask > 0 and divided by their count (0 if none).

    ``logits`` [B, K, H, W], ``target`` [B, H, W] int64 class indices, ``mask`` [B, 1, H, W] or [B, H, W].
    Masked pixels get zero gradient (their logits and targets are replaced before the loss).
    """
    valid = (mask > 0).reshape(target.shape)
    z = torch.where(valid[:, None], logits, torch.zeros_like(logits))
    t = torch.where(valid, target, torch.zeros_like(target))
    logp = torch.nn.functional.log_softmax(z, dim=1)
    logp_t = logp.gather(1, t[:, None])[:, 0]
    terms = -logp_t
    if loss == "focal":
        terms = (1 - logp_t.exp()) ** gamma * terms
    elif loss != "ce":
        raise ValueError(f"loss must be 'ce' or 'focal' for a K-class model, got {loss!r}")
    if weights is not None:
        terms = terms * weights.to(terms.dtype)[t]
    terms = torch.where(valid, terms, torch.zeros_like(terms))
    return terms.sum() / valid.sum().clamp(min=1)


def balanced_weights(counts) -> np.ndarray:
    """Per-class weights N / (K N_c) (scikit-learn's "balanced"); a class without pixels gets weight 0."""
    counts = np.asarray(counts, np.float64)
    present = counts > 0
    w = np.zeros_like(counts)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w


class ConfusionCounter:
    """Pooled K x K confusion (rows truth, columns prediction) over valid pixels; mean IoU over the classes."""

    def __init__(self, k: int):
        self.k = int(k)
        self.m = np.zeros((self.k, self.k), np.int64)

    def update(self, pred: np.ndarray, truth: np.ndarray, valid: np.ndarray):
        idx = truth[valid].astype(np.int64) * self.k + pred[valid].astype(np.int64)
        self.m += np.bincount(idx, minlength=self.k * self.k).reshape(self.k, self.k)

    def iou(self) -> np.ndarray:
        tp = np.diag(self.m).astype(np.float64)
        den = self.m.sum(0) + self.m.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, tp / den, np.nan)

    def mean_iou(self) -> float:
        v = self.iou()
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


class EpochSampler(Sampler):
    """Random permutation that depends only on (seed, epoch); set the epoch before iterating."""

    def __init__(self, n: int, seed: int, drop_remainder_one: int | None = None):
        self.n, self.seed, self.epoch = int(n), int(seed), 0
        self.drop = drop_remainder_one  # batch size: drop a lone last sample (BatchNorm cannot train on 1x1x1)

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def _len(self):
        if self.drop and self.n % self.drop == 1 and self.n > 1:
            return self.n - 1
        return self.n

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed * 1000 + self.epoch)
        return iter(torch.randperm(self.n, generator=g)[: self._len()].tolist())

    def __len__(self):
        return self._len()


class _Indexed(Dataset):
    """Items of ``ds`` with their index appended (validation predictions are assigned to glaciers by index); a batch's
    indices (``half`` datasets, which collate their own batches) get them as one tensor."""

    def __init__(self, ds):
        self.ds = ds

    @property
    def half(self):
        return getattr(self.ds, "half", False)

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        if np.isscalar(i):
            return (*self.ds[i], i)
        return (*self.ds[i], torch.as_tensor(list(i), dtype=torch.int64))


def batch_loader(ds, batch_size: int, sampler, **kw) -> DataLoader:
    """A DataLoader of ``ds``'s items in ``sampler``'s order, in batches of ``batch_size``. A dataset that makes whole
    batches itself (``half``: the training store's float16 hand-over, ``StoreDataset.batch16``, which writes each item
    into its slot of the batch instead of having torch stack copies of them) is given each batch's indices, with
    torch's automatic batching off (a ``BatchSampler`` as the sampler, ``batch_size=None``: the DataLoader's documented
    way to load batched data); the same items in the same batches as the per-item path."""
    if getattr(ds, "half", False):
        return DataLoader(ds, batch_size=None, sampler=BatchSampler(sampler, int(batch_size), drop_last=False), **kw)
    return DataLoader(ds, batch_size=int(batch_size), sampler=sampler, **kw)


class GlacierIoU:
    """Per glacier TP/FP/FN over valid pixels; area-weighted mean IoU."""

    def __init__(self):
        self.c = {}

    def update(self, glacier, pred: np.ndarray, truth: np.ndarray, valid: np.ndarray):
        tp = int((pred & truth & valid).sum())
        fp = int((pred & ~truth & valid).sum())
        fn = int((~pred & truth & valid).sum())
        a = self.c.setdefault(glacier, [0, 0, 0])
        a[0] += tp
        a[1] += fp
        a[2] += fn

    def per_glacier(self) -> dict:
        return {g: (tp / (tp + fp + fn) if tp + fp + fn > 0 else float("nan")) for g, (tp, fp, fn) in self.c.items()}

    def weighted(self, areas: dict) -> float:
        num = den = 0.0
        for g, iou in self.per_glacier().items():
            if math.isfinite(iou):
                w = float(areas.get(g, 0.0))
                num += w * iou
                den += w
        return num / den if den > 0 else float("nan")


def _rng_state():
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st):
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _save(obj, path):
    save_torch_atomic(path, obj)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _progress(iterable, total, desc, enabled):
    from tqdm import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, disable=disable, leave=False)


def _timed(loader, device, finish=None):
    """Yield batches moved to the device and the seconds spent waiting for them (data time). ``finish``: what turns
    a batch on the device into the model's (the training store's float16 hand-over: ``StoreDataset.device_batch``)."""
    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            return
        batch = [b.to(device, non_blocking=True) if torch.is_tensor(b) else b for b in batch]
        if finish is not None:
            batch = finish(batch)
        yield batch, time.perf_counter() - t0


def train_member(train_items, val_items, stats: dict, cfg: dict, out_dir, device=None, *, test_glaciers,
                 glacier_areas: dict | None = None, max_epochs_this_run: int | None = None, on_epoch_end=None,
                 restart_on_mismatch: bool = False, cube_cache=None, label_paths: dict | None = None,
                 store=None) -> dict:
    """Train (or resume) one member; returns the summary also written to ``out_dir/done.json`` when complete.

    ``train_items``/``val_items``: (cube path, row, col) patch centres. ``test_glaciers``: the fold's test
    glaciers (required: the no-leak rule masks them and their 50 m from the loss). ``glacier_areas``:
    glacier -> area for the validation weighting (default: the glacier pixel count of its cube).
    ``max_epochs_this_run`` stops early after that many epochs (the job can be resumed);
    ``on_epoch_end(epoch, metrics_row)`` is called after each epoch (after its checkpoint, when one was due:
    ``checkpoint_every_s``). A ``last.pt``
    made from other inputs or settings raises, or with ``restart_on_mismatch`` (what a workflow rerun after
    changed inputs wants) is discarded together with best.pt, metrics.csv and done.json. ``cube_cache``: a
    :class:`~glaciermap.segmentation.patches.CubeCache` over :func:`~glaciermap.segmentation.patches.load_training_cube` shared by
    several members trained in one process (the same values, each cube read once). ``label_paths``: cube
    path -> label raster, for a K-class model (``cfg["classes"]`` with K >= 2 names). ``store``: the model's
    training store (:mod:`glaciermap.segmentation.training_store`), read instead of the cubes when
    ``cfg["training_data"]`` is "store" (binary models).
    """
    cfg = {**DEFAULTS, **(cfg or {})}
    if cfg["training_data"] not in ("cubes", "store"):
        raise ValueError(f"training_data must be 'cubes' or 'store', got {cfg['training_data']!r}")
    if cfg["training_data"] == "store" and store is None:
        raise ValueError("training_data 'store' needs the model's training store (rule training_store)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    if cfg["deterministic"]:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    channels = list(stats["channels"])
    seed = int(cfg["seed"])
    train_items = [(str(p), int(r), int(c)) for p, r, c in train_items]
    val_items = [(str(p), int(r), int(c)) for p, r, c in val_items]
    if not train_items:
        raise ValueError("train_member: no training patch")
    K = n_outputs(cfg["classes"])
    multi = K > 1
    if multi and label_paths is None:
        raise ValueError(f"train_member: a {K}-class model ({', '.join(cfg['classes'])}) needs label rasters")
    if multi and cfg["training_data"] == "store":
        raise ValueError(f"train_member: a {K}-class model reads its cubes (training_data 'cubes'); the training "
                         "store holds binary targets only")
    # K-class keys, and a weight decay when there is one: a binary model without it keeps its earlier fingerprint;
    # the store's float16 inputs are another setting than the cubes' float32: its own fingerprint key when used
    keys = FINGERPRINT_KEYS + (CLASS_FINGERPRINT_KEYS if multi else ()) + (("weight_decay",) if cfg["weight_decay"] else ())
    keys += ("training_data",) if cfg["training_data"] != "cubes" else ()
    fingerprint = items_fingerprint(train_items, val_items, stats, sorted(str(g) for g in test_glaciers),
                                    {k: cfg[k] for k in keys},
                                    *([sorted(map(str, label_paths.items()))] if multi else []))
    columns = CLASS_METRICS_COLUMNS if multi else METRICS_COLUMNS
    score_col = columns[3]

    model = build_model(cfg["arch"], cfg["encoder"], len(channels), cfg["encoder_weights"], seed, K,
                        **cfg["model_kwargs"]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    done_epoch, best_score, best_epoch, metrics, final_record = 0, float("nan"), 0, [], False
    last_pt, best_pt = out / "last.pt", out / "best.pt"
    if last_pt.exists():
        ck = torch.load(last_pt, map_location="cpu", weights_only=False)  # RNG states must stay on the CPU
        if (ck.get("format") != STATE_FORMAT or ck.get("fingerprint") != fingerprint) and restart_on_mismatch:
            log.warning("%s was made from other inputs or settings: starting over", last_pt)
            for f in ("done.json", "metrics.csv", "best.pt", "last.pt"):
                (out / f).unlink(missing_ok=True)
        elif ck.get("format") != STATE_FORMAT or ck.get("fingerprint") != fingerprint:
            raise RuntimeError(f"{last_pt} was made from other inputs or settings (fingerprint "
                               f"{ck.get('fingerprint')} != {fingerprint}); delete {out} to start over")
    if last_pt.exists():
        final_record = bool(ck.get("final"))
        if not final_record:   # a final record (keep_last_checkpoint off) has no state to continue from
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            _set_rng_state(ck["rng"])
        done_epoch, best_score, best_epoch, metrics = ck["epoch"], ck["best_score"], ck["best_epoch"], ck["metrics"]
        if best_epoch and not best_pt.exists():
            raise RuntimeError(f"{last_pt} records a best model (epoch {best_epoch}) but {best_pt} is missing; "
                               f"delete {out} to start over")
        log.info("resuming %s after epoch %d", out, done_epoch)
    else:
        for f in ("done.json", "metrics.csv", "best.pt"):   # leftovers without a state to resume from
            (out / f).unlink(missing_ok=True)
    if metrics:
        write_csv_atomic(out / "metrics.csv", pd.DataFrame(metrics, columns=columns))

    P, bs = int(cfg["patch_size"]), int(cfg["batch_size"])
    vbs = int(cfg["val_batch_size"] or bs)
    lp = label_paths if multi else None
    if cfg["training_data"] == "store":
        from glaciermap.segmentation.training_store import StoreDataset

        # on a GPU: float16 windows handed over by the loader, decoded on the device, the same inputs bit for bit
        # (training_store, "Float16 hand-over"); on the CPU that decode is slower than the worker's: float32 items
        half = device.type != "cpu"
        train_ds = StoreDataset(train_items, channels, stats, P, store, exclude_glaciers=test_glaciers, half=half)
        val_ds = StoreDataset(val_items, channels, stats, P, store, exclude_glaciers=test_glaciers, half=half)
    else:
        train_ds = PatchDataset(train_items, channels, stats, P, exclude_glaciers=test_glaciers,
                                cache_size=cfg["cache_size"], shared_cache=cube_cache, label_paths=lp)
        val_ds = PatchDataset(val_items, channels, stats, P, exclude_glaciers=test_glaciers,
                              cache_size=cfg["cache_size"], shared_cache=cube_cache, label_paths=lp)
    weights, loss_name = None, None
    if multi:
        loss_name = cfg["loss"] or "ce"
        if cfg["class_weights"] == "balanced":
            counts = train_ds.class_counts(K)
            weights = torch.tensor(balanced_weights(counts), dtype=torch.float32, device=device)
            log.info("class weights (balanced) %s from labelled pixels %s",
                     dict(zip(cfg["classes"], np.round(weights.cpu().numpy(), 4).tolist())),
                     dict(zip(cfg["classes"], counts.tolist())))
        elif cfg["class_weights"] != "none":
            raise ValueError(f"class_weights must be 'balanced' or 'none', got {cfg['class_weights']!r}")
    sampler = EpochSampler(len(train_ds), seed, drop_remainder_one=bs)
    nw = int(cfg["num_workers"])
    loader_kw = {"num_workers": nw, "pin_memory": device.type == "cuda", "persistent_workers": nw > 0}
    train_loader = batch_loader(train_ds, bs, sampler, generator=torch.Generator().manual_seed(seed), **loader_kw)
    val_loader = batch_loader(_Indexed(val_ds), vbs, SequentialSampler(range(len(val_ds))), **loader_kw)
    train_finish, val_finish = (getattr(ds, "device_batch", None) for ds in (train_ds, val_ds))
    areas = dict(glacier_areas or {})
    gamma, alpha, thr_logit = float(cfg["focal_gamma"]), float(cfg["focal_alpha"]), _logit(float(cfg["threshold"]))

    ran = 0
    pending_best, t_checkpoint = None, time.perf_counter()
    for epoch in range(done_epoch + 1, int(cfg["epochs"]) + 1):
        if max_epochs_this_run is not None and ran >= max_epochs_this_run:
            break
        t_epoch = time.perf_counter()
        t_data = t_model = 0.0
        sampler.set_epoch(epoch)
        # the loader's generator only seeds worker processes; re-seed it per epoch so that a resumed run's
        # workers get the seeds an uninterrupted run would (its state is not in last.pt)
        train_loader.generator.manual_seed(seed * 1000 + epoch)
        model.train()
        loss_sum = n_sum = 0.0
        for (x, y, m), dt in _progress(_timed(train_loader, device, train_finish), len(train_loader),
                                       f"epoch {epoch} train", cfg["progress"]):
            t_data += dt
            t0 = time.perf_counter()
            logits = model(x)
            loss = class_loss(logits, y, m, weights, loss_name, gamma) if multi else focal_loss(logits, y, m, gamma, alpha)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n = float(m.sum())
            loss_sum += float(loss.detach()) * n
            n_sum += n
            _sync(device)
            t_model += time.perf_counter() - t0
        train_loss = loss_sum / n_sum if n_sum > 0 else float("nan")

        model.eval()
        iou = ConfusionCounter(K) if multi else GlacierIoU()
        vloss = vn = 0.0
        with torch.inference_mode():
            for (x, y, m, idx), dt in _progress(_timed(val_loader, device, val_finish), len(val_loader),
                                                f"epoch {epoch} val", cfg["progress"]):
                t_data += dt
                t0 = time.perf_counter()
                logits = model(x)
                valid = m > 0
                if multi:
                    vn_b = float(valid.sum())
                    vloss += float(class_loss(logits, y, m, weights, loss_name, gamma)) * vn_b
                    vn += vn_b
                    iou.update(logits.argmax(1).cpu().numpy(), y.cpu().numpy(), valid[:, 0].cpu().numpy())
                    _sync(device)
                    t_model += time.perf_counter() - t0
                    continue
                vloss += float(torch.where(valid, focal_terms(logits, y, gamma, alpha), torch.zeros_like(logits)).sum())
                vn += float(valid.sum())
                pred = (logits > thr_logit).cpu().numpy()
                truth, vmask = (y > 0.5).cpu().numpy(), valid.cpu().numpy()
                _sync(device)
                t_model += time.perf_counter() - t0
                t0 = time.perf_counter()
                for j, i in enumerate(idx.tolist()):
                    g = val_ds.glacier_of(i)
                    iou.update(g, pred[j], truth[j], vmask[j])
                    if g not in areas:
                        areas[g] = val_ds.glacier_area(i)
                t_data += time.perf_counter() - t0
        val_loss = vloss / vn if vn > 0 else float("nan")
        score = iou.mean_iou() if multi else iou.weighted(areas)

        improved = best_epoch == 0 or (math.isfinite(score) and (not math.isfinite(best_score) or score > best_score)) \
            or (not math.isfinite(score) and not math.isfinite(best_score))
        if improved:
            best_score, best_epoch = score, epoch
            # kept in memory and written together with last.pt, so that best.pt on disk always belongs to it
            pending_best = {"format": MODEL_FORMAT, "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                            "arch": cfg["arch"], "encoder": cfg["encoder"], "in_channels": len(channels),
                            "model_kwargs": dict(cfg["model_kwargs"]), "channels": channels, "stats": stats,
                            "patch_size": P, "seed": seed, "epoch": epoch, "score": score, "fingerprint": fingerprint,
                            "out_channels": K, "classes": list(cfg["classes"] or ["glacier"])}
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, score_col: score,
               "time_data_s": t_data, "time_model_s": t_model, "seconds": time.perf_counter() - t_epoch}
        metrics = metrics + [row]
        ran += 1
        done_epoch = epoch
        # checkpoint after the last epoch, before stopping early, and otherwise once checkpoint_every_s has
        # passed (0: every epoch); a killed job resumes from the last one and replays the epochs after it
        due = (epoch == int(cfg["epochs"]) or (max_epochs_this_run is not None and ran >= max_epochs_this_run)
               or time.perf_counter() - t_checkpoint >= float(cfg["checkpoint_every_s"]))
        if due:
            if pending_best is not None:
                _save(pending_best, best_pt)
                pending_best = None
            _save({"format": STATE_FORMAT, "fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                   "optimizer": opt.state_dict(), "rng": _rng_state(), "best_score": best_score,
                   "best_epoch": best_epoch, "metrics": metrics, "cfg": {k: cfg[k] for k in FINGERPRINT_KEYS}}, last_pt)
            write_csv_atomic(out / "metrics.csv", pd.DataFrame(metrics, columns=columns))
            t_checkpoint = time.perf_counter()
        log.info("epoch %d: train loss %.4f, val loss %.4f, val " + ("mean IoU" if multi else "IoU") + " %.4f%s (data %.1f s, model %.1f s)%s", epoch,
                 train_loss, val_loss, score, " (best)" if improved else "", t_data, t_model,
                 ", checkpointed" if due else "")
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)

    summary = {"complete": done_epoch >= int(cfg["epochs"]), "epochs_done": done_epoch, "best_epoch": best_epoch,
               "best_score": best_score, "seed": seed, "fingerprint": fingerprint, "n_train": len(train_items),
               "n_val": len(val_items), "device": str(device),
               "time_data_s": float(sum(r["time_data_s"] for r in metrics)),
               "time_model_s": float(sum(r["time_model_s"] for r in metrics)),
               **({"classes": list(cfg["classes"]), "loss": loss_name, "class_weights":
                   None if weights is None else weights.cpu().numpy().tolist()} if multi else {})}
    if summary["complete"]:
        if not cfg["keep_last_checkpoint"] and not final_record:
            # the weights are in best.pt; the last epoch's weights and Adam moments (3x best.pt) are only needed to
            # train on. The record that stays (epochs, best epoch, metrics, fingerprint) lets a lost done.json be
            # re-created without training (docs/concurrency.md), and a changed setting still starts over.
            _save({"format": STATE_FORMAT, "fingerprint": fingerprint, "epoch": done_epoch, "final": True,
                   "best_score": best_score, "best_epoch": best_epoch, "metrics": metrics,
                   "cfg": {k: cfg[k] for k in FINGERPRINT_KEYS}}, last_pt)
        write_json_atomic(out / "done.json", summary)
    return summary


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def load_member(path, device=None):
    """(model in eval mode on the device, metadata) from a ``best.pt``."""
    device = resolve_device(device)
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if ck.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a glaciermap model file")
    model = build_model(ck["arch"], ck["encoder"], ck["in_channels"], None, ck["seed"], ck.get("out_channels", 1),
                        **ck["model_kwargs"])
    model.load_state_dict(ck["model"])
    meta = {k: v for k, v in ck.items() if k != "model"}
    return model.to(device).eval(), meta


def member_seed(fold: int, member: int, base_seed: int = 0) -> int:
    """Seed of (fold, member): patch subsample, decoder/head initialisation and data order derive from it."""
    return int(base_seed) + 100 * int(fold) + int(member)


def run_member(centres_train: pd.DataFrame, centres_val: pd.DataFrame, split: pd.DataFrame, fold: int, member: int,
               stats: dict, cfg: dict, out_dir, device=None, **kw) -> dict:
    """One (fold, member) job: fold items from the centre tables, the member's subsample, then :func:`train_member`.

    ``cfg`` may hold ``n_patches`` (7488 in the reference) or ``patch_fraction``, ``n_val_patches`` /
    ``val_patch_fraction`` (default: every validation location) and ``base_seed``.
    """
    seed = member_seed(fold, member, cfg.get("base_seed", 0))
    n_total, frac = cfg.get("n_patches"), cfg.get("patch_fraction")
    if n_total is None and frac is None:
        frac = 1.0
    fi = build_fold_items(centres_train, centres_val, split, fold, n_total=n_total, fraction=frac, seed=seed,
                          n_val=cfg.get("n_val_patches"), val_fraction=cfg.get("val_patch_fraction"))
    log.info("fold %d member %d: %d of %d training patches (f = %.3f), %d validation patches, %d test glaciers",
             fold, member, len(fi.train), fi.n_train_all, fi.f, len(fi.val), len(fi.test_glaciers))
    tcfg = {k: v for k, v in cfg.items() if k in DEFAULTS}
    tcfg["seed"] = seed
    return train_member(fi.train, fi.val, stats, tcfg, out_dir, device, test_glaciers=fi.test_glaciers, **kw)


# ---------------------------------------------------------------------------------------------------- rules train and train_fold


def label_paths_for(tables, label_files) -> dict:
    """cube path -> label raster (``.../labels/<set>/<epoch>/<glacier>.tif``) for every cube of the centre tables
    whose glacier has one (a K-class model's training and validation cubes)."""
    by_glacier = {Path(p).stem: str(p) for p in label_files}
    out = {}
    for t in tables:
        for g, path in zip(t["glac_id"].astype(str), t["path"].astype(str)):
            if g in by_glacier:
                out[path] = by_glacier[g]
    return out


def run_train(centres_train_csv, centres_val_csv, split_csv, norm_json, fold: int, member: int, cfg: dict,
              done_json, threads: int = 1, cube_cache=None, labels=None, store=None) -> dict:
    """One (fold, member): run_member writes last.pt/best.pt/metrics.csv and finally done.json beside it.

    ``labels``: the label rasters of the fold's training and validation glaciers (a K-class model). ``store``: the
    model's training store (``training_data: store``).

    Holds ``models/fold<k>/.member<m>.train.lock`` while it runs (glaciermap.joblock, docs/concurrency.md): a
    twin of this job (a second Snakemake invocation) waits for it, then returns its done.json without training.
    """
    from glaciermap.joblock import job_lock
    from glaciermap.segmentation.patches import load_normalisation
    from glaciermap.segmentation.split import read_split

    done_json = Path(done_json)
    with job_lock(done_json.parent.parent / f".{done_json.parent.name}.train.lock",
                  f"train fold {fold} member {member}") as lock:
        if lock.waited and done_json.exists():
            log.info("fold %d member %d: trained by the concurrent job, done.json is there: nothing to do",
                     fold, member)
            return json.loads(done_json.read_text())
        keep_freed_memory()
        torch.set_num_threads(max(int(threads), 1))
        read = lambda p: pd.read_csv(p, dtype={"glac_id": str})  # noqa: E731
        cfg = dict(cfg)
        device = cfg.pop("device", None)
        ct, cv = read(centres_train_csv), read(centres_val_csv)
        lp = label_paths_for((ct, cv), labels) if labels else None
        summary = run_member(ct, cv, read_split(split_csv), fold, member, load_normalisation(norm_json), cfg,
                             done_json.parent, device, restart_on_mismatch=True, cube_cache=cube_cache, label_paths=lp,
                             store=store)
        if not done_json.exists():
            raise RuntimeError(f"training fold {fold} member {member} stopped before its last epoch: {summary}")
        return summary


def run_train_fold(centres_train_csv, centres_val_csv, split_csv, norm_json, fold: int, members, cfg: dict,
                   done_jsons, threads: int = 1, labels=None, store=None) -> dict:
    """Every member of one fold in one process (train.pack_members), one after the other.

    Each member is exactly :func:`run_train` (same seed, files and done.json), so packing changes no result. A
    member whose done.json is already there goes through :func:`run_train` too: with the same inputs and settings
    its record says it is complete and nothing is trained (a second or two to check); with another setting (more
    epochs, another learning rate, other patches...) it is trained again. The members' done.json are not the
    job's declared outputs, so Snakemake does not remove them when a changed setting re-runs the job: skipping a
    member on its done.json alone kept the old models under the new settings.
    """
    from glaciermap.segmentation.patches import CubeCache, load_training_cube

    members, done_jsons = [int(m) for m in members], [Path(p) for p in done_jsons]
    # the members share the fold's training and validation cubes: read each once (bounded by bytes only)
    cache = CubeCache(load_training_cube, max_items=1_000_000, max_bytes=4e9)
    if len(members) != len(done_jsons):
        raise ValueError(f"fold {fold}: {len(members)} members but {len(done_jsons)} done.json outputs")
    out = {}
    for member, done in zip(members, done_jsons):
        if done.parent.name != f"member{member}":
            raise ValueError(f"fold {fold}: output {done} does not belong to member {member}")
        log.info("fold %d member %d: %s (%d of %d in this job)", fold, member,
                 "done.json there: checking its settings" if done.exists() else "training", len(out) + 1, len(members))
        out[member] = run_train(centres_train_csv, centres_val_csv, split_csv, norm_json, fold, member, cfg, done,
                                threads, cube_cache=cache, labels=labels, store=store)
    log.info("fold %d: cube cache %d hits, %d misses", fold, cache.hits, cache.misses)
    return out
