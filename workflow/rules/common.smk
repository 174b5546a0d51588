# Shared set-up: validated config, the parse-time glacier list, and path helpers.
import re

from glaciermap.config import validate_config
from glaciermap.inventory import glacier_list
from glaciermap.stac import resolve_raster

config.update(validate_config(config))

R = f"{config['results_dir']}/{config['region']}"
EPOCHS = list(config["epochs"])
CONDA_ENV = "../../envs/glaciermap.yaml"

# The glacier list is read from the inventory when the DAG is built (ids, status and a content
# fingerprint per outline); per-glacier jobs depend on that fingerprint, not on the file's mtime,
# so editing or adding one glacier re-runs that glacier only.
_GLACIERS = glacier_list(config)
MAPPED = _GLACIERS[_GLACIERS["qc_status"] == "ok"].set_index("glac_id")
GLACIER_IDS = list(MAPPED.index)


wildcard_constraints:
    glacier=r"[A-Za-z0-9_.-]+",
    epoch="|".join(re.escape(e) for e in EPOCHS),


def fingerprint(wildcards):
    return MAPPED.loc[wildcards.glacier, "fingerprint"]


def per_glacier(pattern):
    """Every (glacier, epoch) instance of a per-glacier output pattern, in manifest order."""
    return [pattern.format(glacier=g, epoch=e) for g in GLACIER_IDS for e in EPOCHS]
