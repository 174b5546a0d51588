from glaciermap.facies.smb import run_smb
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
run_smb(list(i.stats), i.smb, o.csv, o.json, dict(p.settings))
