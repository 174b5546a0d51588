"""The fixed-threshold debris baseline: painting order, each condition, scores against a hand-computed confusion,
the scored pixels, missing layers, the comparison with a model's pixel counts and the figure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from affine import Affine

from glaciermap.data.features import cube_dataset, cube_encoding
from glaciermap.debris import thresholds as T
from glaciermap.io import skip_dataset, write_netcdf_atomic
from glaciermap.segmentation.labels import IGNORE, write_label_raster

CRS, RES, LEFT, TOP = "EPSG:32632", 10.0, 400000.0, 5100000.0
CLASSES = ["background", "clean_ice", "debris", "water", "vegetation"]
BG, CI, DE, WA, VE = range(5)
LAYERS = ["ndsi", "ndwi", "ndvi", "slope", "velocity"]
# layer values that make each class (the default rules): background = steep, still, no index above its threshold
VALUES = {BG: dict(ndsi=0.0, ndwi=0.0, ndvi=0.0, slope=30.0, velocity=0.0),
          CI: dict(ndsi=0.8, ndwi=0.0, ndvi=0.0, slope=30.0, velocity=0.0),
          DE: dict(ndsi=0.0, ndwi=0.0, ndvi=0.0, slope=10.0, velocity=5.0),
          WA: dict(ndsi=0.0, ndwi=0.5, ndvi=0.0, slope=30.0, velocity=0.0),
          VE: dict(ndsi=0.0, ndwi=0.0, ndvi=0.6, slope=30.0, velocity=0.0)}


def layers_of(pred_map, drop=()):
    pred_map = np.asarray(pred_map)
    out = {n: np.zeros(pred_map.shape, np.float32) for n in LAYERS if n not in drop}
    for k, v in VALUES.items():
        for n in out:
            out[n][pred_map == k] = v[n]
    return out


def write_cube(path, glacier, layers, buffer=None, cloud=None, nodata=None):
    h, w = next(iter(layers.values())).shape
    ids = np.zeros((h, w), np.int32)
    no = np.zeros((h, w), np.uint8)
    masks = {"mask_glacier_id": ids, "mask_glacier": (ids == 0).astype(np.uint8), "mask_buffer_20m": no + 1,
             "mask_buffer_50m": no + 1 if buffer is None else buffer.astype(np.uint8),
             "mask_cloud": no if cloud is None else cloud.astype(np.uint8),
             "mask_nodata": no if nodata is None else nodata.astype(np.uint8)}
    x = LEFT + RES / 2 + RES * np.arange(w)
    y = TOP - RES / 2 - RES * np.arange(h)
    ds = cube_dataset(layers, masks, x, y, [glacier], CRS, Affine(RES, 0, LEFT, 0, -RES, TOP),
                      attrs={"glacier_id": glacier, "epoch": "2015", "status": "ok", "reason": ""})
    write_netcdf_atomic(path, ds, cube_encoding(ds))
    return str(path)


def write_labels(path, labels, cube, classes=CLASSES):
    attrs = {"glacier_id": "g", "epoch": "2015", "labelset": "debris", "status": "ok", "reason": ""}
    write_label_raster(path, np.asarray(labels, np.uint8), cube, classes, attrs)
    return str(path)


def grid(v):
    return np.full((1, 1), v, np.float32)


def painted(rules=None, **layers):
    rules = T.check_rules(rules, CLASSES)
    full = {n: grid(0.0) for n in LAYERS}
    full.update({k: grid(v) for k, v in layers.items()})
    return int(T.paint(full, rules, CLASSES)[0, 0])


def test_default_rules_channels_and_sources():
    assert T.threshold_channels() == ["ndsi", "ndwi", "ndvi", "slope", "velocity"]
    assert [r["class"] for r in T.DEFAULT_RULES] == ["clean_ice", "water", "vegetation", "debris"]
    conds = {(c["channel"], "above" if "above" in c else "below"): c for r in T.DEFAULT_RULES for c in r["conditions"]}
    assert {k: v.get("above", v.get("below")) for k, v in conds.items()} == {
        ("ndsi", "above"): 0.4, ("ndwi", "above"): 0.17, ("ndvi", "above"): 0.3, ("slope", "below"): 24.0,
        ("velocity", "above"): 1.0}
    assert "Paul" in conds[("slope", "below")]["source"] and "Hall" in conds[("ndsi", "above")]["source"]
    assert all(c["source"] for c in conds.values())
    # a configured list is used as given; the defaults are a copy (editing it leaves DEFAULT_RULES alone)
    mine = [{"class": "water", "conditions": [{"channel": "ndwi", "above": 0.0}]}]
    assert T.threshold_channels(mine) == ["ndwi"]
    d = T.default_rules()
    d[0]["conditions"][0]["above"] = 9
    assert T.DEFAULT_RULES[0]["conditions"][0]["above"] == 0.4


def test_painting_order_first_rule_wins():
    # a pixel that passes NDSI, NDWI and NDVI and the debris conditions: the first rule paints it
    both = dict(ndsi=0.9, ndwi=0.9, ndvi=0.9, slope=5.0, velocity=9.0)
    assert painted(**both) == CI
    reordered = [T.DEFAULT_RULES[3], T.DEFAULT_RULES[1], T.DEFAULT_RULES[0], T.DEFAULT_RULES[2]]
    assert painted(reordered, **both) == DE
    assert painted([T.DEFAULT_RULES[1], T.DEFAULT_RULES[0]], **both) == WA
    assert painted([T.DEFAULT_RULES[2], T.DEFAULT_RULES[0]], **both) == VE
    # water and vegetation rules before debris: debris only where none of those holds
    assert painted(ndwi=0.5, slope=5.0, velocity=9.0) == WA
    assert painted(ndvi=0.5, slope=5.0, velocity=9.0) == VE
    # no rule: background; an empty rule list paints nothing
    assert painted(ndsi=0.1, slope=30.0) == BG
    assert painted([], **both) == BG
    # a class with two rules (OR): the second paints what the first leaves
    two = [{"class": "water", "conditions": [{"channel": "ndwi", "above": 0.5}]},
           {"class": "water", "conditions": [{"channel": "ndsi", "below": -0.5}]}]
    assert painted(two, ndwi=0.6) == WA and painted(two, ndsi=-0.6) == WA and painted(two, ndsi=-0.4) == BG


@pytest.mark.parametrize("layers, expected", [
    (dict(ndsi=0.41), CI), (dict(ndsi=0.4), BG), (dict(ndsi=0.39), BG),           # strict, in float32
    (dict(ndwi=0.18), WA), (dict(ndwi=0.17), BG),
    (dict(ndvi=0.31), VE), (dict(ndvi=0.3), BG),
    (dict(slope=23.9, velocity=1.1), DE), (dict(slope=24.0, velocity=1.1), BG),   # slope below 24
    (dict(slope=10.0, velocity=1.0), BG), (dict(slope=10.0, velocity=0.5), BG),   # velocity above 1
    (dict(slope=np.nan, velocity=5.0), BG), (dict(ndsi=np.nan), BG),              # NaN never passes
])
def test_each_condition(layers, expected):
    assert painted(**layers) == expected


def test_a_condition_with_both_bounds_is_a_range():
    rng = [{"class": "debris", "conditions": [{"channel": "slope", "above": 5, "below": 20}]}]
    assert [painted(rng, slope=s) for s in (4.0, 5.0, 6.0, 19.0, 20.0)] == [BG, BG, DE, DE, BG]


@pytest.mark.parametrize("rules, key", [
    ([{"class": "lake", "conditions": [{"channel": "ndwi", "above": 0.1}]}], "thresholds[0].class"),
    ([{"class": "water", "conditions": [{"channel": "nope", "above": 0.1}]}], "thresholds[0].conditions[0].channel"),
    ([{"class": "water", "conditions": [{"channel": "ndwi"}]}], "needs 'above' or 'below'"),
    ([{"class": "water", "conditions": [{"channel": "ndwi", "above": True}]}], "conditions[0].above"),
    ([{"class": "water", "conditions": [{"channel": "ndwi", "below": "0.2"}]}], "conditions[0].below"),
    ([{"class": "water", "conditions": []}], "thresholds[0].conditions"),
    ([{"class": "water", "conditions": [{"channel": "ndwi", "above": 1}], "x": 1}], "unknown key(s) x"),
    ([{"class": "water", "conditions": [{"channel": "ndwi", "above": 0.5, "below": 0.2}]}], "no value can pass"),
])
def test_check_rules_names_the_bad_key(rules, key):
    with pytest.raises(ValueError, match="debris threshold rules") as e:
        T.check_rules(rules, CLASSES)
    assert key in str(e.value)


def test_rest_class_must_be_a_class():
    with pytest.raises(ValueError, match="rest class 'background'"):
        T.check_rules(None, ["ice", "clean_ice", "debris", "water", "vegetation"])


# --- scoring: two test glaciers in two folds, a hand-computed confusion -------------------------------------------
# G1 (fold 0), 4 x 4: column 3 outside the 50 m buffer, cloud at (3, 0), label 255 at (2, 2), NaN velocity at (2, 1)
G1_PRED = [[CI, CI, CI, BG], [DE, DE, WA, BG], [VE, VE, BG, BG], [CI, DE, WA, VE]]
G1_TRUTH = [[CI, CI, DE, CI], [DE, DE, WA, WA], [VE, VE, IGNORE, BG], [CI, DE, BG, VE]]
# G2 (fold 1), 2 x 3, everything scored
G2_PRED = [[BG, BG, DE], [WA, VE, CI]]
G2_TRUTH = [[BG, DE, DE], [BG, VE, CI]]
# scored (truth -> predicted) pairs, counted by hand:
# G1: ci->ci x2, de->ci, de->de x3 ((1,0), (1,1), (3,1)), wa->wa, ve->ve x2 ((2,0); (2,1) has a NaN velocity,
# which only the debris rule reads: scored like every in-scope pixel, a NaN fails its condition), bg->wa
# G2: bg->bg, de->bg, de->de, bg->wa, ve->ve, ci->ci
HAND_FOLD0 = np.array([[0, 0, 0, 1, 0], [0, 2, 0, 0, 0], [0, 1, 3, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 2]])
HAND_FOLD1 = np.array([[1, 0, 0, 1, 0], [0, 1, 0, 0, 0], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]])


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    d = tmp_path_factory.mktemp("region")
    cubes, labels = {}, {}
    lay = layers_of(G1_PRED)
    lay["velocity"][2, 1] = np.nan
    buffer = np.ones((4, 4), bool)
    buffer[:, 3] = False
    cloud = np.zeros((4, 4), bool)
    cloud[3, 0] = True
    cubes["G1"] = write_cube(d / "cubes" / "G1" / "2015.nc", "G1", lay, buffer=buffer, cloud=cloud)
    cubes["G2"] = write_cube(d / "cubes" / "G2" / "2015.nc", "G2", layers_of(G2_PRED))
    labels["G1"] = write_labels(d / "labels" / "debris" / "2015" / "G1.tif", G1_TRUTH, cubes["G1"])
    labels["G2"] = write_labels(d / "labels" / "debris" / "2015" / "G2.tif", G2_TRUTH, cubes["G2"])
    return d, cubes, labels


def outs(d):
    return {"confusion": str(d / "confusion.csv"), "metrics": str(d / "metrics.csv"), "json": str(d / "metrics.json")}


def test_painted_maps_are_the_planned_ones(region):
    _, cubes, _ = region
    for g, plan in (("G1", G1_PRED), ("G2", G2_PRED)):
        lay = T.read_threshold_layers(cubes[g], T.threshold_channels(), g)
        got = T.paint(lay, T.check_rules(None, CLASSES), CLASSES)
        np.testing.assert_array_equal(got, np.asarray(plan))


def test_scores_equal_a_hand_computed_confusion(region, tmp_path):
    _, cubes, labels = region
    out = outs(tmp_path / "thresholds")
    s = T.run_thresholds(cubes, labels, {"G1": 0, "G2": 1}, None, CLASSES, out)
    conf = pd.read_csv(out["confusion"], dtype={"fold": str})
    assert list(conf.columns) == ["fold", "truth", "predicted", "pixels"]
    for fold, hand in (("0", HAND_FOLD0), ("1", HAND_FOLD1), ("all", HAND_FOLD0 + HAND_FOLD1)):
        got = conf[conf["fold"] == fold].pivot(index="truth", columns="predicted", values="pixels")
        np.testing.assert_array_equal(got.loc[CLASSES, CLASSES].to_numpy(), hand, err_msg=fold)
    # overall: 16 px, 12 right; IoU bg 1/4, ci 3/4, de 4/6, wa 1/3, ve 1 -> mean 0.6
    assert s["pixels"] == 16 and s["overall_accuracy"] == pytest.approx(12 / 16)
    iou = {c: s["per_class"][c]["iou"] for c in CLASSES}
    assert iou == pytest.approx({"background": 0.25, "clean_ice": 0.75, "debris": 4 / 6, "water": 1 / 3,
                                 "vegetation": 1.0})
    assert s["mean_iou"] == pytest.approx(0.6)
    assert s["per_class"]["debris"]["recall"] == pytest.approx(4 / 6)
    assert s["per_class"]["water"]["precision"] == pytest.approx(1 / 3)
    assert s["per_fold"]["0"]["pixels"] == 10 and s["per_fold"]["0"]["overall_accuracy"] == pytest.approx(8 / 10)
    assert s["per_fold"]["1"]["pixels"] == 6 and s["per_fold"]["1"]["overall_accuracy"] == pytest.approx(4 / 6)
    # the metrics table: the confusion rule's columns, folds 0, 1 and all; an undefined score is empty, not NaN text
    m = pd.read_csv(out["metrics"], dtype={"fold": str})
    assert list(m.columns) == ["fold", "class", "iou", "precision", "recall", "f1", "support_px", "predicted_px"]
    assert list(dict.fromkeys(m["fold"])) == ["0", "1", "all"]
    f1 = m[(m["fold"] == "1") & (m["class"] == "water")]
    assert f1["support_px"].item() == 0 and f1["predicted_px"].item() == 1 and f1["iou"].item() == 0.0
    assert np.isnan(f1["recall"].item())
    js = json.loads(open(out["json"]).read())
    assert js["per_fold"]["1"]["pixels"] == 6 and js["per_class"]["water"]["recall"] == 1.0
    assert js["per_fold"]["1"] and "NaN" not in open(out["json"]).read()
    assert js["rules"][3]["conditions"][0] == {"channel": "slope", "below": 24.0, "source": T.SOURCE_SLOPE}
    assert js["channels"] == T.threshold_channels() and js["glaciers"] == 2 and js["skipped"] == []


def test_only_buffer_labelled_clear_finite_pixels_are_scored(region, tmp_path):
    _, cubes, labels = region
    px = T.glacier_pixels(cubes["G1"], labels["G1"], T.check_rules(None, CLASSES), CLASSES, "G1")
    # 16 px: 4 outside the buffer, 1 cloud, 1 unlabelled -> 10 in scope, all scored (1 with a NaN layer, counted)
    assert px["in_scope"] == 10 and px["nonfinite"] == 1 and px["truth"].size == px["pred"].size == 10
    s = T.run_thresholds(cubes, labels, {"G1": 0, "G2": 1}, None, CLASSES, outs(tmp_path))
    assert (s["pixels_in_scope"], s["pixels_nonfinite_layers"], s["pixels"]) == (16, 1, 16)
    assert s["per_fold"]["0"]["pixels_in_scope"] == 10 and s["per_fold"]["1"]["pixels_nonfinite_layers"] == 0
    # a clear sky and full buffer on G1 scores the masked pixels too (the masks are what left them out)
    d = tmp_path / "open"
    lay = layers_of(G1_PRED)
    cube = write_cube(d / "cubes" / "G1" / "2015.nc", "G1", lay)
    px = T.glacier_pixels(cube, labels["G1"], T.check_rules(None, CLASSES), CLASSES, "G1")
    assert px["in_scope"] == 15 and px["nonfinite"] == 0
    # no data is left out as cloud is
    nodata = np.zeros((4, 4), bool)
    nodata[0, :] = True
    cube = write_cube(d / "nd" / "G1" / "2015.nc", "G1", lay, nodata=nodata)
    assert T.glacier_pixels(cube, labels["G1"], T.check_rules(None, CLASSES), CLASSES, "G1")["in_scope"] == 11


def test_a_cube_lacking_a_layer_names_glacier_file_and_layer(region, tmp_path):
    _, cubes, labels = region
    cube = write_cube(tmp_path / "cubes" / "G9" / "2015.nc", "G9", layers_of(G2_PRED, drop=("velocity",)))
    with pytest.raises(T.MissingLayerError) as e:
        T.run_thresholds({"G9": cube}, {"G9": labels["G2"]}, {"G9": 0}, None, CLASSES, outs(tmp_path / "o"))
    msg = str(e.value)
    assert "G9" in msg and cube in msg and "velocity" in msg and "ndsi" not in msg
    assert e.value.layers == ["velocity"] and not (tmp_path / "o" / "metrics.json").exists()
    # rules that do not read velocity need no velocity layer
    rules = [{"class": "clean_ice", "conditions": [{"channel": "ndsi", "above": 0.4}]}]
    s = T.run_thresholds({"G9": cube}, {"G9": labels["G2"]}, {"G9": 0}, rules, CLASSES, outs(tmp_path / "o"))
    assert s["pixels"] == 6 and s["channels"] == ["ndsi"]


def test_skip_records_missing_labels_folds_and_other_classes(region, tmp_path):
    _, cubes, labels = region
    skip = tmp_path / "cubes" / "G3" / "2015.nc"
    skip.parent.mkdir(parents=True)
    write_netcdf_atomic(skip, skip_dataset("G3", "2015", "no clear scene", "select"))
    s = T.run_thresholds({**cubes, "G3": str(skip)}, {**labels, "G3": labels["G2"]}, {"G1": 0, "G2": 1, "G3": 1},
                         None, CLASSES, outs(tmp_path / "a"))
    assert s["skipped"] == ["G3"] and s["glaciers"] == 2 and s["pixels"] == 16
    with pytest.raises(FileNotFoundError, match="G2"):
        T.run_thresholds(cubes, {"G1": labels["G1"]}, {"G1": 0, "G2": 1}, None, CLASSES, outs(tmp_path / "b"))
    with pytest.raises(ValueError, match="no fold for the test glacier.*G2"):
        T.run_thresholds(cubes, labels, {"G1": 0}, None, CLASSES, outs(tmp_path / "c"))
    other = write_labels(tmp_path / "other.tif", G2_TRUTH, cubes["G2"], ["background", "ice", "debris", "water", "veg"])
    with pytest.raises(ValueError, match="has classes"):
        T.run_thresholds({"G2": cubes["G2"]}, {"G2": other}, {"G2": 1}, None, CLASSES, outs(tmp_path / "d"))


def fake_model(d, cm_all, per_fold_px, classes=CLASSES):
    """A model's rule-confusion outputs: confusion.csv (fold all) and metrics.json with its pixel counts."""
    d.mkdir(parents=True, exist_ok=True)
    rows = [{"fold": "all", "truth": t, "predicted": p, "pixels": int(cm_all[i, j])}
            for i, t in enumerate(classes) for j, p in enumerate(classes)]
    pd.DataFrame(rows).to_csv(d / "confusion.csv", index=False)
    js = {"classes": classes, "glaciers": 2, "pixels": int(cm_all.sum()), "overall_accuracy": 0.9, "mean_iou": 0.8,
          "macro_f1": 0.85, "per_fold": {k: {"pixels": v} for k, v in per_fold_px.items()}}
    (d / "metrics.json").write_text(json.dumps(js))
    return str(d / "metrics.json")


def test_model_pixel_counts_and_figures_side_by_side(region, tmp_path):
    _, cubes, labels = region
    # both score every in-scope pixel (16, also G1's NaN-velocity pixel): the same pixel sets
    model_cm = np.diag([3, 3, 6, 2, 2])
    m = fake_model(tmp_path / "segmentation" / "debris", model_cm, {"0": 10, "1": 6})
    out = outs(tmp_path / "debris" / "thresholds")
    png = tmp_path / "debris" / "thresholds" / "vs_debris.png"
    s = T.run_thresholds_files(cubes.values(), labels.values(), {"G1": 0, "G2": 1}, None, CLASSES, out,
                               model_metrics=[m], figures=[str(png)])
    c = s["models"]["debris"]
    assert (c["pixels"], c["thresholds_pixels"], c["difference"], c["identical_pixel_sets"]) == (16, 16, 0, True)
    assert c["per_fold"]["0"] == {"model": 10, "thresholds": 10, "in_scope": 10, "identical_pixel_sets": True}
    assert c["per_fold"]["1"]["identical_pixel_sets"] is True
    # a model that lost a pixel (no prediction there) is flagged
    m2 = fake_model(tmp_path / "segmentation2" / "debris", np.diag([3, 3, 5, 2, 2]), {"0": 9, "1": 6})
    c2 = T.run_thresholds_files(cubes.values(), labels.values(), {"G1": 0, "G2": 1}, None, CLASSES,
                                outs(tmp_path / "b"), model_metrics=[m2])["models"]["debris"]
    assert (c2["difference"], c2["identical_pixel_sets"]) == (1, False)       # thresholds minus model
    assert c2["per_fold"]["0"]["identical_pixel_sets"] is False
    assert json.loads(open(out["json"]).read())["models"]["debris"]["difference"] == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a model with other classes is not comparable
    bad = fake_model(tmp_path / "segmentation" / "bin", np.eye(2, dtype=int), {"0": 2}, ["background", "glacier"])
    with pytest.raises(ValueError, match="not the baseline's"):
        T.run_thresholds_files(cubes.values(), labels.values(), {"G1": 0, "G2": 1}, None, CLASSES,
                               outs(tmp_path / "x"), model_metrics=[bad])


def test_plot_confusion_panels_and_png(region, tmp_path):
    import matplotlib.image as mpimg

    _, cubes, labels = region
    out = outs(tmp_path / "debris" / "thresholds")
    T.run_thresholds(cubes, labels, {"G1": 0, "G2": 1}, None, CLASSES, out)
    classes, cm = T.read_confusion(out["json"])
    assert classes == CLASSES and (cm == HAND_FOLD0 + HAND_FOLD1).all()
    assert (T.read_confusion(out["confusion"])[1] == cm).all()
    one = tmp_path / "one.png"
    fig = T.plot_confusion(out["json"], one)
    assert len(fig.axes) == 2                                     # the heat map and the IoU bars
    assert fig.axes[0].get_title().startswith("thresholds: accuracy 0.750, 16 px")
    texts = [t.get_text() for t in fig.axes[0].texts]
    # rows: clean ice 3 of 3 right, debris 4 of 6, background 2 of 3 taken for water
    assert len(texts) == 25 and {"3\n100.0%", "4\n66.7%", "2\n66.7%", "0\n0.0%"} <= set(texts)
    m = fake_model(tmp_path / "segmentation" / "debris", np.diag([3, 3, 6, 2, 2]), {"0": 10, "1": 6})
    two = tmp_path / "two.png"
    fig = T.plot_confusion({"debris": m, "thresholds": out["json"]}, two, title="debris vs thresholds")
    assert len(fig.axes) == 3                                     # two heat maps and the IoU bars
    bars = fig.axes[2].patches
    assert len(bars) == 10 and [round(b.get_height(), 3) for b in bars[:5]] == [1.0] * 5
    assert [round(b.get_height(), 3) for b in bars[5:]] == [0.25, 0.75, 0.667, 0.333, 1.0]
    for p in (one, two):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[1] > img.shape[0]
    assert sorted(x.name for x in tmp_path.iterdir() if x.suffix == ".png") == ["one.png", "two.png"]  # no temp left
    with pytest.raises(ValueError, match="not comparable"):
        bad = fake_model(tmp_path / "segmentation" / "bin", np.eye(2, dtype=int), {"0": 2}, ["background", "glacier"])
        T.plot_confusion({"bin": bad, "thresholds": out["json"]}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
