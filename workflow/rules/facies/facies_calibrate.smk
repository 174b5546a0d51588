rule facies_calibrate:
    """Calibrated confidence of one round: per fold a kernel ridge regression (Laplacian kernel) from the top softmax
    score to accuracy on the validation fold, applied to the test fold; ECE (100 bins) before and after, macro F1."""
    input:
        proba=expand(f"{FR}/{{{{round}}}}/fold{{k}}/proba.csv", k=FACIES_FOLDS),
    output:
        curves=f"{FR}/{{round}}/calibration_curves.csv",
        points=f"{FR}/{{round}}/calibrated_points.csv",
        json=f"{FR}/{{round}}/calibration.json",
    params:
        classes=FACIES["classes"],
        settings=canonical(FACIES["calibration"]),
    resources:
        mem_mb=region_resources("facies_calibrate", "mem_mb"),
        runtime=region_resources("facies_calibrate", "runtime"),
    log:
        f"{R}/logs/facies_calibrate/{{round}}.log",
    benchmark:
        f"{R}/benchmarks/facies_calibrate/{{round}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/facies/facies_calibrate.py"
