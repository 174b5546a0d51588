rule facies_train:
    """The point CNN of one glacier fold (test fold k, validated on fold k - 1): round raw on every label, round clean
    without the labels confident learning pruned; out-of-fold probabilities of the fold's test and validation points."""
    input:
        samples=f"{FR}/samples.nc",
        # round clean: the pruned labels (rule label_issues)
        issues=lambda w: f"{FR}/raw/label_issues.csv" if w.round == "clean" else [],
    output:
        model=f"{FR}/{{round}}/fold{{facies_fold}}/model.pt",
        proba=f"{FR}/{{round}}/fold{{facies_fold}}/proba.csv",
        history=f"{FR}/{{round}}/fold{{facies_fold}}/history.csv",
    params:
        fold=lambda w: int(w.facies_fold),
        folds=FACIES["folds"],
        model=canonical(FACIES["model"]),
        seed=FACIES["seed"],
    threads: FACIES["model"]["threads"]
    resources:
        mem_mb=region_resources("facies_train", "mem_mb"),
        runtime=region_resources("facies_train", "runtime"),
    log:
        f"{R}/logs/facies_train/{{round}}/fold{{facies_fold}}.log",
    benchmark:
        f"{R}/benchmarks/facies_train/{{round}}/fold{{facies_fold}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/facies/facies_train.py"
