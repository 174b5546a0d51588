from glaciermap.io import setup_logging
from glaciermap.data.select import select_image

setup_logging(snakemake.log[0])
w = snakemake.wildcards
select_image(w.glacier, w.epoch, snakemake.input.scenes, snakemake.input.inventory, snakemake.params.selection,
             snakemake.output[0])
