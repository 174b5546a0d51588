"""Focal loss, model construction, a tiny training run, and resume-after-kill giving identical results."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from glaciermap.segmentation import patches, train
from test_patches import IDS, scene_labels, split_table, write_cube
from test_resume_kill import SETTINGS as JOB_SETTINGS, job_inputs  # noqa: F401  (module fixture: a training job's inputs)

TINY = {"arch": "Unet", "encoder": "resnet18", "patch_size": 32, "batch_size": 4, "epochs": 2, "seed": 7,
        "model_kwargs": {"decoder_channels": (32, 16, 16, 8, 8)}, "progress": False}


def test_focal_loss_by_hand_and_masked_gradient():
    z = torch.tensor([2.0, -1.0, 0.5, float("nan"), 3.0]).reshape(1, 1, 1, 5).requires_grad_(True)
    y = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0]).reshape(1, 1, 1, 5)
    m = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]).reshape(1, 1, 1, 5)
    loss = train.focal_loss(z, y, m, gamma=2.0, alpha=0.25)

    def term(zi, yi, a=0.25, g=2.0):
        p = 1 / (1 + math.exp(-zi))
        return -a * (1 - p) ** g * math.log(p) if yi else -(1 - a) * p ** g * math.log(1 - p)

    expected = (term(2.0, 1) + term(-1.0, 0) + term(0.5, 1)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    g = z.grad.flatten()
    assert torch.isfinite(g).all()
    assert g[3] == 0 and g[4] == 0 and (g[:3] != 0).all()
    # gamma 0, alpha 0.5 is half the masked mean BCE
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z.detach()[..., :3], y[..., :3])
    assert train.focal_loss(z.detach(), y, m, gamma=0.0, alpha=0.5).item() == pytest.approx(0.5 * bce.item(), rel=1e-6)
    zero = train.focal_loss(z.detach(), y, torch.zeros_like(m))
    assert zero.item() == 0.0


def test_build_model_seeded():
    a = train.build_model("Unet", "resnet18", 16, None, seed=1, decoder_channels=(32, 16, 16, 8, 8))
    b = train.build_model("Unet", "resnet18", 16, None, seed=1, decoder_channels=(32, 16, 16, 8, 8))
    c = train.build_model("Unet", "resnet18", 16, None, seed=2, decoder_channels=(32, 16, 16, 8, 8))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    head = [k for k in sa if k.startswith("segmentation_head") and k.endswith("weight")]
    assert head and not torch.equal(sa[head[0]], sc[head[0]])
    with torch.no_grad():
        assert a.eval()(torch.zeros(2, 16, 32, 32)).shape == (2, 1, 32, 32)


def test_glacier_iou_area_weighted():
    acc = train.GlacierIoU()
    t = np.array([True, True, False, False])
    acc.update("a", np.array([True, False, False, False]), t, np.ones(4, bool))        # 1/2
    acc.update("b", np.array([True, True, True, False]), t, np.array([1, 1, 1, 0], bool))  # 2/3
    acc.update("b", np.array([True, True, True, True]), t, np.array([0, 0, 0, 1], bool))   # +1 FP -> 2/4
    assert acc.per_glacier() == {"a": 0.5, "b": 0.5}
    acc.update("a", np.array([True]), np.array([True]), np.array([True]))                 # a: 2/3
    assert acc.weighted({"a": 1.0, "b": 3.0}) == pytest.approx((2 / 3 + 3 * 0.5) / 4)


@pytest.fixture(scope="module")
def fold_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("cubes")
    lab = scene_labels()
    paths = {g: write_cube(d / f"{g}.nc", lab, IDS, g, seed=k) for k, g in enumerate(IDS)}
    split = split_table({"A": "train", "T": "test", "V": "val"})
    ct = patches.centre_table(paths.values(), 16)
    cv = patches.centre_table(paths.values(), 24)
    fi = patches.build_fold_items(ct, cv, split, 0, n_total=6, seed=7)
    stats = patches.fit_fold_normalisation({g: str(p) for g, p in paths.items()}, split, 0)
    return fi, stats, ct, cv, split


def _metrics(path):
    df = pd.read_csv(path)
    return df.drop(columns=["time_data_s", "time_model_s", "seconds"])


def test_tiny_training_writes_checkpoints_and_metrics(tmp_path, fold_data):
    fi, stats, *_ = fold_data
    assert len(fi.train) == 6 and len(fi.val) >= 2
    s = train.train_member(fi.train, fi.val, stats, TINY, tmp_path, "cpu", test_glaciers=fi.test_glaciers)
    assert s["complete"] and s["epochs_done"] == 2 and 1 <= s["best_epoch"] <= 2
    for f in ("last.pt", "best.pt", "metrics.csv", "done.json"):
        assert (tmp_path / f).exists()
    df = pd.read_csv(tmp_path / "metrics.csv")
    assert list(df.columns) == train.METRICS_COLUMNS and list(df["epoch"]) == [1, 2]
    assert np.isfinite(df[["train_loss", "val_loss", "val_iou_weighted"]].to_numpy()).all()
    assert (df["time_model_s"] > 0).all() and (df["seconds"] >= df["time_model_s"]).all()
    assert df["val_iou_weighted"].max() == pytest.approx(s["best_score"])
    model, meta = train.load_member(tmp_path / "best.pt", "cpu")
    assert meta["channels"] == stats["channels"] and meta["epoch"] == s["best_epoch"]
    assert json.loads((tmp_path / "done.json").read_text())["best_epoch"] == s["best_epoch"]
    # a finished run called again does no work and changes nothing
    before = (tmp_path / "last.pt").stat().st_mtime_ns
    assert train.train_member(fi.train, fi.val, stats, TINY, tmp_path, "cpu", test_glaciers=fi.test_glaciers)["complete"]
    assert (tmp_path / "last.pt").stat().st_mtime_ns == before
    # other inputs with the same out_dir are refused, not silently mixed
    with pytest.raises(RuntimeError, match="other inputs"):
        train.train_member(fi.train[:-1], fi.val, stats, TINY, tmp_path, "cpu", test_glaciers=fi.test_glaciers)
    # ... unless asked to start over (a workflow rerun after changed inputs)
    s2 = train.train_member(fi.train, fi.val, stats, {**TINY, "epochs": 1}, tmp_path, "cpu",
                            test_glaciers=fi.test_glaciers, restart_on_mismatch=True)
    assert s2["complete"] and s2["epochs_done"] == 1 and len(pd.read_csv(tmp_path / "metrics.csv")) == 1


def test_finished_member_keeps_a_small_record_not_its_training_state(tmp_path, fold_data):
    """keep_last_checkpoint off (default): once complete, last.pt holds the record only; a lost done.json comes
    back from it without training; best.pt is the same as with the full state kept."""
    fi, stats, *_ = fold_data
    slim = train.train_member(fi.train, fi.val, stats, TINY, tmp_path / "slim", "cpu", test_glaciers=fi.test_glaciers)
    full = train.train_member(fi.train, fi.val, stats, {**TINY, "keep_last_checkpoint": True}, tmp_path / "full",
                              "cpu", test_glaciers=fi.test_glaciers)
    rec = torch.load(tmp_path / "slim" / "last.pt", weights_only=False)
    assert rec["final"] and "model" not in rec and "optimizer" not in rec
    assert rec["epoch"] == 2 and rec["best_epoch"] == slim["best_epoch"] and len(rec["metrics"]) == 2
    kept = torch.load(tmp_path / "full" / "last.pt", weights_only=False)
    assert "optimizer" in kept and not kept.get("final")
    size = lambda d, f: (tmp_path / d / f).stat().st_size  # noqa: E731
    assert size("slim", "last.pt") * 100 < size("slim", "best.pt") < size("full", "last.pt")
    a = torch.load(tmp_path / "slim" / "best.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "full" / "best.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert {k: v for k, v in slim.items() if k != "time_data_s" and k != "time_model_s"} == \
        {k: v for k, v in full.items() if k != "time_data_s" and k != "time_model_s"}
    # done.json lost (e.g. a twin's Snakemake deleted it): re-created from the record, no epoch trained
    done = tmp_path / "slim" / "done.json"
    before, best_before = done.read_text(), (tmp_path / "slim" / "best.pt").stat().st_mtime_ns
    done.unlink()
    epochs = []
    again = train.train_member(fi.train, fi.val, stats, TINY, tmp_path / "slim", "cpu", test_glaciers=fi.test_glaciers,
                               on_epoch_end=lambda e, r: epochs.append(e))
    assert epochs == [] and again["complete"] and json.loads(done.read_text()) == json.loads(before)
    assert (tmp_path / "slim" / "best.pt").stat().st_mtime_ns == best_before
    # more epochs are another setting: the record is refused, or discarded to start over
    with pytest.raises(RuntimeError, match="other inputs"):
        train.train_member(fi.train, fi.val, stats, {**TINY, "epochs": 3}, tmp_path / "slim", "cpu",
                           test_glaciers=fi.test_glaciers)
    s3 = train.train_member(fi.train, fi.val, stats, {**TINY, "epochs": 3}, tmp_path / "slim", "cpu",
                            test_glaciers=fi.test_glaciers, restart_on_mismatch=True)
    assert s3["complete"] and s3["epochs_done"] == 3 and len(pd.read_csv(tmp_path / "slim" / "metrics.csv")) == 3


class Killed(Exception):
    pass


def test_resume_after_kill_equals_uninterrupted_run(tmp_path, fold_data):
    fi, stats, *_ = fold_data
    cfg = {**TINY, "epochs": 3, "keep_last_checkpoint": True}   # the last epoch's full state, to compare
    full, part = tmp_path / "full", tmp_path / "part"
    train.train_member(fi.train, fi.val, stats, cfg, full, "cpu", test_glaciers=fi.test_glaciers)

    def kill(epoch, row):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train.train_member(fi.train, fi.val, stats, cfg, part, "cpu", test_glaciers=fi.test_glaciers, on_epoch_end=kill)
    assert not (part / "done.json").exists()
    assert len(pd.read_csv(part / "metrics.csv")) == 1
    torch.manual_seed(999)       # a new process would not share the global RNG state
    np.random.seed(999)
    s = train.train_member(fi.train, fi.val, stats, cfg, part, "cpu", test_glaciers=fi.test_glaciers)
    assert s["complete"] and s["epochs_done"] == 3

    for name in ("last.pt", "best.pt"):
        a = torch.load(full / name, weights_only=False)["model"]
        b = torch.load(part / name, weights_only=False)["model"]
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    pd.testing.assert_frame_equal(_metrics(full / "metrics.csv"), _metrics(part / "metrics.csv"))
    # the weights did change over training (equality above is not trivial)
    first = train.build_model("Unet", "resnet18", 16, None, cfg["seed"], **cfg["model_kwargs"]).state_dict()
    last = torch.load(full / "last.pt", weights_only=False)["model"]
    assert any(not torch.equal(first[k], last[k]) for k in first if first[k].is_floating_point())


def test_run_member_uses_fold_roles(tmp_path, fold_data):
    _, stats, ct, cv, split = fold_data
    cfg = {**TINY, "epochs": 1, "n_patches": 5}
    s = train.run_member(ct, cv, split, 0, 2, stats, cfg, tmp_path, "cpu")
    assert s["seed"] == train.member_seed(0, 2) and s["n_train"] == 5
    assert s["n_val"] == int((cv["glac_id"] == "V").sum())


def test_members_sharing_a_cube_cache_train_exactly_as_alone(tmp_path, fold_data):
    """train_fold's shared cache: each cube is read once for all members, and the weights do not change."""
    fi, stats, *_ = fold_data
    cache = patches.CubeCache(patches.load_training_cube, max_items=1000, max_bytes=4e9)
    for seed in (7, 8):
        cfg = {**TINY, "epochs": 1, "seed": seed}
        alone = train.train_member(fi.train, fi.val, stats, cfg, tmp_path / f"alone{seed}", "cpu",
                                   test_glaciers=fi.test_glaciers)
        shared = train.train_member(fi.train, fi.val, stats, cfg, tmp_path / f"shared{seed}", "cpu",
                                    test_glaciers=fi.test_glaciers, cube_cache=cache)
        assert alone["best_score"] == shared["best_score"] or (math.isnan(alone["best_score"]) and
                                                               math.isnan(shared["best_score"]))
        a = torch.load(tmp_path / f"alone{seed}" / "best.pt", weights_only=False)["model"]
        b = torch.load(tmp_path / f"shared{seed}" / "best.pt", weights_only=False)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)
    cubes = {p for p, _, _ in list(fi.train) + list(fi.val)}
    assert cache.misses == len(cubes)  # the second member read nothing from disk
    assert cache.hits > 0


def test_sparse_checkpoints_write_last_and_best_together_and_change_no_result(tmp_path, fold_data):
    """checkpoint_every_s: last.pt and best.pt only when due (always after the last epoch), same weights."""
    fi, stats, *_ = fold_data
    on_disk = []

    def look(epoch, row):
        on_disk.append((epoch, (tmp_path / "sparse" / "last.pt").exists(), (tmp_path / "sparse" / "best.pt").exists()))

    keep = {**TINY, "keep_last_checkpoint": True}
    every = train.train_member(fi.train, fi.val, stats, {**keep, "checkpoint_every_s": 0}, tmp_path / "every", "cpu",
                               test_glaciers=fi.test_glaciers)
    sparse = train.train_member(fi.train, fi.val, stats, {**keep, "checkpoint_every_s": 1e9}, tmp_path / "sparse",
                                "cpu", test_glaciers=fi.test_glaciers, on_epoch_end=look)
    assert on_disk == [(1, False, False), (2, True, True)]  # nothing after epoch 1, both after the last
    assert every["best_epoch"] == sparse["best_epoch"] and every["best_score"] == sparse["best_score"]
    for name in ("best.pt", "last.pt"):
        a = torch.load(tmp_path / "every" / name, weights_only=False)
        b = torch.load(tmp_path / "sparse" / name, weights_only=False)
        assert a["epoch"] == b["epoch"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    pd.testing.assert_frame_equal(_metrics(tmp_path / "every" / "metrics.csv"), _metrics(tmp_path / "sparse" / "metrics.csv"))
    # stopping early checkpoints too, so that a resume continues from there
    part = train.train_member(fi.train, fi.val, stats, {**TINY, "checkpoint_every_s": 1e9}, tmp_path / "part", "cpu",
                              test_glaciers=fi.test_glaciers, max_epochs_this_run=1)
    assert not part["complete"] and torch.load(tmp_path / "part" / "last.pt", weights_only=False)["epoch"] == 1


def test_weight_decay_reaches_adam_and_the_fingerprint_only_when_set(tmp_path, fold_data):
    fi, stats, *_ = fold_data
    cfg = {**TINY, "epochs": 1, "keep_last_checkpoint": True}
    a = train.train_member(fi.train, fi.val, stats, cfg, tmp_path / "a", "cpu", test_glaciers=fi.test_glaciers)
    z = train.train_member(fi.train, fi.val, stats, {**cfg, "weight_decay": 0.0}, tmp_path / "z", "cpu",
                           test_glaciers=fi.test_glaciers)
    w = train.train_member(fi.train, fi.val, stats, {**cfg, "weight_decay": 0.5}, tmp_path / "w", "cpu",
                           test_glaciers=fi.test_glaciers)
    assert a["fingerprint"] == z["fingerprint"] != w["fingerprint"]   # 0 (the default) leaves it as it was
    ck = torch.load(tmp_path / "w" / "last.pt", weights_only=False)
    assert ck["optimizer"]["param_groups"][0]["weight_decay"] == 0.5
    wa = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    ww = ck["model"]
    assert any(not torch.equal(wa[k], ww[k]) for k in wa if wa[k].is_floating_point())


def test_packed_training_leaves_finished_members_alone_and_checks_its_outputs(tmp_path, job_inputs):
    """A packed fold job re-run with the same settings trains nothing; re-run after a changed setting (here more
    epochs: Snakemake re-runs the job on its params, but the members' done.json are not its outputs and stay) it
    trains every member again instead of keeping the old models."""
    from glaciermap.segmentation.train import run_train_fold

    d = job_inputs
    done = [tmp_path / f"fold0/member{m}/done.json" for m in range(2)]
    args = (str(d / "train.csv"), str(d / "val.csv"), str(d / "split.csv"), str(d / "norm.json"), 0, [0, 1])
    one = {**JOB_SETTINGS, "epochs": 1, "keep_last_checkpoint": False}
    first = run_train_fold(*args, one, done)
    assert [first[m]["epochs_done"] for m in (0, 1)] == [1, 1]
    stamps = [(p.parent / "best.pt").stat().st_mtime_ns for p in done]
    texts = [p.read_text() for p in done]
    again = run_train_fold(*args, one, done)   # same settings: nothing trained, the same records
    assert [(p.parent / "best.pt").stat().st_mtime_ns for p in done] == stamps
    assert [p.read_text() for p in done] == texts and again == first
    more = run_train_fold(*args, {**one, "epochs": 2}, done)   # a changed setting: trained again
    assert [more[m]["epochs_done"] for m in (0, 1)] == [2, 2]
    assert [json.loads(p.read_text())["epochs_done"] for p in done] == [2, 2]
    assert all(len(pd.read_csv(p.parent / "metrics.csv")) == 2 for p in done)
    with pytest.raises(ValueError, match="member1/done.json does not belong to member 0"):
        run_train_fold(*args, one, done[::-1])
    with pytest.raises(ValueError, match="2 members but 1 done.json"):
        run_train_fold(*args, one, done[:1])
