from glaciermap.features import write_cube
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
w, cfg = snakemake.wildcards, snakemake.config
params = dict(cfg["features"], cloud_classes=cfg["stac"]["cloud_classes"], shadow_classes=cfg["stac"]["shadow_classes"],
              nodata_classes=cfg["stac"]["nodata_classes"], id_column="glac_id")
write_cube(snakemake.input.scenes, snakemake.input.selection, snakemake.input.inventory, w.glacier, w.epoch,
           snakemake.params.dem, snakemake.params.dhdt, params, snakemake.output[0])
