
import numpy as np
import pandas as pd
import pytest

from glaciermap.segmentation import split as sp

N_FOLDS = 5


def manifest(n=300, seed=0, lon=(6.0, 14.0)):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "glac_id": [f"G{i:05d}" for i in range(n)],
        "qc_status": "ok",
        "area_km2": np.round(rng.lognormal(-0.7, 1.1, n) + 0.1, 4),
        "cenlon": rng.uniform(*lon, n),
        "cenlat": rng.uniform(45.5, 47.5, n),
    })
    # rows that must never enter the split
    extra = pd.DataFrame({"glac_id": ["S1", "S2", "K1"], "qc_status": ["small", "small", "skipped"],
                          "area_km2": [0.05, 0.02, 3.0], "cenlon": [7.0, 9.0, np.nan], "cenlat": [46.0] * 3})
    return pd.concat([df, extra], ignore_index=True)


def ok(m):
    return m[m["qc_status"] == "ok"]


@pytest.fixture(scope="module")
def m0():
    return manifest()


@pytest.fixture(scope="module")
def s0(m0):
    return sp.make_split(m0, n_folds=N_FOLDS, val_fraction=0.1)


def test_only_ok_glaciers_each_in_exactly_one_test_fold(m0, s0):
    assert set(s0["glac_id"]) == set(ok(m0)["glac_id"])
    assert s0["glac_id"].is_unique
    roles = s0[sp.role_columns(N_FOLDS)]
    assert ((roles == "test").sum(axis=1) == 1).all()
    for k in range(N_FOLDS):
        assert set(s0[f"role_{k}"]) <= set(sp.ROLES)
        assert ((s0[f"role_{k}"] == "test") == (s0["test_fold"] == k)).all()
    assert sorted(s0["test_fold"].unique()) == list(range(N_FOLDS))


def test_test_folds_contiguous_in_longitude_west_to_east(s0):
    for k in range(N_FOLDS - 1):
        assert s0.loc[s0.test_fold == k, "cenlon"].max() < s0.loc[s0.test_fold == k + 1, "cenlon"].min()


def test_equal_area_folds_within_glacier_granularity(s0):
    total, amax = s0["area_km2"].sum(), s0["area_km2"].max()
    areas = s0.groupby("test_fold")["area_km2"].sum()
    assert (areas - total / N_FOLDS).abs().max() <= amax


def test_validation_area_about_ten_percent_and_sides(s0):
    total, amax = s0["area_km2"].sum(), s0["area_km2"].max()
    for k in range(N_FOLDS):
        role = s0[f"role_{k}"]
        test = s0[role == "test"]
        val = s0[role == "val"]
        west = val[val.cenlon < test.cenlon.min()]
        east = val[val.cenlon > test.cenlon.max()]
        assert len(west) + len(east) == len(val)
        if k == 0:
            assert len(west) == 0 and abs(east.area_km2.sum() - 0.1 * total) <= amax
        elif k == N_FOLDS - 1:
            assert len(east) == 0 and abs(west.area_km2.sum() - 0.1 * total) <= amax
        else:
            assert abs(west.area_km2.sum() - 0.05 * total) <= amax
            assert abs(east.area_km2.sum() - 0.05 * total) <= amax
            assert abs(val.area_km2.sum() - 0.1 * total) <= 2 * amax


def test_validation_buffers_test_from_train(s0):
    for k in range(N_FOLDS):
        role = s0[f"role_{k}"]
        test, val, train = (s0[role == r] for r in ("test", "val", "train"))
        tmin, tmax = test.cenlon.min(), test.cenlon.max()
        assert not ((train.cenlon >= tmin) & (train.cenlon <= tmax)).any()
        vw, tw = val[val.cenlon < tmin], train[train.cenlon < tmin]
        ve, te = val[val.cenlon > tmax], train[train.cenlon > tmax]
        if len(vw) and len(tw):
            assert tw.cenlon.max() < vw.cenlon.min()
        if len(ve) and len(te):
            assert te.cenlon.min() > ve.cenlon.max()
        assert len(train) > 0 and len(val) > 0


def test_hand_case_midpoint_rule():
    # 20 equal glaciers: midpoints (i + 0.5)/20; fold k = i in [4k, 4k + 4)
    m = pd.DataFrame({"glac_id": [f"g{i:02d}" for i in range(20)], "qc_status": "ok", "area_km2": 1.0,
                      "cenlon": np.arange(20) * 0.1 + 6.0, "cenlat": 46.0})
    s = sp.make_split(m).set_index("glac_id")
    assert s["test_fold"].tolist() == [i // 4 for i in range(20)]
    assert s.index[s.role_0 == "val"].tolist() == ["g04", "g05"]          # [0.2, 0.3)
    assert s.index[s.role_4 == "val"].tolist() == ["g14", "g15"]          # [0.7, 0.8)
    assert s.index[s.role_2 == "val"].tolist() == ["g07", "g12"]          # [0.35, 0.4) and [0.6, 0.65)
    meta = s.attrs["meta"]
    assert meta["folds"][0]["test_lon"][0] is None and meta["folds"][4]["test_lon"][1] is None
    assert meta["folds"][1]["test_lon"][0] == pytest.approx(6.35)          # between g03 and g04


def test_deterministic_and_row_order_independent(m0, s0):
    shuffled = m0.sample(frac=1.0, random_state=3)
    s1 = sp.make_split(shuffled)
    pd.testing.assert_frame_equal(s0, s1)
    assert s0.attrs["meta"]["folds"] == s1.attrs["meta"]["folds"]


def test_write_read_roundtrip(tmp_path, s0):
    p = tmp_path / "split.csv"
    sp.write_split(s0, p)
    assert p.read_text().startswith("# ")
    r = sp.read_split(p)
    pd.testing.assert_frame_equal(r.reset_index(drop=True), s0[r.columns].reset_index(drop=True))
    assert r.attrs["meta"]["folds"] == s0.attrs["meta"]["folds"]
    assert r.attrs["meta"]["version"] == sp.VERSION


def test_read_rejects_inconsistent_file(tmp_path, s0):
    p = tmp_path / "split.csv"
    sp.write_split(s0, p)
    bad = s0.copy()
    bad.loc[0, "role_0"] = "banana"
    bad.attrs = s0.attrs
    sp.write_split(bad, p)
    with pytest.raises(sp.SplitError, match="unknown role"):
        sp.read_split(p)


def test_extend_keeps_existing_and_assigns_new_by_longitude(m0, s0):
    rng = np.random.default_rng(42)
    lons = np.concatenate([rng.uniform(6.0, 14.0, 8), [5.0, 15.0]])  # two beyond the original extremes
    new = pd.DataFrame({"glac_id": [f"N{i}" for i in range(10)], "qc_status": "ok",
                        "area_km2": rng.uniform(0.1, 3, 10), "cenlon": lons, "cenlat": 46.0})
    ext = sp.extend_split(s0, pd.concat([m0, new], ignore_index=True))
    assert ext.attrs["added"] == sorted(new.glac_id) and ext.attrs["dropped"] == []
    assert ext.attrs["meta"]["revision"] == 1 and s0.attrs["meta"]["revision"] == 0
    cols = sp.SPLIT_COLUMNS + sp.role_columns(N_FOLDS)
    old = ext[ext.glac_id.isin(s0.glac_id)].set_index("glac_id")[cols[1:]].sort_index()
    pd.testing.assert_frame_equal(old, s0.set_index("glac_id")[cols[1:]].sort_index())
    # boundaries unchanged
    assert ext.attrs["meta"]["folds"] == s0.attrs["meta"]["folds"]
    srt = s0.sort_values("cenlon")
    for _, g in ext[ext.glac_id.isin(new.glac_id)].iterrows():
        west = srt[srt.cenlon < g.cenlon]
        east = srt[srt.cenlon > g.cenlon]
        for k in range(N_FOLDS):
            col = f"role_{k}"
            # a new glacier takes the role its two existing neighbours share
            if len(west) and len(east) and west[col].iat[-1] == east[col].iat[0]:
                assert g[col] == west[col].iat[-1]
            if len(west) == 0:
                assert g[col] == east[col].iat[0]
            if len(east) == 0:
                assert g[col] == west[col].iat[-1]
        neigh = {f for f in (west.test_fold.iat[-1] if len(west) else None,
                             east.test_fold.iat[0] if len(east) else None) if f is not None}
        assert g.test_fold in neigh
    assert ext.loc[ext.glac_id == "N8", "test_fold"].item() == 0
    assert ext.loc[ext.glac_id == "N9", "test_fold"].item() == N_FOLDS - 1


def test_extend_with_same_manifest_is_noop(m0, s0):
    ext = sp.extend_split(s0, m0)
    assert ext.attrs["added"] == [] and ext.attrs["dropped"] == []
    assert ext.attrs["meta"]["revision"] == 0
    pd.testing.assert_frame_equal(ext, s0)


def test_extend_drops_and_reports_removed(m0, s0, caplog):
    gone = ["G00003", "G00100"]
    m = m0.copy()
    m.loc[m.glac_id == gone[0], "qc_status"] = "skipped"
    m = m[m.glac_id != gone[1]]
    with caplog.at_level("WARNING", logger="glaciermap.segmentation.split"):
        ext = sp.extend_split(s0, m)
    assert ext.attrs["dropped"] == gone
    assert ext.attrs["meta"]["history"][-1]["dropped"] == gone
    assert "G00003" in caplog.text
    assert not ext.glac_id.isin(gone).any() and len(ext) == len(s0) - 2
    pd.testing.assert_frame_equal(ext.reset_index(drop=True),
                                  s0[~s0.glac_id.isin(gone)].reset_index(drop=True))


def test_split_for_creates_then_extends_file(tmp_path, m0):
    p = tmp_path / "splits" / "cv.csv"
    s1 = sp.split_for(m0, p)
    assert p.exists()
    text1 = p.read_text()
    s2 = sp.split_for(m0, p)                      # nothing changed: the file is not rewritten
    assert p.read_text() == text1
    pd.testing.assert_frame_equal(s1, s2)
    new = pd.DataFrame({"glac_id": ["NEW"], "qc_status": "ok", "area_km2": [1.0], "cenlon": [9.0], "cenlat": [46.0]})
    s3 = sp.split_for(pd.concat([m0, new]), p)
    assert "NEW" in set(s3.glac_id)
    r = sp.read_split(p)
    assert "NEW" in set(r.glac_id) and r.attrs["meta"]["revision"] == 1
    assert r.attrs["meta"]["history"][0]["added"] == ["NEW"]
    with pytest.raises(sp.SplitError, match="n_folds"):
        sp.split_for(m0, p, n_folds=4)


def test_bad_manifest_fails_loudly(m0):
    m = m0.copy()
    m.loc[5, "cenlon"] = np.nan
    with pytest.raises(sp.SplitError, match=m.loc[5, "glac_id"]):
        sp.make_split(m)
    with pytest.raises(sp.SplitError, match="cannot fill"):
        sp.make_split(m0.head(3))


def test_fold_table(s0):
    ft = sp.fold_table(s0)
    assert list(ft.fold) == list(range(N_FOLDS))
    assert ft.n_test.sum() == len(s0)
    assert ft.area_test_km2.sum() == pytest.approx(s0.area_km2.sum())
    assert ((ft.n_test + ft.n_val + ft.n_train) == len(s0)).all()
    assert (ft.lon_max.to_numpy()[:-1] < ft.lon_min.to_numpy()[1:]).all()
    tol = 100 * s0.area_km2.max() / s0.area_km2.sum()
    assert ft.area_test_pct.to_numpy() == pytest.approx(np.full(N_FOLDS, 20.0), abs=tol)
    assert ft.loc[0, "area_val_pct"] == pytest.approx(10.0, abs=tol)


def test_extend_test_only_adds_no_training_or_validation_glacier_then_promotes(m0, s0, tmp_path):
    new = pd.DataFrame({"glac_id": ["N0", "N1", "N2"], "qc_status": "ok", "area_km2": [0.5, 1.0, 2.0],
                        "cenlon": [7.0, 10.0, 13.0], "cenlat": 46.0})
    m = pd.concat([m0, new], ignore_index=True)
    ext = sp.extend_split(s0, m, added="test_only")
    by_lon = sp.extend_split(s0, m, added="longitude")
    rcols = sp.role_columns(N_FOLDS)
    for _, g in ext[ext.glac_id.isin(new.glac_id)].iterrows():
        ref = by_lon[by_lon.glac_id == g.glac_id].iloc[0]
        assert g.test_fold == ref.test_fold                     # same test fold as by longitude
        assert [g[c] for c in rcols] == ["test" if k == g.test_fold else "none" for k in range(N_FOLDS)]
    # no fold's training or validation set changes
    for c in rcols:
        assert set(ext.loc[ext[c].isin(["train", "val"]), "glac_id"]) == set(s0.loc[s0[c].isin(["train", "val"]), "glac_id"])
    assert ext.attrs["meta"]["history"][-1]["added_roles"] == "test_only"
    # the file round-trips (role none is valid) and a later extension keeps the stored roles
    p = tmp_path / "s.csv"
    sp.write_split(ext, p)
    again = sp.extend_split(sp.read_split(p), m, added="test_only")
    assert again.attrs["added"] == [] and again.attrs["meta"]["revision"] == ext.attrs["meta"]["revision"]
    # switching to longitude promotes them to the roles an original glacier would have
    prom = sp.extend_split(sp.read_split(p), m, added="longitude")
    assert prom.attrs["promoted"] == ["N0", "N1", "N2"] and prom.attrs["meta"]["history"][-1]["promoted"] == ["N0", "N1", "N2"]
    pd.testing.assert_frame_equal(prom[sp.SPLIT_COLUMNS + rcols].reset_index(drop=True),
                                  by_lon[sp.SPLIT_COLUMNS + rcols].reset_index(drop=True))
    with pytest.raises(sp.SplitError, match="added glaciers mode"):
        sp.extend_split(s0, m, added="sometimes")


def test_every_fold_gets_min_val_glaciers_without_moving_test_glaciers(tmp_path):
    # one huge glacier at each end takes the whole 10 % validation area of the folds beside it: by area alone
    # some fold gets 0 or 1 validation glacier (the demo's fold 4 had none)
    m = manifest(n=40, seed=3)
    m.loc[m["glac_id"] == "G00000", ["area_km2", "cenlon"]] = [60.0, 6.0]
    m.loc[m["glac_id"] == "G00001", ["area_km2", "cenlon"]] = [60.0, 14.0]
    by_area = sp.make_split(m, n_folds=N_FOLDS, val_fraction=0.1)
    n_val = lambda s: [int((s[f"role_{k}"] == "val").sum()) for k in range(N_FOLDS)]  # noqa: E731
    assert min(n_val(by_area)) < 3
    widened = sp.make_split(m, n_folds=N_FOLDS, val_fraction=0.1, min_val_glaciers=3)
    assert min(n_val(widened)) >= 3
    # test folds are unchanged, validation only grows (glaciers move from train to val, never from val to train)
    assert (widened["test_fold"] == by_area["test_fold"]).all()
    for k in range(N_FOLDS):
        was_val = by_area[f"role_{k}"] == "val"
        assert (widened.loc[was_val, f"role_{k}"] == "val").all()
        assert (widened[f"role_{k}"] == "train").sum() >= 1
        # validation stays adjacent to the test fold: no training glacier between them
        t = widened[widened[f"role_{k}"] == "test"]["cenlon"]
        val = widened[widened[f"role_{k}"] == "val"]["cenlon"]
        west, east = val[val < t.min()], val[val > t.max()]
        trains = widened[widened[f"role_{k}"] == "train"]["cenlon"]
        if len(west):
            assert not ((trains > west.min()) & (trains < t.min())).any()
        if len(east):
            assert not ((trains < east.max()) & (trains > t.max())).any()
    # the setting is frozen with the split: another value is refused, a file written before it existed is kept
    path = tmp_path / "split.csv"
    sp.split_for(m, path, N_FOLDS, 0.1, min_val_glaciers=3)
    with pytest.raises(sp.SplitError, match="min_val_glaciers=3 but 1 was asked"):
        sp.split_for(m, path, N_FOLDS, 0.1, min_val_glaciers=1)
    old = sp.make_split(m, n_folds=N_FOLDS, val_fraction=0.1)
    del old.attrs["meta"]["min_val_glaciers"]
    sp.write_split(old, tmp_path / "old.csv")
    kept = sp.split_for(m, tmp_path / "old.csv", N_FOLDS, 0.1, min_val_glaciers=3)
    assert n_val(kept) == n_val(by_area)


def test_frozen_split_never_loses_glaciers_without_an_explicit_request(tmp_path, m0):
    p = tmp_path / "split.csv"
    sp.split_for(m0, p)
    frozen = p.read_text()
    empty = m0.iloc[0:0]
    fewer = m0[m0["glac_id"] != "G00007"]
    for manifest, n in ((empty, len(ok(m0))), (fewer, 1)):  # an emptied inventory, one glacier removed
        with pytest.raises(sp.SplitError, match=rf"{n} of the {len(ok(m0))} glaciers of the frozen split .*split.drop_missing: true"):
            sp.split_for(manifest, p)
        assert p.read_text() == frozen  # the file is untouched
    s = sp.split_for(fewer, p, drop_missing=True)  # asked for: dropped and recorded
    assert "G00007" not in set(s.glac_id) and sp.read_split(p).attrs["meta"]["history"][-1]["dropped"] == ["G00007"]


def test_uncovered_glaciers_are_not_split_and_a_frozen_split_keeps_its_own(tmp_path, m0):
    """Issue 11: glaciers no scene covers are left out of a new split (the rest is split exactly as a manifest
    without them), are not added to a frozen split, are added once a scene covers them, and a glacier the
    frozen split already holds is never dropped for lack of imagery."""
    ids = ok(m0)["glac_id"].tolist()
    away = [ids[3], ids[100], ids[250]]
    s = sp.make_split(m0, n_folds=N_FOLDS, val_fraction=0.1, uncovered=away + ["S1", "NOT-IN-INVENTORY"])
    assert not set(away) & set(s.glac_id) and len(s) == len(ids) - 3
    without = sp.make_split(m0[~m0.glac_id.isin(away)], n_folds=N_FOLDS, val_fraction=0.1)
    pd.testing.assert_frame_equal(s, without)
    assert sp.leave_out(m0, away).loc[lambda m: m.glac_id.isin(away), "qc_status"].eq("no_imagery").all()
    assert sp.leave_out(m0, ()) is m0

    p = tmp_path / "split.csv"
    s1 = sp.split_for(m0, p, n_folds=N_FOLDS, uncovered=away)
    pd.testing.assert_frame_equal(s1, without)
    text = p.read_text()
    # still uncovered: nothing changes, the file is not rewritten
    assert sp.split_for(m0, p, n_folds=N_FOLDS, uncovered=away).glac_id.tolist() == s1.glac_id.tolist()
    assert p.read_text() == text
    # a scene now covers one of them: it is added under split.added_glaciers, nobody moves
    s2 = sp.split_for(m0, p, n_folds=N_FOLDS, uncovered=away[1:], added="test_only")
    assert set(s2.glac_id) - set(s1.glac_id) == {away[0]}
    assert sp.read_split(p).attrs["meta"]["history"][-1]["added"] == [away[0]]
    kept = s2[s2.glac_id != away[0]].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, s1, check_dtype=False)
    # a frozen glacier whose scene is gone stays (the selection skips it at run time); no drop, no error
    s3 = sp.split_for(m0, p, n_folds=N_FOLDS, uncovered=away[1:] + [ids[50]])
    assert ids[50] in set(s3.glac_id) and len(s3) == len(s2)
