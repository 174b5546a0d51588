rule areas:
    """Calibrated area and bounds of every test glacier and epoch; metrics at t0 (Tables 4 and 5)."""
    input:
        preds=per_glacier(f"{R}/predictions/{{glacier}}/{{epoch}}.nc"),
        cubes=per_glacier(f"{R}/cubes/{{glacier}}/{{epoch}}.nc"),
        calibration=[f"{R}/models/fold{k}/calibration.json" for k in FOLDS],
        manifest=f"{R}/inventory/manifest.csv",
        folds=f"{R}/split/folds.csv",
    output:
        glaciers=f"{R}/areas/glacier_areas.csv",
        segmentation=report(f"{R}/areas/segmentation_by_fold.csv", caption="../report/segmentation_by_fold.rst",
                            category="Tables"),
        size_classes=report(f"{R}/areas/area_by_size_class.csv", caption="../report/area_by_size_class.rst",
                            category="Tables"),
        folds=f"{R}/areas/area_by_fold.csv",
    params:
        split=SPLIT_FILE,
        period=[T0, T1],
    resources:
        mem_mb=region_resources("areas", "mem_mb"),
        runtime=region_resources("areas", "runtime"),
    log:
        f"{R}/logs/areas.log",
    benchmark:
        f"{R}/benchmarks/areas.tsv",
    conda:
        CONDA_ENV
    script:
        "../scripts/areas.py"
