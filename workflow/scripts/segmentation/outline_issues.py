from glaciermap.segmentation.outline_issues import run_outline_issues_files
from glaciermap.io import setup_logging
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
run_outline_issues_files(list(i.preds), read_file_lists(i.cubes), list(i.calibrations), p.fold_of, o.csv, o.gpkg, o.json,
                         dict(p.settings), truth_csv=i.truth or None)
