# One job per (model, fold, epoch) covers every member of the fold's ensemble and writes one folder: a file per
# test glacier (<glacier>.nc) and, at t0, per validation glacier (val/<glacier>.nc, for calibration). One rule
# for any number of folds and models; consumers take the folders (glaciermap.io.prediction_files).
rule infer:
    """Ensemble probabilities of one model, fold and epoch on the fold's test (and, at t0, validation) glaciers."""
    input:
        ensemble=f"{R}/models/{{model}}/fold{{fold}}/ensemble.json",
        norm=f"{R}/models/{{model}}/fold{{fold}}/normalisation.json",
        # file lists (rule file_list) of the fold's test cubes at the epoch and, at t0, its validation cubes
        test=file_lists("cubes", "test", epochs="{epoch}"),
        val=lambda w: file_lists("cubes", "val")(w) if w.epoch == T0 else [],
    output:
        directory(f"{R}/predictions/{{model}}/fold{{fold}}/{{epoch}}"),
    params:
        settings=canonical(config["infer"]),
        patch_size=lambda w: MODELS[w.model]["patch_size"],
    log:
        f"{R}/logs/infer/{{model}}/fold{{fold}}/{{epoch}}.log",
    benchmark:
        f"{R}/benchmarks/infer/{{model}}/fold{{fold}}/{{epoch}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/infer.py"
