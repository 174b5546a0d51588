"""The facies points input: bad rows are reported by name and dropped, never silently; folds hold whole glaciers."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point, box

from glaciermap.facies.points import (PointsInputError, assign_folds, feature_channels, run_points, validate_points)

CLASSES = ["ice", "snow", "debris", "firn", "refrozen", "shadow", "water", "cloud"]
SPEC = {"path": "x.gpkg", "layer": None, "id_column": "point_id", "class_column": "class", "scene_column": "scene_id",
        "date_column": "date", "glacier_column": "glacier_id", "x_column": "x", "y_column": "y", "crs": "EPSG:4326"}


def _glaciers(n=6):
    geoms = [box(600000 + 2000 * i, 5100000, 600000 + 2000 * i + 1500, 5101500) for i in range(n)]
    return gpd.GeoDataFrame({"glac_id": [f"G{i}" for i in range(n)]}, geometry=geoms, crs="EPSG:32632")


def _scenes(glaciers):
    fp = box(*glaciers.to_crs("EPSG:4326").total_bounds).buffer(0.01)
    half = box(*glaciers.iloc[:3].to_crs("EPSG:4326").total_bounds).buffer(0.001)
    return {"S_A": ("2020-08-20", fp), "S_B": ("2020-08-25", half), "S_C": ("2020-08-25", None)}


def _points(glaciers, rows):
    """rows: (id, class, scene, date, glacier, (x, y) in the glaciers' CRS)"""
    df = pd.DataFrame([r[:5] for r in rows], columns=["point_id", "class", "scene_id", "date", "glacier_id"])
    g = gpd.GeoDataFrame(df, geometry=[Point(r[5]) for r in rows], crs=glaciers.crs)
    return g.to_crs("EPSG:4326")


def _centre(i, dx=0.0):
    return (600000 + 2000 * i + 750 + dx, 5100750)


def test_bad_rows_are_named_and_dropped():
    gl = _glaciers()
    rows = [("P1", "ice", "S_A", "", "G0", _centre(0)),
            ("P2", "slush", "S_A", "", "G0", _centre(0, 100)),           # unknown class
            ("P3", "", "S_A", "", "G0", _centre(0, 200)),                # no class
            ("P4", "snow", "S_A", "", "", (600000 + 1800, 5100750)),     # between glaciers
            ("P5", "ice", "S_A", "", "", _centre(0, 5)),                 # same 30 m pixel as P1, same class
            ("P6", "firn", "S_A", "", "", _centre(0, 8)),                # same pixel, other class
            ("P7", "ice", "S_X", "", "", _centre(1)),                    # scene not in the catalog
            ("P8", "ice", "S_B", "", "", _centre(5)),                    # outside its scene's footprint
            ("P9", "ice", "", "2020-08-20", "", _centre(2)),             # date -> S_A
            ("P10", "ice", "", "2020-08-25", "", _centre(1, 300)),       # two scenes that day cover it
            ("P11", "ice", "S_A", "", "G4", _centre(3)),                 # stated glacier G4, lies in G3
            ("P12", "debris", "S_A", "", "G3", _centre(3, 300)),
            ("P1", "ice", "S_A", "", "G0", _centre(4))]                  # id used twice
    out, rej = validate_points(_points(gl, rows), SPEC, CLASSES, gl, _scenes(gl), 30.0)
    reasons = dict(zip(rej["point_id"] + "#" + rej["row"].astype(str), rej["reason"]))
    assert sorted(out["point_id"]) == ["P1", "P12", "P9"]
    assert "unknown class 'slush'" in reasons["P2#2"]
    assert reasons["P3#3"] == "no class"
    assert "outside every glacier" in reasons["P4#4"]
    assert reasons["P5#5"].startswith("duplicate of point 'P1'")
    assert "conflicting class 'firn' vs 'ice'" in reasons["P6#6"]
    assert "'S_X' is not in the catalog" in reasons["P7#7"]
    assert "outside the footprint of scene 'S_B'" in reasons["P8#8"]
    assert "several scenes (S_B, S_C)" in reasons["P10#10"]
    assert "stated glacier 'G4' but the point lies in G3" in reasons["P11#11"]
    assert "used by an earlier row" in reasons["P1#13"]
    assert len(rej) == 10 and rej["row"].is_monotonic_increasing
    p9 = out.set_index("point_id").loc["P9"]
    assert p9["scene_id"] == "S_A" and p9["date"] == "2020-08-20" and p9["glacier_id"] == "G2"
    # accepted points come back in the glaciers' CRS, on their glacier
    assert out.crs == gl.crs
    assert np.allclose(out.set_index("point_id").loc["P12", ["x", "y"]].astype(float), _centre(3, 300), atol=1e-3)


def test_folds_hold_whole_glaciers_and_balance_counts():
    counts = pd.Series({"A": 500, "B": 400, "C": 300, "D": 300, "E": 200, "F": 100, "G": 100, "H": 100})
    f = assign_folds(counts, 4, seed=1)
    assert set(f) == set(counts.index) and set(f.values()) == {0, 1, 2, 3}
    load = pd.Series(counts.values, index=[f[g] for g in counts.index]).groupby(level=0).sum()
    assert load.max() - load.min() <= 200
    assert assign_folds(counts, 4, seed=1) == f          # reproducible
    with pytest.raises(PointsInputError, match="6 glacier folds need at least 6 glaciers"):
        assign_folds(counts.iloc[:5], 6)


def test_pixel_feature_table_needs_no_scenes(tmp_path):
    gl = _glaciers()
    inv = tmp_path / "glaciers.gpkg"
    gl.to_file(inv, layer="glaciers")
    chans = feature_channels(["blue", "nir"], "optical")
    rng = np.random.default_rng(0)
    lonlat = gpd.GeoSeries([Point(_centre(i % 6, 40 * (i // 6))) for i in range(36)], crs=gl.crs).to_crs("EPSG:4326")
    df = pd.DataFrame({"x": lonlat.x, "y": lonlat.y, "class": rng.choice(["ice", "snow"], 36),
                       "blue": rng.random(36), "nir": rng.random(36)})
    df.loc[3, "class"] = "slush"
    csv = tmp_path / "pts.csv"
    df.to_csv(csv, index=False)
    out = {k: tmp_path / f"o.{k}" for k in ("gpkg", "csv", "json")}
    s = run_points({**SPEC, "path": str(csv)}, inv, None, "unused", CLASSES, chans, 3, 0, 30.0,
                   out["gpkg"], out["csv"], out["json"])
    assert s["mode"] == "pixels" and s["n_points"] == 35 and s["n_rejected"] == 1
    got = gpd.read_file(out["gpkg"], layer="points")
    assert {"blue", "nir", "fold", "glacier_id"} <= set(got.columns)
    assert got.groupby("glacier_id")["fold"].nunique().max() == 1
    assert json.loads(out["json"].read_text())["per_fold"] == {str(k): int(v) for k, v in
                                                               got.groupby("fold").size().items()}
    assert pd.read_csv(out["csv"])["reason"].str.contains("unknown class 'slush'").all()


def test_unreadable_or_classless_file_is_a_clear_error(tmp_path):
    gl = _glaciers()
    inv = tmp_path / "glaciers.gpkg"
    gl.to_file(inv, layer="glaciers")
    csv = tmp_path / "pts.csv"
    pd.DataFrame({"x": [1.0], "y": [2.0], "label": ["ice"]}).to_csv(csv, index=False)
    with pytest.raises(PointsInputError, match=r"pts.csv: no class column 'class' \(columns: x, y, label\)"):
        run_points({**SPEC, "path": str(csv)}, inv, None, "s", CLASSES, ["blue"], 3, 0, 30.0, tmp_path / "a",
                   tmp_path / "b", tmp_path / "c")
    with pytest.raises(PointsInputError, match="does not exist"):
        run_points({**SPEC, "path": str(tmp_path / "nope.gpkg")}, inv, None, "s", CLASSES, ["blue"], 3, 0, 30.0,
                   tmp_path / "a", tmp_path / "b", tmp_path / "c")
    assert not (tmp_path / "a").exists()
