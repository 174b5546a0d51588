# Shared set-up: validated config, the parse-time glacier list, and path helpers.
import functools
import hashlib
import os
import re
import sys

import pandas as pd

from glaciermap.data.acquire import candidates
from glaciermap.config import source_configs, validate_config
from glaciermap.data.channels import stored_layers
from glaciermap.data.grid import cube_margin_m
from glaciermap.data.inventory import GLACIER_LIST_COLUMNS, glacier_list, missing_inventory_message
from glaciermap.resources import cube_megapixels, fixed_job, glacier_job, region_job
from glaciermap.data.stac import is_api

config.update(validate_config(config))

R = f"{config['results_dir']}/{config['region']}"
# the imagery source's settings (a param of the acquisition); a STAC API is not searched while the DAG is built
IMAGERY_SOURCE = source_configs(config)[config["imagery"]]
IMAGERY_STAC = (IMAGERY_SOURCE.get("stac") or {}).get("source") or ""
EPOCHS = list(config["epochs"])
CONDA_ENV = "../../../envs/glaciermap.yaml"  # relative to workflow/rules/<group>/

# The glacier list is read from the inventory when the DAG is built (ids, status, bounds and a
# content fingerprint per outline); per-glacier jobs depend on that fingerprint, not on the shared
# file's mtime, so editing or adding one glacier re-runs that glacier only.
# An inventory file that does not exist yet (a fresh clone before `make demo`) leaves the list empty, so that
# `snakemake --lint` and `--list` work before any data exists; a run then stops at the `inventory` rule's
# missing input, and this message says what to do.
_INVENTORY_EXISTS = os.path.exists(config["inventory"]["path"])
if _INVENTORY_EXISTS:
    _GLACIERS = glacier_list(config)
else:
    _GLACIERS = pd.DataFrame(columns=GLACIER_LIST_COLUMNS)
    print(f"glaciermap: {missing_inventory_message(config['inventory']['path'])}; no glacier is planned", file=sys.stderr)
MAPPED = _GLACIERS[_GLACIERS["qc_status"] == "ok"].set_index("glac_id", drop=False)
GLACIER_IDS = list(MAPPED.index)
if _INVENTORY_EXISTS and not GLACIER_IDS:  # stop before any job: nothing could be mapped, and nothing is overwritten
    _why = [f"{len(sub)} {st} (e.g. {sub['qc_reason'].iloc[0]})" for st, sub in _GLACIERS.groupby("qc_status")]
    raise ValueError(f"no mappable glacier in the inventory {config['inventory']['path']} ({len(_GLACIERS)} "
                     f"outline(s)): {'; '.join(_why) or 'the file holds no outline'}")
# One hash over every row: any change to the inventory's content re-runs the `inventory` rule.
INVENTORY_HASH = hashlib.sha1(
    "".join(_GLACIERS["glac_id"] + _GLACIERS["fingerprint"] + _GLACIERS["qc_status"]).encode()
).hexdigest()[:16]


def canonical(obj):
    """A param value with every mapping's keys sorted: Snakemake compares params by repr(), so the same settings
    written in another key order (a YAML file dumped with sorted keys) must not re-run anything."""
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


wildcard_constraints:
    glacier=r"[A-Za-z0-9_.-]+",
    epoch="|".join(re.escape(e) for e in EPOCHS),


def fingerprint(wildcards):
    return MAPPED.loc[wildcards.glacier, "fingerprint"]


@functools.lru_cache(maxsize=None)
def _candidates(glacier, epoch):
    """(candidate scene tokens joined by ",", footprint coverage of the cube): one catalog search."""
    ids, coverage = candidates(MAPPED.loc[glacier], config, epoch, files=True)
    return ",".join(ids), coverage


def _scene_ids(glacier, epoch):
    return _candidates(glacier, epoch)[0]


def scene_ids(wildcards):
    """Candidate scene ids of a local catalog, each with a token of its files' presence and size: a new scene,
    or a scene file that was missing or truncated and comes back, re-runs only the glaciers it covers.

    A STAC API is not searched at DAG-build time (thousands of queries); there a new scene needs
    `--forcerun acquire` for the glaciers concerned (see README, incremental runs).
    """
    if is_api(IMAGERY_STAC):
        return "api"
    return _scene_ids(wildcards.glacier, wildcards.epoch)


# Memory and runtime of per-glacier and region-level jobs (glaciermap.resources: fits to measured job
# resources, docs/performance.md): a job for a large glacier asks for more than one for a small glacier,
# a region-level job's runtime grows with the region. The workflow profile sizes the training and
# inference jobs (they depend on the model settings, not the region).
_MARGIN_M = cube_margin_m(config["grid"]["patch_size"], config["grid"]["resolution"])
API_SCENES_ASSUMED = 10  # a STAC API is not searched at DAG-build time: assume the issue's maximum per epoch


@functools.lru_cache(maxsize=None)
def _glacier_size(glacier, epoch):
    """(cube megapixels, candidate scenes) of one glacier and epoch: computed once for all its jobs' resources."""
    g = MAPPED.loc[glacier]
    mpx = cube_megapixels(g["xmin"], g["ymin"], g["xmax"], g["ymax"], _MARGIN_M, config["grid"]["resolution"])
    if is_api(IMAGERY_STAC):
        return mpx, API_SCENES_ASSUMED
    return mpx, len([i for i in _scene_ids(glacier, epoch).split(",") if i])


def glacier_resources(rule, key):
    """Resource callable (mem_mb or runtime) of a per-glacier rule, from the glacier's cube size and scene count."""
    return lambda wildcards, attempt: glacier_job(rule, *_glacier_size(wildcards.glacier, wildcards.epoch), attempt)[key]


def region_resources(rule, key):
    """Resource callable (mem_mb or runtime) of a region-level rule, from the number of mapped glaciers."""
    return lambda wildcards, attempt: region_job(rule, len(GLACIER_IDS), attempt)[key]


def raster_href(kind):
    """Path or URL of the DEM or of an epoch's dh/dt map (resolved from the STAC source if needed)."""

    def href(wildcards):
        return raster_path(config, kind, None if kind == "dem" else wildcards.epoch)  # the DEM: any rule, no epoch

    return href


# ---------------------------------------------------------------------------------------------------- modelling half
# The split must be known when the DAG is built (per-fold jobs name per-glacier files): the frozen file
# is read (and extended in memory) when it exists, else the same deterministic make_split is computed
# here; the `split` rule then writes or extends the frozen file. No checkpoints.
from glaciermap.config import cube_plan, model_registry, raster_path, used_label_sets
from glaciermap.area_change.summary import summary_settings
from glaciermap.segmentation.split import SplitError, make_split, split_for, split_hash

SPLIT_FILE = f"{R}/split/split.csv"
SPLIT_CFG = config["split"]
T0, T1 = config["change"]["from"], config["change"]["to"]
# Glaciers no scene can map at the training epoch (no candidate footprint covers selection.min_valid_fraction
# of the cube) are not split: a fold would train, validate or test on a glacier without an image. Known from a
# local catalog's footprints while the DAG is built (a STAC API is not searched then: its glaciers are all split
# and the image selection skips the uncovered ones later). They still run the data half, so the QC table says why.
UNCOVERED = ([] if is_api(IMAGERY_STAC) or T0 not in EPOCHS else
             [g for g in GLACIER_IDS if _candidates(g, T0)[1] < config["selection"]["min_valid_fraction"]])
if UNCOVERED:
    print(f"glaciermap: {len(UNCOVERED)} glacier(s) left out of the cross-validation split: no scene of epoch {T0} "
          f"covers {config['selection']['min_valid_fraction']:.0%} of their cube ({', '.join(UNCOVERED[:5])}"
          f"{' ...' if len(UNCOVERED) > 5 else ''})", file=sys.stderr)
try:
    if os.path.exists(SPLIT_FILE):
        SPLIT = split_for(_GLACIERS, SPLIT_FILE, SPLIT_CFG["n_folds"], SPLIT_CFG["val_fraction"], write_back=False,
                          added=SPLIT_CFG["added_glaciers"], min_val_glaciers=SPLIT_CFG["min_val_glaciers"],
                          drop_missing=SPLIT_CFG["drop_missing"], uncovered=UNCOVERED)
    else:
        SPLIT = make_split(_GLACIERS, SPLIT_CFG["n_folds"], SPLIT_CFG["val_fraction"], SPLIT_CFG["min_val_glaciers"],
                           uncovered=UNCOVERED)
    SPLIT_ERROR = ""
except SplitError as e:  # the data half still runs; the `split` job fails with this message
    SPLIT, SPLIT_ERROR = None, str(e)
    print(f"glaciermap: no cross-validation split ({e}); the modelling rules cannot run", file=sys.stderr)
SPLIT_HASH = split_hash(SPLIT) if SPLIT is not None else "none"
ROLE_OF = {k: dict(zip(SPLIT["glac_id"], SPLIT[f"role_{k}"])) for k in range(SPLIT_CFG["n_folds"])} if SPLIT is not None else {}
TEST_OF = {k: [g for g in GLACIER_IDS if r.get(g) == "test"] for k, r in ROLE_OF.items()}
VAL_OF = {k: [g for g in GLACIER_IDS if r.get(g) == "val"] for k, r in ROLE_OF.items()}
FOLDS = [k for k in TEST_OF if TEST_OF[k]]  # folds with at least one test glacier
FOLD_OF = {g: k for k in FOLDS for g in TEST_OF[k]}  # glacier -> the fold it is a test glacier of
# Model variants (config `models`): name -> network, training settings and channels. Every model-level rule runs
# per model through the {model} wildcard; outputs live under results/<region>/models/<model>/,
# predictions/<model>/ and area_change/<model>/.
MODELS = model_registry(config)
# Label sets of the K-class models (config `labels`; a binary model's target, `glacier`, needs no file): rule
# `labels` writes results/<region>/labels/<set>/<epoch>/<glacier>.tif.
LABEL_SETS = used_label_sets(config)
AREA_MODELS = list(config["area_change"]["models"])
COMPARE_MODELS = list(config["area_change"]["compare"])
PACK_MEMBERS = bool(config["train"].get("pack_members", False))
TRUTH_DIR = config["evaluation"]["truth_dir"]


wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    labelset="|".join(re.escape(s) for s in LABEL_SETS) or "no-label-set",


# File lists (the file_list rule; glaciermap.data.file_list) are what the fold- and region-level jobs take instead
# of one input per glacier. kind: what is listed (LIST_PATHS); epochs: one epoch or several joined by `+`; group:
# `fold<k>` or `region`; role: the fold's glaciers with that role (train, val, test, train+val) or, for the region,
# every mapped glacier (`all`) or those with the role in any fold; track: `content` (re-made with its files) or
# `membership` (files ancient: re-made only when the glaciers listed change). Glacier-major order, as inventory.
# A list's name ends in a digest of the paths it names, so a list of other glaciers is another file: a job whose
# list gains a glacier misses its input and pulls the list and the glacier's data jobs in, also in the invocation
# that re-runs the inventory (Snakemake 9 does not evaluate jobs that are downstream of a re-running job only
# through ancient() inputs, such as a new glacier's data jobs, unless a job that runs misses their outputs).
LIST_PATHS = {"cubes": f"{R}/cubes/{{g}}/{{e}}.nc", "scenes": f"{R}/scenes/{{g}}/{{e}}.nc",
              "selection": f"{R}/selection/{{g}}/{{e}}.csv",
              **{f"labels/{s}": f"{R}/labels/{s}/{{e}}/{{g}}.tif" for s in LABEL_SETS}}
_EPOCH_RE = "(?:" + "|".join(re.escape(e) for e in EPOCHS) + ")"
LIST_EPOCHS = rf"{_EPOCH_RE}(?:\+{_EPOCH_RE})*"


def group_glaciers(group, role):
    """The glaciers of a list's group with ``role`` (``+``-joined roles: any of them), in inventory order.

    Region lists: ``all`` is every mapped glacier (the data half's); ``test`` every glacier of the split (each is a
    test glacier of one fold), which the rules that pair cubes with test predictions take: a glacier left out of the
    split (no scene covers its cube, UNCOVERED) has no prediction, and the qc tables say why."""
    if group == "region":
        if role == "all":
            return list(GLACIER_IDS)
        wanted = role.split("+")
        return [g for g in GLACIER_IDS if any(r.get(g) in wanted for r in ROLE_OF.values())]
    if role == "all":
        raise ValueError(f"file list: role 'all' is the region's (group 'region'), not {group}'s")
    roles = ROLE_OF[int(group.removeprefix("fold"))]
    wanted = role.split("+")
    return [g for g in GLACIER_IDS if roles.get(g) in wanted]


@functools.lru_cache(maxsize=None)
def list_members(kind, epochs, group, role):
    """(the paths a list names, the 12-hex digest of them that ends its file name)."""
    if kind not in LIST_PATHS:
        raise ValueError(f"file list of {kind!r}: no such kind ({', '.join(LIST_PATHS)}); a label set must be one a "
                         "model learns (models.<name>.labels)")
    pattern = LIST_PATHS[kind]
    paths = tuple(pattern.format(g=g, e=e) for g in group_glaciers(group, role) for e in epochs.split("+"))
    return paths, hashlib.sha1("\n".join(paths).encode()).hexdigest()[:12]


def listed_files(wildcards):
    """Input function of the file_list rule. The files of its list; ancient() for a membership list."""
    paths, digest = list_members(wildcards.kind, wildcards.epochs, wildcards.group, wildcards.role)
    if wildcards.digest != digest:
        raise ValueError(f"file list {wildcards.group}_{wildcards.role}.{wildcards.track}.{wildcards.digest}: not the "
                         f"list of the current glaciers (digest {digest}); ask for the target that reads it instead")
    return [ancient(p) for p in paths] if wildcards.track == "membership" else list(paths)


def file_lists(kind, role, epochs=None, track="content", every_fold=False, region=False):
    """Input function: the file list of the job's fold (``every_fold``: of every fold, in fold order; ``region``:
    the region's) of ``kind`` (a LIST_PATHS key, or ``labels``: the label rasters of the model's label set, no
    list for a binary model) for the glaciers with ``role`` at ``epochs`` (default t0; ``"{epoch}"``: the job's
    epoch wildcard; a list: those epochs, glacier-major). ``track``: ``membership`` for training inputs (a re-made
    file, e.g. after a new scene, does not retrain), else ``content``."""

    def lists(wildcards):
        if kind == "labels":
            labelset = MODELS[wildcards.model]["labels"]
            if labelset not in LABEL_SETS:
                return []
            what = f"labels/{labelset}"
        else:
            what = kind
        if epochs == "{epoch}":
            when = wildcards.epoch
        else:
            when = "+".join(epochs) if isinstance(epochs, (list, tuple)) else (epochs or T0)
        if region:
            groups = ["region"]
        else:
            groups = [f"fold{k}" for k in FOLDS] if every_fold else [f"fold{int(wildcards.fold)}"]
        return [f"{R}/lists/{what}/{when}/{g}_{role}.{track}.{list_members(what, when, g, role)[1]}.txt"
                for g in groups]

    return lists


def label_definition(model):
    """The definition record of a model's label set (rule label_set); none for a binary model."""
    labelset = MODELS[model]["labels"]
    return [f"{R}/labels/{labelset}/definition.json"] if labelset in LABEL_SETS else []


def training_store(wildcards):
    """Input function: the model's training store (models.<name>.training_data: store), ancient like the cubes it
    holds; none when the model reads its cubes."""
    if MODELS[wildcards.model]["training_data"] != "store":
        return []
    return [ancient(f"{R}/segmentation/{wildcards.model}/training_store.h5")]


def model_settings(wildcards):
    """The training settings of a model (its `models` entry over `model` and `train`): the training jobs' param.
    ``training_data`` is left out at its default (cubes), so that runs made before the key existed do not retrain."""
    m = MODELS[wildcards.model]
    return canonical({k: v for k, v in m.items() if not (k == "training_data" and v == "cubes")})


def member_ids(model):
    return list(range(MODELS[model]["members"]))


def fold_roles_hash(wildcards):
    """Training and validation glaciers of one fold: its training jobs re-run when (and only when) those change.

    Test glaciers are left out on purpose: a glacier added later (split.added_glaciers: test_only) becomes a
    test glacier of one fold and must not retrain it (README "Incremental runs").
    """
    import hashlib

    roles = ROLE_OF[int(wildcards.fold)]
    return hashlib.sha1("".join(f"{g}:{roles[g]};" for g in sorted(roles) if roles[g] in ("train", "val"))
                        .encode()).hexdigest()[:16]


def prediction_dirs(model, epochs, folds=None):
    """Prediction folders (one per fold and epoch: <glacier>.nc of its test glaciers, val/<glacier>.nc at t0)."""
    return [f"{R}/predictions/{model}/fold{k}/{e}" for k in (FOLDS if folds is None else folds) for e in epochs]


def calibrations(model):
    return [f"{R}/models/{model}/fold{k}/calibration.json" for k in FOLDS]


def val_ids(wildcards):
    return VAL_OF[int(wildcards.fold)]


# A one-epoch region (a single entry in `epochs`): mapping, calibration, areas, outlines and figures, no change
# (no rates, no truth comparison of rates, no Table 7); summary.json says so.
ONE_EPOCH = T0 == T1


def debris_summary_inputs(wildcards):
    """Optional inputs of a debris model's summary: its random split, importance and the threshold baseline."""
    d = {}
    if wildcards.model in config["random_split"]["models"]:
        d["random_split"] = f"{R}/segmentation/{wildcards.model}/random_split.json"
    if wildcards.model in config["importance"]["models"]:
        d["importance"] = f"{R}/segmentation/{wildcards.model}/importance.json"
    if config["debris"]["label_set"] and config["debris"]["label_set"] == MODELS[wildcards.model]["labels"]:
        d["thresholds"] = f"{R}/debris/thresholds/metrics.json"
    return d


def summary_inputs(wildcards):
    """Optional inputs of a model's summary: rates, the baseline, the truth comparison and Table 7 when there are."""
    d = {}
    if config["baseline"]["enabled"]:
        d["baseline"] = f"{R}/area_change/baseline/band_ratio.json"
    if not ONE_EPOCH:
        d["totals"] = f"{R}/area_change/{wildcards.model}/rates/regional.json"
        d["comparison"] = f"{R}/area_change/method_comparison.json"
        if TRUTH_DIR:
            d["evaluation"] = f"{R}/area_change/{wildcards.model}/evaluation/truth.json"
    if config["debris"]["models"]:   # the debris method's headline numbers (its first model), as `debris`
        d["debris"] = f"{R}/debris/{config['debris']['models'][0]}/summary.json"
    if config["facies"]["points"]:   # the facies method's headline numbers, as `facies`
        d["facies"] = f"{R}/facies/summary.json"
    if config["timeseries"]["sources"]:   # the time series' headline numbers, as `timeseries`
        d["timeseries"] = f"{R}/timeseries/{config['timeseries']['model']['name']}/summary.json"
    return d


def facies_summary_inputs(wildcards):
    """Optional inputs of the facies summary: the SMB regression and the outline issues when they run."""
    d = {}
    if FACIES_SMB:
        d["smb"] = f"{FR}/smb.json"
    if OUTLINE_ISSUES_MODELS:
        d["outline"] = f"{R}/segmentation/{OUTLINE_ISSUES_MODELS[0]}/outline_issues.json"
    return d


# Targets of the modelling half for the default target (without a split only the failing, explaining split job).
MODEL_TARGETS = [f"{R}/area_change/{m}/{f}" for m in AREA_MODELS
                 for f in ("summary.json", "outlines/predicted_outlines.gpkg", "figures/reliability.png")
                 + (() if ONE_EPOCH else ("rates/glacier_rates.gpkg",))] if FOLDS else [f"{R}/split/folds.csv"]
MODEL_TARGETS += [f"{R}/area_change/method_comparison.csv"] if FOLDS and not ONE_EPOCH and COMPARE_MODELS else []
# the shared segmentation core's scores of every model: per-class metrics and confusion matrices (rule confusion)
MODEL_TARGETS += [f"{R}/segmentation/{m}/metrics.json" for m in MODELS] if FOLDS else []
# permutation importance of the models named in `importance.models`
MODEL_TARGETS += [f"{R}/segmentation/{m}/importance.json" for m in config["importance"]["models"]] if FOLDS else []
# CryoNet's random tile split of the models named in `random_split.models` (its inflation over the geographic CV)
MODEL_TARGETS += [f"{R}/segmentation/{m}/random_split.json" for m in config["random_split"]["models"]] if FOLDS else []
# the debris-covered glacier method: cover per glacier and the method's summary of each model in `debris.models`
DEBRIS_MODELS = list(config["debris"]["models"])
MODEL_TARGETS += [f"{R}/debris/{m}/{f}" for m in DEBRIS_MODELS for f in ("summary.json", "cover.gpkg")] if FOLDS else []
MODEL_TARGETS += [f"{R}/debris/thresholds/metrics.json"] if FOLDS and config["debris"]["label_set"] else []

# The layers every cube holds and the registry sources of its raster channels (glaciermap.config.cube_plan)
CUBE_LAYERS, CHANNEL_SOURCES = cube_plan(config)
DEBRIS_MAP = config["evaluation"]["debris_map"]
CHANGE_EPOCHS = [T0] if ONE_EPOCH else [T0, T1]


from glaciermap.area_change.compare import truth_outline_files

TRUTH_OUTLINES = truth_outline_files(TRUTH_DIR, str(T1))


def compare_inputs(wildcards):
    """Inputs of the method comparison: every compared model's test predictions at t0 and t1 and its calibration,
    the cubes, the baseline and the debris map."""
    d = {
        "cubes": file_lists("cubes", "test", epochs=CHANGE_EPOCHS, region=True)(wildcards),
        "folds": f"{R}/split/folds.csv",
    }
    for m in COMPARE_MODELS:
        d[f"preds_{m}"] = prediction_dirs(m, CHANGE_EPOCHS)
        d[f"calibration_{m}"] = calibrations(m)
    if config["baseline"]["enabled"]:
        d["baseline"] = f"{R}/area_change/baseline/band_ratio.json"
        d["baseline_areas"] = f"{R}/area_change/baseline/band_ratio_areas.csv"
    if DEBRIS_MAP:
        d["debris"] = DEBRIS_MAP
    if TRUTH_OUTLINES:  # planted truth outlines at t0 and t1 (synthetic regions): the lost-ice column
        d["truth_outlines"] = TRUTH_OUTLINES
    return d


# ---------------------------------------------------------------------------------------------------- time series
# The glacier area time series (seed 004, GlacierView, with DL4GAM's calibrated uncertainty): every usable acquisition
# per glacier -> a U-Net ensemble per fold of the shared split -> its calibration -> maps of every acquisition ->
# smoothing in days, annual areas, bounds and outlines -> log-linear trends -> summary. Outputs under
# results/<region>/timeseries/ (acquisitions, model-independent) and timeseries/<model name>/; off when
# timeseries.sources is empty. The settings and helpers the rules in workflow/rules/timeseries/ share.
from glaciermap.timeseries.acquisitions import candidate_tokens

TS = config["timeseries"]
TS_ON = bool(TS["sources"]) and bool(FOLDS)
TS_SOURCES = {n: source_configs(config)[n] for n in TS["sources"]} if TS["sources"] else {}
TS_NAME = TS["model"]["name"]
TSA = f"{R}/timeseries/acquisitions"
TSR = f"{R}/timeseries/{TS_NAME}"
TS_TRUTH = TS["truth"] if TS_ON and TS["truth"] and os.path.exists(TS["truth"]) else None
# what an acquisition job uses (a param: changing one re-runs the acquisitions, and through them everything after)
TS_ACQ = canonical({k: TS[k] for k in ("years", "season", "max_scene_cloud", "min_valid_share", "resolution", "domain_m",
                                       "bands")})
TS_MODEL = canonical({**TS["model"], "channels": list(TS["model"]["channels"])})


@functools.lru_cache(maxsize=None)
def _ts_tokens(glacier):
    g = MAPPED.loc[glacier]
    return ",".join(candidate_tokens(g, TS_SOURCES, TS_ACQ, g["crs"]))


def ts_scene_ids(wildcards):
    """The candidate scenes of one glacier's series, each with a token of its files (a local catalog; a STAC API is
    not searched while the DAG is built: there a new scene needs `--forcerun ts_acquisitions`)."""
    if any(is_api(((c.get("stac") or {}).get("source") or "")) for c in TS_SOURCES.values()):
        return "api"
    return _ts_tokens(wildcards.glacier)


def ts_stacks(role, protect=False):
    """Input function: the acquisition stacks of a fold's glaciers with ``role`` (train, val, test; "+" joins)."""

    def files(wildcards):
        roles = ROLE_OF[int(wildcards.fold)]
        want = role.split("+")
        paths = [f"{TSA}/{g}.nc" for g in GLACIER_IDS if roles.get(g) in want]
        return [ancient(p) for p in paths] if protect else paths

    return files


def ts_glaciers(role):
    return lambda wildcards: [g for g in GLACIER_IDS if ROLE_OF[int(wildcards.fold)].get(g) in role.split("+")]


if TS_ON:
    MODEL_TARGETS += [f"{TSR}/summary.json", f"{TSR}/annual_outlines.gpkg"]


def ts_summary_inputs(wildcards):
    """Optional inputs: DL4GAM's Sentinel-2 areas and regional rate (its first area model) and the demo's truth."""
    d = {}
    if AREA_MODELS and TS["compare_dl4gam"]:
        d["s2_areas"] = f"{R}/area_change/{AREA_MODELS[0]}/areas/glacier_areas.csv"
        if not ONE_EPOCH:
            d["dl4gam_regional"] = f"{R}/area_change/{AREA_MODELS[0]}/rates/regional.json"
    if TS_TRUTH:
        d["truth"] = TS_TRUTH
    return d
