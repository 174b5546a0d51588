"""Planted inventory errors of the demo (glaciermap.demo.inventory_errors), on constructed label rasters."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from glaciermap.demo import inventory_errors as ie


def _world():
    """Two glaciers sloping down to the south (rows grow downhill): 1 with a debris-covered tongue, 2 clean; two
    snowfields, one far from the glaciers (A), one touching glacier 2's margin (B)."""
    h, w = 120, 160
    lab = np.zeros((h, w), np.uint16)
    lab[10:90, 10:50] = 1
    lab[10:90, 70:110] = 2
    z = np.broadcast_to(3000.0 - 10.0 * np.arange(h)[:, None], (h, w)).astype(np.float32)
    debris = np.zeros((h, w), bool)
    debris[70:90, 10:50] = True  # glacier 1: lowest 25 % debris
    debris[85:90, 70:110] = True  # glacier 2: a thin debris band, its tongue mostly clean
    snow = np.zeros((h, w), bool)
    snow[100:115, 130:150] = True  # A: 300 px, far from every glacier
    snow[30:45, 110:122] = True  # B: touches glacier 2
    return lab, z, debris, snow


def test_cut_tongue_takes_the_lowest_share_and_what_it_disconnects():
    g = np.zeros((40, 24), bool)
    g[0:30, 5:15] = True  # the body; the lowest rows (27-29) are the tongue
    g[27:30, 15:20] = True  # the tongue reaches east ...
    g[15:27, 18:20] = True  # ... where a strip hangs up beside the body, joined to it only through the tongue
    z = np.broadcast_to(1000.0 - np.arange(40)[:, None], g.shape).astype(float)
    cut = ie.cut_tongue(g, z, 0.15)
    lowest = g & (z <= np.sort(z[g])[int(round(0.15 * g.sum())) - 1])
    strip = np.zeros_like(g)
    strip[15:27, 18:20] = True
    assert (cut == (lowest | strip)).all()  # the lowest 15 % and the strip it cut off; nothing else
    assert (strip & ~lowest).sum() >= 20  # most of the strip lies above the cut: taken for being disconnected
    from scipy import ndimage
    assert ndimage.label(g & ~cut)[1] == 1  # the glacier keeps one body
    assert ie.cut_tongue(g, z, 0.0).sum() == 0


def test_plant_cuts_only_debris_tongues_and_adds_only_isolated_snowfields():
    lab, z, debris, snow = _world()
    rng = np.random.default_rng(0)
    small = {"min_snowfield_px": 100, "min_inventory_px": 200}
    inv, errors, snow_out = ie.plant_inventory_errors(lab, debris, z, snow, rng,
                                                      {"missing_tongue": 5, "snowfield": 5, **small})
    kinds = [(e["label"], e["kind"]) for e in errors]
    assert kinds == [(1, "missing_tongue"), (3, "snowfield")]  # glacier 2's tongue is clean, snowfield B too close
    tongue = (lab == 1) & (inv == 0)
    assert errors[0]["error_px"] == tongue.sum() == round(0.15 * (lab == 1).sum())
    assert z[tongue].max() < z[(inv == 1)].min()  # the lowest rows
    assert (inv == 3).sum() == errors[1]["error_px"] == 300 and (inv == 3)[100:115, 130:150].all()
    same = (lab == inv)
    assert same[(lab == 2)].all() and not (inv[30:45, 110:122] > 0).any()  # glacier 2 and snowfield B untouched
    # no errors asked: the inventory is the truth
    assert (snow_out == snow).all()  # no room given: nothing grows
    inv0, err0, _ = ie.plant_inventory_errors(lab, debris, z, snow, np.random.default_rng(0))
    assert err0 == [] and (inv0 == lab).all()
    # an outline that would end up under min_inventory_px is not planted: none of the snowfields is big enough
    _, err_big, _ = ie.plant_inventory_errors(lab, debris, z, snow, rng, {"snowfield": 5, "min_snowfield_px": 100})
    assert err_big == []
    with pytest.raises(ValueError, match="unknown option"):
        ie.plant_inventory_errors(lab, debris, z, snow, rng, {"tongues": 1})


def test_snowfields_grow_over_allowed_ground_to_the_drawn_size():
    lab, z, debris, snow = _world()
    allowed = lab == 0
    allowed[:, 125:128] = False  # a wall west of snowfield A: it may not grow across
    rng = np.random.default_rng(3)
    inv, errors, snow_out = ie.plant_inventory_errors(
        lab, debris, z, snow, rng, {"snowfield": 1, "min_snowfield_px": 100, "snowfield_px": (700, 700), "min_inventory_px": 200}, allowed)
    (e,) = errors
    grown = inv == e["label"]
    assert e["kind"] == "snowfield" and grown[100:115, 130:150].all()  # snowfield A, grown around its core
    assert abs(int(grown.sum()) - 700) <= 40 and e["error_px"] == grown.sum()
    assert not (grown & ~allowed).any() and not grown[:, :128].any()
    from scipy import ndimage
    assert ndimage.label(grown)[1] == 1 and (snow_out == (snow | grown)).all()
    # no room for the size asked: not planted
    _, none, _ = ie.plant_inventory_errors(lab, debris, z, snow, np.random.default_rng(3),
                                           {"snowfield": 1, "min_snowfield_px": 100, "snowfield_px": (9000, 9000)},
                                           allowed)
    assert none == []


def test_apply_writes_the_inventory_table_and_the_error_table():
    lab, z, debris, snow = _world()
    n0 = np.bincount(lab.ravel())[1:]
    table = pd.DataFrame({"gid": [1, 2], "glac_id": ["DEMO-00001", "DEMO-00002"],
                          "src_date": ["2015-08-20", "2016-08-30"], "area_t0_km2": n0 * 1e-4})
    h, w = lab.shape
    W = SimpleNamespace(spec={"inventory_errors": {"missing_tongue": 1, "snowfield": 1, "min_snowfield_px": 100,
                                                   "snowfield_px": (400, 400), "min_inventory_px": 200}},
                        table=table, seed=0, n=2, lab10=lab, debris0=debris, z10=z, snowpatch10=snow,
                        lake10=np.zeros((h, w), bool), forefield10=np.zeros((h, w), bool),
                        slope10=np.full((h, w), 20.0, np.float32), meadow10=np.full((h, w), 0.5, np.float32),
                        forest10=np.zeros((h, w), np.float32))
    ie.apply(W)
    it, et = W.inv_table, W.inv_errors_table
    assert list(it["glac_id"]) == ["DEMO-00001", "DEMO-00002", "DEMO-00003"]
    assert it.loc[2, "src_date"] == "2016-08-30"  # the snowfield takes the date of its nearest glacier (2)
    assert list(et["kind"]) == ["missing_tongue", "snowfield"]
    row = et.set_index("glac_id").loc["DEMO-00001"]
    assert row["inventory_km2"] + row["error_km2"] == pytest.approx(row["true_km2"])
    assert et.set_index("glac_id").loc["DEMO-00003", "true_km2"] == 0.0
    np.testing.assert_allclose(it["area_km2"], np.bincount(W.inv_lab10.ravel())[1:] * 1e-4)
    # the grown snowfield is in the world's snowfields (rendered as old snow), with no meadow on it
    sf = W.inv_lab10 == 3
    assert sf.sum() >= 390 and W.snowpatch10[sf].all() and (W.meadow10[sf & ~snow] == 0).all() and (sf & ~snow).any()
    # without the spec key nothing changes
    W2 = SimpleNamespace(spec={}, table=table, seed=0, n=2, lab10=lab, debris0=debris, z10=z, snowpatch10=snow)
    ie.apply(W2)
    assert W2.inv_lab10 is lab and W2.inv_errors_table.empty and len(W2.inv_table) == 2
