"""Mass-balance regression on facies features (glaciermap.facies.smb)."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from glaciermap.facies.smb import (
    FEATURES,
    annual_features,
    fit_global,
    fit_per_glacier,
    read_smb_table,
    run_smb,
)

BETA = {"snow_aar": 2.5, "snowline_norm": -1.0, "albedo": 1.5}


def glacier_years(n_glaciers=10, n_years=8, noise=0.1, offset_sd=0.0, seed=0):
    """Annual features and SMB = linear in the features + noise (+ a per-glacier offset)."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_glaciers):
        offset = rng.normal(0, offset_sd)
        for y in range(2000, 2000 + n_years):
            f = {"snow_aar": rng.uniform(0.1, 0.8), "snowline_norm": rng.uniform(-0.5, 0.5),
                 "albedo": rng.uniform(0.2, 0.6)}
            smb = -2.0 + sum(BETA[k] * f[k] for k in FEATURES) + offset + rng.normal(0, noise)
            rows.append({"glacier_id": f"G{g:02d}", "year": y, **f, "smb": smb})
    return pd.DataFrame(rows)


def scenes_for(df, seed=0):
    """Per glacier-year two scenes inside the 20 Aug +-20 day window whose mean is the year's features, plus scenes
    that must be ignored (outside the window, too little valid area)."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in df.itertuples():
        d = {k: rng.uniform(-0.05, 0.05) for k in FEATURES}
        for sign, day in ((1, f"{r.year}-08-05"), (-1, f"{r.year}-09-09")):  # -15 and +20 days
            rows.append({"glacier_id": r.glacier_id, "scene_id": f"S{r.year}{sign}", "date": day,
                         **{k: getattr(r, k) + sign * d[k] for k in FEATURES}, "valid_share": 0.9})
        rows.append({"glacier_id": r.glacier_id, "scene_id": f"S{r.year}late", "date": f"{r.year}-09-10",
                     **{k: 9.0 for k in FEATURES}, "valid_share": 1.0})  # 21 days: outside
        rows.append({"glacier_id": r.glacier_id, "scene_id": f"S{r.year}cloud", "date": f"{r.year}-08-20",
                     **{k: 9.0 for k in FEATURES}, "valid_share": 0.5})  # mostly cloud
    return pd.DataFrame(rows)


def strict_json(path):
    def bad(c):
        raise AssertionError(f"non-standard JSON constant {c} in {path}")
    return json.loads(path.read_text(), parse_constant=bad)


# --------------------------------------------------------------------------- features


def test_annual_features_window_valid_share_and_nan():
    stats = pd.DataFrame([
        # glacier A, 2019: two scenes in the window (mean), one 21 days off, one cloudy, one with a NaN snowline
        ("A", "s1", "2019-08-01", 0.4, 0.1, 0.3, 0.9),   # -19 days
        ("A", "s2", "2019-09-09", 0.6, 0.3, 0.5, 0.7),   # +20 days, valid_share at the threshold
        ("A", "s3", "2019-09-10", 0.9, 0.9, 0.9, 0.9),   # +21 days: out
        ("A", "s4", "2019-08-20", 0.9, 0.9, 0.9, 0.69),  # too little valid area: out
        ("A", "s5", "2019-08-21", 0.9, np.nan, 0.9, 0.9),  # NaN feature: dropped
        ("A", "s6", "2020-07-30", 0.2, 0.0, 0.2, 1.0),   # 2020: -21 days: out
        ("A", "s7", "2020-08-20", 0.2, -0.2, 0.25, 1.0),
        ("B", "s8", "2019-08-20T10:31:00", 0.5, 0.5, 0.5, 0.8),
    ], columns=["glacier_id", "scene_id", "date", "snow_aar", "snowline_norm", "albedo", "valid_share"])
    out = annual_features(stats)
    assert list(out.columns) == ["glacier_id", "year", "n_scenes", *FEATURES]
    got = out.set_index(["glacier_id", "year"])
    assert list(got.index) == [("A", 2019), ("A", 2020), ("B", 2019)]
    assert got.loc[("A", 2019), "n_scenes"] == 2
    assert got.loc[("A", 2019), ["snow_aar", "snowline_norm", "albedo"]].tolist() == pytest.approx([0.5, 0.2, 0.4])
    assert got.loc[("A", 2020), "n_scenes"] == 1 and got.loc[("A", 2020), "snowline_norm"] == pytest.approx(-0.2)
    # a wider window and a lower threshold take the other scenes in
    wide = annual_features(stats, window_days=21, min_valid_share=0.6).set_index(["glacier_id", "year"])
    assert wide.loc[("A", 2019), "n_scenes"] == 4 and wide.loc[("A", 2020), "n_scenes"] == 2
    # another reference day
    july = annual_features(stats, window_days=1, reference="07-31").set_index(["glacier_id", "year"])
    assert list(july.index) == [("A", 2019), ("A", 2020)]


def test_annual_features_errors():
    stats = pd.DataFrame({"glacier_id": ["A"], "scene_id": ["s"], "date": ["2019-08-20"], "snow_aar": [0.5],
                          "albedo": [0.4], "valid_share": [1.0]})
    with pytest.raises(ValueError, match=r"stats\.csv: missing columns \['snowline_norm'\]"):
        annual_features(stats, source="stats.csv")
    stats["snowline_norm"] = 0.1
    with pytest.raises(ValueError, match="MM-DD"):
        annual_features(stats, reference="August 20")
    with pytest.raises(ValueError, match="dates that cannot be read"):
        annual_features(stats.assign(date="yesterday"))


# --------------------------------------------------------------------------- SMB table


def test_read_smb_table_units_columns_and_errors(tmp_path):
    path = tmp_path / "wgms.csv"
    pd.DataFrame({"WGMS_ID": ["0491", "0491", "0357"], "YEAR": [2019, 2020, 2019],
                  "ANNUAL_BALANCE": [-1250.0, np.nan, 300.0]}).to_csv(path, index=False)
    t = read_smb_table(path, id_column="WGMS_ID", year_column="YEAR", value_column="ANNUAL_BALANCE",
                       units="mm w.e.")
    assert list(t.columns) == ["glacier_id", "year", "smb"]
    assert t["glacier_id"].tolist() == ["0491", "0357"]  # ids stay strings (leading zero kept); empty value dropped
    assert t["smb"].tolist() == pytest.approx([-1.25, 0.3])
    m = read_smb_table(path, id_column="WGMS_ID", year_column="YEAR", value_column="ANNUAL_BALANCE")
    assert m["smb"].tolist() == pytest.approx([-1250.0, 300.0])  # m w.e.: as given

    with pytest.raises(ValueError, match=r"wgms\.csv: missing columns \['annual_balance'\]"):
        read_smb_table(path, id_column="WGMS_ID", year_column="YEAR")
    with pytest.raises(ValueError, match="units must be one of"):
        read_smb_table(path, units="kg m-2")
    dup = tmp_path / "dup.csv"
    pd.DataFrame({"glacier_id": ["A", "A", "B"], "year": [2019, 2019, 2019],
                  "annual_balance": [0.1, 0.2, 0.3]}).to_csv(dup, index=False)
    with pytest.raises(ValueError, match=r"dup\.csv: 1 \(glacier, year\) pairs listed more than once: \(A, 2019\)"):
        read_smb_table(dup)
    bad = tmp_path / "text.csv"
    pd.DataFrame({"glacier_id": ["A"], "year": [2019], "annual_balance": ["n/a?"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"text\.csv: column 'annual_balance' has non-numeric"):
        read_smb_table(bad)
    with pytest.raises(ValueError, match=r"nothere\.csv: file does not exist"):
        read_smb_table(tmp_path / "nothere.csv")


# --------------------------------------------------------------------------- regression


def test_fit_global_recovers_a_linear_relation_out_of_sample():
    df = glacier_years()
    g = fit_global(df, FEATURES, alpha=1.0)
    assert g["n"] == 80 and g["n_glaciers"] == 10 and g["reason"] is None
    assert g["r"] > 0.9 and g["rmse"] < 0.2
    # the same as fitting sklearn's scaler + ridge on the other glaciers, glacier by glacier
    pred = g["predictions"].set_index(["glacier_id", "year"])["smb_pred"]
    for gid in ("G00", "G07"):
        train, test = df[df["glacier_id"] != gid], df[df["glacier_id"] == gid]
        sc = StandardScaler().fit(train[list(FEATURES)])
        m = Ridge(alpha=1.0).fit(sc.transform(train[list(FEATURES)]), train["smb"])
        expected = m.predict(sc.transform(test[list(FEATURES)]))
        np.testing.assert_allclose(pred.loc[gid].to_numpy(), expected)
    assert g["r"] == pytest.approx(np.corrcoef(df["smb"], g["predictions"]["smb_pred"])[0, 1])
    assert g["rmse"] == pytest.approx(np.sqrt(np.mean((df["smb"] - g["predictions"]["smb_pred"]) ** 2)))


def test_fit_global_needs_two_glaciers():
    g = fit_global(glacier_years(n_glaciers=1), FEATURES)
    assert np.isnan(g["r"]) and "at least 2" in g["reason"]


def test_per_glacier_beats_global_with_glacier_offsets_and_skips_short_records():
    df = glacier_years(n_glaciers=6, n_years=8, offset_sd=1.0, noise=0.05, seed=1)
    df = df[~((df["glacier_id"] == "G05") & (df["year"] > 2002))]  # G05: 3 years only
    g = fit_global(df, FEATURES)
    pg = fit_per_glacier(df, FEATURES, alpha=0.1, min_years=4)
    assert pg["n_skipped"] == 1 and pg["skipped_glaciers"] == ["G05"]
    assert pg["n_glaciers"] == 5 and pg["n"] == 40
    assert pg["r"] > g["r"] + 0.1 and pg["rmse"] < g["rmse"] / 2
    assert pg["median_r"] == pytest.approx(np.median(list(pg["r_per_glacier"].values())))
    assert pg["predictions"].loc[pg["predictions"]["glacier_id"] == "G05", "smb_pred"].isna().all()
    # leave one year out: the held-out prediction of G02's 2004 from its other 7 years (sklearn directly)
    sub = df[df["glacier_id"] == "G02"]
    train, test = sub[sub["year"] != 2004], sub[sub["year"] == 2004]
    sc = StandardScaler().fit(train[list(FEATURES)])
    m = Ridge(alpha=0.1).fit(sc.transform(train[list(FEATURES)]), train["smb"])
    got = pg["predictions"].set_index(["glacier_id", "year"]).loc[("G02", 2004), "smb_pred"]
    assert got == pytest.approx(m.predict(sc.transform(test[list(FEATURES)]))[0])


def test_fit_per_glacier_with_the_snow_ratio_only():
    """Paper eq. 3: a glacier's own SMB line on its snow-covered area ratio."""
    rng = np.random.default_rng(2)
    rows = [{"glacier_id": "K", "year": 2000 + i, "snow_aar": a, "snowline_norm": rng.normal(),
             "albedo": rng.normal(), "smb": -1.5 + 3.0 * a + rng.normal(0, 0.05)}
            for i, a in enumerate(np.linspace(0.1, 0.7, 6))]
    pg = fit_per_glacier(pd.DataFrame(rows), ["snow_aar"], alpha=0.01, min_years=4)
    assert pg["r"] > 0.95 and pg["rmse"] < 0.2
    with pytest.raises(ValueError, match="missing columns"):
        fit_per_glacier(pd.DataFrame(rows).drop(columns="snow_aar"), ["snow_aar"])


# --------------------------------------------------------------------------- rule


def write_inputs(tmp_path, df, units="m w.e."):
    scenes = scenes_for(df)
    half = scenes["glacier_id"] < "G05"
    stats = [tmp_path / "stats_a.csv", tmp_path / "stats_b.csv"]
    scenes[half].to_csv(stats[0], index=False)
    scenes[~half].to_csv(stats[1], index=False)
    factor = 1000.0 if units == "mm w.e." else 1.0
    smb = tmp_path / "smb.csv"
    pd.DataFrame({"id": df["glacier_id"], "yr": df["year"], "b": df["smb"] * factor}).to_csv(smb, index=False)
    return stats, smb


def test_run_smb_end_to_end(tmp_path):
    df = glacier_years(n_glaciers=8, n_years=6, offset_sd=0.3, seed=3)
    stats, smb = write_inputs(tmp_path, df, units="mm w.e.")
    params = {"id_column": "id", "year_column": "yr", "value_column": "b", "units": "mm w.e.",
              "path": "ignored", "min_years": 4}
    out = tmp_path / "out"
    res = run_smb(stats, smb, out / "smb.csv", out / "smb.json", params)
    assert sorted(x.name for x in out.iterdir()) == ["smb.csv", "smb.json"]
    table = pd.read_csv(out / "smb.csv", dtype={"glacier_id": str})
    assert list(table.columns) == ["glacier_id", "year", "n_scenes", "snow_aar", "snowline_norm", "albedo", "smb",
                                   "smb_pred_global", "smb_pred_per_glacier"]
    assert len(table) == 48 and (table["n_scenes"] == 2).all()
    merged = table.merge(df, on=["glacier_id", "year"], suffixes=("", "_true"))
    np.testing.assert_allclose(merged["snow_aar"], merged["snow_aar_true"])  # scene means, ignored scenes out
    np.testing.assert_allclose(merged["smb"], merged["smb_true"])  # mm w.e. -> m w.e.

    s = strict_json(out / "smb.json")
    assert s == res
    assert s["n_glacier_years"] == 48 and s["n_glaciers"] == 8 and s["n_skipped_glaciers"] == 0
    assert s["smb_r_global"] > 0.8
    assert s["smb_r_global"] == pytest.approx(np.corrcoef(table["smb"], table["smb_pred_global"])[0, 1])
    assert s["smb_rmse_per_glacier"] == pytest.approx(
        np.sqrt(np.mean((table["smb"] - table["smb_pred_per_glacier"]) ** 2)))
    assert s["features"] == list(FEATURES) and s["features_per_glacier"] == ["snow_aar"]
    assert s["alpha"] == 1.0 and s["window_days"] == 20
    assert s["reason"] is None


def test_run_smb_too_few_glacier_years_writes_null_metrics(tmp_path):
    df = glacier_years(n_glaciers=2, n_years=2)
    stats, smb = write_inputs(tmp_path, df)
    res = run_smb(stats, smb, tmp_path / "smb.csv", tmp_path / "smb.json",
                  {"id_column": "id", "year_column": "yr", "value_column": "b"})
    s = strict_json(tmp_path / "smb.json")
    assert s == res
    assert s["smb_r_global"] is None and s["smb_rmse_global"] is None and s["smb_r_per_glacier"] is None
    assert s["n_glacier_years"] == 4 and "need 5" in s["reason"]
    table = pd.read_csv(tmp_path / "smb.csv")
    assert len(table) == 4 and table["smb_pred_global"].isna().all()


def test_run_smb_errors_name_the_file(tmp_path):
    df = glacier_years(n_glaciers=3, n_years=3)
    stats, smb = write_inputs(tmp_path, df)
    pd.read_csv(stats[1]).drop(columns="albedo").to_csv(stats[1], index=False)
    with pytest.raises(ValueError, match=r"stats_b\.csv: missing columns \['albedo'\]"):
        run_smb(stats, smb, tmp_path / "o.csv", tmp_path / "o.json", {"id_column": "id", "year_column": "yr",
                                                                       "value_column": "b"})
    with pytest.raises(ValueError, match=r"smb\.csv: missing columns \['annual_balance'\]"):
        run_smb(stats[:1], smb, tmp_path / "o.csv", tmp_path / "o.json", {"id_column": "id", "year_column": "yr"})
    with pytest.raises(ValueError, match="features must be a non-empty subset"):
        run_smb(stats[:1], smb, tmp_path / "o.csv", tmp_path / "o.json", {"features": ["elevation"]})
    assert not (tmp_path / "o.json").exists()
