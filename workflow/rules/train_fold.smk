# Optional packing of an ensemble (train.pack_members: true): one job per fold trains every member one after
# the other and writes the same per-member files as `train` (models/fold<k>/member<m>/done.json, last.pt,
# best.pt, metrics.csv), so everything downstream is unchanged. Each member resumes from its own last.pt, so a
# re-run (Slurm requeue, time limit) only finishes what is missing. The ruleorder picks the rule per the switch.
rule train_fold:
    """Train every ensemble member of one fold in one job (train.pack_members), sequentially, each resumable."""
    input:
        train=f"{R}/patches/centres_stride{config['train']['stride']}.csv",
        val=f"{R}/patches/centres_stride{config['train']['val_stride']}.csv",
        norm=f"{R}/models/fold{{fold}}/normalisation.json",
        folds=ancient(f"{R}/split/folds.csv"),
    output:
        [f"{R}/models/fold{{fold}}/member{m}/done.json" for m in MEMBERS],
    params:
        split=SPLIT_FILE,
        roles=fold_roles_hash,
        settings=TRAIN_CFG,
        members=MEMBERS,
    log:
        f"{R}/logs/train/fold{{fold}}/members.log",
    benchmark:
        f"{R}/benchmarks/train/fold{{fold}}/members.tsv",
    conda:
        CONDA_ENV
    script:
        "../scripts/train_fold.py"


if PACK_MEMBERS:

    ruleorder: train_fold > train

else:

    ruleorder: train > train_fold
