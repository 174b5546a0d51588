from pathlib import Path

from glaciermap.segmentation.ensemble import write_ensemble
from glaciermap.io import setup_logging
from glaciermap.segmentation.train import run_train_fold
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
# checkpoint_every_s and keep_last_checkpoint are not in the params (they change no result: no re-run)
run_only = snakemake.config["train"]
settings = dict(snakemake.params.settings, checkpoint_every_s=run_only["checkpoint_every_s"],
                keep_last_checkpoint=run_only["keep_last_checkpoint"])
i, w = snakemake.input, snakemake.wildcards
fold_dir = Path(snakemake.output[0]).parent
done = [str(fold_dir / f"member{m}" / "done.json") for m in snakemake.params.members]
run_train_fold(i.train, i.val, snakemake.params.split, i.norm, int(w.fold), snakemake.params.members,
               settings, done, snakemake.threads, labels=read_file_lists(i.labels),
               store=(i.store[0] if i.store else None))
write_ensemble(done, snakemake.output[0])
