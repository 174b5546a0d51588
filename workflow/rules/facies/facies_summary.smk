rule facies_summary:
    """results/<region>/facies/summary.json: macro F1 before/after cleaning, pruned shares and flag scores, ECE before
    and after calibration, SMB r and RMSE, outline issues (glaciermap.facies.summary). With the demo's planted truth
    of the points (facies.truth) it scores the flags and the rounds on the correctly labelled points: the only facies
    rule that reads the truth."""
    input:
        unpack(facies_summary_inputs),
        points=f"{FR}/points.json",
        issues=f"{FR}/raw/label_issues.json",
        cal_raw=f"{FR}/raw/calibration.json",
        cal_clean=f"{FR}/clean/calibration.json",
        issues_csv=f"{FR}/raw/label_issues.csv",
        points_raw=f"{FR}/raw/calibrated_points.csv",
        points_clean=f"{FR}/clean/calibrated_points.csv",
        truth=FACIES_TRUTH or [],
    output:
        f"{FR}/summary.json",
    params:
        classes=FACIES["classes"],
        prunable=FACIES["prunable"],
    resources:
        mem_mb=region_resources("facies_summary", "mem_mb"),
        runtime=region_resources("facies_summary", "runtime"),
    log:
        f"{R}/logs/facies_summary/facies_summary.log",
    benchmark:
        f"{R}/benchmarks/facies_summary/facies_summary.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/facies/facies_summary.py"
