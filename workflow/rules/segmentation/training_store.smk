# The tiled region store of a model (models.<name>.training_data: store): every t0 cube's layers once, float16 in
# 64 px chunks, read by every fold and member of the model instead of the cubes (glaciermap.segmentation.training_store;
# docs/scale.md "Training data at region scale"). Off by default (training_data: cubes).
rule training_store:
    """One model's training store: the t0 cubes of every glacier of the split, its stored layers, float16 chunks."""
    input:
        # ancient like the training jobs' own cube inputs: a re-made cube (a new scene) does not re-make the store
        # and so does not retrain; `--forcerun training_store` does
        # (membership lists of every fold's test glaciers, rule file_list: their files are ancient inputs)
        cubes=file_lists("cubes", "test", track="membership", every_fold=True),
    output:
        f"{R}/segmentation/{{model}}/training_store.h5",
    params:
        layers=lambda w: stored_layers(MODELS[w.model]["channels"]),
    resources:
        mem_mb=region_resources("training_store", "mem_mb"),
        runtime=region_resources("training_store", "runtime"),
    log:
        f"{R}/logs/training_store/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/training_store/{{model}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/training_store.py"
