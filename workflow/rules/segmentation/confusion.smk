# The shared segmentation core's scores: per-class metrics and confusion matrices of every model (binary models
# as background/glacier) on its test glaciers at t0, calibrated with each fold's temperatures.
rule confusion:
    """Per-class IoU, precision, recall, F1, confusion matrices and top-label ECE of one model (test glaciers, t0)."""
    input:
        preds=lambda w: prediction_dirs(w.model, [T0]),
        calibrations=lambda w: calibrations(w.model),
        cubes=file_lists("cubes", "test", every_fold=True),
        # K-class models: the label rasters (binary models: the cubes' outlines)
        labels=file_lists("labels", "test", every_fold=True),
    output:
        confusion=f"{R}/segmentation/{{model}}/confusion.csv",
        metrics=f"{R}/segmentation/{{model}}/metrics.csv",
        json=f"{R}/segmentation/{{model}}/metrics.json",
    params:
        classes=lambda w: MODELS[w.model]["classes"],
        ece_bins=config["calibration"]["ece_bins"],
    resources:
        mem_mb=region_resources("confusion", "mem_mb"),
        runtime=region_resources("confusion", "runtime"),
    log:
        f"{R}/logs/confusion/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/confusion/{{model}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/confusion.py"
