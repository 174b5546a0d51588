from glaciermap.io import setup_logging
from glaciermap.segmentation.train import run_train
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
# checkpoint_every_s and keep_last_checkpoint are not in the params (they change no result: no re-run)
run_only = snakemake.config["train"]
settings = dict(snakemake.params.settings, checkpoint_every_s=run_only["checkpoint_every_s"],
                keep_last_checkpoint=run_only["keep_last_checkpoint"])
i, w = snakemake.input, snakemake.wildcards
run_train(i.train, i.val, snakemake.params.split, i.norm, int(w.fold), int(w.member), settings,
          snakemake.output[0], snakemake.threads, labels=read_file_lists(i.labels), store=(i.store[0] if i.store else None))
