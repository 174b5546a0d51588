# Label rasters of the K-class models (config `labels`): one GeoTIFF per label set, glacier and epoch, on the cube's
# grid (uint8 class index, 255 = no label). A user may open one in QGIS and correct it: calibrate and confusion then
# re-run by themselves; training reads the rasters as ancient() inputs (like the cubes: a new scene does not
# retrain), so after hand corrections run `snakemake --forcerun train` (README "K-class models"). A changed
# definition or map re-makes `label_set`'s record, a regular input of the training jobs: they retrain.
rule label_set:
    """The definition record of one label set (classes, rules, checksums of its maps): what retrains its models."""
    input:
        maps=lambda w: [c["path"] for c in config["labels"][w.labelset]["classes"] if c["rule"] == "map"],
    output:
        f"{R}/labels/{{labelset}}/definition.json",
    params:
        spec=lambda w: canonical(config["labels"][w.labelset]),
    localrule: True
    log:
        f"{R}/logs/label_set/{{labelset}}.log",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/label_set.py"


rule labels:
    """Class labels of one glacier and epoch from a label set's rules (outline, user maps, channel thresholds)."""
    input:
        cube=f"{R}/cubes/{{glacier}}/{{epoch}}.nc",
        definition=f"{R}/labels/{{labelset}}/definition.json",
        maps=lambda w: [c["path"] for c in config["labels"][w.labelset]["classes"] if c["rule"] == "map"],
    output:
        f"{R}/labels/{{labelset}}/{{epoch}}/{{glacier}}.tif",
    params:
        spec=lambda w: canonical(config["labels"][w.labelset]),
    resources:
        # not measured on its own: it reads one cube (a few layers and the masks) and writes one band, a subset of
        # what `features` holds at once, so features' fit is its upper bound
        mem_mb=glacier_resources("features", "mem_mb"),
        runtime=glacier_resources("features", "runtime"),
    log:
        f"{R}/logs/labels/{{labelset}}/{{epoch}}/{{glacier}}.log",
    benchmark:
        f"{R}/benchmarks/labels/{{labelset}}/{{epoch}}/{{glacier}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/segmentation/labels.py"
