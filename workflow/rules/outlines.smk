rule outlines:
    """Predicted outlines: calibrated ensemble mean >= 0.5 within glacier + 20 m, specks removed, polygonised (GeoPackage)."""
    input:
        preds=per_glacier(f"{R}/predictions/{{glacier}}/{{epoch}}.nc"),
        cubes=per_glacier(f"{R}/cubes/{{glacier}}/{{epoch}}.nc"),
        calibration=[f"{R}/models/fold{k}/calibration.json" for k in FOLDS],
        areas=f"{R}/areas/glacier_areas.csv",
    output:
        f"{R}/outlines/predicted_outlines.gpkg",
    params:
        settings=config["outlines"],
    resources:
        mem_mb=region_resources("outlines", "mem_mb"),
        runtime=region_resources("outlines", "runtime"),
    log:
        f"{R}/logs/outlines.log",
    benchmark:
        f"{R}/benchmarks/outlines.tsv",
    conda:
        CONDA_ENV
    script:
        "../scripts/outlines.py"
