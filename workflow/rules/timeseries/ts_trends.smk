rule ts_trends:
    """Region tables (annual areas, acquisitions, annual outlines) and log-linear trends per glacier and region."""
    input:
        annual=expand(f"{TSR}/series/fold{{k}}_annual.csv", k=FOLDS),
        series=expand(f"{TSR}/series/fold{{k}}_acquisitions.csv", k=FOLDS),
        outlines=expand(f"{TSR}/series/fold{{k}}_outlines.gpkg", k=FOLDS),
    output:
        annual=f"{TSR}/annual_areas.csv",
        series=f"{TSR}/acquisition_areas.csv",
        outlines=f"{TSR}/annual_outlines.gpkg",
        trends=f"{TSR}/trends.csv",
        json=f"{TSR}/trends.json",
    params:
        settings=canonical({"min_years": TS["min_years"]}),
    resources:
        mem_mb=region_resources("ts_trends", "mem_mb"),
        runtime=region_resources("ts_trends", "runtime"),
    log:
        f"{R}/logs/ts_trends/{TS_NAME}.log",
    benchmark:
        f"{R}/benchmarks/ts_trends/{TS_NAME}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/timeseries/ts_trends.py"
