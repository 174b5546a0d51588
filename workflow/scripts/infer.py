from glaciermap.io import setup_logging
from glaciermap.steps import run_infer

setup_logging(snakemake.log[0])
i, o = snakemake.input, snakemake.output
run_infer(i.models, i.norm, list(i.test) + list(i.get("val", [])), list(o.test) + list(o.get("val", [])),
          snakemake.params.settings,
          snakemake.params.patch_size, snakemake.threads)
