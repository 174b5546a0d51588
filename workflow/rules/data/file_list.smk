# File lists (glaciermap.data.file_list): the fold- and region-level jobs take a list of the cubes, scenes, selection
# tables or label rasters they read as one input instead of one input per glacier, which keeps the DAG's memory and
# build time down at region scale (docs/scale.md "Planning time"). A list names the files of one group (`fold<k>`:
# the fold's glaciers with the role; `region`: every mapped glacier with role `all`, or those with the role in
# any fold) at one epoch or several (`+`-joined; glacier-major order). Two tracks keep the files' own rerun rules:
# `content` lists are re-made when a listed file is (a new scene re-runs inference, calibration, scores, areas);
# `membership` lists take their files as ancient(), so only a change of the glaciers listed re-makes them (the
# training inputs: a new scene does not retrain; `--forcerun patches normalise train` does). The name ends in a
# digest of the paths listed (common.smk, list_members): other glaciers, another list.
rule file_list:
    """One path a line: the files of one kind, at one or more epochs, of one fold's (or the region's) glaciers."""
    input:
        listed_files,
    output:
        f"{R}/lists/{{kind}}/{{epochs}}/{{group}}_{{role}}.{{track}}.{{digest}}.txt",
    wildcard_constraints:
        kind="|".join(re.escape(k) for k in LIST_PATHS),
        epochs=LIST_EPOCHS,
        group=r"fold\d+|region",
        role=r"all|train|val|test|train\+val",
        track=r"content|membership",
        digest=r"[0-9a-f]{12}",
    localrule: True
    log:
        f"{R}/logs/file_list/{{kind}}/{{epochs}}/{{group}}_{{role}}.{{track}}.{{digest}}.log",
    conda:
        CONDA_ENV
    script:
        "../../scripts/data/file_list.py"
