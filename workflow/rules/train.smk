rule train:
    """Train one ensemble member of one fold (resumable: last.pt, best.pt, metrics.csv beside done.json)."""
    input:
        # ancient: re-made patch tables (`--forcerun patches`) do not retrain by themselves; `--forcerun train` does
        train=ancient(f"{R}/patches/centres_stride{config['train']['stride']}.csv"),
        val=ancient(f"{R}/patches/centres_stride{config['train']['val_stride']}.csv"),
        norm=f"{R}/models/fold{{fold}}/normalisation.json",
        folds=ancient(f"{R}/split/folds.csv"),
    output:
        # only done.json: a failed job's declared outputs are deleted, and last.pt must survive for a resume
        f"{R}/models/fold{{fold}}/member{{member}}/done.json",
    params:
        split=SPLIT_FILE,
        roles=fold_roles_hash,
        settings=TRAIN_CFG,
    log:
        f"{R}/logs/train/fold{{fold}}/member{{member}}.log",
    benchmark:
        f"{R}/benchmarks/train/fold{{fold}}/member{{member}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../scripts/train.py"
