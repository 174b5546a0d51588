from glaciermap.io import setup_logging
from glaciermap.timeseries.train import run_ts_train

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
run_ts_train(p.fold, dict(zip(p.glaciers, i.stacks, strict=True)), p.split, i.inventory, dict(p.settings),
             o.json.rsplit("/", 1)[0])
