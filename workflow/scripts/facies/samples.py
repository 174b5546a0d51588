from glaciermap.facies.samples import run_samples
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
run_samples(i.points, i.inventory, p.dem, p.source, p.source_cfg, p.classes, p.bands, p.channels, p.patch_size,
            p.resolution, o.nc, o.rejected, o.glaciers)
