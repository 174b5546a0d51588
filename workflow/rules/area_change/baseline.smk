rule baseline:
    """Band-ratio baseline: regional thresholds per fold (train + val glaciers) and the glacier-wise oracle."""
    input:
        cubes=file_lists("cubes", "all", epochs=EPOCHS, region=True),
        manifest=f"{R}/inventory/manifest.csv",
        folds=f"{R}/split/folds.csv",
    output:
        areas=f"{R}/area_change/baseline/band_ratio_areas.csv",
        rates=f"{R}/area_change/baseline/band_ratio_rates.csv",
        summary=f"{R}/area_change/baseline/band_ratio.json",
    params:
        split=SPLIT_FILE,
        period=[T0, T1],
        # the change period and the rate filters (snr_min, recall_min): changing one re-runs the baseline
        change=canonical(config["change"]),
        min_area_km2=config["inventory"]["min_area_km2"],
    resources:
        mem_mb=region_resources("baseline", "mem_mb"),
        runtime=region_resources("baseline", "runtime"),
    log:
        f"{R}/logs/baseline.log",
    benchmark:
        f"{R}/benchmarks/baseline.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/area_change/baseline.py"
