rule ts_summary:
    """results/<region>/timeseries/<model>/summary.json: acquisitions used and rejected, both regional trends, the
    Sentinel-2 comparisons and, with the demo's planted truth, trend errors and bound coverage: the only time-series
    rule that reads the truth."""
    input:
        unpack(ts_summary_inputs),
        trends_json=f"{TSR}/trends.json",
        trends=f"{TSR}/trends.csv",
        annual=f"{TSR}/annual_areas.csv",
        series=f"{TSR}/acquisition_areas.csv",
        acquisitions=[f"{TSA}/{g}.csv" for g in GLACIER_IDS] if TS_ON else [],
    output:
        f"{TSR}/summary.json",
    params:
        settings=canonical({"min_years": TS["min_years"], "change_epochs": [] if ONE_EPOCH else [T0, T1]}),
    resources:
        mem_mb=region_resources("ts_summary", "mem_mb"),
        runtime=region_resources("ts_summary", "runtime"),
    log:
        f"{R}/logs/ts_summary/{TS_NAME}.log",
    benchmark:
        f"{R}/benchmarks/ts_summary/{TS_NAME}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/timeseries/ts_summary.py"
