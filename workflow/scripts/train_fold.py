from glaciermap.io import setup_logging
from glaciermap.steps import run_train_fold

setup_logging(snakemake.log[0])
i, w = snakemake.input, snakemake.wildcards
run_train_fold(i.train, i.val, snakemake.params.split, i.norm, int(w.fold), snakemake.params.members,
               snakemake.params.settings, list(snakemake.output), snakemake.threads)
