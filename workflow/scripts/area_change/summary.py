from glaciermap.io import setup_logging
from glaciermap.area_change.summary import write_summary

setup_logging(snakemake.log[0])
i = snakemake.input
write_summary(snakemake.output[0], qc_json=i.qc, calib_jsons=i.calibration, areas_csv=i.areas, totals_json=i.get("totals"),
              baseline_json=i.get("baseline"), evaluation_json=i.get("evaluation"), settings=snakemake.params.settings,
              comparison_json=i.get("comparison"), model=snakemake.params.model,
              debris_json=i.get("debris"), facies_json=i.get("facies"),
              timeseries_json=i.get("timeseries"))
