# Permutation importance of a model's input layers and layer groups on its test glaciers (config `importance`).
rule importance:
    """Drop in accuracy, mean IoU and per-class IoU when a layer or a group of layers is permuted (test glaciers, t0)."""
    input:
        ensembles=lambda w: [f"{R}/models/{w.model}/fold{k}/ensemble.json" for k in FOLDS],
        norms=lambda w: [f"{R}/models/{w.model}/fold{k}/normalisation.json" for k in FOLDS],
        calibrations=lambda w: calibrations(w.model),
        cubes=file_lists("cubes", "test", every_fold=True),
        labels=file_lists("labels", "test", every_fold=True),
    output:
        csv=f"{R}/segmentation/{{model}}/importance.csv",
        summary=f"{R}/segmentation/{{model}}/importance_summary.csv",
        json=f"{R}/segmentation/{{model}}/importance.json",
        figure=f"{R}/segmentation/{{model}}/importance.png",
    params:
        fold_of=lambda w: {g: k for k in FOLDS for g in TEST_OF[k]},
        groups=canonical(config["importance"]["groups"]),
        classes=lambda w: MODELS[w.model]["classes"],
        # the section's settings, with the model's own overrides (importance.overrides.<model>) on top
        settings=lambda w: canonical({**{k: v for k, v in config["importance"].items()
                                         if k not in ("models", "groups", "overrides")},
                                      **config["importance"]["overrides"].get(w.model, {})}),
        patch_size=lambda w: MODELS[w.model]["patch_size"],
    threads: 2
    resources:
        mem_mb=region_resources("importance", "mem_mb"),
        runtime=region_resources("importance", "runtime"),
    log:
        f"{R}/logs/importance/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/importance/{{model}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/importance.py"
