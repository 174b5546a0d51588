rule label_issues:
    """Confident learning (cleanlab.filter.find_label_issues) on the raw round's out-of-fold probabilities: flagged
    labels, the ones pruned (prunable classes only), the confident joint, and with the demo truth the flags' precision
    and recall against the planted noise."""
    input:
        proba=expand(f"{FR}/raw/fold{{k}}/proba.csv", k=FACIES_FOLDS),
    output:
        csv=f"{FR}/raw/label_issues.csv",
        joint=f"{FR}/raw/confident_joint.csv",
        json=f"{FR}/raw/label_issues.json",
    params:
        classes=FACIES["classes"],
        prunable=FACIES["prunable"],
        filter_by=FACIES["label_issues"]["filter_by"],
    resources:
        mem_mb=region_resources("label_issues", "mem_mb"),
        runtime=region_resources("label_issues", "runtime"),
    log:
        f"{R}/logs/label_issues/label_issues.log",
    benchmark:
        f"{R}/benchmarks/label_issues/label_issues.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/facies/label_issues.py"
