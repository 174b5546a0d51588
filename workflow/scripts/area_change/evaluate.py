from pathlib import Path

from glaciermap.area_change.evaluate import run_evaluate
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
run_evaluate(snakemake.input.rates, Path(snakemake.input.truth).parent, snakemake.output[0])
