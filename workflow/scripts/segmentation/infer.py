from glaciermap.segmentation.infer import run_infer_folder
from glaciermap.io import setup_logging
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
i = snakemake.input
run_infer_folder(i.ensemble, i.norm, read_file_lists(i.test), read_file_lists(i.get("val", [])), snakemake.output[0],
                 snakemake.params.settings, snakemake.params.patch_size, snakemake.threads)
