# The debris-covered glacier method's headline numbers of one model, gathered from the rules that computed them
# (confusion, random_split, importance, cover, thresholds); the area-change summary embeds them as `debris`.
rule debris_summary:
    """results/<region>/debris/<model>/summary.json: scores, calibration, random-split inflation, importance, cover."""
    input:
        unpack(debris_summary_inputs),
        metrics=f"{R}/segmentation/{{model}}/metrics.json",
        cover=f"{R}/debris/{{model}}/cover.json",
    output:
        f"{R}/debris/{{model}}/summary.json",
    params:
        debris_class=config["debris"]["debris_class"],
        clean_class=config["debris"]["clean_class"],
    resources:
        mem_mb=region_resources("debris_summary", "mem_mb"),
        runtime=region_resources("debris_summary", "runtime"),
    log:
        f"{R}/logs/debris_summary/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/debris_summary/{{model}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/debris/debris_summary.py"
