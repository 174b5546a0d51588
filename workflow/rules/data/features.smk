rule features:
    """Build the feature cube of one glacier and epoch: the layers the configured models need (channel registry), masks."""
    input:
        scenes=f"{R}/scenes/{{glacier}}/{{epoch}}.nc",
        selection=f"{R}/selection/{{glacier}}/{{epoch}}.csv",
        inventory=ancient(f"{R}/inventory/glaciers.gpkg"),
    output:
        f"{R}/cubes/{{glacier}}/{{epoch}}.nc",
    params:
        fingerprint=fingerprint,
        dem=raster_href("dem"),
        dhdt=raster_href("dhdt"),
        settings=canonical(config["features"]),
        layers=CUBE_LAYERS,
        sources=canonical(CHANNEL_SOURCES),
    resources:
        mem_mb=glacier_resources("features", "mem_mb"),
        runtime=glacier_resources("features", "runtime"),
    log:
        f"{R}/logs/features/{{glacier}}/{{epoch}}.log",
    benchmark:
        f"{R}/benchmarks/features/{{glacier}}/{{epoch}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/data/features.py"
