from glaciermap.debris.cover import run_cover_files
from glaciermap.io import setup_logging
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
i, p = snakemake.input, snakemake.params
run_cover_files(i.preds, read_file_lists(i.cubes), i.calibrations, i.inventory, p.classes, p.debris_class, p.clean_class, p.t0, p.t1,
                dict(snakemake.output.items()), p.truth_dir, snakemake.wildcards.model)
