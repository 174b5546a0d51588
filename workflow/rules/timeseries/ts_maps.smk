rule ts_maps:
    """Ensemble probability maps of every usable acquisition of one fold's test glaciers (out-of-fold)."""
    input:
        members=[f"{TSR}/models/fold{{fold}}/member{m}.pt" for m in range(TS["model"]["members"])],
        calibration=f"{TSR}/models/fold{{fold}}/calibration.json",
        stacks=ts_stacks("test"),
    output:
        directory(f"{TSR}/maps/fold{{fold}}"),
    params:
        glaciers=ts_glaciers("test"),
        # each acquisition's map under a key of its inputs and the fold's models: a new scene maps only itself
        cache_dir=lambda w: f"{TSR}/maps_cache/fold{w.fold}",
        settings=canonical({"threads": TS["model"]["threads"]}),
    threads: TS["model"]["threads"]
    resources:
        mem_mb=region_resources("ts_maps", "mem_mb"),
        runtime=region_resources("ts_maps", "runtime"),
    log:
        f"{R}/logs/ts_maps/{TS_NAME}/fold{{fold}}.log",
    benchmark:
        f"{R}/benchmarks/ts_maps/{TS_NAME}/fold{{fold}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/timeseries/ts_maps.py"
