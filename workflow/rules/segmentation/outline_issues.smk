# Confident learning on the inventory outlines: cleanlab on a binary model's out-of-fold calibrated probabilities
# (every glacier is predicted by the fold that held it out) against the inventory masks of the t0 cubes.
OUTLINE_ISSUES = config["outline_issues"]
OUTLINE_ISSUES_MODELS = list(OUTLINE_ISSUES["models"]) if FOLDS else []
OUTLINE_TRUTH = OUTLINE_ISSUES["truth"] if OUTLINE_ISSUES["truth"] and os.path.exists(OUTLINE_ISSUES["truth"]) else None
MODEL_TARGETS += [f"{R}/segmentation/{m}/outline_issues.gpkg" for m in OUTLINE_ISSUES_MODELS]


rule outline_issues:
    """Per glacier: outline label quality, suspected missing and false ice (km2), and the suspect areas (GeoPackage)."""
    input:
        preds=lambda w: prediction_dirs(w.model, [T0]),
        calibrations=lambda w: calibrations(w.model),
        cubes=file_lists("cubes", "test", every_fold=True),
        truth=OUTLINE_TRUTH or [],
    output:
        csv=f"{R}/segmentation/{{model}}/outline_issues.csv",
        gpkg=f"{R}/segmentation/{{model}}/outline_issues.gpkg",
        json=f"{R}/segmentation/{{model}}/outline_issues.json",
    params:
        fold_of=canonical(FOLD_OF),
        settings=canonical({k: v for k, v in OUTLINE_ISSUES.items() if k not in ("models", "truth")}),
    resources:
        mem_mb=region_resources("outline_issues", "mem_mb"),
        runtime=region_resources("outline_issues", "runtime"),
    log:
        f"{R}/logs/outline_issues/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/outline_issues/{{model}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/outline_issues.py"
