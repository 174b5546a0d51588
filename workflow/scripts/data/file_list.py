from glaciermap.io import setup_logging
from glaciermap.data.file_list import write_file_list

setup_logging(snakemake.log[0])
write_file_list(list(snakemake.input), snakemake.output[0])
