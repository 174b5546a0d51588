from glaciermap.debris.thresholds import run_thresholds_files
from glaciermap.io import setup_logging
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
i, p, o = snakemake.input, snakemake.params, snakemake.output
run_thresholds_files(read_file_lists(i.cubes), read_file_lists(i.labels), p.fold_of, p.rules, p.classes,
                     {"confusion": o.confusion, "metrics": o.metrics, "json": o.json},
                     model_metrics=list(i.model_metrics), figures=list(o.figures))
