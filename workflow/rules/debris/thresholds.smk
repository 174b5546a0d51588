# The fixed-threshold baseline of the multi-class debris mapping (CryoNet: "the same metrics for a fixed-threshold
# baseline"): every test glacier's t0 cube painted by the class rules of config `debris.thresholds` (NDSI, NDWI,
# NDVI, slope and velocity thresholds on cube layers only, first matching rule wins, the rest background) and
# scored as rule `confusion` scores the models: same glaciers, folds, pixels and metrics. The models of
# `debris.models` are compared (pixel counts in metrics.json, one figure each), so their scores come first.
from glaciermap.debris.thresholds import default_rules
from glaciermap.segmentation.labels import labelset_classes

THRESHOLDS_CFG = config.get("debris") or {}
THRESHOLDS_LABEL_SET = THRESHOLDS_CFG.get("label_set")
THRESHOLDS_MODELS = list(THRESHOLDS_CFG.get("models") or [])


rule thresholds:
    """Per-class IoU, precision, recall, F1 and confusion matrices of the threshold baseline (test glaciers, t0)."""
    input:
        cubes=file_lists("cubes", "test", every_fold=True),
        labels=file_lists(f"labels/{THRESHOLDS_LABEL_SET}", "test", every_fold=True),
        # the compared models' scores (rule confusion): pixel counts side by side, the figures
        model_metrics=[f"{R}/segmentation/{m}/metrics.json" for m in THRESHOLDS_MODELS],
        model_confusion=[f"{R}/segmentation/{m}/confusion.csv" for m in THRESHOLDS_MODELS],
    output:
        confusion=f"{R}/debris/thresholds/confusion.csv",
        metrics=f"{R}/debris/thresholds/metrics.csv",
        json=f"{R}/debris/thresholds/metrics.json",
        figures=[f"{R}/debris/thresholds/vs_{m}.png" for m in THRESHOLDS_MODELS],
    params:
        rules=canonical(default_rules(THRESHOLDS_CFG.get("thresholds"))),
        classes=lambda w: labelset_classes(config["labels"][THRESHOLDS_LABEL_SET]),
        fold_of=canonical(FOLD_OF),
    resources:
        mem_mb=region_resources("thresholds", "mem_mb"),
        runtime=region_resources("thresholds", "runtime"),
    log:
        f"{R}/logs/thresholds/thresholds.log",
    benchmark:
        f"{R}/benchmarks/thresholds/thresholds.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/debris/thresholds.py"
