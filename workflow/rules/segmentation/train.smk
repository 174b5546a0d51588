rule train:
    """Train one ensemble member of one model and fold (resumable: last.pt, best.pt, metrics.csv beside done.json)."""
    input:
        # ancient: re-made patch tables (`--forcerun patches`) do not retrain by themselves; `--forcerun train` does
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
        # only done.json: a failed job's declared outputs are deleted, and last.pt must survive for a resume
        f"{R}/models/{{model}}/fold{{fold}}/member{{member}}/done.json",
    params:
        split=SPLIT_FILE,
        roles=fold_roles_hash,
        settings=model_settings,
    log:
        f"{R}/logs/train/{{model}}/fold{{fold}}/member{{member}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{model}}/fold{{fold}}/member{{member}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/train.py"


rule ensemble:
    """The members of one model and fold, trained one job each (rule train): the list inference reads."""
    input:
        lambda w: [f"{R}/models/{w.model}/fold{w.fold}/member{m}/done.json" for m in member_ids(w.model)],
    output:
        f"{R}/models/{{model}}/fold{{fold}}/ensemble.json",
    log:
        f"{R}/logs/ensemble/{{model}}/fold{{fold}}.log",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/ensemble.py"
