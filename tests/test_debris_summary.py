"""The debris method's summary gathers the numbers of the rules that computed them; the config checks the debris
section against the model registry."""

from __future__ import annotations

import json

import pytest

from glaciermap.config import ConfigError, validate_config
from glaciermap.debris.summary import build_debris_summary, run_debris_summary

CLASSES = ["background", "clean_ice", "debris", "water", "vegetation"]


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


@pytest.fixture
def inputs(tmp_path):
    per_class = {c: {"iou": 0.1 * (i + 1), "precision": 0.5, "recall": 0.2 + 0.1 * i} for i, c in enumerate(CLASSES)}
    metrics = _write(tmp_path / "metrics.json", {
        "classes": CLASSES, "glaciers": 40, "pixels": 12345, "overall_accuracy": 0.9, "mean_iou": 0.6,
        "macro_f1": 0.7, "ece_before": 0.12, "ece_after": 0.05, "per_class": per_class,
        "ece_per_class": {c: {"ece_before": 0.1, "ece_after": 0.04} for c in CLASSES}})
    cover = _write(tmp_path / "cover.json", {
        "debris_area_t0_km2": 3.5, "debris_area_t1_km2": 3.9, "clean_area_t0_km2": 20.0, "d_debris_km2": 0.4,
        "truth_debris_area_t0_km2": 3.2, "debris_iou_truth_t0": 0.55, "n_glaciers": 40, "n_skipped": 1,
        "truth_evaluation": {"t0": {"mae_km2": 0.1}}})
    rs = _write(tmp_path / "rs.json", {"mean_iou": 0.75, "overall_accuracy": 0.95,
                                      "per_class": {c: {"iou": 0.7} for c in CLASSES},
                                      "inflation": {"mean_iou": 0.15}})
    imp = _write(tmp_path / "imp.json", {"top_layers": ["coherence", "tc_wetness", "pca1"],
                                        "top_groups": ["sar_coherence", "pca_tasseled_cap", "thermal_infrared"],
                                        "baseline": {"mean_iou": 0.58}})
    thr = _write(tmp_path / "thr.json", {"classes": CLASSES, "mean_iou": 0.3, "overall_accuracy": 0.7,
                                        "per_class": {c: {"iou": 0.2} for c in CLASSES}})
    return metrics, cover, rs, imp, thr


def test_summary_takes_each_number_from_its_rule(inputs, tmp_path):
    metrics, cover, rs, imp, thr = inputs
    s = run_debris_summary(metrics, cover, tmp_path / "out.json", rs, imp, thr, model="debris")
    assert s == json.loads((tmp_path / "out.json").read_text())
    assert s["mean_iou"] == 0.6 and s["overall_accuracy"] == 0.9
    assert s["iou_per_class"]["water"] == pytest.approx(0.4)
    assert s["debris_iou"] == pytest.approx(0.3) and s["debris_recall"] == pytest.approx(0.4)
    assert s["clean_ice_iou"] == pytest.approx(0.2)
    assert (s["ece_before"], s["ece_after"]) == (0.12, 0.05)
    assert s["random_split_mean_iou"] == 0.75 and s["random_split_inflation_mean_iou"] == 0.15
    assert s["top_layers"][0] == "coherence" and s["top_groups"][1] == "pca_tasseled_cap"
    assert s["thresholds_mean_iou"] == 0.3 and s["thresholds_iou_per_class"]["debris"] == 0.2
    assert s["gain_debris_iou_over_thresholds"] == pytest.approx(0.3 - 0.2)
    assert s["gain_clean_ice_iou_over_thresholds"] == pytest.approx(0.2 - 0.2)
    assert s["debris_area_t0_km2"] == 3.5 and s["debris_area_t1_km2"] == 3.9
    assert s["truth_debris_area_t0_km2"] == 3.2 and s["debris_iou_truth_t0"] == 0.55
    assert s["cover"]["truth_evaluation"]["t0"]["mae_km2"] == 0.1


def test_optional_parts_are_none_and_the_debris_class_must_exist(inputs):
    metrics, cover, *_ = inputs
    s = build_debris_summary(metrics, cover)
    assert s["random_split_mean_iou"] is None and s["top_layers"] is None and s["thresholds_mean_iou"] is None
    with pytest.raises(ValueError, match="'rock'.*debris.debris_class"):
        build_debris_summary(metrics, cover, debris_class="rock", model="debris")


def _cfg(**kw):
    import copy

    from test_config import MINIMAL

    cfg = copy.deepcopy(MINIMAL)
    cfg.update({"models": {"dl4gam": {}, "deb": {"labels": "d", "channels": ["B04", "ndsi"]}},
           "labels": {"d": {"classes": [{"name": "background", "rule": "rest"}, {"name": "clean_ice", "rule": "outline"},
                                        {"name": "debris", "rule": "channel", "channel": "ndsi", "below": 0.2,
                                         "within": "outline"}]}}})
    cfg.update(kw)
    return cfg


def test_config_checks_the_debris_section():
    assert validate_config(_cfg(debris={"models": ["deb"]}))["debris"]["debris_class"] == "debris"
    with pytest.raises(ConfigError, match="debris.models: 'nope' is not an entry"):
        validate_config(_cfg(debris={"models": ["nope"]}))
    with pytest.raises(ConfigError, match="debris.models: 'dl4gam' is a binary model"):
        validate_config(_cfg(debris={"models": ["dl4gam"]}))
    with pytest.raises(ConfigError, match="debris.clean_class: 'ice' is not a class of model 'deb'"):
        validate_config(_cfg(debris={"models": ["deb"], "clean_class": "ice"}))
    with pytest.raises(ConfigError, match="random_split.models: 'x' is not an entry"):
        validate_config(_cfg(random_split={"models": ["x"]}))


def test_config_checks_the_threshold_baseline():
    ok = validate_config(_cfg(debris={"models": ["deb"], "label_set": "d",
                                      "thresholds": [{"class": "debris", "conditions": [{"channel": "slope", "below": 24}]}]}))
    assert ok["debris"]["label_set"] == "d"
    with pytest.raises(ConfigError, match="debris.label_set: 'x' is not a label set"):
        validate_config(_cfg(debris={"label_set": "x"}))
    with pytest.raises(ConfigError, match=r"debris.thresholds.*'rock'"):
        validate_config(_cfg(debris={"label_set": "d", "thresholds": [
            {"class": "rock", "conditions": [{"channel": "slope", "below": 24}]}]}))
    with pytest.raises(ConfigError, match=r"debris.thresholds.*nope"):
        validate_config(_cfg(debris={"label_set": "d", "thresholds": [
            {"class": "debris", "conditions": [{"channel": "nope", "below": 24}]}]}))


def test_config_checks_the_baseline_against_the_models_and_the_cube_layers():
    # a debris model on another label set than the baseline's
    cfg = _cfg(debris={"models": ["deb"], "label_set": "d2"})
    cfg["labels"]["d2"] = cfg["labels"]["d"]
    with pytest.raises(ConfigError, match="debris.models: 'deb' learns label set 'd', not debris.label_set 'd2'"):
        validate_config(cfg)
    # fold-fitted channels are no cube layers: neither a threshold nor a label rule can read them
    with pytest.raises(ConfigError, match=r"conditions\[0\].channel: 'pca1' is fitted per fold"):
        validate_config(_cfg(debris={"label_set": "d", "thresholds": [
            {"class": "debris", "conditions": [{"channel": "pca1", "below": 0}]}]}))
    cfg = _cfg()
    cfg["labels"]["d"]["classes"][2]["channel"] = "pca2"
    with pytest.raises(ConfigError, match="labels.d: channel pca2 is fitted per fold"):
        validate_config(cfg)
    # the baseline's layers need their sources: velocity without channel_sources.velocity stops the run
    with pytest.raises(ConfigError, match="channel_sources.velocity: missing"):
        validate_config(_cfg(debris={"label_set": "d", "thresholds": [
            {"class": "debris", "conditions": [{"channel": "velocity", "above": 1}]}]}))
