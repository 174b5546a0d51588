rule areas:
    """Calibrated area and bounds of every test glacier and epoch by one model; metrics at t0 (Tables 4 and 5)."""
    input:
        preds=lambda w: prediction_dirs(w.model, EPOCHS),
        cubes=file_lists("cubes", "test", epochs=EPOCHS, region=True),
        calibration=lambda w: calibrations(w.model),
        manifest=f"{R}/inventory/manifest.csv",
        folds=f"{R}/split/folds.csv",
    output:
        glaciers=f"{R}/area_change/{{model}}/areas/glacier_areas.csv",
        segmentation=report(f"{R}/area_change/{{model}}/areas/segmentation_by_fold.csv", caption="../../report/segmentation_by_fold.rst",
                            category="Tables"),
        size_classes=report(f"{R}/area_change/{{model}}/areas/area_by_size_class.csv", caption="../../report/area_by_size_class.rst",
                            category="Tables"),
        folds=f"{R}/area_change/{{model}}/areas/area_by_fold.csv",
    params:
        split=SPLIT_FILE,
        period=[T0, T1],
    resources:
        mem_mb=region_resources("areas", "mem_mb"),
        runtime=region_resources("areas", "runtime"),
    log:
        f"{R}/logs/areas/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/areas/{{model}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/area_change/areas.py"
