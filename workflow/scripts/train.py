from glaciermap.io import setup_logging
from glaciermap.steps import run_train

setup_logging(snakemake.log[0])
i, w = snakemake.input, snakemake.wildcards
run_train(i.train, i.val, snakemake.params.split, i.norm, int(w.fold), int(w.member), snakemake.params.settings,
          snakemake.output[0], snakemake.threads)
