from glaciermap.io import setup_logging
from glaciermap.segmentation.fold_list import write_fold_list

setup_logging(snakemake.log[0])
write_fold_list(list(snakemake.input), snakemake.output[0])
