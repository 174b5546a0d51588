rule select:
    """Rank the candidate scenes of one glacier and epoch (DL4GAM) and choose the best."""
    input:
        scenes=f"{R}/scenes/{{glacier}}/{{epoch}}.nc",
        inventory=ancient(f"{R}/inventory/glaciers.gpkg"),
    output:
        f"{R}/selection/{{glacier}}/{{epoch}}.csv",
    params:
        fingerprint=fingerprint,
        selection=canonical(config["selection"]),
    resources:
        mem_mb=glacier_resources("select", "mem_mb"),
        runtime=glacier_resources("select", "runtime"),
    log:
        f"{R}/logs/select/{{glacier}}/{{epoch}}.log",
    benchmark:
        f"{R}/benchmarks/select/{{glacier}}/{{epoch}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/data/select.py"
