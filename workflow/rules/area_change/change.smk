rule change:
    """Per-glacier change rates with filters (Table 6), regional extrapolation and regional totals."""
    input:
        areas=f"{R}/area_change/{{model}}/areas/glacier_areas.csv",
        manifest=f"{R}/inventory/manifest.csv",
        inventory=f"{R}/inventory/glaciers.gpkg",
    output:
        csv=f"{R}/area_change/{{model}}/rates/glacier_rates.csv",
        gpkg=f"{R}/area_change/{{model}}/rates/glacier_rates.gpkg",
        coverage=report(f"{R}/area_change/{{model}}/rates/coverage.csv", caption="../../report/coverage.rst", category="Tables"),
        totals=f"{R}/area_change/{{model}}/rates/regional.json",
    params:
        # the scripts read change.from/to from the config: as a param, switching `change.to` re-runs this job
        period=[T0, T1],
        # every change setting (filters, size model, sigma aggregation): changing one re-runs the rates
        change=canonical(config["change"]),
        min_area_km2=config["inventory"]["min_area_km2"],
    resources:
        mem_mb=region_resources("change", "mem_mb"),
        runtime=region_resources("change", "runtime"),
    log:
        f"{R}/logs/change/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/change/{{model}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/area_change/change.py"
