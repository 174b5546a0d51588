from glaciermap.facies.summary import run_facies_summary
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
i, o = snakemake.input, snakemake.output
run_facies_summary(i.points, i.issues, i.cal_raw, i.cal_clean, o[0], smb_json=i.get("smb"), outline_json=i.get("outline"),
                   truth_csv=i.truth or None, issues_csv=i.issues_csv,
                   points_csvs={"raw": i.points_raw, "clean": i.points_clean}, classes=snakemake.params.classes,
                   prunable=snakemake.params.prunable)
