# CryoNet's validation (seed paper 003): a random 80/20 split of patch_size tiles instead of the geographic
# cross-validation, one member trained on it and scored on its test tiles; the inflation is its score minus the
# geographic one (rule confusion's metrics.json). One job per model of config `random_split.models`.


rule random_split:
    """Mean IoU, accuracy and per-class scores of one member trained on CryoNet's random tile split, and their
    inflation over the geographic cross-validation (all mapped glaciers, t0)."""
    input:
        # ancient like the training inputs: a re-made cube (new scene) does not retrain; --forcerun random_split does
        # (membership lists, rule file_list: their files are ancient inputs)
        cubes=file_lists("cubes", "all", track="membership", region=True),
        labels=file_lists("labels", "all", track="membership", region=True),
        label_set=lambda w: label_definition(w.model),
        geographic=f"{R}/segmentation/{{model}}/metrics.json",
    output:
        json=f"{R}/segmentation/{{model}}/random_split.json",
        csv=f"{R}/segmentation/{{model}}/random_split.csv",
    params:
        settings=canonical({k: v for k, v in config["random_split"].items() if k != "models"}),
        model=model_settings,
    threads: 1   # one member, as a train job (runs beside the importance jobs)
    resources:
        mem_mb=region_resources("random_split", "mem_mb"),
        runtime=region_resources("random_split", "runtime"),
    log:
        f"{R}/logs/random_split/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/random_split/{{model}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/random_split.py"
