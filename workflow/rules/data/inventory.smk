rule inventory:
    """Check every outline, reproject, compute areas; write the checked inventory and the manifest."""
    input:
        config["inventory"]["path"],
    output:
        gpkg=f"{R}/inventory/glaciers.gpkg",
        manifest=f"{R}/inventory/manifest.csv",
    params:
        content=INVENTORY_HASH,
        settings=canonical({"inventory": config["inventory"], "grid": {"crs": config["grid"]["crs"]}}),
    resources:
        mem_mb=region_resources("inventory", "mem_mb"),
        runtime=region_resources("inventory", "runtime"),
    log:
        f"{R}/logs/inventory.log",
    benchmark:
        f"{R}/benchmarks/inventory.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/data/inventory.py"
