rule facies_maps:
    """Facies maps with calibrated confidence of every glacier on every scene near the reference day of one year
    (clean round models), and per glacier and scene the snow-cover ratio, snowline and albedo."""
    input:
        models=expand(f"{FR}/clean/fold{{k}}/model.pt", k=FACIES_FOLDS),
        curves=f"{FR}/clean/calibration_curves.csv",
        points=f"{FR}/points.gpkg",
        glaciers=f"{FR}/glacier_stats.csv",
        inventory=f"{R}/inventory/glaciers.gpkg",
    output:
        maps=directory(f"{FR}/maps/{{year}}"),
        csv=f"{FR}/maps/{{year}}.csv",
    params:
        year=lambda w: int(w.year),
        dem=raster_href("dem"),
        source=FACIES_SOURCE,
        source_cfg=canonical(FACIES_SOURCE_CFG),
        settings=canonical({**FACIES["maps"], "classes": FACIES["classes"], "channels": FACIES_CHANNELS,
                            "bands": FACIES["bands"], "resolution": FACIES["resolution"],
                            "patch_size": FACIES["patch_size"], "snow_class": FACIES["snow_class"],
                            "surface_classes": FACIES["surface_classes"], "threads": FACIES["model"]["threads"]}),
    threads: FACIES["model"]["threads"]
    resources:
        mem_mb=region_resources("facies_maps", "mem_mb"),
        runtime=region_resources("facies_maps", "runtime"),
    log:
        f"{R}/logs/facies_maps/{{year}}.log",
    benchmark:
        f"{R}/benchmarks/facies_maps/{{year}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/facies/facies_maps.py"
