rule samples:
    """patch_size x patch_size stacks (bands, terrain, outline distance) around every point; each scene read once."""
    input:
        points=f"{FR}/points.gpkg",
        inventory=f"{R}/inventory/glaciers.gpkg",
    output:
        nc=f"{FR}/samples.nc",
        rejected=f"{FR}/samples_rejected.csv",
        glaciers=f"{FR}/glacier_stats.csv",
    params:
        dem=raster_href("dem"),
        source=FACIES_SOURCE,
        source_cfg=canonical(FACIES_SOURCE_CFG),
        classes=FACIES["classes"],
        bands=FACIES["bands"],
        channels=FACIES_CHANNELS,
        patch_size=FACIES["patch_size"],
        resolution=FACIES["resolution"],
    resources:
        mem_mb=region_resources("samples", "mem_mb"),
        runtime=region_resources("samples", "runtime"),
    log:
        f"{R}/logs/samples/samples.log",
    benchmark:
        f"{R}/benchmarks/samples/samples.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/facies/samples.py"
