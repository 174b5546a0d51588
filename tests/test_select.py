import numpy as np
import pandas as pd

from glaciermap.data.select import albedo, rank_candidates


def _scores(rows):
    return pd.DataFrame(rows, columns=["item_id", "valid_fraction", "cloud_fraction", "ndsi", "albedo"])


def test_hand_built_ranking_has_known_winner():
    # cloud %: 5, 5, 12, 2 -> ranks 2, 2, 4, 1 ; ndsi %: 10, -20, -30, 40 -> ranks 3, 2, 1, 4
    # mean ranks: A 2.5, B 2.0, C 2.5, D 2.5 -> B wins outright.
    s = _scores([
        ["A", 1.0, 0.049, 0.10, 0.30],
        ["B", 1.0, 0.051, -0.20, 0.50],
        ["C", 1.0, 0.12, -0.30, 0.20],
        ["D", 1.0, 0.02, 0.40, 0.25],
        ["E", 0.5, 0.00, -0.90, 0.10],   # tile edge: fails the valid-fraction pre-filter
        ["F", 1.0, 0.45, -0.90, 0.10],   # too cloudy
    ])
    r = rank_candidates(s).set_index("item_id")
    assert r.loc["B", "chosen"] and r["chosen"].sum() == 1
    assert list(r.loc[["A", "B", "C", "D"], "rank_cloud"]) == [2, 2, 4, 1]
    assert list(r.loc[["A", "B", "C", "D"], "rank_ndsi"]) == [3, 2, 1, 4]
    assert not r.loc["E", "passes"] and "valid fraction" in r.loc["E", "reject_reason"]
    assert not r.loc["F", "passes"] and "cloud fraction" in r.loc["F", "reject_reason"]
    assert np.isnan(r.loc["E", "rank"])


def test_albedo_breaks_ties():
    s = _scores([["A", 1, 0.05, 0.1, 0.40], ["B", 1, 0.05, 0.1, 0.35], ["C", 1, 0.051, 0.101, 0.30]])
    # cloud and NDSI round to the same percents for all three: all tie at mean rank 1; lowest albedo wins.
    r = rank_candidates(s).set_index("item_id")
    assert r.loc["C", "chosen"]
    assert list(r.sort_values("rank").index) == ["C", "B", "A"]


def test_nan_ndsi_ranks_last_and_nothing_passes_means_no_choice():
    s = _scores([["A", 1, 0.10, np.nan, 0.3], ["B", 1, 0.10, 0.5, 0.3]])
    r = rank_candidates(s).set_index("item_id")
    assert r.loc["B", "chosen"]
    s2 = _scores([["A", 1, 0.9, 0.0, 0.3]])
    assert not rank_candidates(s2)["chosen"].any()


def test_albedo_formula():
    assert albedo(0.1, 0.2, 0.3) == 0.5621 * 0.1 + 0.1479 * 0.2 + 0.2512 * 0.3 + 0.0015
