rule ts_train:
    """Train the time series' U-Net ensemble of one fold on its training glaciers' inventory-date acquisitions."""
    input:
        # ancient: a new scene re-makes a stack but never retrains (`--forcerun ts_train` does)
        stacks=ts_stacks("train+val", protect=True),
        inventory=ancient(f"{R}/inventory/glaciers.gpkg"),
        folds=ancient(f"{R}/split/folds.csv"),
    output:
        members=[f"{TSR}/models/fold{{fold}}/member{m}.pt" for m in range(TS["model"]["members"])],
        json=f"{TSR}/models/fold{{fold}}/train.json",
    params:
        fold=lambda w: int(w.fold),
        split=SPLIT_FILE,
        roles=fold_roles_hash,
        glaciers=ts_glaciers("train+val"),
        settings=TS_MODEL,
    threads: TS["model"]["threads"]
    resources:
        mem_mb=region_resources("ts_train", "mem_mb"),
        runtime=region_resources("ts_train", "runtime"),
    log:
        f"{R}/logs/ts_train/{TS_NAME}/fold{{fold}}.log",
    benchmark:
        f"{R}/benchmarks/ts_train/{TS_NAME}/fold{{fold}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/timeseries/ts_train.py"
