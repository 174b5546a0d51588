# Wildcards of the modelling half (global; the rules after this file use them).
wildcard_constraints:
    fold=r"\d+",
    member=r"\d+",
    stride=r"\d+",


rule split:
    """Write (first run) or extend (new glaciers) the frozen geographic CV split; table of folds."""
    input:
        manifest=f"{R}/inventory/manifest.csv",
    output:
        # the frozen split.csv itself is not declared: Snakemake would delete it before a re-run,
        # and a re-made split could move existing glaciers between folds
        folds=f"{R}/split/folds.csv",
    params:
        frozen=SPLIT_FILE,
        assignment=SPLIT_HASH,
        error=SPLIT_ERROR,
        settings=canonical(SPLIT_CFG),
        # glaciers no scene footprint covers at the training epoch (common.smk): left out of a new split
        uncovered=UNCOVERED,
    resources:
        mem_mb=region_resources("split", "mem_mb"),
        runtime=region_resources("split", "runtime"),
    log:
        f"{R}/logs/split.log",
    benchmark:
        f"{R}/benchmarks/split.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/split.py"
