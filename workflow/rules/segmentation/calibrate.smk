rule calibrate:
    """Per-member temperatures, ECE and the glacier-specific tau model of one model and fold (validation glaciers at t0)."""
    input:
        preds=f"{R}/predictions/{{model}}/fold{{fold}}/{T0}",
        cubes=file_lists("cubes", "val"),
        # ancient: a new glacier elsewhere re-makes the manifest; its validation glaciers' rows do not change
        manifest=ancient(f"{R}/inventory/manifest.csv"),
        # a K-class model's validation labels (none for a binary model)
        labels=file_lists("labels", "val"),
    output:
        f"{R}/models/{{model}}/fold{{fold}}/calibration.json",
    params:
        glaciers=val_ids,
        settings=config["calibration"],
    resources:
        mem_mb=region_resources("calibrate", "mem_mb"),
        runtime=region_resources("calibrate", "runtime"),
    log:
        f"{R}/logs/calibrate/{{model}}/fold{{fold}}.log",
    benchmark:
        f"{R}/benchmarks/calibrate/{{model}}/fold{{fold}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/calibrate.py"
