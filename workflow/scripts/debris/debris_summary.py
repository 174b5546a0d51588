from glaciermap.debris.summary import run_debris_summary
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
i, p = snakemake.input, snakemake.params
run_debris_summary(i.metrics, i.cover, snakemake.output[0], random_split_json=i.get("random_split"),
                   importance_json=i.get("importance"), thresholds_json=i.get("thresholds"),
                   debris_class=p.debris_class, clean_class=p.clean_class, model=snakemake.wildcards.model)
