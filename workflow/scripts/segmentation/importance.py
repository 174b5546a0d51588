from glaciermap.io import setup_logging
from glaciermap.segmentation.importance import run_importance_files
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
i, p = snakemake.input, snakemake.params
cfg = dict(p.settings, patch_size=p.patch_size, threads=snakemake.threads)
run_importance_files(i.ensembles, i.norms, i.calibrations, read_file_lists(i.cubes), read_file_lists(i.labels), p.fold_of, p.groups, p.classes, cfg,
                     dict(snakemake.output.items()))
