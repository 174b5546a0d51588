from glaciermap.io import setup_logging
from glaciermap.segmentation.ensemble import write_ensemble

setup_logging(snakemake.log[0])
write_ensemble(list(snakemake.input), snakemake.output[0])
