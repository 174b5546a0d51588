# Optional packing of an ensemble (train.pack_members: true): one job per model and fold trains every member one
# after the other and writes the same per-member files as `train` (models/<model>/fold<k>/member<m>/done.json,
# last.pt, best.pt, metrics.csv) plus the fold's ensemble.json, so everything downstream is unchanged. Each member
# resumes from its own last.pt, so a re-run (Slurm requeue, time limit) only finishes what is missing, and a
# re-run after a changed setting trains it again (its record's fingerprint no longer matches). The
# ruleorder picks train_fold or (train + ensemble) per the switch.
rule train_fold:
    """Train every ensemble member of one model and fold in one job (train.pack_members), sequentially, each resumable."""
    input:
        train=lambda w: ancient(f"{R}/patches/centres_stride{MODELS[w.model]['stride']}.csv"),
        val=lambda w: ancient(f"{R}/patches/centres_stride{MODELS[w.model]['val_stride']}.csv"),
        norm=f"{R}/models/{{model}}/fold{{fold}}/normalisation.json",
        folds=ancient(f"{R}/split/folds.csv"),
        # a K-class model's label rasters of the fold's training and validation glaciers (none for a binary model):
        # ancient like the cubes (a new scene re-makes them without retraining); its label set's definition record
        # is a regular input, so a changed definition or map retrains; a hand-corrected raster needs
        # `--forcerun train` (README "K-class models")
        labels=file_lists("labels", "train+val", track="membership"),
        label_set=lambda w: label_definition(w.model),
        store=training_store,
    output:
        f"{R}/models/{{model}}/fold{{fold}}/ensemble.json",
    params:
        split=SPLIT_FILE,
        roles=fold_roles_hash,
        settings=model_settings,
        members=lambda w: member_ids(w.model),
    resources:
        # the profile's train request (240 min per member on a GPU, paper preset) times the model's members
        runtime=lambda w, attempt: 240 * len(member_ids(w.model)) * attempt,
    log:
        f"{R}/logs/train/{{model}}/fold{{fold}}/members.log",
    benchmark:
        f"{R}/benchmarks/train/{{model}}/fold{{fold}}/members.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/train_fold.py"


if PACK_MEMBERS:

    ruleorder: train_fold > ensemble

else:

    ruleorder: ensemble > train_fold
