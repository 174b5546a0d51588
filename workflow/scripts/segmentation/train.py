from glaciermap.io import setup_logging
from glaciermap.segmentation.train import run_train

setup_logging(snakemake.log[0])
# checkpoint_every_s is not in the params (it changes no result, so it must not re-run jobs)
settings = dict(snakemake.params.settings, checkpoint_every_s=snakemake.config["train"]["checkpoint_every_s"])
i, w = snakemake.input, snakemake.wildcards
run_train(i.train, i.val, snakemake.params.split, i.norm, int(w.fold), int(w.member), settings,
          snakemake.output[0], snakemake.threads, labels=list(i.labels))
