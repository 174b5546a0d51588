"""Sentinel-2 acquisition schedule (candidate dates per year and their hidden conditions) and the sun position."""

from __future__ import annotations

import numpy as np

from .glaciers import _rng


# --------------------------------------------------------------------------------------------------
# acquisition schedule: candidate dates per year and their conditions
# --------------------------------------------------------------------------------------------------

LAT0, LON0 = 46.0, 7.8  # nominal centre for the sun geometry
_WINDOW = ((8, 1), (10, 15))  # candidate window (month, day), as the workflow's epochs


def sun_position(when) -> tuple[float, float]:
    """Approximate solar (azimuth, elevation) in degrees at LAT0/LON0 for a UTC datetime."""
    doy = when.timetuple().tm_yday
    decl = np.radians(23.44) * np.sin(2 * np.pi * (doy - 81) / 365.0)
    hours = when.hour + when.minute / 60.0 + LON0 / 15.0
    ha = np.radians(15.0 * (hours - 12.0))
    lat = np.radians(LAT0)
    el = np.arcsin(np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(ha))
    az = np.arctan2(-np.sin(ha) * np.cos(decl), np.sin(decl) * np.cos(lat) - np.cos(decl) * np.sin(lat) * np.cos(ha))
    return float(np.degrees(az) % 360.0), float(np.degrees(el))


def make_schedule(seed: int, spec: dict, ela0: float) -> list[dict]:
    """Candidate Sentinel-2 acquisitions per year, each with its (hidden) conditions.

    Two relative orbits image the tile: orbit "A" covers it fully, orbit "B" only up to its swath edge
    (a line ~8-16 degrees off north, 25-65 % of the region). Until 2016 only Sentinel-2A flies (10-day
    revisit per orbit); from 2017 Sentinel-2B doubles it. Per year exactly one *best* date (orbit A, 12
    Aug - 15 Sep: cloud < 2 % and none within 2 km of a glacier, transient snow line 120-260 m above the
    ELA, 320-480 m in the hot 2023) is planted, in the demo's 2015 a second ``good`` one (20-140 m above
    the ELA). The other dates (orbit B twice as likely, at least one partial scene per year) are, in
    order: ``snow`` (fresh snow 500-900 m below the ELA, few clouds: tempting but bad), ``cloudy``
    (15-55 %), then a draw from ``cloudy``, ``overcast`` (80-97 %), ``hazy`` (cirrus veil),
    ``snowcloud``, ``partly`` (5-15 %); October dates are mostly ``snow`` and dates before 11 August
    keep late-lying snow (snow line 150-350 m below the ELA).
    """
    from datetime import date, datetime, timedelta

    rng = _rng(seed, 5)
    out = []
    for year, n in spec["years"].items():
        two = year >= 2017
        start = date(year, *_WINDOW[0])
        end = date(year, *_WINDOW[1])
        a0 = start + timedelta(days=int(rng.integers(0, 10)))
        cand = []
        step = 5 if two else 10
        k = 0
        while a0 + timedelta(days=k) <= end:
            d = a0 + timedelta(days=k)
            plat = "sentinel-2b" if (two and (k // 5) % 2) else "sentinel-2a"
            cand.append((d, "A", plat))
            if d + timedelta(days=3) <= end:
                cand.append((d + timedelta(days=3), "B", plat))
            k += step
        cand.sort()
        is_best_window = [c[1] == "A" and date(year, 8, 12) <= c[0] <= date(year, 9, 15) for c in cand]
        pool = [i for i, ok in enumerate(is_best_window) if ok]
        best = int(rng.choice(pool))
        chosen = {best: "best"}
        if spec.get("second_good", {}).get(year):
            far = [i for i, c in enumerate(cand) if c[1] == "A" and abs((c[0] - cand[best][0]).days) >= 15
                   and date(year, 8, 5) <= c[0] <= date(year, 9, 25)]
            if far:
                chosen[int(rng.choice(far))] = "good"
        rest = [i for i in range(len(cand)) if i not in chosen]
        wgt = np.array([2.0 if cand[i][1] == "B" else 1.0 for i in rest])
        extra = rng.choice(rest, size=min(n - len(chosen), len(rest)), replace=False, p=wgt / wgt.sum())
        b_rest = [i for i in rest if cand[i][1] == "B" and i not in extra]
        if len(extra) >= 2 and b_rest and not any(cand[i][1] == "B" for i in extra):
            extra[-1] = int(rng.choice(b_rest))  # every year has at least one partial (swath-edge) scene
        weathers = []
        for j, i in enumerate(sorted(int(e) for e in extra)):
            d = cand[i][0]
            if j == 0:
                wx = "snow"
            elif j == 1:
                wx = "cloudy"
            elif d.month == 10 and rng.random() < 0.6:
                wx = "snow"
            else:
                wx = str(rng.choice(["cloudy", "overcast", "hazy", "snowcloud", "cloudy", "partly"]))
            weathers.append((i, wx))
        for i, wx in weathers:
            chosen[i] = wx
        hot = year >= 2022
        for i in sorted(chosen, key=lambda i: cand[i][0]):
            d, orbit, plat = cand[i]
            wx = chosen[i]
            hms = (10, 27, 41) if orbit == "A" else (10, 37, 29)
            when = datetime(d.year, d.month, d.day, *hms)
            cloud = {"best": rng.uniform(0.0, 0.02), "good": rng.uniform(0.01, 0.05), "cloudy": rng.uniform(0.15, 0.55),
                     "partly": rng.uniform(0.05, 0.15),
                     "overcast": rng.uniform(0.8, 0.97), "hazy": rng.uniform(0.02, 0.1), "snow": rng.uniform(0.0, 0.15),
                     "snowcloud": rng.uniform(0.2, 0.5)}[wx]
            if wx == "best":
                tsl = ela0 + (rng.uniform(320, 480) if hot else rng.uniform(120, 260))
            elif wx == "good":
                tsl = ela0 + rng.uniform(20, 140)
            elif wx in ("snow", "snowcloud"):
                tsl = ela0 - rng.uniform(500, 900)
            else:
                tsl = ela0 + rng.uniform(-150, 150) + (200 if hot else 0)
            if d < date(year, 8, 11) and wx not in ("best", "good"):
                tsl = min(tsl, ela0 - rng.uniform(150, 350))  # late-lying winter snow
            if wx == "hazy":
                cirrus = float(rng.uniform(0.25, 0.45))
            else:
                draw = rng.random()
                cirrus = float(rng.uniform(0, 0.12)) if draw < 0.3 and wx not in ("best", "good") else 0.0
            az, el = sun_position(when)
            item_id = f"S2{plat[-1].upper()}_{spec['mgrs_tile']}_{d:%Y%m%d}_0_L2A"
            out.append({
                "item_id": item_id, "date": d.isoformat(), "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "year": year, "orbit": orbit, "platform": plat, "quality": wx,
                "cloud_target": float(cloud), "cirrus": cirrus,
                "snowline_m": float(tsl), "fresh_snow": wx in ("snow", "snowcloud"),
                "coverage": 1.0 if orbit == "A" else float(rng.uniform(0.25, 0.65)),
                "swath_angle_deg": float(rng.uniform(8, 16)), "cloud_height_m": float(rng.uniform(1500, 3500)),
                "sun_azimuth": az, "sun_elevation": el, "hot_year": hot,
                "noise_seed": int(rng.integers(0, 2**31 - 1)),
            })
    return out
