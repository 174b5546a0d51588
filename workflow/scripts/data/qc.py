from glaciermap.io import setup_logging
from glaciermap.data.qc import collect_qc
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])

cubes, selections = read_file_lists(snakemake.input.cubes), read_file_lists(snakemake.input.selections)
keys = [(p.split("/")[-2], p.split("/")[-1][: -len(".nc")]) for p in cubes]
collect_qc(snakemake.input.manifest, dict(zip(keys, cubes)), dict(zip(keys, selections, strict=True)),
           snakemake.output.skipped, snakemake.output.selected, snakemake.output.summary,
           scenes=dict(zip(keys, read_file_lists(snakemake.input.scenes), strict=True)), out_dropped=snakemake.output.dropped)
