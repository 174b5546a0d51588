rule patches:
    """Patch-centre table (stride grid inside the 50 m buffer + centroid) of every t0 cube, for one stride."""
    input:
        # the t0 cubes of every glacier that trains or validates a fold, as a membership list (rule file_list): a
        # re-made cube (new scene) does not retrain; `--forcerun patches` does
        cubes=file_lists("cubes", "train+val", track="membership", region=True),
    output:
        f"{R}/patches/centres_stride{{stride}}.csv",
    resources:
        mem_mb=region_resources("patches", "mem_mb"),
        runtime=region_resources("patches", "runtime"),
    log:
        f"{R}/logs/patches/stride{{stride}}.log",
    benchmark:
        f"{R}/benchmarks/patches/stride{{stride}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/patches.py"


rule normalise:
    """Per-channel normalisation of one model and fold from its training glaciers' cubes (test glaciers + 50 m excluded)."""
    input:
        folds=ancient(f"{R}/split/folds.csv"),
        # the fold's training cubes (a membership list: a re-made cube does not retrain)
        cubes=file_lists("cubes", "train", track="membership"),
    output:
        f"{R}/models/{{model}}/fold{{fold}}/normalisation.json",
    params:
        split=SPLIT_FILE,
        roles=fold_roles_hash,
        channels=lambda w: MODELS[w.model]["channels"],
    resources:
        mem_mb=region_resources("normalise", "mem_mb"),
        runtime=region_resources("normalise", "runtime"),
    log:
        f"{R}/logs/normalise/{{model}}/fold{{fold}}.log",
    benchmark:
        f"{R}/benchmarks/normalise/{{model}}/fold{{fold}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/normalise.py"
