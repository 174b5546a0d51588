from glaciermap.data.inventory import prepare_inventory, write_inventory
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
write_inventory(prepare_inventory(snakemake.params.settings), snakemake.output.gpkg, snakemake.output.manifest)
