rule cube:
    """Rank the candidate scenes of one glacier and epoch (DL4GAM image selection), choose the best, and build its
    feature cube: the layers the configured models need (channel registry) and the masks."""
    input:
        scenes=f"{R}/scenes/{{glacier}}/{{epoch}}.nc",
        inventory=ancient(f"{R}/inventory/glaciers.gpkg"),
    output:
        selection=f"{R}/selection/{{glacier}}/{{epoch}}.csv",
        cube=f"{R}/cubes/{{glacier}}/{{epoch}}.nc",
    params:
        fingerprint=fingerprint,
        selection=canonical(config["selection"]),
        dem=raster_href("dem"),
        dhdt=raster_href("dhdt"),
        settings=canonical(config["features"]),
        layers=CUBE_LAYERS,
        sources=canonical(CHANNEL_SOURCES),
    resources:
        mem_mb=glacier_resources("cube", "mem_mb"),
        runtime=glacier_resources("cube", "runtime"),
    log:
        f"{R}/logs/cube/{{glacier}}/{{epoch}}.log",
    benchmark:
        f"{R}/benchmarks/cube/{{glacier}}/{{epoch}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/data/cube.py"
