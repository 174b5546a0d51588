rule compare:
    """Table 7: the models of area_change.compare and the band ratio on the test glaciers (reads the debris map and, on
    synthetic regions, the truth outlines: evaluation)."""
    input:
        unpack(compare_inputs),
    output:
        csv=f"{R}/area_change/method_comparison.csv",
        json=f"{R}/area_change/method_comparison.json",
        glaciers=f"{R}/area_change/method_comparison_glaciers.csv",
    params:
        split=SPLIT_FILE,
        t0=T0,
        t1=T1,
        models=COMPARE_MODELS,
        debris_min_fraction=config["evaluation"]["debris_min_fraction"],
    resources:
        mem_mb=region_resources("compare", "mem_mb"),
        runtime=region_resources("compare", "runtime"),
    log:
        f"{R}/logs/compare.log",
    benchmark:
        f"{R}/benchmarks/compare.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/area_change/compare.py"
