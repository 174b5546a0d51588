from glaciermap.io import setup_logging
from glaciermap.data.qc import collect_qc

setup_logging(snakemake.log[0])

cubes, selections = snakemake.input.cubes, snakemake.input.selections
keys = [(p.split("/")[-2], p.split("/")[-1][: -len(".nc")]) for p in cubes]
collect_qc(snakemake.input.manifest, dict(zip(keys, cubes)), dict(zip(keys, selections)),
           snakemake.output.skipped, snakemake.output.selected, snakemake.output.summary,
           scenes=dict(zip(keys, snakemake.input.scenes)), out_dropped=snakemake.output.dropped)
