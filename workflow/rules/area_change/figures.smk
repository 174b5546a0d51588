# Figures of the run and their place in `snakemake --report` (captions in workflow/report/).
# The panel glaciers are the largest test glaciers (inventory area), known when the DAG is built.
from glaciermap.area_change.figures import largest_glaciers

PANEL_GLACIERS = largest_glaciers(MAPPED.reset_index(drop=True), [g for k in FOLDS for g in TEST_OF[k]],
                                  config["figures"]["n_panels"])
PANEL_EPOCHS = list(dict.fromkeys([T0, T1] + EPOCHS))  # one panel row each, t0 on top
# the change figures (rates by size class, rate map) need rates: not in a one-epoch region
RATE_FIGURE_INPUTS = {} if ONE_EPOCH else {
    "rates": f"{R}/area_change/{{model}}/rates/glacier_rates.csv",
    "rates_gpkg": f"{R}/area_change/{{model}}/rates/glacier_rates.gpkg"}
RATE_FIGURES = {} if ONE_EPOCH else {
    "boxplot": report(f"{R}/area_change/{{model}}/figures/rates_by_size_class.png",
                      caption="../../report/rates_by_size_class.rst", category="Change rates"),
    "rate_map": report(f"{R}/area_change/{{model}}/figures/rate_map.png", caption="../../report/rate_map.rst",
                       category="Change rates")}


rule figures:
    """Glacier panels, reliability diagram, rate by size class and gridded rate map (PNG, matplotlib Agg)."""
    input:
        preds=lambda w: prediction_dirs(w.model, PANEL_EPOCHS, sorted({FOLD_OF[g] for g in PANEL_GLACIERS})),
        cubes=[f"{R}/cubes/{g}/{e}.nc" for g in PANEL_GLACIERS for e in PANEL_EPOCHS],
        calibration=lambda w: calibrations(w.model),
        areas=f"{R}/area_change/{{model}}/areas/glacier_areas.csv",
        **RATE_FIGURE_INPUTS,
        outlines=f"{R}/area_change/{{model}}/outlines/predicted_outlines.gpkg",
        folds=f"{R}/split/folds.csv",
    output:
        reliability=report(f"{R}/area_change/{{model}}/figures/reliability.png", caption="../../report/reliability.rst", category="Calibration"),
        **RATE_FIGURES,
        panels=[report(f"{R}/area_change/{{model}}/figures/glaciers/{g}.png", caption="../../report/glacier_panel.rst",
                       category="Glacier panels", labels={"glacier": g}) for g in PANEL_GLACIERS],
    params:
        glaciers=PANEL_GLACIERS,
        epochs=PANEL_EPOCHS,
        split=SPLIT_FILE,
        settings=config["figures"],
    resources:
        mem_mb=region_resources("figures", "mem_mb"),
        runtime=region_resources("figures", "runtime"),
    log:
        f"{R}/logs/figures/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/figures/{{model}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/area_change/figures.py"
