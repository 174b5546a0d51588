rule ts_acquisitions:
    """Every usable acquisition of one glacier's series (metadata and per-pixel filters; windows read, never scenes)."""
    input:
        # ancient: the shared inventory's mtime must not re-run every glacier; the fingerprint does
        inventory=ancient(f"{R}/inventory/glaciers.gpkg"),
    output:
        nc=f"{TSA}/{{glacier}}.nc",
        csv=f"{TSA}/{{glacier}}.csv",
    params:
        fingerprint=fingerprint,
        scenes=ts_scene_ids,
        dem=raster_href("dem"),
        sources=canonical(TS_SOURCES),
        settings=TS_ACQ,
    resources:
        mem_mb=lambda w, attempt: fixed_job("ts_acquisitions", attempt)["mem_mb"],
        runtime=lambda w, attempt: fixed_job("ts_acquisitions", attempt)["runtime"],
    log:
        f"{R}/logs/ts_acquisitions/{{glacier}}.log",
    benchmark:
        f"{R}/benchmarks/ts_acquisitions/{{glacier}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/timeseries/ts_acquisitions.py"
