# File lists of the folds (glaciermap.segmentation.fold_list): the fold- and region-level jobs take a fold's list of
# cubes or label rasters as one input instead of one input per glacier, which keeps the DAG's memory and build time
# down at region scale (docs/scale.md "Planning time"). Two kinds keep the rerun rules of the files themselves:
# `<role>.content.txt` is re-made when a listed file is (a new scene re-runs inference, calibration, scores);
# `<role>.membership.txt` takes its files as ancient(), so only a change of the fold's glaciers with that role
# re-makes it (the training jobs: a new scene does not retrain; `--forcerun normalise train` does).
rule fold_list:
    """One path a line: the cubes or label rasters at one epoch of one fold's glaciers with one role."""
    input:
        listed_files,
    output:
        f"{R}/lists/{{kind}}/{{epoch}}/fold{{fold}}_{{role}}.{{track}}.txt",
    wildcard_constraints:
        kind="|".join(re.escape(k) for k in LIST_KINDS),
        fold=r"\d+",
        role=r"train|val|test|train\+val",
        track=r"content|membership",
    localrule: True
    log:
        f"{R}/logs/fold_list/{{kind}}/{{epoch}}/fold{{fold}}_{{role}}.{{track}}.log",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/fold_list.py"
