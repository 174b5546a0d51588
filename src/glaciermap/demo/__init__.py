"""Deterministic synthetic glacier region (no network): terrain, glaciers, Sentinel-2 scenes, truth.

``generate(out_dir, seed=0, preset="demo")`` (or ``python -m glaciermap.demo --out resources/demo --seed 0
[--preset demo|tiny|scale [--glaciers N]] [--force]``) writes the region in the layout fixed by docs/design.md::

    <out>/inputs/inventory.gpkg            layer "glaciers" (EPSG:32632): glac_id, area_km2, src_date, cenlon, cenlat
    <out>/inputs/dem/dem_glo30.tif         float32 30 m DEM, nodata -9999 (COG)
    <out>/inputs/dhdt/dhdt_<period>.tif    float32 m/yr at 100 m for 2010-2014 and 2015-2019, nodata -9999
    <out>/inputs/scenes/<item_id>/<B..>.tif  12 L2A bands (uint16, reflectance x 10000, nodata 0, native 10/20/60 m)
                                           and SCL (uint8, 20 m), all COGs (deflate + predictor, overviews /4 /16)
    <out>/inputs/debris/debris_map.gpkg    layer "debris": a user's debris-cover map (the t0 debris at 30 m, patches
                                           < 0.27 ha missed; the labels of K-class models, glaciermap.segmentation.labels)
    <out>/inputs/catalog/catalog.json      static STAC catalog (collections sentinel-2-l2a and auxiliary, then
                                           the other sensors' collections listed below)
    <out>/truth/                           outlines_t0.gpkg, outlines_2023.gpkg, areas.csv, debris_t0.tif,
                                           debris_2023.tif, scenes.csv (conditions of every date),
                                           inventory_errors.csv (glac_id, kind, error_km2, inventory_km2, true_km2:
                                           the planted inventory errors; empty without any)
    <out>/.complete                        stamp {"seed", "preset", "version", "summary"}

and, for the sensors the preset's ``sensors`` entry names (the "Other sensors" section below)::

    <out>/inputs/landsat/<item_id>/SR_B*.tif, ST_B6|ST_B10.tif, QA_PIXEL.tif    collection landsat-c2-l2
    <out>/inputs/sentinel1/<item_id>/vv.tif, vh.tif, ls_mask.tif                collection sentinel-1-grd
    <out>/inputs/coherence/coherence_<year>.tif                                 collection insar-coherence
    <out>/inputs/velocity/velocity_<year>.tif (vx, vy), velocity_<year>_vx|vy.tif  collection surface-velocity
    <out>/inputs/scenes_l1c/<item_id>/B01..B12, B10.tif                          collection sentinel-2-l1c
    <out>/truth/areas_timeseries.csv       glac_id, date, area_km2, planted_rate_pct_per_year, at_max_extent
    <out>/truth/glaciers_sensors.csv       glac_id, st_debris_margin_k, max_extent_km2
    <out>/truth/landsat_scenes.csv, sentinel1_scenes.csv   conditions of every Landsat / Sentinel-1 date

and, for the preset's ``facies`` entry (needs ``sensors.landsat``; the "Glacier facies" section below)::

    <out>/inputs/facies/points.gpkg        layer "points", EPSG:4326 POINTs: point_id, class, scene_id (Landsat item
                                           id), glacier_id (= the inventory's glac_id); ~15 % noisy labels, 5 bad rows
    <out>/inputs/facies/smb.csv            glacier_id, year, annual_balance (m w.e.; glaciers >= smb_min_area_km2)
    <out>/truth/facies/<landsat_item_id>.tif  uint8 30 m true facies (1 ice, 2 snow, 3 debris, 4 firn, 5 refrozen,
                                           6 shadow, 7 water, 8 cloud; 0 not labelled, 255 fill)
    <out>/truth/facies_points.csv          point_id, scene_id, glacier_id, true_class, given_class, noisy,
                                           transition, bad_row_reason, x_32632, y_32632
    <out>/truth/smb.csv                    glacier_id, year, annual_balance_true, annual_balance, snowline_scene_id,
                                           snowline_regional_m, snowline_glacier_m, zmin_m, zmid_m, zmax_m, area_km2

It is idempotent: when ``catalog.json`` and a ``.complete`` stamp with the same seed, preset and
version exist nothing is done. Everything is written into ``.<out>.tmp-<pid>`` beside ``out`` and
renamed into place at the end, so a half-generated region never looks complete. Presets are plain
dicts in ``PRESETS`` ("demo": 40-60 glaciers on 25.2 x 19.8 km, 6 dates in each of 2015, 2016, 2017
and 2023, ~45-60 s on 2 cores and ~530-580 MB for Sentinel-2 and the rest, plus the other sensors
(28 Landsat, 8 Sentinel-1 scenes, 4 coherence and 4 velocity years; no L1C by default) ~+40-50 s and
~+250 MB; "tiny": 4-6 glaciers on 6 x 5.1 km, 3 dates in 2015 and 2023, every sensor with 5 Landsat and
4 Sentinel-1 scenes, ~6 s and ~29 MB; "scale", made by ``scale_spec`` for ``glaciers=N``: the demo's densities on a
domain sized for ~N glaciers, its terrain made of demo-sized landscapes side by side, Sentinel-2 L2A only, for the
cost curves). All randomness comes from
``numpy.random.Generator`` seeded from (seed, stage): the same seed gives identical arrays and identical COG bytes; another seed gives another region.

What is planted
---------------
* **Terrain** (``make_terrain``): a steady-state stream-power landscape (cheapest-path elevation on an
  8-neighbour graph with channel slope ~ A^-0.45, threshold hillslopes steepening into rock walls
  high up, an uplift band forming a wavy WSW-ENE main chain), glacial troughs and cirque floors
  carved along the flux lines of a former, larger glaciation, ridged noise on the crests, scaled to
  ~1500-3950 m. The D8 drainage tree comes with it. A region of several demo sizes (the "scale" preset) is
  made of demo-sized landscapes side by side: each has its own chain, main valleys at base level run between
  them, and the noise has no scales beyond one landscape.
* **Glaciers** (``ice_from_flux``, ``tune_glaciers``): mass balance b = 0.0075 (z - ELA_local)
  (capped at +2 m w.e./yr), ELA_local = regional ELA + insolation (north faces lower) + mass-elevation
  effect + a rise near the region edge + noise. b is routed down the drainage tree, tributaries pass on
  only positive flux, and ice lies where the flux stays positive (not on rock walls > 47 degrees,
  whose avalanches still feed the flux); tongues are widened into their troughs from the flux. The
  regional ELA is tuned to the preset's glacier count and largest size. Ice is split into glaciers by
  the ice outlet each cell drains to, small basins merged into their longest-border neighbour, so
  adjacent glaciers share ice divides. At 10 m the outline is the smoothed 30 m mask plus sub-pixel
  irregularity. A handful of glaciers < 0.1 km2 are kept in the inventory; other small ice bodies
  become perennial snowfields (bright, not glaciers: false positives waiting to happen).
* **Inventory dates**: per year the best date of the schedule (in 2015 of the demo also a second
  clear date), assigned to spatial blocks of glaciers with shares ~68 % 2015, 26 % 2016, 6 % 2017.
  The inventory outlines are the t0 truth outlines (same pixels) except for the **planted inventory
  errors** of the demo preset (``inventory_errors``, module ``inventory_errors``): 3 glaciers whose
  debris-covered tongue (15 % of the glacier) the inventory leaves out and 3 perennial snowfields the
  inventory maps as glaciers (ids after the real ones); ``truth/inventory_errors.csv`` lists them.
* **Area change** (``plant``): per glacier a rate r = -(1.55 - 0.85 log10 A) + N(0, 0.35) %/yr,
  clipped to [-4, -0.5] (x0.6 for debris-dominated glaciers), applied from the glacier's inventory date
  t0 to the 2023 truth date t1 = the date of the best 2023 scene: n1 = floor(n0 (1 + r years / 100))
  pixels are kept (always fewer than n0). Pixels are removed in order of a score: elevation, minus up
  to 100 m within 40 m of the outer margin (margin thinning; divides between glaciers do not count),
  plus correlated noise, +40 m on debris (insulated ice lingers). So truth areas are exact pixel counts
  x 100 m2 and equal the areas of the outline polygons. Intermediate dates interpolate the ranking:
  a scene on date t shows the pixels whose removal rank exceeds f = (t - t0) / (t1 - t0) (clipped to
  [0, 1]), i.e. exactly the t0 truth on t0 and the 2023 truth on t1.
* **Debris** : a potential = (relative position in the ablation zone)^1.3 x (0.35 + rock-wall supply
  routed down-glacier) + noise. Per glacier a debris fraction is drawn (many clean glaciers, typically
  a few to 35 %, 2-4 "debris-dominated" glaciers at 75-92 % chosen among low tongues below rock walls)
  and the potential is thresholded at that quantile; by 2023 the threshold drops so the debris share
  grows by 2-8 points (debris_2023 is a superset of debris_t0 on the remaining ice).
* **Lakes**: tarns on flat ground (DEM flattened under them) and 1-3 proglacial lakes in front of
  retreating tongues, growing into the deglaciated pixels.
* **Land cover**: rock with a lithology brightness / tint field, alpine meadow and forest below a
  tree line ~800 m under the ELA, bare forefields (Little Ice Age moraines and down-valley trails),
  fresh till where ice was lost.
* **dh/dt** (``make_dhdt``): thinning strongest at the tongues (also on debris), 2015-2019 1.3x
  2010-2014, ~0 off glacier, white + correlated + slope-dependent noise, a few voids. Each period is
  drawn on its own glacier extents (``ice_share``, from the history below): 2010-2014 thins beyond
  the inventory outlines, ice lost during 2015-2019 thins for part of the period.

Scenes
------
Surfaces have 12-band spectra (``SPECTRA``): fresh/old snow, firn, clean (dirty) ice, rock (grey,
reddish), debris and till (= rock family: debris-covered ice is spectrally rock), meadow (green or
autumn), forest, turbid water, cloud, cirrus. Reflectance = texture x mixed spectrum x illumination,
illumination = (1 - diffuse_b) x direct + diffuse_b x sky view, direct = an L2A-style partially
terrain-corrected cos(incidence) for the date's sun position (10:30 local, lat 46) and 0 in cast
shadows (horizon traced on the 30 m DEM), so ice in shadow is dark and bluish. Seasonal snow
follows the date's transient snow line. Clouds are thresholded fractal fields (the threshold fixes
the cloud share), cloud shadows are the cloud field shifted away from the sun by
height / tan(elevation); cirrus veils; orbit-B dates cover only the region west of a tilted swath
edge (nodata 0 in every band and SCL 0). Sensor noise ~1-1.5 DN + 0.07 %. SCL codes: 0 nodata, 2 dark
(deep terrain shadow), 3 cloud shadow, 4 vegetation (NDVI > 0.4), 5 not vegetated, 6 water, 8/9 cloud
medium/high, 10 cirrus, 11 snow/ice (NDSI > 0.42, NIR > 0.11). ``eo:cloud_cover`` = 100 x share of
SCL 8/9/10 among SCL != 0 pixels (rounded to 0.01).

Schedule (``make_schedule``): two relative orbits (A full, B partial), 10-day revisit with S2A only
(2015, 2016) and 5-day with S2B from 2017, candidates between 1 Aug and 15 Oct. Each year has exactly
one ``best`` date (orbit A, 12 Aug - 15 Sep, < 2 % cloud and none within 2 km of a glacier, snow line
above the ELA) - it is the truth date of that epoch - and the demo's 2015 a second ``good`` one. The
others are ``snow`` (fresh snow 500-900 m below the ELA: few clouds but bad), ``snowcloud``, ``cloudy``
(15-55 %), ``partly`` (5-15 %), ``hazy`` (cirrus), ``overcast`` (80-97 %: filtered by eo:cloud_cover <
75); early-August dates keep late-lying snow, October dates are mostly snowy. ``truth/scenes.csv`` lists
every date's quality, snow line, cloud target, coverage and sun angles - never read it in modelling.

Truth (``truth/``, for evaluation only): ``areas.csv`` has per glacier date_t0 (= src_date),
area_t0_km2, date_t1 (= best 2023 date), area_t1_km2, rate_km2_per_year and rate_pct_per_year over
(t1 - t0) / 365.25 years, debris fractions, size class, debris_dominated, zmin_m, zmax_m.

Other sensors
-------------
The preset's ``sensors`` dict selects them (a missing key or ``{}`` for ``sensors`` = Sentinel-2 L2A only):
``landsat: {years: {year: n}, platforms: {year: [platform, ...]}}``, ``sentinel1: {years: {year: n}}``,
``coherence: {years: [...]}``, ``velocity: {years: [...]}``, ``sentinel2_l1c: {}``. They are rendered from the
same world (terrain, glaciers and their state at each date, debris, lakes, land cover, snow) with RNG
stages of their own (100+), after the Sentinel-2 scenes: every file of the Sentinel-2-only region keeps its
bytes (only ``catalog.json`` gains child links and ``.complete`` its summary). Module docstrings hold the
details (``history``, ``landsat``, ``sentinel1``, ``motion``, ``sentinel2_l1c``).

* **Glacier history** (``history``): between t0 and t1 the Sentinel-2 extent; before t0 the glacier grows
  back as A(t) = A(t0) exp(r/100 (t - t0)) with its planted rate r, re-adding nearby ice-free pixels (within
  350 m, 900 m on its forefield, below its top, slope < 40 degrees) in decreasing order of elevation - 1.5 x
  distance + noise (the reverse of the retreat: the far down-valley tongue is the oldest), re-grown pixels
  debris-covered where their nearest t0 pixel is; a glacier that has used up that maximum extent stays
  there (``at_max_extent``); after t1 the remaining pixels keep going in the retreat order.
  ``truth/areas_timeseries.csv`` has the exact pixel areas at every Landsat date, t0 and t1.
* **Landsat C2 L2** (``landsat-c2-l2``, 30 m): Landsat 5 TM (1985-2011), 7 ETM+ (1999-), 8 (2013-), 9 (2022-)
  summer scenes on WRS-2 paths 194/195; SR_B1..SR_B7 as USGS names them per instrument, DN = (reflectance +
  0.2) / 2.75e-5 (uint16, fill 0), no terrain correction; ST_B6 / ST_B10 with DN = (K - 149) / 0.00341802:
  air temperature with a lapse rate, sun-heated rock and moraine (+4 + 14 cos(i)/sin(e) K), vegetation
  cooler, clean ice ~273 K, debris-covered ice 3-6 K (per glacier, ``truth/glaciers_sensors.csv``) cooler
  than bare ground at the same elevation and illumination; QA_PIXEL bits 0 fill, 1 dilated cloud, 2 cirrus
  (OLI), 3 cloud, 4 cloud shadow, 5 snow, 6 clear, 7 water + confidences; Landsat 7 after 2003-05-31 has
  wedge-shaped SLC-off stripes of fill (~20-30 % of the region, widening away from nadir). Items carry
  platform, eo:cloud_cover, view:sun_azimuth / view:sun_elevation, landsat:wrs_path / wrs_row.
* **Sentinel-1** (``sentinel-1-grd``, 20 m): assets ``vv``, ``vh`` (float32 dB, nodata NaN), ``ls_mask`` (1 layover,
  2 shadow); properties sar:polarizations [VV, VH], glaciermap:units dB, sat:orbit_state, no eo:cloud_cover.
  Wet snow dark, dry snow / firn bright, bare ice medium-dark, debris-covered ice and moraine alike
  (rough), gamma speckle (4.4 looks), layover bright and shadow at the noise floor.
* **InSAR coherence** (``insar-coherence``, items ``coherence-<year>``, asset ``coherence``, 90 m, 24-day VV pair):
  rock 0.6-0.9, moraine ~0.72, meadow ~0.45, forest ~0.25, ice 0.1-0.3, debris-covered ice 0.15-0.35,
  water ~0.03.
* **Surface velocity** (``surface-velocity``, items ``velocity-<year>``, assets ``vx``, ``vy`` and the 2-band
  ``velocity``, m/yr, EPSG:32632, 120 m): down-glacier flow on every glacier (fastest near the ELA, slower at
  the margins), debris-covered ice 1.5-6 m/yr, ~0 + noise off the ice, a few voids on steep slopes.
* **Sentinel-2 L1C** (``sentinel-2-l1c``, same dates and footprints as L2A, 13 bands with B10, no SCL):
  TOA = path reflectance + two-way transmittance x the L2A surface reflectance (Rayleigh + aerosol), +1000 DN
  from processing baseline 04.00 (2022-01-25); items carry view:sun_* and s2:processing_baseline.

Glacier facies
--------------
``facies: {points_per_scene: n, smb_min_area_km2: a}`` (``glaciermap.demo.facies``; RNG stages 301-305, after the
sensors, so every other file keeps its bytes): the Landsat scenes are the facies scenes (Maslov et al.). The true
facies of a scene's 30 m pixel is recomputed from what ``render_landsat`` drew (the same state fractions, seasonal
snow, cast shadow, and the very cloud fields, redrawn from the scene's noise seed): cloud (opacity >= 0.4) >
shadow (cast, or cloud shadow > 0.5) > water (lake > 0.5) > snow (seasonal or perennial > 0.5) > the dominant of
clean ice / firn / debris; ``refrozen`` = firn-dominant pixels of hot years within 100 m above the firn line (the
render's bluish hot-year firn; rare). Only 30 m pixels wholly inside an inventory outline with < 25 % land are
labelled. ~n points per scene (stratified to the paper's class mix; none on Landsat 7 SLC-off scenes, whose gap
stripes every 32 rows touch every 33 x 33 px training window), 15 % of the facies labels wrong (70 % of them at
class transitions: the neighbouring class), shadow / water / cloud never; five bad rows (unknown class "slush",
outside every glacier, exact duplicate, scene not in the catalog, missing class). The SMB of each glacier >= a km2
and Landsat year is 2 m w.e. x (zmid - SL) / (zmax - zmin) + N(0, 0.15) with SL the year's highest scene snow
line shifted by the glacier's mean northness offset of the render. Adds ~7 s to the demo (2640 points on its 24
gap-free Landsat scenes), ~0.1 s to tiny.

Debris-covered ice is made hard on purpose: it is spectrally the rock / moraine family in every optical
sensor and as rough as moraine in SAR; what tells it apart is lower coherence, slow but non-zero velocity,
a cooler surface temperature, its dh/dt and the terrain (tongues in troughs below rock walls).
"""

from __future__ import annotations

from pathlib import Path

from .noise import _irfft2, _lin_axis, block_mean, fractal_noise, smoothstep, upsample, upsample_nearest
from .terrain import FlowTree, _Grid8, cos_incidence, horizon_height, make_terrain, slope_aspect, surface_normals
from .glaciers import (DHDT_PERIODS, F, RES_DEM, RES_DHDT, RES_TRUTH, _BMAX, _GAMMA, _assign_inventory_dates,
    _clear_border, _compact, _insolation, _near_lines, _ordinal, _per_label_components, _pick_spread, _rng,
    build_world, carve_troughs, glacier_state, ice_from_flux, make_dhdt, mass_balance, plant, planted_rate_pct,
    split_basins, tune_glaciers)
from .schedule import LAT0, LON0, _WINDOW, make_schedule, sun_position
from .sentinel2 import (BANDS, BAND_INFO, BAND_RES, DIFFUSE, MAX_DN, NOISE_SCALE, SCL_BARE, SCL_CIRRUS,
    SCL_CLOUD_HIGH, SCL_CLOUD_MED, SCL_DARK, SCL_NODATA, SCL_SHADOW, SCL_SNOW, SCL_VEG, SCL_WATER, SPECTRA,
    TERRAIN_RESIDUAL, _ENDMEMBERS, _cloud_fields, _spectra_for, _swath_valid60, prepare_render, render_scene,
    surface_weights)
from .writers import (COG_MEDIA, CRS, _asset_proj, _footprint, _lonlat, _polygons, _transform, _write_gpkg,
    write_cog)
from .catalog import _EXTENSIONS, build_catalog
from .truth import _write_world_files
from .sensors import generate_sensors
from .facies import generate_facies
from . import inventory_errors

# everything the single-module glaciermap.demo had (tests and tools import some private names too)
__all__ = ["_irfft2", "_lin_axis", "block_mean", "fractal_noise", "smoothstep", "upsample", "upsample_nearest",
           "FlowTree", "_Grid8", "cos_incidence", "horizon_height", "make_terrain", "slope_aspect",
           "surface_normals", "DHDT_PERIODS", "F", "RES_DEM", "RES_DHDT", "RES_TRUTH", "_BMAX", "_GAMMA",
           "_assign_inventory_dates", "_clear_border", "_compact", "_insolation", "_near_lines", "_ordinal",
           "_per_label_components", "_pick_spread", "_rng", "build_world", "carve_troughs", "glacier_state",
           "ice_from_flux", "make_dhdt", "mass_balance", "plant", "planted_rate_pct", "split_basins",
           "tune_glaciers", "LAT0", "LON0", "_WINDOW", "make_schedule", "sun_position", "BANDS", "BAND_INFO",
           "BAND_RES", "DIFFUSE", "MAX_DN", "NOISE_SCALE", "SCL_BARE", "SCL_CIRRUS", "SCL_CLOUD_HIGH",
           "SCL_CLOUD_MED", "SCL_DARK", "SCL_NODATA", "SCL_SHADOW", "SCL_SNOW", "SCL_VEG", "SCL_WATER", "SPECTRA",
           "TERRAIN_RESIDUAL", "_ENDMEMBERS", "_cloud_fields", "_spectra_for", "_swath_valid60", "prepare_render",
           "render_scene", "surface_weights", "COG_MEDIA", "CRS", "_asset_proj", "_footprint", "_lonlat",
           "_polygons", "_transform", "_write_gpkg", "write_cog", "_EXTENSIONS", "build_catalog",
           "_write_world_files", "generate_sensors", "generate_facies", "generate", "main", "PRESETS", "VERSION",
           "SCALED_PRESETS", "SCALE_BASE_GLACIERS", "scale_spec", "preset_spec"]


# --------------------------------------------------------------------------------------------------
# presets and the entry points
# --------------------------------------------------------------------------------------------------

VERSION = 6  # 2: the other sensors (Landsat, Sentinel-1, coherence, velocity, L1C) were added; 3: the debris map input;
# 4: the glacier facies data (points, SMB, truth facies of the Landsat scenes; every earlier file keeps its bytes);
# 5: planted inventory errors (the inventory, the facies points on it, truth/inventory_errors.csv);
# 6: each dh/dt period drawn on its own glacier extents (only inputs/dhdt/ changes)

PRESETS = {
    "demo": {
        "origin": (400200.0, 5110200.0),  # upper-left corner (x, y) in EPSG:32632, ~7.7 E 46.1 N
        "size_m": (25200, 19800),  # width, height (multiples of 300 m: the 10/20/30/60/100 m grids nest)
        "relief_m": (1500.0, 3950.0),
        "pad_m": 4000.0,  # terrain is solved on a padded domain and cropped
        "n_glaciers": (40, 60),  # inventory size, glaciers under 0.1 km2 included
        "n_small": (3, 6),  # inventory glaciers under 0.1 km2
        "largest_km2": (7.0, 15.0),
        "n_debris_dominated": (2, 4),
        "n_lakes": 7,
        "n_proglacial_lakes": 3,
        "years": {2015: 6, 2016: 6, 2017: 6, 2023: 6},  # candidate dates per year
        "inventory_years": {2015: 0.68, 2016: 0.26, 2017: 0.06},  # shares of glaciers per inventory year
        "second_good": {2015: True},  # a second clear 2015 date (inventory built from two scenes)
        "mgrs_tile": "32TMS",
        "workers": 2,
        # the other sensors, rendered from the same world (see the package docstring); {} = Sentinel-2 L2A only
        "sensors": {
            # 2 summer scenes in each of 14 years (every ~4 years from 1985, the inventory years, 2023, 2025)
            "landsat": {"years": {y: 2 for y in (1985, 1989, 1993, 1997, 2001, 2005, 2009, 2013,
                                                 2015, 2016, 2017, 2020, 2023, 2025)}},
            "sentinel1": {"years": {2015: 2, 2016: 2, 2017: 2, 2023: 2}},
            "coherence": {"years": [2015, 2016, 2017, 2023]},
            "velocity": {"years": [2015, 2016, 2017, 2023]},
            # "sentinel2_l1c": {},  # L1C for every L2A date: +~35 s and +550 MB on the demo, so off by default
        },
        # glacier facies points and SMB on the Landsat scenes (glaciermap.demo.facies); needs sensors.landsat
        "facies": {"points_per_scene": 110, "smb_min_area_km2": 0.5},
        # planted inventory errors (glaciermap.demo.inventory_errors): tongues left out, snowfields taken for glaciers
        "inventory_errors": {"missing_tongue": 3, "snowfield": 3},
    },
    "tiny": {
        "origin": (409200.0, 5103300.0),
        "size_m": (6000, 5100),
        "relief_m": (1900.0, 3500.0),
        "pad_m": 3000.0,
        "n_glaciers": (4, 6),
        "n_small": (0, 1),
        "largest_km2": (0.5, 3.0),
        "n_debris_dominated": (1, 1),
        "n_lakes": 1,
        "n_proglacial_lakes": 1,
        "years": {2015: 3, 2023: 3},
        "inventory_years": {2015: 1.0},
        "second_good": {},
        "mgrs_tile": "32TMS",
        "workers": 1,
        "sensors": {
            "landsat": {"years": {1986: 1, 2001: 1, 2009: 1, 2015: 1, 2023: 1},
                        "platforms": {1986: ["landsat-5"], 2001: ["landsat-7"], 2009: ["landsat-7"],
                                      2015: ["landsat-8"], 2023: ["landsat-9"]}},
            "sentinel1": {"years": {2015: 2, 2023: 2}},
            "coherence": {"years": [2015, 2023]},
            "velocity": {"years": [2015, 2023]},
            "sentinel2_l1c": {},  # present = rendered
        },
        "facies": {"points_per_scene": 60, "smb_min_area_km2": 0.1},  # tiny glaciers: SMB down to 0.1 km2
    },
}

#: glaciers of the demo preset at its size (the middle of its 40-60): the "scale" preset's density
SCALE_BASE_GLACIERS = 50


def scale_spec(glaciers: int) -> dict:
    """The "scale" preset for about ``glaciers`` glaciers: the demo's densities on a larger (or smaller) domain.

    The demo's domain is scaled by sqrt(glaciers / 50) on each side (rounded to 300 m, so the 10/20/30/60/100 m
    grids still nest), and its counts (glaciers, small glaciers, debris-dominated glaciers, lakes) by
    glaciers / 50; the relief, largest-glacier range, dates and inventory years are the demo's. The terrain is
    made of demo-sized landscapes side by side (``tile_m``: about glaciers / 50 of them, each with its own main
    chain, main valleys between them, noise without larger scales; ``make_terrain``), so a larger region gets more
    glaciers of the demo's sizes rather than larger ones (seed 0: 184 glaciers for 200, 440 for 500; without the
    tiles 500 gave 212 of twice the demo's mean size; docs/scale.md). Sentinel-2 L2A only: no other sensors, no
    facies data and no planted inventory errors (the cost curves of benchmarks/cost_curve.py time the data half
    and the DL4GAM modelling half, which read nothing else).
    """
    glaciers = int(glaciers)
    if glaciers < 5:
        raise ValueError(f"preset 'scale': glaciers must be at least 5, not {glaciers}")
    base = PRESETS["demo"]
    k = glaciers / SCALE_BASE_GLACIERS
    side = k ** 0.5

    def count(pair):
        return tuple(max(1, int(round(v * k))) for v in pair)

    return {
        **{key: base[key] for key in ("origin", "relief_m", "pad_m", "largest_km2", "years", "inventory_years",
                                      "second_good", "mgrs_tile", "workers")},
        "size_m": tuple(max(3000, int(round(v * side / 300.0)) * 300) for v in base["size_m"]),
        "tile_m": tuple(base["size_m"]),
        "n_glaciers": (int(round(0.8 * glaciers)), int(round(1.2 * glaciers))),
        "n_small": count(base["n_small"]),
        "n_debris_dominated": count(base["n_debris_dominated"]),
        "n_lakes": max(1, int(round(base["n_lakes"] * k))),
        "n_proglacial_lakes": max(1, int(round(base["n_proglacial_lakes"] * k))),
        "sensors": {},
        "glaciers": glaciers,
    }


#: presets made from an argument (``generate(..., glaciers=N)``), beside the fixed ones in PRESETS
SCALED_PRESETS = {"scale": scale_spec}

_WORLD = None  # the world shared with forked scene workers


def _render_and_write(args):
    scene, scene_dir, threads = args
    W = _WORLD
    arrays, meta = render_scene(W, scene)
    scene_dir = Path(scene_dir)
    scene_dir.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        res = 20 if key == "SCL" else BAND_RES[key]
        write_cog(scene_dir / f"{key}.tif", arr, _transform(W, res), 0,
                  resampling="nearest" if key == "SCL" else "average", threads=threads)
    meta["footprint"] = _footprint(W, meta.pop("valid60"))
    return meta


#: version of the "scale" preset's own recipe, in its stamp (2: terrain in demo-sized tiles)
SCALE_VERSION = 2


def _stamp(seed: int, preset: str, glaciers: int | None = None) -> dict:
    return {"seed": int(seed), "preset": preset, "version": VERSION,
            **({"glaciers": int(glaciers), "scale_version": SCALE_VERSION} if glaciers is not None else {})}


def preset_spec(preset: str, glaciers: int | None = None) -> dict:
    """The spec of a preset: a fixed one of PRESETS, or "scale" made for ``glaciers`` (default 200)."""
    if preset in SCALED_PRESETS:
        return dict(SCALED_PRESETS[preset](200 if glaciers is None else glaciers), name=preset)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset '{preset}' (choose from {', '.join([*PRESETS, *SCALED_PRESETS])})")
    if glaciers is not None:
        raise ValueError(f"preset '{preset}' has a fixed size; glaciers={glaciers} needs the preset 'scale'")
    return dict(PRESETS[preset], name=preset)


def generate(out_dir, seed: int = 0, preset: str = "demo", force: bool = False, workers: int | None = None,
             glaciers: int | None = None) -> dict:
    """Generate the synthetic region into ``out_dir`` (idempotent; see the module docstring).

    ``glaciers``: the size of the "scale" preset (about that many glaciers; default 200); other presets have a
    fixed size. Returns a summary: n_glaciers, n_scenes, areas, dates and per-stage timings in seconds
    (``skipped`` is True when a complete region with this seed, preset and size was already there).
    """
    import json
    import os
    import shutil
    import time
    from concurrent.futures import ProcessPoolExecutor

    global _WORLD
    spec = preset_spec(preset, glaciers)
    glaciers = spec.get("glaciers")
    out = Path(out_dir)
    stamp = out / ".complete"
    if not force and stamp.exists() and (out / "inputs" / "catalog" / "catalog.json").exists():
        try:
            have = json.loads(stamp.read_text())
        except ValueError:
            have = {}
        want = _stamp(seed, preset, glaciers)
        if all(have.get(k) == v for k, v in want.items()):
            return {**have.get("summary", {}), "skipped": True, "timings": {}}
    if 2023 not in spec["years"]:
        raise ValueError(f"preset '{preset}' needs the year 2023 (the truth epoch)")
    t_start = time.perf_counter()
    timings = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        t = time.perf_counter()
        W = build_world(seed, spec)
        schedule = make_schedule(seed, spec, W.ela0)
        plant(W, schedule)
        inventory_errors.apply(W)
        prepare_render(W)
        timings["world"] = time.perf_counter() - t
        t = time.perf_counter()
        aux = _write_world_files(tmp, W, schedule)
        timings["inventory_truth_dem_dhdt"] = time.perf_counter() - t
        t = time.perf_counter()
        import multiprocessing as mp

        n_workers = max(1, min(workers or spec["workers"], os.cpu_count() or 1))
        if "fork" not in mp.get_all_start_methods():
            n_workers = 1  # the workers share the world by forking
        threads = max(1, (os.cpu_count() or 1) // n_workers)
        jobs = [(sc, str(tmp / "inputs" / "scenes" / sc["item_id"]), threads) for sc in schedule]
        _WORLD = W
        try:
            if n_workers > 1:
                with ProcessPoolExecutor(n_workers, mp_context=mp.get_context("fork")) as ex:
                    metas = list(ex.map(_render_and_write, jobs))
            else:
                metas = [_render_and_write(j) for j in jobs]
        finally:
            _WORLD = None
        scenes = [{**sc, **m} for sc, m in zip(schedule, metas)]
        import pandas as pd

        pd.DataFrame([{k: v for k, v in sc.items() if k not in ("noise_seed", "footprint")} for sc in scenes]).to_csv(
            tmp / "truth" / "scenes.csv", index=False)
        timings["scenes"] = time.perf_counter() - t
        t = time.perf_counter()
        colls, sensor_summary, sensor_timings = generate_sensors(tmp, W, scenes, spec, n_workers)
        timings.update({f"sensors.{k}": v for k, v in sensor_timings.items()})
        timings["sensors"] = time.perf_counter() - t
        t = time.perf_counter()
        facies_summary, facies_timings = generate_facies(tmp, W, spec)
        timings.update({f"facies.{k}": v for k, v in facies_timings.items()})
        if facies_summary:
            timings["facies"] = time.perf_counter() - t
        t = time.perf_counter()
        build_catalog(tmp, W, scenes, aux, colls)
        timings["catalog"] = time.perf_counter() - t
        tab = W.table
        summary = {
            "preset": preset, "seed": int(seed), "n_glaciers": int(W.n), "n_scenes": len(scenes),
            "n_under_0.1km2": int((tab["area_t0_km2"] < 0.1).sum()),
            "area_min_km2": float(tab["area_t0_km2"].min()), "area_max_km2": float(tab["area_t0_km2"].max()),
            "area_total_km2": float(tab["area_t0_km2"].sum()), "ela_m": round(float(W.ela0), 1),
            "n_debris_dominated": int(tab["debris_dominated"].sum()), "truth_date_2023": W.t1,
            "best_dates": {str(s["year"]): s["date"] for s in schedule if s["quality"] == "best"},
            "inventory_dates": {d: int(c) for d, c in tab["src_date"].value_counts().sort_index().items()},
            "sensors": sensor_summary,
        }
        if facies_summary:
            summary["facies"] = facies_summary
        (tmp / ".complete").write_text(json.dumps({**_stamp(seed, preset, glaciers), "summary": summary},
                                                     indent=2) + "\n")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    timings["total"] = time.perf_counter() - t_start
    return {**summary, "skipped": False, "timings": {k: round(v, 2) for k, v in timings.items()}}


def main(argv=None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m glaciermap.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="resources/demo", help="output folder (default resources/demo)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="demo", choices=sorted([*PRESETS, *SCALED_PRESETS]))
    ap.add_argument("--glaciers", type=int, default=None,
                    help="about this many glaciers (preset scale only: the demo's densities on a domain sized to "
                         "match; default 200)")
    ap.add_argument("--force", action="store_true", help="regenerate even if a complete region is there")
    ap.add_argument("--workers", type=int, default=None, help="scene-rendering processes (default: preset)")
    a = ap.parse_args(argv)
    summary = generate(a.out, seed=a.seed, preset=a.preset, force=a.force, workers=a.workers, glaciers=a.glaciers)
    if summary.get("skipped"):
        print(f"{a.out}: complete region (seed {a.seed}, preset {a.preset}) already there; nothing to do")
    print(json.dumps(summary, indent=2))
    return 0
