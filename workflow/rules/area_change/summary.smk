rule evaluate:
    """Planted truth against the mapped rates (synthetic regions; evaluation.truth_dir). Only rule reading the truth."""
    input:
        rates=f"{R}/area_change/{{model}}/rates/glacier_rates.csv",
        truth=f"{TRUTH_DIR}/areas.csv",
    output:
        f"{R}/area_change/{{model}}/evaluation/truth.json",
    resources:
        mem_mb=region_resources("evaluate", "mem_mb"),
        runtime=region_resources("evaluate", "runtime"),
    log:
        f"{R}/logs/evaluate/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{model}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/area_change/evaluate.py"


rule summary:
    """results/<region>/area_change/<model>/summary.json: headline numbers of one model's run (glaciermap.area_change.summary)."""
    input:
        unpack(summary_inputs),
        qc=f"{R}/qc/summary.json",
        calibration=lambda w: calibrations(w.model),
        areas=f"{R}/area_change/{{model}}/areas/glacier_areas.csv",
    output:
        f"{R}/area_change/{{model}}/summary.json",
    params:
        period=[T0, T1],
        model=lambda w: w.model,
        settings=lambda w: summary_settings(config, w.model),
    resources:
        mem_mb=region_resources("summary", "mem_mb"),
        runtime=region_resources("summary", "runtime"),
    log:
        f"{R}/logs/summary/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/summary/{{model}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/area_change/summary.py"
