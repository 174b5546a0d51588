"""Planted inventory errors: the demo's inventory outlines are not all right (what confident learning on outlines,
rule ``outline_issues``, is scored against).

Real inventories carry two common kinds of outline error (seed 002's motivation, issue 14):

* ``missing_tongue``: a debris-covered tongue left out of the outline (debris looks like the moraine around it). The
  inventory outline of a chosen glacier loses its tongue: its lowest pixels, ``tongue_share`` (default 15 %) of its
  area, plus any piece of the glacier that the cut leaves disconnected from its main body (4-connectivity).
  Glaciers are chosen at random among those whose tongue is mostly debris (at least ``min_tongue_debris``, default
  half, of its pixels) and at least ``min_tongue_px`` pixels.
* ``snowfield``: a perennial snowfield mapped as a glacier. The world's snowfields (``W.snowpatch10``: ice bodies too
  small to be kept as glaciers, rendered as old snow in every scene) are real snow on the ground, so the imagery
  shows snow there; only their lack of flow and thinning (velocity, dh/dt) and their shape tell them apart. Chosen at
  random among the connected snowfields of at least ``min_snowfield_px`` pixels lying at least ``min_gap_px`` pixels
  from any glacier, and grown over bare ground (not ice, water, forefield, nor walls over 40 degrees; by distance
  from the snowfield) to ``snowfield_px`` pixels (drawn from 1,200 to 2,500: 0.12 to 0.25 km2), because the world's
  own snowfields are all under 0.1 km2 and a workflow maps glaciers from 0.1 km2 (``inventory.min_area_km2``); the
  world renders the grown snowfields in every sensor. Each becomes an inventory glacier of its own (ids after the
  real ones), with the inventory date of the nearest glacier.

Every erroneous inventory outline keeps at least ``min_inventory_px`` pixels (0.12 km2), so that it is mapped.

The truth (``truth/areas.csv``, ``truth/outlines_t0.gpkg``) stays the world's; the inventory is what is wrong.
``truth/inventory_errors.csv`` lists the planted errors (glac_id, kind, error_km2, inventory_km2, true_km2): the
only file that says which inventory glaciers are wrong. The draws use RNG stage 400 only, so every other planted
quantity keeps its values (the grown snowfields change the rendered scenes there).
"""

from __future__ import annotations

import numpy as np

STAGE = 400
DEFAULTS = {"missing_tongue": 0, "snowfield": 0, "tongue_share": 0.15, "min_tongue_debris": 0.5,
            "min_tongue_px": 150, "min_snowfield_px": 150, "min_gap_px": 5, "snowfield_px": (1200, 2500),
            "min_inventory_px": 1200}
KINDS = ("missing_tongue", "snowfield")


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (1 + int(np.argmax(sizes)))


def cut_tongue(glacier: np.ndarray, z: np.ndarray, share: float) -> np.ndarray:
    """Pixels to leave out of one glacier's outline: its lowest ``share`` of pixels (by elevation) plus whatever
    the cut disconnects from the glacier's main body."""
    n_cut = int(round(share * glacier.sum()))
    if n_cut <= 0:
        return np.zeros_like(glacier)
    zg = np.sort(z[glacier])
    cut = glacier & (z <= zg[n_cut - 1])
    keep = _largest_component(glacier & ~cut)
    return glacier & ~keep


def grow_snowfield(comp: np.ndarray, allowed: np.ndarray, target_px: int) -> np.ndarray | None:
    """The snowfield ``comp`` grown into ``allowed`` pixels (connected to it) to about ``target_px`` pixels, by
    distance from it; None when there is no room for that many."""
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(~comp)
    room = comp | allowed
    lab, _ = ndimage.label(room)
    room &= np.isin(lab, np.unique(lab[comp]))
    if room.sum() < target_px:
        return None
    if comp.sum() >= target_px:
        return comp.copy()
    d = np.sort(dist[room])[int(target_px) - 1]
    grown = room & (dist <= d)
    lab, _ = ndimage.label(grown)  # the part connected to the snowfield only
    return grown & np.isin(lab, np.unique(lab[comp]))


def plant_inventory_errors(lab: np.ndarray, debris: np.ndarray, z: np.ndarray, snowfield: np.ndarray,
                           rng: np.random.Generator, opts: dict | None = None,
                           allowed: np.ndarray | None = None) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """(inventory labels, planted errors, snowfields) from the true labels ``lab`` (0 = none, 1..n glaciers, 10 m).

    Inventory labels: ``lab`` with the chosen tongues removed and the chosen snowfields added as labels n+1, n+2,
    ... Planted errors: one dict per error, ``label``, ``kind`` and ``error_px`` (pixels wrong in the inventory).
    Every erroneous inventory glacier keeps at least ``min_inventory_px`` pixels (smaller ones are not mapped by a
    workflow whose inventory.min_area_km2 is 0.1 km2). With ``allowed`` (where a snowfield may lie: off the
    glaciers, not water, not steep), each chosen snowfield is first grown to ``snowfield_px`` (a range: drawn)
    within it; the snowfields returned are ``snowfield`` with the grown ones (what the world then renders).
    """
    from scipy import ndimage

    o = {**DEFAULTS, **(opts or {})}
    unknown = sorted(set(o) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"inventory_errors: unknown option(s) {unknown}; known: {sorted(DEFAULTS)}")
    inv = lab.copy()
    snow = snowfield.copy()
    n = int(lab.max())
    min_inv = int(o["min_inventory_px"])
    errors: list[dict] = []
    tongues = {}
    for g, box in enumerate(ndimage.find_objects(lab), start=1):
        if box is None:
            continue
        glacier = lab[box] == g
        cut = cut_tongue(glacier, z[box], float(o["tongue_share"]))
        if (cut.sum() >= int(o["min_tongue_px"]) and glacier.sum() - cut.sum() >= min_inv
                and (debris[box] & cut).sum() >= float(o["min_tongue_debris"]) * cut.sum()):
            tongues[g] = (box, cut)
    cand = np.array(sorted(tongues), int)
    k = min(int(o["missing_tongue"]), cand.size)
    for g in (np.sort(rng.choice(cand, size=k, replace=False)) if k else []):
        box, cut = tongues[int(g)]
        inv[box][cut] = 0
        errors.append({"label": int(g), "kind": "missing_tongue", "error_px": int(cut.sum())})

    comps, nc = ndimage.label(snowfield & (lab == 0))
    if nc and int(o["snowfield"]) > 0:
        gap = ndimage.distance_transform_edt(lab == 0)
        sizes = np.bincount(comps.ravel(), minlength=nc + 1)
        min_gap = ndimage.minimum(gap, comps, np.arange(1, nc + 1))
        ok = np.flatnonzero((sizes[1:] >= int(o["min_snowfield_px"])) & (min_gap >= float(o["min_gap_px"]))) + 1
        lo, hi = o["snowfield_px"]
        added = 0
        for c in rng.permutation(ok):  # in random order until enough have room to grow (or are big enough)
            if added == int(o["snowfield"]):
                break
            m = comps == int(c)
            if allowed is not None:
                m = grow_snowfield(m, allowed & (gap >= float(o["min_gap_px"])) & ~(inv > 0),
                                   int(rng.integers(int(lo), int(hi) + 1)))
                if m is None:
                    continue
            if m.sum() < min_inv:
                continue
            label = n + 1 + added
            inv[m] = label
            snow |= m
            errors.append({"label": label, "kind": "snowfield", "error_px": int(m.sum())})
            added += 1
    dtype = lab.dtype if n + len(errors) < np.iinfo(lab.dtype).max else np.int32
    return inv.astype(dtype), errors, snow


def apply(W) -> None:
    """Plant the errors of ``W.spec["inventory_errors"]`` into the world: ``W.inv_lab10`` (the inventory labels),
    ``W.inv_errors`` (the planted errors) and ``W.inv_table`` (one row per inventory glacier: glac_id, src_date,
    area_km2). Without the spec key the inventory is the t0 truth (``W.inv_lab10 is W.lab10``)."""
    import pandas as pd

    spec = W.spec.get("inventory_errors") or {}
    tab = W.table
    if not spec:
        W.inv_lab10, W.inv_errors = W.lab10, []
    else:
        rng = np.random.default_rng([int(W.seed), STAGE])
        # a snowfield grows over bare ground only (not ice, water, forefield or walls steeper than 40 degrees)
        allowed = (W.lab10 == 0) & ~W.lake10 & ~W.forefield10 & (W.slope10 < 40.0)
        W.inv_lab10, W.inv_errors, snow = plant_inventory_errors(W.lab10, W.debris0, W.z10, W.snowpatch10, rng, spec,
                                                                 allowed)
        grown = snow & ~W.snowpatch10
        W.snowpatch10 = snow  # the world renders the grown snowfields: old snow in every scene, no vegetation
        W.meadow10 = np.where(grown, 0.0, W.meadow10).astype(np.float32)
        W.forest10 = np.where(grown, 0.0, W.forest10).astype(np.float32)
    n_inv = int(W.inv_lab10.max()) if W.inv_errors else W.n
    npx = np.bincount(W.inv_lab10.ravel(), minlength=n_inv + 1)[1:]
    ids = [f"DEMO-{g:05d}" for g in range(1, n_inv + 1)]
    dates = list(tab["src_date"])
    if n_inv > W.n:  # the snowfields take the inventory date of the nearest glacier (the same scene)
        from scipy import ndimage

        _, (iy, ix) = ndimage.distance_transform_edt(W.lab10 == 0, return_indices=True)
        for g in range(W.n + 1, n_inv + 1):
            rr, cc = np.nonzero(W.inv_lab10 == g)
            near = int(W.lab10[iy[rr[0], cc[0]], ix[rr[0], cc[0]]])
            dates.append(dates[near - 1])
    W.inv_table = pd.DataFrame({"gid": np.arange(1, n_inv + 1), "glac_id": ids, "src_date": dates,
                                "area_km2": npx * 1e-4})
    true_km2 = dict(zip(tab["gid"], tab["area_t0_km2"]))
    W.inv_errors_table = pd.DataFrame(
        [{"glac_id": ids[e["label"] - 1], "kind": e["kind"], "error_km2": round(e["error_px"] * 1e-4, 6),
          "inventory_km2": round(float(npx[e["label"] - 1]) * 1e-4, 6),
          "true_km2": round(float(true_km2.get(e["label"], 0.0)), 6)} for e in W.inv_errors],
        columns=["glac_id", "kind", "error_km2", "inventory_km2", "true_km2"])
