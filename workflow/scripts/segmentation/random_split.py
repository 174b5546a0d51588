from glaciermap.io import setup_logging
from glaciermap.segmentation.random_split import run_random_split
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
i, p = snakemake.input, snakemake.params
# the member's checkpoints (resumable) go to segmentation/<model>/random_split/, beside the declared outputs
run_random_split(read_file_lists(i.cubes), read_file_lists(i.labels), dict(p.model), dict(p.settings), dict(snakemake.output.items()),
                 geographic_json=i.geographic, threads=snakemake.threads)
