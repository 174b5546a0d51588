# The no-dh/dt ablation (DL4GAM Table 7, "DL4GAM (no dh/dt)"): the same rules as the main ensemble on the
# same folds, split, patch tables and member seeds, with the channels of the main model minus dhdt and
# the main normalisation restricted to that channel set. Outputs under results/<region>/ablation/no_dhdt/.
# Enabled by ablation.no_dhdt.enabled; ablation.no_dhdt.members members per fold (default 1).
if ABLATION["enabled"]:

    # Per-channel statistics do not depend on the other channels: the ablation's normalisation is the
    # main one minus dhdt (exact; patches.subset_normalisation), not a second pass over the cubes.
    rule normalise_no_dhdt:
        """Normalisation of the ablation's channels, taken from the fold's main normalisation."""
        input:
            f"{R}/models/fold{{fold}}/normalisation.json",
        output:
            f"{ABL}/models/fold{{fold}}/normalisation.json",
        params:
            channels=ABL_CHANNELS,
        log:
            f"{R}/logs/ablation/no_dhdt/normalise/fold{{fold}}.log",
        benchmark:
            f"{R}/benchmarks/ablation/no_dhdt/normalise/fold{{fold}}.tsv",
        conda:
            CONDA_ENV
        script:
            "../scripts/normalise_no_dhdt.py"

    use rule train as train_no_dhdt with:
        input:
            train=ancient(f"{R}/patches/centres_stride{config['train']['stride']}.csv"),
            val=ancient(f"{R}/patches/centres_stride{config['train']['val_stride']}.csv"),
            norm=f"{ABL}/models/fold{{fold}}/normalisation.json",
            folds=ancient(f"{R}/split/folds.csv"),
        output:
            f"{ABL}/models/fold{{fold}}/member{{member}}/done.json",
        params:
            split=SPLIT_FILE,
            roles=fold_roles_hash,
            settings=ABL_TRAIN_CFG,
        log:
            f"{R}/logs/ablation/no_dhdt/train/fold{{fold}}/member{{member}}.log",
        benchmark:
            f"{R}/benchmarks/ablation/no_dhdt/train/fold{{fold}}/member{{member}}.tsv",

    # One inference rule per fold (infer_no_dhdt_fold0, ...), test glaciers only (no calibration for the
    # ablation), one job per change epoch; the main rules' script.
    for _k in FOLDS:

        rule:
            name:
                f"infer_no_dhdt_fold{_k}"
            input:
                models=[f"{ABL}/models/fold{_k}/member{m}/done.json" for m in ABL_MEMBERS],
                norm=f"{ABL}/models/fold{_k}/normalisation.json",
                test=[f"{R}/cubes/{g}/{{epoch}}.nc" for g in TEST_OF[_k]],
            output:
                test=[f"{ABL}/predictions/{g}/{{epoch}}.nc" for g in TEST_OF[_k]],
            params:
                settings=config["infer"],
                patch_size=config["train"]["patch_size"],
            log:
                f"{R}/logs/ablation/no_dhdt/infer/fold{_k}/{{epoch}}.log",
            benchmark:
                f"{R}/benchmarks/ablation/no_dhdt/infer/fold{_k}/{{epoch}}.tsv",
            conda:
                CONDA_ENV
            script:
                "../scripts/infer.py"
