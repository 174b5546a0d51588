from glaciermap.io import setup_logging
from glaciermap.select import select_image

setup_logging(snakemake.log[0])
w, cfg = snakemake.wildcards, snakemake.config
classes = {"cloud": cfg["stac"]["cloud_classes"], "shadow": cfg["stac"]["shadow_classes"],
           "nodata": cfg["stac"]["nodata_classes"]}
select_image(w.glacier, w.epoch, snakemake.input.scenes, snakemake.input.inventory, cfg["selection"], classes,
             snakemake.output[0])
