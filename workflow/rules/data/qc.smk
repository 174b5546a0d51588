rule qc:
    """Collect every skipped glacier (with step and reason), every chosen image and every dropped candidate scene."""
    input:
        manifest=f"{R}/inventory/manifest.csv",
        # file lists (rule file_list) of every glacier and epoch, glacier-major
        scenes=file_lists("scenes", "all", epochs=EPOCHS, region=True),
        cubes=file_lists("cubes", "all", epochs=EPOCHS, region=True),
        selections=file_lists("selection", "all", epochs=EPOCHS, region=True),
    output:
        skipped=f"{R}/qc/skipped.csv",
        selected=f"{R}/qc/selected_images.csv",
        dropped=f"{R}/qc/dropped_candidates.csv",
        summary=f"{R}/qc/summary.json",
    resources:
        mem_mb=region_resources("qc", "mem_mb"),
        runtime=region_resources("qc", "runtime"),
    log:
        f"{R}/logs/qc.log",
    benchmark:
        f"{R}/benchmarks/qc.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/data/qc.py"
