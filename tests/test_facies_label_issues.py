"""Confident learning on out-of-fold facies probabilities (glaciermap.facies.label_issues)."""

import json

import numpy as np
import pandas as pd
import pytest
from cleanlab.count import compute_confident_joint
from cleanlab.filter import find_label_issues

from glaciermap.facies.label_issues import (
    confident_joint,
    find_issues,
    oof_rows,
    read_fold_probas,
    run_label_issues,
    summarise,
)

CLASSES = ["ice", "snow", "debris", "firn", "shadow"]
PRUNABLE = ["ice", "snow", "debris", "firn"]


def synthetic(n=2000, k=5, flip_rate=0.15, seed=0, absent=(), signal=3.0):
    """Softmax probabilities of a decent classifier of the true classes, and given labels with planted flips
    (a flip always changes the class). Classes in ``absent`` are never a true nor a given class."""
    rng = np.random.default_rng(seed)
    pool = np.array([c for c in range(k) if c not in absent])
    true = rng.choice(pool, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), true] += signal
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    flip = rng.random(n) < flip_rate
    given = true.copy()
    for i in np.flatnonzero(flip):
        given[i] = rng.choice(pool[pool != true[i]])
    return given, p, flip, true


def strict_json(path):
    """JSON that must not contain NaN / Infinity (plain floats and null only)."""
    def bad(c):
        raise AssertionError(f"non-standard JSON constant {c} in {path}")
    return json.loads(path.read_text(), parse_constant=bad)


def test_flags_recover_planted_flips_far_above_chance():
    given, p, flip, _ = synthetic()
    df = find_issues(given, p, CLASSES, PRUNABLE)
    flagged = df["flagged"].to_numpy()
    precision = (flagged & flip).sum() / flagged.sum()
    recall = (flagged & flip).sum() / flip.sum()
    assert flip.mean() == pytest.approx(0.15, abs=0.03)
    assert precision > 0.6  # chance: 0.15
    assert recall > 0.6
    pruned = df["pruned"].to_numpy()
    prunable_noisy = flip & np.isin(given, [CLASSES.index(c) for c in PRUNABLE])
    assert (pruned & flip).sum() / pruned.sum() > 0.6
    assert (pruned & prunable_noisy).sum() / prunable_noisy.sum() > 0.6


def test_unprunable_class_is_flagged_but_never_pruned():
    given, p, _, _ = synthetic(seed=1)
    df = find_issues(given, p, CLASSES, PRUNABLE)
    shadow = df["given"] == "shadow"
    assert df.loc[shadow, "flagged"].sum() > 0  # cleanlab does flag some shadow labels ...
    assert not df.loc[shadow, "pruned"].any()  # ... but they are never pruned
    others = ~shadow
    assert (df.loc[others, "pruned"] == df.loc[others, "flagged"]).all()


@pytest.mark.parametrize("filter_by", ["confident_learning", "prune_by_noise_rate", "both", "predicted_neq_given"])
def test_output_equals_cleanlab(filter_by):
    given, p, _, _ = synthetic(n=1200, seed=2)
    df = find_issues(given, p, CLASSES, PRUNABLE, filter_by=filter_by)
    expected = find_label_issues(given, p, filter_by=filter_by)
    np.testing.assert_array_equal(df["flagged"].to_numpy(), expected)
    np.testing.assert_array_equal(df["label"].to_numpy(), given)
    np.testing.assert_array_equal(df["given"].to_numpy(), np.array(CLASSES)[given])
    np.testing.assert_array_equal(df["suggested"].to_numpy(), np.array(CLASSES)[p.argmax(axis=1)])
    np.testing.assert_allclose(df["self_confidence"].to_numpy(), p[np.arange(len(given)), given])


@pytest.mark.parametrize("absent", [(4,), (2,), (0, 3)])
def test_class_without_labels(absent):
    """A class no point is labelled with (here also never true): cleanlab keeps working, never counts a point as
    confidently of that class, and the flags still find the planted flips."""
    given, p, flip, _ = synthetic(seed=3, absent=absent)
    df = find_issues(given, p, CLASSES, PRUNABLE)
    np.testing.assert_array_equal(df["flagged"].to_numpy(), find_label_issues(given, p, filter_by="confident_learning"))
    cj = confident_joint(given, p, len(CLASSES))
    for a in absent:  # nothing counted in that row or column (cleanlab sets every diagonal cell to at least 1)
        assert cj[a].sum() - cj[a, a] == 0 and cj[:, a].sum() - cj[a, a] == 0
        assert cj[a, a] == 1
    flagged = df["flagged"].to_numpy()
    assert (flagged & flip).sum() / flagged.sum() > 0.6
    summary = summarise(df, CLASSES)
    for a in absent:
        assert summary["pruned_share_per_class"][CLASSES[a]] is None
        assert summary["flagged_share_per_class"][CLASSES[a]] is None
        assert summary["n_per_class"][CLASSES[a]] == 0


def test_absent_class_holding_the_mass_is_not_flagged():
    """Pinned cleanlab behaviour: a point whose probability mass is on a class without labels is not flagged by
    confident learning (that class's threshold is out of reach)."""
    given, p, _, _ = synthetic(n=800, seed=4, absent=(4,))
    p = p.copy()
    p[0] = [0.02, 0.02, 0.02, 0.02, 0.92]
    given = given.copy()
    given[0] = 0
    df = find_issues(given, p, CLASSES, PRUNABLE)
    assert df.loc[0, "suggested"] == "shadow"
    assert not df.loc[0, "flagged"]


def test_confident_joint_matches_cleanlab_and_the_flags():
    given, p, _, _ = synthetic(seed=5)
    cj = confident_joint(given, p, len(CLASSES))
    np.testing.assert_array_equal(cj, compute_confident_joint(given, p, calibrate=False))
    assert cj.dtype.kind == "i" and cj.shape == (5, 5)
    # raw counts: the off-diagonal cells are exactly the points confident learning flags
    assert cj.sum() - np.trace(cj) == find_label_issues(given, p, filter_by="confident_learning").sum()
    np.testing.assert_array_equal(confident_joint(given, p, 5, calibrate=True),
                                  np.rint(compute_confident_joint(given, p)).astype(int))
    with pytest.raises(ValueError, match="K = 4"):
        confident_joint(given, p, 4)


def test_summarise_counts_and_shares():
    df = pd.DataFrame({
        "given": ["ice", "ice", "ice", "ice", "snow", "snow", "shadow"],
        "flagged": [True, True, False, False, True, False, True],
        "pruned": [True, True, False, False, True, False, False],
    })
    s = summarise(df, ["ice", "snow", "shadow", "water"])
    assert s["n_points"] == 7 and s["n_flagged"] == 4 and s["n_pruned"] == 3
    assert s["pruned_share"] == pytest.approx(3 / 7)
    assert s["pruned_share_per_class"] == {"ice": 0.5, "snow": 0.5, "shadow": 0.0, "water": None}
    assert s["flagged_share_per_class"] == {"ice": 0.5, "snow": 0.5, "shadow": 1.0, "water": None}


def test_bad_inputs_raise_clear_errors():
    given, p, _, _ = synthetic(n=50, seed=6)
    with pytest.raises(ValueError, match=r"prunable classes \['rock'\]"):
        find_issues(given, p, CLASSES, ["rock"])
    with pytest.raises(ValueError, match="5 classes"):
        find_issues(given, p[:, :4], CLASSES, PRUNABLE)
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        find_issues(np.where(given == 0, 7, given), p, CLASSES, PRUNABLE)


# --------------------------------------------------------------------------- fold CSVs and the rule


def write_folds(tmp_path, given, p, flip, true, n_folds=3, seed=0):
    """One CSV per fold: its test points (a third of all) and, as val rows, the points of the fold before it with
    unrelated probabilities (they must not matter). Also the demo truth CSV."""
    rng = np.random.default_rng(seed)
    n = len(given)
    ids = np.array([f"P{i:05d}" for i in range(n)])
    fold_of = np.arange(n) % n_folds
    paths = []
    for f in range(n_folds):
        rows = []
        for role, sel in (("test", fold_of == f), ("val", fold_of == (f - 1) % n_folds)):
            probs = p[sel] if role == "test" else rng.dirichlet(np.ones(p.shape[1]), sel.sum())
            d = pd.DataFrame({"point_id": ids[sel], "fold": f, "role": role, "label": np.array(CLASSES)[given[sel]]})
            for j, c in enumerate(CLASSES):
                d[f"p_{c}"] = probs[:, j]
            rows.append(d)
        path = tmp_path / f"fold{f}.csv"
        pd.concat(rows).to_csv(path, index=False)
        paths.append(path)
    truth = tmp_path / "truth.csv"
    pd.DataFrame({"point_id": ids, "true_class": np.array(CLASSES)[true], "noisy": flip}).to_csv(truth, index=False)
    return paths, truth, ids, fold_of


def test_run_label_issues_end_to_end(tmp_path):
    given, p, flip, true = synthetic(seed=7)
    paths, truth, ids, fold_of = write_folds(tmp_path, given, p, flip, true)
    out = tmp_path / "out"
    res = run_label_issues(paths, CLASSES, PRUNABLE, out / "issues.csv", out / "joint.csv", out / "summary.json",
                           truth_csv=truth)
    assert sorted(x.name for x in out.iterdir()) == ["issues.csv", "joint.csv", "summary.json"]  # no temp files

    table = pd.read_csv(out / "issues.csv", dtype={"point_id": str})
    assert list(table.columns) == ["point_id", "fold", "given", "suggested", "self_confidence", "flagged", "pruned"]
    assert len(table) == len(given) and table["point_id"].is_unique
    # the rule sees only the test rows: same result as cleanlab on the OOF probabilities, whatever the val rows hold
    order = pd.Series(np.arange(len(ids)), index=ids)[table["point_id"]].to_numpy()
    expected = find_label_issues(given, p, filter_by="confident_learning")
    np.testing.assert_array_equal(table["flagged"].to_numpy(), expected[order])
    np.testing.assert_array_equal(table["fold"].to_numpy(), fold_of[order])
    np.testing.assert_allclose(table["self_confidence"].to_numpy(), p[order, given[order]], rtol=1e-9)

    joint = pd.read_csv(out / "joint.csv")
    assert list(joint.columns) == ["given", *CLASSES] and list(joint["given"]) == CLASSES
    np.testing.assert_array_equal(joint[CLASSES].to_numpy(), compute_confident_joint(given, p, calibrate=False))

    s = strict_json(out / "summary.json")
    assert s == res
    assert s["n_points"] == len(given) and s["n_pruned"] == int(table["pruned"].sum())
    noisy = flip[order]
    pruned, flagged = table["pruned"].to_numpy(), table["flagged"].to_numpy()
    prunable_given = table["given"].isin(PRUNABLE).to_numpy()
    assert s["flag_precision"] == pytest.approx((pruned & noisy).sum() / pruned.sum())
    assert s["flag_recall"] == pytest.approx((pruned & noisy).sum() / (noisy & prunable_given).sum())
    assert s["flagged_precision"] == pytest.approx((flagged & noisy).sum() / flagged.sum())
    assert s["flagged_recall"] == pytest.approx((flagged & noisy).sum() / noisy.sum())
    assert s["flag_precision"] > 3 * s["noisy_share"]
    assert s["pruned_share_per_class"]["shadow"] == 0.0
    assert s["n_confident_off_diagonal"] == s["n_flagged"]


def test_run_label_issues_absent_class_gives_null_shares(tmp_path):
    given, p, flip, true = synthetic(n=900, seed=8, absent=(3,))
    paths, truth, _, _ = write_folds(tmp_path, given, p, flip, true)
    s = run_label_issues(paths, CLASSES, PRUNABLE, tmp_path / "i.csv", tmp_path / "j.csv", tmp_path / "s.json")
    assert s["pruned_share_per_class"]["firn"] is None
    assert strict_json(tmp_path / "s.json")["pruned_share_per_class"]["firn"] is None
    assert "flag_precision" not in s  # no truth given


def test_duplicate_test_point_is_named(tmp_path):
    given, p, flip, true = synthetic(n=300, seed=9)
    paths, _, _, _ = write_folds(tmp_path, given, p, flip, true)
    d = pd.read_csv(paths[0], dtype={"point_id": str})
    extra = d[d["role"] == "test"].head(2).assign(fold=1)
    pd.concat([pd.read_csv(paths[1], dtype={"point_id": str}), extra]).to_csv(paths[1], index=False)
    with pytest.raises(ValueError, match="more than once") as e:
        run_label_issues(paths, CLASSES, PRUNABLE, tmp_path / "i.csv", tmp_path / "j.csv", tmp_path / "s.json")
    for pid in extra["point_id"]:
        assert pid in str(e.value)
    assert "fold0.csv" in str(e.value) and "fold1.csv" in str(e.value)
    assert not (tmp_path / "i.csv").exists()


def test_fold_csv_errors_name_the_file(tmp_path):
    given, p, flip, true = synthetic(n=300, seed=10)
    paths, truth, _, _ = write_folds(tmp_path, given, p, flip, true)
    good = pd.read_csv(paths[0], dtype={"point_id": str})

    bad = tmp_path / "nolabel.csv"
    good.drop(columns=["label", "p_firn"]).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"nolabel\.csv.*missing columns \['label', 'p_firn'\]"):
        read_fold_probas([bad], CLASSES)

    bad = tmp_path / "unknown.csv"
    good.assign(label=good["label"].where(good.index != 3, "rock")).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"unknown\.csv.*labels \['rock'\]"):
        read_fold_probas([bad], CLASSES)

    bad = tmp_path / "sums.csv"
    good.assign(p_ice=good["p_ice"] + 0.5).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"sums\.csv.*(sum to 1|outside)"):
        read_fold_probas([bad], CLASSES)

    bad = tmp_path / "role.csv"
    good.assign(role="train").to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"role\.csv.*role must be one of"):
        read_fold_probas([bad], CLASSES)

    t = pd.read_csv(truth).iloc[5:]
    t.to_csv(truth, index=False)
    with pytest.raises(ValueError, match=r"truth .*truth\.csv: 5 of 300 points have no truth row"):
        run_label_issues(paths, CLASSES, PRUNABLE, tmp_path / "i.csv", tmp_path / "j.csv", tmp_path / "s.json",
                         truth_csv=truth)


def test_read_fold_probas_renormalises_and_keeps_roles(tmp_path):
    given, p, flip, true = synthetic(n=300, seed=11)
    paths, _, _, _ = write_folds(tmp_path, given, p, flip, true)
    d = pd.read_csv(paths[0], dtype={"point_id": str})
    pcols = [f"p_{c}" for c in CLASSES]
    d[pcols] = d[pcols] * 1.0005  # CSV rounding, within tolerance
    d.to_csv(paths[0], index=False)
    df = read_fold_probas(paths, CLASSES)
    np.testing.assert_allclose(df[pcols].sum(axis=1), 1.0)
    assert set(df["role"]) == {"val", "test"} and len(df) == 600
    assert len(oof_rows(df)) == 300
