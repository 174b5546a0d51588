# One rule per fold (infer_fold0, infer_fold1, ...): each job covers one epoch and every member of its
# fold, and writes one file per glacier: test glaciers to predictions/<glacier>/<epoch>.nc, validation
# glaciers (for calibration) to predictions/val/fold<k>/<glacier>/<epoch>.nc. The per-fold glacier
# lists come from the split known at DAG-build time.
for _k in FOLDS:

    rule:
        name:
            f"infer_fold{_k}"
        input:
            models=[f"{R}/models/fold{_k}/member{m}/done.json" for m in MEMBERS],
            norm=f"{R}/models/fold{_k}/normalisation.json",
            test=[f"{R}/cubes/{g}/{{epoch}}.nc" for g in TEST_OF[_k]],
            val=[f"{R}/cubes/{g}/{{epoch}}.nc" for g in VAL_OF[_k]],
        output:
            test=[f"{R}/predictions/{g}/{{epoch}}.nc" for g in TEST_OF[_k]],
            val=[f"{R}/predictions/val/fold{_k}/{g}/{{epoch}}.nc" for g in VAL_OF[_k]],
        params:
            settings=config["infer"],
            patch_size=config["train"]["patch_size"],
        log:
            f"{R}/logs/infer/fold{_k}/{{epoch}}.log",
        benchmark:
            f"{R}/benchmarks/infer/fold{_k}/{{epoch}}.tsv",
        conda:
            CONDA_ENV
        script:
            "../scripts/infer.py"
