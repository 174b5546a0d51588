rule ts_series:
    """Smoothing in days, per-acquisition and annual areas with bounds, and annual outlines of one fold's glaciers."""
    input:
        f"{TSR}/maps/fold{{fold}}",
    output:
        series=f"{TSR}/series/fold{{fold}}_acquisitions.csv",
        annual=f"{TSR}/series/fold{{fold}}_annual.csv",
        outlines=f"{TSR}/series/fold{{fold}}_outlines.gpkg",
    params:
        glaciers=ts_glaciers("test"),
        settings=canonical(TS["smoothing"]),
    resources:
        mem_mb=region_resources("ts_series", "mem_mb"),
        runtime=region_resources("ts_series", "runtime"),
    log:
        f"{R}/logs/ts_series/{TS_NAME}/fold{{fold}}.log",
    benchmark:
        f"{R}/benchmarks/ts_series/{TS_NAME}/fold{{fold}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/timeseries/ts_series.py"
