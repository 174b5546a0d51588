rule ts_calibrate:
    """Temperatures, ECE and the glacier-specific tau model of one fold's ensemble (its validation glaciers)."""
    input:
        members=[f"{TSR}/models/fold{{fold}}/member{m}.pt" for m in range(TS["model"]["members"])],
        stacks=ts_stacks("val", protect=True),
        inventory=ancient(f"{R}/inventory/glaciers.gpkg"),
        folds=ancient(f"{R}/split/folds.csv"),
    output:
        f"{TSR}/models/fold{{fold}}/calibration.json",
    params:
        fold=lambda w: int(w.fold),
        split=SPLIT_FILE,
        glaciers=ts_glaciers("val"),
        settings=canonical({**config["calibration"], "threads": TS["model"]["threads"]}),
    resources:
        mem_mb=region_resources("ts_calibrate", "mem_mb"),
        runtime=region_resources("ts_calibrate", "runtime"),
    log:
        f"{R}/logs/ts_calibrate/{TS_NAME}/fold{{fold}}.log",
    benchmark:
        f"{R}/benchmarks/ts_calibrate/{TS_NAME}/fold{{fold}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/timeseries/ts_calibrate.py"
