rule evaluate:
    """Planted truth against the mapped rates (synthetic regions; evaluation.truth_dir). Only rule reading the truth."""
    input:
        rates=f"{R}/rates/glacier_rates.csv",
        truth=f"{TRUTH_DIR}/areas.csv",
    output:
        f"{R}/evaluation/truth.json",
    resources:
        mem_mb=region_resources("evaluate", "mem_mb"),
        runtime=region_resources("evaluate", "runtime"),
    log:
        f"{R}/logs/evaluate.log",
    benchmark:
        f"{R}/benchmarks/evaluate.tsv",
    conda:
        CONDA_ENV
    script:
        "../scripts/evaluate.py"


rule summary:
    """results/<region>/summary.json: headline numbers of the run (see glaciermap.summary)."""
    input:
        unpack(summary_inputs),
        qc=f"{R}/qc/summary.json",
        calibration=[f"{R}/models/fold{k}/calibration.json" for k in FOLDS],
        areas=f"{R}/areas/glacier_areas.csv",
        totals=f"{R}/rates/regional.json",
    output:
        f"{R}/summary.json",
    params:
        period=[T0, T1],
    resources:
        mem_mb=region_resources("summary", "mem_mb"),
        runtime=region_resources("summary", "runtime"),
    log:
        f"{R}/logs/summary.log",
    benchmark:
        f"{R}/benchmarks/summary.tsv",
    conda:
        CONDA_ENV
    script:
        "../scripts/summary.py"
