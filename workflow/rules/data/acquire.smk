rule acquire:
    """Search the STAC source and clip every candidate scene of one glacier and epoch to its cube grid."""
    input:
        # ancient: the shared inventory's mtime must not re-run every glacier; the fingerprint does.
        inventory=ancient(f"{R}/inventory/glaciers.gpkg"),
    output:
        f"{R}/scenes/{{glacier}}/{{epoch}}.nc",
    params:
        fingerprint=fingerprint,
        scenes=scene_ids,
        # every setting the acquisition uses, so that changing one re-runs it (and nothing else does)
        imagery=config["imagery"],
        source=canonical(IMAGERY_SOURCE),
        grid=canonical(config["grid"]),
        epoch=lambda w: canonical(config["epochs"][w.epoch]),
    resources:
        mem_mb=glacier_resources("acquire", "mem_mb"),
        runtime=glacier_resources("acquire", "runtime"),
    log:
        f"{R}/logs/acquire/{{glacier}}/{{epoch}}.log",
    benchmark:
        f"{R}/benchmarks/acquire/{{glacier}}/{{epoch}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/data/acquire.py"
