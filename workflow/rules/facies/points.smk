# The glacier facies method (seed 002, Maslov et al.): labelled points -> samples -> point CNN per glacier fold
# (round raw) -> confident learning (cleanlab) -> retrained CNN (round clean) -> calibrated confidence -> facies maps
# per year -> mass-balance regression -> summary. Everything under results/<region>/facies/; off when facies.points
# is null. The shared settings and helpers of the method's rules are here (the first facies rule file).
from glaciermap.facies.points import feature_channels

FACIES = config["facies"]
FACIES_ON = bool(FACIES["points"])
FR = f"{R}/facies"
FACIES_FOLDS = list(range(FACIES["folds"]))
FACIES_ROUNDS = ["raw", "clean"]
FACIES_CHANNELS = feature_channels(FACIES["bands"], FACIES["feature_set"])
FACIES_SOURCE = FACIES["source"]
FACIES_SOURCE_CFG = source_configs(config).get(FACIES_SOURCE)
FACIES_YEARS = [int(y) for y in FACIES["maps"]["years"]] if FACIES_ON else []
FACIES_SMB = bool(FACIES_ON and FACIES["smb"]["path"] and FACIES_YEARS)
FACIES_TRUTH = FACIES["truth"] if FACIES_ON and FACIES["truth"] and os.path.exists(FACIES["truth"]) else None


wildcard_constraints:
    round="raw|clean",
    facies_fold=r"\d+",
    year=r"\d{4}",


if FACIES_ON:
    MODEL_TARGETS += [f"{FR}/summary.json"]


rule points:
    """Validate the labelled facies points (bad rows reported by name and dropped), assign glaciers and folds."""
    input:
        points=FACIES["points"]["path"] if FACIES_ON else [],
        inventory=f"{R}/inventory/glaciers.gpkg",
    output:
        gpkg=f"{FR}/points.gpkg",
        rejected=f"{FR}/points_rejected.csv",
        json=f"{FR}/points.json",
    params:
        spec=canonical(FACIES["points"]),
        source=FACIES_SOURCE,
        source_cfg=canonical(FACIES_SOURCE_CFG),
        classes=FACIES["classes"],
        channels=FACIES_CHANNELS,
        folds=FACIES["folds"],
        seed=FACIES["seed"],
        resolution=FACIES["resolution"],
    resources:
        mem_mb=region_resources("points", "mem_mb"),
        runtime=region_resources("points", "runtime"),
    log:
        f"{R}/logs/points/points.log",
    benchmark:
        f"{R}/benchmarks/points/points.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/facies/points.py"
