# Shared set-up: validated config, the parse-time glacier list, and path helpers.
import functools
import hashlib
import re

from glaciermap.acquire import candidate_ids
from glaciermap.config import validate_config
from glaciermap.inventory import glacier_list
from glaciermap.stac import is_api, resolve_raster

config.update(validate_config(config))

R = f"{config['results_dir']}/{config['region']}"
EPOCHS = list(config["epochs"])
CONDA_ENV = "../../envs/glaciermap.yaml"

# The glacier list is read from the inventory when the DAG is built (ids, status, bounds and a
# content fingerprint per outline); per-glacier jobs depend on that fingerprint, not on the shared
# file's mtime, so editing or adding one glacier re-runs that glacier only.
_GLACIERS = glacier_list(config)
MAPPED = _GLACIERS[_GLACIERS["qc_status"] == "ok"].set_index("glac_id", drop=False)
GLACIER_IDS = list(MAPPED.index)
# One hash over every row: any change to the inventory's content re-runs the `inventory` rule.
INVENTORY_HASH = hashlib.sha1(
    "".join(_GLACIERS["glac_id"] + _GLACIERS["fingerprint"] + _GLACIERS["qc_status"]).encode()
).hexdigest()[:16]


wildcard_constraints:
    glacier=r"[A-Za-z0-9_.-]+",
    epoch="|".join(re.escape(e) for e in EPOCHS),


def fingerprint(wildcards):
    return MAPPED.loc[wildcards.glacier, "fingerprint"]


@functools.lru_cache(maxsize=None)
def _scene_ids(glacier, epoch):
    return ",".join(candidate_ids(MAPPED.loc[glacier], config, epoch))


def scene_ids(wildcards):
    """Candidate scene ids of a local catalog: a new scene re-runs only the glaciers it covers.

    A STAC API is not searched at DAG-build time (thousands of queries); there a new scene needs
    `--forcerun acquire` for the glaciers concerned (see README, incremental runs).
    """
    if is_api(config["stac"]["source"]):
        return "api"
    return _scene_ids(wildcards.glacier, wildcards.epoch)


def per_glacier(pattern):
    """Every (glacier, epoch) instance of a per-glacier output pattern, in manifest order."""
    return [pattern.format(glacier=g, epoch=e) for g in GLACIER_IDS for e in EPOCHS]


def raster_href(kind):
    """Path or URL of the DEM or of an epoch's dh/dt map (resolved from the STAC source if needed)."""

    def href(wildcards):
        if kind == "dem":
            spec = config["dem"]
        else:
            spec = config["dhdt"][config["epochs"][wildcards.epoch]["dhdt"]]
        return resolve_raster(spec, config["stac"]["source"])

    return href
