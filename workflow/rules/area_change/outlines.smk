rule outlines:
    """Predicted outlines: calibrated ensemble mean >= 0.5 within glacier + 20 m, specks removed, polygonised (GeoPackage)."""
    input:
        preds=lambda w: prediction_dirs(w.model, EPOCHS),
        cubes=file_lists("cubes", "test", epochs=EPOCHS, region=True),
        calibration=lambda w: calibrations(w.model),
        areas=f"{R}/area_change/{{model}}/areas/glacier_areas.csv",
    output:
        f"{R}/area_change/{{model}}/outlines/predicted_outlines.gpkg",
    params:
        settings=config["outlines"],
    resources:
        mem_mb=region_resources("outlines", "mem_mb"),
        runtime=region_resources("outlines", "runtime"),
    log:
        f"{R}/logs/outlines/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/outlines/{{model}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/area_change/outlines.py"
